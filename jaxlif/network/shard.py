r"""One network partitioned over several devices: NEST's min-delay scheme with ``shard_map``.

:func:`simulate_network_sharded` runs the windowed scheme of :mod:`jaxlif.network.window` on the
devices of a one-axis :class:`jax.sharding.Mesh` (several GPUs, several hosts, or CPU devices):

- **Neurons.**  Each population is cut into ``P`` equal contiguous blocks (``P`` devices); device
  ``p`` owns block ``p`` of every population, its neurons' state, parameters, pending-input ring and
  per-presynaptic-neuron plasticity (``stp_mode="pre"``), and the synapses *onto* its neurons.
- **A window.**  With every delay at least ``d_min >= 3`` steps, a spike is first read ``d_min - 1``
  steps after it was emitted, so each device runs ``L <= d_min - 1`` steps of its own neurons on its
  own (threshold, release, membrane; the drive drawn as on one device), then the window's spikes (and
  the releases ``u+ R-`` of the depressing projections, computed by the owner of the presynaptic
  neuron) are all-gathered (``jax.lax.all_gather``: one collective per window), and every device adds
  every spike of the window to the synapses it owns, in its own ring.  This is NEST's communication
  scheme (every process receives every spike of the min-delay interval and delivers it to its local
  targets).
- **Bit for bit.**  The results equal :func:`~jaxlif.network.simulate_network`'s on one device bit for
  bit (spikes, voltages, conductances, plasticity traces, final state; tested in float32 with Euler and
  float64 with ``"exp_euler"``):
  the neuron updates are element-wise; the drive is the same uniforms (each device draws them for the
  whole network and takes its neurons' entries: this draw is replicated, ``O(n)`` per step on every
  device); and each device's synapses are its targets' synapses in the order of the one-device rows
  (a presynaptic neuron's row keeps the synapses onto the device's block, in order), visited for the
  same events in the same order, so that every conductance slot receives the same additions in the
  same order.  On GPUs the one-device scatter-add itself may add repeated targets in any order
  (atomics), so there equality should be expected to float rounding only (untested: no GPU was available).
- **Cost.**  Per window and device: ``L`` steps of ``n / P`` neurons, the drive's uniforms for all
  ``n`` neurons, finding the window's spikes among all ``n`` (replicated, ``O(L n)`` reductions), and
  the scatter of ``1 / P`` of the synapses of the spiking neurons; one all-gather of ``L x n`` values.

Scope: the windowed scheme only (``d_min >= 3`` steps, known before tracing), event delivery, no
surrogate gradient (a forward simulator), static connectivity given as concrete arrays, plasticity
per presynaptic neuron with one parameter set per projection (``stp_mode="pre"``, scalar parameters),
population sizes divisible by the number of devices.  Anything else is refused with a ``ValueError``
before tracing.  Units: ms, mV, nS, pA, Hz.
"""

from __future__ import annotations

import functools
import hashlib
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlif import _checks, _stability
from jaxlif.batch.devices import _shard_map
from jaxlif.network import window as window_mod
from jaxlif.network.delivery import Layout
from jaxlif.network.params import NetworkParams, NetworkStructure
from jaxlif.network.simulate import NetworkResult, _checked_run, _result, _run_start
from jaxlif.network.step import NetworkState
from jaxlif.network.structure import DenseProjection, Network

__all__ = ["NEURON_AXIS", "network_mesh", "simulate_network_sharded"]

#: The axis name of :func:`network_mesh` (any one-axis mesh is accepted).
NEURON_AXIS = "neurons"


def network_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"neurons"`` over ``devices`` (default: every visible device, ``jax.devices()``;
    with several processes, ``jax.distributed.initialize()`` first, it lists the devices of all of them)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(f"devices must be a non-empty sequence of jax.Device (e.g. jax.devices()[:2]), "
                         f"got {devices!r}")
    return Mesh(np.asarray(devices), (NEURON_AXIS,))


# ----------------------------------------------------------------------------------------------
# Checks and the partition (plain Python and NumPy, before tracing)
# ----------------------------------------------------------------------------------------------


