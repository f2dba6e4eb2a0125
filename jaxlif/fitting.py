r"""Fitting Tsodyks-Markram parameters ``(U0, tau_d, tau_f)`` to g10/g1 ratio curves by gradient.

The forward model is the ratio ``g_m / g_1`` of the conductance just after the m-th and the 1st
delivered presynaptic spike, ``m = n_spike - 1`` (the tutorial's "g10/g1" is ``g[9*isi]/g[isi]``:
its index-0 spike is never seen, so the default ``n_spike = 10`` compares the 9th and the 1st
delivered spikes; to fit a measured ``g_n / g_1`` pass ``n_spike = n + 1``).  Three modes:

``"tutorial"`` (default)
    Regular trains on the tutorial's grid (docs/conventions.md 4.6): ``isi = int(1000/rate/dt)`` steps,
    forward Euler (``dynamic_syn``), evaluated event by event: ``k - 1`` silent steps in closed
    form, ``(1 - dt/tau)^(k-1) = exp((k-1) log1p(-dt/tau))``, then one spike step
    (:func:`~jaxlif.plasticity.stp_step`): exactly :func:`~jaxlif.plasticity.ratio_curve`, whose
    decay factors (:func:`~jaxlif.plasticity.euler_decay_factor`) keep it within about 1e-7 of the
    step-by-step float64 loop even in float32.
``"exact"``
    Regular trains, continuous-time Tsodyks-Markram solved exactly between spikes
    (:func:`~jaxlif.plasticity.ratio_curve_exact`; no dt), for targets measured from real synapses.
``"poisson"``
    The mean of ``g_m / g_1`` over ``n_trains`` Poisson trains (Bernoulli per step,
    ``p = rate*dt/1000``, forward Euler as in the tutorial), with *common random numbers*: the
    inter-spike intervals are drawn once from ``key`` and held fixed, so the loss is a smooth,
    differentiable function of the parameters (:func:`ratio_curve_poisson`).

Loss (``sigma_i`` = ``noise_sd``, normalised so that ``mean(w_i^2) = 1``; ``w_i = 1`` without it)::

    L(U0, tau_d, tau_f) = mean_i  w_i^2 (model_i - target_i)^2

Optimisation (:func:`fit_stp`): optax L-BFGS with a backtracking (Armijo) line search, in an
unconstrained space::

    U0 = sigmoid(theta_U),   tau_d = tau_min + exp(theta_d),   tau_f = tau_min + exp(theta_f)

with ``tau_min = dt`` in the Euler modes, so no step can leave the region ``tau > dt`` where the
tutorial's scheme is stable and positive (``tau_min = 0`` in exact mode).  The time constants are
log-scaled rather than ``dt + softplus(theta)``: softplus is linear above a few ms, so one unit
of ``theta`` is one millisecond and time constants spanning 10-2000 ms are badly scaled (from
the start (0.3, 300, 300) L-BFGS stalled at an RMSE of ~1e-2 on the tutorial's STF curve with
softplus, and reached 1e-7 in ~20 iterations with exp).  Many starts are optimised at once
(``vmap``) inside one jitted ``lax.while_loop``; each start stops when its RMSE falls below
``tol`` or it stops improving, and the best start is kept.  Several curves (a data set, one curve
per recorded synapse) are fitted in the same loop, each with its own best start.

Uncertainty (returned with every fit): the Gauss-Newton (Fisher) matrix ``J^T J / sigma^2`` at the
optimum, ``J = d model / d(U0, tau_d, tau_f)``, gives standard errors
``sqrt(diag(sigma^2 (J^T J)^{-1}))``, with ``sigma`` = ``noise_sd`` when given, else estimated from
the residuals as ``sqrt(SSR / (n_rates - 3))`` (undefined with 3 rates or fewer).  A parameter is
flagged *not identifiable* when it has weight in the numerical null space of ``J`` (e.g. a single
rate: one number cannot fix three parameters), when its relative standard error exceeds
``max_rel_uncertainty``, or when the near-optimal starts disagree on it by more than that (the
multi-start spread).

Limitations: the standard errors are local (linearised).  When the curve constrains the
parameters weakly the confidence region is curved (banana-shaped) and they can be optimistic;
the multi-start spread catches part of this.  Poisson mode costs about ``n_trains`` times more
per step than the regular modes (seconds rather than a tenth of a second with the 36 default
starts on a 2-core CPU); give ``init`` or fewer trains to go faster.

Units: rates [Hz], time constants [ms], dt [ms]; ratios are dimensionless.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlif import _checks
from jaxlif.plasticity import (STPParams, _ratio_curve, _ratio_curve_exact, check_stp_params,
                               ratio_curve_isi_steps, stp_event, stp_init)
from jaxlif.synapses import SynParams

__all__ = [
    "FitResult",
    "MODES",
    "fit_stp",
    "fit_stp_dataset",
    "default_starts",
    "stp_ratio",
    "ratio_loss",
    "ratio_curve_poisson",
    "poisson_isi_steps",
]

#: Forward models accepted by ``mode=``.
MODES = ("tutorial", "exact", "poisson")

# Null-space threshold for the scaled Jacobian: singular values below this multiple of
# eps * s_max are indistinguishable from rounding error.
_RCOND_EPS = 1e3
# Weight in the null space above which a parameter is declared structurally undetermined.
_NULL_WEIGHT = 0.1


class FitResult(NamedTuple):
    """Result of :func:`fit_stp` (arrays gain a leading ``(n_curves,)`` axis for a data set).

    Attributes:
        params: fitted :class:`~jaxlif.STPParams` (``U0``; ``tau_d, tau_f`` [ms]).
        loss: final loss ``mean(w^2 (model - target)^2)`` of the best start.
        rmse: unweighted curve error ``sqrt(mean((model - target)^2))`` (dimensionless).
        history: ``(max_steps,)`` loss of the best start before each step (``history[0]`` at its
            start); NaN after it stopped.
        n_steps: optimiser steps taken by the best start.
        converged: True when the (weighted) RMSE reached ``tol`` or the optimum is stationary: a
            Gauss-Newton step would move the fitted curve by less than ``tol`` or 3 % of the
            residual (RMS).
        fitted_ratio: ``(n_rates,)`` model curve at ``params``.
        target_ratio: ``(n_rates,)`` the target.
        rates_hz: ``(n_rates,)`` input rates [Hz].
        stderr: :class:`~jaxlif.STPParams` of standard errors (same units as ``params``); ``inf``
            for a parameter the curve does not determine, NaN when the noise level is unknown
            and cannot be estimated (3 rates or fewer and no ``noise_sd``).
        identifiable: :class:`~jaxlif.STPParams` of booleans (see the module docstring).
        cov: ``(3, 3)`` covariance of ``(U0, tau_d, tau_f)`` (pseudo-inverse; meaningless along
            parameters that are not identifiable).
        noise_sd: the noise level ``sigma`` used for ``stderr`` (given, or estimated from the
            residuals); with a per-rate ``noise_sd``, its root mean square.
        spread: :class:`~jaxlif.STPParams`: ``(max - min) / |best|`` of each parameter over the
            near-optimal starts, the multi-start spread.  Near-optimal: a sum of squares within
            7.81 noise variances of the best (chi-squared, 3 dof, 95 %) plus ``n_rates * tol^2``;
            with the noise level unknown, an RMSE within ``2 * best + tol``.
        n_near_optimal: number of near-optimal starts.
        start_params: :class:`~jaxlif.STPParams` of ``(n_starts,)`` arrays: each start's optimum.
        start_loss: ``(n_starts,)`` final loss of each start.
        start_n_steps: ``(n_starts,)`` optimiser steps each start took.
    """

    params: STPParams
    loss: jax.Array
    rmse: jax.Array
    history: jax.Array
    n_steps: jax.Array
    converged: jax.Array
    fitted_ratio: jax.Array
    target_ratio: jax.Array
    rates_hz: jax.Array
    stderr: STPParams
    identifiable: STPParams
    cov: jax.Array
    noise_sd: jax.Array
    spread: STPParams
    n_near_optimal: jax.Array
    start_params: STPParams
    start_loss: jax.Array
    start_n_steps: jax.Array

    def summary(self) -> dict:
        """A JSON-ready dict of the fit (plain floats/lists; data sets give lists per curve)."""
        tolist = lambda a: np.asarray(a).tolist()  # noqa: E731
        named = lambda p: {k: tolist(v) for k, v in p._asdict().items()}  # noqa: E731
        return {
            "params": named(self.params),
            "stderr": named(self.stderr),
            "identifiable": named(self.identifiable),
            "spread": named(self.spread),
            "loss": tolist(self.loss),
            "rmse": tolist(self.rmse),
            "converged": tolist(self.converged),
            "n_steps": tolist(self.n_steps),
            "noise_sd": tolist(self.noise_sd),
            "n_near_optimal": tolist(self.n_near_optimal),
            "rates_hz": tolist(self.rates_hz),
            "target_ratio": tolist(self.target_ratio),
            "fitted_ratio": tolist(self.fitted_ratio),
        }


# --------------------------------------------------------------------------------------
# Forward models
# --------------------------------------------------------------------------------------


def _tutorial_ratio(params, isi, tau_syn, dt, n_spike):
    """g_m/g_1 of the Euler scheme for regular trains of ``isi`` steps (event by event)."""
    g1, g_last = _ratio_curve(params, SynParams(g_bar=1.0, tau_syn=tau_syn, E_rev=0.0), isi, dt, n_spike)
    return g_last / g1


def _poisson_ratio(params, isi, tau_syn, dt):
    """Mean over trains of g_m/g_1 for fixed intervals ``isi`` of shape (n_rates, n_trains, m-1)."""
    syn = SynParams(g_bar=1.0, tau_syn=tau_syn, E_rev=0.0)
    # From rest (u = 0, R = 1, g = 0) nothing decays, so the first delivered spike gives g = U0
    # whenever it comes.
    first = stp_event(params, syn, stp_init((), isi.dtype), 1.0, dt)

    def one_train(ks):
        last, _ = jax.lax.scan(lambda st, k: (stp_event(params, syn, st, k, dt), None), first,
                               ks)
        return last.g / first.g

    return jnp.mean(jax.vmap(jax.vmap(one_train))(isi), axis=-1)


def _model(params, aux, tau_syn, mode, dt, n_spike):
    if mode == "tutorial":
        return _tutorial_ratio(params, aux, tau_syn, dt, n_spike)
    if mode == "exact":
        g1, g_last = _ratio_curve_exact(params, 1.0, tau_syn, aux, n_spike)
        return g_last / g1
    return _poisson_ratio(params, aux, tau_syn, dt)


def poisson_isi_steps(key: jax.Array, rates_hz, *, n_trains: int, n_isi: int,
                      dt: float = 0.1) -> jax.Array:
    """Inter-spike intervals (in steps) of Bernoulli-per-step Poisson trains, fixed by ``key``.

    A train with spike probability ``p = rate*dt/1000`` per step has geometric intervals,
    ``P(K = k) = (1 - p)^(k-1) p`` for ``k >= 1``; they are drawn by inversion from uniforms
    ``V`` in (0, 1]::

        K = floor(log(V) / log(1 - p)) + 1

    Same law as the intervals of :func:`jaxlif.poisson_trains` (not the same draws).  Each rate
    gets its own uniforms (``fold_in(key, rate_index)``), so the Monte-Carlo error of a mean
    over trains is independent from rate to rate: it then shows up as scatter in a fit's
    residuals (and in the estimated noise level) rather than as a smooth bias shared by all rates.

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


