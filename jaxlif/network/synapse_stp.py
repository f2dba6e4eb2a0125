r"""Per-synapse plasticity (``stp_mode="synapse"``), advanced at presynaptic spikes only.

State of a projection: ``u, R`` of every synapse, in the weights' layout, and per presynaptic
neuron ``j`` the sample ``m_j`` at which its synapses' ``u, R`` hold.  The value at a later sample
``it`` is the tutorial's Euler scheme over ``k = it - m_j`` silent steps, in closed form
(:func:`jaxlif.plasticity.euler_decay_factor`, as :func:`jaxlif.plasticity.stp_decay` and the batch
simulators use it)::

    u(it) = u a_f^k,        R(it) = 1 - (1 - R) a_d^k,        a_x = 1 - dt/tau_x   (k = 0: unchanged)

A spike of ``j`` at step ``it`` takes its synapses to ``it`` that way, then applies the spiking step
(:func:`jaxlif.plasticity.stp_efficacy`: ``u+ = a_f u + U0 (1 - u)``, ``R+ = a_d R + (1 - a_d) - u+ R``,
release ``u+ R``) and sets ``m_j = it + 1``.  Silent synapses are not touched: the work of a step is
proportional to (spikes x out-degree), the memory to the number of synapses.  The result equals the
step-by-step update of every synapse (:func:`step_all`, ``m_j = it + 1`` after every step) up to
rounding (``a^k`` as ``exp(k log1p(-dt/tau))`` instead of ``k`` products).

Two updates, one state:

- :func:`deliver_events`: only the rows (dense: columns) of the presynaptic neurons that spiked,
  gathered ``capacity`` at a time as :mod:`jaxlif.network.delivery`'s event method does for the
  weights; each chunk advances those synapses, updates them, and adds ``x_j W_jc u+_jc R-_jc`` to the
  pending input.  A ``jax.custom_jvp``: the tangent is that of the same update written over every
  synapse (:func:`_all_rows`), so ``jax.grad``/``jax.jvp`` with respect to weights, plasticity
  parameters and the delivered values work and the chunk loop is never differentiated.  The
  presynaptic *spikes* get no derivative through ``u, R`` here (a silent neuron's synapses are not
  updated, so a surrogate derivative of its spike has nowhere to go).
- :func:`step_all`: every synapse every step (``delivery="full"``, and surrogate gradients carried
  through the recurrent spikes, ``grad_estimator="full"``, where the spikes' derivatives must reach
  ``u, R``).

Units: dimensionless ``u, R``; weights [nS]; dt [ms].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxlif.network.delivery import Layout, _add_rows, _full, _into_ring, _zeros
from jaxlif.plasticity import STPParams, euler_decay_factor, stp_efficacy

__all__ = ["advance", "step_all", "deliver_events"]


def advance(stp: STPParams, u: jax.Array, R: jax.Array, k: ArrayLike, dt: float) -> tuple[jax.Array, jax.Array]:
    """``u, R`` after ``k >= 0`` silent Euler steps (module docstring); where ``k = 0`` they are
    returned unchanged, bit for bit.  ``stp``'s fields and ``k`` broadcast against ``u``."""
    live = k > 0
    return (jnp.where(live, u * euler_decay_factor(stp.tau_f, k, dt), u),
            jnp.where(live, 1.0 - (1.0 - R) * euler_decay_factor(stp.tau_d, k, dt), R))


def _per_row(a, dense: bool):
    """A per-presynaptic-neuron vector ``(n_pre,)`` broadcast against the synapses' layout: dense
    ``(n_post, n_pre)`` (columns), sparse ``(n_pre, max_out)`` (rows)."""
    return a[None, :] if dense else a[:, None]


def step_all(stp: STPParams, u: jax.Array, R: jax.Array, sample: jax.Array, s: jax.Array, it: ArrayLike, dt: float,
             dense: bool) -> tuple[jax.Array, ...]:
    """Every synapse one step: ``(u+, R-, u_new, R_new, sample_new)``.

    ``s`` ``(n_pre,)`` is the presynaptic spike (float 0/1, possibly carrying a surrogate derivative);
    ``u+ R-`` is the release of each synapse (to be multiplied by ``s``: the release with its derivative
    in ``s``, as the step-by-step simulator always did); ``sample_new = it + 1`` everywhere.
    """
    u0, R0 = advance(stp, u, R, _per_row(it - sample, dense), dt)
    u1, R1, _ = stp_efficacy(stp, u0, R0, _per_row(s, dense), dt)
    return u1, R0, u1, R1, jnp.full_like(sample, it + 1)


def _take(a, idx, dense: bool):
    """Rows ``idx`` (sparse) or columns ``idx`` (dense) of a per-synapse array; scalars stay."""
    if jnp.ndim(a) == 0:
        return a
    return a[:, idx] if dense else a[idx]


def _spiking_update(stp, u, R, k, dt: float):
    """Advance by ``k`` silent steps, then one spiking step: ``(u_new, R_new, release u+ R-)``."""
    u0, R0 = advance(stp, u, R, k, dt)
    return stp_efficacy(stp, u0, R0, 1.0, dt)


