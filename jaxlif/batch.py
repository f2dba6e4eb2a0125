r"""Fast batched simulators: event-driven Poisson input and short-term plasticity, chunked and sharded.

The per-step simulators (:func:`jaxlif.simulate_cond_lif_poisson`,
:func:`jaxlif.simulate_stp_lif_poisson`) draw their inputs step by step, which is the tutorial's
algorithm and the reference here.  The simulators of this module compute *the same discrete-time
model* (SPEC ``run_LIF_cond`` and ``run_LIF_cond_STP``, forward Euler, same update order) but do
work per input *event* instead of per synapse and step:

**Poisson input as events.**  A train that spikes with probability ``p = rate*dt/1000`` at every
step is a renewal process whose gaps are geometric, ``P(gap > g) = (1-p)^g``.  For ``n`` pooled
static trains (:func:`simulate_cond_lif_batch`), only the per-step count matters (SPEC: the
synapses are static and share one time constant), and the pooled counts are i.i.d.
Binomial(n, p) per step: the steps with a non-zero count form a Bernoulli(q) process,
``q = 1 - (1-p)^n``, and the count at such a step is Binomial(n, p) conditioned on being
``>= 1``.  Each event costs one threefry-2x32 hash (gap and count); a run of 80 + 20 trains at
10 Hz draws about 970 events per neuron-second instead of 20000 per-step counts or 10^6
per-step Bernoulli numbers.  No ``(batch, trains, steps)`` tensor exists.  The events of a
window are drawn in blocks (one cumulative sum per block) and scattered into an int8 count
buffer that the neuron scan reads row by row.

**Event-driven STP.**  The Tsodyks-Markram state of a synapse does not depend on the
postsynaptic voltage and only changes its course at that synapse's own spikes: between two spikes
``k`` steps apart the Euler scheme multiplies ``u``, ``1 - R`` and ``g`` by ``a^(k-1)``
(:func:`jaxlif.plasticity.stp_decay`), then applies one spiking step (:func:`jaxlif.stp_step`).
So each synapse is advanced from spike to spike, and its conductance jump
``g_bar R^- u^+`` is added to the *summed* conductance ``g_E = sum_j g_j`` of its neuron, which
decays with the common ``tau_syn`` between inputs (``g_E[it+1] = g_E[it] - dt/tau_syn g_E[it] +
sum of the jumps at it+1``).  This equals the per-synapse Euler loop up to rounding
(associativity of the sum and ``a^k`` evaluated as ``exp(k log a)``): the tests hold it to 1e-9
in float64 on the same trains, with identical spikes (:func:`simulate_stp_lif_batch`).  A pass
takes the next spike of every synapse that has one in the window; once at most 1/8 of the
synapses still do, those are compacted into a small index set, so the work follows the number
of spikes (about 1500 per neuron-second at 15 Hz) rather than synapses x steps (10^6).

**Windows and chunks.**  Events are generated window by window (``window`` steps: about 1000
for static input, 2000 for plastic synapses) into a small buffer, then a ``lax.scan`` runs the
neuron over the window with :func:`jaxlif.cond_lif_step` (the core step, unchanged).  The batch is
processed ``batch_chunk`` neurons at a time per device (``lax.map``), so memory is bounded by the
chunk, not by the batch.  Every random draw is addressed by (key, neuron index, synapse or
population, event ordinal), never by position in a chunk, a window or on a device, so neither
changes which spikes a neuron receives; chunks and devices change no number at all (with
plastic synapses the window fixes the order in which coincident jumps are summed, and so the
rounding of ``g``).

**Devices.**  The batch axis is split over a one-axis :class:`jax.sharding.Mesh` (default: all
visible devices) with :func:`jax.shard_map`; each device simulates its own neurons.  The results
are identical to one device, bit for bit, for the same reason.

**Random numbers.**  The hash is threefry-2x32 with 20 rounds (Salmon et al. 2011), the
function behind ``jax.random``'s default generator, written here with ``jax.numpy`` integer ops
(``_threefry2x32``; tested bit for bit against ``jax.extend.random.threefry_2x32``) because
XLA:CPU runs that form 3-4x faster than the primitive.  Keys for each stream come from the user's
key with ``jax.random.fold_in`` and ``jax.random.bits``.  Uniforms are taken in ``(0, 1]``
(24 bits in float32, 53 in float64), so the laws are exact up to that resolution, the same
resolution that a per-step test ``uniform < p`` has.

**Reference paths.**  :func:`cond_lif_batch_inputs` returns the per-step counts that
:func:`simulate_cond_lif_batch` draws, and :func:`stp_lif_batch_trains` the spike trains that
:func:`simulate_stp_lif_batch` draws, so that ``jax.vmap(jaxlif.simulate_cond_lif)`` and
``jax.vmap(jaxlif.simulate_stp_lif)`` (the step-by-step tutorial scheme) can be run on exactly
the same input: that is how the tests check the fast paths.

Shapes: ``batch`` neurons; traces ``(batch, n_steps)`` with time last; ``n_steps =
len(np.arange(0, T, dt))``.  Units: ms, mV, nS, pA, Hz.  dtype: float32 by default, float64
under ``jax.enable_x64(True)``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from jaxlif import _checks
from jaxlif.inputs import _binomial_tail
from jaxlif.neurons import (CondLIFParams, _check_poisson_run, _no_threshold, check_cond_lif_params,
                            cond_lif_init, cond_lif_step)
from jaxlif.plasticity import STPParams, STPState, stp_step
from jaxlif.stp_lif import STPLIFParams, _check as _check_stp_lif_params
from jaxlif.synapses import SynParams

__all__ = [
    "BatchResult",
    "simulate_cond_lif_batch",
    "simulate_stp_lif_batch",
    "cond_lif_batch_inputs",
    "stp_lif_batch_trains",
    "batch_mesh",
]

_BATCH_AXIS = "batch"
_COMPACT = True
_COUNT_BITS = 10            # pooled draws pack (gap, count) in one int32: n <= 1023 trains, gaps < 2**21


class BatchResult(NamedTuple):
    """Output of the batch simulators (traces only with ``record=True``, else ``None``).

    Attributes:
        spike_count: spikes per neuron over the run, ``(batch,)`` int32 (samples ``0 .. n_steps-2``;
            the last sample is never tested against threshold, as in the tutorial).
        v: membrane potential [mV], ``(batch, n_steps)``; V_reset at a spike step.
        spikes: boolean raster ``(batch, n_steps)``.
        g_E, g_I: total excitatory/inhibitory conductance [nS], ``(batch, n_steps)``.
    """

    spike_count: jax.Array
    v: jax.Array | None = None
    spikes: jax.Array | None = None
    g_E: jax.Array | None = None
    g_I: jax.Array | None = None


# ----------------------------------------------------------------------------------------------
# Random numbers: threefry-2x32, uniforms in (0, 1], geometric gaps
# ----------------------------------------------------------------------------------------------

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x, d: int):
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def _threefry2x32(k0, k1, x0, x1):
    """Threefry-2x32, 20 rounds: key ``(k0, k1)``, counter ``(x0, x1)`` -> two uint32 words.

    The same function as ``jax.extend.random.threefry_2x32`` (which takes the counter as the two
    halves of one array); all arguments broadcast.
    """
    k0, k1, x0, x1 = (jnp.asarray(a, jnp.uint32) for a in (k0, k1, x0, x1))
    ks = (k0, k1, k0 ^ k1 ^ np.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


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
    """``-1/log(1-q)`` from ``log(1-q)`` (inf when q = 0, 0 when q = 1)."""
    return -1.0 / log1m_q


def _stream_keys(key, tag: int):
    """Two uint32 words of key material for one random stream, from the user's key."""
    return jax.random.bits(jax.random.fold_in(key, tag), (2,), jnp.uint32)


