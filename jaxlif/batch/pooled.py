r"""Pooled static input (conductance LIF batches): Poisson trains as (gap, count) events.

Law.  ``n`` static trains that each spike with probability ``p = rate*dt/1000`` per step act on
the neuron only through the per-step count, i.i.d. Binomial(n, p).  The steps with a non-zero
count form a Bernoulli(q) process, ``q = 1 - (1-p)^n``, so the gap to the next such step is
geometric, and the count there is Binomial(n, p) conditioned on ``>= 1``, drawn by inverse CDF
from the ratios ``P(X > k | X >= 1)``.  One hash per event gives both (:func:`_pooled_draw`):
about 970 events per neuron-second at 80 + 20 trains and 10 Hz, instead of 20000 per-step
counts or 10^6 per-step Bernoulli numbers.

Invariant.  Draw ``m`` of neuron ``b`` in population ``t`` is ``hash(keys[t], (b, m))``: the
counts a neuron receives do not depend on the window, the chunk or the device
(:func:`_pooled_window` places the events of one window into an integer count buffer).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif.batch.rng import _cumsum_rows, _gap_scale, _geometric, _materialize, _threefry2x32, _uniform
from jaxlif.inputs import _binomial_tail

__all__: list[str] = []  # private module of jaxlif.batch

_COUNT_BITS = 10            # pooled draws pack (gap, count) in one int32: n <= 1023 trains, gaps < 2**21


class _Pooled(NamedTuple):
    t_next: jax.Array   # (C,) int32: sample index of the next step with input
    count: jax.Array    # (C,) int32: its spike count
    ordinal: jax.Array  # (C,) uint32: index of the next random draw of this neuron


class _PooledLaw(NamedTuple):
    scale: jax.Array    # (C,): -1/log P(no spike at a step) = -1/(n log(1 - p))
    ratios: jax.Array   # (K, C): P(X > k | X >= 1) for k = 1..K, X ~ Binomial(n, p)


def _pooled_law(p, n: int, K: int, C: int, dtype) -> _PooledLaw:
    p = jnp.broadcast_to(jnp.asarray(p, dtype), (C,))
    tail = jax.vmap(lambda q: _binomial_tail(q, n))(p)          # (C, n): P(X > k), k = 0..n-1
    return _PooledLaw(_gap_scale(n * jnp.log1p(-p)), (tail[:, 1:K + 1] / tail[:, :1]).T)


def _pooled_draw(keys, ids, ordinal, law: _PooledLaw, cap: int, dtype):
    """Gap to the next step with input and the count there, for the draws ``ordinal`` (m, C),
    packed into one int32 ``gap << _COUNT_BITS | count`` (see :func:`_unpack`)."""
    w0, w1 = _threefry2x32(keys[0], keys[1], ids, ordinal)
    if jnp.dtype(dtype) == jnp.float64:
        u = _uniform(w0, w1, dtype)
        v = _uniform(*_threefry2x32(keys[2], keys[3], ids, ordinal), dtype)
    else:
        u, v = _uniform(w0, None, dtype), _uniform(w1, None, dtype)
    count = jnp.ones(v.shape, jnp.int32)
    for k in range(law.ratios.shape[0]):       # inverse CDF: count = 1 + #{k >= 1: v <= P(X > k | X >= 1)}
        count = count + (v <= law.ratios[k]).astype(jnp.int32)
    return (_geometric(u, law.scale, cap) << _COUNT_BITS) | count


def _unpack(packed):
    """``(gap, count)`` from :func:`_pooled_draw`'s packed draws (one array: the hash is computed once)."""
    return packed >> _COUNT_BITS, packed & ((1 << _COUNT_BITS) - 1)


def _pooled_init(C: int) -> _Pooled:
    """A virtual event with no spikes at sample 0: the first pass draws the first real one (draw 0)."""
    zero = jnp.zeros((C,), jnp.int32)
    return _Pooled(zero, zero, jnp.zeros((C,), jnp.uint32))


