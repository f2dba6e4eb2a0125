"""Cost curves of the recurrent E/I network: time and peak memory against the number of neurons N at a fixed
in-degree K, for jaxlif, Brian2 (``cpp_standalone``) and NEST 3.10.

One command measures every cell and rewrites the ``network-scale`` section of ``BENCHMARKS.md`` and
``docs/bench_network_scale.png``::

    python benchmarks/bench_network_scale.py --brian2-python /path/.venv-bench/bin/python \\
        --nest-python /path/.venv-nest/bin/python            # the full study (an hour on a loaded 2-core machine)
    python benchmarks/bench_network_scale.py --quick --out /tmp/ns   # seconds: N = 500, jaxlif only

The network is ``benchmarks/bench_network.py``'s (80 % E, 20 % I conductance-LIF neurons, depressing E->E
synapses with one ``u, R`` per presynaptic neuron (``stp_mode="pre"``), delay 15 steps, 100 Poisson trains x
10 Hz x 1 nS per neuron, weights scaled by ``400 / K`` so that the mean input is that of the 4000-neuron
network), but wired with a **fixed in-degree**: every neuron receives ``0.8 K`` synapses from E and ``0.2 K``
from I, presynaptic neurons drawn uniformly with replacement (no autapses).  The number of synapses is
``N K``, and the edge lists take O(N K) memory (``jaxlif.network.random_edges`` draws a dense N x N mask,
too large at N = 10^5).  The edges are drawn once per N in a separate process and saved; every system
builds the same synapses from that file.

Systems, each in a fresh process pinned to the idlest core (``sched_setaffinity``; Brian2's binary inherits it):

- ``jaxlif``: :func:`jaxlif.network.simulate_network` (event delivery, float32, spike rasters only, counted
  after the clock stops): the network build, the first call (compilation included), then ``repeats`` calls
  with new drive keys.
- ``brian2``: ``bench_network.py``'s Brian2 worker (imported), ``cpp_standalone``, 1 thread, float64: the
  first run (code generation and compilation included), then the binary rerun ``repeats`` times.  Its peak
  RSS is the largest of its child processes: the C++ compiler's or the simulation binary's.
- ``nest``: NEST 3.10, 1 thread, resolution = dt, ``iaf_cond_exp`` (the same neuron; NEST integrates it
  with an adaptive Runge-Kutta solver, jaxlif and Brian2 with the Euler step of the tutorials), E->E through
  ``tsodyks2_synapse`` with ``u = U`` set on every synapse (NEST's default ``u = 0.5`` is not U in
  general), the drive from one ``poisson_generator`` (independent trains per target).  The connections
  come from the saved arrays (``nest.Connect`` with arrays, ``one_to_one``).  First = build, connect and
  the first T; then ``repeats - 1`` further segments of T (the network runs on, new drive).

Same work: the mean E and I rates of every peer must agree with jaxlif's within a few standard errors
(``bench_network._rate_check``, 4 SE; the SE from the run-to-run spread).  Time per simulated second =
steady CPU time / T (and wall time / T).  Peak memory = ``ru_maxrss`` of the worker (Brian2: of its children).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# both modules import only the standard library at module level: the peers' interpreters import them too
from benchmarks import bench as bb              # noqa: E402
from benchmarks import bench_network as bn      # noqa: E402

NAME = "network-scale"
FIGURE = ROOT / "docs" / "bench_network_scale.png"
SYSTEMS = ("jaxlif", "brian2", "nest")
#: (K, N, T ms, systems): the full study's cells; T below 1 s for the largest N (times scaled to 1 s).
CELLS = [(100, 1000, 1000.0, SYSTEMS), (100, 3000, 1000.0, SYSTEMS), (100, 10000, 1000.0, SYSTEMS),
         (100, 30000, 300.0, SYSTEMS), (100, 100000, 1000.0, ("jaxlif",)),
         (1000, 3000, 1000.0, SYSTEMS), (1000, 10000, 300.0, SYSTEMS), (1000, 30000, 200.0, ("jaxlif",)),
         (100, 100000, 100.0, SYSTEMS)]
QUICK_CELLS = [(50, 500, 100.0, ("jaxlif",))]
DT, SEED = 0.1, 0


def _peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0


def fixed_indegree_edges(seed: int, n_E: int, n_I: int, K: int) -> dict:
    """Edge lists ``{"EE_pre", "EE_post", ...}`` (int32; NumPy ``default_rng(seed)``): every neuron gets
    ``round(0.8 K)`` E and ``K - round(0.8 K)`` I inputs, drawn with replacement, no autapses."""
    import numpy as np
    rng = np.random.default_rng(seed)
    k_from = {"E": int(round(0.8 * K)), "I": K - int(round(0.8 * K))}
    sizes = {"E": n_E, "I": n_I}
    out = {}
    for pre in "EI":
        for post in "EI":
            k, n_pre, n_post = k_from[pre], sizes[pre], sizes[post]
            post_idx = np.repeat(np.arange(n_post, dtype=np.int32), k)
            if pre == post:                          # draw from n - 1 and skip the neuron itself
                src = rng.integers(0, n_pre - 1, size=post_idx.size, dtype=np.int32)
                src += src >= post_idx
            else:
                src = rng.integers(0, n_pre, size=post_idx.size, dtype=np.int32)
            out[f"{pre}{post}_pre"], out[f"{pre}{post}_post"] = src, post_idx
    return out


def _sizes(N: int) -> tuple[int, int]:
    n_E = int(round(0.8 * N))
    return n_E, N - n_E


def _cell_config(K: int, N: int, T: float) -> dict:
    """The task fields that ``bench_network``'s helpers read (``p = K / N`` gives its weight scale 400 / K)."""
    n_E, n_I = _sizes(N)
    return dict(K=K, N=N, n_E=n_E, n_I=n_I, p=K / N, T=T, dt=DT, seed=SEED)


