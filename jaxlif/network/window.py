r"""The min-delay scheme: ``L`` steps of neuron updates, then every spike of the window delivered at once.

:func:`~jaxlif.network.network_step` delivers the spikes of step ``k`` before it integrates step ``k``,
because a spike with delay ``d = 1`` is read by that very update.  A spike of step ``k`` with delay
``d`` changes the conductance at sample ``k + d``, i.e. it is first read by the update from
``k + d - 1``.  When every delay is at least ``d_min >= 2`` steps, the spikes of steps
``s .. s + L - 1`` with ``L <= d_min - 1`` are first read by the update from ``s + d_min - 1 >= s + L``:
after the window.  So a window (as NEST does with its min-delay communication interval):

1. draws the external drive of its ``L`` steps in one batch (the same uniforms as
   :func:`~jaxlif.network.drive_draw` step by step, so the same counts; on one device the window before
   draws it, each hash once for two neurons, :func:`paired_head`);
2. runs ``L`` steps of threshold test, plasticity (``stp_mode="pre"``) and membrane update, each
   reading its arrivals from the pending-input ring as it stood at the start of the window (no
   spike of the window can land in the slots read there);
3. clears the ``L`` ring slots consumed, then adds every spike of the window to the ring:
   ``pending[(k + d_jc) mod D, target_jc] += x_j[k] W_jc`` for the spiking rows of all ``L`` steps,
   ``capacity`` events at a time, in one loop per presynaptic population for all its projections
   (:func:`window_events`; :func:`deliver_window` for one projection).

The simulator takes the spike rasters out of the loop as one word per neuron and window
(:class:`PackedSpikes`).

The per-step overhead of delivery (finding the spiking rows, the loop, the ring update) is then paid
once per window instead of once per step, and the values equal the step-by-step scheme's to float
rounding (the sum into a slot is formed in another order only when one projection has several delays).

The simulator uses it (:func:`window_length`) without surrogate gradients, with event delivery,
with no per-synapse plasticity and with ``d_min >= 3``; elsewhere it steps one at a time.  (Per-synapse
``u, R`` advance at each presynaptic spike, :mod:`jaxlif.network.synapse_stp`; a window's events would
have to apply a neuron's several spikes of one window in order, which its chunks do not.)
The same windows run with the neurons partitioned over devices in :mod:`jaxlif.network.shard` (``share``).
Units: ms, mV, nS, pA, Hz.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jaxlif import _checks
from jaxlif._threefry import fold_in_words, hash_words, unit_float32
from jaxlif.network.delivery import Layout
from jaxlif.network.step import NetworkState, SynapseState, _bisect, drive_uniform
from jaxlif.network.structure import DenseProjection
from jaxlif.neurons import membrane_step
from jaxlif.plasticity import stp_efficacy
from jaxlif.synapses import SynParams, exp_syn_mean, exp_syn_step

__all__ = ["MAX_WINDOW", "min_delay", "window_length", "drive_draw_block", "deliver_window", "split_windows",
           "simulate_windows", "PackedSpikes", "window_events"]

#: The longest window in steps (longer ones gain little and make the per-window buffers larger).
MAX_WINDOW = 32
COMPARE_LOOP = True
#: Steps of a window's neuron loop unrolled into one iteration.
UNROLL = 1
#: Find a window's events in the whole raster when every population is whole blocks of 32 neurons
#: (:func:`_deliver_all`), else in each population's columns cut out of it.
WHOLE_RASTER = True
#: Add a window's events straight into the ring where :func:`_direct` allows (:func:`_deliver_all`).
DIRECT = True
#: Events (spiking presynaptic neuron at one step) per chunk of a window's delivery loop, per unit of
#: the simulator's ``capacity``.
CHUNK_PER_CAPACITY = 4


def min_delay(net) -> int | None:
    """The smallest delay in steps of any synapse of ``net`` (a :class:`~jaxlif.network.Network`), or
    ``None`` when it is not known before tracing (per-synapse delays given as traced arrays) or there
    is no projection.  Padding entries of sparse rows (target ``n_post``) are not synapses.  A sparse
    projection's declared bound (``min_delay``, from ``sparse_projection(delay_bounds=)``) stands for
    its delays: then new draws of them give the same window (nothing recompiles)."""
    delays = []
    for proj in net.projections:
        if getattr(proj, "delay", 0) or getattr(proj, "min_delay", 0):   # one delay, or a declared bound
            delays.append(int(proj.delay or proj.min_delay))
            continue
        d, t = _checks._concrete(proj.delays), _checks._concrete(proj.targets)
        if d is None or t is None:
            return None
        real = t < proj.n_post
        if real.any():
            delays.append(int(d[real].min()))
    return min(delays) if delays else None


def window_length(net, *, spike_grad=None, delivery: str = "event") -> int:
    """Steps per window of the min-delay scheme for ``net`` (0: step one at a time).

    ``min(d_min - 1, MAX_WINDOW)`` when every delay is known and at least 3 steps, delivery is
    ``"event"``, there is no surrogate gradient and no projection keeps per-synapse plasticity;
    else 0."""
    if spike_grad is not None or delivery != "event":
        return 0
    if any(q.stp_mode == "synapse" and q.stp is not None for q in net.projections):
        return 0
    d = min_delay(net)
    if d is None or d < 3:
        return 0
    return min(d - 1, MAX_WINDOW)


# ----------------------------------------------------------------------------------------------
# The drive of a window
# ----------------------------------------------------------------------------------------------


def drive_draw_block(table, key: jax.Array, first: jax.Array, length: int, neurons: jax.Array | None = None,
                     n_drawn: int | None = None) -> jax.Array:
    """Drive counts ``(length, n)`` of steps ``first .. first + length - 1``: row ``l`` equals
    ``drive_draw(table, key, first + l)`` exactly (the same uniforms ``drive_uniform(key, step, n)``,
    drawn for all steps in one batch; the rare bisection beyond the head runs once per window).  Where
    :func:`paired_drive` holds, as :func:`paired_counts` of :func:`paired_head` (each hash once).

    With ``neurons`` (int ``(n,)``), the table's rows are those neurons of a network of ``n_drawn``: the
    uniforms are drawn for all ``n_drawn`` and entries ``neurons`` are used (one device's share of a
    network partitioned over devices, :mod:`jaxlif.network.shard`: the same counts as on one device)."""
    if neurons is None and paired_drive(table, key):
        return paired_counts(table, key, first, length, paired_head(table, key, first, length))
    n = table.head.shape[0] if neurons is None else n_drawn
    v = _window_v(table, key, first, length, n)
    if neurons is not None:
        v = v[:, neurons]
    return _beyond_head(table, _head_count(v, table.head), lambda: v).astype(table.head.dtype)


def _window_v(table, key: jax.Array, first: jax.Array, length: int, n: int) -> jax.Array:
    """``1 - drive_uniform(key, step, n)`` for the steps ``first .. first + length - 1``, ``(length, n)``."""
    steps = first + jnp.arange(length, dtype=jnp.int32)
    return 1.0 - jax.vmap(lambda k: drive_uniform(key, k, n, table.head.dtype))(steps)


def _beyond_head(table, count: jax.Array, v: Callable[[], jax.Array]) -> jax.Array:
    """The head counts ``count``, or, in a window in which some count reaches the head's end, every count
    by bisection of the whole table (``v()``: the window's ``1 - u``, computed only then if it is not
    at hand)."""
    if table.tail.shape[1] > table.head.shape[1]:
        count = jax.lax.cond(jnp.any(count == table.head.shape[1]), lambda: _bisect(table, v()), lambda: count)
    return count


def _head_count(v: jax.Array, head: jax.Array) -> jax.Array:
    """``#{k < K0 : v <= head[i, k]}`` for each entry ``v[..., i]``, ``head`` ``(n, K0)``, int32."""
    if COMPARE_LOOP:    # one comparison per table entry: vectorised along the neurons
        return sum((v <= head[:, k]).astype(jnp.int32) for k in range(head.shape[1]))
    return jnp.sum(v[..., None] <= head, axis=-1, dtype=jnp.int32)


