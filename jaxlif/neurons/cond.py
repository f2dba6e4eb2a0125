r"""Conductance-based LIF with static exponential synapses, on given input counts or on Poisson input
drawn inside the scan.

The scheme, the gradients and the units are described in :mod:`jaxlif.neurons`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks, _scan, _stability
from jaxlif._host import host_argument
from jaxlif.grid import n_steps as _n_steps
from jaxlif.inputs import _binomial_tail, _p_spike, binomial_count, check_n_trains
from jaxlif.neurons.lif import (LIFParams, LIFState, _append_zero, _finish, _finite_in_scan, _run_options,
                                _scan_checking, _single_neuron, check_integrator,
                                check_lif_params, lif_init, membrane_step)
from jaxlif.surrogates import Surrogate
from jaxlif.synapses import EXC_SYN, INH_SYN, SynParams, check_syn_params, exp_syn_mean, exp_syn_step

__all__ = ["CondLIFParams", "CondLIFState", "CondLIFResult", "cond_lif_init", "cond_lif_step",
           "check_cond_lif_params", "simulate_cond_lif", "simulate_cond_lif_poisson"]


def _scalar_rates(function: str, **rates):
    for name, rate in rates.items():
        if np.ndim(rate) != 0:
            raise ValueError(f"{name} has shape {np.shape(rate)}, expected a scalar rate in Hz; "
                             + _checks.single_neuron_hint(function, "simulate_cond_lif_batch"))


class CondLIFParams(NamedTuple):
    """Conductance-based LIF: a neuron plus one excitatory and one inhibitory synapse population.

    Attributes:
        neuron: :class:`LIFParams`.
        exc: excitatory :class:`SynParams` (default exercise 1.2: 2.4 nS, 2 ms, 0 mV).
        inh: inhibitory :class:`SynParams` (default exercise 1.2: 2.4 nS, 5 ms, -80 mV).
    """

    neuron: LIFParams = LIFParams()
    exc: SynParams = EXC_SYN
    inh: SynParams = INH_SYN


class CondLIFState(NamedTuple):
    """State of the conductance LIF: membrane state plus total conductances g_E, g_I [nS]."""

    neuron: LIFState
    g_E: jax.Array
    g_I: jax.Array


class CondLIFResult(NamedTuple):
    """Output of the conductance-LIF simulators (time last; ``None`` where not recorded).

    Attributes:
        v: membrane potential [mV], ``(n_steps,)``.
        spikes: boolean raster ``(n_steps,)`` (``integrator="exp_euler"``: a spike in ``[k*dt, (k+1)*dt)``).
        g_E, g_I: total excitatory/inhibitory conductance [nS], ``(n_steps,)``.
        spike_offset: ``None`` with ``integrator="euler"``; with ``"exp_euler"`` the time of each spike
            after its sample [ms], ``(n_steps,)`` (a spike at index k happened at ``k*dt + spike_offset[k]``).
    """

    v: jax.Array | None
    spikes: jax.Array
    g_E: jax.Array | None
    g_I: jax.Array | None
    spike_offset: jax.Array | None = None


def cond_lif_init(params: CondLIFParams) -> CondLIFState:
    """Initial state: ``v = V_init``, not refractory, ``g_E = g_I = 0``."""
    neuron = lif_init(params.neuron)
    zero = jnp.zeros_like(neuron.v)
    return CondLIFState(neuron, zero, zero)


def cond_lif_step(params: CondLIFParams, state: CondLIFState,
                  inputs: tuple[ArrayLike, ArrayLike, ArrayLike], dt: float, *,
                  spike_grad: Surrogate | None = None, integrator: str = "euler"
                  ) -> tuple[CondLIFState, tuple[jax.Array, ...]]:
    """One step of the conductance LIF (steps 1-3 of docs/conventions.md 4.2).

    With ``integrator="exp_euler"`` (docs/conventions.md section 10): ``state.g_E, state.g_I`` are the
    conductances at ``t_it`` *including* the inputs of step ``it`` (an input at step ``k`` enters ``g``
    at ``t_k``; the initial state holds ``g_bar n[0]``).  The membrane sees their exact means over
    ``[t_it, t_it + dt)`` (:func:`jaxlif.synapses.exp_syn_mean`) and ``I_inj`` held over the step and is
    advanced by :func:`membrane_step`; then ``g`` decays exactly and the inputs of ``it+1`` are added.

    Args:
        params: :class:`CondLIFParams`.  state: :class:`CondLIFState` at ``it``.
        inputs: ``(n_E, n_I, I_inj)``: excitatory and inhibitory spike counts at ``it+1``
            (summed over trains) and the injected current at ``it`` [pA].
        dt: time step [ms].
        spike_grad: ``None`` or a :class:`jaxlif.surrogates.Surrogate` (see :func:`lif_step`).
        integrator: ``"euler"`` (default, the tutorial's scheme) or ``"exp_euler"``.

    Returns:
        ``(state_at_it+1, (v_it, spike_it, g_E_it+1, g_I_it+1))``; with ``"exp_euler"`` a fifth output,
        the spike's time after ``t_it`` [ms] (0 without a spike).
    """
    n_E, n_I, I_inj = inputs
    for label, x, kind in (("state.neuron.v", state.neuron.v, "membrane"), ("state.g_E", state.g_E, "conductance"),
                           ("state.g_I", state.g_I, "conductance")):   # float16/bfloat16 state: refused
        _checks.refuse_low_precision_state(label, x, kind, "cond_lif_step")
    params, n_E, n_I, I_inj = _checks.upcast((params, n_E, n_I, I_inj), jnp.result_type(state.neuron.v))
    if check_integrator(integrator) == "exp_euler":
        neuron, (v, spike, offset) = membrane_step(
            params.neuron, state.neuron, exp_syn_mean(params.exc, state.g_E, dt), params.exc.E_rev,
            exp_syn_mean(params.inh, state.g_I, dt), params.inh.E_rev, I_inj, dt, spike_grad, integrator)
        g_E = exp_syn_step(params.exc, state.g_E, n_E, dt, integrator=integrator)
        g_I = exp_syn_step(params.inh, state.g_I, n_I, dt, integrator=integrator)
        return CondLIFState(neuron, g_E, g_I), (v, spike, g_E, g_I, offset)
    g_E = exp_syn_step(params.exc, state.g_E, n_E, dt)
    g_I = exp_syn_step(params.inh, state.g_I, n_I, dt)
    neuron, (v, spike) = membrane_step(params.neuron, state.neuron, g_E, params.exc.E_rev,
                                       g_I, params.inh.E_rev, I_inj, dt, spike_grad)
    return CondLIFState(neuron, g_E, g_I), (v, spike, g_E, g_I)


def check_cond_lif_params(params: CondLIFParams, dt: float) -> None:
    """Validate a :class:`CondLIFParams` (ValueError/TypeError naming the field and range)."""
    if not isinstance(params, CondLIFParams):
        raise TypeError(f"params must be a jaxlif.CondLIFParams, got {type(params).__name__}")
    check_lif_params(params.neuron, dt, "params.neuron")
    check_syn_params("params.exc", params.exc, dt)
    check_syn_params("params.inh", params.inh, dt)


def _current_array(I_inj, steps: int):
    _checks.check_finite("I_inj", I_inj, "pA")
    shape = np.shape(I_inj)
    if shape not in ((), (steps,)):
        raise ValueError(f"I_inj must be a scalar or have shape ({steps},) [pA], got {shape}")
    I = host_argument(I_inj, jnp.result_type(float))
    return (np if isinstance(I, np.ndarray) else jnp).broadcast_to(I, (steps,))   # a host value: nothing compiled


def simulate_cond_lif(params: CondLIFParams, n_E: jax.Array, n_I: jax.Array, I_inj: ArrayLike = 0.0, *,
                      dt: float, spiking: bool = True, spike_grad: Surrogate | None = None,
                      checkpoint: bool | int | None = None, integrator: str = "euler",
                      record: bool = True) -> CondLIFResult:
    """Simulate the conductance LIF on given per-step input spike counts.

    Equivalent Python loop (the tutorial's ``run_LIF_cond``)::

        state = cond_lif_init(params)
        for it in range(n_steps - 1):
            state, (v[it], spikes[it], g_E[it+1], g_I[it+1]) = cond_lif_step(
                params, state, (n_E[it+1], n_I[it+1], I_inj[it]), dt)
        v[-1] = state.neuron.v;  g_E[0] = g_I[0] = 0

    Args:
        params: :class:`CondLIFParams`, scalar fields (lists are converted).
        n_E, n_I: number of excitatory/inhibitory input spikes per step, shape ``(n_steps,)``,
            ``n_steps >= 1`` (a train ``(n_trains, n_steps)`` summed over axis 0; any non-negative
            numbers).  A spike at index 0 is never seen.
        I_inj: injected current [pA], scalar or ``(n_steps,)``.
        dt: time step [ms].
        spiking: ``False`` removes the threshold (free membrane potential).
        spike_grad, checkpoint: see :func:`simulate_lif`.
        integrator: ``"euler"`` (default, the tutorial's scheme above) or ``"exp_euler"``
            (:func:`cond_lif_step`; docs/conventions.md section 10): exact synaptic decay, an input at
            index ``k`` enters ``g`` at ``t_k`` (index 0 is seen, and ``g_E[0] = gE_bar n_E[0]``),
            exponential Euler for the membrane and spike times within the step (``spike_offset``).
        record: ``True`` (default) returns the traces ``v, g_E, g_I``; ``False`` keeps only the spike
            raster (and ``spike_offset`` with ``"exp_euler"``), ``v, g_E, g_I`` are ``None`` and never
            stored: less memory and time when only spikes are needed (see :func:`simulate_lif`).  The
            raster and its gradients are those of the recorded run, bit for bit.

    Returns:
        :class:`CondLIFResult` with every trace of shape ``(n_steps,)`` (NaN traces and an all-``True``
        raster for invalid traced values).
    """
    dt = _checks.check_dt(dt)
    params = _single_neuron(params, CondLIFParams, "simulate_cond_lif", "simulate_cond_lif_batch")
    check_cond_lif_params(params, dt)
    checkpoint = _run_options(spike_grad, checkpoint, params.neuron)
    integrator = check_integrator(integrator)
    for name, n in (("n_E", n_E), ("n_I", n_I)):
        if np.ndim(n) != 1:
            raise ValueError(f"{name} must be per-step counts of shape (n_steps,), got shape "
                             f"{np.shape(n)}; sum trains over axis 0 first, and use jax.vmap for batches")
        _checks.check_spikes(name, n)
        _checks.check_steps(name, n)
    steps = np.shape(n_E)[0]
    if np.shape(n_I)[0] != steps:
        raise ValueError(f"n_E has {steps} steps but n_I has {np.shape(n_I)[0]}; they must agree")
    I = _current_array(I_inj, steps)
    return _stability.warn_if_poisoned(_simulate_cond_lif(params, host_argument(n_E), host_argument(n_I), I, dt,
                                                          _checks.check_flag("spiking", spiking), spike_grad,
                                                          checkpoint, integrator,
                                                          _checks.check_flag("record", record)),
                                       "simulate_cond_lif")


def _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt):
    """Shared validation of the Poisson-driven simulators; returns ``(dt, n_steps, I_inj array)``."""
    dt = _checks.check_dt(dt)
    steps = _n_steps(T, dt)
    _checks.check_key(key)
    _checks.check_rate("rate_E", rate_E, dt)
    _checks.check_rate("rate_I", rate_I, dt)
    check_n_trains("n_E", n_E)
    check_n_trains("n_I", n_I)
    return dt, steps, _current_array(I_inj, steps)


def _traced_poisson_ok(rate_E, rate_I, I, dt: float) -> jax.Array:
    """Inside a jitted core: the traced counterpart of :func:`_check_poisson_run` (rates and current)."""
    return (_checks.traced_rule("rate_E", rate_E, "rate", dt) & _checks.traced_rule("rate_I", rate_I, "rate", dt)
            & _checks.traced_rule("I_inj", I, "finite"))


def _no_threshold(params, spiking: bool):
    """Remove the threshold (``V_th = +inf``) of any params with a ``.neuron`` field when not spiking."""
    return params if spiking else params._replace(neuron=params.neuron._replace(V_th=jnp.inf))


@jax.jit(static_argnums=(4, 5, 6, 7, 8, 9))
def _simulate_cond_lif(params, n_E, n_I, I, dt, spiking, spike_grad, checkpoint, integrator="euler", record=True):
    dtype = jnp.result_type(float)
    n_E, n_I = n_E.astype(dtype), n_I.astype(dtype)
    ok = (traced_cond_lif_ok(params, dt) & _checks.traced_rule("n_E", n_E, "nonneg")
          & _checks.traced_rule("n_I", n_I, "nonneg"))
    params = _no_threshold(params, spiking)
    xs = (n_E[1:], n_I[1:], I[:-1])

    def step(carry, x):   # also the largest g_E + g_I a step used (a running maximum; jaxlif._stability)
        state, g_peak = carry
        state, out = cond_lif_step(params, state, x, dt, spike_grad=spike_grad, integrator=integrator)
        return (state, jnp.maximum(g_peak, out[2] + out[3])), out

    state0 = cond_lif_init(params)
    if integrator == "exp_euler":   # an input at index k enters g at t_k: index 0 is seen
        state0 = state0._replace(g_E=state0.g_E + params.exc.g_bar * n_E[0],
                                 g_I=state0.g_I + params.inh.g_bar * n_I[0])
    keep = None if record else (1, 4) if integrator == "exp_euler" else (1,)   # without v, g_E, g_I
    finite = _checks.rule_predicate("finite")
    (state, g_peak), out, flag = _scan_checking(step, (state0, _stability.peak_init(dtype)), xs,
                                                n_E.shape[0] - 1, checkpoint, keep,
                                                lambda x: jnp.all(finite(x[2], None)))
    ok = ok & _finite_in_scan("I_inj", I, flag)
    if integrator == "euler":   # the tutorial's membrane step: poisoned where it left its stable range
        ok = ok & _stability.traced_euler_ok(params.neuron, g_peak, dt)
    if not record:
        return _checks.poison(ok, CondLIFResult(None, _append_zero(out[0]), None, None,
                                                *map(_append_zero, out[1:])))
    v_seq, spike_seq, gE_seq, gI_seq = out[:4]
    v, spikes = _finish(v_seq, spike_seq, state.neuron.v)
    g0_E, g0_I = state0.g_E[None].astype(dtype), state0.g_I[None].astype(dtype)
    offset = (_append_zero(out[4]),) if integrator == "exp_euler" else ()
    result = CondLIFResult(v, spikes, jnp.concatenate([g0_E, gE_seq]), jnp.concatenate([g0_I, gI_seq]), *offset)
    return _checks.poison(ok, result)


def simulate_cond_lif_poisson(key: jax.Array, params: CondLIFParams = CondLIFParams(), *,
                              rate_E: float = 10.0, rate_I: float = 10.0, n_E: int = 80,
                              n_I: int = 20, I_inj: ArrayLike = 0.0, T: float = 1000.0, dt: float = 0.1,
                              spiking: bool = True, record: bool = True,
                              spike_grad: Surrogate | None = None,
                              checkpoint: bool | int | None = None, integrator: str = "euler") -> CondLIFResult:
    """Conductance LIF driven by ``n_E`` + ``n_I`` independent Poisson trains drawn inside the scan.

    With static synapses only the per-step count of input spikes matters, so each step draws
    one Binomial(n, p) count per population (:func:`jaxlif.inputs.binomial_step`) instead of
    ``n`` Bernoulli numbers, and no ``(n_trains, n_steps)`` tensor is ever built.  The count
    of step ``k`` comes from ``fold_in(key_E, k)`` with ``key_E, key_I = jax.random.split(key)``,
    so the run equals ``simulate_cond_lif(params, poisson_counts(key_E, rate_E, n_E, ...),
    poisson_counts(key_I, rate_I, n_I, ...), ...)`` exactly.

    Batch by ``jax.vmap`` over keys, rates or parameters, e.g.
    ``jax.vmap(lambda k: simulate_cond_lif_poisson(k, record=False).spikes.sum())(keys)``.

    Gradients: with respect to ``params`` (see the module docstring; ``spike_grad`` for rates).  The
    counts are drawn by comparing uniforms with the binomial law, so the gradient with respect to
    ``rate_E``/``rate_I`` is **zero**: the input is not reparameterised.  Hold the key fixed (common
    random numbers) when comparing or differentiating runs.

    Args:
        key: ``jax.random`` key.
        params: :class:`CondLIFParams`, scalar fields.
        rate_E, rate_I: rates of each input train [Hz], scalars (may be traced under vmap).
        n_E, n_I: number of excitatory/inhibitory trains (static ints).
        I_inj: injected current [pA], scalar or ``(n_steps,)``.
        T, dt: duration and step [ms].
        spiking: ``False`` gives the free membrane potential.
        record: ``False`` keeps only the spike raster (``v, g_E, g_I`` are ``None``) to bound memory.
        spike_grad, checkpoint: see :func:`simulate_lif`.
        integrator: ``"euler"`` (default) or ``"exp_euler"`` (see :func:`simulate_cond_lif`; the counts at
            index 0 then enter ``g`` at ``t = 0``, and ``spike_offset`` is returned also without ``record``).

    Invalid traced values (a negative rate, ``rate * dt / 1000 > 1``, ``tau_syn < dt``, NaN, ...) poison
    the outputs (NaN, all-``True`` raster); a rate of ``-0.0`` is 0.
    """
    dt, steps, I = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt)
    params = _single_neuron(params, CondLIFParams, "simulate_cond_lif_poisson", "simulate_cond_lif_batch")
    _scalar_rates("simulate_cond_lif_poisson", rate_E=rate_E, rate_I=rate_I)
    check_cond_lif_params(params, dt)
    checkpoint = _run_options(spike_grad, checkpoint, params.neuron)
    integrator = check_integrator(integrator)
    return _stability.warn_if_poisoned(
        _simulate_cond_lif_poisson(key, params, rate_E, rate_I, I, n_E, n_I, steps, dt,
                                   _checks.check_flag("spiking", spiking), _checks.check_flag("record", record),
                                   spike_grad, checkpoint, integrator), "simulate_cond_lif_poisson")


def _poisson_scan(step, state0, draw_E, draw_I, I, steps: int, record: bool, checkpoint=None, offsets=False,
                  peak=False, g0=None):
    """Scan ``step(state, (x_E, x_I, I[it])) -> (state, (v, spike, g_E, g_I, ...))`` with the inputs of
    step ``it+1`` drawn on the fly as ``draw_E(it+1)``, ``draw_I(it+1)`` (optionally checkpointed).

    Returns the result fields ``(v, spikes, g_E, g_I)`` with time last (all but ``spikes`` ``None``
    unless ``record``).  With ``offsets`` (``integrator="exp_euler"``: the step's fifth output is the
    spike offset) a fifth field, the offsets, recorded always; ``g_E[0], g_I[0]`` are then those of
    ``state0`` (or ``g0 = (g_E, g_I)`` when given; else 0).  With ``peak`` a last field, the largest
    ``g_E + g_I`` that a step used (a
    running maximum, so also without ``record``; :mod:`jaxlif._stability`).
    """
    def body(carry, x):
        state, g_peak = carry
        k, i_inj = x
        state, out = step(state, (draw_E(k + 1), draw_I(k + 1), i_inj))
        kept = out[:4] if record else (out[1],)
        if peak:
            g_peak = jnp.maximum(g_peak, out[2] + out[3])
        return (state, g_peak), kept + ((out[4],) if offsets else ())

    carry0 = (state0, _stability.peak_init(state0.neuron.v.dtype))
    (state, g_peak), out = _scan.scan(body, carry0, (jnp.arange(steps - 1), I[:-1]), steps - 1, checkpoint)
    extra = (jnp.concatenate([out[-1], jnp.zeros((1,), out[-1].dtype)]),) if offsets else ()
    extra = extra + ((g_peak,) if peak else ())
    if not record:
        return (None, jnp.concatenate([out[0], jnp.zeros((1,), out[0].dtype)]), None, None) + extra
    v, spikes = _finish(out[0], out[1], state.neuron.v)
    if offsets:
        g0_E, g0_I = (jnp.asarray(g)[None].astype(v.dtype) for g in ((state0.g_E, state0.g_I) if g0 is None else g0))
    else:
        g0_E = g0_I = jnp.zeros((1,), v.dtype)
    return (v, spikes, jnp.concatenate([g0_E, out[2]]), jnp.concatenate([g0_I, out[3]])) + extra


def traced_cond_lif_ok(params: CondLIFParams, dt: float) -> jax.Array:
    """Inside a jitted core: are the (possibly traced) :class:`CondLIFParams` valid?  Emits one
    ``checkify.debug_check`` per field (raised by :func:`jaxlif.checked`); see :mod:`jaxlif._checks`."""
    return (_checks.traced_params("params.neuron", params.neuron, dt, _checks.LIF_RULES)
            & _checks.traced_params("params.exc", params.exc, dt, _checks.SYN_RULES)
            & _checks.traced_params("params.inh", params.inh, dt, _checks.SYN_RULES))


@jax.jit(static_argnums=(5, 6, 7, 8, 9, 10, 11, 12, 13))
def _simulate_cond_lif_poisson(key, params, rate_E, rate_I, I, n_E, n_I, steps, dt, spiking, record,
                               spike_grad, checkpoint, integrator="euler"):
    ok = traced_cond_lif_ok(params, dt) & _traced_poisson_ok(rate_E, rate_I, I, dt)
    params = _no_threshold(params, spiking)
    key_E, key_I = jax.random.split(key)
    tail_E = _binomial_tail(_p_spike(rate_E, dt, "rate_E"), n_E)   # once per run, not per step
    tail_I = _binomial_tail(_p_spike(rate_I, dt, "rate_I"), n_I)
    step = lambda state, x: cond_lif_step(params, state, x, dt, spike_grad=spike_grad, integrator=integrator)
    draw_E = lambda k: binomial_count(key_E, k, tail_E)
    draw_I = lambda k: binomial_count(key_I, k, tail_I)
    state0 = cond_lif_init(params)
    exp_euler = integrator == "exp_euler"
    if exp_euler:   # an input at index k enters g at t_k: index 0 is seen
        dtype = state0.g_E.dtype
        state0 = state0._replace(g_E=state0.g_E + params.exc.g_bar * draw_E(0).astype(dtype),
                                 g_I=state0.g_I + params.inh.g_bar * draw_I(0).astype(dtype))
    *fields, g_peak = _poisson_scan(step, state0, draw_E, draw_I, I, steps, record, checkpoint, offsets=exp_euler,
                                    peak=True)
    if not exp_euler:   # the tutorial's membrane step: poisoned where it left its stable range
        ok = ok & _stability.traced_euler_ok(params.neuron, g_peak, dt)
    return _checks.poison(ok, CondLIFResult(*fields))