def ratio_curve_poisson(params: STPParams, rates_hz, *, key: jax.Array, n_trains: int = 64,
                        dt: float = 0.1, tau_syn: float = 5.0, n_spike: int = 10) -> jax.Array:
    """Mean ``g_m / g_1`` (``m = n_spike - 1``) over ``n_trains`` Poisson trains per rate.

    The tutorial's Euler scheme driven by Bernoulli-per-step trains, evaluated event by event:
    from rest the first delivered spike gives ``g_1 = g_bar U0`` whatever its time, then each of
    the ``m - 1`` following intervals of ``K`` steps (:func:`poisson_isi_steps`, fixed by ``key``)
    is ``K - 1`` silent steps in closed form and one spike step, as in
    :func:`~jaxlif.plasticity.stp_event` (with the accurate decay factor of tutorial mode).  The
    trains do not stop at the tutorial's ``T = 10*1000/rate``: every train delivers m spikes.
    With ``key`` fixed the curve is a smooth function of ``params`` (common random numbers) and
    can be differentiated and fitted; its Monte-Carlo error is about ``std / sqrt(n_trains)``.

    Returns:
        ``(n_rates,)`` mean ratio.
    """
    dt, tau_syn, n_spike, n_trains = _check_common("poisson", dt, tau_syn, n_spike, n_trains)
    rates = _check_rates(rates_hz, "poisson", dt)
    _check_model_params(params, dt, "poisson")
    aux = poisson_isi_steps(key, rates, n_trains=n_trains, n_isi=n_spike - 2, dt=dt)
    return _model_jit(params, aux, tau_syn, "poisson", dt, n_spike)


