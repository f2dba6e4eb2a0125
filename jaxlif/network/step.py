r"""One step of a network, its state, and the external Poisson drive.

The populations of a :class:`~jaxlif.network.Network` are stacked, in their order, into one vector
of ``n`` neurons (``net.offsets`` gives where each starts), so that one membrane update serves them
all.  For ``it = 0 .. n_steps-2`` (the tutorial's conductance LIF, docs/conventions.md 4.2, with the
input of step ``it+1`` made of the recurrent spikes that arrive then and the external drive):

1. every neuron: refractory clamp or threshold test of ``v[it]`` -> spikes of step ``it``;
2. every projection: the spikes of step ``it`` (times their release ``u+ R-`` under plasticity,
   :func:`jaxlif.plasticity.stp_efficacy`) times the weights [nS] are added to the pending input of
   the targets at sample ``it + d`` (``d >= 1`` the delay in steps);
3. every neuron: ``g[it+1] = g[it] - dt/tau_syn g[it] + (arriving at it+1) + (drive at it+1)`` for
   the excitatory and the inhibitory conductance, then
   ``v[it+1] = v[it] + dt/tau_m (-(v-E_L) - g_E[it+1]/g_L (v-E_E) - g_I[it+1]/g_L (v-E_I) + I[it]/g_L)``.

**Delivery latency.**  A presynaptic spike at step ``k`` on a synapse with delay ``d`` changes the
postsynaptic conductance at sample ``k + d``: it is added in the update from ``k + d - 1`` to
``k + d`` and first moves the voltage at sample ``k + d``.  This is the single-neuron convention
(an input train is read one step ahead, docs/conventions.md section 2) applied to the presynaptic
raster shifted by ``d`` steps: the spike of step ``k`` is the input spike at index ``k + d``.
``d = 0`` is impossible because the spike of step ``k`` is only known after ``g[k]`` was computed
(in the update from ``k - 1``).  So ``d = 1`` is a latency of one step, ``dt``, and a delay of
``delta`` ms is ``d = delta / dt`` steps.

**Plasticity.**  ``u, R`` advance at the presynaptic spike (the tutorial's order: new ``u``, old
``R``) and the release travels with the spike.  Because ``u, R`` depend only on the presynaptic
train, this is the tutorial's synapse driven by the delayed train, shifted in time: the conductance
jumps are identical.  ``stp_mode="pre"`` keeps one ``u, R`` per presynaptic neuron (cheap; valid when
all its synapses in that projection share the parameters); ``"synapse"`` one per synapse (parameters
may differ per synapse).  Per-synapse ``u, R`` advance only at their presynaptic spikes, in closed
form over the silent steps since the last one (:mod:`jaxlif.network.synapse_stp`: work per spike and
out-degree, not per synapse and step); with ``delivery="full"``, or a surrogate derivative carried
through the recurrent spikes (``spike_grad`` with ``recurrent_grad``), or ``integrator="exp_euler"``
(whose continuous-time synapse decays by another closed form), every synapse is updated every step
instead.  Both give the same values up to rounding.

**Exponential Euler** (``integrator="exp_euler"``, docs/conventions.md section 10).  The state's
``g_E, g_I`` at sample ``it`` include every input of that sample.  For ``it = 0 .. n_steps-2``:

1'. every neuron: the membrane over ``[t_it, t_it + dt)`` with each conductance held at its exact mean
    over the step, ``g_mean = g[it] tau_syn/dt (1 - exp(-dt/tau_syn))``
    (:func:`jaxlif.synapses.exp_syn_mean`), relaxing exactly towards
    ``V_inf = (g_L E_L + g_E,mean E_E + g_I,mean E_I + I[it]) / g_tot`` with ``tau_eff = tau_m g_L / g_tot``
    (:func:`jaxlif.neurons.membrane_step`); a threshold crossing in the step is a spike of step ``it`` at
    ``t_it + offset`` (its exact time on that relaxation), reset and ``t_ref`` start there;
2'. every projection: as step 2, with ``u, R`` of the continuous-time synapse (the spike of step ``it``
    acts on ``u, R`` at ``t_it``, then they decay exactly to ``t_it + dt``;
    :func:`jaxlif.plasticity.stp_efficacy`);
3'. every neuron: ``g[it+1] = g[it] exp(-dt/tau_syn) + (arriving at it+1) + (drive at it+1)``.

A spike of step ``k`` with delay ``d`` is the input of index ``k + d`` of its targets, which under
exponential Euler enters ``g`` at ``t_(k+d)`` (the single-neuron rule); it was emitted at
``t_k + offset``, so the latency from the spike is ``d dt - offset``, in ``(d dt - dt, d dt]``: spikes are
delivered on the grid, as NEST's ``iaf_cond_exp`` delivers them (which stamps a spike at the end of its
step, ``(d + 1) dt - offset`` later).  A run that starts at sample 0 adds the inputs of index 0 (drive and
given conductances) to ``g`` at ``t = 0``.

Units: ms, mV, nS, pA, Hz.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from jaxlif._threefry import counter_words, fold_in_words, unit_float32
from jaxlif.inputs import _binomial_tail, _p_spike, _prefix_length
from jaxlif.neurons import LIFParams, LIFState, check_integrator, membrane_step
from jaxlif.network import synapse_stp
from jaxlif.network.delivery import Layout, active_rows, deliver
from jaxlif.network.structure import DenseProjection, Network
from jaxlif.plasticity import stp_efficacy, stp_utilisation
from jaxlif.surrogates import Surrogate
from jaxlif.synapses import SynParams, exp_syn_mean, exp_syn_step

__all__ = ["SynapseState", "NetworkState", "network_init", "network_step", "per_neuron", "drive_draw",
           "drive_uniform"]


class SynapseState(NamedTuple):
    """Plasticity state of one projection: ``u`` (utilisation) and ``R`` (resources), dimensionless;
    ``(n_pre,)`` per presynaptic neuron, or the weights' shape per synapse.  Per synapse, ``sample``
    ``(n_pre,)`` int32 is the sample at which the synapses of each presynaptic neuron hold those values
    (they are advanced only at its spikes: :mod:`jaxlif.network.synapse_stp`); ``None`` per neuron."""

    u: jax.Array
    R: jax.Array
    sample: Optional[jax.Array] = None


class NetworkState(NamedTuple):
    """State of a network at sample ``step`` (neurons of all populations stacked, ``n`` in total).

    Attributes:
        step: the sample index ``it`` (int32 scalar); it sets the ring slots and the drive's keys.
        neuron: :class:`~jaxlif.LIFState`, ``v`` [mV] and the refractory counter, ``(n,)``.
        g_E, g_I: excitatory and inhibitory conductance [nS], ``(n,)``.
        pending_E, pending_I: ``(D, n)`` conductance [nS] on its way: slot ``m mod D`` arrives at sample
            ``m`` (``D = net.max_delay``); the slot of sample ``step`` was already added to ``g_E, g_I``.
        synapses: one :class:`SynapseState` per projection (``None`` for static projections).
    """

    step: jax.Array
    neuron: LIFState
    g_E: jax.Array
    g_I: jax.Array
    pending_E: jax.Array
    pending_I: jax.Array
    synapses: tuple


def _stack(values_sizes, dtype):
    """Concatenate per-population values (scalars or ``(size,)``) into one ``(n,)`` vector."""
    return jnp.concatenate([jnp.broadcast_to(jnp.asarray(v, dtype), (size,)) for v, size in values_sizes])


def per_neuron(net: Network, dtype: DTypeLike | None = None
               ) -> tuple[LIFParams, tuple[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """The populations' parameters stacked into ``(n,)`` vectors: ``(LIFParams, exc (tau, E), inh (tau, E))``."""
    dtype = dtype or jnp.result_type(float)
    pops = net.populations
    neuron = LIFParams(*(_stack([(getattr(p.neuron, f), p.size) for p in pops], dtype) for f in LIFParams._fields))
    receptors = tuple(tuple(_stack([(getattr(getattr(p, rec), f), p.size) for p in pops], dtype)
                            for f in ("tau_syn", "E_rev")) for rec in ("exc", "inh"))
    return neuron, receptors[0], receptors[1]


