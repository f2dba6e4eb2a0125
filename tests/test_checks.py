"""Every bad argument gets a ValueError/TypeError naming it, its value and the valid range,
raised in plain Python before anything is traced.  Nothing is clipped silently."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif
from jaxlif import CondLIFParams, LIFParams, STPParams, SynParams, nma

KEY = jax.random.key(0)
ZERO = np.zeros(100)


def cond(**neuron):
    return CondLIFParams(neuron=LIFParams(**neuron))


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan"), float("inf")])
def test_non_positive_or_non_finite_dt(dt):
    with pytest.raises(ValueError, match=r"dt=.* must be > 0|dt=.* is not finite"):
        jaxlif.simulate_cond_lif(CondLIFParams(), ZERO, ZERO, dt=dt)


@pytest.mark.parametrize("T", [0.0, -5.0, float("nan")])
def test_non_positive_T(T):
    with pytest.raises(ValueError, match=r"^T="):
        jaxlif.simulate_cond_lif_poisson(KEY, T=T, dt=0.1)


def test_dt_must_be_concrete_scalar():
    with pytest.raises(TypeError, match="dt must be a scalar"):
        jaxlif.n_steps(100.0, np.array([0.1, 0.2]))


@pytest.mark.parametrize("field", ["tau_m"])
@pytest.mark.parametrize("value", [0.0, -10.0])
def test_non_positive_membrane_time_constant(field, value):
    with pytest.raises(ValueError, match=rf"params.neuron.{field}=.* must be > 0"):
        jaxlif.simulate_cond_lif(cond(**{field: value}), ZERO, ZERO, dt=0.1)


def test_time_constant_below_dt():
    with pytest.raises(ValueError, match=r"params.exc.tau_syn=0.05 ms is below the time step dt=0.1 ms"):
        jaxlif.simulate_cond_lif(CondLIFParams(exc=SynParams(2.4, 0.05, 0.0)), ZERO, ZERO, dt=0.1)
    with pytest.raises(ValueError, match=r"stp.tau_f=0.01 ms is below the time step"):
        jaxlif.ratio_curve(STPParams(0.5, 100.0, 0.01), [10.0])
    with pytest.raises(ValueError, match=r"params.neuron.tau_m=0.5 ms is below"):
        jaxlif.simulate_cond_lif(cond(tau_m=0.5), ZERO, ZERO, dt=1.0)


@pytest.mark.parametrize("name,stp", [("tau_d", STPParams(0.5, -1.0, 50.0)), ("tau_f", STPParams(0.5, 100.0, 0.0))])
def test_non_positive_stp_time_constants(name, stp):
    with pytest.raises(ValueError, match=rf"stp.{name}=.* must be > 0"):
        jaxlif.simulate_stp(stp, SynParams(1.2, 5.0, 0.0), ZERO, dt=0.1)


@pytest.mark.parametrize("U0", [0.0, -0.2, 1.5])
def test_U0_outside_unit_interval(U0):
    with pytest.raises(ValueError, match=r"U0=.* is outside \(0, 1\]"):
        jaxlif.ratio_curve(STPParams(U0, 100.0, 50.0), [10.0])
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        nma.dynamic_syn(1.2, 5.0, U0, 100.0, 50.0, ZERO, 0.1)


def test_U0_one_is_allowed():
    g1, _ = jaxlif.ratio_curve(STPParams(1.0, 100.0, 50.0), [10.0])
    assert float(g1[0]) == pytest.approx(1.2)


def test_negative_rate():
    with pytest.raises(ValueError, match=r"rate_E=.* Hz must be >= 0"):
        jaxlif.simulate_cond_lif_poisson(KEY, rate_E=-1.0, T=10.0, dt=0.1)
    with pytest.raises(ValueError, match=r"rate=.* Hz must be >= 0"):
        jaxlif.poisson_trains(KEY, -3.0, 2, T=10.0, dt=0.1)


def test_rate_times_dt_above_one():
    msg = r"rate=12000.0 Hz with dt=0.1 ms gives p = rate\*dt/1000 = 1.2 > 1; need rate <= 10000 Hz"
    with pytest.raises(ValueError, match=msg):
        jaxlif.poisson_trains(KEY, 12000.0, 2, T=10.0, dt=0.1)
    with pytest.raises(ValueError, match=msg):
        nma.Poisson_generator(nma.default_pars(T=10.0), 12000.0, 2)
    with pytest.raises(ValueError, match=r"rate_I=2000.0 Hz with dt=1.0 ms gives p"):
        jaxlif.simulate_cond_lif_poisson(KEY, rate_I=2000.0, T=10.0, dt=1.0)


def test_regular_train_interval_under_one_step():
    with pytest.raises(ValueError, match=r"rates_hz=\[20000.0\] Hz give a regular inter-spike interval under one step"):
        jaxlif.ratio_curve(jaxlif.STD, [10.0, 20000.0])
    with pytest.raises(ValueError, match="under one step"):
        jaxlif.regular_train(20000.0, T=10.0, dt=0.1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_parameters(bad):
    with pytest.raises(ValueError, match=r"params.neuron.E_L=.* is not finite"):
        jaxlif.simulate_cond_lif(cond(E_L=bad), ZERO, ZERO, dt=0.1)
    with pytest.raises(ValueError, match=r"stp.tau_d=.* is not finite"):
        jaxlif.ratio_curve(STPParams(0.5, bad, 50.0), [10.0])
    with pytest.raises(ValueError, match=r"params.inh.g_bar=.* is not finite"):
        jaxlif.simulate_cond_lif(CondLIFParams(inh=SynParams(bad, 5.0, -80.0)), ZERO, ZERO, dt=0.1)


def test_nan_threshold_rejected_but_inf_allowed():
    with pytest.raises(ValueError, match=r"V_th is NaN"):
        jaxlif.simulate_cond_lif(cond(V_th=float("nan")), ZERO, ZERO, dt=0.1)
    out = jaxlif.simulate_cond_lif(cond(V_th=float("inf")), ZERO + 1, ZERO, dt=0.1)
    assert not bool(out.spikes.any())


def test_nan_in_inputs():
    I = np.zeros(100)
    I[3] = np.nan
    with pytest.raises(ValueError, match=r"I_inj=.* is not finite"):
        jaxlif.simulate_cond_lif(CondLIFParams(), ZERO, ZERO, I, dt=0.1)
    with pytest.raises(ValueError, match=r"n_E=.* must be >= 0"):
        jaxlif.simulate_cond_lif(CondLIFParams(), ZERO - 1, ZERO, dt=0.1)


def test_negative_conductance_and_refractory():
    with pytest.raises(ValueError, match=r"params.exc.g_bar=.* must be >= 0"):
        jaxlif.simulate_cond_lif(CondLIFParams(exc=SynParams(-1.0, 2.0, 0.0)), ZERO, ZERO, dt=0.1)
    with pytest.raises(ValueError, match=r"params.neuron.t_ref=.* must be >= 0"):
        jaxlif.simulate_cond_lif(cond(t_ref=-2.0), ZERO, ZERO, dt=0.1)


def test_shape_disagreements():
    with pytest.raises(ValueError, match=r"n_E has 100 steps but n_I has 50"):
        jaxlif.simulate_cond_lif(CondLIFParams(), ZERO, np.zeros(50), dt=0.1)
    with pytest.raises(ValueError, match=r"I_inj must be a scalar or have shape \(100,\)"):
        jaxlif.simulate_cond_lif(CondLIFParams(), ZERO, ZERO, np.zeros(99), dt=0.1)
    with pytest.raises(ValueError, match=r"n_E must be per-step counts of shape \(n_steps,\)"):
        jaxlif.simulate_cond_lif(CondLIFParams(), np.zeros((80, 100)), ZERO, dt=0.1)


def test_batch_axes_disagree():
    with pytest.raises(ValueError, match=r"rate_E.* has shape \(3,\); every parameter and rate must be a scalar "
                                         r"or have shape \(batch_size,\) = \(4,\)"):
        jaxlif.simulate_cond_lif_batch(KEY, 4, rate_E=np.ones(3))
    bad = CondLIFParams(neuron=LIFParams(tau_m=np.full(5, 10.0)))
    with pytest.raises(ValueError, match=r"params.neuron.tau_m has shape \(5,\)"):
        jaxlif.simulate_cond_lif_batch(KEY, 4, bad)


def test_wrong_types():
    with pytest.raises(TypeError, match="key must be a jax.random key"):
        jaxlif.poisson_trains(123, 10.0, 2, T=10.0, dt=0.1)
    with pytest.raises(TypeError, match="params must be a jaxlif.CondLIFParams"):
        jaxlif.simulate_cond_lif({"tau_m": 10.0}, ZERO, ZERO, dt=0.1)
    with pytest.raises(TypeError, match="n must be an int"):
        jaxlif.poisson_trains(KEY, 10.0, 2.5, T=10.0, dt=0.1)
    with pytest.raises(TypeError, match="myseed must be an int seed or False"):
        nma.Poisson_generator(nma.default_pars(T=10.0), 10.0, 2, myseed="abc")


def test_errors_raise_before_tracing():
    """Validation happens on concrete values: a bad value never reaches jit (no tracer in the message)."""
    with pytest.raises(ValueError) as err:
        jaxlif.simulate_cond_lif(cond(tau_m=-1.0), ZERO, ZERO, dt=0.1)
    assert "Traced" not in str(err.value) and "-1.0" in str(err.value)
    # under a user's own vmap the values are tracers: checks are skipped, results still computed
    out = jax.vmap(lambda tm: jaxlif.simulate_cond_lif(cond(tau_m=tm), ZERO, ZERO, dt=0.1).v[-1])(jnp.array([5.0, 10.0]))
    assert out.shape == (2,)


# ------------------------------------------------------------------------------------------------
# Shapes a newcomer gets wrong: per-neuron arrays in single-neuron simulators, lists, empty inputs
# ------------------------------------------------------------------------------------------------

def test_per_neuron_arrays_point_to_vmap_and_batch():
    two = np.array([10.0, 20.0])
    with pytest.raises(ValueError, match=r"params.neuron.tau_m has shape \(2,\), expected \(\); "
                                         r"simulate_cond_lif simulates one neuron.*jax.vmap.*"
                                         r"jaxlif.batch.simulate_cond_lif_batch"):
        jaxlif.simulate_cond_lif(cond(tau_m=two), ZERO, ZERO, dt=0.1)
    with pytest.raises(ValueError, match=r"params.tau_m has shape \(2,\).*simulate_lif simulates one neuron"):
        jaxlif.simulate_lif(LIFParams(tau_m=two), ZERO, dt=0.1)
    with pytest.raises(ValueError, match=r"params.exc.g_bar has shape \(2,\).*jax.vmap"):
        jaxlif.simulate_cond_lif_poisson(KEY, CondLIFParams(exc=SynParams(two, 2.0, 0.0)), T=10.0)
    with pytest.raises(ValueError, match=r"rate_E has shape \(2,\), expected a scalar rate in Hz.*jax.vmap"):
        jaxlif.simulate_stp_lif_poisson(KEY, rate_E=two, T=10.0)
    with pytest.raises(ValueError, match=r"params.stp_E.U0 has shape \(3,\), expected \(\) or \(80,\); "
                                         r"synapse parameters are scalars or one value per excitatory train"):
        jaxlif.simulate_stp_lif_poisson(KEY, jaxlif.STPLIFParams(stp_E=STPParams(np.full(3, 0.5), 250.0, 150.0)))
    with pytest.raises(ValueError, match=r"stp.U0 has shape \(3,\), but the spikes have \(2,\) trains"):
        jaxlif.simulate_stp(STPParams(np.full(3, 0.5), 100.0, 50.0), SynParams(1.2, 5.0, 0.0), np.zeros((2, 10)),
                            dt=0.1)


def test_lists_are_read_as_arrays():
    """A list is an array: per-train values work where arrays work, and get the array's error elsewhere."""
    train = np.zeros((2, 100))
    train[:, ::9] = 1.0
    as_list = jaxlif.simulate_stp(STPParams([0.5, 0.2], 100.0, [50.0, 750.0]), SynParams(1.2, 5.0, 0.0), train,
                                  dt=0.1)
    as_array = jaxlif.simulate_stp(STPParams(np.array([0.5, 0.2]), 100.0, np.array([50.0, 750.0])),
                                   SynParams(1.2, 5.0, 0.0), train, dt=0.1)
    for a, b in zip(as_list, as_array):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match=r"params.neuron.tau_m has shape \(1,\), expected \(\)"):
        jaxlif.simulate_cond_lif(cond(tau_m=[10.0]), ZERO, ZERO, dt=0.1)
    with pytest.raises(TypeError, match=r"params.neuron.tau_m must be a real number"):
        jaxlif.simulate_cond_lif(cond(tau_m=["ten"]), ZERO, ZERO, dt=0.1)


