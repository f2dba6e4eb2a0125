"""Tests of the ratio-curve fit ``jaxlif.fit_stp``, its forward model and ``jaxlif fit-stp``.

Oracles: the tutorial's step-by-step loop and the continuous-time closed form (docs/conventions.md
7), both in ``tests/reference.py`` (plain NumPy); central finite differences for gradients.
Targets are noise-free unless stated.  Compilation dominates the time of these tests, so they
share three fit configurations: one curve at 20 rates (padded to 24), one curve and two curves at
1-8 rates (padded to 8), each with the 15 default starts plus at most one ``init`` (16 lanes).
"""

import contextlib
import json
import math
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from jaxlif.cli import main as cli_main
from jaxlif.fitting import (FitInterrupted, FitResult, default_starts, fit_stp, fit_stp_dataset,
                            poisson_isi_steps, ratio_curve_poisson, ratio_loss, stp_ratio)
from jaxlif.fitting import optimise
from jaxlif.fitting import ratio_fit as ratio_fit_module
from jaxlif.plasticity import STD, STF, STPParams, ratio_curve, ratio_curve_exact


@pytest.fixture(scope="module")
def optimised_fits():
    """Compile the rest of the module's programs with XLA's optimisations on (restored after the module).

    The fits run many optimiser iterations: their programs run faster optimised, which here saves more
    than compiling them unoptimised does (tests/conftest.py).  The forward-model and gradient tests
    compile only small programs, which compile faster unoptimised: they come first, and this fixture
    turns the optimisations on at the first fit (and keeps them on for the rest of the file).  Unlike
    conftest's ``users_programs`` it keeps what the worker compiled before (no ``jax.clear_caches()``):
    this file's checks hold within their tolerances on either compilation (they are not about the
    optimised programs themselves; the whole file passed with every program unoptimised, 2026-12-07),
    and in the "fitting" file group (tests/conftest.py) the fit of one curve at 20 rates is
    docs/fitting.md's ratio-curve example, compiled there optimised, so it is reused here (the group
    run in one process in xdist's order, 2026-12-07: this file compiles 53 programs instead of 63, and
    its CPU time fell from 20.5 to 17.5 s with the unoptimised packed-grid test below)."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


fits = pytest.mark.usefixtures("optimised_fits")


@contextlib.contextmanager
def _unoptimised_programs():
    """Compile with the suite's setting (optimisations off) inside the block, whatever was set before.

    For the normal draws of the noisy targets of the two profile tests at the end of the file: their
    programs are their own and run once, and compiled optimised they cost 0.8 CPU-s each (0.1 unoptimised,
    2026-12-07).  The draws of the two programs differ by at most 2e-7, which the targets (0.03 and 0.02
    times the draw, stored in float32 by the fits) do not see: the fits get the same float32 targets bit
    for bit (checked on the curves the tests use, 2026-12-07; only host-side float64 statistics of the
    targets, such as the loss floor, move, by about 1e-8 of themselves)."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def unoptimised():
    """The test body compiles with the suite's setting (optimisations off) even after :func:`optimised_fits`
    turned them on: for tests whose programs are their own (shared with no fit) and run only a few steps,
    where compiling dominates (the packed-grid test's three optimiser loops on a closed-form objective:
    2.1 CPU-s optimised, 0.8 unoptimised, 2026-12-07)."""
    with _unoptimised_programs():
        yield


RATES = np.arange(2.0, 40.1, 2.0)          # WL-C / WL-D rates [Hz]
START = (0.3, 300.0, 300.0)                # WL-D fixed start

# Realistic synapse types (U0, tau_d [ms], tau_f [ms]).  Values as commonly tabulated from the
# Markram lab's paired recordings in rat somatosensory cortex (e.g. in Maass, Natschlaeger &
# Markram 2002, Neural Comput. 14:2531, Table 1 and text):
LITERATURE = {
    # Tsodyks & Markram 1997 PNAS 94:719: depressing L5 pyramid -> pyramid, U_SE ~ 0.5-0.6,
    # tau_rec ~ 0.8 s, no facilitation (tau_f set short).
    "TM97_depressing_pyr_pyr": (0.55, 800.0, 10.0),
    # Markram, Wang & Tsodyks 1998 PNAS 95:5323: pyramid -> pyramid depressing (U 0.5, D 1.1 s,
    # F 50 ms) and pyramid -> interneuron strongly facilitating (U 0.05, D 125 ms, F 1.2 s).
    "MWT98_depressing_EE": (0.5, 1100.0, 50.0),
    "MWT98_facilitating_EI": (0.05, 125.0, 1200.0),
    # Gupta, Wang & Markram 2000 Science 287:273, interneuron synapse classes (mean U, D, F):
    # F1 facilitating, F2 depressing, F3 pseudo-linear.
    "Gupta00_F1_facilitating": (0.16, 45.0, 376.0),
    "Gupta00_F2_depressing": (0.25, 706.0, 21.0),
    "Gupta00_F3_pseudolinear": (0.32, 144.0, 62.0),
}


