r"""Leaky integrate-and-fire neurons: current-based and conductance-based.

Continuous time (docs/conventions.md, section 3)::

    current LIF:      tau_m dV/dt = -(V - E_L) + I(t) / g_L
    conductance LIF:  tau_m dV/dt = -(V - E_L) - (g_E/g_L)(V - E_E) - (g_I/g_L)(V - E_I) + I_inj/g_L
    V >= V_th  ->  spike, V <- V_reset, clamped at V_reset for t_ref

Discrete scheme implemented (the tutorial's ``run_LIF_cond``; docs/conventions.md 4.2), for
``it = 0 .. n_steps-2``::

    1. if r > 0:          v[it] = V_reset; r -= 1                   (refractory clamp)
       elif v[it] >= V_th: spike at it;  v[it] = V_reset; r = t_ref/dt
    2. g_E[it+1] = g_E[it] - dt/tau_E g_E[it] + gE_bar n_E[it+1]     (conductance LIF only)
    3. v[it+1] = v[it] + dt/tau_m (-(v[it]-E_L) - g_E[it+1]/g_L (v[it]-E_E)
                                   - g_I[it+1]/g_L (v[it]-E_I) + I[it]/g_L)

The last sample ``v[n_steps-1]`` is never tested against threshold; the refractory
counter ``r`` is a float, exactly as in the tutorial (t_ref = 2, dt = 0.1 clamps the 20
steps after the spike step).  The current-based LIF is the same scheme with
``g_E = g_I = 0``; with ``spiking=False`` the threshold is removed (``V_th = +inf``),
which gives the first tutorial's subthreshold loop and the free membrane potential.

Gradients (README, section "Gradients"): every simulator supports ``jax.grad``.

* Subthreshold runs (``spiking=False``, or no sample reaching ``V_th``): exact derivatives of the
  discrete scheme.
* Spikes without a surrogate (``spike_grad=None``, the default): the threshold is a step, so the
  gradient of a spike raster, count or rate is exactly **zero**, and the gradient of a voltage in a
  spiking run is the derivative *between* resets only: it ignores that a parameter change moves
  spikes and resets, and for quantities that resets pull down (the mean voltage) it is biased
  **upwards** (e.g. d mean(V) / d gE_bar comes out positive when finite differences are negative).
* ``spike_grad=jaxlif.surrogates.fast_sigmoid()`` (or ``arctan``, ``triangle``, ``custom``): the same
  forward values; the spike carries the surrogate derivative ``h(v - V_th)`` and the reset passes it
  on to the voltage (unless ``detach_reset``).  A useful descent direction, not an exact derivative.
* ``checkpoint=True`` (or a segment length) bounds the memory of reverse-mode gradients by
  ``O(sqrt(n_steps))`` instead of ``O(n_steps)`` at the cost of one extra forward pass
  (:mod:`jaxlif._scan`); values and gradients are unchanged.
* Poisson input is drawn, not reparameterised: the gradient with respect to ``rate_E``/``rate_I`` is
  zero (use :func:`jaxlif.fmp_shot_noise` for an analytic, differentiable approximation).

Shapes: traces are ``(n_steps,)``; batch with ``jax.vmap`` (leading batch axes).
Units: ms, mV, nS, pA, GOhm (docs/conventions.md, section 1).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif import _checks, _scan
from jaxlif.grid import n_steps as _n_steps
from jaxlif.inputs import _binomial_tail, _p_spike, binomial_count
from jaxlif.surrogates import Surrogate, check_spike_grad, spike_from_voltage, warn_if_unstable
from jaxlif.synapses import EXC_SYN, INH_SYN, SynParams, check_syn_params, exp_syn_step

__all__ = [
    "LIFParams",
    "LIFState",
    "LIFResult",
    "CondLIFParams",
    "CondLIFState",
    "CondLIFResult",
    "lif_init",
    "lif_step",
    "simulate_lif",
    "cond_lif_init",
    "cond_lif_step",
    "simulate_cond_lif",
    "simulate_cond_lif_poisson",
    "check_lif_params",
    "membrane_step",
]


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
        refractory: remaining refractory steps (float counter, as in the tutorial).
    """

    v: jax.Array
    refractory: jax.Array