@jax.jit(static_argnums=(3, 4, 5))
def _model_jit(params, aux, tau_syn, mode, dt, n_spike):
    return _model(params, aux, tau_syn, mode, dt, n_spike)


# --------------------------------------------------------------------------------------
# Validation (plain Python, before anything is traced)
# --------------------------------------------------------------------------------------


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")


def _tau_min(mode, dt):
    return 0.0 if mode == "exact" else dt


def _check_model_params(params, dt, mode):
    if mode != "exact":  # Euler modes: the core's rule, tau >= dt
        check_stp_params(params, dt, "params")
        return
    if not isinstance(params, STPParams):
        raise TypeError(f"params must be a jaxlif.STPParams, got {type(params).__name__}")
    _checks.check_U0(params.U0, "params.U0")
    for name in ("tau_d", "tau_f"):
        _checks.check_positive(f"params.{name}", getattr(params, name), "ms")


def _check_rates(rates_hz, mode, dt):
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


def _check_target(target_ratio, n_rates):
    if isinstance(target_ratio, jax.core.Tracer):
        raise TypeError("target_ratio must be concrete, not a traced value")
    target = np.asarray(_checks.check_numeric("target_ratio", target_ratio), dtype=float)
    if target.ndim not in (1, 2):
        raise ValueError(f"target_ratio must have shape (n_rates,) or (n_curves, n_rates), got "
                         f"shape {target.shape}")
    if target.shape[-1] != n_rates:
        raise ValueError(f"target_ratio has {target.shape[-1]} values per curve but rates_hz has "
                         f"{n_rates}: give one ratio per rate (shape {target.shape})")
    bad = ~np.isfinite(target)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise ValueError(f"target_ratio[{', '.join(map(str, idx))}]={target[tuple(idx)]} is not "
                         f"finite; every target ratio must be a finite number > 0")
    bad = target <= 0
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise ValueError(f"target_ratio[{', '.join(map(str, idx))}]={target[tuple(idx)]} must be "
                         f"> 0: a ratio g10/g1 of two conductances is positive")
    return target


def _check_noise_sd(noise_sd, n_rates):
    if noise_sd is None:
        return None
    sd = np.asarray(_checks.check_numeric("noise_sd", noise_sd), dtype=float)
    if sd.ndim > 1 or (sd.ndim == 1 and sd.shape[0] != n_rates):
        raise ValueError(f"noise_sd must be a scalar or have one value per rate ({n_rates}), got "
                         f"shape {sd.shape}")
    _checks.check_positive("noise_sd", sd)
    return np.broadcast_to(sd, (n_rates,)).astype(float)


