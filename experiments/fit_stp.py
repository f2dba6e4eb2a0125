"""Recover the tutorial's STD and STF parameters from their g10/g1 curves by gradient, with and without noise.

Question: starting far away, at (U0, tau_d, tau_f) = (0.3, 300 ms, 300 ms), does gradient-based
fitting (:func:`jaxlif.fitting.fit_stp`, L-BFGS from that start plus the 15 default starts)
recover STD (0.5, 100 ms, 50 ms) and STF (0.2, 100 ms, 750 ms) from their g10/g1 ratio curves
(rates 2..40 Hz step 2, the tutorial's forward Euler scheme with ``--dt`` ms, tau_syn = 5 ms:
workloads WL-C and WL-D of docs/workloads.md), how long does it take, and how honest are its
95 % intervals when the curve carries noise?

Two fits per synapse are reported side by side:

* noise-free target: fitted parameters, relative errors, curve RMSE, steps, compile time (first
  call minus a steady call), steady fit time (best of ``--repeats``, to the default tolerance and
  to the WL-D criterion RMSE < 1e-4) and the time of the 15 default starts without the given one;
* noisy target (Gaussian noise of sd ``--noise-sd`` added to the curve; key from ``--seed``;
  the noise level is estimated from the residuals): fitted parameters with 95 % profile-likelihood
  intervals, whether each holds the true value, identifiability, and the distance of the fitted
  curve from the true one.

Writes ``fit_stp.png`` (top: noise-free targets and fits; bottom: noisy targets, fits and true
curves) and ``fit_stp.json`` into ``--out``.  Units: rates (Hz), time constants and dt (ms),
ratios dimensionless.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # ``python experiments/fit_stp.py`` without installing jaxlif
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments import _common as C  # noqa: E402
from jaxlif.fitting import default_starts, fit_stp, stp_ratio  # noqa: E402
from jaxlif.plasticity import STD, STF, STPParams, ratio_curve  # noqa: E402

NAME = "fit_stp"
START = (0.3, 300.0, 300.0)
RATES = np.arange(2.0, 40.1, 2.0)
#: Key stream of this experiment (``experiment_key(seed, STREAM)``; the noise of synapse i is
#: ``normal(fold_in(key, i), (n_rates,))``).
STREAM = 6

DEFAULTS = dict(seed=0, dt=0.1, repeats=5, noise_sd=0.01)
QUICK = dict(repeats=1)
EXTRA = {
    "repeats": ("timed calls per fit after the first (the best is reported)", int),
    "noise_sd": ("sd of the Gaussian noise added to the ratio curves (dimensionless)", float),
}
CHECKS = {"repeats": C.integer_counts(1), "noise_sd": C.positive()}


def _timed(fn, repeats):
    """(result of the first call, its wall time, best wall time over ``repeats`` later calls)."""
    t0 = time.perf_counter()
    first = jax.block_until_ready(fn())
    t_first = time.perf_counter() - t0
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, t_first, best


def _params(p) -> dict:
    return {k: float(v) for k, v in p._asdict().items()}


def _fit_synapse(name, true, noise, cfg, log) -> tuple[dict, tuple]:
    g1, g10 = ratio_curve(true, RATES, dt=cfg.dt)
    target = np.asarray(g10 / g1, dtype=float)
    kw = dict(dt=cfg.dt)
    res, t_first, t_fit = _timed(lambda: fit_stp(RATES, target, init=START, **kw), cfg.repeats)
    res_1e4, _, t_fit_1e4 = _timed(lambda: fit_stp(RATES, target, init=START, tol=1e-4, **kw),
                                   cfg.repeats)
    multi, t_multi_first, t_multi = _timed(lambda: fit_stp(RATES, target, **kw), cfg.repeats)
    noisy_target = target + noise
    noisy = fit_stp(RATES, noisy_target, init=START, **kw)
    truth, fitted = _params(true), _params(res.params)
    rel_err = {k: fitted[k] / truth[k] - 1.0 for k in truth}
    interval = {k: [float(x) for x in np.asarray(v)] for k, v in noisy.interval._asdict().items()}
    inside = {k: bool(interval[k][0] <= truth[k] <= interval[k][1]) for k in truth}
    out = {
        "true": truth,
        "fitted": fitted,
        "rel_error": rel_err,
        "max_abs_rel_error": max(abs(v) for v in rel_err.values()),
        "rmse": float(res.rmse),
        "converged": bool(res.converged),
        "n_steps": int(res.n_steps),
        "first_call_s": t_first,
        "fit_s": t_fit,
        "fit_to_rmse_1e-4_s": t_fit_1e4,
        "n_steps_to_rmse_1e-4": int(res_1e4.n_steps),
        "rmse_at_1e-4_stop": float(res_1e4.rmse),
        "default_starts": {"n_starts": len(default_starts().U0), "fitted": _params(multi.params),
                           "rmse": float(multi.rmse), "first_call_s": t_multi_first,
                           "fit_s": t_multi, "n_near_optimal": int(multi.n_near_optimal)},
        "noisy": {"noise_sd": cfg.noise_sd, "target": noisy_target.tolist(),
                  "fitted": _params(noisy.params), "interval_95": interval,
                  "truth_inside_interval": inside,
                  "stderr": _params(noisy.stderr),
                  "identifiable": {k: bool(v) for k, v in noisy.identifiable._asdict().items()},
                  "converged": bool(noisy.converged),
                  "noise_sd_estimated": float(noisy.noise_sd),
                  "rmse_to_target": float(noisy.rmse),
                  "rmse_to_true_curve": float(np.sqrt(np.mean(
                      (np.asarray(noisy.fitted_ratio) - target) ** 2)))},
    }
    log(f"{name}: noise-free fit {fitted} (max rel. error {out['max_abs_rel_error']:.1e}), "
        f"{int(res.n_steps)} steps, first call {t_first:.2f} s, fit {t_fit * 1e3:.1f} ms; "
        f"noisy fit {out['noisy']['fitted']}, truth inside {sum(inside.values())}/3 intervals")
    return out, (target, res, noisy_target, noisy)


def _interval_text(noisy: dict) -> str:
    parts = []
    for k, unit in (("U0", ""), ("tau_d", " ms"), ("tau_f", " ms")):
        lo, hi = noisy["interval_95"][k]
        parts.append(f"{k} = {noisy['fitted'][k]:.3g}{unit} [{lo:.3g}, {hi:.3g}]")
    return ", ".join(parts)


def run(cfg, log, files) -> dict:
    key = C.experiment_key(cfg.seed, STREAM)
    config = dict(start=START, rates_hz=RATES.tolist(), mode="tutorial", dt_ms=cfg.dt,
                  tau_syn_ms=5.0, repeats=cfg.repeats, seed=cfg.seed, noise_sd=cfg.noise_sd,
                  backend=jax.default_backend(),
                  dtype=str(np.dtype(jax.numpy.result_type(float))))
    summary = {"name": NAME, "config": config,
               "units": "rates Hz, tau_d/tau_f/dt ms, U0 and ratios dimensionless, times s"}
    curves = {}
    for i, (name, true) in enumerate((("STD", STD), ("STF", STF))):
        noise = cfg.noise_sd * np.asarray(jax.random.normal(jax.random.fold_in(key, i),
                                                            RATES.shape), dtype=float)
        summary[name], curves[name] = _fit_synapse(name, true, noise, cfg, log)
        if i == 0:  # later calls reuse the compiled loops (same shapes)
            summary["compile_s"] = summary[name]["first_call_s"] - summary[name]["fit_s"]
    fig = _figure(curves, cfg.noise_sd, cfg.dt)
    C.save_figure(fig, cfg.out, f"{NAME}.png", files)
    summary["figures"] = files
    std, stf = summary["STD"], summary["STF"]
    n_in = sum(sum(s["noisy"]["truth_inside_interval"].values()) for s in (std, stf))
    summary["conclusion"] = (
        f"Noise-free curves: from the distant start (U0, tau_d, tau_f) = {START}, gradient "
        f"fitting recovers STD within {100 * std['max_abs_rel_error']:.2g} % and STF within "
        f"{100 * stf['max_abs_rel_error']:.2g} % on every parameter (curve RMSE "
        f"{std['rmse']:.1e} and {stf['rmse']:.1e}; {std['n_steps']} and {stf['n_steps']} steps of "
        f"the best start), {1e3 * std['fit_s']:.0f} and {1e3 * stf['fit_s']:.0f} ms per fit of "
        f"16 starts, after a first call that spent {summary['compile_s']:.1f} s compiling (or "
        f"loading the compiled program from the cache). "
        f"Curves with noise of sd {cfg.noise_sd} (seed {cfg.seed}; noise level estimated): STD "
        f"{_interval_text(std['noisy'])}; STF {_interval_text(stf['noisy'])} (95 % profile-"
        f"likelihood intervals); the true value lies inside {n_in} of the 6 intervals, and the "
        f"fitted curves lie within {std['noisy']['rmse_to_true_curve']:.1e} and "
        f"{stf['noisy']['rmse_to_true_curve']:.1e} (RMS) of the true ones. One noisy curve "
        f"shows the width of the intervals, not their coverage: docs/fitting.md reports the "
        f"coverage measured over many simulated curves.")
    return summary


def _figure(curves, noise_sd, dt):
    dense = np.linspace(RATES.min(), RATES.max(), 200)
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), constrained_layout=True)
    for col, (name, (target, res, noisy_target, noisy)) in enumerate(curves.items()):
        true = STD if name == "STD" else STF
        ax = axes[0, col]
        p = res.params
        ax.plot(RATES, target, "o", color="C0", label=f"target: {name} curve")
        ax.plot(dense, np.asarray(stp_ratio(p, dense, dt=dt)), "-", color="C1",
                label=f"fit: U0={float(p.U0):.3f}, tau_d={float(p.tau_d):.1f} ms, "
                      f"tau_f={float(p.tau_f):.1f} ms")
        ax.plot(dense, np.asarray(stp_ratio(STPParams(*START), dense, dt=dt)), "--", color="0.6",
                label=f"start {START}")
        ax.set_title(f"{name} (U0={true.U0:g}, tau_d={true.tau_d:g} ms, tau_f={true.tau_f:g} ms): "
                     f"noise-free curve", fontsize="medium")
        ax = axes[1, col]
        q = noisy.params
        iv = {k: np.asarray(v) for k, v in noisy.interval._asdict().items()}
        ax.errorbar(RATES, noisy_target, yerr=noise_sd, fmt="x", color="C2", capsize=2,
                    label=f"noisy target (true curve + noise of sd {noise_sd:g})")
        ax.plot(dense, np.asarray(stp_ratio(true, dense, dt=dt)), "--", color="0.4", label="true curve")
        ax.plot(dense, np.asarray(stp_ratio(q, dense, dt=dt)), "-", color="C3",
                label=(f"fit: U0={float(q.U0):.3g} [{iv['U0'][0]:.3g}, {iv['U0'][1]:.3g}]\n"
                       f"tau_d={float(q.tau_d):.3g} [{iv['tau_d'][0]:.3g}, {iv['tau_d'][1]:.3g}] ms\n"
                       f"tau_f={float(q.tau_f):.3g} [{iv['tau_f'][0]:.3g}, {iv['tau_f'][1]:.3g}] ms "
                       f"(95 % intervals)"))
        ax.set_title(f"{name}: curve with noise (sd {noise_sd:g})", fontsize="medium")
        for ax in axes[:, col]:
            ax.set_xlabel("input rate (Hz)")
            ax.set_ylabel("conductance ratio g10/g1 (dimensionless)")
            ax.legend(fontsize="small")
    fig.suptitle("Does gradient fitting from (0.3, 300 ms, 300 ms) recover STD and STF from their "
                 "g10/g1 curves, and how wide are its intervals when the curve is noisy?")
    return fig


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