# ----------------------------------------------------------------------------------------------
# Pooled static input (WL-A): Bernoulli(q) steps with a Binomial(n, p | >= 1) count each
# ----------------------------------------------------------------------------------------------


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


def _materialize(f, *args):
    """Evaluate ``f(*args)`` into memory once.

    XLA:CPU fuses a long elementwise chain (here the hash) into every consumer and so recomputes
    it per consumer; the boundary of a loop whose trip count is not a compile-time constant stops
    that (XLA then hoists the loop-invariant body out of the loop as one fusion).
    """
    x = jax.tree.leaves(args)[0].ravel()[0]
    one = 1 + (x == x + 1).astype(jnp.int32)     # == 1 (f is pure: a second pass would change nothing)
    out = jax.eval_shape(f, *args)
    init = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), out)
    return jax.lax.fori_loop(0, one, lambda _, __: f(*args), init)


def _pooled_init(C: int) -> _Pooled:
    """A virtual event with no spikes at sample 0: the first pass draws the first real one (draw 0)."""
    zero = jnp.zeros((C,), jnp.int32)
    return _Pooled(zero, zero, jnp.zeros((C,), jnp.uint32))


def _cumsum_rows(start, x):
    """``start + cumsum(x, axis=0)`` as a sequential scan over rows: XLA:CPU lowers ``jnp.cumsum`` to a
    quadratic reduce-window and ``associative_scan`` compiles slowly; rows of C lanes are cheap."""
    def add(carry, row):
        carry = carry + row
        return carry, carry
    return jax.lax.scan(add, start, x)[1]


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


# ----------------------------------------------------------------------------------------------
# Plastic synapses (WL-B): every synapse advanced from spike to spike
# ----------------------------------------------------------------------------------------------


class _Synapses(NamedTuple):
    t_next: jax.Array   # int32: sample index of the synapse's next spike
    ordinal: jax.Array  # uint32: index of its next random draw
    t_last: jax.Array   # int32: sample index of its last spike (0 before any)
    u: jax.Array        # utilisation just after the last spike
    R: jax.Array        # resources just after the last spike


