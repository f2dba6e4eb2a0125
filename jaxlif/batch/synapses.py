r"""Plastic synapses (STP-LIF batches): every synapse advanced from spike to spike.

Law.  A Tsodyks-Markram synapse does not feel the postsynaptic voltage and changes course only
at its own spikes.  Between two spikes ``k`` steps apart the tutorial's Euler scheme multiplies
``u``, ``1 - R`` and ``g`` by ``a^(k-1)`` (``a = 1 - dt/tau``), then applies one spiking step
(:func:`jaxlif.stp_step`), so each synapse jumps from spike to spike and adds its conductance
jump ``g_bar R^- u^+`` to its neuron's summed conductance, which decays with the common
``tau_syn`` between inputs.  This equals the per-synapse Euler loop up to rounding
(associativity of the sum, ``a^k`` as ``exp(k log a)``).  Spike gaps of a train are geometric,
``P(gap > g) = (1-p)^g``, one hash per spike.

Work.  A pass (:func:`_synapse_pass`) takes the next spike of every synapse that has one in the
window; once at most 1/8 of the synapses still do, those are compacted into a small index set
(:func:`_compact_indices`), so the cost follows the number of spikes (about 1500 per
neuron-second at 15 Hz) rather than synapses x steps (10^6).  A pass adds its jumps to the
window buffer with one flat scatter (:func:`jaxlif.batch.kernels._scatter_add`).  Chunks of
fewer than ``_COMPACT_MIN_LANES`` synapses skip the compaction: there it saves less than it
costs, and it doubles the compilation time.  Compaction changes which lanes a pass visits, never
which spike a pass takes or the order of its additions, so both forms give the same numbers, bit
for bit.

Invariant.  Draw ``m`` of synapse ``j`` of neuron ``b`` is ``hash(keys, (b*S + j, m))``.  The window
fixes the order in which coincident jumps are summed (rounding of ``g`` only); chunks and
devices change nothing.  Every pass advances each synapse it takes by at least one step, so
``window + 1`` passes always suffice: the loops are bounded by that count, never by a value.

Parameters.  STP parameters (``U0, tau_d, tau_f``) and ``g_bar`` may differ per synapse: columns
are ``(1, S)`` (shared), or ``(C, S)`` when any of them is given per neuron or per synapse.
``tau_syn`` and ``E_rev`` are per population (the neuron sees the summed conductance).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif.batch.kernels import _cumsum_rows, _scatter_add
from jaxlif.batch.rng import _gap_scale, _geometric, _hash, _uniform
from jaxlif.plasticity import STPParams, STPState, stp_step
from jaxlif.stp_lif import STPLIFParams
from jaxlif.synapses import SynParams

__all__: list[str] = []  # private module of jaxlif.batch

#: Chunks with fewer synapses (C x S lanes) run every pass over all of them (module docstring).
#: At 100 synapses per neuron: 8 neurons run 1.8 ms without, 2.5 ms with compaction (1 s, one core), and
#: compile in 3.0 s instead of 5.5 s; 24 neurons 16 ms without, 10 ms with.
_COMPACT_MIN_LANES = 1024


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
    log_a_f: jax.Array  # log(1 - dt/tau_f) (exp_euler: -dt/tau_f): silent steps multiply u by exp(k log_a_f)
    log_a_d: jax.Array  # log(1 - dt/tau_d) (exp_euler: -dt/tau_d): silent steps multiply 1 - R by exp(k log_a_d)
    stp: STPParams
    syn: SynParams


def _columns(params: STPLIFParams, p_E, p_I, n_E: int, n_I: int, dt: float, dtype,
             integrator: str = "euler") -> _Columns:
    """Per-synapse constants from parameters of shape ``()``, ``(C,)`` (per neuron), ``(C, n)`` or
    ``(1, n)`` (per synapse; ``n`` = ``n_E`` for the excitatory fields, ``n_I`` for the inhibitory).
    The silent-step factors are ``log(1 - dt/tau)`` (the tutorial's Euler) or ``-dt/tau``
    (``integrator="exp_euler"``: the continuous-time synapse decays exactly)."""
    S = n_E + n_I

    def as_2d(x):
        return jnp.reshape(x, (-1, 1)) if x.ndim < 2 else x

    def col(e, i, dt_=dtype):
        e, i = as_2d(jnp.asarray(e, dt_)), as_2d(jnp.asarray(i, dt_))
        rows = (max(e.shape[0], i.shape[0]),)
        return jnp.concatenate([jnp.broadcast_to(e, rows + (n_E,)), jnp.broadcast_to(i, rows + (n_I,))], axis=1)

    j = jnp.arange(S)
    stp = STPParams(col(params.stp_E.U0, params.stp_I.U0), col(params.stp_E.tau_d, params.stp_I.tau_d),
                    col(params.stp_E.tau_f, params.stp_I.tau_f))
    syn = SynParams(col(params.exc.g_bar, params.inh.g_bar), col(params.exc.tau_syn, params.inh.tau_syn),
                    jnp.zeros((1, S), dtype))
    log1m_p = col(jnp.log1p(-jnp.asarray(p_E, dtype)), jnp.log1p(-jnp.asarray(p_I, dtype)))
    return _Columns((j >= n_E).astype(jnp.int32)[None, :], _gap_scale(log1m_p),
                    *((-dt / stp.tau_f, -dt / stp.tau_d) if integrator == "exp_euler" else
                      (jnp.log1p(-dt / stp.tau_f), jnp.log1p(-dt / stp.tau_d))), stp, syn)


def _lane_columns(cols: _Columns, c, j) -> _Columns:
    """The constants of the lanes (neuron ``c``, synapse ``j``) (compacted lanes)."""
    return jax.tree.map(lambda a: a[c if a.shape[0] > 1 else 0, j], cols)


def _synapse_gap(keys, cols: _Columns, syn_ids, ordinal, cap: int, dtype, platform: str = "cpu"):
    """Gap to the next spike of synapses ``syn_ids`` (neuron id * S + synapse index), draw ``ordinal``."""
    w0, w1 = _hash(keys[0], keys[1], syn_ids, ordinal, platform)
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
                  dtype, materialize: bool, platform: str = "cpu", integrator: str = "euler"):
    """Every synapse (lane) whose next spike lies before ``end`` takes it: add its conductance jump
    to ``buf`` (or mark the spike), update ``u, R`` and draw its next spike time."""
    due = st.t_next < end
    spike = due & (st.t_next > 0)                          # sample 0: the virtual initial spike
    pos = jnp.where(spike, st.t_next - 1 - start, 0)
    if materialize:
        buf = _scatter_add(buf, (c, j, pos), spike.astype(buf.dtype))
        u, R = st.u, st.R
    else:
        # k - 1 silent steps in closed form (as plasticity.stp_decay; exp_euler: the exact decay), then one
        # spiking step
        silent = (st.t_next - st.t_last - 1).astype(dtype)
        before = STPState(st.u * _silent_factor(silent, cols.log_a_f),
                          1.0 - (1.0 - st.R) * _silent_factor(silent, cols.log_a_d), jnp.zeros_like(st.u))
        (u, R, jump), _ = stp_step(cols.stp, cols.syn, before, 1.0, dt, integrator=integrator)  # g_bar R^- u^+
        buf = _scatter_add(buf, (c, cols.pop, pos), jnp.where(spike, jump, 0.0))
    gap = _synapse_gap(keys, cols, syn_ids, st.ordinal, cap, dtype, platform)
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
                     dtype, materialize: bool = False, platform: str = "cpu", integrator: str = "euler"):
    """Advance every synapse through its spikes at samples ``start+1 .. start+window``.

    Returns ``((state, buffer), done)``: the buffer holds the summed conductance jumps
    ``(2, window, C)`` [nS] (excitatory, inhibitory), or with ``materialize`` the spike trains
    ``(C, S, window)`` (int8); ``done`` (C,) is False for a neuron with a synapse still pending
    after the bounded passes (impossible for valid draws: the caller poisons it).

    A pass takes the next spike of every synapse that has one in the window.  The first passes
    run over all ``C * S`` synapses; once at most 1/8 of them still have a spike in the window
    (and if there are at least ``_COMPACT_MIN_LANES`` synapses),
    those are gathered into a compact set (:func:`_compact_indices`) and the remaining
    passes run over it only, so the work is close to proportional to the number of spikes.
    """
    C, S = state.t_next.shape
    L = C * S
    K = max(L // 8, 1)
    end = start + window + 1
    c_full, j_full = jnp.arange(C)[:, None], jnp.arange(S)[None, :]
    buf = jnp.zeros((C, S, window), jnp.int8) if materialize else jnp.zeros((C, 2, window), dtype)

    syn_ids = ids[:, None] * np.uint32(S) + j_full.astype(jnp.uint32)

    def bounded(pass_fn):
        def body(carry):
            return pass_fn(carry[:2]) + (carry[2] + 1,)
        return body

    def full_pass(carry):
        return _synapse_pass(*carry, keys, cols, syn_ids, c_full, j_full, start, end, cap, dt, dtype, materialize,
                             platform, integrator)

    def finish(state, buf):
        done = jnp.all(state.t_next >= end, axis=1)
        return (state, (buf if materialize else jnp.transpose(buf, (1, 2, 0)))), done

    passes = jnp.int32(0)
    if L < _COMPACT_MIN_LANES:
        state, buf, _ = jax.lax.while_loop(lambda carry: jnp.any(carry[0].t_next < end) & (carry[2] <= window),
                                           bounded(full_pass), (state, buf, passes))
        return finish(state, buf)
    state, buf, passes = jax.lax.while_loop(lambda carry: (jnp.sum(carry[0].t_next < end) > K) & (carry[2] <= window),
                                            bounded(full_pass), (state, buf, passes))

    # compact the synapses that still have spikes in this window (at most K of them)
    f, n_active = _compact_indices(state.t_next < end, K)
    valid = jnp.arange(K) < n_active
    c, j = f // S, f % S
    sub = _Synapses(*(a.ravel()[f] for a in state))
    sub = sub._replace(t_next=jnp.where(valid, sub.t_next, cap))
    sub_cols, sub_ids = _lane_columns(cols, c, j), syn_ids.ravel()[f]

    def compact_pass(carry):
        return _synapse_pass(*carry, keys, sub_cols, sub_ids, c, j, start, end, cap, dt, dtype, materialize,
                             platform, integrator)

    sub, buf, _ = jax.lax.while_loop(lambda carry: jnp.any(carry[0].t_next < end) & (carry[2] <= window),
                                     bounded(compact_pass), (sub, buf, passes))
    back = jnp.where(valid, f, L)                       # invalid lanes are dropped
    state = _Synapses(*(a.ravel().at[back].set(b, mode="drop").reshape(C, S) for a, b in zip(state, sub)))
    # scattering into each neuron's own (2, window) block keeps the scatter in cache; the neuron
    # scan wants time-major (2, window, C): one transpose per window
    return finish(state, buf)


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