# ----------------------------------------------------------------------------------------------
# Workers (each in a fresh process; one line "BENCH_RESULT {json}")
# ----------------------------------------------------------------------------------------------


def _worker_edges(task: dict) -> dict:
    import numpy as np
    edges = fixed_indegree_edges(task["seed"], task["n_E"], task["n_I"], task["K"])
    np.savez(task["edges"], **edges)
    return dict(n_synapses=int(sum(v.size for k, v in edges.items() if k.endswith("_pre"))))


def _worker_jaxlif(task: dict) -> dict:
    import jax
    import numpy as np
    import jaxlif
    from jaxlif import network as nw
    from jaxlif.network.models import EI_STP
    t0 = time.perf_counter()
    edges = dict(np.load(task["edges"]))
    n_synapses = int(sum(v.size for k, v in edges.items() if k.endswith("_pre")))
    w = bn._weights(task)
    drive = nw.PoissonDrive(rate=bn.DRIVE["drive_rate"], weight=bn.DRIVE["drive_weight"], n=bn.DRIVE["drive_n"],
                            receptor="exc")
    exc, inh, neuron = nw.Receptor(5.0, 0.0), nw.Receptor(10.0, -80.0), jaxlif.LIFParams()   # as ei_network
    sizes = {"E": task["n_E"], "I": task["n_I"]}
    pops = tuple(nw.Population(p, sizes[p], neuron, exc, inh, drive) for p in "EI")
    projs = []
    for pre in "EI":
        for post in "EI":
            e_pre, e_post = edges.pop(f"{pre}{post}_pre"), edges.pop(f"{pre}{post}_post")
            projs.append(nw.sparse_projection(pre, post, e_pre, e_post, w[f"{pre}->{post}"], n_pre=sizes[pre],
                                              n_post=sizes[post], receptor="exc" if pre == "E" else "inh",
                                              delay=bn.DELAY, stp=EI_STP if pre + post == "EE" else None,
                                              stp_mode="pre"))
            del e_pre, e_post
    net = nw.Network(pops, tuple(projs))
    build = time.perf_counter() - t0
    rss_build = _peak_rss_mb()

    first, walls, cpus, rates = bn.time_network(net, task, {name: sizes[name] for name in "EI"})
    return dict(build_s=build, first_s=first, steady_s=statistics.median(walls), steady_all=walls,
                cpu_s=statistics.median(cpus), rates=rates, peak_rss_mb=_peak_rss_mb(), rss_after_build_mb=rss_build,
                n_synapses=n_synapses, version=getattr(jaxlif, "__version__", ""), jax=jax.__version__)


