"""Invalid traced values give NaN gradients, not 0 (issue 18, item 4).

A simulator called with an invalid *traced* value poisons its outputs (NaN, :mod:`jaxlif._checks`).  Its
derivative must be NaN as well: a finite zero (what a plain ``jnp.where`` gives through its unselected
branch) lets an optimiser stall silently on an invalid value.  Where the value is valid the derivative
must not change.

Every case below runs one compiled program: ``jax.vmap(jax.value_and_grad(f))`` over
``[x0 + h, x0 - h, x0, x_bad]`` in float64, so that

* the rows ``x0 +- h`` give a central finite difference, the independent reference for the gradient at
  the valid ``x0`` (which is therefore finite and unchanged by the poisoning);
* the row ``x_bad`` is the invalid value: its value and its gradient are NaN;
* the other rows stay finite: under ``vmap`` only the invalid element gets NaN.

Each ``f`` is smooth near ``x0`` (no spike time moves within ``+-h``: free membrane potential, or a
spiking run whose raster does not change), so the finite difference is accurate to about 1e-6.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif
from jaxlif import _checks

DT = 0.1
STEPS = 60
H = 1e-5


def _check(f, x0, bad, rtol=1e-5, atol=1e-8, unbatched=False):
    xs = np.array([x0 + H, x0 - H, x0, bad], dtype=np.float64)          # NumPy: no conversion to compile
    value, grad = jax.jit(jax.vmap(jax.value_and_grad(f)))(xs)
    value, grad = np.asarray(value), np.asarray(grad)
    assert value.dtype == np.float64
    assert np.all(np.isfinite(value[:3])) and np.all(np.isfinite(grad[:3])), (value, grad)
    fd = (value[0] - value[1]) / (2 * H)
    assert abs(fd) > 1e-4, fd                                   # the gradient is not trivially zero
    np.testing.assert_allclose(grad[2], fd, rtol=rtol, atol=atol)
    assert np.isnan(value[3])                                   # the forward pass is poisoned ...
    assert np.isnan(grad[3]), grad                              # ... and so is its gradient (was 0.0)
    if unbatched:    # also without vmap (the example; one more compiled program: jitted, since op by op
        #              the gradient compiled the forward and backward passes apart and 4 small programs, 2026-12-07)
        assert np.isnan(jax.jit(jax.grad(f))(np.float64(bad)))


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(7)
    return {"I": np.full(STEPS, 150.0) + 50.0 * rng.standard_normal(STEPS),
            "n_E": rng.poisson(0.4, STEPS).astype(float),
            "n_I": rng.poisson(0.1, STEPS).astype(float),
            "s_E": rng.random((3, STEPS)) < 0.1,
            "s_I": rng.random((2, STEPS)) < 0.1}


# ----------------------------------------------------------------------------------------------
# The poisoning primitive itself
# ----------------------------------------------------------------------------------------------

def test_poison_derivative_is_nan_only_where_poisoned_and_exact_elsewhere():
    x = np.array([1.0, -2.0, 3.0, 0.0], np.float32)
    ok = np.array([True, False, True, False])
    f = lambda x: _checks.poison(ok, (x ** 2, jnp.zeros(4) * x, (x > 0)))   # noqa: E731
    # each transformation compiled as one program (op by op, every operation would be its own program)
    out = jax.jit(f)(x)
    np.testing.assert_array_equal(out[0], [1.0, np.nan, 9.0, np.nan])      # forward: plain where
    assert out[2].tolist() == [True, True, True, True]
    _, (t_sq, t_zero, _) = jax.jit(lambda x, t: jax.jvp(f, (x,), (t,)))(x, np.ones(4, np.float32))
    np.testing.assert_array_equal(t_sq, [2.0, np.nan, 6.0, np.nan])      # 2x where ok, NaN where not
    np.testing.assert_array_equal(t_zero, [0.0, np.nan, 0.0, np.nan])    # NaN even where d leaf = 0
    g = jax.jit(jax.grad(lambda x: jnp.nansum(f(x)[0])))(x)               # reverse mode: the same
    np.testing.assert_array_equal(g, [2.0, np.nan, 6.0, np.nan])
    # vmap with a per-row flag: only the invalid rows; the others bit for bit the plain derivative
    rows = np.arange(12.0, dtype=np.float32).reshape(4, 3) / np.float32(7.0)
    flags = np.array([True, False, True, True])
    jac = jax.jit(jax.vmap(jax.grad(lambda r, k: jnp.sum(_checks.poison(k, jnp.sin(r) * r)))))(rows, flags)
    plain = jax.jit(jax.vmap(jax.grad(lambda r: jnp.sum(jnp.sin(r) * r))))(rows)
    jac = np.asarray(jac)                                                # NumPy: rows cut without compiling
    assert np.isnan(jac[1]).all()
    np.testing.assert_array_equal(jac[[0, 2, 3]], np.asarray(plain)[[0, 2, 3]])


# ----------------------------------------------------------------------------------------------
# Every differentiable simulator, and stp_amplitudes
# ----------------------------------------------------------------------------------------------

def test_simulate_lif_tau_m(x64, inputs):
    f = lambda t: jaxlif.simulate_lif(jaxlif.LIFParams(tau_m=t), inputs["I"], dt=DT,   # noqa: E731
                                      spiking=False).v.mean()
    _check(f, 10.0, -5.0, unbatched=True)


def test_simulate_lif_spiking(x64):
    """A spiking run (strong constant drive; the raster does not change near tau_m = 10 ms).  With the exact
    threshold v is piecewise smooth, so the finite difference checks the gradient; with a surrogate the
    gradient is the surrogate's (finite at the valid value, NaN at the invalid one)."""
    I = np.full(STEPS, 400.0)
    assert int(np.asarray(jaxlif.simulate_lif(jaxlif.LIFParams(), I, dt=DT).spikes).sum()) >= 1
    _check(lambda t: jaxlif.simulate_lif(jaxlif.LIFParams(tau_m=t), I, dt=DT).v.mean(), 10.0, -5.0)
    rate = lambda t: jaxlif.simulate_lif(jaxlif.LIFParams(tau_m=t), I, dt=DT,   # noqa: E731
                                         spike_grad=jaxlif.surrogates.fast_sigmoid()).spikes.mean()
    grad = np.asarray(jax.jit(jax.vmap(jax.grad(rate)))(np.array([10.0, -5.0])))    # NumPy: nothing to compile
    assert np.isfinite(grad[0]) and grad[0] != 0 and np.isnan(grad[1])