class _Columns(NamedTuple):
    """Per-synapse constants, each ``(1, S)`` or ``(C, S)`` (per-neuron values): E columns, then I."""
    pop: jax.Array      # 0 = excitatory, 1 = inhibitory
    scale: jax.Array    # -1/log(1 - p): geometric gap scale
    log_a_f: jax.Array  # log(1 - dt/tau_f): silent steps multiply u by exp(k log_a_f)
    log_a_d: jax.Array  # log(1 - dt/tau_d): silent steps multiply 1 - R by exp(k log_a_d)
    stp: STPParams
    syn: SynParams


def _columns(params: STPLIFParams, p_E, p_I, n_E: int, n_I: int, dt: float, dtype) -> _Columns:
    S = n_E + n_I

    def col(e, i, dt_=dtype):
        e, i = jnp.asarray(e, dt_), jnp.asarray(i, dt_)
        rows = jnp.broadcast_shapes(e.shape, i.shape) or (1,)
        return jnp.concatenate([jnp.broadcast_to(jnp.reshape(e, (-1, 1)), rows + (n_E,)),
                                jnp.broadcast_to(jnp.reshape(i, (-1, 1)), rows + (n_I,))], axis=1)

    j = jnp.arange(S)
    stp = STPParams(col(params.stp_E.U0, params.stp_I.U0), col(params.stp_E.tau_d, params.stp_I.tau_d),
                    col(params.stp_E.tau_f, params.stp_I.tau_f))
    syn = SynParams(col(params.exc.g_bar, params.inh.g_bar), col(params.exc.tau_syn, params.inh.tau_syn),
                    jnp.zeros((1, S), dtype))
    log1m_p = col(jnp.log1p(-jnp.asarray(p_E, dtype)), jnp.log1p(-jnp.asarray(p_I, dtype)))
    return _Columns((j >= n_E).astype(jnp.int32)[None, :], _gap_scale(log1m_p),
                    jnp.log1p(-dt / stp.tau_f), jnp.log1p(-dt / stp.tau_d), stp, syn)


def _lane_columns(cols: _Columns, c, j) -> _Columns:
    """The constants of the lanes (neuron ``c``, synapse ``j``) (compacted lanes)."""
    return jax.tree.map(lambda a: a[c if a.shape[0] > 1 else 0, j], cols)


def _synapse_gap(keys, cols: _Columns, syn_ids, ordinal, cap: int, dtype):
    """Gap to the next spike of synapses ``syn_ids`` (neuron id * S + synapse index), draw ``ordinal``."""
    w0, w1 = _threefry2x32(keys[0], keys[1], syn_ids, ordinal)
    return _geometric(_uniform(w0, w1, dtype), cols.scale, cap)


def _synapses_init(C: int, S: int, dtype) -> _Synapses:
    """Resting synapses (u = 0, R = 1) with a virtual spike at sample 0: the first pass draws the first
    real spike (draw 0) and changes nothing else."""
    zero = jnp.zeros((C, S), jnp.int32)
    return _Synapses(zero, jnp.zeros((C, S), jnp.uint32), zero, jnp.zeros((C, S), dtype), jnp.ones((C, S), dtype))


def _silent_factor(k, log_a):
    """``a^k`` for ``k >= 0`` silent steps, as ``exp(k log a)`` (``a = 0`` allowed: tau = dt)."""
    return jnp.where(k == 0, 1.0, jnp.exp(k * log_a))


def _synapse_pass(st: _Synapses, buf, keys, cols: _Columns, syn_ids, c, j, start, end, cap: int, dt: float,
                  dtype, materialize: bool):
    """Every synapse (lane) whose next spike lies before ``end`` takes it: add its conductance jump
    to ``buf`` (or mark the spike), update ``u, R`` and draw its next spike time."""
    due = st.t_next < end
    spike = due & (st.t_next > 0)                          # sample 0: the virtual initial spike
    pos = jnp.where(spike, st.t_next - 1 - start, 0)
    if materialize:
        buf = buf.at[c, j, pos].add(spike.astype(buf.dtype), mode="promise_in_bounds")
        u, R = st.u, st.R
    else:
        # k - 1 silent Euler steps in closed form (as plasticity.stp_decay), then one spiking step
        silent = (st.t_next - st.t_last - 1).astype(dtype)
        before = STPState(st.u * _silent_factor(silent, cols.log_a_f),
                          1.0 - (1.0 - st.R) * _silent_factor(silent, cols.log_a_d), jnp.zeros_like(st.u))
        (u, R, jump), _ = stp_step(cols.stp, cols.syn, before, 1.0, dt)     # jump = g_bar R^- u^+
        buf = buf.at[c, cols.pop, pos].add(jnp.where(spike, jump, 0.0), mode="promise_in_bounds")
    gap = _synapse_gap(keys, cols, syn_ids, st.ordinal, cap, dtype)
    return _Synapses(t_next=jnp.where(due, jnp.minimum(st.t_next + gap, cap), st.t_next),
                     ordinal=st.ordinal + due.astype(jnp.uint32),
                     t_last=jnp.where(spike, st.t_next, st.t_last),
                     u=jnp.where(spike, u, st.u),
                     R=jnp.where(spike, R, st.R)), buf