def _worker_brian2(task: dict) -> dict:
    return bn._worker_brian2(task)


def _worker_nest(task: dict) -> dict:
    """The network in NEST (parameters from the task, which the driver fills from jaxlif's defaults)."""
    import numpy as np
    import nest
    t_start = time.perf_counter()
    nest.verbosity = nest.VerbosityLevel.ERROR
    nest.ResetKernel()
    nest.set(resolution=task["dt"], local_num_threads=1, print_time=False, rng_seed=task["seed"] + 1)
    nrn, stp, rec = task["neuron"], task["stp"], task["receptors"]
    n_E, n_I = task["n_E"], task["n_I"]
    pop = nest.Create("iaf_cond_exp", n_E + n_I, params=dict(
        C_m=nrn["g_L"] * nrn["tau_m"], g_L=nrn["g_L"], E_L=nrn["E_L"], V_th=nrn["V_th"], V_reset=nrn["V_reset"],
        V_m=nrn["V_init"], t_ref=nrn["t_ref"], E_ex=rec["exc"][1], E_in=rec["inh"][1], tau_syn_ex=rec["exc"][0],
        tau_syn_in=rec["inh"][0], I_e=0.0))
    first_id = pop[0].global_id
    offset = {"E": first_id, "I": first_id + n_E}
    w = bn._weights(task)
    delay = bn.DELAY * task["dt"]
    edges = np.load(task["edges"])
    for pre in "EI":
        for post in "EI":
            src = edges[f"{pre}{post}_pre"].astype(np.int64) + offset[pre]
            dst = edges[f"{pre}{post}_post"].astype(np.int64) + offset[post]
            weight = w[f"{pre}->{post}"] * (1.0 if pre == "E" else -1.0)      # NEST: negative = inhibitory
            values = {"weight": weight, "delay": delay}
            if pre + post == "EE":                    # u = U on every synapse (NEST's default u is 0.5)
                values.update(U=stp["U0"], u=stp["U0"], x=1.0, tau_rec=stp["tau_d"], tau_fac=stp["tau_f"])
            spec = {k: np.full(src.size, float(v)) for k, v in values.items()}    # arrays: Connect's array form
            spec["synapse_model"] = "tsodyks2_synapse" if pre + post == "EE" else "static_synapse"
            nest.Connect(src, dst, "one_to_one", syn_spec=spec)
            del spec
            del src, dst
    drive = nest.Create("poisson_generator", params={"rate": bn.DRIVE["drive_n"] * bn.DRIVE["drive_rate"]})
    nest.Connect(drive, pop, syn_spec={"weight": bn.DRIVE["drive_weight"], "delay": task["dt"]})
    recorder = nest.Create("spike_recorder")
    nest.Connect(pop, recorder)
    build = time.perf_counter() - t_start
    walls, cpus, rates = [], [], {"E": [], "I": []}
    first = None
    for _ in range(max(1, task["repeats"])):
        t0, c0 = time.perf_counter(), time.process_time()
        nest.Simulate(task["T"])
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        first = first if first is not None else time.perf_counter() - t_start
        senders = np.asarray(recorder.get("events", "senders"))
        recorder.n_events = 0
        n_exc = int(np.count_nonzero(senders < offset["I"]))
        rates["E"].append(n_exc / n_E / (task["T"] / 1000.0))
        rates["I"].append((senders.size - n_exc) / n_I / (task["T"] / 1000.0))
    later = walls[1:] or walls
    return dict(build_s=build, first_s=first, steady_s=statistics.median(later), steady_all=walls,
                cpu_s=statistics.median(cpus[1:] or cpus), rates=rates, peak_rss_mb=_peak_rss_mb(),
                n_synapses=int(nest.GetKernelStatus("num_connections")), version=nest.__version__)


