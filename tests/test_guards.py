"""Checks that survive tracing: invalid traced values poison the outputs, and ``jaxlif.checked``
raises naming the argument (the mechanism in ``jaxlif._checks``)."""

import jax
import numpy as np
import pytest

import jaxlif
from jaxlif import CondLIFParams, LIFParams, SynParams, _checks

KEY = jax.random.key(0)


def test_poison_sentinels_per_dtype():
    # NumPy inputs and checks: only the one program compiles (jnp.ones and jnp comparisons were 10 more)
    tree = (np.ones(3, np.float32), np.ones(3, np.int32), np.zeros(3, bool), np.ones(3, np.uint32), None)
    poison = jax.jit(_checks.poison)                   # one program for both flags
    out = _numpy(poison(False, tree))
    assert np.isnan(out[0]).all() and (out[1] == -1).all() and out[2].all()
    assert (np.asarray(out[3]) == np.iinfo(np.uint32).max).all() and out[4] is None
    same = poison(True, tree)
    for a, b in zip(same[:4], tree[:4]):
        np.testing.assert_array_equal(a, b)


def test_poison_follows_a_batched_flag():
    x = np.arange(6.0, dtype=np.float32).reshape(3, 2)
    out = _checks.poison(np.array([True, False, True]), x)
    np.testing.assert_array_equal(np.isnan(out), [[False, False], [True, True], [False, False]])


def _cond_sim(rate, tau_m=10.0):
    return jaxlif.simulate_cond_lif_poisson(KEY, CondLIFParams(neuron=LIFParams(tau_m=tau_m)), rate_E=rate, T=50.0,
                                            record=True)


#: Rates and membrane time constants traced together, three lanes: the poisoned runs of a bad rate and of a bad
#: traced parameter field are one compiled program, and their ``checked`` runs another (they were four programs
#: of this simulator, about 0.5 CPU-s each; measured 2026-12-07).  The concrete ``_cond_sim(10.0)`` is the
#: unbatched run with the default ``tau_m`` (10 ms).
_cond_runs = jax.jit(jax.vmap(_cond_sim))
TAU_OK = np.full(3, 10.0, np.float32)


def test_traced_invalid_rate_is_poisoned_not_plausible():
    out = _numpy(_cond_runs(np.array([10.0, -5.0, 2e4], np.float32), TAU_OK))
    valid = _numpy(_cond_sim(10.0))
    np.testing.assert_array_equal(out.spikes[0], valid.spikes)      # valid rows untouched
    np.testing.assert_allclose(out.v[0], valid.v)
    for row in (1, 2):
        assert np.isnan(out.v[row]).all() and np.isnan(out.g_E[row]).all()
        assert out.spikes[row].all()                                 # impossible raster


def test_checked_mode_raises_naming_the_argument():
    with pytest.raises(ValueError, match=r"rate_E=.*-5.* Hz must be finite, >= 0"):
        _checks.checked(_cond_runs)(np.array([10.0, -5.0, 10.0], np.float32), TAU_OK)
    out = _checks.checked(_cond_runs)(np.array([10.0, 12.0, 15.0], np.float32), TAU_OK)   # valid: no error
    assert not np.isnan(np.asarray(out.v)).any()


def test_checked_mode_names_a_traced_parameter_field():
    rates, tau_m = np.full(3, 10.0, np.float32), np.array([10.0, 0.05, 10.0], np.float32)
    with pytest.raises(ValueError, match=r"params\.neuron\.tau_m=.* ms must be finite and >= dt = 0\.1 ms"):
        _checks.checked(_cond_runs)(rates, tau_m)
    assert np.asarray(_cond_runs(rates, tau_m).spikes)[1].all()


def test_checked_rejects_non_callables():
    with pytest.raises(TypeError, match="callable"):
        _checks.checked(3)


# ------------------------------------------------------------------------------------------------
# Every invalid-value class of the issue, traced under jit and vmap, in every core: poisoned outputs
# (NaN, all-True rasters), valid rows untouched.  Tiny shapes (50 steps, a few trains).
# ------------------------------------------------------------------------------------------------