def _init_array(init, mode, dt) -> np.ndarray:
    """Starts as an (n_starts, 3) float array of (U0, tau_d, tau_f), validated."""
    if init is None:
        return np.stack([np.asarray(f, dtype=float) for f in default_starts()], axis=-1)
    if isinstance(init, STPParams):
        fields = [np.asarray(_checks.check_numeric(f"init.{n}", v), dtype=float)
                  for n, v in zip(STPParams._fields, init)]
        try:
            fields = np.broadcast_arrays(*fields)
        except ValueError as err:
            raise ValueError(f"init fields have incompatible shapes "
                             f"{[f.shape for f in fields]}") from err
        arr = np.stack(fields, axis=-1)
    else:
        arr = np.asarray(_checks.check_numeric("init", init), dtype=float)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"init must be an STPParams, a (U0, tau_d, tau_f) tuple or an "
                         f"(n_starts, 3) array, got shape {arr.shape}")
    _checks.check_finite("init", arr)
    U0, tau_d, tau_f = arr.T
    if not np.all((U0 > 0) & (U0 < 1)):
        bad = U0[~((U0 > 0) & (U0 < 1))][0]
        raise ValueError(f"init U0={bad} must lie in the open interval (0, 1): the fit runs on "
                         f"U0 = sigmoid(theta)")
    floor = _tau_min(mode, dt)
    for name, tau in (("tau_d", tau_d), ("tau_f", tau_f)):
        if not np.all(tau > floor):
            bad = tau[tau <= floor][0]
            raise ValueError(f"init {name}={bad} ms must be > {floor} ms"
                             + (f" (the time step dt; forward Euler needs {name} > dt)"
                                if floor > 0 else ""))
    return arr


def default_starts() -> STPParams:
    """The 36 starts :func:`fit_stp` uses when ``init=None``: a log-spaced grid.

    ``U0`` in {0.05, 0.15, 0.4, 0.8} x ``tau_d`` in {50, 300, 1500} ms x ``tau_f`` in
    {20, 200, 2000} ms, spanning depressing, pseudo-linear and facilitating synapses.
    """
    grid = np.array(np.meshgrid([0.05, 0.15, 0.4, 0.8], [50.0, 300.0, 1500.0],
                                [20.0, 200.0, 2000.0], indexing="ij")).reshape(3, -1)
    return STPParams(*(jnp.asarray(g, dtype=jnp.result_type(float)) for g in grid))


def _model_inputs(rates, mode, dt, n_spike, key, n_trains):
    dtype = jnp.result_type(float)
    if mode == "tutorial":
        return jnp.asarray(ratio_curve_isi_steps(rates, dt), dtype=dtype)
    if mode == "exact":
        return jnp.asarray(1e3 / rates, dtype=dtype)
    if key is None:
        raise ValueError("mode='poisson' needs key=jax.random.key(seed): the Poisson trains are "
                         "drawn once from it and held fixed (common random numbers)")
    return poisson_isi_steps(key, rates, n_trains=n_trains, n_isi=n_spike - 2, dt=dt)


def _check_common(mode, dt, tau_syn, n_spike, n_trains):
    _check_mode(mode)
    dt = _checks.check_dt(dt)
    if mode == "exact":
        _checks.check_positive("tau_syn", tau_syn, "ms")
    else:
        _checks.check_time_constant("tau_syn", tau_syn, dt)
    n_spike = _checks.check_count("n_spike", n_spike, minimum=2)
    n_trains = _checks.check_count("n_trains", n_trains, minimum=1)
    return dt, float(tau_syn), n_spike, n_trains


# --------------------------------------------------------------------------------------
# Public model and loss
# --------------------------------------------------------------------------------------


def stp_ratio(params: STPParams, rates_hz, *, mode: str = "tutorial", dt: float = 0.1,
              tau_syn: float = 5.0, n_spike: int = 10, key: jax.Array | None = None,
              n_trains: int = 64) -> jax.Array:
    """The forward model of :func:`fit_stp`: ``g_m / g_1`` at each rate (``m = n_spike - 1``).

    ``mode="tutorial"`` equals ``g10 / g1`` of :func:`~jaxlif.plasticity.ratio_curve`,
    ``"exact"`` that of :func:`~jaxlif.plasticity.ratio_curve_exact` and ``"poisson"``
    :func:`ratio_curve_poisson` (needs ``key``).  Differentiable in ``params``.

    Args:
        params: :class:`~jaxlif.STPParams` (``tau_d, tau_f`` [ms]).  rates_hz: ``(n_rates,)`` [Hz].
        mode: ``"tutorial"``, ``"exact"`` or ``"poisson"``.
        dt: time step [ms] (unused in exact mode).
        tau_syn: conductance decay [ms].  n_spike: the tutorial's "10th spike" label.
        key, n_trains: Poisson mode only.

    Returns:
        ``(n_rates,)`` ratio curve (dimensionless).
    """
    dt, tau_syn, n_spike, n_trains = _check_common(mode, dt, tau_syn, n_spike, n_trains)
    rates = _check_rates(rates_hz, mode, dt)
    _check_model_params(params, dt, mode)
    aux = _model_inputs(rates, mode, dt, n_spike, key, n_trains)
    return _model_jit(params, aux, tau_syn, mode, dt, n_spike)


