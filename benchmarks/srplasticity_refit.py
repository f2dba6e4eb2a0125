"""jaxlif's SRP fit of the per-sweep mossy-fibre data against a refit with srplasticity itself.

The question (issue "STP inference", item 6): does ``fit_stp_trains(model="srp",
noise="gamma_kernel")`` do at least as well as srplasticity's own estimator on the same data and
the same likelihood?  Three numbers under ONE likelihood (jaxlif's ``train_loss``: gamma
amplitudes with mean ``A r_k`` and the kernel SD of Rossbroich et al. 2021, PLoS Comput Biol
17:e1008013; zero amplitudes left out as missing):

1. srplasticity's refit: ``srplasticity.inference.fit_srp_model_gridsearch`` (the multi-start
   estimator of the probabilistic SRP model with exponential mean and SD kernels at 15, 100 and
   650 ms, gamma likelihood, ``mu_scale=None`` i.e. the mean scale fixed to ``1 / sigmoid(b)``),
   run in its own environment (``--peer-python``, default ``/work/main/.venv-srp/bin/python``)
   as a subprocess of this script on the same amplitudes, and timed there (CPU seconds of the
   subprocess, one worker);
2. the published parameters (``experiments.fit_trains.PUBLISHED_SRP``), which must give
   -28472.87 (checked; the script stops otherwise);
3. jaxlif's fit (float64, default starts, no intervals), timed after a first compiling call.

Grids (``--grid``): ``default`` is srplasticity's own default (``param_ranges="default"``:
baselines -3..2.5 step 0.5 x kernel amplitudes -2..1.75 step 0.25 of each time constant, 192
starts, SD scale start 1, scipy's L-BFGS-B defaults); ``paper`` uses the settings its
repository's mossy-fibre script gives for the published fit (baselines -3..0.75 step 0.25,
amplitudes -2..1.75 step 0.25, 256 starts, SD scale start 4, ``maxiter=500, ftol=1e-12,
gtol=1e-9``); ``published-start`` is no grid but its single-start ``fit_srp_model`` from the
published values with the ``paper`` settings (is the published point its optimum?).
``--coarsen k`` multiplies both grid steps by ``k`` (about ``k^2`` times fewer starts) to cap
the cost; ``--maxiter`` caps L-BFGS-B's iterations.

Data: ``jaxlif.fitting.read_chamberland2018(--data)``; the 14,481 non-zero amplitudes of the 7
protocols are passed to srplasticity as one ``(n_sweeps, n_spikes)`` matrix per protocol with
NaN for zeros and absent sweeps (its NLL is a ``nansum``; a zero amplitude would make it
infinite), and the inter-spike intervals of each protocol (padding pulses dropped).  Both sides
therefore see the same 14,481 numbers.  Difference in the models: srplasticity fixes the mean
scale to ``1 / sigmoid(b)`` (9 free parameters); jaxlif fits it (10).

Usage::

    PYTHONPATH=$PWD python benchmarks/srplasticity_refit.py --data DIR [--grid paper]
        [--coarsen 2] [--maxiter N] [--jaxlif-only] [--out FILE.json] [--write]

The peer part (``--peer-worker IN OUT``) imports only NumPy and srplasticity.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

TAUS_MS = (15.0, 100.0, 650.0)
#: srplasticity's default grid (its ``_default_parameter_ranges``), as (start, stop, step).
GRIDS = {
    "default": dict(ranges=((-3.0, 3.0, 0.5), (-2.0, 2.0, 0.25)), sigma_scale=1.0, options={}),
    "paper": dict(ranges=((-3.0, 1.0, 0.25), (-2.0, 2.0, 0.25)), sigma_scale=4.0,
                  options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9}),
    # not a grid: srplasticity's single-start ``fit_srp_model`` from the published values
    "published-start": dict(ranges=None, sigma_scale=None, start="published",
                            options={"maxiter": 500, "ftol": 1e-12, "gtol": 1e-9}),
}
PEER_PYTHON = "/work/main/.venv-srp/bin/python"


# --------------------------------------------------------------------------------------------
# Peer side (srplasticity environment): NumPy and srplasticity only.
# --------------------------------------------------------------------------------------------

def _peer_worker(inp: str, out: str) -> None:
    """Fit with srplasticity's grid search; write parameters, its NLL and CPU seconds."""
    from importlib.metadata import version

    from srplasticity.inference import _nll, fit_srp_model, fit_srp_model_gridsearch
    from srplasticity.srp import ExpSRP

    z = np.load(inp, allow_pickle=False)
    cfg = json.loads(str(z["cfg"]))
    stim, target = {}, {}
    for i, key in enumerate(cfg["protocols"]):
        t = z["spike_times_ms"][i]
        t = t[np.isfinite(t)]
        stim[key] = np.concatenate([[0.0], np.diff(t)])
        target[key] = z["amplitudes"][i][:, :t.size]

    def nll(params):
        model = ExpSRP(*params)
        return float(sum(_nll(target[k], *model.run_ISIvec(stim[k])[:2]) for k in stim))

    pub = cfg["published"]
    pub_params = (pub["b"], np.asarray(pub["a"]), np.asarray(TAUS_MS), pub["b_s"],
                  np.asarray(pub["c"]), np.asarray(TAUS_MS), None, pub["s"])
    options = dict(cfg["options"])
    kw = {"options": options} if options else {}
    t0, w0 = time.process_time(), time.perf_counter()
    if cfg.get("start") == "published":     # one start: its L-BFGS-B from the published values
        x0 = [pub["b"], *pub["a"], pub["b_s"], *pub["c"], pub["s"]]
        params, best = fit_srp_model(x0, stim, target, list(TAUS_MS), list(TAUS_MS),
                                     mu_scale=None, bounds="default", algo="L-BFGS-B", **kw)
        starts, allres = [x0], [best]
        fvals = [float(best["fun"]) if best["success"] else np.nan]
    else:
        params, best, starts, fvals, allres = fit_srp_model_gridsearch(
            stim, target, list(TAUS_MS), list(TAUS_MS),
            param_ranges=tuple(slice(*r) for r in cfg["ranges"]), mu_scale=None,
            sigma_scale=cfg["sigma_scale"], bounds="default", method="L-BFGS-B", workers=1,
            **kw)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    fv = np.asarray(fvals, dtype=float)
    res = dict(version=version("srplasticity"), cpu_s=cpu, wall_s=wall,
               n_starts=int(len(starts)), n_success=int(np.isfinite(fv).sum()),
               best_nll=float(best["fun"]), nit=int(best.get("nit", -1)),
               message=str(best.get("message", "")),
               start_nll=[None if not np.isfinite(v) else float(v) for v in fv],
               # every start, successful or not (the grid search keeps only successful ones)
               all_nll=[float(r["fun"]) for r in allres],
               best_any_nll=float(np.nanmin([float(r["fun"]) for r in allres])),
               within_1=int((fv <= np.nanmin(fv) + 1.0).sum()),
               b=float(params[0]), a=[float(v) for v in params[1]], b_s=float(params[3]),
               c=[float(v) for v in params[4]], s=float(params[7]),
               nll_own=nll(params), published_nll_own=nll(pub_params))
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