def test_simulate_cond_lif_g_bar(x64, inputs):
    def f(g):
        p = jaxlif.CondLIFParams(exc=jaxlif.EXC_SYN._replace(g_bar=g))
        return jaxlif.simulate_cond_lif(p, inputs["n_E"], inputs["n_I"], dt=DT, spiking=False).v.mean()
    _check(f, 2.4, -1.0)


def test_simulate_cond_lif_poisson_g_bar(x64):
    key = jax.random.key(3)
    def f(g):
        p = jaxlif.CondLIFParams(exc=jaxlif.EXC_SYN._replace(g_bar=g))
        res = jaxlif.simulate_cond_lif_poisson(key, p, rate_E=50.0, T=STEPS * DT, dt=DT, spiking=False)
        return res.v.mean() + res.g_E.mean()
    _check(f, 2.4, -1.0)


def _stp_lif_params(u):
    p = jaxlif.STPLIFParams()
    return p._replace(stp_E=p.stp_E._replace(U0=u))


def test_simulate_stp_lif_U0(x64, inputs):
    f = lambda u: jaxlif.simulate_stp_lif(_stp_lif_params(u), inputs["s_E"], inputs["s_I"], dt=DT,  # noqa: E731
                                          spiking=False, record_synapses=False).v.mean()
    _check(f, 0.45, 1.5)


