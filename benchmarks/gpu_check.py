"""GPU check: the batch simulators' equality tests and the B = 10^4 .. 10^6 benchmark on an accelerator.

Run on a machine with a GPU (``pip install -e . "jax[cuda12]"``)::

    python benchmarks/gpu_check.py                 # writes the GPU section of BENCHMARKS.md
    python benchmarks/gpu_check.py --cpu --out /tmp/gpu.md   # the same script on CPU, small sizes (tests)

What it does, on the default device (refusing to run on CPU unless ``--cpu``):

1. **Equality** (float64): the fast paths (:func:`jaxlif.batch.simulate_cond_lif_batch`,
   :func:`jaxlif.batch.simulate_stp_lif_batch`) against ``jax.vmap`` of the step-by-step simulators on
   the inputs the fast paths draw (``cond_lif_batch_inputs``, ``stp_lif_batch_trains``): identical spikes,
   voltages and conductances within 1e-9; the online statistics against the recorded traces.
2. **Cross-backend**: the same float32 calls on the host CPU; spike counts compared neuron by neuron
   (reported, not required: the backends' ``log``/``exp`` may differ in the last bit, which can move a
   rare input event by one step).
3. **Benchmark** (float32, T = 1 s, dt = 0.1 ms): WL-A and WL-B (docs/workloads.md) at B = 10^4, 10^5,
   10^6: first call, steady wall time (best of ``--repeats``), neuron-seconds per wall-second, mean rate,
   peak device memory, next to the field's headline GPU figures.

The section between ``<!-- begin:gpu -->`` and ``<!-- end:gpu -->`` of ``--out`` (default the
repository's BENCHMARKS.md) is rewritten; the rest of the file is kept.  Exit status 1 if an equality
check fails.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench import replace_section  # noqa: E402

# Headline figures of GPU simulators (published; not run here)
FIELD = [
    ("NEST GPU, cortical microcircuit (about 77k neurons), one RTX 4090, real-time factor about 0.4 "
     "(Golosio et al. 2021; Villamar et al. 2025)", 2e5),
    ("GeNN / PyGeNN, the same microcircuit faster than real time on a desktop GPU, i.e. more than this "
     "(Knight, Komissarov & Nowotny 2021, Front. Neuroinform. 15:659005); GeNN 5 also runs `batch_size` "
     "copies of a model at once", 7.7e4),
]


def _equality(B: int, T: float) -> list[tuple[str, bool, str]]:
    """Fast paths against the step-by-step simulators on the same inputs, float64."""
    import jax
    import numpy as np
    import jaxlif
    from jaxlif import batch as jb
    checks = []
    stats = jb.Stats(burn_in=T / 4, isi_cv=True, v=True, g=True, spike_times=8)
    with jax.enable_x64(True):
        key = jax.random.key(11)
        fast = jb.simulate_cond_lif_batch(key, B, T=T, record=True, stats=stats)
        cE, cI = jb.cond_lif_batch_inputs(key, B, T=T)
        ref = jax.vmap(lambda e, i: jaxlif.simulate_cond_lif(jaxlif.CondLIFParams(), e, i, dt=0.1))(cE, cI)
        checks += _compare("WL-A", fast, ref, stats)
        fast = jb.simulate_stp_lif_batch(key, B, T=T, record=True, stats=stats)
        sE, sI = jb.stp_lif_batch_trains(key, B, T=T)
        ref = jax.vmap(lambda e, i: jaxlif.simulate_stp_lif(jaxlif.stp_lif_params(0.5), e, i, dt=0.1,
                                                            record_synapses=False))(sE, sI)
        checks += _compare("WL-B", fast, ref, stats)
    del np
    return checks


def _compare(name, fast, ref, stats):
    import numpy as np
    import jaxlif
    out = []
    same = bool(np.array_equal(fast.spikes, ref.spikes))
    out.append((f"{name} spikes identical to the step-by-step simulator", same,
                f"{int(np.asarray(fast.spike_count).sum())} spikes"))
    for field in ("v", "g_E", "g_I"):
        err = float(np.max(np.abs(np.asarray(getattr(fast, field)) - np.asarray(getattr(ref, field)))))
        out.append((f"{name} {field} within 1e-9 of the step-by-step simulator", err <= 1e-9, f"max diff {err:.1e}"))
    k0 = len(np.arange(0.0, stats.burn_in, 0.1))
    v = np.asarray(fast.v)[:, k0:]
    err = max(float(np.max(np.abs(fast.stats.v_mean - v.mean(1)))), float(np.max(np.abs(fast.stats.v_std - v.std(1)))),
              float(np.max(np.abs(fast.stats.isi_cv - jaxlif.isi_cv(fast.spikes[:, k0:])))))
    out.append((f"{name} online statistics equal the recorded traces'", err <= 1e-9, f"max diff {err:.1e}"))
    return out


def _cross_backend(B: int, T: float):
    """float32 spike counts on the default device and on the host CPU, neuron by neuron."""
    import jax
    import numpy as np
    from jaxlif import batch as jb
    cpu = jb.batch_mesh(jax.devices("cpu")[:1])
    rows = []
    for name, sim in (("WL-A", jb.simulate_cond_lif_batch), ("WL-B", jb.simulate_stp_lif_batch)):
        a = np.asarray(sim(jax.random.key(3), B, T=T).spike_count)
        b = np.asarray(sim(jax.random.key(3), B, T=T, mesh=cpu).spike_count)
        rows.append((name, float(np.mean(a == b)), float(a.mean()), float(b.mean())))
    return rows


def _bench(sizes, T: float, repeats: int):
    import jax
    import numpy as np
    import jaxlif
    from jaxlif import batch as jb
    dev = jax.devices()[0]
    rows = []
    for name, sim, kw in (("WL-A", jb.simulate_cond_lif_batch, dict(rate_E=10.0, rate_I=10.0)),
                          ("WL-B", jb.simulate_stp_lif_batch, dict(params=jaxlif.stp_lif_params(0.5)))):
        for B in sizes:
            t0 = time.perf_counter()
            out = jax.block_until_ready(sim(jax.random.key(0), B, T=T, **kw).spike_count)
            first = time.perf_counter() - t0
            best, counts = float("inf"), []
            for r in range(repeats):
                t0 = time.perf_counter()
                out = jax.block_until_ready(sim(jax.random.key(r + 1), B, T=T, **kw).spike_count)
                best = min(best, time.perf_counter() - t0)
                counts.append(np.asarray(out))
            try:
                peak = dev.memory_stats().get("peak_bytes_in_use", float("nan")) / 2 ** 20
            except Exception:  # noqa: BLE001 - CPU devices have no memory statistics
                peak = float("nan")
            rate = float(np.mean(counts)) * 1000.0 / T
            rows.append(dict(workload=name, B=B, first_s=first, steady_s=best, neuron_s_per_s=B * T / 1000.0 / best,
                             rate_hz=rate, peak_mb=peak))
            print(f"[gpu_check] {name} B={B}: first {first:.3g} s, steady {best:.4g} s, "
                  f"{B * T / 1000.0 / best:.3g} neuron-s/s, {rate:.1f} Hz", flush=True)
    return rows


def render(device: str, checks, cross, rows, args) -> str:
    lines = [f"## GPU ({device})", "",
             f"Written by `python benchmarks/gpu_check.py{' --cpu' if args.cpu else ''}` on "
             f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}. "
             f"{'CPU smoke run (--cpu): small sizes, not GPU figures.' if args.cpu else ''}", "",
             "**Equality on this device (float64, fast path vs step-by-step on the same inputs):**", "",
             "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c} | {'pass' if ok else 'FAIL'} | {d} |" for c, ok, d in checks]
    lines += ["", "**Cross-backend (float32 spike counts, this device vs the host CPU):** " + "; ".join(
        f"{n}: {100 * same:.1f} % of neurons identical (mean {a:.2f} vs {b:.2f} spikes)" for n, same, a, b in cross),
        "", f"**Benchmark (float32, T = {args.T:g} ms, dt = 0.1 ms, best of {args.repeats}):**", "",
        "| workload | B | first call s | steady s | neuron-s/s | rate Hz | peak device MB |",
        "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['B']} | {r['first_s']:.3g} | {r['steady_s']:.4g} | "
                     f"{r['neuron_s_per_s']:.3g} | {r['rate_hz']:.1f} | {r['peak_mb']:.0f} |")
    lines += ["", "Headline GPU figures of the field (published, other models: a recurrent microcircuit, not "
              "independent neurons; for scale only):", ""]
    lines += [f"- {name}: about {x:.1e} neuron-seconds per wall-second." for name, x in FIELD]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu", action="store_true", help="run on CPU at small sizes (to test the script)")
    p.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="file whose GPU section is rewritten")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="batch sizes of the benchmark (default 10000,100000,1000000; --cpu: 64,256)")
    p.add_argument("--T", type=float, default=None, help="simulated time per run [ms] (default 1000; --cpu: 100)")
    p.add_argument("--repeats", type=int, default=3, help="steady calls per size (best reported)")
    args = p.parse_args(argv)
    import jax
    backend = jax.default_backend()
    if backend == "cpu" and not args.cpu:
        print("[gpu_check] no GPU visible (jax.default_backend() == 'cpu'); pass --cpu to run the CPU smoke test",
              file=sys.stderr)
        return 2
    args.sizes = args.sizes or ([64, 256] if args.cpu else [10_000, 100_000, 1_000_000])
    args.T = args.T or (100.0 if args.cpu else 1000.0)
    device = f"{jax.devices()[0].device_kind}, {len(jax.devices())} device(s), jax {jax.__version__}"
    print(f"[gpu_check] device: {device}; load {os.getloadavg()}", flush=True)
    checks = _equality(4 if args.cpu else 16, 300.0)
    for c, ok, d in checks:
        print(f"[gpu_check] {'pass' if ok else 'FAIL'}: {c} ({d})", flush=True)
    cross = _cross_backend(64 if args.cpu else 1024, args.T)
    rows = _bench(args.sizes, args.T, args.repeats)
    replace_section(args.out, "gpu", render(device, checks, cross, rows, args))
    print(f"[gpu_check] wrote the GPU section of {args.out}", flush=True)
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
