r"""Conductance LIF driven by plastic synapses: every input train has its own u, R, g.

This is the tutorial's ``run_LIF_cond_STP`` (docs/conventions.md 4.3): each excitatory train ``j`` runs
``dynamic_syn`` with the excitatory STP parameters (:func:`jaxlif.plasticity.stp_step`), the
total conductance is ``g_E = sum_j g_j`` (likewise ``g_I``), and the membrane follows the
conductance-LIF scheme of :mod:`jaxlif.neurons` with ``g_E[it+1], g_I[it+1]`` (the static
synapse update is not applied on top).  Since STP does not depend on the postsynaptic
voltage, the synapses could be run first and the neuron afterwards; here both advance in
one scan so that nothing of shape ``(n_trains, n_steps)`` needs to be stored.

Units: ms, mV, nS, pA.  Defaults: the tutorial's bonus neuron with ``tau_ratio = 0.5``
(gE_bar 4.8 nS, tau_E 5 ms, gI_bar 6.4 nS, tau_I 10 ms, U0 0.45, tau_d 250 ms, tau_f 150 ms).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif import _checks
from jaxlif.inputs import _p_spike, bernoulli_step
from jaxlif.neurons import (LIFParams, LIFState, _check_poisson_run, _current_array, _finish,
                            _no_threshold, _poisson_scan, check_lif_params, lif_init, membrane_step)
from jaxlif.plasticity import STPParams, STPState, check_stp_params, stp_init, stp_step
from jaxlif.synapses import SynParams, check_syn_params

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
    """

    v: jax.Array | None
    spikes: jax.Array
    g_E: jax.Array | None
    g_I: jax.Array | None
    syn_E: STPState | None = None
    syn_I: STPState | None = None


def stp_lif_init(params: STPLIFParams, n_E: int, n_I: int) -> STPLIFState:
    """Resting state: ``v = V_init``, every synapse at ``u = 0, R = 1, g = 0``."""
    neuron = lif_init(params.neuron)
    return STPLIFState(neuron, stp_init((n_E,), neuron.v.dtype), stp_init((n_I,), neuron.v.dtype))


def stp_lif_step(params: STPLIFParams, state: STPLIFState, inputs, dt: float):
    """One step: every synapse's ``dynamic_syn`` update with spikes at ``it+1``, then the membrane.

    Args:
        inputs: ``(s_E, s_I, I_inj)``: spikes of each excitatory/inhibitory train at ``it+1``
            (shapes ``(n_E,)``, ``(n_I,)``) and the injected current at ``it`` [pA].

    Returns:
        ``(state_at_it+1, (v_it, spike_it, g_E_it+1, g_I_it+1, syn_E_it+1, syn_I_it+1))``.
    """
    s_E, s_I, I_inj = inputs
    syn_E, g_E = stp_step(params.stp_E, params.exc, state.syn_E, s_E, dt)
    syn_I, g_I = stp_step(params.stp_I, params.inh, state.syn_I, s_I, dt)
    g_E, g_I = g_E.sum(), g_I.sum()
    neuron, (v, spike) = membrane_step(params.neuron, state.neuron, g_E, params.exc.E_rev,
                                       g_I, params.inh.E_rev, I_inj, dt)
    return STPLIFState(neuron, syn_E, syn_I), (v, spike, g_E, g_I, syn_E, syn_I)


def _check(params: STPLIFParams, dt: float) -> None:
    if not isinstance(params, STPLIFParams):
        raise TypeError(f"params must be a jaxlif.STPLIFParams, got {type(params).__name__}")
    check_lif_params(params.neuron, dt, "params.neuron")
    check_syn_params("params.exc", params.exc, dt)
    check_syn_params("params.inh", params.inh, dt)
    check_stp_params(params.stp_E, dt, "params.stp_E")
    check_stp_params(params.stp_I, dt, "params.stp_I")


def simulate_stp_lif(params: STPLIFParams, spikes_E: jax.Array, spikes_I: jax.Array, I_inj=0.0, *,
                     dt: float, spiking: bool = True, record_synapses: bool = True) -> STPLIFResult:
    """Simulate on given trains ``spikes_E (n_E, n_steps)`` and ``spikes_I (n_I, n_steps)`` (0/1).

    Equivalent Python loop::

        state = stp_lif_init(params, n_E, n_I)
        for it in range(n_steps - 1):
            state, out = stp_lif_step(params, state, (spikes_E[:, it+1], spikes_I[:, it+1], I[it]), dt)

    Returns:
        :class:`STPLIFResult`; ``syn_E``/``syn_I`` hold per-train ``u, R, g`` traces when
        ``record_synapses`` (the tutorial's ``uE, RE, gE, uI, RI, gI``).
    """
    dt = _checks.check_dt(dt)
    _check(params, dt)
    for name, s in (("spikes_E", spikes_E), ("spikes_I", spikes_I)):
        if np.ndim(s) != 2:
            raise ValueError(f"{name} must have shape (n_trains, n_steps), got {np.shape(s)}")
        _checks.check_spikes(name, s)
    steps = np.shape(spikes_E)[1]
    if np.shape(spikes_I)[1] != steps:
        raise ValueError(f"spikes_E has {steps} steps but spikes_I has {np.shape(spikes_I)[1]}")
    I = _current_array(I_inj, steps)
    return _simulate_stp_lif(params, jnp.asarray(spikes_E), jnp.asarray(spikes_I), I, dt,
                             bool(spiking), bool(record_synapses))


