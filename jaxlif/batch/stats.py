r"""Online statistics: per-neuron summaries streamed inside the neuron scan, in O(batch) memory.

A caller who wants rates, ISI CVs or the mean and spread of the (free) membrane potential of a
million neurons cannot record ``(batch, n_steps)`` traces.  Pass ``stats=Stats(...)`` to the batch
simulators instead: the scan folds every sample into a few numbers per neuron, so memory does not
grow with the run length, and :class:`BatchStats` holds the result.

Law (what each field equals).  Every statistic is over the samples ``k`` with ``t_k = k dt >=
burn_in``, ``k0 = len(np.arange(0, burn_in, dt))``, of the traces that ``record=True`` returns for the
same key (tested to float rounding):

- ``n_spikes = spikes[:, k0:].sum(1)``; ``rate = n_spikes / ((n_steps - k0) dt)`` in Hz (with
  ``burn_in = 0`` this is the tutorial's count / T);
- ``isi_cv = jaxlif.isi_cv(spikes[:, k0:])`` (population std over mean of the intervals between
  spikes after the burn-in; 0 with 3 or fewer spikes, the tutorial's rule);
- ``v_mean, v_std = v[:, k0:].mean(1), v[:, k0:].std(1)`` [mV] (with ``spiking=False``: the free
  membrane potential);
- ``g_E_mean, g_I_mean = g_E[:, k0:].mean(1), g_I[:, k0:].mean(1)`` [nS];
- ``spike_times``: the first ``spike_times`` spike times after the burn-in [ms] (``k dt``),
  ``(batch, cap)``, NaN after the last; ``n_spikes > cap`` says that some were not kept.

With ``integrator="exp_euler"`` a spike of step ``k`` happened at ``k dt + spike_offset[k]``: the ISIs of
``isi_cv`` and the kept ``spike_times`` use those times (a spike belongs to the stats window by its step).

Numerics.  Within a window (at most a few thousand steps) the scan adds ``v - ref`` and its square
(``ref``: the running mean), and the window's mean and sum of squared deviations are merged into the
running ones with Chan et al.'s (1979) pairwise update, so float32 keeps about 6 digits over 10^6
steps; ISIs use Welford's update.  Conductance means use the same pairwise merge.  The window
(``window=``) sets how the sums are grouped, so another window changes the float statistics by
rounding only; counts, spike times and ISI CVs do not depend on it, and neither chunks nor calls
change anything.  Across device counts the traces and counts stay bit-identical, but XLA compiles
the sums into a different program, whose rounding may differ in the last bit (1e-7 relative in
float32).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif import _checks
from jaxlif.batch.kernels import _cumsum_rows

__all__ = ["Stats", "BatchStats"]


class Stats(NamedTuple):
    """Which per-neuron statistics the batch simulators stream (``stats=Stats(...)``).

    Spike count and rate after the burn-in are always included.

    Attributes:
        burn_in: samples with ``t < burn_in`` [ms] are left out of every statistic.
        isi_cv: coefficient of variation of the inter-spike intervals.
        v: mean and (population) standard deviation of the membrane potential [mV].
        g: means of the excitatory and inhibitory conductances [nS].
        spike_times: keep the first ``spike_times`` spike times per neuron [ms] (0: none).
    """

    burn_in: float = 0.0
    isi_cv: bool = False
    v: bool = False
    g: bool = False
    spike_times: int = 0


class BatchStats(NamedTuple):
    """Per-neuron statistics over the samples after the burn-in (``None``: not requested).

    Attributes:
        n_spikes: spikes after the burn-in, ``(batch,)`` int32.
        rate: ``n_spikes`` per second of the stats window [Hz], ``(batch,)``.
        isi_cv: ``(batch,)``; v_mean, v_std: ``(batch,)`` [mV]; g_E_mean, g_I_mean: ``(batch,)`` [nS].
        spike_times: ``(batch, cap)`` [ms], NaN after the last kept spike.
    """

    n_spikes: jax.Array
    rate: jax.Array
    isi_cv: jax.Array | None = None
    v_mean: jax.Array | None = None
    v_std: jax.Array | None = None
    g_E_mean: jax.Array | None = None
    g_I_mean: jax.Array | None = None
    spike_times: jax.Array | None = None


class _StatsCfg(NamedTuple):
    """Static part of a :class:`Stats` request: ``burn`` is the first sample index kept."""
    burn: int
    isi_cv: bool
    v: bool
    g: bool
    cap: int


def _stats_config(stats, T: float, dt: float, steps: int) -> _StatsCfg | None:
    """Validate a :class:`Stats` request in plain Python."""
    if stats is None:
        return None
    if not isinstance(stats, Stats):
        raise TypeError(f"stats must be a jaxlif.batch.Stats or None, got {type(stats).__name__}")
    burn_in = _checks.check_numeric("stats.burn_in", stats.burn_in)
    if burn_in is None or burn_in.ndim != 0:
        raise TypeError(f"stats.burn_in must be a concrete scalar in ms, got {stats.burn_in!r}")
    _checks.check_nonnegative("stats.burn_in", burn_in, "ms")
    burn = len(np.arange(0.0, float(burn_in), dt)) if float(burn_in) > 0 else 0
    if burn > steps - 2:
        raise ValueError(f"stats.burn_in={float(burn_in)} ms leaves {steps - burn} sample(s) of the run "
                         f"(T={T} ms, dt={dt} ms); need burn_in <= T - 2 dt")
    for name in ("isi_cv", "v", "g"):
        if not isinstance(getattr(stats, name), (bool, np.bool_)):
            raise TypeError(f"stats.{name} must be True or False, got {getattr(stats, name)!r}")
    cap = _checks.check_count("stats.spike_times", stats.spike_times, minimum=0)
    return _StatsCfg(burn, bool(stats.isi_cv), bool(stats.v), bool(stats.g), cap)


class _Acc(NamedTuple):
    """Running per-neuron accumulators, ``(C,)`` each (``None`` where not requested)."""
    n_spikes: jax.Array
    last: jax.Array | None = None      # step of the last spike in the stats window (-1: none)
    n_isi: jax.Array | None = None
    isi_mean: jax.Array | None = None  # Welford, in steps
    isi_m2: jax.Array | None = None
    n_v: jax.Array | None = None       # samples merged so far (same for every neuron)
    v_mean: jax.Array | None = None
    v_m2: jax.Array | None = None
    v_end: jax.Array | None = None     # v at the last sample (merged at the end)
    g_E: jax.Array | None = None       # running means
    g_I: jax.Array | None = None
    n_g: jax.Array | None = None
    times: jax.Array | None = None     # (C, cap)


class _Win(NamedTuple):
    """Per-window sums carried by the step (reset at each window)."""
    s1: jax.Array | None = None        # sum of v - ref
    s2: jax.Array | None = None        # sum of (v - ref)^2
    g_E: jax.Array | None = None
    g_I: jax.Array | None = None


def _acc_init(cfg: _StatsCfg, C: int, dtype, times_within_step: bool = False) -> _Acc:
    """``times_within_step`` (``integrator="exp_euler"``): the last spike's time is kept as a float number
    of steps (with its offset) instead of an integer step."""
    zi, zf = jnp.zeros((C,), jnp.int32), jnp.zeros((C,), dtype)
    acc = _Acc(zi)
    if cfg.isi_cv:
        acc = acc._replace(last=(zf if times_within_step else zi) - 1, n_isi=zi, isi_mean=zf, isi_m2=zf)
    if cfg.v:
        acc = acc._replace(n_v=jnp.zeros((), jnp.int32), v_mean=zf, v_m2=zf, v_end=zf)
    if cfg.g:
        acc = acc._replace(g_E=zf, g_I=zf, n_g=jnp.zeros((), jnp.int32))
    if cfg.cap:
        acc = acc._replace(times=jnp.full((C, cfg.cap), jnp.nan, dtype))
    return acc


def _win_init(cfg: _StatsCfg, C: int, dtype) -> _Win:
    zf = jnp.zeros((C,), dtype)
    return _Win(*((zf, zf) if cfg.v else (None, None)), *((zf, zf) if cfg.g else (None, None)))


def _ref(acc: _Acc, v0):
    """Reference for the window's sums of ``v - ref``: the running mean, or ``v0`` before any sample."""
    return jnp.where(acc.n_v > 0, acc.v_mean, v0)


