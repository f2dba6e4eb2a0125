"""Benchmark: a recurrent E/I network of 4000 conductance-LIF neurons, 10 % connectivity, 1 s, jaxlif vs Brian2.

One command measures everything and rewrites the ``network`` section of ``BENCHMARKS.md`` (between the
markers ``<!-- begin:network -->`` and ``<!-- end:network -->``; the rest of the file is kept)::

    python benchmarks/bench_network.py              # full run (a few minutes on 2 cores)
    python benchmarks/bench_network.py --quick --out /tmp/bn   # seconds: 400 neurons, 100 ms, no Brian2

The network (``jaxlif.network.ei_network``): 3200 excitatory + 800 inhibitory neurons (the tutorials'
neuron), every ordered pair connected with probability 0.1 (about 1.6 million synapses), weights E->E
0.25, E->I 0.25, I->E 1.5, I->I 1.5 nS, delay 1.5 ms (15 steps), depressing E->E synapses (U0 0.5,
tau_d 100 ms, tau_f 50 ms, one u, R per presynaptic neuron), and 100 Poisson trains at 10 Hz x 1 nS of
excitatory drive per neuron; T = 1000 ms, dt = 0.1 ms.

Systems, each in a fresh process pinned to one CPU core (``sched_setaffinity``):

- ``jaxlif``: :func:`jaxlif.network.simulate_network` (event delivery, float32, spike rasters only);
  first call (compilation included), then ``--repeats`` calls with new drive keys (median).
- ``brian2``: Brian2 ``cpp_standalone`` (1 thread, float64) in the interpreter given by
  ``--brian2-python`` (default ``.venv-bench/bin/python``), on **the same synapses** (the edge lists
  are exported from jaxlif).  The model is written here in Brian2 code in jaxlif's step order:
  refractory clamp / threshold test / reset and the presynaptic ``u, R`` update at ``start``; the
  spike through a custom threshold; conductance decay before the synaptic and Poisson input (both in
  the ``synapses`` slot, delay ``(d - 1) dt`` because Brian2 delivers a zero-delay spike within its
  own step); the membrane update at ``end``.
- delivery alone: the E->E projection's input per step (``W x`` for one step's spikes) as a dense
  matrix product, ``jax.experimental.sparse`` BCOO, ``segment_sum`` over the edge list, the padded
  rows (the ``"full"`` method), and the event method, each timed in one ``lax.scan``.

The mean rates of E and I must agree between the two simulators within 4 standard errors (over
repeats): the same work, or the comparison is void.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "network"
MARK_BEGIN, MARK_END = f"<!-- begin:{NAME} -->", f"<!-- end:{NAME} -->"

DEFAULTS = dict(n_E=3200, n_I=800, p=0.1, T=1000.0, dt=0.1, repeats=10, brian2_repeats=9, seed=0, delivery_steps=1000)
QUICK = dict(n_E=320, n_I=80, T=100.0, repeats=2, brian2_repeats=1, delivery_steps=100)
WEIGHTS_4000 = {"E->E": 0.25, "E->I": 0.25, "I->E": 1.5, "I->I": 1.5}      # nS, for p = 0.1 and 4000 neurons
DELAY = 15                                                                  # steps (1.5 ms at dt = 0.1)
DRIVE = dict(drive_rate=10.0, drive_n=100, drive_weight=1.0)


def _weights(cfg: dict) -> dict:
    """Weights [nS] scaled with the number of inputs (``p n``) so that smaller networks get the same mean input."""
    scale = 4000 * 0.1 / ((cfg["n_E"] + cfg["n_I"]) * cfg["p"])
    return {k: w * scale for k, w in WEIGHTS_4000.items()}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _build(cfg: dict):
    sys.path.insert(0, str(ROOT))
    import jax
    from jaxlif import network as nw
    return nw.ei_network(jax.random.key(cfg["seed"]), n_E=cfg["n_E"], n_I=cfg["n_I"], p=cfg["p"],
                         weights=_weights(cfg), delay=DELAY, **DRIVE)


# ----------------------------------------------------------------------------------------------
# Workers (each in a fresh process; one line "BENCH_RESULT {json}")
# ----------------------------------------------------------------------------------------------


def time_network(net, task: dict, sizes: dict) -> tuple[float, list, list, dict]:
    """``(first s, steady wall s per run, steady CPU s per run, {name: rates [Hz] per run})`` of
    ``simulate_network`` on ``net`` (``task["T"], task["dt"]``, spike rasters only): a first call (compilation
    included), then ``task["repeats"]`` calls with new drive keys.  Also used by ``bench_network_scale.py``."""
    import jax
    import numpy as np
    from jaxlif import network as nw

    def run(seed):
        return nw.simulate_network(jax.random.key(seed), net, T=task["T"], dt=task["dt"], record=False).spikes

    # the timed call returns the rasters in memory, as Brian2's run ends with its spike monitor's arrays; the
    # spikes are counted after the clock stops (a pass over the rasters: about 0.08 s for the 4000 neurons x 1 s)
    t0 = time.perf_counter()
    jax.block_until_ready(run(10_000))
    first = time.perf_counter() - t0
    walls, cpus, rates = [], [], {name: [] for name in sizes}
    for i in range(task["repeats"]):
        t0, c0 = time.perf_counter(), time.process_time()
        spikes = jax.block_until_ready(run(10_001 + i))
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        for name, n in sizes.items():
            rates[name].append(float(np.count_nonzero(np.asarray(spikes[name]))) / n / (task["T"] / 1000.0))
    return first, walls, cpus, rates


def _worker_jaxlif(task: dict) -> dict:
    import jax
    import numpy as np
    net = _build(task)
    if task.get("edges"):                         # export the synapses for Brian2
        arrays = {}
        for proj in net.projections:
            pre, post, w, d = proj.edges()
            key = proj.pre + proj.post
            arrays.update({f"{key}_pre": pre, f"{key}_post": post})
        np.savez(task["edges"], **arrays)
    rss_import = _peak_rss_mb()

    first, walls, cpus, rates = time_network(net, task, {"E": task["n_E"], "I": task["n_I"]})
    n_syn = sum(len(q.edges()[0]) for q in net.projections)
    return dict(first_s=first, steady_s=statistics.median(walls), steady_all=walls, cpu_s=statistics.median(cpus),
                rates=rates, n_synapses=n_syn, peak_rss_mb=_peak_rss_mb(), rss_after_import_mb=rss_import,
                dtype=str(jax.numpy.result_type(float)), jax=jax.__version__)


_BRIAN2_MODEL = """
ns = dict(V_th=-55.0, V_reset=-75.0, tau_m=10.0, g_L=10.0, E_L=-75.0, V_init=-65.0, E_E=0.0, E_I=-80.0,
          tau_E=5.0, tau_I=10.0, dtms=dt_ms, ref_steps=2.0 / dt_ms, U0=0.5, tau_d=100.0, tau_f=50.0,
          w_ext=drive_weight, **weights)
