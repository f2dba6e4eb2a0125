r"""The public batch simulators and their reference inputs.

:func:`simulate_cond_lif_batch` (pooled static input) and :func:`simulate_stp_lif_batch` (plastic
synapses) validate their arguments in plain Python, fix the static sizes from the concrete
rates, and run one compiled program (:mod:`~jaxlif.batch.devices`).  :func:`cond_lif_batch_inputs`
and :func:`stp_lif_batch_trains` return, as dense arrays, exactly what the fast paths draw, so that
the step-by-step simulators can be run on the same input (that is how the tests check them).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from jaxlif import _checks, _stability
from jaxlif._host import host_argument
from jaxlif.batch.devices import _classify, _lane_ok, _run
from jaxlif.batch.pooled import (_check_pooled_sizes, _pooled_block, _pooled_default_window, _pooled_init,
                                 _pooled_law, _pooled_window)
from jaxlif.batch.rng import _stream_keys
from jaxlif.batch.synapses import _columns, _synapse_default_window, _synapses_init, _synapses_window
from jaxlif.batch.stats import Stats, _stats_config
from jaxlif.batch.windows import BatchResult, _cond_chunk, _stp_chunk
from jaxlif.neurons import (CondLIFParams, _check_poisson_run, _no_threshold, check_cond_lif_params,
                            check_integrator)
from jaxlif.stp_lif import STPLIFParams, _check as _check_stp_lif_params

__all__ = [
    "simulate_cond_lif_batch",
    "simulate_stp_lif_batch",
    "cond_lif_batch_inputs",
    "stp_lif_batch_trains",
]

_RULE_TABLES = {"neuron": _checks.LIF_RULES, "exc": _checks.SYN_RULES, "inh": _checks.SYN_RULES,
                "stp_E": _checks.STP_RULES, "stp_I": _checks.STP_RULES}


def _labels_and_rules(tree) -> tuple[list[str], list[str]]:
    """Argument name and validity rule of every leaf of ``(params, rate_E, rate_I)``."""
    labels, rules = [], []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        top = path[0].idx
        if top == 0:
            labels.append("params" + jax.tree_util.keystr(path[1:]))
            rules.append(_RULE_TABLES[path[1].name][path[2].name])
        else:
            labels.append(("rate_E", "rate_I")[top - 1])
            rules.append("rate")
    return labels, rules


def _rate(rate, dtype):
    """A rate as an array of ``dtype``; a concrete ``-0.0`` becomes ``+0.0`` (same law, and no sign
    of zero can reach a logarithm)."""
    arr = _checks._concrete(rate)
    return jnp.asarray(rate, dtype) if arr is None else np.asarray(arr, dtype) + dtype.type(0.0)


def _grad_message(name: str, alternative: str) -> str:
    return (f"jaxlif.batch.{name} cannot be differentiated: its event-driven input runs loops whose trip "
            f"count depends on the values, and its spike outputs are integers. For gradients, use "
            f"jax.vmap over jaxlif.{alternative} (the same model step by step; its spike_grad= option gives "
            f"surrogate spike derivatives and checkpoint= bounds the memory of long runs).")


def _common(key, batch_size, rate_E, rate_I, n_E, n_I, I_inj, T, dt, spiking, record, stats, unroll):
    dt, steps, I = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, I_inj, T, dt)
    batch = _checks.check_count("batch_size", batch_size, minimum=1)
    if steps < 2:
        raise ValueError(f"T={T} ms with dt={dt} ms gives {steps} sample(s); need at least 2")
    cfg_kw = dict(n_steps=steps, dt=dt, n_E=n_E, n_I=n_I, record=_checks.check_flag("record", record),
                  spiking=_checks.check_flag("spiking", spiking),
                  unroll=_checks.check_count("unroll", unroll, 1), scalar_current=np.ndim(I_inj) == 0,
                  stats=_stats_config(stats, T, dt, steps))
    dtype = jnp.dtype(jnp.result_type(float))
    I = host_argument(I_inj, dtype) if np.ndim(I_inj) == 0 else I
    return dt, batch, cfg_kw, (_rate(rate_E, dtype), _rate(rate_I, dtype)), I


# ----------------------------------------------------------------------------------------------
# Public simulators
# ----------------------------------------------------------------------------------------------


def simulate_cond_lif_batch(key: jax.Array, batch_size: int, params: CondLIFParams = CondLIFParams(), *,
                            rate_E: ArrayLike = 10.0, rate_I: ArrayLike = 10.0, n_E: int = 80, n_I: int = 20,
                            I_inj: ArrayLike = 0.0,
                            T: float = 1000.0, dt: float = 0.1, spiking: bool = True, record: bool = False,
                            stats: Stats | None = None, progress: Callable[[int, int], None] | None = None,
                            mesh: Mesh | None = None, batch_chunk: int | None = None,
                            window: int | None = None, unroll: int = 1, integrator: str = "euler") -> BatchResult:
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
        params: :class:`jaxlif.CondLIFParams`; every leaf a scalar or a per-neuron ``(B,)`` array (the
            pooled trains of a population share ``g_bar``, so nothing is per synapse here).
        rate_E, rate_I: rate of each input train [Hz], scalar or ``(B,)``.
        n_E, n_I: number of excitatory/inhibitory trains per neuron.
        I_inj: injected current [pA], scalar or ``(n_steps,)`` (shared by the batch).
        T, dt: duration and time step [ms].
        spiking: ``False`` removes the threshold (free membrane potential).
        record: also return ``v, spikes, g_E, g_I`` as ``(B, n_steps)`` (memory grows with B * n_steps;
            refused up front when it cannot fit).
        stats: :class:`jaxlif.batch.Stats`: per-neuron statistics streamed during the run (rates, ISI
            CV, mean and std of v, mean conductances, spike times) in O(B) memory, in ``result.stats``.
        progress: ``progress(done, total)`` called after each call of the compiled program (large
            batches are streamed through it a slice at a time); :func:`jaxlif.batch.progress_bar`.
        mesh: one-axis device mesh for the batch axis (:func:`batch_mesh`); default all devices.
        batch_chunk: neurons simulated at once per device (default 2048, balanced); bounds memory.
        window: time steps per event window (default ``2**21 // chunk``, about 1000).
        unroll: ``lax.scan`` unroll of the neuron step (default 1: on XLA:CPU unrolling made the
            scan 3-5x slower in our measurements).
        integrator: ``"euler"`` (default, the tutorial's scheme) or ``"exp_euler"`` (exponential Euler,
            spike times within the step: :func:`jaxlif.cond_lif_step`, docs/conventions.md section 10;
            ``result.spike_offset`` with ``record=True``).  The pooled input has no spike at index 0, so
            both integrators see the same counts.  ``stats.isi_cv`` and ``stats.spike_times`` then use
            the spike times within the step (``k dt + spike_offset``).

    Returns:
        :class:`BatchResult`.  Only ``key``, ``params``, rates, ``I_inj``, ``T``, ``dt`` and the dtype
        change the numbers: ``batch_chunk``, ``window``, ``mesh`` and the streaming give bit-identical
        results (the counts are integers), and neuron ``b`` of a batch does not depend on ``batch_size``.
        One compiled program serves every value of the rates and parameters (only shapes, ``T``,
        ``dt`` and the options recompile).  Traced invalid values poison the neurons they concern
        (docs/conventions.md section 9), and so does a membrane step beyond forward Euler's stable
        range, ``dt (g_L + g_E + g_I) / C > 1`` (with a warning when the result is concrete;
        :mod:`jaxlif._stability`).

    Raises:
        ValueError: as :func:`jaxlif.simulate_cond_lif_poisson`; for a parameter or rate whose shape
        is neither ``()`` nor ``(batch_size,)``; more than 1023 trains per population; outputs that
        cannot fit in memory.
        TypeError: under ``jax.grad``/``jax.jvp`` (not differentiable; the message names the
        per-step alternative).
    """
    dt, batch, cfg_kw, rates, I = _common(key, batch_size, rate_E, rate_I, n_E, n_I, I_inj, T, dt, spiking, record,
                                          stats, unroll)
    cfg_kw["integrator"] = check_integrator(integrator)
    check_cond_lif_params(params, dt)
    _check_pooled_sizes(n_E, n_I, cfg_kw["n_steps"])
    tree = _checks.upcast((_no_threshold(params, spiking),) + rates)   # float16/bfloat16: the float32 program
    labels, rules = _labels_and_rules(tree)
    return _stability.warn_if_poisoned(
        _run(_cond_chunk, (0, 1), key, batch, tree, labels, rules, {}, I, cfg_kw, 2048, _pooled_default_window,
             mesh, batch_chunk, window, progress,
             _grad_message("simulate_cond_lif_batch", "simulate_cond_lif_poisson")),
        "simulate_cond_lif_batch")


