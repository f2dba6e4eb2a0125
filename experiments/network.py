"""A recurrent E/I network with depressing E->E synapses: activity, a weight sweep, and a gradient fit.

The network (:func:`jaxlif.network.ei_network`): ``n_E`` excitatory and ``n_I`` inhibitory conductance-LIF
neurons (the tutorials' neuron; excitatory receptor 5 ms / 0 mV, inhibitory 10 ms / -80 mV), every ordered
pair connected with probability ``p``, weights E->E 1.0, E->I 1.0, I->E 6.0, I->I 6.0 nS for 800 + 200
neurons at p = 0.1 (80 E and 20 I inputs per neuron; other sizes scale the weights by 100 / (p n)),
delay 1.5 ms (15 steps), E->E synapses depressing with the tutorials' STD parameters (U0 0.5, tau_d 100 ms,
tau_f 50 ms, one u, R per presynaptic neuron), and 100 external Poisson trains at 10 Hz per neuron opening
``--drive-weight`` nS each.  Three questions:

1. ``activity.png``: does the network fire asynchronously and irregularly, and how far do its E->E
   synapses depress?  Raster, population rates, mean resources R of the E->E synapses.
2. ``sweep.png``: does depression keep the network from running away as E->E coupling grows?  One
   ``jax.vmap`` over E->E weight scales x trials, with depressing synapses and with static ones of the
   rested efficacy (U0 x weight), rates in the window t >= ``--late-start``.
3. ``fit.png``: can a surrogate gradient find the drive weight that gives a target E rate?  Adam
   (optax) on log(drive weight), loss (rate_E - target)^2 of runs of ``--fit-T`` ms with a fast-sigmoid
   surrogate (reset detached, recurrent spikes delivered without derivative: the full derivative of this
   chaotic network explodes) and a new drive key every iteration; the fitted weight is then checked with
   exact spikes (no surrogate) on fresh keys, and the surrogate derivative of the rate at the start is
   compared in sign with finite differences over common random numbers (same keys), trial by trial.

Keys: ``root = fold_in(key(seed), 9)``; connectivity ``fold_in(root, 0)``; activity run ``fold_in(root, 1)``;
sweep trial ``t`` ``split(fold_in(root, 2), trials)[t]`` (every scale, both synapse kinds); fit iteration ``i``
``fold_in(fold_in(root, 3), i)``; validation ``split(fold_in(root, 4), trials)``; finite differences
and surrogate derivatives ``split(fold_in(root, 5), trials)``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from experiments import _common as C  # noqa: E402
import jaxlif as jl  # noqa: E402
from jaxlif import network as nw  # noqa: E402

NAME = "network"
STREAM = 9
DEFAULTS = dict(T=1000.0, dt=0.1, trials=4, seed=0, n_E=800, n_I=200, p=0.1, drive_weight=1.0,
                scales=C.float_list("0.5:3.0:0.5"), late_start=200.0, bin_ms=5.0, raster_n=200,
                target_rate=8.0, fit_start=0.8, fit_T=300.0, fit_steps=40, learning_rate=0.08)
QUICK = dict(T=100.0, trials=2, n_E=160, n_I=40, scales=[1.0, 3.0], late_start=30.0, fit_T=50.0, fit_steps=3)
EXTRA = {
    "n_E": ("excitatory neurons", int), "n_I": ("inhibitory neurons", int),
    "p": ("connection probability", float),
    "drive_weight": ("conductance per external input spike [nS] (activity and sweep)", float),
    "scales": ("E->E weight scales of the sweep, list or start:stop:step", C.float_list),
    "late_start": ("rates and CVs are taken for t >= this [ms] (after the onset transient)", float),
    "bin_ms": ("bin of the population rate [ms]", float),
    "raster_n": ("excitatory neurons shown in the raster (and a quarter as many inhibitory)", int),
    "target_rate": ("target E rate of the fit [Hz]", float),
    "fit_start": ("initial drive weight of the fit [nS]", float),
    "fit_T": ("duration of each run of the fit [ms]", float),
    "fit_steps": ("Adam iterations of the fit", int),
    "learning_rate": ("Adam learning rate on log(drive weight)", float),
}
#: The fit's surrogate: fast sigmoid, reset detached; recurrent spikes are delivered without derivative
#: (``recurrent_grad=False``): in this chaotic network the full derivative grows without bound.
SURROGATE = jl.surrogates.fast_sigmoid(0.5, detach_reset=True)


def build(key, cfg) -> nw.Network:
    """The experiment's network for ``cfg`` (weights scaled to keep 100 p n / (p n) inputs' worth of drive)."""
    scale = 100.0 / (cfg.p * (cfg.n_E + cfg.n_I))
    weights = {k: w * scale for k, w in nw.EI_WEIGHTS.items()}
    return nw.ei_network(key, n_E=cfg.n_E, n_I=cfg.n_I, p=cfg.p, weights=weights, drive_weight=cfg.drive_weight)


def with_drive_weight(net: nw.Network, weight) -> nw.Network:
    """The same network with every population's drive weight [nS] replaced (may be traced)."""
    return dataclasses.replace(net, populations=tuple(
        dataclasses.replace(p, drive=dataclasses.replace(p.drive, weight=weight)) for p in net.populations))


