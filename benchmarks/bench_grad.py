"""Gradients: what they cost in memory (checkpointing) and what they mean (bias against finite differences).

One command measures everything and rewrites the ``grad`` section of ``BENCHMARKS.md`` (between the
markers ``<!-- begin:grad -->`` and ``<!-- end:grad -->``; the rest of the file is left untouched)::

    python benchmarks/bench_grad.py            # about 3-5 minutes on 2 cores
    python benchmarks/bench_grad.py --quick    # about a minute: 1 s runs, small batches, no file written

Three parts:

1. **Memory of reverse-mode gradients.**  ``jax.grad`` of ``mean(v) + 10 mean(spikes)`` of a 10 s STP-LIF
   run (dt = 0.1 ms: 100000 steps; 80 + 20 plastic synapses with Poisson input drawn in the scan; surrogate
   ``fast_sigmoid()``) with respect to every parameter, with ``checkpoint=None`` and ``checkpoint=True``.
   Each variant runs in a fresh process: XLA's buffer assignment of the compiled gradient
   (``memory_analysis().temp_size_in_bytes``), the process's peak RSS (``ru_maxrss``), compile and run
   times, and the gradients themselves (compared between the variants).
2. **What the gradients mean.**  64 conductance-LIF neurons (80 E + 20 I Poisson trains at 10 Hz, 1 s,
   common random numbers): the gradient of the mean voltage and of the mean rate with respect to the
   excitatory ``g_bar``, exact (no surrogate) and with surrogates, against central finite differences of
   the same runs (same keys).  Also the input rate: autodiff through the draws vs finite differences vs
   the analytic shot-noise approximation :func:`jaxlif.fmp_shot_noise`.
3. **A surrogate-gradient fit.**  optax Adam on ``log g_bar`` (``jaxlif.constraints``) brings 256
   Poisson-driven neurons from about 0 Hz to 20 Hz (common random numbers); the fitted ``g_bar`` is then
   run on fresh inputs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "grad"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------------
# 1. memory (one variant per process)
# ------------------------------------------------------------------------------------------------

def memory_child(checkpoint: str, T: float, dt: float) -> dict:
    """Compile and run the gradient of one STP-LIF run; returns the measurements (JSON-able)."""
    import jax
    import jax.numpy as jnp
    import jaxlif

    ck = {"none": None, "sqrt": True}[checkpoint]
    key, params = jax.random.key(0), jaxlif.STPLIFParams()
    sg = jaxlif.surrogates.fast_sigmoid()

    def run(p, ck):
        out = jaxlif.simulate_stp_lif_poisson(key, p, T=T, dt=dt, spike_grad=sg, checkpoint=ck)
        return jnp.mean(out.v) + 10.0 * jnp.mean(out.spikes)

    forward = jax.jit(run, static_argnums=1).lower(params, ck).compile()
    float(forward(params))                                     # runtime warm, baseline RSS
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    grad = jax.jit(jax.grad(run), static_argnums=1).lower(params, ck).compile()
    compile_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    g = jax.block_until_ready(grad(params))
    run_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    mem, fmem = grad.memory_analysis(), forward.memory_analysis()
    return dict(checkpoint=checkpoint, steps=jaxlif.n_steps(T, dt), compile_s=compile_s, run_s=run_s, cpu_s=cpu_s,
                temp_mib=mem.temp_size_in_bytes / 2**20, forward_temp_mib=fmem.temp_size_in_bytes / 2**20,
                rss_before_mb=rss0, rss_peak_mb=_rss_mb(),
                grad=[float(x) for x in jax.tree.leaves(g)],
                names=[jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(g)])


def measure_memory(T: float, dt: float) -> list[dict]:
    rows = []
    for ck in ("none", "sqrt"):
        cmd = [sys.executable, __file__, "--memory-child", ck, "--T", str(T), "--dt", str(dt)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  checkpoint={ck}: temp {rows[-1]['temp_mib']:.1f} MiB, peak RSS {rows[-1]['rss_peak_mb']:.0f} MB, "
              f"compile {rows[-1]['compile_s']:.1f} s, run {rows[-1]['run_s']:.2f} s", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------
# 2. bias against finite differences over common random numbers
# ------------------------------------------------------------------------------------------------

def measure_bias(n_neurons: int, T: float, dt: float, h: float) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import jaxlif
    from jaxlif import surrogates as S

    keys = jax.random.split(jax.random.key(0), n_neurons)
    g0 = 2.4

    def stats(gbar, sg, spiking=True, rate_E=10.0):
        p = jaxlif.CondLIFParams(exc=jaxlif.SynParams(gbar, 2.0, 0.0))
        sim = lambda k: jaxlif.simulate_cond_lif_poisson(k, p, rate_E=rate_E, T=T, dt=dt, spiking=spiking,
                                                         spike_grad=sg, checkpoint=True)
        out = jax.vmap(sim)(keys)
        return jnp.stack([jnp.mean(out.v), jnp.mean(out.spikes.astype(out.v.dtype).sum(-1)) * 1000.0 / T])

    f = jax.jit(stats, static_argnums=(1, 2))
    base = np.asarray(f(g0, None, True))
    fd = (np.asarray(f(g0 + h, None, True)) - np.asarray(f(g0 - h, None, True))) / (2 * h)
    fd_half = (np.asarray(f(g0 + h / 2, None, True)) - np.asarray(f(g0 - h / 2, None, True))) / h
    variants = [("none (exact threshold)", None), ("fast_sigmoid()", S.fast_sigmoid()), ("arctan()", S.arctan()),
                ("triangle()", S.triangle()), ("fast_sigmoid(detach_reset=True)", S.fast_sigmoid(detach_reset=True))]
    rows = []
    for label, sg in variants:
        J = np.asarray(jax.jit(jax.jacrev(stats), static_argnums=(1, 2))(g0, sg, True))
        rows.append(dict(surrogate=label, dv=float(J[0]), drate=float(J[1])))
        print(f"  {label}: d mean(v)/d g = {J[0]:.3g} mV/nS, d rate/d g = {J[1]:.3g} Hz/nS", flush=True)
    # unstable combination, shown once: the old default peak 0.25/mV with a 20 mV reset
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        J = np.asarray(jax.jit(jax.jacrev(stats), static_argnums=(1, 2))(g0, S.fast_sigmoid(0.5), True))
    rows.append(dict(surrogate="fast_sigmoid(0.5) (peak 0.25/mV: unstable, warns)", dv=float(J[0]), drate=float(J[1])))
    # subthreshold: exact
    sub = np.asarray(jax.jit(jax.jacrev(stats), static_argnums=(1, 2))(g0, None, False))
    sub_fd = (np.asarray(f(g0 + h, None, False)) - np.asarray(f(g0 - h, None, False))) / (2 * h)
    # input rate: autodiff through the draws, finite differences, shot-noise approximation
    fr = jax.jit(lambda r: stats(g0, None, False, r)[0])
    d_rate_auto = float(jax.grad(fr)(10.0))
    dr = 1.0
    d_rate_fd = (float(fr(10.0 + dr)) - float(fr(10.0 - dr))) / (2 * dr)
    d_rate_shot = float(jax.grad(lambda r: jaxlif.fmp_shot_noise(jaxlif.CondLIFParams(), r, 10.0)[0])(10.0))
    return dict(n_neurons=n_neurons, T=T, dt=dt, h=h, g0=g0, base_v=float(base[0]), base_rate=float(base[1]),
                fd_dv=float(fd[0]), fd_drate=float(fd[1]), fd_half_dv=float(fd_half[0]), fd_half_drate=float(fd_half[1]),
                rows=rows, sub_dv=float(sub[0]), sub_fd_dv=float(sub_fd[0]),
                rate_auto=d_rate_auto, rate_fd=d_rate_fd, rate_shot=d_rate_shot)


# ------------------------------------------------------------------------------------------------
# 3. surrogate fit to a target rate
# ------------------------------------------------------------------------------------------------

def surrogate_fit(n_neurons: int, T: float, dt: float, target: float = 20.0) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import jaxlif
    from jaxlif import constraints as C

    cons = C.default_constraints(jaxlif.SynParams(), dt=dt)
    sg = jaxlif.surrogates.fast_sigmoid()

    @jax.jit
    def rate_and_grad(theta, keys):
        def rate(th):
            p = jaxlif.CondLIFParams(exc=C.from_unconstrained(th, cons))
            sim = lambda k: jaxlif.simulate_cond_lif_poisson(k, p, T=T, dt=dt, record=False, spike_grad=sg)
            spikes = jax.vmap(sim)(keys).spikes
            return jnp.mean(spikes.sum(-1)) * 1000.0 / T, spikes.sum(-1)
        return jax.value_and_grad(rate, has_aux=True)(theta)

    keys = jax.random.split(jax.random.key(0), n_neurons)
    theta = C.to_unconstrained(jaxlif.SynParams(1.2, 2.0, 0.0), cons)
    mask = jaxlif.SynParams(1.0, 0.0, 0.0)                         # fit g_bar only
    opt = optax.adam(0.1, b1=0.5)
    state = opt.init(theta)
    history, t0 = [], time.perf_counter()
    for _ in range(100):
        (rate, _), grad = rate_and_grad(theta, keys)
        history.append(float(rate))
        if abs(history[-1] - target) < 0.25:
            break
        loss_grad = jax.tree.map(lambda g, m: 2.0 * (rate - target) * g * m, grad, mask)
        updates, state = opt.update(loss_grad, state)
        theta = optax.apply_updates(theta, updates)
    wall = time.perf_counter() - t0
    (fresh, counts), _ = rate_and_grad(theta, jax.random.split(jax.random.key(1), n_neurons))
    sem = float(np.std(np.asarray(counts) * 1000.0 / T, ddof=1) / np.sqrt(n_neurons))
    g_bar = float(C.from_unconstrained(theta, cons).g_bar)
    print(f"  {len(history)} evaluations: {history[0]:.2f} Hz -> {history[-1]:.2f} Hz at g_bar = {g_bar:.4f} nS; "
          f"fresh inputs {float(fresh):.2f} +- {sem:.2f} Hz ({wall:.1f} s)", flush=True)
    return dict(n_neurons=n_neurons, T=T, dt=dt, target=target, history=history, g_bar=g_bar,
                fresh_rate=float(fresh), fresh_sem=sem, wall_s=wall)


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------

def _section(mem: list[dict], bias: dict, fit: dict, meta: dict) -> str:
    none, sqrt = mem
    grad_diff = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(sqrt["grad"], none["grad"]) if b != 0.0)
    zero = [n for n, a, b in zip(none["names"], none["grad"], sqrt["grad"]) if a == 0.0 and b == 0.0]
    T_s = none["steps"] * meta["dt"] / 1000.0
    lines = [
        "## Gradients: memory with and without checkpointing, bias against finite differences",
        "",
        f"Written by `python benchmarks/bench_grad.py` on {meta['when']} (UTC); {meta['machine']}; "
        f"jax {meta['jax']}. Load average (1/5/15 min) at start {meta['load0']}, at end {meta['load1']} "
        f"(shared machine: times are indicative; memory figures do not depend on load).",
        "",
        f"**Memory.** `jax.grad` of `mean(v) + 10 mean(spikes)` of one STP-LIF run of {T_s:g} s "
        f"(dt = {meta['dt']} ms, {none['steps']} steps, 80 + 20 plastic synapses, Poisson input drawn in the scan, "
        f"surrogate `fast_sigmoid()`), with respect to all 19 parameters; each variant in a fresh process.",
        "",
        "| checkpoint | XLA temp memory of the gradient | forward pass alone | process peak RSS (before compiling the gradient) | compile s | run s (CPU s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in mem:
        lines.append(f"| `{ {'none': 'None', 'sqrt': 'True'}[r['checkpoint']] }` | {r['temp_mib']:.1f} MiB | "
                     f"{r['forward_temp_mib']:.2f} MiB | {r['rss_peak_mb']:.0f} MB ({r['rss_before_mb']:.0f} MB) | "
                     f"{r['compile_s']:.1f} | {r['run_s']:.2f} ({r['cpu_s']:.2f}) |")
    lines += [
        "",
        f"Checkpointed / plain: {100 * sqrt['temp_mib'] / none['temp_mib']:.2f} % of the gradient's temporary "
        f"memory (target < 10 %); largest relative difference between the two gradients {grad_diff:.1e} "
        f"(float32 rounding; {len(zero)} parameters have an exactly zero gradient in both: {', '.join(zero) or 'none'}).",
        "",
        f"**What the gradients mean.** {bias['n_neurons']} conductance-LIF neurons, 80 E + 20 I Poisson trains at "
        f"10 Hz, {bias['T']:g} ms, dt = {bias['dt']} ms, common random numbers (the same keys in every run); "
        f"derivative with respect to the excitatory `g_bar` at {bias['g0']} nS (mean voltage {bias['base_v']:.2f} mV, "
        f"mean rate {bias['base_rate']:.1f} Hz). Reference: central finite differences of the same runs, "
        f"h = {bias['h']} nS (h/2 in brackets).",
        "",
        "| gradient | d mean(V) / d g_bar (mV/nS) | d rate / d g_bar (Hz/nS) |",
        "|---|---|---|",
        f"| finite differences (reference) | {bias['fd_dv']:.3g} ({bias['fd_half_dv']:.3g}) | "
        f"{bias['fd_drate']:.3g} ({bias['fd_half_drate']:.3g}) |",
    ]
    for r in bias["rows"]:
        lines.append(f"| {r['surrogate']} | {r['dv']:.3g} | {r['drate']:.3g} |")
    lines += [
        "",
        f"Subthreshold (`spiking=False`): autodiff {bias['sub_dv']:.5g} mV/nS, finite differences "
        f"{bias['sub_fd_dv']:.5g} mV/nS (exact up to the difference quotient). Input rate: d mean(FMP) / d rate_E by "
        f"autodiff through the draws = {bias['rate_auto']:g} (not reparameterised), by finite differences "
        f"(same keys, +-1 Hz) = {bias['rate_fd']:.3g} mV/Hz, by `jax.grad` of `jaxlif.fmp_shot_noise` = "
        f"{bias['rate_shot']:.3g} mV/Hz.",
        "",
        f"**Surrogate fit.** optax Adam (lr 0.1, b1 0.5) on log `g_bar` via `jaxlif.constraints`, loss "
        f"(rate - {fit['target']:g} Hz)^2, {fit['n_neurons']} neurons x {fit['T']:g} ms with common random numbers: "
        f"{fit['history'][0]:.2f} Hz -> {fit['history'][-1]:.2f} Hz in {len(fit['history'])} evaluations "
        f"({fit['wall_s']:.1f} s incl. compilation), g_bar = {fit['g_bar']:.4f} nS; on fresh inputs "
        f"{fit['fresh_rate']:.2f} +- {fit['fresh_sem']:.2f} Hz (SEM over neurons).",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, print only (BENCHMARKS.md untouched)")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="the file whose section is rewritten")
    ap.add_argument("--memory-child", choices=["none", "sqrt"], help=argparse.SUPPRESS)
    ap.add_argument("--T", type=float, default=10000.0, help="duration of the memory run [ms] (default 10 s)")
    ap.add_argument("--dt", type=float, default=0.1, help="time step [ms]")
    args = ap.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.T, args.dt)))
        return
    import jax

    T_mem = 1000.0 if args.quick else args.T
    meta = dict(when=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                        f"{platform.platform()}, Python {platform.python_version()}",
                jax=jax.__version__, dt=args.dt, load0=tuple(round(x, 2) for x in os.getloadavg()))
    print(f"[{NAME}] load average {meta['load0']}", flush=True)
    print(f"[{NAME}] 1. memory of the gradient of a {T_mem:g} ms STP-LIF run", flush=True)
    mem = measure_memory(T_mem, args.dt)
    print(f"[{NAME}] 2. bias against finite differences", flush=True)
    bias = measure_bias(16 if args.quick else 64, 1000.0, args.dt, 0.1)
    print(f"[{NAME}] 3. surrogate fit", flush=True)
    fit = surrogate_fit(256, 200.0 if args.quick else 1000.0, args.dt)
    meta["load1"] = tuple(round(x, 2) for x in os.getloadavg())
    text = _section(mem, bias, fit, meta)
    print(text)
    if not args.quick:
        sys.path.insert(0, str(ROOT))
        from experiments._common import write_section      # here: the memory children stay lean
        write_section(args.out, NAME, text)
        print(f"[{NAME}] wrote the '{NAME}' section of {args.out}")


if __name__ == "__main__":
    main()