def _synapse_init(proj, n_pre: int, dtype) -> SynapseState | None:
    if proj.stp is None:
        return None
    if proj.stp_mode == "pre":
        return SynapseState(jnp.zeros((n_pre,), dtype), jnp.ones((n_pre,), dtype))
    shape = jnp.shape(proj.weights)
    return SynapseState(jnp.zeros(shape, dtype), jnp.ones(shape, dtype), jnp.zeros((n_pre,), jnp.int32))


def network_init(net: Network, dtype: DTypeLike | None = None) -> NetworkState:
    """Resting state at step 0: ``v = V_init`` of each population broadcast to its neurons, not
    refractory, no conductance, nothing pending, every synapse at ``u = 0, R = 1``."""
    dtype = dtype or jnp.result_type(float)
    n, D, sizes = net.size, net.max_delay, net.sizes
    v = _stack([(p.neuron.V_init, p.size) for p in net.populations], dtype)
    zero = jnp.zeros((n,), dtype)
    return NetworkState(jnp.zeros((), jnp.int32), LIFState(v, zero), zero, zero, jnp.zeros((D, n), dtype),
                        jnp.zeros((D, n), dtype),
                        tuple(_synapse_init(q, sizes[q.pre], dtype) for q in net.projections))


def _presynaptic(proj, syn: SynapseState | None, s, dt: float, it, integrator: str = "euler"):
    """``(x, W, new_syn)``: presynaptic values and weights whose product is delivered (per-synapse
    plasticity: every synapse updated; under ``"euler"`` by :func:`jaxlif.network.synapse_stp.step_all`,
    under ``"exp_euler"`` as the continuous-time synapse of :func:`jaxlif.plasticity.stp_efficacy`)."""
    W = proj.weights
    if proj.stp is None:
        return s, W, None
    if proj.stp_mode == "pre":
        u, R, release = stp_efficacy(proj.stp, syn.u, syn.R, s, dt, integrator)
        return release, W, SynapseState(u, R)
    dense = isinstance(proj, DenseProjection)
    if integrator == "exp_euler":       # every synapse every step; u is the decayed u+ here: take u+ itself
        s_b = s[None, :] if dense else s[:, None]
        u, R, _ = stp_efficacy(proj.stp, syn.u, syn.R, s_b, dt, integrator)
        u_plus = stp_utilisation(proj.stp, syn.u, s_b, dt, integrator)
        return s, W * u_plus * syn.R, SynapseState(u, R, jnp.full_like(syn.sample, it + 1))
    u_plus, R_minus, u, R, sample = synapse_stp.step_all(proj.stp, syn.u, syn.R, syn.sample, s, it, dt, dense)
    return s, W * u_plus * R_minus, SynapseState(u, R, sample)   # s_j (W u+ R-): the release, derivative in s


