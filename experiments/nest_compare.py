"""jaxlif against NEST 3.10 on identical inputs (docs/nest.md): ``tsodyks2_synapse`` against
:func:`jaxlif.stp_amplitudes`, and ``iaf_cond_exp`` against :func:`jaxlif.simulate_cond_lif` with
``integrator="exp_euler"``.

NEST runs in its own environment through ``experiments/nest_check.py`` (a subprocess), found as
``$JAXLIF_NEST_PYTHON`` or ``.venv-nest/bin/python``::

    python3 -m venv .venv-nest && .venv-nest/bin/pip install nest-simulator==3.10.0
    .venv/bin/python experiments/nest_compare.py --out /tmp/nest_compare     # the docs' numbers
    .venv/bin/python experiments/nest_compare.py --quick --out /tmp/nc       # seconds (tests/test_nest.py sizes)

1. ``stp``: several ``(U, tau_rec, tau_fac)`` on Poisson and regular trains (spike times on NEST's 0.1 ms
   grid, up to ``--stp-T`` ms long), ``u = U`` set on every synapse; the largest absolute difference of
   the releases in float64 and in float32 (jaxlif's default), and with NEST's default ``u = 0.5``.
2. ``cond``: ``--neurons`` conductance-LIF neurons for ``--T`` ms, each with its own input counts on the
   ``dt = 0.1`` ms grid (NumPy binomial draws, ``--seed``) in two regimes: exercise 1.2 (80 E + 20 I trains
   at 10 Hz, 2.4 nS) and a high-conductance one (80 E at 100 Hz, 20 I at 400 Hz).  NEST ``iaf_cond_exp`` at
   ``--resolution`` (0.01 ms) against jaxlif at ``dt = 0.1`` ms (``exp_euler``, float64 and float32; the
   tutorial's ``euler`` for contrast).  Rate: total spike counts, relative to NEST, with the paired
   standard error over neurons.  Spike times: for every NEST spike, the signed distance to the nearest
   jaxlif spike of the same neuron (NEST minus jaxlif; NEST reports a spike at the end of its resolution
   step, so up to one resolution step late).

Writes ``nest_compare.json`` and ``table.md`` into ``--out`` (and the table into the marked section of
``docs/nest.md`` with ``--docs docs/nest.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

import jaxlif as jl  # noqa: E402

CHECK_SCRIPT = ROOT / "experiments" / "nest_check.py"
MARK_BEGIN, MARK_END = "<!-- begin:nest_compare -->", "<!-- end:nest_compare -->"
HOW_TO = ("create it with `python3 -m venv .venv-nest && .venv-nest/bin/pip install nest-simulator==3.10.0` "
          "in the repository root, or point JAXLIF_NEST_PYTHON at an interpreter that can `import nest`")

#: (U, tau_rec, tau_fac) of the STP cross-check: depressing, facilitating, mixed, tiny U, no facilitation.
STP_SYNAPSES = [(0.5, 100.0, 50.0), (0.2, 100.0, 750.0), (0.05, 800.0, 1000.0), (0.8, 30.0, 5.0),
                (0.35, 250.0, 0.0)]
#: jaxlif needs tau_f > 0; NEST's tau_fac = 0 (no facilitation) is tau_f -> 0: exp(-ISI/tau_f) is 0 in float64.
TAU_F_NONE = 1e-3

#: the neuron of docs/conventions.md section 6 and exercise 1.2's synapses
NEURON = jl.LIFParams(V_th=-55.0, V_reset=-75.0, tau_m=10.0, g_L=10.0, V_init=-65.0, E_L=-75.0, t_ref=2.0)
REGIMES = {"exercise": dict(rate_E=10.0, rate_I=10.0, n_E=80, n_I=20),
           "high": dict(rate_E=100.0, rate_I=400.0, n_E=80, n_I=20)}


class NestUnavailable(RuntimeError):
    """NEST's interpreter (``$JAXLIF_NEST_PYTHON`` or ``.venv-nest``) cannot be found or run."""


