r"""Fitting ``(U0, tau_d, tau_f)`` to g10/g1 ratio curves: the ratio curve as a special case.

:func:`fit_stp` minimises the (weighted) mean squared error of the ratio curve
(:mod:`~jaxlif.fitting.ratio`)::

    L(U0, tau_d, tau_f) = mean_i  w_i^2 (model_i - target_i)^2

(``w_i = 1``, or ``1/noise_sd_i`` scaled to mean square 1) in the unconstrained space
``U0 = sigmoid(theta_U)``, ``tau = tau_min + exp(theta_tau)`` (``tau_min = dt`` in the Euler
modes, so no step leaves the region where the tutorial's scheme is stable; 0 in exact mode),
with the optimiser loop, the flags and the intervals shared with the train fits
(:mod:`~jaxlif.fitting.optimise`, :mod:`~jaxlif.fitting.uncertainty`).  Under Gaussian noise of
known sd this is maximum likelihood; with the sd unknown (estimated from the residuals) the
intervals use the t calibration with ``n_rates - 3`` degrees of freedom, which is what keeps them
honest at 4-8 rates (see docs/fitting.md for the measured coverage).

Starts: the 15 of :func:`default_starts` (a Halton sequence), plus any ``init`` given; with
``check_starts=False`` only ``init`` runs (then a start that ends in a local minimum cannot be
told from the global one).  Each start stops when its (weighted) RMSE reaches ``tol`` or after
``patience`` steps without a relative improvement of ``rel_improve``.

Units: rates [Hz], time constants [ms], dt [ms]; ratios are dimensionless.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks
from jaxlif._host import device_array
from jaxlif import constraints as C
from jaxlif.fitting import likelihood as lk
from jaxlif.fitting import uncertainty as unc
from jaxlif.fitting.models import get_model
from jaxlif.fitting.optimise import FitInterrupted, multistart
from jaxlif.fitting.ratio import (_kernel, _kernel_jit, check_common, check_noise_sd,
                                  check_rates, kernel_inputs, pad_rates, tau_min, weights)
from jaxlif.plasticity import STPParams

__all__ = ["FitResult", "fit_stp", "fit_stp_dataset", "default_starts", "check_target"]


class FitResult(NamedTuple):
    """Result of :func:`fit_stp` (arrays gain a leading ``(n_curves,)`` axis for a data set).

    Attributes:
        params: fitted :class:`~jaxlif.STPParams` (``U0``; ``tau_d, tau_f`` [ms]).
        interval: :class:`~jaxlif.STPParams` of ``(..., 2)`` arrays: 95 % confidence interval
            ``(low, high)`` of each parameter (profile likelihood; the range's end, 0, 1 or inf,
            on an unbounded side).
        loss: final loss ``mean(w^2 (model - target)^2)`` of the best start.
        rmse: unweighted curve error ``sqrt(mean((model - target)^2))`` (dimensionless).
        history: ``(H,)`` loss of the best start before each of its first ``H`` steps
            (``H <= history_steps``); NaN after it stopped.
        n_steps: optimiser steps taken by the best start.
        converged: the curve is reproduced to ``tol``, or the optimum is stationary, the model
            reproduces the data (``reproduces_data``) and no profile fit found a better optimum.
        stationary: a Newton step would improve the log-likelihood by less than 0.01.
        reproduces_data: False when a chi-squared test rejects the fit (``noise_sd`` given,
            p < 0.001), or when the optimum lies at the edge of the parameter range with an RMSE
            above 10 % of the target's RMS: the model cannot reproduce the target.
        gof_pvalue: goodness-of-fit p-value (NaN without ``noise_sd``).
        at_edge: :class:`~jaxlif.STPParams` of booleans: the optimum at the edge of the range.
        fitted_ratio: ``(n_rates,)`` model curve at ``params``.
        target_ratio: ``(n_rates,)`` the target.  rates_hz: ``(n_rates,)`` input rates [Hz].
        stderr: local (Wald) standard errors, same units as ``params``; ``inf`` along a
            direction the curve does not determine, NaN when the noise level is unknown and
            cannot be estimated (3 rates or fewer and no ``noise_sd``).
        identifiable: :class:`~jaxlif.STPParams` of booleans: the interval is bounded, at most
            ``max_rel_uncertainty`` times the value wide on either side, and not at the edge.
        cov: ``(3, 3)`` local covariance of ``(U0, tau_d, tau_f)`` (pseudo-inverse).
        noise_sd: the noise level used (given, RMS; or ``sqrt(SSR / (n_rates - 3))``).
        spread: :class:`~jaxlif.STPParams`: ``(max - min) / |best|`` of each parameter over the
            starts that reached the best optimum (not in a local minimum).
        n_near_optimal: number of such starts.
        best_start: index of the start that won (``init`` starts first, then the grid).
        start_params, start_loss, start_n_steps: each start's optimum, loss and steps.
        start_local_minimum: starts that ended in a worse local minimum.
        mode, dt, tau_syn, n_spike: the forward model fitted.
        notes: reasons, in words, why the fit cannot be ``converged`` whatever the optimiser
            did (e.g. fewer rates than free parameters); empty otherwise.
    """

    params: STPParams
    interval: STPParams
    loss: jax.Array
    rmse: jax.Array
    history: jax.Array
    n_steps: jax.Array
    converged: jax.Array
    stationary: jax.Array
    reproduces_data: jax.Array
    gof_pvalue: jax.Array
    at_edge: STPParams
    fitted_ratio: jax.Array
    target_ratio: jax.Array
    rates_hz: jax.Array
    stderr: STPParams
    identifiable: STPParams
    cov: jax.Array
    noise_sd: jax.Array
    spread: STPParams
    n_near_optimal: jax.Array
    best_start: jax.Array
    start_params: STPParams
    start_loss: jax.Array
    start_n_steps: jax.Array
    start_local_minimum: jax.Array
    mode: str
    dt: float
    tau_syn: float
    n_spike: int
    notes: tuple = ()

    def summary(self) -> dict:
        """A JSON-ready dict of the fit (plain floats/lists; data sets give lists per curve)."""
        tolist = lambda a: np.asarray(a).tolist()  # noqa: E731
        named = lambda p: {k: tolist(v) for k, v in p._asdict().items()}  # noqa: E731
        return {
            "params": named(self.params), "interval": named(self.interval),
            "stderr": named(self.stderr), "identifiable": named(self.identifiable),
            "at_edge": named(self.at_edge), "spread": named(self.spread),
            **{k: tolist(getattr(self, k)) for k in (
                "loss", "rmse", "converged", "stationary", "reproduces_data", "gof_pvalue",
                "n_steps", "noise_sd", "n_near_optimal", "best_start", "rates_hz",
                "target_ratio", "fitted_ratio")},
            "mode": self.mode, "dt_ms": self.dt, "tau_syn_ms": self.tau_syn,
            "n_spike": self.n_spike, "notes": list(self.notes),
            "units": {"U0": "", "tau_d": "ms", "tau_f": "ms", "rates_hz": "Hz", "dt_ms": "ms",
                      "tau_syn_ms": "ms", "ratio": "dimensionless"},
        }


def check_target(target_ratio, n_rates):
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


def default_starts() -> STPParams:
    """The 15 starts :func:`fit_stp` uses besides ``init``: a Halton sequence over ``U0`` in
    (0.02, 0.92) (uniform in logit), ``tau_d`` in (20, 3000) ms and ``tau_f`` in (5, 3000) ms
    (uniform in log), covering depressing, pseudo-linear and facilitating synapses far more
    evenly than a product grid of the same size.  15, so that one extra ``init`` makes 16 lanes
    and the compiled program is shared with and without it.
    """
    grid = np.asarray(get_model("tm").starts).T
    return STPParams(*(jnp.asarray(g, dtype=jnp.result_type(float)) for g in grid))


def _init_array(init, mode, dt, check_starts) -> np.ndarray:
    """Starts as an ``(n_starts, 3)`` float array of (U0, tau_d, tau_f), validated."""
    # the default grid at the working float precision, as default_starts() holds it
    grid = np.asarray(get_model("tm").starts, dtype=jnp.result_type(float)).astype(float)
    if init is None:
        return grid
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
    floor = tau_min(mode, dt)
    for name, tau in (("tau_d", tau_d), ("tau_f", tau_f)):
        if not np.all(tau > floor):
            bad = tau[tau <= floor][0]
            raise ValueError(f"init {name}={bad} ms must be > {floor} ms"
                             + (f" (the time step dt; forward Euler needs {name} > dt)"
                                if floor > 0 else ""))
    return np.concatenate([arr, grid]) if check_starts else arr


def _constraints(tmin):
    return [C.unit_interval(), C.greater_than(tmin), C.greater_than(tmin)]


def _to_theta(p: np.ndarray, tmin: float) -> np.ndarray:
    """Inverse of :func:`_params` on the host (the transforms of :func:`_constraints`)."""
    p = np.asarray(p, dtype=float)
    return np.stack([np.log(p[:, 0]) - np.log1p(-p[:, 0]), np.log(p[:, 1] - tmin),
                     np.log(p[:, 2] - tmin)], axis=-1)


def _params(theta, tmin) -> STPParams:
    return STPParams(jax.nn.sigmoid(theta[..., 0]), tmin + jnp.exp(theta[..., 1]),
                     tmin + jnp.exp(theta[..., 2]))


def _params_host(theta, tmin: float, dtype) -> np.ndarray:
    """:func:`_params` on the host: ``(..., 3)`` values of (U0, tau_d, tau_f) (the transforms of
    :func:`_constraints` in float64), rounded to ``dtype``, the working precision of the fit."""
    t = np.asarray(theta, dtype=float)
    out = np.stack([unc._forward_np(c, t[..., i]) for i, c in enumerate(_constraints(tmin))],
                   axis=-1)
    with np.errstate(over="ignore"):      # a time constant beyond the float range is inf
        return out.astype(dtype).astype(float)


def _objective(theta, data, shared):
    """Weighted MSE of the ratio curve (the optimiser's objective; module level: one compile)."""
    target, w = data
    isi, m, euler, dt, tau_syn, tmin = shared
    model = _kernel(_params(theta, tmin), isi, m, euler, dt, tau_syn)
    return jnp.sum((w * (model - target)) ** 2) / jnp.sum(w ** 2)   # padded rates have w = 0


def fit_stp(rates_hz: ArrayLike | Sequence[float], target_ratio: ArrayLike | Sequence[Any], *,
            init: STPParams | ArrayLike | Sequence[Any] | None = None, mode: str = "tutorial",
            noise_sd: ArrayLike | Sequence[float] | None = None,
            dt: float = 0.1, tau_syn: float = 5.0, n_spike: int = 10,
            key: jax.Array | None = None, n_trains: int = 64, max_steps: int = 500,
            tol: float = 1e-6, patience: int = 20, rel_improve: float = 1e-4,
            max_rel_uncertainty: float = 0.5, check_starts: bool = True,
            interval: str = "profile", level: float = 0.95, history_steps: int = 1000,
            progress: Callable[[int, np.ndarray, int], None] | None = None,
            progress_every: int = 25) -> FitResult:
    r"""Fit ``(U0, tau_d, tau_f)`` so that the model's g10/g1 curve reproduces ``target_ratio``.

    Example::

        rates = np.arange(2.0, 40.1, 2.0)
        g1, g10 = jaxlif.ratio_curve(jaxlif.STF, rates)
        fit = jaxlif.fit_stp(rates, g10 / g1)          # 15 starts; or init=(0.3, 300., 300.)
        fit.params, fit.interval, fit.identifiable, fit.converged

    Args:
        rates_hz: ``(n_rates,)`` input rates [Hz], > 0.  Tutorial mode needs a regular interval
            of at least one step (``rate <= 1000/dt``); Poisson mode ``p = rate*dt/1000 <= 1``.
        target_ratio: ``(n_rates,)`` g10/g1 values (> 0, finite), or ``(n_curves, n_rates)``
            for a data set (see :func:`fit_stp_dataset`).
        init: start(s) added before the default grid: an :class:`~jaxlif.STPParams` (fields
            scalar or ``(n_starts,)``), a ``(U0, tau_d, tau_f)`` tuple or an ``(n_starts, 3)``
            array.  ``0 < U0 < 1``, ``tau > tau_min``.
        mode: ``"tutorial"`` (forward Euler, the tutorial's grid), ``"exact"`` (continuous
            time, no dt) or ``"poisson"`` (mean over Poisson trains; needs ``key``).
        noise_sd: known standard deviation of the target ratios (scalar or per rate): weights
            the loss by ``1/noise_sd``, calibrates the intervals (chi-squared) and allows a
            goodness-of-fit test.  Without it the noise level is estimated from the residuals
            (t calibration with ``n_rates - 3`` degrees of freedom).
        dt: time step [ms] (0.1 as in the tutorial).  tau_syn: conductance decay [ms] (5).
        n_spike: the tutorial's "10th spike" label: the ratio compares the conductance after
            the ``(n_spike - 1)``-th and the 1st delivered spikes (pass ``n + 1`` for a measured
            ``g_n / g_1``); ``n_spike >= 3`` (``n_spike = 2`` gives ``g_1 / g_1 = 1`` for every
            synapse and is refused).
        key, n_trains: Poisson mode: ``jax.random`` key and trains per rate.
        max_steps: most BFGS steps per start (memory does not grow with it).
        tol: stop a start at weighted RMSE <= tol.  patience, rel_improve: stall rule.
        max_rel_uncertainty: identifiability threshold (relative half-width of the interval).
        check_starts: run the default grid as well as ``init`` (detects local minima).
        interval: ``"profile"`` (default), ``"wald"`` or ``"none"``.  level: confidence level.
        history_steps: keep the loss history of the first this many steps.
        progress: ``progress(step, best_rmse, n_done)`` called from Python between chunks of
            ``progress_every`` steps (``best_rmse``: best weighted RMSE so far per curve).

    Returns:
        :class:`FitResult` (with a leading ``(n_curves,)`` axis for a 2-D ``target_ratio``).

    Raises:
        ValueError: mismatched lengths, a target ratio <= 0 or NaN, rates whose regular interval
            is under one step (or ``p > 1`` in Poisson mode), invalid ``init``, ``noise_sd``,
            ``dt``, ``tau_syn``, ``mode``, ``n_spike < 3``, or Poisson mode without ``key``.  All checks run before
            anything is traced.
        FitInterrupted: Ctrl-C (or a ``KeyboardInterrupt`` from ``progress``) during the fit;
            ``err.partial`` is a :class:`FitResult` of the best points so far (no intervals).
    """
    dt, tau_syn, n_spike, n_trains = check_common(mode, dt, tau_syn, n_spike, n_trains)
    rates = check_rates(rates_hz, mode, dt)
    target = check_target(target_ratio, rates.size)
    sd = check_noise_sd(noise_sd, rates.size)
    starts = _init_array(init, mode, dt, check_starts)
    max_steps = _checks.check_count("max_steps", max_steps, minimum=1)
    patience = _checks.check_count("patience", patience, minimum=1)
    progress_every = _checks.check_count("progress_every", progress_every, minimum=1)
    history_steps = _checks.check_count("history_steps", history_steps, minimum=0)
    _checks.check_nonnegative("tol", tol)
    _checks.check_nonnegative("rel_improve", rel_improve)
    _checks.check_positive("max_rel_uncertainty", max_rel_uncertainty)
    if interval not in ("profile", "wald", "none"):
        raise ValueError(f"interval={interval!r} is not one of ('profile', 'wald', 'none')")
    lvl = _checks.check_numeric("level", level)
    if lvl.ndim != 0 or not 0.5 <= float(lvl) < 1:
        raise ValueError(f"level={level!r} must be a number in [0.5, 1)")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")

    dtype = jnp.result_type(float)
    tmin = tau_min(mode, dt)
    isi, m, euler = kernel_inputs(rates, mode, dt, n_spike, key, n_trains)
    single = target.ndim == 1
    target2 = target[None] if single else target
    Cn, n = target2.shape
    w = np.ones(n) if sd is None else weights(sd)
    # Rates are padded to a multiple of 8 (weight 0), so that fits at 1-8 rates, 9-16 rates ...
    # share one compiled program.
    isi = pad_rates(isi)
    pad = isi.shape[0] - n
    shared = (isi, m, euler, device_array(dt, dtype), device_array(tau_syn, dtype),
              device_array(tmin, dtype))
    batched = (device_array(np.pad(target2, ((0, 0), (0, pad)), constant_values=1.0), dtype),
               device_array(np.pad(np.broadcast_to(w, (Cn, n)), ((0, 0), (0, pad))), dtype))
    theta0 = device_array(np.broadcast_to(_to_theta(starts, tmin), (Cn,) + starts.shape), dtype)
    report = None if progress is None else (
        lambda step, best, n_done: progress(step, np.sqrt(best), n_done))
    # stop a start when a quasi-Newton step would lower the loss by < 1e-4 of itself (a change
    # of the deviance far below its 95 % threshold)
    fit = multistart(_objective, theta0, batched, shared, max_steps=max_steps,
                     floor=float(tol) ** 2, patience=patience, rel_improve=rel_improve,
                     gtol_rel=1e-4,
                     progress_every=progress_every, history_steps=history_steps, progress=report)

    p = 3
    if sd is not None:
        kind, coef = "nll", np.full(Cn, n * np.mean(1.0 / sd ** 2))
        q = np.full(Cn, lk.chi2_quantile(float(level), 1.0))
    else:
        kind, coef = "ssr", np.full(Cn, float(n - p))
        q = lk.t2_quantile(float(level), np.full(Cn, n - p))
    floor = max(float(tol) ** 2, 1e3 * float(np.finfo(np.dtype(dtype)).eps) ** 2
                * float(np.mean(target2 ** 2)))
    loss_eff = np.maximum(fit.loss, 0.01 * floor) if kind == "ssr" else fit.loss
    config = dict(mode=mode, dt=dt, tau_syn=tau_syn, n_spike=n_spike)
    if fit.interrupted:
        partial = _assemble(fit, None, target2, rates, shared, sd, n, p, kind, coef, q, floor,
                            tol, single, config)
        raise FitInterrupted(f"fit_stp interrupted after {fit.steps} optimiser steps; "
                             f"err.partial holds the best parameters so far (not converged, no "
                             f"intervals)", partial)
    stats = unc.analyse(_objective, fit.theta, loss_eff, batched, shared, kind=kind, coef=coef,
                        q=q, constraints=_constraints(tmin), interval=interval if n > p or
                        sd is not None else "none", max_rel_uncertainty=max_rel_uncertainty,
                        min_lanes=len(starts), restarts=np.asarray(theta0, float),
                        others=(fit.start_theta, fit.start_loss))
    return _assemble(fit, stats, target2, rates, shared, sd, n, p, kind, coef, q, floor, tol,
                     single, config)


def _assemble(fit, stats, target2, rates, shared, sd, n, p, kind, coef, q, floor, tol, single,
              config) -> FitResult:
    dtype = jnp.result_type(float)
    tmin = float(shared[-1])
    Cn = target2.shape[0]
    value = _params_host(fit.theta, tmin, dtype)                       # (C, 3)
    # one curve at a time: the program stp_ratio uses for these shapes (no new compilation)
    n_real = target2.shape[1]
    fitted = np.stack([np.asarray(_kernel_jit(STPParams(*(device_array(x, dtype) for x in value[i])), *shared[:5]),
                                  dtype=float)[:n_real] for i in range(Cn)])
    rmse = np.sqrt(np.mean((fitted - target2) ** 2, axis=1))
    rmse_w = np.sqrt(fit.loss)
    if sd is not None:
        chi2 = n * np.mean(1.0 / sd ** 2) * fit.loss
        noise = np.full(Cn, np.sqrt(np.mean(sd ** 2)))
        pval = lk.chi2_sf(chi2, n - p) if n > p else np.full(Cn, np.nan)
    else:
        noise = np.sqrt(fit.loss * n / (n - p)) if n > p else np.full(Cn, np.nan)
        pval = np.full(Cn, np.nan)
    start_local = unc.local_minimum(np.maximum(fit.start_loss, 0.01 * floor), kind, coef,
                                    floor=floor)
    near = ~start_local
    start_params = _params_host(fit.start_theta, tmin, dtype)          # (C, S, 3)
    hi = np.max(np.where(near[..., None], start_params, -np.inf), axis=1)
    lo = np.min(np.where(near[..., None], start_params, np.inf), axis=1)
    spread = (hi - lo) / np.abs(value)
    if stats is None:
        nan = np.full((Cn, 3), np.nan)
        stats = dict(value=value, lo=nan, hi=nan, stderr=nan, identifiable=np.zeros((Cn, 3), bool),
                     at_edge=np.zeros((Cn, 3), bool), stationary=np.zeros(Cn, bool),
                     better=np.zeros(Cn, bool), cov=np.full((Cn, 3, 3), np.nan))
    stderr = stats["stderr"]
    if sd is None and n <= p:
        stderr = np.full_like(stderr, np.nan)
    rms = np.sqrt(np.mean(target2 ** 2, axis=1))
    poor_edge = stats["at_edge"].any(axis=1) & (rmse > 0.1 * rms)
    reproduces = ~(np.nan_to_num(pval, nan=1.0) < 1e-3) & ~poor_edge
    exact = rmse_w <= tol
    # fewer points than free parameters (3, plus the noise level when it is estimated): the
    # optimum is a whole set of parameter values, so the fit is never "converged"
    k = p + (1 if sd is None else 0)
    notes = () if n >= k else (
        f"fewer points ({n} rate{'s' if n != 1 else ''}) than free parameters ({k}: U0, tau_d, "
        f"tau_f{', the noise sd' if sd is None else ''}): the data do not determine the fit, "
        f"so it is not converged",)
    converged = (exact | (stats["stationary"] & reproduces & ~stats["better"])) & (n >= k)
    if fit.interrupted:   # an interrupted fit is not converged (other starts were still running)
        converged = np.zeros_like(converged)
    cov = stats.get("cov")
    if cov is None:
        slope = np.where(np.isfinite(stderr), stderr, np.nan)
        cov = np.einsum("pi,pj->pij", slope, slope) * np.eye(3)
    pick = (lambda a: a[0]) if single else (lambda a: a)
    named = lambda arr: STPParams(*(device_array(pick(arr[:, j])) for j in range(3)))  # noqa: E731
    hist = fit.history
    result = FitResult(
        params=named(value), interval=named(np.stack([stats["lo"], stats["hi"]], axis=-1)),
        loss=device_array(pick(fit.loss)), rmse=device_array(pick(rmse)),
        history=device_array(pick(hist)), n_steps=device_array(pick(fit.n_steps)),
        converged=device_array(pick(converged)), stationary=device_array(pick(stats["stationary"])),
        reproduces_data=device_array(pick(reproduces)), gof_pvalue=device_array(pick(pval)),
        at_edge=named(stats["at_edge"]), fitted_ratio=device_array(pick(fitted)),
        target_ratio=device_array(pick(target2)),
        rates_hz=device_array(pick(np.broadcast_to(rates, target2.shape))),
        stderr=named(stderr), identifiable=named(stats["identifiable"]),
        cov=device_array(pick(cov)), noise_sd=device_array(pick(noise)), spread=named(spread),
        n_near_optimal=device_array(pick(near.sum(axis=1))),
        best_start=device_array(pick(fit.best_start)),
        start_params=STPParams(*(device_array(pick(start_params[..., j])) for j in range(3))),
        start_loss=device_array(pick(fit.start_loss)),
        start_n_steps=device_array(pick(fit.start_n_steps)),
        start_local_minimum=device_array(pick(start_local)), **config, notes=notes)
    return result


def fit_stp_dataset(rates_hz: ArrayLike | Sequence[float], target_ratios: ArrayLike | Sequence[Any],
                    **kwargs) -> FitResult:
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
