r"""The public batch simulators and their reference inputs.

:func:`simulate_cond_lif_batch` (pooled static input) and :func:`simulate_stp_lif_batch` (plastic
synapses) validate their arguments in plain Python, fix the static sizes from the concrete
rates, and run one compiled program (:mod:`~jaxlif.batch.devices`).  :func:`cond_lif_batch_inputs`
and :func:`stp_lif_batch_trains` return, as dense arrays, exactly what the fast paths draw, so that
the step-by-step simulators can be run on the same input (that is how the tests check them).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxlif import _checks
from jaxlif.batch.devices import _run, _split_batched
from jaxlif.batch.pooled import (_block_size, _check_pooled_sizes, _count_terms, _pooled_default_window,
                                 _pooled_init, _pooled_law, _pooled_window)
from jaxlif.batch.rng import _stream_keys
from jaxlif.batch.synapses import _columns, _synapse_default_window, _synapses_init, _synapses_window
from jaxlif.batch.windows import BatchResult, _cond_chunk, _stp_chunk
from jaxlif.neurons import CondLIFParams, _check_poisson_run, _no_threshold, check_cond_lif_params
from jaxlif.stp_lif import STPLIFParams, _check as _check_stp_lif_params

__all__ = [
    "simulate_cond_lif_batch",
    "simulate_stp_lif_batch",
    "cond_lif_batch_inputs",
    "stp_lif_batch_trains",
]

def _max_p(rate, dt: float) -> float | None:
    arr = _checks._concrete(rate)
    return None if arr is None else float(np.max(arr)) * dt / 1000.0



# ----------------------------------------------------------------------------------------------
# Public simulators
# ----------------------------------------------------------------------------------------------


def simulate_cond_lif_batch(key: jax.Array, batch_size: int, params: CondLIFParams = CondLIFParams(), *,
                            rate_E=10.0, rate_I=10.0, n_E: int = 80, n_I: int = 20, I_inj=0.0,
                            T: float = 1000.0, dt: float = 0.1, spiking: bool = True, record: bool = False,
                            mesh: Mesh | None = None, batch_chunk: int | None = None,
                            window: int | None = None, unroll: int = 1) -> BatchResult:
    """``batch_size`` conductance-LIF neurons, each with its own ``n_E`` + ``n_I`` Poisson trains (WL-A).

    The model is :func:`jaxlif.simulate_cond_lif_poisson`'s (the tutorial's ``run_LIF_cond``,
    docs/conventions.md 4.2): per step,
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

    The model is :func:`jaxlif.simulate_stp_lif` (the tutorial's ``run_LIF_cond_STP``, docs/conventions.md
    4.3): every train has its own
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
