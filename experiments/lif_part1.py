"""LIF part 1: the first tutorial's sinusoidal input current and membrane potential, then spikes.

The first tutorial ("LIF neuron part 1") integrates tau dV/dt = E_L - V + R I(t) with forward Euler,
I(t) = i_mean (1 + sin(2 pi t / 10 ms)), and no spike mechanism.  In jaxlif's units
(SPEC "Units"): tau_m 20 ms, E_L -60 mV, V_reset -70 mV, V_th -50 mV, R = 0.1 GOhm (g_L 10 nS),
i_mean 250 pA, dt 1 ms, T 150 ms.  This script draws

* ``current.png``: I(t) at the simulation samples [pA];
* ``membrane.png``: V(t) [mV] without the spike mechanism (the tutorial's loop,
  ``simulate_lif(..., spiking=False)``) and the same neuron with threshold and reset on
  (t_ref = 0: the first tutorial has no refractory period);
* ``f_I.png``: the batched extension, output rate against i_mean for the sinusoidal input and
  for a constant current of the same mean, all currents in one ``jax.vmap``.

``lif_part1.json`` holds the plotted numbers; ``v_printed_SI`` are the values the tutorial's loop
prints (the updated v after each step, in volts).
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


def main(argv=None) -> dict:
    cfg = C.parse(C.make_parser(__doc__, NAME, DEFAULTS, QUICK, EXTRA), argv, DEFAULTS, QUICK)
    log, files = C.Progress(NAME), []
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
    ax.legend(fontsize=8, loc="upper left")
    ax.text(0.99, 0.02, f"dt = {dt:g} ms: ISIs are whole steps, hence the staircase", ha="right",
            va="bottom", transform=ax.transAxes, fontsize=8, color="0.3")
    C.save_figure(fig, cfg.out, "f_I.png", files)

    summary = dict(
        name=NAME, figures=files,
        params=dict(neuron=PART1_NEURON._asdict(), i_mean=cfg.i_mean, T=T, dt=dt),
        v_printed_SI=(v_sub[1:11] * 1e-3).tolist(),
        v_sub_max=float(v_sub.max()), n_spikes=int(spikes.sum()), spike_times_ms=t_spk.tolist(),
        f_I=dict(currents_pA=currents, rate_sin_Hz=r_sin, rate_dc_Hz=r_dc, rheobase_pA=rheobase,
                 T=cfg.fi_T),
        conclusion=(f"Without a spike mechanism V rises to {v_sub.max():.1f} mV, far above V_th = "
                    f"{p.V_th:g} mV; with it the neuron fires {int(spikes.sum())} spikes in {T:g} ms. "
                    f"Constant input fires only above the rheobase {rheobase:g} pA; the sinusoid "
                    f"(peaks at 2 i_mean) fires from i_mean = "
                    f"{currents[np.argmax(r_sin > 0)] if np.any(r_sin > 0) else float('nan'):g} pA."),
        runtime_s=log.elapsed)
    return C.finish(NAME, summary, cfg.out, log, len(files))


if __name__ == "__main__":
    main()
