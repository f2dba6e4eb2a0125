r"""Tsodyks-Markram short-term plasticity (depression and facilitation), one state per synapse.

Continuous time (spike at t_sp; "-" just before, "+" just after)::

    du/dt = -u/tau_f + U0 (1 - u^-) delta(t - t_sp)
    dR/dt = (1 - R)/tau_d - u^+ R^- delta(t - t_sp)
    dg/dt = -g/tau_syn + g_bar u^+ R^- delta(t - t_sp)

Discrete scheme implemented (the tutorial's ``dynamic_syn``; docs/conventions.md 4.1), with
``s = spikes[it+1]``::

    u[it+1] = u[it] - dt/tau_f u[it] + U0 (1 - u[it]) s
    R[it+1] = R[it] + dt/tau_d (1 - R[it]) - u[it+1] R[it] s
    g[it+1] = g[it] - dt/tau_syn g[it] + g_bar R[it] u[it+1] s

from ``u = 0, R = 1, g = 0``; a spike at index 0 is never seen.

**Several spikes in one step** (``s`` a count ``c > 1``, e.g. trains summed before the synapse):
the tutorial's update scales one release by ``c``, which can give ``u > 1`` and ``R < 0``
(``U0 = 0.5, c = 2`` from rest gives ``u = 1`` and ``R = -1``).  The ``counts=`` option of
:func:`stp_step`, :func:`simulate_stp` and the STP-LIF simulators chooses:

* ``counts="sequential"`` (default): ``c`` successive releases in the step (below).
* ``counts="tutorial"``: the update above with ``s = c``, the tutorial's numbers (:mod:`jaxlif.nma`
  passes it, so the drop-ins reproduce the tutorial even on summed counts).  Concrete inputs with a
  count above 1 raise a ``UserWarning`` naming ``counts="sequential"``; under tracing,
  :func:`jaxlif.checked` raises for them.

The sequential update is exactly what the one-spike scheme gives when the step's first spike is
followed by ``c - 1`` more with no time between them (the update above with ``s = 1``, then ``c - 1``
times with ``dt = 0, s = 1``).  In closed form, with ``u1, R1, g1`` the state after the first spike
and ``m = c - 1``::

      u = 1 - (1 - u1) (1 - U0)^m
      R = R1 (1 - u1)^m (1 - U0)^(m (m + 1) / 2)
      g = g1 + g_bar (R1 - R)                  (each release u_j R_(j-1) = R_(j-1) - R_j)

``u`` stays in ``[0, 1]`` and ``R`` in ``[0, 1]``.  Identical (bit for bit) to the tutorial's update
for ``s`` in ``[0, 1]``; non-integer counts above 1 interpolate smoothly in ``m``.  Between spikes the updates are
geometric (``u *= a_f``, ``1 - R *= a_d``, ``g *= a_s`` with ``a_x = 1 - dt/tau_x``), so ``k`` silent
steps have the closed form :func:`stp_decay`; :func:`ratio_curve` uses it to evaluate the
tutorial's g10/g1 numbers event by event (identical to the step-by-step loop up to rounding)
in a handful of operations, differentiable with respect to ``U0, tau_d, tau_f``.

Units: tau_* [ms], g_bar [nS], g [nS], u and R dimensionless.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jaxlif import _checks, _scan
from jaxlif._host import host_argument
from jaxlif.synapses import SynParams

__all__ = [
    "STPParams",
    "STPState",
    "STD",
    "STF",
    "stp_init",
    "stp_step",
    "stp_decay",
    "euler_decay_factor",
    "stp_event",
    "simulate_stp",
    "ratio_curve",
    "ratio_curve_isi_steps",
    "check_stp_params",
    "check_counts",
]


class STPParams(NamedTuple):
    """Tsodyks-Markram parameters (default: the tutorial's depressing synapse).

    Attributes:
        U0: release probability at rest, in (0, 1].
        tau_d: recovery (depression) time constant of R [ms].
        tau_f: decay (facilitation) time constant of u [ms].
    """

    U0: jax.typing.ArrayLike = 0.5
    tau_d: jax.typing.ArrayLike = 100.0
    tau_f: jax.typing.ArrayLike = 50.0


#: The tutorial's short-term depression example.
STD = STPParams(U0=0.5, tau_d=100.0, tau_f=50.0)
#: The tutorial's short-term facilitation example.
STF = STPParams(U0=0.2, tau_d=100.0, tau_f=750.0)


class STPState(NamedTuple):
    """Per-synapse plasticity state.

    Attributes:
        u: utilisation (release probability), dimensionless.
        R: fraction of available resources, dimensionless in [0, 1].
        g: postsynaptic conductance of this synapse [nS].
    """

    u: jax.Array
    R: jax.Array
    g: jax.Array


def check_stp_params(params: STPParams, dt: float, name: str = "stp") -> None:
    """Validate an :class:`STPParams`: ``0 < U0 <= 1``, ``tau_d, tau_f >= dt``."""
    if not isinstance(params, STPParams):
        raise TypeError(f"{name} must be a jaxlif.STPParams, got {type(params).__name__}")
    _checks.check_params(name, params, dt, _checks.STP_RULES)


def stp_init(shape: int | Sequence[int] = (), dtype: DTypeLike | None = None) -> STPState:
    """Resting state ``u = 0, R = 1, g = 0`` of the given shape."""
    dtype = dtype or jnp.result_type(float)
    zero = jnp.zeros(shape, dtype)
    return STPState(zero, jnp.ones(shape, dtype), zero)


_COUNTS = ("tutorial", "sequential")


def check_counts(counts: str) -> str:
    """The ``counts=`` option: ``"tutorial"`` or ``"sequential"`` (see the module docstring)."""
    if counts not in _COUNTS:
        raise ValueError(f"counts={counts!r} must be 'tutorial' (the tutorial's scaled update) or "
                         f"'sequential' (c successive releases for a count c > 1 in one step)")
    return counts


def _warn_counts(name: str, spikes, counts: str) -> None:
    """Under ``counts="tutorial"``, warn about concrete counts above 1 (the scheme leaves its range)."""
    arr = _checks._concrete(spikes)
    if counts != "tutorial" or arr is None or arr.dtype == bool or arr.size == 0:
        return
    top = float(np.max(arr))
    if top > 1:
        warnings.warn(f"{name} has up to {top:g} spikes in one step; the tutorial's STP update scales a "
                      f"single release by the count, which can give u > 1 and R < 0. Pass "
                      f"counts='sequential' for that many successive releases (or split the trains: "
                      f"one synapse per train)", UserWarning, stacklevel=3)


def stp_step(params: STPParams, syn: SynParams, state: STPState, s: jax.Array, dt: float, *,
             counts: str = "sequential", integrator: str = "euler") -> tuple[STPState, jax.Array]:
    """One forward-Euler step of ``dynamic_syn`` (u first; R and g use the new u and the old R).

    With ``integrator="exp_euler"`` (docs/conventions.md section 10) the continuous-time synapse, exact
    between spikes: ``u, R, g`` decay exactly over ``dt`` (``u exp(-dt/tau_f)``,
    ``1 - (1 - R) exp(-dt/tau_d)``, ``g exp(-dt/tau_syn)``), then the spike at ``t_it+1`` acts:
    ``u+ = u- + U0 (1 - u-)``, release ``u+ R-``, ``R+ = R- - u+ R-``, ``g+ = g- + g_bar u+ R-`` (the
    state at a sample includes the spikes of that sample).

    Args:
        params: :class:`STPParams`.  syn: :class:`SynParams` (``g_bar`` [nS], ``tau_syn`` [ms]).
        state: :class:`STPState` at ``it``.  s: presynaptic spikes at ``it+1`` (0/1 or a count).
        dt: time step [ms].
        counts: how a count ``s > 1`` is applied: ``"tutorial"`` (the scaled update) or
            ``"sequential"`` (``s`` successive releases); identical for ``s`` in ``[0, 1]``.  See the
            module docstring.
        integrator: ``"euler"`` (default, the tutorial's scheme) or ``"exp_euler"``.

    Returns:
        ``(state_at_it+1, g_at_it+1)``.
    """
    for label, x in zip(("state.u", "state.R", "state.g"), state):   # float16/bfloat16 state: refused
        _checks.refuse_low_precision_state(label, x, "synapse", "stp_step")
    u, R, g = state
    params, syn, s = _checks.upcast((params, syn, s), jnp.result_type(u))
    first = jnp.where(s > 1, 1.0, s) if counts == "sequential" else s
    if integrator == "exp_euler":
        u, R, _ = stp_efficacy(params, u, R, 0.0, dt, integrator)          # the exact decay over dt
        u_new = stp_utilisation(params, u, first, dt, integrator)          # the jump at t_it+1
        release = u_new * R * first
        R_new, g_new = R - release, g * jnp.exp(-dt / syn.tau_syn) + syn.g_bar * release
        if counts == "sequential":
            u_new, R_new, g_new = _more_releases(params.U0, syn.g_bar, u_new, R_new, g_new, s - 1.0)
        return STPState(u_new, R_new, g_new), g_new
    if integrator != "euler":
        raise ValueError(f"integrator={integrator!r} must be 'euler' or 'exp_euler'")
    u_new = u - (dt / params.tau_f) * u + params.U0 * (1.0 - u) * first
    R_new = R + (dt / params.tau_d) * (1.0 - R) - u_new * R * first
    g_new = g - (dt / syn.tau_syn) * g + syn.g_bar * R * u_new * first
    if counts == "sequential":
        u_new, R_new, g_new = _more_releases(params.U0, syn.g_bar, u_new, R_new, g_new, s - 1.0)
    return STPState(u_new, R_new, g_new), g_new


def _more_releases(U0, g_bar, u1, R1, g1, m):
    """``m = c - 1 > 0`` further releases with no time between them, in closed form (module
    docstring); where ``m <= 0`` the state after the first spike is returned unchanged."""
    more = m > 0
    m = jnp.where(more, m, 1.0)          # keep the unused branch finite (and its gradient)
    keep = 1.0 - U0
    R = R1 * (1.0 - u1) ** m * keep ** (0.5 * m * (m + 1.0))
    return (jnp.where(more, 1.0 - (1.0 - u1) * keep ** m, u1), jnp.where(more, R, R1),
            jnp.where(more, g1 + g_bar * (R1 - R), g1))


def euler_decay_factor(tau: ArrayLike, k: ArrayLike, dt: float) -> jax.Array:
    """``(1 - dt/tau)^k``, the factor of ``k >= 0`` silent Euler steps, as ``exp(k log1p(-dt/tau))``.

    Written with ``log1p`` because ``a**k`` with ``a = 1 - dt/tau`` already rounded to float32 is
    off by about ``k * ulp(a)`` (3e-4 relative at k = 5000) and is a staircase in ``tau``, which
    stalls optimisers; this form is smooth and accurate to a few ulp.  ``k = 0`` gives exactly 1
    (also for ``tau = dt``, with a finite gradient).
    """
    live = k > 0
    log_a = jnp.log1p(-dt / jnp.where(live, tau, 2.0 * dt))
    return jnp.where(live, jnp.exp(k * log_a), 1.0)


def stp_decay(params: STPParams, syn: SynParams, state: STPState, k: ArrayLike, dt: float) -> STPState:
    """Closed form of ``k`` silent Euler steps: ``u a_f^k``, ``1 - (1 - R) a_d^k``, ``g a_s^k``.

    ``a_x = 1 - dt/tau_x``; the powers come from :func:`euler_decay_factor`.
    """
    for label, x in zip(("state.u", "state.R", "state.g"), state):   # float16/bfloat16 state: refused
        _checks.refuse_low_precision_state(label, x, "synapse", "stp_decay")
    params, syn = _checks.upcast((params, syn), jnp.result_type(state.u))
    return STPState(state.u * euler_decay_factor(params.tau_f, k, dt),
                    1.0 - (1.0 - state.R) * euler_decay_factor(params.tau_d, k, dt),
                    state.g * euler_decay_factor(syn.tau_syn, k, dt))


def stp_event(params: STPParams, syn: SynParams, state: STPState, k: ArrayLike, dt: float) -> STPState:
    """``k - 1`` silent steps followed by one step with a spike: the state at the next spike."""
    before = stp_decay(params, syn, state, k - 1, dt)
    return stp_step(params, syn, before, 1.0, dt)[0]


def simulate_stp(params: STPParams, syn: SynParams, spikes: jax.Array, *, dt: float,
                 counts: str = "sequential", checkpoint: bool | int | None = None) -> STPState:
    """Run ``dynamic_syn`` step by step on ``spikes`` of shape ``(n_steps,)`` or ``(n_trains, n_steps)``.

    Every train has its own ``u, R, g``.  Equivalent Python loop::

        state = stp_init(spikes.shape[:-1])
        for it in range(n_steps - 1):
            state, _ = stp_step(params, syn, state, spikes[..., it+1], dt)   # -> trace[..., it+1]

    Args:
        params: :class:`STPParams`; each field a scalar or one value per train (broadcast against
            ``spikes.shape[:-1]``; lists are converted).
        syn: :class:`SynParams` (``g_bar`` [nS], ``tau_syn`` [ms]; ``E_rev`` unused), same shapes.
        spikes: 0/1 spikes or counts, time last, ``n_steps >= 1``.  dt: time step [ms].
        counts: ``"tutorial"`` or ``"sequential"``: how a count above 1 in one step is applied (module
            docstring).  With ``"tutorial"`` concrete counts above 1 raise a ``UserWarning``.
        checkpoint: bound the memory of ``jax.grad`` (see :func:`jaxlif.simulate_lif`).

    Returns:
        :class:`STPState` of traces with the shape of ``spikes`` (time last); NaN for invalid traced
        values (U0 outside (0, 1], tau below dt, negative or NaN spikes, ...).
    """
    dt = _checks.check_dt(dt)
    check_counts(counts)
    checkpoint = _scan.check_checkpoint(checkpoint)
    for name, tree, cls in (("stp", params, STPParams), ("syn", syn, SynParams)):
        if not isinstance(tree, cls):
            raise TypeError(f"{name} must be a jaxlif.{cls.__name__}, got {type(tree).__name__}")
    params, syn = _checks.upcast((_checks.lists_to_arrays(params, "stp"), _checks.lists_to_arrays(syn, "syn")))
    check_stp_params(params, dt)
    _checks.check_params("syn", syn, dt, {"g_bar": "nonneg", "tau_syn": "tau"})
    _checks.check_spikes("spikes", spikes)
    if np.ndim(spikes) < 1:
        raise ValueError("spikes must have a time axis (last axis), got a scalar")
    _checks.check_steps("spikes", spikes)
    _check_per_train("stp", params, np.shape(spikes)[:-1])
    _check_per_train("syn", syn, np.shape(spikes)[:-1])
    _warn_counts("spikes", spikes, counts)
    return _simulate_stp(params, syn, host_argument(spikes), dt, counts, checkpoint)


def _check_per_train(name: str, params, trains: tuple) -> None:
    """Each field: a scalar or an array that broadcasts to the trains' shape ``trains``."""
    for field in params._fields:
        shape = np.shape(getattr(params, field))
        try:
            ok = np.broadcast_shapes(shape, trains) == tuple(trains)
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{name}.{field} has shape {shape}, but the spikes have {trains} trains: give "
                             f"a scalar or one value per train; for a batch of independent runs use jax.vmap")


def traced_stp_ok(name: str, params: STPParams, syn: SynParams, dt: float, syn_name: str = "syn") -> jax.Array:
    """Inside a jitted core: the traced :class:`STPParams` and the synapse's ``g_bar, tau_syn`` valid?"""
    return (_checks.traced_params(name, params, dt, _checks.STP_RULES)
            & _checks.traced_params(syn_name, syn, dt, {"g_bar": "nonneg", "tau_syn": "tau"}))


def traced_counts_ok(name: str, spikes: jax.Array, counts: str) -> jax.Array:
    """Traced spikes: finite and >= 0 (poisoned otherwise); under ``counts="tutorial"`` a count above 1
    is reported by :func:`jaxlif.checked` only (the tutorial's numbers are kept)."""
    if counts == "tutorial":
        _checks.traced_rule(name, jnp.max(spikes, initial=0.0), "one_spike")
    return _checks.traced_rule(name, spikes, "nonneg")


@jax.jit(static_argnums=(3, 4, 5))
def _simulate_stp(params, syn, spikes, dt, counts, checkpoint):
    dtype = jnp.result_type(float)
    x = jnp.moveaxis(spikes.astype(dtype), -1, 0)
    ok = traced_stp_ok("stp", params, syn, dt) & traced_counts_ok("spikes", x, counts)
    state0 = stp_init(x.shape[1:], dtype)

    def step(st, s):
        new = stp_step(params, syn, st, s, dt, counts=counts)[0]
        return new, new

    _, traces = _scan.scan(step, state0, x[1:], x.shape[0] - 1, checkpoint)
    return _checks.poison(ok, STPState(*(jnp.moveaxis(jnp.concatenate([a0[None], a]), 0, -1)
                                         for a0, a in zip(state0, traces))))


def ratio_curve_isi_steps(rates_hz: ArrayLike | Sequence[float], dt: float = 0.1) -> np.ndarray:
    """Inter-spike interval in steps of the tutorial's regular train, ``int((1000/rate)/dt)``.

    Raises ValueError naming the rate when the interval is under one step.
    """
    rates = np.atleast_1d(np.asarray(rates_hz, dtype=float))
    _checks.check_positive("rates_hz", rates, "Hz")
    isi = ((1e3 / rates) / dt).astype(int)
    if np.any(isi < 1):
        bad = rates[isi < 1]
        raise ValueError(f"rates_hz={bad.tolist()} Hz give a regular inter-spike interval under one "
                         f"step of dt={dt} ms; need rates <= {1000.0 / dt:.6g} Hz")
    return isi


def ratio_curve(params: STPParams, rates_hz: ArrayLike | Sequence[float], *, dt: float = 0.1,
                g_bar: float = 1.2, tau_syn: float = 5.0,
                n_spike: int = 10) -> tuple[jax.Array, jax.Array]:
    """The tutorial's g1 and g10 for regular trains at each rate (``my_illus_STD(Poisson=False)``).

    For each rate the tutorial simulates ``T = 10*1000/rate`` ms with spikes at indices
    ``0, isi, 2*isi, ...`` (``isi = int(1000/rate/dt)``) and returns ``(g[isi], g[9*isi])``.
    Since index 0 is never seen, these are the conductances right after the 1st and the 9th
    spike the synapse receives.  Here the same numbers are computed event by event with
    :func:`stp_event` (exact for the Euler scheme, up to rounding), so the curve is cheap,
    jit-able and differentiable with respect to ``params`` (which may be traced; rates are
    concrete because they set the grid).

    Args:
        params: :class:`STPParams`.
        rates_hz: input rates [Hz], 1-D.
        dt: time step [ms] (the tutorial: 0.1).
        g_bar: conductance scale [nS] (1.2).  tau_syn: [ms] (5).
        n_spike: the tutorial's "10th spike" label (index ``(n_spike-1)*isi``), >= 3.

    Returns:
        ``(g1, g10)`` arrays of shape ``(n_rates,)`` [nS]; the ratio curve is ``g10 / g1``.
    """
    dt = _checks.check_dt(dt)
    isi = ratio_curve_isi_steps(rates_hz, dt)
    check_stp_params(params, dt)
    syn = SynParams(g_bar=g_bar, tau_syn=tau_syn, E_rev=0.0)
    _checks.check_positive("g_bar", g_bar, "nS")             # named as the caller wrote them
    _checks.check_time_constant("tau_syn", tau_syn, dt)
    _check_n_spike(n_spike)
    return _ratio_curve(_checks.upcast(params), syn, host_argument(isi, jnp.result_type(float)), dt, n_spike)


def _check_n_spike(n_spike) -> int:
    """``n_spike >= 3``: with 2 the "last" conductance is the first one (index ``isi``), the ratio 1."""
    n_spike = _checks.check_count("n_spike", n_spike, minimum=2)
    if n_spike < 3:
        raise ValueError(f"n_spike={n_spike} must be >= 3: the curve compares the conductance after spike "
                         f"n_spike - 1 with that after spike 1, so n_spike = 2 compares the first with itself "
                         f"(ratio 1 at every rate)")
    return n_spike


@jax.jit(static_argnums=(3, 4))
def _ratio_curve(params, syn, isi, dt, n_spike):
    params, syn = _checks.upcast((params, syn))          # float16/bfloat16 values computed in float32/64
    ok = (_checks.traced_params("params", params, dt, _checks.STP_RULES)
          & _checks.traced_rule("g_bar", syn.g_bar, "positive")
          & _checks.traced_rule("tau_syn", syn.tau_syn, "tau", dt))

    def one_rate(k):
        first = stp_event(params, syn, stp_init((), isi.dtype), k, dt)   # index isi
        last = jax.lax.fori_loop(0, n_spike - 2, lambda _, st: stp_event(params, syn, st, k, dt), first)
        return first.g, last.g
    return _checks.poison(ok, jax.vmap(one_rate)(isi))


# --------------------------------------------------------------------------------------
# Exact continuous-time ratio curve (dt-free), for targets measured from real synapses
# --------------------------------------------------------------------------------------

__all__.append("ratio_curve_exact")


def ratio_curve_exact(params: STPParams, rates_hz: ArrayLike | Sequence[float], *, g_bar: float = 1.2,
                      tau_syn: float = 5.0, n_spike: int = 10) -> tuple[jax.Array, jax.Array]:
    r"""g1 and g10 of the *continuous-time* Tsodyks-Markram synapse for regular trains (no dt).

    The same quantity as :func:`ratio_curve` (which integrates the tutorial's forward-Euler
    scheme), solved exactly between spikes.  For a regular train with inter-spike interval
    ``Delta = 1000 / rate`` ms, "+" just after and "-" just before the n-th spike::

        u+_1 = U0,   u+_{n+1} = U0 + u+_n (1 - U0) exp(-Delta/tau_f)
        x-_1 = 1,    x-_{n+1} = 1 - (1 - x-_n (1 - u+_n)) exp(-Delta/tau_d)
        g+_1 = g_bar U0,   g+_{n+1} = g+_n exp(-Delta/tau_syn) + g_bar u+_{n+1} x-_{n+1}

    (docs/conventions.md, section 7; ``u+_n x-_n`` is the fraction of resources released by spike n.)
    Returns ``(g+_1, g+_m)`` with ``m = n_spike - 1``: with the default ``n_spike = 10`` this is the
    conductance after the 9th spike over that after the 1st, exactly what the tutorial's
    ``g[9*isi] / g[isi]`` measures (its index-0 spike is never seen), so :func:`ratio_curve`
    converges to this curve as ``dt -> 0`` (error O(dt)).  To compare with a measured
    ``g_n / g_1`` (n-th over first delivered spike), pass ``n_spike = n + 1``.

    Args:
        params: :class:`STPParams` (``U0`` in (0, 1], ``tau_d, tau_f > 0`` [ms]); may be traced.
        rates_hz: input rates [Hz], 1-D, > 0 (concrete).
        g_bar: conductance scale [nS] (cancels in the ratio).  tau_syn: conductance decay [ms].
        n_spike: the tutorial's "10th spike" label, >= 3.

    Returns:
        ``(g1, g10)`` arrays of shape ``(n_rates,)`` [nS]; the ratio curve is ``g10 / g1``.
    """
    rates = np.atleast_1d(np.asarray(rates_hz, dtype=float))
    _checks.check_positive("rates_hz", rates, "Hz")
    if not isinstance(params, STPParams):
        raise TypeError(f"params must be a jaxlif.STPParams, got {type(params).__name__}")
    _checks.check_U0(params.U0, "params.U0")
    _checks.check_positive("params.tau_d", params.tau_d, "ms")
    _checks.check_positive("params.tau_f", params.tau_f, "ms")
    _checks.check_positive("g_bar", g_bar, "nS")
    _checks.check_positive("tau_syn", tau_syn, "ms")
    _check_n_spike(n_spike)
    delta = host_argument(1e3 / rates, jnp.result_type(float))
    return _ratio_curve_exact(*_checks.upcast((params, g_bar, tau_syn)), delta, n_spike)


def _traced_exact_ok(params: STPParams, g_bar, tau_syn) -> jax.Array:
    """Traced checks of the continuous-time curve: ``0 < U0 <= 1``, time constants and ``g_bar`` > 0."""
    return (_checks.traced_rule("params.U0", params.U0, "U0")
            & _checks.traced_rule("params.tau_d", params.tau_d, "positive")
            & _checks.traced_rule("params.tau_f", params.tau_f, "positive")
            & _checks.traced_rule("g_bar", g_bar, "positive") & _checks.traced_rule("tau_syn", tau_syn, "positive"))


@jax.jit(static_argnums=(4,))
def _ratio_curve_exact(params, g_bar, tau_syn, delta, n_spike):
    params, g_bar, tau_syn = _checks.upcast((params, g_bar, tau_syn))   # float16/bfloat16: widened
    U0, tau_d, tau_f, g_bar, tau_syn = _checks.poison(_traced_exact_ok(params, g_bar, tau_syn),
                                                      (*params, g_bar, tau_syn))   # NaN curve if invalid

    def one_rate(D):
        e_f, e_d, e_s = jnp.exp(-D / tau_f), jnp.exp(-D / tau_d), jnp.exp(-D / tau_syn)

        def next_spike(_, carry):
            u, x, g = carry                      # u+_n, x-_n, g+_n
            u_next = U0 + u * (1.0 - U0) * e_f
            x_next = 1.0 - (1.0 - x * (1.0 - u)) * e_d
            return u_next, x_next, g * e_s + g_bar * u_next * x_next

        one = jnp.ones_like(D * U0)
        first = (U0 * one, one, g_bar * U0 * one)
        _, _, g_last = jax.lax.fori_loop(0, n_spike - 2, next_spike, first)
        return first[2], g_last

    return jax.vmap(one_rate)(delta)


# --------------------------------------------------------------------------------------
# The release (efficacy) of one presynaptic spike, without a conductance
# --------------------------------------------------------------------------------------

__all__.append("stp_efficacy")


def stp_efficacy(params: STPParams, u: jax.Array, R: jax.Array, s: jax.Array,
                 dt: float, integrator: str = "euler") -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""One step of ``u`` and ``R`` and the release ``u+ R-`` of the spike it sees, with no conductance.

    The tutorial's update order (docs/conventions.md 4.1), with ``s`` the presynaptic spike at
    ``it+1``::

        u[it+1] = u[it] - dt/tau_f u[it] + U0 (1 - u[it]) s
        R[it+1] = R[it] + dt/tau_d (1 - R[it]) - u[it+1] R[it] s
        release  = u[it+1] R[it] s                 (u+ R-: the new u, the old R)

    :func:`stp_step` adds exactly ``g_bar * release`` to its conductance, so a network can
    scale the release by a weight in nS per target and let the postsynaptic conductance decay
    on its own (no per-synapse ``g``, no ``tau_syn``).  ``s`` is a 0/1 spike (a float that may
    carry a surrogate derivative); a count above 1 follows the same formula, as the tutorial's
    ``dynamic_syn`` does, which can leave ``u > 1`` or ``R < 0``.

    With ``integrator="exp_euler"`` (docs/conventions.md section 10) the continuous-time
    Tsodyks-Markram synapse, exact between spikes: ``s`` is the spike at ``t_it`` itself (a network
    under exponential Euler knows the spike of step ``it`` only after that step), it acts on the state
    at ``t_it`` and the result decays exactly to ``t_it + dt``::

        u+ = u[it] + U0 (1 - u[it]) s,    release = u+ R[it] s
        u[it+1] = u+ exp(-dt/tau_f),      R[it+1] = 1 - (1 - R[it] + release) exp(-dt/tau_d)

    (the ``u+ R-`` of NEST's ``tsodyks2_synapse`` with ``u = U0`` at spikes on the grid).

    Args:
        params: :class:`STPParams` (``U0`` in (0, 1], ``tau_d, tau_f >= dt`` [ms]); any shape
            that broadcasts with ``u``.
        u, R: utilisation and available resources at ``it`` (dimensionless), any shape.
        s: presynaptic spike at ``it+1`` (``"exp_euler"``: at ``it``), broadcastable to ``u``.
        dt: time step [ms].
        integrator: ``"euler"`` (default, the tutorial's scheme above) or ``"exp_euler"``.

    Returns:
        ``(u_next, R_next, release)``; ``release`` is dimensionless (0 where ``s = 0``).
    """
    if integrator == "exp_euler":
        u_plus = stp_utilisation(params, u, s, dt, integrator)
        release = u_plus * R * s
        return (u_plus * jnp.exp(-dt / params.tau_f), 1.0 - (1.0 - R + release) * jnp.exp(-dt / params.tau_d),
                release)
    if integrator != "euler":
        raise ValueError(f"integrator={integrator!r} must be 'euler' or 'exp_euler'")
    u_new = u - (dt / params.tau_f) * u + params.U0 * (1.0 - u) * s
    R_new = R + (dt / params.tau_d) * (1.0 - R) - u_new * R * s
    return u_new, R_new, u_new * R * s


__all__.append("stp_utilisation")


def stp_utilisation(params: STPParams, u: jax.Array, s: jax.Array, dt: float, integrator: str = "euler") -> jax.Array:
    """The utilisation ``u+`` that a spike ``s`` releases with (:func:`stp_efficacy`, whose release is
    ``u+ R s``): ``u - dt/tau_f u + U0 (1 - u) s`` (``"euler"``, the tutorial's new ``u``) or
    ``u + U0 (1 - u) s`` (``"exp_euler"``, the jump at the spike itself); dimensionless."""
    if integrator == "exp_euler":
        return u + params.U0 * (1.0 - u) * s
    return u - (dt / params.tau_f) * u + params.U0 * (1.0 - u) * s
