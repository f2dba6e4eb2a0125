"""Spike-train and membrane-potential statistics with fixed shapes (jit- and vmap-friendly).

Inputs are spike rasters with time on the last axis (``spikes[..., k]`` is a spike at
``k*dt`` ms; boolean, or spike counts per step) and traces of the same shape; every function reduces the last axis, so a
batch ``(batch, n_steps)`` gives ``(batch,)``.  No Python lists, no data-dependent shapes.

The spike statistics here count spikes as integers: they have no derivative, and refuse to be
differentiated (:class:`jaxlif.NonDifferentiableError`).  Their differentiable counterparts, for losses
on surrogate rasters, are in :mod:`jaxlif.spike_stats` (docs/gradients.md).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks, _grad_guard
from jaxlif._host import host_argument

__all__ = ["spike_count", "spike_rate", "isi_cv", "fmp_stats", "values_at_events", "spike_times",
           "fmp_shot_noise", "balanced_inh_rate"]


def _raster(spikes: ArrayLike, name: str = "spikes") -> jax.Array:
    """A spike raster as an array: boolean, or numbers of spikes per step (0/1 floats, counts).

    Concrete numeric rasters are checked: every entry must be a non-negative whole number.
    """
    if not isinstance(spikes, jax.core.Tracer):
        arr = np.asarray(spikes)
        if arr.dtype != bool:
            if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
                raise TypeError(f"{name} must be a boolean raster or spike counts per step, got dtype "
                                f"{arr.dtype}")
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
            if np.any(bad):
                raise ValueError(f"{name} must hold spike counts per step (0, 1, 2, ...), got "
                                 f"{arr[bad].ravel()[0].item()!r}")
    return jnp.asarray(spikes)


def spike_count(spikes: ArrayLike) -> jax.Array:
    """Number of spikes along the last axis (int32).

    ``spikes`` is a boolean raster or a raster of spike counts per step (0/1 floats as
    ``nma.Poisson_generator`` returns, or integer counts), time on the last axis.

    Not differentiable: differentiating through it raises :class:`jaxlif.NonDifferentiableError`
    (the differentiable count is ``spikes.sum(-1)`` of a surrogate raster; rates:
    :func:`jaxlif.spike_stats.firing_rate`); a boolean raster counted while differentiating warns
    (:class:`jaxlif.SpikeGradWarning`, :mod:`jaxlif._grad_guard`).
    """
    return _count(spikes, "spike_count", "spikes.sum(-1) or jaxlif.spike_stats.firing_rate")


def _count(spikes: ArrayLike, function: str, replacement: str) -> jax.Array:
    _grad_guard.warn_if_boolean_under_grad(spikes, function, stacklevel=4)
    spikes = _grad_guard.refuse_derivative(_raster(spikes), function, replacement)
    return jnp.sum(spikes, axis=-1, dtype=jnp.int32)


def spike_rate(spikes: ArrayLike, T: float) -> jax.Array:
    """Spike rate ``1000 * n_spikes / T`` [Hz] (the tutorial's rule; T [ms]).

    Not differentiable (as :func:`spike_count`): use :func:`jaxlif.spike_stats.firing_rate`.
    """
    _checks.check_positive("T", T, "ms")
    count = _count(spikes, "spike_rate", "jaxlif.spike_stats.firing_rate")
    return 1000.0 * count.astype(jnp.result_type(float)) / T


def isi_cv(spikes: ArrayLike) -> jax.Array:
    """Coefficient of variation of the inter-spike intervals, ``std(ISI) / mean(ISI)``.

    The tutorial's rule on the spike times: 0 with 3 or fewer spikes; ``std`` is the
    population standard deviation (``np.std``).  Computed from the raster (cumulative max)
    on ISIs counted in steps, so a perfectly regular train gives exactly 0 (the CV is
    dimensionless and does not depend on dt).

    ``spikes`` may be a boolean raster, 0/1 floats (``nma.Poisson_generator``) or counts per
    step.  A count ``c > 1`` at step ``k`` means ``c`` spikes at time ``k dt``, exactly as the
    tutorial's spike-time list would hold them: ``c - 1`` intervals of length 0.  So the
    result equals the tutorial's ``np.std(np.diff(t)) / np.mean(np.diff(t))`` on the spike
    times ``t`` with repeats.  (For "steps with at least one spike" pass ``spikes > 0``.)

    Args:
        spikes: raster ``(..., n_steps)``: boolean, or non-negative whole numbers.

    Returns:
        ``(...)`` float CV.

    Raises:
        ValueError: if a concrete numeric raster holds a negative or fractional entry.
        NonDifferentiableError: when differentiated through (the intervals are counted as integers):
            use :func:`jaxlif.spike_stats.soft_isi_cv`, equal to this on 0/1 rasters, with a gradient.
    """
    _grad_guard.warn_if_boolean_under_grad(spikes, "isi_cv")
    return _isi_cv(_grad_guard.refuse_derivative(_raster(spikes), "isi_cv", "jaxlif.spike_stats.soft_isi_cv"))


@jax.jit
def _isi_cv(counts: jax.Array) -> jax.Array:
    """:func:`isi_cv` on a checked raster (one compiled program per shape and dtype)."""
    has = counts > 0
    idx = jnp.arange(counts.shape[-1])
    last = jax.lax.cummax(jnp.where(has, idx, -1), axis=counts.ndim - 1)
    prev = jnp.concatenate([jnp.full(counts.shape[:-1] + (1,), -1), last[..., :-1]], axis=-1)
    valid = has & (prev >= 0)
    isi = jnp.where(valid, idx - prev, 0).astype(jnp.result_type(float))
    n_spikes = jnp.sum(counts, axis=-1, dtype=jnp.int32)
    n_zero = n_spikes - jnp.sum(has, axis=-1, dtype=jnp.int32)      # extra spikes sharing a step
    denom = jnp.maximum(n_spikes - 1, 1)
    mean = jnp.sum(isi, axis=-1) / denom
    var = (jnp.sum(jnp.where(valid, (isi - mean[..., None]) ** 2, 0.0), axis=-1)
           + n_zero * mean ** 2) / denom
    ok = n_spikes > 3
    return jnp.where(ok, jnp.sqrt(var) / jnp.where(ok, mean, 1.0), 0.0)


def fmp_stats(v: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Mean and (population) standard deviation of a free-membrane-potential trace [mV] over time."""
    return jnp.mean(v, axis=-1), jnp.std(v, axis=-1)


def spike_times(spikes: ArrayLike, dt: float, max_spikes: int) -> tuple[jax.Array, jax.Array]:
    """The first ``max_spikes`` spike times [ms], padded with NaN, and the validity mask.

    Shapes ``(..., max_spikes)``; spikes beyond ``max_spikes`` are reported by the mask being
    all True and ``spike_count > max_spikes`` (nothing is dropped silently: compare the counts).
    """
    _checks.check_count("max_spikes", max_spikes, minimum=1)
    spikes = _raster(spikes)
    values, valid = values_at_events(jnp.arange(spikes.shape[-1]) * dt + jnp.zeros(spikes.shape),
                                     spikes, max_spikes)
    return values, valid


def values_at_events(trace: ArrayLike, events: ArrayLike, max_events: int) -> tuple[jax.Array, jax.Array]:
    """Values of ``trace`` at the first ``max_events`` True samples of ``events`` (NaN padded).

    Used for the conductance amplitude at each presynaptic spike: ``values_at_events(g, train, 16)``
    gives ``g`` right after each spike (the tutorial's ``g[isi], g[2*isi], ...``).

    Returns:
        ``(values, valid)`` of shape ``(..., max_events)``.
    """
    max_events = _checks.check_count("max_events", max_events, minimum=1)
    return _values_at_events(host_argument(trace), host_argument(events), max_events)


@functools.partial(jax.jit, static_argnums=2)
def _values_at_events(trace, events, max_events: int):
    """:func:`values_at_events` after its check: one compiled program per shape (op by op, the vmapped
    search and gather compiled a program per operation and shape: 30 in the analysis tests, 2026-12-07)."""
    def one(tr, ev):
        (idx,) = jnp.nonzero(ev, size=max_events, fill_value=-1)
        ok = idx >= 0
        return jnp.where(ok, tr[jnp.maximum(idx, 0)], jnp.nan), ok

    fn = one
    for _ in range(jnp.ndim(trace) - 1):
        fn = jax.vmap(fn)
    return fn(trace, events)


def fmp_shot_noise(params: Any, rate_E: ArrayLike, rate_I: ArrayLike, *, n_E: int = 80, n_I: int = 20,
                   I_inj: ArrayLike = 0.0) -> tuple[jax.Array, jax.Array]:
    """Shot-noise (Campbell) approximation of the free membrane potential's mean and std [mV].

    For ``K`` Poisson trains at ``nu`` [1/ms] with jumps ``g_bar`` [nS] decaying with ``tau`` [ms]
    the mean conductance is ``g0 = K nu g_bar tau``.  With ``g_T = g_L + g0_E + g0_I`` and
    ``tau_eff = tau_m g_L / g_T``::

        mu    = (g_L E_L + g0_E E_E + g0_I E_I + I_inj) / g_T
        var   = sum_k K_k nu_k a_k^2 tau_k^2 / (2 (tau_k + tau_eff)),   a_k = g_bar_k (E_k - mu) / g_T

    (Kuhn, Aertsen & Rotter 2004, J. Neurosci. 24; docs/conventions.md, section 7).  Exercise 1.2 gives about
    -58.0 mV and 4.1 mV; simulations land within about 0.2 mV and 3 %.

    Args:
        params: a :class:`jaxlif.CondLIFParams` (or anything with ``neuron``, ``exc``, ``inh``).
        rate_E, rate_I: rate of each train [Hz]; arrays broadcast elementwise.
        n_E, n_I: number of trains.  I_inj: injected current [pA].

    Returns:
        ``(mean, std)`` [mV].
    """
    nrn, exc, inh = params.neuron, params.exc, params.inh
    nu_E, nu_I = jnp.asarray(rate_E) / 1000.0, jnp.asarray(rate_I) / 1000.0
    g0_E, g0_I = n_E * nu_E * exc.g_bar * exc.tau_syn, n_I * nu_I * inh.g_bar * inh.tau_syn
    g_T = nrn.g_L + g0_E + g0_I
    mu = (nrn.g_L * nrn.E_L + g0_E * exc.E_rev + g0_I * inh.E_rev + I_inj) / g_T
    tau_eff = nrn.tau_m * nrn.g_L / g_T
    a_E, a_I = exc.g_bar * (exc.E_rev - mu) / g_T, inh.g_bar * (inh.E_rev - mu) / g_T
    var = (n_E * nu_E * a_E**2 * exc.tau_syn**2 / (2 * (exc.tau_syn + tau_eff))
           + n_I * nu_I * a_I**2 * inh.tau_syn**2 / (2 * (inh.tau_syn + tau_eff)))
    return mu, jnp.sqrt(var)


def balanced_inh_rate(params: Any, mu: ArrayLike, rate_E: ArrayLike, *, n_E: int = 80, n_I: int = 20,
                      I_inj: ArrayLike = 0.0) -> jax.Array:
    """The inhibitory rate [Hz] that puts the approximate mean FMP (:func:`fmp_shot_noise`) at ``mu`` [mV].

    Solves ``mu = (g_L E_L + g0_E E_E + g0_I E_I + I_inj) / (g_L + g0_E + g0_I)`` for ``g0_I``.  A
    negative result means ``mu`` cannot be reached at that excitatory rate (it is returned, not clipped).
    """
    nrn, exc, inh = params.neuron, params.exc, params.inh
    g0_E = n_E * jnp.asarray(rate_E) / 1000.0 * exc.g_bar * exc.tau_syn
    g0_I = (nrn.g_L * (nrn.E_L - mu) + g0_E * (exc.E_rev - mu) + I_inj) / (mu - inh.E_rev)
    return g0_I / (n_I * inh.g_bar * inh.tau_syn / 1000.0)