#: Draw a window's drive from both words of each hash in one kernel (:func:`paired_head`), on one device.
PAIRED = True


def paired_drive(table, key) -> bool:
    """Can :func:`paired_head` draw this drive?  A float32 table and a threefry key (the uniforms of
    :func:`~jaxlif.network.drive_uniform` are then the words of threefry hashes), and :data:`PAIRED`."""
    return PAIRED and table.head.dtype == jnp.float32 and str(jax.random.key_impl(key)) == "threefry2x32"


def paired_head(table, key: jax.Array, first: jax.Array, length: int) -> jax.Array:
    """The head counts of steps ``first .. first + length - 1`` in pairs: ``(length, h)`` int32, ``h =
    ceil(n / 2)``, entry ``(l, i)`` holding neuron ``i``'s count in its low byte and neuron ``i + h``'s in
    the next (:func:`paired_counts` unpacks them).

    Hash ``i`` of a step gives the uniforms of neurons ``i`` and ``i + h`` (its two output words,
    :func:`jaxlif._threefry.counter_words`).  XLA:CPU computes one fused kernel per output, so two outputs
    (the two words, or the two halves' counts) would each compute every hash; here one output holds both
    counts (each at most ``K0 < 256``).  Its consumer must read it from memory, not fuse it (which would
    compute the hash once per byte again): :func:`simulate_windows` carries it through the loop over windows."""
    head = table.head
    n = head.shape[0]
    h = (n + 1) // 2
    steps = first + jnp.arange(length, dtype=jnp.int32)
    k0, k1 = fold_in_words(jax.random.key_data(key), steps)         # (L,) each: the steps' keys
    x0 = jnp.arange(h, dtype=jnp.uint32)
    x1 = jnp.concatenate([jnp.arange(h, n, dtype=jnp.uint32), jnp.zeros((2 * h - n,), jnp.uint32)])
    y0, y1 = hash_words(k0[:, None], k1[:, None], x0, x1, jax.default_backend())
    second = jnp.pad(head[h:], ((0, 2 * h - n), (0, 0)))             # padding: no entry >= v > 0
    return _head_count(1.0 - unit_float32(y0), head[:h]) | (_head_count(1.0 - unit_float32(y1), second) << 8)