def _weights(sd):
    """1/sd normalised to mean square 1 (so the weighted loss stays on the scale of an MSE)."""
    w = 1.0 / sd
    return w / np.sqrt(np.mean(w ** 2))


def ratio_loss(params: STPParams, rates_hz, target_ratio, *, mode: str = "tutorial",
               noise_sd=None, dt: float = 0.1, tau_syn: float = 5.0, n_spike: int = 10,
               key: jax.Array | None = None, n_trains: int = 64) -> jax.Array:
    """The loss :func:`fit_stp` minimises, ``mean(w^2 (stp_ratio(params) - target)^2)``.

    ``w = 1`` without ``noise_sd``, else ``1/noise_sd`` scaled to mean square 1.  Differentiable
    in ``params`` (``jax.grad`` over :class:`~jaxlif.STPParams`); arguments as in :func:`fit_stp`.
    """
    dt, tau_syn, n_spike, n_trains = _check_common(mode, dt, tau_syn, n_spike, n_trains)
    rates = _check_rates(rates_hz, mode, dt)
    target = _check_target(target_ratio, rates.size)
    if target.ndim != 1:
        raise ValueError(f"ratio_loss takes one curve, target_ratio of shape (n_rates,), got "
                         f"{target.shape}")
    sd = _check_noise_sd(noise_sd, rates.size)
    _check_model_params(params, dt, mode)
    aux = _model_inputs(rates, mode, dt, n_spike, key, n_trains)
    dtype = jnp.result_type(float)
    w = jnp.ones(rates.size, dtype) if sd is None else jnp.asarray(_weights(sd), dtype)
    return _loss_jit(params, aux, jnp.asarray(target, dtype), w, tau_syn, mode, dt, n_spike)


@jax.jit(static_argnums=(5, 6, 7))
def _loss_jit(params, aux, target, w, tau_syn, mode, dt, n_spike):
    return jnp.mean((w * (_model(params, aux, tau_syn, mode, dt, n_spike) - target)) ** 2)


# --------------------------------------------------------------------------------------
# The optimiser loop
# --------------------------------------------------------------------------------------


def _to_params(theta, tau_min) -> STPParams:
    """Unconstrained ``theta[..., 3]`` -> STPParams with 0 < U0 < 1 and tau > tau_min."""
    return STPParams(jax.nn.sigmoid(theta[..., 0]), tau_min + jnp.exp(theta[..., 1]),
                     tau_min + jnp.exp(theta[..., 2]))


def _to_theta(p: np.ndarray, tau_min: float) -> np.ndarray:
    U0, tau_d, tau_f = np.moveaxis(p, -1, 0)
    return np.stack([np.log(U0) - np.log1p(-U0), np.log(tau_d - tau_min), np.log(tau_f - tau_min)],
                    axis=-1)


def _optimizer():
    # Backtracking (Armijo) line search: its loop is bounded and it copes with the flat regions
    # of this loss (tau -> dt, U0 -> 0).  optax's default zoom line search was seen to spin
    # forever there when vmapped inside a compiled loop (optax 0.2.8).
    return optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=15, decrease_factor=0.5, store_grad=True))


class _Carry(NamedTuple):
    step: jax.Array
    theta: jax.Array        # (C, S, 3) current point of each start
    opt_state: Any
    best_theta: jax.Array   # (C, S, 3)
    best_loss: jax.Array    # (C, S)
    stall: jax.Array        # (C, S) steps without a relative improvement of rel_improve
    done: jax.Array         # (C, S)
    n_steps: jax.Array      # (C, S)
    history: jax.Array      # (C, S, max_steps)


# Progress callbacks go through this stack so that the compiled loop does not depend on the
# Python callable (a new callable would otherwise mean a new compilation).
_PROGRESS_SINKS: list = []


def _emit_progress(step, best_rmse, n_done):
    if _PROGRESS_SINKS:
        _PROGRESS_SINKS[-1](int(step), np.asarray(best_rmse), np.asarray(n_done))


