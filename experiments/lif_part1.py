"""LIF part 1: the first tutorial's sinusoidal input current and membrane potential, then spikes.

The first tutorial ("LIF neuron part 1") integrates tau dV/dt = E_L - V + R I(t) with forward Euler,
I(t) = i_mean (1 + sin(2 pi t / 10 ms)), and no spike mechanism.  In jaxlif's units
(docs/conventions.md, section 1): tau_m 20 ms, E_L -60 mV, V_reset -70 mV, V_th -50 mV, R = 0.1 GOhm (g_L 10 nS),
i_mean 250 pA, dt 1 ms, T 150 ms.  This script draws

* ``current.png``: I(t) at the simulation samples [pA];
* ``membrane.png``: V(t) [mV] without the spike mechanism (the tutorial's loop,
  ``simulate_lif(..., spiking=False)``) and the same neuron with threshold and reset on
  (t_ref = 0: the first tutorial has no refractory period);
* ``f_I.png``: the batched extension, output rate against i_mean for the sinusoidal input and
  for a constant current of the same mean, all currents in one ``jax.vmap``.

``lif_part1.json`` holds the plotted numbers, in mV, pA, ms and Hz; ``v_first_steps_mV`` are the
values the tutorial's loop prints after its first ten steps (the updated v; the tutorial prints them
in volts, its SI units: divide by 1000 to compare).

Why the f-I curves are staircases: with dt = 1 ms every inter-spike interval is a whole number of
steps, so a steady rate can only be 1000/k Hz (..., 91, 100, 111, 125 Hz).  The sinusoidal curve
also stays at exactly 100 Hz over a wide range of mean currents: the input repeats every 10 ms and
the neuron locks to it, one spike per input cycle (1:1 mode locking).  Neither is a refractory
effect: this neuron has t_ref = 0.
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

NAME = "lif_part1"
DEFAULTS = dict(T=150.0, dt=1.0, seed=0, i_mean=250.0, fi_T=1000.0, fi_currents=C.float_list("0:500:5"))
QUICK = dict(fi_T=200.0, fi_currents=C.float_list("0:500:50"))
EXTRA = {
    "seed": ("accepted for a uniform command line; this experiment is deterministic", int),
    "i_mean": ("mean input current of the traces [pA]", float),
    "fi_T": ("duration of each run of the f-I sweep [ms]", float),
    "fi_currents": ("mean currents of the f-I sweep [pA], list '0,50,...' or range 'start:stop:step'",
                    C.float_list),
}
CHECKS = {"i_mean": C.nonnegative("pA"), "fi_T": C.duration, "fi_currents": C.nonnegative("pA")}

#: The first tutorial's neuron in ms/mV/nS/pA; no refractory period in that tutorial.
PART1_NEURON = jl.LIFParams(V_th=-50.0, V_reset=-70.0, tau_m=20.0, g_L=10.0, V_init=-60.0,
                            E_L=-60.0, t_ref=0.0)


def part1_traces(i_mean: float, T: float, dt: float):
    """Input current [pA] and the subthreshold and spiking runs of the first tutorial's neuron."""
    I = jl.sinusoidal_current(i_mean, T=T, dt=dt)
    sub = jl.simulate_lif(PART1_NEURON, I, dt=dt, spiking=False)
    spk = jl.simulate_lif(PART1_NEURON, I, dt=dt, spiking=True)
    return I, sub, spk


def f_I_curve(currents, T: float, dt: float):
    """Output rate [Hz] for each mean current [pA]: sinusoidal and constant input, one vmap each."""
    shape = jl.sinusoidal_current(1.0, T=T, dt=dt)   # I(t) / i_mean
    ones = jnp.ones_like(shape)

    @jax.jit
    def rates(i_means):
        def one(i, profile):
            return jl.spike_rate(jl.simulate_lif(PART1_NEURON, i * profile, dt=dt).spikes, T)
        return (jax.vmap(lambda i: one(i, shape))(i_means), jax.vmap(lambda i: one(i, ones))(i_means))

    return rates(jnp.asarray(currents, dtype=jnp.result_type(float)))


def locked_plateau(currents, rates, period_ms: float = 10.0):
    """The range of mean currents [pA] over which the rate is exactly one spike per input period."""
    locked = np.isclose(rates, 1000.0 / period_ms)
    return (float(currents[locked].min()), float(currents[locked].max())) if locked.any() else None


