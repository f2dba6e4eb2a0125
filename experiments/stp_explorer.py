"""STD and STF explorers: u, R, g traces and the g10/g1 ratio curves, regular and Poisson trains.

The tutorial's ``my_illus_STD`` drives one Tsodyks-Markram synapse (g_bar 1.2 nS, tau_syn 5 ms,
dt 0.1 ms) with a regular or a Poisson train for ``T = 10 * 1000 / rate`` ms, and its two figures plot
g1, g10 and g10/g1 against the rate of a regular train (STD: U0 0.5, tau_d 100, tau_f 50 ms, rates
5..40 Hz; STF: U0 0.2, tau_d 100, tau_f 750 ms, rates 2..40 Hz).  For each of STD and STF this writes

* ``<std|stf>_traces.png``: u, R and g for a regular and a Poisson train at ``--trace-rate``
  (one ``simulate_stp`` call on both trains, each with its own u, R, g);
* ``<std|stf>_ratio.png``: g1, g10 and g10/g1 against rate, regular trains exactly as the tutorial
  (``jaxlif.ratio_curve``) and Poisson trains as mean and 10-90 % band over ``--trials`` trains per rate.

Numbering follows the tutorial: its "g1" and "g10" are g right after the 1st and the 9th spike the
synapse receives (the spike at index 0 is never seen; docs/conventions.md, section 4.6).  Poisson trains use the same numbering:
g right after received spikes 1 and 9.  A Bernoulli-per-step Poisson train has independent
Geometric(p = rate dt / 1000) gaps in steps, so each Poisson trial is drawn as 9 geometric gaps and
run event by event with ``jaxlif.plasticity.stp_event`` (exact for the Euler scheme: the same numbers
as ``simulate_stp`` on the corresponding step-by-step train, which the tests check), all
rates x trials in one vmap.

Keys: ``root = fold_in(key(seed), 4)``; STD uses ``fold_in(root, 0)``, STF ``fold_in(root, 1)``; in each,
``split(k, 2)`` gives the trace train's key and the ratio trials' key (shared by all rates:
common random numbers, so the curves are smooth in rate).
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
from jaxlif.plasticity import stp_event, stp_init  # noqa: E402

NAME = "stp_explorer"
STREAM = 4
LATE_SPIKE = 9   # the tutorial's "10th spike" is the 9th spike the synapse receives
DEFAULTS = dict(T=None, dt=0.1, trials=2000, seed=0, trace_rate=20.0, g_bar=1.2, tau_syn=5.0,
                std_rates=C.float_list("5:40:5"), stf_rates=C.float_list("2:40:2"))
QUICK = dict(trials=50, std_rates=[5.0, 20.0, 40.0], stf_rates=[2.0, 10.0, 20.0, 40.0])
EXTRA = {
    "T": ("duration of the trace figures [ms] (default: the tutorial's 10 * 1000 / trace_rate)", float),
    "trials": ("Poisson trains per rate for the ratio curves (one vmap over rates x trials)", int),
    "trace_rate": ("input rate of the trace figures [Hz]", float),
    "g_bar": ("conductance scale of the synapse [nS]", float),
    "tau_syn": ("synaptic decay time constant [ms]", float),
    "std_rates": ("rates of the STD ratio curve [Hz] (list or start:stop:step)", C.float_list),
    "stf_rates": ("rates of the STF ratio curve [Hz] (list or start:stop:step)", C.float_list),
}
KINDS = {"std": ("STD", jl.STD), "stf": ("STF", jl.STF)}


def _tau_syn(value, cfg):
    if not (value >= cfg.dt):
        return f"must be at least dt={cfg.dt:g} ms (forward Euler), got {value:g}"


def _trace_T(value, cfg):
    return None if value is None else C.duration(value, cfg)


CHECKS = {"T": _trace_T, "trace_rate": C.positive_rates, "g_bar": C.positive("nS"), "tau_syn": _tau_syn,
          "std_rates": C.positive_rates, "stf_rates": C.positive_rates}


def describe_curve(rates, ratio) -> str:
    """How a ratio curve changes with rate, read off the numbers (no expectation built in)."""
    d = np.diff(ratio)
    k = int(np.argmax(ratio))
    if d.size == 0:
        return f"is {ratio[0]:.2f} at {rates[0]:g} Hz"
    if np.all(d < 0):
        return f"falls monotonically from {ratio[0]:.2f} at {rates[0]:g} Hz to {ratio[-1]:.2f} at {rates[-1]:g} Hz"
    if np.all(d > 0):
        return f"rises monotonically from {ratio[0]:.2f} at {rates[0]:g} Hz to {ratio[-1]:.2f} at {rates[-1]:g} Hz"
    if 0 < k < ratio.size - 1:
        return (f"rises from {ratio[0]:.2f} at {rates[0]:g} Hz to {ratio[k]:.2f} at {rates[k]:g} Hz, then falls "
                f"to {ratio[-1]:.2f} at {rates[-1]:g} Hz")
    return f"goes from {ratio[0]:.2f} at {rates[0]:g} Hz to {ratio[-1]:.2f} at {rates[-1]:g} Hz, not monotonically"


def poisson_event_conductances(key, params, rates, trials, dt, g_bar, tau_syn, n_events=LATE_SPIKE):
    """g [nS] right after each of the first ``n_events`` spikes of Poisson trains, and the gaps.

    Args:
        key: one key for all rates (common random numbers).
        params: :class:`jaxlif.STPParams`.  rates: ``(n_rates,)`` [Hz].  trials: trains per rate.
    Returns:
        ``(g, gaps)`` of shapes ``(n_rates, trials, n_events)``; ``gaps`` are in steps: the first
        received spike is at index ``gaps[..., 0]`` of the train, the next ``gaps[..., 1]`` later, ...
    """
    syn = jl.SynParams(g_bar=g_bar, tau_syn=tau_syn, E_rev=0.0)
    dtype = jnp.result_type(float)
    p = jnp.asarray(rates, dtype) * (dt / 1000.0)

    @jax.jit
    def run(key, p):
        u = jax.random.uniform(key, (trials, n_events), dtype, minval=jnp.finfo(dtype).tiny)
        # Geometric(p) on {1, 2, ...} by inversion; the same uniforms for every rate.
        gaps = jnp.maximum(jnp.ceil(jnp.log(u)[None] / jnp.log1p(-p)[:, None, None]), 1.0)

        def train(g):
            def body(state, k):
                state = stp_event(params, syn, state, k, dt)
                return state, state.g
            return jax.lax.scan(body, stp_init((), dtype), g)[1]

        return jax.vmap(jax.vmap(train))(gaps), gaps.astype(jnp.int32)

    g, gaps = run(key, p)
    return np.asarray(g), np.asarray(gaps)


def traces(key, params, rate, T, dt, g_bar, tau_syn):
    """u, R, g of a regular and a Poisson train (rows 0 and 1), and the trains, shape ``(2, n_steps)``."""
    regular = jl.regular_train(rate, T=T, dt=dt)
    poisson = jl.poisson_trains(key, rate, 1, T=T, dt=dt)[0]
    trains = jnp.stack([regular, poisson])
    syn = jl.SynParams(g_bar=g_bar, tau_syn=tau_syn, E_rev=0.0)
    return jl.simulate_stp(params, syn, trains, dt=dt), np.asarray(trains)


def _trace_figure(label, params, rate, t, state, trains, out, files, fname):
    fig, axes = plt.subplots(3, 2, figsize=(12, 6.5), sharex=True, height_ratios=[2, 2, 0.6])
    for col, title in enumerate(["regular train", "Poisson train"]):
        ax = axes[0, col]
        ax.plot(t, np.asarray(state.R[col]), "b", label="R (available resources)")
        ax.plot(t, np.asarray(state.u[col]), "r", label="u (release probability)")
        ax.set(ylabel="R or u (dimensionless)", ylim=(-0.02, 1.02), title=f"{title}, {rate:g} Hz")
        ax = axes[1, col]
        ax.plot(t, np.asarray(state.g[col]), "m")
        ax.set(ylabel="g (nS)")
        ax = axes[2, col]
        ts = t[trains[col]]
        ax.vlines(ts, 0, 1, color="k", lw=1.5)
        ax.vlines(ts[ts == 0], 0, 1, color="0.7", lw=1.5)
        ax.set(yticks=[], xlabel="time (ms)", ylabel="pre spikes")
    handles = [plt.Line2D([], [], color=c) for c in "brm"] + [plt.Line2D([], [], color=c, lw=1.5)
                                                              for c in ("k", "0.7")]
    fig.legend(handles, ["R (available resources)", "u (release probability)", "g (conductance)",
                         "presynaptic spike", "spike at index 0 (never seen, tutorial convention)"],
               loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(f"{label} (U0 = {params.U0:g}, tau_d = {params.tau_d:g} ms, tau_f = {params.tau_f:g} ms): "
                 f"how do u, R and g change spike by spike, regular vs Poisson input?", fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    C.save_figure(fig, out, fname, files)


def _ratio_figure(label, params, rates, g1, g10, pg, trials, out, files, fname):
    pg1, pg10 = pg[..., 0], pg[..., LATE_SPIKE - 1]
    pratio = pg10 / pg1
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    ax.plot(rates, g1, "m-o", label="1st spike, regular")
    ax.plot(rates, g10, "c-o", label="10th spike, regular")
    ax.plot(rates, pg1.mean(-1), "--", color="m", label="1st spike, Poisson (always g_bar U0)")
    lo, hi = np.percentile(pg10, [10, 90], axis=-1)
    ax.plot(rates, pg10.mean(-1), "--", color="c", label="10th spike, Poisson mean")
    ax.fill_between(rates, lo, hi, color="c", alpha=0.15, label="10th spike, Poisson 10-90 %")
    ax.set(xlabel="input rate (Hz)", ylabel="conductance right after the spike (nS)",
           title="Conductance at the 1st and 10th spike")
    ax.legend(fontsize=7, ncol=2)
    ax = axes[1]
    ax.plot(rates, g10 / g1, "b-o", label="regular (tutorial)")
    lo, hi = np.percentile(pratio, [10, 90], axis=-1)
    ax.plot(rates, pratio.mean(-1), "b--", label=f"Poisson, mean of {trials} trains")
    ax.fill_between(rates, lo, hi, color="b", alpha=0.15, label="Poisson, 10-90 %")
    ax.axhline(1.0, color="k", ls=":", lw=1, label="no plasticity (ratio 1)")
    ax.set(xlabel="input rate (Hz)", ylabel="conductance ratio g10 / g1", title="Ratio g10 / g1")
    ax.legend(fontsize=8)
    fig.suptitle(f"{label}: how does the input rate change synaptic efficacy by the 10th spike?  "
                 f"(tutorial numbering: 10th = 9th spike received)", fontsize=11)
    fig.tight_layout()
    C.save_figure(fig, out, fname, files)


def run(cfg, log, files) -> dict:
    dt = cfg.dt
    T = cfg.T if cfg.T is not None else 10.0 * 1000.0 / cfg.trace_rate
    root = C.experiment_key(cfg.seed, STREAM)
    summary = dict(name=NAME, figures=files, units="ms, nS, Hz", seed=cfg.seed, dt=dt, trace_T=T, trace_rate=cfg.trace_rate,
                   trials=cfg.trials, g_bar=cfg.g_bar, tau_syn=cfg.tau_syn, key_stream=STREAM,
                   late_spike_received=LATE_SPIKE)
    conclusions = []
    for index, (kind, (label, params)) in enumerate(KINDS.items()):
        k_trace, k_ratio = jax.random.split(jax.random.fold_in(root, index))
        state, trains = traces(k_trace, params, cfg.trace_rate, T, dt, cfg.g_bar, cfg.tau_syn)
        _trace_figure(label, params, cfg.trace_rate, jl.time_axis(T, dt), state, trains, cfg.out, files,
                      f"{kind}_traces.png")

        rates = np.asarray(getattr(cfg, f"{kind}_rates"), dtype=float)
        g1, g10 = (np.asarray(x) for x in jl.ratio_curve(params, rates, dt=dt, g_bar=cfg.g_bar,
                                                          tau_syn=cfg.tau_syn))
        pg, _ = poisson_event_conductances(k_ratio, params, rates, cfg.trials, dt, cfg.g_bar, cfg.tau_syn)
        _ratio_figure(label, params, rates, g1, g10, pg, cfg.trials, cfg.out, files, f"{kind}_ratio.png")
        pratio = pg[..., LATE_SPIKE - 1] / pg[..., 0]
        log(f"{label}: traces, ratio curve at {rates.size} rates, {rates.size * cfg.trials} Poisson trains")

        ratio = g10 / g1
        summary[kind] = dict(
            params=params._asdict(), rates_Hz=rates,
            regular=dict(g1_nS=g1, g10_nS=g10, ratio=ratio),
            poisson=dict(g1_mean_nS=pg[..., 0].mean(-1), g10_mean_nS=pg[..., LATE_SPIKE - 1].mean(-1),
                         g10_sd_nS=pg[..., LATE_SPIKE - 1].std(-1), ratio_mean=pratio.mean(-1),
                         ratio_p10=np.percentile(pratio, 10, axis=-1), ratio_p90=np.percentile(pratio, 90, axis=-1)),
            trace=dict(n_spikes_regular=int(trains[0].sum()), n_spikes_poisson=int(trains[1].sum())))
        k = int(np.argmax(ratio))
        why = (" (depression: faster input leaves R less time to recover)" if kind == "std" else
               " (facilitation of u, tau_f 750 ms, against depletion of R, tau_d 100 ms)")
        conclusions.append(f"{label}: g10/g1 for regular trains {describe_curve(rates, ratio)}{why}; Poisson "
                           f"trains give {pratio.mean(-1)[k]:.2f} on average at {rates[k]:g} Hz (10-90 %: "
                           f"{np.percentile(pratio[k], 10):.2f}-{np.percentile(pratio[k], 90):.2f}, "
                           f"{cfg.trials} trains).")
    summary["conclusion"] = " ".join(conclusions)
    summary["runtime_s"] = log.elapsed
    return summary


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