def _with_initial(x0, seq):
    """Prepend the initial sample to a time-major scanned trace and move time last."""
    return jnp.moveaxis(jnp.concatenate([jnp.asarray(x0)[None], seq]), 0, -1)


@jax.jit(static_argnums=(4, 5, 6))
def _simulate_stp_lif(params, spikes_E, spikes_I, I, dt, spiking, record_synapses):
    params = _no_threshold(params, spiking)
    dtype = jnp.result_type(float)
    state0 = stp_lif_init(params, spikes_E.shape[0], spikes_I.shape[0])
    xs = (spikes_E.T[1:].astype(dtype), spikes_I.T[1:].astype(dtype), I[:-1])

    def body(state, x):
        state, (v, spike, g_E, g_I, syn_E, syn_I) = stp_lif_step(params, state, x, dt)
        return state, (v, spike, g_E, g_I) + ((syn_E, syn_I) if record_synapses else ())

    state, out = jax.lax.scan(body, state0, xs)
    v, spikes = _finish(out[0], out[1], state.neuron.v)
    g_E, g_I = _with_initial(0.0 * v[0], out[2]), _with_initial(0.0 * v[0], out[3])
    if not record_synapses:
        return STPLIFResult(v, spikes, g_E, g_I)
    syn_E = STPState(*(_with_initial(a0, a) for a0, a in zip(state0.syn_E, out[4])))
    syn_I = STPState(*(_with_initial(a0, a) for a0, a in zip(state0.syn_I, out[5])))
    return STPLIFResult(v, spikes, g_E, g_I, syn_E, syn_I)


def simulate_stp_lif_poisson(key: jax.Array, params: STPLIFParams = STPLIFParams(), *,
                             rate_E: float = 15.0, rate_I: float = 15.0, n_E: int = 80, n_I: int = 20,
                             I_inj=0.0, T: float = 1000.0, dt: float = 0.1, spiking: bool = True,
                             record: bool = True) -> STPLIFResult:
    """STP-LIF driven by independent Poisson trains drawn inside the scan (step by step).

    Train spikes at step ``k`` come from :func:`jaxlif.inputs.bernoulli_step` with
    ``fold_in(key_E, k)``, ``key_E, key_I = jax.random.split(key)``, so the run equals
    ``simulate_stp_lif(params, poisson_trains(key_E, rate_E, n_E, ...), poisson_trains(key_I, ...))``.
    Nothing of shape ``(n_trains, n_steps)`` is built.  This is the per-step reference path;
    see :mod:`jaxlif.batch` for the event-driven one.

    Args:
        key: ``jax.random`` key.  params: :class:`STPLIFParams`.
        rate_E, rate_I: rate of each train [Hz].  n_E, n_I: number of trains (static).
        I_inj: injected current [pA].  T, dt: [ms].
        spiking: ``False`` gives the free membrane potential.
        record: ``False`` keeps only the spike raster.
    """
    dt, steps, I = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt)
    _check(params, dt)
    return _simulate_stp_lif_poisson(key, params, rate_E, rate_I, I, n_E, n_I, steps, dt,
                                     bool(spiking), bool(record))


@jax.jit(static_argnums=(5, 6, 7, 8, 9, 10))
def _simulate_stp_lif_poisson(key, params, rate_E, rate_I, I, n_E, n_I, steps, dt, spiking, record):
    params = _no_threshold(params, spiking)
    key_E, key_I = jax.random.split(key)
    p_E, p_I = _p_spike(rate_E, dt), _p_spike(rate_I, dt)
    step = lambda state, x: stp_lif_step(params, state, x, dt)
    return STPLIFResult(*_poisson_scan(step, stp_lif_init(params, n_E, n_I),
                                       lambda k: bernoulli_step(key_E, k, p_E, n_E),
                                       lambda k: bernoulli_step(key_I, k, p_I, n_I), I, steps, record))