G = NeuronGroup(n_E + n_I, '''v : 1
gE : 1
gI : 1
tr : 1
fire : 1
u : 1
R : 1
rel : 1
nspk : 1''', threshold='fire > 0.5', namespace=ns)
G.v = 'V_init'
G.R = 1.0
# step 1: refractory clamp or threshold test of v, reset; then the presynaptic u, R update (new u, old R)
G.run_regularly('''clamped = int(tr > 0)
fire = (1 - clamped) * int(v >= V_th)
v = V_reset * (clamped + fire) + v * (1 - clamped - fire)
tr = (tr - 1) * clamped + ref_steps * fire
nspk += fire
u_next = u - dtms / tau_f * u + U0 * (1 - u) * fire
rel = fire * u_next * R + (1 - fire) * rel
R = R + dtms / tau_d * (1 - R) - u_next * R * fire
u = u_next''', when='start', name='step1')
# step 3a: decay, before this step's synaptic and Poisson input (slot 'synapses')
G.run_regularly('''gE = gE - dtms / tau_E * gE
gI = gI - dtms / tau_I * gI''', when='synapses', order=-1, name='decay')
E, I = G[:n_E], G[n_E:]
delay = (delay_steps - 1) * dt_ms * ms
S = []
for (src, dst, code, key) in ((E, E, 'gE_post += w_EE * rel_pre', 'EE'), (E, I, 'gE_post += w_EI', 'EI'),
                              (I, E, 'gI_post += w_IE', 'IE'), (I, I, 'gI_post += w_II', 'II')):
    syn = Synapses(src, dst, on_pre=code, delay=delay, namespace=ns, name='syn_' + key)
    syn.connect(i=edges[key + '_pre'], j=edges[key + '_post'])
    S.append(syn)