_WORKERS = {"edges": _worker_edges, "jaxlif": _worker_jaxlif, "brian2": _worker_brian2, "nest": _worker_nest}


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def _run(task: dict, python: str, timeout: float) -> dict:
    """One task in a fresh worker process of this script (``bench_network._run``)."""
    return bn._run(task, python, timeout, Path(__file__).resolve())


def _interpreter(arg: str | None, env_var: str, default: str, module: str) -> str | None:
    py = arg or os.environ.get(env_var) or str(ROOT / default / "bin" / "python")
    ok = Path(py).exists() and subprocess.run([py, "-c", f"import {module}"], capture_output=True,
                                              env=dict(os.environ, PYNEST_QUIET="1")).returncode == 0
    return py if ok else None


def _model_values() -> dict:
    """jaxlif's neuron, receptors and E->E plasticity, for the NEST worker (which cannot import jaxlif)."""
    import jaxlif
    from jaxlif.network.models import EI_STP
    return dict(neuron=jaxlif.LIFParams()._asdict(), stp=EI_STP._asdict(), receptors={"exc": (5.0, 0.0),
                                                                                   "inh": (10.0, -80.0)})


def _checks(rows: list[dict]) -> None:
    """Set every peer row's ``check``: its rates against jaxlif's in the same cell (K, N, T)."""
    jax_rows = {_cell_key(r)[:3]: r for r in rows if r["system"] == "jaxlif" and "steady_s" in r}
    for r in rows:
        if r["system"] != "jaxlif" and "steady_s" in r:
            jx = jax_rows.get(_cell_key(r)[:3])
            r["check"] = bn._rate_check(jx, r) if jx else "- (no jaxlif run of this cell)"


def _cell_key(row: dict) -> tuple:
    return row["K"], row["N"], row["T"], row["system"]


def _order(row: dict) -> tuple:
    """Rows in the order of :data:`CELLS` (then of :data:`SYSTEMS`)."""
    index = next((i for i, c in enumerate(CELLS) if c[:3] == (row["K"], row["N"], row["T"])), len(CELLS))
    return index, SYSTEMS.index(row["system"]) if row["system"] in SYSTEMS else -1


def slopes(rows: list[dict]) -> dict:
    """Least-squares log-log slopes of the time per simulated second (and of the peak RSS) against N per
    (system, K), and of the time against the number of synapses per system (every K together); where a
    cell ran with several T, the longest counts."""
    import numpy as np
    out = {}

    def fit(x, y):
        return float(np.polyfit(np.log(x), np.log(y), 1)[0]) if len(set(x)) >= 2 else None

    longest = {}                                   # per (system, K, N): the row with the longest T
    for r in rows:
        if "steady_s" in r and r["T"] >= longest.get((r["system"], r["K"], r["N"]), {"T": -1.0})["T"]:
            longest[r["system"], r["K"], r["N"]] = r
    for system in SYSTEMS:
        ok = [r for (s, _, _), r in longest.items() if s == system]
        for K in sorted({r["K"] for r in ok}):
            mine = [r for r in ok if r["K"] == K]
            out[f"{system} K={K} time vs N"] = fit([r["N"] for r in mine], [r["s_per_s"] for r in mine])
            out[f"{system} K={K} RSS vs N"] = fit([r["N"] for r in mine], [r["peak_rss_mb"] for r in mine])
        out[f"{system} time vs synapses"] = fit([r["N"] * r["K"] for r in ok], [r["s_per_s"] for r in ok])
    return {k: v for k, v in out.items() if v is not None}


