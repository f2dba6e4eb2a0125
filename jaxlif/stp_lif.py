r"""Conductance LIF driven by plastic synapses: every input train has its own u, R, g.

This is the tutorial's ``run_LIF_cond_STP`` (docs/conventions.md 4.3): each excitatory train ``j`` runs
``dynamic_syn`` with the excitatory STP parameters (:func:`jaxlif.plasticity.stp_step`), the
total conductance is ``g_E = sum_j g_j`` (likewise ``g_I``), and the membrane follows the
conductance-LIF scheme of :mod:`jaxlif.neurons` with ``g_E[it+1], g_I[it+1]`` (the static
synapse update is not applied on top).  Since STP does not depend on the postsynaptic
voltage, the synapses could be run first and the neuron afterwards; here both advance in
one scan so that nothing of shape ``(n_trains, n_steps)`` needs to be stored.

Per-synapse parameters: the fields of ``exc``/``stp_E`` (``inh``/``stp_I``) may be scalars or one value
per excitatory (inhibitory) train, shape ``(n_E,)`` (``(n_I,)``); the neuron's are scalars (one neuron:
use ``jax.vmap`` or :mod:`jaxlif.batch` for several).  Several spikes of one train in one step follow
``counts=`` (:mod:`jaxlif.plasticity`).  Gradients, surrogate spikes and checkpointing work as in
:mod:`jaxlif.neurons` (``spike_grad=``, ``checkpoint=``).

Units: ms, mV, nS, pA.  Defaults: the tutorial's bonus neuron with ``tau_ratio = 0.5``
(gE_bar 4.8 nS, tau_E 5 ms, gI_bar 6.4 nS, tau_I 10 ms, U0 0.45, tau_d 250 ms, tau_f 150 ms).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks, _scan, _stability
from jaxlif._host import host_argument
from jaxlif.inputs import _bernoulli, _p_spike
from jaxlif.neurons import (LIFParams, LIFState, _check_poisson_run, _current_array, _finish,
                            _no_threshold, _poisson_scan, _run_options, _scalar_rates, _traced_poisson_ok,
                            check_lif_params, lif_init, membrane_step)
from jaxlif.plasticity import (STPParams, STPState, _warn_counts, check_counts, check_stp_params, stp_init,
                               stp_step, traced_counts_ok, traced_stp_ok)
from jaxlif.neurons import check_integrator
from jaxlif.surrogates import Surrogate
from jaxlif.synapses import SynParams, check_syn_params, exp_syn_mean

__all__ = [
    "STPLIFParams",
    "STPLIFState",
    "STPLIFResult",
    "stp_lif_params",
    "stp_lif_init",
    "stp_lif_step",
    "simulate_stp_lif",
    "simulate_stp_lif_poisson",
]


def stp_lif_params(tau_ratio: float = 0.5, **neuron_kw) -> "STPLIFParams":
    """The tutorial's bonus STP-LIF parameters: ``tau_d = 500*tau_ratio``, ``tau_f = 300*tau_ratio`` [ms]."""
    stp = STPParams(U0=0.45, tau_d=500.0 * tau_ratio, tau_f=300.0 * tau_ratio)
    return STPLIFParams(neuron=LIFParams(**neuron_kw), stp_E=stp, stp_I=stp)


class STPLIFParams(NamedTuple):
    """Parameters of the STP-driven conductance LIF.

    Attributes:
        neuron: :class:`LIFParams`.
        exc, inh: :class:`SynParams` per population (g_bar per synapse [nS], tau_syn [ms], E_rev [mV]).
        stp_E, stp_I: :class:`STPParams` per population.
    """

    neuron: LIFParams = LIFParams()
    exc: SynParams = SynParams(g_bar=4.8, tau_syn=5.0, E_rev=0.0)
    inh: SynParams = SynParams(g_bar=6.4, tau_syn=10.0, E_rev=-80.0)
    stp_E: STPParams = STPParams(U0=0.45, tau_d=250.0, tau_f=150.0)
    stp_I: STPParams = STPParams(U0=0.45, tau_d=250.0, tau_f=150.0)


class STPLIFState(NamedTuple):
    """Membrane state and the per-train plasticity states (shapes ``(n_E,)`` and ``(n_I,)``)."""

    neuron: LIFState
    syn_E: STPState
    syn_I: STPState


