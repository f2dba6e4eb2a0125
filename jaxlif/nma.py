"""Drop-in replacements for the Neuromatch Academy tutorial functions, on jaxlif's jitted core.

Same names, argument order, units (ms, mV, nS, pA, Hz) and return values as the tutorial
"Synaptic transmission" (W2D3 T3); NumPy arrays in, NumPy arrays out.  Each function converts
the tutorial's parameter dictionary to jaxlif's pytrees and calls the same step functions the
library uses everywhere, so::

    from jaxlif import nma
    pars = nma.default_pars(T=1000.)
    pars.update(gE_bar=2.4, VE=0., tau_syn_E=2., gI_bar=2.4, VI=-80., tau_syn_I=5.)
    ex = nma.Poisson_generator(pars, rate=10, n=80, myseed=2020)
    inh = nma.Poisson_generator(pars, rate=10, n=20, myseed=2021)
    v, rec_spikes, gE, gI = nma.run_LIF_cond(pars, 0, ex, inh)

Precision: jaxlif computes in float32 unless 64-bit mode is on.  With
``jax.config.update("jax_enable_x64", True)`` (or inside ``with jax.enable_x64(True):``) the
results reproduce the tutorial's NumPy code: identical spike times and traces within 1e-9.
In float32 the traces agree within about 1e-3 mV / 1e-4 nS wherever no spike time differs.

Differences from the tutorial code (docs/conventions.md, section 5), all deliberate:

* ``Poisson_generator`` and ``my_GWN`` never touch NumPy's global random state: they draw
  from a private ``np.random.RandomState(myseed)``, which yields exactly the numbers the
  tutorial's ``np.random.seed(myseed)`` produced.  ``myseed=False``/``None`` draws fresh
  entropy (as the tutorial); ``myseed=0`` is the seed 0 (the tutorial treated it as "no seed").
* ``run_LIF_cond_STP`` returns ``(v, rec_spikes, uE, RE, gE, uI, RI, gI)`` with the real
  ``uI`` (the tutorial returned ``RI`` twice and lost ``uI``).
* ``plot_volt_trace`` does not write +10 mV into the caller's voltage array.
* Bad arguments raise ``ValueError``/``TypeError`` (rate*dt/1000 > 1, dt <= 0, tau < dt, ...).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks
from jaxlif.neurons import CondLIFParams, LIFParams, simulate_cond_lif
from jaxlif.plasticity import STPParams, simulate_stp
from jaxlif.stp_lif import STPLIFParams, simulate_stp_lif
from jaxlif.synapses import SynParams

__all__ = [
    "default_pars",
    "Poisson_generator",
    "my_GWN",
    "run_LIF_cond",
    "dynamic_syn",
    "run_LIF_cond_STP",
    "my_illus_STD",
    "plot_volt_trace",
]


def default_pars(**kwargs) -> dict:
    """The tutorial's parameter dictionary (neuron defaults; ``range_t = np.arange(0, T, dt)`` [ms]).

    V_th -55 mV, V_reset -75 mV, tau_m 10 ms, g_L 10 nS, V_init -65 mV, E_L -75 mV, tref 2 ms,
    T 400 ms, dt 0.1 ms; keyword arguments add or override entries.
    """
    pars = {"V_th": -55.0, "V_reset": -75.0, "tau_m": 10.0, "g_L": 10.0, "V_init": -65.0,
            "E_L": -75.0, "tref": 2.0, "T": 400.0, "dt": 0.1}
    pars.update(kwargs)
    pars["range_t"] = np.arange(0, pars["T"], pars["dt"])
    return pars


def _get(pars: dict, key: str):
    try:
        return pars[key]
    except KeyError:
        raise KeyError(f"pars has no entry {key!r}; build it with nma.default_pars() and add the "
                       f"synapse entries the tutorial sets (gE_bar, VE, tau_syn_E, ...)") from None


def _grid(pars: dict) -> tuple[float, int]:
    dt = _checks.check_dt(_get(pars, "dt"))
    return dt, int(np.asarray(_get(pars, "range_t")).size)


def _rng(myseed) -> np.random.RandomState:
    """A private legacy generator: the same stream as the tutorial's ``np.random.seed(myseed)``."""
    if myseed is None or myseed is False:
        return np.random.RandomState()
    if isinstance(myseed, (bool, np.bool_)) or not isinstance(myseed, (int, np.integer)):
        raise TypeError(f"myseed must be an int seed or False, got {myseed!r}")
    return np.random.RandomState(int(myseed))


