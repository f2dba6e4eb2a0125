r"""Random streams of the batch simulators: a counter-based hash, uniforms in (0, 1], geometric gaps.

Law.  Every random number is ``threefry2x32(key_words, (id, ordinal))``: the 20-round
threefry-2x32 hash (Salmon et al. 2011, the function behind ``jax.random``'s default
generator) of a counter made of an identity (neuron, or neuron x synapse) and the index of the
draw.  Nothing depends on where a draw happens (chunk, window, device), only on what it is,
which is why the batch simulators give the same numbers whatever the chunking or device count.

- :func:`_uniform` maps hash words to a uniform in ``(0, 1]`` with 24 (float32) or 53
  (float64) bits; every value is an integer times a power of two, so the law is exact at that
  resolution (the resolution of a per-step test ``uniform < p``).
- :func:`_geometric` turns a uniform into a gap ``G >= 1`` with ``P(G > g) = (1-q)^g``, the gap
  between steps with an event when each step has one with probability ``q``.

The hash is written with ``jax.numpy`` integer ops (:mod:`jaxlif._threefry`, tested bit for bit
against ``jax.extend.random.threefry_2x32``) because XLA:CPU runs that form 3-4x faster than
the primitive; on GPUs the primitive (one fused kernel) is used instead (``_hash``).  Both are
the same function, so the backend changes no number.

Invalid rates never stall a stream: :func:`_gap_scale` maps ``q <= 0`` (including ``-0.0``), ``q > 1``
and NaN to "no event" (gap ``cap``), and the simulators poison the outputs of such neurons.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif._threefry import hash_words, threefry2x32

__all__: list[str] = []  # private module of jaxlif.batch

# The hash (jaxlif._threefry): the names the batch modules and tests use.
_threefry2x32 = threefry2x32
_hash = hash_words


def _uniform(w0, w1, dtype):
    """A uniform number in ``(0, 1]``: 24 bits of ``w0`` (float32; ``w1`` unused) or 53 bits of
    ``(w0, w1)`` (float64).  Exact: every value is an integer times a power of two."""
    if jnp.dtype(dtype) == jnp.float64:
        m = (w0 >> np.uint32(11)).astype(dtype) * 4294967296.0 + w1.astype(dtype)
        return (m + 1.0) * 2.0 ** -53
    return ((w0 >> np.uint32(8)).astype(dtype) + 1.0) * 2.0 ** -24


def _geometric(u, scale, cap: int):
    """Gap ``G >= 1`` with ``P(G > g) = (1-q)^g`` from ``u`` in (0, 1], given ``scale = -1/log(1-q)``.

    ``G = 1 + floor(-log(u) * scale)``, since ``P(-log(u) scale >= g) = P(u <= (1-q)^g)``.  ``q = 1``
    (scale 0) gives 1; ``q = 0`` (scale inf) and gaps beyond ``cap`` give ``cap``.
    """
    x = -jnp.log(u) * scale
    return jnp.where(scale < jnp.inf, 1.0 + jnp.floor(jnp.minimum(x, cap)), cap).astype(jnp.int32)


def _gap_scale(log1m_q):
    """``-1/log(1-q)`` from ``log(1-q)``: inf (no event) when q = 0, 0 when q = 1.

    Anything but ``log(1-q) < 0`` (q = +-0, q < 0, q > 1 or NaN: ``log1p`` of those is >= 0 or NaN)
    gives inf, so an invalid rate can never produce gaps <= 0 that would stall an event loop.
    """
    return jnp.where(log1m_q < 0, -1.0 / jnp.where(log1m_q < 0, log1m_q, -1.0), jnp.inf)


def _stream_keys(key, tag: int):
    """Two uint32 words of key material for one random stream, from the user's key."""
    return jax.random.bits(jax.random.fold_in(key, tag), (2,), jnp.uint32)
