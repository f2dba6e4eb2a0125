r"""Spike delivery: presynaptic values times weights, added to the postsynaptic pending-input ring.

Every projection does, at each step ``it``, for each presynaptic neuron ``j``::

    pending[(it + d_jc) mod D, target_jc] += x_j * W_jc          for every synapse c of j

with ``x_j`` the presynaptic value (the spike, or its release ``u+ R-`` under plasticity), ``W_jc``
the weight [nS] (times the per-synapse release under per-synapse plasticity), ``d_jc >= 1`` the
delay in steps and ``D`` the ring length (the network's largest delay).  Two layouts:

- *dense*: ``W`` is ``(n_post, n_pre)``, every presynaptic neuron reaches every target with one
  delay per projection; the addition is ``W @ x`` into one slot;
- *sparse*: padded rows per presynaptic neuron (``targets``, ``W``, ``delays`` of shape
  ``(n_pre, max_out)``; padding has the out-of-range target ``n_post`` and is dropped), with one
  delay for the projection (one slot) or one per synapse.

Two ways to compute the same sum (the forward values agree up to the order of additions):

- ``"event"``: only the rows of presynaptic neurons that spiked are touched (:func:`active_rows`),
  in chunks of ``capacity`` rows (a bounded loop of ``ceil(n_active / capacity)`` chunks, at most
  ``ceil(n_pre / capacity)``); the cost follows the number of spikes, not of synapses;
- ``"full"``: every synapse, every step (``W @ x``, or one scatter-add over all edges).

Derivatives: :func:`deliver` is a ``jax.custom_jvp`` whose tangent is always the *full* sum,
``d(pending) + sum_j (dx_j W_jc + x_j dW_jc)``.  So gradients (forward or reverse mode) are the
same with either method, including the surrogate derivative of neurons that did not spike
(``x_j = 0`` but ``dx_j != 0``), and the event path's loop is never differentiated.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

__all__ = ["Layout", "active_rows", "deliver"]


class Layout(NamedTuple):
    """Static description of one projection's delivery (hashable).

    Attributes:
        sparse: padded-row layout (else dense ``(n_post, n_pre)``).
        ring: ring length ``D`` (the largest delay in steps of the network).
        delay: the projection's one delay in steps, or 0 when a sparse projection has one per synapse.
        method: ``"event"`` or ``"full"``.
        capacity: rows per chunk of the event method.
        offset, n_post: the targets are neurons ``offset .. offset + n_post - 1`` of the ring.
    """

    sparse: bool
    ring: int
    delay: int
    method: str
    capacity: int
    offset: int
    n_post: int


def _add_rows(layout: Layout, acc, x, W, targets, delays, it):
    """``acc`` plus ``x_j W_j`` of the given rows (``x, W, targets, delays`` restricted to them).

    ``acc`` is ``(n_post,)`` when the projection has one delay (the caller adds it to that slot), else
    ``(D, n_post)``.  Padding (targets ``>= n_post``) is dropped.
    """
    if not layout.sparse:
        return acc + W @ x
    if layout.delay:
        return acc.at[targets].add(x[:, None] * W, mode="drop")
    return acc.at[(it + delays) % layout.ring, targets].add(x[:, None] * W, mode="drop")


def _into_ring(layout: Layout, pending, acc, it):
    lo, hi = layout.offset, layout.offset + layout.n_post
    if layout.delay:
        return pending.at[(it + layout.delay) % layout.ring, lo:hi].add(acc)
    return pending.at[:, lo:hi].add(acc)


def _zeros(layout: Layout, pending):
    return jnp.zeros(((layout.n_post,) if layout.delay else (layout.ring, layout.n_post)), pending.dtype)


def _full(layout: Layout, pending, x, W, targets, delays, it):
    """``pending`` plus the contribution of every synapse (the linear map used for tangents)."""
    return _into_ring(layout, pending, _add_rows(layout, _zeros(layout, pending), x, W, targets, delays, it), it)


def active_rows(active: jax.Array, capacity: int):
    """The indices of the ``True`` entries of ``active`` ``(n,)``, first, padded with 0 to a multiple of
    ``capacity``, and their number: ``(order, n_active)``.  Computed once per presynaptic population
    and step, and shared by its projections."""
    n = active.shape[0]
    size = -(-n // capacity) * capacity
    position = _inclusive_count(active) - 1
    order = jnp.zeros(size, jnp.int32).at[jnp.where(active, position, size)].set(
        jnp.arange(n, dtype=jnp.int32), mode="drop")
    return order, position[-1] + 1


_BLOCK = 32


def _inclusive_count(active: jax.Array) -> jax.Array:
    """``cumsum(active)`` as int32, computed in blocks of 32 with a triangular matrix product (exact:
    block sums <= 32) and a cumsum over the blocks; several times faster than ``jnp.cumsum`` on CPU."""
    n = active.shape[0]
    blocks = jnp.pad(active, (0, -n % _BLOCK)).reshape(-1, _BLOCK).astype(jnp.float32)
    within = (blocks @ jnp.tril(jnp.ones((_BLOCK, _BLOCK), jnp.float32)).T).astype(jnp.int32)
    before = jnp.cumsum(within[:, -1]) - within[:, -1]
    return (within + before[:, None]).reshape(-1)[:n]


def _event(layout: Layout, pending, x, W, targets, delays, rows, it):
    """``pending`` plus the contribution of the rows listed by ``rows = active_rows(...)``, ``capacity``
    rows at a time (a loop of ``ceil(n_active / capacity)`` chunks: it always ends).

    The loop adds into a fresh accumulator, ``(n_post,)`` for a projection with one delay, which is
    then added to the ring: XLA updates a small loop buffer in place, while carrying the whole ring
    through the loop costs several times the delivery itself.
    """
    K = layout.capacity
    order, n_active = rows

    def chunk(carry):
        i, acc = carry
        idx = jax.lax.dynamic_slice_in_dim(order, i * K, K)
        xr = jnp.where(i * K + jnp.arange(K) < n_active, x[idx], 0.0)
        if not layout.sparse:
            return i + 1, _add_rows(layout, acc, xr, W[:, idx], None, None, it)
        return i + 1, _add_rows(layout, acc, xr, W[idx], targets[idx], delays[idx], it)

    n_chunks = (n_active + (K - 1)) // K
    _, acc = jax.lax.while_loop(lambda c: c[0] < n_chunks, chunk, (jnp.int32(0), _zeros(layout, pending)))
    return _into_ring(layout, pending, acc, it)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def deliver(layout: Layout, pending, x, W, targets, delays, rows, it):
    """Add one projection's spikes to the pending-input ring of its targets.

    Args:
        layout: :class:`Layout` (static).
        pending: ``(D, n)`` conductance [nS] that will arrive at the next ``D`` samples at the
            ``n`` neurons of the network; slot ``m mod D`` holds what arrives at sample ``m``.
        x: ``(n_pre,)`` presynaptic values (0 for silent neurons).
        W: weights [nS], ``(n_post, n_pre)`` (dense) or ``(n_pre, max_out)`` (sparse).
        targets, delays: sparse only, ``(n_pre, max_out)`` int (dense: ignored, pass ``None``).
        rows: ``active_rows(spikes, capacity)`` of the presynaptic population (event method; rows
            outside it must have ``x = 0``), or ``None`` for the full method.
        it: the current step (int); a spike of step ``it`` with delay ``d`` lands in slot ``it + d``.

    Returns:
        The updated ``pending`` ``(D, n)``.
    """
    pending, x, W = jnp.asarray(pending), jnp.asarray(x), jnp.asarray(W)
    targets, delays = (None, None) if targets is None else (jnp.asarray(targets), jnp.asarray(delays))
    if layout.method == "full":
        return _full(layout, pending, x, W, targets, delays, it)
    return _event(layout, pending, x, W, targets, delays, rows, it)


def _deliver_jvp(layout, primals, tangents):
    pending, x, W, targets, delays, rows, it = primals
    d_pending, dx, dW = tangents[:3]
    x, W = jnp.asarray(x), jnp.asarray(W)
    targets, delays = (None, None) if targets is None else (jnp.asarray(targets), jnp.asarray(delays))
    out = deliver(layout, pending, x, W, targets, delays, rows, it)
    d_out = jnp.zeros_like(out) if isinstance(d_pending, SymbolicZero) else jnp.asarray(d_pending)
    if not isinstance(dx, SymbolicZero):
        d_out = _full(layout, d_out, dx, W, targets, delays, it)
    if not isinstance(dW, SymbolicZero):
        d_out = _full(layout, d_out, x, dW, targets, delays, it)
    return out, d_out


deliver.defjvp(_deliver_jvp, symbolic_zeros=True)