P = PoissonInput(G, 'gE', drive_n, drive_rate * Hz, weight='w_ext', when='synapses', order=0)
# step 3b: membrane update with the new conductances
G.run_regularly('v = v + dtms / tau_m * (-(v - E_L) - gE / g_L * (v - E_E) - gI / g_L * (v - E_I))',
                when='end', name='membrane')
"""


def _worker_brian2(task: dict) -> dict:
    import numpy as np
    import brian2
    from brian2 import (Hz, Network, NeuronGroup, PoissonInput, Synapses, defaultclock, device, ms, prefs)
    directory = tempfile.mkdtemp(prefix="jaxlif_bench_network_brian2_")
    t0 = time.perf_counter()
    brian2.set_device("cpp_standalone", directory=directory, build_on_run=True)
    prefs.devices.cpp_standalone.openmp_threads = 0
    defaultclock.dt = task["dt"] * ms
    edges = dict(np.load(task["edges"]))
    weights = {f"w_{k.replace('->', '')}": w for k, w in _weights(task).items()}
    scope = dict(np=np, Hz=Hz, ms=ms, NeuronGroup=NeuronGroup, PoissonInput=PoissonInput, Synapses=Synapses,
                 n_E=task["n_E"], n_I=task["n_I"], dt_ms=task["dt"], weights=weights, edges=edges,
                 delay_steps=DELAY, **DRIVE)
    exec(_BRIAN2_MODEL, scope)
    G = scope["G"]
    net = Network(G, scope["P"], *scope["S"])
    net.run(task["T"] * ms, namespace=scope["ns"])
    first = time.perf_counter() - t0
    rates = {"E": [], "I": []}

    def collect():
        n = np.asarray(G.nspk[:])
        rates["E"].append(float(n[:task["n_E"]].mean()) / (task["T"] / 1000.0))
        rates["I"].append(float(n[task["n_E"]:].mean()) / (task["T"] / 1000.0))

    collect()
    walls, cpus = [], []
    for _ in range(task["repeats"]):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        device.run(directory=directory, with_output=False, run_args={})      # a new seed each run
        walls.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        collect()
    rss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    __import__("shutil").rmtree(directory, ignore_errors=True)
    return dict(first_s=first, steady_s=statistics.median(walls), steady_all=walls, cpu_s=statistics.median(cpus),
                rates=rates, peak_rss_mb=rss_kb / 1024.0, version=brian2.__version__)


def _worker_delivery(task: dict) -> dict:
    """Per-step cost of the E->E input ``W x`` for spike vectors at the network's rate, five ways."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import sparse
    from jaxlif.network import delivery as dl
    net = _build(task)
    EE = net.projections[0]
    pre, post, w, _ = EE.edges()
    n, steps = task["n_E"], task["delivery_steps"]
    rate = task.get("rate_E", 5.0)                                          # Hz, the measured E rate
    spikes = np.random.default_rng(0).random((steps, n)) < rate * task["dt"] / 1000.0
    xs = jnp.asarray(spikes, jnp.float32)
    W = np.zeros((n, n), np.float32)
    np.add.at(W, (post, pre), w)
    W, B = jnp.asarray(W), sparse.BCOO((jnp.asarray(w, jnp.float32), jnp.asarray(np.stack([post, pre], 1))), shape=(n, n))
    pre_j, post_j, w_j = jnp.asarray(pre), jnp.asarray(post), jnp.asarray(w, jnp.float32)
    targets, rows_w = jnp.asarray(EE.targets), jnp.asarray(EE.weights, jnp.float32)
    ones = jnp.ones_like(EE.delays)
    ring = jnp.zeros((1, n), jnp.float32)

    def event(x, method, capacity=4):          # as in the network: one delay (1 step, a ring of one slot)
        layout = dl.Layout(True, 1, 1, method, capacity, 0, n)
        rows = dl.active_rows(x != 0, capacity) if method == "event" else None
        return dl.deliver(layout, ring, x, rows_w, targets, ones, rows, 0)[0]

    methods = {"dense W @ x": lambda x: W @ x, "BCOO @ x (jax.experimental.sparse)": lambda x: B @ x,
               "segment_sum over edges": lambda x: jax.ops.segment_sum(w_j * x[pre_j], post_j, n),
               'padded rows, every synapse ("full")': lambda x: event(x, "full"),
               'padded rows, spiking rows only ("event")': lambda x: event(x, "event")}
    compiled, out, ref = {}, {}, None
    for name, f in methods.items():
        g = jax.jit(lambda xs, f=f: jax.lax.scan(lambda c, x: (c + f(x), None), jnp.zeros(n), xs)[0])
        total = jax.block_until_ready(g(xs))
        ref = total if ref is None else ref
        compiled[name] = g
        out[name] = dict(cpu_us=[], wall_us=[], max_abs_diff=float(jnp.max(jnp.abs(total - ref))))
    for _ in range(task.get("delivery_repeats", 5)):         # interleaved, so that load hits every method alike
        for name, g in compiled.items():
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(g(xs))
            out[name]["cpu_us"].append((time.process_time() - c0) / steps * 1e6)
            out[name]["wall_us"].append((time.perf_counter() - t0) / steps * 1e6)
    for m in out.values():                                    # the least disturbed pass
        m["cpu_us_all"], m["cpu_us"], m["wall_us"] = m["cpu_us"], min(m["cpu_us"]), min(m["wall_us"])
    return dict(methods=out, n_synapses=int(len(pre)), rate_hz=rate, steps=steps)


