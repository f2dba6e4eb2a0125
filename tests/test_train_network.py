"""``experiments/train_network.py`` at ``--quick`` size: its files, its bookkeeping, and its statistics
against a NumPy oracle on an independent simulation.

One ``--quick`` run per module (40 E + 10 I neurons, 60 ms: about 13 CPU-seconds, half of it tracing and
compiling the mean-field gradient program); the other tests read its JSON or call the script's small functions directly.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments import train_network as tn  # noqa: E402
from jaxlif import network as nw  # noqa: E402

SEED = 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "train_network"
    summary = tn.main(["--quick", "--seed", str(SEED), "--out", str(out)])
    return out, summary, json.loads((out / "train_network.json").read_text())


def _cfg(data) -> argparse.Namespace:
    return argparse.Namespace(**data["config"])


def test_files_and_summary(quick):
    out, summary, data = quick
    assert sorted(p.name for p in out.iterdir()) == ["statistics.png", "train_network.json", "train_network.md",
                                                      "training.png"]
    assert data["figures"] == ["training.png", "statistics.png"]
    for png in data["figures"]:
        raw = (out / png).read_bytes()
        assert raw[:8] == PNG_MAGIC and len(raw) > 20_000, png
    assert data["conclusion"] and "--quick" in data["conclusion"]
    md = (out / "train_network.md").read_text()
    assert data["conclusion"] in md and "| loss (sum of squared z) |" in md
    assert summary["name"] == "train_network" and data["params"] == list(tn.PARAMS)
    cfg = _cfg(data)
    assert cfg.n_E == 40 and cfg.n_I == 10 and cfg.steps == 2 and cfg.T == 60.0


def test_budget_and_histories(quick):
    """The baselines get round(cost_ratio x steps) forward calls, a budget fixed in the configuration (the
    measured ratio is reported beside it, and does not change it); every history has its length, Adam's is finite;
    a random candidate whose run was poisoned (forward Euler left its stable range: jaxlif._stability) has
    an infinite loss (null in the JSON) and is never the best."""
    _, _, data = quick
    cfg = _cfg(data)
    timing = data["timing"]
    ratio = float(np.median(timing["grad_s"]) / np.median(timing["forward_s"]))
    assert timing["ratio_grad_to_forward"] == pytest.approx(ratio, rel=1e-6)
    assert timing["cost_ratio"] == cfg.cost_ratio == tn.QUICK["cost_ratio"]
    budget = max(2, int(round(cfg.cost_ratio * cfg.steps)))
    assert data["budget_forward_calls"] == budget
    assert len(data["random"]["loss"]) == budget
    finite = [x for x in data["random"]["loss"] if x is not None and np.isfinite(x)]
    assert len(finite) > len(data["random"]["loss"]) // 2
    assert data["random"]["loss"][data["random"]["best"]] == pytest.approx(min(finite))
    calls = data["es"]["calls"]
    assert calls == [2 * (g + 1) for g in range(len(calls))] and calls[-1] <= budget < calls[-1] + 2
    assert len(data["adam"]["loss"]) == cfg.steps and len(data["adam"]["theta"]) == cfg.steps + 1
    assert np.all(np.isfinite(data["adam"]["loss"])) and np.all(np.isfinite(data["adam"]["grad"]))
    assert np.any(np.asarray(data["adam"]["grad"]) != 0)
    # Adam moved theta, and not by more than its learning rate allows (|step| <= lr per coordinate, roughly)
    theta = np.asarray(data["adam"]["theta"])
    assert np.all(np.abs(np.diff(theta, axis=0)) <= 1.5 * cfg.learning_rate) and np.any(theta[-1] != theta[0])
    # Gauss-Newton: floor(budget / gn_cost_ratio) steps, each recomputed from its recorded Jacobian and statistics
    gn = data["gauss_newton"]
    assert gn["steps"] == max(1, int(budget // cfg.gn_cost_ratio)) == len(gn["loss"]) == len(gn["theta"]) - 1
    assert timing["gn_ratio"] == pytest.approx(np.median(timing["gn_step_s"]) / np.median(timing["forward_s"]),
                                               rel=1e-6)
    target, scale = np.asarray(data["target"]["mean"]), np.asarray(data["target"]["loss_scale"])
    theta = np.asarray(gn["theta"])
    for i in range(gn["steps"]):
        J, mean = np.asarray(gn["jacobian"][i]), np.asarray(gn["stats"][i])
        assert gn["loss"][i] == pytest.approx(np.sum(((mean - target) / scale) ** 2), rel=1e-6)
        step = tn.gauss_newton_step(J, mean, target, scale, cfg.damping, cfg.gn_max_step)
        np.testing.assert_allclose(theta[i + 1], theta[i] + gn["gain"][i] * step, rtol=1e-9, atol=1e-12)
    assert np.any(theta[-1] != theta[0])
    # the gains: 1 until the first step whose runs' loss is at most --gn-average-below, then 1/(n + 1)
    low = [i for i, x in enumerate(gn["loss"]) if x <= cfg.gn_average_below]
    want = [1.0 if not low or i < low[0] else 1.0 / (i - low[0] + 1) for i in range(gn["steps"])]
    np.testing.assert_allclose(gn["gain"], want, rtol=1e-12)


def test_losses_are_the_standardised_distances(quick):
    """Each evaluation's loss is the sum of squared standardised differences of its reported means."""
    _, _, data = quick
    cfg = _cfg(data)
    target, sd = np.asarray(data["target"]["mean"]), np.asarray(data["target"]["sd"])
    per_run = np.asarray(data["target"]["per_run"])
    np.testing.assert_allclose(per_run.mean(0), target, rtol=1e-6)
    np.testing.assert_allclose(per_run.std(0, ddof=1), sd, rtol=1e-5)
    scale = sd * math.sqrt(1 / cfg.ref_trials + 1 / cfg.eval_trials)
    for name, e in data["evaluation"].items():
        want = np.sum(((np.asarray(e["stats_mean"]) - target) / scale) ** 2)
        assert e["loss"] == pytest.approx(want, rel=1e-5), name
    np.testing.assert_allclose(data["evaluation"]["hidden"]["values"], cfg.hidden, rtol=1e-5)
    np.testing.assert_allclose(data["evaluation"]["start"]["values"], cfg.start, rtol=1e-5)