def nest_python() -> str:
    """The NEST environment's interpreter (``$JAXLIF_NEST_PYTHON`` or ``.venv-nest/bin/python``).

    Raises :class:`NestUnavailable`, saying how to create the environment, when it cannot import nest.
    """
    py = os.environ.get("JAXLIF_NEST_PYTHON") or str(ROOT / ".venv-nest" / "bin" / "python")
    where = "JAXLIF_NEST_PYTHON" if os.environ.get("JAXLIF_NEST_PYTHON") else "the default .venv-nest"
    if not Path(py).exists():
        raise NestUnavailable(f"NEST interpreter {py} ({where}) does not exist; {HOW_TO}")
    probe = subprocess.run([py, "-c", "import nest; print(nest.__version__)"], capture_output=True, text=True,
                           env=_nest_env())
    if probe.returncode != 0:
        raise NestUnavailable(f"{py} ({where}) cannot import nest: {probe.stderr.strip()[-300:]}; {HOW_TO}")
    return py


def _nest_env() -> dict:
    env = dict(os.environ)
    env["PYNEST_QUIET"] = "1"
    return env


def run_nest(kind: str, spec, python: str | None = None, threads: int = 1) -> dict:
    """Run ``nest_check.py kind`` on ``spec`` (a dict: JSON for ``stp``, arrays and scalars for ``cond``)."""
    python = python or nest_python()
    with tempfile.TemporaryDirectory(prefix="jaxlif_nest_") as tmp:
        inp = Path(tmp) / ("in.json" if kind == "stp" else "in.npz")
        out = Path(tmp) / "out.json"
        if kind == "stp":
            inp.write_text(json.dumps(spec))
        else:
            np.savez(inp, **spec)
        proc = subprocess.run([python, str(CHECK_SCRIPT), kind, "--input", str(inp), "--out", str(out),
                               "--threads", str(threads)], capture_output=True, text=True, env=_nest_env())
        if proc.returncode != 0:
            raise RuntimeError(f"nest_check.py {kind} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------- STP
def stp_trains(seed: int, T: float, n_poisson: int = 3) -> list[list[float]]:
    """Spike trains on the 0.1 ms grid [ms]: Poisson at 5, 20 and 50 Hz (``n_poisson`` of them), and
    regular 10 and 100 Hz bursts; every train starts at 1 ms."""
    rng = np.random.default_rng(seed)
    trains = []
    for rate in (5.0, 20.0, 50.0)[:n_poisson]:
        isi = np.maximum(np.round(rng.exponential(1000.0 / rate, int(3 * rate * T / 1000) + 10), 1), 0.1)
        t = 1.0 + np.concatenate([[0.0], np.cumsum(isi)])
        trains.append(np.round(t[t < T], 1).tolist())
    trains.append(np.round(1.0 + 100.0 * np.arange(max(2, int(T // 100))), 1).tolist())
    burst = np.concatenate([1.0 + 10.0 * np.arange(10), 1.0 + 10.0 * np.arange(10) + min(T / 2, 500.0)])
    trains.append(np.round(burst, 1).tolist())
    return trains


def stp_compare(seed: int = 0, T: float = 3000.0, python: str | None = None) -> dict:
    """Every synapse of :data:`STP_SYNAPSES` on every train of :func:`stp_trains`."""
    trains = stp_trains(seed, T)
    pairs = [(syn, train) for syn in STP_SYNAPSES for train in trains]
    spec = {"resolution": 0.1, "trains": [t for _, t in pairs],
            "synapses": [dict(U=s[0], tau_rec=s[1], tau_fac=s[2]) for s, _ in pairs]}
    nest_u = run_nest("stp", dict(spec, u="U"), python)
    nest_default = run_nest("stp", dict(spec, u="nest"), python)
    n_max = max(len(t) for t in spec["trains"])
    times = np.full((len(pairs), n_max), np.nan)
    ref, ref_default = np.full_like(times, np.nan), np.full_like(times, np.nan)
    for i, (arr, rel, rel_d) in enumerate(zip(nest_u["spike_ms"], nest_u["release"], nest_default["release"])):
        times[i, :len(arr)], ref[i, :len(rel)], ref_default[i, :len(rel_d)] = arr, rel, rel_d
    U = np.array([s[0] for s, _ in pairs])
    tau_d = np.array([s[1] for s, _ in pairs])
    tau_f = np.array([s[2] if s[2] > 0 else TAU_F_NONE for s, _ in pairs])
    out = {"n_trains": len(pairs), "n_spikes": int(np.isfinite(times).sum()), "max_t_ms": float(np.nanmax(times)),
           "nest_version": nest_u["nest_version"]}
    for label, x64 in (("float64", True), ("float32", False)):
        with jax.enable_x64(x64):
            dtype = np.float64 if x64 else np.float32
            amp = np.asarray(jl.stp_amplitudes(jl.STPParams(U.astype(dtype), tau_d.astype(dtype),
                                                            tau_f.astype(dtype)), times.astype(dtype)), float)
        out[f"max_abs_{label}"] = float(np.nanmax(np.abs(amp - ref)))
        out[f"max_rel_{label}"] = float(np.nanmax(np.abs(amp - ref) / ref))
        if x64:
            err_default = np.abs(amp - ref_default)
            out["max_abs_nest_default_u"] = float(np.nanmax(err_default))
            out["max_ratio_nest_default_u"] = float(np.nanmax(np.maximum(ref_default / amp, amp / ref_default)))
            out["first_release_nest_default_u"] = sorted({round(float(r[0]), 12) for r in nest_default["release"]})
    return out


# ---------------------------------------------------------------------------------------------- cond
def cond_counts(seed: int, neurons: int, T: float, dt: float, regime: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-step input counts ``(neurons, n_steps)`` (Binomial(n, rate dt / 1000)); column 0 is zero."""
    r = REGIMES[regime]
    steps = jl.n_steps(T, dt)
    rng = np.random.default_rng([seed, list(REGIMES).index(regime)])
    n_E = rng.binomial(r["n_E"], r["rate_E"] * dt / 1000.0, (neurons, steps))
    n_I = rng.binomial(r["n_I"], r["rate_I"] * dt / 1000.0, (neurons, steps))
    n_E[:, 0] = n_I[:, 0] = 0
    return n_E, n_I


def nest_cond_spec(n_E, n_I, dt: float, T: float, resolution: float, params: jl.CondLIFParams) -> dict:
    """The ``nest_check.py cond`` input for jaxlif's parameters (C_m = g_L tau_m; weights g_bar in nS)."""
    nrn, exc, inh = params
    return dict(n_E=n_E, n_I=n_I, dt=dt, resolution=resolution, T=T, C_m=nrn.g_L * nrn.tau_m, g_L=nrn.g_L,
                E_L=nrn.E_L, V_th=nrn.V_th, V_reset=nrn.V_reset, V_init=nrn.V_init, t_ref=nrn.t_ref,
                E_ex=exc.E_rev, E_in=inh.E_rev, tau_syn_ex=exc.tau_syn, tau_syn_in=inh.tau_syn, w_ex=exc.g_bar,
                w_in=inh.g_bar)


def jaxlif_spike_times(params, n_E, n_I, dt: float, integrator: str, x64: bool) -> list:
    """Spike times [ms] of ``simulate_cond_lif`` per neuron (``k dt + spike_offset[k]`` with exp_euler)."""
    out = []
    chunk = max(1, int(1e7 // n_E.shape[1]))    # neurons per call: bounds the recorded traces' memory
    with jax.enable_x64(x64):
        run = jax.jit(jax.vmap(lambda e, i: jl.simulate_cond_lif(params, e, i, dt=dt, integrator=integrator)))
        for start in range(0, n_E.shape[0], chunk):
            res = run(n_E[start:start + chunk].astype(float), n_I[start:start + chunk].astype(float))
            spikes = np.asarray(res.spikes)
            offset = np.asarray(res.spike_offset, float) if res.spike_offset is not None else np.zeros(spikes.shape)
            for row, off in zip(spikes, offset):
                k = np.flatnonzero(row)
                out.append(k * dt + off[k])
    return out


def spike_time_stats(nest_times: list, jax_times: list) -> dict:
    """Signed distance (NEST - jaxlif) from every NEST spike to the nearest jaxlif spike of its neuron."""
    d = []
    for a, b in zip(nest_times, jax_times):
        a, b = np.asarray(a, float), np.asarray(b, float)
        if a.size == 0:
            continue
        if b.size == 0:
            d.extend([np.inf] * a.size)
            continue
        j = np.clip(np.searchsorted(b, a), 1, b.size - 1) if b.size > 1 else np.zeros(a.size, int)
        lo, hi = b[np.maximum(j - 1, 0)], b[j]
        d.extend(np.where(np.abs(a - lo) <= np.abs(a - hi), a - lo, a - hi))
    d = np.asarray(d)
    near = d[np.abs(d) < 1.0]
    pct = np.percentile(near, [0, 1, 5, 50, 95, 99, 100]) if near.size else [np.nan] * 7
    return {"n": int(d.size), "within_0.05ms": float(np.mean(np.abs(d) <= 0.05)),
            "within_0.01ms": float(np.mean(np.abs(d) <= 0.01 + 1e-9)), "matched_1ms": float(np.mean(np.abs(d) < 1.0)),
            "percentiles_ms": dict(zip(["min", "p1", "p5", "median", "p95", "p99", "max"], map(float, pct))),
            "mean_ms": float(np.mean(near)) if near.size else np.nan}


def cond_compare(regime: str, neurons: int, T: float, seed: int = 0, dt: float = 0.1, resolution: float = 0.01,
                 python: str | None = None, runs=(("exp_euler", True, 1), ("exp_euler", False, 1), ("euler", False, 1)),
                 threads: int = 1) -> dict:
    """One regime; ``runs``: ``(integrator, float64?, refine)`` with jaxlif at ``dt / refine`` (the same
    input times: the counts of step k at fine index ``k * refine``)."""
    params = jl.CondLIFParams(NEURON, jl.EXC_SYN, jl.INH_SYN)
    n_E, n_I = cond_counts(seed, neurons, T, dt, regime)
    nest = run_nest("cond", nest_cond_spec(n_E, n_I, dt, T, resolution, params), python, threads)
    n_nest = np.asarray(nest["n_spikes"], float)
    out = {"regime": regime, "neurons": neurons, "T_ms": T, "dt": dt, "resolution": resolution,
           "nest_rate_hz": float(n_nest.sum() / neurons / (T / 1000.0)), "nest_spikes": int(n_nest.sum()),
           "nest_seconds": nest["seconds"], "nest_version": nest["nest_version"], "runs": {}}
    for integrator, x64, refine in runs:
        t0 = time.perf_counter()
        if refine == 1:
            fine_E, fine_I = n_E, n_I
        else:
            fine_E = np.zeros((neurons, n_E.shape[1] * refine), n_E.dtype)
            fine_I = np.zeros_like(fine_E)
            fine_E[:, ::refine], fine_I[:, ::refine] = n_E, n_I
        times = jaxlif_spike_times(params, fine_E, fine_I, dt / refine, integrator, x64)
        n_jax = np.array([len(t) for t in times], float)
        diff = n_jax - n_nest
        name = f"{integrator}_{'float64' if x64 else 'float32'}" + (f"_dt{dt / refine:g}" if refine > 1 else "")
        out["runs"][name] = {
            "rate_hz": float(n_jax.sum() / neurons / (T / 1000.0)),
            "rate_rel_diff": float(diff.sum() / n_nest.sum()),
            "rate_rel_se": float(np.std(diff, ddof=1) * np.sqrt(neurons) / n_nest.sum()) if neurons > 1 else np.nan,
            "spikes": int(n_jax.sum()), "seconds": time.perf_counter() - t0,
            "times": spike_time_stats(nest["spike_times"], times)}
    return out


# -------------------------------------------------------------------------------------------- report
def table(result: dict) -> str:
    s = result["stp"]
    lines = [f"NEST {s['nest_version']}, `tsodyks2_synapse` with `u = U` against `jaxlif.stp_amplitudes` "
             f"(exact): {s['n_trains']} synapse-train pairs, {s['n_spikes']} spikes up to t = "
             f"{s['max_t_ms'] / 1000:.1f} s. Largest absolute difference of the release: "
             f"{s['max_abs_float64']:.1e} in float64, {s['max_abs_float32']:.1e} in float32. "
             f"With NEST's default `u = 0.5` left in place: up to {s['max_abs_nest_default_u']:.2f} absolute, a "
             f"factor {s['max_ratio_nest_default_u']:.1f} (first releases {s['first_release_nest_default_u']}).", "",
             "| regime | neurons x T | NEST rate [Hz] | jaxlif run (dt 0.1 ms unless named) | rate [Hz] | rate vs NEST "
             "(paired SE) | NEST - jaxlif spike time: p1 / median / p99 [ms] | within 0.05 ms |",
             "|---|---|---|---|---|---|---|---|"]
    for c in result["cond"]:
        for name, r in c["runs"].items():
            p = r["times"]["percentiles_ms"]
            lines.append(f"| {c['regime']} | {c['neurons']} x {c['T_ms'] / 1000:g} s | {c['nest_rate_hz']:.3f} | "
                         f"{name} | {r['rate_hz']:.3f} | {100 * r['rate_rel_diff']:+.3f} % "
                         f"({100 * r['rate_rel_se']:.3f} %) | {p['p1']:+.4f} / {p['median']:+.4f} / {p['p99']:+.4f} | "
                         f"{100 * r['times']['within_0.05ms']:.2f} % |")
    c0 = result["cond"][0]
    lines += ["", f"NEST at resolution {c0['resolution']} ms, one thread: {c0['nest_seconds']:.0f} s for "
                  f"{c0['neurons']} x {c0['T_ms'] / 1000:g} s in the exercise regime."]
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--neurons", type=int, default=None, help="neurons per regime (default 200; quick 10)")
    p.add_argument("--T", type=float, default=None, help="duration [ms] (default 10000; quick 1000)")
    p.add_argument("--resolution", type=float, default=0.01, help="NEST resolution [ms]")
    p.add_argument("--stp-T", dest="stp_T", type=float, default=None, help="STP train length [ms] (default 3000)")
    p.add_argument("--regimes", default="exercise,high", help="comma-separated: exercise, high")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="NEST threads")
    p.add_argument("--fine", action="store_true", help="also jaxlif exp_euler float64 at dt = resolution")
    p.add_argument("--docs", default="", help="also write the table into this file's marked section")
    a = p.parse_args(argv)
    neurons = a.neurons or (10 if a.quick else 200)
    T = a.T or (1000.0 if a.quick else 10000.0)
    stp_T = a.stp_T or (1000.0 if a.quick else 3000.0)
    python = nest_python()
    runs = (("exp_euler", True, 1), ("exp_euler", False, 1), ("euler", False, 1))
    if a.fine:
        runs += (("exp_euler", True, int(round(0.1 / a.resolution))),)
    result = {"stp": stp_compare(a.seed, stp_T, python), "cond": []}
    print(json.dumps(result["stp"]), flush=True)
    for regime in a.regimes.split(","):
        result["cond"].append(cond_compare(regime, neurons, T, a.seed, resolution=a.resolution, python=python,
                                           threads=a.threads, runs=runs))
        print(json.dumps(result["cond"][-1]), flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nest_compare.json").write_text(json.dumps(result, indent=1))
    md = table(result)
    (out / "table.md").write_text(md + "\n")
    print(md)
    if a.docs:
        doc = Path(a.docs).read_text()
        head, rest = doc.split(MARK_BEGIN, 1)
        _, tail = rest.split(MARK_END, 1)
        Path(a.docs).write_text(f"{head}{MARK_BEGIN}\n{md}\n{MARK_END}{tail}")
    return result


if __name__ == "__main__":
    try:
        main()
    except NestUnavailable as err:
        sys.exit(f"nest_compare.py: {err}")