_WORKERS = {"jaxlif": _worker_jaxlif, "brian2": _worker_brian2, "delivery": _worker_delivery}


def _worker_main(task_json: str, workers: dict | None = None) -> None:
    """Run one task in this (worker) process with ``workers[task["system"]]`` (default this script's) and
    print its result as one ``BENCH_RESULT`` JSON line (also used by ``bench_network_scale.py``)."""
    task = json.loads(task_json)
    if task.get("pin") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {task["pin"]})
    try:
        res = (_WORKERS if workers is None else workers)[task["system"]](task)
    except Exception as err:  # report, do not crash the benchmark
        res = dict(error=f"{err.__class__.__name__}: {err}")
    print("BENCH_RESULT " + json.dumps(res), flush=True)


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def _run(task: dict, python: str, timeout: float, script: Path | None = None) -> dict:
    """Run ``script --worker TASK`` (default this script) with ``python`` in a fresh process: its
    ``BENCH_RESULT``, with ``process_s`` (the process's wall time, start-up included), or an error."""
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"), PYNEST_QUIET="1")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([python, str(script or Path(__file__).resolve()), "--worker", json.dumps(task)],
                              capture_output=True, text=True, env=env, timeout=timeout, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout:.0f} s")
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("BENCH_RESULT "):
            return dict(json.loads(line[len("BENCH_RESULT "):]), process_s=time.perf_counter() - t0)
    return dict(error=f"worker failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-800:]}")


def _idlest_cpu() -> int | None:
    """The allowed CPU with the most idle time over half a second (/proc/stat), to pin a worker to."""
    if not hasattr(os, "sched_getaffinity") or not Path("/proc/stat").exists():
        return None

    def idle():
        out = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                out[int(name[3:])] = int(vals[3]) + int(vals[4])
        return out

    a = idle()
    time.sleep(0.5)
    b = idle()
    return max(sorted(os.sched_getaffinity(0)), key=lambda c: b.get(c, 0) - a.get(c, 0))


def _brian2_python(arg: str | None) -> str | None:
    py = arg or str(ROOT / ".venv-bench" / "bin" / "python")
    if Path(py).exists() and subprocess.run([py, "-c", "import brian2"], capture_output=True).returncode == 0:
        return py
    return None


