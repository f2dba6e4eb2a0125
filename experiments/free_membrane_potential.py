"""Section 1.2: the free membrane potential (FMP) against the membrane potential with threshold.

Coding exercise 1.2 of the synaptic-transmission tutorial: a conductance-based LIF (neuron defaults of
docs/conventions.md, section 6) driven by 80 excitatory and 20 inhibitory Poisson trains at 10 Hz (gE_bar = gI_bar = 2.4 nS,
tau_E 2 ms, tau_I 5 ms, V_E 0 mV, V_I -80 mV), T = 1000 ms, dt = 0.1 ms.  The FMP is the same run
with the threshold removed; ``simulate_cond_lif_poisson`` draws the input inside its scan from the
key alone, so ``spiking=True`` and ``spiking=False`` with one key see exactly the same input.

* ``trace.png``: V with threshold and the FMP of trial 0, threshold and mean FMP marked, with the
  conductances g_E and g_I below (the tutorial's figure and explorer layout);
* ``trials.png``: FMP mean and std, output rate and ISI CV across ``--trials`` trials (one vmap),
  with the shot-noise (Campbell) approximation (docs/conventions.md, section 7) marked.  Output rates
  are multiples of 1000/T Hz (whole spike counts), so their histogram bins are whole multiples too.

Keys: ``keys = jax.random.split(fold_in(key(seed), 2), trials)``; trial 0 is the one drawn.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments import _common as C  # noqa: E402
import jaxlif as jl  # noqa: E402

NAME = "free_membrane_potential"
STREAM = 2
DEFAULTS = dict(T=1000.0, dt=0.1, trials=200, seed=0, batch_size=256, rate_E=10.0, rate_I=10.0, g_bar=2.4)
QUICK = dict(T=200.0, trials=4)
EXTRA = {
    "rate_E": ("rate of each of the 80 excitatory trains [Hz]", float),
    "rate_I": ("rate of each of the 20 inhibitory trains [Hz]", float),
    "g_bar": ("gE_bar = gI_bar, conductance jump per input spike [nS]", float),
}
CHECKS = {"rate_E": C.rates, "rate_I": C.rates, "g_bar": C.nonnegative("nS")}
N_E, N_I = 80, 20


def exercise_params(g_bar: float = 2.4) -> jl.CondLIFParams:
    """Exercise 1.2 (g_bar = 2.4 nS) or explorer 1.2 (g_bar = 3 nS) conductance LIF."""
    return jl.CondLIFParams(neuron=jl.LIFParams(),
                            exc=jl.SynParams(g_bar=g_bar, tau_syn=2.0, E_rev=0.0),
                            inh=jl.SynParams(g_bar=g_bar, tau_syn=5.0, E_rev=-80.0))


def run_trials(keys, params, rate_E, rate_I, T, dt, batch_size=256):
    """Per trial: rate [Hz], ISI CV, FMP mean [mV], FMP std [mV] (one jitted, vmapped batch over keys)."""

    @jax.jit
    def batch(keys):
        def one(key):
            kw = dict(rate_E=rate_E, rate_I=rate_I, n_E=N_E, n_I=N_I, T=T, dt=dt)
            spikes = jl.simulate_cond_lif_poisson(key, params, record=False, **kw).spikes
            v_fmp = jl.simulate_cond_lif_poisson(key, params, spiking=False, **kw).v
            m, s = jl.fmp_stats(v_fmp)
            return jl.spike_rate(spikes, T), jl.isi_cv(spikes), m, s
        return C.map_batched(one, (keys,), batch_size)

    return [np.asarray(x) for x in batch(keys)]


def histogram_bins(x, quantum: float | None = None, max_bins: int = 30):
    """Bin edges for a histogram of ``x``; for values on a lattice ``k * quantum`` (rates from whole
    spike counts) the edges sit half-way between lattice points and each bin holds the same number
    of them, so no bin is empty merely because it falls between two possible values."""
    x = np.asarray(x, dtype=float)
    lo, hi = float(np.min(x)), float(np.max(x))
    if quantum is None:
        if hi == lo:
            return np.array([lo - 0.5, hi + 0.5])
        return np.linspace(lo, hi, min(max_bins, max(5, x.size // 5)) + 1)
    k_lo, k_hi = int(round(lo / quantum)), int(round(hi / quantum))
    per_bin = max(1, math.ceil((k_hi - k_lo + 1) / max_bins))
    edges = np.arange(k_lo, k_hi + per_bin + 1, per_bin) - 0.5
    return edges * quantum


def fmp_conclusion(fmp_mean, fmp_std, rate, cv, approx_mu, approx_sd, V_th, cfg) -> str:
    """The section-1.2 answer, read off the numbers: where the mean FMP sits and what drives the spikes."""
    gap = V_th - fmp_mean.mean()
    where = f"{gap:.1f} mV below threshold" if gap > 0 else f"{-gap:.1f} mV above threshold"
    regime = ("fluctuation-driven: the fluctuations, not the mean, bring V to threshold" if gap > 0
              else "mean-driven: the mean alone takes V over threshold")
    cv_txt = f"{cv[cv > 0].mean():.2f}" if np.any(cv > 0) else "undefined (3 or fewer spikes)"
    text = (f"The mean FMP ({fmp_mean.mean():.1f} mV; shot-noise approximation {approx_mu:.1f} mV) sits {where}, "
            f"with fluctuations of {fmp_std.mean():.1f} mV (approx. {approx_sd:.1f}); the neuron fires "
            f"{rate.mean():.1f} Hz with ISI CV {cv_txt} ({regime}).")
    if cfg.quick:
        text += f" [--quick run: {cfg.trials} trials of {cfg.T:g} ms; the numbers are not conclusive.]"
    return text


def run(cfg, log, files) -> dict:
    T, dt = cfg.T, cfg.dt
    params = exercise_params(cfg.g_bar)
    keys = jax.random.split(C.experiment_key(cfg.seed, STREAM), cfg.trials)
    kw = dict(rate_E=cfg.rate_E, rate_I=cfg.rate_I, n_E=N_E, n_I=N_I, T=T, dt=dt)

    run = jl.simulate_cond_lif_poisson(keys[0], params, **kw)
    fmp = jl.simulate_cond_lif_poisson(keys[0], params, spiking=False, **kw)
    t = jl.time_axis(T, dt)
    v, v_fmp, spikes = np.asarray(run.v), np.asarray(fmp.v), np.asarray(run.spikes)
    g_E, g_I = np.asarray(run.g_E), np.asarray(run.g_I)
    mean0, std0 = (float(x) for x in jl.fmp_stats(fmp.v))
    rate0, cv0 = float(jl.spike_rate(run.spikes, T)), float(jl.isi_cv(run.spikes))
    V_th = float(params.neuron.V_th)
    approx_mu, approx_sd = C.shot_noise_fmp(cfg.rate_E, cfg.rate_I, gE_bar=cfg.g_bar, gI_bar=cfg.g_bar)
    log(f"trial 0: rate {rate0:.1f} Hz, CV {cv0:.2f}, FMP {mean0:.2f} +- {std0:.2f} mV")

    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True, height_ratios=[2.2, 1, 1])
    ax = axes[0]
    ax.plot(t, v_fmp, color="tab:red", lw=0.8, label="free membrane potential (no threshold)", zorder=2)
    ax.plot(t, v, color="tab:blue", lw=0.8, alpha=0.7, label="membrane potential with threshold", zorder=1)
    C.spike_marks(ax, t[spikes], V_th, top=-40.0, color="tab:blue", lw=0.8, alpha=0.7)
    ax.axhline(V_th, color="k", ls="--", lw=1.5, label=f"spike threshold {V_th:g} mV")
    ax.axhline(mean0, color="tab:red", ls="--", lw=1.5, label=f"mean FMP {mean0:.1f} mV")
    ax.set(ylabel="V (mV)", ylim=(-77, -39),
           title=(f"Where does the free membrane potential sit relative to threshold?  "
                  f"{N_E} E + {N_I} I trains at {cfg.rate_E:g}/{cfg.rate_I:g} Hz "
                  f"(rate {rate0:.0f} Hz, CV {cv0:.2f}, FMP std {std0:.1f} mV)"))
    ax.title.set_fontsize(10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes[1].plot(t, g_E, color="tab:red", lw=0.6)
    axes[1].set(ylabel="g_E (nS)")
    axes[2].plot(t, g_I, color="tab:blue", lw=0.6)
    axes[2].set(ylabel="g_I (nS)", xlabel="time (ms)")
    C.save_figure(fig, cfg.out, "trace.png", files)

    rate, cv, fmp_mean, fmp_std = run_trials(keys, params, cfg.rate_E, cfg.rate_I, T, dt, cfg.batch_size)
    log(f"{cfg.trials} trials in one vmap: FMP {fmp_mean.mean():.2f} +- {fmp_std.mean():.2f} mV")

    fig, axes = plt.subplots(1, 4, figsize=(13, 3.8))
    panels = [(fmp_mean, "FMP mean (mV)", approx_mu, None), (fmp_std, "FMP std (mV)", approx_sd, None),
              (rate, "output rate (Hz)", None, 1000.0 / T), (cv, "ISI CV", 1.0, None)]
    for ax, (x, label, ref, quantum) in zip(axes, panels):
        ax.hist(x, bins=histogram_bins(x, quantum), color="0.65")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.axvline(np.mean(x), color="tab:red", lw=1.5)
        text = f"mean {np.mean(x):.2f}"
        if ref is not None:
            ax.axvline(ref, color="k", ls="--", lw=1.5)
            text += f", reference {ref:.2f}"
        ax.set(xlabel=label, ylabel="trials")
        ax.set_title(text, fontsize=9)
    axes[0].axvline(V_th, color="tab:blue", ls=":", lw=1.5)
    handles = [plt.Rectangle((0, 0), 1, 1, color="0.65"), plt.Line2D([], [], color="tab:red", lw=1.5),
               plt.Line2D([], [], color="k", ls="--", lw=1.5), plt.Line2D([], [], color="tab:blue", ls=":")]
    fig.legend(handles, [f"{cfg.trials} trials (histogram)", "mean over trials",
                         "reference: shot-noise approximation (FMP), Poisson CV = 1",
                         f"spike threshold {V_th:g} mV"],
               loc="lower center", ncol=4, fontsize=8, bbox_to_anchor=(0.5, -0.04))
    caveat = f"  [--quick: {cfg.trials} trials, too few for conclusions]" if cfg.quick else ""
    fig.suptitle("How much do FMP statistics, rate and irregularity vary from trial to trial, "
                 f"and does the shot-noise approximation predict the FMP?{caveat}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    C.save_figure(fig, cfg.out, "trials.png", files)

    summary = dict(
        name=NAME, figures=files, units="ms, mV, nS, Hz", seed=cfg.seed, T=T, dt=dt, trials=cfg.trials,
        rate_E=cfg.rate_E, rate_I=cfg.rate_I, g_bar=cfg.g_bar, key_stream=STREAM,
        trial0=dict(rate_Hz=rate0, isi_cv=cv0, fmp_mean_mV=mean0, fmp_std_mV=std0, n_spikes=int(spikes.sum())),
        trials_stats=dict(rate_Hz=C.mean_sem(rate), isi_cv=C.mean_sem(cv), fmp_mean_mV=C.mean_sem(fmp_mean),
                          fmp_std_mV=C.mean_sem(fmp_std), note="[mean over trials, SEM]"),
        approximation=dict(fmp_mean_mV=approx_mu, fmp_std_mV=approx_sd),
        conclusion=fmp_conclusion(fmp_mean, fmp_std, rate, cv, approx_mu, approx_sd, V_th, cfg),
        runtime_s=log.elapsed)
    return summary


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
