r"""The g10/g1 ratio curve as a forward model: a readout of the train model on regular trains.

The ratio at a rate is ``g_m / g_1``, the conductance just after the m-th and the 1st delivered
presynaptic spike, ``m = n_spike - 1`` (the tutorial's "g10/g1" is ``g[9*isi]/g[isi]``: its
index-0 spike is never seen, so the default ``n_spike = 10`` compares the 9th and the 1st
delivered spikes; for a measured ``g_n / g_1`` pass ``n_spike = n + 1``; ``n_spike >= 3``, as
``n_spike = 2`` would compare the first spike with itself).  It is computed from
the releases of :func:`~jaxlif.fitting.forward.stp_amplitudes`' models and the conductance
readout :func:`~jaxlif.fitting.forward.conductance_at_spikes`::

    g+_1 = g_bar r_1,   g+_{k+1} = e_k g+_k + g_bar r_{k+1},   ratio = g+_m / g+_1

Three modes:

``"tutorial"`` (default)
    Regular trains on the tutorial's grid (docs/conventions.md 4.6): ``isi = int(1000/rate/dt)``
    steps, forward Euler (:func:`~jaxlif.fitting.forward.euler_release`), ``e = (1 - dt/tau_syn)^isi``
    computed as ``exp(isi log1p(-dt/tau_syn))`` (within ~1e-7 of the step-by-step float64 loop
    even in float32): exactly :func:`~jaxlif.plasticity.ratio_curve`.
``"exact"``
    Regular trains, continuous time (``e = exp(-Delta/tau_syn)``, ``Delta = 1000/rate`` ms): exactly
    :func:`~jaxlif.plasticity.ratio_curve_exact`, for targets measured from real synapses.
``"poisson"``
    The mean of ``g_m / g_1`` over ``n_trains`` Poisson trains (Bernoulli per step,
    ``p = rate*dt/1000``, Euler), with *common random numbers*: the intervals are drawn once from
    ``key`` and held fixed, so the curve is a smooth function of the parameters.

One compiled program serves every set of 1-8 rates (9-16, ...: the rates are padded to a
multiple of 8, as in the fits), both regular modes, every ``dt``, ``tau_syn`` and every
``n_spike`` up to the next multiple of 16 (trains are padded to that length and the ratio is
read at the traced index ``m``).  (:func:`ratio_loss` is not padded: one program per number of
rates.)

Units: rates [Hz], time constants and dt [ms]; ratios are dimensionless.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks
from jaxlif._host import device_array
from jaxlif.fitting.forward import conductance_at_spikes, euler_release
from jaxlif.fitting.models import _tm_family
from jaxlif.plasticity import STPParams, euler_decay_factor, ratio_curve_isi_steps

__all__ = ["MODES", "stp_ratio", "ratio_loss", "ratio_curve_poisson", "poisson_isi_steps"]

#: Forward models accepted by ``mode=``.
MODES = ("tutorial", "exact", "poisson")

_BUCKET = 16
#: Rates are padded to a multiple of this (:func:`pad_rates`).
RATE_BUCKET = 8


def _padded_length(n_spike: int) -> int:
    """Spikes simulated for ``n_spike``: ``m = n_spike - 1`` rounded up to a multiple of 16."""
    return max(_BUCKET, int(math.ceil((n_spike - 1) / _BUCKET)) * _BUCKET)


def _kernel(params: STPParams, isi, m, euler, dt, tau_syn):
    """Mean over trains of ``g_m / g_1`` per rate.

    ``isi (R, T, M-1)``: intervals in steps (Euler) or ms (exact); ``m``: spike index (traced);
    ``euler``: traced boolean selecting the scheme; ``dt``, ``tau_syn`` [ms] traced.
    """
    U0, tau_d, tau_f = (jnp.asarray(x, isi.dtype) for x in params)
    # Each branch sees safe values when it is not selected, so that its (discarded) gradient
    # stays finite: Euler needs tau > dt, the exact form any tau > 0.
    safe = lambda tau: jnp.where(euler, tau, jnp.maximum(tau, 1.5 * dt))  # noqa: E731
    r_euler = euler_release(STPParams(U0, safe(tau_d), safe(tau_f)), isi, dt)
    r_exact = _tm_family(U0, U0, tau_d, tau_f, jnp.where(euler, isi * dt, isi))
    release = jnp.where(euler, r_euler, r_exact)
    decay = jnp.where(euler, euler_decay_factor(safe(tau_syn), isi, dt),
                      jnp.exp(-jnp.where(euler, isi * dt, isi) / tau_syn))
    g = conductance_at_spikes(release, decay)                      # (R, T, M)
    g_m = jnp.take_along_axis(g, jnp.broadcast_to(m - 1, g.shape[:-1] + (1,)), axis=-1)[..., 0]
    return jnp.mean(g_m / g[..., 0], axis=-1)


_kernel_jit = jax.jit(_kernel)


@jax.jit
def _loss_kernel(params, isi, m, euler, dt, tau_syn, target, w):
    return jnp.mean((w * (_kernel(params, isi, m, euler, dt, tau_syn) - target)) ** 2)


# --------------------------------------------------------------------------------------
# Validation (plain Python, before anything is traced)
# --------------------------------------------------------------------------------------


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")


def tau_min(mode, dt):
    return 0.0 if mode == "exact" else dt


def check_model_params(params, dt, mode):
    if not isinstance(params, STPParams):
        raise TypeError(f"params must be a jaxlif.STPParams, got {type(params).__name__}")
    if mode != "exact":  # Euler modes: the core's rule, tau >= dt
        from jaxlif.plasticity import check_stp_params
        check_stp_params(params, dt, "params")
        return
    _checks.check_U0(params.U0, "params.U0")
    for name in ("tau_d", "tau_f"):
        _checks.check_positive(f"params.{name}", getattr(params, name), "ms")


def check_rates(rates_hz, mode, dt):
    if isinstance(rates_hz, jax.core.Tracer):
        raise TypeError("rates_hz must be concrete (a list or NumPy array in Hz), not a traced "
                        "value: the rates fix the spike grid")
    rates = np.asarray(_checks.check_numeric("rates_hz", rates_hz), dtype=float)
    if rates.ndim != 1 or rates.size == 0:
        raise ValueError(f"rates_hz must be a non-empty 1-D sequence of rates in Hz, got shape "
                         f"{rates.shape}")
    _checks.check_positive("rates_hz", rates, "Hz")
    if mode == "poisson":
        _checks.check_rate("rates_hz", rates, dt)
    elif mode == "tutorial":
        ratio_curve_isi_steps(rates, dt)  # raises when the regular interval is under one step
    return rates


def check_n_spike(n_spike) -> int:
    """``n_spike >= 3``: the ratio is ``g_m / g_1`` with ``m = n_spike - 1``, so ``n_spike = 2``
    compares the first delivered spike with itself (``g_1 / g_1 = 1`` for every synapse: nothing
    to fit) and ``n_spike < 2`` names no spike at all."""
    if isinstance(n_spike, (bool, np.bool_)) or not isinstance(n_spike, (int, np.integer)):
        raise TypeError(f"n_spike must be an int, got {n_spike!r} of type "
                        f"{type(n_spike).__name__}")
    if n_spike < 3:
        raise ValueError(f"n_spike={n_spike} must be >= 3: the ratio compares the conductance "
                         f"after spike n_spike - 1 with the one after spike 1, so n_spike=2 gives "
                         f"g1/g1 = 1 whatever the synapse (and n_spike < 2 names no spike); for a "
                         f"measured g_n/g_1 pass n_spike = n + 1 with n >= 2")
    return int(n_spike)


def check_common(mode, dt, tau_syn, n_spike, n_trains):
    check_mode(mode)
    dt = _checks.check_dt(dt)
    if mode == "exact":
        _checks.check_positive("tau_syn", tau_syn, "ms")
    else:
        _checks.check_time_constant("tau_syn", tau_syn, dt)
    n_spike = check_n_spike(n_spike)
    n_trains = _checks.check_count("n_trains", n_trains, minimum=1)
    return dt, float(tau_syn), n_spike, n_trains


def check_noise_sd(noise_sd, n_rates):
    if noise_sd is None:
        return None
    sd = np.asarray(_checks.check_numeric("noise_sd", noise_sd), dtype=float)
    if sd.ndim > 1 or (sd.ndim == 1 and sd.shape[0] != n_rates):
        raise ValueError(f"noise_sd must be a scalar or have one value per rate ({n_rates}), got "
                         f"shape {sd.shape}")
    _checks.check_positive("noise_sd", sd)
    return np.broadcast_to(sd, (n_rates,)).astype(float)


def weights(sd):
    """1/sd normalised to mean square 1 (so the weighted loss stays on the scale of an MSE)."""
    w = 1.0 / sd
    return w / np.sqrt(np.mean(w ** 2))


# --------------------------------------------------------------------------------------
# Inputs of the kernel
# --------------------------------------------------------------------------------------


def poisson_isi_steps(key: jax.Array, rates_hz: ArrayLike | Sequence[float], *, n_trains: int, n_isi: int,
                      dt: float = 0.1) -> jax.Array:
    """Inter-spike intervals (in steps) of Bernoulli-per-step Poisson trains, fixed by ``key``.

    A train with spike probability ``p = rate*dt/1000`` per step has geometric intervals,
    ``P(K = k) = (1 - p)^(k-1) p`` for ``k >= 1``; they are drawn by inversion from uniforms
    ``V`` in (0, 1]::

        K = floor(log(V) / log(1 - p)) + 1

    Same law as the intervals of :func:`jaxlif.poisson_trains` (not the same draws).  Each rate
    gets its own uniforms (``fold_in(key, rate_index)``), so the Monte-Carlo error of a mean
    over trains is independent from rate to rate.

    Args:
        key: a ``jax.random`` key.  rates_hz: ``(n_rates,)`` [Hz] with ``p <= 1``.
        n_trains: trains per rate.  n_isi: intervals per train.  dt: time step [ms].

    Returns:
        ``(n_rates, n_trains, n_isi)`` float array of interval lengths in steps (>= 1).
    """
    _checks.check_key(key)
    dt = _checks.check_dt(dt)
    rates = np.atleast_1d(np.asarray(rates_hz, dtype=float))
    _checks.check_positive("rates_hz", rates, "Hz")
    _checks.check_rate("rates_hz", rates, dt)
    n_trains = _checks.check_count("n_trains", n_trains, minimum=1)
    n_isi = _checks.check_count("n_isi", n_isi, minimum=0)
    dtype = jnp.result_type(float)
    draw = jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), (n_trains, n_isi),
                                                 dtype=dtype))
    v = 1.0 - np.asarray(draw(jnp.arange(rates.size)), dtype=float)
    p = rates * dt / 1000.0
    with np.errstate(divide="ignore"):
        log_q = np.log1p(-p)  # -inf where p == 1: every interval is one step
    k = np.floor(np.log(v) / log_q[:, None, None]) + 1.0
    return jnp.asarray(k, dtype=dtype)


def kernel_inputs(rates, mode, dt, n_spike, key=None, n_trains=64):
    """``(isi (R, T, M-1), m, euler)`` for :func:`_kernel` (concrete NumPy/JAX arrays)."""
    dtype = jnp.result_type(float)
    M = _padded_length(n_spike)
    m = n_spike - 1
    if mode == "poisson":
        if key is None:
            raise ValueError("mode='poisson' needs key=jax.random.key(seed): the Poisson trains "
                             "are drawn once from it and held fixed (common random numbers)")
        _checks.check_key(key)
        isi = np.asarray(poisson_isi_steps(key, rates, n_trains=n_trains, n_isi=n_spike - 2,
                                           dt=dt), dtype=float)
        isi = np.concatenate([isi, np.ones(isi.shape[:2] + (M - 1 - isi.shape[2],))], axis=-1)
    elif mode == "tutorial":
        isi = np.broadcast_to(ratio_curve_isi_steps(rates, dt).astype(float)[:, None, None],
                              (rates.size, 1, M - 1))
    else:
        isi = np.broadcast_to((1e3 / rates)[:, None, None], (rates.size, 1, M - 1))
    return (device_array(isi, dtype), device_array(m, np.int32), device_array(mode != "exact"))


def pad_rates(isi) -> jax.Array:
    """``isi (R, T, M-1)`` padded along the rates to a multiple of :data:`RATE_BUCKET` with
    copies of the first rate, so that curves at 1-8 rates, 9-16 rates ... run one compiled
    program (:func:`stp_ratio` drops the padded rates, :func:`~jaxlif.fit_stp` weights them 0).
    Inside a user's ``jax.jit`` the transfer of ``isi`` is traced: padded by ``jnp`` there."""
    xp = jnp if isinstance(isi, jax.core.Tracer) else np
    isi = xp.asarray(isi)
    pad = -isi.shape[0] % RATE_BUCKET
    out = xp.concatenate([isi, xp.broadcast_to(isi[:1], (pad,) + isi.shape[1:])])
    return out if xp is jnp else device_array(out)