def Poisson_generator(pars: dict, rate: float, n: int, myseed: int | bool | None = False) -> np.ndarray:
    """``n`` Poisson trains ``(n, Lt)`` of 0./1. with spike probability ``rate*dt/1000`` per step.

    Args:
        pars: parameter dictionary (uses ``dt`` [ms] and ``range_t``).
        rate: rate [Hz], ``0 <= rate <= 1000/dt``.  n: number of trains.
        myseed: int seed (same array as the tutorial for the same seed) or False for fresh entropy.
    """
    dt, Lt = _grid(pars)
    _checks.check_rate("rate", rate, dt)
    _checks.check_count("n", n)
    u_rand = _rng(myseed).rand(n, Lt)
    return 1.0 * (u_rand < rate * (dt / 1000.0))


def my_GWN(pars: dict, mu: float, sig: float, myseed: int | bool | None = False) -> np.ndarray:
    """Gaussian white-noise current ``mu + sig * N(0,1) / sqrt(dt/1000)`` [pA], shape ``(Lt,)``."""
    dt, Lt = _grid(pars)
    _checks.check_finite("mu", mu, "pA")
    _checks.check_nonnegative("sig", sig)
    return mu + sig * _rng(myseed).randn(Lt) / np.sqrt(dt / 1000.0)


def _neuron(pars: dict) -> LIFParams:
    return LIFParams(V_th=_get(pars, "V_th"), V_reset=_get(pars, "V_reset"), tau_m=_get(pars, "tau_m"),
                     g_L=_get(pars, "g_L"), V_init=_get(pars, "V_init"), E_L=_get(pars, "E_L"),
                     t_ref=_get(pars, "tref"))


def _syn(pars: dict, kind: str) -> SynParams:
    return SynParams(g_bar=_get(pars, f"g{kind}_bar"), tau_syn=_get(pars, f"tau_syn_{kind}"),
                     E_rev=_get(pars, f"V{kind}"))


def _as_float_params(tree):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=jnp.result_type(float)), tree)


def _injected(I_inj, Lt: int) -> np.ndarray:
    return I_inj * np.ones(Lt)  # the tutorial's "ensure Iinj has length Lt"


def _total_train(train, Lt: int) -> np.ndarray:
    """The tutorial's pooling: zeros if no spike, else ``train.sum(axis=0) * ones(Lt)``.

    Note: a 1-D train therefore becomes its total spike count at *every* step, exactly as in
    the tutorial; pass trains as ``(n_trains, Lt)``.
    """
    train = np.asarray(train, dtype=float)
    if train.max() == 0:
        return np.zeros(Lt)
    return train.sum(axis=0) * np.ones(Lt)


def _spike_times(spikes, dt: float) -> np.ndarray:
    return np.array(np.flatnonzero(np.asarray(spikes)).tolist()) * dt


