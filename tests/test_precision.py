"""float16 and bfloat16 (issue 18, item 5; issue 21's bfloat16 message).

The decision, per entry point, from the measurement in the first test:

* **A state held in float16/bfloat16 is refused** by every step function (``lif_step``,
  ``cond_lif_step``, ``stp_lif_step``, ``stp_step``, ``stp_decay``; ``network_step`` through the
  membrane step) with a ``TypeError`` that names the variable, the dtype and why: the Euler increment
  ``dt/tau_m*(V_inf - v)`` is below the format's resolution near the resting potential, so ``v`` stalls
  and spikes are lost silently (bfloat16 everywhere, float16 near threshold).  Computing the
  increment in float32 would not help: the *state* cannot hold the result.
* **Low-precision inputs and parameters work** everywhere: the simulators (which own their state) and the
  step functions (given a float32 state) widen them exactly to the state's dtype, so the run equals the
  float32 run on the same (already rounded) values: spike counts equal, tolerance 0, and every trace bit
  for bit.  Against the float32 values *before* the user's rounding, a noisy 200 pA drive over 1 s gives
  the same count (tolerance stated and tested: 1 spike).
* A non-numeric input is refused with a message that names the argument and the dtype and never prints
  a whole large array.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import jaxlif

LOW = [jnp.bfloat16, jnp.float16]
DT = 0.1


def _cast(tree, dtype):
    """Every leaf as a jax array of ``dtype``, rounded by NumPy (ml_dtypes) on the host and put on the device:
    ``jnp.asarray(x, dtype)`` compiled a conversion program per shape and pair of types, and ``jnp.asarray`` of a
    NumPy array a copy program per shape (``jax.device_put`` compiles nothing); a widening is exact either way,
    a narrowing rounds to nearest even either way."""
    return jax.tree.map(lambda x: jax.device_put(np.asarray(x).astype(dtype)), tree)


#: The spike count of the tutorial's LIF (default parameters) for each row of currents ``(rows, 10_000)`` [pA]:
#: one compiled program for the two tests that count (three rows each).
_lif_counts = jax.jit(jax.vmap(lambda I: jaxlif.simulate_lif(jaxlif.LIFParams(), I, dt=DT).spikes.sum()))


def _same(a, b):
    """Two results equal bit for bit (NaN == NaN), leaf by leaf."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.dtype != jnp.bfloat16 and x.dtype != jnp.float16
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------------------------
# The measurement behind the decision: a NumPy step-by-step oracle of the tutorial's LIF in each format
# ----------------------------------------------------------------------------------------------

def _numpy_lif_counts(I, dtype, steps=10_000, dt=DT):
    """Spikes of the tutorial's LIF (default parameters) at constant currents ``I`` [pA] over ``steps``,
    every operation rounded to ``dtype`` (NumPy / ml_dtypes arithmetic)."""
    c = lambda x: np.asarray(x, dtype)   # noqa: E731
    v = np.full(len(I), -65.0, dtype)
    ref = np.zeros(len(I), dtype)
    count = np.zeros(len(I), int)
    I, k, g_L = c(I), c(dt / 10.0), c(10.0)
    for _ in range(steps - 1):
        refr = ref > 0
        spike = ~refr & (v >= c(-55.0))
        v = np.where(refr | spike, c(-75.0), v)
        ref = np.where(refr, ref - c(1.0), np.where(spike, c(2.0 / dt), ref)).astype(dtype)
        count += spike
        v = (v + k * (-(v - c(-75.0)) + I / g_L)).astype(dtype)
    return count


def test_low_precision_state_loses_spikes_measured():
    """Why the state is refused: in float16 the neuron stops firing near threshold, in bfloat16 almost
    everywhere; the float32 oracle agrees with jaxlif's simulate_lif (the numbers quoted in the error)."""
    currents = [210.0, 250.0, 400.0]
    c32 = _numpy_lif_counts(currents, np.float32)
    c16 = _numpy_lif_counts(currents, np.float16)
    cbf = _numpy_lif_counts(currents, ml_dtypes.bfloat16)
    jax_counts = _lif_counts(np.repeat(np.asarray(currents, np.float32)[:, None], 10_000, axis=1))
    np.testing.assert_array_equal(c32, jax_counts)
    assert c32[0] == 31 and c32[1] == 55                       # the numbers in the refusal message
    assert c16[0] == 0 and cbf[1] == 0                          # float16 near threshold, bfloat16 at 250 pA
    assert abs(int(c16[2]) - int(c32[2])) <= 1                  # strong drive: float16 happens to be close