class LIFResult(NamedTuple):
    """Output of :func:`simulate_lif`.

    Attributes:
        v: membrane potential [mV], ``(..., n_steps)``; at a spike step it holds V_reset.
        spikes: raster ``(..., n_steps)``; spike time of index k is ``k*dt`` ms.  Boolean, or float
            0/1 (dtype of ``v``) carrying the surrogate derivative when ``spike_grad`` is given.
    """

    v: jax.Array
    spikes: jax.Array


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
    refractory = state.refractory > 0
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


def membrane_step(params: LIFParams, state: LIFState, g_E, E_E, g_I, E_I, I, dt: float, spike_grad=None):
    """Steps 1 and 3 of the scheme (docs/conventions.md 4.2) for given conductances ``g_E, g_I`` [nS]
    at ``it+1`` and current ``I`` [pA] at ``it``.

    Returns ``(new_state, (v_it, spike_it))`` where ``v_it`` is the sample at ``it`` after the
    reset (what the tutorial stores in ``v[it]``).  ``spike_grad``: ``None`` (exact threshold,
    boolean spike) or a :class:`jaxlif.surrogates.Surrogate` (float 0/1 spike with a surrogate
    derivative; identical values).
    """
    v, r, spike = _fire_and_reset(params, state, dt, spike_grad)
    dv = (dt / params.tau_m) * (-(v - params.E_L)
                                - (g_E / params.g_L) * (v - E_E)
                                - (g_I / params.g_L) * (v - E_I)
                                + I / params.g_L)
    return LIFState(v + dv, r), (v, spike)


def lif_step(params: LIFParams, state: LIFState, I: jax.Array, dt: float, *,
             spike_grad: Surrogate | None = None):
    """One step of the current-based LIF: ``v += dt/tau_m (-(v - E_L) + I/g_L)`` after the reset test.

    Args:
        params: neuron parameters.  state: :class:`LIFState`.
        I: input current at this step [pA].  dt: time step [ms].
        spike_grad: ``None`` (exact threshold, boolean spike) or a :class:`jaxlif.surrogates.Surrogate`
            (float 0/1 spike with a surrogate derivative; identical values).

    Returns:
        ``(new_state, (v_it, spike_it))``.
    """
    return membrane_step(params, state, 0.0, 0.0, 0.0, 0.0, I, dt, spike_grad)


def _finish(v_seq, spike_seq, v_last):
    """Append the last sample (never tested against threshold) to scanned outputs, time last."""
    v = jnp.concatenate([v_seq, v_last[None]], axis=0)
    spikes = jnp.concatenate([spike_seq, jnp.zeros((1,), spike_seq.dtype)], axis=0)
    return v, spikes


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
    params = _checks.lists_to_arrays(params)
    _checks.check_field_shapes("params", params, ((),), _checks.single_neuron_hint(function, batch))
    return params


def _scalar_rates(function: str, **rates):
    for name, rate in rates.items():
        if np.ndim(rate) != 0:
            raise ValueError(f"{name} has shape {np.shape(rate)}, expected a scalar rate in Hz; "
                             + _checks.single_neuron_hint(function, "simulate_cond_lif_batch"))


def simulate_lif(params: LIFParams, I: jax.Array, *, dt: float, spiking: bool = True,
                 spike_grad: Surrogate | None = None, checkpoint: bool | int | None = None) -> LIFResult:
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
    _checks.check_finite("I", I, "pA")
    if np.ndim(I) != 1:
        raise ValueError(f"I must have shape (n_steps,), got {np.shape(I)}; "
                         + _checks.single_neuron_hint("simulate_lif"))
    _checks.check_steps("I", I)
    return _simulate_lif(params, jnp.asarray(I), dt, bool(spiking), spike_grad, checkpoint)


@jax.jit(static_argnums=(2, 3, 4, 5))
def _simulate_lif(params, I, dt, spiking, spike_grad, checkpoint):
    ok = (_checks.traced_params("params", params, dt, _checks.LIF_RULES)
          & _checks.traced_rule("I", I, "finite"))
    if not spiking:
        params = params._replace(V_th=jnp.inf)
    I = I.astype(jnp.result_type(float))
    step = lambda st, i: lif_step(params, st, i, dt, spike_grad=spike_grad)
    state, (v_seq, spike_seq) = _scan.scan(step, lif_init(params), I[:-1], I.shape[0] - 1, checkpoint)
    return _checks.poison(ok, LIFResult(*_finish(v_seq, spike_seq, state.v)))


