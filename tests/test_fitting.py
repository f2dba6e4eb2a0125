"""Tests for jaxlif.fitting (issue 3), the exact ratio curve and the ``jaxlif fit-stp`` command.

Oracles: the tutorial's step-by-step loop and the continuous-time closed form (docs/conventions.md 7), both in
``tests/reference.py`` (plain NumPy); central finite differences for gradients.  Targets are
noise-free unless stated.  Each distinct fit configuration (shapes, mode, options) compiles
once (~4 s on 2 cores), so the tests share a few configurations.
"""

import json
import math

import jax
import numpy as np
import pytest

import jaxlif.fitting as fitting
import reference as ref
from jaxlif.cli import main as cli_main
from jaxlif.fitting import (FitResult, default_starts, fit_stp, fit_stp_dataset, poisson_isi_steps,
                            ratio_curve_poisson, ratio_loss, stp_ratio)
from jaxlif.plasticity import STD, STF, STPParams, ratio_curve, ratio_curve_exact

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
    """The tutorial's g10/g1 curve from the core event-driven ratio_curve (WL-C)."""
    g1, g10 = ratio_curve(params, rates)
    return np.asarray(g10 / g1, dtype=float)


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
        kw.update(key=jax.random.key(5), n_trains=8)
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
# Recovery
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("true", [STD, STF], ids=["STD", "STF"])
def test_recovery_from_fixed_start_wl_d(true):
    steps = []
    res = fit_stp(RATES, tutorial_target(true), init=START,
                  progress=lambda step, best, n_done: steps.append((step, float(best[0]))))
    assert isinstance(res, FitResult)
    assert np.all(np.abs(rel_err(res.params, true)) < 0.01), res.params
    assert float(res.rmse) < 1e-4
    assert bool(res.converged)
    # curve error is the RMSE of the returned fitted curve against the target
    np.testing.assert_allclose(float(res.rmse), np.sqrt(np.mean(
        (np.asarray(res.fitted_ratio) - tutorial_target(true)) ** 2)), rtol=1e-5, atol=1e-9)
    assert np.all(np.asarray(res.identifiable))
    n = int(res.n_steps)
    history = np.asarray(res.history)
    assert np.all(np.isfinite(history[:n])) and np.all(np.isnan(history[n:]))
    assert history[0] > 100 * history[n - 1]  # the loss fell from the distant start
    assert steps and steps[0][0] == 1 and steps[-1][0] == max(s for s, _ in steps)


def test_recovery_from_fixed_start_exact_mode():
    target = np.asarray(stp_ratio(STF, RATES, mode="exact"))
    res = fit_stp(RATES, target, init=START, mode="exact")
    assert np.all(np.abs(rel_err(res.params, STF)) < 0.01), res.params
    assert float(res.rmse) < 1e-4 and bool(res.converged)


def test_a_single_start_can_be_trapped_so_the_default_uses_many():
    # A strongly facilitating synapse: the default grid's start (0.8, 1500, 20) (depressing-like)
    # ends in a poor local optimum, while the best of the 36 starts recovers the synapse.
    true = LITERATURE["MWT98_facilitating_EI"]
    res = fit_stp(RATES, tutorial_target(STPParams(*true)))
    starts = np.stack([np.asarray(f) for f in default_starts()], axis=-1)
    assert starts.shape == (36, 3) and np.asarray(res.start_loss).shape == (36,)
    trapped = np.flatnonzero(np.all(np.isclose(starts, [0.8, 1500.0, 20.0]), axis=1))[0]
    assert math.sqrt(float(res.start_loss[trapped])) > 1e-2
    assert np.all(np.abs(rel_err(res.params, true)) < 0.01)
    assert float(res.rmse) < 1e-4


@pytest.mark.parametrize("name", sorted(LITERATURE))
def test_default_multistart_recovers_literature_synapses(name):
    true = LITERATURE[name]
    res = fit_stp(RATES, tutorial_target(STPParams(*true)))
    assert np.all(np.abs(rel_err(res.params, true)) < 0.01), (name, res.params)
    assert float(res.rmse) < 1e-4 and bool(res.converged)
    assert np.all(np.asarray(res.identifiable))
    assert int(res.n_near_optimal) >= 2  # several starts agree on the optimum
    assert np.all(np.asarray(res.spread) < 0.01)


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
# Data sets, uncertainty, noise
# --------------------------------------------------------------------------------------


def _noisy(true, sd, seed):
    clean = tutorial_target(STPParams(*true))
    return clean, clean + sd * np.asarray(jax.random.normal(jax.random.key(seed), clean.shape),
                                          dtype=float)


def test_dataset_fit_equals_individual_fits():
    curves = np.stack([_noisy(LITERATURE["Gupta00_F1_facilitating"], 0.005, 1)[1],
                       _noisy(LITERATURE["Gupta00_F2_depressing"], 0.005, 2)[1]])
    data = fit_stp_dataset(RATES, curves)
    assert np.shape(data.params.U0) == (2,) and np.shape(data.history)[0] == 2
    for i, curve in enumerate(curves):
        one = fit_stp(RATES, curve)
        for field in ("params", "stderr", "spread"):
            np.testing.assert_allclose(np.array(getattr(one, field)),
                                       np.array(getattr(data, field))[:, i], rtol=1e-4,
                                       err_msg=field)
        np.testing.assert_allclose(np.asarray(one.fitted_ratio), np.asarray(data.fitted_ratio)[i],
                                   rtol=1e-6)
        assert bool(one.converged) == bool(data.converged[i])
    # the two synapses are told apart
    assert float(data.params.tau_f[0]) > 5 * float(data.params.tau_f[1])
    with pytest.raises(ValueError, match="target_ratios"):
        fit_stp_dataset(RATES, curves[0])


