"""Regression tests for the adversarial findings of issue 21 (one test or two per finding).

Small on purpose: the few programs compiled here share their shapes (T = 10 ms at dt = 0.1 ms).
"""

import jax
import numpy as np
import pytest

import jaxlif
from jaxlif import inputs

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