# ----------------------------------------------------------------------------------------------
# Conductance-based LIF with static exponential synapses
# ----------------------------------------------------------------------------------------------


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
        spikes: boolean raster ``(n_steps,)``.
        g_E, g_I: total excitatory/inhibitory conductance [nS], ``(n_steps,)``.
    """

    v: jax.Array | None
    spikes: jax.Array
    g_E: jax.Array | None
    g_I: jax.Array | None


def cond_lif_init(params: CondLIFParams) -> CondLIFState:
    """Initial state: ``v = V_init``, not refractory, ``g_E = g_I = 0``."""
    neuron = lif_init(params.neuron)
    zero = jnp.zeros_like(neuron.v)
    return CondLIFState(neuron, zero, zero)


def cond_lif_step(params: CondLIFParams, state: CondLIFState, inputs, dt: float, *,
                  spike_grad: Surrogate | None = None):
    """One step of the conductance LIF (steps 1-3 of docs/conventions.md 4.2).

    Args:
        params: :class:`CondLIFParams`.  state: :class:`CondLIFState` at ``it``.
        inputs: ``(n_E, n_I, I_inj)``: excitatory and inhibitory spike counts at ``it+1``
            (summed over trains) and the injected current at ``it`` [pA].
        dt: time step [ms].
        spike_grad: ``None`` or a :class:`jaxlif.surrogates.Surrogate` (see :func:`lif_step`).

    Returns:
        ``(state_at_it+1, (v_it, spike_it, g_E_it+1, g_I_it+1))``.
    """
    n_E, n_I, I_inj = inputs
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
    return jnp.broadcast_to(jnp.asarray(I_inj, dtype=jnp.result_type(float)), (steps,))


def simulate_cond_lif(params: CondLIFParams, n_E: jax.Array, n_I: jax.Array, I_inj=0.0, *,
                      dt: float, spiking: bool = True, spike_grad: Surrogate | None = None,
                      checkpoint: bool | int | None = None) -> CondLIFResult:
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

    Returns:
        :class:`CondLIFResult` with every trace of shape ``(n_steps,)`` (NaN traces and an all-``True``
        raster for invalid traced values).
    """
    dt = _checks.check_dt(dt)
    params = _single_neuron(params, CondLIFParams, "simulate_cond_lif", "simulate_cond_lif_batch")
    check_cond_lif_params(params, dt)
    checkpoint = _run_options(spike_grad, checkpoint, params.neuron)
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
    return _simulate_cond_lif(params, jnp.asarray(n_E), jnp.asarray(n_I), I, dt, bool(spiking),
                              spike_grad, checkpoint)


def _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt):
    """Shared validation of the Poisson-driven simulators; returns ``(dt, n_steps, I_inj array)``."""
    dt = _checks.check_dt(dt)
    steps = _n_steps(T, dt)
    _checks.check_key(key)
    _checks.check_rate("rate_E", rate_E, dt)
    _checks.check_rate("rate_I", rate_I, dt)
    _checks.check_count("n_E", n_E)
    _checks.check_count("n_I", n_I)
    return dt, steps, _current_array(I_inj, steps)


def _no_threshold(params, spiking: bool):
    """Remove the threshold (``V_th = +inf``) of any params with a ``.neuron`` field when not spiking."""
    return params if spiking else params._replace(neuron=params.neuron._replace(V_th=jnp.inf))


@jax.jit(static_argnums=(4, 5, 6, 7))
def _simulate_cond_lif(params, n_E, n_I, I, dt, spiking, spike_grad, checkpoint):
    dtype = jnp.result_type(float)
    n_E, n_I = n_E.astype(dtype), n_I.astype(dtype)
    ok = (traced_cond_lif_ok(params, dt) & _checks.traced_rule("n_E", n_E, "nonneg")
          & _checks.traced_rule("n_I", n_I, "nonneg") & _checks.traced_rule("I_inj", I, "finite"))
    params = _no_threshold(params, spiking)
    xs = (n_E[1:], n_I[1:], I[:-1])
    step = lambda st, x: cond_lif_step(params, st, x, dt, spike_grad=spike_grad)
    state, (v_seq, spike_seq, gE_seq, gI_seq) = _scan.scan(step, cond_lif_init(params), xs,
                                                           n_E.shape[0] - 1, checkpoint)
    v, spikes = _finish(v_seq, spike_seq, state.neuron.v)
    zero = jnp.zeros((1,), dtype)
    result = CondLIFResult(v, spikes, jnp.concatenate([zero, gE_seq]), jnp.concatenate([zero, gI_seq]))
    return _checks.poison(ok, result)


