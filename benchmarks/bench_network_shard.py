"""Benchmark: the 4000-neuron E/I network of ``bench_network.py`` on two devices against one.

::

    python benchmarks/bench_network_shard.py                 # rewrites BENCHMARKS.md's network-shard section
    python benchmarks/bench_network_shard.py --quick --out /tmp/bs   # 400 neurons, 100 ms

The script makes two CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``, set before jax
is imported; on a machine with accelerators it uses the first two of ``jax.devices()``) and times, one
after the other in each round (interleaved, so that a change of load hits all three alike):

- ``simulate_network`` (one device: the scan of min-delay windows),
- ``simulate_network_sharded`` on a mesh of one device (the same windows, plus the sharded program's
  permutation and collectives),
- ``simulate_network_sharded`` on two devices (each device's CPU thread runs half of the neurons).

Each run uses the same drive key in a round (a new key per round), record=False; the script checks
that the three give the same rasters and final states, bit for bit (as tests/test_network_shard.py
checks on a small network), here with XLA's default, optimised compilation.  Wall time
of one run once compiled, median over the rounds; CPU time is the process's (both devices' threads).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "network-shard"


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--quick", action="store_true", help="400 neurons, 100 ms (needs --out)")
    p.add_argument("--out", type=Path, default=None, help="folder of the BENCHMARKS.md to write (default: the "
                                                          "repository's)")
    args = p.parse_args(argv)
    if args.quick and args.out is None:
        raise SystemExit("--quick needs --out DIR (the repository's BENCHMARKS.md is for full runs)")
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2")
    sys.path.insert(0, str(ROOT))
    import jax
    import numpy as np
    from benchmarks import bench_network as bn
    from experiments._common import write_section
    from jaxlif import network as nw
    from jaxlif.grid import n_steps

    cfg = dict(bn.DEFAULTS, **(bn.QUICK if args.quick else {}))
    net = bn._build(cfg)
    devices = jax.devices()
    if len(devices) < 2:
        raise SystemExit(f"needs 2 devices, got {devices}")
    meshes = {1: nw.network_mesh(devices[:1]), 2: nw.network_mesh(devices[:2])}
    load_start, started = os.getloadavg(), datetime.datetime.now(datetime.timezone.utc)

    def one_device(key):
        return nw.simulate_network(key, net, T=cfg["T"], dt=cfg["dt"], record=False)

    def sharded(P):
        return lambda key: nw.simulate_network_sharded(key, net, T=cfg["T"], dt=cfg["dt"], record=False,
                                                       mesh=meshes[P])

    systems = {"simulate_network (1 device)": one_device, "simulate_network_sharded, 1 device": sharded(1),
               "simulate_network_sharded, 2 devices": sharded(2)}
    first, walls, cpus, counts = {}, {k: [] for k in systems}, {k: [] for k in systems}, {k: [] for k in systems}
    for name, run in systems.items():
        t0 = time.perf_counter()
        jax.block_until_ready(run(jax.random.key(10_000)).spikes)
        first[name] = time.perf_counter() - t0
    same = True             # every run's rasters and final state equal the one-device run's of its round
    for i in range(args.repeats):
        key = jax.random.key(10_001 + i)
        for name, run in systems.items():
            t0, c0 = time.perf_counter(), time.process_time()
            res = jax.block_until_ready(run(key))
            walls[name].append(time.perf_counter() - t0)
            cpus[name].append(time.process_time() - c0)
            counts[name].append(tuple(int(s.sum()) for s in res.spikes.values()))
            arrays = [np.asarray(x) for x in jax.tree.leaves((res.spikes, res.state))]
            if name == "simulate_network (1 device)":
                reference = arrays
            same = same and all(np.array_equal(a, b) for a, b in zip(arrays, reference))
    base = statistics.median(walls["simulate_network (1 device)"])
    verdict = ("the rasters and final states of the three runs are the same, bit for bit, in every round" if same
               else "the three runs DIFFER")
    n = cfg["n_E"] + cfg["n_I"]
    n_updates = n_steps(cfg["T"], cfg["dt"]) - 1
    d_min, L = nw.window.min_delay(net), nw.window.split_windows(n_updates, nw.window.window_length(net))
    where = ("`--xla_force_host_platform_device_count=2` on the CPU: no GPU was available"
             if devices[0].platform == "cpu" else "the first two")
    lines = ["## One network on two devices (`benchmarks/bench_network_shard.py`)", "",
             f"Written by `python benchmarks/bench_network_shard.py{' --quick' if args.quick else ''} "
             f"--repeats {args.repeats}` on {started.isoformat(timespec='seconds')} (UTC); machine: "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, devices: {devices[0].platform} "
             f"x {len(devices)} ({where}); "
             f"jax {jax.__version__}; load average (1/5/15 min) at start {tuple(round(x, 2) for x in load_start)}, "
             f"at end {tuple(round(x, 2) for x in os.getloadavg())} (the machine is shared: rerun on a quiet one).",
             "",
             f"Network: `bench_network.py`'s, {cfg['n_E']} E + {cfg['n_I']} I neurons, p = {cfg['p']}, delay {d_min} steps "
             f"(windows of {L} steps: {-(-n_updates // L)} exchanges), T = {cfg['T']:g} ms, dt = {cfg['dt']} ms, float32, record=False. "
             f"{args.repeats} interleaved rounds, one new drive key per round, the same for the three runs.", "",
             "| run | first call s | steady s (median) | rounds s | CPU s (median) | x one device |",
             "|---|---|---|---|---|---|"]
    for name in systems:
        med = statistics.median(walls[name])
        lines.append(f"| {name} | {first[name]:.2f} | {med:.3f} | {', '.join(f'{w:.3f}' for w in walls[name])} | "
                     f"{statistics.median(cpus[name]):.3f} | {med / base:.2f} |")
    lines += ["", f"Spike counts (E, I) per round: {counts['simulate_network (1 device)']}; "
              f"{verdict}. "
              f"Neuron-seconds per wall-second on two devices: "
              f"{n * cfg['T'] / 1000 / statistics.median(walls['simulate_network_sharded, 2 devices']):.3g}."]
    text = "\n".join(lines)
    print(text, flush=True)
    out = (ROOT if args.out is None else args.out) / "BENCHMARKS.md"
    write_section(out, NAME, text)
    print(f"[bench_network_shard] wrote {out} (section {NAME})", flush=True)
    return dict(first=first, walls=walls, cpus=cpus, counts=counts, same=same)


if __name__ == "__main__":
    main()
