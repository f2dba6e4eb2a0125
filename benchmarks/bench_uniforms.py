"""The per-step simulators' Poisson input: its uniforms (``jaxlif._threefry.uniform_at`` against ``jax.random``
itself) and its binomial count (a bisection of the tail against a comparison with every entry).

The per-step simulators and ``poisson_trains`` draw, at every step ``k``, ``jax.random.uniform(fold_in(key,
k), shape)``.  ``uniform_at`` computes the same bits with the threefry hash written as plain integer
operations; JAX runs each of the two hashes (the ``fold_in`` and the uniform's words) as a loop over the
rounds on CPU, a few small kernels per hash and step.  The conductance LIF's pooled input count
``#{k : 1 - U <= P(X > k)}`` is found by bisecting the non-increasing tail (``jaxlif.inputs._prefix_length``)
instead of comparing with all ``n_E`` entries.  This script times four calls in fresh processes, one core
each, alternating three versions (``jaxlif``; ``jax.random``, which puts ``jax.random`` back into
``jaxlif.inputs``; ``compare``, which counts by comparing with every entry), and checks that all computed the
same outputs::

    python benchmarks/bench_uniforms.py            # 3 rounds; prints a Markdown table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NAMES = ("simulate_cond_lif_poisson, 1 neuron, 1 s", "simulate_stp_lif_poisson, 1 neuron, 1 s",
         "poisson_trains, 100 trains x 1 s", "vmap(simulate_cond_lif_poisson), 1000 keys, 1 s")


def worker(version: str, repeats: int) -> dict:
    import jax
    import numpy as np

    import jaxlif
    import jaxlif.inputs
    if version == "jax":
        jaxlif.inputs.uniform_at = lambda key, step, shape, dtype: jax.random.uniform(
            jax.random.fold_in(key, step), shape, dtype)
    elif version == "compare":
        jaxlif.inputs._prefix_length = lambda v, n, entry: jax.numpy.sum(v <= entry(jax.numpy.arange(n)),
                                                                          dtype="int32")
    calls = (lambda key: jaxlif.simulate_cond_lif_poisson(key, T=1000.0),
             lambda key: jaxlif.simulate_stp_lif_poisson(key, T=1000.0),
             lambda key: jaxlif.poisson_trains(key, 10.0, 100, T=1000.0, dt=0.1),
             lambda key: jax.vmap(lambda k: jaxlif.simulate_cond_lif_poisson(k, T=1000.0))(
                 jax.random.split(key, 1000)))
    out = {}
    for name, fn in zip(NAMES, calls):
        call = jax.jit(fn)
        first = jax.block_until_ready(call(jax.random.key(1)))
        times = []
        for i in range(repeats):
            t = time.process_time()
            jax.block_until_ready(call(jax.random.key(2 + i)))
            times.append(time.process_time() - t)
        digest = hashlib.sha1(b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(first))).hexdigest()
        out[name] = dict(cpu_s=statistics.median(times), digest=digest)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="fresh processes per version, alternating")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per process (median)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        print("RESULT " + json.dumps(worker(args.worker, args.repeats)))
        return
    runs = {"jax": [], "compare": [], "jaxlif": []}
    env = dict(os.environ, JAXLIF_CACHE_DIR="off", PYTHONPATH=str(ROOT))
    for _ in range(args.rounds):
        for version in runs:
            proc = subprocess.run([sys.executable, __file__, "--worker", version, "--repeats", str(args.repeats)],
                                  capture_output=True, text=True, env=env, check=True)
            runs[version].append(json.loads(proc.stdout.split("RESULT ", 1)[1]))
    print(f"{args.rounds} rounds x {args.repeats} calls per version, CPU ms per call (median of the rounds' medians), "
          "one core, float32:\n")
    print("| call | jaxlif | jax.random uniforms | speed-up | count by comparison | speed-up | same outputs |\n"
          "|---|---|---|---|---|---|---|")
    for name in NAMES:
        a, c, b = (statistics.median(r[name]["cpu_s"] for r in runs[v]) for v in ("jax", "compare", "jaxlif"))
        same = len({r[name]["digest"] for v in runs.values() for r in v}) == 1
        print(f"| {name} | {1e3 * b:.1f} | {1e3 * a:.1f} | {a / b:.2f}x | {1e3 * c:.1f} | {c / b:.2f}x | "
              f"{'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