# --------------------------------------------------------------------------------------
# Public model and loss
# --------------------------------------------------------------------------------------


def stp_ratio(params: STPParams, rates_hz: ArrayLike | Sequence[float], *, mode: str = "tutorial",
              dt: float = 0.1, tau_syn: float = 5.0, n_spike: int = 10, key: jax.Array | None = None,
              n_trains: int = 64) -> jax.Array:
    """The forward model of :func:`~jaxlif.fit_stp`: ``g_m / g_1`` at each rate (``m = n_spike - 1``).

    ``mode="tutorial"`` equals ``g10 / g1`` of :func:`~jaxlif.plasticity.ratio_curve`,
    ``"exact"`` that of :func:`~jaxlif.plasticity.ratio_curve_exact` and ``"poisson"``
    :func:`ratio_curve_poisson` (needs ``key``).  Differentiable in ``params``.

    Args:
        params: :class:`~jaxlif.STPParams` (``tau_d, tau_f`` [ms]).  rates_hz: ``(n_rates,)`` [Hz].
        mode: ``"tutorial"``, ``"exact"`` or ``"poisson"``.
        dt: time step [ms] (unused in exact mode).
        tau_syn: conductance decay [ms].  n_spike: the tutorial's "10th spike" label (>= 3).
        key, n_trains: Poisson mode only.

    Returns:
        ``(n_rates,)`` ratio curve (dimensionless).
    """
    dt, tau_syn, n_spike, n_trains = check_common(mode, dt, tau_syn, n_spike, n_trains)
    rates = check_rates(rates_hz, mode, dt)
    check_model_params(params, dt, mode)
    isi, m, euler = kernel_inputs(rates, mode, dt, n_spike, key, n_trains)
    dtype = isi.dtype
    # concrete parameters as arrays of the working dtype: the signature of the fits' own calls
    params = STPParams(*(x if isinstance(x, jax.core.Tracer) else device_array(x, dtype)
                         for x in params))
    out = _kernel_jit(params, pad_rates(isi), m, euler, device_array(dt, dtype),
                      device_array(tau_syn, dtype))
    return out[:rates.size]