def tutorial_target(params, rates=RATES):
    """The tutorial's g10/g1 curve from the core event-driven ratio_curve (WL-C).

    Its programs (one per number of rates) run once each: compiled unoptimised (0.2 CPU-s less each than
    optimised, after :func:`optimised_fits`, 2026-12-07; the 20-rate one is docs/fitting.md's, already
    compiled in the "fitting" file group).  The curve may move by a unit in the last place of float32
    (at most 5e-7 on these tests' curves) against the optimised program's, far below what the fits'
    checks resolve."""
    with _unoptimised_programs():
        g1, g10 = ratio_curve(params, rates)
    # the division in NumPy (the same IEEE division of the same numbers): an eager jnp division
    # compiles a program per shape
    return np.asarray(np.asarray(g10) / np.asarray(g1), dtype=float)


def rel_err(fitted: STPParams, true) -> np.ndarray:
    return np.array([float(f) / float(t) - 1.0 for f, t in zip(fitted, true)])


# --------------------------------------------------------------------------------------
# Forward models
# --------------------------------------------------------------------------------------


def test_tutorial_model_matches_core_and_step_by_step_oracle(x64):
    params = STPParams(0.3, 180.0, 420.0)
    model = np.asarray(stp_ratio(params, RATES))
    assert model.dtype == np.float64
    np.testing.assert_allclose(model, tutorial_target(params), rtol=1e-12)
    oracle = np.array([(lambda g: g[1] / g[0])(ref.ratio_point(r, *params)) for r in RATES[::4]])
    np.testing.assert_allclose(model[::4], oracle, rtol=1e-11)


def test_tutorial_model_float32_close_to_float64_oracle():
    # The fitting model computes (1 - dt/tau)^k as exp(k log1p(-dt/tau)): in float32 it stays
    # within ~1e-6 of the float64 loop (the plain power is ~2e-5 off for STF).
    model = np.asarray(stp_ratio(STF, RATES))
    assert model.dtype == np.float32
    oracle = np.array([(lambda g: g[1] / g[0])(ref.ratio_point(r, *STF)) for r in RATES])
    np.testing.assert_allclose(model, oracle, atol=2e-6)


def test_exact_mode_matches_spec_continuous_closed_form(x64):
    for params in (STD, STF, STPParams(0.05, 125.0, 1200.0)):
        g1, g10 = ratio_curve_exact(params, RATES, g_bar=1.2, tau_syn=5.0)
        expected = []
        for r in RATES:
            release, _, _ = ref.tm_continuous_regular(r, *params, n_spikes=9)
            g = ref.tm_continuous_conductance(release, 1000.0 / r, 1.2, 5.0)
            expected.append((g[0], g[8]))
        expected = np.array(expected)
        np.testing.assert_allclose(np.asarray(g1), expected[:, 0], rtol=1e-13)
        np.testing.assert_allclose(np.asarray(g10), expected[:, 1], rtol=1e-12)
        np.testing.assert_allclose(np.asarray(stp_ratio(params, RATES, mode="exact")),
                                   expected[:, 1] / expected[:, 0], rtol=1e-12)


def test_euler_curve_converges_to_exact_at_first_order(x64):
    rates = np.array([5.0, 10.0, 20.0, 40.0])
    exact = np.asarray(stp_ratio(STF, rates, mode="exact"))
    dts = [0.2, 0.1, 0.05, 0.025]
    errors = [np.max(np.abs(np.asarray(stp_ratio(STF, rates, dt=dt)) - exact)) for dt in dts]
    assert errors[0] > 1e-3  # the modes really differ (a few 1e-3 at dt = 0.1)
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((ratios > 1.7) & (ratios < 2.3)), (errors, ratios)  # O(dt)


def test_poisson_model_matches_step_by_step_oracle_on_the_same_trains(x64):
    key = jax.random.key(3)
    rates, n_trains, n_spike = np.array([150.0, 400.0]), 3, 6
    isi = np.asarray(poisson_isi_steps(key, rates, n_trains=n_trains, n_isi=n_spike - 2))
    params = STPParams(0.3, 60.0, 40.0)
    model = np.asarray(ratio_curve_poisson(params, rates, key=key, n_trains=n_trains,
                                           n_spike=n_spike))
    for i in range(len(rates)):
        ratios = []
        for j in range(n_trains):
            spikes_at = np.concatenate([[1], 1 + np.cumsum(isi[i, j])]).astype(int)
            train = np.zeros(spikes_at[-1] + 1)
            train[spikes_at] = 1.0
            _, _, g = ref.dynamic_syn(1.2, 5.0, *params, train, 0.1)
            ratios.append(g[spikes_at[-1]] / g[spikes_at[0]])
        np.testing.assert_allclose(model[i], np.mean(ratios), rtol=1e-11)


