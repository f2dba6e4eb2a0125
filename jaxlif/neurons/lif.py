r"""Current-based LIF and the membrane step every neuron model shares (threshold, reset, refractory clamp).

The scheme, the gradients and the units are described in :mod:`jaxlif.neurons`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name
from jax.typing import ArrayLike

from jaxlif import _checks, _scan
from jaxlif._host import host_argument
from jaxlif.surrogates import Surrogate, check_spike_grad, spike_from_voltage, warn_if_unstable

__all__ = ["LIFParams", "LIFState", "LIFResult", "INTEGRATORS", "check_integrator", "check_lif_params", "lif_init",
           "membrane_step", "lif_step", "simulate_lif"]

#: The names ``integrator=`` accepts: ``"euler"`` (the tutorial's forward Euler, the default, bit-identical to
#: the tutorial) and ``"exp_euler"`` (exponential Euler with the spike time found within the step;
#: docs/conventions.md section 10).
INTEGRATORS = ("euler", "exp_euler")


class LIFParams(NamedTuple):
    """LIF neuron parameters (defaults: the synaptic-transmission tutorial's ``default_pars``).

    Attributes:
        V_th: spike threshold [mV].
        V_reset: reset potential [mV].
        tau_m: membrane time constant [ms].
        g_L: leak conductance [nS] (membrane resistance R = 1/g_L [GOhm]).
        V_init: initial potential [mV].
        E_L: leak reversal potential [mV].
        t_ref: refractory period [ms].
    """

    V_th: jax.typing.ArrayLike = -55.0
    V_reset: jax.typing.ArrayLike = -75.0
    tau_m: jax.typing.ArrayLike = 10.0
    g_L: jax.typing.ArrayLike = 10.0
    V_init: jax.typing.ArrayLike = -65.0
    E_L: jax.typing.ArrayLike = -75.0
    t_ref: jax.typing.ArrayLike = 2.0


class LIFState(NamedTuple):
    """Membrane state.

    Attributes:
        v: membrane potential [mV].
        refractory: remaining refractory steps (float counter, as in the tutorial).  With
            ``integrator="exp_euler"``: the refractory time left at this sample, in units of ``dt``
            (fractional; 0 when free).
    """

    v: jax.Array
    refractory: jax.Array


class LIFResult(NamedTuple):
    """Output of :func:`simulate_lif`.

    Attributes:
        v: membrane potential [mV], ``(..., n_steps)``; at a spike step it holds V_reset (with
            ``integrator="exp_euler"``: the potential at ``t_k = k*dt``, V_reset while refractory).
        spikes: raster ``(..., n_steps)``; spike time of index k is ``k*dt`` ms (with
            ``integrator="exp_euler"``: a spike in ``[k*dt, (k+1)*dt)``, at ``k*dt + spike_offset[k]``).
            Boolean, or float 0/1 (dtype of ``v``) carrying the surrogate derivative when ``spike_grad``
            is given.
        spike_offset: ``None`` with ``integrator="euler"``; with ``"exp_euler"`` the time of each spike
            after its sample [ms], ``(..., n_steps)``, in ``[0, dt)`` (0 where no spike).
    """

    v: jax.Array
    spikes: jax.Array
    spike_offset: jax.Array | None = None


def check_integrator(integrator: object) -> str:
    """Validate an ``integrator=`` argument (plain Python, before tracing); returns it.

    Raises:
        ValueError: naming ``integrator``, the value and the names in :data:`INTEGRATORS`.
    """
    if not isinstance(integrator, str) or integrator not in INTEGRATORS:
        raise ValueError(f"integrator={integrator!r} must be one of {', '.join(map(repr, INTEGRATORS))}: 'euler' "
                         f"is the tutorial's forward Euler (the default), 'exp_euler' exponential Euler with "
                         f"spike times found within the step (docs/conventions.md section 10)")
    return integrator


def check_lif_params(params: LIFParams, dt: float, name: str = "neuron") -> None:
    """Validate a :class:`LIFParams` (ValueError/TypeError naming the field and range)."""
    if not isinstance(params, LIFParams):
        raise TypeError(f"{name} must be a jaxlif.LIFParams, got {type(params).__name__}")
    _checks.check_params(name, params, dt, _checks.LIF_RULES)


def lif_init(params: LIFParams) -> LIFState:
    """Initial state: ``v = V_init``, not refractory."""
    v = jnp.asarray(params.V_init, dtype=jnp.result_type(float))
    return LIFState(v=v, refractory=jnp.zeros_like(v))


def _fire_and_reset(params: LIFParams, state: LIFState, dt: float, spike_grad=None):
    """Step 1 of the scheme (docs/conventions.md 4.2): refractory clamp, threshold test and reset at
    the current sample.

    Returns ``(v, r, spike)``: the sample after the reset, the refractory counter and the spike,
    boolean without a surrogate, else a float 0/1 that carries the surrogate derivative.  The
    values are identical with and without ``spike_grad``; only the derivatives differ:
    ``v = where(spike, V_reset, v) + (s - stop_gradient(s)) * (V_reset - v)`` has the forward value
    of the hard reset and the derivative of ``(1 - s) v + s V_reset`` (zero through ``s`` with
    ``spike_grad.detach_reset``).
    """
    refractory = checkpoint_name(state.refractory > 0, _scan.REMAT_SAVED)   # kept by remat
    crossed, s = spike_from_voltage(state.v, params.V_th, spike_grad)
    spike = jnp.logical_and(jnp.logical_not(refractory), crossed)
    v_free = jnp.where(refractory, params.V_reset, state.v)
    v = jnp.where(spike, params.V_reset, v_free)
    r = jnp.where(refractory, state.refractory - 1.0,
                  jnp.where(spike, params.t_ref / dt, state.refractory))
    if s is None:
        return v, r, spike
    s = jnp.where(refractory, 0.0, s)
    if not spike_grad.detach_reset:
        v = v + (s - jax.lax.stop_gradient(s)) * (params.V_reset - v_free)
    return v, r, s


def _exp_membrane_step(params: LIFParams, state: LIFState, g_E, E_E, g_I, E_I, I, dt: float, spike_grad):
    """One step of exponential Euler with the spike time found within the step (docs/conventions.md 10).

    ``g_E, g_I`` [nS] and ``I`` [pA] are held over ``[t_it, t_it + dt)``; then the membrane relaxes
    exactly: ``v(t_it + h) = V_inf + (v_s - V_inf) exp(-h / tau_eff)`` with
    ``V_inf = (g_L E_L + g_E E_E + g_I E_I + I) / g_tot``, ``tau_eff = tau_m g_L / g_tot``,
    ``g_tot = g_L + g_E + g_I``.  The refractory part of the step (``min(r, 1) dt``) is clamped at
    ``V_reset``; a crossing of ``V_th`` in the free part happens at the exact crossing time of that
    relaxation, ``t_c = tau_eff ln((V_inf - v_s) / (V_inf - V_th))``; the neuron is then clamped for
    ``t_ref`` from that time and relaxes from ``V_reset`` for whatever is left of the step (at most
    one spike per step).
    """
    v_it, r = state.v, state.refractory
    g_tot = params.g_L + g_E + g_I
    V_inf = (params.g_L * params.E_L + g_E * E_E + g_I * E_I + I) / g_tot
    k = g_tot / (params.g_L * params.tau_m)                      # 1 / tau_eff [1/ms]
    clamp = jnp.clip(r, 0.0, 1.0)                                # refractory part of the step [steps]
    free = r < 1.0
    h = (1.0 - clamp) * dt                                       # free part of the step [ms]
    v_s = jnp.where(r > 0, params.V_reset, v_it)                 # potential where the free part starts
    v_end = v_s + (V_inf - v_s) * -jnp.expm1(-k * h)
    crossed, s = spike_from_voltage(jnp.maximum(v_s, v_end), params.V_th, spike_grad)   # monotone in h
    spike = jnp.logical_and(free, crossed)
    # exact crossing time of the relaxation (0 when the free part starts at or above threshold); the
    # arguments of the log are made safe where it is not used, so that gradients stay finite
    rising = jnp.logical_and(spike, v_s < params.V_th)
    gap = jnp.where(rising, jnp.maximum(V_inf - params.V_th, jnp.finfo(jnp.result_type(v_end)).tiny), 1.0)
    t_c = jnp.where(rising, jnp.log1p(jnp.where(rising, params.V_th - v_s, 0.0) / gap) / k, 0.0)
    t_spike = clamp * dt + jnp.clip(t_c, 0.0, h)                  # after t_it [ms]
    rest = t_spike + params.t_ref - dt                           # refractory time left at t_it + dt [ms]
    v_spike = params.V_reset + (V_inf - params.V_reset) * -jnp.expm1(-k * jnp.maximum(-rest, 0.0))
    v_free = jnp.where(free, v_end, params.V_reset)
    v_next = jnp.where(spike, v_spike, v_free)
    r_next = jnp.where(spike, jnp.maximum(rest, 0.0) / dt, jnp.maximum(r - 1.0, 0.0))
    offset = jnp.where(spike, t_spike, 0.0)
    if s is None:
        return LIFState(v_next, r_next), (v_it, spike, offset)
    s = jnp.where(free, s, 0.0)
    if not spike_grad.detach_reset:
        v_next = v_next + (s - jax.lax.stop_gradient(s)) * (v_spike - v_free)
    return LIFState(v_next, r_next), (v_it, s, offset)


def membrane_step(params: LIFParams, state: LIFState, g_E: ArrayLike, E_E: ArrayLike, g_I: ArrayLike,
                  E_I: ArrayLike, I: ArrayLike, dt: float, spike_grad: Surrogate | None = None,
                  integrator: str = "euler") -> tuple[LIFState, tuple[jax.Array, ...]]:
    """Steps 1 and 3 of the scheme (docs/conventions.md 4.2) for given conductances ``g_E, g_I`` [nS]
    at ``it+1`` and current ``I`` [pA] at ``it``.

    Returns ``(new_state, (v_it, spike_it))`` where ``v_it`` is the sample at ``it`` after the
    reset (what the tutorial stores in ``v[it]``).  ``spike_grad``: ``None`` (exact threshold,
    boolean spike) or a :class:`jaxlif.surrogates.Surrogate` (float 0/1 spike with a surrogate
    derivative; identical values).

    ``integrator="exp_euler"`` (docs/conventions.md section 10): ``g_E, g_I`` are the conductances
    *held over the step* ``[t_it, t_it + dt)`` (for exponential synapses their exact mean over the
    step, :func:`jaxlif.synapses.exp_syn_mean` of the conductance at ``t_it``) and ``I`` the current
    held over it; the membrane relaxes exactly towards ``V_inf``, a threshold crossing in the step is
    found at its exact time on that relaxation and the reset and ``t_ref`` start there.  Returns
    ``(new_state, (v_it, spike_it, offset_it))``: ``v_it`` is the sample at ``t_it`` (before any spike
    of the step), ``spike_it`` a spike in ``[t_it, t_it + dt)`` and ``offset_it`` its time after
    ``t_it`` [ms] (0 without a spike).
    """
    # float16/bfloat16: a state is refused (v would stall), inputs and parameters are widened to the state's dtype
    _checks.refuse_low_precision_state("state.v", state.v, "membrane", "the membrane step (lif_step, "
                                       "cond_lif_step, stp_lif_step, network_step)")
    params, g_E, E_E, g_I, E_I, I = _checks.upcast((params, g_E, E_E, g_I, E_I, I), jnp.result_type(state.v))
    return _membrane_core(params, state, g_E, E_E, g_I, E_I, I, dt, spike_grad,
                          check_integrator(integrator))


# Reverse mode keeps only the step's inputs and recomputes its elementwise intermediates in the backward pass
# (in a scan: 3 arrays per step for the LIF instead of 7).  A step is a few dozen flops per neuron, so its
# backward pass is bound by memory traffic: this runs a lif_step scan's forward+backward about 1.5x faster
# (BENCHMARKS.md "snn").  The same operations on the same numbers: values and gradients are unchanged (bit for
# bit in that benchmark).  prevent_cse=False: a scan already keeps the recomputation apart from the forward
# pass (outside a scan XLA may merge them, which only means storing as before).  The policy keeps the boolean
# refractory mask (_scan.REMAT_SAVED) so that the float refractory counter is not stored: a scan then stores
# v (4 bytes) and the mask (1 byte) per neuron and step instead of v and the counter (8 bytes).
@functools.partial(jax.checkpoint, static_argnums=(7, 8, 9), prevent_cse=False, policy=_scan.REMAT_POLICY)
def _membrane_core(params, state, g_E, E_E, g_I, E_I, I, dt, spike_grad, integrator):
    if integrator == "exp_euler":
        return _exp_membrane_step(params, state, g_E, E_E, g_I, E_I, I, dt, spike_grad)
    v, r, spike = _fire_and_reset(params, state, dt, spike_grad)
    dv = (dt / params.tau_m) * (-(v - params.E_L)
                                - (g_E / params.g_L) * (v - E_E)
                                - (g_I / params.g_L) * (v - E_I)
                                + I / params.g_L)
    return LIFState(v + dv, r), (v, spike)


def lif_step(params: LIFParams, state: LIFState, I: jax.Array, dt: float, *,
             spike_grad: Surrogate | None = None,
             integrator: str = "euler") -> tuple[LIFState, tuple[jax.Array, ...]]:
    """One step of the current-based LIF: ``v += dt/tau_m (-(v - E_L) + I/g_L)`` after the reset test.

    With ``integrator="exp_euler"`` the step is exact for a current held at ``I`` over
    ``[t_it, t_it + dt)``: ``v(t_it + h) = V_inf + (v - V_inf) exp(-h/tau_m)``, ``V_inf = E_L + I/g_L``,
    with the spike at the exact crossing time and the reset and ``t_ref`` from there
    (docs/conventions.md section 10).

    Args:
        params: neuron parameters.  state: :class:`LIFState`.
        I: input current at this step [pA].  dt: time step [ms].
        spike_grad: ``None`` (exact threshold, boolean spike) or a :class:`jaxlif.surrogates.Surrogate`
            (float 0/1 spike with a surrogate derivative; identical values).
        integrator: ``"euler"`` (default, the tutorial's scheme) or ``"exp_euler"``.

    Returns:
        ``(new_state, (v_it, spike_it))``; with ``"exp_euler"`` ``(new_state, (v_it, spike_it, offset_it))``
        (:func:`membrane_step`).
    """
    return membrane_step(params, state, 0.0, 0.0, 0.0, 0.0, I, dt, spike_grad, integrator)


def _append_zero(seq):
    """``seq`` (time first) with one more sample, 0 (no spike, no offset): the last sample is never tested."""
    return jnp.concatenate([seq, jnp.zeros((1,) + seq.shape[1:], seq.dtype)], axis=0)


def _finish(v_seq, spike_seq, v_last, offset_seq=None):
    """Append the last sample (never tested against threshold) to scanned outputs, time last.
    With ``offset_seq`` (``integrator="exp_euler"``) also returns the spike offsets, 0 at the end."""
    v = jnp.concatenate([v_seq, v_last[None]], axis=0)
    if offset_seq is None:
        return v, _append_zero(spike_seq)
    return v, _append_zero(spike_seq), _append_zero(offset_seq)


def _run_options(spike_grad, checkpoint, neuron: LIFParams):
    """Validate the options shared by every simulator (before tracing); returns ``checkpoint``.
    Warns when the surrogate's gradient through the reset of ``neuron`` would be unstable."""
    check_spike_grad(spike_grad)
    warn_if_unstable(spike_grad, neuron.V_th, neuron.V_reset)
    return _scan.check_checkpoint(checkpoint)


def _single_neuron(params, cls, function: str, batch: str | None = None):
    """Lists become arrays; every parameter of a single-neuron simulator must be a scalar."""
    if not isinstance(params, cls):
        raise TypeError(f"params must be a jaxlif.{cls.__name__}, got {type(params).__name__}")
    params = _checks.upcast(_checks.lists_to_arrays(params))   # float16/bfloat16 -> the default float
    _checks.check_field_shapes("params", params, ((),), _checks.single_neuron_hint(function, batch))
    return params


def simulate_lif(params: LIFParams, I: jax.Array, *, dt: float, spiking: bool = True,
                 spike_grad: Surrogate | None = None, checkpoint: bool | int | None = None,
                 integrator: str = "euler", record: bool = True) -> LIFResult:
    """Simulate the current-based LIF over an input current ``I`` [pA] of shape ``(n_steps,)``.

    Equivalent Python loop::

        state = lif_init(params)
        for it in range(n_steps - 1):
            state, (v[it], spikes[it]) = lif_step(params, state, I[it], dt)
        v[n_steps - 1] = state.v

    Args:
        params: :class:`LIFParams` (tau_m [ms], g_L [nS], potentials [mV], t_ref [ms]); scalars
            (lists are converted; for several neurons use ``jax.vmap``).
        I: input current [pA], shape ``(n_steps,)``, ``n_steps >= 1``.
        dt: time step [ms] (static).
        spiking: ``False`` removes the threshold and reset (the first tutorial's exercise;
            the free membrane potential).
        spike_grad: ``None`` (exact threshold; zero gradient through spikes) or a surrogate from
            :mod:`jaxlif.surrogates` (identical values, float 0/1 raster with a surrogate derivative).
        checkpoint: ``None``/``False``, ``True`` or a segment length: memory of ``jax.grad`` grows like
            ``sqrt(n_steps)`` instead of ``n_steps`` (:mod:`jaxlif._scan`); values unchanged.
        integrator: ``"euler"`` (default: the tutorial's forward Euler, above) or ``"exp_euler"``:
            ``I[it]`` held over ``[t_it, t_it + dt)`` and the membrane solved exactly for it, spike times
            at the exact crossing within the step (``spike_offset``), reset and ``t_ref`` from there
            (docs/conventions.md section 10).  For a piecewise-constant current on the grid this is
            the exact solution at every ``dt``.
        record: ``True`` (default) returns the voltage trace ``v``; ``False`` keeps only the spike raster
            (and ``spike_offset`` with ``"exp_euler"``), ``v`` is ``None``: the trace is never stored, which
            saves memory and time when only spikes are needed (under your own ``jit`` XLA already drops an
            unused trace; un-jitted, or under ``jax.grad`` without ``jit``, it is computed unless
            ``record=False``).  The raster and its gradients are those of the recorded run, bit for bit.

    Invalid traced values (inside your ``jit``/``vmap``) give NaN traces and an all-``True`` raster;
    :func:`jaxlif.checked` raises naming them.

    Example (the first tutorial, in ms/mV/pA)::

        p = LIFParams(tau_m=20., E_L=-60., V_init=-60., g_L=10.)
        I = sinusoidal_current(250., T=150., dt=1.)
        v = simulate_lif(p, I, dt=1., spiking=False).v   # v[1] = -58.75 mV
    """
    dt = _checks.check_dt(dt)
    params = _single_neuron(params, LIFParams, "simulate_lif")
    check_lif_params(params, dt, "params")
    checkpoint = _run_options(spike_grad, checkpoint, params)
    integrator = check_integrator(integrator)
    _checks.check_finite("I", I, "pA")
    if np.ndim(I) != 1:
        raise ValueError(f"I must have shape (n_steps,), got {np.shape(I)}; "
                         + _checks.single_neuron_hint("simulate_lif"))
    _checks.check_steps("I", I)
    return _simulate_lif(params, _checks.upcast(host_argument(I)), dt, _checks.check_flag("spiking", spiking),
                         spike_grad, checkpoint, integrator, _checks.check_flag("record", record))


def _scan_checking(step, state0, xs, n: int, checkpoint, keep, valid):
    """Scan a simulator's ``step(state, x) -> (state, outputs)`` over ``xs`` (time first), checking each
    step's input on the way: ``valid(x)`` is a scalar boolean, and-ed over the steps in the carry (fused
    into the scan, instead of a separate pass over a long input).  ``keep``: ``None`` (every output) or the
    indices of the outputs to keep; the others are never stored.  Outputs stay time first.

    Returns ``(state, outputs, all_valid)``.
    """
    def body(carry, x):
        state, flag = carry
        state, out = step(state, x)
        return (state, flag & valid(x)), (out if keep is None else tuple(out[k] for k in keep))

    (state, flag), out = _scan.scan(body, (state0, jnp.asarray(True)), xs, n, checkpoint, remat_steps=True)
    return state, out, flag


def _finite_in_scan(label: str, I, flag) -> jax.Array:
    """The ``"finite"`` rule of ``I`` from a scan's verdict ``flag`` on ``I[:-1]`` and its last sample
    (emits the named check of :func:`jaxlif._checks.traced_rule_result`)."""
    finite = _checks.rule_predicate("finite")
    return _checks.traced_rule_result(label, I, "finite", flag & jnp.all(finite(I[-1], None)))


@jax.jit(static_argnums=(2, 3, 4, 5, 6, 7))
def _simulate_lif(params, I, dt, spiking, spike_grad, checkpoint, integrator="euler", record=True):
    ok = _checks.traced_params("params", params, dt, _checks.LIF_RULES)
    if not spiking:
        params = params._replace(V_th=jnp.inf)
    I = I.astype(jnp.result_type(float))     # the "finite" rule gives the same verdict before and after
    step = lambda st, i: lif_step(params, st, i, dt, spike_grad=spike_grad, integrator=integrator)
    finite = _checks.rule_predicate("finite")
    keep = None if record else (1, 2) if integrator == "exp_euler" else (1,)   # without v
    state, out, flag = _scan_checking(step, lif_init(params), I[:-1], I.shape[0] - 1, checkpoint, keep,
                                      lambda i: jnp.all(finite(i, None)))
    ok = ok & _finite_in_scan("I", I, flag)
    if record:
        return _checks.poison(ok, LIFResult(*_finish(*out[:2], state.v, *out[2:])))
    return _checks.poison(ok, LIFResult(None, *map(_append_zero, out)))