def _compact_indices(active, K: int):
    """Flat indices ``c * S + j`` of the ``True`` entries of ``active`` (C, S) in increasing order,
    in a ``(K,)`` array (0 after the last), and their number (assumed <= K).

    A two-level prefix sum (rows with ``jnp.cumsum``, then synapses by a scan over the S columns) and one
    scatter: cheaper to run and to compile on XLA:CPU than ``jnp.nonzero`` on the flat mask.
    """
    C, S = active.shape
    per_row = jnp.sum(active, axis=1, dtype=jnp.int32)
    row_start = jnp.cumsum(per_row) - per_row
    before = _cumsum_rows(row_start, active.T.astype(jnp.int32)).T - active   # entries before (c, j)
    dest = jnp.where(active, before, K)                                       # K: dropped
    flat = jnp.arange(C * S, dtype=jnp.int32).reshape(C, S)
    f = jnp.zeros((K,), jnp.int32).at[dest.ravel()].set(flat.ravel(), mode="drop", unique_indices=True)
    return f, jnp.sum(per_row)


def _synapses_window(state: _Synapses, start, keys, cols: _Columns, ids, window: int, cap: int, dt: float,
                     dtype, materialize: bool = False):
    """Advance every synapse through its spikes at samples ``start+1 .. start+window``.

    Returns the new state and a buffer: the summed conductance jumps ``(2, window, C)`` [nS]
    (excitatory, inhibitory), or with ``materialize`` the spike trains ``(C, S, window)`` (int8).

    A pass takes the next spike of every synapse that has one in the window.  The first passes
    run over all ``C * S`` synapses; once at most 1/8 of them still have a spike in the window,
    those are gathered into a compact set (``jnp.nonzero`` with a fixed size) and the remaining
    passes run over it only, so the work is close to proportional to the number of spikes.
    """
    C, S = state.t_next.shape
    L = C * S
    K = max(L // 8, 1)
    end = start + window + 1
    c_full, j_full = jnp.arange(C)[:, None], jnp.arange(S)[None, :]
    buf = jnp.zeros((C, S, window), jnp.int8) if materialize else jnp.zeros((C, 2, window), dtype)

    syn_ids = ids[:, None] * np.uint32(S) + j_full.astype(jnp.uint32)

    def full_pass(carry):
        return _synapse_pass(*carry, keys, cols, syn_ids, c_full, j_full, start, end, cap, dt, dtype, materialize)

    if not _COMPACT:
        state, buf = jax.lax.while_loop(lambda carry: jnp.any(carry[0].t_next < end), full_pass, (state, buf))
        return state, (buf if materialize else jnp.transpose(buf, (1, 2, 0)))
    state, buf = jax.lax.while_loop(lambda carry: jnp.sum(carry[0].t_next < end) > K, full_pass, (state, buf))

    # compact the synapses that still have spikes in this window (at most K of them)
    f, n_active = _compact_indices(state.t_next < end, K)
    valid = jnp.arange(K) < n_active
    c, j = f // S, f % S
    sub = _Synapses(*(a.ravel()[f] for a in state))
    sub = sub._replace(t_next=jnp.where(valid, sub.t_next, cap))
    sub_cols, sub_ids = _lane_columns(cols, c, j), syn_ids.ravel()[f]

    def compact_pass(carry):
        return _synapse_pass(*carry, keys, sub_cols, sub_ids, c, j, start, end, cap, dt, dtype, materialize)

    sub, buf = jax.lax.while_loop(lambda carry: jnp.any(carry[0].t_next < end), compact_pass, (sub, buf))
    back = jnp.where(valid, f, L)                       # invalid lanes are dropped
    state = _Synapses(*(a.ravel().at[back].set(b, mode="drop").reshape(C, S) for a, b in zip(state, sub)))
    # scattering into each neuron's own (2, window) block keeps the scatter in cache; the neuron
    # scan wants time-major (2, window, C): one transpose per window
    return state, (buf if materialize else jnp.transpose(buf, (1, 2, 0)))


# ----------------------------------------------------------------------------------------------
# The neuron over one window, and the whole run of one chunk
# ----------------------------------------------------------------------------------------------


class _Config(NamedTuple):
    """Static configuration of one compiled program (hashable)."""
    n_steps: int
    dt: float
    window: int
    n_windows: int
    chunk: int
    n_chunks: int       # chunks per device
    n_E: int
    n_I: int
    block_E: int        # pooled events drawn per neuron and pass (WL-A)
    block_I: int
    K_E: int
    K_I: int
    record: bool
    spiking: bool
    unroll: int
    scalar_current: bool


def _pooled_default_window(chunk: int) -> int:
    """Steps per window for pooled input: a (window, chunk) int8 buffer of about 2 MB (stays in cache)."""
    return max(64, (1 << 21) // chunk)


def _synapse_default_window(chunk: int) -> int:
    """Steps per window for plastic synapses: 2000 whatever the chunk.

    Long windows mean fewer passes per spike (the synapse with most spikes in a window sets the
    number of passes); with 512 neurons per chunk the (chunk, 2, window) float32 buffer is 8 MB.
    Unlike the chunk size, the window fixes the order in which coincident conductance jumps of
    one neuron are summed, so it is kept independent of the chunk and of the number of devices:
    then those give bit-identical results.
    """
    del chunk
    return 2000


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


def _neuron_window(params: CondLIFParams, carry, inputs, cfg: _Config):
    """``lax.scan`` of :func:`jaxlif.cond_lif_step` over one window; counts spikes of valid steps."""
    def step(c, x):
        state, n_spikes = c
        x_E, x_I, i_inj, valid = x
        dtype = state.neuron.v.dtype
        state, (v, spike, g_E, g_I) = cond_lif_step(params, state, (x_E.astype(dtype), x_I.astype(dtype), i_inj),
                                                    cfg.dt)
        n_spikes = n_spikes + (spike & valid).astype(jnp.int32)
        return (state, n_spikes), ((v, spike, g_E, g_I, state.neuron.v) if cfg.record else None)
    return jax.lax.scan(step, carry, inputs, unroll=cfg.unroll)


def _window_inputs(start, I_w, cfg: _Config):
    steps = start + jnp.arange(cfg.window)
    I_seq = jnp.broadcast_to(I_w, (cfg.window,)) if cfg.scalar_current else I_w
    return I_seq[:, None], (steps < cfg.n_steps - 1)[:, None]


def _assemble(out, n_spikes, cfg: _Config) -> BatchResult:
    """Turn per-window scan outputs ``(n_windows, window, C)`` into time-last traces."""
    if not cfg.record:
        return BatchResult(n_spikes)
    v, spike, g_E, g_I, v_next = (a.reshape((cfg.n_windows * cfg.window,) + a.shape[2:])[:cfg.n_steps - 1].T
                                  for a in out)
    v = jnp.concatenate([v, v_next[:, -1:]], axis=1)   # the last window may run past the last sample
    spike = jnp.concatenate([spike, jnp.zeros_like(spike[:, :1])], axis=1)
    zero = jnp.zeros_like(g_E[:, :1])
    return BatchResult(n_spikes, v, spike, jnp.concatenate([zero, g_E], 1), jnp.concatenate([zero, g_I], 1))


def _cond_chunk(ids, params: CondLIFParams, p_E, p_I, keys, I_win, cfg: _Config) -> BatchResult:
    """WL-A for the neurons ``ids`` (C,): pooled Poisson events per window, then the neuron scan."""
    dtype = jnp.result_type(float)
    C = ids.shape[0]
    cap = cfg.n_windows * cfg.window + 1
    law_E = _pooled_law(p_E, cfg.n_E, cfg.K_E, C, dtype)
    law_I = _pooled_law(p_I, cfg.n_I, cfg.K_I, C, dtype)
    state0 = (cond_lif_init(params), jnp.zeros((C,), jnp.int32))
    state0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (C,)), state0)
    ev0 = (_pooled_init(C), _pooled_init(C))

    def window(carry, x):
        neuron, ev_E, ev_I = carry
        w, I_w = x
        start = w * cfg.window
        ev_E, n_E = _pooled_window(ev_E, start, keys[0], ids, law_E, cfg.window, cfg.block_E, cap,
                                   _count_dtype(cfg.n_E))
        ev_I, n_I = _pooled_window(ev_I, start, keys[1], ids, law_I, cfg.window, cfg.block_I, cap,
                                   _count_dtype(cfg.n_I))
        I_seq, valid = _window_inputs(start, I_w, cfg)
        neuron, out = _neuron_window(params, neuron, (n_E, n_I, I_seq, valid), cfg)
        return (neuron, ev_E, ev_I), out

    (neuron, _, _), out = jax.lax.scan(window, (state0,) + ev0, (jnp.arange(cfg.n_windows), I_win))
    return _assemble(out, neuron[1], cfg)


