"""Calibration of the fits' 95 % intervals: simulate datasets from known parameters, fit, count.

For each study, ``n`` datasets (default 200) are simulated from known parameters, all fitted in
one vmapped call, and the fraction of datasets whose 95 % interval holds the true value is
measured per parameter, with a Wilson 95 % interval for that fraction.  Honest intervals give
about 0.95; the acceptance range is 0.90-0.98.

Studies (the synapse classes of Gupta, Wang & Markram 2000, Science 287:273):

* trains: depressing (U=0.25, tau_d=706, tau_f=21 ms), facilitating (0.16, 45, 376) and
  pseudo-linear (0.32, 144, 62) synapses; 4 regular protocols (5, 10, 20, 50 Hz) x 5 sweeps x
  10 pulses; Gaussian noise with sd 10 % of the mean amplitude, sd estimated by the fit;
* ratio curves (``fit_stp``): U0=0.4, tau_d=200, tau_f=100 ms (the synapse of issue 8) at 4 rates
  (5, 10, 20, 40 Hz) and 8 rates (2-40 Hz), absolute noise sd 1-3 % of a ratio of 1, noise level
  estimated by the fit.

Method ``lr`` measures the coverage of the profile-likelihood interval directly (the interval
holds the truth exactly when the deviance at the truth is below the threshold); ``profile`` runs
the fits as a user would and checks the intervals they report.

Run::

    python benchmarks/fit_calibration.py              # every study, lr and profile (~10 min)
    python benchmarks/fit_calibration.py --methods profile --only "tm, SD kernel" --n 100 \
        --section calibration-kernel-tm               # the one-time-constant SD-kernel studies
    python benchmarks/fit_calibration.py --quick      # 40 datasets per study, lr only
    python benchmarks/fit_calibration.py --only trains --n 1000 --seed 1 \
        --section calibration-trains-1000              # the train studies, 1000 datasets each
    python benchmarks/fit_calibration.py --methods profile --n 1000 --seed 2 \
        --section calibration-1000                     # every study as reported, 1000 each (~1 h)

It rewrites the section between ``<!-- begin:calibration -->`` and ``<!-- end:calibration -->``
of docs/fitting.md (``--section NAME``: another section; not with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # ``python benchmarks/fit_calibration.py``: put the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from experiments import _common as C  # noqa: E402
from jaxlif.fitting import (DepressionParams, SDKernelParams, TM4Params,  # noqa: E402
                            regular_protocols)
from jaxlif.fitting.calibration import (coverage_ratio, coverage_trains,  # noqa: E402
                                        coverage_trains_kernel)
from jaxlif.plasticity import STPParams  # noqa: E402

PROTOCOLS_HZ = [5.0, 10.0, 20.0, 50.0]
SYNAPSES = {
    "depressing": STPParams(0.25, 706.0, 21.0),
    "facilitating": STPParams(0.16, 45.0, 376.0),
    "pseudo-linear": STPParams(0.32, 144.0, 62.0),
}
ISSUE_SYNAPSE = STPParams(0.4, 200.0, 100.0)
RATES_4 = [5.0, 10.0, 20.0, 40.0]
RATES_8 = [2.0, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0, 40.0]

#: The noise-model studies (``profile`` only): a tm4 synapse that facilitates at 5-20 Hz and
#: depresses at 50 Hz, and a depressing synapse, each under every noise model that estimates its
#: level: gamma (CV 0.5), the binomial-variance Gaussian (``s = A / 4``: a quantal size of
#: ``A / 16``) and gamma with the kernel SD (a CV of 0.5 at the first pulse; tm4: the SD grows
#: along a train, depression: it shrinks); 4 protocols x 20 sweeps x 10 pulses, scale 1.
NOISE_SWEEPS = 20
NOISE_SYNAPSES = {
    "tm4": (TM4Params(0.15, 0.3, 150.0, 300.0), SDKernelParams(0.28, -1.0, (10.0, 20.0, 30.0))),
    "depression": (DepressionParams(0.4, 500.0),
                   SDKernelParams(0.75, -1.0, (-10.0, -40.0, -200.0))),
}
NOISE_LEVELS = {"gamma": dict(noise_cv=0.5), "binomial": dict(noise_sd=0.25),
                "gamma_kernel": {}}

#: The kernel-SD studies with one SD time constant (80 ms), ``profile`` only: a TM synapse
#: (U0 = 0.2, tau_d = 300 ms, tau_f = 80 ms), 4 protocols x 40 sweeps x 10 pulses, scale 1; the SD
#: shrinks after spikes (10-100 Hz; ``s, b_s, c`` = 0.08, 0.5, -10 ms: a CV of 0.25 at the first
#: pulse) or grows (5-50 Hz; 0.15, -1.5, 20 ms: a CV of 0.13 rising to about 0.9), with the time
#: constant given, or fitted from a start of 30 ms (``fit_noise_taus``).  Run with
#: ``--only "tm, SD kernel"``.
KERNEL_TM = STPParams(0.2, 300.0, 80.0)
KERNEL_DESIGNS = {
    "shrinking": ([10.0, 20.0, 50.0, 100.0], SDKernelParams(0.08, 0.5, (-10.0,), (80.0,))),
    "growing": ([5.0, 10.0, 20.0, 50.0], SDKernelParams(0.15, -1.5, (20.0,), (80.0,))),
}


def studies(methods):
    """``(label, thunk(n, key))`` for every study."""
    times = regular_protocols(PROTOCOLS_HZ, 10)
    out = []
    for method in methods:
        for name, p in SYNAPSES.items():
            out.append((f"trains, {name}, 4x5x10, 10 %", method,
                        lambda n, key, p=p, m=method: coverage_trains(
                            p, times, key=key, n_datasets=n, rel_noise=0.1, method=m)))
        for rates, noises in ((RATES_4, (0.01, 0.02, 0.03)), (RATES_8, (0.01, 0.03))):
            for noise in noises:
                out.append((f"fit_stp, {len(rates)} rates, {noise:.0%}", method,
                            lambda n, key, r=rates, s=noise, m=method: coverage_ratio(
                                ISSUE_SYNAPSE, r, key=key, n_datasets=n, rel_noise=s,
                                method=m)))
        if method != "profile":
            continue
        for model, (p, sd_kernel) in NOISE_SYNAPSES.items():
            for noise, kw in NOISE_LEVELS.items():
                what = {"gamma": "gamma CV 0.5", "binomial": "binomial s = A/4",
                        "gamma_kernel": "gamma_kernel"}[noise]
                out.append((f"{model}, {what}, 4x{NOISE_SWEEPS}x10", method,
                            lambda n, key, p=p, model=model, noise=noise, kw=kw, k=sd_kernel:
                            coverage_trains(p, times, key=key, model=model, n_datasets=n,
                                            n_sweeps=NOISE_SWEEPS, noise=noise, method="profile",
                                            noise_params=k, **kw)))
        for design, (rates, sd_kernel) in KERNEL_DESIGNS.items():
            for fitted in (False, True):
                label = (f"tm, SD kernel {design}, tau {'fitted from 30 ms' if fitted else 'given'}"
                         f", 4x40x10")
                out.append((label, method,
                            lambda n, key, r=rates, k=sd_kernel, f=fitted: coverage_trains_kernel(
                                KERNEL_TM, k, regular_protocols(r, 10), key=key, model="tm",
                                n_sweeps=40, n_datasets=n, fit_noise_taus=f,
                                start_taus=(30.0,) if f else None)))
    return out


def table(rows) -> str:
    lines = ["| study | intervals | valid / datasets | coverage per parameter (Wilson 95 % CI) |",
             "|---|---|---|---|"]
    for label, method, cov in rows:
        cells = ", ".join(f"{f} {c:.3f} ({lo:.2f}-{hi:.2f})"
                          for f, c, (lo, hi) in zip(cov.coverage, cov.coverage.values(),
                                                     cov.ci.values()))
        what = "profile (as reported)" if method == "profile" else "likelihood ratio at truth"
        lines.append(f"| {label} | {what} | {cov.n_valid} / {cov.n_datasets} | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="40 datasets per study, lr only, no docs")
    ap.add_argument("--n", type=int, default=None, help="datasets per study (default 200)")
    ap.add_argument("--methods", nargs="+", choices=("lr", "profile"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--only", nargs="+", default=None,
                    help="run only the studies whose label starts with one of these (e.g. "
                         "'trains', 'tm4', 'depression')")
    ap.add_argument("--section", default="calibration",
                    help="docs/fitting.md section to rewrite (between its begin/end markers)")
    args = ap.parse_args(argv)
    n = args.n or (40 if args.quick else 200)
    if n < 1:
        ap.error(f"--n must be >= 1, got {n}")
    methods = args.methods or (["lr"] if args.quick else ["lr", "profile"])
    rows, record = [], []
    for i, (label, method, run) in enumerate(studies(methods)):
        if args.only and not label.startswith(tuple(args.only)):
            continue
        t0 = time.perf_counter()
        cov = run(n, jax.random.fold_in(jax.random.key(args.seed), i))
        dt = time.perf_counter() - t0
        rows.append((label, method, cov))
        record.append(dict(study=label, method=method, seconds=dt, n_datasets=cov.n_datasets,
                           n_valid=cov.n_valid, coverage=cov.coverage, ci=cov.ci))
        print(f"{label:34s} {method:8s} {dt:6.1f} s  " +
              "  ".join(f"{f}={c:.3f}" for f, c in cov.coverage.items()), flush=True)
    text = table(rows)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=1)
    if not args.quick:
        cmd = "python benchmarks/fit_calibration.py " + shlex.join(argv if argv is not None else sys.argv[1:])
        meta = (f"Measured by `{cmd}` ({n} datasets per study, seed {args.seed}, jax "
                f"{jax.__version__}, {os.cpu_count()} CPUs).")
        C.write_section(C.ROOT / "docs" / "fitting.md", args.section, meta + "\n\n" + text)
    return record


if __name__ == "__main__":
    main()
