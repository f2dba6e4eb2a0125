r"""Pooled static input (conductance LIF batches): Poisson trains as (gap, count) events.

Law.  ``n`` static trains that each spike with probability ``p = rate*dt/1000`` per step act on
the neuron only through the per-step count, i.i.d. Binomial(n, p).  The steps with a non-zero
count form a Bernoulli(q) process, ``q = 1 - (1-p)^n``, so the gap to the next such step is
geometric, and the count there is Binomial(n, p) conditioned on ``>= 1``, drawn by inverse CDF
from the ratios ``P(X > k | X >= 1)``.  One hash per event gives both (:func:`_pooled_draw`):
about 970 events per neuron-second at 80 + 20 trains and 10 Hz, instead of 20000 per-step
counts or 10^6 per-step Bernoulli numbers.

Invariant.  Draw ``m`` of neuron ``b`` in population ``t`` is ``hash(keys[t], (b, m))``: the
counts a neuron receives do not depend on the window, the chunk, the device or the number of
events drawn per pass (:func:`_pooled_window` places the events of one window into an integer
count buffer).  No array size depends on the rate, so one compiled program serves every rate.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlif.batch.kernels import _cumsum_rows, _materialize, _scatter_add
from jaxlif.batch.rng import _gap_scale, _geometric, _hash, _uniform
from jaxlif.inputs import _binomial_tail

__all__: list[str] = []  # private module of jaxlif.batch

_COUNT_BITS = 10            # pooled draws pack (gap, count) in one int32: n <= 1023 trains, gaps < 2**21


class _Pooled(NamedTuple):
    t_next: jax.Array   # (C,) int32: sample index of the next step with input
    count: jax.Array    # (C,) int32: its spike count
    ordinal: jax.Array  # (C,) uint32: index of the next random draw of this neuron


class _PooledLaw(NamedTuple):
    scale: jax.Array    # (C,): -1/log P(no spike at a step) = -1/(n log(1 - p))
    ratios: jax.Array   # (n-1, C): P(X > k | X >= 1) for k = 1..n-1, X ~ Binomial(n, p)
    n_terms: jax.Array  # int32: ratios that a uniform of this dtype can pass (the others add nothing)


def _pooled_law(p, n: int, C: int, dtype) -> _PooledLaw:
    """The law of one population's events for per-neuron (or shared) spike probabilities ``p``.

    Computed in the program from ``p``: no size depends on the rate.  ``n_terms`` counts the
    inverse-CDF terms that can change a count (a uniform in (0, 1] is never below ``2**-24``,
    float32, or ``2**-53``, float64), so the count loop is as short as the rate allows.
    """
    p = jnp.broadcast_to(jnp.asarray(p, dtype), (C,))
    tail = jax.vmap(lambda q: _binomial_tail(q, n))(p)          # (C, n): P(X > k), k = 0..n-1
    ratios = (tail[:, 1:] / tail[:, :1]).T                      # (n-1, C); NaN where p = 0
    smallest = 2.0 ** (-53 if jnp.dtype(dtype) == jnp.float64 else -24)
    k = jnp.arange(1, n, dtype=jnp.int32)[:, None]
    n_terms = jnp.max(jnp.where(ratios >= smallest, k, 0), initial=0)
    return _PooledLaw(_gap_scale(n * jnp.log1p(-p)), ratios, n_terms.astype(jnp.int32))


def _pooled_draw(keys, ids, ordinal, law: _PooledLaw, cap: int, dtype, platform: str = "cpu"):
    """Gap to the next step with input and the count there, for the draws ``ordinal`` (m, C),
    packed into one int32 ``gap << _COUNT_BITS | count`` (see :func:`_unpack`)."""
    w0, w1 = _hash(keys[0], keys[1], ids, ordinal, platform)
    if jnp.dtype(dtype) == jnp.float64:
        u = _uniform(w0, w1, dtype)
        v = _uniform(*_hash(keys[2], keys[3], ids, ordinal, platform), dtype)
    else:
        u, v = _uniform(w0, None, dtype), _uniform(w1, None, dtype)
    # inverse CDF: count = 1 + #{k >= 1: v <= P(X > k | X >= 1)}; at most n - 1 terms
    count = jax.lax.fori_loop(0, law.n_terms, lambda k, c: c + (v <= law.ratios[k]).astype(jnp.int32),
                              jnp.ones(v.shape, jnp.int32))
    return (_geometric(u, law.scale, cap) << _COUNT_BITS) | count


def _unpack(packed):
    """``(gap, count)`` from :func:`_pooled_draw`'s packed draws (one array: the hash is computed once)."""
    return packed >> _COUNT_BITS, packed & ((1 << _COUNT_BITS) - 1)