def render(report: dict) -> str:
    rows, m = report["rows"], report["machine"]
    lines = ["## Cost curves of the E/I network: time and memory against N (`benchmarks/bench_network_scale.py`)", "",
             f"Written by `{report['command']}` on {report['started']} (UTC; this run {report['minutes']:.0f} min); "
             "machine: "
             f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; load average (1/5/15 min) at start "
             f"{report['load'][0]}, at end {report['load'][1]} (other sessions were running: timings are upper "
             "bounds). Figure: `docs/bench_network_scale.png`.", "",
             "Network: `bench_network.py`'s E/I network (80 % E, 20 % I, depressing E->E with one u, R per "
             "presynaptic neuron, delay 1.5 ms, 100 Poisson trains x 10 Hz x 1 nS per neuron, weights x 400/K) "
             "with a **fixed in-degree K** (0.8 K from E, 0.2 K from I): N K synapses, the same edge lists in every "
             "system. dt = 0.1 ms. Each system in a fresh process on one core: jaxlif (event delivery, float32), "
             "Brian2 2.9 cpp_standalone (float64, 1 thread), NEST 3.10 (`iaf_cond_exp`, `tsodyks2_synapse` with "
             "u = U, 1 thread). **CPU s / sim s** = CPU time of one steady run divided by T (the measure used for "
             "the fits and the figure: it is what the process itself used, while the wall time also counts the other "
             "sessions' load); wall s / sim s likewise (median of the steady runs; T < 1 s for the largest cells, "
             "scaled linearly, the T column says). First = everything before the first run ends (jaxlif: "
             "compilation; Brian2: code generation and C++ compilation; NEST: building and connecting). Peak RSS "
             "= `ru_maxrss` of the worker (Brian2: the largest child, the compiler or the binary). Rates: mean "
             "+- SE over runs; check = peer vs jaxlif within 4 SE (`bench_network._rate_check`).", "",
             "| K | N | synapses | system | T ms | build s | first s | CPU s / sim s | wall s / sim s | peak RSS MB | "
             "E rate Hz | I rate Hz | check vs jaxlif |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['K']} | {r['N']:,} | {r['N'] * r['K']:,} | {r['system']} | {r['T']:g} |"
        if "error" in r:
            lines.append(f"{head} error: {r['error'][:160].replace('|', '/')} ||||||||")
            continue
        (mE, sE), (mI, sI) = (bn._mean_se(r["rates"][p]) for p in "EI")
        build = f"{r['build_s']:.1f}" if r.get("build_s") is not None else "-"
        lines.append(f"{head} {build} | {r['first_s']:.1f} | {r['s_per_s']:.3g} | {r['wall_per_s']:.3g} | "
                     f"{r['peak_rss_mb']:.0f} | "
                     f"{mE:.2f} +- {sE:.2f} | {mI:.2f} +- {sI:.2f} | {r.get('check', '-')} |")
    sl = report["slopes"]
    lines += ["", "Fitted log-log slopes (least squares over the cells run): "
              + "; ".join(f"{k}: {v:.2f}" for k, v in sl.items()) + ".", ""]
    big = sorted((r for r in rows if r["system"] == "jaxlif" and r["N"] >= 100000 and r["K"] == 100
                  and "steady_s" in r), key=lambda r: -r["T"])
    if big:
        verdict = "within" if max(r["peak_rss_mb"] for r in big) <= 8 * 1024 else "OVER"
        lines += ["**10^5 neurons, 10^7 synapses (K = 100) in jaxlif** (" + verdict + " the 8 GB requirement): " +
                  "; ".join(f"T = {r['T']:g} ms: peak RSS {r['peak_rss_mb']:.0f} MB, {r['s_per_s']:.1f} CPU s "
                            f"({r['wall_per_s']:.1f} wall s) per simulated second, first call {r['first_s']:.1f} s, "
                            f"build {r['build_s']:.1f} s" for r in big) + ".", ""]
    for note in report.get("notes", []):
        lines.append(note)
    return "\n".join(lines).rstrip() + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"jaxlif": "C0", "brian2": "C1", "nest": "C2"}
    styles = {100: "-o", 1000: "--s"}
    for system in SYSTEMS:
        for K in sorted({r["K"] for r in report["rows"]}):
            mine = sorted((r for r in report["rows"] if r["system"] == system and r["K"] == K and "steady_s" in r),
                          key=lambda r: r["N"])
            if not mine:
                continue
            label = f"{system}, K = {K}"
            N = [r["N"] for r in mine]
            a.plot(N, [r["s_per_s"] for r in mine], styles.get(K, "-^"), color=colors[system], label=label)
            b.plot(N, [r["peak_rss_mb"] for r in mine], styles.get(K, "-^"), color=colors[system], label=label)
    a.set(xscale="log", yscale="log", xlabel="neurons N", ylabel="CPU time per simulated second [s]",
          title="time (one core, dt = 0.1 ms, T = 1 s)")
    b.set(xscale="log", yscale="log", xlabel="neurons N", ylabel="peak RSS of the process [MB]", title="peak memory")
    b.axhline(8 * 1024, color="grey", lw=0.8, ls=":")
    b.text(b.get_xlim()[0] * 1.1, 8 * 1024 * 1.08, "8 GB", color="grey", fontsize=8)
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
    a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_network_scale.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 500, K = 50, 100 ms, jaxlif only (needs --out)")
    p.add_argument("--out", type=Path, default=None, help="folder for BENCHMARKS.md, the JSON and the figure "
                   "(default: the repository's BENCHMARKS.md, results/ and docs/)")
    p.add_argument("--repeats", type=int, default=2, help="runs after the first (jaxlif, Brian2); NEST segments")
    p.add_argument("--only", default=None, help="comma-separated systems to run (default: all found)")
    p.add_argument("--max-n", dest="max_n", type=int, default=None, help="skip cells with more neurons")
    p.add_argument("--brian2-python", dest="brian2_python", default=None,
                   help="interpreter with brian2 (default $JAXLIF_BRIAN2_PYTHON or .venv-bench/bin/python)")
    p.add_argument("--nest-python", dest="nest_python", default=None,
                   help="interpreter with nest (default $JAXLIF_NEST_PYTHON or .venv-nest/bin/python)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per worker")
    p.add_argument("--cells", default=None, help="only these cells: K:N:T[,K:N:T...] (T in ms); the study's, or others "
                   "(e.g. 400:16000:1000, the bench_network.py network at 4x the size)")
    p.add_argument("--merge", type=Path, default=None, help="start from an earlier report's rows (JSON); cells run "
                   "now replace theirs")
    p.add_argument("--note", action="append", default=[], help="a line added under the table")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> dict:
    args = make_parser().parse_args(argv)
    if args.worker is not None:
        bn._worker_main(args.worker, _WORKERS)
        return {}
    if args.quick and args.out is None:
        raise SystemExit("--quick needs --out DIR (the repository's BENCHMARKS.md is for full runs)")
    wanted = set(args.only.split(",")) if args.only else set(SYSTEMS)
    unknown = wanted - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"--only: unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    pythons = {"jaxlif": sys.executable}
    if not args.quick:
        pythons["brian2"] = _interpreter(args.brian2_python, "JAXLIF_BRIAN2_PYTHON", ".venv-bench", "brian2")
        pythons["nest"] = _interpreter(args.nest_python, "JAXLIF_NEST_PYTHON", ".venv-nest", "nest")
    cells = QUICK_CELLS if args.quick else [c for c in CELLS if args.max_n is None or c[1] <= args.max_n]
    print(f"[bench_network_scale] interpreters: {pythons}", flush=True)
    started, t_start, load_start = datetime.datetime.now(datetime.timezone.utc), time.perf_counter(), os.getloadavg()
    model = _model_values()
    rows, notes = [], list(args.note)
    if args.merge is not None:                        # an earlier report's cells, unless re-measured now
        earlier = json.loads(Path(args.merge).read_text())
        rows, notes = earlier["rows"], earlier.get("notes", []) + notes
        notes.append(f"Merged with the cells of an earlier run: `{earlier['command']}` (started {earlier['started']}, "
                     f"{earlier['minutes']:.0f} min, load average at start {earlier['load'][0]}, at end "
                     f"{earlier['load'][1]}); the cells run now replace theirs.")
    if args.cells:                                    # the study's cells, or others with every system
        known = {(c[0], c[1], c[2]): c for c in CELLS}
        asked = [tuple(float(x) for x in c.split(":")) for c in args.cells.split(",")]
        cells = [known.get(c, (int(c[0]), int(c[1]), c[2], SYSTEMS)) for c in asked]
    out = Path(args.out) if args.out is not None else ROOT
    out.mkdir(parents=True, exist_ok=True)
    json_path = (ROOT / "results" / "bench_network_scale.json") if out == ROOT else out / "bench_network_scale.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    partial = json_path.with_suffix(".partial.json")
    with tempfile.TemporaryDirectory(prefix="jaxlif_netscale_") as tmp:
        for K, N, T, systems in cells:
            cfg = _cell_config(K, N, T)
            edges = str(Path(tmp) / f"edges_{K}_{N}.npz")
            made = _run(dict(cfg, system="edges", edges=edges), sys.executable, args.timeout)
            if "error" in made:
                rows.append(dict(cfg, system="edges", **made))
                continue
            for system in systems:
                if system not in wanted:
                    continue
                if not pythons.get(system):
                    notes.append(f"{system} at K = {K}, N = {N}: not run (no interpreter that imports it).")
                    continue
                task = dict(cfg, system=system, edges=edges, repeats=args.repeats, pin=bb._idlest_cpu(), **model)
                res = _run(task, pythons[system], args.timeout)
                row = dict(cfg, system=system, **res)
                if "steady_s" in row:
                    row["s_per_s"] = row["cpu_s"] / (T / 1000.0)           # CPU: robust to the other load
                    row["wall_per_s"] = row["steady_s"] / (T / 1000.0)
                rows = [r for r in rows if _cell_key(r) != _cell_key(row)] + [row]
                rows.sort(key=_order)
                _checks(rows)
                partial.write_text(json.dumps(rows, indent=1))           # survives an interrupted study
                brief = res.get("error") or (f"{row['s_per_s']:.3g} CPU s/sim s, {row['wall_per_s']:.3g} wall, "
                                             f"{row['peak_rss_mb']:.0f} MB, rates "
                                             f"E {statistics.fmean(row['rates']['E']):.2f} I "
                                             f"{statistics.fmean(row['rates']['I']):.2f} {row.get('check', '')}")
                print(f"[bench_network_scale] K={K} N={N} {system}: {brief} ({res.get('process_s', 0):.0f} s)",
                      flush=True)
            os.remove(edges)
    command = " ".join(["python benchmarks/bench_network_scale.py"] + [str(a) for a in (sys.argv[1:] if argv is None
                                                                                          else argv)])
    report = dict(name=NAME, started=started.isoformat(timespec="seconds"), machine=bb._machine(),
                  minutes=(time.perf_counter() - t_start) / 60.0, command=command, notes=notes,
                  load=[tuple(round(x, 2) for x in load_start), tuple(round(x, 2) for x in os.getloadavg())],
                  rows=rows, slopes=slopes([r for r in rows if r["system"] in SYSTEMS]))
    json_path.write_text(json.dumps(report, indent=1))
    bb.replace_section(out / "BENCHMARKS.md", NAME, render(report))
    plot(report, FIGURE if out == ROOT else out / FIGURE.name)
    print(f"[bench_network_scale] wrote {out / 'BENCHMARKS.md'} (section {NAME}), {json_path} and the figure",
          flush=True)
    return report


if __name__ == "__main__":
    main()