def run(cfg, log, files) -> dict:
    T, dt = cfg.T, cfg.dt
    t = jl.time_axis(T, dt)

    I, sub, spk = part1_traces(cfg.i_mean, T, dt)
    I, v_sub, v_spk, spikes = (np.asarray(x) for x in (I, sub.v, spk.v, spk.spikes))
    t_spk = t[spikes]
    log(f"traces: {spikes.sum()} spikes in {T:g} ms with the spike mechanism on")

    fig, ax = plt.subplots(figsize=(8, 3.6))
    t_fine = np.linspace(0.0, T, 20 * t.size)
    ax.plot(t_fine, cfg.i_mean * (1 + np.sin(2 * np.pi * t_fine / 10.0)), color="0.7", lw=1, zorder=1,
            label="continuous I(t)")
    ax.plot(t, I, "ko", ms=3, zorder=2, label=f"samples used (dt = {dt:g} ms)")
    ax.axhline(cfg.i_mean, color="tab:red", ls="--", lw=1, label=f"i_mean = {cfg.i_mean:g} pA")
    ax.set(xlabel="time (ms)", ylabel="input current I (pA)",
           title=f"What input does the neuron get?  I(t) = {cfg.i_mean:g} pA (1 + sin(2\u03c0t / 10 ms))")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    C.save_figure(fig, cfg.out, "current.png", files)

    p = PART1_NEURON
    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.plot(t, v_sub, color="tab:blue", lw=1.5, label="no spike mechanism (tutorial exercise)")
    ax.plot(t, v_spk, color="tab:orange", lw=1.2, label="with threshold and reset")
    C.spike_marks(ax, t_spk, p.V_th, top=-30.0, color="tab:orange", lw=1.2)
    ax.axhline(p.V_th, color="k", ls="--", lw=1, label=f"threshold V_th = {p.V_th:g} mV")
    ax.axhline(p.V_reset, color="k", ls=":", lw=1, label=f"reset V_reset = {p.V_reset:g} mV")
    ax.axhline(p.E_L + cfg.i_mean / p.g_L, color="tab:blue", ls="-.", lw=1,
               label=f"E_L + R i_mean = {p.E_L + cfg.i_mean / p.g_L:g} mV")
    ax.set(xlabel="time (ms)", ylabel="membrane potential V (mV)",
           title="Does the sinusoidal input take V over threshold?  Without vs with the spike mechanism")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    C.save_figure(fig, cfg.out, "membrane.png", files)

    currents = np.asarray(cfg.fi_currents, dtype=float)
    r_sin, r_dc = (np.asarray(x) for x in f_I_curve(currents, cfg.fi_T, dt))
    rheobase = p.g_L * (p.V_th - p.E_L)
    log(f"f-I sweep: {currents.size} currents x 2 inputs in one vmap each")

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(currents, r_sin, "o-", ms=3, label="sinusoidal I(t), mean i_mean")
    ax.plot(currents, r_dc, "s-", ms=3, label="constant I = i_mean")
    ax.axvline(rheobase, color="k", ls="--", lw=1, label=f"rheobase g_L (V_th - E_L) = {rheobase:g} pA")
    ax.set(xlabel="mean input current i_mean (pA)", ylabel="output rate (Hz)",
           title="How much mean current does the neuron need to fire, and does modulation help?")
    plateau = locked_plateau(currents, r_sin)
    if plateau is not None:
        ax.axhspan(99.0, 101.0, color="tab:blue", alpha=0.12, lw=0,
                   label=f"100 Hz: one spike per 10 ms input cycle ({plateau[0]:g}-{plateau[1]:g} pA)")
    ax.legend(fontsize=8, loc="upper left")
    fig.text(0.5, -0.01, f"dt = {dt:g} ms: every ISI is a whole number of steps, so rates are 1000/k Hz "
             "(staircases).\nThe sinusoid's 100 Hz plateau is 1:1 locking to its 10 ms period, one spike per "
             "cycle (t_ref = 0: not a refractory limit).", ha="center", va="top", fontsize=8, color="0.3")
    C.save_figure(fig, cfg.out, "f_I.png", files)

    summary = dict(
        name=NAME, figures=files, units="ms, mV, pA, nS, Hz",
        params=dict(neuron=PART1_NEURON._asdict(), i_mean_pA=cfg.i_mean, T_ms=T, dt_ms=dt),
        v_first_steps_mV=v_sub[1:11].tolist(),
        v_first_steps_note=("v after each of the first ten steps of the tutorial's loop; the tutorial prints "
                            "the same values in volts (divide by 1000)"),
        v_sub_max=float(v_sub.max()), n_spikes=int(spikes.sum()), spike_times_ms=t_spk.tolist(),
        f_I=dict(currents_pA=currents, rate_sin_Hz=r_sin, rate_dc_Hz=r_dc, rheobase_pA=rheobase,
                 T_ms=cfg.fi_T, locked_100Hz_pA=plateau),
        conclusion=(f"Without a spike mechanism V rises to {v_sub.max():.1f} mV, far above V_th = "
                    f"{p.V_th:g} mV; with it the neuron fires {int(spikes.sum())} spikes in {T:g} ms. "
                    f"Constant input fires only above the rheobase {rheobase:g} pA; the sinusoid "
                    f"(peaks at 2 i_mean) fires from i_mean = "
                    f"{currents[np.argmax(r_sin > 0)] if np.any(r_sin > 0) else float('nan'):g} pA."
                    + (f" The sinusoidal curve stays at 100 Hz from {plateau[0]:g} to {plateau[1]:g} pA: the "
                       f"neuron locks to the 10 ms input cycle, one spike per cycle (t_ref = 0, so this is "
                       f"not a refractory limit); the dt = {dt:g} ms grid makes both curves staircases of "
                       f"1000/k Hz." if plateau is not None else "")),
        runtime_s=log.elapsed)
    return summary


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
