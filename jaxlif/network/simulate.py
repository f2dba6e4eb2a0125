r"""Simulating a network over time: :func:`simulate_network` (one ``lax.scan`` of
:func:`~jaxlif.network.network_step`), with given inputs, an external Poisson drive, optional
recording, surrogate gradients and checks that survive tracing.

The scheme, the delivery latency (a spike of step ``k`` with delay ``d`` reaches the postsynaptic
conductance at sample ``k + d``) and the plasticity conventions are in :mod:`jaxlif.network.step`.
Results are per population (``{name: array}``), time last.  Units: ms, mV, nS, pA, Hz.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxlif import _checks, _executables, _stability
from jaxlif._host import device_array
from jaxlif.grid import n_steps as _n_steps
from jaxlif.network import gradients
from jaxlif.network import window as window_mod
from jaxlif.network.params import NetworkParams, NetworkStructure, combine, partition
from jaxlif.network.step import (NetworkState, SynapseState, drive_draw, drive_table, network_init, network_step,
                                 per_neuron)
from jaxlif.network.structure import RECEPTOR_RULES, DenseProjection, Network, check_network
from jaxlif.neurons import check_integrator
from jaxlif.surrogates import Surrogate

__all__ = ["NetworkInput", "NetworkResult", "drive_counts", "simulate_network", "traced_network_ok",
           "DELIVERY_METHODS"]

DELIVERY_METHODS = ("event", "full")


class NetworkInput(NamedTuple):
    """Given external input of one population (any field may be ``None``), time last.

    Attributes:
        g_E, g_I: conductance [nS] added at each sample, ``(size, n_steps)`` (index 0 is never seen,
            as for every input train).
        I_inj: injected current [pA]: scalar, ``(size,)`` or ``(size, n_steps)``.
    """

    g_E: Optional[jax.Array] = None
    g_I: Optional[jax.Array] = None
    I_inj: Optional[jax.Array] = None


class NetworkResult(NamedTuple):
    """Output of :func:`simulate_network`: ``{population name: (size, n_steps) array}``, time last.

    Attributes:
        spikes: raster (bool; float 0/1 that carries the surrogate derivative with ``spike_grad``).
        v: membrane potential [mV] (``None`` without ``record``).
        g_E, g_I: conductances [nS] (``None`` without ``record``).
        stp: per projection, :class:`SynapseState` of ``(n_pre, n_steps)`` traces for ``stp_mode="pre"``
            (``u, R`` after the spike of the previous step was processed), else ``None`` (also without
            ``record``).
        state: the final :class:`NetworkState` (continue with ``simulate_network(..., state=result.state)``).
        spike_offset: ``None`` with ``integrator="euler"``; with ``"exp_euler"`` ``{name: (size, n_steps)}``, the
            time of each spike after its sample [ms] in ``[0, dt)`` (a spike at index ``k`` happened at
            ``k dt + spike_offset[k]``; 0 where no spike), also without ``record``.
        statistics: ``None``, or ``{label: value}`` for the ``statistics`` argument of
            :func:`simulate_network`.
    """

    spikes: dict
    v: Optional[dict]
    g_E: Optional[dict]
    g_I: Optional[dict]
    stp: Optional[tuple]
    state: NetworkState
    spike_offset: Optional[dict] = None
    statistics: Optional[dict] = None


def drive_counts(key: jax.Array, net: Network | NetworkStructure, params: NetworkParams | None = None, *,
                 T: float, dt: float) -> dict:
    """The Poisson drive counts :func:`simulate_network` draws with ``key`` from step 0: ``{name: (size, n_steps)}``.

    Step ``k`` draws one ``drive_uniform(key, k, n)`` for the stacked neurons of all populations
    (:func:`jaxlif.network.step.drive_draw`); populations without a drive get zeros.  The count at
    index 0 is never used (input is read one step ahead).
    """
    dt = _checks.check_dt(dt)
    steps = _n_steps(T, dt)
    _checks.check_key(key)
    structure, params = _split_network(net, params, dt)
    return _drive_counts(key, structure, params, steps, dt)


@jax.jit(static_argnums=(3, 4))
def _drive_counts(key, structure, params, steps, dt):
    net = combine(structure, params)
    table = drive_table(net, dt)
    if table is None:
        counts = jnp.zeros((net.size, steps), jnp.result_type(float))
    else:
        counts = jax.vmap(lambda k: drive_draw(table, key, k), out_axes=1)(jnp.arange(steps))
    return _split(net, counts)


def _split_network(net, params, dt: float) -> tuple[NetworkStructure, NetworkParams]:
    """Validate ``net`` (a :class:`Network`, or a :class:`NetworkStructure` with its ``params``) and return
    it partitioned, every value an array of the default float type (one program for all values)."""
    if isinstance(net, NetworkStructure):
        if params is None:
            raise TypeError("params is required with a NetworkStructure: simulate_network(key, structure, params, ...) "
                            "with (structure, params) = jaxlif.network.partition(net)")
        net = combine(net, params)
    elif params is not None:
        raise TypeError(f"params must be None when net is a Network (it holds its values); got "
                        f"{type(params).__name__}.  Pass partition(net)'s structure with params instead")
    check_network(net, dt)
    return partition(net)


def _split(net: Network, x):
    """``(n, ...)`` stacked neurons -> ``{name: (size, ...)}``."""
    offsets = net.offsets
    return {p.name: x[offsets[p.name]:offsets[p.name] + p.size] for p in net.populations}


# ----------------------------------------------------------------------------------------------
# Checks that survive tracing
# ----------------------------------------------------------------------------------------------


def _traced_range(label: str, value, low: int, high: int) -> jax.Array:
    """Integers within ``[low, high]`` (a traced connectivity); raised by :func:`jaxlif.checked`."""
    x = jnp.asarray(value)
    ok = jnp.all((x >= low) & (x <= high))
    checkify.debug_check(ok, f"{label} has values outside [{low}, {high}] (e.g. {{value}})",
                         value=jnp.where(ok, x.ravel()[0], x.ravel()[jnp.argmax(((x < low) | (x > high)).ravel())]))
    return ok


def traced_network_ok(net: Network, dt: float) -> jax.Array:
    """Inside a jitted core: are the (possibly traced) values of ``net`` valid?  The same ranges as
    :func:`jaxlif.network.check_network`, one ``checkify.debug_check`` per field (see :mod:`jaxlif._checks`)."""
    flags = []
    for pop in net.populations:
        label = f"populations[{pop.name!r}]"
        flags.append(_checks.traced_params(f"{label}.neuron", pop.neuron, dt, _checks.LIF_RULES))
        flags.append(_checks.traced_params(f"{label}.exc", pop.exc, dt, RECEPTOR_RULES))
        flags.append(_checks.traced_params(f"{label}.inh", pop.inh, dt, RECEPTOR_RULES))
        if pop.drive is not None:
            flags.append(_checks.traced_rule(f"{label}.drive.rate", pop.drive.rate, "rate", dt))
            flags.append(_checks.traced_rule(f"{label}.drive.weight", pop.drive.weight, "nonneg"))
    for i, proj in enumerate(net.projections):
        label = f"projections[{i}] ({proj.pre}->{proj.post})"
        flags.append(_checks.traced_rule(f"{label}.weights", proj.weights, "nonneg"))
        if proj.stp is not None:
            flags.append(_checks.traced_params(f"{label}.stp", proj.stp, dt, _checks.STP_RULES))
        if not isinstance(proj, DenseProjection):
            flags.append(_traced_range(f"{label}.targets", proj.targets, 0, proj.n_post))
            lo = max(1, proj.min_delay)           # a declared bound holds for the synapses, not the padding
            flags.append(_traced_range(f"{label}.delays", jnp.where(jnp.asarray(proj.targets) < proj.n_post,
                                                                    proj.delays, lo), lo, proj.max_delay))
    return _all(flags)


def _all(flags: list) -> jax.Array:
    """``and`` of scalar flags."""
    return jnp.all(jnp.stack([jnp.asarray(f) for f in flags] + [jnp.asarray(True)]))


# ----------------------------------------------------------------------------------------------
# The simulator
# ----------------------------------------------------------------------------------------------


def _given_inputs(net: Network, inputs, steps: int, integrator: str = "euler"):
    """Validate ``inputs``; return ``((g_E, g_I, I), (g_E0, g_I0)), I_const``: the stacked ``(g_E, g_I, I)`` as
    time-major ``(n_steps - 1, n)`` sequences (``None`` where nobody gave one; ``I`` may instead be the
    constant ``I_const`` ``(n,)``) and, with ``integrator="exp_euler"``, the conductances given at index 0
    ``(n,)`` (else ``None``)."""
    inputs = {} if inputs is None else inputs
    if not isinstance(inputs, dict):
        raise TypeError(f"inputs must be a dict {{population name: NetworkInput}}, got {type(inputs).__name__}")
    unknown = sorted(set(inputs) - set(net.sizes))
    if unknown:
        raise ValueError(f"inputs has entries {unknown} that are not populations; have {list(net.sizes)}")
    given = {}
    for pop in net.populations:
        value = inputs.get(pop.name) or NetworkInput()
        if not isinstance(value, NetworkInput):
            raise TypeError(f"inputs[{pop.name!r}] must be a jaxlif.network.NetworkInput, got {type(value).__name__}")
        label, n = f"inputs[{pop.name!r}]", pop.size
        for field, unit, shapes in (("g_E", "nS", [(n, steps)]), ("g_I", "nS", [(n, steps)]),
                                    ("I_inj", "pA", [(), (n,), (n, steps)])):
            x = getattr(value, field)
            if x is None:
                continue
            if np.shape(x) not in shapes:
                raise ValueError(f"{label}.{field} must have shape {' or '.join(map(str, shapes))} [{unit}] "
                                 f"(n = {n} neurons, n_steps = {steps}), got {np.shape(x)}")
            _checks.check_finite(f"{label}.{field}", x, unit)
        given[pop.name] = value
    dtype = jnp.result_type(float)

    # host values (NumPy, Python numbers) are stacked in NumPy and transferred: the same values, without the
    # one-operation programs (conversions, broadcasts, concatenation, slice, transpose) that jnp compiles per shape
    on_host = not any(isinstance(getattr(v, f), jax.Array) for v in given.values() for f in ("g_E", "g_I", "I_inj"))
    xp = np if on_host else jnp

    def stacked(field, time_index, default_full):
        parts = [getattr(given[p.name], field) for p in net.populations]
        if all(x is None or np.ndim(x) < 2 for x in parts) and not default_full:
            return None
        cols = [xp.broadcast_to(xp.asarray(0.0 if x is None else x, dtype)[..., None] if np.ndim(x) < 2
                                else xp.asarray(x, dtype), (p.size, steps))
                for x, p in zip(parts, net.populations)]
        return xp.concatenate(cols)[:, time_index].T

    g_E = stacked("g_E", slice(1, None), False)          # arriving at it+1
    g_I = stacked("g_I", slice(1, None), False)
    I_seq = stacked("I_inj", slice(None, -1), False)     # at it
    I_const = None if I_seq is not None else xp.concatenate(
        [xp.broadcast_to(xp.asarray(0.0 if given[p.name].I_inj is None else given[p.name].I_inj, dtype), (p.size,))
         for p in net.populations])
    first = (None, None)                                 # index 0: seen only under exp_euler
    if integrator == "exp_euler":
        first = tuple(None if x is None else x[0] for x in (stacked("g_E", slice(0, 1), False),
                                                            stacked("g_I", slice(0, 1), False)))
    out = (((g_E, g_I, I_seq), first), I_const)
    return jax.tree.map(lambda a: device_array(a, dtype), out) if on_host else out


def _check_state(net: Network, state, dtype) -> None:
    if not isinstance(state, NetworkState):
        raise TypeError(f"state must be a jaxlif.network.NetworkState (e.g. a result's .state), got "
                        f"{type(state).__name__}")
    want = jax.eval_shape(lambda: network_init(net, dtype))     # shapes only: traced, nothing compiled
    if jax.tree.structure(state) != jax.tree.structure(want) or any(
            np.shape(a) != np.shape(b) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(want))):
        raise ValueError("state does not fit this network (different populations, projections, sizes or "
                         "delays); start from network_init(net) or the final state of a run of the same network")


def simulate_network(key: jax.Array | None, net: Network | NetworkStructure, params: NetworkParams | None = None, *,
                     T: float, dt: float, inputs: dict | None = None,
                     state: NetworkState | None = None, spike_grad: Surrogate | None = None,
                     record: bool = True,
                     delivery: str = "event", capacity: int = 4, grad_estimator: str | None = None,
                     recurrent_grad: bool | None = None, integrator: str = "euler",
                     replay: dict | None = None, statistics: dict | None = None) -> NetworkResult:
    """Simulate a network for ``T`` ms (``n_steps = len(arange(0, T, dt))`` samples) in one ``lax.scan``.

    Equivalent Python loop (:mod:`jaxlif.network.step` gives the scheme and the delivery latency)::

        state = network_init(net)
        for it in range(n_steps - 1):
            ext = (drive counts at it+1 times their weight [nS], plus the given g_E, g_I at it+1; I_inj at it)
            state, (v[it], spikes[it], g_E[it+1], g_I[it+1]) = network_step(net, state, ext, dt)

    (with ``integrator="exp_euler"``: first ``g_E, g_I += the inputs of index 0`` when the run starts at
    sample 0, and each step also returns ``spike_offset[it]``).

    Args:
        key: ``jax.random`` key of the Poisson drive (may be ``None`` when no population has one);
            :func:`drive_counts` returns the counts it draws.
        net: :class:`~jaxlif.network.Network`, or the :class:`~jaxlif.network.NetworkStructure` of
            :func:`jaxlif.network.partition` (then ``params`` holds the values).  Its numbers may be
            traced (``vmap`` or ``grad`` over weights, drive, neuron or plasticity parameters, even
            connectivity of equal shapes).  One compiled program serves every value and every
            connectivity of the same shapes.
        params: the :class:`~jaxlif.network.NetworkParams` of ``net`` when it is a structure, else ``None``.
        T, dt: duration and time step [ms].
        inputs: optional ``{name: NetworkInput}`` of given conductances and currents.
        state: initial :class:`NetworkState` (default: rest, :func:`network_init`).  The final state of
            a run continues it: its step counter keeps the drive's keys and the pending input aligned.
        spike_grad: ``None`` (exact threshold) or a :class:`jaxlif.surrogates.Surrogate`: spikes are then
            float 0/1 carrying the surrogate derivative through the reset and every synapse.
        record: ``False`` keeps only the spike rasters (``v, g_E, g_I, stp`` are ``None``).
        delivery: ``"event"`` (work per spike; default) or ``"full"`` (work per synapse); same values,
            same gradients (:mod:`jaxlif.network.delivery`).
        capacity: presynaptic neurons per chunk of the event method (more spikes in one step take
            several chunks; none is dropped).
        grad_estimator: with ``spike_grad``, how derivatives cross the recurrent synapses (see
            "Gradients"): ``"mean_field"`` (default), ``"local"`` or ``"full"``.
        recurrent_grad: the older form of ``grad_estimator``: ``True`` is ``"full"``, ``False`` ``"local"``.
        integrator: ``"euler"`` (the tutorial's forward Euler, the default, unchanged) or ``"exp_euler"``
            (exponential Euler with each population's conductances held at their exact mean over the step,
            spike times found within the step and the reset applied there; :mod:`jaxlif.network.step`,
            docs/conventions.md section 10 and docs/networks.md "Integrators").  Under ``"exp_euler"`` a spike
            of step ``k`` (in ``[t_k, t_k + dt)``, at ``k dt + spike_offset``) with delay ``d`` enters its targets'
            conductances at ``t_(k+d)``; a run from sample 0 sees the inputs of index 0; ``spike_offset`` is
            returned.  It works with every delivery, the windowed (min-delay) scheme, plasticity,
            ``spike_grad`` and every ``grad_estimator``.
        replay: ``None``, or ``{name: (size, n_steps) raster}`` (0/1) for every population: the projections deliver
            these spikes (index ``k`` as the spikes of step ``k``; the last is never delivered), and their
            plasticity follows them, instead of the network's own: an open-loop run in which every neuron
            still integrates its inputs, spikes and resets.  Replaying a run's own rasters with the same key
            reproduces it; a finite difference of such replays is the network's response with the
            recurrent input held fixed (what the mean-field estimator calibrates its surrogate
            derivatives with, :mod:`jaxlif.network.gradients`).  No derivative flows through the rasters
            (with ``spike_grad`` the derivative is the local one, whatever ``grad_estimator``).
        statistics: ``None``, or ``{label: (population, fn)}``: statistics of the rasters returned in
            ``result.statistics[label] = fn(raster)``, ``raster`` the population's ``(size, n_steps)`` spikes as
            floats 0/1 (for example ``lambda s: jnp.nanmean(jaxlif.soft_isi_cv(s))``), ``fn`` returning a float
            array.  Under ``"mean_field"`` each gets the derivative "through the rate": its open-loop change
            per unit change of the population's rate, from the two replays the estimator runs anyway (no
            extra simulation), times the closed-loop derivative of that rate
            (:mod:`jaxlif.network.gradients`, "Statistics through the rate").  For a spike-timing statistic such
            as the mean ISI CV, whose derivative taken through the surrogate rasters is tens to hundreds of
            times too large; it assumes that the statistic moves with the rate as it does with the recurrent
            input held fixed (measured: within 2.2x at 1 s on four networks, not at 10 s on the smallest;
            docs/networks.md); :func:`jaxlif.network.rate_slopes` checks that assumption on your network
            and warns where it fails.  A triple ``(population, fn, slopes)`` with closed-loop slopes
            ``{population: dy/dr [per Hz]}`` (:func:`jaxlif.network.closed_loop_slopes`, ``.attach``) gives
            ``dy = sum_b slopes[b] dr_b`` instead, through every population's rate (a population left out of
            ``slopes`` counts as 0; ``fn`` must then return a scalar; values may be traced: new slopes compile
            nothing, but traced values are not checked, and a NaN slope gives NaN derivatives; ``"mean_field"``
            only).  Under the other estimators, or without ``spike_grad``,
            ``fn`` is simply applied to the rasters (its derivative is the rasters').  A poisoned run gives
            NaN.  Pass the same function objects from call to call: a new function compiles a new program.

    Returns:
        :class:`NetworkResult`.  Under ``"euler"`` a run in which the membrane step left forward Euler's
        stable range (``dt (g_L + g_E + g_I) / C > 1`` for some neuron at some step; :mod:`jaxlif._stability`)
        is poisoned as a whole, with an :class:`~jaxlif._stability.EulerUnstableWarning` when the result is
        concrete (a ``ValueError`` under :func:`jaxlif.checked`).  An invalid traced value poisons it (NaN,
        all-``True`` rasters, step -1; under ``vmap`` only the invalid elements); under
        :func:`jaxlif.checked` an unbatched call raises a ``ValueError`` naming the field instead (``checkify`` cannot enter the event method's loop inside
        a ``vmap``: check one element, or use ``delivery="full"`` there).

    Gradients: with ``spike_grad`` the derivative of a rate is the surrogate's (a biased estimate,
    useful to follow downhill); without it spikes have zero derivative and only subthreshold
    quantities have exact gradients.  Carried through every synapse at every step (``"full"``) the
    surrogate derivative of a strongly coupled (chaotic) network grows exponentially, to NaN within a
    second.  ``"local"`` delivers spikes without derivative: finite, but the open-loop response of
    each neuron, many times the network's in a balanced network.  ``"mean_field"`` (the default) calibrates
    the local derivatives of each population by an open-loop finite difference (its own run replayed,
    ``replay``) and adds the network's feedback back at the level of population rates
    (:mod:`jaxlif.network.gradients`): finite at any duration, and it warns where its linearisation is
    unstable; measured against finite differences over 64 keys (BENCHMARKS.md, "Recurrent gradients") on
    three E/I networks at 1 s and 10 s it has the right sign and is 1.20-2.08x for every resolved derivative
    of the rates with respect to the drive, E->E and I->E weights and E->E U0 (each population's local
    derivatives calibrated separately for its excitatory and inhibitory inputs).  Pass spike-timing statistics such as the ISI CV as ``statistics``: their derivative taken through
    the surrogate rasters is tens to hundreds of times too large.  Check it on your network
    (experiments/grad_network.py).  The Poisson drive is not reparameterised: its ``rate`` gets no
    gradient (fit its ``weight`` or a weight scale instead).
    """
    if delivery not in DELIVERY_METHODS:
        raise ValueError(f"delivery={delivery!r} must be one of {list(DELIVERY_METHODS)}")
    if spike_grad is not None:
        from jaxlif.surrogates import Surrogate
        if not isinstance(spike_grad, Surrogate):
            raise TypeError(f"spike_grad must be None or a jaxlif.surrogates.Surrogate, got {type(spike_grad).__name__}")
    key, dt, steps, structure, params, net, capacity, integrator, seqs, I_const = _checked_run(
        key, net, params, T, dt, inputs, state, capacity, integrator)
    estimator = _check_estimator(grad_estimator, recurrent_grad, spike_grad)
    replay = _replayed(net, replay, steps)
    given, statistics = statistics, _check_statistics(statistics, net)
    closed = _closed_slopes(given, net) if statistics else {}
    if replay is not None and estimator == "mean_field":
        estimator = "local"                      # no recurrent spikes to carry a derivative
    if closed and spike_grad is not None and estimator != "mean_field":
        raise ValueError(f"statistics {sorted(closed)} carry closed-loop slopes, which only "
                         f"grad_estimator='mean_field' uses (without replay); here the estimator is {estimator!r}")
    window = window_mod.window_length(net, spike_grad=spike_grad, delivery=delivery) if steps > 1 else 0
    statics = (steps, dt, spike_grad, bool(record), delivery, capacity, window, integrator)
    # through jaxlif._executables: where the compilation cache is on (the command line, the experiments,
    # jaxlif._cache.enable), a second process loads the stored executable instead of tracing and lowering
    typed = jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key)
    impl = str(jax.random.key_impl(key)) if typed else None
    result = _executables.call(_simulate, "jaxlif.network.simulate._simulate",
                               (jax.random.key_data(key) if typed else key, structure, (params, seqs, I_const, state),
                                replay, closed),
                               dict(names=tuple(net.sizes), statics=statics, estimator=estimator,
                                    recurrent_grad=estimator != "local", key_impl=impl, statistics=statistics))
    return _stability.warn_if_poisoned(result, "simulate_network")


def _checked_run(key, net, params, T, dt, inputs, state, capacity, integrator):
    """The checks before tracing that :func:`simulate_network` and
    :func:`jaxlif.network.simulate_network_sharded` share; returns ``(key, dt, n_steps, structure, params,
    net, capacity, integrator, seqs, I_const)`` (``key``: a stand-in where no population has a drive and
    none was given; ``seqs, I_const``: :func:`_given_inputs`)."""
    dt = _checks.check_dt(dt)
    steps = _n_steps(T, dt)
    structure, params = _split_network(net, params, dt)
    net = combine(structure, params)
    if any(p.drive is not None for p in net.populations):
        _checks.check_key(key)
    elif key is None:
        key = jax.random.key(0)                                   # unused
    capacity = _checks.check_count("capacity", capacity, minimum=1)
    integrator = check_integrator(integrator)
    seqs, I_const = _given_inputs(net, inputs, steps, integrator)
    if state is not None:
        _check_state(net, state, jnp.result_type(float))
    return key, dt, steps, structure, params, net, capacity, integrator, seqs, I_const


def _replayed(net: Network, replay, steps: int):
    """Validate ``replay``; return the stacked spikes to deliver at steps ``0 .. n_steps-2``, time-major
    ``(n_steps - 1, n)`` of the default float type, or ``None``."""
    if replay is None:
        return None
    if not isinstance(replay, dict) or set(replay) != set(net.sizes):
        raise ValueError(f"replay must be a dict with a raster for every population {list(net.sizes)}, got "
                         f"{sorted(replay) if isinstance(replay, dict) else type(replay).__name__}")
    for pop in net.populations:
        if np.shape(replay[pop.name]) != (pop.size, steps):
            raise ValueError(f"replay[{pop.name!r}] must have shape {(pop.size, steps)} (size, n_steps), got "
                             f"{np.shape(replay[pop.name])}")
    return _stack_replay(replay, tuple(net.sizes))


def _stack_replay(rasters: dict, names: tuple) -> jax.Array:
    """``{name: (size, n_steps)}`` rasters -> the stacked spikes delivered at steps ``0 .. n_steps-2``,
    time-major ``(n_steps - 1, n)`` of the default float type."""
    return jnp.concatenate([jnp.asarray(rasters[name], jnp.result_type(float)) for name in names])[:, :-1].T


def _scale_receptor(structure: NetworkStructure, diff, s, receptor: str = "exc"):
    """``diff = (params, seqs, I_const, state0)`` with every conductance input onto ``receptor`` (``"exc"`` or
    ``"inh"``) multiplied by ``s``: the weights of the projections onto that receptor, the weights of the drives
    onto it and the given ``g_E`` (or ``g_I``) (the reference directions of the estimator's calibration).  ``s``
    is a scalar, or ``(P,)``, one scale per target population in the network's order (the directions of
    :func:`jaxlif.network.closed_loop_slopes`)."""
    params, (seqs, seqs0), I_const, state0 = diff
    j = ("exc", "inh").index(receptor)
    index = {p.name: i for i, p in enumerate(structure.populations)}
    of = (lambda name: s) if jnp.ndim(s) == 0 else (lambda name: s[index[name]])
    pops = {p.name: params.populations[p.name]._replace(drive=params.populations[p.name].drive._replace(
                weight=params.populations[p.name].drive.weight * of(p.name)))
            if p.drive_receptor == receptor else params.populations[p.name] for p in structure.populations}
    projs = {q.key: params.projections[q.key]._replace(weights=params.projections[q.key].weights * of(q.post))
             if q.receptor == receptor else params.projections[q.key] for q in structure.projections}
    per_neuron = s if jnp.ndim(s) == 0 else jnp.concatenate(
        [jnp.full((p.size,), s[i], jnp.result_type(s)) for i, p in enumerate(structure.populations)])
    scale = (lambda g: None if g is None else g * per_neuron)
    seqs = tuple(scale(g) if i == j else g for i, g in enumerate(seqs))
    seqs0 = tuple(scale(g) if i == j else g for i, g in enumerate(seqs0))
    return params._replace(populations=pops, projections=projs), (seqs, seqs0), I_const, state0


def _check_estimator(grad_estimator, recurrent_grad, spike_grad) -> str:
    """The estimator to use: ``grad_estimator``, or the old ``recurrent_grad`` flag (True: "full",
    False: "local"), or "mean_field" by default; without ``spike_grad`` "full" (spikes have no
    derivative, so there is nothing to estimate and the plain program runs)."""
    if recurrent_grad is not None:
        if grad_estimator is not None:
            raise ValueError("give grad_estimator or recurrent_grad (its older form), not both")
        if not isinstance(recurrent_grad, (bool, np.bool_)):
            raise TypeError(f"recurrent_grad must be True or False, got {recurrent_grad!r}")
        grad_estimator = "full" if recurrent_grad else "local"
    if grad_estimator is None:
        grad_estimator = "mean_field"
    if grad_estimator not in gradients.GRAD_ESTIMATORS:
        raise ValueError(f"grad_estimator={grad_estimator!r} must be one of {list(gradients.GRAD_ESTIMATORS)}")
    return grad_estimator if spike_grad is not None else "full"


def _time_last(first, seq, last=None):
    """``(n_steps - 1, n)`` scanned values plus the first or the last sample -> ``(n, n_steps)``."""
    parts = [seq, last[None]] if first is None else [first[None], seq]
    return jnp.concatenate(parts, axis=0).T


def _split_time_last(net: Network, first, seq, last=None) -> dict:
    """:func:`_time_last` per population: ``{name: (size, n_steps)}``.  Each population's columns are cut from
    the time-major ``seq`` before it is transposed (cutting rows from the transposed whole made XLA:CPU
    transpose element by element, several times slower: see :func:`_result`)."""
    cut = (lambda x, a, b: None if x is None else x[a:b])
    return {p.name: _time_last(cut(first, o, o + p.size), seq[:, o:o + p.size], cut(last, o, o + p.size))
            for p, o in ((p, net.offsets[p.name]) for p in net.populations)}


@jax.jit(static_argnums=(5, 6, 7, 8, 9, 10))
def _simulate(key, structure, diff, replay, closed, names, statics, estimator, recurrent_grad, key_impl=None,
              statistics=()):
    """The jitted simulation; ``diff = (params, seqs, I_const, state0)``, the differentiable inputs.
    ``key_impl``: the name of the key's implementation when ``key`` is passed as its raw data (so that
    :mod:`jaxlif._executables` can key and store the program), else ``None``; ``statistics``: the
    checked ``((label, population, fn), ...)`` (:func:`_check_statistics`); ``closed``: the closed-loop
    slopes of some of them (:func:`_closed_slopes`)."""
    if key_impl is not None:
        key = jax.random.wrap_key_data(key, impl=key_impl)
    if estimator == "mean_field":
        run = jax.jit(functools.partial(_run_fixed, statics=statics))   # traced once per signature: the
        # estimator calls it with the same shapes several times (jvp and vmap then work on its jaxpr)
        result, stats = gradients.mean_field(run, (key, structure), diff, names, functools.partial(
                                                 _scale_receptor, structure), statistics,
                                             sizes=tuple(p.size for p in structure.populations),
                                             closed=closed, to_hz=1000.0 / statics[1])
    else:
        result = _run(key, structure, diff, None, statics, recurrent_grad, replay)
        stats = gradients.statistics_of(result.spikes, statistics)
    if not statistics:
        return result
    return result._replace(statistics=_checks.poison(result.state.step >= 0, stats))


def _check_statistics(statistics, net: Network) -> tuple:
    """``statistics`` of :func:`simulate_network` -> ``((label, population, fn), ...)`` sorted by label (the
    closed-loop slopes of a triple are checked and returned by :func:`_closed_slopes`)."""
    if statistics is None:
        return ()
    if not isinstance(statistics, dict):
        raise TypeError(f"statistics must be None or a dict {{label: (population, fn)}}, got "
                        f"{type(statistics).__name__}")
    out = []
    for label, entry in statistics.items():
        if not isinstance(label, str):
            raise TypeError(f"statistics: every label must be a str, got {label!r}")
        if not (isinstance(entry, tuple) and len(entry) in (2, 3) and callable(entry[1])):
            raise TypeError(f"statistics[{label!r}] must be a (population, fn) pair with fn callable, or a "
                            f"(population, fn, slopes) triple, got {entry!r}")
        if entry[0] not in net.sizes:
            raise ValueError(f"statistics[{label!r}]: population {entry[0]!r} must be one of {list(net.sizes)}")
        out.append((label, entry[0], entry[1]))
    return tuple(sorted(out, key=lambda e: e[0]))


def _closed_slopes(statistics, net: Network) -> dict:
    """``{label: (P,) float array}``: the closed-loop slopes ``dy/dr_b`` [units of ``y`` per Hz] of the statistics
    given as ``(population, fn, slopes)`` triples, ``slopes`` a dict ``{population: slope}`` (a population left
    out: 0), in the network's population order (:func:`jaxlif.network.closed_loop_slopes`)."""
    out = {}
    for label, entry in ({} if statistics is None else statistics).items():
        if len(entry) != 3:
            continue
        slopes = entry[2]
        if not isinstance(slopes, dict) or not slopes:
            raise TypeError(f"statistics[{label!r}]: the slopes must be a non-empty dict {{population: dy/dr per Hz}} "
                            f"(jaxlif.network.closed_loop_slopes(...).slopes[{label!r}]), got {slopes!r}")
        unknown = sorted(set(slopes) - set(net.sizes))
        if unknown:
            raise ValueError(f"statistics[{label!r}]: slopes for {unknown}, which are not populations; have "
                             f"{list(net.sizes)}")
        values = []
        for name in net.sizes:
            x = slopes.get(name, 0.0)
            if jnp.ndim(x) != 0:
                raise ValueError(f"statistics[{label!r}]: the slope of {name!r} must be a scalar [per Hz], got shape "
                                 f"{jnp.shape(x)}")
            if not isinstance(x, jax.core.Tracer) and not np.isfinite(float(x)):
                raise ValueError(f"statistics[{label!r}]: the slope of {name!r} must be finite, got {float(x)}")
            values.append(x)
        dtype = jnp.result_type(float)
        traced = any(isinstance(x, jax.core.Tracer) for x in values)
        # host values are stacked in NumPy and transferred (no one-operation programs compiled per call)
        out[label] = (jnp.stack([jnp.asarray(x, dtype) for x in values]) if traced
                      else device_array([float(x) for x in values], dtype))
    return out