def simulate_cond_lif_poisson(key: jax.Array, params: CondLIFParams = CondLIFParams(), *,
                              rate_E: float = 10.0, rate_I: float = 10.0, n_E: int = 80,
                              n_I: int = 20, I_inj=0.0, T: float = 1000.0, dt: float = 0.1,
                              spiking: bool = True, record: bool = True,
                              spike_grad: Surrogate | None = None,
                              checkpoint: bool | int | None = None) -> CondLIFResult:
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

    Invalid traced values (a negative rate, ``rate * dt / 1000 > 1``, ``tau_syn < dt``, NaN, ...) poison
    the outputs (NaN, all-``True`` raster); a rate of ``-0.0`` is 0.
    """
    dt, steps, I = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt)
    params = _single_neuron(params, CondLIFParams, "simulate_cond_lif_poisson", "simulate_cond_lif_batch")
    _scalar_rates("simulate_cond_lif_poisson", rate_E=rate_E, rate_I=rate_I)
    check_cond_lif_params(params, dt)
    checkpoint = _run_options(spike_grad, checkpoint, params.neuron)
    return _simulate_cond_lif_poisson(key, params, rate_E, rate_I, I, n_E, n_I, steps, dt,
                                      bool(spiking), bool(record), spike_grad, checkpoint)


def _poisson_scan(step, state0, draw_E, draw_I, I, steps: int, record: bool, checkpoint=None):
    """Scan ``step(state, (x_E, x_I, I[it])) -> (state, (v, spike, g_E, g_I, ...))`` with the inputs of
    step ``it+1`` drawn on the fly as ``draw_E(it+1)``, ``draw_I(it+1)`` (optionally checkpointed).

    Returns the result fields ``(v, spikes, g_E, g_I)`` with time last (all but ``spikes`` ``None``
    unless ``record``).
    """
    def body(state, x):
        k, i_inj = x
        state, out = step(state, (draw_E(k + 1), draw_I(k + 1), i_inj))
        return state, (out[:4] if record else out[1])

    state, out = _scan.scan(body, state0, (jnp.arange(steps - 1), I[:-1]), steps - 1, checkpoint)
    if not record:
        return None, jnp.concatenate([out, jnp.zeros((1,), out.dtype)]), None, None
    v, spikes = _finish(out[0], out[1], state.neuron.v)
    zero = jnp.zeros((1,), v.dtype)
    return v, spikes, jnp.concatenate([zero, out[2]]), jnp.concatenate([zero, out[3]])


def traced_cond_lif_ok(params: CondLIFParams, dt: float) -> jax.Array:
    """Inside a jitted core: are the (possibly traced) :class:`CondLIFParams` valid?  Emits one
    ``checkify.debug_check`` per field (raised by :func:`jaxlif.checked`); see :mod:`jaxlif._checks`."""
    return (_checks.traced_params("params.neuron", params.neuron, dt, _checks.LIF_RULES)
            & _checks.traced_params("params.exc", params.exc, dt, _checks.SYN_RULES)
            & _checks.traced_params("params.inh", params.inh, dt, _checks.SYN_RULES))


@jax.jit(static_argnums=(5, 6, 7, 8, 9, 10, 11, 12))
def _simulate_cond_lif_poisson(key, params, rate_E, rate_I, I, n_E, n_I, steps, dt, spiking, record,
                               spike_grad, checkpoint):
    ok = (traced_cond_lif_ok(params, dt) & _checks.traced_rule("rate_E", rate_E, "rate", dt)
          & _checks.traced_rule("rate_I", rate_I, "rate", dt) & _checks.traced_rule("I_inj", I, "finite"))
    params = _no_threshold(params, spiking)
    key_E, key_I = jax.random.split(key)
    tail_E = _binomial_tail(_p_spike(rate_E, dt), n_E)   # once per run, not per step
    tail_I = _binomial_tail(_p_spike(rate_I, dt), n_I)
    step = lambda state, x: cond_lif_step(params, state, x, dt, spike_grad=spike_grad)
    result = CondLIFResult(*_poisson_scan(step, cond_lif_init(params),
                                          lambda k: binomial_count(key_E, k, tail_E),
                                          lambda k: binomial_count(key_I, k, tail_I), I, steps, record,
                                          checkpoint))
    return _checks.poison(ok, result)
