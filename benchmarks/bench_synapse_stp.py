"""Benchmark: per-synapse plasticity (``stp_mode="synapse"``) before and after the event-driven update.

The network of ``benchmarks/bench_network.py`` (3200 E + 800 I conductance-LIF neurons, p = 0.1,
about 1.6 million synapses, delay 1.5 ms, 100 Poisson trains at 10 Hz x 1 nS per neuron, T = 1000 ms,
dt = 0.1 ms, float32, spike rasters only), with the E->E synapses (about 1 million) depressing with
one ``u, R`` per synapse (U0 0.5, tau_d 100 ms, tau_f 50 ms) instead of one per presynaptic neuron.

Variants, each in a fresh process pinned to one CPU core, interleaved round by round (so that a
change of machine load hits all of them alike):

- ``before``: the package at ``--before`` (a git revision; default the commit before the change),
  exported with ``git archive`` into a temporary directory: every synapse's ``u, R`` updated every step;
- ``after``: this checkout: ``u, R`` advanced only at presynaptic spikes (:mod:`jaxlif.network.synapse_stp`);
- ``after, stp_mode=pre``: this checkout with one ``u, R`` per presynaptic neuron (the benchmark
  network itself), for scale.

Each process: one first call (compilation included), then ``--repeats`` calls with new drive keys
(median wall time; per step = that / 9999 updates), its peak resident memory, and the spike counts of
the same keys (the variants must agree: the same network and drive).  Usage::

    python benchmarks/bench_synapse_stp.py                      # 3 rounds x 3 repeats (a few minutes)
    python benchmarks/bench_synapse_stp.py --quick              # 400 neurons, 100 ms
"""

from __future__ import annotations

import argparse
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
BEFORE = "9f4d448"


def _worker(task: dict) -> dict:
    import dataclasses

    import jax
    import jax.numpy as jnp
    from jaxlif import network as nw
    scale = 4000 * 0.1 / ((task["n_E"] + task["n_I"]) * 0.1)
    weights = {k: w * scale for k, w in {"E->E": 0.25, "E->I": 0.25, "I->E": 1.5, "I->I": 1.5}.items()}
    net = nw.ei_network(jax.random.key(0), n_E=task["n_E"], n_I=task["n_I"], p=0.1, weights=weights, delay=15,
                        drive_rate=10.0, drive_n=100, drive_weight=1.0)
    EE = dataclasses.replace(net.projections[0], stp_mode=task["stp_mode"])
    net = nw.Network(net.populations, (EE,) + net.projections[1:])
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

    def run(seed):
        res = nw.simulate_network(jax.random.key(seed), net, T=task["T"], dt=0.1, record=False)
        return {name: jnp.sum(s) for name, s in res.spikes.items()}

    t0 = time.perf_counter()
    jax.block_until_ready(run(10_000))
    first = time.perf_counter() - t0
    walls, counts = [], []
    for i in range(task["repeats"]):
        t0 = time.perf_counter()
        c = jax.block_until_ready(run(10_001 + i))
        walls.append(time.perf_counter() - t0)
        counts.append({k: int(v) for k, v in c.items()})
    state = nw.network_init(net)
    state_bytes = sum(a.nbytes for a in jax.tree.leaves(state.synapses[0]))
    import jaxlif
    return dict(package=jaxlif.__file__, first_s=first, steady_s=statistics.median(walls), walls=walls, counts=counts,
                n_synapses_EE=int((EE.targets < EE.n_post).sum()), state_EE_mb=state_bytes / 2**20,
                peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, rss_built_mb=rss_built)


def _spawn(root: str, task: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=root, JAX_PLATFORMS="cpu")
    code = ("import json, sys; sys.path.append(%r); from benchmarks.bench_synapse_stp import _worker; "
            "os = __import__('os'); os.sched_setaffinity(0, {%d}); "
            "print('BENCH_RESULT', json.dumps(_worker(json.loads(sys.argv[1]))))") % (str(ROOT), task["core"])
    out = subprocess.run([sys.executable, "-c", code, json.dumps(task)], env=env, capture_output=True, text=True,
                         check=True, cwd=root)
    line = [s for s in out.stdout.splitlines() if s.startswith("BENCH_RESULT ")][-1]
    return json.loads(line[len("BENCH_RESULT "):])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", default=BEFORE, help="git revision of the per-step version (default %(default)s)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    sizes = dict(n_E=320, n_I=80, T=100.0) if args.quick else dict(n_E=3200, n_I=800, T=1000.0)
    with tempfile.TemporaryDirectory(prefix="jaxlif_before_") as before_root:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "jaxlif"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", before_root], input=archive, check=True)
        variants = {"before (every synapse every step)": (before_root, "synapse"),
                    "after (event-driven)": (str(ROOT), "synapse"),
                    "after, stp_mode=pre": (str(ROOT), "pre")}
        results = {name: [] for name in variants}
        for r in range(args.rounds):
            for name, (root, mode) in variants.items():
                task = dict(sizes, stp_mode=mode, repeats=args.repeats, core=args.core)
                res = _spawn(root, task)
                results[name].append(res)
                print(f"round {r}: {name} ({res['package']}): first {res['first_s']:.2f} s, "
                      f"steady {res['steady_s']:.3f} s, "
                      f"peak RSS {res['peak_rss_mb']:.0f} MB, counts {res['counts'][0]}", flush=True)
    steps = int(round(sizes["T"] / 0.1)) - 1
    print(f"\n{sizes['n_E']} E + {sizes['n_I']} I, T = {sizes['T']} ms ({steps} updates), one core, "
          f"{args.rounds} rounds x {args.repeats} repeats (median of all)")
    print("| variant | first call [s] | steady run [s] | per step [ms] | peak RSS [MB] | E->E u, R state [MB] |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        steady = statistics.median(w for res in runs for w in res["walls"])
        first = statistics.median(res["first_s"] for res in runs)
        rss = max(res["peak_rss_mb"] for res in runs)
        print(f"| {name} | {first:.2f} | {steady:.3f} | {1e3 * steady / steps:.3f} | {rss:.0f} | "
              f"{runs[0]['state_EE_mb']:.1f} |")
    same = all(a["counts"] == b["counts"] for a, b in zip(results["before (every synapse every step)"],
                                                            results["after (event-driven)"]))
    print(f"spike counts before == after (same keys): {same}; E->E synapses: "
          f"{results['after (event-driven)'][0]['n_synapses_EE']}")
    if args.out:
        Path(args.out).write_text(json.dumps(dict(sizes=sizes, results=results), indent=1))


if __name__ == "__main__":
    main()
