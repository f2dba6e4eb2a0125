"""Spike-train and membrane-potential statistics with fixed shapes (jit- and vmap-friendly).

Inputs are boolean rasters with time on the last axis (``spikes[..., k]`` is a spike at
``k*dt`` ms) and traces of the same shape; every function reduces the last axis, so a
batch ``(batch, n_steps)`` gives ``(batch,)``.  No Python lists, no data-dependent shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxlif import _checks

__all__ = ["spike_count", "spike_rate", "isi_cv", "fmp_stats", "values_at_events", "spike_times",
           "fmp_shot_noise", "balanced_inh_rate"]


def spike_count(spikes: jax.Array) -> jax.Array:
    """Number of spikes along the last axis (int32)."""
    return jnp.sum(spikes, axis=-1, dtype=jnp.int32)


def spike_rate(spikes: jax.Array, T: float) -> jax.Array:
    """Spike rate ``1000 * n_spikes / T`` [Hz] (the tutorial's rule; T [ms])."""
    _checks.check_positive("T", T, "ms")
    return 1000.0 * spike_count(spikes).astype(jnp.result_type(float)) / T


def _isi_steps(spikes: jax.Array):
    """Per-sample ISI in steps ending at each spike (0 elsewhere) and the validity mask."""
    idx = jnp.arange(spikes.shape[-1])
    last = jax.lax.cummax(jnp.where(spikes, idx, -1), axis=spikes.ndim - 1)
    prev = jnp.concatenate([jnp.full(spikes.shape[:-1] + (1,), -1), last[..., :-1]], axis=-1)
    valid = spikes & (prev >= 0)
    isi = jnp.where(valid, idx - prev, 0).astype(jnp.result_type(float))
    return isi, valid


def isi_cv(spikes: jax.Array) -> jax.Array:
    """Coefficient of variation of the inter-spike intervals, ``std(ISI) / mean(ISI)``.

    The tutorial's rule: 0 with 3 or fewer spikes; ``std`` is the population standard
    deviation (``np.std``).  Computed from the raster (cumulative max, two passes) on ISIs
    counted in steps, so a perfectly regular train gives exactly 0 (the CV is dimensionless
    and does not depend on dt).

    Args:
        spikes: boolean raster ``(..., n_steps)``.
    """
    isi, valid = _isi_steps(spikes)
    n_isi = jnp.sum(valid, axis=-1)
    denom = jnp.maximum(n_isi, 1)
    mean = jnp.sum(isi, axis=-1) / denom
    var = jnp.sum(jnp.where(valid, (isi - mean[..., None]) ** 2, 0.0), axis=-1) / denom
    ok = spike_count(spikes) > 3
    return jnp.where(ok, jnp.sqrt(var) / jnp.where(ok, mean, 1.0), 0.0)


def fmp_stats(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and (population) standard deviation of a free-membrane-potential trace [mV] over time."""
    return jnp.mean(v, axis=-1), jnp.std(v, axis=-1)


def spike_times(spikes: jax.Array, dt: float, max_spikes: int) -> tuple[jax.Array, jax.Array]:
    """The first ``max_spikes`` spike times [ms], padded with NaN, and the validity mask.

    Shapes ``(..., max_spikes)``; spikes beyond ``max_spikes`` are reported by the mask being
    all True and ``spike_count > max_spikes`` (nothing is dropped silently: compare the counts).
    """
    _checks.check_count("max_spikes", max_spikes, minimum=1)
    values, valid = values_at_events(jnp.arange(spikes.shape[-1]) * dt + jnp.zeros(spikes.shape),
                                     spikes, max_spikes)
    return values, valid


def values_at_events(trace: jax.Array, events: jax.Array, max_events: int):
    """Values of ``trace`` at the first ``max_events`` True samples of ``events`` (NaN padded).

    Used for the conductance amplitude at each presynaptic spike: ``values_at_events(g, train, 16)``
    gives ``g`` right after each spike (the tutorial's ``g[isi], g[2*isi], ...``).

    Returns:
        ``(values, valid)`` of shape ``(..., max_events)``.
    """
    _checks.check_count("max_events", max_events, minimum=1)

    def one(tr, ev):
        (idx,) = jnp.nonzero(ev, size=max_events, fill_value=-1)
        ok = idx >= 0
        return jnp.where(ok, tr[jnp.maximum(idx, 0)], jnp.nan), ok

    fn = one
    for _ in range(trace.ndim - 1):
        fn = jax.vmap(fn)
    return fn(trace, events)


def fmp_shot_noise(params, rate_E, rate_I, *, n_E: int = 80, n_I: int = 20, I_inj=0.0):
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


def balanced_inh_rate(params, mu, rate_E, *, n_E: int = 80, n_I: int = 20, I_inj=0.0):
    """The inhibitory rate [Hz] that puts the approximate mean FMP (:func:`fmp_shot_noise`) at ``mu`` [mV].

    Solves ``mu = (g_L E_L + g0_E E_E + g0_I E_I + I_inj) / (g_L + g0_E + g0_I)`` for ``g0_I``.  A
    negative result means ``mu`` cannot be reached at that excitatory rate (it is returned, not clipped).
    """
    nrn, exc, inh = params.neuron, params.exc, params.inh
    g0_E = n_E * jnp.asarray(rate_E) / 1000.0 * exc.g_bar * exc.tau_syn
    g0_I = (nrn.g_L * (nrn.E_L - mu) + g0_E * (exc.E_rev - mu) + I_inj) / (mu - inh.E_rev)
    return g0_I / (n_I * inh.g_bar * inh.tau_syn / 1000.0)
