"""``jaxlif fit-trains``: fit plasticity models to recorded amplitude trains from the command line.

Reads a tidy CSV (one row per pulse: ``protocol, sweep, spike_time_ms, amplitude[_unit]``,
optional ``sd``; :func:`jaxlif.fitting.read_trains_csv`) or the shipped mossy-fibre recordings
(``--mossy-fibre``), fits one model by maximum likelihood (:func:`jaxlif.fit_stp_trains`) or
compares all of them (``--model all``: :func:`jaxlif.fitting.compare_models`), and prints the
parameters with their 95 % intervals and flags, a JSON record (``--json``) and/or a figure of the
data against the fit (``--out``).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from jaxlif.cli._common import (Progress, add_output_options, resolve_out, save_figure,
                                version_record, write_outputs)

__all__ = ["add_fit_trains", "plot_trains", "mean_sem"]

#: Single models ``--model`` accepts (``all`` compares them).
MODEL_CHOICES = ("tm", "tm4", "depression", "srp")


def add_fit_trains(subparsers) -> None:
    p = subparsers.add_parser(
        "fit-trains",
        help="fit STP models to recorded amplitude trains (CSV, one row per pulse)",
        description=(
            "Fit a short-term plasticity model to the amplitude of every pulse of every sweep of "
            "several protocols, by maximum likelihood with a noise model; print the parameters "
            "with 95 % intervals (profile likelihood), identifiability and convergence flags and "
            "the start that won, or (--model all) compare the models by AIC, BIC and held-out-"
            "protocol cross-validation."),
        epilog=("examples:\n"
                "  jaxlif fit-trains --mossy-fibre --model all\n"
                "  jaxlif fit-trains trains.csv --model tm4 --noise gamma --out fit.png\n"
                "  jaxlif fit-trains trains.csv --json --out fit.json\n"
                "CSV: one row per pulse with the columns protocol, sweep, spike_time_ms and\n"
                "amplitude (or amplitude_pA, ...: the suffix is the unit), optionally sd (a known\n"
                "noise sd per point); '#' lines are comments; a UTF-8 BOM is accepted."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("data (a CSV file, or --mossy-fibre)")
    src.add_argument("csv", nargs="?", metavar="DATA.csv", help="tidy CSV, one row per pulse")
    src.add_argument("--mossy-fibre", action="store_true",
                     help="the shipped mossy fibre -> CA3 recordings (Chamberland et al. 2018; "
                          "10 pulses at 20 and 100 Hz, mean and SEM over sweeps)")
    src.add_argument("--allow-missing", action="store_true",
                     help="accept missing amplitudes (empty, nan) inside recorded sweeps")
    src.add_argument("--zeros", choices=("amplitude", "missing"), default="amplitude",
                     help="an amplitude of exactly 0 (a failure) is a recorded amplitude of 0 "
                          "(default) or a missing point left out of the fit")
    fit = p.add_argument_group("model and noise")
    fit.add_argument("--model", choices=MODEL_CHOICES + ("all",), default="tm",
                     help="tm: U0, tau_d, tau_f (the tutorial's model; default); tm4: baseline U "
                          "and facilitation increment f separate; depression: no facilitation; "
                          "srp: the stochastic release kernel model; all: fit and compare them all")
    fit.add_argument("--noise", choices=("gaussian", "gamma", "binomial", "gamma_kernel"), default="gaussian",
                     help="gaussian: additive noise (default); gamma: multiplicative, the sd "
                          "grows with the amplitude (amplitudes must be > 0); binomial: variance "
                          "s^2 r (1 - r) of a quantal response, following the release; gamma_kernel: "
                          "gamma amplitudes whose sd follows the train's history, "
                          "s sigmoid(b_s + sum_j c_j/tau_j sum_i exp(-dt_i/tau_j)), fitted")
    fit.add_argument("--noise-sd", type=float, default=None, metavar="SD",
                     help="known Gaussian noise sd (the amplitudes' unit; default: the CSV's sd "
                          "column if any, else estimated)")
    fit.add_argument("--noise-cv", type=float, default=None, metavar="CV",
                     help="known coefficient of variation of the gamma noise (default: estimated)")
    fit.add_argument("--noise-taus", default=None, metavar="MS,MS,...",
                     help="--noise gamma_kernel: the SD kernel's time constants in ms, comma-"
                          "separated (default 15,100,650)")
    fit.add_argument("--fit-noise-taus", action="store_true",
                     help="--noise gamma_kernel: fit the SD kernel's time constants too, started "
                          "at --noise-taus, with profile intervals")
    fit.add_argument("--normalise", action="store_true",
                     help="divide by the mean first-pulse amplitude and fix the first pulse to 1 "
                          "(default: fit a free amplitude scale)")
    fit.add_argument("--interval", choices=("profile", "wald", "none"), default="profile",
                     help="95 %% intervals: profile likelihood (default, calibrated), wald "
                          "(local, cheap) or none")
    fit.add_argument("--max-steps", type=int, default=1000, help="most optimiser steps per start")
    fit.add_argument("--no-cv", action="store_true",
                     help="--model all: skip the held-out-protocol cross-validation")
    add_output_options(p, "the data vs the fit")
    p.set_defaults(func=_run_fit_trains)


# --------------------------------------------------------------------------------------
# Data and figure
# --------------------------------------------------------------------------------------


def mean_sem(data) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SEM ``(n_protocols, n_spikes)`` over sweeps of a one-synapse ``TrainData``.

    With one sweep per protocol (data that are already means) the SEM is the data's own
    ``noise_sd`` when it has one, NaN otherwise.
    """
    y = np.asarray(data.amplitudes, dtype=float)
    n = np.sum(np.isfinite(y), axis=-2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(y, axis=-2)
        sem = np.nanstd(y, axis=-2, ddof=1) / np.sqrt(n)
        if data.noise_sd is not None:
            given = np.nanmax(np.where(np.isfinite(y), data.noise_sd, np.nan), axis=-2)
            sem = np.where(n == 1, given, sem)
    return mean, sem


def _protocol_names(data) -> list[str]:
    n = data.amplitudes.shape[-3]
    return list(data.protocols) if data.protocols else [f"protocol {p}" for p in range(n)]


def plot_trains(data, fits: dict, *, title: str, normalised: bool = False):
    """Figure: per protocol (columns), the data's mean +- SEM against each fit's mean amplitude
    (top row) and the residual of the mean (bottom row), against spike time (ms).

    Args:
        data: the one-synapse ``TrainData`` the fits saw (normalised if they were).
        fits: ``{label: TrainFitResult}``.
        title: the question the figure answers.
    """
    from matplotlib.figure import Figure

    times = np.asarray(data.spike_times_ms, dtype=float)
    mean, sem = mean_sem(data)
    names = _protocol_names(data)
    unit = data.unit or "data unit"
    ylabel = ("amplitude / mean first amplitude" if normalised else f"amplitude ({unit})")
    P = times.shape[0]
    fig = Figure(figsize=(max(6.4, 4.2 * P), 6.2), constrained_layout=True)
    axes = fig.subplots(2, P, sharex="col", squeeze=False,
                        gridspec_kw=dict(height_ratios=(2.2, 1)))
    for p in range(P):
        ok = np.isfinite(times[p])
        t = times[p, ok]
        top, bottom = axes[0, p], axes[1, p]
        err = np.where(np.isfinite(sem[p, ok]), sem[p, ok], 0.0)
        top.errorbar(t, mean[p, ok], yerr=err, fmt="o", color="k", ms=4, capsize=2,
                     label="data, mean +- SEM", zorder=3)
        bottom.axhline(0.0, color="0.5", lw=0.8)
        for i, (label, fit) in enumerate(fits.items()):
            f = np.asarray(fit.fitted, dtype=float)[p, ok]
            top.plot(t, f, "-", marker=".", color=f"C{i % 10}", label=f"{label} fit")
            bottom.errorbar(t, mean[p, ok] - f, yerr=err, fmt="-", marker=".", capsize=2,
                            color=f"C{i % 10}", label=label)
        top.set_title(names[p], fontsize="medium")
        top.set_ylabel(ylabel)
        bottom.set_ylabel(f"data - fit ({'normalised' if normalised else unit})")
        bottom.set_xlabel("spike time (ms)")
        if p == 0:
            top.legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    return fig


# --------------------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------------------


def _format_interval(low, high) -> str:
    return f"[{low:.4g}, {high:.4g}]"


def _fit_lines(fit) -> list[str]:
    from jaxlif.fitting import get_model

    m = get_model(fit.model)
    lines = []
    for name, unit in zip(m.fields, m.units):
        value = float(getattr(fit.params, name))
        low, high = np.asarray(getattr(fit.interval, name), dtype=float)
        ok = bool(getattr(fit.identifiable, name))
        edge = bool(getattr(fit.at_edge, name))
        u = f" {unit}" if unit else ""
        note = "" if ok else ("   <- at the edge of its range" if edge
                              else "   <- not identifiable from these data")
        lines.append(f"  {name:<6}= {value:.5g}{u}   {int(round(100 * fit.level))} % interval "
                     f"{_format_interval(low, high)}{note}")
    noise = {"gaussian": "noise sd", "gamma": "noise CV", "binomial": "noise s (sd = s sqrt(r (1 - r)))",
             "gamma_kernel": "SD kernel scale s"}[fit.noise_model]
    unit = f" ({fit.unit})" if fit.unit and fit.noise_model != "gamma" else ""
    p = float(fit.gof_pvalue)
    why = ("no test for the binomial noise model" if fit.noise_model == "binomial"
           else "needs repeated sweeps or a given noise level")
    p_txt = f"n/a ({why})" if not np.isfinite(p) else (
        "< 1e-15" if p < 1e-15 else f"= {p:.3g}")
    n_starts = int(np.size(fit.start_loglik))
    n_local = int(np.sum(fit.start_local_minimum))
    lines += [
        f"  scale A = {float(fit.scale):.4g}, {noise} {float(fit.noise):.3g}{unit}",
        f"  log-likelihood {float(fit.loglik):.2f}, AIC {float(fit.aic):.2f}, "
        f"BIC {float(fit.bic):.2f} (k = {fit.n_params} parameters, n = {int(fit.n_points)} "
        f"amplitudes)",
        f"  goodness of fit p {p_txt}: reproduces the data "
        f"{bool(fit.reproduces_data)}; stationary {bool(fit.stationary)}; "
        f"converged {bool(fit.converged)}",
        f"  best start: {int(fit.best_start)} of {n_starts} ({n_local} ended in a worse local "
        f"minimum), {int(fit.n_steps)} steps",
    ]
    if fit.noise_params is not None:          # gamma_kernel: the SD kernel's parameters
        nparams, nint = fit.noise_params, fit.noise_interval
        named = [("s", nparams.s, nint.s, f" {fit.unit}" if fit.unit else "")] + [("b_s", nparams.b_s, nint.b_s, "")] + [
            (f"c{j + 1}", c, ci, " ms") for j, (c, ci) in enumerate(zip(nparams.c, nint.c))]
        taus = ", ".join(f"{t:g}" for t in fit.noise_taus)
        if nparams.tau is None:
            lines.append(f"  SD kernel (time constants {taus} ms):")
        else:                                 # fitted time constants, started at noise_taus
            named += [(f"tau{j + 1}", t, ti, " ms") for j, (t, ti) in enumerate(zip(nparams.tau, nint.tau))]
            lines.append(f"  SD kernel (time constants fitted, started at {taus} ms):")
        for name, value, interval, u in named:
            low, high = np.asarray(interval, dtype=float)
            lines.append(f"    {name:<4}= {float(value):.5g}{u}   {int(round(100 * fit.level))} % interval "
                         f"{_format_interval(low, high)}")
    lines += [f"  note: {note}" for note in fit.notes]
    return lines


def _record(fit, data) -> dict:
    s = fit.summary()
    s.update(start_loglik=np.asarray(fit.start_loglik).tolist(),
             start_local_minimum=np.asarray(fit.start_local_minimum).tolist())
    return s


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def _load(args):
    from jaxlif.fitting import MOSSY_FIBRE_CITATION, mossy_fibre, read_trains_csv

    if args.mossy_fibre:
        if args.csv is not None:
            raise ValueError("give either a CSV file or --mossy-fibre, not both")
        return mossy_fibre(), {"source": "mossy_fibre", "citation": MOSSY_FIBRE_CITATION}
    if args.csv is None:
        raise ValueError("give the data: a CSV file (one row per pulse: protocol, sweep, "
                         "spike_time_ms, amplitude) or --mossy-fibre")
    return read_trains_csv(args.csv, allow_missing=args.allow_missing), {"source": args.csv}


def _taus_ms(flag: str, text: str | None):
    """``"15,100,650"`` as a tuple of floats [ms] (``None`` stays ``None``); the fit checks that
    each is > 0."""
    if text is None:
        return None
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise ValueError(f"{flag} must be time constants in ms separated by commas, e.g. "
                         f"15,100,650; got {text!r}") from None


def _run_fit_trains(args) -> int:
    from jaxlif.fitting import compare_models, fit_stp_trains, get_model
    from jaxlif.fitting.trains import prepare_data

    if args.noise_sd is not None and args.noise != "gaussian":
        raise ValueError("--noise-sd is the sd of Gaussian noise; with --noise gamma give "
                         "--noise-cv")
    if args.noise_cv is not None and args.noise != "gamma":
        raise ValueError("--noise-cv is the CV of gamma noise; add --noise gamma (or give "
                         "--noise-sd for Gaussian noise)")
    if args.max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1, got {args.max_steps}")
    if (args.noise_taus is not None or args.fit_noise_taus) and args.noise != "gamma_kernel":
        raise ValueError("--noise-taus and --fit-noise-taus are the SD kernel's time constants: "
                         "add --noise gamma_kernel")
    kernel = {}
    if args.noise == "gamma_kernel":
        kernel = dict(noise_taus=_taus_ms("--noise-taus", args.noise_taus),
                      fit_noise_taus=args.fit_noise_taus)
    out, out_kind = resolve_out(args.out, json_ok=True)     # before the fit: a typo costs nothing
    raw, source = _load(args)
    opts = dict(noise=args.noise, noise_sd=args.noise_sd, noise_cv=args.noise_cv,
                normalise=args.normalise, allow_missing=args.allow_missing, zeros=args.zeros)
    # the data exactly as the fit sees them (validated, normalised if asked), for the figure
    seen, _ = prepare_data(raw, None, **opts)
    P, S, n = seen.amplitudes.shape
    models = MODEL_CHOICES if args.model == "all" else (args.model,)
    if not args.quiet:
        what = ("comparing " + ", ".join(models) if args.model == "all"
                else f"fitting model {args.model}")
        print(f"jaxlif fit-trains: {what} to {P} protocol(s) x {S} sweep(s) x {n} pulses "
              f"({args.noise} noise; the first fit compiles: several seconds)",
              file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    if args.model == "all":
        cmp = compare_models(raw, models=models, cross_validate=not args.no_cv,
                             interval=args.interval, max_steps=args.max_steps, **opts, **kernel)
        fits = cmp.fits
    else:
        m = get_model(args.model)
        progress = None if args.quiet else Progress(len(m.starts), label="best NLL per point")
        fits = {args.model: fit_stp_trains(raw, model=args.model, interval=args.interval,
                                           max_steps=args.max_steps, progress=progress, **opts,
                                           **kernel)}
    seconds = time.perf_counter() - t0
    units = {"spike_times": "ms", "amplitude": seen.unit or "",
             "noise": seen.unit if args.noise != "gamma" else "dimensionless (CV)"}
    record = dict(source, model=args.model, noise_model=args.noise, normalised=args.normalise,
                  interval_method=args.interval, protocols=_protocol_names(seen),
                  spike_times_ms=np.asarray(seen.spike_times_ms).tolist(), n_sweeps=S,
                  units=units, seconds=seconds, **version_record())
    if args.model == "all":
        record.update(table=cmp.table, best_aic=cmp.best_aic, best_cv=cmp.best_cv,
                      fits={k: _record(f, seen) for k, f in fits.items()})
    else:
        record.update(_record(fits[args.model], seen))
        record["units"] = {**record["units"], **units}
    question = ("Which plasticity model reproduces these trains?" if args.model == "all"
                else f"Does the {args.model} model reproduce these trains?")

    def draw(path):
        return save_figure(plot_trains(seen, fits, title=question, normalised=args.normalise),
                           path)

    def text():
        print(f"jaxlif fit-trains: {source['source']}, {P} protocol(s) x {S} sweep(s) x {n} "
              f"pulses, {args.noise} noise, {seconds:.2f} s")
        if args.model == "all":
            print(cmp.format())
            print(f"lowest AIC: {cmp.best_aic}" + (f"; best held-out prediction: {cmp.best_cv}"
                                                   if cmp.best_cv else ""))
        for name, fit in fits.items():
            print(f"model {name}:")
            print("\n".join(_fit_lines(fit)))

    write_outputs(args, out, out_kind, record, draw, text)
    return 0