class STPLIFResult(NamedTuple):
    """Output of the STP-LIF simulators (time last; ``None`` where not recorded).

    Attributes:
        v: membrane potential [mV], ``(n_steps,)``.
        spikes: boolean raster ``(n_steps,)``.
        g_E, g_I: total conductances [nS], ``(n_steps,)``.
        syn_E, syn_I: per-train :class:`STPState` traces ``(n_trains, n_steps)`` (only from
            :func:`simulate_stp_lif` with ``record_synapses=True``).
        spike_offset: ``None`` with ``integrator="euler"``; with ``"exp_euler"`` the time of each spike
            after its sample [ms], ``(n_steps,)`` (a spike at index k happened at ``k*dt + spike_offset[k]``).
    """

    v: jax.Array | None
    spikes: jax.Array
    g_E: jax.Array | None
    g_I: jax.Array | None
    syn_E: STPState | None = None
    syn_I: STPState | None = None
    spike_offset: jax.Array | None = None


def stp_lif_init(params: STPLIFParams, n_E: int, n_I: int) -> STPLIFState:
    """Resting state: ``v = V_init``, every synapse at ``u = 0, R = 1, g = 0``."""
    neuron = lif_init(params.neuron)
    return STPLIFState(neuron, stp_init((n_E,), neuron.v.dtype), stp_init((n_I,), neuron.v.dtype))


def stp_lif_step(params: STPLIFParams, state: STPLIFState, inputs: tuple[ArrayLike, ArrayLike, ArrayLike],
                 dt: float, *, spike_grad: Surrogate | None = None, counts: str = "sequential",
                 integrator: str = "euler") -> tuple[STPLIFState, tuple]:
    """One step: every synapse's ``dynamic_syn`` update with spikes at ``it+1``, then the membrane.

    With ``integrator="exp_euler"`` (docs/conventions.md section 10) the state's synapses at ``t_it``
    include the spikes of index ``it``; the membrane first relaxes over ``[t_it, t_it + dt)`` on each
    train's exact mean conductance (:func:`jaxlif.synapses.exp_syn_mean`, summed per population), with
    the spike time found within the step; then every synapse follows the continuous-time
    Tsodyks-Markram model to ``t_it+1`` and takes the spikes of ``it+1``
    (:func:`jaxlif.plasticity.stp_step` with ``integrator="exp_euler"``).

    Args:
        inputs: ``(s_E, s_I, I_inj)``: spikes of each excitatory/inhibitory train at ``it+1``
            (shapes ``(n_E,)``, ``(n_I,)``) and the injected current at ``it`` [pA].
        spike_grad: ``None`` or a :class:`jaxlif.surrogates.Surrogate` (see :func:`jaxlif.lif_step`).
        counts: ``"tutorial"`` or ``"sequential"`` (:func:`jaxlif.plasticity.stp_step`).
        integrator: ``"euler"`` (default, the tutorial's scheme) or ``"exp_euler"``.

    Returns:
        ``(state_at_it+1, (v_it, spike_it, g_E_it+1, g_I_it+1, syn_E_it+1, syn_I_it+1))``; with
        ``"exp_euler"`` a seventh output, the spike's time after ``t_it`` [ms] (0 without a spike).
    """
    s_E, s_I, I_inj = inputs
    if check_integrator(integrator) == "exp_euler":
        neuron, (v, spike, offset) = membrane_step(
            params.neuron, state.neuron, exp_syn_mean(params.exc, state.syn_E.g, dt).sum(), params.exc.E_rev,
            exp_syn_mean(params.inh, state.syn_I.g, dt).sum(), params.inh.E_rev, I_inj, dt, spike_grad, integrator)
        syn_E, g_E = stp_step(params.stp_E, params.exc, state.syn_E, s_E, dt, counts=counts, integrator=integrator)
        syn_I, g_I = stp_step(params.stp_I, params.inh, state.syn_I, s_I, dt, counts=counts, integrator=integrator)
        return STPLIFState(neuron, syn_E, syn_I), (v, spike, g_E.sum(), g_I.sum(), syn_E, syn_I, offset)
    syn_E, g_E = stp_step(params.stp_E, params.exc, state.syn_E, s_E, dt, counts=counts)
    syn_I, g_I = stp_step(params.stp_I, params.inh, state.syn_I, s_I, dt, counts=counts)
    g_E, g_I = g_E.sum(), g_I.sum()
    neuron, (v, spike) = membrane_step(params.neuron, state.neuron, g_E, params.exc.E_rev,
                                       g_I, params.inh.E_rev, I_inj, dt, spike_grad)
    return STPLIFState(neuron, syn_E, syn_I), (v, spike, g_E, g_I, syn_E, syn_I)


