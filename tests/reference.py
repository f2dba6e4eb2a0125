"""Independent NumPy float64 oracle for jaxlif's tests.

Every function here transcribes one algorithm of ``docs/conventions.md`` step by step, in
plain NumPy / Python floats (float64), with no import of ``jaxlif``. The library is
tested against these functions, and ``tests/test_reference.py`` tests these
functions against the tutorials' printed numbers and against closed forms.

Units (docs/conventions.md 1): time in ms, voltage in mV, conductance in nS, current in pA,
rates in Hz -- except :func:`lif_part1_loop`, which keeps the first tutorial's SI
units (s, V, Ohm, A) so that its output can be compared with the printed values.

Floating-point grouping follows the tutorial code (``x[it+1] = x[it] + dx`` with
``dx`` computed first, ``(dt / tau) * x``), so that the oracle reproduces the
tutorial to the last bit, not only to rounding error.

Deliberate differences from the tutorial code (docs/conventions.md 5):

* :func:`poisson_generator` and :func:`gwn` draw from a private
  ``np.random.RandomState(myseed)`` and never touch NumPy's global generator.
  For a non-zero integer seed they return exactly the tutorial's numbers; a seed
  of 0 is an ordinary seed here (the tutorial treats 0 as "no seed").
* :func:`run_lif_cond_stp` returns ``uI`` where the tutorial returns ``RI`` twice.
* :func:`run_lif_cond` accepts a 1-D spike array as *one* train. (The tutorial's
  ``train.sum(axis=0) * np.ones(Lt)`` would turn a 1-D train into its total spike
  count delivered at every step.) An empty ``(0, Lt)`` array means "no input".
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "lif_part1_loop",
    "default_pars",
    "poisson_generator",
    "gwn",
    "run_lif_cond",
    "dynamic_syn",
    "run_lif_cond_stp",
    "ratio_point",
    "tm_continuous_regular",
    "tm_continuous_conductance",
    "lif_dc_first_spike_steps",
    "fmp_shot_noise_estimate",
    "spike_rate_hz",
    "cv_isi",
]


# --------------------------------------------------------------------------------------
# First tutorial (LIF neuron part 1), SI units
# --------------------------------------------------------------------------------------


def lif_part1_loop(n_steps, dt=1e-3, tau=20e-3, el=-60e-3, r=100e6, i_mean=25e-11):
    """The first tutorial's current and voltage loops (docs/conventions.md 4.7).

    For step k: ``t = k*dt``, ``i = i_mean * (1 + sin(2*pi*t / 10 ms))``, then
    ``v <- v + dt/tau * (el - v + r*i)`` starting from ``v = el``. There is no
    threshold or reset (the tutorial's neuron does not fire).

    Args:
        n_steps: number of loop iterations.
        dt: time step [s]. tau: membrane time constant [s]. el: leak potential [V].
        r: membrane resistance [Ohm]. i_mean: mean input current [A].

    Returns:
        ``(t, i, v)``: arrays of length ``n_steps``: time [s], input current [A] and the
        *updated* voltage [V], i.e. exactly what the tutorial prints on each line.
    """
    t_out = np.empty(n_steps)
    i_out = np.empty(n_steps)
    v_out = np.empty(n_steps)
    v = el
    for step in range(n_steps):
        t = step * dt
        i = i_mean * (1 + np.sin((t * 2 * np.pi) / 0.01))
        v = v + dt / tau * (el - v + r * i)
        t_out[step], i_out[step], v_out[step] = t, i, v
    return t_out, i_out, v_out


# --------------------------------------------------------------------------------------
# Parameters and inputs (synaptic transmission tutorial), ms / mV / nS / pA / Hz
# --------------------------------------------------------------------------------------


def default_pars(**kw):
    """The tutorial's ``default_pars`` (docs/conventions.md 6, neuron defaults).

    Keyword arguments add or override entries *before* the time grid is built, so
    ``default_pars(T=1000.)`` gives ``range_t = np.arange(0, 1000., 0.1)`` (10000 samples).

    Returns:
        dict with V_th [mV], V_reset [mV], tau_m [ms], g_L [nS], V_init [mV], E_L [mV],
        tref [ms], T [ms], dt [ms], any extra keys given, and ``range_t`` [ms].
    """
    pars = {
        "V_th": -55.0,  # spike threshold [mV]
        "V_reset": -75.0,  # reset potential [mV]
        "tau_m": 10.0,  # membrane time constant [ms]
        "g_L": 10.0,  # leak conductance [nS]
        "V_init": -65.0,  # initial potential [mV]
        "E_L": -75.0,  # leak reversal potential [mV]
        "tref": 2.0,  # refractory time [ms]
        "T": 400.0,  # duration [ms]
        "dt": 0.1,  # time step [ms]
    }
    pars.update(kw)
    pars["range_t"] = np.arange(0, pars["T"], pars["dt"])  # time grid [ms]
    return pars


def poisson_generator(pars, rate, n, myseed=None):
    """Bernoulli ("Poisson") spike trains (docs/conventions.md 4.4).

    Each of the ``n`` trains has, independently at every one of the ``Lt`` grid steps, a
    spike with probability ``p = rate * dt / 1000``. Draws ``RandomState(myseed).rand(n, Lt)``,
    which for a non-zero seed equals the tutorial's ``np.random.seed(myseed);
    np.random.rand(n, Lt)``; the global generator is left untouched.

    Args:
        pars: parameter dict (uses ``dt`` [ms] and ``range_t``).
        rate: firing rate [Hz]; must satisfy ``rate * dt / 1000 <= 1``.
        n: number of trains.
        myseed: integer seed (``None``: fresh OS entropy, not reproducible).

    Returns:
        float array ``(n, Lt)`` of 0.0 / 1.0.
    """
    dt = pars["dt"]
    lt = pars["range_t"].size
    p = rate * (dt / 1000.0)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"rate={rate} Hz with dt={dt} ms gives p={p}, outside [0, 1]")
    u_rand = np.random.RandomState(myseed).rand(n, lt)
    return 1.0 * (u_rand < p)


def gwn(pars, mu, sig, myseed=None):
    """Gaussian white-noise current (docs/conventions.md 4.4): ``mu + sig * N(0,1) / sqrt(dt/1000)``.

    Draws ``RandomState(myseed).randn(Lt)`` (same numbers as the tutorial's ``my_GWN`` for
    a non-zero seed; the global generator is left untouched). Sample mean ``mu``, sample
    variance ``sig**2 * 1000 / dt``.

    Args:
        pars: parameter dict (uses ``dt`` [ms] and ``range_t``).
        mu: mean current [pA]. sig: noise amplitude [pA * s**0.5].
        myseed: integer seed (``None``: fresh OS entropy).

    Returns:
        array ``(Lt,)`` of currents [pA].
    """
    dt = pars["dt"]
    lt = pars["range_t"].size
    return mu + sig * np.random.RandomState(myseed).randn(lt) / np.sqrt(dt / 1000.0)


# --------------------------------------------------------------------------------------
# Conductance-based LIF with static synapses
# --------------------------------------------------------------------------------------


def _summed_train(train, lt):
    """Spike count per step summed over trains: ``(n, Lt)`` or ``(Lt,)`` -> list of Lt floats."""
    train = np.atleast_2d(np.asarray(train, dtype=float))
    if train.shape[-1] != lt:
        raise ValueError(f"spike trains have {train.shape[-1]} steps, expected Lt={lt}")
    return train.sum(axis=0).tolist()


def _lif_cond_voltage(pars, i_inj, g_e, g_i):
    """Threshold/refractory/Euler voltage loop shared by the static and STP neurons.

    docs/conventions.md 4.2, steps 1 and 3, given total conductances ``g_e``, ``g_i`` [nS]
    (sequences of length Lt; ``g_e[it+1]`` is used to advance ``v[it]``).
    Returns (v [mV], spike times [ms]).
    """
    v_th, v_reset = pars["V_th"], pars["V_reset"]
    tau_m, g_l = pars["tau_m"], pars["g_L"]
    e_l, v_e, v_i = pars["E_L"], pars["VE"], pars["VI"]
    tref, dt = pars["tref"], pars["dt"]
    lt = pars["range_t"].size

    iinj = (i_inj * np.ones(lt)).tolist()  # [pA], scalar or array of length Lt
    v = [0.0] * lt
    v[0] = float(pars["V_init"])
    tr = 0.0  # refractory counter, a float exactly as in the tutorial
    spikes = []
    for it in range(lt - 1):
        # 1. refractory clamp, else threshold test (the last sample is never tested)
        if tr > 0:
            v[it] = v_reset
            tr = tr - 1
        elif v[it] >= v_th:
            spikes.append(it)
            v[it] = v_reset
            tr = tref / dt
        # 3. forward-Euler membrane update with the conductances of step it+1
        vi = v[it]
        dv = (dt / tau_m) * (
            -(vi - e_l)
            - (g_e[it + 1] / g_l) * (vi - v_e)
            - (g_i[it + 1] / g_l) * (vi - v_i)
            + iinj[it] / g_l
        )
        v[it + 1] = vi + dv
    return np.array(v), np.array(spikes, dtype=float) * dt


def run_lif_cond(pars, I_inj, pre_ex, pre_in):
    """Conductance-based LIF driven by static exponential synapses (docs/conventions.md 4.2).

    ``v[0] = V_init``, ``tr = 0``; for ``it = 0 .. Lt-2``:

    1. if ``tr > 0``: ``v[it] = V_reset; tr -= 1``;
       elif ``v[it] >= V_th``: spike at ``it*dt``, ``v[it] = V_reset``, ``tr = tref/dt``;
    2. ``gE[it+1] = gE[it] - dt/tau_syn_E * gE[it] + gE_bar * nE[it+1]`` (same for I);
    3. ``v[it+1] = v[it] + dt/tau_m * (-(v-E_L) - gE[it+1]/g_L (v-VE) - gI[it+1]/g_L (v-VI)
       + I_inj[it]/g_L)``.

    With ``tref = 2``, ``dt = 0.1`` the clamp covers the 20 steps after the spike step.

    Args:
        pars: :func:`default_pars` dict plus gE_bar, gI_bar [nS], VE, VI [mV],
            tau_syn_E, tau_syn_I [ms].
        I_inj: injected current [pA], scalar or array ``(Lt,)``.
        pre_ex, pre_in: excitatory / inhibitory spike trains ``(n, Lt)`` (0/1 or counts),
            summed over trains; a 1-D array is one train; ``(0, Lt)`` means none.

    Returns:
        ``(v, rec_spikes, gE, gI)``: voltage ``(Lt,)`` [mV], spike times [ms], total
        excitatory and inhibitory conductances ``(Lt,)`` [nS].
    """
    dt = pars["dt"]
    lt = pars["range_t"].size
    n_e = _summed_train(pre_ex, lt)
    n_i = _summed_train(pre_in, lt)
    ge_bar, gi_bar = pars["gE_bar"], pars["gI_bar"]
    tau_e, tau_i = pars["tau_syn_E"], pars["tau_syn_I"]

    # 2. conductances do not depend on v, so they can be computed first
    g_e = [0.0] * lt
    g_i = [0.0] * lt
    for it in range(lt - 1):
        g_e[it + 1] = g_e[it] - (dt / tau_e) * g_e[it] + ge_bar * n_e[it + 1]
        g_i[it + 1] = g_i[it] - (dt / tau_i) * g_i[it] + gi_bar * n_i[it + 1]

    v, rec_spikes = _lif_cond_voltage(pars, I_inj, g_e, g_i)
    return v, rec_spikes, np.array(g_e), np.array(g_i)


# --------------------------------------------------------------------------------------
# Tsodyks-Markram short-term plasticity (tutorial Euler scheme)
# --------------------------------------------------------------------------------------


def dynamic_syn(g_bar, tau_syn, U0, tau_d, tau_f, pre_spike_train, dt):
    """Tutorial Euler scheme for one STP synapse (docs/conventions.md 4.1).

    ``u[0] = 0``, ``R[0] = 1``, ``g[0] = 0``; for ``it = 0 .. Lt-2`` with ``s = train[it+1]``::

        u[it+1] = u[it] - dt/tau_f * u[it] + U0 * (1 - u[it]) * s
        R[it+1] = R[it] + dt/tau_d * (1 - R[it]) - u[it+1] * R[it] * s
        g[it+1] = g[it] - dt/tau_syn * g[it] + g_bar * R[it] * u[it+1] * s

    A spike at index 0 is never seen. Vectorised over leading axes: a ``(n, Lt)`` train
    runs ``n`` independent synapses (element-wise identical to ``n`` separate calls).

    Args:
        g_bar: maximal conductance [nS]. tau_syn: conductance decay [ms].
        U0: release increment, in (0, 1]. tau_d: recovery time constant of R [ms].
        tau_f: decay time constant of u [ms].
        pre_spike_train: spike counts per step, ``(Lt,)`` or ``(n, Lt)``.
        dt: time step [ms].

    Returns:
        ``(u, R, g)``, each shaped like ``pre_spike_train``: utilisation, available
        resources (dimensionless) and conductance [nS].
    """
    s = np.asarray(pre_spike_train, dtype=float)
    lt = s.shape[-1]
    s_t = np.moveaxis(s, -1, 0)  # time-major view
    u = np.zeros(s_t.shape)
    R = np.zeros(s_t.shape)
    R[0] = 1.0
    g = np.zeros(s_t.shape)
    for it in range(lt - 1):
        sp = s_t[it + 1]
        du = -(dt / tau_f) * u[it] + U0 * (1.0 - u[it]) * sp
        u[it + 1] = u[it] + du
        dR = (dt / tau_d) * (1.0 - R[it]) - u[it + 1] * R[it] * sp
        R[it + 1] = R[it] + dR
        dg = -(dt / tau_syn) * g[it] + g_bar * R[it] * u[it + 1] * sp
        g[it + 1] = g[it] + dg
    return np.moveaxis(u, 0, -1), np.moveaxis(R, 0, -1), np.moveaxis(g, 0, -1)


def run_lif_cond_stp(pars, I_inj, pre_ex, pre_in):
    """Conductance LIF whose every input train has its own STP synapse (docs/conventions.md 4.3).

    Each excitatory train ``k`` runs :func:`dynamic_syn` with (gE_bar, tau_syn_E, U0_E,
    tau_d_E, tau_f_E); ``gE_total`` is the sum over trains (likewise for I). The voltage
    loop is that of :func:`run_lif_cond` with ``gE_total[it+1]``, ``gI_total[it+1]`` in
    step 3; the static synapse update (step 2) is not applied on top.

    Args:
        pars: :func:`default_pars` dict plus gE_bar, gI_bar [nS], VE, VI [mV],
            tau_syn_E, tau_syn_I, tau_d_E, tau_f_E, tau_d_I, tau_f_I [ms], U0_E, U0_I.
        I_inj: injected current [pA], scalar or ``(Lt,)``.
        pre_ex: ``(nE, Lt)`` excitatory trains. pre_in: ``(nI, Lt)`` inhibitory trains.

    Returns:
        ``(v, rec_spikes, uE, RE, gE, uI, RI, gI)``: voltage ``(Lt,)`` [mV], spike times
        [ms], and per-synapse ``(nE, Lt)`` / ``(nI, Lt)`` u, R and g [nS]. (The tutorial
        returns ``RI`` in place of ``uI``; this is the corrected order.)
    """
    dt = pars["dt"]
    lt = pars["range_t"].size
    pre_ex = np.atleast_2d(np.asarray(pre_ex, dtype=float))
    pre_in = np.atleast_2d(np.asarray(pre_in, dtype=float))
    for name, train in (("pre_ex", pre_ex), ("pre_in", pre_in)):
        if train.shape[-1] != lt:
            raise ValueError(f"{name} has {train.shape[-1]} steps, expected Lt={lt}")

    uE, RE, gE = dynamic_syn(
        pars["gE_bar"], pars["tau_syn_E"], pars["U0_E"], pars["tau_d_E"], pars["tau_f_E"], pre_ex, dt
    )
    uI, RI, gI = dynamic_syn(
        pars["gI_bar"], pars["tau_syn_I"], pars["U0_I"], pars["tau_d_I"], pars["tau_f_I"], pre_in, dt
    )
    v, rec_spikes = _lif_cond_voltage(pars, I_inj, gE.sum(axis=0).tolist(), gI.sum(axis=0).tolist())
    return v, rec_spikes, uE, RE, gE, uI, RI, gI


def ratio_point(rate, U0, tau_d, tau_f, dt=0.1, g_bar=1.2, tau_syn=5.0):
    """One point of the tutorial's g10/g1 curve (docs/conventions.md 4.6; ``my_illus_STD``).

    ``T = 10 * 1000 / rate`` ms, ``isi = int(1000 / rate / dt)`` steps, a regular train with
    spikes at indices ``0, isi, 2*isi, ...``, run through :func:`dynamic_syn`.

    Args:
        rate: input rate [Hz]. U0: release increment. tau_d, tau_f: STP time constants [ms].
        dt: time step [ms]. g_bar: maximal conductance [nS]. tau_syn: conductance decay [ms].

    Returns:
        ``(g[isi], g[9*isi])`` [nS]: the conductance just after the 1st and the 9th spike
        the synapse actually sees (the index-0 spike is never seen); the tutorial calls
        them the 1st and 10th. ``g[isi] == g_bar * U0`` exactly.
    """
    T = 10.0 * 1000 / (1.0 * rate)
    lt = np.arange(0, T, dt).size
    isi = int((1e3 / rate) / dt)
    train = np.zeros(lt)
    train[::isi] = 1.0
    _, _, g = dynamic_syn(g_bar, tau_syn, U0, tau_d, tau_f, train, dt)
    return g[isi], g[9 * isi]


# --------------------------------------------------------------------------------------
# Closed forms (docs/conventions.md 7)
# --------------------------------------------------------------------------------------


def tm_continuous_regular(rate_hz, U0, tau_d, tau_f, n_spikes, delta_ms=None):
    """Continuous-time Tsodyks-Markram release for a regular train (docs/conventions.md 7).

    ``u+_1 = U0``, ``u+_{n+1} = U0 + u+_n (1 - U0) e^(-Delta/tau_f)``;
    ``x-_1 = 1``, ``x-_{n+1} = 1 - (1 - x-_n (1 - u+_n)) e^(-Delta/tau_d)``;
    ``release_n = u+_n x-_n``. Steady state
    ``u* = U0 / (1 - (1 - U0) e^(-Delta/tau_f))``,
    ``x* = (1 - e^(-Delta/tau_d)) / (1 - (1 - u*) e^(-Delta/tau_d))``.

    Args:
        rate_hz: input rate [Hz]; ``Delta = 1000 / rate_hz`` ms unless ``delta_ms`` is given.
        U0: release increment. tau_d, tau_f: time constants [ms].
        n_spikes: number of spikes (n = 1 .. n_spikes).
        delta_ms: optional inter-spike interval [ms] overriding ``1000 / rate_hz``.

    Returns:
        ``(release, u_star, x_star)``: array ``(n_spikes,)`` of ``u+_n x-_n`` (fraction of
        resources released by spike n) and the steady-state ``u+`` and ``x-``.
    """
    delta = 1000.0 / rate_hz if delta_ms is None else float(delta_ms)
    ef = math.exp(-delta / tau_f)
    ed = math.exp(-delta / tau_d)
    release = np.empty(n_spikes)
    u, x = U0, 1.0
    for n in range(n_spikes):
        release[n] = u * x
        u, x = U0 + u * (1.0 - U0) * ef, 1.0 - (1.0 - x * (1.0 - u)) * ed
    u_star = U0 / (1.0 - (1.0 - U0) * ef)
    x_star = (1.0 - ed) / (1.0 - (1.0 - u_star) * ed)
    return release, u_star, x_star


def tm_continuous_conductance(release, delta_ms, g_bar, tau_syn):
    """Conductance just after each spike of a regular train, continuous time.

    ``g+_1 = g_bar release_1``, ``g+_{n+1} = g+_n e^(-Delta/tau_syn) + g_bar release_{n+1}``
    (exponential synapse of docs/conventions.md 3).

    Args:
        release: ``(n,)`` array from :func:`tm_continuous_regular`.
        delta_ms: inter-spike interval [ms]. g_bar: maximal conductance [nS].
        tau_syn: conductance decay [ms].

    Returns:
        array ``(n,)`` of conductances [nS]; entry ``n-1`` is comparable with the Euler
        ``g`` just after the n-th *seen* spike (e.g. ``g[9*isi]`` for n = 9).
    """
    decay = math.exp(-delta_ms / tau_syn)
    g = np.empty(len(release))
    acc = 0.0
    for n, rel in enumerate(release):
        acc = acc * decay + g_bar * rel
        g[n] = acc
    return g


def lif_dc_first_spike_steps(
    I, tau_m=10.0, g_L=10.0, E_L=-75.0, V_reset=-75.0, V_th=-55.0, dt=0.1, V_init=None
):
    """Step index of the first spike of the Euler LIF under DC input (docs/conventions.md 7).

    Below threshold the Euler loop is geometric, ``v_k = V_inf + (V_init - V_inf) a^k`` with
    ``a = 1 - dt/tau_m`` and ``V_inf = E_L + I/g_L``, so the first spike is recorded at step
    ``ceil(ln((V_th - V_inf) / (V_init - V_inf)) / ln a)`` (time ``k*dt``). With
    ``V_init = V_reset`` (the default here) every later ISI is this number plus the
    ``ceil(tref/dt)`` clamp steps (20 for tref = 2 ms, dt = 0.1 ms).

    Args:
        I: constant current [pA]. tau_m [ms], g_L [nS], E_L, V_reset, V_th [mV], dt [ms].
        V_init: initial voltage [mV]; defaults to ``V_reset``.

    Returns:
        int step count, or ``None`` if ``V_inf <= V_th`` (the neuron never fires).
    """
    v0 = V_reset if V_init is None else V_init
    v_inf = E_L + I / g_L
    if v0 >= V_th:
        return 0
    if v_inf <= V_th:
        return None
    a = 1.0 - dt / tau_m
    return math.ceil(math.log((V_th - v_inf) / (v0 - v_inf)) / math.log(a))


def fmp_shot_noise_estimate(g_L, E_L, tau_m, inputs, I_inj=0.0):
    """Mean and std of the free membrane potential from shot-noise theory (docs/conventions.md 7).

    Campbell's theorem: ``K`` trains at rate ``nu``, jump ``g_bar``, decay ``tau`` give mean
    conductance ``g0 = K nu g_bar tau``. With ``g_T = g_L + sum g0``, ``tau_eff = tau_m g_L / g_T``::

        mu_V  = (g_L E_L + sum g0 V_rev + I_inj) / g_T
        var_V = sum K nu a^2 tau^2 / (2 (tau + tau_eff)),   a = g_bar (V_rev - mu_V) / g_T

    (Kuhn, Aertsen & Rotter 2004). docs/conventions.md 7 quotes -58.0 mV and 4.1 mV for exercise 1.2.

    Args:
        g_L: leak conductance [nS]. E_L: leak reversal [mV]. tau_m: membrane time constant [ms].
        inputs: iterable of ``(K, rate_hz, g_bar_nS, tau_ms, V_rev_mV)``, one per input population.
        I_inj: constant injected current [pA].

    Returns:
        ``(mu_V, std_V)`` [mV].
    """
    pops = [(K, rate / 1000.0, gb, tau, vr) for K, rate, gb, tau, vr in inputs]  # rate in 1/ms
    g0 = [K * nu * gb * tau for K, nu, gb, tau, _ in pops]
    g_t = g_L + sum(g0)
    mu = (g_L * E_L + sum(g * p[4] for g, p in zip(g0, pops)) + I_inj) / g_t
    tau_eff = tau_m * g_L / g_t
    var = 0.0
    for K, nu, gb, tau, vr in pops:
        a = gb * (vr - mu) / g_t
        var += K * nu * a**2 * tau**2 / (2.0 * (tau + tau_eff))
    return mu, math.sqrt(var)


def spike_rate_hz(rec_spikes, T):
    """Output rate ``1000 * n_spikes / T`` [Hz] for spike times [ms] over duration ``T`` [ms]."""
    return 1e3 * len(rec_spikes) / T


def cv_isi(rec_spikes):
    """CV of inter-spike intervals, ``std(ISI)/mean(ISI)``; 0 with 3 or fewer spikes (explorer)."""
    if len(rec_spikes) <= 3:
        return 0.0
    isi = np.diff(rec_spikes)
    return float(np.std(isi) / np.mean(isi))
