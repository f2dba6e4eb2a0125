"""``jaxlif fit-stp``: fit (U0, tau_d, tau_f) to g10/g1 ratio curves from the command line."""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

from jaxlif.cli._common import (Progress, add_output_options, resolve_out, save_figure,
                               version_record, write_outputs)

__all__ = ["add_fit_stp", "read_curve_csv"]


def read_curve_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ratio curves from a CSV file: first column the rates (Hz), then one column per curve.

    Blank lines and lines starting with ``#`` are skipped; a UTF-8 byte-order mark is accepted.
    The first remaining row is a header if none of its cells is a number (``rate_hz,ratio``);
    every other row must be numeric: a row that is not (a typo such as ``0.93x``, or a second
    header) is an error naming its line, never silently dropped.  Returns ``(rates, ratios)``
    with ``ratios`` of shape ``(n_rates,)`` for one curve or ``(n_curves, n_rates)`` for several.

    Raises:
        ValueError: unreadable file, no data rows, rows of different widths or a non-numeric
            cell (naming the line).
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(fh), start=1)
                    if row and any(c.strip() for c in row)
                    and not row[0].lstrip().startswith("#")]
    except OSError as err:
        raise ValueError(f"--csv {path}: cannot read the file ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"--csv {path}: not a UTF-8 text file ({err.reason})") from err

    def number(text):
        try:
            value = float(text)
        except ValueError:
            return None
        return value if np.isfinite(value) else None

    if rows and all(number(c) is None for c in rows[0][1]):
        rows = rows[1:]  # header: no cell is a number
    if not rows:
        raise ValueError(f"--csv {path}: no data rows; expected lines 'rate_hz,ratio[,ratio...]'")
    width = len(rows[0][1])
    values = []
    for line, row in rows:
        if len(row) != width or width < 2:
            raise ValueError(f"--csv {path}: line {line} has {len(row)} columns, expected "
                             f"{max(width, 2)} (rate_hz, then one ratio per curve)")
        parsed = [number(c) for c in row]
        if None in parsed:
            bad = row[parsed.index(None)]
            raise ValueError(f"--csv {path}: line {line}: {bad!r} is not a finite number (only "
                             f"the first row may be a header)")
        values.append(parsed)
    table = np.asarray(values, dtype=float)
    rates, ratios = table[:, 0], table[:, 1:].T
    return rates, (ratios[0] if ratios.shape[0] == 1 else ratios)


def add_fit_stp(subparsers) -> None:
    p = subparsers.add_parser(
        "fit-stp",
        help="fit Tsodyks-Markram STP parameters (U0, tau_d, tau_f) to a g10/g1 ratio curve",
        description=(
            "Fit (U0, tau_d (ms), tau_f (ms)) so that the synapse's g10/g1 ratio curve reproduces "
            "the target, by gradient (BFGS, many starts at once). Prints the fitted "
            "parameters with 95 % intervals (profile likelihood), standard errors and "
            "identifiability flags."),
        epilog=("examples:\n"
                "  jaxlif fit-stp --rates 5 10 20 40 --ratios 0.61 0.45 0.33 0.27\n"
                "  jaxlif fit-stp --csv curve.csv --mode exact --json --out fit.png\n"
                "CSV: first column rate_hz, then one ratio column per curve (several columns = a\n"
                "data set fitted in one call); an optional header row."),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("target curve (give --rates and --ratios, or --csv)")
    src.add_argument("--rates", type=float, nargs="+", metavar="HZ", help="input rates (Hz)")
    src.add_argument("--ratios", type=float, nargs="+", metavar="R",
                     help="target g10/g1 ratio at each rate (> 0)")
    src.add_argument("--csv", metavar="FILE", help="CSV file: rate_hz, ratio[, ratio...]")
    model = p.add_argument_group("forward model")
    model.add_argument("--mode", choices=("tutorial", "exact", "poisson"), default="tutorial",
                       help="tutorial: forward Euler on the tutorial's grid (default); exact: "
                            "continuous time; poisson: mean over Poisson trains")
    model.add_argument("--dt", type=float, default=0.1, help="time step (ms) (default 0.1)")
    model.add_argument("--tau-syn", type=float, default=5.0,
                       help="conductance decay (ms) (default 5)")
    model.add_argument("--n-spike", type=int, default=10,
                       help="the tutorial's '10th spike' label: ratio of the conductance after "
                            "spike n_spike-1 to spike 1; >= 3 (default 10)")
    model.add_argument("--seed", type=int, default=0, help="key for the Poisson trains")
    model.add_argument("--n-trains", type=int, default=64, help="Poisson trains per rate")
    fit = p.add_argument_group("fit")
    fit.add_argument("--init", type=float, nargs=3, metavar=("U0", "TAU_D", "TAU_F"),
                     help="an extra start, tried before the 15 default starts")
    fit.add_argument("--noise-sd", type=float, default=None,
                     help="known standard deviation of the ratios (default: estimated)")
    fit.add_argument("--max-steps", type=int, default=500, help="most optimiser steps")
    fit.add_argument("--tol", type=float, default=1e-6, help="stop at curve RMSE <= tol")
    add_output_options(p, "target vs fitted curve")
    p.set_defaults(func=_run_fit_stp)


def _format_param(name, value, se, interval, ok, unit):
    se_txt = "n/a" if not np.isfinite(se) else f"{se:.3g}"
    flag = "" if ok else "   <- not identifiable from this curve"
    low, high = interval
    return (f"  {name:<6}= {value:.6g}{unit}, 95 % interval [{low:.4g}, {high:.4g}], "
            f"stderr {se_txt}{flag}")


def _print_result(res, mode, seconds, stream=None) -> None:
    stream = stream or sys.stdout
    summary = res.summary()
    curves = np.ndim(res.loss)
    n = 1 if curves == 0 else len(res.loss)
    print(f"jaxlif fit-stp: mode {mode}, {np.shape(res.rates_hz)[-1]} rates, {n} curve(s), "
          f"{seconds:.2f} s", file=stream)
    for i in range(n):
        pick = (lambda v: v) if curves == 0 else (lambda v, i=i: v[i])
        if n > 1:
            print(f"curve {i}:", file=stream)
        for name, unit in (("U0", ""), ("tau_d", " ms"), ("tau_f", " ms")):
            print(_format_param(name, pick(summary["params"][name]), pick(summary["stderr"][name]),
                                pick(summary["interval"][name]),
                                pick(summary["identifiable"][name]), unit), file=stream)
        print(f"  RMSE {pick(summary['rmse']):.3g}, converged {pick(summary['converged'])}, "
              f"{pick(summary['n_steps'])} steps, noise sd {pick(summary['noise_sd']):.3g}, "
              f"{pick(summary['n_near_optimal'])} near-optimal starts", file=stream)
    for note in summary.get("notes", ()):
        print(f"note: {note}", file=stream)


def _plot_fit(res, path, mode, model_kwargs) -> Path:
    """Target (markers) vs fitted curve (line) against rate; one colour per curve."""
    from matplotlib.figure import Figure

    from jaxlif.fitting import stp_ratio
    from jaxlif.plasticity import STPParams

    rates = np.asarray(res.rates_hz).reshape(-1, np.shape(res.rates_hz)[-1])[0]
    targets = np.atleast_2d(np.asarray(res.target_ratio))
    params = [np.atleast_1d(np.asarray(f)) for f in res.params]
    dense = np.linspace(rates.min(), rates.max(), 200)
    fig = Figure(figsize=(6.4, 4.4), constrained_layout=True)
    ax = fig.add_subplot()
    for i, target in enumerate(targets):
        p = STPParams(*(float(f[i]) for f in params))
        colour = f"C{i % 10}"
        ax.plot(rates, target, "o", color=colour, label="target" if len(targets) == 1 else
                f"target {i}")
        curve = np.asarray(stp_ratio(p, dense, mode=mode, **model_kwargs))
        ax.plot(dense, curve, "-", color=colour,
                label=f"fit: U0={p.U0:.3g}, tau_d={p.tau_d:.3g} ms, tau_f={p.tau_f:.3g} ms")
    ax.set_xlabel("input rate (Hz)")
    ax.set_ylabel("conductance ratio g10/g1 (dimensionless)")
    ax.set_title(f"Does the fit reproduce the target g10/g1 curve? ({mode} mode)",
                 fontsize="medium")
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def _run_fit_stp(args) -> int:
    import jax

    from jaxlif.fitting import default_starts, fit_stp

    if args.csv is not None:
        if args.rates is not None or args.ratios is not None:
            raise ValueError("give either --csv or --rates with --ratios, not both")
        rates, ratios = read_curve_csv(args.csv)
    else:
        if args.rates is None or args.ratios is None:
            raise ValueError("give the target curve: --rates HZ... and --ratios R..., "
                             "or --csv FILE")
        rates, ratios = np.asarray(args.rates), np.asarray(args.ratios)
    model_kwargs = dict(dt=args.dt, tau_syn=args.tau_syn, n_spike=args.n_spike)
    if args.mode == "poisson":
        model_kwargs.update(key=jax.random.key(args.seed), n_trains=args.n_trains)
    out, out_kind = resolve_out(args.out, json_ok=True)     # before the fit: a typo costs nothing
    init = None if args.init is None else tuple(args.init)
    n_starts = (1 if init is not None else 0) + len(default_starts().U0)
    progress = None
    if not args.quiet:
        n_curves = 1 if np.ndim(ratios) == 1 else len(ratios)
        print(f"jaxlif fit-stp: fitting {n_curves} curve(s) at {np.size(rates)} rates from "
              f"{n_starts} start(s), mode {args.mode} (the first fit compiles: a few seconds)",
              file=sys.stderr, flush=True)
        progress = Progress(n_starts)
    t0 = time.perf_counter()
    res = fit_stp(rates, ratios, init=init, mode=args.mode, noise_sd=args.noise_sd,
                  max_steps=args.max_steps, tol=args.tol, progress=progress, **model_kwargs)
    seconds = time.perf_counter() - t0
    record = dict(res.summary(), seconds=seconds, **version_record())
    if args.mode == "poisson":
        record.update(seed=args.seed, n_trains=args.n_trains)
    write_outputs(args, out, out_kind, record,
                  lambda path: _plot_fit(res, path, args.mode, model_kwargs),
                  lambda: _print_result(res, args.mode, seconds))
    return 0