def paired_counts(table, key: jax.Array, first: jax.Array, length: int, paired: jax.Array) -> jax.Array:
    """:func:`drive_draw_block`'s counts from :func:`paired_head`'s ``paired`` (the same window): unpacked,
    and the whole rows bisected in a window in which some count reaches the head's end."""
    n = table.head.shape[0]
    count = jnp.concatenate([paired & 0xFF, paired >> 8], axis=1)[:, :n]
    return _beyond_head(table, count, lambda: _window_v(table, key, first, length, n)).astype(table.head.dtype)


# ----------------------------------------------------------------------------------------------
# Delivery of a window
# ----------------------------------------------------------------------------------------------


class WindowLayout(NamedTuple):
    """Static description of one projection's delivery of a window: the step-wise :class:`Layout`
    (its ``capacity`` is the chunk size in events) and the window's ``length`` in steps."""

    layout: Layout
    length: int


def _acc_shape(wl: WindowLayout):
    lay = wl.layout
    return (wl.length, lay.n_post) if lay.delay else (lay.ring, lay.n_post)


def _add_events(wl: WindowLayout, acc, x, W, targets, delays, step, pre):
    """``acc`` plus the events ``x`` (values, ``(E,)``) of presynaptic rows ``pre`` at window steps ``step``.

    ``acc`` is ``(L, n_post)`` (row ``l``: what the window's step ``l`` sends, to be added at sample
    ``l + delay`` of the window) for a projection with one delay, else ``(D, n_post)`` (row ``j``:
    arriving ``j`` samples after the window's end)."""
    lay = wl.layout
    if not lay.sparse:
        return acc.at[step].add((W[:, pre] * x).T)
    values = x[:, None] * W[pre]
    if lay.delay:
        return acc.at[step[:, None], targets[pre]].add(values, mode="drop")
    return acc.at[step[:, None] + delays[pre] - wl.length, targets[pre]].add(values, mode="drop")


def _into_ring(wl: WindowLayout, pending, acc):
    """Add ``acc`` to the window-relative ring (row ``j``: arriving ``j`` samples after the window's end)."""
    lay = wl.layout
    lo, hi = lay.offset, lay.offset + lay.n_post
    if lay.delay:       # step l arrives at sample l + delay of the window: row l + delay - L, a static block
        return pending.at[lay.delay - wl.length:lay.delay, lo:hi].add(acc)
    return pending.at[:, lo:hi].add(acc)


def _full_acc(wl: WindowLayout, x, W, targets, delays):
    """Every synapse's contribution for every step of the window, ``_acc_shape(wl)`` (the tangent map)."""
    lay, L = wl.layout, wl.length
    if not lay.sparse:
        return x @ W.T
    n_pre = x.shape[1]
    step = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32)[:, None, None], (L, n_pre, W.shape[1]))
    values = x[:, :, None] * W[None]
    tg = jnp.broadcast_to(targets[None], values.shape)
    acc = jnp.zeros(_acc_shape(wl), values.dtype)
    if lay.delay:
        return acc.at[step, tg].add(values, mode="drop")
    return acc.at[step + delays[None] - L, tg].add(values, mode="drop")


def _full_window(wl: WindowLayout, pending, x, W, targets, delays):
    """``pending`` plus every synapse's contribution for every step of the window."""
    return _into_ring(wl, pending, _full_acc(wl, x, W, targets, delays))


_BLOCK = 32


class Events(NamedTuple):
    """The spiking entries of a window's flattened ``(L * n_pre,)`` raster, for :func:`nth_events`:
    the raster in blocks of 32 ``(n_blocks, 32)``, the inclusive count of spikes per block, and the total."""

    blocks: jax.Array
    count: jax.Array
    total: jax.Array


def find_events(active: jax.Array) -> Events:
    """:class:`Events` of a boolean vector (work ``O(n)`` in reductions, no scatter)."""
    n = active.shape[0]
    blocks = jnp.pad(active, (0, -n % _BLOCK)).reshape(-1, _BLOCK)
    count = jnp.cumsum(jnp.sum(blocks, axis=1, dtype=jnp.int32))
    return Events(blocks, count, count[-1])