@jax.jit(static_argnames=("mode", "dt", "n_spike", "max_steps", "sd_given", "with_progress"))
def _fit_core(theta0, target, w, sd, aux, tau_syn, tau_min, tol, rel_improve, patience,
              max_rel, progress_every, *, mode, dt, n_spike, max_steps, sd_given, with_progress):
    n_curves, n_rates = target.shape
    n_starts = theta0.shape[0]
    opt = _optimizer()

    def loss_fn(theta, tgt):
        model = _model(_to_params(theta, tau_min), aux, tau_syn, mode, dt, n_spike)
        return jnp.mean((w * (model - tgt)) ** 2)

    def step_one(theta, opt_state, tgt, live):
        # A stopped start still runs through the vmapped step (its result is discarded); giving
        # it a zero loss and gradient makes its update zero, so its line search accepts at once
        # instead of backtracking to the limit on every later step.
        fn = lambda th: jnp.where(live, loss_fn(th, tgt), 0.0)  # noqa: E731
        value, grad = optax.value_and_grad_from_state(fn)(theta, state=opt_state)
        value = jnp.where(live, value, 0.0)
        grad = jnp.where(live, grad, 0.0)
        updates, opt_state = opt.update(grad, opt_state, theta, value=value, grad=grad,
                                        value_fn=fn)
        return optax.apply_updates(theta, updates), opt_state, value

    step_all = jax.vmap(jax.vmap(step_one, in_axes=(0, 0, None, 0)), in_axes=(0, 0, 0, 0))

    theta = jnp.broadcast_to(theta0, (n_curves, n_starts, 3))
    opt_state = jax.vmap(jax.vmap(opt.init))(theta)
    dtype = theta.dtype
    carry = _Carry(
        step=jnp.asarray(0), theta=theta, opt_state=opt_state, best_theta=theta,
        best_loss=jnp.full((n_curves, n_starts), jnp.inf, dtype),
        stall=jnp.zeros((n_curves, n_starts), jnp.int32),
        done=jnp.zeros((n_curves, n_starts), bool),
        n_steps=jnp.zeros((n_curves, n_starts), jnp.int32),
        history=jnp.full((n_curves, n_starts, max_steps), jnp.nan, dtype))

    def keep_if_done(done, old, new):
        return jax.tree.map(
            lambda o, n: jnp.where(done.reshape(done.shape + (1,) * (n.ndim - done.ndim)), o, n),
            old, new)

    def body(c: _Carry) -> _Carry:
        live = ~c.done
        new_theta, new_state, value = step_all(c.theta, c.opt_state, target, live)
        better = live & (value < c.best_loss)
        improved = value < c.best_loss * (1.0 - rel_improve)
        best_theta = jnp.where(better[..., None], c.theta, c.best_theta)
        best_loss = jnp.where(better, value, c.best_loss)
        stall = jnp.where(live, jnp.where(improved, 0, c.stall + 1), c.stall)
        history = c.history.at[..., c.step].set(jnp.where(live, value, jnp.nan))
        finished = (jnp.sqrt(value) <= tol) | (stall >= patience) | ~jnp.isfinite(value)
        done = c.done | finished
        theta = keep_if_done(c.done, c.theta, new_theta)
        opt_state = keep_if_done(c.done, c.opt_state, new_state)
        if with_progress:
            jax.lax.cond(
                (c.step % progress_every == 0) | jnp.all(done),
                lambda: jax.debug.callback(_emit_progress, c.step + 1,
                                           jnp.sqrt(jnp.min(best_loss, axis=1)),
                                           jnp.sum(done)),
                lambda: None)
        return _Carry(c.step + 1, theta, opt_state, best_theta, best_loss, stall, done,
                      c.n_steps + live.astype(jnp.int32), history)

    def cond(c: _Carry):
        return (c.step < max_steps) & ~jnp.all(c.done)

    c = jax.lax.while_loop(cond, body, carry)

    # Each start's optimum and loss; the best start of each curve.
    start_loss = jax.vmap(jax.vmap(loss_fn, in_axes=(0, None)))(c.best_theta, target)
    start_loss = jnp.where(jnp.isfinite(start_loss), start_loss, jnp.inf)
    best = jnp.argmin(start_loss, axis=1)
    pick = lambda a: jnp.take_along_axis(  # noqa: E731
        a, best.reshape((n_curves, 1) + (1,) * (a.ndim - 2)), axis=1)[:, 0]
    theta_best = pick(c.best_theta)
    params = _to_params(theta_best, tau_min)
    start_params = _to_params(c.best_theta, tau_min)

    def analyse(p, tgt, s_loss, s_params):
        return _uncertainty(p, tgt, s_loss, s_params, w, sd, aux, tau_syn, tol, max_rel,
                            mode=mode, dt=dt, n_spike=n_spike, sd_given=sd_given)

    unc = jax.vmap(analyse)(params, target, start_loss, start_params)
    loss = pick(start_loss)
    converged = (jnp.sqrt(loss) <= tol) | unc["stationary"]
    return dict(params=params, loss=loss, history=pick(c.history), n_steps=pick(c.n_steps),
                converged=converged, start_params=start_params, start_loss=start_loss,
                start_n_steps=c.n_steps, **unc)