def _mean_se(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return m, se


def _rate_check(a: dict, b: dict) -> str:
    """E and I mean rates of two systems within 4 standard errors of their difference?  The same network
    has the same run-to-run spread in both, so the standard deviation is pooled over the two samples."""
    parts, ok = [], True
    for pop in ("E", "I"):
        x, y = a["rates"][pop], b["rates"][pop]
        ss = sum((v - statistics.fmean(x)) ** 2 for v in x) + sum((v - statistics.fmean(y)) ** 2 for v in y)
        sd = math.sqrt(ss / max(len(x) + len(y) - 2, 1))
        se = sd * math.sqrt(1.0 / len(x) + 1.0 / len(y))
        diff = statistics.fmean(y) - statistics.fmean(x)
        z = abs(diff) / se if se > 0 else float("inf")
        ok &= z <= 4
        parts.append(f"{pop} {diff:+.3f} Hz ({z:.1f} SE)")
    return ("agrees: " if ok else "DIFFERS: ") + ", ".join(parts)


def render(report: dict) -> str:
    cfg, res = report["config"], report["results"]
    jx, b2, dv = res.get("jaxlif", {}), res.get("brian2"), res.get("delivery", {})
    n = cfg["n_E"] + cfg["n_I"]
    lines = [MARK_BEGIN, "## Recurrent E/I network: jaxlif vs Brian2 (`benchmarks/bench_network.py`)", "",
             f"Written by `{report['command']}` on {report['started']} (UTC); machine: {report['machine']}; "
             f"load average (1/5/15 min) at start {report['load'][0]}, at end {report['load'][1]}. Rerun on a quiet "
             f"machine with `python benchmarks/bench_network.py` (rewrites this section only).", "",
             f"Network: {cfg['n_E']} E + {cfg['n_I']} I conductance-LIF neurons, connection probability {cfg['p']} "
             f"({jx.get('n_synapses', '?')} synapses), weights {_weights(cfg)} nS, delay {DELAY} steps, depressing "
             f"E->E (one u, R per presynaptic neuron), 100 Poisson trains x 10 Hz x 1 nS per neuron; "
             f"T = {cfg['T']:g} ms, dt = {cfg['dt']:g} ms. Each system in a fresh process pinned to one core; Brian2 "
             f"runs the same synapses (edge lists exported from jaxlif).", "",
             "| system | first call s | steady s (median) | CPU s | peak RSS MB | E rate Hz | I rate Hz | rate check | "
             "x jaxlif |", "|---|---|---|---|---|---|---|---|---|"]
    rows = [("jaxlif (event delivery, float32)", jx)] + ([("Brian2 2.9 cpp_standalone (1 thread, float64)", b2)]
                                                          if b2 else [])
    for name, r in rows:
        if not r or "error" in r:
            lines.append(f"| {name} | error: {(r or {}).get('error', 'not run')[:200]} ||||||||")
            continue
        (mE, sE), (mI, sI) = _mean_se(r["rates"]["E"]), _mean_se(r["rates"]["I"])
        check = "-" if r is jx else _rate_check(jx, r)
        ratio = f"{r['steady_s'] / jx['steady_s']:.2f}" if "steady_s" in jx else "-"
        lines.append(f"| {name} | {r['first_s']:.2f} | {r['steady_s']:.3f} | {r['cpu_s']:.3f} | "
                     f"{r['peak_rss_mb']:.0f} | {mE:.3f} +- {sE:.3f} | {mI:.3f} +- {sI:.3f} | {check} | {ratio} |")
    if not b2:
        lines.append("| Brian2 | not run (no interpreter with brian2; see `--brian2-python`) ||||||||")
    lines += ["", f"Rates: mean over {cfg['repeats']} (jaxlif) and {cfg['brian2_repeats'] + 1} (Brian2) runs with new "
              "random drive, +- standard error over runs (the check pools the two samples' spread). Steady = wall time of one simulation of T once compiled "
              "(jaxlif: compiled program reused, ending with the spike rasters in memory, counted after the clock "
              "stops; Brian2: the standalone binary rerun, ending with its spike monitor's arrays). x jaxlif = steady time / "
              f"jaxlif's. Simulated neuron-seconds per wall-second: jaxlif "
              f"{n * cfg['T'] / 1000.0 / jx['steady_s']:.3g}." if "steady_s" in jx else "", ""]
    if dv and "methods" in dv:
        lines += [f"Delivery alone: the E->E input of one step (`W x`, {dv['n_synapses']} synapses, spike vectors "
                  f"at {dv['rate_hz']:.1f} Hz), {dv['steps']} steps in one `lax.scan`, float32, one core; the fastest "
                  "of 5 interleaved passes:", "",
                  "| method | CPU us / step | wall us / step | max abs diff vs dense (nS) |", "|---|---|---|---|"]
        for name, m in dv["methods"].items():
            lines.append(f"| {name} | {m['cpu_us']:.1f} | {m['wall_us']:.1f} | {m['max_abs_diff']:.1e} |")
        ms = dv["methods"]
        b, s = ms.get("BCOO @ x (jax.experimental.sparse)"), ms.get("segment_sum over edges")
        if b and s:
            faster = "BCOO" if b["cpu_us"] < s["cpu_us"] else "segment_sum"
            verdict = (f"**{faster}** is faster here" if abs(b["cpu_us"] - s["cpu_us"]) > 0.1 * min(b["cpu_us"], s["cpu_us"])
                       else "BCOO and segment_sum are **about equally fast** here (within 10 %)")
            lines += ["", f"Of the two general sparse forms, {verdict} (BCOO {b['cpu_us']:.0f}, "
                      f"segment_sum {s['cpu_us']:.0f} CPU us per step); both touch every synapse every step. "
                      "The event method touches only the synapses of neurons that spiked and is what "
                      "`simulate_network` uses by default (`delivery=\"event\"`); its derivatives are those of the "
                      "full sum (`jaxlif.network.delivery`)."]
    elif dv and "error" in dv:
        lines.append(f"Delivery benchmark failed: {dv['error'][:300]}")
    lines += ["", MARK_END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace the text between the markers in ``path`` (append the section when the markers are absent)."""
    text = path.read_text() if path.exists() else ""
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    path.write_text(text)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_network.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="400 neurons, 100 ms, no Brian2 (needs --out)")
    p.add_argument("--out", type=Path, default=None, help="folder for BENCHMARKS.md and bench_network.json "
                   "(default: the repository root and results/)")
    p.add_argument("--repeats", type=int, default=None, help="steady jaxlif runs (median reported)")
    p.add_argument("--seed", type=int, default=None, help="seed of the connectivity")
    p.add_argument("--brian2-python", dest="brian2_python", default=None,
                   help="interpreter with brian2 (default .venv-bench/bin/python)")
    p.add_argument("--no-brian2", dest="no_brian2", action="store_true", help="skip Brian2")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per worker")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> dict:
    args = make_parser().parse_args(argv)
    if args.worker is not None:
        _worker_main(args.worker)
        return {}
    if args.quick and args.out is None:
        raise SystemExit("--quick needs --out DIR (the repository's BENCHMARKS.md is for full runs)")
    cfg = dict(DEFAULTS, **(QUICK if args.quick else {}))
    for key in ("repeats", "seed"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    out = Path(args.out) if args.out is not None else ROOT
    out.mkdir(parents=True, exist_ok=True)
    brian2_py = None if (args.no_brian2 or args.quick) else _brian2_python(args.brian2_python)
    print(f"[bench_network] config: {json.dumps(cfg)}; brian2: {brian2_py or 'not run'}", flush=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        edges = str(Path(tmp) / "edges.npz")
        tasks = [dict(cfg, system="jaxlif", edges=edges), dict(cfg, system="delivery")]
        if brian2_py:
            tasks.append(dict(cfg, system="brian2", edges=edges, repeats=cfg["brian2_repeats"]))
        for task in tasks:
            task["pin"] = _idlest_cpu()
            if task["system"] == "delivery" and "rates" in results.get("jaxlif", {}):
                task["rate_E"] = statistics.fmean(results["jaxlif"]["rates"]["E"])
            t0 = time.perf_counter()
            res = _run(task, brian2_py if task["system"] == "brian2" else sys.executable, args.timeout)
            results[task["system"]] = res
            brief = res.get("error") or f"steady {res.get('steady_s', float('nan')):.4g} s"
            print(f"[bench_network] {task['system']}: {brief} ({time.perf_counter() - t0:.1f} s)", flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    for line in (Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []):
        if line.startswith("model name"):
            machine = f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores, Python {platform.python_version()}"
            break
    load_end = os.getloadavg()
    command = "python benchmarks/bench_network.py" + ("" if argv is None and len(sys.argv) < 2 else
                                                       " " + " ".join(sys.argv[1:] if argv is None else argv))
    report = dict(name=NAME, started=started.isoformat(timespec="seconds"), machine=machine, config=cfg,
                  command=command, load=[tuple(round(x, 2) for x in load_start), tuple(round(x, 2) for x in load_end)],
                  results=results)
    json_path = (ROOT / "results" / "bench_network.json") if out == ROOT else out / "bench_network.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1))
    write_section(out / "BENCHMARKS.md", render(report))
    print(f"[bench_network] wrote {out / 'BENCHMARKS.md'} (section {NAME}) and {json_path}", flush=True)
    return report


if __name__ == "__main__":
    main()