def _run_fixed(fixed, diff, feedback, replay=None, inh_gain=None, *, statics):
    """:func:`_run` with spikes delivered without derivative, the not-differentiated inputs in ``fixed``;
    ``replay``: a :class:`NetworkResult`'s rasters to deliver instead (``{name: (size, n_steps)}``);
    ``inh_gain``: :func:`jaxlif.network.network_step`'s."""
    replay = None if replay is None else _stack_replay(replay, tuple(fixed[1].sizes))
    return _run(*fixed, diff, feedback, statics, False, replay, inh_gain)


def _run(key, structure, diff, feedback, statics, recurrent_grad, replay=None, inh_gain=None):
    steps, dt, spike_grad, record, delivery, capacity, window, integrator = statics
    net, ok, state0, params, table, seqs, I_const = _run_start(key, structure, diff, dt, integrator)
    dtype = jnp.result_type(float)
    exp_euler = integrator == "exp_euler"

    def body(carry, x):
        state, valid, g_peak = carry
        x, sent = x
        g_E, g_I, I = (0.0 if v is None else v for v in x)
        I = I_const if x[2] is None else I
        if table is not None:
            counts = drive_draw(table, key, state.step + 1)
            g_E, g_I = g_E + table.weight_E * counts, g_I + table.weight_I * counts
        state, out = network_step(net, state, (g_E, g_I, I), dt, spike_grad=spike_grad, delivery=delivery,
                                  capacity=capacity, recurrent_grad=recurrent_grad, feedback=feedback,
                                  inh_gain=inh_gain, delivered=sent, params=params, integrator=integrator)
        if not exp_euler:       # the Euler membrane used g[it+1]: its largest sum (jaxlif._stability)
            g_peak = jnp.maximum(g_peak, out[2] + out[3])
        # carrying the flag through the loop makes XLA evaluate the validity test once; an invariant
        # flag would be fused, as a copy, into every poisoned output (much longer compilation)
        carry = (state, valid & (state.step > 0), g_peak)
        if not record:
            return carry, (None, out[1], None, None) + out[4:]
        stp = tuple(s if (s is not None and q.stp_mode == "pre") else None
                    for q, s in zip(net.projections, state.synapses))
        return carry, (out, stp)

    peak0 = jnp.zeros((net.size,), dtype)
    if window and feedback is None and replay is None and inh_gain is None:   # the min-delay scheme (jaxlif.network.window)
        (final, ok, g_peak), (out, stp) = window_mod.simulate_windows(
            net, state0, ok, seqs, I_const, key, table, params, dt, n_updates=steps - 1, length=window,
            capacity=capacity, record=record, integrator=integrator, g_peak=peak0, pack=True)
    else:
        (final, ok, g_peak), ys = jax.lax.scan(body, (state0, ok, peak0), (seqs, replay), length=steps - 1)
        out, stp = ys if record else (ys, None)
    return _result(net, state0, final, ok, g_peak, out, stp, params[0], dt, record, exp_euler)