def test_gradient_check_bookkeeping(quick):
    """The sign count is recomputed from the two Jacobians and the FD standard errors in the JSON."""
    _, _, data = quick
    ident = data["identifiability"]
    J, se, est = (np.asarray(ident[k]) for k in ("jacobian", "jacobian_se", "estimator_jacobian"))
    assert J.shape == se.shape == est.shape == (4, 4) and np.all(np.isfinite(est))
    clear = np.abs(J) > 2 * se
    assert ident["sign_clear"] == int(clear.sum())
    assert ident["sign_agree"] == int((clear & (np.sign(est) == np.sign(J))).sum())
    # Gauss-Newton's forward-mode Jacobian equals the reverse-mode one of Adam's program (same keys, float32)
    fwd = np.asarray(ident["estimator_jacobian_forward"])
    np.testing.assert_allclose(fwd, est, rtol=1e-3, atol=1e-4 * np.abs(est).max())
    assert ident["forward_vs_reverse"] == pytest.approx(np.abs(fwd - est).max() / np.abs(est).max(), rel=1e-6)
    # the CV's check (rate_slopes at the hidden theta on the evaluation keys): recorded and stated
    check = data["cv_rate_check"]
    assert check["keys"] == _cfg(data).eval_trials and np.isfinite(check["open_loop"]) and check["open_loop"] != 0.0
    closed = np.nan if check["closed_loop"] is None else check["closed_loop"]      # NaN is null in the JSON
    se = np.nan if check["closed_loop_se"] is None else check["closed_loop_se"]
    assert check["verdict"] == nw.gradients._verdict(check["open_loop"], check["open_loop_se"], closed, se)
    assert tn._VERDICT[check["verdict"]] in data["conclusion"]
    assert f"in the estimator's replays (jaxlif.network.rate_slopes, {check['keys']} keys" in data["conclusion"]


def test_estimator_jacobian_is_the_gradient_of_each_statistic():
    """``estimator_jacobian`` recovers d s_i / d theta from a loss-gradient program (here an exact one)."""
    A = jnp.asarray(np.random.default_rng(0).normal(size=(4, 4)), jnp.float32)

    @jax.jit         # a compiled program, as the script's is (4 compilations in this test instead of 31, 2026-12-07)
    def grad(theta, keys, target, scale):
        def loss(th):
            s = jnp.tanh(A @ th) + keys.sum()
            return jnp.sum(((s - target) / scale) ** 2)
        return loss(theta), jax.grad(loss)(theta)

    theta = jnp.asarray([0.3, -0.2, 0.1, 0.5], jnp.float32)
    want = jax.jit(jax.jacfwd(lambda th: jnp.tanh(A @ th)))(theta)
    np.testing.assert_allclose(tn.estimator_jacobian(grad, theta, jnp.ones(2)), want, rtol=1e-4, atol=1e-5)