def test_empty_inputs_raise_instead_of_returning_one_sample():
    empty = np.zeros(0)
    with pytest.raises(ValueError, match=r"I has shape \(0,\): no time steps"):
        jaxlif.simulate_lif(LIFParams(), empty, dt=0.1)
    with pytest.raises(ValueError, match=r"n_E has shape \(0,\): no time steps"):
        jaxlif.simulate_cond_lif(CondLIFParams(), empty, empty, dt=0.1)
    with pytest.raises(ValueError, match=r"spikes_E has shape \(3, 0\): no time steps"):
        jaxlif.simulate_stp_lif(jaxlif.STPLIFParams(), np.zeros((3, 0)), np.zeros((1, 0)), dt=0.1)
    with pytest.raises(ValueError, match=r"spikes has shape \(0,\): no time steps"):
        jaxlif.simulate_stp(jaxlif.STD, SynParams(1.2, 5.0, 0.0), empty, dt=0.1)


def test_bad_gradient_options_are_named():
    with pytest.raises(TypeError, match=r"spike_grad must be None .* or a jaxlif.surrogates.Surrogate"):
        jaxlif.simulate_cond_lif(CondLIFParams(), ZERO, ZERO, dt=0.1, spike_grad="sigmoid")
    with pytest.raises(ValueError, match=r"checkpoint=0 must be None or False"):
        jaxlif.simulate_cond_lif(CondLIFParams(), ZERO, ZERO, dt=0.1, checkpoint=0)
    with pytest.warns(UserWarning, match=r"peaks at 0.25/mV; with V_th - V_reset = 20 mV the gradient through"):
        with pytest.raises(ValueError, match="checkpoint"):          # the warning comes first
            jaxlif.simulate_cond_lif(CondLIFParams(), ZERO, ZERO, dt=0.1,
                                     spike_grad=jaxlif.surrogates.fast_sigmoid(0.5), checkpoint=-1)