def _events(layout: Layout, dt: float, pending, u, R, x, W, stp, sample, targets, delays, rows, it):
    K = layout.capacity
    dense = not layout.sparse
    order, n_active = rows
    n_pre = x.shape[0]

    def chunk(carry):
        i, acc, u, R = carry
        idx = jax.lax.dynamic_slice_in_dim(order, i * K, K)
        valid = i * K + jnp.arange(K) < n_active
        xr = jnp.where(valid, x[idx], 0.0)
        k = it - sample[idx]
        p = STPParams(*(_take(a, idx, dense) for a in stp))
        u1, R1, release = _spiking_update(p, _take(u, idx, dense), _take(R, idx, dense), _per_row(k, dense), dt)
        W_r = _take(W, idx, dense) * release
        if dense:
            acc = _add_rows(layout, acc, xr, W_r, None, None, it)
        else:
            acc = _add_rows(layout, acc, xr, W_r, targets[idx], delays[idx], it)
        put = jnp.where(valid, idx, n_pre)                 # padding of the chunk: dropped
        if dense:
            u, R = u.at[:, put].set(u1, mode="drop"), R.at[:, put].set(R1, mode="drop")
        else:
            u, R = u.at[put].set(u1, mode="drop"), R.at[put].set(R1, mode="drop")
        return i + 1, acc, u, R

    n_chunks = (n_active + (K - 1)) // K
    _, acc, u, R = jax.lax.while_loop(lambda c: c[0] < n_chunks, chunk,
                                      (jnp.int32(0), _zeros(layout, pending), u, R))
    return _into_ring(layout, pending, acc, it), u, R


def _all_rows(layout: Layout, dt: float, pending, u, R, x, W, stp, sample, targets, delays, spiking, it):
    """The same update as :func:`_events` written over every synapse (the map whose derivative is used)."""
    dense = not layout.sparse
    u1, R1, release = _spiking_update(stp, u, R, _per_row(it - sample, dense), dt)
    on = _per_row(spiking, dense)
    out = _full(layout, pending, x, W * release, targets, delays, it)
    return out, jnp.where(on, u1, u), jnp.where(on, R1, R)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _deliver(layout, dt, pending, u, R, x, W, stp, sample, targets, delays, rows, spiking, it):
    return _events(layout, dt, pending, u, R, x, W, stp, sample, targets, delays, rows, it)


def _deliver_jvp(layout, dt, primals, tangents):
    pending, u, R, x, W, stp, sample, targets, delays, rows, spiking, it = primals
    out = _deliver(layout, dt, *primals)
    rest = (sample, targets, delays, spiking, it)

    def full(pending, u, R, x, W, stp):
        return _all_rows(layout, dt, pending, u, R, x, W, stp, *rest)

    _, d_out = jax.jvp(full, (pending, u, R, x, W, stp), tuple(tangents[:6]))
    return out, d_out


_deliver.defjvp(_deliver_jvp)


def deliver_events(layout: Layout, dt: float, pending: jax.Array, u: jax.Array, R: jax.Array, sample: jax.Array,
                   x: jax.Array, W: ArrayLike, stp: STPParams, targets: ArrayLike | None, delays: ArrayLike | None,
                   rows: tuple[jax.Array, jax.Array], spiking: jax.Array, it: ArrayLike
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Plasticity and delivery of one projection at step ``it``, for the presynaptic rows that spiked.

    Args:
        layout: :class:`~jaxlif.network.delivery.Layout` (``method="event"``; ``capacity`` rows per chunk).
        dt: time step [ms].
        pending: ``(D, n)`` pending input ring [nS] (:func:`jaxlif.network.delivery.deliver`).
        u, R: per-synapse state, the weights' layout; ``sample`` ``(n_pre,)`` int: where it holds.
        x: ``(n_pre,)`` presynaptic values (the spikes, times a feedback scale; 0 for silent neurons).
        W: weights [nS]; ``stp``: :class:`~jaxlif.STPParams`, each field a scalar or per synapse.
        targets, delays: sparse only (else ``None``).  rows: ``active_rows(spiking, capacity)``.
        spiking: ``(n_pre,)`` bool, the presynaptic spikes of step ``it``.  it: the step (int).

    Returns:
        ``(pending, u, R, sample)`` updated: the rows of neurons that spiked hold at ``it + 1``.
    """
    dtype = pending.dtype
    targets, delays = (None, None) if targets is None else (jnp.asarray(targets), jnp.asarray(delays))
    stp = STPParams(*(jnp.asarray(a, dtype) for a in stp))
    pending, u, R = _deliver(layout, float(dt), pending, u, R, jnp.asarray(x, dtype), jnp.asarray(W, dtype), stp,
                             sample, targets, delays, rows, spiking, it)
    return pending, u, R, jnp.where(spiking, it + 1, sample).astype(sample.dtype)
