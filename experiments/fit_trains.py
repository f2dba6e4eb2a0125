"""Real data: which short-term plasticity model reproduces mossy fibre -> CA3 EPSC trains?

Data (shipped with jaxlif, :func:`jaxlif.fitting.mossy_fibre`): Chamberland et al. 2018 (PNAS
115:7434), amplitudes normalised per cell as packaged with Rossbroich et al. 2021 (PLoS Comput
Biol 17:e1008013); mean and SEM over sweeps of 10 pulses at 20 Hz (about 379 sweeps) and at
100 Hz (409-486 sweeps).  The SEMs are the Gaussian noise sd of each mean (known, not fitted).

Every model of :mod:`jaxlif.fitting.models` (``tm``: U0, tau_d, tau_f; ``tm4``: baseline U and
facilitation increment f; ``depression``; ``srp``: the spike-response plasticity model of
Rossbroich et al.) is fitted to both trains at once by maximum likelihood with a free amplitude
scale (:func:`jaxlif.fitting.compare_models`), and compared by AIC, BIC, a goodness-of-fit test
against the SEMs and held-out-protocol cross-validation (fit one rate, predict the other).
Rossbroich et al. report that the TM model under-fits these trains; the report says what the
numbers here show.

Writes into ``--out``: ``fit_trains_fits.png`` (data mean +- SEM against each model's fit at
20 and 100 Hz, and the residuals), ``fit_trains_comparison.png`` (information criteria, and each
model's prediction of the rate it was not fitted to) and ``fit_trains.json`` (table, parameters
with 95 % profile-likelihood intervals, facilitation ratios, residuals).  The fit is
deterministic: ``--seed`` is accepted for a uniform command line.  ``--quick`` skips the
cross-validation (half the compilation).

Per-sweep data (``--sweeps DIR``, off by default: jaxlif does not ship these recordings).  ``DIR``
is the folder ``data/processed/chamberland2018`` of a checkout of the srplasticity repository (or
a CSV written from it by :func:`jaxlif.fitting.write_trains_csv`), read by
:func:`jaxlif.fitting.read_chamberland2018`: 7 protocols, 14,481 non-zero amplitudes, zeros left
out as Rossbroich et al. do.  The run then adds (a few minutes on 2 CPUs):

* every model under every noise model (``gaussian``, ``gamma``, ``binomial``, ``gamma_kernel``)
  fitted to all 14,481 amplitudes: log-likelihood, parameters, AIC, BIC (``sweeps.table``), and
  how many of each model's default starts end within 0.01 of its best (``starts_at_best``);
  the SRP fit with the history-dependent SD (``gamma_kernel``) with 95 % profile intervals; the
  log-likelihood of the published SRP fit (Rossbroich et al. 2021, ``PUBLISHED_SRP``) under the
  same likelihood, for reference;
* with ``--coverage N``: ``N`` data sets simulated from that SRP fit (same protocols, sweeps
  and missing pulses as the data, gamma amplitudes with the kernel SD) and fitted, and how often
  each 95 % profile interval holds the truth (``sweeps.coverage``; about 2 s per data set);
* held-out protocols: every model fitted (``gamma_kernel`` noise) to the 20 and 100 Hz trains
  only, then asked to predict the other five protocols; the error of each prediction is the RMS
  over pulses of ``(data mean - prediction) / SEM`` (``sweeps.heldout``), drawn in
  ``fit_trains_heldout.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments import _common as C  # noqa: E402
from jaxlif.cli.fit_trains import mean_sem, plot_trains  # noqa: E402
from jaxlif.fitting import (CHAMBERLAND2018_CITATION, CHAMBERLAND2018_PROTOCOLS,  # noqa: E402
                            MOSSY_FIBRE_CITATION, compare_models, fit_stp_trains, get_model,
                            mossy_fibre, read_chamberland2018, stp_amplitudes, train_loss)
from jaxlif.fitting.models import SRP_TAUS_MS, srp_model  # noqa: E402
from jaxlif.fitting.trains import SDKernelParams  # noqa: E402

NAME = "fit_trains"
MODELS = ("tm", "tm4", "depression", "srp")


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value in ("yes", "true", "1", "on"):
        return True
    if value in ("no", "false", "0", "off"):
        return False
    raise ValueError(f"{text!r} is not yes or no")


def _models(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _check_models(value, cfg):
    unknown = [m for m in value if m not in MODELS]
    if unknown or not value:
        return f"choose models from {','.join(MODELS)}, got {','.join(value)}"
    if len(set(value)) != len(value):
        return f"names a model twice: {','.join(value)}"


DEFAULTS = dict(seed=0, models=MODELS, cross_validate=True, sweeps="", coverage=0)
QUICK = dict(cross_validate=False)
EXTRA = {
    "seed": ("accepted for a uniform command line; the fit is deterministic", int),
    "models": ("models to fit and compare (comma-separated)", _models),
    "cross_validate": ("held-out-protocol cross-validation, yes or no", _yes_no),
    "sweeps": ("folder data/processed/chamberland2018 of srplasticity (or a CSV from it): add the "
               "per-sweep analysis (empty: skip)", str),
    "coverage": ("with --sweeps: simulate this many data sets from the SRP fit with the kernel "
                 "SD (the data's design), fit them, and measure the coverage of the 95 %% profile "
                 "intervals (0: skip)", int),
}

#: Noise models of the per-sweep analysis.
NOISES = ("gaussian", "gamma", "binomial", "gamma_kernel")

#: The SRP fit Rossbroich et al. (2021) published for the per-sweep data (srplasticity,
#: scripts/modelfits/chamberland2018_SRPmodel.pkl: mean baseline and kernel amplitudes, SD
#: baseline, amplitudes and scale, kernels of 15, 100 and 650 ms; the mean scale fixed to
#: 1 / sigmoid(b), i.e. a first pulse of 1).  Their likelihood (gamma, mean and SD as here) of the
#: 14,481 amplitudes at these values is -28472.87.
PUBLISHED_SRP = dict(b=-1.9124948478910848, a=(7.56407803, 11.78831434, 276.97199343),
                     b_s=-1.5860852273782036, c=(11.87159805, 10.1045027, 271.62990625),
                     s=4.390197100936473)

#: Training protocols of the held-out test.
HELDOUT_TRAIN = ("20", "100")
CHECKS = {"models": _check_models}


def describe(data, cmp) -> dict:
    """Per model: facilitation A10/A1 per protocol (data and fit), standardised residuals
    ``(data - fit) / SEM``, their RMS and the worst pulse."""
    mean, sem = mean_sem(data)
    names = list(data.protocols)
    out = {"data": {"A10_over_A1": {n: float(mean[p, -1] / mean[p, 0]) for p, n in enumerate(names)}}}
    for name, fit in cmp.fits.items():
        f = np.asarray(fit.fitted, dtype=float)
        z = (mean - f) / sem
        p, k = np.unravel_index(np.argmax(np.abs(z)), z.shape)
        out[name] = dict(
            A10_over_A1={n: float(f[q, -1] / f[q, 0]) for q, n in enumerate(names)},
            z=z.tolist(), rms_z=float(np.sqrt(np.mean(z ** 2))),
            rms_z_per_protocol={n: float(np.sqrt(np.mean(z[q] ** 2))) for q, n in enumerate(names)},
            worst=dict(protocol=names[p], pulse=int(k) + 1, z=float(z[p, k]),
                       data=float(mean[p, k]), fit=float(f[p, k])))
    return out


def _params_text(fit) -> str:
    m = get_model(fit.model)
    parts = []
    for field, unit in zip(m.fields, m.units):
        v = float(getattr(fit.params, field))
        lo, hi = (float(x) for x in np.asarray(getattr(fit.interval, field)))
        parts.append(f"{field} = {v:.3g}{' ' + unit if unit else ''} [{lo:.3g}, {hi:.3g}]")
    return ", ".join(parts)


def conclusion(cmp, desc, cv: bool) -> str:
    """The report's text, every statement computed from the numbers."""
    rows = {r["model"]: r for r in cmp.table}
    data = desc["data"]["A10_over_A1"]
    names = list(data)
    txt = [f"Mossy fibre -> CA3 trains (Chamberland et al. 2018; normalised as in Rossbroich et "
           f"al. 2021), 10 pulses at {' and '.join(names)}, the SEMs taken as the known noise. "
           f"Data facilitate A10/A1 = " + ", ".join(f"{data[n]:.2f} at {n}" for n in names) + "."]
    for name, fit in cmp.fits.items():
        d, r = desc[name], rows[name]
        fields = get_model(name).fields
        edge = [f for f in fields if bool(getattr(fit.at_edge, f))]
        loose = [f for f in fields if not bool(getattr(fit.identifiable, f)) and f not in edge]
        w = d["worst"]
        p = r["gof_pvalue"]
        verdict = ("consistent with the data" if r["reproduces_data"] else
                   f"rejected by the goodness-of-fit test (p {'< 1e-15' if p < 1e-15 else f'= {p:.2g}'})")
        right, wrong = [], []
        for n in names:
            fa, da = d["A10_over_A1"][n], data[n]
            (right if abs(fa / da - 1) <= 0.05 else wrong).append(
                f"A10/A1 at {n} ({fa:.2f} vs {da:.2f})")
        txt.append(
            f"{name}: {_params_text(fit)} (95 % intervals"
            + (f"; at the edge of the range: {', '.join(edge)}" if edge else "")
            + (f"; not identifiable: {', '.join(loose)}" if loose else "")
            + f"); log-likelihood {r['loglik']:.1f}, dAIC {r['delta_aic']:.1f}; {verdict}. "
            + (f"Right (within 5 %): {', '.join(right)}. " if right else "")
            + (f"Wrong: {', '.join(wrong)}. " if wrong else "")
            + f"Residuals {d['rms_z']:.1f} SEM RMS, worst at pulse {w['pulse']} of "
              f"{w['protocol']} (fit {w['fit']:.2f}, data {w['data']:.2f}: {w['z']:+.1f} SEM).")
    tm = rows.get("tm")
    if tm is not None:
        better = [r for r in cmp.table if r["model"] != "tm" and r["aic"] < tm["aic"] - 2]
        u0_edge = bool(cmp.fits["tm"].at_edge.U0) and float(cmp.fits["tm"].params.U0) < 0.01
        txt.append(
            "Rossbroich et al. report that the TM model under-fits these trains; so do these "
            f"numbers: TM's residuals are {desc['tm']['rms_z']:.1f} SEM RMS"
            + (f", and {', '.join(r['model'] for r in better)} "
               f"{'fits' if len(better) == 1 else 'fit'} better by "
               f"{', '.join('%.0f' % (tm['aic'] - r['aic']) for r in better)} AIC units" if better
               else ", but no other model beats it by more than 2 AIC units")
            + (". Its best fit drives U0 to the lower edge of its range, where depression "
               "vanishes and facilitation sums linearly with tau_f: one linear rule cannot "
               "follow both the 20 Hz and the 100 Hz growth." if u0_edge else "."))
    if cv and cmp.best_cv is not None:
        cvs = ", ".join(f"{r['model']} {r['cv_rmse']:.2f}" for r in cmp.table)
        txt.append(f"Held-out-protocol cross-validation (fit one rate, predict the other; RMS "
                   f"prediction error in normalised units): {cvs}; best {cmp.best_cv}"
                   + (f", not the AIC winner {cmp.best_aic}: fitted to one rate alone, "
                      f"{cmp.best_aic} predicts the other rate worse than {cmp.best_cv}."
                      if cmp.best_cv != cmp.best_aic else "."))
    elif not cv:
        txt.append("Cross-validation skipped (--quick).")
    if not any(r["reproduces_data"] for r in cmp.table):
        txt.append("No model is consistent with the data at the stated SEMs (goodness-of-fit "
                   "p < 0.001 for all): with about 400 sweeps per mean, systematic misfits of a "
                   "few percent are significant.")
    return " ".join(txt)