def test_simulate_stp_lif_poisson_U0(x64):
    key = jax.random.key(5)
    f = lambda u: jaxlif.simulate_stp_lif_poisson(key, _stp_lif_params(u), rate_E=300.0, n_E=4, n_I=2,  # noqa: E731
                                                  T=STEPS * DT, dt=DT, spiking=False).v.mean()
    _check(f, 0.45, 1.5)


def test_simulate_stp_and_ratio_curves_U0(x64, inputs):
    syn = jaxlif.SynParams(g_bar=1.2, tau_syn=5.0, E_rev=0.0)
    stp = lambda u: jaxlif.STPParams(U0=u, tau_d=100.0, tau_f=50.0)   # noqa: E731
    _check(lambda u: jaxlif.simulate_stp(stp(u), syn, inputs["s_E"], dt=DT).g.mean(), 0.3, 1.5)
    _check(lambda u: jnp.sum(jnp.stack(jaxlif.ratio_curve(stp(u), [20.0, 50.0]))), 0.3, 1.5)
    _check(lambda u: jnp.sum(jnp.stack(jaxlif.ratio_curve_exact(stp(u), [20.0, 50.0]))), 0.3, 1.5)


@pytest.mark.parametrize("mode", ["exact", "tutorial"])
def test_stp_amplitudes_U0(x64, mode):
    """Padding (NaN in the times and the releases) is masked by the spike times, as a likelihood does;
    ``jnp.nansum`` would hide the poisoned (NaN) releases of an invalid value as well as the padding."""
    t = np.array([[0.0, 10.0, 30.0, 35.0], [0.0, 20.0, 40.0, np.nan]])     # the second train padded
    valid = np.isfinite(t)                                     # NumPy: nothing to compile

    def f(u):
        r = jaxlif.stp_amplitudes(jaxlif.STPParams(U0=u, tau_d=100.0, tau_f=50.0), t, mode=mode, dt=DT)
        return jnp.sum(jnp.where(valid, r, 0.0) ** 2)

    _check(f, 0.3, 1.5)


def test_simulate_network_weight(x64):
    """A small E/I network (dense, so that the weight scale is one traced value), exact threshold: v is
    piecewise smooth in the E->E weight scale; a scale of -1 (negative weights) is invalid."""
    key = jax.random.key(0)
    net = jaxlif.ei_network(key, n_E=8, n_I=2, p=0.5, sparse=False, delay=2, drive_rate=200.0,
                            neuron=jaxlif.LIFParams(V_init=-56.0))      # spikes early: E->E matters

    def f(w):
        projections = tuple(dataclasses.replace(q, weights=q.weights * w) if i == 0 else q
                            for i, q in enumerate(net.projections))
        res = jaxlif.simulate_network(key, dataclasses.replace(net, projections=projections), T=STEPS * DT, dt=DT)
        return sum(v.mean() for v in res.v.values())

    _check(f, 1.0, -1.0, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# The batch simulators are not differentiable: jax.grad raises (never a zero), invalid values included
# ----------------------------------------------------------------------------------------------

def test_batch_simulators_refuse_grad_at_invalid_values():
    key = jax.random.key(0)
    stats = jaxlif.batch.Stats(v=True)

    def mean_v(g_bar):
        params = jaxlif.CondLIFParams(exc=jaxlif.EXC_SYN._replace(g_bar=g_bar))
        return jaxlif.simulate_cond_lif_batch(key, 4, params, T=100.0, stats=stats).stats.v_mean.sum()

    with pytest.raises(TypeError, match="simulate_cond_lif_batch cannot be differentiated"):
        jax.grad(mean_v)(-1.0)
    with pytest.raises(TypeError, match="simulate_stp_lif_batch cannot be differentiated"):
        jax.grad(lambda u: jaxlif.simulate_stp_lif_batch(key, 4, _stp_lif_params(u), T=100.0, stats=stats)
                 .stats.v_mean.sum())(1.5)