def _check_shardable(net: Network, n_dev: int, steps: int) -> int:
    """The window length of ``net``, or a ``ValueError`` saying what the sharded simulator does not support."""
    for pop in net.populations:
        if pop.size % n_dev:
            raise ValueError(f"population {pop.name!r} has {pop.size} neurons, not divisible by the {n_dev} devices "
                             f"of the mesh: every population is cut into equal blocks, one per device")
    for i, proj in enumerate(net.projections):
        label = f"projections[{i}] ({proj.pre}->{proj.post})"
        if proj.stp is not None and proj.stp_mode == "synapse":
            raise ValueError(f"{label} has per-synapse plasticity (stp_mode='synapse'), which the windowed scheme "
                             f"does not support; use stp_mode='pre' or simulate_network on one device")
        if proj.stp is not None and any(np.ndim(x) for x in jax.tree.leaves(proj.stp)):
            raise ValueError(f"{label}.stp has per-neuron parameters; the sharded simulator takes scalar "
                             f"plasticity parameters per projection")
        if not isinstance(proj, DenseProjection) and _checks._concrete(proj.targets) is None:
            raise ValueError(f"{label}.targets is traced; the sharded simulator partitions the synapses before "
                             f"tracing and needs concrete connectivity")
    d_min = window_mod.min_delay(net)
    if d_min is None or d_min < 3:
        found = ("not known before tracing (or there is no projection)" if d_min is None
                 else f"{d_min} step{'s' * (d_min != 1)}")
        raise ValueError(f"the sharded simulator needs every delay to be at least 3 steps (NEST's min-delay "
                         f"scheme: the devices exchange spikes every d_min - 1 steps), known before tracing; "
                         f"this network's smallest delay is {found}")
    if steps < 2:
        raise ValueError(f"T must cover at least 2 samples, T > dt (got n_steps = {steps}): the sharded "
                         f"simulator runs at least one step")
    return window_mod.window_length(net)