def _step(cfg: _StatsCfg, n_steps: int, acc: _Acc, win: _Win, ref, it, v, spike, g_E, g_I, v_next, frac=None):
    """Fold one step (sample ``it``: ``v``, ``spike``; sample ``it + 1``: ``g_E``, ``g_I``, ``v_next``).
    ``frac`` (``integrator="exp_euler"``): the spike's offset in steps (``spike_offset / dt``), so that the
    ISIs use the spike times ``it + frac`` (then ``acc.last`` is a float, :func:`_acc_init`)."""
    valid = it < n_steps - 1
    in_v = valid & (it >= cfg.burn)
    in_g = valid & (it + 1 >= cfg.burn)
    s = spike & in_v
    acc = acc._replace(n_spikes=acc.n_spikes + s.astype(jnp.int32))
    if cfg.isi_cv:
        t = it if frac is None else it.astype(v.dtype) + frac
        isi = (t - acc.last).astype(v.dtype)
        is_isi = s & (acc.last >= 0)
        n = acc.n_isi + is_isi.astype(jnp.int32)
        delta = isi - acc.isi_mean
        mean = jnp.where(is_isi, acc.isi_mean + delta / jnp.maximum(n, 1).astype(v.dtype), acc.isi_mean)
        acc = acc._replace(last=jnp.where(s, t, acc.last), n_isi=n, isi_mean=mean,
                           isi_m2=jnp.where(is_isi, acc.isi_m2 + delta * (isi - mean), acc.isi_m2))
    if cfg.v:
        d = jnp.where(in_v, v - ref, 0.0)
        win = win._replace(s1=win.s1 + d, s2=win.s2 + d * d)
        acc = acc._replace(v_end=jnp.where(it == n_steps - 2, v_next, acc.v_end))
    if cfg.g:
        win = win._replace(g_E=win.g_E + jnp.where(in_g, g_E, 0.0), g_I=win.g_I + jnp.where(in_g, g_I, 0.0))
    return acc, win


