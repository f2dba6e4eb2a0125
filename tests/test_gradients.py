"""Gradients a user can trust: surrogate spikes (forward values unchanged, signs of finite differences,
a fit to a target rate), checkpointed scans (same values and gradients, bounded memory), and
``jax.grad`` through every simulator.

Compiled programs are shared between tests (module-level jitted functions, one shape per simulator)
to keep the suite fast."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxlif
from jaxlif import CondLIFParams, LIFParams, STPLIFParams, STPParams, SynParams
from jaxlif import constraints as C
from jaxlif import surrogates as S

SG = S.fast_sigmoid()
KEY = jax.random.key(11)

# ------------------------------------------------------------------------------------------------
# Acceptance: 256 Poisson-driven neurons, common random numbers, surrogate gradient of the mean rate
# ------------------------------------------------------------------------------------------------

B, T_FIT, DT = 256, 50.0, 0.1
CONS = C.default_constraints(CondLIFParams(), dt=DT)


def _rate(theta, keys):
    """Mean rate [Hz] of the batch at the unconstrained parameters ``theta``."""
    p = C.from_unconstrained(theta, CONS)
    sim = lambda k: jaxlif.simulate_cond_lif_poisson(k, p, T=T_FIT, dt=DT, record=False, spike_grad=SG)
    return jnp.mean(jax.vmap(sim)(keys).spikes.sum(-1)) * 1000.0 / T_FIT


@jax.jit
def _rate_and_grad(theta, keys):
    """Mean rate [Hz] of the batch and its surrogate gradient w.r.t. the unconstrained parameters."""
    return jax.value_and_grad(_rate)(theta, keys)


@jax.jit
def _rates(thetas, keys):
    """:func:`_rate` at several ``theta`` (leading axis), forward only: the finite differences."""
    return jax.vmap(_rate, in_axes=(0, None))(thetas, keys)


def _theta(gE=2.4, gI=2.4):
    return C.to_unconstrained(CondLIFParams(exc=SynParams(gE, 2.0, 0.0), inh=SynParams(gI, 5.0, -80.0)), CONS)


KEYS = jax.random.split(jax.random.key(0), B)


@pytest.mark.slow   # an end-to-end demonstration (about 7 s); the gradients it follows are checked in the default suite
def test_surrogate_fit_brings_256_neurons_to_20_hz():
    theta = _theta(gE=1.2)                    # starts near 0 Hz
    rate0, _ = _rate_and_grad(theta, KEYS)
    assert float(rate0) < 5.0
    free = jax.tree.map(lambda _: 0.0, theta)._replace(exc=SynParams(1.0, 0.0, 0.0))   # fit exc.g_bar only
    opt = optax.adam(0.1, b1=0.5)
    state = opt.init(theta)
    history = []
    for _ in range(80):
        rate, grad = _rate_and_grad(theta, KEYS)
        history.append(float(rate))
        if abs(history[-1] - 20.0) < 0.5:
            break
        # loss (rate - 20 Hz)^2: its gradient is 2 (rate - 20) d rate / d theta
        loss_grad = jax.tree.map(lambda g, m: 2.0 * (rate - 20.0) * g * m, grad, free)
        updates, state = opt.update(loss_grad, state)
        theta = optax.apply_updates(theta, updates)
    assert abs(history[-1] - 20.0) < 1.0, history
    fitted = C.from_unconstrained(theta, CONS)
    assert fitted.inh.g_bar == pytest.approx(2.4, rel=1e-6) and fitted.exc.tau_syn == pytest.approx(2.0, rel=1e-6)
    # the same g_bar on fresh inputs: 20 Hz within the batch's sampling noise
    fresh, _ = _rate_and_grad(theta, jax.random.split(jax.random.key(1), B))
    assert abs(float(fresh) - 20.0) < 3.0


@pytest.mark.parametrize("point", range(5))
def test_surrogate_rate_gradient_has_the_sign_of_crn_finite_differences(point):
    gE, gI = [(1.8, 2.4), (2.4, 2.4), (3.0, 1.5), (2.4, 4.0), (4.0, 3.0)][point]
    _, grad = _rate_and_grad(_theta(gE, gI), KEYS)
    h = 0.15                                  # in log g_bar: common random numbers, central difference
    steps = [_theta(gE * np.exp(s * h), gI) for s in (1, -1)] + [_theta(gE, gI * np.exp(s * h)) for s in (1, -1)]
    rates = np.asarray(_rates(jax.tree.map(lambda *x: np.stack(x), *steps), KEYS))   # the 4 runs in one call
    for i, (field, d) in enumerate((("exc", grad.exc.g_bar), ("inh", grad.inh.g_bar))):
        fd = (float(rates[2 * i]) - float(rates[2 * i + 1])) / (2 * h)
        assert abs(fd) > 1.0                  # a clear finite difference
        assert np.sign(float(d)) == np.sign(fd), (field, float(d), fd)


# ------------------------------------------------------------------------------------------------
# Every simulator: forward values identical with a surrogate (and checkpointing); jax.grad works.
# The plain runs use the shapes and arguments of other tests of the suite (their compiled programs
# are reused); the surrogate runs scale two parameters by theta = (a, b), equal to them at (1, 1).
# ------------------------------------------------------------------------------------------------

PART1 = LIFParams(tau_m=20.0, E_L=-60.0, V_init=-60.0, V_reset=-70.0, V_th=-50.0, g_L=10.0)
CK = 9                      # checkpoint segment length (199 scanned steps: 22 segments + 1 leftover)


@jax.jit
def _trains(key):
    """The STP runs' input trains, the key split and both draws in one program (eagerly: 5 programs)."""
    kE, kI = jax.random.split(key)
    return jaxlif.poisson_trains(kE, 300.0, 8, T=200.0, dt=DT), jaxlif.poisson_trains(kI, 15.0, 2, T=200.0, dt=DT)