# ----------------------------------------------------------------------------------------------
# Step functions: a low-precision state is refused, naming the variable, the dtype and the reason
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def net():
    """A small E-I network (dense), shared by the tests of this module."""
    return jaxlif.ei_network(jax.random.key(0), n_E=8, n_I=2, p=0.5, sparse=False, delay=2, drive_rate=200.0)


@pytest.mark.parametrize("dtype", LOW)
def test_step_functions_refuse_a_low_precision_state(dtype, net):
    name = jnp.dtype(dtype).name
    # the states and inputs built by NumPy (ml_dtypes): built with jax.numpy operations they compiled 8
    # one-operation programs, 2026-12-07
    lif_state = jaxlif.LIFState(np.asarray(-65.0, dtype), np.asarray(0.0, dtype))
    scan = lambda step, state: jax.lax.scan(step, state, np.full(5, 300.0, dtype))   # noqa: E731
    with pytest.raises(TypeError, match=rf"state.v has dtype {name}; jaxlif refuses a float16/bfloat16 state "
                                        r"because the Euler update v \+= dt/tau_m.*resolves only .* mV near the "
                                        r"resting potential.*spikes are lost.*float32"):
        scan(lambda st, i: jaxlif.lif_step(jaxlif.LIFParams(), st, i, DT), lif_state)
    zero = np.asarray(0.0, dtype)
    with pytest.raises(TypeError, match=rf"cond_lif_step: state.neuron.v has dtype {name}"):
        jaxlif.cond_lif_step(jaxlif.CondLIFParams(), jaxlif.CondLIFState(lif_state, zero, zero), (1.0, 0.0, 0.0), DT)
    f32_neuron = jaxlif.LIFState(np.float32(-65.0), np.float32(0.0))        # lif_init(LIFParams()): V_init, 0
    with pytest.raises(TypeError, match=rf"cond_lif_step: state.g_E has dtype {name}.*Euler decay"):
        jaxlif.cond_lif_step(jaxlif.CondLIFParams(), jaxlif.CondLIFState(f32_neuron, zero, zero), (1.0, 0.0, 0.0), DT)
    syn = jaxlif.STPState(np.zeros(3, dtype), np.ones(3, dtype), np.zeros(3, dtype))
    with pytest.raises(TypeError, match=rf"stp_step: state.u has dtype {name}.*R stops recovering"):
        jaxlif.stp_step(jaxlif.STD, jaxlif.SynParams(1.2, 5.0, 0.0), syn, np.ones(3, np.float32), DT)
    with pytest.raises(TypeError, match=rf"stp_decay: state.u has dtype {name}"):
        jaxlif.plasticity.stp_decay(jaxlif.STD, jaxlif.SynParams(1.2, 5.0, 0.0), syn, 3, DT)
    stp_state = jaxlif.stp_lif.STPLIFState(lif_state, syn, syn)
    with pytest.raises(TypeError, match=rf"has dtype {name}"):
        jaxlif.stp_lif_step(jaxlif.STPLIFParams(), stp_state, (np.ones(3, np.float32), np.ones(3, np.float32), 0.0), DT)
    with pytest.raises(TypeError, match=rf"state.v has dtype {name}"):     # the network of the test below
        # traced, like the scans above: the refusal comes before anything compiles (called outside jit,
        # network_init and the stacking of the parameters compiled 10 one-operation programs per dtype, 2026-12-07)
        jax.jit(lambda: jaxlif.network_step(net, jaxlif.network_init(net, dtype), (0.0, 0.0, 0.0), DT))()