def test_gauss_newton_gains_average_the_landing_points(monkeypatch):
    """From the first step at the noise level, the n-th step after it has gain 1/(n + 1): on statistics that are
    linear in theta plus noise (a stand-in for the network), theta becomes the running mean of the points
    that each full step would land on, and its error falls below a single landing point's."""
    rng = np.random.default_rng(4)
    A = np.array([[3.0, 1.0, 0.0, 0.0], [0.5, 2.0, 0.0, 0.0], [0.0, 0.0, 1.5, 0.2], [0.0, 0.3, 0.0, 1.0]])
    noise = rng.normal(size=(40, 4))
    cfg = argparse.Namespace(slopes_every=5, damping=0.0, gn_max_step=1e9, gn_average_below=8.0, trials=2)

    def jacobian(theta, keys, slopes):                         # statistics A theta + noise of step `keys`
        return A, (A @ theta + noise[keys])[None]

    monkeypatch.setattr(tn, "_keys", lambda root, sub, i, n: i)  # the step index stands in for its keys
    hist = tn.fit_gauss_newton(jacobian, np.full(4, 3.0), np.zeros(4), np.ones(4), 40, None, cfg, print)
    thetas, landing = np.asarray(hist["theta"]), []
    for i in range(40):                                        # each full step lands on -A^-1 noise_i exactly
        landing.append(-np.linalg.solve(A, noise[i]))
    first = next(i for i, x in enumerate(hist["loss"]) if x <= 8.0)
    assert hist["gain"][:first + 1] == [1.0] * (first + 1) and hist["gain"][first + 1] == 0.5
    np.testing.assert_allclose(thetas[-1], np.mean(landing[first:], axis=0), rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(thetas[-1]) < 0.5 * np.median(np.linalg.norm(landing, axis=1))


def test_gauss_newton_step():
    """On linear statistics ``s = A theta`` (an exact Jacobian) an undamped step lands on the target; damping
    shortens it without turning it uphill; no coordinate moves by more than ``max_step``."""
    rng = np.random.default_rng(1)
    A, theta, scale = rng.normal(size=(4, 4)), rng.normal(size=4), np.asarray([0.1, 1.0, 0.01, 2.0])
    target = A @ rng.normal(size=4)
    step = tn.gauss_newton_step(A, A @ theta, target, scale, 0.0, 1e9)
    np.testing.assert_allclose(A @ (theta + step), target, rtol=1e-8, atol=1e-10)
    loss = lambda th: np.sum(((A @ th - target) / scale) ** 2)                      # noqa: E731
    damped = tn.gauss_newton_step(A, A @ theta, target, scale, 30.0, 1e9)
    assert loss(theta) > loss(theta + damped) > loss(theta + step) and np.linalg.norm(damped) < np.linalg.norm(step)
    clipped = tn.gauss_newton_step(A, A @ theta, target, scale, 0.0, 0.05)
    assert np.max(np.abs(clipped)) == pytest.approx(0.05) and np.all(np.sign(clipped) == np.sign(step))


def test_theta_sets_the_parameter_tree():
    """``with_theta`` writes the four values where the docstring says, and nothing else."""
    cfg = argparse.Namespace(n_E=40, n_I=10, p=0.2, dt=0.1)    # the --quick network's sizes: its programs (9) are compiled
    structure, base, leaf = tn.build(jax.random.key(0), cfg)
    values = [1.7, 0.4, 2.5, 0.3]
    params = tn.with_theta(base, jnp.asarray(tn.to_theta(values, leaf), jnp.float32), leaf)
    for pop in ("E", "I"):
        assert float(params.populations[pop].drive.weight) == pytest.approx(1.7, rel=1e-5)
        assert float(params.populations[pop].drive.rate) == float(base.populations[pop].drive.rate)
    ee, ie = params.projections["E->E"], params.projections["I->E"]
    np.testing.assert_allclose(ee.weights, 0.4 * np.asarray(base.projections["E->E"].weights), rtol=1e-5)
    np.testing.assert_allclose(ie.weights, 2.5 * np.asarray(base.projections["I->E"].weights), rtol=1e-5)
    assert float(ee.stp.U0) == pytest.approx(0.3, rel=1e-5)
    for key in ("E->I", "I->I"):
        np.testing.assert_array_equal(params.projections[key].weights, base.projections[key].weights)
    np.testing.assert_allclose(tn.to_theta(values, leaf), [np.log(1.7), np.log(0.4), np.log(2.5),
                                                           np.log(0.3 / 0.7)], rtol=1e-5)


def _oracle_stats(sE, sI, dt, window_steps, corr_n):
    """NumPy: E and I rates [Hz], the mean ISI CV of E trains with >= 4 spikes, the mean pairwise count correlation."""
    n_steps = sE.shape[1]
    rate = lambda s: s.sum() / (s.shape[0] * n_steps * dt) * 1000.0
    cvs = []
    for train in sE:
        t = np.nonzero(train)[0]
        if len(t) >= 4:
            isi = np.diff(t)
            cvs.append(isi.std() / isi.mean())
    cv = float(np.mean(cvs)) if cvs else 0.0
    W = n_steps // window_steps
    c = sE[:corr_n, :W * window_steps].reshape(corr_n, W, window_steps).sum(-1)
    varies = c.std(1) > 0
    rho = np.corrcoef(c[varies]) if varies.sum() >= 2 else np.zeros((0, 0))
    iu = np.triu_indices(rho.shape[0], 1)
    corr = float(rho[iu].mean()) if len(iu[0]) else 0.0
    return np.array([rate(sE), rate(sI), cv, corr])


def test_target_statistics_equal_a_numpy_oracle(quick):
    """Reference run 0 re-simulated with exact spikes (keys as the docstring derives them), statistics in NumPy."""
    _, _, data = quick
    cfg = _cfg(data)
    root = jax.random.fold_in(jax.random.key(SEED), tn.STREAM)
    structure, base, leaf = tn.build(jax.random.fold_in(root, 0), cfg)
    key = jax.random.split(jax.random.fold_in(root, 1), cfg.ref_trials)[0]
    params = tn.with_theta(base, jnp.asarray(data["theta_hidden"], jnp.float32), leaf)
    spikes = nw.simulate_network(key, structure, params, T=cfg.T, dt=cfg.dt, record=False).spikes
    start = int(round(cfg.late_start / cfg.dt))
    sE, sI = (np.asarray(spikes[p])[:, start:].astype(float) for p in ("E", "I"))
    assert sE.sum() > 0
    want = _oracle_stats(sE, sI, cfg.dt, int(round(cfg.window / cfg.dt)), cfg.corr_n)
    np.testing.assert_allclose(data["target"]["per_run"][0], want, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--hidden", "1,1,1"], "must be 4 numbers"),
    (["--start", "1,1,1,1.5"], "U0 must lie in (0, 1)"),
    (["--ref-trials", "3"], "multiple of --trials"),
    (["--window", "30"], "two windows"),
    (["--closed-slopes", "1"], "must be 0 or at least 2 keys"),
    (["--closed-slopes", "4", "--cv-through-rate", "0"], "needs --cv-through-rate 1"),
    (["--slopes-every", "0"], "--slopes-every"),
    (["--damping", "-1"], "must be finite and >= 0"),
    (["--gn-cost-ratio", "0"], "--gn-cost-ratio"),
    (["--gn-max-step", "0"], "--gn-max-step"),
    (["--gn-average-below", "-1"], "must be finite and >= 0"),
])
def test_bad_options_are_refused(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as err:
        tn.main(["--quick", "--out", str(tmp_path / "x")] + argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_closed_slopes_run(tmp_path, quick):
    """``--quick --closed-slopes 2``: the slopes are measured at the start and every ``--slopes-every`` steps,
    recorded, used by Adam and at the hidden theta, and named in the conclusion."""
    summary = tn.main(["--quick", "--seed", str(SEED), "--closed-slopes", "2", "--slopes-every", "1",
                       "--out", str(tmp_path / "c")])
    data = json.loads((tmp_path / "c" / "train_network.json").read_text())
    steps = [entry[0] for entry in data["adam"]["closed_slopes"]]
    assert steps == list(range(_cfg(data).steps))
    for _, slopes in data["adam"]["closed_slopes"]:
        assert set(slopes) == {"E", "I"} and all(math.isfinite(v) for v in slopes.values())
    hidden = data["adam"]["hidden_slopes"]
    assert set(hidden) == {"E", "I"} and "--closed-slopes 2" in summary["conclusion"]
    assert all(math.isfinite(v) for v in data["adam"]["loss"])
    # used by Adam: its first step (the same keys and start as the run without slopes) has the same loss and a
    # different gradient (the CV's part goes through both rates)
    plain = quick[2]["adam"]
    assert data["adam"]["loss"][0] == pytest.approx(plain["loss"][0], rel=1e-6)
    assert not np.allclose(data["adam"]["grad"][0], plain["grad"][0], rtol=1e-3)
    assert [entry[0] for entry in data["gauss_newton"]["closed_slopes"]] == list(range(data["gauss_newton"]["steps"]))