@functools.cache
def _data():
    """Inputs, built once and outside any trace (binomial counts drawn and converted by NumPy: nothing to
    compile)."""
    rng = np.random.default_rng(2)
    s_E, s_I = _trains(jax.random.key(2))
    return dict(I=jaxlif.sinusoidal_current(250.0, T=150.0, dt=1.0),
                n_E=jnp.asarray(rng.binomial(80, 0.015, 200).astype(np.float32)),      # 80 trains at 150 Hz
                n_I=jnp.asarray(rng.binomial(20, 0.001, 200).astype(np.float32)),      # 20 trains at 10 Hz
                s_E=s_E, s_I=s_I)


def _sim(name, theta=(1.0, 1.0), spike_grad=None, checkpoint=None, x=None):
    a, b = theta
    x = _data() if x is None else x
    kw = dict(spike_grad=spike_grad, checkpoint=checkpoint)
    if name == "lif":
        p = PART1._replace(tau_m=20.0 * a, g_L=10.0 * b) if spike_grad else PART1
        return jaxlif.simulate_lif(p, x["I"], dt=1.0, **kw)
    cond = CondLIFParams(exc=SynParams(2.4 * a, 2.0, 0.0), inh=SynParams(2.4 * b, 5.0, -80.0))
    if name == "cond_lif":
        return jaxlif.simulate_cond_lif(cond, x["n_E"], x["n_I"], dt=DT, **kw)
    if name == "cond_lif_poisson":
        return jaxlif.simulate_cond_lif_poisson(jax.random.key(0), cond if spike_grad else CondLIFParams(),
                                                rate_E=10.0, T=50.0, record=True, **kw)
    stp = STPLIFParams(exc=SynParams(4.8 * a, 5.0, 0.0), stp_E=STPParams(0.45 * b, 250.0, 150.0))
    if name == "stp_lif":
        return jaxlif.simulate_stp_lif(stp if spike_grad else STPLIFParams(), x["s_E"], x["s_I"], dt=DT,
                                       record_synapses=False, **kw)
    return jaxlif.simulate_stp_lif_poisson(jax.random.key(3), stp if spike_grad else STPLIFParams(),
                                           T=200.0, dt=DT, **kw)