def _check(params: STPLIFParams, dt: float, n_E: int | None = None, n_I: int | None = None,
           function: str = "simulate_stp_lif") -> STPLIFParams:
    """Validate (and convert lists in) :class:`STPLIFParams`; with ``n_E, n_I`` (the single-neuron
    simulators) also the shapes: a scalar neuron, synapse fields scalar or per train (``(n_E,)``,
    ``(n_I,)``).  Returns the converted parameters."""
    if not isinstance(params, STPLIFParams):
        raise TypeError(f"params must be a jaxlif.STPLIFParams, got {type(params).__name__}")
    params = _checks.upcast(_checks.lists_to_arrays(params))   # float16/bfloat16 -> the default float
    if n_E is not None:
        hint = _checks.single_neuron_hint(function, "simulate_stp_lif_batch")
        _checks.check_field_shapes("params.neuron", params.neuron, ((),), hint)
        for fields, n, group in ((("exc", "stp_E"), n_E, "excitatory"), (("inh", "stp_I"), n_I, "inhibitory")):
            for field in fields:
                _checks.check_field_shapes(f"params.{field}", getattr(params, field), ((), (n,)),
                                           f"synapse parameters are scalars or one value per {group} "
                                           f"train; " + hint)
    check_lif_params(params.neuron, dt, "params.neuron")
    check_syn_params("params.exc", params.exc, dt)
    check_syn_params("params.inh", params.inh, dt)
    check_stp_params(params.stp_E, dt, "params.stp_E")
    check_stp_params(params.stp_I, dt, "params.stp_I")
    return params


def traced_stp_lif_ok(params: STPLIFParams, dt: float) -> jax.Array:
    """Inside a jitted core: are the (possibly traced) :class:`STPLIFParams` valid (see :mod:`jaxlif._checks`)?"""
    return (_checks.traced_params("params.neuron", params.neuron, dt, _checks.LIF_RULES)
            & _checks.traced_params("params.exc", params.exc, dt, _checks.SYN_RULES)
            & _checks.traced_params("params.inh", params.inh, dt, _checks.SYN_RULES)
            & traced_stp_ok("params.stp_E", params.stp_E, params.exc, dt, "params.exc")
            & traced_stp_ok("params.stp_I", params.stp_I, params.inh, dt, "params.inh"))


def simulate_stp_lif(params: STPLIFParams, spikes_E: jax.Array, spikes_I: jax.Array,
                     I_inj: ArrayLike = 0.0, *,
                     dt: float, spiking: bool = True, record_synapses: bool = True,
                     spike_grad: Surrogate | None = None, checkpoint: bool | int | None = None,
                     counts: str = "sequential", integrator: str = "euler") -> STPLIFResult:
    """Simulate on given trains ``spikes_E (n_E, n_steps)`` and ``spikes_I (n_I, n_steps)`` (0/1).

    Equivalent Python loop::

        state = stp_lif_init(params, n_E, n_I)
        for it in range(n_steps - 1):
            state, out = stp_lif_step(params, state, (spikes_E[:, it+1], spikes_I[:, it+1], I[it]), dt)

    Args:
        params: :class:`STPLIFParams` (neuron scalars; synapse fields scalar or per train).
        spikes_E, spikes_I: trains, time last, ``n_steps >= 1`` (``n_E`` or ``n_I`` may be 0).
        I_inj: injected current [pA], scalar or ``(n_steps,)``.  dt: [ms].
        spiking: ``False`` gives the free membrane potential.
        record_synapses: also return the per-train ``u, R, g`` traces.
        spike_grad, checkpoint: see :func:`jaxlif.simulate_lif`.
        counts: a train value above 1 in a step: ``"tutorial"`` or ``"sequential"`` (:mod:`jaxlif.plasticity`).
        integrator: ``"euler"`` (default, the tutorial's scheme) or ``"exp_euler"`` (:func:`stp_lif_step`;
            docs/conventions.md section 10): the spikes of index 0 are seen (they act at ``t = 0``), and
            ``spike_offset`` is returned.

    Returns:
        :class:`STPLIFResult`; ``syn_E``/``syn_I`` hold per-train ``u, R, g`` traces when
        ``record_synapses`` (the tutorial's ``uE, RE, gE, uI, RI, gI``).  Invalid traced values give
        NaN traces and an all-``True`` raster.
    """
    dt = _checks.check_dt(dt)
    check_counts(counts)
    for name, s in (("spikes_E", spikes_E), ("spikes_I", spikes_I)):
        if np.ndim(s) != 2:
            raise ValueError(f"{name} must have shape (n_trains, n_steps), got {np.shape(s)}; "
                             + _checks.single_neuron_hint("simulate_stp_lif", "simulate_stp_lif_batch"))
        _checks.check_spikes(name, s)
        _checks.check_steps(name, s)
    steps = np.shape(spikes_E)[1]
    if np.shape(spikes_I)[1] != steps:
        raise ValueError(f"spikes_E has {steps} steps but spikes_I has {np.shape(spikes_I)[1]}")
    params = _check(params, dt, np.shape(spikes_E)[0], np.shape(spikes_I)[0])
    checkpoint = _run_options(spike_grad, checkpoint, params.neuron)
    integrator = check_integrator(integrator)
    _warn_counts("spikes_E", spikes_E, counts)
    _warn_counts("spikes_I", spikes_I, counts)
    I = _current_array(I_inj, steps)
    return _stability.warn_if_poisoned(
        _simulate_stp_lif(params, host_argument(spikes_E), host_argument(spikes_I), I, dt,
                          _checks.check_flag("spiking", spiking),
                          _checks.check_flag("record_synapses", record_synapses), spike_grad, checkpoint, counts,
                          integrator),
        "simulate_stp_lif")