def with_ee(net: nw.Network, scale, static: bool) -> nw.Network:
    """E->E weights times ``scale``; ``static``: no plasticity, weights times U0 (the rested release)."""
    ee = net.projections[0]
    if static:
        ee = dataclasses.replace(ee, weights=ee.weights * (scale * ee.stp.U0), stp=None)
    else:
        ee = dataclasses.replace(ee, weights=ee.weights * scale)
    return dataclasses.replace(net, projections=(ee,) + net.projections[1:])


def window_stats(spikes, dt: float, start: int):
    """Rate [Hz] over neurons and the mean ISI CV (neurons with > 3 spikes) of a raster ``(n, n_steps)`` from ``start``."""
    s = spikes[:, start:]
    rate = s.mean() * 1000.0 / dt
    cv = jl.isi_cv(s)
    counted = s.sum(-1) > 3
    return rate, jnp.sum(jnp.where(counted, cv, 0.0)) / jnp.maximum(counted.sum(), 1)


def population_rate(spikes, dt: float, bin_ms: float):
    """Population rate [Hz] in bins of ``bin_ms`` from a raster ``(n, n_steps)``."""
    k = int(round(bin_ms / dt))
    n = spikes.shape[-1] // k
    return np.asarray(spikes)[:, :n * k].reshape(spikes.shape[0], n, k).mean((0, 2)) * 1000.0 / dt


def sweep(net, keys, scales, cfg, static: bool):
    """E and I rates and CVs after the transient for every (scale, trial): one jitted vmap, arrays ``(scales, trials)``."""
    start = int(round(cfg.late_start / cfg.dt))
    s = jnp.repeat(jnp.asarray(scales, jnp.result_type(float)), keys.shape[0])
    k = jnp.tile(keys, len(scales))

    @jax.jit
    def run(s, k):
        def one(scale, key):
            res = nw.simulate_network(key, with_ee(net, scale, static), T=cfg.T, dt=cfg.dt, record=False)
            (rE, cvE), (rI, cvI) = (window_stats(res.spikes[n], cfg.dt, start) for n in ("E", "I"))
            R = res.state.synapses[0].R.mean() if not static else jnp.nan
            return dict(rate_E=rE, cv_E=cvE, rate_I=rI, cv_I=cvI, R_end=R)
        return jax.vmap(one)(s, k)

    return {name: np.asarray(v).reshape(len(scales), keys.shape[0]) for name, v in run(s, k).items()}