def test_poisson_intervals_are_geometric_with_the_right_mean():
    rates = np.array([100.0, 1000.0])
    isi = np.asarray(poisson_isi_steps(jax.random.key(0), rates, n_trains=4000, n_isi=5))
    assert isi.min() >= 1 and np.all(isi == np.round(isi))
    p = rates * 0.1 / 1000.0
    mean, sd = 1.0 / p, np.sqrt(1.0 - p) / p
    sem = sd / np.sqrt(isi[0].size)
    assert np.all(np.abs(isi.reshape(2, -1).mean(1) - mean) < 6 * sem)
    # fixed key -> the same trains (common random numbers); another key -> different trains
    again = np.asarray(poisson_isi_steps(jax.random.key(0), rates, n_trains=4000, n_isi=5))
    other = np.asarray(poisson_isi_steps(jax.random.key(1), rates, n_trains=4000, n_isi=5))
    assert np.array_equal(isi, again) and not np.array_equal(isi, other)


@pytest.mark.parametrize("mode", ["tutorial", "exact", "poisson"])
def test_loss_gradient_matches_central_finite_differences(x64, mode):
    kw = dict(mode=mode)
    if mode == "poisson":
        # one train per rate: the loss program of the other two modes (the mode is traced, the
        # shapes are the same), here on random intervals
        kw.update(key=jax.random.key(5), n_trains=1)
    target = np.asarray(stp_ratio(STF, RATES, **kw))
    at = STPParams(0.35, 150.0, 400.0)
    grad = jax.grad(lambda p: ratio_loss(p, RATES, target, **kw))(at)
    loss = lambda p: float(ratio_loss(p, RATES, target, **kw))  # noqa: E731
    for field in STPParams._fields:
        x = getattr(at, field)
        h = 1e-6 * x
        fd = (loss(at._replace(**{field: x + h})) - loss(at._replace(**{field: x - h}))) / (2 * h)
        np.testing.assert_allclose(float(getattr(grad, field)), fd, rtol=2e-6, err_msg=field)
        assert abs(fd) > 1e-9  # a real slope, not 0 == 0


# --------------------------------------------------------------------------------------
# Recovery (20 rates: one compiled configuration; the dataset fits at 8 rates: the few-rates one)
# --------------------------------------------------------------------------------------


def test_traced_targets_vmap_over_bootstrap_samples(x64):
    # ratio_loss accepts traced targets: a vmap over 5 noisy targets equals 5 separate calls
    # (float64: the separate calls run the program of the finite-difference test above)
    clean = tutorial_target(STD)
    targets = clean + 0.01 * np.random.default_rng(0).standard_normal((5, RATES.size))
    vm = np.asarray(jax.vmap(lambda t: ratio_loss(STF, RATES, t))(jnp.asarray(targets)))
    one = np.array([float(ratio_loss(STF, RATES, t)) for t in targets])
    np.testing.assert_allclose(vm, one, rtol=1e-6)
    assert np.all(vm > 0) and np.ptp(vm) > 0


@fits
@pytest.mark.parametrize("true", [STD, STF], ids=["STD", "STF"])
def test_recovery_from_fixed_start_wl_d(true):
    steps = []
    res = fit_stp(RATES, tutorial_target(true), init=START, progress_every=10,
                  progress=lambda step, best, n_done: steps.append((step, float(best[0]))))
    assert isinstance(res, FitResult)
    assert np.all(np.abs(rel_err(res.params, true)) < 0.01), res.params
    assert float(res.rmse) < 1e-4
    assert bool(res.converged) and bool(res.reproduces_data)
    # curve error is the RMSE of the returned fitted curve against the target
    np.testing.assert_allclose(float(res.rmse), np.sqrt(np.mean(
        (np.asarray(res.fitted_ratio) - tutorial_target(true)) ** 2)), rtol=1e-5, atol=1e-9)
    assert np.all(np.asarray(res.identifiable))
    # the start from START (index 0) reaches the optimum too, and its loss fell on the way
    assert not bool(np.asarray(res.start_local_minimum)[0])
    n = int(res.n_steps)
    history = np.asarray(res.history)
    assert np.all(np.isfinite(history[:n])) and np.all(np.isnan(history[n:]))
    assert history[0] > 100 * history[n - 1]
    # the 95 % intervals of a noise-free target shrink to the truth (to float32 rounding)
    lo, hi = (np.array([float(np.asarray(v)[i]) for v in res.interval]) for i in (0, 1))
    truth = np.array(true)
    assert np.all((lo <= truth * (1 + 1e-4)) & (truth * (1 - 1e-4) <= hi)), (lo, hi)
    assert np.all((hi - lo) < 1e-3 * truth)
    # progress: called from Python every 10 steps, with this fit's own callable
    assert steps and steps[0][0] == 10 and [s for s, _ in steps] == sorted(s for s, _ in steps)