def _comparison_figure(data, cmp, cv: bool):
    mean, sem = mean_sem(data)
    names = list(data.protocols)
    times = np.asarray(data.spike_times_ms)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    ax = axes[0]
    models = [r["model"] for r in cmp.table]
    best_bic = min(r["bic"] for r in cmp.table)
    x = np.arange(len(models))
    ax.bar(x - 0.2, [r["delta_aic"] for r in cmp.table], 0.4, label="dAIC")
    ax.bar(x + 0.2, [r["bic"] - best_bic for r in cmp.table], 0.4, label="dBIC")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xticks(x, models)
    ax.set_ylabel("difference to the best model (log-likelihood units x 2)")
    ax.set_title("Information criteria (lower is better)", fontsize="medium")
    ax.legend(fontsize="small")
    for q, ax in enumerate(axes[1:]):
        ax.errorbar(np.arange(1, 11), mean[q], yerr=sem[q], fmt="o", color="k", ms=4, capsize=2,
                    label="data, mean +- SEM")
        if cv:
            for i, m in enumerate(models):
                ax.plot(np.arange(1, 11), np.asarray(cmp.cv_fitted[m])[q], "-", marker=".",
                        color=f"C{i}", label=f"{m}, fitted to {names[1 - q]}")
        else:
            ax.text(0.5, 0.5, "cross-validation skipped (--quick)", transform=ax.transAxes,
                    ha="center", color="0.4")
        ax.set_xlabel(f"pulse number (interval {times[q, 1] - times[q, 0]:g} ms)")
        ax.set_ylabel("amplitude (normalised per cell)")
        ax.set_title(f"Predicting {names[q]} from the {names[1 - q]} fit", fontsize="medium")
        ax.legend(fontsize="small")
    fig.suptitle("Which model predicts a rate it has not seen?")
    return fig


