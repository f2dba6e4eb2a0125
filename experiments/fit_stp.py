"""WL-D: recover the tutorial's STD and STF parameters from their g10/g1 curves by gradient.

Question: starting far away, at (U0, tau_d, tau_f) = (0.3, 300 ms, 300 ms), does gradient-based
fitting (:func:`jaxlif.fitting.fit_stp`, optax L-BFGS) recover STD (0.5, 100, 50) and STF
(0.2, 100, 750) from their WL-C ratio curves (rates 2..40 Hz step 2, tutorial mode: forward
Euler, dt = 0.1 ms, g_bar = 1.2 nS, tau_syn = 5 ms), and how long does it take?

Reported per synapse: fitted parameters, relative errors, curve RMSE, standard errors, steps,
compile time (first call minus a steady call; later calls reuse the compiled loop), steady fit
time (best of N, to the default tolerance 1e-6 and to the WL-D criterion RMSE < 1e-4), and the
36-start fit (``init=None``) time.
A noisy variant (Gaussian noise of sd 0.01 on the target, ``--seed``) shows the uncertainty.

Writes ``fit_stp.png`` (target vs fitted curves) and ``fit_stp.json`` into ``--out``; ``main``
returns the same numbers as a dict.  ``--quick`` runs one repetition instead of five.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # ``python experiments/fit_stp.py`` without installing jaxlif
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxlif.cli import json_safe  # noqa: E402
from jaxlif.fitting import fit_stp, stp_ratio  # noqa: E402
from jaxlif.plasticity import STD, STF, STPParams, ratio_curve  # noqa: E402

NAME = "fit_stp"

START = (0.3, 300.0, 300.0)
RATES = np.arange(2.0, 40.1, 2.0)
NOISE_SD = 0.01


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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one timing repetition instead of 5")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noisy-target variant")
    parser.add_argument("--out", default="results/fit_stp", help="output directory")
    args = parser.parse_args(argv)
    t_start = time.perf_counter()
    repeats = 1 if args.quick else 5
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(start=START, rates_hz=RATES.tolist(), mode="tutorial", dt_ms=0.1, g_bar_nS=1.2,
                  tau_syn_ms=5.0, repeats=repeats, seed=args.seed, noise_sd=NOISE_SD,
                  backend=jax.default_backend(), dtype=str(np.dtype(jax.numpy.result_type(float))))
    print("fit_stp (WL-D) config:", json.dumps(config))

    summary = {"name": NAME, "config": config}
    curves = {}
    key = jax.random.key(args.seed)
    for i, (name, true) in enumerate((("STD", STD), ("STF", STF))):
        g1, g10 = ratio_curve(true, RATES)                       # the WL-C curve
        target = np.asarray(g10 / g1, dtype=float)
        res, t_first, t_fit = _timed(lambda t=target: fit_stp(RATES, t, init=START), repeats)
        res_1e4, _, t_fit_1e4 = _timed(lambda t=target: fit_stp(RATES, t, init=START, tol=1e-4),
                                       repeats)
        multi, t_multi_first, t_multi = _timed(lambda t=target: fit_stp(RATES, t), repeats)
        noisy_target = target + NOISE_SD * np.asarray(
            jax.random.normal(jax.random.fold_in(key, i), target.shape))
        noisy = fit_stp(RATES, noisy_target)
        fitted = _params(res.params)
        truth = _params(true)
        rel_err = {k: fitted[k] / truth[k] - 1.0 for k in truth}
        summary[name] = {
            "true": truth,
            "fitted": fitted,
            "rel_error": rel_err,
            "max_abs_rel_error": max(abs(v) for v in rel_err.values()),
            "rmse": float(res.rmse),
            "converged": bool(res.converged),
            "n_steps": int(res.n_steps),
            "stderr": _params(res.stderr),
            "first_call_s": t_first,
            "fit_s": t_fit,
            "fit_to_rmse_1e-4_s": t_fit_1e4,
            "n_steps_to_rmse_1e-4": int(res_1e4.n_steps),
            "rmse_at_1e-4_stop": float(res_1e4.rmse),
            "multistart": {"fitted": _params(multi.params), "rmse": float(multi.rmse),
                           "first_call_s": t_multi_first, "fit_s": t_multi,
                           "n_near_optimal": int(multi.n_near_optimal)},
            "noisy": {"noise_sd": NOISE_SD, "fitted": _params(noisy.params),
                      "stderr": _params(noisy.stderr),
                      "identifiable": {k: bool(v) for k, v in noisy.identifiable._asdict().items()},
                      "rmse_to_target": float(noisy.rmse),
                      "rmse_to_true_curve": float(np.sqrt(np.mean(
                          (np.asarray(noisy.fitted_ratio) - target) ** 2)))},
        }
        curves[name] = (target, res, noisy_target, noisy)
        if i == 0:  # later calls reuse the compiled loops (same shapes)
            summary["compile_s"] = t_first - t_fit
            summary["multistart_compile_s"] = t_multi_first - t_multi
        print(f"{name}: fitted {fitted} (max rel. error {summary[name]['max_abs_rel_error']:.1e}), "
              f"RMSE {float(res.rmse):.2e}, {int(res.n_steps)} steps, first call "
              f"{t_first:.2f} s, fit {t_fit * 1e3:.1f} ms "
              f"(to RMSE<1e-4: {t_fit_1e4 * 1e3:.1f} ms), 36 starts {t_multi * 1e3:.0f} ms")

    fig_path = out / f"{NAME}.png"
    _figure(curves, fig_path)
    summary["figures"] = [fig_path.name]
    summary["figure"] = str(fig_path)
    json_path = out / f"{NAME}.json"
    summary["json"] = str(json_path)
    std, stf = summary["STD"], summary["STF"]
    summary["conclusion"] = (
        f"From the distant start (U0, tau_d, tau_f) = {START}, gradient fitting (optax L-BFGS) "
        f"recovers STD within {100 * std['max_abs_rel_error']:.2g} % and STF within "
        f"{100 * stf['max_abs_rel_error']:.2g} % on every parameter (curve RMSE "
        f"{std['rmse']:.1e} and {stf['rmse']:.1e}) in {std['n_steps']} and {stf['n_steps']} steps: "
        f"{1e3 * std['fit_s']:.1f} and {1e3 * stf['fit_s']:.1f} ms per fit after "
        f"{summary['compile_s']:.1f} s of compilation ({1e3 * std['fit_to_rmse_1e-4_s']:.1f} and "
        f"{1e3 * stf['fit_to_rmse_1e-4_s']:.1f} ms to the WL-D criterion RMSE < 1e-4; 36 starts at "
        f"once: {1e3 * std['multistart']['fit_s']:.0f} ms). With noise of sd {NOISE_SD} on the "
        f"target, the fitted curves lie within {std['noisy']['rmse_to_true_curve']:.1e} and "
        f"{stf['noisy']['rmse_to_true_curve']:.1e} (RMS) of the true ones and the standard errors "
        f"grow to U0 +/- {std['noisy']['stderr']['U0']:.2g} (STD), "
        f"{stf['noisy']['stderr']['U0']:.2g} (STF).")
    summary["runtime_s"] = time.perf_counter() - t_start
    json_path.write_text(json.dumps(json_safe(summary), indent=2))
    print(summary["conclusion"])
    print(f"compile {summary['compile_s']:.2f} s (one start), "
          f"{summary['multistart_compile_s']:.2f} s (36 starts); wrote {fig_path} and {json_path}")
    return summary


def _figure(curves, path) -> None:
    from matplotlib.figure import Figure

    dense = np.linspace(RATES.min(), RATES.max(), 200)
    fig = Figure(figsize=(12, 5.4), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for ax, (name, (target, res, noisy_target, noisy)) in zip(axes, curves.items()):
        p = res.params
        ax.plot(RATES, target, "o", color="C0", label=f"target ({name}, WL-C curve)")
        ax.plot(dense, np.asarray(stp_ratio(p, dense)), "-", color="C1",
                label=f"fit from {START}: U0={float(p.U0):.3f}, tau_d={float(p.tau_d):.1f} ms, "
                      f"tau_f={float(p.tau_f):.1f} ms")
        ax.plot(dense, np.asarray(stp_ratio(STPParams(*START), dense)), "--", color="0.6",
                label="start curve")
        ax.plot(RATES, noisy_target, "x", color="C2", label=f"noisy target (sd {NOISE_SD})")
        ax.plot(dense, np.asarray(stp_ratio(noisy.params, dense)), ":", color="C2",
                label="fit to noisy target")
        ax.set_xlabel("input rate [Hz]")
        ax.set_ylabel("conductance ratio g10/g1 (dimensionless)")
        ax.set_title(name)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.suptitle("WL-D: does gradient fitting from (0.3, 300 ms, 300 ms) recover STD and STF "
                 "from their g10/g1 curves?")
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