def run_LIF_cond(pars: dict, I_inj: ArrayLike, pre_spike_train_ex: ArrayLike,
                 pre_spike_train_in: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Conductance-based LIF (the tutorial's ``run_LIF_cond``) on jaxlif's scan.

    Args:
        pars: dictionary with the neuron entries of :func:`default_pars` plus
            ``gE_bar, gI_bar`` [nS], ``VE, VI`` [mV], ``tau_syn_E, tau_syn_I`` [ms].
        I_inj: injected current [pA], scalar or ``(Lt,)``.
        pre_spike_train_ex, pre_spike_train_in: trains ``(n_trains, Lt)`` of 0/1.

    Returns:
        ``(v, rec_spikes, gE, gI)``: potential [mV] ``(Lt,)``, spike times [ms], conductances [nS].
    """
    dt, Lt = _grid(pars)
    params = CondLIFParams(_neuron(pars), _syn(pars, "E"), _syn(pars, "I"))
    out = simulate_cond_lif(_as_float_params(params), _total_train(pre_spike_train_ex, Lt),
                            _total_train(pre_spike_train_in, Lt), _injected(I_inj, Lt), dt=dt)
    return np.asarray(out.v), _spike_times(out.spikes, dt), np.asarray(out.g_E), np.asarray(out.g_I)


def dynamic_syn(g_bar: float, tau_syn: float, U0: float, tau_d: float, tau_f: float, pre_spike_train: ArrayLike,
                dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tsodyks-Markram synapse (the tutorial's ``dynamic_syn``): returns ``(u, R, g)``, each ``(Lt,)``.

    Args:
        g_bar: conductance scale [nS].  tau_syn: [ms].  U0: release probability in (0, 1].
        tau_d, tau_f: depression / facilitation time constants [ms] (>= dt).
        pre_spike_train: spikes (or summed counts) per step ``(Lt,)``.  dt: [ms].

    Summed counts above 1 get the tutorial's scaled update (``counts="tutorial"``), which can leave
    ``u > 1`` and ``R < 0`` as the tutorial's code does; the library's :func:`jaxlif.simulate_stp`
    applies that many successive releases by default instead (docs/conventions.md, section 5).
    """
    stp = STPParams(U0=U0, tau_d=tau_d, tau_f=tau_f)
    syn = SynParams(g_bar=g_bar, tau_syn=tau_syn, E_rev=0.0)
    with warnings.catch_warnings():      # summed counts: the tutorial's scaled update, on purpose
        warnings.filterwarnings("ignore", message=".*spikes in one step", category=UserWarning)
        out = simulate_stp(_as_float_params(stp), _as_float_params(syn),
                           np.asarray(pre_spike_train, dtype=float), dt=dt, counts="tutorial")
    return np.asarray(out.u), np.asarray(out.R), np.asarray(out.g)


def run_LIF_cond_STP(pars: dict, I_inj: ArrayLike, pre_spike_train_ex: ArrayLike,
                     pre_spike_train_in: ArrayLike) -> tuple[np.ndarray, ...]:
    """Conductance LIF with one STP synapse per input train (the tutorial's ``run_LIF_cond_STP``).

    ``pars`` additionally needs ``U0_E, tau_d_E, tau_f_E, U0_I, tau_d_I, tau_f_I``.

    Returns:
        ``(v, rec_spikes, uE, RE, gE, uI, RI, gI)``; the per-train arrays have shape
        ``(n_trains, Lt)``.  Unlike the tutorial (which returned ``RI`` twice), the sixth
        value is the real ``uI``.
    """
    dt, Lt = _grid(pars)
    params = STPLIFParams(
        neuron=_neuron(pars), exc=_syn(pars, "E"), inh=_syn(pars, "I"),
        stp_E=STPParams(_get(pars, "U0_E"), _get(pars, "tau_d_E"), _get(pars, "tau_f_E")),
        stp_I=STPParams(_get(pars, "U0_I"), _get(pars, "tau_d_I"), _get(pars, "tau_f_I")))
    ex = np.atleast_2d(np.asarray(pre_spike_train_ex, dtype=float))
    inh = np.atleast_2d(np.asarray(pre_spike_train_in, dtype=float))
    with warnings.catch_warnings():      # summed counts: the tutorial's scaled update, on purpose
        warnings.filterwarnings("ignore", message=".*spikes in one step", category=UserWarning)
        out = simulate_stp_lif(_as_float_params(params), ex, inh, _injected(I_inj, Lt), dt=dt,
                               counts="tutorial")
    a = np.asarray
    return (a(out.v), _spike_times(out.spikes, dt), a(out.syn_E.u), a(out.syn_E.R), a(out.syn_E.g),
            a(out.syn_I.u), a(out.syn_I.R), a(out.syn_I.g))


def my_illus_STD(Poisson: bool = False, rate: float = 20.0, U0: float = 0.5, tau_d: float = 100.0,
                 tau_f: float = 50.0, plot_out: bool = True,
                 myseed: int | bool | None = False) -> tuple[float, float] | None:
    """One STP synapse driven by a regular (or Poisson) train of ``rate`` [Hz] for ~10 spikes.

    As in the tutorial: ``T = 10*1000/rate`` ms, ``dt = 0.1`` ms, ``g_bar = 1.2`` nS,
    ``tau_syn = 5`` ms.  For a regular train returns ``(g[isi], g[9*isi])`` [nS], which the
    tutorial calls the conductance at the 1st and the 10th spike (they are the 1st and 9th
    spikes the synapse sees; docs/conventions.md 4.6).  For ``Poisson=True`` returns ``None``, as
    the tutorial does.  ``plot_out`` draws u, R, the spikes and g with labelled axes.
    ``myseed`` (not in the tutorial) seeds the Poisson train.
    """
    for name, value, unit in (("rate", rate, "Hz"), ("U0", U0, ""), ("tau_d", tau_d, "ms"),
                              ("tau_f", tau_f, "ms")):
        _scalar(name, value, unit, "my_illus_STD")
    _checks.check_positive("rate", rate, "Hz")
    rate = float(rate)
    pars = default_pars(T=10.0 * 1000 / (1.0 * rate))
    dt = pars["dt"]
    if Poisson:
        train = Poisson_generator(pars, rate, n=1, myseed=myseed).sum(axis=0)
        isi_num = None
    else:
        isi_num = int((1e3 / rate) / dt)
        if isi_num < 1:
            raise ValueError(f"rate={rate} Hz gives an inter-spike interval under one step of dt={dt} ms")
        train = np.zeros(len(pars["range_t"]))
        train[::isi_num] = 1.0
    u, R, g = dynamic_syn(1.2, 5.0, U0, tau_d, tau_f, train, dt)
    if plot_out:
        _plot_stp(pars, train, u, R, g)
    if not Poisson:
        return g[isi_num], g[9 * isi_num]
    return None


def _scalar(name: str, value, unit: str, fn: str) -> None:
    """A tutorial argument that must be one number (the tutorial loops over rates outside)."""
    arr = _checks.check_numeric(name, value)
    if arr is not None and arr.ndim != 0:
        hint = (" for a whole g10/g1 curve call jaxlif.ratio_curve(STPParams(U0, tau_d, tau_f), rates)"
                if name == "rate" else "")
        raise TypeError(f"{fn}: {name} must be a single number{' in ' + unit if unit else ''}, got "
                        f"{value!r} (shape {arr.shape});{hint or ' call it once per value'}")


def _plot_stp(pars, train, u, R, g):
    import matplotlib.pyplot as plt

    t = pars["range_t"]
    fig = plt.figure(figsize=(12, 6))
    ax = fig.add_subplot(221)
    ax.plot(t, R, "b", label="R")
    ax.plot(t, u, "r", label="u")
    ax.set(xlim=(0, pars["T"]), ylabel="R or u (dimensionless)", title="Resources R and utilisation u")
    ax.legend(loc="best")
    ax = fig.add_subplot(223)
    t_sp = t[np.asarray(train) > 0]
    ax.plot(t_sp, np.zeros(len(t_sp)), "k|", ms=18, markeredgewidth=2)
    ax.set(xlabel="Time (ms)", xlim=(0, pars["T"]), yticks=[], title="Presynaptic spikes")
    ax = fig.add_subplot(122)
    ax.plot(t, g, "r", label="STP synapse")
    ax.set(xlabel="Time (ms)", ylabel="g (nS)", xlim=(0, pars["T"]), title="Postsynaptic conductance")
    ax.legend(loc="best")
    fig.tight_layout()
    plt.show()
    return fig


def plot_volt_trace(pars: dict, v: ArrayLike, sp: ArrayLike, show: bool = True) -> None:
    """Plot a membrane trace with spikes drawn as +10 mV bars, *without* modifying ``v``."""
    import matplotlib.pyplot as plt

    v = np.array(v, dtype=float, copy=True)
    sp = np.asarray(sp)
    if sp.size:
        v[(sp / pars["dt"]).astype(int) - 1] += 10  # the tutorial's marker, on a copy
    plt.plot(pars["range_t"], v, "b")
    plt.axhline(pars["V_th"], 0, 1, color="k", ls="--", lw=1.0)
    plt.xlabel("Time (ms)")
    plt.ylabel("V (mV)")
    if show:
        plt.show()