def nth_events(ev: Events, k: jax.Array) -> jax.Array:
    """Flat indices of the spikes number ``k`` (0-based, in index order; any shape).  Entries ``k >=
    ev.total`` get an arbitrary valid index (mask them).  A binary search over the blocks' counts, then
    the rank within the block: ``O(log n_blocks + 32)`` per entry."""
    b = jnp.minimum(jnp.searchsorted(ev.count, k, side="right"), ev.count.shape[0] - 1)
    before = jnp.where(b > 0, ev.count[jnp.maximum(b - 1, 0)], 0)
    within = jnp.cumsum(ev.blocks[b].astype(jnp.int32), axis=-1)          # (..., 32)
    j = jnp.sum(within <= (k - before)[..., None], axis=-1, dtype=jnp.int32)
    return b * _BLOCK + jnp.minimum(j, _BLOCK - 1)


def _event_accs(wls: tuple, frame, plan: tuple, xs: tuple, Ws: tuple, targets: tuple, delays: tuple, rows: Events,
                rings: dict) -> tuple:
    """The window's events of one presynaptic population through each of its projections ``wls``: one loop
    over the events, ``capacity`` (the same for all) at a time, each chunk located once (:func:`nth_events`)
    and added through every projection into its own ``_acc_shape``, or (``plan[j]`` a receptor) straight
    into ``rings[plan[j]]`` (:func:`_direct`).  ``frame = (stride, lo)``: event ``idx`` of ``rows`` is
    presynaptic neuron ``idx % stride - lo`` at the window's step ``idx // stride``.  Returns ``(accs, rings)``
    (``None`` for the projections added straight into a ring)."""
    K = wls[0].layout.capacity
    n_pre = xs[0].shape[1]
    stride, lo = (n_pre, 0) if frame is None else frame
    n_active = rows.total

    def chunk(carry):
        i, accs, rings = carry
        k = i * K + jnp.arange(K, dtype=jnp.int32)
        idx = nth_events(rows, k)
        step, pre = idx // stride, jnp.clip(idx % stride - lo, 0, n_pre - 1)    # clipped: masked entries
        accs, rings = list(accs), dict(rings)
        for j, (wl, rec, x, W, tg, d) in enumerate(zip(wls, plan, xs, Ws, targets, delays)):
            xr = jnp.where(k < n_active, x[step, pre], 0.0)
            if rec is None:
                accs[j] = _add_events(wl, accs[j], xr, W, tg, d, step, pre)
                continue
            lay = wl.layout             # row l + delay - L of the window-relative ring; padding dropped
            ring = rings[rec]
            column = jnp.where(tg[pre] < lay.n_post, lay.offset + tg[pre], ring.shape[1])
            rings[rec] = ring.at[(step + (lay.delay - wl.length))[:, None], column].add(xr[:, None] * W[pre],
                                                                                      mode="drop")
        return i + 1, tuple(accs), rings

    n_chunks = (n_active + (K - 1)) // K
    zero = tuple(None if rec else jnp.zeros(_acc_shape(wl), jnp.result_type(x, W))
                 for wl, rec, x, W in zip(wls, plan, xs, Ws))
    return jax.lax.while_loop(lambda c: c[0] < n_chunks, chunk, (jnp.int32(0), zero, rings))[1:]


def _direct(wl: WindowLayout, ring_rows: int) -> bool:
    """Can a projection's events be added straight into the window-relative ring (as :func:`_event_accs`
    does for ``plan[j]`` a receptor)?  A sparse projection with one delay equal to the ring's length: its
    rows ``delay - L .. delay - 1`` were cleared by the shift, so adding each event there sums the same
    numbers in the same order as adding them to an empty buffer first (the caller also checks that no
    other projection writes into the same neurons of that ring)."""
    return wl.layout.sparse and wl.layout.delay == ring_rows


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def window_events(wls: tuple, frame, plan: tuple, xs: tuple, Ws: tuple, targets: tuple, delays: tuple,
                  rows: Events, rings: dict) -> tuple:
    """What the projections ``wls`` (:class:`WindowLayout`, static) of one presynaptic population send in a
    window: per projection its ``x`` (``(L, n_pre)`` values of the window's steps, 0 for silent neurons) times
    its weights ``W`` (with ``targets, delays`` as for :func:`jaxlif.network.delivery.deliver`, ``None`` for a
    dense projection), as ``(L, n_post)`` (one delay: row ``l`` sent at the window's step ``l``) or ``(D,
    n_post)`` (row ``j`` arriving ``j`` samples after the window's end), or, where ``plan[j]`` names a receptor
    (static; :func:`_direct`), added into ``rings[plan[j]]`` (the window-relative ring).  ``rows``:
    :func:`find_events` of the population's ``(L, n_pre)`` spikes, flattened (``frame=None``), or the events
    of a larger raster in which event ``idx`` is the population's neuron ``idx % stride - lo`` at step ``idx
    // stride`` (``frame = (stride, lo)``, static).  The projections share one loop over the events
    (:func:`_event_accs`).  Returns ``(accs, rings)``.

    Derivatives are those of the sum over every synapse (as for :func:`~jaxlif.network.delivery.deliver`):
    the event loop is never differentiated."""
    return _event_accs(wls, frame, plan, xs, Ws, targets, delays, rows, rings)