@fits
def test_recovery_from_fixed_start_exact_mode():
    target = np.asarray(stp_ratio(STF, RATES, mode="exact"))
    res = fit_stp(RATES, target, init=START, mode="exact")
    assert np.all(np.abs(rel_err(res.params, STF)) < 0.01), res.params
    assert float(res.rmse) < 1e-4 and bool(res.converged)
    assert res.summary()["mode"] == "exact" and res.summary()["units"]["tau_d"] == "ms"


@fits
def test_a_single_start_ends_in_a_local_minimum_and_says_so():
    # A strongly facilitating synapse: some grid starts end in poor local optima; each of them is
    # flagged, and the best start recovers the synapse.
    true = LITERATURE["MWT98_facilitating_EI"]
    res = fit_stp(RATES, tutorial_target(STPParams(*true)))
    starts = np.stack([np.asarray(f) for f in default_starts()], axis=-1)
    assert starts.shape == (15, 3) and np.asarray(res.start_loss).shape == (15,)
    local = np.asarray(res.start_local_minimum)
    rmse = np.sqrt(np.asarray(res.start_loss))
    assert local.any(), rmse
    assert np.all(rmse[local] > 1e-3) and np.all(rmse[~local] < 1e-4)
    assert not local[int(res.best_start)]
    assert np.all(np.abs(rel_err(res.params, true)) < 0.01)
    assert float(res.rmse) < 1e-4 and bool(res.converged)
    # each trapped start, given alone as init (with the check grid), is reported as trapped
    bad = starts[np.flatnonzero(local)[0]]
    again = fit_stp(RATES, tutorial_target(STPParams(*true)), init=tuple(bad))
    assert bool(np.asarray(again.start_local_minimum)[0]) and int(again.best_start) != 0


#: The 8 rates of the few-rates tests below (2-40 Hz); a dataset of two curves at these rates
#: is the compiled program of those tests too.
RATES8 = np.array([2.0, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0, 40.0])


@fits
def test_dataset_fit_recovers_literature_synapses_and_equals_individual_fits():
    names = sorted(LITERATURE)
    curves = np.stack([tutorial_target(STPParams(*LITERATURE[k]), RATES8) for k in names])
    for first in (0, 2, 4):                     # two synapses per call
        data = fit_stp_dataset(RATES8, curves[first:first + 2])
        assert np.shape(data.params.U0) == (2,)
        for j, name in enumerate(names[first:first + 2]):
            true = LITERATURE[name]
            got = STPParams(*(np.asarray(f)[j] for f in data.params))
            assert np.all(np.abs(rel_err(got, true)) < 0.01), (name, got)
            assert float(np.asarray(data.rmse)[j]) < 1e-4 and bool(np.asarray(data.converged)[j])
            assert np.all([bool(np.asarray(f)[j]) for f in data.identifiable]), name
            assert int(np.asarray(data.n_near_optimal)[j]) >= 2  # several starts agree on the optimum
        for i in sorted({0, 3} & {first, first + 1}):     # the same as fitting each curve alone
            j = i - first
            one = fit_stp(RATES8, curves[i])
            for field in ("params", "interval"):
                np.testing.assert_allclose(np.array(getattr(one, field)),
                                           np.array(getattr(data, field))[:, j], rtol=1e-3,
                                           err_msg=field)
            np.testing.assert_allclose(np.asarray(one.fitted_ratio),
                                       np.asarray(data.fitted_ratio)[j], rtol=1e-5)
    with pytest.raises(ValueError, match="target_ratios"):
        fit_stp_dataset(RATES8, curves[0])


def _noisy(true, sd, seed, rates=RATES):
    clean = tutorial_target(STPParams(*true), rates)
    return clean, clean + sd * np.random.default_rng(seed).standard_normal(clean.shape)


@fits
def test_noisy_targets_fit_within_noise_and_intervals_widen():
    true = (0.5, 100.0, 50.0)
    width_prev = None
    for sd in (0.003, 0.01):
        clean, noisy = _noisy(true, sd, seed=7)
        res = fit_stp(RATES, noisy)
        fitted = np.asarray(res.fitted_ratio)
        assert np.sqrt(np.mean((fitted - clean) ** 2)) < sd       # closer to truth than the data
        assert float(res.rmse) < 1.5 * sd                          # residual at the noise level
        assert 0.5 * sd < float(res.noise_sd) < 2.0 * sd           # noise level estimated
        lo, hi = (np.array([float(np.asarray(v)[i]) for v in res.interval]) for i in (0, 1))
        assert np.all((lo <= true) & (true <= hi)), (sd, lo, hi)   # the truth is inside
        width = hi - lo
        if width_prev is not None:
            assert np.all(width > 2 * width_prev), (width, width_prev)
        width_prev = width
        # with the noise level given, the chi-squared test accepts the fit
        known = fit_stp(RATES, noisy, noise_sd=sd)
        assert 0.001 < float(known.gof_pvalue) and bool(known.reproduces_data)


