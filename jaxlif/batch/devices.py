r"""Devices, chunks and calls: shard the batch over a mesh, map a chunk function over each share,
stream the batch through one compiled program call after call.

Invariant.  Neuron ``b`` is simulated from draws addressed by ``b`` itself, so splitting the batch
over devices (:func:`jax.shard_map` over a one-axis :class:`jax.sharding.Mesh`), into chunks
(``lax.map``) and into successive calls of one compiled program changes no number: results are
bit-identical to one device, one chunk and one call, and neuron ``b`` does not depend on the batch
size (padding repeats the last neuron's parameters and is cut off).

Work and memory.  A call simulates ``devices x chunks x chunk`` neurons (about ``2**28``
neuron-steps), so the per-neuron cost is that of one chunk whatever the batch, memory is bounded by
the chunk (plus the outputs), a ``progress`` callback hears after every call, and Ctrl-C stops
between calls.  Outputs that cannot fit in memory are refused before anything runs.

Validity.  Every call evaluates the parameter rules of :mod:`jaxlif._checks` on the (possibly
traced) values: an invalid rate is replaced by 0 for the event loops (which then end at once) and
the outputs of every neuron with an invalid value are poisoned (NaN, -1, all-True rasters);
under :func:`jaxlif.checked` the same rules raise naming the argument.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Callable, Sequence, TextIO

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from jaxlif import _checks
from jaxlif.batch.rng import _stream_keys
from jaxlif.batch.windows import BatchResult, _Config
from jaxlif._host import host_argument

__all__ = ["batch_mesh", "progress_bar"]

_BATCH_AXIS = "batch"
_CALL_STEPS = 1 << 28        # neuron-steps per call of the compiled program (about 0.4-2 s on one CPU core)


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh named ``"batch"`` over ``devices`` (default: all visible devices, ``jax.devices()``).

    Pass it as ``mesh=`` to the batch simulators to choose the devices; with several processes
    (``jax.distributed.initialize()``) ``jax.devices()`` lists the devices of every process.
    """
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (_BATCH_AXIS,))


def _classify(tree, batch: int, per_synapse: dict[str, int], labels: list[str]) -> list[bool]:
    """The shape rule: ``()`` shared, ``(batch,)`` per neuron, and for the fields in ``per_synapse``
    (label -> number of synapses n) ``(batch, n)`` per synapse or ``(1, n)`` per synapse shared by
    every neuron.  Returns which leaves are batched (split along axis 0); anything else raises."""
    flags = []
    for leaf, label in zip(jax.tree.leaves(tree), labels):
        shape = tuple(np.shape(leaf))
        n = per_synapse.get(label)
        if shape == ():
            flags.append(False)
        elif shape == (batch,):
            flags.append(True)
        elif n is not None and shape in ((batch, n), (1, n)):
            flags.append(shape[0] == batch and batch > 1)
        else:
            allowed = f"be a scalar or have shape (batch_size,) = ({batch},) (per neuron)"
            if n is not None:
                allowed += f"; this one may also be per synapse: ({batch}, {n}) or (1, {n})"
            raise ValueError(f"{label} has shape {shape}; every parameter and rate must {allowed}")
    return flags


def _available_bytes(mesh: Mesh) -> tuple[float, str]:
    """Memory the outputs may use: device memory on accelerators, else the host's available memory."""
    dev = mesh.devices.flat[0]
    if dev.platform != "cpu":
        try:
            limit = sum(d.memory_stats()["bytes_limit"] for d in mesh.devices.flat if d.process_index ==
                        jax.process_index())
            return float(limit), f"{dev.platform.upper()} memory of this process's devices"
        except Exception:  # noqa: BLE001 - no memory statistics: fall back to the host figure
            pass
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0, "available host memory"
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "host memory"