def _window_events_jvp(wls, frame, plan, primals, tangents):
    xs, Ws, targets, delays, rows, rings = primals
    dxs, dWs, d_rings = tangents[0], tangents[1], tangents[5]
    accs, rings_out = window_events(wls, frame, plan, xs, Ws, targets, delays, rows, rings)
    d_accs = []
    d_rings = {rec: jnp.zeros_like(r) if isinstance(d_rings[rec], SymbolicZero) else d_rings[rec]
               for rec, r in rings_out.items()}
    for wl, rec, x, W, tg, d, dx, dW in zip(wls, plan, xs, Ws, targets, delays, dxs, dWs):
        d_acc = jnp.zeros(_acc_shape(wl), jnp.result_type(x, W))
        if not isinstance(dx, SymbolicZero):
            d_acc = d_acc + _full_acc(wl, dx, W, tg, d)
        if not isinstance(dW, SymbolicZero):
            d_acc = d_acc + _full_acc(wl, x, dW, tg, d)
        if rec is None:
            d_accs.append(d_acc)
        else:
            d_accs.append(None)
            d_rings[rec] = _into_ring(wl, d_rings[rec], d_acc)
    return (accs, rings_out), (tuple(d_accs), d_rings)


window_events.defjvp(_window_events_jvp, symbolic_zeros=True)


def deliver_window(wl: WindowLayout, pending, x, W, targets, delays, rows):
    """Add one projection's spikes of a whole window to the pending input.

    Args:
        wl: :class:`WindowLayout` (static).
        pending: ``(D, n)`` window-relative ring: row ``j`` arrives ``j`` samples after the window's end
            (a spike of the window's step ``l`` with delay ``d`` lands in row ``l + d - L``).
        x: ``(L, n_pre)`` presynaptic values of the window's ``L`` steps (0 for silent neurons).
        W, targets, delays: as for :func:`jaxlif.network.delivery.deliver`.
        rows: :func:`find_events` of the presynaptic population's ``(L, n_pre)`` spikes, flattened.

    Derivatives are those of the sum over every synapse (:func:`window_events`).
    """
    targets, delays = (None, None) if targets is None else (jnp.asarray(targets), jnp.asarray(delays))
    (acc,), _ = window_events((wl,), None, (None,), (jnp.asarray(x),), (jnp.asarray(W),), (targets,), (delays,),
                              rows, {})
    return _into_ring(wl, jnp.asarray(pending), acc)


# ----------------------------------------------------------------------------------------------
# The simulation in windows
# ----------------------------------------------------------------------------------------------


def _local_step(net, params, dt, record, integrator, carry, x):
    """One step without delivery: threshold test, plasticity, membrane, with ``x = (in_E, in_I, I_inj)``:
    the conductance arriving at ``it + 1`` (the ring's row as it stood at the start of the window plus
    the external input, summed before the loop) and the current.  The same operations as ``network_step``
    (``integrator="exp_euler"``: membrane first, on the step means of the conductances at ``it``).
    ``carry[-1]`` is the running maximum of ``g_E + g_I`` of the Euler membrane (:mod:`jaxlif._stability`)."""
    neuron, exc, inh = params[:3]
    it, lif, g_E, g_I, synapses, g_peak = carry
    ext_E, ext_I, I_inj = x
    dtype = g_E.dtype
    offset = None
    if integrator == "exp_euler":
        lif, (v, spikes, offset) = membrane_step(
            neuron, lif, exp_syn_mean(SynParams(1.0, *exc), g_E, dt), exc[1],
            exp_syn_mean(SynParams(1.0, *inh), g_I, dt), inh[1], I_inj, dt, integrator=integrator)
    # ext: arrivals + external, summed
    g_E = exp_syn_step(SynParams(1.0, *exc), g_E, ext_E, dt, integrator=integrator)
    g_I = exp_syn_step(SynParams(1.0, *inh), g_I, ext_I, dt, integrator=integrator)
    if integrator != "exp_euler":
        lif, (v, spikes) = membrane_step(neuron, lif, g_E, exc[1], g_I, inh[1], I_inj, dt)
        g_peak = jnp.maximum(g_peak, g_E + g_I)
    spikes_f = spikes.astype(dtype)
    offsets, sizes = net.offsets, net.sizes
    new_syn, released = [], []
    for proj, syn in zip(net.projections, synapses):
        if proj.stp is None:
            new_syn.append(None)
            released.append(None)
            continue
        s = spikes_f[offsets[proj.pre]:offsets[proj.pre] + sizes[proj.pre]]
        u, R, release = stp_efficacy(proj.stp, syn.u, syn.R, s, dt, integrator)
        new_syn.append(SynapseState(u, R))
        released.append(release)
    out = (v, spikes, g_E, g_I) if record else (None, spikes, None, None)
    if offset is not None:
        out = out + (offset,)
    trace = tuple(new_syn) if record else tuple(None for _ in new_syn)
    return (it + 1, lif, g_E, g_I, tuple(new_syn), g_peak), (out, trace, tuple(released))