# --------------------------------------------------------------------------------------
# Compilation, memory, Ctrl-C and threads (issue 9 item 3, issue 10 items 2 and 6)
# --------------------------------------------------------------------------------------


@fits
def test_compiles_once_across_targets_noise_modes_and_n_spike():
    fit_stp(RATES, tutorial_target(STD), interval="none")   # compiled (the intervals run it too)
    before = optimise._run_chunk._cache_size()
    fit_stp(RATES, tutorial_target(STF), noise_sd=0.01)
    fit_stp(RATES, np.asarray(stp_ratio(STF, RATES, mode="exact", n_spike=12)), mode="exact",
            n_spike=12, init=START)
    fit_stp(RATES, tutorial_target(STD), dt=0.05, tau_syn=4.0, max_steps=10 ** 8)
    assert optimise._run_chunk._cache_size() == before


@fits
def test_ctrl_c_ends_the_fit_with_a_partial_result():
    calls = []

    def interrupt(step, best, n_done):
        calls.append(step)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(FitInterrupted, match="interrupted after 20 optimiser steps") as err:
        fit_stp(RATES, tutorial_target(STF), init=START, progress=interrupt, progress_every=10)
    assert isinstance(err.value, KeyboardInterrupt)        # scripts stop as on Ctrl-C
    partial = err.value.partial
    assert isinstance(partial, FitResult) and not bool(partial.converged)
    assert np.isfinite(float(partial.loss)) and int(partial.n_steps) <= 20
    assert np.all(np.isnan(np.asarray(partial.interval)))  # no intervals for a partial fit
    assert calls == [10, 20]


def _banana(theta, data, shared):
    """Rosenbrock valley per problem (``data = (a, b)``) plus a quadratic third coordinate."""
    a, b = data
    return (a - theta[0]) ** 2 + b * (theta[1] - theta[0] ** 2) ** 2 + (theta[2] - a) ** 2


@pytest.mark.parametrize("row_slots, pack_lanes", [(8, 4096), (1, 7)])
def test_packed_grids_take_the_same_steps_as_the_problem_grid(monkeypatch, row_slots, pack_lanes,
                                                              unoptimised):
    """``minimise_lanes(row_slots=...)`` (the profile fits' layout): lanes packed into rows of
    ``row_slots`` slots that read copies of their problem's data, packed again every 3 steps as
    lanes stop, at most ``pack_lanes`` lanes per call, must give every lane the same steps as
    the ordinary grid (one row of slots per problem).  Uneven lanes: problem 1 has 11 lanes
    (two rows of 8), problem 3 none, starts near and far from the optimum (a few to many
    steps), coordinate 2 held on some lanes."""
    monkeypatch.setattr(optimise, "PACK_LANES", pack_lanes)
    rng = np.random.default_rng(3)
    data = (np.array([1.0, 0.5, -0.7, 2.0, 1.5]), np.array([5.0, 20.0, 10.0, 3.0, 50.0]))
    owner = np.array([0, 1, 1, 2, 4, 1, 0, 1, 1, 1, 1, 4, 1, 1, 2, 1, 1, 1])
    theta0 = rng.normal(size=(owner.size, 3)) * np.linspace(0.05, 2.0, owner.size)[:, None]
    free = np.ones((owner.size, 3), bool)
    free[::4, 2] = False
    kw = dict(free=free, max_steps=30, patience=5, rel_improve=1e-7, abs_improve=0.0, gtol=1e-9,
              stragglers=None)
    want = optimise.minimise_lanes(_banana, theta0, owner, data, None, **kw)
    got = optimise.minimise_lanes(_banana, theta0, owner, data, None, row_slots=row_slots,
                                  repack_every=3, **kw)
    n_steps = want[2]
    assert n_steps.min() <= 12 and n_steps.max() >= 30, n_steps      # uneven: repacked calls
    np.testing.assert_array_equal(got[2], n_steps)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got[0][::4, 2], theta0[::4, 2], rtol=1e-6)   # held: stay
    assert got[4] == want[4]
    with pytest.raises(ValueError, match="repack_every must be in"):
        optimise.minimise_lanes(_banana, theta0, owner, data, None, row_slots=8, repack_every=0)
    assert [optimise._rows_bucket(k) for k in (1, 9, 17, 100, 4500)] == [8, 16, 32, 128, 8192]


