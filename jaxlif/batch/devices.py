r"""Devices and chunks: pad the batch, shard it over a mesh, map a chunk function over each share.

Invariant.  Neuron ``b`` is simulated from draws addressed by ``b`` itself, so splitting the batch
over devices (:func:`jax.shard_map` over a one-axis :class:`jax.sharding.Mesh`) and into chunks
(``lax.map``) changes no number: results are bit-identical to one device and one chunk, and
neuron ``b`` does not depend on the batch size (padding repeats the last neuron's parameters and is
cut off).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from jaxlif import _checks
from jaxlif.batch.rng import _stream_keys
from jaxlif.batch.windows import BatchResult, _Config

__all__ = ["batch_mesh"]

_BATCH_AXIS = "batch"


def batch_mesh(devices=None) -> Mesh:
    """A one-axis mesh named ``"batch"`` over ``devices`` (default: all visible devices, ``jax.devices()``).

    Pass it as ``mesh=`` to the batch simulators to choose the devices; with several processes
    (``jax.distributed.initialize()``) ``jax.devices()`` lists the devices of every process.
    """
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (_BATCH_AXIS,))


def _split_batched(tree, batch: int, name: str):
    """Leaves of shape ``(batch,)`` are per-neuron, scalars are shared; anything else is an error."""
    leaves, treedef = jax.tree.flatten(tree)
    flags = []
    for path, leaf in zip(jax.tree_util.tree_flatten_with_path(tree)[0], leaves):
        shape = np.shape(leaf)
        if shape == ():
            flags.append(False)
        elif shape == (batch,):
            flags.append(True)
        else:
            # tree = (params, rate_E, rate_I) from the simulators: name the argument the user passed
            keys = path[0]
            top = getattr(keys[0], "idx", None) if keys else None
            if top is not None and top < 2 and name == "rates":
                label = ("rate_E", "rate_I")[top]
            elif top is not None and top < 3 and name == "params":
                label = ("params" + jax.tree_util.keystr(keys[1:]), "rate_E", "rate_I")[top]
            else:
                label = name + jax.tree_util.keystr(keys)
            raise ValueError(f"{label} has shape {shape}; every parameter and rate must be a scalar or have "
                             f"shape (batch_size,) = ({batch},)")
    return leaves, treedef, flags


def _pad(x, size: int):
    x = jnp.asarray(x)
    if size <= x.shape[0]:
        return x
    return jnp.concatenate([x, jnp.broadcast_to(x[-1:], (size - x.shape[0],) + x.shape[1:])])


def _run(chunk_fn, key_tags, key, batch: int, tree, I, cfg_kw: dict, blocks, default_chunk: int, default_window,
         mesh, batch_chunk, window) -> BatchResult:
    """Pad, shard and chunk the batch, run ``chunk_fn`` everywhere, and cut the padding off."""
    mesh = batch_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
        raise TypeError(f"mesh must be a one-axis jax.sharding.Mesh (see jaxlif.batch.batch_mesh), got {mesh!r}")
    n_dev = mesh.devices.size
    per_dev = -(-batch // n_dev)
    batch_chunk = default_chunk if batch_chunk is None else _checks.check_count("batch_chunk", batch_chunk, 1)
    n_chunks = -(-per_dev // batch_chunk)
    chunk = -(-per_dev // n_chunks)                        # balanced chunks
    padded = n_dev * n_chunks * chunk
    n_steps = cfg_kw["n_steps"]
    if window is None:
        window = default_window(chunk)
    window = min(_checks.check_count("window", window, minimum=1), n_steps - 1)
    n_windows = -(-(n_steps - 1) // window)
    window = -(-(n_steps - 1) // n_windows)               # balanced windows
    if (n_windows * window + 2) * (window + 2) >= 2 ** 31:
        raise ValueError(f"window={window} steps is too large for int32 event times with n_steps={n_steps}; "
                         f"pass a smaller window")
    cfg = _Config(window=window, n_windows=n_windows, chunk=chunk, n_chunks=n_chunks,
                  block_E=min(blocks[0](window), window), block_I=min(blocks[1](window), window), **cfg_kw)

    leaves, treedef, flags = _split_batched(tree, batch, "params")
    batched = [jnp.asarray(leaf) for leaf, f in zip(leaves, flags) if f]
    shared = [jnp.asarray(leaf) for leaf, f in zip(leaves, flags) if not f]
    if not jax.dtypes.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)             # legacy uint32[2] key: same program as a typed key
    program = _program(chunk_fn, treedef, tuple(flags), cfg, mesh, tuple(key_tags), batch, padded)
    return program(key, batched, shared, jnp.asarray(I))


@partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5, 6, 7))
def _program_jit(chunk_fn, treedef, flags, cfg, mesh, key_tags, batch, padded, key, batched, shared, I):
    """One compiled program: pad the batch, derive the stream keys, run ``chunk_fn`` over every chunk
    (``lax.map``) of every device's share of the batch (``shard_map``), drop the padding."""
    batch_spec = PartitionSpec(_BATCH_AXIS)
    batched = [_pad(a, padded) for a in batched]
    if cfg.scalar_current:
        I_win = jnp.broadcast_to(I.astype(jnp.result_type(float)), (cfg.n_windows,))
    else:
        I_win = _pad(I[:-1], cfg.n_windows * cfg.window).reshape(cfg.n_windows, cfg.window)
    keys = jnp.stack([jnp.concatenate([_stream_keys(key, 2 * t), _stream_keys(key, 2 * t + 1)])
                      for t in key_tags])
    ids = jnp.arange(padded, dtype=jnp.uint32)

    def local(ids, batched, shared, keys, I_win):
        b_it, s_it = iter(batched), iter(shared)
        leaves = [next(b_it) if f else next(s_it) for f in flags]
        split = lambda a: a.reshape((cfg.n_chunks, cfg.chunk) + a.shape[1:])  # noqa: E731

        def one(xs):
            ids_c, parts = xs
            it = iter(parts)
            tree = jax.tree.unflatten(treedef, [next(it) if f else a for a, f in zip(leaves, flags)])
            return chunk_fn(ids_c, *tree, keys, I_win, cfg)

        out = jax.lax.map(one, (split(ids), [split(a) for a, f in zip(leaves, flags) if f]))
        return jax.tree.map(lambda a: a.reshape((cfg.n_chunks * cfg.chunk,) + a.shape[2:]), out)

    specs_out = BatchResult(*(batch_spec if (i == 0 or cfg.record) else None for i in range(5)))
    in_specs = (batch_spec, [batch_spec] * len(batched), [PartitionSpec()] * len(shared),
                PartitionSpec(), PartitionSpec())
    out = _shard_map(local, mesh, in_specs, specs_out)(ids, batched, shared, keys, I_win)
    return jax.tree.map(lambda a: a[:batch], out)


def _program(*static):
    return partial(_program_jit, *static)


def _shard_map(f, mesh, in_specs, out_specs):
    """``jax.shard_map`` without replication checks (every output is per-device along the batch axis)."""
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map  # jax < 0.7
    return shard_map(f, mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)

