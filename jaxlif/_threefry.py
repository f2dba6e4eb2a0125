"""The threefry-2x32 hash written with ``jax.numpy`` integer operations, shared by the simulators' per-step
draws: the batch simulators' streams (:mod:`jaxlif.batch.rng`), the network's Poisson drive
(:func:`jaxlif.network.step.drive_uniform`) and the per-step Poisson inputs (:func:`uniform_at`, used by
:mod:`jaxlif.inputs`).

Threefry-2x32 with 20 rounds (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3") is the
function behind ``jax.random``'s default generator.  JAX lowers its primitive
(``jax.extend.random.threefry_2x32``) on CPU as a loop over the five groups of four rounds, so XLA:CPU passes
over the data once per group; written out as plain integer operations, the 20 rounds fuse into one kernel,
3-4x faster on CPU.  On other backends the primitive is used (:func:`hash_words`).  Both compute the same
function, bit for bit (``tests/test_batch.py``: the hash and :func:`counter_words`; ``tests/test_inputs.py``:
:func:`uniform_at` against ``jax.random``), so no number depends on the choice.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__: list[str] = []  # private

#: Rotation distances of the even and the odd groups of four rounds (Salmon et al. 2011, table 4).
ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
#: The key schedule's parity constant.
PARITY = np.uint32(0x1BD11BDA)


def rotl(x, d: int):
    """32-bit rotation of ``x`` left by ``d`` bits."""
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32, 20 rounds: key ``(k0, k1)``, counter ``(x0, x1)`` -> two uint32 words.

    The same function as ``jax.extend.random.threefry_2x32`` (which takes the counter as the two
    halves of one array); all arguments broadcast.
    """
    k0, k1, x0, x1 = (jnp.asarray(a, jnp.uint32) for a in (k0, k1, x0, x1))
    ks = (k0, k1, k0 ^ k1 ^ PARITY)
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for group in range(5):
        for r in ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = rotl(x1, r) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + np.uint32(group + 1)
    return x0, x1


def hash_words(k0, k1, x0, x1, platform: str = "cpu"):
    """:func:`threefry2x32` on CPU; ``jax.extend.random.threefry_2x32`` (the same bits) elsewhere."""
    if platform == "cpu":
        return threefry2x32(k0, k1, x0, x1)
    from jax.extend.random import threefry_2x32
    x0, x1 = jnp.broadcast_arrays(jnp.asarray(x0, jnp.uint32), jnp.asarray(x1, jnp.uint32))
    out = threefry_2x32(jnp.stack([jnp.asarray(k0, jnp.uint32), jnp.asarray(k1, jnp.uint32)]),
                        jnp.concatenate([x0.ravel(), x1.ravel()]))
    return out[:x0.size].reshape(x0.shape), out[x0.size:].reshape(x0.shape)


def counter_words(key_data, n: int, platform: str | None = None) -> jax.Array:
    """``jax.extend.random.threefry_2x32(key_data, arange(n, dtype=uint32))``, bit for bit: ``n`` words.

    That function hashes the counter's two halves as pairs: entries ``i`` and ``i + h`` (``h = ceil(n / 2)``;
    an odd ``n`` is padded with one 0) form one counter, whose first word is output ``i`` and second output
    ``i + h``.  ``key_data``: the key's two words (a ``(2,)`` array or a pair); ``platform``: as for
    :func:`hash_words` (default: JAX's default backend)."""
    h = (n + 1) // 2
    x0 = jnp.arange(h, dtype=jnp.uint32)
    x1 = jnp.concatenate([jnp.arange(h, n, dtype=jnp.uint32), jnp.zeros((2 * h - n,), jnp.uint32)])
    y0, y1 = hash_words(key_data[0], key_data[1], x0, x1, platform or jax.default_backend())
    return jnp.concatenate([y0, y1])[:n]


def unit_float32(words) -> jax.Array:
    """uint32 ``words`` -> float32 in [0, 1) as ``jax.random.uniform`` makes them: the 23 high bits as the
    mantissa of a number in [1, 2), minus 1."""
    mantissa = (jnp.asarray(words, jnp.uint32) >> np.uint32(9)) | np.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - jnp.float32(1.0)


def fold_in_words(key_data, data, platform: str | None = None):
    """The words of ``jax.random.key_data(jax.random.fold_in(key, data))`` for a threefry key with words
    ``key_data``: the hash of the counter ``(0, data)`` (``data`` a scalar, taken as uint32)."""
    return hash_words(key_data[0], key_data[1], jnp.uint32(0), jnp.asarray(data).astype(jnp.uint32),
                      platform or jax.default_backend())


def uniform_at(key, step, shape: tuple, dtype) -> jax.Array:
    """``jax.random.uniform(jax.random.fold_in(key, step), shape, dtype)``, bit for bit.

    For a typed threefry key, float32 and JAX's partitionable threefry (``jax_threefry_partitionable``, the
    default), computed here with :func:`hash_words`: ``fold_in`` hashes the counter ``(0, step)`` under the
    key, and the uniform's words are the two output words of the counters ``(0, i)`` (``i`` the flat index
    in ``shape``) XOR-ed, made a float by :func:`unit_float32`.  JAX itself runs each
    of the two hashes as a loop over the rounds on CPU, a few small kernels per hash and simulated step: most
    of a single neuron's step (``simulate_cond_lif_poisson`` is 3.8x faster this way,
    ``benchmarks/bench_uniforms.py``).  Any other case calls ``jax.random``."""
    typed = hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    if (not typed or jnp.dtype(dtype) != jnp.float32 or str(jax.random.key_impl(key)) != "threefry2x32"
            or not jax.config.jax_threefry_partitionable):
        return jax.random.uniform(jax.random.fold_in(key, step), shape, dtype)
    platform = jax.default_backend()
    k0, k1 = fold_in_words(jax.random.key_data(key), step, platform)
    index = jnp.arange(int(np.prod(shape)), dtype=jnp.uint32).reshape(shape)
    w0, w1 = hash_words(k0, k1, jnp.zeros_like(index), index, platform)
    return unit_float32(w0 ^ w1)