def simulate_stp_lif_batch(key: jax.Array, batch_size: int, params: STPLIFParams = STPLIFParams(), *,
                           rate_E: ArrayLike = 15.0, rate_I: ArrayLike = 15.0, n_E: int = 80, n_I: int = 20,
                           I_inj: ArrayLike = 0.0,
                           T: float = 1000.0, dt: float = 0.1, spiking: bool = True, record: bool = False,
                           stats: Stats | None = None, progress: Callable[[int, int], None] | None = None,
                           mesh: Mesh | None = None, batch_chunk: int | None = None,
                           window: int | None = None, unroll: int = 1, integrator: str = "euler") -> BatchResult:
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
        params: :class:`jaxlif.STPLIFParams` (default the bonus neuron with ``tau_ratio = 0.5``).
            Shapes (docs/conventions.md section 8): every leaf ``()`` (shared) or ``(B,)`` (per
            neuron); the STP parameters ``stp_E``/``stp_I`` and ``exc.g_bar``/``inh.g_bar`` may also be
            per synapse, ``(B, n)`` or ``(1, n)`` with ``n = n_E`` (excitatory) or ``n_I``.  A 1-D
            array is always per neuron.
        rate_E, rate_I: rate of each train [Hz], scalar or ``(B,)``.
        n_E, n_I, I_inj, T, dt, spiking, record, stats, progress, mesh, unroll: as in
            :func:`simulate_cond_lif_batch`.
        batch_chunk: neurons simulated at once per device (default 512); bounds memory.
        window: time steps per event window (default 2000).  The window sets the order in which
            coincident jumps of one neuron are summed, so another window changes ``g`` (and ``v``)
            by rounding only; ``batch_chunk``, ``mesh`` and the streaming give bit-identical results.
        integrator: ``"euler"`` (default, the tutorial's scheme) or ``"exp_euler"``: the neuron as in
            :func:`simulate_cond_lif_batch`, every synapse the continuous-time Tsodyks-Markram synapse,
            decaying exactly between its spikes (``u exp(-k dt/tau_f)``, ``1 - (1 - R) exp(-k dt/tau_d)``;
            :func:`jaxlif.stp_step`), as :func:`jaxlif.simulate_stp_lif` with ``integrator="exp_euler"``
            on the same trains (docs/conventions.md section 10).

    Returns:
        :class:`BatchResult`; neuron ``b`` of a batch does not depend on ``batch_size``.

    Raises:
        ValueError, TypeError: as :func:`simulate_cond_lif_batch`.
    """
    dt, batch, cfg_kw, rates, I = _common(key, batch_size, rate_E, rate_I, n_E, n_I, I_inj, T, dt, spiking, record,
                                          stats, unroll)
    _check_stp_lif_params(params, dt)
    cfg_kw["integrator"] = check_integrator(integrator)
    if n_E + n_I < 1:
        raise ValueError("n_E + n_I must be >= 1 for the STP batch simulator")
    tree = _checks.upcast((_no_threshold(params, spiking),) + rates)   # float16/bfloat16: the float32 program
    labels, rules = _labels_and_rules(tree)
    per_synapse = {f"params.{pop}.{field}": n for pop, n in (("stp_E", n_E), ("stp_I", n_I))
                   for field in ("U0", "tau_d", "tau_f")}
    per_synapse.update({"params.exc.g_bar": n_E, "params.inh.g_bar": n_I})
    return _stability.warn_if_poisoned(
        _run(_stp_chunk, (2,), key, batch, tree, labels, rules, per_synapse, I, cfg_kw, 512, _synapse_default_window,
             mesh, batch_chunk, window, progress, _grad_message("simulate_stp_lif_batch", "simulate_stp_lif_poisson")),
        "simulate_stp_lif_batch")


# ----------------------------------------------------------------------------------------------
# Reference inputs: what the fast paths draw, as dense arrays (small batches)
# ----------------------------------------------------------------------------------------------


def cond_lif_batch_inputs(key: jax.Array, batch_size: int, *, rate_E: ArrayLike = 10.0,
                          rate_I: ArrayLike = 10.0, n_E: int = 80, n_I: int = 20, T: float = 1000.0,
                          dt: float = 0.1, window: int | None = None) -> tuple[jax.Array, jax.Array]:
    """The per-step input counts that :func:`simulate_cond_lif_batch` draws for ``key``.

    Returns:
        ``(counts_E, counts_I)``, each ``(batch_size, n_steps)`` float (index 0 is 0: never seen),
        ready for ``jax.vmap(jaxlif.simulate_cond_lif)``.  Dense: for tests and small batches.
    """
    dt, steps, _ = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, 0.0, T, dt)
    batch = _checks.check_count("batch_size", batch_size, minimum=1)
    _check_pooled_sizes(n_E, n_I, steps)
    dtype = jnp.dtype(jnp.result_type(float))
    _classify((rate_E, rate_I), batch, {}, ["rate_E", "rate_I"])
    window = min(steps - 1, 1024 if window is None else _checks.check_count("window", window, minimum=1))
    return _pooled_inputs(key, _rate(rate_E, dtype), _rate(rate_I, dtype), batch, steps, window, n_E, n_I, dt)


def _rates_ok(rate_E, rate_I, dt: float, batch: int):
    """Per-neuron validity ``(batch,)`` of (possibly traced) rates, with the checked-mode messages:
    the reference inputs are poisoned for an invalid rate, as the simulators' outputs are."""
    ok = jnp.ones((batch,), bool)
    for name, rate in (("rate_E", rate_E), ("rate_I", rate_I)):
        _checks.traced_rule(name, rate, "rate", dt)
        ok = ok & _lane_ok(rate, "rate", dt, batch)
    return ok


@partial(jax.jit, static_argnums=(3, 4, 5, 6, 7, 8))
def _pooled_inputs(key, rate_E, rate_I, batch, steps, window, n_E, n_I, dt):
    """:func:`cond_lif_batch_inputs` as one compiled program (stream keys, laws, counts, poisoning)."""
    dtype = jnp.result_type(float)
    keys = jnp.stack([jnp.concatenate([_stream_keys(key, 2 * t), _stream_keys(key, 2 * t + 1)]) for t in (0, 1)])
    p_E, p_I = (r * (dt / 1000.0) for r in (rate_E, rate_I))
    n_windows = -(-(steps - 1) // window)
    cap = n_windows * window + 1
    ids = jnp.arange(batch, dtype=jnp.uint32)
    out = []
    for pop, (p, n) in enumerate(((p_E, n_E), (p_I, n_I))):
        law = _pooled_law(p, n, batch, dtype)

        def win(st, w, pop=pop, law=law):
            return _pooled_window(st, w * window, keys[pop], ids, law, window, _pooled_block(window, "cpu"), cap,
                                  dtype)[0]

        _, bufs = jax.lax.scan(win, _pooled_init(batch), jnp.arange(n_windows))
        counts = bufs.reshape(-1, batch)[:steps - 1].T                  # (n_windows, window, B) -> (B, steps-1)
        out.append(jnp.concatenate([jnp.zeros((batch, 1), dtype), counts], axis=1))
    return _checks.poison(_rates_ok(rate_E, rate_I, dt, batch), tuple(out))


def stp_lif_batch_trains(key: jax.Array, batch_size: int, *, rate_E: ArrayLike = 15.0,
                         rate_I: ArrayLike = 15.0, n_E: int = 80, n_I: int = 20, T: float = 1000.0,
                         dt: float = 0.1, window: int | None = None) -> tuple[jax.Array, jax.Array]:
    """The spike trains that :func:`simulate_stp_lif_batch` draws for ``key``.

    Returns:
        ``(spikes_E, spikes_I)`` of shapes ``(batch_size, n_E, n_steps)`` and ``(batch_size, n_I,
        n_steps)``, bool (index 0 is never a spike), ready for ``jax.vmap(jaxlif.simulate_stp_lif)``.
        Dense: for tests and small batches.
    """
    dt, steps, _ = _check_poisson_run(key, rate_E, rate_I, n_E, n_I, 0.0, T, dt)
    batch = _checks.check_count("batch_size", batch_size, minimum=1)
    _classify((rate_E, rate_I), batch, {}, ["rate_E", "rate_I"])
    dtype = jnp.dtype(jnp.result_type(float))
    window = min(steps - 1, 1024 if window is None else _checks.check_count("window", window, minimum=1))
    return _synapse_trains(key, _rate(rate_E, dtype), _rate(rate_I, dtype), batch, steps, window, n_E, n_I, dt)


@partial(jax.jit, static_argnums=(3, 4, 5, 6, 7, 8))
def _synapse_trains(key, rate_E, rate_I, batch, steps, window, n_E, n_I, dt):
    """:func:`stp_lif_batch_trains` as one compiled program (stream keys, columns, trains, poisoning)."""
    dtype = jnp.result_type(float)
    keys = jnp.concatenate([_stream_keys(key, 4), _stream_keys(key, 5)])
    p_E, p_I = (r * (dt / 1000.0) for r in (rate_E, rate_I))
    n_windows = -(-(steps - 1) // window)
    cap = n_windows * window + 1
    ids = jnp.arange(batch, dtype=jnp.uint32)
    cols = _columns(STPLIFParams(), p_E, p_I, n_E, n_I, dt, dtype)

    def win(st, w):
        return _synapses_window(st, w * window, keys, cols, ids, window, cap, dt, dtype, materialize=True)[0]

    _, bufs = jax.lax.scan(win, _synapses_init(batch, n_E + n_I, dtype), jnp.arange(n_windows))
    trains = jnp.moveaxis(bufs, 0, 2).reshape(batch, n_E + n_I, -1)[:, :, :steps - 1]
    trains = _checks.poison(_rates_ok(rate_E, rate_I, dt, batch),
                            jnp.concatenate([jnp.zeros((batch, n_E + n_I, 1), bool), trains.astype(bool)], axis=2))
    return trains[:, :n_E], trains[:, n_E:]