def _run_start(key, structure, diff, dt: float, integrator: str):
    """Inside the jitted core (:func:`_run`, :func:`jaxlif.network.shard._sharded`): ``(net, ok, state0,
    params, table, seqs, I_const)``, the network, whether its values and the inputs are valid, the start
    state (under ``"exp_euler"`` with the inputs of index 0 added), the stacked per-neuron parameters
    (:func:`~jaxlif.network.per_neuron`), the drive's table and the given inputs, from ``diff = (params,
    (seqs, seqs0), I_const, state0)``."""
    params, (seqs, seqs0), I_const, state0 = diff
    net = combine(structure, params)
    ok = _run_ok(net, dt, seqs, seqs0, I_const)
    dtype = jnp.result_type(float)
    state0 = network_init(net, dtype) if state0 is None else state0
    table = drive_table(net, dt, dtype)
    if integrator == "exp_euler":
        state0 = _initial_inputs(state0, seqs0, table, key)
    return net, ok, state0, per_neuron(net, dtype), table, seqs, I_const


def _run_ok(net: Network, dt: float, seqs, seqs0, I_const) -> jax.Array:
    """Inside the jitted core: are the network's values and the given inputs valid (:func:`traced_network_ok`)?"""
    flags = [traced_network_ok(net, dt)] + [_checks.traced_rule(f"inputs.{label}", value, "finite") for label, value
                                            in zip(("g_E", "g_I", "I_inj", "g_E", "g_I"), seqs + (I_const,) + seqs0)
                                            if value is not None]
    return _all(flags)