def _pooled_init(C: int) -> _Pooled:
    """A virtual event with no spikes at sample 0: the first pass draws the first real one (draw 0)."""
    zero = jnp.zeros((C,), jnp.int32)
    return _Pooled(zero, zero, jnp.zeros((C,), jnp.uint32))


def _pooled_window(state: _Pooled, start, keys, ids, law, window: int, block: int, cap: int, buf_dtype,
                   platform: str = "cpu"):
    """Place every input step of samples ``start+1 .. start+window`` into a ``(window, C)`` count buffer.

    Each pass places the pending event, draws ``block`` further events per neuron (cumulative
    gaps), places those inside the window but the last, and keeps the first unplaced one as the
    pending event.  Passes repeat while any neuron still has its pending event inside the window.
    Every pass moves each such neuron's pending event forward by at least one step (gaps are >= 1),
    so at most ``window + 1`` passes are needed; the loop is bounded by that count, and a lane
    that is still pending afterwards (impossible for valid draws) is reported in ``done = False``.

    Returns ``((state, buf), done)`` with ``done`` (C,) bool.  Lanes whose pending event lies
    beyond the window are left unchanged.  Arrays are (block, C): the cumulative sum and the
    reductions then run along the major axis.
    """
    C = ids.shape[0]
    dtype = jnp.result_type(float)
    end = start + window + 1
    lanes = jnp.arange(C)
    j = jnp.arange(block)[:, None]
    ords = jnp.arange(block, dtype=jnp.uint32)[:, None]

    def cond(carry):
        return jnp.any(carry[0].t_next < end) & (carry[2] <= window)

    def body(carry):
        st, buf, passes = carry
        gap, cnt = _unpack(_materialize(
            lambda o: _pooled_draw(keys, ids[None, :], o[None, :] + ords, law, cap, dtype, platform), st.ordinal))
        times = _cumsum_rows(st.t_next, gap)                                          # events 1..block
        first = st.t_next < end
        later = (times < end) & (j < block - 1)
        buf = _scatter_add(buf, (jnp.where(first, jnp.maximum(st.t_next - 1 - start, 0), 0), lanes),
                           jnp.where(first, st.count, 0).astype(buf_dtype))
        buf = _scatter_add(buf, (jnp.where(later, times - 1 - start, 0), lanes[None, :]),
                           jnp.where(later, cnt, 0).astype(buf_dtype))
        n_later = jnp.sum(later, axis=0, dtype=jnp.int32)
        pick = j == n_later[None, :]
        new_t = jnp.minimum(jnp.sum(jnp.where(pick, times, 0), axis=0, dtype=jnp.int32), cap)
        new_c = jnp.sum(jnp.where(pick, cnt, 0), axis=0, dtype=jnp.int32)
        return _Pooled(jnp.where(first, new_t, st.t_next), jnp.where(first, new_c, st.count),
                       st.ordinal + jnp.where(first, n_later + 1, 0).astype(jnp.uint32)), buf, passes + 1

    state, buf, _ = jax.lax.while_loop(cond, body, (state, jnp.zeros((window, C), buf_dtype), jnp.int32(0)))
    return (state, buf), state.t_next >= end


def _pooled_default_window(chunk: int) -> int:
    """Steps per window for pooled input: a (window, chunk) int8 buffer of about 2 MB (stays in cache)."""
    return max(64, (1 << 21) // chunk)


def _pooled_block(window: int, platform: str) -> int:
    """Events drawn per neuron and pass: 8 on CPU (as fast as a block sized to the rate, from 1 to
    50 Hz, in our measurements), 32 on GPUs (fewer passes, so fewer kernel launches).  The block
    changes no number (draws are addressed by their ordinal), only the work per pass."""
    return min(8 if platform == "cpu" else 32, window)


def _check_pooled_sizes(n_E: int, n_I: int, steps: int) -> None:
    for name, n in (("n_E", n_E), ("n_I", n_I)):
        if n >= 1 << _COUNT_BITS:
            raise ValueError(f"{name}={n} trains: the pooled-input batch simulator supports at most "
                             f"{(1 << _COUNT_BITS) - 1} trains per population; split them into populations")
    if 2 * steps >= 1 << (31 - _COUNT_BITS):
        raise ValueError(f"n_steps={steps} is too long for the pooled-input batch simulator (at most "
                         f"{(1 << (30 - _COUNT_BITS)) - 1} steps); use a larger dt or shorter runs")


def _count_dtype(n: int, platform: str = "cpu"):
    """Integer type of the per-step count buffer: on CPU the narrowest that holds ``n`` (small
    buffers, fast transposes); on GPUs int32 (scatter-adds into 8- and 16-bit words are emulated
    there with compare-and-swap loops)."""
    if platform != "cpu":
        return jnp.int32
    return jnp.int8 if n <= 127 else jnp.int16 if n <= 32767 else jnp.int32