def _scaled_tangent(x, gain):
    """``x`` with its derivative multiplied by ``gain`` (``None``: ``x`` itself); the value is ``x`` exactly."""
    if gain is None:
        return x
    return x + (gain - 1.0) * (x - jax.lax.stop_gradient(x))


def network_step(net: Network, state: NetworkState, inputs: tuple[ArrayLike, ArrayLike, ArrayLike],
                 dt: float, *, spike_grad: Surrogate | None = None, delivery: str = "event",
                 capacity: int = 4, recurrent_grad: bool = True, feedback: dict | None = None,
                 inh_gain: ArrayLike | None = None, delivered: ArrayLike | None = None,
                 params: tuple[LIFParams, tuple[ArrayLike, ArrayLike],
                               tuple[ArrayLike, ArrayLike]] | None = None,
                 integrator: str = "euler") -> tuple[NetworkState, tuple[jax.Array, ...]]:
    """Advance the network from sample ``it = state.step`` to ``it + 1`` (steps 1-3 of the module docstring).

    Args:
        net: :class:`~jaxlif.network.Network`.  state: :class:`NetworkState` at ``it``.
        inputs: ``(ext_E, ext_I, I_inj)``: external conductance [nS] arriving at ``it + 1``
            (excitatory, inhibitory) and injected current [pA] at ``it``, each ``(n,)`` or scalar.
        dt: time step [ms].
        spike_grad: ``None`` or a :class:`jaxlif.surrogates.Surrogate` (passed to
            :func:`jaxlif.neurons.membrane_step`).
        delivery: ``"event"`` or ``"full"`` (:mod:`jaxlif.network.delivery`: same values and gradients).
        capacity: presynaptic neurons per chunk of the event method.
        recurrent_grad: ``False`` delivers the spikes without their derivative (``stop_gradient``):
            gradients then follow each neuron's own input and dynamics, not the network's reverberation.
        feedback: ``None`` or ``{population name: scalar}``: every value that population delivers is
            multiplied by it (the mean-field gradient estimator of :mod:`jaxlif.network.gradients`
            differentiates with respect to these scales at 1; ``None`` multiplies by nothing).
        inh_gain: ``None`` or ``(n,)``: the derivative of each neuron's inhibitory conductance is multiplied by
            it where the conductance enters the membrane (its value is unchanged; the estimator's calibration
            of the inhibitory input, :mod:`jaxlif.network.gradients`).
        delivered: ``None`` (the projections deliver this step's spikes) or ``(n,)`` spikes (0/1) that the
            projections deliver, and that drive their plasticity, instead, without derivative: an open-loop
            (replayed) network whose neurons still spike and reset on their own
            (:func:`jaxlif.network.simulate_network`'s ``replay``).
        params: ``per_neuron(net)`` (computed here when ``None``; pass it to hoist it out of a loop).
        integrator: ``"euler"`` (default, the scheme of the module docstring) or ``"exp_euler"``
            ("Exponential Euler" in the module docstring).

    Returns:
        ``(state at it+1, (v_it, spike_it, g_E_it+1, g_I_it+1))``, each ``(n,)``; with ``"exp_euler"`` a
        fifth output, the time of each spike after ``t_it`` [ms] (0 without a spike).
    """
    neuron, exc, inh = per_neuron(net, state.g_E.dtype) if params is None else params
    it, D, offsets, sizes = state.step, net.max_delay, net.offsets, net.sizes
    dtype = state.g_E.dtype
    ext_E, ext_I, I_inj = inputs
    exp_euler = check_integrator(integrator) == "exp_euler"
    if exp_euler:
        # 1'. the membrane over [t_it, t_it + dt) with each conductance held at its exact mean over the step;
        #     the spikes of step it (in that interval) come out of it
        lif, (v, spikes, offset) = membrane_step(
            neuron, state.neuron, exp_syn_mean(SynParams(1.0, *exc), state.g_E, dt), exc[1],
            _scaled_tangent(exp_syn_mean(SynParams(1.0, *inh), state.g_I, dt), inh_gain), inh[1], I_inj, dt,
            spike_grad, integrator)
    else:
        # 1. spikes of step it.  membrane_step tests the threshold before it integrates, and that test does
        #    not depend on the conductances: evaluate it first (XLA drops the unused voltage update).
        spikes = membrane_step(neuron, state.neuron, 0.0, 0.0, 0.0, 0.0, 0.0, dt, spike_grad)[1][1]
    if delivered is None:
        sent = spikes
        spikes_f = spikes.astype(dtype) if recurrent_grad else jax.lax.stop_gradient(spikes.astype(dtype))
    else:
        sent = jax.lax.stop_gradient(jnp.asarray(delivered))
        spikes_f = sent.astype(dtype)
    pre = {name: slice(offsets[name], offsets[name] + sizes[name]) for name in sizes}
    K = {name: min(int(capacity), size) for name, size in sizes.items()}
    rows = {} if delivery == "full" else {name: active_rows(sent[pre[name]].astype(bool), K[name])
                                          for name in dict.fromkeys(q.pre for q in net.projections)}
    # 2. plasticity and delivery into the targets' pending input.  Slot it mod D held the arrivals at
    #    sample it, consumed by the previous step: clear it first (clearing the slot read below instead
    #    would make XLA copy the whole ring every step).
    pending = {"exc": state.pending_E.at[it % D].set(0.0), "inh": state.pending_I.at[it % D].set(0.0)}
    synapses = []
    # per-synapse plasticity: only the spiking rows (event delivery), unless the spikes' surrogate
    # derivatives must reach u, R (every synapse every step then, as with delivery="full")
    synapse_events = (delivery == "event" and integrator == "euler"
                      and not (spike_grad is not None and recurrent_grad))
    for proj, syn in zip(net.projections, state.synapses):
        sparse = not isinstance(proj, DenseProjection)
        layout = Layout(sparse, D, proj.delay, delivery, K[proj.pre], offsets[proj.post], sizes[proj.post])
        aux = (proj.targets, proj.delays) if sparse else (None, None)
        if synapse_events and proj.stp is not None and proj.stp_mode == "synapse":
            x = spikes_f[pre[proj.pre]] * (1.0 if feedback is None else feedback[proj.pre])
            pending[proj.receptor], *syn = synapse_stp.deliver_events(
                layout, dt, pending[proj.receptor], syn.u, syn.R, syn.sample, x, proj.weights, proj.stp, *aux,
                rows[proj.pre], sent[pre[proj.pre]].astype(bool), it)
            synapses.append(SynapseState(*syn))
            continue
        x, W, syn = _presynaptic(proj, syn, spikes_f[pre[proj.pre]], dt, it, integrator)
        synapses.append(syn)
        if feedback is not None:
            x = x * feedback[proj.pre]
        pending[proj.receptor] = deliver(layout, pending[proj.receptor], x, W, *aux, rows.get(proj.pre), it)
    # 3. arrivals at it+1, conductances, membrane
    slot = (it + 1) % D
    g = {}
    for rec, g_old, ext, (tau, E_rev) in (("exc", state.g_E, ext_E, exc), ("inh", state.g_I, ext_I, inh)):
        g[rec] = exp_syn_step(SynParams(1.0, tau, E_rev), g_old, pending[rec][slot] + ext, dt, integrator=integrator)
    if exp_euler:
        new = NetworkState(it + 1, lif, g["exc"], g["inh"], pending["exc"], pending["inh"], tuple(synapses))
        return new, (v, spikes, g["exc"], g["inh"], offset)
    lif, (v, spike) = membrane_step(neuron, state.neuron, g["exc"], exc[1], _scaled_tangent(g["inh"], inh_gain), inh[1],
                                    I_inj, dt, spike_grad)
    new = NetworkState(it + 1, lif, g["exc"], g["inh"], pending["exc"], pending["inh"], tuple(synapses))
    return new, (v, spike, g["exc"], g["inh"])