DT = 0.1
ZERO50 = np.zeros(50, np.float32)


def _numpy(tree):
    """NumPy leaves: the test's indexing compiles nothing."""
    return jax.tree.map(np.asarray, tree)


def _assert_poisoned(tree, rows):
    for leaf in jax.tree.leaves(tree):
        leaf = np.asarray(leaf)
        for r in rows:
            assert (leaf[r].all() if leaf.dtype == bool else np.isnan(leaf[r]).all()), (r, leaf[r])


def _assert_rows_equal(batched, single, row=0):
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
        np.testing.assert_allclose(np.asarray(a)[row], np.asarray(b), rtol=1e-6, atol=1e-5)


def test_traced_rates_poison_the_stp_lif_poisson_run():
    sim = lambda r: jaxlif.simulate_stp_lif_poisson(KEY, rate_E=r, n_E=2, n_I=1, T=5.0, dt=DT)
    out = jax.jit(jax.vmap(sim))(np.array([15.0, -5.0, 2e4, np.nan], np.float32))
    _assert_rows_equal(out, sim(15.0))
    _assert_poisoned(out, [1, 2, 3])


def _assert_valid(tree, row=0):
    for leaf in jax.tree.leaves(tree):
        leaf = np.asarray(leaf)[row]
        assert not leaf.all() if leaf.dtype == bool else np.isfinite(leaf).all()


def test_traced_rates_poison_the_generators():
    rates = np.array([10.0, -100.0, 2e4], np.float32)
    counts, trains = jax.jit(jax.vmap(lambda r: (jaxlif.poisson_counts(KEY, r, 3, T=5.0, dt=DT),     # one program
                                                 jaxlif.poisson_trains(KEY, r, 3, T=5.0, dt=DT))))(rates)
    _assert_valid((counts, trains))
    _assert_poisoned((counts, trains), [1, 2])


def test_probability_outside_unit_interval_is_never_clipped():
    """Before: p > 1 gave 0 spikes from the binomial draw and all spikes from the Bernoulli draw."""
    ps = np.array([0.3, 1.5, -0.2], np.float32)
    bern, binom = jax.jit(jax.vmap(lambda p: (jaxlif.inputs.bernoulli_step(KEY, 3, p, 4),          # one program
                                              jaxlif.inputs.binomial_step(KEY, 3, p, 4))))(ps)
    _assert_valid((bern, binom))
    assert 0 <= float(np.asarray(binom)[0]) <= 4
    _assert_poisoned((bern, binom), [1, 2])
    for fn in (jaxlif.inputs.bernoulli_step, jaxlif.inputs.binomial_step):
        with pytest.raises(ValueError, match=r"p=1.5 is outside \[0, 1\]"):
            fn(KEY, 3, 1.5, 4)


def test_traced_U0_below_zero_poisons_every_stp_core():
    """Before: U0 = -0.5 gave a plausible g10/g1 of 24.8."""
    U0 = np.array([0.5, -0.5, np.nan], np.float32)
    stp = lambda u: jaxlif.STPParams(u, 100.0, 50.0)
    train = ZERO50.copy()
    train[::7] = 1.0
    e, i = np.stack([train, train]), train[None]

    def cores(u):                                  # the four STP cores in one compiled program
        return (jaxlif.ratio_curve(stp(u), [10.0, 20.0]), jaxlif.ratio_curve_exact(stp(u), [10.0, 20.0]),
                jaxlif.simulate_stp(stp(u), SynParams(1.2, 5.0, 0.0), train, dt=DT),
                jaxlif.simulate_stp_lif(jaxlif.STPLIFParams(stp_E=stp(u)), e, i, dt=DT, record_synapses=False))
    ratio, exact, syn, neuron = jax.jit(jax.vmap(cores))(U0)
    np.testing.assert_allclose(np.asarray(ratio[0])[0], [0.6, 0.6], rtol=1e-6)   # g1 = g_bar U0
    np.testing.assert_allclose(np.asarray(exact[0])[0], [0.6, 0.6], rtol=1e-6)
    _assert_valid((ratio, exact, syn, neuron))
    _assert_poisoned((ratio, exact, syn, neuron), [1, 2])