def _uncertainty(params, target, start_loss, start_params, w, sd, aux, tau_syn, tol, max_rel, *,
                 mode, dt, n_spike, sd_given):
    """Gauss-Newton standard errors, identifiability flags and multi-start spread (one curve)."""
    n = target.shape[-1]
    p = jnp.stack([params.U0, params.tau_d, params.tau_f])

    def f(q):
        m = _model(STPParams(q[0], q[1], q[2]), aux, tau_syn, mode, dt, n_spike)
        return m, m

    J, model = jax.jacfwd(f, has_aux=True)(p)          # (n, 3): d ratio / d(U0, tau_d, tau_f)
    resid = model - target
    if sd_given:
        Jw, s2 = J / sd[:, None], jnp.asarray(1.0, p.dtype)
        sigma = jnp.sqrt(jnp.mean(sd ** 2))
    else:
        Jw = J
        s2 = jnp.sum(resid ** 2) / (n - 3) if n > 3 else jnp.asarray(jnp.nan, p.dtype)
        sigma = jnp.sqrt(s2)
    Jr = Jw * p[None, :]                               # derivatives w.r.t. log-parameters
    U, s, Vt = jnp.linalg.svd(Jr, full_matrices=True)  # Vt: (3, 3)
    k = s.shape[0]
    s_full = jnp.zeros(3, p.dtype).at[:k].set(s)
    # Null directions: below rounding relative to the largest singular value, or so weak that a
    # 100 % change of the parameters moves the curve by less than ~100 roundings of it.
    eps = jnp.finfo(p.dtype).eps
    scale = jnp.linalg.norm(model / sd) if sd_given else jnp.linalg.norm(model)
    null = s_full <= jnp.maximum(_RCOND_EPS * eps * s_full[0], 100.0 * eps * scale)
    inv_s2 = jnp.where(null, 0.0, 1.0 / jnp.where(null, 1.0, s_full) ** 2)
    rel_cov = s2 * (Vt.T * inv_s2) @ Vt                # covariance of log-parameters
    null_weight = jnp.sqrt(jnp.sum(jnp.where(null[:, None], Vt ** 2, 0.0), axis=0))
    structural = null_weight < _NULL_WEIGHT
    rel_se = jnp.where(structural, jnp.sqrt(jnp.diag(rel_cov)), jnp.inf)
    stderr = p * rel_se
    cov = rel_cov * jnp.outer(p, p)

    # Stationarity: the Gauss-Newton step on the loss moves the curve by P r (P: projection on
    # the range of J, the same with the loss weights w, which are proportional to 1/sd);
    # converged when that is below tol or 3 % of the residual (RMS).
    rw = w * resid
    gn_move = jnp.sqrt(jnp.sum(jnp.where(null[:k], 0.0, U[:, :k].T @ rw) ** 2) / n)
    stationary = gn_move <= jnp.maximum(0.03 * jnp.sqrt(jnp.mean(rw ** 2)), tol)

    # Multi-start spread over the near-optimal starts: those whose optimum is statistically
    # indistinguishable from the best (likelihood ratio, chi2 with 3 dof at 95 %: 7.81), or,
    # when the noise level is unknown (3 rates or fewer), within 2 x the best RMSE.
    if sd_given:
        s2_loss = 1.0 / jnp.mean(1.0 / sd ** 2)
    else:
        s2_loss = s2
    gap = n * (start_loss - jnp.min(start_loss))
    rmse_starts = jnp.sqrt(start_loss)
    near = jnp.where(jnp.isnan(s2_loss),
                     rmse_starts <= 2.0 * jnp.min(rmse_starts) + tol,
                     gap <= 7.81 * s2_loss + n * tol ** 2)
    sp = jnp.stack(list(start_params), axis=-1)        # (S, 3)
    hi = jnp.max(jnp.where(near[:, None], sp, -jnp.inf), axis=0)
    lo = jnp.min(jnp.where(near[:, None], sp, jnp.inf), axis=0)
    spread = (hi - lo) / jnp.abs(p)

    identifiable = (structural & (jnp.isnan(rel_se) | (rel_se <= max_rel)) & (spread <= max_rel))
    return dict(
        rmse=jnp.sqrt(jnp.mean(resid ** 2)), fitted_ratio=model, stderr=STPParams(*stderr),
        identifiable=STPParams(*identifiable), cov=cov, noise_sd=sigma,
        spread=STPParams(*spread), n_near_optimal=jnp.sum(near), stationary=stationary)


# --------------------------------------------------------------------------------------
# Public fitting API
# --------------------------------------------------------------------------------------


