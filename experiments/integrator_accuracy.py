"""Accuracy, convergence order and cost of the two integrators: the tutorial's forward Euler
(``integrator="euler"``, the default) and exponential Euler with spike times within the step
(``integrator="exp_euler"``; docs/conventions.md section 10).

Every accuracy number is computed in float64 (``jax.enable_x64``) on the same inputs for every dt:
input spike counts are drawn once on the coarsest grid (``--dts`` maximum, 0.2 ms) and placed at the
same times on every finer grid, so each dt solves the same continuous problem.  Problems:

1. ``lif_dc``: current LIF (neuron defaults of docs/conventions.md 6: tau_m 10 ms, g_L 10 nS, E_L = V_reset =
   V_init = -75 mV, V_th -55 mV, t_ref 2 ms) with a constant 300 pA.  Reference: the closed form, first
   spike at t* = tau_m ln((V_inf - V_reset)/(V_inf - V_th)) and every later one t* + t_ref after the
   previous; error = max |t_k - t_k*| over the spikes of ``--T-dc`` ms.
2. ``cond_fmp``: conductance LIF without threshold (free membrane potential), exercise 1.2 synapses, 80 E +
   20 I Poisson trains at 10 Hz; error = max |v - v_ref| over the samples of the coarsest grid.
3. ``cond_exercise`` and ``cond_high``: conductance LIF with threshold on ``--trials`` neurons (own inputs
   each) for ``--T`` ms: exercise 1.2 as it stands (2.4 nS, 80 E + 20 I trains at 10 Hz; about 25 Hz out,
   ``cond_exercise``), and a high-conductance regime (the same synapses, 80 E at 100 Hz, 20 I at 400 Hz:
   mean g_tot about 145 nS, tau_eff about 0.7 ms, about 50 Hz out, ``cond_high``).  Errors: the rate (all
   spikes) relative to the reference, and for each reference spike the distance to the nearest spike of
   the run (median; fraction within 0.05 ms).
   The convergence order uses the mean distance over the spikes matched within 1 ms.

The reference of problems 2 and 3 is ``exp_euler`` at ``--dt-ref`` (0.001 ms); its own error is
estimated by comparing it with ``exp_euler`` at twice that step (printed).  Orders are least-squares
slopes of log(error) on log(dt) over ``--dts``.

Speed: ``simulate_cond_lif_poisson`` for one key and for ``--trials`` keys (``jax.vmap``), float32,
T = 1000 ms, ``--dt`` (0.1 ms), ``record=False``, best of ``--repeats`` after compilation, both integrators
side by side (printed, and in the JSON; the table in docs/conventions.md section 10 quotes a run).

Writes ``integrator_accuracy.json``, ``table.md`` (the table of docs/conventions.md section 10, also
written there with ``--docs docs/conventions.md``), ``convergence.png`` (error vs dt, log-log).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments import _common as C  # noqa: E402
import jaxlif as jl  # noqa: E402

NAME = "integrator_accuracy"
STREAM = 21
DEFAULTS = dict(T=5000.0, dt=0.1, trials=40, seed=0, dts=[0.2, 0.1, 0.05, 0.025, 0.0125], dt_ref=0.001, T_dc=200.0,
                T_fmp=500.0, repeats=5, docs="")
QUICK = dict(T=100.0, trials=2, dts=[0.2, 0.1], dt_ref=0.025, T_dc=50.0, T_fmp=50.0, repeats=1)
EXTRA = {
    "dts": ("time steps compared [ms]; each must divide the largest", C.float_list),
    "dt_ref": ("time step of the exp_euler reference [ms]", float),
    "T_dc": ("duration of the constant-current LIF run [ms]", float),
    "T_fmp": ("duration of the free-membrane-potential run [ms]", float),
    "repeats": ("timed repetitions (best of) for the speed comparison", int),
    "docs": ("Markdown file whose integrator-accuracy section receives the table ('' for none)", str),
}
CHECKS = {"dts": C.positive("ms"), "dt_ref": C.positive("ms"), "T_dc": C.positive("ms"),
          "T_fmp": C.positive("ms"), "repeats": C.integer_counts(1), "trials": C.integer_counts(1)}
INTEGRATORS = ("euler", "exp_euler")
N_E, N_I = 80, 20
REGIMES = {   # name: (gE_bar, gI_bar, rate_E, rate_I) with tau_E 2 ms, tau_I 5 ms, E_E 0 mV, E_I -80 mV
    "cond_exercise": (2.4, 2.4, 10.0, 10.0),
    "cond_high": (2.4, 2.4, 100.0, 400.0),
}
WITHIN = 0.05   # ms: the spike-time tolerance of issue 21


def cond_params(gE_bar: float, gI_bar: float) -> jl.CondLIFParams:
    return jl.CondLIFParams(jl.LIFParams(), jl.SynParams(gE_bar, 2.0, 0.0), jl.SynParams(gI_bar, 5.0, -80.0))


def _ratio(dt_coarse: float, dt: float) -> int:
    m = round(dt_coarse / dt)
    if m < 1 or abs(m * dt - dt_coarse) > 1e-9 * dt_coarse:
        raise SystemExit(f"dt = {dt} ms does not divide the coarse input grid of {dt_coarse} ms")
    return m


def run_cond(params, counts_E, counts_I, dt: float, m: int, integrator: str, spiking: bool):
    """``jaxlif.cond_lif_step`` on a grid ``m`` times finer than the counts' (``dt`` = coarse / ``m``), the
    counts of coarse step ``k`` at fine index ``k m``, vmapped over neurons.

    Returns ``(spike_time, v)``, both ``(B, K)`` for ``K`` coarse steps: the time [ms] of the spike in the
    ``k``-th coarse interval (NaN if none; at most one, since t_ref > coarse step) and the potential at the
    coarse sample ``k``.  An outer scan over coarse steps, an inner one over the ``m`` fine steps, so
    that memory stays O(K) whatever ``m``."""
    if not spiking:
        params = params._replace(neuron=params.neuron._replace(V_th=jnp.inf))

    def neuron(n_E, n_I):
        state0 = jl.neurons.cond_lif_init(params)
        if integrator == "exp_euler":   # an input at index 0 enters g at t = 0
            state0 = state0._replace(g_E=params.exc.g_bar * n_E[0], g_I=params.inh.g_bar * n_I[0])
        nxt_E, nxt_I = jnp.append(n_E[1:], 0.0), jnp.append(n_I[1:], 0.0)   # counts at coarse k + 1

        def coarse(state, x):
            k, e, i = x

            def fine(carry, j):
                st, t_spk = carry
                last = j == m - 1
                st_new, out = jl.cond_lif_step(params, st, (jnp.where(last, e, 0.0), jnp.where(last, i, 0.0), 0.0),
                                               dt, integrator=integrator)
                t = (k * m + j) * dt + (out[4] if integrator == "exp_euler" else 0.0)
                return (st_new, jnp.where(out[1], t, t_spk)), None

            v_k = state.neuron.v
            (state, t_spk), _ = jax.lax.scan(fine, (state, jnp.nan), jnp.arange(m))
            return state, (t_spk, v_k)

        K = n_E.shape[0]
        _, (t_spk, v) = jax.lax.scan(coarse, state0, (jnp.arange(K), nxt_E, nxt_I))
        return t_spk, v

    return jax.jit(jax.vmap(neuron))(counts_E, counts_I)


def draw_counts(key, B: int, rate_E: float, rate_I: float, T: float, dt: float):
    """``(B, K)`` pooled Poisson counts of the 80 E and 20 I trains on the coarse grid; index 0 set to 0
    (the Euler scheme never sees it, so neither integrator gets it)."""
    keys = jax.random.split(key, 2 * B)
    cE = np.stack([np.asarray(jl.poisson_counts(k, rate_E, N_E, T=T, dt=dt)) for k in keys[:B]])
    cI = np.stack([np.asarray(jl.poisson_counts(k, rate_I, N_I, T=T, dt=dt)) for k in keys[B:]])
    cE[:, 0] = cI[:, 0] = 0.0
    return cE, cI


def spike_errors(t_run: np.ndarray, t_ref: np.ndarray) -> dict:
    """Rate error and spike-time distances of a run against the reference (both ``(B, K)``, NaN = none)."""
    n_run, n_ref = np.isfinite(t_run).sum(), np.isfinite(t_ref).sum()
    dist = []
    for a, b in zip(t_run, t_ref):
        a, b = np.sort(a[np.isfinite(a)]), b[np.isfinite(b)]
        if len(b) == 0:
            continue
        if len(a) == 0:
            dist.append(np.full(len(b), np.inf))
            continue
        idx = np.clip(np.searchsorted(a, b), 1, len(a) - 1) if len(a) > 1 else np.zeros(len(b), int)
        d = np.minimum(np.abs(a[idx] - b), np.abs(a[np.maximum(idx - 1, 0)] - b))
        dist.append(d)
    d = np.concatenate(dist) if dist else np.zeros(0)
    matched = d[d < 1.0]
    return dict(rate_rel=float(n_run / n_ref - 1.0) if n_ref else float("nan"), n_spikes_ref=int(n_ref),
                n_spikes=int(n_run), median_dt_ms=float(np.median(d)) if len(d) else float("nan"),
                within_005=float(np.mean(d <= WITHIN)) if len(d) else float("nan"),
                mean_matched_ms=float(matched.mean()) if len(matched) else float("nan"),
                p95_ms=float(np.quantile(d, 0.95)) if len(d) else float("nan"))


#: Errors below this are rounding (the method is exact for the problem): no order is fitted to them.
ROUNDING = 1e-10


def order(dts, errors) -> float:
    """Least-squares slope of log(error) on log(dt) (NaN when an error is 0, rounding or not finite)."""
    e = np.asarray(errors, float)
    if len(e) < 2 or not np.all(np.isfinite(e) & (e > ROUNDING)):
        return float("nan")
    return float(np.polyfit(np.log(dts), np.log(e), 1)[0])


def _order_text(dts, errors, exact_ok: bool = True) -> str:
    """The fitted order, or "exact (rounding)" when every error is rounding (``exact_ok``: a continuous error
    measure; a rate error of 0 only means equal spike counts)."""
    e = np.asarray(errors, float)
    if exact_ok and len(e) and np.all(np.isfinite(e)) and np.max(e) <= ROUNDING:
        return "exact (rounding)"
    o = order(dts, e)
    return "-" if not np.isfinite(o) else f"{o:.2f}"


def lif_dc(dts, T: float) -> dict:
    """Problem 1: constant-current LIF against its closed-form spike times."""
    p = jl.LIFParams(V_init=-75.0)
    I = 300.0
    V_inf = p.E_L + I / p.g_L
    t_star = p.tau_m * np.log((V_inf - p.V_reset) / (V_inf - p.V_th))
    want = t_star + np.arange(int(T // (t_star + p.t_ref)) + 1) * (t_star + p.t_ref)
    out = {}
    for integ in INTEGRATORS:
        errs = []
        for dt in dts:
            r = jl.simulate_lif(p, np.full(jl.n_steps(T, dt), I), dt=dt, integrator=integ)
            k = np.nonzero(np.asarray(r.spikes))[0]
            t = k * dt + (np.asarray(r.spike_offset)[k] if integ == "exp_euler" else 0.0)
            n = min(len(t), np.sum(want < T - dt))
            errs.append(float(np.max(np.abs(t[:n] - want[:n]))) if len(t) >= n > 0 else float("nan"))
        out[integ] = errs
    out["t_star"] = float(t_star)
    return out


def cond_fmp(key, dts, dt_ref: float, T: float) -> dict:
    """Problem 2: free membrane potential, max |v - v_ref| on the coarse samples."""
    dc = max(dts)
    params = cond_params(2.4, 2.4)
    cE, cI = draw_counts(key, 1, 10.0, 10.0, T, dc)
    _, v_ref = run_cond(params, cE, cI, dt_ref, _ratio(dc, dt_ref), "exp_euler", False)
    _, v_ref2 = run_cond(params, cE, cI, 2 * dt_ref, _ratio(dc, 2 * dt_ref), "exp_euler", False)
    out = {"ref_self_error": float(np.max(np.abs(np.asarray(v_ref2) - np.asarray(v_ref))))}
    for integ in INTEGRATORS:
        out[integ] = [float(np.max(np.abs(np.asarray(run_cond(params, cE, cI, dt, _ratio(dc, dt), integ, False)[1])
                                          - np.asarray(v_ref)))) for dt in dts]
    return out


def cond_spikes(key, regime: str, dts, dt_ref: float, B: int, T: float, log) -> dict:
    """Problem 3: spiking conductance LIF, rates and spike times against the reference."""
    gE, gI, rE, rI = REGIMES[regime]
    dc = max(dts)
    params = cond_params(gE, gI)
    cE, cI = draw_counts(key, B, rE, rI, T, dc)
    t_ref = np.asarray(run_cond(params, cE, cI, dt_ref, _ratio(dc, dt_ref), "exp_euler", True)[0])
    t_ref2 = np.asarray(run_cond(params, cE, cI, 2 * dt_ref, _ratio(dc, 2 * dt_ref), "exp_euler", True)[0])
    ref_rate = 1000.0 * np.isfinite(t_ref).sum() / (B * T)
    out = {"ref_rate_hz": float(ref_rate), "ref_self": spike_errors(t_ref2, t_ref)}
    log(f"{regime}: reference rate {ref_rate:.3f} Hz over {B} neurons x {T:g} ms "
        f"(exp_euler at {dt_ref:g} vs {2 * dt_ref:g} ms: rate {out['ref_self']['rate_rel']:+.2e}, "
        f"median {out['ref_self']['median_dt_ms']:.1e} ms)")
    for integ in INTEGRATORS:
        out[integ] = [spike_errors(np.asarray(run_cond(params, cE, cI, dt, _ratio(dc, dt), integ, True)[0]), t_ref)
                      for dt in dts]
    return out


def speed(trials: int, repeats: int, dt: float) -> dict:
    """Wall time [s] of ``simulate_cond_lif_poisson`` (T = 1000 ms, float32) for one neuron and for ``trials``
    neurons (``jax.vmap`` over keys), both integrators compiled first and then timed in alternation (so a
    busy host slows both alike), best of ``repeats``."""
    out = {}
    for B in sorted({1, trials}):
        keys = jax.random.split(jax.random.key(0), B)
        fns = {integ: jax.jit(jax.vmap(lambda k, integ=integ: jl.simulate_cond_lif_poisson(
            k, dt=dt, record=False, integrator=integ).spikes.sum())) for integ in INTEGRATORS}
        row = {integ: float("inf") for integ in INTEGRATORS}
        for fn in fns.values():
            jax.block_until_ready(fn(keys))
        for _ in range(repeats):
            for integ, fn in fns.items():
                t0 = time.perf_counter()
                jax.block_until_ready(fn(keys))
                row[integ] = min(row[integ], time.perf_counter() - t0)
        row["ratio"] = row["exp_euler"] / row["euler"]
        out[f"B={B}"] = row
    return out


def table(res: dict, dts) -> str:
    """The Markdown table of docs/conventions.md section 10."""
    fmt = lambda x: "-" if x is None or not np.isfinite(x) else f"{x:.2e}"
    head = "| problem | error measure | integrator | " + " | ".join(f"dt {dt:g}" for dt in dts) + " | order |"
    rows = [head, "|" + "---|" * (len(dts) + 4)]
    for integ in INTEGRATORS:
        e = res["lif_dc"][integ]
        rows.append(f"| LIF, 300 pA DC | max spike-time error [ms] vs closed form | {integ} | "
                    + " | ".join(fmt(x) for x in e) + f" | {_order_text(dts, e)} |")
    for integ in INTEGRATORS:
        e = res["cond_fmp"][integ]
        rows.append(f"| cond. LIF, FMP | max abs V error [mV] | {integ} | "
                    + " | ".join(fmt(x) for x in e) + f" | {_order_text(dts, e)} |")
    for regime in REGIMES:
        for integ in INTEGRATORS:
            rs = res[regime][integ]
            rate = [abs(r["rate_rel"]) for r in rs]
            rows.append(f"| {regime} | abs. rate error (relative) | {integ} | "
                        + " | ".join(fmt(x) for x in rate) + f" | {_order_text(dts, rate, False)} |")
            mean = [r["mean_matched_ms"] for r in rs]
            rows.append(f"| {regime} | mean spike-time error [ms] | {integ} | "
                        + " | ".join(fmt(x) for x in mean) + f" | {_order_text(dts, mean)} |")
            within = [r["within_005"] for r in rs]
            rows.append(f"| {regime} | spikes within 0.05 ms | {integ} | "
                        + " | ".join(f"{100 * x:.1f} %" for x in within) + " | |")
    return "\n".join(rows)


def run(cfg, log, files) -> dict:
    dts = sorted(cfg.dts, reverse=True)
    for dt in dts + [cfg.dt_ref, 2 * cfg.dt_ref]:
        _ratio(max(dts), dt)
    key = C.experiment_key(cfg.seed, STREAM)
    k_fmp, k_spk, k_high = jax.random.split(key, 3)
    res = {}
    with jax.enable_x64(True):
        res["lif_dc"] = lif_dc(dts, cfg.T_dc)
        log(f"lif_dc: t* = {res['lif_dc']['t_star']:.6f} ms; max errors euler {res['lif_dc']['euler']}, "
            f"exp_euler {res['lif_dc']['exp_euler']}")
        res["cond_fmp"] = cond_fmp(k_fmp, dts, cfg.dt_ref, cfg.T_fmp)
        log(f"cond_fmp: reference self-error {res['cond_fmp']['ref_self_error']:.1e} mV")
        for regime, k in zip(REGIMES, (k_spk, k_high)):
            res[regime] = cond_spikes(k, regime, dts, cfg.dt_ref, cfg.trials, cfg.T, log)
    res["speed"] = speed(cfg.trials, cfg.repeats, cfg.dt)
    for batch, row in res["speed"].items():
        log(f"speed, {batch} neurons x 1000 ms at dt {cfg.dt:g} ms: euler {row['euler'] * 1e3:.1f} ms, exp_euler "
            f"{row['exp_euler'] * 1e3:.1f} ms (ratio {row['ratio']:.2f})")
    md = table(res, dts) + "\n\n" + "\n".join(
        f"Speed, {batch} (`simulate_cond_lif_poisson`, T = 1000 ms, dt = {cfg.dt:g} ms, float32, best of "
        f"{cfg.repeats}, {jax.devices()[0].platform.upper()}): euler {row['euler'] * 1e3:.1f} ms, exp_euler "
        f"{row['exp_euler'] * 1e3:.1f} ms, ratio {row['ratio']:.2f}." for batch, row in res["speed"].items())
    print(md, flush=True)
    (cfg.out / "table.md").write_text(md + "\n")
    if cfg.docs:
        C.write_section(Path(cfg.docs), NAME, md)

    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    panels = [("LIF, 300 pA DC (closed form)", "max spike-time error [ms]",
               {i: res["lif_dc"][i] for i in INTEGRATORS}),
              ("conductance LIF, free membrane potential", "max |V - V_ref| [mV]",
               {i: res["cond_fmp"][i] for i in INTEGRATORS})]
    for regime in REGIMES:
        panels.append((f"{regime}: {cfg.trials} neurons x {cfg.T:g} ms", "mean spike-time error [ms]",
                       {i: [r["mean_matched_ms"] for r in res[regime][i]] for i in INTEGRATORS}))
    for ax, (title, ylabel, data) in zip(axes, panels):
        for integ, marker in zip(INTEGRATORS, "os"):
            e = np.asarray(data[integ], float)
            ok = np.isfinite(e) & (e > 0)
            ax.loglog(np.asarray(dts)[ok], e[ok], marker + "-", label=f"{integ} (order {_order_text(dts, e)})")
        ref = np.asarray(dts)
        ax.loglog(ref, ref / ref[0] * 1e-2, "k:", lw=0.8, label="slope 1")
        ax.loglog(ref, (ref / ref[0]) ** 2 * 1e-3, "k--", lw=0.8, label="slope 2")
        ax.set_xlabel("time step dt [ms]")
        ax.set_ylabel(ylabel)
        ax.set_xticks(dts, [f"{dt:g}" for dt in dts], minor=False)
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    C.save_figure(fig, cfg.out, "convergence.png", files)
    return dict(name=NAME, figures=files, units="ms, mV, Hz", seed=cfg.seed, dts=dts, dt_ref=cfg.dt_ref,
                T=cfg.T, trials=cfg.trials, regimes=REGIMES, results=res, table=md)


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