def _window(net, params, key, table, dt, capacity, record, integrator, state: NetworkState, g_peak, xs,
            length: int, share=None, paired=None):
    """Advance ``state`` by ``length`` steps (one window); returns the new state, the running maximum
    ``g_peak`` of ``g_E + g_I`` (Euler only) and the per-step outputs ``((v, spikes, g_E, g_I[, offset]),
    synapses)``, time-major ``(length, ...)`` (without ``record`` only the spikes and offsets, the rest
    ``None``).  Here ``state.pending_E, pending_I`` are window-relative: row ``j`` arrives at
    sample ``state.step + j`` (row 0 was consumed already), so that every access is a static block.

    ``share``: ``None`` (the whole network on this device: :func:`_deliver_all`), or one device's share
    of a partitioned network (:mod:`jaxlif.network.shard`): an object with ``neurons`` and ``n_drawn`` (its
    neurons' entries of the drive's uniforms, :func:`drive_draw_block`) and ``deliver(ring, spikes,
    released, length)`` (the window's spikes of every device into this device's ring)."""
    it0 = state.step
    g_E_seq, g_I_seq, I_seq = xs
    zero = jnp.zeros((length, 1), state.g_E.dtype)
    ext_E = zero if g_E_seq is None else g_E_seq
    ext_I = zero if g_I_seq is None else g_I_seq
    if table is not None:
        if paired is not None:      # this window's head counts, drawn by the previous one (simulate_windows)
            counts = paired_counts(table, key, it0 + 1, length, paired)
        elif share is None:
            counts = drive_draw_block(table, key, it0 + 1, length)
        else:
            counts = drive_draw_block(table, key, it0 + 1, length, share.neurons, share.n_drawn)
        ext_E, ext_I = ext_E + table.weight_E * counts, ext_I + table.weight_I * counts
    I_inj = I_seq
    # the rows read in the window (samples it0 + 1 .. it0 + L; no spike of the window lands there) plus the
    # external input: network_step's pending[slot] + ext, for the whole window at once
    in_E = state.pending_E[1:length + 1] + ext_E
    in_I = state.pending_I[1:length + 1] + ext_I
    carry = (it0, state.neuron, state.g_E, state.g_I, state.synapses, g_peak)

    def body(carry, x):
        e_E, e_I, i = x
        return _local_step(net, params, dt, record, integrator, carry, (e_E, e_I, params[3] if i is None else i))

    (it, lif, g_E, g_I, synapses, g_peak), (out, syn_trace, released) = jax.lax.scan(
        body, carry, (in_E, in_I, I_inj), length=length, unroll=UNROLL)
    spikes = out[1]
    # shift the ring to the next window (samples it0 .. it0 + L - 1 were consumed; new rows are empty)
    def shift(ring):
        return jnp.concatenate([ring[length:], jnp.zeros((length,) + ring.shape[1:], ring.dtype)])

    ring = {"exc": shift(state.pending_E), "inh": shift(state.pending_I)}
    if share is None:
        ring = _deliver_all(net, capacity, ring, spikes, released, length)
    else:
        ring = share.deliver(ring, spikes, released, length)
    new = NetworkState(it, lif, g_E, g_I, ring["exc"], ring["inh"], synapses)
    return new, g_peak, (out, syn_trace)