def _check_output_size(batch: int, cfg_kw: dict, mesh: Mesh) -> None:
    """Refuse, before tracing, a request whose outputs cannot fit (traces of ``record=True`` at large
    ``batch * n_steps``, many spike times): peak about twice the outputs (call results, then the
    concatenated batch)."""
    item = jnp.dtype(jnp.result_type(float)).itemsize
    st = cfg_kw["stats"]
    traces = 3 + (cfg_kw.get("integrator") == "exp_euler")   # v, g_E, g_I (+ spike_offset) and the raster
    per_neuron = 4 + (cfg_kw["n_steps"] * (traces * item + 1) if cfg_kw["record"] else 0)
    if st is not None:
        per_neuron += 8 * item + st.cap * item
    need = 2.0 * batch * per_neuron / max(jax.process_count(), 1)
    have, what = _available_bytes(mesh)
    if need > have:
        parts = []
        if cfg_kw["record"]:
            parts.append(f"record=True keeps 4 traces of (batch_size, n_steps) = ({batch}, {cfg_kw['n_steps']})")
        if st is not None and st.cap:
            parts.append(f"stats.spike_times={st.cap} keeps ({batch}, {st.cap}) spike times")
        why = "; ".join(parts) or f"batch_size={batch} per-neuron outputs"
        raise ValueError(f"the outputs would need about {need / 2**30:.3g} GiB ({why}), more than the "
                         f"{have / 2**30:.3g} GiB of {what}; pass stats=jaxlif.batch.Stats(...) for per-neuron "
                         f"statistics in O(batch) memory, or a smaller batch_size or T")