# --------------------------------------------------------------------------------------------
# jaxlif side.
# --------------------------------------------------------------------------------------------

def _grid(name: str, coarsen: int, maxiter: int | None) -> dict:
    g = dict(GRIDS[name], options=dict(GRIDS[name]["options"]))
    if g["ranges"] is not None:
        g["ranges"] = [(lo, hi, step * coarsen) for lo, hi, step in g["ranges"]]
    if maxiter:
        g["options"]["maxiter"] = int(maxiter)
    return g


def missing_zeros(data) -> np.ndarray:
    """Amplitudes with zeros (failures) set to NaN: the selection both fits use."""
    y = np.asarray(data.amplitudes, dtype=float)
    return np.where(y == 0.0, np.nan, y)


def srp_loglik(data, p: dict) -> float:
    """Total log-likelihood under jaxlif's ``train_loss`` of SRP parameters ``p`` (keys ``b, a,
    b_s, c, s`` and optionally ``scale``; default the first-pulse normalisation ``1/sigmoid(b)``
    that srplasticity uses)."""
    import jax

    from jaxlif.fitting import SDKernelParams, SRPParams, train_loss
    y = missing_zeros(data)
    n = int(np.isfinite(y).sum())
    scale = p.get("scale", 1.0 + np.exp(-p["b"]))
    with jax.enable_x64(True):
        nll = train_loss(SRPParams(p["b"], *p["a"]), data.spike_times_ms, y, model="srp",
                         noise="gamma_kernel", noise_params=SDKernelParams(p["s"], p["b_s"],
                                                                           tuple(p["c"])),
                         scale=float(scale))
        return -n * float(nll)