def ratio_curve_poisson(params: STPParams, rates_hz: ArrayLike | Sequence[float], *, key: jax.Array,
                        n_trains: int = 64, dt: float = 0.1, tau_syn: float = 5.0,
                        n_spike: int = 10) -> jax.Array:
    """Mean ``g_m / g_1`` (``m = n_spike - 1``) over ``n_trains`` Poisson trains per rate.

    The tutorial's Euler scheme driven by Bernoulli-per-step trains, evaluated event by event:
    from rest the first delivered spike gives ``g_1 = g_bar U0`` whatever its time, then each of
    the ``m - 1`` following intervals of ``K`` steps (:func:`poisson_isi_steps`, fixed by ``key``)
    is ``K - 1`` silent steps in closed form and one spike step.  The trains do not stop at the
    tutorial's ``T = 10*1000/rate``: every train delivers m spikes.  With ``key`` fixed the curve
    is a smooth function of ``params`` (common random numbers) and can be differentiated and
    fitted; its Monte-Carlo error is about ``std / sqrt(n_trains)``.

    Returns:
        ``(n_rates,)`` mean ratio.
    """
    return stp_ratio(params, rates_hz, mode="poisson", dt=dt, tau_syn=tau_syn, n_spike=n_spike,
                     key=key, n_trains=n_trains)