# ----------------------------------------------------------------------------------------------
# External Poisson drive
# ----------------------------------------------------------------------------------------------


class _DriveTable(NamedTuple):
    head: jax.Array          # (n, K0): P(count > k) of each neuron's drive for k < K0 (0 for undriven neurons)
    tail: jax.Array          # (P, K): the driven populations' whole tables P(count > k), k < K, and a row of 0
    row: jax.Array           # (n,) int32: each neuron's row of ``tail``
    weight_E: jax.Array      # (n,) nS per input spike onto the excitatory conductance (0 if none)
    weight_I: jax.Array


#: Entries of the tables compared directly at every step; the rest is searched only in the steps in which
#: some neuron's count reaches it (rare at the usual rates: P(count >= 8) < 1e-12 for 100 trains at 10 Hz).
_HEAD = 8


def drive_table(net: Network, dt: float, dtype=None) -> _DriveTable | None:
    """Per-population inverse-CDF tables ``P(count > k)``, ``k < n``, of the populations' drives, or
    ``None`` when no population has one.  Its shapes depend only on the sizes and the numbers of trains
    ``n`` (static), not on the rates: new rates compile nothing."""
    dtype = dtype or jnp.result_type(float)
    driven = [p for p in net.populations if p.drive is not None and p.drive.n > 0]
    if not driven:
        return None
    K = max(p.drive.n for p in driven)
    tables, rows = [], []
    for pop in net.populations:
        if pop.drive is not None and pop.drive.n > 0:
            tail = _binomial_tail(_p_spike(pop.drive.rate, dt), pop.drive.n)            # non-increasing
            tail = jnp.pad(tail, (0, K - tail.shape[0])).astype(dtype)
            rows.append(np.full(pop.size, len(tables), np.int32))
            tables.append(tail)
        else:
            rows.append(np.full(pop.size, -1, np.int32))
    tables.append(jnp.zeros(K, dtype))                       # the row of undriven neurons
    row = np.concatenate(rows)
    row = np.where(row < 0, len(tables) - 1, row)
    tail = jnp.stack(tables)
    head = tail[row, :min(_HEAD, K)]

    def weights(receptor):
        return _stack([(p.drive.weight if p.drive is not None and p.drive.n > 0 and p.drive.receptor == receptor
                        else 0.0, p.size) for p in net.populations], dtype)

    return _DriveTable(head, tail, jnp.asarray(row), weights("exc"), weights("inh"))