def _deliver_all(net, capacity: int, ring: dict, spikes, released, length: int) -> dict:
    """``ring`` (``{"exc", "inh"}``, window-relative) plus every projection's spikes of the window
    (``spikes`` ``(L, n)``; ``released``: per projection the ``(L, n_pre)`` release of ``stp_mode="pre"``,
    else ``None``)."""
    D, offsets, sizes = net.max_delay, net.offsets, net.sizes
    rows, frames, n = {}, {}, spikes.shape[1]
    pres = tuple(dict.fromkeys(q.pre for q in net.projections))
    if WHOLE_RASTER and n % _BLOCK == 0 and all(offsets[name] % _BLOCK == 0 and sizes[name] % _BLOCK == 0
                                                for name in pres):
        # every population is whole blocks of 32 neurons: the events of all found in the raster as it is (a
        # population's columns cut out of it are a copy, element by element), counted per population
        blocks = spikes.astype(bool).reshape(-1, _BLOCK)
        per_block = jnp.sum(blocks, axis=1, dtype=jnp.int32)
        column = jnp.arange(blocks.shape[0], dtype=jnp.int32) % (n // _BLOCK)
        for name in pres:
            lo, hi = offsets[name] // _BLOCK, (offsets[name] + sizes[name]) // _BLOCK
            count = jnp.cumsum(jnp.where((column >= lo) & (column < hi), per_block, 0))
            rows[name], frames[name] = Events(blocks, count, count[-1]), (n, offsets[name])
    else:
        for name in pres:
            active = spikes[:, offsets[name]:offsets[name] + sizes[name]].astype(bool).reshape(-1)
            rows[name], frames[name] = find_events(active), None
    wls, xs, aux = [], [], []
    for proj, release in zip(net.projections, released):
        pre = slice(offsets[proj.pre], offsets[proj.pre] + sizes[proj.pre])
        xs.append(spikes[:, pre] if release is None else release)          # 0/1 spikes cast per event
        sparse = not isinstance(proj, DenseProjection)
        wls.append(WindowLayout(Layout(sparse, D, proj.delay, "event",
                                       window_chunk(capacity, length, sizes[proj.pre]), offsets[proj.post],
                                       sizes[proj.post]), length))
        aux.append((jnp.asarray(proj.targets), jnp.asarray(proj.delays)) if sparse else (None, None))
    # straight into the ring: a projection that _direct allows and that alone writes into its targets' ring
    blocks = [(q.receptor, q.post) for q in net.projections]
    plan = [q.receptor if DIRECT and _direct(wl, D) and blocks.count(blocks[j]) == 1 else None
            for j, (q, wl) in enumerate(zip(net.projections, wls))]
    accs = {}
    for name in rows:               # one loop over each population's events for all its projections
        group = [j for j, proj in enumerate(net.projections) if proj.pre == name]
        used = dict.fromkeys(plan[j] for j in group if plan[j] is not None)
        out, rings = window_events(tuple(wls[j] for j in group), frames[name], tuple(plan[j] for j in group),
                                   tuple(xs[j] for j in group), tuple(net.projections[j].weights for j in group),
                                   tuple(aux[j][0] for j in group), tuple(aux[j][1] for j in group), rows[name],
                                   {rec: ring[rec] for rec in used})
        accs.update(zip(group, out))
        ring.update(rings)
    for j, proj in enumerate(net.projections):      # the others into the ring in the projections' order
        if plan[j] is None:
            ring[proj.receptor] = _into_ring(wls[j], ring[proj.receptor], accs[j])
    return ring


def window_chunk(capacity: int, length: int, n_pre: int) -> int:
    """Events per chunk of a window's delivery loop for a presynaptic population of ``n_pre`` neurons."""
    return min(capacity * CHUNK_PER_CAPACITY, length * n_pre)


def split_windows(n_updates: int, longest: int) -> int:
    """The window length for ``n_updates`` steps with windows of at most ``longest`` steps: the largest
    divisor of ``n_updates`` in ``[ceil(longest / 2), longest]`` (no shorter last window, whose code
    would be compiled a second time: about 1 s of compilation for the benchmark network), else ``longest``."""
    for length in range(longest, (longest + 1) // 2 - 1, -1):
        if length >= 1 and n_updates % length == 0:
            return length
    return longest


@jax.tree_util.register_pytree_node_class
class PackedSpikes:
    """A boolean raster of ``n_updates`` steps, time-major ``(n_updates, n)``, as the bits of one word per
    neuron and window: bit ``l`` of ``words[w, i]`` is neuron ``i``'s spike at step ``w * length + l``
    (``words`` ``(n_windows, n)``, unsigned, ``length`` bits used).  A window's spikes packed where they are
    made take a ``length``-th of the memory, and :meth:`neuron_major` writes the neuron-major raster in one
    pass that reads the words from cache (transposing the boolean raster itself reads it with a stride of
    ``n`` bytes: the largest cost after the loop for the benchmark network)."""

    def __init__(self, words, length: int, n_updates: int):
        self.words, self.length, self.n_updates = words, length, n_updates

    def tree_flatten(self):
        return (self.words,), (self.length, self.n_updates)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(children[0], *aux)

    @staticmethod
    def pack(spikes: jax.Array) -> jax.Array:
        """``(L, n)`` booleans -> ``(n,)`` words, bit ``l`` the spike of step ``l`` (``L <= 32``)."""
        L = spikes.shape[0]
        dtype = jnp.uint8 if L <= 8 else jnp.uint16 if L <= 16 else jnp.uint32
        bits = jnp.left_shift(jnp.ones((), dtype), jnp.arange(L, dtype=dtype))
        return jnp.sum(jnp.where(spikes, bits[:, None], jnp.zeros((), dtype)), axis=0, dtype=dtype)

    def neuron_major(self, lo: int, hi: int, columns: int) -> jax.Array:
        """Neurons ``lo .. hi - 1``, ``(hi - lo, columns)`` booleans: column ``k`` the spikes of step ``k``
        (``False`` for ``k >= n_updates``)."""
        L = self.length
        words = self.words[:, lo:hi]
        rows = -(-columns // L)
        words = jnp.pad(words, ((0, max(rows - words.shape[0], 0)), (0, 0)))[:rows]
        bits = (words.T[:, :, None] >> jnp.arange(L, dtype=words.dtype)) & 1
        out = bits.reshape(hi - lo, rows * L)[:, :columns].astype(bool)
        return out & (jnp.arange(columns) < self.n_updates)


def simulate_windows(net, state0: NetworkState, ok, seqs, I_const, key, table, params, dt: float, *,
                     n_updates: int, length: int, capacity: int, record: bool = True, integrator: str = "euler",
                     g_peak=None, share=None, pack: bool = False):
    """``n_updates`` steps from ``state0`` in windows of at most ``length`` steps (:func:`split_windows`;
    a shorter last window where no length divides ``n_updates``); returns ``((final state, ok, g_peak), ys)``
    with ``ys = ((v, spikes, g_E, g_I[, offset]), synapses)`` time-major, as the step-by-step scan of the
    simulator (without ``record`` only the spikes and the offsets, the rest ``None``).  ``g_peak``: the
    running maximum of ``g_E + g_I`` per neuron that the Euler membrane used, from ``g_peak`` (default 0).
    ``share``: one device's share of a partitioned network (:func:`_window`); ``net`` then describes that
    share (its populations' local sizes), and so do the state, inputs and parameters.  ``pack``: the spikes
    come as :class:`PackedSpikes` instead of ``(n_updates, n)`` booleans."""
    length = split_windows(n_updates, length)
    m, r = divmod(n_updates, length)
    I_const = jnp.zeros((net.size,), state0.g_E.dtype) if I_const is None else I_const
    params = tuple(params) + (I_const,)

    def windows(seq, count, start):
        if seq is None:
            return None
        part = seq[start:start + count * length]
        return part.reshape((count, length) + seq.shape[1:])

    # the drive's head counts of each window are drawn in pairs by the window before it and carried (so that
    # they are stored, not fused into their readers: paired_head)
    carried = table is not None and share is None and paired_drive(table, key)

    def full_window(carry, xs):
        state, valid, peak, paired = carry
        state, peak, ys = _window(net, params, key, table, dt, capacity, record, integrator, state, peak, xs, length,
                                  share, paired)
        if carried:
            paired = paired_head(table, key, state.step + 1, length)
        return (state, valid & (state.step > 0), peak, paired), packed(ys)

    def packed(ys):                 # the window's spikes as words
        if not pack:
            return ys
        out, trace = ys
        return (out[:1] + (PackedSpikes.pack(out[1]),) + out[2:], trace)

    D = net.max_delay

    def relative(ring, it):         # slot (it + j) mod D -> row j
        return ring[(it + jnp.arange(D, dtype=jnp.int32)) % D]

    def absolute(rows, it):         # row j -> slot (it + j) mod D
        return rows[(jnp.arange(D, dtype=jnp.int32) - it) % D]

    state0 = state0._replace(pending_E=relative(state0.pending_E, state0.step),
                             pending_I=relative(state0.pending_I, state0.step))
    g_peak = jnp.zeros((net.size,), state0.g_E.dtype) if g_peak is None else g_peak
    carry = (state0, ok, g_peak)
    parts = []
    if m:
        paired = paired_head(table, key, state0.step + 1, length) if carried else None
        (*carry, _), ys = jax.lax.scan(full_window, carry + (paired,), tuple(windows(s, m, 0) for s in seqs),
                                       length=m)
        spikes = ys[0][1]           # (m, n) words if pack
        ys = jax.tree.map(lambda y: y.reshape((m * length,) + y.shape[2:]),
                          ((ys[0][:1] + (None,) + ys[0][2:]), ys[1]) if pack else ys)
        if pack:
            ys = ((ys[0][:1] + (spikes,) + ys[0][2:]), ys[1])
        parts.append(ys)
    if r:
        state, valid, peak = carry
        tail = tuple(None if s is None else s[m * length:] for s in seqs)
        state, peak, ys = _window(net, params, key, table, dt, capacity, record, integrator, state, peak, tail, r,
                                  share)
        carry = (state, valid & (state.step > 0), peak)
        if pack:        # bits 0 .. r - 1 of one more row of words
            out = ys[0]
            ys = (out[:1] + (PackedSpikes.pack(jnp.pad(out[1], ((0, length - r), (0, 0))))[None],) + out[2:], ys[1])
        parts.append(ys)
    ys = parts[0] if len(parts) == 1 else jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
    if pack:
        ys = (ys[0][:1] + (PackedSpikes(ys[0][1], length, n_updates),) + ys[0][2:], ys[1])
    state, valid, peak = carry
    state = state._replace(pending_E=absolute(state.pending_E, state.step),
                           pending_I=absolute(state.pending_I, state.step))
    return (state, valid, peak), ys