@pytest.mark.parametrize("dtype", LOW)
def test_step_functions_widen_low_precision_inputs_and_parameters(dtype):
    """A float32 state with float16/bfloat16 parameters and current: exactly the float32 step on the same
    values (the parameters are widened before ``dt/tau_m`` etc. are formed, not computed in low precision)."""
    params = _cast(jaxlif.LIFParams(tau_m=12.3, g_L=9.7), dtype)
    I = jax.device_put(np.linspace(150.0, 450.0, 200, dtype=np.float32).astype(dtype))     # rounded by NumPy
    run = lambda p, I: jax.lax.scan(lambda st, i: jaxlif.lif_step(p, st, i, DT),   # noqa: E731
                                    jaxlif.neurons.lif_init(jaxlif.LIFParams()), I)
    low = run(params, I)                  # once: every eager scan of a new step function compiles anew
    _same(low, run(_cast(params, jnp.float32), _cast(I, jnp.float32)))
    assert int(np.asarray(low[1][1]).sum()) > 0


# ----------------------------------------------------------------------------------------------
# Simulators: low-precision inputs and parameters give the float32 run on the same values, bit for bit
# ----------------------------------------------------------------------------------------------

STEPS = 400


@pytest.fixture(scope="module")
def drive():
    rng = np.random.default_rng(11)
    I = 200.0 + 100.0 * rng.standard_normal(STEPS)
    return {"I": I, "n_E": rng.poisson(1.0, STEPS), "n_I": rng.poisson(0.2, STEPS),
            "s_E": rng.random((4, STEPS)) < 0.05, "s_I": rng.random((2, STEPS)) < 0.05}


def _low_and_f32(dtype, *trees):
    low = tuple(_cast(t, dtype) for t in trees)
    return low, tuple(_cast(t, jnp.float32) for t in low)


@pytest.mark.parametrize("dtype", LOW)
def test_simulate_lif_low_precision(drive, dtype):
    (p, I), (p32, I32) = _low_and_f32(dtype, jaxlif.LIFParams(tau_m=12.3), drive["I"])
    res = jaxlif.simulate_lif(p, I, dt=DT)
    _same(res, jaxlif.simulate_lif(p32, I32, dt=DT))
    assert np.asarray(res.spikes).sum() > 0


def test_per_step_simulators_bfloat16(drive):
    """bfloat16 parameters (and current, rate) give the float32 run on the same values; the simulators
    widen them on entry, so both calls run one compiled program (a traced bfloat16 value is widened in
    the step functions instead: tested above)."""
    dtype = jnp.bfloat16
    key = jax.random.key(1)
    (p, I), (p32, I32) = _low_and_f32(dtype, jaxlif.CondLIFParams(), np.float32(50.0))
    res = jaxlif.simulate_cond_lif(p, drive["n_E"], drive["n_I"], I, dt=DT)
    _same(res, jaxlif.simulate_cond_lif(p32, drive["n_E"], drive["n_I"], I32, dt=DT))
    assert np.asarray(res.spikes).sum() > 0
    # the float32 rate is an array (not a weakly typed Python number), but the bfloat16 rate reaches the program
    # unwidened (jaxlif/neurons/cond.py, simulate_cond_lif_poisson), so these two calls compile two programs
    # (measured 2026-12-07: 0.25 CPU-s for the second one)
    _same(jaxlif.simulate_cond_lif_poisson(key, p, rate_E=jnp.asarray(40.0, dtype), T=STEPS * DT, dt=DT),
          jaxlif.simulate_cond_lif_poisson(key, p32, rate_E=np.float32(40.0), T=STEPS * DT, dt=DT))
    (q,), (q32,) = _low_and_f32(dtype, jaxlif.STPLIFParams())
    _same(jaxlif.simulate_stp_lif(q, drive["s_E"], drive["s_I"], dt=DT),
          jaxlif.simulate_stp_lif(q32, drive["s_E"], drive["s_I"], dt=DT))
    _same(jaxlif.simulate_stp_lif_poisson(key, q, n_E=4, n_I=2, T=STEPS * DT, dt=DT),
          jaxlif.simulate_stp_lif_poisson(key, q32, n_E=4, n_I=2, T=STEPS * DT, dt=DT))
    (s, syn), (s32, syn32) = _low_and_f32(dtype, jaxlif.STF, jaxlif.SynParams(1.2, 5.0, 0.0))
    _same(jaxlif.simulate_stp(s, syn, drive["s_E"], dt=DT), jaxlif.simulate_stp(s32, syn32, drive["s_E"], dt=DT))
    _same(jaxlif.ratio_curve(s, [20.0, 50.0]), jaxlif.ratio_curve(s32, [20.0, 50.0]))
    _same(jaxlif.ratio_curve_exact(s, [20.0, 50.0]), jaxlif.ratio_curve_exact(s32, [20.0, 50.0]))