def _bisect(table: _DriveTable, v: jax.Array) -> jax.Array:
    """``#{k : v <= tail[k]}`` over each neuron's whole row, by bisection (the rows are non-increasing)."""
    K = table.tail.shape[1]
    flat, start = table.tail.reshape(-1), table.row * K
    return _prefix_length(v, K, lambda k: flat[start + k])


def drive_uniform(key: jax.Array, step: ArrayLike, n: int, dtype) -> jax.Array:
    """The ``(n,)`` uniforms in [0, 1) of the drive at one step (neuron ``i`` of the stacked vector
    uses entry ``i``).

    float32 with a threefry key (the default): the words of ``threefry_2x32(key_data(fold_in(key,
    step)), arange(n))``, both words of every hash (``n / 2`` hashes), each turned into a float as
    ``jax.random.uniform`` does (its 23 high bits as the mantissa of a number in [1, 2), minus 1).
    ``jax.random.uniform(fold_in(key, step), (n,))`` itself (JAX's partitionable threefry) spends one
    hash per 32-bit word, twice the cost; this stream replaced it on 2026-12-06 (issue 19), so counts
    drawn with a key before then differ (same distribution).  Both hashes, the ``fold_in`` and the words, are
    computed by :mod:`jaxlif._threefry` (the same bits; on CPU fused kernels instead of JAX's loop over the
    rounds, a few per cent of a 4000-neuron network's step).  Other float types or key kinds:
    ``jax.random.uniform(fold_in(key, step), (n,), dtype)``."""
    if jnp.dtype(dtype) != jnp.float32 or str(jax.random.key_impl(key)) != "threefry2x32":
        return jax.random.uniform(jax.random.fold_in(key, step), (n,), dtype)
    # key_data(fold_in(key, step)) and threefry_2x32 of it, bit for bit, as fused kernels on CPU
    return unit_float32(counter_words(fold_in_words(jax.random.key_data(key), step), n))


def drive_draw(table: _DriveTable, key: jax.Array, step: ArrayLike) -> jax.Array:
    """Binomial drive counts ``(n,)`` of every neuron at one step, by inverse CDF.

    ``U = drive_uniform(key, step, n)`` for the whole network (neuron ``i`` of the stacked
    vector uses ``U[i]``); with ``V = 1 - U`` the count is ``#{k : V <= P(X > k)}``, as
    :func:`jaxlif.inputs.binomial_count` computes it for one neuron.  The table is non-increasing in
    ``k``, so the count is the length of the prefix of entries ``>= V``: the first ``K0`` entries are
    compared directly, and only in a step in which some count reaches ``K0`` are the whole rows
    bisected.  Neurons without a drive get 0.
    """
    dtype = table.head.dtype
    v = 1.0 - drive_uniform(key, step, table.head.shape[0], dtype)
    count = jnp.sum(v[:, None] <= table.head, axis=1, dtype=jnp.int32)
    if table.tail.shape[1] > table.head.shape[1]:
        count = jax.lax.cond(jnp.any(count == table.head.shape[1]), lambda: _bisect(table, v), lambda: count)
    return count.astype(dtype)