def _permutation(net: Network, n_dev: int) -> np.ndarray:
    """Stacked index of each neuron in device order: device ``p``'s neurons are block ``p`` of every
    population, in the populations' order (``perm[p * m + i]``, ``m = n / P``)."""
    offsets = net.offsets
    return np.concatenate([offsets[pop.name] + p * (pop.size // n_dev) + np.arange(pop.size // n_dev)
                           for p in range(n_dev) for pop in net.populations]).astype(np.int32)


class _Index(NamedTuple):
    """Where one sparse projection's synapses go, per device (NumPy, from the concrete targets): ``cols``
    ``(P, n_pre, width)``, the column of row ``j`` that is the ``c``-th synapse of ``j`` onto device ``p``'s
    block (in the row's order), ``valid`` whether there is one, and ``targets`` its local target index
    (``n_post / P`` for padding)."""

    cols: np.ndarray
    valid: np.ndarray
    targets: np.ndarray


#: The last few partitions computed (a repeated call with the same connectivity skips the sort).
_INDEX_CACHE: dict = {}
_INDEX_CACHE_SIZE = 8


def _device_index(proj, n_dev: int) -> _Index | None:
    """Partition a sparse projection's synapses by the device that owns their target, keeping their order in
    each row (so that every target receives the same additions in the same order as on one device); ``None``
    for a dense projection (its rows are cut in blocks).  Kept for the last few connectivities (keyed by a
    hash of the targets)."""
    if isinstance(proj, DenseProjection):
        return None
    targets = np.ascontiguousarray(proj.targets)
    key = (hashlib.blake2b(targets.view(np.uint8), digest_size=16).digest(), targets.shape, targets.dtype.str,
           proj.n_post, n_dev)
    if key not in _INDEX_CACHE:
        if len(_INDEX_CACHE) >= _INDEX_CACHE_SIZE:
            _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
        _INDEX_CACHE[key] = _partition(targets, proj.n_post, n_dev)
    return _INDEX_CACHE[key]


def _partition(targets: np.ndarray, n_post: int, n_dev: int) -> _Index:
    """:func:`_device_index` of the padded rows ``targets`` (``n_post``: padding) for ``n_dev`` devices."""
    n_pre, block = targets.shape[0], n_post // n_dev
    owner = np.where(targets < n_post, targets // block, n_dev)            # padding: after every device
    order = np.argsort(owner, axis=1, kind="stable")                             # grouped by device, in order
    count = np.stack([np.sum(owner == p, axis=1) for p in range(n_dev)], axis=1)  # (n_pre, P)
    first = np.cumsum(count, axis=1) - count                                     # each device's group starts
    width = max(1, int(count.max(initial=0)))
    c = np.arange(width)
    at = np.minimum(first.T[:, :, None] + c, max(targets.shape[1] - 1, 0))      # (P, n_pre, width)
    cols = np.take_along_axis(np.broadcast_to(order, (n_dev,) + order.shape), at, axis=2)
    valid = c < count.T[:, :, None]
    rows = np.arange(n_pre)[None, :, None]
    local = np.where(valid, targets[rows, cols] - block * np.arange(n_dev)[:, None, None], block)
    return _Index(cols.astype(np.int32), valid, local.astype(np.int32))


class _Edges(NamedTuple):
    """One projection's synapses per device, stacked along a leading device axis ``P``: sparse rows
    ``(P, n_pre, width)`` of the synapses onto each device's block (local target indices, padding
    ``n_post / P``), or the dense matrix's rows ``(P, n_post / P, n_pre)``."""

    weights: jax.Array
    targets: jax.Array | None
    delays: jax.Array | None


def _device_edges(proj, index: _Index | None, n_dev: int) -> _Edges:
    """The weights and delays of ``proj`` (possibly traced) placed per device as ``index`` says."""
    W = jnp.asarray(proj.weights)
    if index is None:
        return _Edges(W.reshape((n_dev, W.shape[0] // n_dev) + W.shape[1:]), None, None)
    rows = jnp.arange(W.shape[0], dtype=jnp.int32)[None, :, None]
    d = jnp.asarray(proj.delays)
    pad = max(1, proj.min_delay, proj.delay)
    return _Edges(jnp.where(index.valid, W[rows, index.cols], 0.0), index.targets,
                  jnp.where(index.valid, d[rows, index.cols], pad).astype(d.dtype))


class _LocalNet(NamedTuple):
    """What the window's neuron loop reads of a network, for one device's share (local sizes)."""

    projections: tuple
    offsets: dict
    sizes: dict
    size: int
    max_delay: int


def _local_net(net: Network, n_dev: int) -> _LocalNet:
    sizes = {name: size // n_dev for name, size in net.sizes.items()}
    offsets = dict(zip(sizes, np.cumsum([0] + list(sizes.values()))[:-1].tolist()))
    return _LocalNet(tuple(net.projections), offsets, sizes, net.size // n_dev, net.max_delay)


class _Share:
    """One device's share inside ``shard_map`` (``window._window``'s ``share``): its neurons' entries of
    the drive's uniforms, and the delivery of the window's spikes of every device onto its synapses."""

    def __init__(self, local: _LocalNet, full_sizes: dict, neurons, n_drawn: int, edges, capacity: int, axis: str):
        self.local, self.full_sizes, self.neurons, self.n_drawn = local, full_sizes, neurons, n_drawn
        self.edges, self.capacity, self.axis = edges, capacity, axis

    def deliver(self, ring: dict, spikes, released, length: int) -> dict:
        """All-gather the window's local spikes ``(L, n / P)`` and releases, then add them to this device's ring."""
        local, dtype = self.local, ring["exc"].dtype
        parts = [spikes.astype(dtype)] + [r for r in released if r is not None]
        sent = jnp.concatenate(parts, axis=1)                           # (L, m + releases): one collective
        got = jax.lax.all_gather(sent, self.axis)                       # (P, L, ...)
        n_dev = got.shape[0]

        def whole(lo, size):        # columns lo .. lo + size - 1 of every device -> (L, P * size), global order
            block = got[:, :, lo:lo + size]
            return jnp.transpose(block, (1, 0, 2)).reshape(length, n_dev * size)

        fired = {name: whole(local.offsets[name], local.sizes[name]).astype(bool)
                 for name in dict.fromkeys(q.pre for q in local.projections)}
        events = {name: window_mod.find_events(f.reshape(-1)) for name, f in fired.items()}
        column = local.size
        for proj, release, edges in zip(local.projections, released, self.edges):
            if release is None:
                x = fired[proj.pre]                                     # 0/1 spikes cast per event, as on one device
            else:
                x = whole(column, local.sizes[proj.pre])
                column += local.sizes[proj.pre]
            sparse = not isinstance(proj, DenseProjection)
            n_pre = self.full_sizes[proj.pre]
            wl = window_mod.WindowLayout(Layout(sparse, local.max_delay, proj.delay, "event",
                                                window_mod.window_chunk(self.capacity, length, n_pre),
                                                local.offsets[proj.post], local.sizes[proj.post]), length)
            aux = (edges.targets[0], edges.delays[0]) if sparse else (None, None)
            ring[proj.receptor] = window_mod.deliver_window(wl, ring[proj.receptor], x, edges.weights[0], *aux,
                                                            events[proj.pre])
        return ring


# ----------------------------------------------------------------------------------------------
# The simulator
# ----------------------------------------------------------------------------------------------


def simulate_network_sharded(key: jax.Array | None, net: Network | NetworkStructure,
                             params: NetworkParams | None = None, *, T: float,
                             dt: float, mesh: Mesh | None = None, inputs: dict | None = None,
                             state: NetworkState | None = None, record: bool = True, capacity: int = 4,
                             integrator: str = "euler") -> NetworkResult:
    """:func:`~jaxlif.network.simulate_network` with the neurons partitioned over the devices of ``mesh``
    (the module docstring gives the scheme): the same :class:`~jaxlif.network.NetworkResult`, bit for bit.

    Each device advances its block of every population by ``L = min(d_min - 1, 32)`` steps, then the
    window's spikes are all-gathered and each device adds them to the synapses onto its neurons::

        for each window of L steps:                  # on every device p, at once
            L steps of neurons p (drive, threshold, release u+ R-, conductances, membrane)
            spikes, releases of every device  <-  all_gather(those of device p)
            ring_p[(k + d_jc) mod D, target_jc] += x_j[k] W_jc     for every synapse jc onto neurons p

    Args:
        key, net, params, T, dt, inputs, state, record, capacity, integrator: as for
            :func:`~jaxlif.network.simulate_network` (``delivery="event"``, no ``spike_grad``).
        mesh: a one-axis :class:`jax.sharding.Mesh` (default :func:`network_mesh`: every device of every
            process).  Every population's size must be divisible by its number of devices ``P``.

    Returns:
        :class:`~jaxlif.network.NetworkResult`, replicated on every device of the mesh (so every process
        can read the whole result).  Poisoned like :func:`~jaxlif.network.simulate_network`'s on invalid
        traced values or an unstable Euler membrane step.

    Raises:
        ValueError: before tracing, for what this simulator does not support: a delay below 3 steps (or not
            known before tracing), per-synapse plasticity, per-neuron plasticity parameters, traced connectivity,
            a population size not divisible by ``P``, fewer than 2 samples, or a mesh with several axes.

    Several processes: call ``jax.distributed.initialize(...)`` in each, then this function with the same
    arguments in every process (docs/networks.md, "Several devices").
    """
    key, dt, steps, structure, params, net, capacity, integrator, seqs, I_const = _checked_run(
        key, net, params, T, dt, inputs, state, capacity, integrator)
    if not jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    mesh = network_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1 or mesh.devices.size < 1:
        raise ValueError(f"mesh must be a one-axis jax.sharding.Mesh of at least one device (see "
                         f"jaxlif.network.shard.network_mesh), got {mesh!r}")
    n_dev = int(mesh.devices.size)
    window = _check_shardable(net, n_dev, steps)
    index = tuple(_device_index(q, n_dev) for q in net.projections)
    statics = (steps, dt, bool(record), capacity, window, integrator, mesh)
    return _stability.warn_if_poisoned(_sharded(key, structure, (params, seqs, I_const, state), index, statics),
                                       "simulate_network_sharded")


def _specs(tree, spec):
    """``spec`` for every leaf of ``tree`` (``None`` subtrees kept)."""
    return jax.tree.map(lambda _: spec, tree)


@functools.partial(jax.jit, static_argnums=(4,))
def _sharded(key, structure, diff, index, statics):
    steps, dt, record, capacity, window, integrator, mesh = statics
    net, ok, state0, neuron_params, table, seqs, I_const = _run_start(key, structure, diff, dt, integrator)
    edges = tuple(_device_edges(q, i, mesh.devices.size) for q, i in zip(net.projections, index))
    exp_euler = integrator == "exp_euler"
    axis, n_dev = mesh.axis_names[0], mesh.devices.size
    perm = _permutation(net, n_dev)
    inv = np.argsort(perm).astype(np.int32)
    local = _local_net(net, n_dev)

    # every per-neuron quantity in device order: device p holds entries p * m .. (p + 1) * m - 1
    def by_device(x, axis_=0):
        return None if x is None else jnp.take(x, perm, axis=axis_)

    start = NetworkState(state0.step, jax.tree.map(by_device, state0.neuron), by_device(state0.g_E),
                         by_device(state0.g_I), by_device(state0.pending_E, 1), by_device(state0.pending_I, 1),
                         state0.synapses)
    local_params = jax.tree.map(by_device, neuron_params)
    I_local = by_device(I_const)
    seqs_local = tuple(by_device(s, 1) for s in seqs)
    if table is not None:
        table = table._replace(head=by_device(table.head), row=by_device(table.row),
                               weight_E=by_device(table.weight_E), weight_I=by_device(table.weight_I))
    neurons = jnp.asarray(perm)

    shard, rows, whole = PartitionSpec(axis), PartitionSpec(None, axis), PartitionSpec()
    state_spec = NetworkState(whole, _specs(start.neuron, shard), shard, shard, rows, rows,
                              _specs(start.synapses, shard))
    table_spec = None if table is None else table._replace(head=shard, tail=whole, row=shard, weight_E=shard,
                                                           weight_I=shard)

    def run(key, start, params, I_local, seqs, table, neurons, edges):
        share = _Share(local, net.sizes, neurons, net.size, edges, capacity, axis)
        (final, _, g_peak), (out, stp) = window_mod.simulate_windows(
            local, start, jnp.bool_(True), seqs, I_local, key, table, params, dt, n_updates=steps - 1, length=window,
            capacity=capacity, record=record, integrator=integrator, share=share)
        return final, g_peak, out, stp

    out_specs = (state_spec, shard, rows, rows)          # time-major traces: (n_steps - 1, neurons)
    in_specs = (whole, state_spec, _specs(local_params, shard), shard, _specs(seqs_local, rows), table_spec,
                shard, _specs(edges, shard))
    final, g_peak, out, stp = _shard_map(run, mesh, in_specs, out_specs)(
        key, start, local_params, I_local, seqs_local, table, neurons, edges)

    # back to the stacked order (the plasticity state is per presynaptic population: already in order)
    def stacked(x, axis_=0):
        return None if x is None else jnp.take(x, inv, axis=axis_)

    final = NetworkState(final.step, jax.tree.map(stacked, final.neuron), stacked(final.g_E),
                         stacked(final.g_I), stacked(final.pending_E, 1), stacked(final.pending_I, 1), final.synapses)
    out = tuple(stacked(x, 1) for x in out)
    result = _result(net, state0, final, ok & (final.step > 0), stacked(g_peak), out, stp, neuron_params[0], dt,
                     record, exp_euler)
    replicated = NamedSharding(mesh, whole)
    return jax.lax.with_sharding_constraint(result, jax.tree.map(lambda _: replicated, result))