def test_network_bfloat16_weights(net):
    def cast(net, dtype):                  # by NumPy (ml_dtypes): nothing to compile
        return dataclasses.replace(net, projections=tuple(dataclasses.replace(q, weights=_cast(q.weights, dtype))
                                                          for q in net.projections))

    low = cast(net, jnp.bfloat16)
    res = jaxlif.simulate_network(jax.random.key(2), low, T=20.0, dt=DT)
    _same(res, jaxlif.simulate_network(jax.random.key(2), cast(low, jnp.float32), T=20.0, dt=DT))
    assert sum(int(np.asarray(s).sum()) for s in res.spikes.values()) > 0


def test_batch_simulators_low_precision():
    key = jax.random.key(0)
    stats = jaxlif.batch.Stats(v=True)
    (p,), (p32,) = _low_and_f32(jnp.bfloat16, jaxlif.CondLIFParams())
    a = jaxlif.simulate_cond_lif_batch(key, 4, p, rate_E=jnp.asarray(20.0, jnp.float16), T=100.0, stats=stats)
    _same(a, jaxlif.simulate_cond_lif_batch(key, 4, p32, rate_E=20.0, T=100.0, stats=stats))
    (q,), (q32,) = _low_and_f32(jnp.float16, jaxlif.STPLIFParams())
    _same(jaxlif.simulate_stp_lif_batch(key, 4, q, T=100.0, stats=stats),
          jaxlif.simulate_stp_lif_batch(key, 4, q32, T=100.0, stats=stats))


def test_bfloat16_rounding_of_the_drive_changes_the_count_by_at_most_one_spike():
    """The stated tolerance against float32 values *before* the user's rounding (relative 2**-9 for
    bfloat16): a noisy 200 pA drive over 1 s, where the neuron fires about 24 times."""
    I = (200.0 + 100.0 * np.random.default_rng(0).standard_normal(10_000)).astype(np.float32)
    # rounded by NumPy (ml_dtypes: to nearest even, as XLA's conversion), the counts by the program of the
    # first test (the conversions and the stack compiled 6 programs, 2026-12-07)
    counts = np.asarray(_lif_counts(np.stack([I, I.astype(jnp.bfloat16).astype(np.float32),
                                              I.astype(np.float16).astype(np.float32)])))
    assert counts[0] > 10
    assert abs(int(counts[1]) - int(counts[0])) <= 1 and abs(int(counts[2]) - int(counts[0])) <= 1


# ----------------------------------------------------------------------------------------------
# Messages (issue 21): bfloat16 is a real number; what is not, is named with its dtype, never printed whole
# ----------------------------------------------------------------------------------------------

def test_non_numeric_input_message_names_argument_and_dtype_and_is_short():
    with pytest.raises(TypeError) as err:
        jaxlif.simulate_lif(jaxlif.LIFParams(), np.array(["12.5"] * 100_000), dt=DT)
    text = str(err.value)
    assert text.startswith("I must be a real number") and "dtype <U4" in text and len(text) < 300, text
    with pytest.raises(TypeError, match=r"params.tau_m must be a real number.*dtype object") as err:
        jaxlif.simulate_lif(jaxlif.LIFParams(tau_m=np.array(None)), np.ones(10, np.float32), dt=DT)
    assert len(str(err.value)) < 300
    with pytest.raises(ValueError, match=r"I=array of shape \(1,\) \(first values \[inf\]\)"):   # bfloat16 checked
        jaxlif.simulate_lif(jaxlif.LIFParams(), jax.device_put(np.array([1.0, np.inf, 2.0], jnp.bfloat16)), dt=DT)
    with pytest.raises(ValueError, match=r"params.tau_m=0.0500.* ms is below the time step"):
        jaxlif.simulate_lif(jaxlif.LIFParams(tau_m=jnp.bfloat16(0.05)), jax.device_put(np.ones(10, jnp.bfloat16)),
                            dt=DT)