def fit_drive(net, root, cfg, log):
    """Adam on log(drive weight): loss (surrogate rate_E - target)^2, a new drive key every iteration; then
    exact-spike validation and the sign of the surrogate gradient against finite differences."""
    start = int(round(min(cfg.late_start, cfg.fit_T / 4) / cfg.dt))

    def rate_E(log_w, key, spike_grad):
        res = nw.simulate_network(key, with_drive_weight(net, jnp.exp(log_w)), T=cfg.fit_T, dt=cfg.dt,
                                  record=False, spike_grad=spike_grad, recurrent_grad=False)
        return res.spikes["E"][:, start:].mean() * 1000.0 / cfg.dt

    def loss(log_w, key):
        r = rate_E(log_w, key, SURROGATE)
        return (r - cfg.target_rate) ** 2, r

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    opt = optax.adam(cfg.learning_rate)
    log_w = jnp.log(jnp.asarray(cfg.fit_start, jnp.result_type(float)))
    state = opt.init(log_w)
    history = dict(loss=[], rate_E=[], drive_weight=[], grad=[])
    for i in range(cfg.fit_steps):
        (value, r), g = value_and_grad(log_w, jax.random.fold_in(jax.random.fold_in(root, 3), i))
        history["loss"].append(float(value))
        history["rate_E"].append(float(r))
        history["drive_weight"].append(float(jnp.exp(log_w)))
        history["grad"].append(float(g))
        updates, state = opt.update(g, state)
        log_w = optax.apply_updates(log_w, updates)
    w_fit = float(jnp.exp(log_w))
    log(f"fit: drive weight {cfg.fit_start:g} -> {w_fit:.4f} nS in {cfg.fit_steps} Adam steps")

    # exact spikes, one vmapped program: validation at the fitted weight on fresh keys, and a central
    # finite difference of the rate in log(weight) at the start on common random numbers (keys reused)
    h, lw0, n = 0.1, float(np.log(cfg.fit_start)), cfg.trials
    val_keys = jax.random.split(jax.random.fold_in(root, 4), n)
    fd_keys = jax.random.split(jax.random.fold_in(root, 5), n)
    keys = jnp.concatenate([val_keys, fd_keys, fd_keys])
    lws = jnp.asarray([np.log(w_fit)] * n + [lw0 + h] * n + [lw0 - h] * n, jnp.result_type(float))
    rates = np.asarray(jax.jit(jax.vmap(lambda k, lw: rate_E(lw, k, None)))(keys, lws))
    fd = (rates[n:2 * n] - rates[2 * n:]) / (2 * h)
    # the surrogate gradient of the rate on the same keys: d loss / d log w = 2 (r - target) d r / d log w
    sur = []
    for k in fd_keys:
        (_, r), g = value_and_grad(jnp.asarray(lw0, jnp.result_type(float)), k)
        sur.append(float(g) / (2.0 * (float(r) - cfg.target_rate)) if float(r) != cfg.target_rate else np.nan)
    return dict(history=history, drive_weight_fit=w_fit, validation_rate_E=rates[:n], fd_grad=fd,
                surrogate_grad=np.asarray(sur))


