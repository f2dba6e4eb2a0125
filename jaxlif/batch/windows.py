r"""Windows and chunks: the neuron scan over event windows, for one chunk of the batch.

Each chunk of ``C`` neurons runs a ``lax.scan`` over windows of ``window`` steps.  Per window,
the input events are generated into a small buffer (:mod:`~jaxlif.batch.pooled` or
:mod:`~jaxlif.batch.synapses`), then a ``lax.scan`` runs :func:`jaxlif.cond_lif_step` (the core
step, unchanged) over the window.  Invariant: the neuron sees exactly the per-step inputs of the
step-by-step simulators on the same draws; windows only bound memory (a ``(window, C)``
buffer), and steps past the last sample (the last window may run over) are masked out of the
spike count.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlif.batch.pooled import _count_dtype, _pooled_init, _pooled_law, _pooled_window
from jaxlif.batch.synapses import _columns, _synapses_init, _synapses_window
from jaxlif.neurons import CondLIFParams, cond_lif_init, cond_lif_step
from jaxlif.stp_lif import STPLIFParams

__all__ = ["BatchResult"]

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