SIMS = ["lif", "cond_lif", "cond_lif_poisson", "stp_lif", "stp_lif_poisson"]


@pytest.mark.parametrize("name", SIMS)
def test_surrogate_and_checkpointing_keep_forward_values(name):
    """The same run without and with ``spike_grad`` (and ``checkpoint``): identical values, bit for bit."""
    plain, soft = _sim(name), _sim(name, spike_grad=SG, checkpoint=CK if name in ("lif", "stp_lif") else None)
    assert plain.spikes.dtype == jnp.bool_ and soft.spikes.dtype == jnp.float32
    assert int(np.asarray(plain.spikes).sum()) > 0                # a spiking run
    for field in ("v", "spikes", "g_E", "g_I"):
        if getattr(plain, field, None) is not None:
            np.testing.assert_array_equal(np.asarray(getattr(soft, field)),
                                          np.asarray(getattr(plain, field)).astype(np.float32), err_msg=field)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _grad_jit(name, theta, checkpoint, x):
    def loss(th):
        out = _sim(name, th, SG, checkpoint, x)
        return jnp.mean(out.v) + 10.0 * jnp.mean(out.spikes)
    return jax.grad(loss)(theta)


def _grad(name, theta, checkpoint):
    """Surrogate gradient of ``mean(v) + 10 mean(spikes)`` w.r.t. ``theta``."""
    return _grad_jit(name, theta, checkpoint, _data())


THETA = (jnp.float32(1.0), jnp.float32(1.0))


@pytest.mark.parametrize("name", ["lif", "cond_lif", "stp_lif"])
def test_every_simulator_supports_grad(name):
    """Surrogate gradients of spiking runs: finite and non-zero.  LIF and conductance LIF: the gradient of
    the spike count of the recorded Euler runs of :func:`test_record_false_keeps_the_raster_and_its_gradients`
    (its compiled programs; two programs of their own cost about 0.5 CPU-s, 2026-12-07).  The Poisson simulators
    are differentiated by the fit above (``simulate_cond_lif_poisson``) and in test_transforms.py
    (``simulate_stp_lif_poisson``)."""
    if name == "stp_lif":
        grad = _grad(name, THETA, True)
    else:
        grad = _raster_and_grad(name, True, "euler", THETA, _data())[1][0]
    assert all(np.isfinite(float(g)) and float(g) != 0.0 for g in grad), grad


def test_checkpointed_gradient_equals_plain_gradient():
    """STP-LIF (2000 steps, 10 plastic synapses): checkpointing changes no gradient beyond rounding."""
    for a, b in zip(_grad("stp_lif", THETA, True), _grad("stp_lif", THETA, None)):
        assert float(a) == pytest.approx(float(b), rel=1e-5)


@pytest.mark.parametrize("name", SIMS)
def test_checkpoint_option_builds_checkpointed_segments(name):
    """Every scan simulator honours ``checkpoint=`` (traced only, nothing compiled)."""
    x = _data()

    def jaxpr(ck):
        return str(jax.make_jaxpr(lambda th: _sim(name, th, SG, ck, x).spikes)(THETA))
    # segments are nested scans under remat; without checkpoint= the single-neuron simulators may still remat
    # each step (jaxlif._scan.scan(remat_steps=True)), but they scan once
    checkpointed = jaxpr(True)             # traced once (each trace and print of a Poisson simulator: 0.1 CPU-s)
    assert "remat" in checkpointed and checkpointed.count("scan[") > jaxpr(None).count("scan[")


def test_spike_outputs_have_zero_gradient_without_surrogate():
    """Documented: without a surrogate a spike count's gradient is exactly zero (not an estimate).  (One
    program; eagerly, the gradient's pieces compiled 4.)"""
    count = lambda tm, sg: jnp.sum(jaxlif.simulate_lif(PART1._replace(tau_m=tm), _data()["I"], dt=1.0,
                                                       spike_grad=sg).spikes.astype(jnp.float32))
    assert float(jax.jit(jax.grad(count), static_argnums=1)(20.0, None)) == 0.0