@fits
def test_progress_every_reuses_the_compiled_program():
    """``progress_every`` is a Python-side stop, not a size of the compiled program."""
    from jaxlif.fitting import optimise
    # (no intervals: the optimiser loop is what reports progress)
    fit_stp(RATES, tutorial_target(STF), init=START, progress_every=10, interval="none")
    compiled = optimise._run_chunk._cache_size()
    steps = []
    fit_stp(RATES, tutorial_target(STF), init=START, progress_every=7, interval="none",
            progress=lambda step, best, n_done: steps.append(step))
    assert optimise._run_chunk._cache_size() == compiled
    assert steps[:3] == [7, 14, 21] and steps == sorted(steps)
    with pytest.raises(ValueError, match="progress_every must be an integer >= 1"):
        optimise.minimise_lanes(None, np.zeros((1, 3)), np.zeros(1, int), (np.zeros((1, 2)),),
                                progress_every=0)


@fits
def test_progress_of_two_threads_reaches_its_own_callback():
    seen = {"a": [], "b": []}
    out = {}

    def run(name, target):
        out[name] = fit_stp(RATES, target, progress_every=10, interval="none",
                            progress=lambda step, best, n: seen[name].append(float(best[0])))

    threads = [threading.Thread(target=run, args=("a", tutorial_target(STD))),
               threading.Thread(target=run, args=("b", tutorial_target(STF)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["a"] and seen["b"]
    # each callback saw its own fit's loss (the last report equals that fit's final RMSE)
    for name in ("a", "b"):
        assert seen[name][-1] == pytest.approx(float(out[name].rmse), abs=1e-6)


@fits
def test_huge_max_steps_allocates_nothing_per_step():
    res = fit_stp(RATES, tutorial_target(STD), max_steps=10 ** 8)
    assert np.asarray(res.history).size <= 1000 and bool(res.converged)


# --------------------------------------------------------------------------------------
# Few rates (one compiled configuration: 1-8 rates)
# --------------------------------------------------------------------------------------

RATES4 = np.array([5.0, 10.0, 20.0, 40.0])


@fits
def test_single_rate_is_flagged_unidentifiable():
    # Even with the noise level known, one number cannot fix three parameters.
    res = fit_stp([20.0], tutorial_target(STD, [20.0]), noise_sd=0.01)
    assert float(res.rmse) < 1e-5  # the one number is fitted ...
    assert not np.any(np.asarray(res.identifiable))  # ... but it fixes no parameter
    assert np.all(np.isinf(np.asarray(res.stderr)))
    assert np.max(np.asarray(res.spread)) > 1.0  # starts end far apart, all near-optimal
    summary = json.loads(json.dumps(res.summary()))
    assert summary["identifiable"] == {"U0": False, "tau_d": False, "tau_f": False}
    # one point, three free parameters: never "converged", and the result says why (issue 20)
    assert not bool(res.converged)
    assert len(res.notes) == 1 and "fewer points (1 rate) than free parameters (3" in res.notes[0]
    assert summary["notes"] == list(res.notes)


@fits
def test_fewer_rates_than_free_parameters_is_never_converged():
    # 3 rates, noise estimated: U0, tau_d, tau_f and the noise sd are 4 free parameters; the
    # curve is fitted exactly (the fit looks perfect), yet nothing is determined
    target = np.asarray(stp_ratio(STD, RATES4[:3]))
    res = fit_stp(RATES4[:3], target)
    assert float(res.rmse) < 1e-4 and not bool(res.converged)
    assert "fewer points (3 rates) than free parameters (4: U0, tau_d, tau_f, the noise sd)" \
        in res.notes[0]
    # with the noise level given, 3 rates are as many points as parameters: no note
    res = fit_stp(RATES4[:3], target, noise_sd=0.01)
    assert res.notes == ()


def test_curves_at_1_to_8_rates_run_one_program(unoptimised):
    # stp_ratio pads the rates to a multiple of 8, as the fits do: one compiled model (the fits'
    # own, already compiled above) for any 1-8 rates, and each rate's value is its own
    from jaxlif.fitting.ratio import _kernel_jit
    four = np.asarray(stp_ratio(STD, RATES4))
    compiled = _kernel_jit._cache_size()
    three = np.asarray(stp_ratio(STD, RATES4[:3]))
    one = np.asarray(stp_ratio(STD, [20.0]))
    assert _kernel_jit._cache_size() == compiled
    assert three.shape == (3,) and one.shape == (1,)
    np.testing.assert_array_equal(three, four[:3])
    np.testing.assert_array_equal(one, four[2:3])



def test_curve_inside_jit_equals_eager(unoptimised):
    # inside a user's jit the parameters and the padded intervals are traced (the padding failed on a
    # tracer once): the eager curve
    jitted = jax.jit(lambda u0: stp_ratio(STD._replace(U0=u0), RATES4[:3]))
    np.testing.assert_allclose(np.asarray(jitted(STD.U0)), np.asarray(stp_ratio(STD, RATES4[:3])),
                               rtol=1e-6)

@fits
def test_issue_example_four_rates_two_percent_noise_is_honest():
    # issue 8: true (0.4, 200, 100); the old fit printed U0 = 0.122 +/- 0.002 (100 errors off)
    res = fit_stp(RATES4, [0.8569, 0.6957, 0.4685, 0.2904])
    truth = np.array([0.4, 200.0, 100.0])
    lo, hi = (np.array([float(np.asarray(v)[i]) for v in res.interval]) for i in (0, 1))
    assert np.all((lo <= truth) & (truth <= hi)), (lo, hi)   # the truth is inside ...
    assert not np.any(np.asarray(res.identifiable))           # ... and nothing is claimed
    assert float(res.noise_sd) > 0 and bool(res.converged)


@fits
def test_local_minimum_from_a_single_start_is_reported():
    target = np.asarray(stp_ratio(STD, RATES4))
    res = fit_stp(RATES4, target, init=(0.01, 100.0, 50.0))
    # the start from (0.01, 100, 50) ends in a local minimum (RMSE ~ 8e-3): it is flagged and
    # another start wins with the true parameters
    assert bool(np.asarray(res.start_local_minimum)[0]) and int(res.best_start) != 0
    assert math.sqrt(float(np.asarray(res.start_loss)[0])) > 1e-3
    assert np.all(np.abs(rel_err(res.params, STD)) < 0.01) and bool(res.converged)


@fits
def test_impossible_target_is_reported_as_not_reproducible():
    for rates, target in ((RATES4, [100.0] * 4), ([20.0], [100.0])):
        res = fit_stp(rates, target)
        assert not bool(res.reproduces_data) and not bool(res.converged)
        assert np.any(np.asarray(res.at_edge))
    # a reachable target at the same rates is reproduced
    ok = fit_stp(RATES4, np.asarray(stp_ratio(STF, RATES4)))
    assert bool(ok.reproduces_data) and bool(ok.converged)


@fits
@pytest.mark.slow
def test_poisson_mode_recovers_parameters_with_common_random_numbers():
    key = jax.random.key(11)
    rates = np.array([5.0, 10.0, 20.0, 30.0, 40.0])
    target = np.asarray(ratio_curve_poisson(STF, rates, key=key, n_trains=16))
    res = fit_stp(rates, target, init=START, mode="poisson", key=key, n_trains=16)
    assert np.all(np.abs(rel_err(res.params, STF)) < 0.01), res.params
    assert float(res.rmse) < 1e-4
    # a different key is a different (fixed) set of trains: the model curve moves
    other = np.asarray(ratio_curve_poisson(STF, rates, key=jax.random.key(12), n_trains=16))
    assert np.max(np.abs(other - target)) > 1e-3


# --------------------------------------------------------------------------------------
# Bad input: clear ValueErrors before anything is traced
# --------------------------------------------------------------------------------------


@pytest.fixture
def no_tracing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("validation should have failed before the fit was traced")
    monkeypatch.setattr(ratio_fit_module, "multistart", fail)


@pytest.mark.parametrize("rates, target, kw, match", [
    (RATES, np.ones(19), {}, r"target_ratio has 19 values per curve but rates_hz has 20"),
    (RATES, np.r_[np.ones(19), 0.0], {}, r"target_ratio\[19\]=0\.0 must be > 0"),
    (RATES, np.r_[-0.5, np.ones(19)], {}, r"target_ratio\[0\]=-0\.5 must be > 0"),
    (RATES, np.r_[np.nan, np.ones(19)], {}, r"target_ratio\[0\]=nan is not finite"),
    ([20.0, 20000.0], [1.0, 1.0], {}, r"rates_hz=\[20000\.0\] Hz give a regular inter-spike "
                                     r"interval under one step of dt=0\.1 ms; need rates <= 10000"),
    ([20.0, 20000.0], [1.0, 1.0], dict(mode="poisson", key=jax.random.key(0)),
     r"rates_hz=20000\.0 Hz with dt=0\.1 ms gives p = rate\*dt/1000 = 2 > 1"),
    ([20.0, -5.0], [1.0, 1.0], {}, r"rates_hz=.*-5\.0.* must be > 0"),
    ([[20.0]], [1.0], {}, r"rates_hz must be a non-empty 1-D"),
    (RATES, np.ones(20), dict(mode="poisson"), r"mode='poisson' needs key="),
    (RATES, np.ones(20), dict(mode="euler"), r"mode='euler' is not one of"),
    (RATES, np.ones(20), dict(init=(1.0, 100.0, 50.0)), r"init U0=1\.0 must lie in .*\(0, 1\)"),
    (RATES, np.ones(20), dict(init=(0.5, 0.05, 50.0)), r"init tau_d=0\.05 ms must be > 0\.1 ms"),
    (RATES, np.ones(20), dict(noise_sd=-1.0), r"noise_sd=-1\.0 must be > 0"),
    (RATES, np.ones(20), dict(tau_syn=0.05), r"tau_syn=0\.05 ms is below the time step"),
    (RATES, np.ones(20), dict(dt=0.0), r"dt=0\.0 ms must be > 0"),
    (RATES, np.ones(20), dict(interval="bayes"), r"interval='bayes' is not one of"),
    (RATES, np.ones(20), dict(level=1.0), r"level=1\.0 must be a number in \[0\.5, 1\)"),
    # n_spike = 2 compares the first spike with itself: g1/g1 = 1 for every synapse (issue 20)
    (RATES, np.ones(20), dict(n_spike=2), r"n_spike=2 must be >= 3: .*g1/g1 = 1"),
    (RATES, np.ones(20), dict(n_spike=1), r"n_spike=1 must be >= 3"),
])
def test_bad_input_raises_clear_value_error_before_tracing(no_tracing, rates, target, kw, match):
    with pytest.raises(ValueError, match=match):
        fit_stp(rates, target, **kw)


def test_model_functions_validate_too():
    with pytest.raises(ValueError, match=r"n_spike=2 must be >= 3"):
        stp_ratio(STD, RATES, n_spike=2)
    with pytest.raises(ValueError, match=r"n_spike=2 must be >= 3"):
        ratio_loss(STD, RATES, np.ones(20), n_spike=2)
    with pytest.raises(ValueError, match="params.tau_f=0.05 ms is below the time step"):
        stp_ratio(STPParams(0.5, 100.0, 0.05), RATES)
    with pytest.raises(ValueError, match="params.U0=1.5 is outside"):
        ratio_curve_exact(STPParams(1.5, 100.0, 50.0), RATES)
    with pytest.raises(ValueError, match="rates_hz=.*Hz with dt=0.1 ms gives p"):
        poisson_isi_steps(jax.random.key(0), [5e4], n_trains=2, n_isi=2)
    with pytest.raises(TypeError, match="key"):
        ratio_curve_poisson(STD, RATES, key=123)
    with pytest.raises(ValueError, match=r"target_ratio must have shape \(20,\)"):
        jax.vmap(lambda t: ratio_loss(STD, RATES, t))(np.ones((3, 19), np.float32))


@fits
def test_profile_endpoints_are_verified_and_always_settle():
    # Noisy 8-rate curves (3 %) where the endpoint search used to stop short of values the
    # likelihood-ratio criterion accepts (deviance at the true value, best of 16 starts, below
    # q = t_5(0.975)^2 = 6.61):
    # - curve 50: tau_d = 200 ms has deviance 1.44, but a profile fit stuck where tau_f drifts to
    #   infinity ended the interval at 101.7 ms (a false crossing); curve 66 likewise (189 ms);
    # - curves 36 and 21: an endpoint was never settled (NaN), e.g. the lower end of tau_f of
    #   curve 36, whose deviance at 100 ms is 0.03.
    rates = RATES8
    truth = np.array([0.4, 200.0, 100.0])
    clean = np.asarray(stp_ratio(STPParams(*truth), rates), float)
    with _unoptimised_programs():       # the noise draw's own program (_unoptimised_programs)
        noise = np.asarray(jax.random.normal(jax.random.key(11), (200, 8), jnp.result_type(float)))
    targets = np.maximum(clean + 0.03 * noise, 1e-3)
    for pair in ([50, 36], [66, 21]):
        fit = fit_stp_dataset(rates, targets[pair])     # 2 curves: the program of two other tests
        iv = np.stack([np.asarray(v) for v in fit.interval], axis=1)   # (2, 3 params, 2)
        assert not np.isnan(iv).any(), iv
        assert np.all((iv[..., 0] <= truth) & (truth <= iv[..., 1])), (pair, iv)


@fits
def test_a_wide_problem_does_not_unsettle_another_problems_interval():
    # Noisy 4-rate curves: curve 87's Wald interval of tau_f spans 18 decades, curve 2's is narrow.
    # Fitted together, each gets the interval it gets alone (the endpoint search of one problem
    # must not depend on another's width).
    rates = [5.0, 10.0, 20.0, 40.0]
    clean = np.asarray(stp_ratio(STPParams(0.4, 200.0, 100.0), rates), float)
    with _unoptimised_programs():       # the noise draw's own program (_unoptimised_programs)
        noise = np.asarray(jax.random.normal(jax.random.key(7), (100, 4), jnp.result_type(float)))
    targets = np.maximum(clean + 0.02 * noise, 1e-3)[[2, 87]]
    both = fit_stp_dataset(rates, targets)
    alone = fit_stp(rates, targets[0])
    got = np.array([np.asarray(v)[0] for v in both.interval])
    want = np.array([np.asarray(v) for v in alone.interval])
    assert np.all(np.isfinite(got) | np.isinf(want)), got
    np.testing.assert_allclose(got, want, rtol=1e-3)
