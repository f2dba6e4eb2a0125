"""Bonus: a conductance LIF on depressing synapses (STP-LIF) against the same neuron on static synapses.

The tutorial's bonus explorer ("LIF_STP"): 80 excitatory and 20 inhibitory Poisson trains at 15 Hz, each
through its own Tsodyks-Markram synapse (gE_bar 4.8 nS, tau_E 5 ms, V_E 0 mV; gI_bar 6.4 nS, tau_I 10 ms,
V_I -80 mV; U0 0.45, tau_d = 500 tau_ratio, tau_f = 300 tau_ratio ms), neuron defaults, T 1000 ms,
dt 0.1 ms.  It asks how the output changes with tau_ratio and whether the neuron fires more irregularly
with STP than with static synapses.  All tau_ratios x trials run in one vmap
(``simulate_stp_lif_poisson``, every synapse with its own u, R, g), with threshold and without (FMP,
same key and input).  Statistics are taken over the whole run (as the tutorial would) and over the late
window t >= ``--late-start`` ms, after depression has settled.

Static-synapse comparison (``simulate_cond_lif_poisson``, same neuron, same trains, tau_syn and reversal
potentials), two choices of the static jump g_bar:

* **same mean conductance** (the main comparison): for each tau_ratio, g_bar such that the static
  synapses deliver the STP synapses' measured late-window mean conductance,
  ``g_bar = <g>_late / (K rate tau_syn)``.  Mean drive is then equal, so any difference in rate or
  irregularity comes from what STP does beyond lowering the mean (its history-dependent jumps);
* **at rest**: g_bar = U0 x g_bar_STP, the jump of a first spike on a rested synapse (what the neuron
  gets before depression sets in; independent of tau_ratio).

Figures: ``trace.png`` (voltage and total conductances, the tutorial's plot), ``tau_ratio.png``
(rate, ISI CV, FMP and conductances against tau_ratio, STP vs static), ``psth.png`` (rate over time).
Keys: ``root = fold_in(key(seed), 5)``; STP trial ``t`` (every tau_ratio) uses
``split(fold_in(root, 0), trials)[t]``, static trial ``t`` ``split(fold_in(root, 1), trials)[t]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments import _common as C  # noqa: E402
import jaxlif as jl  # noqa: E402

NAME = "bonus_stp_lif"
STREAM = 5
N_E, N_I = 80, 20
DEFAULTS = dict(T=1000.0, dt=0.1, trials=100, seed=0, batch_size=128, rate=15.0, tau_ratios=C.float_list("0.2:1.0:0.2"),
                late_start=500.0, trace_ratio=0.5, bin_ms=50.0)
QUICK = dict(T=300.0, trials=3, tau_ratios=[0.2, 1.0], late_start=150.0)
EXTRA = {
    "rate": ("rate of every input train, E and I [Hz]", float),
    "tau_ratios": ("tau_ratio values (tau_d = 500 x, tau_f = 300 x ms), list or start:stop:step", C.float_list),
    "late_start": ("start of the late (settled) window for the statistics [ms]", float),
    "trace_ratio": ("tau_ratio of the trace figure", float),
    "bin_ms": ("bin width of the time-resolved rate [ms]", float),
}
#: tau_d = TAU_D_PER_RATIO * tau_ratio, tau_f = TAU_F_PER_RATIO * tau_ratio [ms] (the tutorial's bonus).
TAU_D_PER_RATIO, TAU_F_PER_RATIO = 500.0, 300.0
TAU_RATIO_LABEL = "tau_ratio  (tau_d = 500 tau_ratio ms, tau_f = 300 tau_ratio ms)"


def _tau_ratio(value, cfg):
    """Positive, with tau_f = 300 tau_ratio ms (the shorter constant) at least dt."""
    for x in C._values(value):
        if not (np.isfinite(x) and x > 0):
            return f"tau_ratio must be positive (it scales tau_d = 500 x and tau_f = 300 x ms), got {x:g}"
        if TAU_F_PER_RATIO * x < cfg.dt:
            return (f"tau_ratio {x:g} gives tau_f = {TAU_F_PER_RATIO * x:g} ms < dt = {cfg.dt:g} ms; "
                    f"forward Euler needs tau_f >= dt")


def _late_start(value, cfg):
    if not (0.0 < value < cfg.T):
        return f"must lie inside (0, T={cfg.T:g}) ms, got {value:g}"


def _bin_ms(value, cfg):
    if not (np.isfinite(value) and cfg.dt <= value <= cfg.T):
        return f"must lie in [dt, T] = [{cfg.dt:g}, {cfg.T:g}] ms, got {value:g}"


CHECKS = {"rate": C.rates, "tau_ratios": _tau_ratio, "trace_ratio": _tau_ratio, "late_start": _late_start,
          "bin_ms": _bin_ms}


def _window_stats(spikes, T, dt, late_start):
    """Whole-run and late-window rate [Hz] and ISI CV of a raster ``(n_steps,)`` (jit-friendly)."""
    late = int(round(late_start / dt))
    late_spikes = spikes[late:]
    return (jl.spike_rate(spikes, T), jl.isi_cv(spikes),
            jl.spike_rate(late_spikes, T - late * dt), jl.isi_cv(late_spikes))


def _psth(spikes, dt, bin_ms):
    steps = int(round(bin_ms / dt))
    n = spikes.shape[-1] // steps
    return spikes[: n * steps].reshape(n, steps).sum(-1) * (1000.0 / (steps * dt))


def _trial_stats(simulate, key, params, cfg):
    """One trial with threshold and one without (same key, same input): rates, CVs, late FMP and g, PSTH."""
    T, dt, late = cfg.T, cfg.dt, int(round(cfg.late_start / cfg.dt))
    kw = dict(rate_E=cfg.rate, rate_I=cfg.rate, n_E=N_E, n_I=N_I, T=T, dt=dt)
    out = simulate(key, params, **kw)
    m, s = jl.fmp_stats(simulate(key, params, spiking=False, **kw).v[late:])
    return dict(zip(["rate", "cv", "rate_late", "cv_late"], _window_stats(out.spikes, T, dt, cfg.late_start)),
                fmp_mean=m, fmp_std=s, gE_late=out.g_E[late:].mean(), gI_late=out.g_I[late:].mean(),
                psth=_psth(out.spikes, dt, cfg.bin_ms))


def stp_batch(keys, tau_ratios, cfg):
    """STP-LIF statistics for every (tau_ratio, trial): one jitted vmap; arrays ``(n_ratio, trials, ...)``."""
    trials = keys.shape[0]
    k = jnp.tile(keys, len(tau_ratios))
    r = jnp.repeat(jnp.asarray(tau_ratios, jnp.result_type(float)), trials)

    @jax.jit
    def run(k, r):
        def one(key, tau_ratio):
            return _trial_stats(jl.simulate_stp_lif_poisson, key, jl.stp_lif_params(tau_ratio), cfg)
        return C.map_batched(one, (k, r), cfg.batch_size)

    out = run(k, r)
    return {name: np.asarray(v).reshape((len(tau_ratios), trials) + v.shape[1:]) for name, v in out.items()}


def static_batch(keys, gE_bars, gI_bars, cfg):
    """The same neuron on static synapses with jumps ``gE_bars, gI_bars`` [nS] (one per condition)."""
    trials = keys.shape[0]
    dtype = jnp.result_type(float)
    k = jnp.tile(keys, len(gE_bars))
    gE = jnp.repeat(jnp.asarray(gE_bars, dtype), trials)
    gI = jnp.repeat(jnp.asarray(gI_bars, dtype), trials)
    base = jl.STPLIFParams()

    @jax.jit
    def run(k, gE, gI):
        def one(key, gE_bar, gI_bar):
            params = jl.CondLIFParams(neuron=base.neuron, exc=base.exc._replace(g_bar=gE_bar),
                                      inh=base.inh._replace(g_bar=gI_bar))
            return _trial_stats(jl.simulate_cond_lif_poisson, key, params, cfg)
        return C.map_batched(one, (k, gE, gI), cfg.batch_size)

    out = run(k, gE, gI)
    return {name: np.asarray(v).reshape((len(gE_bars), trials) + v.shape[1:]) for name, v in out.items()}


def _cv_mean(cv, rate, window_ms):
    """Mean CV over trials with more than 3 spikes in the window (NaN if none), and its SEM."""
    ok = rate * window_ms / 1000.0 > 3.5
    return C.mean_sem(np.where(ok, cv, np.nan))


def run(cfg, log, files) -> dict:
    T, dt = cfg.T, cfg.dt
    caveat = f"  [--quick: {cfg.trials} trials/point, too few for conclusions]" if cfg.quick else ""
    ratios = np.asarray(cfg.tau_ratios, dtype=np.float32)
    root = C.experiment_key(cfg.seed, STREAM)
    stp_keys = jax.random.split(jax.random.fold_in(root, 0), cfg.trials)
    static_keys = jax.random.split(jax.random.fold_in(root, 1), cfg.trials)
    base = jl.STPLIFParams()
    U0 = float(base.stp_E.U0)
    late_ms = T - cfg.late_start

    # --- trace (the tutorial's figure) -------------------------------------------------------------
    run = jl.simulate_stp_lif_poisson(stp_keys[0], jl.stp_lif_params(cfg.trace_ratio), rate_E=cfg.rate,
                                      rate_I=cfg.rate, n_E=N_E, n_I=N_I, T=T, dt=dt)
    t = jl.time_axis(T, dt)
    v, spikes, g_E, g_I = (np.asarray(x) for x in (run.v, run.spikes, run.g_E, run.g_I))
    log(f"trace at tau_ratio {cfg.trace_ratio:g}: {spikes.sum()} spikes")

    # --- batches -----------------------------------------------------------------------------------
    stp = stp_batch(stp_keys, ratios, cfg)
    log(f"STP batch: {ratios.size} tau_ratios x {cfg.trials} trials, with and without threshold")
    rate_sec = cfg.rate / 1000.0
    gE_same = stp["gE_late"].mean(-1) / (N_E * rate_sec * float(base.exc.tau_syn))
    gI_same = stp["gI_late"].mean(-1) / (N_I * rate_sec * float(base.inh.tau_syn))
    gE_bars = np.append(gE_same, U0 * float(base.exc.g_bar))
    gI_bars = np.append(gI_same, U0 * float(base.inh.g_bar))
    static = static_batch(static_keys, gE_bars, gI_bars, cfg)
    log(f"static batch: {gE_bars.size} conditions x {cfg.trials} trials")
    same = {k: v[:-1] for k, v in static.items()}
    rest = {k: v[-1] for k, v in static.items()}

    fig, axes = plt.subplots(3, 1, figsize=(11, 7.5), sharex=True, height_ratios=[2, 1, 1])
    ax = axes[0]
    ax.plot(t, v, "b", lw=0.7, label="membrane potential")
    C.spike_marks(ax, t[spikes], float(base.neuron.V_th), top=-40.0, color="b", lw=0.7)
    ax.axhline(float(base.neuron.V_th), color="k", ls="--", lw=1, label="threshold")
    ax.axvline(cfg.late_start, color="0.5", ls=":", lw=1.2, label=f"late window starts ({cfg.late_start:g} ms)")
    ax.set(ylabel="V (mV)", title=(f"Does the STP-LIF neuron keep firing as its synapses depress?  tau_ratio "
                                   f"{cfg.trace_ratio:g} (tau_d {500 * cfg.trace_ratio:g} ms, tau_f "
                                   f"{300 * cfg.trace_ratio:g} ms), {N_E} E + {N_I} I trains at {cfg.rate:g} Hz"))
    ax.title.set_fontsize(10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for ax, g, col, name in [(axes[1], g_E, "r", "g_E"), (axes[2], g_I, "tab:blue", "g_I")]:
        ax.plot(t, g, color=col, lw=0.6, label=f"total {name} (STP)")
        ax.axhline(g[int(round(cfg.late_start / dt)):].mean(), color="k", ls="--", lw=1,
                   label="late-window mean")
        ax.set(ylabel=f"{name} (nS)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[2].set(xlabel="time (ms)")
    C.save_figure(fig, cfg.out, "trace.png", files)

    # --- against tau_ratio -------------------------------------------------------------------------
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    (a_rate, a_cv, a_g), (a_fm, a_fs, a_ratio) = axes
    series = [("STP, whole run", stp, "tab:purple", "o:", False),
              ("STP, late window", stp, "tab:purple", "o-", True),
              ("static, same mean g (late)", same, "tab:green", "s-", True)]
    for label, d, col, fmt, late in series:
        rate_key, cv_key = ("rate_late", "cv_late") if late else ("rate", "cv")
        a_rate.errorbar(ratios, *C.mean_sem(d[rate_key]), fmt=fmt, color=col, capsize=2, label=label)
        a_cv.errorbar(ratios, *_cv_mean(d[cv_key], d[rate_key], late_ms if late else T), fmt=fmt, color=col,
                      capsize=2, label=label)
    rest_rate = C.mean_sem(rest["rate_late"])
    rest_cv = _cv_mean(rest["cv_late"], rest["rate_late"], late_ms)
    for ax, (m, se) in [(a_rate, rest_rate), (a_cv, rest_cv)]:
        ax.axhline(m, color="tab:orange", ls="--", label=f"static at rest (U0 g_bar), {m:.2f}")
        ax.axhspan(m - se, m + se, color="tab:orange", alpha=0.15)
    a_cv.axhline(1.0, color="k", ls=":", lw=1, label="Poisson (CV = 1)")
    a_rate.set(xlabel=TAU_RATIO_LABEL, ylabel="output rate (Hz)", title="Output rate (mean +- SEM)")
    a_cv.set(xlabel=TAU_RATIO_LABEL, ylabel="ISI CV (trials with > 3 spikes)", title="Irregularity (ISI CV)")
    for name, col in [("gE_late", "r"), ("gI_late", "tab:blue")]:
        a_g.errorbar(ratios, *C.mean_sem(stp[name]), fmt="o-", color=col, capsize=2,
                     label=f"{name[:2].replace('g', 'g_')} STP (late mean)")
        a_g.axhline(rest[name].mean(), color=col, ls="--", lw=1, label=f"{name[:2].replace('g', 'g_')} static at rest")
    a_g.set(xlabel=TAU_RATIO_LABEL, ylabel="mean conductance (nS)", title="How much conductance is left after depression?")
    for label, d, col, fmt in [("STP", stp, "tab:purple", "o-"), ("static, same mean g", same, "tab:green", "s-")]:
        a_fm.errorbar(ratios, *C.mean_sem(d["fmp_mean"]), fmt=fmt, color=col, capsize=2, label=label)
        a_fs.errorbar(ratios, *C.mean_sem(d["fmp_std"]), fmt=fmt, color=col, capsize=2, label=label)
    a_fm.axhline(rest["fmp_mean"].mean(), color="tab:orange", ls="--", label="static at rest")
    a_fs.axhline(rest["fmp_std"].mean(), color="tab:orange", ls="--", label="static at rest")
    a_fm.axhline(float(base.neuron.V_th), color="k", ls=":", lw=1, label="threshold")
    a_fm.set(xlabel=TAU_RATIO_LABEL, ylabel="mean FMP, late window (mV)", title="Mean free membrane potential")
    a_fs.set(xlabel=TAU_RATIO_LABEL, ylabel="FMP std, late window (mV)", title="FMP fluctuations")
    eir = stp["gE_late"] / stp["gI_late"]
    a_ratio.errorbar(ratios, *C.mean_sem(eir), fmt="o-", color="k", capsize=2, label="STP (late)")
    a_ratio.axhline(rest["gE_late"].mean() / rest["gI_late"].mean(), color="tab:orange", ls="--",
                    label="static at rest")
    a_ratio.set_ylim(0.0, 1.3 * max(eir.mean(-1).max(), rest["gE_late"].mean() / rest["gI_late"].mean()))
    a_ratio.set(xlabel=TAU_RATIO_LABEL, ylabel="g_E / g_I (late mean)",
                title="Is excitation depressed more than inhibition?")
    for ax in axes.ravel():
        ax.legend(fontsize=7)
    fig.suptitle(f"How do output rate and irregularity depend on tau_ratio (tau_d = 500 tau_ratio ms, tau_f = "
                 f"300 tau_ratio ms), and is it more than the lost mean conductance?\nSTP vs static synapses "
                 f"({cfg.trials} trials/point; late window t >= {cfg.late_start:g} ms){caveat}", fontsize=11)
    fig.tight_layout()
    C.save_figure(fig, cfg.out, "tau_ratio.png", files)

    # --- time-resolved rate ------------------------------------------------------------------------
    fig, ax = plt.subplots(figsize=(9, 4.5))
    centers = (np.arange(stp["psth"].shape[-1]) + 0.5) * cfg.bin_ms
    colors = plt.cm.viridis(np.linspace(0, 0.9, ratios.size))
    for i, (r, col) in enumerate(zip(ratios, colors)):
        ax.plot(centers, stp["psth"][i].mean(0), "-", color=col,
                label=f"STP, tau_ratio {r:g} (tau_d {500 * r:g}, tau_f {300 * r:g} ms)")
    ax.plot(centers, rest["psth"].mean(0), "--", color="tab:orange", label="static at rest (U0 g_bar)")
    ax.axvline(cfg.late_start, color="0.5", ls=":", lw=1.2, label="late window starts")
    ax.set(xlabel="time (ms)", ylabel=f"output rate ({cfg.bin_ms:g} ms bins, Hz)",
           title=f"When does depression take the rate down?  Mean over {cfg.trials} trials{caveat}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    C.save_figure(fig, cfg.out, "psth.png", files)

    def agg(d, key):
        return C.mean_sem(d[key])

    rows = {}
    for name, d in [("stp", stp), ("static_same_mean", same)]:
        rows[name] = dict(
            rate_Hz=agg(d, "rate"), rate_late_Hz=agg(d, "rate_late"),
            isi_cv=_cv_mean(d["cv"], d["rate"], T), isi_cv_late=_cv_mean(d["cv_late"], d["rate_late"], late_ms),
            fmp_mean_late_mV=agg(d, "fmp_mean"), fmp_std_late_mV=agg(d, "fmp_std"),
            gE_late_nS=agg(d, "gE_late"), gI_late_nS=agg(d, "gI_late"), note="each entry: [means, SEMs] per tau_ratio")
    rows["static_at_rest"] = dict(
        gE_bar_nS=gE_bars[-1], gI_bar_nS=gI_bars[-1], rate_late_Hz=rest_rate, isi_cv_late=rest_cv,
        fmp_mean_late_mV=C.mean_sem(rest["fmp_mean"]), fmp_std_late_mV=C.mean_sem(rest["fmp_std"]))
    rows["static_same_mean"]["gE_bar_nS"] = gE_same
    rows["static_same_mean"]["gI_bar_nS"] = gI_same

    r0, r1 = ratios[0], ratios[-1]

    def change(pair, unit="", fmt=".2f"):
        """'falls from a to b' / 'rises ...' / 'stays at about a' between the first and last tau_ratio,
        judged against twice the combined SEM."""
        m, se = (np.asarray(x, dtype=float) for x in pair)
        a, b = m[0], m[-1]
        noise = 2.0 * np.hypot(se[0], se[-1]) if np.all(np.isfinite(se[[0, -1]])) else 0.0
        if not (np.isfinite(a) and np.isfinite(b)):
            return "is undefined (too few spikes)"
        if abs(b - a) <= noise:
            return f"stays at about {a:{fmt}}{unit} (change {b - a:+{fmt}}, within noise)"
        return f"{'falls' if b < a else 'rises'} from {a:{fmt}} to {b:{fmt}}{unit}"

    stp_r, same_r = rows["stp"], rows["static_same_mean"]
    conclusion = (
        f"From tau_ratio {r0:g} to {r1:g} (tau_d {500 * r0:g} -> {500 * r1:g} ms, tau_f {300 * r0:g} -> "
        f"{300 * r1:g} ms): the settled output rate (t >= {cfg.late_start:g} ms) {change(stp_r['rate_late_Hz'], ' Hz', '.1f')} "
        f"(static synapses at rest: {rest_rate[0]:.1f} Hz); the settled ISI CV {change(stp_r['isi_cv_late'])}, "
        f"the whole-run CV (what the tutorial would measure) {change(stp_r['isi_cv'])}. "
        f"The late g_E/g_I {change(C.mean_sem(eir))}; the mean FMP {change(stp_r['fmp_mean_late_mV'], ' mV', '.1f')} "
        f"and its std {change(stp_r['fmp_std_late_mV'], ' mV')}. Static synapses delivering the same mean "
        f"conductance: rate {change(same_r['rate_late_Hz'], ' Hz', '.1f')}, CV {change(same_r['isi_cv_late'])}, "
        f"FMP std at tau_ratio {r1:g} {same_r['fmp_std_late_mV'][0][-1]:.2f} mV vs "
        f"{stp_r['fmp_std_late_mV'][0][-1]:.2f} mV with STP.")
    if cfg.quick:
        conclusion += f" [--quick run: {cfg.trials} trials per point; the numbers are not conclusive.]"
    summary = dict(name=NAME, figures=files, units="ms, mV, nS, Hz", seed=cfg.seed, T=T, dt=dt, trials=cfg.trials, rate_Hz=cfg.rate,
                   tau_ratios=ratios, late_start_ms=cfg.late_start, key_stream=STREAM,
                   static_equivalent=("same mean conductance: static g_bar = STP late-window mean conductance "
                                      "/ (K rate tau_syn), per tau_ratio; plus 'at rest' g_bar = U0 g_bar_STP"),
                   trace=dict(tau_ratio=cfg.trace_ratio, n_spikes=int(spikes.sum())),
                   tau_ratio_definition="tau_d = 500 tau_ratio ms, tau_f = 300 tau_ratio ms (E and I synapses)",
                   results=rows, conclusion=conclusion, runtime_s=log.elapsed)
    return summary


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