def _with_initial(x0, seq):
    """Prepend the initial sample to a time-major scanned trace and move time last."""
    return jnp.moveaxis(jnp.concatenate([jnp.asarray(x0)[None], seq]), 0, -1)


def _initial_spikes(params: STPLIFParams, state0: STPLIFState, s_E, s_I, dt: float, counts: str) -> STPLIFState:
    """``integrator="exp_euler"``: the spikes of index 0 act at ``t = 0`` (from rest the exact decay over
    ``dt`` that :func:`stp_step` applies first leaves ``u = 0, R = 1, g = 0`` unchanged)."""
    syn_E = stp_step(params.stp_E, params.exc, state0.syn_E, s_E, dt, counts=counts, integrator="exp_euler")[0]
    syn_I = stp_step(params.stp_I, params.inh, state0.syn_I, s_I, dt, counts=counts, integrator="exp_euler")[0]
    return state0._replace(syn_E=syn_E, syn_I=syn_I)


@jax.jit(static_argnums=(4, 5, 6, 7, 8, 9, 10))
def _simulate_stp_lif(params, spikes_E, spikes_I, I, dt, spiking, record_synapses, spike_grad, checkpoint,
                      counts, integrator="euler"):
    dtype = jnp.result_type(float)
    xs = (spikes_E.T[1:].astype(dtype), spikes_I.T[1:].astype(dtype), I[:-1])
    ok = (traced_stp_lif_ok(params, dt) & traced_counts_ok("spikes_E", xs[0], counts)
          & traced_counts_ok("spikes_I", xs[1], counts) & _checks.traced_rule("I_inj", I, "finite"))
    params = _no_threshold(params, spiking)
    state0 = stp_lif_init(params, spikes_E.shape[0], spikes_I.shape[0])
    exp_euler = integrator == "exp_euler"
    if exp_euler:
        state0 = _initial_spikes(params, state0, spikes_E[:, 0].astype(dtype), spikes_I[:, 0].astype(dtype), dt,
                                 counts)

    def body(state, x):
        state, (v, spike, g_E, g_I, syn_E, syn_I, *offset) = stp_lif_step(
            params, state, x, dt, spike_grad=spike_grad, counts=counts, integrator=integrator)
        return state, (v, spike, g_E, g_I, tuple(offset)) + ((syn_E, syn_I) if record_synapses else ())

    state, out = _scan.scan(body, state0, xs, spikes_E.shape[1] - 1, checkpoint)
    v, spikes = _finish(out[0], out[1], state.neuron.v)
    g0_E, g0_I = (state0.syn_E.g.sum(), state0.syn_I.g.sum()) if exp_euler else (0.0 * v[0], 0.0 * v[0])
    g_E, g_I = _with_initial(g0_E, out[2]), _with_initial(g0_I, out[3])
    extra = {"spike_offset": jnp.concatenate([out[4][0], jnp.zeros((1,), out[4][0].dtype)])} if exp_euler else {}
    if not exp_euler:   # the tutorial's membrane step: poisoned where it left its stable range
        ok = ok & _stability.traced_euler_ok(params.neuron, jnp.max(out[2] + out[3], initial=0.0), dt)
    if not record_synapses:
        return _checks.poison(ok, STPLIFResult(v, spikes, g_E, g_I, **extra))
    syn_E = STPState(*(_with_initial(a0, a) for a0, a in zip(state0.syn_E, out[5])))
    syn_I = STPState(*(_with_initial(a0, a) for a0, a in zip(state0.syn_I, out[6])))
    return _checks.poison(ok, STPLIFResult(v, spikes, g_E, g_I, syn_E, syn_I, **extra))