def main(argv=None) -> dict:
    cfg = C.parse(C.make_parser(__doc__, NAME, DEFAULTS, QUICK, EXTRA), argv, DEFAULTS, QUICK)
    log, files = C.Progress(NAME), []
    for name, value, low in (("--n-E", cfg.n_E, 4), ("--n-I", cfg.n_I, 1), ("--trials", cfg.trials, 1),
                             ("--fit-steps", cfg.fit_steps, 1), ("--raster-n", cfg.raster_n, 1)):
        if value < low:
            raise ValueError(f"{name}={value} must be >= {low}")
    for name, value in (("--late-start", cfg.late_start), ("--fit-T", cfg.fit_T), ("--bin-ms", cfg.bin_ms)):
        if not 0.0 < value:
            raise ValueError(f"{name}={value} ms must be > 0")
    if not cfg.late_start < cfg.T:
        raise ValueError(f"--late-start={cfg.late_start} ms must lie inside (0, T={cfg.T}) ms")
    if not 0.0 < cfg.p <= 1.0:
        raise ValueError(f"--p={cfg.p} must be a probability in (0, 1]")
    for name, value in (("--drive-weight", cfg.drive_weight), ("--fit-start", cfg.fit_start),
                        ("--target-rate", cfg.target_rate), ("--learning-rate", cfg.learning_rate)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name}={value} must be a finite number > 0")
    if not cfg.scales or not all(np.isfinite(s) and s >= 0 for s in cfg.scales):
        raise ValueError(f"--scales={cfg.scales} must be finite numbers >= 0")
    root = C.experiment_key(cfg.seed, STREAM)
    net = build(jax.random.fold_in(root, 0), cfg)
    nw.check_network(net, cfg.dt)
    start = int(round(cfg.late_start / cfg.dt))
    ee = net.projections[0]
    log(f"network: {cfg.n_E} E + {cfg.n_I} I, {sum(len(q.edges()[0]) for q in net.projections)} synapses")

    # --- 1. activity -------------------------------------------------------------------------------
    res = nw.simulate_network(jax.random.fold_in(root, 1), net, T=cfg.T, dt=cfg.dt)
    sE, sI = np.asarray(res.spikes["E"]), np.asarray(res.spikes["I"])
    stats = {n: [float(x) for x in window_stats(jnp.asarray(s), cfg.dt, start)] for n, s in (("E", sE), ("I", sI))}
    t = jl.time_axis(cfg.T, cfg.dt)
    R_mean = np.asarray(res.stp[0].R).mean(0)
    pr = {n: population_rate(s, cfg.dt, cfg.bin_ms) for n, s in (("E", sE), ("I", sI))}
    centers = (np.arange(pr["E"].size) + 0.5) * cfg.bin_ms
    log(f"activity: E {stats['E'][0]:.2f} Hz (CV {stats['E'][1]:.2f}), I {stats['I'][0]:.2f} Hz "
        f"(CV {stats['I'][1]:.2f}), mean R at the end {R_mean[-1]:.3f}")
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True, height_ratios=[3, 1.2, 1])
    nE_show, nI_show = min(cfg.raster_n, cfg.n_E), min(max(cfg.raster_n // 4, 1), cfg.n_I)
    for s, offset, col, label in ((sE[:nE_show], 0, "tab:red", "E"), (sI[:nI_show], nE_show, "tab:blue", "I")):
        n_idx, t_idx = np.nonzero(s)
        axes[0].scatter(t[t_idx], n_idx + offset, s=1.5, color=col, label=f"{label} ({len(s)} shown)")
    axes[0].set(ylabel="neuron", title=f"Does the network fire asynchronously and irregularly?  {cfg.n_E} E + "
                f"{cfg.n_I} I neurons, p = {cfg.p:g}, depressing E->E; after {cfg.late_start:g} ms: E "
                f"{stats['E'][0]:.1f} Hz (ISI CV {stats['E'][1]:.2f}), I {stats['I'][0]:.1f} Hz (CV {stats['I'][1]:.2f})")
    axes[0].title.set_fontsize(10)
    axes[0].legend(loc="upper right", fontsize=8, markerscale=4)
    for n, col in (("E", "tab:red"), ("I", "tab:blue")):
        axes[1].plot(centers, pr[n], color=col, lw=0.8, label=n)
    axes[1].set(ylabel=f"population rate\n({cfg.bin_ms:g} ms bins, Hz)")
    axes[1].legend(fontsize=8)
    axes[2].plot(t, R_mean, color="k", lw=0.8)
    axes[2].set(xlabel="time (ms)", ylabel="mean R of\nE->E synapses", ylim=(0, 1.05))
    C.save_figure(fig, cfg.out, "activity.png", files)

    # --- 2. sweep over the E->E weight -------------------------------------------------------------
    keys = jax.random.split(jax.random.fold_in(root, 2), cfg.trials)
    sw = {kind: sweep(net, keys, cfg.scales, cfg, kind == "static") for kind in ("depressing", "static")}
    log(f"sweep: {len(cfg.scales)} scales x {cfg.trials} trials, depressing and static E->E")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    scales = np.asarray(cfg.scales)
    for kind, col in (("depressing", "tab:purple"), ("static", "tab:orange")):
        for pop, fmt in (("E", "o-"), ("I", "s--")):
            axes[0].errorbar(scales, *C.mean_sem(sw[kind][f"rate_{pop}"]), fmt=fmt, color=col, capsize=2,
                             label=f"{pop}, {kind} E->E")
            axes[1].errorbar(scales, *C.mean_sem(sw[kind][f"cv_{pop}"]), fmt=fmt, color=col, capsize=2,
                             label=f"{pop}, {kind} E->E")
    axes[0].set(xlabel="E->E weight scale (1 = the default network)", ylabel=f"rate after {cfg.late_start:g} ms (Hz)",
                yscale="log", title="Does depression keep the network from running away as E->E coupling grows?")
    axes[0].title.set_fontsize(10)
    axes[1].axhline(1.0, color="k", ls=":", lw=1, label="Poisson (CV = 1)")
    axes[1].set(xlabel="E->E weight scale", ylabel="ISI CV (neurons with > 3 spikes)", title="Irregularity")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"Static synapses carry the rested release (U0 = {float(ee.stp.U0):g} x weight); mean +- SEM over "
                 f"{cfg.trials} trials, one jax.vmap per synapse kind", fontsize=10)
    fig.tight_layout()
    C.save_figure(fig, cfg.out, "sweep.png", files)

    # --- 3. surrogate-gradient fit of the drive weight ----------------------------------------------
    fit = fit_drive(net, root, cfg, log)
    h = fit["history"]
    val_mean, val_sem = C.mean_sem(fit["validation_rate_E"])
    fd_mean, fd_sem = C.mean_sem(fit["fd_grad"])
    sur_mean, sur_sem = C.mean_sem(fit["surrogate_grad"])
    same_sign = bool(np.all(np.sign(fit["surrogate_grad"]) == np.sign(fd_mean)))
    log(f"fit check: exact E rate {val_mean:.2f} +- {val_sem:.2f} Hz (target {cfg.target_rate:g}); d rate / d log w "
        f"at the start: surrogate {sur_mean:.3g} +- {sur_sem:.2g}, finite difference {fd_mean:.3g} +- {fd_sem:.2g} Hz")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    it = np.arange(len(h["loss"]))
    axes[0].semilogy(it, np.maximum(h["loss"], 1e-6), "k.-")
    axes[0].set(xlabel="Adam iteration", ylabel="loss (Hz^2)", title="(rate_E - target)^2, surrogate run")
    axes[1].plot(it, h["rate_E"], "r.-", label="E rate of the iteration's run")
    axes[1].axhline(cfg.target_rate, color="k", ls="--", label=f"target {cfg.target_rate:g} Hz")
    axes[1].axhspan(val_mean - val_sem, val_mean + val_sem, color="tab:green", alpha=0.3,
                    label=f"exact spikes, fitted weight: {val_mean:.2f} +- {val_sem:.2f} Hz")
    axes[1].set(xlabel="Adam iteration", ylabel=f"E rate after {min(cfg.late_start, cfg.fit_T / 4):g} ms (Hz)",
                title=f"Runs of {cfg.fit_T:g} ms, a new drive key each")
    axes[1].legend(fontsize=7)
    axes[2].plot(it, h["drive_weight"], "b.-")
    axes[2].set(xlabel="Adam iteration", ylabel="drive weight (nS)", title=f"fitted: {fit['drive_weight_fit']:.3f} nS")
    for ax in axes:
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    fig.suptitle(f"Can a surrogate gradient (fast sigmoid 0.5/mV, reset and recurrent spikes detached) find the drive "
                 f"weight that gives {cfg.target_rate:g} Hz?  d rate/d log w at the start: surrogate {sur_mean:.3g}, "
                 f"finite difference {fd_mean:.3g} +- {fd_sem:.2g} Hz", fontsize=10)
    fig.tight_layout()
    C.save_figure(fig, cfg.out, "fit.png", files)

    top = {kind: float(sw[kind]["rate_E"][-1].mean()) for kind in sw}
    irregular = "irregularly (ISI CV near 1)" if stats["E"][1] > 0.7 else "fairly regularly (ISI CV below 0.7)"
    sign = ("has the sign of the finite difference in every trial" if same_sign else
            "does NOT have the sign of the finite difference in every trial")
    conclusion = (
        f"After the onset the default network fires {irregular}: E {stats['E'][0]:.1f} Hz (CV {stats['E'][1]:.2f}), "
        f"I {stats['I'][0]:.1f} Hz (CV {stats['I'][1]:.2f}), with its E->E synapses depressed to a mean R of "
        f"{R_mean[start:].mean():.2f}. Scaling the E->E weights up to {scales[-1]:g}x gives an E rate of "
        f"{top['depressing']:.1f} Hz with depressing synapses against {top['static']:.1f} Hz with static synapses "
        f"of the rested efficacy. A surrogate-gradient fit (Adam, {cfg.fit_steps} steps) moved the drive weight from "
        f"{cfg.fit_start:g} to {fit['drive_weight_fit']:.3f} nS; with exact spikes that weight gives an E rate of "
        f"{val_mean:.2f} +- {val_sem:.2f} Hz for a target of {cfg.target_rate:g} Hz. At the start the local "
        f"surrogate derivative of the rate ({sur_mean:.3g} Hz per unit log weight) {sign} ({fd_mean:.3g} +- "
        f"{fd_sem:.2g}); its size is biased, as surrogate derivatives are, and Adam uses its direction.")
    summary = dict(name=NAME, figures=files, conclusion=conclusion, runtime_s=log.elapsed,
                   config={k: v for k, v in vars(cfg).items() if not k.startswith("_")},
                   activity=dict(rate_E_Hz=stats["E"][0], cv_E=stats["E"][1], rate_I_Hz=stats["I"][0],
                                 cv_I=stats["I"][1], pop_rate_t_ms=centers, pop_rate_E_Hz=pr["E"],
                                 pop_rate_I_Hz=pr["I"], R_mean_late=float(R_mean[start:].mean())),
                   sweep=dict(scales=scales, **{kind: {k: C.mean_sem(v) for k, v in d.items()} for kind, d in sw.items()},
                              note="each entry: [means, SEMs] per scale"),
                   fit=dict(history=h, drive_weight_fit=fit["drive_weight_fit"], target_rate_Hz=cfg.target_rate,
                            validation_rate_E_Hz=fit["validation_rate_E"],
                            surrogate_drate_dlogw=fit["surrogate_grad"], finite_difference_drate_dlogw=fit["fd_grad"],
                            same_sign=same_sign))
    log(conclusion)
    return C.finish(NAME, summary, cfg.out, log, len(files))


if __name__ == "__main__":
    main()