def _merge_mean(mean, n_a, total_w, n_w):
    """Running mean over ``n_a`` samples merged with a window of ``n_w`` samples summing to ``total_w``."""
    n = jnp.maximum(n_a + n_w, 1).astype(mean.dtype)
    return jnp.where(n_w > 0, mean + (total_w - n_w * mean) / n, mean)


def _merge_window(cfg: _StatsCfg, n_steps: int, dt: float, acc: _Acc, win: _Win, ref, steps, spikes, offsets=None):
    """Merge a window's sums (``steps``: its sample indices; ``spikes`` (window, C) if times are kept, with
    their ``offsets`` [ms] (window, C) under ``integrator="exp_euler"``)."""
    if cfg.v:
        n_w = jnp.sum((steps < n_steps - 1) & (steps >= cfg.burn), dtype=jnp.int32)
        nw = jnp.maximum(n_w, 1).astype(ref.dtype)
        mean_w = ref + win.s1 / nw
        m2_w = win.s2 - win.s1 * win.s1 / nw
        n = acc.n_v + n_w
        delta = mean_w - acc.v_mean
        frac = n_w.astype(ref.dtype) / jnp.maximum(n, 1).astype(ref.dtype)
        acc = acc._replace(n_v=n, v_mean=jnp.where(n_w > 0, acc.v_mean + delta * frac, acc.v_mean),
                           v_m2=jnp.where(n_w > 0, acc.v_m2 + m2_w + delta * delta * acc.n_v.astype(ref.dtype) * frac,
                                          acc.v_m2))
    if cfg.g:
        n_w = jnp.sum((steps < n_steps - 1) & (steps + 1 >= cfg.burn), dtype=jnp.int32)
        acc = acc._replace(g_E=_merge_mean(acc.g_E, acc.n_g, win.g_E, n_w),
                           g_I=_merge_mean(acc.g_I, acc.n_g, win.g_I, n_w), n_g=acc.n_g + n_w)
    if cfg.cap:
        acc = acc._replace(times=_keep_times(acc.times, spikes, steps, acc.n_spikes, cfg.cap, dt, offsets))
    return acc


def _keep_times(times, spikes, steps, n_after, cap: int, dt: float, offsets=None):
    """Write the window's spike times into the free slots of ``times`` (C, cap) (``k dt``, plus ``offsets``
    [ms] (window, C) when given).

    ``spikes`` (window, C) are the window's spikes in the stats window, ``n_after`` the spike counts
    after the window: the k-th spike of a neuron in the window goes to slot ``n_before + k``.  One
    scatter per window (slots past ``cap`` are dropped; ``n_spikes`` still counts them).
    """
    window, C = spikes.shape
    n_before = n_after - jnp.sum(spikes, axis=0, dtype=jnp.int32)
    rank = _cumsum_rows(n_before - 1, spikes.astype(jnp.int32))
    slot = jnp.where(spikes & (rank < cap), rank, cap)
    t = jnp.broadcast_to((steps.astype(times.dtype) * dt)[:, None], (window, C))
    if offsets is not None:
        t = t + offsets.astype(times.dtype)
    return times.at[jnp.arange(C)[None, :], slot].set(t, mode="drop")


def _finalize(cfg: _StatsCfg, n_steps: int, dt: float, acc: _Acc) -> BatchStats:
    dtype = jnp.result_type(float)
    out = BatchStats(acc.n_spikes, acc.n_spikes.astype(dtype) * (1000.0 / ((n_steps - cfg.burn) * dt)))
    if cfg.isi_cv:
        ok = acc.n_spikes > 3
        cv = jnp.sqrt(acc.isi_m2 / jnp.maximum(acc.n_isi, 1).astype(dtype)) / jnp.where(ok, acc.isi_mean, 1.0)
        out = out._replace(isi_cv=jnp.where(ok, cv, 0.0))
    if cfg.v:
        # the last sample (never tested against threshold) is merged here, as one more sample
        n = (acc.n_v + 1).astype(dtype)
        delta = acc.v_end - acc.v_mean
        mean = acc.v_mean + delta / n
        m2 = acc.v_m2 + delta * (acc.v_end - mean)
        out = out._replace(v_mean=mean, v_std=jnp.sqrt(jnp.maximum(m2, 0.0) / n))
    if cfg.g:
        # sample 0 (g = 0 before any input) belongs to the window when burn_in = 0
        scale = acc.n_g.astype(dtype) / (acc.n_g + 1).astype(dtype) if cfg.burn == 0 else 1.0
        out = out._replace(g_E_mean=acc.g_E * scale, g_I_mean=acc.g_I * scale)
    if cfg.cap:
        out = out._replace(spike_times=acc.times)
    return out