def test_single_rate_is_flagged_unidentifiable():
    # Even with the noise level known, one number cannot fix three parameters: the Jacobian has
    # a 2-D null space touching every parameter, so no standard error is finite.
    res = fit_stp([20.0], tutorial_target(STD, [20.0]), noise_sd=0.01)
    assert float(res.rmse) < 1e-5  # the one number is fitted ...
    assert not np.any(np.asarray(res.identifiable))  # ... but it fixes no parameter
    assert np.all(np.isinf(np.asarray(res.stderr)))
    assert np.max(np.asarray(res.spread)) > 1.0  # starts end far apart, all near-optimal
    assert int(res.n_near_optimal) > 10
    summary = json.loads(json.dumps(res.summary()))
    assert summary["identifiable"] == {"U0": False, "tau_d": False, "tau_f": False}


def test_noisy_targets_fit_within_noise_and_uncertainty_grows():
    true = (0.5, 100.0, 50.0)
    se_prev = np.asarray(fit_stp(RATES, tutorial_target(STD)).stderr)
    for sd in (0.003, 0.01):
        clean, noisy = _noisy(true, sd, seed=7)
        res = fit_stp(RATES, noisy)
        fitted = np.asarray(res.fitted_ratio)
        assert np.sqrt(np.mean((fitted - clean) ** 2)) < sd       # closer to truth than the data
        assert float(res.rmse) < 1.5 * sd                          # residual at the noise level
        assert 0.5 * sd < float(res.noise_sd) < 2.0 * sd           # noise level estimated
        se = np.asarray(res.stderr)
        assert np.all(se > 2 * se_prev), (sd, se, se_prev)         # uncertainty grows with noise
        se_prev = se
        if sd == 0.003:  # the truth lies within a few standard errors
            assert np.all(np.abs(np.asarray(res.params) - np.asarray(true)) < 4 * se)


# --------------------------------------------------------------------------------------
# Bad input (issue item 8): clear ValueErrors before anything is traced
# --------------------------------------------------------------------------------------


@pytest.fixture
def no_tracing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("validation should have failed before the fit was traced")
    monkeypatch.setattr(fitting, "_fit_core", fail)


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
])
def test_bad_input_raises_clear_value_error_before_tracing(no_tracing, rates, target, kw, match):
    with pytest.raises(ValueError, match=match):
        fit_stp(rates, target, **kw)


def test_model_functions_validate_too():
    with pytest.raises(ValueError, match="params.tau_f=0.05 ms is below the time step"):
        stp_ratio(STPParams(0.5, 100.0, 0.05), RATES)
    with pytest.raises(ValueError, match="params.U0=1.5 is outside"):
        ratio_curve_exact(STPParams(1.5, 100.0, 50.0), RATES)
    with pytest.raises(ValueError, match="rates_hz=.*Hz with dt=0.1 ms gives p"):
        poisson_isi_steps(jax.random.key(0), [5e4], n_trains=2, n_isi=2)
    with pytest.raises(TypeError, match="key"):
        ratio_curve_poisson(STD, RATES, key=123)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def test_cli_fit_stp_json_and_figure(tmp_path, capsys):
    fig = tmp_path / "fig" / "fit.png"
    target = tutorial_target(STD)
    argv = ["fit-stp", "--rates", *map(str, RATES), "--ratios", *map(repr, target.tolist()),
            "--init", "0.3", "300", "300", "--json", "--out", str(fig)]
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["mode"] == "tutorial" and out["figure"] == str(fig)
    got = (out["params"]["U0"], out["params"]["tau_d"], out["params"]["tau_f"])
    assert np.all(np.abs(rel_err(STPParams(*got), STD)) < 0.01)
    assert out["rmse"] < 1e-4 and out["converged"] is True
    assert set(out["stderr"]) == {"U0", "tau_d", "tau_f"}
    assert "fitting 1 curve(s) at 20 rates" in captured.err  # progress goes to stderr
    assert fig.exists() and fig.stat().st_size > 10_000


def test_cli_fit_stp_csv_dataset_and_text_output(tmp_path, capsys):
    curves = np.stack([_noisy(LITERATURE["Gupta00_F1_facilitating"], 0.005, 1)[1],
                       _noisy(LITERATURE["Gupta00_F2_depressing"], 0.005, 2)[1]])
    path = tmp_path / "curves.csv"
    lines = ["rate_hz,syn_a,syn_b", "# a comment"] + [
        f"{r},{float(a)!r},{float(b)!r}" for r, a, b in zip(RATES, *curves)]
    path.write_text("\n".join(lines) + "\n")
    assert cli_main(["fit-stp", "--csv", str(path), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "2 curve(s)" in text and "curve 1:" in text and "tau_f" in text
    data = fit_stp_dataset(RATES, curves)
    assert f"{float(data.params.tau_d[1]):.6g}" in text


def test_cli_bad_input_exits_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["fit-stp", "--rates", "10", "20", "--ratios", "0.5", "--quiet"])
    assert exc.value.code == 2
    assert "target_ratio has 1 values per curve but rates_hz has 2" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("10,0.5\n20\n")
    with pytest.raises(SystemExit) as exc:
        cli_main(["fit-stp", "--csv", str(bad), "--quiet"])
    assert exc.value.code == 2 and "data row 2 has 1 columns" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_main(["fit-stp", "--rates", "10", "--quiet"])
    assert exc.value.code == 2 and "give the target curve" in capsys.readouterr().err
