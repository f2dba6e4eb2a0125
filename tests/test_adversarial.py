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