def _stp_chunk(ids, params: STPLIFParams, p_E, p_I, keys, I_win, cfg: _Config) -> BatchResult:
    """WL-B for the neurons ``ids`` (C,): per-synapse STP events per window, then the neuron scan."""
    dtype = jnp.result_type(float)
    C, S = ids.shape[0], cfg.n_E + cfg.n_I
    cap = cfg.n_windows * cfg.window + 1
    cols = _columns(params, p_E, p_I, cfg.n_E, cfg.n_I, cfg.dt, dtype)
    # the neuron sees the summed jumps: a static synapse of g_bar = 1 with each population's tau_syn
    neuron_params = CondLIFParams(params.neuron, params.exc._replace(g_bar=1.0), params.inh._replace(g_bar=1.0))
    state0 = (cond_lif_init(neuron_params), jnp.zeros((C,), jnp.int32))
    state0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (C,)), state0)

    def window(carry, x):
        neuron, syn = carry
        w, I_w = x
        start = w * cfg.window
        syn, jumps = _synapses_window(syn, start, keys[0], cols, ids, cfg.window, cap, cfg.dt, dtype)
        I_seq, valid = _window_inputs(start, I_w, cfg)
        neuron, out = _neuron_window(neuron_params, neuron, (jumps[0], jumps[1], I_seq, valid), cfg)
        return (neuron, syn), out

    syn0 = _synapses_init(C, S, dtype)
    (neuron, _), out = jax.lax.scan(window, (state0, syn0), (jnp.arange(cfg.n_windows), I_win))
    return _assemble(out, neuron[1], cfg)