def _result(net: Network, state0: NetworkState, final: NetworkState, ok, g_peak, out, stp, neuron, dt: float,
            record: bool, exp_euler: bool) -> NetworkResult:
    """The :class:`NetworkResult` of a run from ``state0`` to ``final`` with time-major per-step outputs
    ``out = (v, spikes, g_E, g_I[, offset])`` ``(n_steps - 1, n)`` and plasticity traces ``stp``; poisoned
    unless ``ok`` and (under ``"euler"``) the membrane step stayed in its stable range (running maximum
    ``g_peak`` of ``g_E + g_I``, ``neuron`` the stacked :class:`~jaxlif.LIFParams`).

    A boolean raster is made neuron-major inside a conditional on ``ok`` (all ``True`` if not), one
    population at a time: XLA:CPU then transposes it with its blocked transpose.  Transposed whole, cut into
    populations and passed through the poisoning select in one fused loop, it was transposed element by
    element: about 0.12 s of the 0.62 s that the 4000-neuron network of ``benchmarks/bench_network.py``
    took for 1 s.  Float outputs (traces, surrogate rasters) keep the select of :func:`jaxlif._checks.poison`,
    whose derivative is NaN where the run is invalid (a conditional's untaken branch would give zero)."""
    if not exp_euler:   # the tutorial's membrane step: poisoned where it left its stable range
        ok = ok & jnp.all(_stability.traced_euler_ok(neuron, g_peak, dt))
    v, spikes, g_E, g_I = out[:4]

    def raster(spikes):
        if isinstance(spikes, window_mod.PackedSpikes):     # neuron-major straight from the words
            return {p.name: spikes.neuron_major(net.offsets[p.name], net.offsets[p.name] + p.size,
                                                spikes.n_updates + 1) for p in net.populations}
        return _split_time_last(net, None, spikes, jnp.zeros_like(spikes[0]))

    packed = isinstance(spikes, window_mod.PackedSpikes)
    separate = (packed or spikes.dtype == jnp.bool_) and jnp.ndim(ok) == 0
    if separate:
        spikes = jax.lax.cond(ok, raster, lambda s: _checks.poison(jnp.asarray(False), raster(s)), spikes)
    else:
        spikes = raster(spikes)
    offset = (_split_time_last(net, None, out[4], jnp.zeros_like(out[4][0])),) if exp_euler else ()
    if not record:
        result = NetworkResult(None, None, None, None, None, final, *offset)
    else:
        traces = tuple(None if s is None else SynapseState(_time_last(s0.u, s.u), _time_last(s0.R, s.R))
                       for s0, s in zip(state0.synapses, stp))
        result = NetworkResult(None, _split_time_last(net, None, v, final.neuron.v),
                               _split_time_last(net, state0.g_E, g_E), _split_time_last(net, state0.g_I, g_I),
                               traces, final, *offset)
    if separate:
        return _checks.poison(ok, result)._replace(spikes=spikes)
    return _checks.poison(ok, result._replace(spikes=spikes))


def _initial_inputs(state0: NetworkState, seqs0, table, key) -> NetworkState:
    """``integrator="exp_euler"``: a run that starts at sample 0 (``state0.step == 0``) adds the inputs of
    index 0 (the drive's counts at step 0 and the given ``g_E, g_I`` at index 0) to the conductances, as an
    input at index ``k`` enters ``g`` at ``t_k`` (docs/conventions.md section 10).  A state that continues a
    run (``step > 0``) already holds the inputs of its sample."""
    add_E, add_I = (0.0 if g is None else g for g in seqs0)
    if table is not None:
        counts = drive_draw(table, key, jnp.zeros((), jnp.int32))
        add_E, add_I = add_E + table.weight_E * counts, add_I + table.weight_I * counts
    fresh = state0.step == 0
    return state0._replace(g_E=state0.g_E + jnp.where(fresh, add_E, 0.0),
                           g_I=state0.g_I + jnp.where(fresh, add_I, 0.0))