def _pooled_window(state: _Pooled, start, keys, ids, law, window: int, block: int, cap: int, buf_dtype):
    """Place every input step of samples ``start+1 .. start+window`` into a ``(window, C)`` count buffer.

    Each pass places the pending event, draws ``block`` further events per neuron (cumulative
    gaps), places those inside the window but the last, and keeps the first unplaced one as the
    pending event.  Passes repeat while any neuron still has its pending event inside the window
    (usually one pass).  Lanes whose pending event lies beyond the window are left unchanged.
    Arrays are (block, C): the cumulative sum and the reductions then run along the major axis.
    """
    C = ids.shape[0]
    dtype = jnp.result_type(float)
    end = start + window + 1
    lanes = jnp.arange(C)
    j = jnp.arange(block)[:, None]
    ords = jnp.arange(block, dtype=jnp.uint32)[:, None]

    def cond(carry):
        return jnp.any(carry[0].t_next < end)

    def body(carry):
        st, buf = carry
        gap, cnt = _unpack(_materialize(
            lambda o: _pooled_draw(keys, ids[None, :], o[None, :] + ords, law, cap, dtype), st.ordinal))
        times = _cumsum_rows(st.t_next, gap)                                          # events 1..block
        first = st.t_next < end
        later = (times < end) & (j < block - 1)
        buf = buf.at[jnp.where(first, jnp.maximum(st.t_next - 1 - start, 0), 0), lanes].add(
            jnp.where(first, st.count, 0).astype(buf_dtype), mode="promise_in_bounds")
        buf = buf.at[jnp.where(later, times - 1 - start, 0), lanes[None, :]].add(
            jnp.where(later, cnt, 0).astype(buf_dtype), mode="promise_in_bounds")
        n_later = jnp.sum(later, axis=0, dtype=jnp.int32)
        pick = j == n_later[None, :]
        new_t = jnp.minimum(jnp.sum(jnp.where(pick, times, 0), axis=0, dtype=jnp.int32), cap)
        new_c = jnp.sum(jnp.where(pick, cnt, 0), axis=0, dtype=jnp.int32)
        return _Pooled(jnp.where(first, new_t, st.t_next), jnp.where(first, new_c, st.count),
                       st.ordinal + jnp.where(first, n_later + 1, 0).astype(jnp.uint32)), buf

    return jax.lax.while_loop(cond, body, (state, jnp.zeros((window, C), buf_dtype)))


def _pooled_default_window(chunk: int) -> int:
    """Steps per window for pooled input: a (window, chunk) int8 buffer of about 2 MB (stays in cache)."""
    return max(64, (1 << 21) // chunk)



def _check_pooled_sizes(n_E: int, n_I: int, steps: int) -> None:
    for name, n in (("n_E", n_E), ("n_I", n_I)):
        if n >= 1 << _COUNT_BITS:
            raise ValueError(f"{name}={n} trains: the pooled-input batch simulator supports at most "
                             f"{(1 << _COUNT_BITS) - 1} trains per population; split them into populations")
    if 2 * steps >= 1 << (31 - _COUNT_BITS):
        raise ValueError(f"n_steps={steps} is too long for the pooled-input batch simulator (at most "
                         f"{(1 << (30 - _COUNT_BITS)) - 1} steps); use a larger dt or shorter runs")


def _count_dtype(n: int):
    """The narrowest integer type for per-step counts of ``n`` trains (small buffers, fast transposes)."""
    return jnp.int8 if n <= 127 else jnp.int16 if n <= 32767 else jnp.int32



def _count_terms(p: float | None, n: int, dtype) -> int:
    """Number K of terms ``P(X > k | X >= 1)``, k = 1..K, that a uniform of this dtype can resolve."""
    if p is None:
        return max(n - 1, 0)
    if p <= 0.0 or n <= 1:
        return 0
    if p >= 1.0:
        return n - 1
    k = np.arange(n + 1)
    log_pmf = np.array([math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) for j in k]) \
        + k * math.log(p) + (n - k) * math.log1p(-p)
    tail = np.cumsum(np.exp(log_pmf)[::-1])[::-1]           # P(X >= k)
    ratio = tail[2:] / tail[1]                               # P(X > k | X >= 1), k = 1..n-1
    smallest = 2.0 ** (-53 if jnp.dtype(dtype) == jnp.float64 else -24)
    return int(np.sum(ratio >= smallest / 64.0))


def _block_size(p: float | None, n: int):
    """Events drawn per neuron and pass: the mean number of input steps in a window plus 4 sigma."""
    if p is None:
        return lambda window: 32
    q = -math.expm1(n * math.log1p(-min(p, 1.0))) if p < 1.0 else 1.0
    return lambda window: int(math.ceil(window * q + 4.0 * math.sqrt(window * q) + 4.0))