# ----------------------------------------------------------------------------------------------
# Batch plumbing: per-neuron arguments, chunks (lax.map), devices (shard_map)
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Static sizes from concrete rates
# ----------------------------------------------------------------------------------------------


def _max_p(rate, dt: float) -> float | None:
    arr = _checks._concrete(rate)
    return None if arr is None else float(np.max(arr)) * dt / 1000.0


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


# ----------------------------------------------------------------------------------------------
# Public simulators
# ----------------------------------------------------------------------------------------------


def simulate_cond_lif_batch(key: jax.Array, batch_size: int, params: CondLIFParams = CondLIFParams(), *,
                            rate_E=10.0, rate_I=10.0, n_E: int = 80, n_I: int = 20, I_inj=0.0,
                            T: float = 1000.0, dt: float = 0.1, spiking: bool = True, record: bool = False,
                            mesh: Mesh | None = None, batch_chunk: int | None = None,
                            window: int | None = None, unroll: int = 1) -> BatchResult:
    """``batch_size`` conductance-LIF neurons, each with its own ``n_E`` + ``n_I`` Poisson trains (WL-A).

    The model is :func:`jaxlif.simulate_cond_lif_poisson`'s (SPEC ``run_LIF_cond``): per step,
    refractory clamp / threshold, ``g[it+1] = g[it] - dt/tau_syn g[it] + g_bar n[it+1]``, then the
    membrane update, all by :func:`jaxlif.cond_lif_step`.  Only the inputs are drawn differently:
    the pooled count ``n[it]`` of each population is i.i.d. Binomial(n, rate*dt/1000) per step, as
    the sum of ``n`` Bernoulli trains is, but drawn event by event (module docstring), one hash per
    step that has input.  The counts are exactly those of :func:`cond_lif_batch_inputs` for the same
    key, so that::

        counts_E, counts_I = cond_lif_batch_inputs(key, B, rate_E=..., ...)
        ref = jax.vmap(lambda e, i: simulate_cond_lif(params, e, i, I_inj, dt=dt))(counts_E, counts_I)
        simulate_cond_lif_batch(key, B, params, ..., record=True)   # same v, spikes, g_E, g_I

    Args:
        key: a ``jax.random`` key.
        batch_size: number of neurons B.
        params: :class:`jaxlif.CondLIFParams`; every leaf a scalar or a per-neuron ``(B,)`` array.
        rate_E, rate_I: rate of each input train [Hz], scalar or ``(B,)`` (concrete values).
        n_E, n_I: number of excitatory/inhibitory trains per neuron.
        I_inj: injected current [pA], scalar or ``(n_steps,)`` (shared by the batch).
        T, dt: duration and time step [ms].
        spiking: ``False`` removes the threshold (free membrane potential).
        record: also return ``v, spikes, g_E, g_I`` as ``(B, n_steps)`` (memory grows with B * n_steps).
        mesh: one-axis device mesh for the batch axis (:func:`batch_mesh`); default all devices.
        batch_chunk: neurons simulated at once per device (default 2048, balanced); bounds memory.
        window: time steps per event window (default ``2**21 // chunk``, about 1000).
        unroll: ``lax.scan`` unroll of the neuron step (default 1: on XLA:CPU unrolling made the
            scan 3-5x slower in our measurements).

    Returns:
        :class:`BatchResult`.  Only ``key``, ``params``, rates, ``I_inj``, ``T``, ``dt`` and the dtype
        change the numbers: ``batch_chunk``, ``window`` and ``mesh`` give bit-identical results
        (the counts are integers), and neuron ``b`` of a batch does not depend on ``batch_size``.

    Raises:
        ValueError: as :func:`jaxlif.simulate_cond_lif_poisson`, and for a parameter or rate whose
        shape is neither ``()`` nor ``(batch_size,)``, or more than 1023 trains per population.
    """
    dt, steps, I = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt)
    check_cond_lif_params(params, dt)
    batch = _checks.check_count("batch_size", batch_size, minimum=1)
    _check_pooled_sizes(n_E, n_I, steps)
    if steps < 2:
        raise ValueError(f"T={T} ms with dt={dt} ms gives {steps} sample(s); need at least 2")
    dtype = jnp.result_type(float)
    pE, pI = _max_p(rate_E, dt), _max_p(rate_I, dt)
    blocks = (_block_size(pE, n_E), _block_size(pI, n_I))
    cfg_kw = dict(n_steps=steps, dt=dt, n_E=n_E, n_I=n_I,
                  K_E=_count_terms(pE, n_E, dtype), K_I=_count_terms(pI, n_I, dtype),
                  record=bool(record), spiking=bool(spiking), unroll=_checks.check_count("unroll", unroll, 1),
                  scalar_current=np.ndim(I_inj) == 0)
    params = _no_threshold(params, spiking)
    tree = (params, jnp.asarray(rate_E, dtype) * (dt / 1000.0), jnp.asarray(rate_I, dtype) * (dt / 1000.0))
    I = jnp.asarray(I_inj, dtype) if np.ndim(I_inj) == 0 else I
    return _run(_cond_chunk, (0, 1), key, batch, tree, I, cfg_kw, blocks, 2048, _pooled_default_window, mesh,
                batch_chunk, window)


