"""Benchmark WL-A..WL-D (docs/workloads.md): jaxlif against a NumPy step-by-step reference and Brian2.

One command runs every workload for every system and rewrites its section of ``BENCHMARKS.md`` (between
``<!-- begin:bench -->`` and ``<!-- end:bench -->``; the rest of the file is kept) and ``bench.json``::

    python benchmarks/bench.py                    # full run (about 10 minutes on 2 cores)
    python benchmarks/bench.py --quick --out /tmp/b   # seconds: tiny sizes, no Brian2

The cost curves (time and memory against batch size, duration, synapses and rate, B up to 10^6) are
``benchmarks/bench_scale.py``; the GPU check is ``benchmarks/gpu_check.py``.

Systems:

- ``jaxlif``: :func:`jaxlif.batch.simulate_cond_lif_batch` (WL-A), :func:`jaxlif.batch.simulate_stp_lif_batch`
  (WL-B), :func:`jaxlif.ratio_curve` (WL-C, STD and STF at rates 2..40 step 2), ``jaxlif.fitting.fit_stp``
  (WL-D, when that module exists); float32, one CPU device, and, for the largest batches, both cores as
  two XLA host devices (``--xla_force_host_platform_device_count=2``, the batch sharded over them).
- ``numpy``: the tutorial's algorithm step by step (``tests/reference.py``: ``run_lif_cond``,
  ``run_lif_cond_stp``, ``ratio_point``), one neuron after the other, float64.  Only a few neurons are
  simulated; times for larger batches are extrapolated linearly and labelled so.
- ``brian2``: Brian2 ``cpp_standalone`` (1 thread, float64), run in the interpreter given by
  ``--brian2-python`` (default ``.venv-bench/bin/python``: Brian2 2.9 needs numpy < 2.4, so it lives in
  its own virtual environment, see docs/performance.md).  The model is the tutorial's discrete scheme written
  in Brian2 code blocks in the tutorial's order (threshold/refractory on v[it], conductance decay and
  input, membrane update with the new conductances); WL-A input is ``PoissonInput`` (one binomial
  count per step, as jaxlif's pooled input), WL-B has one ``PoissonGroup`` neuron and one synapse with
  its own u, R per train, updated at its spikes with the Euler closed form.
- BrainPy is not run (an earlier version of this file quoted BrainPy figures measured elsewhere; they
  were dropped because this benchmark did not run them).

Every cell (system, workload, batch) runs in a fresh process: the first call (code generation or
compilation included), then ``--repeats`` steady calls with new random inputs (median reported),
``block_until_ready`` for JAX; peak memory is the process's ``ru_maxrss`` (the Brian2 binary's own,
measured in a separate run).  The mean output rate of every system is compared with jaxlif's within
4 standard errors: same work, or the row says why not.
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
NAME = "bench"

DEFAULTS = dict(T=1000.0, dt=0.1, A=[1, 100, 1000, 10000], B=[1, 10, 100, 1000, 10000],
                brian2_A=[1000, 10000], brian2_B=[100, 1000], numpy_A=40, numpy_B=10, repeats=5,
                devices=[1, 2], seed=0, workloads=["A", "B", "C", "D"])
QUICK = dict(T=100.0, A=[1, 16], B=[1, 8], brian2_A=[], brian2_B=[], numpy_A=2, numpy_B=1, repeats=2,
             devices=[1])

WL_A = dict(rate_E=10.0, rate_I=10.0, n_E=80, n_I=20)       # explorer 1.2 exercise synapses
WL_B = dict(rate_E=15.0, rate_I=15.0, n_E=80, n_I=20)       # bonus STP-LIF, tau_ratio 0.5
RATES_C = [float(r) for r in range(2, 41, 2)]


# ----------------------------------------------------------------------------------------------
# Workers: one cell each, run in a fresh process; print one line "BENCH_RESULT {json}"
# ----------------------------------------------------------------------------------------------


def _peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0     # Linux: kB


def _rate_stats(counts, T: float) -> tuple[float, float]:
    """Mean rate [Hz] over neurons and its standard error (at least the Poisson one, for tiny samples)."""
    n = len(counts)
    mean = sum(counts) / n
    var = sum((c - mean) ** 2 for c in counts) / max(n - 1, 1)
    return 1000.0 * mean / T, 1000.0 * math.sqrt(max(var, mean, 1.0) / n) / T


def _worker_jaxlif(task: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    import jax
    import numpy as np
    import jaxlif
    from jaxlif import batch

    rss_import = _peak_rss_mb()
    wl, B, T, dt = task["workload"], task["batch"], task["T"], task["dt"]
    key = jax.random.key(task["seed"])
    rates = dict(rate_E=0.0, rate_I=0.0) if task.get("zero_rates") else {}
    if wl == "A":
        def call(k):
            return batch.simulate_cond_lif_batch(k, B, T=T, dt=dt, **{**WL_A, **rates}).spike_count
    elif wl == "B":
        def call(k):
            return batch.simulate_stp_lif_batch(k, B, jaxlif.stp_lif_params(0.5), T=T, dt=dt,
                                                **{**WL_B, **rates}).spike_count
    elif wl == "C":
        def call(k):
            return (jaxlif.ratio_curve(jaxlif.STD, RATES_C, dt=dt), jaxlif.ratio_curve(jaxlif.STF, RATES_C, dt=dt))
    else:
        return _worker_jaxlif_fit(task)

    t0 = time.perf_counter()
    out = jax.block_until_ready(call(key))
    first = time.perf_counter() - t0
    steady, cpu, counts = [], [], []
    keys = [jax.block_until_ready(jax.random.fold_in(key, i + 1)) for i in range(task["repeats"])]
    for k in keys:
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(call(k))
        steady.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if wl in "AB":
            counts.extend(np.asarray(out).tolist())
    res = dict(first_s=first, steady_s=statistics.median(steady), steady_all=steady, cpu_s=statistics.median(cpu),
               peak_rss_mb=_peak_rss_mb(), rss_after_import_mb=rss_import, devices=len(jax.devices()),
               dtype=str(jax.numpy.result_type(float)), n_simulated=B)
    if wl in "AB":
        res["rate_hz"], res["rate_se_hz"] = _rate_stats(counts, T)
    else:
        res["ratio_curves"] = {"STD": (np.asarray(out[0][1]) / np.asarray(out[0][0])).tolist(),
                               "STF": (np.asarray(out[1][1]) / np.asarray(out[1][0])).tolist()}
    return res


WL_D_START = (0.3, 300.0, 300.0)     # the fixed distant start of WL-D: (U0, tau_d [ms], tau_f [ms])


def _worker_jaxlif_fit(task: dict) -> dict:
    """WL-D: recover STD and STF from their WL-C curves with ``jaxlif.fitting.fit_stp`` from one fixed
    distant start; first call (compilation included) and a steady second call."""
    import importlib
    try:
        fit_stp = importlib.import_module("jaxlif.fitting").fit_stp
    except (ImportError, AttributeError) as err:
        return dict(pending=f"jaxlif.fitting.fit_stp not available ({err.__class__.__name__}: {err})")
    import jax
    import numpy as np
    import jaxlif
    res = {}
    for name, target in (("STD", jaxlif.STD), ("STF", jaxlif.STF)):
        g1, g10 = jaxlif.ratio_curve(target, RATES_C, dt=task["dt"])
        curve = np.asarray(g10 / g1)
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            fit = jax.block_until_ready(fit_stp(RATES_C, curve, init=WL_D_START, dt=task["dt"]))
            times.append(time.perf_counter() - t0)
        f1, f10 = jaxlif.ratio_curve(fit.params, RATES_C, dt=task["dt"])
        res[name] = dict(first_s=times[0], steady_s=times[1], converged=bool(np.all(fit.converged)),
                         n_steps=int(np.max(fit.n_steps)), curve_error=float(np.max(np.abs(f10 / f1 - curve))),
                         params={k: float(np.squeeze(v)) for k, v in fit.params._asdict().items()},
                         target={k: float(v) for k, v in target._asdict().items()})
    res["peak_rss_mb"] = _peak_rss_mb()
    return res


def _load_reference():
    import importlib.util
    spec = importlib.util.spec_from_file_location("jaxlif_bench_reference", ROOT / "tests" / "reference.py")
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    return ref


def _worker_numpy(task: dict) -> dict:
    ref = _load_reference()
    wl, T, dt, seed = task["workload"], task["T"], task["dt"], task["seed"]
    if wl == "C":
        t0 = time.perf_counter()
        curves = {name: [g10 / g1 for g1, g10 in (ref.ratio_point(r, *p, dt=dt) for r in RATES_C)]
                  for name, p in (("STD", (0.5, 100.0, 50.0)), ("STF", (0.2, 100.0, 750.0)))}
        elapsed = time.perf_counter() - t0
        return dict(first_s=elapsed, steady_s=elapsed, peak_rss_mb=_peak_rss_mb(), ratio_curves=curves,
                    n_simulated=40)
    if wl == "A":
        pars = ref.default_pars(T=T, dt=dt, gE_bar=2.4, gI_bar=2.4, VE=0.0, VI=-80.0, tau_syn_E=2.0, tau_syn_I=5.0)
        rates, run = (WL_A["rate_E"], WL_A["rate_I"]), ref.run_lif_cond
    else:
        pars = ref.default_pars(T=T, dt=dt, gE_bar=4.8, gI_bar=6.4, VE=0.0, VI=-80.0, tau_syn_E=5.0,
                                tau_syn_I=10.0, U0_E=0.45, U0_I=0.45, tau_d_E=250.0, tau_f_E=150.0,
                                tau_d_I=250.0, tau_f_I=150.0)
        rates, run = (WL_B["rate_E"], WL_B["rate_I"]), ref.run_lif_cond_stp
    times, counts = [], []
    c0 = time.process_time()
    for i in range(task["n_simulate"]):
        t0 = time.perf_counter()
        pre_ex = ref.poisson_generator(pars, rates[0], 80, myseed=seed * 100003 + 2 * i + 1)
        pre_in = ref.poisson_generator(pars, rates[1], 20, myseed=seed * 100003 + 2 * i + 2)
        out = run(pars, 0.0, pre_ex, pre_in)
        times.append(time.perf_counter() - t0)
        counts.append(len(out[1]))
    per_neuron = statistics.median(times)
    rate, se = _rate_stats(counts, T)
    return dict(per_neuron_s=per_neuron, cpu_per_neuron_s=(time.process_time() - c0) / task["n_simulate"],
                first_s=times[0], steady_s=sum(times), n_simulated=task["n_simulate"],
                rate_hz=rate, rate_se_hz=se, peak_rss_mb=_peak_rss_mb())


# The tutorial neuron (threshold/refractory first, conductance decay, then the membrane update)
_BRIAN2_NEURON = """
G = NeuronGroup(B, 'v : 1\\ngE : 1\\ngI : 1\\ntr : 1\\nnspk : 1', namespace=ns)
G.v = V_init
G.run_regularly('''ref = tr > 0
fire = (1 - int(ref)) * int(v >= V_th)
v = V_reset * (int(ref) + fire) + v * (1 - int(ref) - fire)
tr = (tr - 1) * int(ref) + tref_steps * fire
nspk += fire''', when='start', name='threshold_step')
G.run_regularly('gE = gE - dtms/tau_E*gE\\ngI = gI - dtms/tau_I*gI', when='synapses', order=-1, name='decay')
"""

_BRIAN2_WLA = _BRIAN2_NEURON + """
PE = PoissonInput(G, 'gE', n_E, rate_E*Hz, weight='gE_bar', when='synapses', order=0)
PI = PoissonInput(G, 'gI', n_I, rate_I*Hz, weight='gI_bar', when='synapses', order=0)
G.run_regularly('v = v + dtms/tau_m*(-(v - E_L) - gE/g_L*(v - V_E) - gI/g_L*(v - V_I))', when='end', name='membrane')
"""

_BRIAN2_WLB = _BRIAN2_NEURON + """
syn_model = 'u : 1\\nR : 1\\ntl : second'
# Euler closed form of the k-1 silent steps since the last spike, then one spiking step
syn_pre = '''k = floor((t - tl) / dt + 0.5)
u_b = u * (1 - dtms/tau_f)**(k - 1)
R_b = 1 - (1 - R) * (1 - dtms/tau_d)**(k - 1)
u = u_b - dtms/tau_f*u_b + U0*(1 - u_b)
R = R_b + dtms/tau_d*(1 - R_b) - u*R_b
{g}_post += {gbar}*R_b*u
tl = t'''
PE = PoissonGroup(B * n_E, rate_E*Hz)
PI = PoissonGroup(B * n_I, rate_I*Hz)
SE = Synapses(PE, G, syn_model, on_pre=syn_pre.format(g='gE', gbar='gE_bar'), namespace=ns)
SI = Synapses(PI, G, syn_model, on_pre=syn_pre.format(g='gI', gbar='gI_bar'), namespace=ns)
SE.connect(i=np.arange(B * n_E), j=np.arange(B * n_E) // n_E)
SI.connect(i=np.arange(B * n_I), j=np.arange(B * n_I) // n_I)
for S in (SE, SI):
    S.u = 0
    S.R = 1
    S.tl = 0*ms
G.run_regularly('v = v + dtms/tau_m*(-(v - E_L) - gE/g_L*(v - V_E) - gI/g_L*(v - V_I))', when='end', name='membrane')
"""


def _worker_brian2(task: dict) -> dict:
    """Brian2 cpp_standalone (1 thread): build + first run, then steady re-runs of the binary."""
    import numpy as np
    import brian2
    from brian2 import (BrianObject, Hz, Network, NeuronGroup, PoissonGroup, PoissonInput, Synapses, defaultclock,
                        device, ms, prefs)
    wl, B, T, dt = task["workload"], task["batch"], task["T"], task["dt"]
    directory = tempfile.mkdtemp(prefix="jaxlif_bench_brian2_")
    t0 = time.perf_counter()
    brian2.set_device("cpp_standalone", directory=directory, build_on_run=True)
    prefs.devices.cpp_standalone.openmp_threads = 0
    defaultclock.dt = dt * ms
    ns = dict(V_th=-55.0, V_reset=-75.0, tau_m=10.0, g_L=10.0, E_L=-75.0, V_init=-65.0, V_E=0.0, V_I=-80.0,
              dtms=dt, tref_steps=2.0 / dt, n_E=task.get("n_E", 80), n_I=task.get("n_I", 20))
    rate = task.get("rate")          # bench_scale.py's sweeps; default: the workload's rates
    if wl == "A":
        ns.update(tau_E=2.0, tau_I=5.0, gE_bar=2.4, gI_bar=2.4, rate_E=rate or WL_A["rate_E"],
                  rate_I=rate or WL_A["rate_I"])
        code = _BRIAN2_WLA
    else:
        ns.update(tau_E=5.0, tau_I=10.0, gE_bar=4.8, gI_bar=6.4, U0=0.45, tau_d=250.0, tau_f=150.0,
                  rate_E=rate or WL_B["rate_E"], rate_I=rate or WL_B["rate_I"])
        code = _BRIAN2_WLB
    scope = dict(np=np, B=B, ns=ns, Hz=Hz, ms=ms, NeuronGroup=NeuronGroup, PoissonGroup=PoissonGroup,
                 PoissonInput=PoissonInput, Synapses=Synapses, **ns)
    exec(code, scope)
    G = scope["G"]
    net = Network(*[obj for obj in scope.values() if isinstance(obj, BrianObject)])
    net.run(T * ms, namespace=ns)
    counts = list(np.asarray(G.nspk[:]))
    first = time.perf_counter() - t0
    steady, cpu = [], []
    for i in range(task["repeats"]):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        device.run(directory=directory, with_output=False, run_args={})   # new seed each run
        steady.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
        counts.extend(np.asarray(G.nspk[:]).tolist())
    # the binary's own peak memory: run it once more from a process that never ran the compiler
    probe = ("import resource, subprocess, sys; subprocess.run(['./main'], cwd=sys.argv[1], check=True, "
             "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    rss_kb = float(subprocess.run([sys.executable, "-c", probe, directory], capture_output=True, text=True,
                                  check=True).stdout.split()[-1])
    rate, se = _rate_stats(counts, T)
    __import__("shutil").rmtree(directory, ignore_errors=True)
    return dict(first_s=first, steady_s=statistics.median(steady), steady_all=steady, cpu_s=statistics.median(cpu),
                cpu_all=cpu, peak_rss_mb=rss_kb / 1024.0,
                rate_hz=rate, rate_se_hz=se, n_simulated=B, version=brian2.__version__)


_WORKERS = {"jaxlif": _worker_jaxlif, "numpy": _worker_numpy, "brian2": _worker_brian2}


def _worker_main(task_json: str) -> None:
    task = json.loads(task_json)
    if task.get("pin") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {task["pin"]})     # one core (children, e.g. Brian2's binary, inherit it)
    try:
        res = _WORKERS[task["system"]](task)
    except Exception as err:  # report, do not crash the whole benchmark
        res = dict(error=f"{err.__class__.__name__}: {err}")
    print("BENCH_RESULT " + json.dumps(res), flush=True)


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def _run_cell(task: dict, python: str, isolate: bool, timeout: float) -> dict:
    if not isolate and task["system"] != "brian2":
        if task.get("devices", 1) != 1:
            return dict(error="multi-device cells need --isolate")
        try:
            return _WORKERS[task["system"]](task)
        except Exception as err:  # report, do not crash the whole benchmark
            return dict(error=f"{err.__class__.__name__}: {err}")
    env = dict(os.environ)
    if task["system"] == "jaxlif":
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={task.get('devices', 1)}").strip()
        env["JAX_PLATFORMS"] = env.get("JAX_PLATFORMS", "cpu")
    try:
        proc = subprocess.run([python, str(Path(__file__).resolve()), "--worker", json.dumps(task)],
                              capture_output=True, text=True, env=env, timeout=timeout, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout:.0f} s")
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    return dict(error=f"worker failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-800:]}")


def _proc_lines(name: str) -> list[str]:
    """Lines of ``/proc/<name>``; an empty list where /proc does not exist (not Linux): callers fall back."""
    path = Path("/proc") / name
    return path.read_text().splitlines() if path.exists() else []


def _idlest_cpu(interval: float = 0.5) -> int | None:
    """The allowed CPU with the most idle time over ``interval`` seconds (/proc/stat), for pinning a cell."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))

    def idle():
        out = {}
        for line in _proc_lines("stat"):
            name, *vals = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                out[int(name[3:])] = int(vals[3]) + int(vals[4])      # idle + iowait
        return out

    a = idle()
    time.sleep(interval)
    b = idle()
    return max(allowed, key=lambda c: b.get(c, 0) - a.get(c, 0))


def _brian2_python(arg: str | None) -> str | None:
    candidates = [arg] if arg else [str(ROOT / ".venv-bench" / "bin" / "python")]
    for py in candidates:
        if py and Path(py).exists():
            ok = subprocess.run([py, "-c", "import brian2"], capture_output=True).returncode == 0
            if ok:
                return py
    return None


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    for line in _proc_lines("cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError):
        mem_gib = float("nan")
    return dict(cpu=cpu, cores=os.cpu_count(), memory_gib=round(mem_gib, 1), system=platform.platform(),
                python=platform.python_version())


def _versions(brian2_py: str | None) -> dict:
    import jax
    import numpy as np
    v = dict(jax=jax.__version__, numpy=np.__version__)
    if brian2_py:
        out = subprocess.run([brian2_py, "-c", "import brian2, numpy; print(brian2.__version__, numpy.__version__)"],
                             capture_output=True, text=True)
        if out.returncode == 0:
            v["brian2"], v["brian2_numpy"] = out.stdout.split()
    return v


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    p.add_argument("--quick", action="store_true", help="tiny sizes, no Brian2, in-process (for tests)")
    p.add_argument("--out", type=Path, default=None, help="folder for BENCHMARKS.md and bench.json "
                   "(default: the repository root; --quick: required)")
    p.add_argument("--T", type=float, help="simulated time per run [ms] (default 1000)")
    p.add_argument("--dt", type=float, help="time step [ms] (default 0.1)")
    p.add_argument("--A", type=ints, help="WL-A batch sizes, e.g. 1,100,1000,10000")
    p.add_argument("--B", type=ints, help="WL-B batch sizes, e.g. 1,10,100,1000,10000")
    p.add_argument("--brian2-A", dest="brian2_A", type=ints, help="WL-A batch sizes run in Brian2")
    p.add_argument("--brian2-B", dest="brian2_B", type=ints, help="WL-B batch sizes run in Brian2")
    p.add_argument("--numpy-A", dest="numpy_A", type=int, help="neurons the NumPy reference simulates (WL-A)")
    p.add_argument("--numpy-B", dest="numpy_B", type=int, help="neurons the NumPy reference simulates (WL-B)")
    p.add_argument("--repeats", type=int, help="steady-state repeats per cell (median reported)")
    p.add_argument("--devices", type=ints, help="jaxlif host-device counts for the largest batches, e.g. 1,2")
    p.add_argument("--seed", type=int, help="integer seed")
    p.add_argument("--workloads", type=lambda t: [w.strip().upper() for w in t.split(",") if w.strip()],
                   help="workloads to run, e.g. A,B,C,D (default all)")
    p.add_argument("--brian2-python", dest="brian2_python", default=None,
                   help="interpreter with brian2 installed (default .venv-bench/bin/python)")
    p.add_argument("--no-brian2", dest="no_brian2", action="store_true", help="skip Brian2")
    p.add_argument("--isolate", dest="isolate", action="store_true", default=None,
                   help="one fresh process per cell (default, except with --quick)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per cell")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--render", type=Path, default=None,
                   help="only re-write BENCHMARKS.md (into --out) from a saved bench.json")
    return p


def _config(args) -> dict:
    cfg = dict(DEFAULTS)
    if args.quick:
        cfg.update(QUICK)
    for k in DEFAULTS:
        if getattr(args, k, None) is not None:
            cfg[k] = getattr(args, k)
    cfg["isolate"] = (not args.quick) if args.isolate is None else args.isolate
    return cfg


def _tasks(cfg: dict, brian2_py: str | None) -> list[dict]:
    base = dict(T=cfg["T"], dt=cfg["dt"], repeats=cfg["repeats"], seed=cfg["seed"])
    tasks = []
    for wl in [w for w in "AB" if w in cfg["workloads"]]:
        sizes = cfg[wl]
        for B in sizes:
            tasks.append(dict(base, system="jaxlif", workload=wl, batch=B, devices=1))
        for d in cfg["devices"]:
            if d > 1 and sizes:
                tasks.append(dict(base, system="jaxlif", workload=wl, batch=max(sizes), devices=d))
        if sizes:
            tasks.append(dict(base, system="numpy", workload=wl, batch=cfg["numpy_" + wl],
                              n_simulate=cfg["numpy_" + wl], repeats=1))
            tasks.append(dict(base, system="jaxlif", workload=wl, batch=max(sizes), devices=1, zero_rates=True))
        if brian2_py:
            for B in cfg["brian2_" + wl]:
                tasks.append(dict(base, system="brian2", workload=wl, batch=B, repeats=min(cfg["repeats"], 3)))
    if "C" in cfg["workloads"]:
        tasks.append(dict(base, system="jaxlif", workload="C", batch=40, devices=1, repeats=max(cfg["repeats"], 20)))
        tasks.append(dict(base, system="numpy", workload="C", batch=40, repeats=1))
    if "D" in cfg["workloads"]:
        tasks.append(dict(base, system="jaxlif", workload="D", batch=2, devices=1))
    return tasks


def main(argv=None) -> dict:
    """Run the benchmark; return the results (also written to ``<out>/bench.json`` and ``BENCHMARKS.md``)."""
    args = make_parser().parse_args(argv)
    if args.worker is not None:
        _worker_main(args.worker)
        return {}
    if args.render is not None:
        report = json.loads(Path(args.render).read_text())
        out = Path(args.out) if args.out is not None else ROOT
        replace_section(out / "BENCHMARKS.md", NAME, render(report))
        return report
    cfg = _config(args)
    if args.quick and args.out is None:
        raise SystemExit("--quick needs --out DIR (the repository's BENCHMARKS.md is for full runs)")
    out = Path(args.out) if args.out is not None else ROOT
    out.mkdir(parents=True, exist_ok=True)
    skip_brian2 = args.no_brian2 or (args.quick and not args.brian2_python)
    brian2_py = None if skip_brian2 else _brian2_python(args.brian2_python)
    print(f"[bench] config: {json.dumps({k: v for k, v in cfg.items()})}", flush=True)
    print(f"[bench] brian2: {brian2_py or 'not run'}", flush=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg()
    results = []
    for task in _tasks(cfg, brian2_py):
        if cfg["isolate"] and task.get("devices", 1) == 1:
            task["pin"] = _idlest_cpu()
        t0 = time.perf_counter()
        python = brian2_py if task["system"] == "brian2" else sys.executable
        res = _run_cell(task, python, cfg["isolate"], args.timeout)
        results.append(dict(task=task, result=res))
        brief = res.get("error") or res.get("pending") or f"steady {res.get('steady_s', float('nan')):.4g} s"
        print(f"[bench] {task['system']:7s} WL-{task['workload']} B={task['batch']:<6d} "
              f"dev={task.get('devices', '-')}: {brief} ({time.perf_counter() - t0:.1f} s)", flush=True)
    report = dict(name=NAME, started=started.isoformat(timespec="seconds"), machine=_machine(),
                  versions=_versions(brian2_py), config=cfg, command=_command(argv),
                  load_average=dict(start=load_start, end=os.getloadavg()), results=results)
    json_path = (ROOT / "results" / "bench.json") if out == ROOT else out / "bench.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1))
    replace_section(out / "BENCHMARKS.md", NAME, render(report))
    print(f"[bench] wrote the {NAME} section of {out / 'BENCHMARKS.md'} and {json_path}", flush=True)
    return report


def replace_section(path: Path, name: str, text: str) -> None:
    """Rewrite the part of ``path`` between ``<!-- begin:NAME -->`` and ``<!-- end:NAME -->`` with ``text``
    (appended with its markers if absent; the file is created if missing); the rest is kept."""
    path = Path(path)
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):].lstrip("\n")
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)