def constrained_optimum(data, start: dict) -> dict:
    """The optimum of srplasticity's 9-parameter model (mean scale fixed to ``1/sigmoid(b)``:
    ``train_loss(..., normalise=True)``) near ``start``, by SciPy's L-BFGS-B on jaxlif's exact
    gradient, in coordinates ``(b, a_j/tau_j, b_s, c_j/tau_j, log s)``: is srplasticity's answer
    the optimum of its own model?"""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    from jaxlif.fitting import SDKernelParams, SRPParams, train_loss
    y = missing_zeros(data)
    n = int(np.isfinite(y).sum())
    taus = np.asarray(TAUS_MS)

    def unpack(x):
        t = jnp.asarray(taus, x.dtype)
        return x[0], x[1:4] * t, x[4], x[5:8] * t, jnp.exp(x[8])

    with jax.enable_x64(True):
        def nll(x):
            b, a, b_s, c, s = unpack(x)
            return n * train_loss(SRPParams(b, a[0], a[1], a[2]), data.spike_times_ms, y,
                                  model="srp", noise="gamma_kernel", normalise=True,
                                  noise_params=SDKernelParams(s, b_s, (c[0], c[1], c[2])))

        f = jax.jit(jax.value_and_grad(nll))
        x0 = np.concatenate([[start["b"]], np.asarray(start["a"]) / taus, [start["b_s"]],
                             np.asarray(start["c"]) / taus, [np.log(start["s"])]])
        def fun(x):
            value, grad = f(jnp.asarray(x, jnp.float64))
            return float(value), np.asarray(grad, float)

        r = minimize(fun, x0, jac=True, method="L-BFGS-B",
                     options={"maxiter": 2000, "gtol": 1e-8, "ftol": 1e-15})
        b, a, b_s, c, s = unpack(jnp.asarray(r.x, jnp.float64))
        grad = np.asarray(f(jnp.asarray(r.x, jnp.float64))[1])
        return dict(loglik=-float(r.fun), nit=int(r.nit), message=str(r.message),
                    start_loglik=-float(f(jnp.asarray(x0, jnp.float64))[0]),
                    max_abs_grad=float(np.abs(grad).max()), b=float(b),
                    a=[float(v) for v in a], b_s=float(b_s), c=[float(v) for v in c],
                    s=float(s))


def jaxlif_fit(data) -> dict:
    """jaxlif's fit (no intervals), a compiling call and a timed call."""
    from jaxlif import fit_stp_trains
    opts = dict(model="srp", noise="gamma_kernel", interval="none", zeros="missing",
                allow_missing=True, precision="float64")
    c0, w0 = time.process_time(), time.perf_counter()
    fit_stp_trains(data, **opts)
    c1, w1 = time.process_time(), time.perf_counter()
    fit = fit_stp_trains(data, **opts)
    c2, w2 = time.process_time(), time.perf_counter()
    p, q = fit.params, fit.noise_params
    out = dict(loglik=float(fit.loglik), scale=float(fit.scale), b=float(p.b),
               a=[float(p.a1), float(p.a2), float(p.a3)], b_s=float(q.b_s),
               c=[float(v) for v in q.c], s=float(q.s), n_points=int(fit.n_points),
               first_call_cpu_s=c1 - c0, first_call_wall_s=w1 - w0,
               cpu_s=c2 - c1, wall_s=w2 - w1,
               start_loglik=np.asarray(fit.start_loglik, dtype=float).tolist())
    out["loglik_check"] = srp_loglik(data, out)
    return out


