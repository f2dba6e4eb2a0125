"""Explorer 1.2 as a grid, and the E/I balance question answered with a plot.

The tutorial's interactive explorer ("EI_isi_regularity") shows one trial at a time for a slider pair
(exc_rate 2..20 Hz step 2, inh_rate 10..60 Hz step 5) of a conductance LIF with 80 E + 20 I Poisson
trains, gE_bar = gI_bar = 3 nS, tau_E 2 ms, tau_I 5 ms, T 1000 ms, dt 0.1 ms.  Here every slider
position and several trials each run in ONE vmapped batch, both with threshold (output rate, ISI CV)
and without (free membrane potential mean and std; same key, hence the same input):

* ``heatmaps.png``: rate, ISI CV, FMP mean and FMP std over exc_rate x inh_rate (trial means), with the
  contour where the mean FMP equals the threshold and the lines of constant mean FMP used below;
* ``cv_vs_fmp.png``: the tutorial's question "is there a relation between the mean FMP and the
  irregularity (CV)?  what happens when the mean FMP is above or below threshold?";
* ``balance.png``: the E/I-balance question: along lines of constant mean FMP (computed from the
  shot-noise approximation of docs/conventions.md, section 7: r_I chosen for each r_E so that the predicted mean stays at
  ``--balance-fmp``), what does the output rate do as both rates grow?  (Kuhn, Aertsen & Rotter 2004.)

Keys (common random numbers): ``root = fold_in(key(seed), 3)``; trial ``t`` of every grid cell uses
``split(fold_in(root, 0), trials)[t]``, of every balance point ``split(fold_in(root, 1), trials)[t]``.
Cells are therefore correlated (smoother maps), each cell's estimate is unbiased.  The ISI CV follows
the tutorial (0 with 3 or fewer spikes); maps average the CV over the trials with more than 3 spikes.
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
from experiments.free_membrane_potential import N_E, N_I, exercise_params  # noqa: E402
import jaxlif as jl  # noqa: E402

NAME = "ei_explorer"
STREAM = 3
DEFAULTS = dict(T=1000.0, dt=0.1, trials=20, seed=0, batch_size=256, g_bar=3.0,
                exc_rates=C.float_list("2:20:2"), inh_rates=C.float_list("10:60:5"),
                balance_fmp=[-62.0, -58.0, -55.0], balance_points=14, balance_exc_max=150.0,
                balance_inh_start=5.0)
QUICK = dict(T=200.0, trials=2, exc_rates=[4.0, 12.0, 20.0], inh_rates=[10.0, 35.0, 60.0],
             balance_fmp=[-58.0], balance_points=3)
EXTRA = {
    "g_bar": ("gE_bar = gI_bar [nS]", float),
    "exc_rates": ("excitatory rates of the grid [Hz] (list or start:stop:step)", C.float_list),
    "inh_rates": ("inhibitory rates of the grid [Hz] (list or start:stop:step)", C.float_list),
    "balance_fmp": ("target mean FMPs of the balance lines [mV] (list)", C.float_list),
    "balance_points": ("points per balance line", int),
    "balance_exc_max": ("largest excitatory rate on the balance lines [Hz]", float),
    "balance_inh_start": ("each balance line starts where its inhibitory rate is this [Hz]", float),
}


def _balance_fmp(value, cfg):
    """Target mean FMPs must lie strictly between the reversal potentials (-80 and 0 mV) and give
    balance lines whose rates are valid Poisson rates."""
    for mu in value:
        if not -80.0 < mu < 0.0:
            return (f"target mean FMP {mu:g} mV cannot be reached: it must lie strictly between the "
                    f"inhibitory and excitatory reversal potentials (-80, 0) mV")
    if cfg.balance_points < 2 or not (cfg.balance_exc_max > 0) or not (cfg.balance_inh_start >= 0):
        return None          # reported by their own checks
    top = 1000.0 / cfg.dt
    for mu, r_E, r_I in balance_lines(value, cfg.g_bar, cfg.balance_points, cfg.balance_exc_max,
                                      cfg.balance_inh_start):
        if not (np.all(np.isfinite(r_I)) and r_I.min() >= 0 and r_I.max() <= top):
            return (f"the balance line at {mu:g} mV needs inhibitory rates {r_I.min():.3g}..{r_I.max():.3g} Hz, "
                    f"outside [0, {top:g}] Hz: lower --balance-exc-max or change the target")


CHECKS = {
    "g_bar": C.positive("nS"), "exc_rates": C.rates, "inh_rates": C.rates, "balance_points": C.integer_counts(2),
    "balance_exc_max": C.rates, "balance_inh_start": C.nonnegative("Hz"), "balance_fmp": _balance_fmp,
}


def trial_batch(keys, r_E, r_I):
    """Flatten conditions x trials: run ``c * trials + t`` uses ``keys[t]`` and the rates of condition ``c``."""
    trials = keys.shape[0]
    dtype = jnp.result_type(float)
    return (jnp.tile(keys, len(r_E)), jnp.repeat(jnp.asarray(r_E, dtype), trials),
            jnp.repeat(jnp.asarray(r_I, dtype), trials))


def run_stats(keys, r_E, r_I, params, T, dt, batch_size=256):
    """Rate [Hz], ISI CV, FMP mean and std [mV] of every run ``(keys[b], r_E[b], r_I[b])``, in one jitted vmap.

    Each run is simulated twice with the same key, with threshold (rate, CV) and without (FMP).
    Returns four NumPy arrays of shape ``(batch,)``.
    """

    @jax.jit
    def batch(k, e, i):
        def one(key, rate_E, rate_I):
            kw = dict(rate_E=rate_E, rate_I=rate_I, n_E=N_E, n_I=N_I, T=T, dt=dt)
            spikes = jl.simulate_cond_lif_poisson(key, params, record=False, **kw).spikes
            m, s = jl.fmp_stats(jl.simulate_cond_lif_poisson(key, params, spiking=False, **kw).v)
            return jl.spike_rate(spikes, T), jl.isi_cv(spikes), m, s
        return C.map_batched(one, (k, e, i), batch_size)

    return [np.asarray(x) for x in batch(keys, r_E, r_I)]


def cv_over_spiking_trials(rate, cv, T):
    """Mean ISI CV over the trials with more than 3 spikes (NaN where there is none)."""
    ok = rate * T / 1000.0 > 3.5
    with np.errstate(invalid="ignore"):
        return np.where(ok.any(-1), np.sum(np.where(ok, cv, 0.0), -1) / np.maximum(ok.sum(-1), 1), np.nan)


def balance_lines(targets, g_bar, points, exc_max, inh_start):
    """For each target mean FMP [mV]: excitatory rates [Hz] (geometric spacing) and the balancing inhibitory rates."""
    lines = []
    for mu in targets:
        a = C.balanced_inh_rate(mu, 0.0, gE_bar=g_bar, gI_bar=g_bar)
        b = C.balanced_inh_rate(mu, 1.0, gE_bar=g_bar, gI_bar=g_bar) - a      # r_I = a + b r_E
        e0 = max(1.0, (inh_start - a) / b)
        r_E = np.geomspace(e0, exc_max, points)
        lines.append((mu, r_E, C.balanced_inh_rate(mu, r_E, gE_bar=g_bar, gI_bar=g_bar)))
    return lines


def _heatmap(ax, fig, x, y, z, label, cmap, title):
    im = ax.pcolormesh(x, y, z.T, cmap=plt.get_cmap(cmap).with_extremes(bad="0.8"), shading="nearest")
    fig.colorbar(im, ax=ax, label=label)
    ax.set(xlabel="excitatory rate r_E (Hz)", ylabel="inhibitory rate r_I (Hz)", title=title)
    return im


def trend(x, y, noise) -> str:
    """'rises throughout', 'falls throughout', 'rises, then falls (peak at x=...)' or 'flat', judged
    against ``noise`` (a standard error per point)."""
    k = int(np.nanargmax(y))
    rise, fall = y[k] - y[0], y[k] - y[-1]
    noise = np.asarray(noise, dtype=float)
    noise = noise[np.isfinite(noise)]
    tol = 2.0 * float(noise.max()) if noise.size else 0.0
    if rise > tol and fall > tol:
        return f"rises, then falls (peak at r_E = {x[k]:.0f} Hz)"
    if y[-1] - y[0] > tol:
        return "rises throughout"
    if y[0] - y[-1] > tol:
        return "falls throughout"
    return "stays flat within noise"


def run(cfg, log, files) -> dict:
    T, dt = cfg.T, cfg.dt
    caveat = f"  [--quick: {cfg.trials} trials/cell, too few for conclusions]" if cfg.quick else ""
    params = exercise_params(cfg.g_bar)
    V_th = float(params.neuron.V_th)
    root = C.experiment_key(cfg.seed, STREAM)
    grid_keys = jax.random.split(jax.random.fold_in(root, 0), cfg.trials)
    line_keys = jax.random.split(jax.random.fold_in(root, 1), cfg.trials)

    ex, inh = np.asarray(cfg.exc_rates), np.asarray(cfg.inh_rates)
    E, I = (a.ravel() for a in np.meshgrid(ex, inh, indexing="ij"))
    lines = balance_lines(cfg.balance_fmp, cfg.g_bar, cfg.balance_points, cfg.balance_exc_max,
                          cfg.balance_inh_start)
    line_E = np.concatenate([l[1] for l in lines])
    line_I = np.concatenate([l[2] for l in lines])

    n_runs = 2 * (E.size + line_E.size) * cfg.trials
    log(f"one vmapped batch: {E.size} grid cells + {line_E.size} balance points, x {cfg.trials} trials, "
        f"with and without threshold = {n_runs} runs of {jl.n_steps(T, dt)} steps")
    # One batch: grid cells and balance points together, each with its own trial keys.
    gk, ge, gi = trial_batch(grid_keys, E, I)
    lk, le, li = trial_batch(line_keys, line_E, line_I)
    stats = run_stats(jnp.concatenate([gk, lk]), jnp.concatenate([ge, le]), jnp.concatenate([gi, li]),
                      params, T, dt, cfg.batch_size)
    n_grid = E.size * cfg.trials
    grid = [s[:n_grid].reshape(ex.size, inh.size, cfg.trials) for s in stats]
    line = [s[n_grid:].reshape(line_E.size, cfg.trials) for s in stats]
    log("batch done")

    rate, cv, fmp_m, fmp_s = grid
    rate_m, fmp_mm, fmp_sm = rate.mean(-1), fmp_m.mean(-1), fmp_s.mean(-1)
    cv_m = cv_over_spiking_trials(rate, cv, T)

    # --- heatmaps ---------------------------------------------------------------------------
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    maps = [(rate_m, "output rate (Hz)", "viridis", "Output rate"),
            (cv_m, "ISI CV (trials with > 3 spikes)", "magma", "Irregularity (ISI CV; grey: too few spikes)"),
            (fmp_mm, "mean FMP (mV)", "coolwarm", "Mean free membrane potential"),
            (fmp_sm, "FMP std (mV)", "cividis", "FMP fluctuations (std)")]
    for ax, (z, label, cmap, title) in zip(axes.ravel(), maps):
        _heatmap(ax, fig, ex, inh, z, label, cmap, title)
        if ex.size > 1 and inh.size > 1 and fmp_mm.min() < V_th < fmp_mm.max():
            ax.contour(ex, inh, fmp_mm.T, levels=[V_th], colors="k", linestyles="--", linewidths=1.5)
    ax = axes[1, 0]
    for mu, r_E, r_I in lines:
        ax.plot(r_E, r_I, "w-", lw=1.2)
        inside = (r_E <= ex.max()) & (r_I <= inh.max())
        if inside.any():
            j = np.nonzero(inside)[0][-1]
            ax.annotate(f"{mu:g} mV", (r_E[j], r_I[j]), color="k", fontsize=8, xytext=(-40, -4),
                        textcoords="offset points", bbox=dict(boxstyle="round,pad=0.15", fc="w", lw=0))
    ax.set(xlim=(ex.min() - 1, ex.max() + 1), ylim=(inh.min() - 2.5, inh.max() + 2.5))
    handles = [plt.Line2D([], [], color="k", ls="--", lw=1.5), plt.Line2D([], [], color="w", lw=1.2)]
    fig.legend(handles, [f"mean FMP = threshold ({V_th:g} mV)",
                         "constant mean FMP (approximation; label in mV), used in balance.png"],
               loc="lower center", ncol=2, fontsize=9, facecolor="0.85")
    fig.suptitle(f"Explorer 1.2 on the whole slider grid: how do E and I input rates set the output rate, "
                 f"its irregularity and the FMP?  ({cfg.trials} trials/cell, T = {T:g} ms){caveat}", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    C.save_figure(fig, cfg.out, "heatmaps.png", files)

    # --- CV and rate against the mean FMP --------------------------------------------------------
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    d = (fmp_mm - V_th).ravel()
    for ax, (z, label) in zip(axes, [(cv_m.ravel(), "ISI CV (trials with > 3 spikes)"),
                                     (rate_m.ravel(), "output rate (Hz)")]):
        sc = ax.scatter(d, z, c=fmp_sm.ravel(), cmap="cividis", s=22, edgecolors="k", linewidths=0.3,
                        vmin=fmp_sm.min(), vmax=fmp_sm.max())
        ax.axvline(0.0, color="k", ls="--", lw=1, label="mean FMP = threshold")
        ax.set(xlabel="mean FMP - threshold (mV)", ylabel=label)
        fig.colorbar(sc, ax=ax, label="FMP std (mV)")
    axes[0].axhline(1.0, color="tab:red", ls=":", lw=1.2, label="Poisson output (CV = 1)")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Is irregularity tied to the mean FMP?  What happens when the mean FMP is below or above "
                 f"threshold?  One dot per grid cell ({cfg.trials} trials/cell){caveat}", fontsize=10)
    fig.tight_layout()
    C.save_figure(fig, cfg.out, "cv_vs_fmp.png", files)

    # --- balance lines ------------------------------------------------------------------------------
    rate_l, cv_l, fmp_ml, fmp_sl = line
    balance = []
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    (a_plane, a_rate, a_mean), (a_std, a_cv, a_tau) = axes
    colors = plt.cm.plasma(np.linspace(0.1, 0.8, len(lines)))
    start = 0
    for (mu, r_E, r_I), col in zip(lines, colors):
        sl = slice(start, start + r_E.size)
        start += r_E.size
        r_m, r_se = C.mean_sem(rate_l[sl])
        m_m, _ = C.mean_sem(fmp_ml[sl])
        s_m, s_se = C.mean_sem(fmp_sl[sl])
        cv_line = cv_over_spiking_trials(rate_l[sl], cv_l[sl], T)
        approx_mu, approx_sd = C.shot_noise_fmp(r_E, r_I, gE_bar=cfg.g_bar, gI_bar=cfg.g_bar)
        g_T = 10.0 + N_E * r_E / 1e3 * cfg.g_bar * 2.0 + N_I * r_I / 1e3 * cfg.g_bar * 5.0
        tau_eff = 10.0 * 10.0 / g_T
        lab = f"mean FMP {mu:g} mV"
        a_plane.plot(r_E, r_I, "o-", color=col, ms=3, label=lab)
        a_rate.errorbar(r_E, r_m, r_se, fmt="o-", color=col, ms=3, capsize=2, label=lab)
        a_mean.plot(r_E, m_m, "o-", color=col, ms=3, label=f"simulated, target {mu:g} mV")
        a_mean.axhline(mu, color=col, ls=":", lw=1)
        a_std.errorbar(r_E, s_m, s_se, fmt="o-", color=col, ms=3, capsize=2, label=f"{lab}: simulated")
        a_std.plot(r_E, approx_sd, "--", color=col, lw=1, label=f"{lab}: shot-noise approx.")
        a_cv.plot(r_E, cv_line, "o-", color=col, ms=3, label=lab)
        a_tau.plot(r_E, tau_eff, "o-", color=col, ms=3, label=lab)
        k = int(np.nanargmax(r_m))
        balance.append(dict(target_fmp_mV=mu, rate_E_Hz=r_E, rate_I_Hz=r_I, rate_Hz=r_m, rate_sem_Hz=r_se,
                            fmp_mean_mV=m_m, fmp_std_mV=s_m, fmp_std_sem_mV=s_se, fmp_std_approx_mV=approx_sd,
                            isi_cv=cv_line,
                            tau_eff_ms=tau_eff, peak_rate_Hz=r_m[k], peak_at_rate_E_Hz=r_E[k]))
    a_plane.add_patch(plt.Rectangle((ex.min(), inh.min()), ex.max() - ex.min(), inh.max() - inh.min(),
                                    fill=False, ls="--", color="0.4", label="explorer grid"))
    a_plane.set(xscale="log", yscale="log", xlabel="excitatory rate r_E (Hz)",
                ylabel="inhibitory rate r_I (Hz)", title="Lines of constant mean FMP (approximation)")
    a_rate.set(xscale="log", xlabel="excitatory rate r_E (Hz)", ylabel="output rate (Hz)",
               title="Output rate along each line (mean +- SEM)")
    a_mean.set(xscale="log", xlabel="excitatory rate r_E (Hz)", ylabel="mean FMP (mV)",
               title="Check: simulated mean FMP stays on target")
    a_std.set(xscale="log", xlabel="excitatory rate r_E (Hz)", ylabel="FMP std (mV)",
              title="How do the FMP fluctuations change along each line?")
    a_cv.set(xscale="log", xlabel="excitatory rate r_E (Hz)", ylabel="ISI CV (trials with > 3 spikes)",
             title="Irregularity along each line")
    a_tau.axhline(dt, color="k", ls=":", lw=1, label=f"time step dt = {dt:g} ms")
    a_tau.set(xscale="log", yscale="log", xlabel="excitatory rate r_E (Hz)",
              ylabel="effective time constant tau_m g_L / g_T (ms)",
              title="Effective membrane time constant (approximation)")
    for ax in axes.ravel():
        ax.legend(fontsize=7)
    fig.suptitle("E/I balance: if the mean FMP is held fixed while excitation and inhibition grow together, "
                 f"what does the output rate do?  ({cfg.trials} trials/point, threshold {V_th:g} mV){caveat}",
                 fontsize=11)
    fig.tight_layout()
    C.save_figure(fig, cfg.out, "balance.png", files)

    below = [b for b in balance if b["target_fmp_mV"] < V_th - 1.0]
    words = []
    for b in balance:
        head = f"at {b['target_fmp_mV']:g} mV the rate goes {b['rate_Hz'][0]:.1f} Hz (r_E = {b['rate_E_Hz'][0]:.0f} Hz)"
        tail = f"{b['rate_Hz'][-1]:.1f} Hz at r_E = {b['rate_E_Hz'][-1]:.0f} Hz"
        k = int(np.argmax(b["rate_E_Hz"] == b["peak_at_rate_E_Hz"]))
        drop = b["rate_Hz"][k] - b["rate_Hz"][-1]
        noise = 2.0 * np.hypot(b["rate_sem_Hz"][k], b["rate_sem_Hz"][-1])
        peak = f"peak {b['peak_rate_Hz']:.1f} Hz (r_E = {b['peak_at_rate_E_Hz']:.0f} Hz)"
        if k == len(b["rate_Hz"]) - 1:
            words.append(f"{head} -> {tail} (rising throughout)")
        elif drop > noise and drop > 0.2 * b["peak_rate_Hz"]:
            words.append(f"{head} -> {peak} -> falls to {tail}")
        else:
            words.append(f"{head} -> {peak} -> levels off at {tail}")
    std_words = [f"at {b['target_fmp_mV']:g} mV it {trend(b['rate_E_Hz'], b['fmp_std_mV'], b['fmp_std_sem_mV'])}"
                 for b in balance]
    conclusion = ("Along lines of constant mean FMP: " + "; ".join(words) + ". "
                  "The FMP std along the lines: " + "; ".join(std_words) + " (the shot-noise approximation "
                  "predicts growth at low rates and shrinkage once the total conductance shortens tau_eff).")
    cv_below = cv_m[(fmp_mm < V_th) & np.isfinite(cv_m)]
    cv_above = cv_m[(fmp_mm >= V_th) & np.isfinite(cv_m)]
    if cv_below.size and cv_above.size:
        conclusion += (f" On the grid, cells whose mean FMP is below threshold fire with ISI CV "
                       f"{cv_below.mean():.2f} on average ({cv_below.size} cells), cells above it with "
                       f"{cv_above.mean():.2f} ({cv_above.size} cells).")
    if not below:
        conclusion += " (No line below threshold was run.)"
    if cfg.quick:
        conclusion += f" [--quick run: {cfg.trials} trials per point; the numbers are not conclusive.]"
    summary = dict(
        name=NAME, figures=files, units="ms, mV, nS, Hz", seed=cfg.seed, T=T, dt=dt, trials=cfg.trials, g_bar=cfg.g_bar,
        key_stream=STREAM, exc_rates_Hz=ex, inh_rates_Hz=inh,
        grid=dict(rate_Hz=rate_m, isi_cv=cv_m, isi_cv_tutorial_rule=cv.mean(-1), fmp_mean_mV=fmp_mm,
                  fmp_std_mV=fmp_sm, note="[exc index][inh index], means over trials"),
        balance=balance, conclusion=conclusion, runtime_s=log.elapsed)
    return summary


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