def simulate_stp_lif_batch(key: jax.Array, batch_size: int, params: STPLIFParams = STPLIFParams(), *,
                           rate_E=15.0, rate_I=15.0, n_E: int = 80, n_I: int = 20, I_inj=0.0,
                           T: float = 1000.0, dt: float = 0.1, spiking: bool = True, record: bool = False,
                           mesh: Mesh | None = None, batch_chunk: int | None = None,
                           window: int | None = None, unroll: int = 1) -> BatchResult:
    """``batch_size`` STP-LIF neurons (WL-B), each with its own plastic Poisson trains, event-driven.

    The model is :func:`jaxlif.simulate_stp_lif` (SPEC ``run_LIF_cond_STP``): every train has its own
    ``u, R, g`` following ``dynamic_syn``; the neuron sees ``g_E = sum_j g_j`` (likewise ``g_I``).
    Here each synapse is advanced only at its own spikes (closed form of the silent Euler steps,
    then :func:`jaxlif.stp_step`), and its jump ``g_bar R u`` is added to the summed conductance,
    which decays with ``tau_syn`` (module docstring).  The trains are exactly those of
    :func:`stp_lif_batch_trains` for the same key, so ``jax.vmap(jaxlif.simulate_stp_lif)`` on them
    gives the same spikes and, up to rounding, the same traces (float64: within 1e-9).

    Args:
        key: a ``jax.random`` key.
        batch_size: number of neurons B.
        params: :class:`jaxlif.STPLIFParams` (default the bonus neuron with ``tau_ratio = 0.5``);
            every leaf a scalar or a per-neuron ``(B,)`` array.
        rate_E, rate_I: rate of each train [Hz], scalar or ``(B,)``.
        n_E, n_I, I_inj, T, dt, spiking, record, mesh, unroll: as in :func:`simulate_cond_lif_batch`.
        batch_chunk: neurons simulated at once per device (default 512); bounds memory.
        window: time steps per event window (default 2000).  The window sets the order in which
            coincident jumps of one neuron are summed, so another window changes ``g`` (and ``v``)
            by rounding only; ``batch_chunk`` and ``mesh`` give bit-identical results.

    Returns:
        :class:`BatchResult`; neuron ``b`` of a batch does not depend on ``batch_size``.
    """
    dt, steps, I = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt)
    _check_stp_lif_params(params, dt)
    batch = _checks.check_count("batch_size", batch_size, minimum=1)
    if steps < 2:
        raise ValueError(f"T={T} ms with dt={dt} ms gives {steps} sample(s); need at least 2")
    if n_E + n_I < 1:
        raise ValueError("n_E + n_I must be >= 1 for the STP batch simulator")
    dtype = jnp.result_type(float)
    cfg_kw = dict(n_steps=steps, dt=dt, n_E=n_E, n_I=n_I, K_E=0, K_I=0,
                  record=bool(record), spiking=bool(spiking), unroll=_checks.check_count("unroll", unroll, 1),
                  scalar_current=np.ndim(I_inj) == 0)
    params = _no_threshold(params, spiking)
    tree = (params, jnp.asarray(rate_E, dtype) * (dt / 1000.0), jnp.asarray(rate_I, dtype) * (dt / 1000.0))
    I = jnp.asarray(I_inj, dtype) if np.ndim(I_inj) == 0 else I
    return _run(_stp_chunk, (2,), key, batch, tree, I, cfg_kw, (lambda w: 1, lambda w: 1), 512,
                _synapse_default_window, mesh, batch_chunk, window)


# ----------------------------------------------------------------------------------------------
# Reference inputs: what the fast paths draw, as dense arrays (small batches)
# ----------------------------------------------------------------------------------------------


