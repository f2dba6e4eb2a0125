r"""Differentiable spike-train statistics, for losses on surrogate rasters.

A simulator called with ``spike_grad=jaxlif.surrogates.fast_sigmoid()`` returns a float 0/1 raster
``s`` whose entries carry a surrogate derivative ``ds_k/dtheta``.  Every statistic here is a smooth
function of the raster *values* (no cast to an integer, no ``nonzero``, no data-dependent shape),
so ``jax.grad`` of a loss built from them passes that derivative on.  On 0/1 rasters the forward
values are the usual statistics (checked against NumPy formulas in ``tests/test_spike_stats.py``);
fractional entries are read as fractions of a spike.

Conventions (as :mod:`jaxlif.analysis`):

* ``spikes``: shape ``(..., n_steps)``, time on the **last** axis, ``spikes[..., k]`` the number of
  spikes (0 or 1) at ``t = k dt``; any leading axes are batch axes (trials, neurons, keys).  Float
  rasters keep their derivative; boolean and integer rasters are accepted and cast to float (they
  carry no derivative: a boolean raster passed while differentiating warns,
  :class:`jaxlif.SpikeGradWarning`).  Computations run in at least float32.
* ``dt``, widths, windows and ``tau`` in **ms**; rates in **Hz** (spikes per second per train).
* Functions that combine trains (``population_rate``, ``psth``, the correlations) take the neuron
  (or trial) axis as ``axis`` (default ``-2``: rasters ``(..., n_neurons, n_steps)``).

What the gradient means: the surrogate derivative of a spike raster is a *biased* estimate of the
derivative of the expected statistic (docs/gradients.md); ``tests/test_spike_stats.py`` compares
each statistic's gradient with central finite differences of the same runs (common random numbers)
for sign and size.

The integer-counting :func:`jaxlif.spike_count`, :func:`jaxlif.spike_rate` and :func:`jaxlif.isi_cv`
refuse to be differentiated (:class:`jaxlif.NonDifferentiableError`) and name their replacement here.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks, _grad_guard
from jaxlif._grad_guard import NonDifferentiableError, SpikeGradWarning

__all__ = ["firing_rate", "population_rate", "psth", "fano_factor", "soft_isi_cv", "count_correlation",
           "count_correlation_matrix", "van_rossum_distance", "SpikeGradWarning", "NonDifferentiableError"]


# ------------------------------------------------------------------------------------------------
# argument checks (plain Python, before tracing)
# ------------------------------------------------------------------------------------------------

def _float_raster(spikes: ArrayLike, function: str, name: str = "spikes", min_ndim: int = 1,
                  warn: bool = True) -> jax.Array:
    """The raster as an array of at least float32, time last; checks dtype and rank."""
    if isinstance(spikes, (list, tuple)):
        spikes = np.asarray(spikes)
    dtype = jnp.asarray(spikes).dtype if not hasattr(spikes, "dtype") else spikes.dtype
    if not (dtype == np.bool_ or jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise TypeError(f"{name} must be a spike raster (float 0/1 from a simulator with spike_grad, boolean, or "
                        f"integer counts), got dtype {dtype}")
    if np.ndim(spikes) < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes (..., "
                         f"{'n_neurons, ' if min_ndim > 1 else ''}n_steps) with time last, got shape "
                         f"{np.shape(spikes)}")
    if np.shape(spikes)[-1] < 1:
        raise ValueError(f"{name} must have at least one time step, got shape {np.shape(spikes)}")
    if warn:
        _grad_guard.warn_if_boolean_under_grad(spikes, f"spike_stats.{function}", stacklevel=4)
    spikes = jnp.asarray(spikes)
    dtype = jnp.promote_types(spikes.dtype, jnp.float32) if jnp.issubdtype(spikes.dtype, jnp.floating) \
        else jnp.result_type(float)
    return spikes.astype(dtype)


def _steps(name: str, value: float, dt: float, n_steps: int, minimum_windows: int = 1) -> int:
    """A length in ms that must be a whole number of steps ``dt`` (and fit ``minimum_windows`` times)."""
    _checks.check_positive(name, value, "ms")
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete number in ms (it sets array shapes), not a traced value")
    value = float(value)
    n = int(round(value / dt))
    if n < 1 or abs(n * dt - value) > 1e-6 * max(value, dt):
        raise ValueError(f"{name}={value:g} ms must be a whole number of time steps dt={dt:g} ms "
                         f"(e.g. {max(n, 1) * dt:g} ms)")
    if n * minimum_windows > n_steps:
        raise ValueError(f"{name}={value:g} ms ({n} steps) leaves fewer than {minimum_windows} windows in "
                         f"n_steps={n_steps} steps of dt={dt:g} ms; use a shorter {name} or a longer run")
    return n


def _width(name: str, value: float) -> float:
    _checks.check_positive(name, value, "ms")
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete number in ms (it sets the kernel), not a traced value")
    return float(value)


def _axis(axis: int, ndim: int, name: str = "axis") -> int:
    """A non-time axis of an ``ndim`` raster, as a negative index."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{name} must be an int (the neuron or trial axis), got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for a raster with {ndim} axes")
    axis = int(axis) - ndim if axis >= 0 else int(axis)
    if axis == -1:
        raise ValueError(f"{name}=-1 is the time axis; the neuron (or trial) axis must be another one "
                         f"(rasters are (..., n_neurons, n_steps), time last)")
    return axis