def simulate_stp_lif_poisson(key: jax.Array, params: STPLIFParams = STPLIFParams(), *,
                             rate_E: float = 15.0, rate_I: float = 15.0, n_E: int = 80, n_I: int = 20,
                             I_inj: ArrayLike = 0.0, T: float = 1000.0, dt: float = 0.1, spiking: bool = True,
                             record: bool = True, spike_grad: Surrogate | None = None,
                             checkpoint: bool | int | None = None, integrator: str = "euler") -> STPLIFResult:
    """STP-LIF driven by independent Poisson trains drawn inside the scan (step by step).

    Train spikes at step ``k`` come from :func:`jaxlif.inputs.bernoulli_step` with
    ``fold_in(key_E, k)``, ``key_E, key_I = jax.random.split(key)``, so the run equals
    ``simulate_stp_lif(params, poisson_trains(key_E, rate_E, n_E, ...), poisson_trains(key_I, ...))``.
    Nothing of shape ``(n_trains, n_steps)`` is built.  This is the per-step reference path;
    see :mod:`jaxlif.batch` for the event-driven one.

    Gradients: with respect to ``params`` (``spike_grad`` for rates, ``checkpoint=True`` for long runs:
    a 10 s run with 100 synapses needs a few MiB instead of hundreds).  The gradient with respect to
    ``rate_E``/``rate_I`` is zero (Bernoulli draws are not reparameterised).

    Args:
        key: ``jax.random`` key.  params: :class:`STPLIFParams` (synapse fields scalar or per train).
        rate_E, rate_I: rate of each train [Hz], scalars.  n_E, n_I: number of trains (static).
        I_inj: injected current [pA].  T, dt: [ms].
        spiking: ``False`` gives the free membrane potential.
        record: ``False`` keeps only the spike raster.
        spike_grad, checkpoint: see :func:`jaxlif.simulate_lif`.
        integrator: ``"euler"`` (default) or ``"exp_euler"`` (see :func:`simulate_stp_lif`; the trains' spikes
            at index 0 then act at ``t = 0``, and ``spike_offset`` is returned also without ``record``).
    """
    dt, steps, I = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt)
    _scalar_rates("simulate_stp_lif_poisson", rate_E=rate_E, rate_I=rate_I)
    params = _check(params, dt, n_E, n_I, "simulate_stp_lif_poisson")
    checkpoint = _run_options(spike_grad, checkpoint, params.neuron)
    integrator = check_integrator(integrator)
    return _stability.warn_if_poisoned(
        _simulate_stp_lif_poisson(key, params, rate_E, rate_I, I, n_E, n_I, steps, dt,
                                  _checks.check_flag("spiking", spiking), _checks.check_flag("record", record),
                                  spike_grad, checkpoint, integrator), "simulate_stp_lif_poisson")


@jax.jit(static_argnums=(5, 6, 7, 8, 9, 10, 11, 12, 13))
def _simulate_stp_lif_poisson(key, params, rate_E, rate_I, I, n_E, n_I, steps, dt, spiking, record,
                              spike_grad, checkpoint, integrator="euler"):
    ok = traced_stp_lif_ok(params, dt) & _traced_poisson_ok(rate_E, rate_I, I, dt)
    params = _no_threshold(params, spiking)
    key_E, key_I = jax.random.split(key)
    p_E, p_I = _p_spike(rate_E, dt, "rate_E"), _p_spike(rate_I, dt, "rate_I")
    draw_E, draw_I = lambda k: _bernoulli(key_E, k, p_E, n_E), lambda k: _bernoulli(key_I, k, p_I, n_I)
    state0 = stp_lif_init(params, n_E, n_I)
    exp_euler = integrator == "exp_euler"
    if exp_euler:
        dtype = state0.neuron.v.dtype
        state0 = _initial_spikes(params, state0, draw_E(0).astype(dtype), draw_I(0).astype(dtype), dt, "sequential")

    def step(state, x):
        state, out = stp_lif_step(params, state, x, dt, spike_grad=spike_grad, integrator=integrator)
        return state, out[:4] + out[6:]         # (v, spike, g_E, g_I[, offset]) for _poisson_scan

    fields = _poisson_scan(step, state0, draw_E, draw_I, I, steps, record, checkpoint, offsets=exp_euler,
                           peak=not exp_euler, g0=(state0.syn_E.g.sum(), state0.syn_I.g.sum()))
    if exp_euler:
        return _checks.poison(ok, STPLIFResult(*fields[:4], spike_offset=fields[4]))
    *fields, g_peak = fields
    ok = ok & _stability.traced_euler_ok(params.neuron, g_peak, dt)   # the Euler membrane within its stable range
    return _checks.poison(ok, STPLIFResult(*fields))
