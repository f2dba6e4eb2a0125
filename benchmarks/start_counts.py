"""Default starts of the train fits that end at the best optimum (issue 20 item 3).

For each data set, model and noise model: ``fit_stp_trains(..., interval="none")`` from the
default starts, and the number of starts whose log-likelihood is within 0.01 units of the best
start's (docs/fitting.md, section Starts, tables), and the CPU seconds of the last of
``--repeat`` fits (from the second on, compiled).

    python benchmarks/start_counts.py means                 # the shipped mossy-fibre means
    python benchmarks/start_counts.py sweeps --data DIR     # read_chamberland2018(DIR), float64
    python benchmarks/start_counts.py means --cells tm:gamma,tm4:gamma_kernel

Noise ``gaussian-est``: Gaussian with the sd estimated (on the means, their SEMs left out).
"""
import argparse
import time

import numpy as np

from jaxlif import fit_stp_trains
from jaxlif.fitting import mossy_fibre, read_chamberland2018

CELLS = [(m, n) for n in ("gaussian", "gaussian-est", "gamma", "binomial", "gamma_kernel")
         for m in ("tm", "tm4", "depression", "srp") if not (m == "srp" and n in ("binomial",
                                                                                  "gamma_kernel"))]


def count(fit, tol=0.01):
    ll = np.asarray(fit.start_loglik, dtype=float)
    return int(np.sum(ll >= np.nanmax(ll) - tol)), int(np.sum(np.isfinite(ll))), ll


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("data", choices=("means", "sweeps"))
    ap.add_argument("--data", dest="path", default="/tmp/srp/data/processed/chamberland2018")
    ap.add_argument("--cells", default=None, help="model:noise,... (default: all)")
    ap.add_argument("--repeat", type=int, default=1, help="fits per cell (CPU time: the last)")
    args = ap.parse_args(argv)
    if args.data == "means":
        data, kw = mossy_fibre(), {}
    else:
        data = read_chamberland2018(args.path)
        kw = dict(zeros="missing", allow_missing=True, precision="float64")
    cells = CELLS if args.cells is None else [tuple(c.split(":")) for c in args.cells.split(",")]
    for model, noise in cells:
        # "gaussian": on the means the SEMs are the noise sd; "gaussian-est": the sd estimated
        d = data._replace(noise_sd=None) if noise == "gaussian-est" else data
        try:
            for _ in range(args.repeat):
                t0 = time.process_time()
                fit = fit_stp_trains(d, model=model, noise=noise.split("-")[0], interval="none",
                                     **kw)
                cpu = time.process_time() - t0
        except ValueError as err:       # gamma_kernel on the means: refused (one value per pulse)
            print(f"{model:10s} {noise:12s} refused: {err}", flush=True)
            continue
        near, total, ll = count(fit)
        print(f"{model:10s} {noise:12s} {near:2d} / {total:2d}  best {np.nanmax(ll):.3f}  "
              f"within 0.05: {int(np.sum(ll >= np.nanmax(ll) - 0.05))}  cpu {cpu:.2f} s  "
              f"ends {np.round(np.sort(ll)[::-1] - np.nanmax(ll), 3).tolist()}", flush=True)


if __name__ == "__main__":
    main()