def run_peer(data, published: dict, grid: dict, python: str) -> dict:
    """srplasticity's fit in its own environment (subprocess)."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.json")
        cfg = dict(grid, protocols=list(data.protocols), published=published)
        np.savez(inp, spike_times_ms=np.asarray(data.spike_times_ms, dtype=float),
                 amplitudes=missing_zeros(data), cfg=json.dumps(cfg))
        w0 = time.perf_counter()
        subprocess.run([python, os.path.abspath(__file__), "--peer-worker", inp, out],
                       check=True)
        wall = time.perf_counter() - w0
        with open(out) as f:
            res = json.load(f)
    res["subprocess_wall_s"] = wall
    return res


def _fmt_params(p: dict) -> str:
    a = ", ".join(f"{v:.3g}" for v in p["a"])
    c = ", ".join(f"{v:.3g}" for v in p["c"])
    scale = p.get("scale", 1.0 + np.exp(-p["b"]))
    return (f"b {p['b']:.3f}, a ({a}) ms, A {scale:.3f}; s {p['s']:.3f}, b_s {p['b_s']:.3f}, "
            f"c ({c}) ms")


def section(res: dict) -> str:
    """The BENCHMARKS.md section ``srplasticity-refit`` from the results ``res``."""
    j, pub = res["jaxlif"], res["published_loglik"]
    peers = res.get("srplasticity", {})
    cmds = res.get("commands") or [res.get("command", "python benchmarks/srplasticity_refit.py")]
    cmd = "`, `".join(cmds)
    lines = [
        "## SRP on the per-sweep mossy-fibre data: jaxlif against a refit with srplasticity",
        "",
        f"`{cmd}`{' (merged with --render)' if len(cmds) > 1 else ''} (x86_64, 2 CPUs "
        f"shared with other jobs; jax {res.get('jax', '?')}, float64; "
        f"srplasticity {next(iter(peers.values()))['version'] if peers else '-'} with SciPy "
        f"{res.get('peer_scipy', '?')} in its own environment, one worker). The same "
        f"{res['n_points']:,} non-zero amplitudes (zeros missing), every row evaluated with "
        "jaxlif's `train_loss` (gamma amplitudes, kernel SD at 15, 100, 650 ms). srplasticity "
        "fixes the mean scale to `1/sigmoid(b)` (9 free parameters), jaxlif fits it (10). CPU "
        "seconds: srplasticity's whole grid search (in its process); jaxlif's 15-start fit "
        "without intervals after a compiling call (its threads included).",
        "",
        "| fit | starts | log-likelihood | vs jaxlif | CPU time |",
        "|---|---|---|---|---|",
    ]
    for name, p in peers.items():
        g = p["grid"]
        cap = f", maxiter capped at {g['maxiter_cap']}" if g.get("maxiter_cap") else ""
        coarse = f", steps x{g['coarsen']}" if g.get("coarsen", 1) > 1 and g["ranges"] else ""
        what = ("`fit_srp_model` from the published values" if g.get("start") else
                f"`fit_srp_model_gridsearch`, grid `{name}`")
        lines.append(f"| srplasticity {what}{coarse}{cap} | "
                     f"{p['n_starts']} ({p['n_success']} successful) | {p['loglik']:.2f} | "
                     f"{p['loglik'] - j['loglik']:+.2f} | {p['cpu_s']:.4g} s |")
    cp = res.get("constrained_from_published")
    lines += [f"| published fit (Rossbroich et al. 2021) | - | {pub:.2f} | "
              f"{pub - j['loglik']:+.2f} | - |"]
    if cp:
        lines += [f"| same 9-parameter model, L-BFGS-B with jaxlif's exact gradient from the "
                  f"published values | 1 | {cp['loglik']:.2f} | {cp['loglik'] - j['loglik']:+.2f}"
                  f" | - |"]
    lines += [
              f"| **jaxlif `fit_stp_trains(model=\"srp\", noise=\"gamma_kernel\")`** | 15 | "
              f"**{j['loglik']:.2f}** | 0 | {j['cpu_s']:.1f} s (first call "
              f"{j['first_call_cpu_s']:.1f} s) |", ""]
    lines.append(f"Parameters. jaxlif: {_fmt_params(j)}. Published: "
                 f"{_fmt_params(res['published'])}.")
    for name, p in peers.items():
        lines.append(f"srplasticity, `{name}`: {_fmt_params(p)} (log-likelihood under its own "
                     f"NLL {-p['nll_own']:.2f}, of the published values "
                     f"{-p['published_nll_own']:.2f}"
                     f"; {p['within_1']} of {p['n_starts']} starts within 1 unit of its best"
                     + ").")
    return "\n".join(lines)


def _peer_scipy(python: str) -> str:
    try:
        return subprocess.run([python, "-c", "import scipy; print(scipy.__version__)"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def render(paths: list[str]) -> dict:
    """Merge saved result files (one grid or several each) into one result."""
    res: dict = {}
    for path in paths:
        with open(path) as f:
            r = json.load(f)
        peers = r.pop("srplasticity", {})
        if "grid" in r:                       # one-grid file
            g = r.pop("grid")
            peers = {g["name"]: dict(peers, grid=g)}
        res.setdefault("commands", []).append(r.get("command", path))
        merged = res.setdefault("srplasticity", {})
        res.update({k: v for k, v in r.items() if k not in res})
        merged.update(peers)
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/tmp/srp/data/processed/chamberland2018",
                    help="srplasticity's data/processed/chamberland2018 folder")
    ap.add_argument("--grid", default="paper,default",
                    help=f"comma-separated srplasticity grids, of {sorted(GRIDS)}")
    ap.add_argument("--coarsen", type=int, default=1, help="multiply the grid steps by this")
    ap.add_argument("--maxiter", type=int, default=0, help="cap L-BFGS-B's iterations (0: the "
                    "grid's own setting)")
    ap.add_argument("--peer-python", default=PEER_PYTHON)
    ap.add_argument("--jaxlif-only", action="store_true", help="skip srplasticity")
    ap.add_argument("--no-published-check", action="store_true",
                    help="do not require the published parameters to give -28472.87 (for "
                    "data other than srplasticity's, e.g. a synthetic stand-in)")
    ap.add_argument("--out", default="", help="write the results (JSON) here")
    ap.add_argument("--write", action="store_true",
                    help="rewrite the section srplasticity-refit of BENCHMARKS.md")
    ap.add_argument("--render", nargs="+", metavar="JSON",
                    help="only rewrite the section from saved result files")
    ap.add_argument("--peer-worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer_worker:
        _peer_worker(*args.peer_worker)
        return {}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    from experiments import _common as C
    if args.render:
        res = render(args.render)
        C.write_section(os.path.join(root, "BENCHMARKS.md"), "srplasticity-refit", section(res))
        return res
    grids = [g for g in args.grid.split(",") if g]
    if not grids or any(g not in GRIDS for g in grids):
        raise SystemExit(f"--grid must name grids of {sorted(GRIDS)}, got {args.grid!r}")
    if args.coarsen < 1 or args.maxiter < 0:
        raise SystemExit("--coarsen must be >= 1 and --maxiter >= 0, got "
                         f"{args.coarsen} and {args.maxiter}")

    import jax

    from experiments.fit_trains import PUBLISHED_SRP, published_loglik
    from jaxlif.fitting import read_chamberland2018

    data = read_chamberland2018(args.data)
    n = int(np.isfinite(missing_zeros(data)).sum())
    pub = srp_loglik(data, PUBLISHED_SRP)
    ref = published_loglik(data)
    print(f"{n} non-zero amplitudes; published SRP fit: loglik {pub:.2f} "
          f"(fit_trains.published_loglik {ref:.2f})", flush=True)
    if abs(pub - ref) > 1e-6 or (abs(pub + 28472.87) > 0.01 and not args.no_published_check):
        raise SystemExit("the published parameters do not reproduce -28472.87: stop")
    cmd = " ".join(["python benchmarks/srplasticity_refit.py"] + list(argv or sys.argv[1:]))
    res = dict(n_points=n, published_loglik=pub, published=PUBLISHED_SRP, jax=jax.__version__,
               command=cmd)
    res["jaxlif"] = j = jaxlif_fit(data)
    print(f"jaxlif: loglik {j['loglik']:.2f} (re-evaluated {j['loglik_check']:.2f}), "
          f"{j['cpu_s']:.1f} CPU s / {j['wall_s']:.1f} s wall after compile "
          f"(first call {j['first_call_cpu_s']:.1f} CPU s)", flush=True)
    res["constrained_from_published"] = cp = constrained_optimum(data, PUBLISHED_SRP)
    print(f"9-parameter model (scale 1/sigmoid(b)) polished from the published values with "
          f"exact gradients: loglik {cp['loglik']:.2f} ({cp['nit']} iterations, max |grad| "
          f"{cp['max_abs_grad']:.1e})", flush=True)
    if not args.jaxlif_only:
        res["peer_scipy"] = _peer_scipy(args.peer_python)
        res["srplasticity"] = {}
        for name in grids:
            grid = _grid(name, args.coarsen, args.maxiter)
            peer = run_peer(data, PUBLISHED_SRP, grid, args.peer_python)
            peer["grid"] = dict(grid, name=name, coarsen=args.coarsen, maxiter_cap=args.maxiter)
            peer["loglik"] = srp_loglik(data, peer)
            res["srplasticity"][name] = peer
            print(f"srplasticity {peer['version']} grid {name} (steps x{args.coarsen}): "
                  f"{peer['n_starts']} starts ({peer['n_success']} successful), best NLL "
                  f"{peer['best_nll']:.2f} (own), loglik under jaxlif {peer['loglik']:.2f} "
                  f"(jaxlif {peer['loglik'] - j['loglik']:+.2f}); published under its own NLL "
                  f"{-peer['published_nll_own']:.2f}; {peer['cpu_s']:.1f} CPU s / "
                  f"{peer['wall_s']:.1f} s wall", flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    if args.write:
        C.write_section(os.path.join(root, "BENCHMARKS.md"), "srplasticity-refit", section(res))
    return res


if __name__ == "__main__":
    main()
