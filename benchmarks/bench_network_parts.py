"""Where a step of the benchmark network's time goes: the whole network against the same neurons with
parts taken away, in one process pinned to one core, interleaved.

    python benchmarks/bench_network_parts.py               # rewrites the ``network-parts`` section of BENCHMARKS.md
    python benchmarks/bench_network_parts.py --repeats 1 --T 100 --out /tmp/parts   # seconds

Variants of ``bench_network.py``'s network (3200 E + 800 I, p = 0.1, delay 15 steps, depressing E->E with one
``u, R`` per presynaptic neuron, 100 Poisson trains x 10 Hz x 1 nS of drive per neuron; dt = 0.1 ms, float32,
``record=False``), each compiled once, then timed ``--repeats`` times round-robin (CPU time of this process,
median):

- ``network``: the network itself (min-delay windows of 14 steps, event delivery, plasticity);
- ``neurons + drive``: the same populations and drive, and instead of the projections a single synapse of
  weight 0, with the network's delay, from an added neuron that never fires (so that the simulator runs the
  same min-delay windows, with no event to deliver);
- ``neurons``: the same, without the drive, each neuron with a constant current (250 pA) that makes it fire
  regularly.

The differences give the parts: the drive (``neurons + drive`` - ``neurons``) and everything the projections
add (``network`` - ``neurons + drive``: delivery, the pending-input ring, the plasticity, the windows'
bookkeeping).  The rates differ between the variants (without recurrent inhibition the neurons fire at 50-70
Hz); the membrane update and the drive cost the same whatever the rate, while the delivery's cost grows
with it, so the subtraction is an estimate of the parts at the network's own rates.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "network-parts"


def variants(net, nw, np):
    """``{name: (network, inputs)}`` of the module docstring."""
    silent = nw.Population("silent", 1)                 # no drive, no input: never fires
    current = {p.name: nw.NetworkInput(I_inj=np.full(p.size, 250.0, np.float32)) for p in net.populations}
    # one synapse of weight 0 from a neuron that never fires, with the network's delay: the same windows,
    # no event to deliver
    token = (nw.sparse_projection("silent", "E", [0], [0], [0.0], n_pre=1, n_post=net.sizes["E"],
                                  delay=net.projections[0].max_delay),)
    no_drive = tuple(dataclasses.replace(p, drive=None) for p in net.populations)
    return {"network": (net, None),
            "neurons + drive": (nw.Network(net.populations + (silent,), token), None),
            "neurons": (nw.Network(no_drive + (silent,), token), current)}


def measure(T: float, repeats: int) -> dict:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import jax
    import numpy as np

    import bench_network as bn
    from jaxlif import network as nw

    cfg = dict(bn.DEFAULTS)
    net = bn._build(cfg)
    dt = cfg["dt"]
    runs = {}
    for name, (n, inputs) in variants(net, nw, np).items():
        def run(seed, n=n, inputs=inputs):
            return nw.simulate_network(jax.random.key(seed), n, T=T, dt=dt, record=False, inputs=inputs).spikes
        jax.block_until_ready(run(0))
        runs[name] = run
    cpu = {name: [] for name in runs}
    rates = {name: [] for name in runs}
    for rep in range(repeats):
        for name, run in runs.items():
            c0 = time.process_time()
            spikes = jax.block_until_ready(run(1 + rep))
            cpu[name].append(time.process_time() - c0)           # the rasters in memory; counted after the clock
            rates[name].append({p.name: float(np.count_nonzero(np.asarray(spikes[p.name]))) / p.size / (T / 1000.0)
                                for p in net.populations})
    steps = len(np.arange(0.0, T, dt)) - 1
    med = {name: statistics.median(v) for name, v in cpu.items()}
    return dict(T=T, dt=dt, steps=steps, repeats=repeats, cpu_s=cpu, median_s=med, rates=rates,
                us_per_step={k: 1e6 * v / steps for k, v in med.items()}, jax=jax.__version__)


def render(res: dict) -> str:
    us = res["us_per_step"]
    total = us["network"]
    parts = [("membrane update and bookkeeping of the neurons", us["neurons"]),
             ("Poisson drive", us["neurons + drive"] - us["neurons"]),
             ("projections: delivery, ring, plasticity, windows", us["network"] - us["neurons + drive"])]
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    lines = ["### Where a step of the network's time goes (`benchmarks/bench_network_parts.py`)", "",
             f"Written by `python benchmarks/bench_network_parts.py --repeats {res['repeats']}` on {when} "
             f"({platform.machine()}, {os.cpu_count()} CPUs, one core pinned, jax {res['jax']}, float32; load average "
             f"{', '.join(f'{x:.1f}' for x in load)}). The benchmark network, T = {res['T']:g} ms ({res['steps']} steps), "
             "CPU time of one run (median), variants interleaved (the script's docstring defines them):", "",
             "| variant | CPU s per run | us per step | E rate Hz | I rate Hz |", "|---|---|---|---|---|"]
    for name in ("network", "neurons + drive", "neurons"):
        r = res["rates"][name][-1]
        lines.append(f"| {name} | {res['median_s'][name]:.3f} | {us[name]:.1f} | {r['E']:.1f} | {r['I']:.1f} |")
    lines += ["", "| part (by difference) | us per step | share of the network's step |", "|---|---|---|"]
    for label, value in parts:
        lines.append(f"| {label} | {value:.1f} | {100 * value / total:.0f} % |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python benchmarks/bench_network_parts.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="timed runs per variant (>= 1)")
    p.add_argument("--T", type=float, default=1000.0, help="simulated time per run [ms] (> 0)")
    p.add_argument("--out", type=Path, default=None, help="folder for BENCHMARKS.md (default: the repository's)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if not args.T > 0:
        p.error(f"--T must be > 0 ms, got {args.T:g}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    res = measure(args.T, args.repeats)
    section = render(res)
    print(section)
    out = args.out or ROOT
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from experiments._common import write_section
    write_section(out / "BENCHMARKS.md", NAME, section)
    return res


if __name__ == "__main__":
    main()
