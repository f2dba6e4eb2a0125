"""Checks that survive tracing: invalid traced values poison the outputs, and ``jaxlif.checked``
raises naming the argument (the mechanism in ``jaxlif._checks``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif
from jaxlif import _checks

KEY = jax.random.key(0)


def test_poison_sentinels_per_dtype():
    tree = (jnp.ones(3), jnp.ones(3, jnp.int32), jnp.zeros(3, bool), jnp.ones(3, jnp.uint32), None)
    out = _checks.poison(jnp.asarray(False), tree)
    assert np.isnan(out[0]).all() and (out[1] == -1).all() and out[2].all()
    assert (np.asarray(out[3]) == np.iinfo(np.uint32).max).all() and out[4] is None
    same = _checks.poison(jnp.asarray(True), tree)
    for a, b in zip(same[:4], tree[:4]):
        np.testing.assert_array_equal(a, b)


def test_poison_follows_a_batched_flag():
    x = jnp.arange(6.0).reshape(3, 2)
    out = _checks.poison(jnp.array([True, False, True]), x)
    np.testing.assert_array_equal(np.isnan(out), [[False, False], [True, True], [False, False]])


def _cond_sim(rate):
    return jaxlif.simulate_cond_lif_poisson(KEY, rate_E=rate, T=50.0, record=True)


def test_traced_invalid_rate_is_poisoned_not_plausible():
    out = jax.jit(jax.vmap(_cond_sim))(jnp.array([10.0, -5.0, 2e4]))
    valid = jaxlif.simulate_cond_lif_poisson(KEY, rate_E=10.0, T=50.0, record=True)
    np.testing.assert_array_equal(out.spikes[0], valid.spikes)      # valid rows untouched
    np.testing.assert_allclose(out.v[0], valid.v)
    for row in (1, 2):
        assert np.isnan(out.v[row]).all() and np.isnan(out.g_E[row]).all()
        assert out.spikes[row].all()                                 # impossible raster


def test_checked_mode_raises_naming_the_argument():
    f = jax.jit(jax.vmap(_cond_sim))
    with pytest.raises(ValueError, match=r"rate_E=.*-5.* Hz must be finite, >= 0"):
        _checks.checked(f)(jnp.array([10.0, -5.0]))
    out = _checks.checked(f)(jnp.array([10.0, 12.0]))                # valid: no error
    assert not np.isnan(out.v).any()


def test_checked_mode_names_a_traced_parameter_field():
    def sim(tau_m):
        p = jaxlif.CondLIFParams(neuron=jaxlif.LIFParams(tau_m=tau_m))
        return jaxlif.simulate_cond_lif_poisson(KEY, p, T=50.0, record=False).spikes
    with pytest.raises(ValueError, match=r"params\.neuron\.tau_m=.* ms must be finite and >= dt = 0\.1 ms"):
        _checks.checked(jax.vmap(sim))(jnp.array([10.0, 0.05]))
    assert jax.vmap(sim)(jnp.array([10.0, 0.05]))[1].all()


def test_checked_rejects_non_callables():
    with pytest.raises(TypeError, match="callable"):
        _checks.checked(3)
