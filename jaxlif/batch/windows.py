r"""Windows and chunks: the neuron scan over event windows, for one chunk of the batch.

Each chunk of ``C`` neurons runs a ``lax.scan`` over windows of ``window`` steps.  Per window,
the input events are generated into a small buffer (:mod:`~jaxlif.batch.pooled` or
:mod:`~jaxlif.batch.synapses`), then a ``lax.scan`` runs :func:`jaxlif.cond_lif_step` (the core
step, unchanged) over the window, folding the requested online statistics
(:mod:`~jaxlif.batch.stats`) into per-neuron accumulators.

Invariant: the neuron sees exactly the per-step inputs of the step-by-step simulators on the same
draws; windows only bound memory (a ``(window, C)`` buffer), and steps past the last sample (the
last window may run over) are masked out of the spike count and the statistics.  A chunk returns
its result and a per-neuron flag that is False only if an event loop hit its bound or the Euler
membrane step left its stable range (:mod:`jaxlif._stability`); the caller poisons those neurons.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlif import _stability
from jaxlif.batch.pooled import _count_dtype, _pooled_block, _pooled_init, _pooled_law, _pooled_window
from jaxlif.batch.stats import (BatchStats, _acc_init, _finalize, _merge_window, _ref, _StatsCfg, _step,
                                _win_init)
from jaxlif.batch.synapses import _columns, _synapses_init, _synapses_window
from jaxlif.neurons import CondLIFParams, cond_lif_init, cond_lif_step
from jaxlif.stp_lif import STPLIFParams

__all__ = ["BatchResult"]


class BatchResult(NamedTuple):
    """Output of the batch simulators (traces only with ``record=True``, statistics only with
    ``stats=``; else ``None``).

    Attributes:
        spike_count: spikes per neuron over the run, ``(batch,)`` int32 (samples ``0 .. n_steps-2``;
            the last sample is never tested against threshold, as in the tutorial).
        v: membrane potential [mV], ``(batch, n_steps)``; V_reset at a spike step.
        spikes: boolean raster ``(batch, n_steps)``.
        g_E, g_I: total excitatory/inhibitory conductance [nS], ``(batch, n_steps)``.
        stats: :class:`jaxlif.batch.BatchStats`, per-neuron statistics streamed during the run.
        spike_offset: with ``integrator="exp_euler"`` and ``record=True``, the time of each spike after
            its sample [ms], ``(batch, n_steps)`` (0 where no spike; docs/conventions.md section 10).
    """

    spike_count: jax.Array
    v: jax.Array | None = None
    spikes: jax.Array | None = None
    g_E: jax.Array | None = None
    g_I: jax.Array | None = None
    stats: BatchStats | None = None
    spike_offset: jax.Array | None = None


class _Config(NamedTuple):
    """Static configuration of one compiled program (hashable).  No field depends on a rate or on
    a parameter value, so new values reuse the compiled program."""
    n_steps: int
    dt: float
    window: int
    n_windows: int
    chunk: int
    n_chunks: int       # chunks per device and call
    n_E: int
    n_I: int
    record: bool
    spiking: bool
    unroll: int
    scalar_current: bool
    platform: str       # "cpu", "gpu", ...: selects implementations that give the same numbers
    stats: _StatsCfg | None
    integrator: str = "euler"   # jaxlif.neurons.INTEGRATORS


def _neuron_window(params: CondLIFParams, carry, inputs, ref, cfg: _Config):
    """``lax.scan`` of :func:`jaxlif.cond_lif_step` over one window: counts the spikes of valid steps
    and folds the statistics; outputs the traces (``record``) or the spikes of the stats window
    (spike times requested), else nothing."""
    st = cfg.stats

    def step(c, x):
        state, n_spikes, acc, win, g_peak = c
        x_E, x_I, i_inj, it = x
        dtype = state.neuron.v.dtype
        state, outs = cond_lif_step(params, state, (x_E.astype(dtype), x_I.astype(dtype), i_inj), cfg.dt,
                                    integrator=cfg.integrator)
        v, spike, g_E, g_I = outs[:4]     # exp_euler: outs[4] is the spike offset
        n_spikes = n_spikes + (spike & (it < cfg.n_steps - 1)).astype(jnp.int32)
        g_peak = jnp.maximum(g_peak, jnp.where(it < cfg.n_steps - 1, g_E + g_I, 0.0))
        if st is not None:
            frac = outs[4] / cfg.dt if cfg.integrator == "exp_euler" else None
            acc, win = _step(st, cfg.n_steps, acc, win, ref, it, v, spike, g_E, g_I, state.neuron.v, frac)
        out = None
        if cfg.record:
            out = (v, spike, g_E, g_I, state.neuron.v) + tuple(outs[4:])
        if st is not None and st.cap:
            out = (out, spike & (it < cfg.n_steps - 1) & (it >= st.burn)) + tuple(outs[4:])
        return (state, n_spikes, acc, win, g_peak), out
    return jax.lax.scan(step, carry, inputs, unroll=cfg.unroll)


def _window_inputs(start, I_w, cfg: _Config):
    steps = start + jnp.arange(cfg.window, dtype=jnp.int32)
    I_seq = jnp.broadcast_to(I_w, (cfg.window,)) if cfg.scalar_current else I_w
    return I_seq[:, None], steps


def _assemble(out, n_spikes, cfg: _Config) -> BatchResult:
    """Turn per-window scan outputs ``(n_windows, window, C)`` into time-last traces."""
    if not cfg.record:
        return BatchResult(n_spikes)
    v, spike, g_E, g_I, v_next, *offset = (a.reshape((cfg.n_windows * cfg.window,) + a.shape[2:])[:cfg.n_steps - 1].T
                                           for a in out)
    v = jnp.concatenate([v, v_next[:, -1:]], axis=1)   # the last window may run past the last sample
    spike = jnp.concatenate([spike, jnp.zeros_like(spike[:, :1])], axis=1)
    zero = jnp.zeros_like(g_E[:, :1])
    # exp_euler: the offsets, 0 at the last sample; g[0] = 0 under both integrators (no input at index 0)
    offset = jnp.concatenate([offset[0], zero], axis=1) if offset else None
    return BatchResult(n_spikes, v, spike, jnp.concatenate([zero, g_E], 1), jnp.concatenate([zero, g_I], 1),
                       spike_offset=offset)


def _scan_windows(params: CondLIFParams, C: int, events, ev0, I_win, cfg: _Config):
    """The window loop shared by both workloads: ``events(ev, start) -> ((ev, (x_E, x_I)), done)``
    fills a window's input buffers; the neuron scan and the statistics follow.  Returns
    ``(BatchResult, done)``."""
    dtype = jnp.result_type(float)
    st = cfg.stats
    state0 = (cond_lif_init(params), jnp.zeros((C,), jnp.int32), jnp.zeros((C,), dtype))   # g_peak: largest g_E + g_I
    state0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (C,)), state0)
    acc0 = None if st is None else _acc_init(st, C, dtype, cfg.integrator == "exp_euler")

    def window(carry, x):
        (neuron, n_spikes, g_peak), acc, ev, done = carry
        w, I_w = x
        start = w * cfg.window
        (ev, (x_E, x_I)), ok = events(ev, start)
        I_seq, steps = _window_inputs(start, I_w, cfg)
        ref = _ref(acc, neuron.neuron.v) if st is not None and st.v else None
        win0 = None if st is None else _win_init(st, C, dtype)
        (neuron, n_spikes, acc, win, g_peak), out = _neuron_window(params, (neuron, n_spikes, acc, win0, g_peak),
                                                                   (x_E, x_I, I_seq, steps), ref, cfg)
        if st is not None:
            out, spikes, *offsets = out if st.cap else (out, None)
            acc = _merge_window(st, cfg.n_steps, cfg.dt, acc, win, ref, steps, spikes, *offsets)
        return ((neuron, n_spikes, g_peak), acc, ev, done & ok), out

    carry0 = (state0, acc0, ev0, jnp.ones((C,), bool))
    steps = jnp.arange(cfg.n_windows, dtype=jnp.int32)
    ((_, n_spikes, g_peak), acc, _, done), out = jax.lax.scan(window, carry0, (steps, I_win))
    result = _assemble(out, n_spikes, cfg)
    if st is not None:
        result = result._replace(stats=_finalize(st, cfg.n_steps, cfg.dt, acc))
    if getattr(cfg, "integrator", "euler") == "euler":   # the tutorial's membrane step: within its stable range?
        done = done & _stability.traced_euler_ok(params.neuron, g_peak, cfg.dt, message=False)
    return result, done


def _cond_chunk(ids, params: CondLIFParams, rate_E, rate_I, keys, I_win, cfg: _Config):
    """WL-A for the neurons ``ids`` (C,): pooled Poisson events per window, then the neuron scan."""
    dtype = jnp.result_type(float)
    C = ids.shape[0]
    cap = cfg.n_windows * cfg.window + 1
    block = _pooled_block(cfg.window, cfg.platform)
    laws = (_pooled_law(rate_E * (cfg.dt / 1000.0), cfg.n_E, C, dtype),
            _pooled_law(rate_I * (cfg.dt / 1000.0), cfg.n_I, C, dtype))
    buf_dtypes = (_count_dtype(cfg.n_E, cfg.platform), _count_dtype(cfg.n_I, cfg.platform))

    def events(ev, start):
        out = [_pooled_window(ev[t], start, keys[t], ids, laws[t], cfg.window, block, cap, buf_dtypes[t],
                              cfg.platform) for t in (0, 1)]
        (ev_E, n_E), ok_E = out[0]
        (ev_I, n_I), ok_I = out[1]
        return ((ev_E, ev_I), (n_E, n_I)), ok_E & ok_I

    return _scan_windows(params, C, events, (_pooled_init(C), _pooled_init(C)), I_win, cfg)


def _stp_chunk(ids, params: STPLIFParams, rate_E, rate_I, keys, I_win, cfg: _Config):
    """WL-B for the neurons ``ids`` (C,): per-synapse STP events per window, then the neuron scan."""
    dtype = jnp.result_type(float)
    C, S = ids.shape[0], cfg.n_E + cfg.n_I
    cap = cfg.n_windows * cfg.window + 1
    cols = _columns(params, rate_E * (cfg.dt / 1000.0), rate_I * (cfg.dt / 1000.0), cfg.n_E, cfg.n_I, cfg.dt, dtype,
                    cfg.integrator)
    # the neuron sees the summed jumps: a static synapse of g_bar = 1 with each population's tau_syn
    neuron_params = CondLIFParams(params.neuron, params.exc._replace(g_bar=1.0), params.inh._replace(g_bar=1.0))

    def events(syn, start):
        (syn, jumps), ok = _synapses_window(syn, start, keys[0], cols, ids, cfg.window, cap, cfg.dt, dtype,
                                            platform=cfg.platform, integrator=cfg.integrator)
        return (syn, (jumps[0], jumps[1])), ok

    return _scan_windows(neuron_params, C, events, _synapses_init(C, S, dtype), I_win, cfg)