def fit_stp(rates_hz, target_ratio, *, init=None, mode: str = "tutorial", noise_sd=None,
            dt: float = 0.1, tau_syn: float = 5.0, n_spike: int = 10,
            key: jax.Array | None = None, n_trains: int = 64, max_steps: int = 500,
            tol: float = 1e-6, patience: int = 20, rel_improve: float = 1e-4,
            max_rel_uncertainty: float = 0.5,
            progress: Callable[[int, np.ndarray, np.ndarray], None] | None = None,
            progress_every: int = 25) -> FitResult:
    r"""Fit ``(U0, tau_d, tau_f)`` so that the model's g10/g1 curve reproduces ``target_ratio``.

    Minimises ``L = mean_i w_i^2 (model_i - target_i)^2`` (module docstring) with optax L-BFGS
    in the unconstrained space ``U0 = sigmoid(theta_U)``, ``tau = tau_min + exp(theta_tau)``
    (``tau_min = dt``, or 0 in exact mode), all starts at once (``vmap``) in one jitted
    ``lax.while_loop``.  A start stops when ``sqrt(L) <= tol`` or after ``patience`` steps without
    a relative improvement of ``rel_improve``; the loop ends when every start has stopped or after
    ``max_steps``.  The start with the lowest loss is kept.

    Example::

        rates = np.arange(2.0, 40.1, 2.0)
        g1, g10 = jaxlif.ratio_curve(jaxlif.STF, rates)
        fit = jaxlif.fit_stp(rates, g10 / g1)          # 36 starts; or init=(0.3, 300., 300.)
        fit.params, fit.stderr, fit.identifiable

    Args:
        rates_hz: ``(n_rates,)`` input rates [Hz], > 0.  Tutorial mode needs a regular interval
            of at least one step (``rate <= 1000/dt``); Poisson mode ``p = rate*dt/1000 <= 1``.
        target_ratio: ``(n_rates,)`` g10/g1 values (> 0, finite), or ``(n_curves, n_rates)``
            for a data set (see :func:`fit_stp_dataset`).
        init: ``None`` (the 36 starts of :func:`default_starts`), one start as an
            :class:`~jaxlif.STPParams` or ``(U0, tau_d, tau_f)`` tuple, or several as an
            ``STPParams`` of arrays or an ``(n_starts, 3)`` array.  ``0 < U0 < 1``,
            ``tau > tau_min``.
        mode: ``"tutorial"`` (forward Euler, the tutorial's grid), ``"exact"`` (continuous
            time, no dt) or ``"poisson"`` (mean over Poisson trains; needs ``key``).
        noise_sd: known standard deviation of the target ratios (scalar or per rate): weights
            the loss by ``1/noise_sd`` and sets the standard errors.  Without it the noise level
            is estimated from the residuals.
        dt: time step [ms] (0.1 as in the tutorial).  tau_syn: conductance decay [ms] (5).
        n_spike: the tutorial's "10th spike" label: the ratio compares the conductance after
            the ``(n_spike - 1)``-th and the 1st delivered spikes (pass ``n + 1`` for a measured
            ``g_n / g_1``).
        key: ``jax.random`` key for the Poisson trains (Poisson mode).
        n_trains: Poisson trains per rate (Monte-Carlo error ~ ``1/sqrt(n_trains)``).
        max_steps: most L-BFGS steps per start.  tol: stop a start at curve RMSE <= tol.
        patience, rel_improve: stall rule (above).
        max_rel_uncertainty: flag a parameter as not identifiable when its relative standard
            error or its multi-start spread exceeds this.
        progress: optional ``progress(step, best_rmse, n_done)`` called every ``progress_every``
            steps from inside the compiled loop (``best_rmse``: best RMSE so far per curve;
            ``n_done``: number of starts stopped).

    Returns:
        :class:`FitResult` (with a leading ``(n_curves,)`` axis for a 2-D ``target_ratio``).

    Raises:
        ValueError: mismatched lengths, a target ratio <= 0 or NaN, rates whose regular interval
            is under one step (or ``p > 1`` in Poisson mode), invalid ``init``, ``noise_sd``,
            ``dt``, ``tau_syn``, ``mode``, or Poisson mode without ``key``.  All checks run before
            anything is traced.
    """
    dt, tau_syn, n_spike, n_trains = _check_common(mode, dt, tau_syn, n_spike, n_trains)
    rates = _check_rates(rates_hz, mode, dt)
    target = _check_target(target_ratio, rates.size)
    sd = _check_noise_sd(noise_sd, rates.size)
    starts = _init_array(init, mode, dt)
    max_steps = _checks.check_count("max_steps", max_steps, minimum=1)
    patience = _checks.check_count("patience", patience, minimum=1)
    progress_every = _checks.check_count("progress_every", progress_every, minimum=1)
    _checks.check_nonnegative("tol", tol)
    _checks.check_nonnegative("rel_improve", rel_improve)
    _checks.check_positive("max_rel_uncertainty", max_rel_uncertainty)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
    if mode == "poisson":
        if key is None:
            raise ValueError("mode='poisson' needs key=jax.random.key(seed): the Poisson trains "
                             "are drawn once from it and held fixed (common random numbers)")
        _checks.check_key(key)

    dtype = jnp.result_type(float)
    tau_min = _tau_min(mode, dt)
    aux = _model_inputs(rates, mode, dt, n_spike, key, n_trains)
    single = target.ndim == 1
    target2 = target[None] if single else target
    w = np.ones(rates.size) if sd is None else _weights(sd)
    args = (jnp.asarray(_to_theta(starts, tau_min), dtype), jnp.asarray(target2, dtype),
            jnp.asarray(w, dtype), jnp.asarray(np.ones(rates.size) if sd is None else sd, dtype),
            aux, jnp.asarray(tau_syn, dtype), jnp.asarray(tau_min, dtype), jnp.asarray(tol, dtype),
            jnp.asarray(rel_improve, dtype), jnp.asarray(patience), jnp.asarray(max_rel_uncertainty,
                                                                                  dtype),
            jnp.asarray(progress_every))
    static = dict(mode=mode, dt=dt, n_spike=n_spike, max_steps=max_steps, sd_given=sd is not None,
                  with_progress=progress is not None)
    if progress is not None:
        _PROGRESS_SINKS.append(progress)
    try:
        out = _fit_core(*args, **static)
        out = jax.block_until_ready(out)
    finally:
        if progress is not None:
            _PROGRESS_SINKS.pop()
    out.pop("stationary")
    rates_arr = jnp.asarray(rates, dtype)
    result = FitResult(target_ratio=jnp.asarray(target2, dtype),
                       rates_hz=jnp.broadcast_to(rates_arr, target2.shape), **out)
    if single:
        result = jax.tree.map(lambda a: a[0], result)
    return result


def fit_stp_dataset(rates_hz, target_ratios, **kwargs) -> FitResult:
    """Fit many curves (one per recorded synapse) measured at the same rates, in one compiled loop.

    ``target_ratios`` has shape ``(n_curves, n_rates)``; every curve gets its own multi-start fit
    and best start (``vmap`` over curves and starts), and every :class:`FitResult` field gains a
    leading ``(n_curves,)`` axis.  Keyword arguments as in :func:`fit_stp` (``init`` and
    ``noise_sd`` are shared by all curves).  The result equals fitting each curve on its own.
    """
    target = np.asarray(target_ratios)
    if target.ndim != 2:
        raise ValueError(f"target_ratios must have shape (n_curves, n_rates), got shape "
                         f"{target.shape}; use fit_stp for a single curve")
    return fit_stp(rates_hz, target, **kwargs)