def _plan(batch: int, n_dev: int, n_steps: int, batch_chunk: int, window: int | None, default_window) -> dict:
    """Chunk (balanced), window (balanced), chunks per call and number of calls."""
    per_dev = -(-batch // n_dev)
    n_chunks_total = -(-per_dev // batch_chunk)
    chunk = -(-per_dev // n_chunks_total)                 # balanced chunks
    default = window is None
    window = default_window(chunk) if default else window
    window = min(_checks.check_count("window", window, minimum=1), n_steps - 1)
    while default and window > 64 and (n_steps + window + 2) * (window + 2) >= 2 ** 31:
        window //= 2                                       # long runs of small chunks: keep event times in int32
    n_windows = -(-(n_steps - 1) // window)
    window = -(-(n_steps - 1) // n_windows)               # balanced windows
    if (n_windows * window + 2) * (window + 2) >= 2 ** 31:
        raise ValueError(f"window={window} steps is too large for int32 event times with n_steps={n_steps}; "
                         f"pass a smaller window")
    per_call = max(1, min(n_chunks_total, _CALL_STEPS // (chunk * n_steps)))
    n_calls = -(-n_chunks_total // per_call)
    per_call = -(-n_chunks_total // n_calls)              # balanced calls
    return dict(chunk=chunk, n_chunks=per_call, n_calls=n_calls, window=window, n_windows=n_windows)


def _slab(a, lo: int, size: int):
    """Rows ``lo .. lo+size-1`` of a per-neuron array, padded by repeating its last row (NumPy for a
    NumPy array: nothing to compile)."""
    part = a[lo:lo + size]
    if part.shape[0] == size:
        return part
    xp = np if isinstance(a, np.ndarray) else jnp
    return xp.concatenate([xp.asarray(part), xp.broadcast_to(xp.asarray(a[-1:]), (size - part.shape[0],)
                                                             + tuple(a.shape[1:]))])


def _refuse_grad(fn, message: str):
    """``fn`` with a derivative rule that raises ``message`` (the event loops cannot be differentiated)."""
    @jax.custom_jvp
    def no_grad(*args):
        return fn(*args)

    @no_grad.defjvp
    def _jvp(primals, tangents):
        raise TypeError(message)

    return no_grad


def _run(chunk_fn, key_tags, key, batch: int, tree, labels: list[str], rules: list[str], per_synapse: dict,
         I, cfg_kw: dict, default_chunk: int, default_window, mesh, batch_chunk, window,
         progress: Callable[[int, int], None] | None, grad_message: str) -> BatchResult:
    """Plan the chunks and calls, refuse outputs that cannot fit, run the compiled program call after
    call and assemble the batch."""
    mesh = batch_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
        raise TypeError(f"mesh must be a one-axis jax.sharding.Mesh (see jaxlif.batch.batch_mesh), got {mesh!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable progress(done, total) or None, got {progress!r}")
    n_dev = mesh.devices.size
    batch_chunk = default_chunk if batch_chunk is None else _checks.check_count("batch_chunk", batch_chunk, 1)
    flags = _classify(tree, batch, per_synapse, labels)
    plan = _plan(batch, n_dev, cfg_kw["n_steps"], batch_chunk, window, default_window)
    _check_output_size(batch, cfg_kw, mesh)
    cfg = _Config(window=plan["window"], n_windows=plan["n_windows"], chunk=plan["chunk"], n_chunks=plan["n_chunks"],
                  platform=mesh.devices.flat[0].platform, **cfg_kw)
    per_call = n_dev * cfg.n_chunks * cfg.chunk

    leaves, treedef = jax.tree.flatten(tree)
    batched = [leaf if isinstance(leaf, jax.Array) else np.asarray(leaf) for leaf, f in zip(leaves, flags) if f]
    shared = [host_argument(leaf) for leaf, f in zip(leaves, flags) if not f]
    if not jax.dtypes.issubdtype(host_argument(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)             # legacy uint32[2] key: same program as a typed key
    program = _refuse_grad(partial(_program_jit, chunk_fn, treedef, tuple(flags), tuple(zip(labels, rules)), cfg,
                                   mesh, tuple(key_tags), per_call), grad_message)
    outs = []
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((key, batched, shared, I))):
        progress = None                                  # inside a user's jit/vmap: nothing runs yet
    for i in range(plan["n_calls"]):
        lo = i * per_call
        parts = [host_argument(_slab(a, lo, per_call)) for a in batched]
        outs.append(program(key, np.uint32(lo), parts, shared, host_argument(I)))
        if progress is not None and i > 0:
            jax.block_until_ready(outs[-2].spike_count)     # the next call is already queued
            progress(min(lo, batch), batch)
    if progress is not None:
        jax.block_until_ready(outs[-1].spike_count)
        progress(batch, batch)
    if len(outs) == 1 and all(x.shape[0] == batch for x in jax.tree.leaves(outs[0])):
        return outs[0]                                  # one call, no padding: nothing to gather (no program)
    return _gather(tuple(outs), batch)


@partial(jax.jit, static_argnums=(1,))
def _gather(outs, batch: int):
    """Concatenate the calls' results and cut the padding off (a jitted program, so that it also
    works on global arrays spread over several processes)."""
    return jax.tree.map(lambda *xs: jnp.concatenate(xs)[:batch], *outs)


def _lane_ok(x, rule: str, dt: float, C: int):
    """Per-neuron verdict ``(C,)`` of a validity rule on a leaf of shape (), (C,), (C, n) or (1, n)."""
    ok = _checks._TRACED_RULES[rule][0](jnp.asarray(x), dt)
    if ok.ndim > 1:
        ok = jnp.all(ok, axis=tuple(range(1, ok.ndim)))
    return jnp.broadcast_to(jnp.reshape(ok, (-1,)) if ok.ndim else ok, (C,))


@partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7))
def _program_jit(chunk_fn, treedef, flags, rules, cfg, mesh, key_tags, per_call, key, lo, batched, shared, I):
    """One compiled program for ``per_call`` neurons starting at id ``lo``: derive the stream keys, run
    ``chunk_fn`` over every chunk (``lax.map``) of every device's share (``shard_map``), poison
    invalid neurons."""
    # checked mode (jaxlif.checked): one debug_check per argument, on the whole arrays
    b_it, s_it = iter(batched), iter(shared)
    for f, (label, rule) in zip(flags, rules):
        _checks.traced_rule(label, next(b_it) if f else next(s_it), rule, cfg.dt)
    _checks.traced_rule("I_inj", I, "finite")
    dtype = jnp.result_type(float)
    if cfg.scalar_current:
        I_win = jnp.broadcast_to(I.astype(dtype), (cfg.n_windows,))
    else:
        I_pad = jnp.concatenate([I[:-1], jnp.broadcast_to(I[-2:-1], (cfg.n_windows * cfg.window - I.shape[0] + 1,))])
        I_win = I_pad.reshape(cfg.n_windows, cfg.window)
    keys = jnp.stack([jnp.concatenate([_stream_keys(key, 2 * t), _stream_keys(key, 2 * t + 1)]) for t in key_tags])
    ids = lo + jnp.arange(per_call, dtype=jnp.uint32)

    def local(ids, batched, shared, keys, I_win):
        split = lambda a: a.reshape((cfg.n_chunks, cfg.chunk) + a.shape[1:])  # noqa: E731
        I_ok = jnp.all(jnp.isfinite(I_win))

        def one(xs):
            ids_c, parts = xs
            b_it, s_it = iter(parts), iter(shared)
            leaves, ok = [], I_ok & jnp.ones((cfg.chunk,), bool)
            for f, (_, rule) in zip(flags, rules):
                leaf = next(b_it) if f else next(s_it)
                lane_ok = _lane_ok(leaf, rule, cfg.dt, cfg.chunk)
                if rule == "rate":           # an invalid rate drives no events: the loops end at once
                    leaf = jnp.where(_checks._TRACED_RULES[rule][0](leaf, cfg.dt), leaf, 0.0)
                leaves.append(leaf)
                ok = ok & lane_ok
            result, done = chunk_fn(ids_c, *jax.tree.unflatten(treedef, leaves), keys, I_win, cfg)
            return _checks.poison(ok & done, result)

        out = jax.lax.map(one, (split(ids), [split(a) for a in batched]))
        return jax.tree.map(lambda a: a.reshape((cfg.n_chunks * cfg.chunk,) + a.shape[2:]), out)

    spec = PartitionSpec(_BATCH_AXIS)
    in_specs = (spec, [spec] * len(batched), [PartitionSpec()] * len(shared), PartitionSpec(), PartitionSpec())
    return _shard_map(local, mesh, in_specs, spec)(ids, batched, shared, keys, I_win)


def _shard_map(f, mesh, in_specs, out_specs):
    """``jax.shard_map`` without replication checks (every output is per-device along the batch axis)."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # jax < 0.7
    return shard_map(f, mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def progress_bar(label: str = "simulating", stream: TextIO | None = None,
                 width: int = 30) -> Callable[[int, int], None]:
    """A text progress bar for the ``progress=`` argument of the batch simulators.

    ``simulate_stp_lif_batch(key, 10**6, progress=progress_bar())`` prints ``simulating [####....]
    250000/1000000 neurons (12 s, 36 s left)`` to ``stream`` (default ``sys.stderr``) after every call
    of the compiled program, and a newline when done.
    """
    import sys
    import time
    stream = sys.stderr if stream is None else stream
    t0 = time.perf_counter()

    def show(done: int, total: int) -> None:
        frac = done / total if total else 1.0
        bar = "#" * int(round(width * frac))
        elapsed = time.perf_counter() - t0
        eta = f", {elapsed * (1 - frac) / frac:.0f} s left" if 0 < frac < 1 else ""
        end = "\n" if done >= total else ""
        stream.write(f"\r{label} [{bar:.<{width}}] {done}/{total} neurons ({elapsed:.0f} s{eta}){end}")
        stream.flush()

    return show