def cond_lif_batch_inputs(key: jax.Array, batch_size: int, *, rate_E=10.0, rate_I=10.0, n_E: int = 80,
                          n_I: int = 20, T: float = 1000.0, dt: float = 0.1, window: int | None = None):
    """The per-step input counts that :func:`simulate_cond_lif_batch` draws for ``key``.

    Returns:
        ``(counts_E, counts_I)``, each ``(batch_size, n_steps)`` float (index 0 is 0: never seen),
        ready for ``jax.vmap(jaxlif.simulate_cond_lif)``.  Dense: for tests and small batches.
    """
    dt, steps, _ = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, 0.0, T, dt)
    batch = _checks.check_count("batch_size", batch_size, minimum=1)
    _check_pooled_sizes(n_E, n_I, steps)
    dtype = jnp.result_type(float)
    pE, pI = _max_p(rate_E, dt), _max_p(rate_I, dt)
    _split_batched((rate_E, rate_I), batch, "rates")
    window = min(steps - 1, 1024 if window is None else _checks.check_count("window", window, minimum=1))
    keys = jnp.stack([jnp.concatenate([_stream_keys(key, 2 * t), _stream_keys(key, 2 * t + 1)]) for t in (0, 1)])
    pE_arr, pI_arr = (jnp.asarray(r, dtype) * (dt / 1000.0) for r in (rate_E, rate_I))
    blocks = (min(_block_size(pE, n_E)(window), window), min(_block_size(pI, n_I)(window), window))
    return _pooled_inputs(keys, pE_arr, pI_arr, batch, steps, window, n_E, n_I, blocks,
                          (_count_terms(pE, n_E, dtype), _count_terms(pI, n_I, dtype)))


@partial(jax.jit, static_argnums=(3, 4, 5, 6, 7, 8, 9))
def _pooled_inputs(keys, p_E, p_I, batch, steps, window, n_E, n_I, blocks, Ks):
    dtype = jnp.result_type(float)
    n_windows = -(-(steps - 1) // window)
    cap = n_windows * window + 1
    ids = jnp.arange(batch, dtype=jnp.uint32)
    out = []
    for pop, (p, n) in enumerate(((p_E, n_E), (p_I, n_I))):
        law = _pooled_law(p, n, Ks[pop], batch, dtype)

        def win(st, w, pop=pop, law=law):
            return _pooled_window(st, w * window, keys[pop], ids, law, window, blocks[pop], cap, dtype)

        _, bufs = jax.lax.scan(win, _pooled_init(batch), jnp.arange(n_windows))
        counts = bufs.reshape(-1, batch)[:steps - 1].T                  # (n_windows, window, B) -> (B, steps-1)
        out.append(jnp.concatenate([jnp.zeros((batch, 1), dtype), counts], axis=1))
    return tuple(out)


def stp_lif_batch_trains(key: jax.Array, batch_size: int, *, rate_E=15.0, rate_I=15.0, n_E: int = 80,
                         n_I: int = 20, T: float = 1000.0, dt: float = 0.1, window: int | None = None):
    """The spike trains that :func:`simulate_stp_lif_batch` draws for ``key``.

    Returns:
        ``(spikes_E, spikes_I)`` of shapes ``(batch_size, n_E, n_steps)`` and ``(batch_size, n_I,
        n_steps)``, bool (index 0 is never a spike), ready for ``jax.vmap(jaxlif.simulate_stp_lif)``.
        Dense: for tests and small batches.
    """
    dt, steps, _ = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, 0.0, T, dt)
    batch = _checks.check_count("batch_size", batch_size, minimum=1)
    _split_batched((rate_E, rate_I), batch, "rates")
    dtype = jnp.result_type(float)
    window = min(steps - 1, 1024 if window is None else _checks.check_count("window", window, minimum=1))
    keys = jnp.concatenate([_stream_keys(key, 4), _stream_keys(key, 5)])
    p_E, p_I = (jnp.asarray(r, dtype) * (dt / 1000.0) for r in (rate_E, rate_I))
    trains = _synapse_trains(keys, p_E, p_I, batch, steps, window, n_E, n_I, dt)
    return trains[:, :n_E], trains[:, n_E:]


@partial(jax.jit, static_argnums=(3, 4, 5, 6, 7, 8))
def _synapse_trains(keys, p_E, p_I, batch, steps, window, n_E, n_I, dt):
    dtype = jnp.result_type(float)
    n_windows = -(-(steps - 1) // window)
    cap = n_windows * window + 1
    ids = jnp.arange(batch, dtype=jnp.uint32)
    cols = _columns(STPLIFParams(), p_E, p_I, n_E, n_I, dt, dtype)

    def win(st, w):
        return _synapses_window(st, w * window, keys, cols, ids, window, cap, dt, dtype, materialize=True)

    _, bufs = jax.lax.scan(win, _synapses_init(batch, n_E + n_I, dtype), jnp.arange(n_windows))
    trains = jnp.moveaxis(bufs, 0, 2).reshape(batch, n_E + n_I, -1)[:, :, :steps - 1]
    return jnp.concatenate([jnp.zeros((batch, n_E + n_I, 1), bool), trains.astype(bool)], axis=2)