def test_equal_surrogates_are_one_static_argument():
    """jit caches on hash and equality of ``spike_grad``: equal factories do not recompile."""
    assert S.fast_sigmoid() == S.fast_sigmoid(0.1) and hash(S.fast_sigmoid()) == hash(S.fast_sigmoid(0.1))
    assert S.fast_sigmoid() != S.fast_sigmoid(detach_reset=True) and S.triangle() != S.arctan()


def test_rate_gradient_is_zero_and_says_so():
    """Poisson input is not reparameterised: d/d rate is zero, with a warning naming the alternatives."""
    counts = lambda r: jnp.sum(jaxlif.poisson_counts(KEY, r, 3, T=5.0, dt=DT))
    with pytest.warns(UserWarning, match=r"gradient with respect to rate is zero.*fmp_shot_noise"):
        assert float(jax.jit(jax.grad(counts))(10.0)) == 0.0              # warned while tracing; one program


# ------------------------------------------------------------------------------------------------
# record=False: only the raster (no v, g_E, g_I traces), the same raster and the same gradients
# ------------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _raster_and_grad(name, record, integrator, theta, x):
    """The raster, the offsets and the surrogate gradient of the spike count w.r.t. ``theta`` and the input."""
    def count(th, drive):
        a, b = th
        kw = dict(spike_grad=SG, record=record, integrator=integrator)
        if name == "lif":
            out = jaxlif.simulate_lif(PART1._replace(tau_m=20.0 * a, g_L=10.0 * b, t_ref=2.0), drive, dt=1.0, **kw)
        else:
            cond = CondLIFParams(exc=SynParams(2.4 * a, 2.0, 0.0), inh=SynParams(2.4 * b, 5.0, -80.0))
            out = jaxlif.simulate_cond_lif(cond, x["n_E"], x["n_I"], drive, dt=DT, **kw)
        return out.spikes.sum(), out
    drive = x["I"] if name == "lif" else 300.0 + 100.0 * jnp.sin(jnp.arange(200) / 7.0)
    (_, out), grads = jax.value_and_grad(count, argnums=(0, 1), has_aux=True)(theta, drive)
    return out, grads


@pytest.mark.parametrize("name", ["lif", "cond_lif"])
@pytest.mark.parametrize("integrator", ["euler", "exp_euler"])
def test_record_false_keeps_the_raster_and_its_gradients(name, integrator):
    """``record=False`` stores no traces but gives the recorded run's raster, offsets and gradients, bit for
    bit (with respect to parameters and to every sample of the input current)."""
    full, g_full = _raster_and_grad(name, True, integrator, THETA, _data())
    bare, g_bare = _raster_and_grad(name, False, integrator, THETA, _data())
    assert float(np.asarray(full.spikes).sum()) >= 3                      # a spiking run: the test can fail
    assert bare.v is None and (name == "lif" or (bare.g_E is None and bare.g_I is None))
    assert full.v is not None
    np.testing.assert_array_equal(np.asarray(bare.spikes), np.asarray(full.spikes))
    assert (bare.spike_offset is None) == (integrator == "euler")
    if integrator == "exp_euler":
        np.testing.assert_array_equal(np.asarray(bare.spike_offset), np.asarray(full.spike_offset))
    for a, b in zip(jax.tree.leaves(g_bare), jax.tree.leaves(g_full)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.abs(np.asarray(g_full[1])).max() > 0 and all(float(g) != 0.0 for g in g_full[0])   # gradients flow


@pytest.mark.parametrize("record", ["no", 0, None])
def test_record_must_be_a_flag(record):
    with pytest.raises(TypeError, match="record must be True or False"):
        jaxlif.simulate_lif(PART1, np.zeros(10, np.float32), dt=1.0, record=record)
    with pytest.raises(TypeError, match="record must be True or False"):
        jaxlif.simulate_cond_lif(CondLIFParams(), np.zeros(10, np.float32), np.zeros(10, np.float32), dt=DT,
                                 record=record)