def _safe_div(num: jax.Array, den: jax.Array, ok: jax.Array) -> jax.Array:
    """``num / den`` where ``ok``, else 0, with finite gradients everywhere (the double ``where``)."""
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def _safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt(x)`` for ``x >= 0`` with gradient 0 (not inf) at ``x = 0``."""
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


@functools.partial(jax.jit, static_argnums=1)
def _exp_filter(x: jax.Array, decay: float) -> jax.Array:
    """``y[k] = decay * y[k-1] + x[k]``, ``y[-1] = 0``, along the last axis (a scan over time)."""
    def step(y, xk):
        y = decay * y + xk
        return y, y

    _, y = jax.lax.scan(step, jnp.zeros(x.shape[:-1], x.dtype), jnp.moveaxis(x, -1, 0))
    return jnp.moveaxis(y, 0, -1)


def _window_counts(s: jax.Array, n: int) -> jax.Array:
    """Spikes per window of ``n`` steps, ``(..., n_windows)``; a trailing partial window is dropped."""
    n_windows = s.shape[-1] // n
    return s[..., :n_windows * n].reshape(s.shape[:-1] + (n_windows, n)).sum(-1)


# ------------------------------------------------------------------------------------------------
# rates
# ------------------------------------------------------------------------------------------------

def firing_rate(spikes: ArrayLike, dt: float) -> jax.Array:
    r"""Per-train firing rate [Hz]: ``1000 * sum_k s[..., k] / (n_steps * dt)``.

    The differentiable counterpart of :func:`jaxlif.spike_rate` (with ``T = n_steps * dt``).

    Args:
        spikes: raster ``(..., n_steps)``, time last (float 0/1 from a simulator with ``spike_grad``).
        dt: time step [ms].

    Returns:
        ``(...)`` rate [Hz].
    """
    dt = _checks.check_dt(dt)
    s = _float_raster(spikes, "firing_rate")
    return s.sum(-1) * (1000.0 / (s.shape[-1] * dt))


def population_rate(spikes: ArrayLike, dt: float, *, axis: int = -2) -> jax.Array:
    r"""Population rate [Hz per neuron]: the mean over ``axis`` of :func:`firing_rate`,
    ``1000 * sum_{i,k} s[i, k] / (N * n_steps * dt)``.

    Args:
        spikes: raster ``(..., n_neurons, n_steps)``, time last.
        dt: time step [ms].
        axis: the neuron axis (default ``-2``), not the time axis.

    Returns:
        rate [Hz] with ``axis`` and time removed, e.g. ``(...)``.
    """
    dt = _checks.check_dt(dt)
    s = _float_raster(spikes, "population_rate", min_ndim=2)
    axis = _axis(axis, s.ndim)
    return s.sum(-1).mean(axis + 1) * (1000.0 / (s.shape[-1] * dt))


def psth(spikes: ArrayLike, dt: float, width: float, *, kernel: str = "gaussian",
         axis: int | None = -2) -> jax.Array:
    r"""Smoothed peri-stimulus time histogram [Hz]: each train filtered by a kernel of unit area,
    then averaged over ``axis`` (trials or neurons).

    ``r[k] = (1000 / dt) * sum_j w[j] s[k - j]`` with ``sum_j w[j] = 1``, so a train with one spike
    per ``m`` steps gives ``1000 / (m dt)`` Hz away from the edges:

    * ``kernel="gaussian"`` (acausal): ``w[j] ~ exp(-(j dt)^2 / (2 width^2))`` for ``|j dt| <= 4 width``,
      normalised to sum 1; ``width`` is the standard deviation [ms].  Samples outside the record
      count as no spike (the rate dips within ``4 width`` of either end).
    * ``kernel="exponential"`` (causal): ``w[j] = (1 - a) a^j`` for ``j >= 0``, ``a = exp(-dt/width)``;
      ``width`` is the time constant [ms].  The same as ``r[k] = a r[k-1] + (1 - a) 1000 s[k] / dt``
      from ``r[-1] = 0``.

    Args:
        spikes: raster ``(..., n_steps)``, time last.
        dt: time step [ms].
        width: kernel standard deviation (Gaussian) or time constant (exponential) [ms], > 0.
        kernel: ``"gaussian"`` or ``"exponential"``.
        axis: the trial (neuron) axis to average over (default ``-2``); ``None`` smooths each train.

    Returns:
        rate [Hz], ``(..., n_steps)`` with ``axis`` removed (if not ``None``).
    """
    dt = _checks.check_dt(dt)
    width = _width("width", width)
    if kernel not in ("gaussian", "exponential"):
        raise ValueError(f"kernel={kernel!r} must be 'gaussian' or 'exponential'")
    s = _float_raster(spikes, "psth", min_ndim=1 if axis is None else 2)
    if axis is not None:
        axis = _axis(axis, s.ndim)
    if kernel == "exponential":
        a = math.exp(-dt / width)
        r = _exp_filter(s, a) * ((1.0 - a) * 1000.0 / dt)
    else:
        r = _gaussian_smooth(s, width / dt) * (1000.0 / dt)
    return r if axis is None else r.mean(axis)


@functools.partial(jax.jit, static_argnums=1)
def _gaussian_smooth(x: jax.Array, sigma_steps: float) -> jax.Array:
    """Zero-padded convolution with a centred Gaussian of ``sigma_steps`` (sum 1), by FFT, time last."""
    half = int(math.ceil(4.0 * sigma_steps))
    j = np.arange(-half, half + 1)
    w = np.exp(-0.5 * (j / sigma_steps) ** 2)
    w = w / w.sum()
    n = x.shape[-1]
    nfft = 1 << int(math.ceil(math.log2(n + 2 * half)))       # no wrap-around
    y = jnp.fft.irfft(jnp.fft.rfft(x, nfft) * jnp.fft.rfft(jnp.asarray(w, x.dtype), nfft), nfft)
    return y[..., half:half + n].astype(x.dtype)


# ------------------------------------------------------------------------------------------------
# variability
# ------------------------------------------------------------------------------------------------

def fano_factor(spikes: ArrayLike, dt: float, window: float, *, ddof: int = 1) -> jax.Array:
    r"""Fano factor of the spike counts in consecutive windows of ``window`` ms, per train.

    With ``c_w = sum_{k in window w} s[k]`` for the ``W = n_steps // m`` whole windows of ``m = window/dt``
    steps (a trailing partial window is dropped)::

        F = var(c) / mean(c),   var(c) = sum_w (c_w - mean(c))^2 / (W - ddof)

    (1 for a Poisson train, 0 for a regular train whose period divides the window).  A train
    without spikes gives 0.

    Args:
        spikes: raster ``(..., n_steps)``, time last.
        dt: time step [ms].
        window: counting window [ms], a whole number of steps, at least 2 windows in the record.
        ddof: 1 (unbiased variance, default) or 0.

    Returns:
        ``(...)`` Fano factor (dimensionless).
    """
    dt = _checks.check_dt(dt)
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"ddof={ddof!r} must be 0 or 1")
    s = _float_raster(spikes, "fano_factor")
    return _fano_factor(s, _steps("window", window, dt, s.shape[-1], minimum_windows=2), int(ddof))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _fano_factor(s: jax.Array, m: int, ddof: int) -> jax.Array:
    c = _window_counts(s, m)
    mean = c.mean(-1)
    var = jnp.where(_varies(c), ((c - mean[..., None]) ** 2).sum(-1) / (c.shape[-1] - ddof), 0.0)
    return _safe_div(var, mean, mean > 0)


def _varies(c: jax.Array) -> jax.Array:
    """Whether the counts differ between windows: exact (the computed variance of equal counts can be
    ~1e-14 instead of 0, as the mean is rounded)."""
    c = jax.lax.stop_gradient(c)
    return jnp.any(c != c[..., :1], -1)


def soft_isi_cv(spikes: ArrayLike, *, min_spikes: int = 4) -> jax.Array:
    r"""Coefficient of variation of the inter-spike intervals, differentiable in the raster values.

    **Estimator.**  Two recursions over the steps ``k`` (a scan) follow the spikes as *amounts*
    ``s[k]`` rather than as events::

        age:   a[k] = (1 - s[k]) (a[k-1] + 1),          a[-1] = 0   (steps since the last spike)
        seen:  m[k] = m[k-1] + s[k] (1 - m[k-1]),       m[-1] = 0   (a spike has occurred)

    Each step contributes the interval ``I[k] = a[k-1] + 1`` (steps) with weight ``w[k] = s[k] m[k-1]``
    (a spike that has a predecessor), and::

        N = sum_k w[k],   mean = sum_k w[k] I[k] / N,   var = sum_k w[k] (I[k] - mean)^2 / N
        CV = sqrt(var) / mean

    On a 0/1 raster this is exactly the population-std ISI CV of :func:`jaxlif.isi_cv` (the
    tutorial's rule, also 0 with fewer than ``min_spikes`` spikes), in steps, so independent of dt.
    Entries above 1 (several spikes in one step) are outside its domain: pass a 0/1 raster (what the
    simulators return), e.g. ``spikes > 0`` for count rasters, where :func:`jaxlif.isi_cv` counts
    repeats as intervals of length 0.

    **Its derivative (the fractional-spike picture).**  A fraction ``eps`` of a spike at step ``k``,
    ``x`` steps after a spike, inside an interval ``I``, adds an interval ``x`` with weight ``eps`` and
    shortens ``I`` by ``eps x`` (the age is reset by the fraction ``eps``): the intervals' total is kept.
    After the last spike it adds the interval ``x`` with weight ``eps``; before the first spike it adds,
    with weight ``eps``, the interval from the start of the record (the age before any spike counts from
    step -1).  Lowering ``s`` at a spike merges two intervals in proportion, and ``(+eps, -eps)`` across
    a spike moves it.  So the derivative with respect to ``s[k]`` depends on *where* ``k`` falls in its
    interval, and the CV's gradient is not a multiple of the rate's (which weighs every ``s[k]``
    alike): on a noisy LIF the ratio ``dCV/dtheta / drate/dtheta`` is negative for the mean input and
    positive for ``tau_m``, as finite differences say (docs/gradients.md, with the measured sizes).

    (The alternative that treats ``s`` as independent Bernoulli probabilities and takes the expected
    interval moments, ``E[sum I^2]`` instead of the square of the mean age, has the same forward values
    but gave the wrong sign for the mean input in that test: a fractional spike then always adds
    variance.)

    Args:
        spikes: raster ``(..., n_steps)``, time last (0/1 values; fractions as amounts of a spike).
        min_spikes: the CV is 0 where a train has fewer spikes (default 4, the tutorial's rule).

    Returns:
        ``(...)`` CV (dimensionless); gradient 0 where the CV is set to 0.
    """
    if isinstance(min_spikes, bool) or not isinstance(min_spikes, (int, np.integer)) or min_spikes < 3:
        raise ValueError(f"min_spikes={min_spikes!r} must be an int >= 3 (two intervals at least)")
    return _soft_isi_cv(_float_raster(spikes, "soft_isi_cv"), int(min_spikes))


@functools.partial(jax.jit, static_argnums=1)
def _soft_isi_cv(s: jax.Array, min_spikes: int) -> jax.Array:
    """:func:`soft_isi_cv` on a checked float raster (one compiled program per shape and dtype)."""
    def step(carry, sk):
        a, m = carry
        interval, weight = a + 1.0, sk * m
        return ((1.0 - sk) * (a + 1.0), m + sk * (1.0 - m)), (interval, weight)

    zeros = jnp.zeros(s.shape[:-1], s.dtype)
    _, (interval, weight) = jax.lax.scan(step, (zeros, zeros), jnp.moveaxis(s, -1, 0))
    interval, weight = jnp.moveaxis(interval, 0, -1), jnp.moveaxis(weight, 0, -1)
    ok = s.sum(-1) >= min_spikes - 0.5
    n = jnp.where(ok, weight.sum(-1), 1.0)
    mean = (weight * interval).sum(-1) / n
    var = (weight * (interval - mean[..., None]) ** 2).sum(-1) / n
    return _safe_div(_safe_sqrt(var), mean, ok & (mean > 0))


# ------------------------------------------------------------------------------------------------
# correlations
# ------------------------------------------------------------------------------------------------

def count_correlation_matrix(spikes: ArrayLike, dt: float, window: float, *, axis: int = -2) -> jax.Array:
    r"""Pearson correlation matrix of the spike counts in windows of ``window`` ms, between trains.

    With ``c[i, w]`` the count of train ``i`` in window ``w`` (``W`` whole windows)::

        rho_ij = cov(c_i, c_j) / sqrt(var(c_i) var(c_j))

    (the same for any ``ddof``).  Entries of a train whose count does not vary (e.g. silent) are 0,
    its diagonal entry included (NumPy's ``corrcoef`` gives NaN there).

    Args:
        spikes: raster ``(..., n_neurons, n_steps)``, time last.
        dt: time step [ms].  window: counting window [ms], a whole number of steps, at least 2 windows.
        axis: the neuron axis (default ``-2``).

    Returns:
        ``(..., n_neurons, n_neurons)`` correlations.
    """
    dt = _checks.check_dt(dt)
    s = _float_raster(spikes, "count_correlation_matrix", min_ndim=2)
    return _correlation(s, *_correlation_args(s, dt, window, axis))[0]


def count_correlation(spikes: ArrayLike, dt: float, window: float, *, axis: int = -2) -> jax.Array:
    r"""Mean pairwise spike-count correlation: the mean of ``rho_ij`` (:func:`count_correlation_matrix`)
    over the pairs ``i < j`` whose counts both vary (0 if there is no such pair).

    Args:
        spikes: raster ``(..., n_neurons, n_steps)``, time last, ``n_neurons >= 2``.
        dt: time step [ms].  window: counting window [ms].  axis: the neuron axis (default ``-2``).

    Returns:
        ``(...)`` mean correlation (dimensionless).
    """
    dt = _checks.check_dt(dt)
    s = _float_raster(spikes, "count_correlation", min_ndim=2)
    m, neuron_axis = _correlation_args(s, dt, window, axis)
    if s.shape[neuron_axis] < 2:
        raise ValueError(f"count_correlation needs at least 2 trains along axis {axis}, got {s.shape[neuron_axis]}")
    return _mean_correlation(s, m, neuron_axis)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _mean_correlation(s: jax.Array, m: int, axis: int) -> jax.Array:
    rho, varies = _correlation(s, m, axis)
    n = rho.shape[-1]
    upper = jnp.asarray(np.triu(np.ones((n, n), bool), 1))
    pair = upper & varies[..., :, None] & varies[..., None, :]
    n_pairs = pair.sum((-2, -1))
    return _safe_div(jnp.where(pair, rho, 0.0).sum((-2, -1)), n_pairs.astype(rho.dtype), n_pairs > 0)


def _correlation_args(s: jax.Array, dt: float, window: float, axis: int) -> tuple[int, int]:
    """The checked window in steps and neuron axis (negative)."""
    axis = _axis(axis, s.ndim)
    return _steps("window", window, dt, s.shape[-1], minimum_windows=2), axis


@functools.partial(jax.jit, static_argnums=(1, 2))
def _correlation(s: jax.Array, m: int, axis: int) -> tuple[jax.Array, jax.Array]:
    """The correlation matrix ``(..., n, n)`` of the counts in windows of ``m`` steps, and which trains vary."""
    c = jnp.moveaxis(_window_counts(s, m), axis, -2)                 # (..., n_neurons, n_windows)
    d = c - c.mean(-1, keepdims=True)
    cov = jnp.einsum("...iw,...jw->...ij", d, d)
    varies = _varies(c)
    var = jnp.where(varies, jnp.diagonal(cov, axis1=-2, axis2=-1), 0.0)
    sd = _safe_sqrt(var)
    ok = varies[..., :, None] & varies[..., None, :]
    return _safe_div(cov, sd[..., :, None] * sd[..., None, :], ok), varies


# ------------------------------------------------------------------------------------------------
# distance to a target
# ------------------------------------------------------------------------------------------------

def van_rossum_distance(spikes: ArrayLike, target: ArrayLike, dt: float, tau: float, *,
                        squared: bool = False) -> jax.Array:
    r"""Van Rossum distance between spike trains (van Rossum 2001, Neural Comput. 13:751).

    Each train is filtered by a causal exponential of unit height, ``f[k] = a f[k-1] + s[k]`` with
    ``a = exp(-dt/tau)`` (``f(t) = sum_i exp(-(t - t_i)/tau)`` sampled at ``t = k dt``), and::

        D^2 = (1 - a^2)/2 * ( sum_{k < n} d[k]^2 + d[n-1]^2 a^2 / (1 - a^2) ),   d = f(spikes) - f(target)

    the discrete form of ``(1/tau) * integral_0^inf d(t)^2 dt``: the last term is the exact
    exponential tail after the record, and the factor ``(1 - a^2)/2`` (-> ``dt/tau`` as ``dt/tau -> 0``)
    makes one unmatched spike contribute exactly ``1/2``, so ``D^2`` is about half the number of
    unmatched spikes when they are further apart than ``tau``.

    Args:
        spikes: raster ``(..., n_steps)``, time last (float 0/1 with a surrogate derivative).
        target: target raster broadcastable to ``spikes`` (boolean or numbers; not differentiated
            unless it carries a derivative itself).
        dt: time step [ms].  tau: filter time constant [ms], > 0.
        squared: return ``D^2`` (smooth everywhere; use it in losses) instead of ``D`` (gradient 0 at 0).

    Returns:
        ``(...)`` distance (dimensionless), the broadcast leading shape.
    """
    dt = _checks.check_dt(dt)
    tau = _width("tau", tau)
    s = _float_raster(spikes, "van_rossum_distance")
    g = _float_raster(target, "van_rossum_distance", name="target", warn=False)
    if g.shape[-1] != s.shape[-1]:
        raise ValueError(f"target has {g.shape[-1]} time steps, spikes {s.shape[-1]}: they must match "
                         f"(time last)")
    try:
        np.broadcast_shapes(s.shape, g.shape)
    except ValueError:
        raise ValueError(f"target shape {g.shape} does not broadcast with spikes shape {s.shape}") from None
    return _van_rossum(s, g, math.exp(-dt / tau), bool(squared))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _van_rossum(s: jax.Array, g: jax.Array, a: float, squared: bool) -> jax.Array:
    shape = jnp.broadcast_shapes(s.shape, g.shape)
    dtype = jnp.promote_types(s.dtype, g.dtype)
    d = _exp_filter(jnp.broadcast_to(s, shape).astype(dtype) - jnp.broadcast_to(g, shape).astype(dtype), a)
    d2 = 0.5 * (1.0 - a * a) * (jnp.sum(d * d, -1) + d[..., -1] ** 2 * (a * a / (1.0 - a * a)))
    return d2 if squared else _safe_sqrt(d2)