def test_traced_tau_syn_below_dt_poisons_the_conductance_lif():
    """Before: tau_syn = 0.05 ms with dt = 0.1 ms gave a plausible -75.2 mV."""
    n = ZERO50.copy()
    n[10:20] = 3.0
    sim = lambda tau: jaxlif.simulate_cond_lif(CondLIFParams(exc=SynParams(2.4, tau, 0.0)), n, n, dt=DT)
    out = jax.jit(jax.vmap(sim))(np.array([2.0, 0.05, -1.0], np.float32))
    _assert_rows_equal(out, sim(2.0))
    _assert_poisoned(out, [1, 2])


def test_traced_nan_parameter_poisons_the_lif():
    I = np.full(50, 800.0, np.float32)
    sim = lambda x: jaxlif.simulate_lif(LIFParams(tau_m=x[0], V_th=x[1]), I, dt=DT)
    out = _numpy(jax.jit(jax.vmap(sim))(np.array([[10.0, -55.0], [np.nan, -55.0], [10.0, np.nan]], np.float32)))
    _assert_rows_equal(out, sim(np.array([10.0, -55.0], np.float32)))
    assert out.spikes[0].any() and not out.spikes[0].all()
    _assert_poisoned(out, [1, 2])


def test_concrete_negative_zero_rate_behaves_like_zero():
    """``np.round(-0.4)`` is -0.0: accepted, and the same run as a rate of 0."""
    minus_zero = float(np.round(-0.4))
    assert np.signbit(minus_zero)
    a = _cond_sim(minus_zero)
    b = _cond_sim(0.0)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checked_mode_names_U0():
    with pytest.raises(ValueError, match=r"params\.U0=.*-0\.5.* must lie in \(0, 1\]"):
        _checks.checked(jax.vmap(lambda u: jaxlif.ratio_curve(jaxlif.STPParams(u, 100.0, 50.0), [10.0])))(
            np.array([0.5, -0.5], np.float32))


def test_traced_nonfinite_current_poisons_lif_and_cond_lif():
    """The finite check of ``I`` / ``I_inj`` runs inside the scan (and on the last, unscanned sample): a
    NaN in the middle, +inf at the end or -inf at the start each poisons its row, with or without
    ``record``; ``checked`` names the argument."""
    rows = np.full((4, 50), 800.0, np.float32)
    rows[1, 20], rows[2, -1], rows[3, 0] = np.nan, np.inf, -np.inf
    lif = lambda i, record=True: jaxlif.simulate_lif(LIFParams(), i, dt=DT, record=record)
    cond = lambda i: jaxlif.simulate_cond_lif(CondLIFParams(), ZERO50, ZERO50, i, dt=DT)
    runs = jax.jit(lambda rows: (jax.vmap(lif)(rows), jax.vmap(lambda i: lif(i, False))(rows),   # one program
                                 jax.vmap(cond)(rows)))
    for out in runs(rows):
        out = _numpy(out)
        assert out.spikes[0].any() and not out.spikes[0].all()          # the valid row spikes, unpoisoned
        assert all(np.isfinite(np.asarray(leaf)[0]).all() for leaf in jax.tree.leaves(out))
        _assert_poisoned(out, [1, 2, 3])
    with pytest.raises(ValueError, match=r"(?s)I=.*must be finite"):
        _checks.checked(jax.vmap(lif))(rows)
    with pytest.raises(ValueError, match=r"(?s)I_inj=.*must be finite"):
        _checks.checked(jax.vmap(cond))(rows)
    # valid: no error (the shape of ``rows``, so the checked program above is reused: 0.2 CPU-s; 2026-12-07)
    _checks.checked(jax.vmap(cond))(np.full_like(rows, 800.0))