def _command(argv) -> str:
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", "benchmarks/bench.py"] + [str(a) for a in args])


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _find(results, system, wl, batch=None, devices=1, zero_rates=None):
    for r in results:
        t = r["task"]
        if t["system"] == system and t["workload"] == wl and (batch is None or t["batch"] == batch) \
                and (system != "jaxlif" or t.get("devices", 1) == devices) and t.get("zero_rates") == zero_rates:
            return r["result"]
    return None


def _numpy_row(results, wl, B):
    """The NumPy reference at batch size B: its per-neuron time times B (extrapolated beyond the
    neurons actually simulated), its rate from those neurons."""
    res = _find(results, "numpy", wl)
    if not res or "error" in res:
        return res
    out = dict(res, first_s=res["per_neuron_s"] * B, steady_s=res["per_neuron_s"] * B,
               cpu_s=res.get("cpu_per_neuron_s", float("nan")) * B, extrapolated=B > res["n_simulated"])
    return out


def _fmt(x, digits=3):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 1e5 or (0 < abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _rate_check(res, ref) -> str:
    if not res or "rate_hz" not in res or not ref or "rate_hz" not in ref:
        return ""
    diff = res["rate_hz"] - ref["rate_hz"]
    se = math.hypot(res.get("rate_se_hz", 0.0), ref.get("rate_se_hz", 0.0))
    ok = abs(diff) <= 4 * se + 1e-9
    return f"{'agrees' if ok else 'DIFFERS'} ({diff:+.2f} Hz, {abs(diff) / se if se else 0:.1f} SE)"


def render(report: dict) -> str:
    cfg, results, m, v = report["config"], report["results"], report["machine"], report["versions"]
    T, dt = cfg["T"], cfg["dt"]
    steps = len(__import__("numpy").arange(0.0, T, dt))
    lines = [
        "## Throughput: jaxlif vs a NumPy step-by-step reference vs Brian2",
        "",
        f"Written by `benchmarks/bench.py` on {report['started']} (UTC).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['system']}, Python {m['python']}.",
        f"- Load average (1/5/15 min) at start {tuple(round(x, 2) for x in report['load_average']['start'])}, "
        f"at end {tuple(round(x, 2) for x in report['load_average']['end'])} (the machine is shared; read "
        f"single figures as +-25 %, ratios within one run are more stable).",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- Command: `{report['command']}`",
        f"- Workloads (docs/workloads.md): T = {T:g} ms, dt = {dt:g} ms ({steps} steps). WL-A: 80 E + 20 I static "
        f"trains at 10 Hz per neuron (exercise 1.2 synapses). WL-B: 80 E + 20 I plastic trains at 15 Hz per "
        f"neuron (bonus STP-LIF, tau_ratio 0.5). WL-C: STD and STF g10/g1 at 2..40 Hz step 2 (40 values). "
        f"WL-D: fit STD and STF back from their WL-C curves.",
        "- One core vs one core: every cell except the `dev=2` rows runs pinned to a single CPU core "
        "(`sched_setaffinity`; Brian2's binary inherits it), so XLA cannot borrow the second core. jaxlif runs "
        "float32; `dev=2` rows shard the batch over both cores as two XLA host devices (`jax.shard_map`). NumPy "
        "and Brian2 (1 thread) run float64.",
        "- GPU figures: pending (no GPU was lent to the session that wrote this benchmark).",
        "",
        "Columns: first call (code generation / compilation included, fresh process); compile ~ first - steady; "
        "steady = median wall time of repeated calls with new random inputs; CPU s = the process's (for Brian2: its "
        "binary's) CPU time per call, less sensitive to other load on the shared machine; peak RSS of the process "
        "(jaxlif: includes "
        "the JAX runtime, about the `after import` figure; Brian2: the standalone binary alone); mean output "
        "rate over all neurons and repeats, compared with jaxlif's at the same batch size (within 4 standard "
        "errors = same work); speed = neuron-seconds simulated per wall-second; jaxlif x = this system's "
        "steady time / jaxlif's (1 device) at the same batch size.",
        "",
    ]
    titles = (("A", "WL-A: conductance LIF, static Poisson input"), ("B", "WL-B: STP-LIF, per-synapse u, R, g"))
    for wl, title in titles:
        lines += [f"### {title}", "",
                  "| B | system | first call s | compile s | steady s | CPU s | peak RSS MB | rate Hz | rate check | "
                  "neuron-s/s | syn. updates/s | jaxlif x |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        sizes = sorted(set(cfg[wl]) | set(cfg["brian2_" + wl]))
        for B in sizes:
            jx = _find(results, "jaxlif", wl, B)
            rows = [("jaxlif", jx)]
            for d in cfg["devices"]:
                if d > 1:
                    r = _find(results, "jaxlif", wl, B, devices=d)
                    if r:
                        rows.append((f"jaxlif dev={d}", r))
            npr = _numpy_row(results, wl, B)
            rows += [("NumPy tutorial" + (" (extrapolated)" if (npr or {}).get("extrapolated") else ""), npr),
                     ("Brian2 standalone", _find(results, "brian2", wl, B))]
            for name, res in rows:
                if not res:
                    continue
                if "error" in res:
                    lines.append(f"| {B} | {name} | error: {res['error'][:150]} ||||||||||")
                    continue
                steady = res["steady_s"]
                neuron_s = B * T / 1000.0 / steady
                syn = B * 100 * steps / steady if wl == "B" else None
                compile_s = res["first_s"] - steady if name.startswith("jaxlif") or name.startswith("Brian2") else None
                ratio = steady / jx["steady_s"] if jx and "steady_s" in jx else None
                check = "-" if name == "jaxlif" else _rate_check(res, jx)
                if name.startswith("jaxlif dev=") and res.get("cpu_s") and res["cpu_s"] < 1.3 * steady:
                    check += " [CPU time ~ wall time: the second core was busy with other work during this cell]"
                if name.startswith("NumPy"):
                    check += f" [{res['n_simulated']} neurons simulated]"
                rss = _fmt(res.get("peak_rss_mb"))
                if res.get("rss_after_import_mb"):
                    rss += f" (import {_fmt(res['rss_after_import_mb'])})"
                lines.append(f"| {B} | {name} | {_fmt(res['first_s'])} | {_fmt(compile_s)} | {_fmt(steady)} | "
                             f"{_fmt(res.get('cpu_s'))} | {rss} | {_fmt(res.get('rate_hz'))} | {check} | "
                             f"{_fmt(neuron_s)} | {_fmt(syn)} | {_fmt(ratio)} |")
        lines.append("")
    lines += ["### Where jaxlif's time goes (profile at the largest batch)", "",
              "The same call with input rates set to 0 does all the per-step neuron work (scan, chunking, "
              "windows) and no input events; the difference is the cost of drawing and placing the input "
              "events (pooled binomial steps for WL-A, per-synapse spikes with their STP updates for WL-B).", "",
              "| workload | B | steady s | neuron scan & overhead s (rates 0) | input events s | events per s |",
              "|---|---|---|---|---|---|"]
    for wl, per_neuron_events in (("A", None), ("B", 100 * 15.0)):
        if not cfg[wl]:
            continue
        B = max(cfg[wl])
        full, zero = _find(results, "jaxlif", wl, B), _find(results, "jaxlif", wl, B, zero_rates=True)
        if full and zero and "steady_s" in full and "steady_s" in zero:
            ev = full["steady_s"] - zero["steady_s"]
            if per_neuron_events is None:   # pooled WL-A: steps with input, E and I
                q = lambda n, r: 1 - (1 - r * dt / 1000) ** n  # noqa: E731
                per_neuron_events = (q(80, WL_A["rate_E"]) + q(20, WL_A["rate_I"])) * 1000 / dt
            n_events = B * per_neuron_events * T / 1000
            lines.append(f"| WL-{wl} | {B} | {_fmt(full['steady_s'])} | {_fmt(zero['steady_s'])} | {_fmt(ev)} | "
                         f"{_fmt(n_events / ev) if ev > 0 else '-'} |")
    lines.append("")
    # WL-C and WL-D
    jc, nc = _find(results, "jaxlif", "C"), _find(results, "numpy", "C")
    lines += ["### WL-C: ratio curves (STD and STF, 40 values)", "",
              "| system | first call s | steady s | agreement with NumPy | jaxlif x |", "|---|---|---|---|---|"]
    if jc and "steady_s" in jc:
        agree = "-"
        if nc and "ratio_curves" in nc:
            err = max(abs(a - b) for k in ("STD", "STF") for a, b in zip(jc["ratio_curves"][k], nc["ratio_curves"][k]))
            agree = f"max abs diff {err:.1e} (float32)"
        lines.append(f"| jaxlif `ratio_curve` x2 | {_fmt(jc['first_s'])} | {_fmt(jc['steady_s'])} | {agree} | 1 |")
        if nc and "steady_s" in nc:
            lines.append(f"| NumPy tutorial loop | {_fmt(nc['first_s'])} | {_fmt(nc['steady_s'])} | - | "
                         f"{_fmt(nc['steady_s'] / jc['steady_s'])} |")
    lines.append("")
    jd = _find(results, "jaxlif", "D")
    lines += ["### WL-D: fitting STD and STF from their curves", ""]
    if not jd or "pending" in jd or "error" in jd:
        why = (jd or {}).get("pending") or (jd or {}).get("error") or "not run in this invocation"
        lines.append(f"Pending: {why}.")
    else:
        lines += [f"`jaxlif.fitting.fit_stp(rates, g10/g1, init={WL_D_START})` (tutorial Euler mode, 20 rates), "
                  "from one fixed distant start; the target is met when the fitted curve is within 1e-4 of the "
                  "target everywhere.", "",
                  "| target | true (U0, tau_d, tau_f) | first call s | steady s | converged | steps | "
                  "max curve error | fitted (U0, tau_d, tau_f) |", "|---|---|---|---|---|---|---|---|"]
        for name in ("STD", "STF"):
            e = jd.get(name, {})
            tup = lambda d: "(" + ", ".join(f"{x:.4g}" for x in d.values()) + ")" if d else "-"  # noqa: E731
            lines.append(f"| {name} | {tup(e.get('target'))} | {_fmt(e.get('first_s'))} | {_fmt(e.get('steady_s'))} | "
                         f"{e.get('converged')} | {e.get('n_steps')} | {_fmt(e.get('curve_error'))} | "
                         f"{tup(e.get('params'))} |")
    lines.append("")
    lines += _targets(cfg, results)
    return "\n".join(lines) + "\n"


def _targets(cfg, results) -> list[str]:
    """The issue's targets, met or missed, measured in this run."""
    out = ["### Targets, from this run", "", "| target | measured | verdict |", "|---|---|---|"]

    def row(name, measured, ok, note=""):
        out.append(f"| {name} | {measured} | {'met' if ok else 'MISSED'}{(' - ' + note) if note else ''} |")

    def steady(system, wl, B, devices=1):
        r = _find(results, system, wl, B, devices)
        return r.get("steady_s") if r else None

    jb1000, bb1000 = steady("jaxlif", "B", 1000), steady("brian2", "B", 1000)
    if jb1000:
        if bb1000:
            x = bb1000 / jb1000
            row("WL-B B=1000 >= 10x faster than Brian2 standalone", f"{x:.1f}x ({bb1000:.3g} s vs {jb1000:.3g} s)",
                x >= 10, "" if x >= 10 else f"short by {10 / x:.2f}x")
        first = (_find(results, "jaxlif", "B", 1000) or {}).get("first_s")
        if first:
            row("WL-B B=1000 first call incl. compilation < 3 s", f"{first:.2f} s", first < 3.0)
    ja, ba = steady("jaxlif", "A", 10000), steady("brian2", "A", 10000)
    ja2 = steady("jaxlif", "A", 10000, devices=2)
    if ja and ba:
        x = ba / ja
        note = "" if x >= 3 else f"short by {3 / x:.2f}x"
        if ja2:
            note += f"{'; ' if note else ''}both cores (dev=2): {ba / ja2:.1f}x"
        row("WL-A B=10000 >= 3x faster than Brian2 standalone", f"{x:.2f}x ({ba:.3g} s vs {ja:.3g} s, 1 core each)",
            x >= 3, note)
    jc = _find(results, "jaxlif", "C")
    if jc and "steady_s" in jc:
        row("WL-C (40 ratio values) < 5 ms steady", f"{jc['steady_s'] * 1e3:.2f} ms", jc["steady_s"] < 5e-3)
    jd = _find(results, "jaxlif", "D")
    if jd and "STD" in jd:
        worst = max(jd[k]["curve_error"] for k in ("STD", "STF"))
        row("WL-D: STD and STF recovered to a curve error < 1e-4 (no time target)",
            f"max error {worst:.1e}; steady {jd['STD']['steady_s'] * 1e3:.1f} ms + "
            f"{jd['STF']['steady_s'] * 1e3:.1f} ms "
            f"(first call {jd['STD']['first_s']:.1f} s)", worst < 1e-4)
    jb = _find(results, "jaxlif", "B", 10000)
    if jb and "peak_rss_mb" in jb:
        row("WL-B B=10000 peak memory < 2 GiB", f"{jb['peak_rss_mb']:.0f} MB process RSS", jb["peak_rss_mb"] < 2048)
    if len(out) == 4:
        out.append("| (targets need the full sizes; not evaluated in this run) | - | - |")
    out.append("")
    return out


if __name__ == "__main__":
    main()
