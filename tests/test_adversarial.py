"""Regression tests for the adversarial findings of issue 21 (one test or two per finding).

Small on purpose: the few programs compiled here share their shapes (T = 10 ms at dt = 0.1 ms).
"""

import functools
import os
import stat
import warnings

import jax
import numpy as np
import pytest

import jaxlif
from jaxlif import _stability, inputs

KEY = jax.random.key(0)
T = 10.0


# ----------------------------------------------------------------------------------------------
# A huge number of trains: refused at once with the limit and the reason (was a hang)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: jaxlif.simulate_cond_lif_poisson(KEY, n_E=10**9, T=T),
    lambda: jaxlif.simulate_stp_lif_poisson(KEY, n_I=10**9, T=T),
    lambda: jaxlif.batch.simulate_cond_lif_batch(KEY, 2, n_E=10**9, T=T),
    lambda: jaxlif.poisson_counts(KEY, 10.0, 10**9, T=T, dt=0.1),
    lambda: inputs.binomial_step(KEY, 1, 0.1, 10**9),
])
def test_too_many_trains_is_refused_with_the_limit(call):
    with pytest.raises(ValueError, match=rf"=1000000000 trains is above the limit of {inputs.MAX_TRAINS}: "
                                         r"the per-step sampler"):
        call()


def test_the_limit_itself_is_accepted():
    assert inputs.check_n_trains("n_E", inputs.MAX_TRAINS) == inputs.MAX_TRAINS
    with pytest.raises(ValueError, match="n_E=1000001 trains"):
        inputs.check_n_trains("n_E", inputs.MAX_TRAINS + 1)


# ----------------------------------------------------------------------------------------------
# Reference inputs of the batch simulators: a traced invalid rate poisons (was: zeros)
# ----------------------------------------------------------------------------------------------

def test_batch_reference_inputs_poison_an_invalid_traced_rate():
    import jax.numpy as jnp
    counts = jax.jit(lambda r: jaxlif.cond_lif_batch_inputs(KEY, 2, rate_E=r, rate_I=10.0, T=T)[0])
    bad = np.asarray(counts(-5.0))
    assert bad.shape == (2, 100) and np.isnan(bad).all()
    mixed = np.asarray(counts(jnp.array([50.0, -5.0])))          # only the invalid neuron is poisoned
    good = np.asarray(jaxlif.cond_lif_batch_inputs(KEY, 2, rate_E=np.array([50.0, 0.0]), rate_I=10.0, T=T)[0])
    assert np.isnan(mixed[1]).all() and np.array_equal(mixed[0], good[0]) and good[0].sum() > 0
    trains = jax.jit(lambda r: jaxlif.batch.stp_lif_batch_trains(KEY, 2, rate_E=r, rate_I=0.0, n_E=2, n_I=1,
                                                                 T=1.0)[0])(jnp.array([-5.0, 0.0]))
    assert np.asarray(trains[0]).all() and not np.asarray(trains[1]).any()
    with pytest.raises(ValueError, match=r"rate_E=-5.0 Hz must be finite"):
        jaxlif.checked(counts)(-5.0)


# ----------------------------------------------------------------------------------------------
# Forward Euler beyond its stable range: poisoned and warned (was: V = +213 mV, or 1e27 mV)
# ----------------------------------------------------------------------------------------------

def _one_volley(count):
    """Counts with one excitatory volley of ``count`` spikes at index 1 (g_bar = 1 nS: g_E[1] = count nS)."""
    n_E = np.zeros(100, np.float32)
    n_E[1] = count
    return n_E


def test_euler_factor_above_one_poisons_and_warns_below_one_is_untouched():
    # a = dt/tau_m (1 + g_E/g_L) = 0.01 (1 + g_E/10): 989 nS gives 0.999, 991 nS gives 1.001
    params = jaxlif.CondLIFParams(exc=jaxlif.SynParams(1.0, 2.0, 0.0))
    zero = np.zeros(100, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = jaxlif.simulate_cond_lif(params, _one_volley(989), zero, dt=0.1, spiking=False)
    v = np.asarray(ok.v)
    # a <= 1: every sample lies between its predecessor and the equilibrium, so within [E_L, E_E]
    assert np.isfinite(v).all() and v.min() >= -75.0 - 1e-3 and v.max() <= 0.0 and v.max() > -30.0
    with pytest.warns(_stability.EulerUnstableWarning, match=r"simulate_cond_lif: forward Euler left its stable "
                                                             r"range: .*dt\*\(g_L\+g_E\+g_I\)/C"):
        bad = jaxlif.simulate_cond_lif(params, _one_volley(991), zero, dt=0.1, spiking=False)
    assert np.isnan(np.asarray(bad.v)).all() and np.asarray(bad.spikes).all()


def test_free_membrane_potential_blow_up_of_the_issue_is_poisoned_per_lane_under_jit_and_vmap():
    params = jaxlif.CondLIFParams(exc=jaxlif.SynParams(1e3, 2.0, 0.0))
    with pytest.warns(_stability.EulerUnstableWarning, match="simulate_cond_lif_poisson"):
        r = jaxlif.simulate_cond_lif_poisson(KEY, params, spiking=False, T=T)
    assert np.isnan(np.asarray(r.v)).all()
    run = jax.jit(jax.vmap(lambda rate: jaxlif.simulate_cond_lif_poisson(KEY, rate_E=rate, T=T).v))
    v = np.asarray(run(np.array([10.0, 1e4], np.float32)))           # 1e4 Hz: the issue's +213 mV
    assert np.isnan(v[1]).all() and np.isfinite(v[0]).all() and v[0].max() < 0.0
    with pytest.raises(ValueError, match=r"forward Euler left its stable range.*largest factor"):
        jaxlif.checked(run)(np.array([10.0, 1e4], np.float32))
    with warnings.catch_warnings():                                  # the exponential integrator has no such limit
        warnings.simplefilter("error")
        v = jaxlif.simulate_cond_lif_poisson(KEY, params, spiking=False, T=T, integrator="exp_euler").v
    assert np.isfinite(np.asarray(v)).all() and float(np.max(v)) <= 0.0


def test_batch_simulators_poison_the_unstable_neurons_only():
    import jax.numpy as jnp
    params = jaxlif.CondLIFParams(exc=jaxlif.SynParams(jnp.array([2.4, 1e3]), 2.0, 0.0))
    with pytest.warns(_stability.EulerUnstableWarning, match="simulate_cond_lif_batch: 1 of 2 neurons"):
        b = jaxlif.batch.simulate_cond_lif_batch(KEY, 2, params, spiking=False, T=T, record=True)
    assert np.asarray(b.spike_count).tolist() == [0, -1]
    assert np.isnan(np.asarray(b.v)[1]).all() and np.isfinite(np.asarray(b.v)[0]).all()
    stp = jaxlif.STPLIFParams()._replace(exc=jaxlif.SynParams(jnp.array([1e4, 2.4]), 2.0, 0.0))
    with pytest.warns(_stability.EulerUnstableWarning, match="simulate_stp_lif_batch: 1 of 2 neurons"):
        b = jaxlif.batch.simulate_stp_lif_batch(KEY, 2, stp, rate_E=1000.0, T=T)
    count = np.asarray(b.spike_count)
    assert count[0] == -1 and count[1] >= 0
    with pytest.warns(_stability.EulerUnstableWarning, match="simulate_stp_lif_poisson"):
        r = jaxlif.simulate_stp_lif_poisson(KEY, stp._replace(exc=jaxlif.SynParams(1e4, 2.0, 0.0)), rate_E=1000.0,
                                            T=T, record=False)
    assert np.asarray(r.spikes).all()