def sweep_mean_sem(data) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SEM ``(n_protocols, n_spikes)`` over sweeps of the non-zero amplitudes (zeros are
    missing, as in the fits)."""
    y = np.where(np.asarray(data.amplitudes) == 0.0, np.nan, np.asarray(data.amplitudes))
    ok = np.isfinite(y)
    n = ok.sum(axis=1)
    mean = np.where(ok, y, 0.0).sum(axis=1) / np.maximum(n, 1)
    var = np.where(ok, (y - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(n - 1, 1)
    return np.where(n > 0, mean, np.nan), np.where(n > 1, np.sqrt(var / np.maximum(n, 1)), np.nan)


def published_loglik(data) -> float:
    """Log-likelihood of :data:`PUBLISHED_SRP` (gamma, kernel SD, first-pulse mean 1)."""
    from jaxlif.fitting import SRPParams
    p = PUBLISHED_SRP
    y = np.where(np.asarray(data.amplitudes) == 0.0, np.nan, np.asarray(data.amplitudes))
    n = int(np.isfinite(y).sum())
    with jax.enable_x64(True):
        nll = train_loss(SRPParams(p["b"], *p["a"]), data.spike_times_ms, y, model="srp",
                         noise="gamma_kernel",
                         noise_params=SDKernelParams(p["s"], p["b_s"], p["c"]),
                         scale=float(1.0 + np.exp(-p["b"])))
        return -n * float(nll)


def _subset(data, keep):
    """The protocols ``keep`` (indices) of ``data``."""
    keep = list(keep)
    return data._replace(spike_times_ms=data.spike_times_ms[keep], amplitudes=data.amplitudes[keep],
                         mask=data.mask[keep], protocols=tuple(data.protocols[i] for i in keep),
                         sweeps=tuple(data.sweeps[i] for i in keep))


def starts_at_best(fit, tol: float = 0.01) -> tuple[int, int]:
    """How many of the model's default starts end within ``tol`` log-likelihood units of the
    fit's best (``compare_models`` also starts nested models from each other's optima; those
    come after the default starts in ``start_loglik`` and count only towards the best)."""
    ll = np.asarray(fit.start_loglik, dtype=float)
    n = len(get_model(fit.model).starts)
    return int(np.sum(ll[:n] >= np.nanmax(ll) - tol)), n


def sweeps_analysis(cfg, log, files) -> dict:
    """The per-sweep analysis of the module docstring."""
    data = read_chamberland2018(cfg.sweeps)
    opts = dict(zeros="missing", allow_missing=True, precision="float64")
    n = int((data.mask & (np.nan_to_num(data.amplitudes) != 0)).sum())
    log(f"per-sweep data: {len(data.protocols)} protocols, {n} non-zero amplitudes")
    table, params, srp_sd = [], {}, {}
    for noise in NOISES:
        cmp = compare_models(data, models=cfg.models, noise=noise, cross_validate=False,
                             interval="none", **opts)
        for r in cmp.table:
            f = cmp.fits[r["model"]]
            near, n_starts = starts_at_best(f)
            table.append(dict(model=r["model"], noise=noise, k=r["k"], loglik=r["loglik"],
                              aic=r["aic"], bic=r["bic"], stationary=bool(f.stationary),
                              n_points=int(f.n_points), starts_at_best=near,
                              n_default_starts=n_starts))
            params[f"{r['model']}/{noise}"] = f.summary()["params"]
        if "srp" in cmp.fits:
            srp_sd[noise] = np.asarray(cmp.fits["srp"].fitted_sd, dtype=float)
        log(f"noise={noise}:\n" + cmp.format())
    if srp_sd:
        C.save_figure(_sd_figure(data, srp_sd), cfg.out, "fit_trains_sd.png", files)
    best = max(table, key=lambda r: r["loglik"])
    published = published_loglik(data)
    log(f"published SRP fit under the same likelihood: {published:.2f}; best here: "
        f"{best['model']}/{best['noise']} {best['loglik']:.2f}")
    t0 = time.perf_counter()
    srp = fit_stp_trains(data, model="srp", noise="gamma_kernel", interval="profile", **opts)
    t1 = time.perf_counter()
    srp = fit_stp_trains(data, model="srp", noise="gamma_kernel", interval="profile", **opts)
    t2 = time.perf_counter()
    fit_only = fit_stp_trains(data, model="srp", noise="gamma_kernel", interval="none", **opts)
    t3 = time.perf_counter()
    timing = dict(first_call_s=t1 - t0, profile_after_compile_s=t2 - t1,
                  no_intervals_after_compile_s=t3 - t2, same_loglik=bool(
                      abs(float(fit_only.loglik) - float(srp.loglik)) < 1e-6))
    srp_s = srp.summary()
    log(f"srp/gamma_kernel with profile intervals: loglik {float(srp.loglik):.2f}")
    m_taus = srp_model(SRP_TAUS_MS, fit_taus=True)
    free = fit_stp_trains(data, model=m_taus, noise="gamma_kernel", interval="profile", **opts)
    free_s = free.summary()
    log(f"{m_taus.name}/gamma_kernel (time constants fitted): loglik {float(free.loglik):.2f}, "
        f"taus {[round(float(getattr(free.params, f'tau{j + 1}')), 1) for j in range(3)]} ms")
    heldout = heldout_test(data, cfg, log, files, opts)
    coverage = coverage_study(cfg, log, data, srp) if cfg.coverage > 0 else None
    return dict(coverage=coverage, n_points=n, protocols=list(data.protocols), citation=CHAMBERLAND2018_CITATION,
                table=table, params=params, best=best, published_srp=PUBLISHED_SRP,
                published_loglik=published,
                srp_gamma_kernel=dict(params=srp_s["params"], interval=srp_s["interval"],
                                      noise_params=srp_s["noise_params"],
                                      noise_interval=srp_s["noise_interval"],
                                      loglik=srp_s["loglik"], aic=srp_s["aic"],
                                      bic=srp_s["bic"], stationary=srp_s["stationary"],
                                      converged=srp_s["converged"],
                                      start_loglik=np.asarray(srp.start_loglik).tolist()),
                timing=timing,
                srp_fitted_taus=dict(model=m_taus.name, params=free_s["params"],
                                     interval=free_s["interval"], loglik=free_s["loglik"],
                                     aic=free_s["aic"], bic=free_s["bic"], k=free_s["n_params"],
                                     converged=free_s["converged"],
                                     stationary=free_s["stationary"],
                                     start_loglik=np.asarray(free.start_loglik).tolist()),
                heldout=heldout)


def _sd_figure(data, srp_sd: dict):
    """Per protocol: the sweep-to-sweep SD of the amplitudes against the SD the SRP fit assigns
    to each pulse under each noise model."""
    y = np.where(np.asarray(data.amplitudes) == 0.0, np.nan, np.asarray(data.amplitudes))
    ok = np.isfinite(y)
    n = ok.sum(axis=1)
    mean = np.where(ok, y, 0.0).sum(axis=1) / np.maximum(n, 1)
    sd = np.sqrt(np.where(ok, (y - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(n - 1, 1))
    se = sd / np.sqrt(2.0 * np.maximum(n - 1, 1))          # SE of an SD (normal approximation)
    keys = list(data.protocols)
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5), constrained_layout=True)
    for ax, (p, key) in zip(axes.flat, enumerate(keys)):
        t = np.isfinite(np.asarray(data.spike_times_ms[p]))
        x = np.flatnonzero(t) + 1
        ax.errorbar(x, sd[p, t], yerr=se[p, t], fmt="o", color="k", ms=3, capsize=2,
                    label="data, SD over sweeps")
        for j, (noise, v) in enumerate(srp_sd.items()):
            ax.plot(x, v[p, t], "-", marker=".", color=f"C{j}", label=f"srp, {noise}")
        ax.set_title(CHAMBERLAND2018_PROTOCOLS[key][0], fontsize="medium")
        ax.set_xlabel("pulse")
        ax.set_ylabel("SD of the amplitude (normalised per cell)")
        ax.legend(fontsize="x-small")
    axes.flat[-1].axis("off")
    fig.suptitle("Sweep-to-sweep scatter: what each noise model of the SRP fit says")
    return fig


def coverage_study(cfg, log, data, srp) -> dict:
    """Coverage of the srp/gamma_kernel profile intervals, truth = the fit ``srp`` of ``data``."""
    from jaxlif.fitting.calibration import coverage_trains_kernel
    y = np.asarray(data.amplitudes)
    mask = data.mask & (np.nan_to_num(y) != 0)              # the points the fit used
    noise = SDKernelParams(float(srp.noise_params.s), float(srp.noise_params.b_s),
                           tuple(float(c) for c in srp.noise_params.c))
    log(f"coverage study: {cfg.coverage} data sets of {int(mask.sum())} amplitudes")
    cov = coverage_trains_kernel(srp.params, noise, data.spike_times_ms,
                                 key=C.experiment_key(cfg.seed, 7), model="srp",
                                 n_sweeps=y.shape[1], n_datasets=cfg.coverage,
                                 scale=float(srp.scale), mask=mask)
    log("coverage: " + ", ".join(f"{f} {v:.2f}" for f, v in cov.coverage.items()))
    return dict(coverage=cov.coverage, ci=cov.ci, n_datasets=cov.n_datasets,
                n_valid=cov.n_valid, config=cov.config)


def heldout_test(data, cfg, log, files, opts) -> dict:
    """Fit on :data:`HELDOUT_TRAIN`, predict the other protocols; RMS error in SEM units."""
    keys = list(data.protocols)
    train = [keys.index(k) for k in HELDOUT_TRAIN]
    test = [i for i in range(len(keys)) if i not in train]
    mean, sem = sweep_mean_sem(data)
    sub = _subset(data, train)
    cmp = compare_models(sub, models=cfg.models, noise="gamma_kernel", cross_validate=False,
                         interval="none", **opts)
    out = {}
    preds = {}
    for m in cfg.models:
        f = cmp.fits[m]
        with jax.enable_x64(True):     # a degenerate fit (depression: U ~ 1e-41, A ~ 1e41)
            pred = float(f.scale) * np.asarray(stp_amplitudes(f.params, data.spike_times_ms,
                                                              model=m), dtype=float)
        preds[m] = pred
        z = (mean - pred) / sem
        out[m] = {keys[i]: float(np.sqrt(np.nanmean(z[i] ** 2))) for i in test}
        out[m]["all held out"] = float(np.sqrt(np.nanmean(z[test] ** 2)))
        out[m]["training (20, 100 Hz)"] = float(np.sqrt(np.nanmean(z[train] ** 2)))
    log("held-out RMS error (SEM units): " + "; ".join(
        f"{m} {out[m]['all held out']:.1f}" for m in cfg.models))
    fig, axes = plt.subplots(2, 4, figsize=(17, 7.5), constrained_layout=True)
    for ax, i in zip(axes.flat, train + test):
        t = np.asarray(data.spike_times_ms[i])
        ok = np.isfinite(t)
        ax.errorbar(np.flatnonzero(ok) + 1, mean[i, ok], yerr=sem[i, ok], fmt="o", color="k",
                    ms=3, capsize=2, label="data, mean +- SEM")
        for j, m in enumerate(cfg.models):
            ax.plot(np.flatnonzero(ok) + 1, preds[m][i, ok], "-", marker=".", color=f"C{j}",
                    label=f"{m}" + ("" if i in train else f" ({out[m][keys[i]]:.1f} SEM RMS)"))
        label = CHAMBERLAND2018_PROTOCOLS[keys[i]][0]
        ax.set_title(f"{label}: {'fitted' if i in train else 'predicted'}", fontsize="medium")
        ax.set_xlabel("pulse")
        ax.set_ylabel("amplitude (normalised per cell)")
        ax.legend(fontsize="x-small")
    ax = axes.flat[-1]
    x = np.arange(len(test))
    w = 0.8 / len(cfg.models)
    for j, m in enumerate(cfg.models):
        ax.bar(x + (j - (len(cfg.models) - 1) / 2) * w, [out[m][keys[i]] for i in test], w,
               color=f"C{j}", label=m)
    ax.set_yscale("log")
    ax.set_xticks(x, [keys[i] for i in test], fontsize="small")
    ax.set_ylabel("RMS prediction error (SEM units)")
    ax.set_title("Held-out protocols", fontsize="medium")
    ax.legend(fontsize="x-small")
    fig.suptitle("Fitted to the 20 and 100 Hz trains (per sweep, gamma noise with a kernel SD), "
                 "each model predicts five protocols it has not seen")
    C.save_figure(fig, cfg.out, "fit_trains_heldout.png", files)
    return dict(train=list(HELDOUT_TRAIN), noise="gamma_kernel", rms_sem=out,
                predictions={m: np.asarray(v).tolist() for m, v in preds.items()},
                data_mean=mean.tolist(), data_sem=sem.tolist())


def sweeps_text(sw: dict) -> str:
    """The per-sweep part of the report, every statement computed from the numbers."""
    rows = sorted(sw["table"], key=lambda r: -r["loglik"])
    best = sw["best"]
    pub = sw["published_loglik"]
    lines = [f"Per-sweep data ({sw['n_points']} amplitudes, {len(sw['protocols'])} protocols, "
             f"zeros left out): best log-likelihood {best['loglik']:.1f} ({best['model']} with "
             f"{best['noise']} noise, k = {best['k']}), "
             f"{'above' if best['loglik'] >= pub else 'below'} the published SRP fit's "
             f"{pub:.1f} under the same likelihood. All fits: " + "; ".join(
                 f"{r['model']}/{r['noise']} {r['loglik']:.1f}" for r in rows) + "."]
    ft = sw["srp_fitted_taus"]
    taus = [ft["params"][f"tau{j + 1}"] for j in range(3)]
    lines.append(f"With its three time constants fitted too (k = {ft['k']}), SRP reaches "
                 f"{ft['loglik']:.1f} (AIC {ft['aic'] - sw['srp_gamma_kernel']['aic']:+.1f} against "
                 f"the fixed 15, 100, 650 ms), time constants "
                 + ", ".join(f"{t:.3g}" for t in taus) + " ms"
                 + ("" if ft["converged"] else " (not converged: the optimum is not unique or a "
                    "profile fit found a better point; the starts end in several valleys)") + ".")
    if sw.get("coverage"):
        cv = sw["coverage"]
        lines.append(f"Coverage of the 95 % profile intervals of srp/gamma_kernel over "
                     f"{cv['n_valid']} simulated data sets of the same design: "
                     + ", ".join(f"{f} {v:.2f}" for f, v in cv["coverage"].items()) + ".")
    h = sw["heldout"]["rms_sem"]
    order = sorted(h, key=lambda m: h[m]["all held out"])
    lines.append("Fitted to 20 and 100 Hz only, the RMS error on the five held-out protocols is "
                 + ", ".join(f"{m} {h[m]['all held out']:.1f}" for m in order)
                 + f" SEM units (best {order[0]}).")
    return " ".join(lines)


def run(cfg, log, files) -> dict:
    data = mossy_fibre()
    log(f"fitting {', '.join(cfg.models)} to {len(data.protocols)} trains"
        f"{' with cross-validation' if cfg.cross_validate else ''} (compiles on first use)")
    cmp = compare_models(data, models=cfg.models, cross_validate=cfg.cross_validate)
    log("fitted:\n" + cmp.format())
    desc = describe(data, cmp)
    fig = plot_trains(data, cmp.fits, normalised=False,
                      title="Mossy fibre -> CA3 EPSC trains (Chamberland et al. 2018): which "
                            "plasticity model reproduces them?")
    C.save_figure(fig, cfg.out, "fit_trains_fits.png", files)
    if len(data.protocols) == 2:
        C.save_figure(_comparison_figure(data, cmp, cfg.cross_validate), cfg.out,
                      "fit_trains_comparison.png", files)
    fits = {}
    for name, fit in cmp.fits.items():
        s = fit.summary()
        fits[name] = {k: s[k] for k in ("params", "interval", "identifiable", "at_edge", "scale",
                                        "loglik", "aic", "bic", "gof_pvalue", "reproduces_data",
                                        "converged", "stationary", "fitted", "units")}
    text = conclusion(cmp, desc, cfg.cross_validate)
    sweeps = None
    if cfg.sweeps:
        sweeps = sweeps_analysis(cfg, log, files)
        text = text + " " + sweeps_text(sweeps)
    return dict(name=NAME, sweeps=sweeps, figures=files, units="ms; amplitudes normalised per cell",
                citation=MOSSY_FIBRE_CITATION, protocols=list(data.protocols),
                spike_times_ms=np.asarray(data.spike_times_ms).tolist(),
                data_mean=mean_sem(data)[0].tolist(), data_sem=mean_sem(data)[1].tolist(),
                table=cmp.table, best_aic=cmp.best_aic, best_cv=cmp.best_cv,
                cv_predictions={k: np.asarray(v).tolist() for k, v in cmp.cv_fitted.items()},
                fits=fits, residuals=desc, cross_validate=cfg.cross_validate,
                conclusion=text)


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
