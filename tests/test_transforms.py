"""Transformation invariances: vmap == loop, jit == eager, grad vs finite differences,
key determinism, dtype preservation and no recompilation on repeated calls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif
from jaxlif import CondLIFParams, LIFParams, STPParams, SynParams
from jaxlif import neurons as nrn

T, DT = 200.0, 0.1


def _run(key, rate_E=10.0, params=CondLIFParams()):
    return jaxlif.simulate_cond_lif_poisson(key, params, rate_E=rate_E, T=T, dt=DT)


def _lane(key, tau_m, rate_E):
    return _run(key, rate_E, CondLIFParams(neuron=LIFParams(tau_m=tau_m)))


#: Keys, membrane time constants and rates batched together (four lanes): the vmap over keys and the vmap over
#: parameters and rates below are one compiled program (two programs of this simulator were about 0.8 CPU-s
#: together more; measured 2026-12-07); their unbatched runs share one program too.
_lanes = jax.vmap(_lane)


def test_vmap_over_keys_equals_loop():
    """Four keys, the default parameters and rate in every lane."""
    keys = jax.random.split(jax.random.key(0), 4)
    same = np.full(4, 10.0, np.float32)                        # tau_m = 10 ms and 10 Hz: the defaults
    batched = jax.tree.map(np.asarray, _lanes(keys, same, same))   # NumPy: the indexing below compiles nothing
    for b in range(4):
        single = _run(keys[b])
        for a, s in zip(batched[:4], single[:4]):   # v, spikes, g_E, g_I (spike_offset is None under euler)
            np.testing.assert_allclose(a[b], np.asarray(s), rtol=1e-6, atol=1e-5)


def test_vmap_over_parameters_and_rates_equals_loop():
    """Four membrane time constants and rates (each lane its own key: the program of the test above)."""
    keys = jax.random.split(jax.random.key(1), 4)
    tau_m = np.array([5.0, 10.0, 20.0, 40.0], np.float32)
    rates = np.array([5.0, 10.0, 20.0, 40.0], np.float32)
    batched = jax.tree.map(np.asarray, _lanes(keys, tau_m, rates))
    for b in range(4):
        single = _lane(keys[b], float(tau_m[b]), float(rates[b]))
        np.testing.assert_array_equal(batched.spikes[b], np.asarray(single.spikes))
        np.testing.assert_allclose(batched.v[b], np.asarray(single.v), atol=1e-4)


def test_vmap_over_input_trains_stp_lif_equals_loop():
    keys = jax.random.split(jax.random.key(2), 3)
    p = jaxlif.STPLIFParams()
    sim = lambda e, i: jaxlif.simulate_stp_lif(p, e, i, dt=DT, record_synapses=False)

    @jax.jit
    def draw_and_run(keys):         # the draws and the batched run in one program (two before; 2026-12-07)
        trains_E, trains_I = jax.vmap(lambda k: (jaxlif.poisson_trains(k, 15.0, 8, T=T, dt=DT),
                                                 jaxlif.poisson_trains(k, 15.0, 2, T=T, dt=DT)))(keys)
        return trains_E, trains_I, jax.vmap(sim)(trains_E, trains_I)

    trains_E, trains_I, batched = jax.tree.map(np.asarray, draw_and_run(keys))
    for b in range(3):
        single = sim(trains_E[b], trains_I[b])
        np.testing.assert_allclose(batched.g_E[b], np.asarray(single.g_E), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(batched.spikes[b], np.asarray(single.spikes))


def test_stp_lif_poisson_in_scan_equals_explicit_trains(x64):
    key = jax.random.key(3)
    p = jaxlif.STPLIFParams()
    out = jaxlif.simulate_stp_lif_poisson(key, p, T=T, dt=DT)

    @jax.jit
    def trains(key):               # the key split and both draws in one program (eagerly: 6 programs)
        kE, kI = jax.random.split(key)
        return jaxlif.poisson_trains(kE, 15.0, 80, T=T, dt=DT), jaxlif.poisson_trains(kI, 15.0, 20, T=T, dt=DT)

    e, i = trains(key)
    want = jaxlif.simulate_stp_lif(p, e, i, dt=DT, record_synapses=False)
    for a, b in zip(out[:4], want[:4]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)


@pytest.mark.slow   # eager mode compiles every primitive on its own (about 12 s); test_network.py's jit == eager stays in the default suite
def test_jit_equals_eager(x64):
    key = jax.random.key(4)
    kE, kI = jax.random.split(key)
    n_E = jaxlif.poisson_counts(kE, 200.0, 80, T=4.0, dt=DT)      # eager runs op by op: keep it short
    n_I = jaxlif.poisson_counts(kI, 10.0, 20, T=4.0, dt=DT)
    jitted = jaxlif.simulate_cond_lif(CondLIFParams(), n_E, n_I, dt=DT)
    with jax.disable_jit():
        eager = jaxlif.simulate_cond_lif(CondLIFParams(), n_E, n_I, dt=DT)
    for a, b in zip(jitted, eager):
        if a is None:                    # spike_offset: None under euler, in both
            assert b is None
            continue
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)


def test_same_key_same_result_different_key_different():
    a, b, c = _run(jax.random.key(7)), _run(jax.random.key(7)), _run(jax.random.key(8))
    np.testing.assert_array_equal(np.asarray(a.v), np.asarray(b.v))
    assert not np.array_equal(np.asarray(a.v), np.asarray(c.v))


def test_grad_of_free_membrane_potential_vs_finite_differences(x64):
    """d mean(FMP) / d (g_bar_E, tau_m, E_L) through the whole scan."""
    @jax.jit
    def counts(key):               # the key split and both draws in one program (eagerly: 6 programs)
        kE, kI = jax.random.split(key)
        return jaxlif.poisson_counts(kE, 10.0, 80, T=T, dt=DT), jaxlif.poisson_counts(kI, 10.0, 20, T=T, dt=DT)

    n_E, n_I = counts(jax.random.key(5))

    def mean_fmp(theta):
        p = CondLIFParams(neuron=LIFParams(tau_m=theta[1], E_L=theta[2]),
                          exc=SynParams(theta[0], 2.0, 0.0))
        return jnp.mean(jaxlif.simulate_cond_lif(p, n_E, n_I, dt=DT, spiking=False).v)

    theta = np.array([2.4, 10.0, -75.0])
    # jitted: one program (eager jax.grad compiled the forward and the backward scans apart, and a few small
    # programs: 0.5 CPU-s more; measured 2026-12-07); the six runs of the differences take their values from the
    # same program (value_and_grad) instead of a program of their own (its compilation cost more than the six
    # backward passes of 2000 steps)
    value_and_grad = jax.jit(jax.value_and_grad(mean_fmp))
    grad = np.asarray(value_and_grad(theta)[1])
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1e-5
        fd = (float(value_and_grad(theta + e)[0]) - float(value_and_grad(theta - e)[0])) / 2e-5
        assert grad[i] == pytest.approx(fd, rel=1e-6)


def test_grad_through_stp_lif_float32_is_finite():
    key = jax.random.key(6)

    def rate(U0):
        stp = STPParams(U0, 250.0, 150.0)
        p = jaxlif.STPLIFParams(stp_E=stp, stp_I=stp)
        out = jaxlif.simulate_stp_lif_poisson(key, p, T=100.0, dt=DT, spiking=False)
        return jnp.mean(out.v)

    g = jax.jit(jax.grad(rate))(0.45)       # one program (eager jax.grad compiles the forward and backward apart)
    assert np.isfinite(float(g)) and float(g) != 0.0


def test_dtype_preserved():
    out = _run(jax.random.key(0))
    assert out.v.dtype == jnp.float32 and out.g_E.dtype == jnp.float32 and out.spikes.dtype == jnp.bool_
    with jax.enable_x64(True):
        out64 = jax.eval_shape(_run, jax.random.key(0))       # the types the program returns, traced only
        assert out64.v.dtype == jnp.float64 and out64.g_E.dtype == jnp.float64 and out64.spikes.dtype == jnp.bool_


def test_no_recompilation_for_new_parameter_values():
    n = np.zeros(100, np.float32)                  # NumPy inputs (and n + 1 below): no small programs of their own
    f = nrn._simulate_cond_lif
    jaxlif.simulate_cond_lif(CondLIFParams(), n, n, dt=DT)
    before = f._cache_size()
    for tau in (8.0, 12.0, 15.0):
        p = CondLIFParams(neuron=LIFParams(tau_m=tau))
        jaxlif.simulate_cond_lif(p, n + 1, n, 5.0, dt=DT)
    assert f._cache_size() == before