def ratio_loss(params: STPParams, rates_hz: ArrayLike | Sequence[float],
               target_ratio: ArrayLike | Sequence[float], *, mode: str = "tutorial",
               noise_sd: ArrayLike | Sequence[float] | None = None, dt: float = 0.1,
               tau_syn: float = 5.0, n_spike: int = 10,
               key: jax.Array | None = None, n_trains: int = 64) -> jax.Array:
    """The loss :func:`~jaxlif.fit_stp` minimises, ``mean(w^2 (stp_ratio(params) - target)^2)``.

    ``w = 1`` without ``noise_sd``, else ``1/noise_sd`` scaled to mean square 1.  Differentiable
    in ``params``; ``target_ratio`` (and ``params``) may be traced, so the loss can be
    ``jax.vmap``-ed over bootstrap targets::

        losses = jax.vmap(lambda t: ratio_loss(p, rates, t))(targets)    # (n_boot,)

    Arguments as in :func:`~jaxlif.fit_stp`; ``rates_hz`` stays concrete (it sets the grid).
    """
    dt, tau_syn, n_spike, n_trains = check_common(mode, dt, tau_syn, n_spike, n_trains)
    rates = check_rates(rates_hz, mode, dt)
    concrete = _checks._concrete(target_ratio)
    if concrete is not None:
        from jaxlif.fitting.ratio_fit import check_target
        target = check_target(target_ratio, rates.size)
        if target.ndim != 1:
            raise ValueError(f"ratio_loss takes one curve, target_ratio of shape (n_rates,), got "
                             f"{target.shape}")
    else:
        target = target_ratio
        if jnp.shape(target) != (rates.size,):
            raise ValueError(f"target_ratio must have shape ({rates.size},), got "
                             f"{jnp.shape(target)}")
    sd = check_noise_sd(noise_sd, rates.size)
    check_model_params(params, dt, mode)
    isi, m, euler = kernel_inputs(rates, mode, dt, n_spike, key, n_trains)
    dtype = isi.dtype
    w = jnp.ones(rates.size, dtype) if sd is None else jnp.asarray(weights(sd), dtype)
    return _loss_kernel(params, isi, m, euler, jnp.asarray(dt, dtype),
                        jnp.asarray(tau_syn, dtype), jnp.asarray(target, dtype), w)
