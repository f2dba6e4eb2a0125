r"""Confidence intervals, goodness of fit and the flags every fit reports.

Every fit minimises an objective ``L(theta)`` (a per-point negative log-likelihood, or a mean
squared error) in an unconstrained space.  Uncertainty is read from the *deviance*
``D(theta) = dev(L(theta), L_min)``, which is 0 at the optimum and is compared with a threshold
``q``; the 95 % confidence interval of parameter ``j`` is the set of values ``theta_j`` whose
profile ``min over the other parameters of D`` stays below ``q``::

    noise level given           D = 2 (NLL - NLL_min)                    q = chi2_1(0.95) = 3.84
    noise level estimated       D = (n - p) (SSR / SSR_min - 1)          q = t_{n-p}(0.975)^2

The second form is the F (t) calibration that is exact for linear least squares with an
estimated variance; it is what keeps intervals honest with few points (4 rates and 3 parameters
leave one degree of freedom: ``q = 161``, not 3.84).  For the Gaussian likelihood with the sd
profiled, ``SSR / SSR_min = exp(2 (L - L_min))`` per point; for the gamma model with its CV
estimated the same transformation of the log-likelihood ratio is used.

Profile likelihood (:func:`profile_intervals`, the default interval): for every parameter and
both sides, the endpoint where the signed root ``sqrt(D)`` of the profile reaches ``sqrt(q)`` is
found by a few secant steps (the signed root is nearly linear in ``theta``), each a re-fit of
the other parameters with this one held fixed (from two starts: the profile optimum at the
farthest point found below ``q``, and the optimum), the endpoints of all problems not yet
settled in one vmapped optimiser call per step (with many problems, on packed grids that hold
only the fits still running: :func:`~jaxlif.fitting.optimise.minimise_lanes`).  A side on
which the profile never reaches ``q`` within the parameter's range is unbounded: the interval
ends at the range (``0``, ``1`` or ``inf``) and the parameter is flagged not identifiable.  A profile fit can stop above the constrained optimum
(in a flat region, a time constant drifting to infinity), which ends the interval at a false
crossing: every endpoint is therefore refitted from two other points (other starts' optima),
and one clearly below ``q`` restarts the search from there; a side that has not crossed ``q``
before the last step tries the end of the range, so an endpoint is not left unsettled.  The
interval is the part of ``{D <= q}`` around the optimum: when the likelihood has a second valley
inside that set, separated by values above ``q``, the valley is not included.  Unlike the
local (Wald) interval, this one follows a curved likelihood and respects the parameter's range;
its coverage is the probability that the deviance at the true value stays below ``q`` (less the
rare second valleys), which the calibration study measures (docs/fitting.md).

Wald intervals (``interval="wald"``): ``theta_j +- sqrt(q (M^{-1})_jj)`` with ``M`` half the
Hessian of ``D``, mapped through the parameter's transform (so they stay inside its range).
Cheap; optimistic when the likelihood is curved.

Flags: a start whose loss exceeds the best by more than ``0.01`` in ``D/2`` units (and a tiny
absolute floor) ended in a *local minimum*; a parameter whose optimum lies at the edge of its
range (``U`` within 1e-4 of 0 or 1, a time constant above 1e5 ms or within 0.01 ms of its lower
bound) is *at the edge*; the optimum is *stationary* when a Newton step would lower ``D/2`` by
less than 0.01.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif.fitting.optimise import _STRAGGLERS, _bucket, evaluate_lanes, minimise_lanes

__all__ = ["deviance", "curvature", "wald_halfwidth", "profile_intervals", "local_minimum",
           "newton_decrement", "newton_polish", "LOCAL_MIN_GAP", "STATIONARY_GAP"]

#: Deviance gap (``D/2`` units, i.e. log-likelihood) above which a start is a local minimum.
LOCAL_MIN_GAP = 0.01
#: Predicted improvement (``D/2`` units) below which an optimum counts as stationary.
STATIONARY_GAP = 0.01

#: A profile point whose fit failed (no finite deviance) is recorded as this many times the
#: threshold's root above it; the search then bisects towards it.
_FAILED = 1e5
#: Secant steps a profile search may take beyond ``iters`` while its outer point is a failed
#: fit (bisection steps towards the crossing; each halves the bracket).
_FAILED_EXTRA = 8
#: An endpoint whose outer point is still a failed fit is reported (as the bracket's midpoint)
#: only when the bracket is at most this fraction of its distance from the optimum; otherwise
#: it is NaN (the search did not locate the crossing).
_FAILED_BRACKET = 0.05
#: The endpoint search bisects while the outer point's root of the deviance is more than this
#: many times the threshold's (a quadratic profile's first outer points lie within 4 times).
_FAR = 8.0

#: Deviance kinds: "nll" D = coef (L - L_min) with coef = 2 n for a per-point NLL (or the
#: matching factor of a weighted MSE); "log_ssr" D = coef (exp(2 (L - L_min)) - 1); "ssr"
#: D = coef (L / L_min - 1), with coef = n - p.
KINDS = ("nll", "log_ssr", "ssr")


def deviance(kind: str, loss, loss_min, coef):
    """The deviance ``D`` of ``loss`` relative to ``loss_min`` (module docstring): computed by
    JAX when any input is a JAX array (or tracer), else by NumPy in float64 on the host."""
    xp = jnp if any(isinstance(a, jax.Array) for a in (loss, loss_min, coef)) else np
    if kind == "nll":
        return coef * (loss - loss_min)
    if kind == "log_ssr":
        return coef * xp.expm1(2.0 * (loss - loss_min))
    if kind == "ssr":
        return coef * (loss / loss_min - 1.0)
    raise ValueError(kind)  # pragma: no cover


def curvature(objective, theta, loss_min, coef, batched, shared, *, kind, active=None,
              min_lanes: int = 0, rows=None):
    """Gradient and Hessian of ``D/2`` at ``theta (P, D)``: ``(P, D)``, ``(P, D, D)``
    (``rows (P,)``: the problems, rows of ``batched``, that ``theta`` belongs to; default all).

    The objective's gradient comes from the optimiser's compiled program
    (:func:`~jaxlif.fitting.optimise.evaluate_lanes`); the Hessian is its central difference
    over steps ``h = 1e-2 max(1, |theta_j|)`` (``1e-4`` in float64), symmetrised, then the chain
    rule of :func:`deviance`.  No second program is compiled.
    """
    theta = np.asarray(theta, dtype=float)
    P, D = theta.shape
    eps = float(np.finfo(np.dtype(jnp.result_type(float))).eps)
    h = (1e-2 if eps > 1e-10 else 1e-4) * np.maximum(1.0, np.abs(theta))      # (P, D)
    eye = np.eye(D)
    pts = np.concatenate([theta[:, None, :], theta[:, None, :] + h[:, :, None] * eye,
                          theta[:, None, :] - h[:, :, None] * eye], axis=1)   # (P, 2D+1, D)
    owner = np.repeat(np.arange(P) if rows is None else np.asarray(rows), 2 * D + 1)
    value, grads = evaluate_lanes(objective, pts.reshape(-1, D), owner, batched, shared,
                                  min_lanes=min_lanes)
    value, grads = value.reshape(P, 2 * D + 1), grads.reshape(P, 2 * D + 1, D)
    g = grads[:, 0]
    H = (grads[:, 1:D + 1] - grads[:, D + 1:]) / (2.0 * h[:, :, None])        # row j: d g / d theta_j
    H = 0.5 * (H + np.swapaxes(H, 1, 2))
    loss_min = np.asarray(loss_min, dtype=float)
    coef = np.broadcast_to(np.asarray(coef, dtype=float), (P,))
    if kind == "nll":
        f1 = f2 = 0.5 * coef
        outer = 0.0
    elif kind == "log_ssr":
        e = np.exp(2.0 * (value[:, 0] - loss_min))
        f1 = f2 = coef * e
        outer = 2.0
    else:
        f1 = f2 = 0.5 * coef / loss_min
        outer = 0.0
    grad = f1[:, None] * g
    hess = f2[:, None, None] * (H + outer * g[:, :, None] * g[:, None, :])
    if active is not None:   # coordinates that are not parameters: decoupled, no curvature
        act = np.asarray(active, bool)
        grad = np.where(act, grad, 0.0)
        hess = np.where(act[:, :, None] & act[:, None, :], hess, 0.0)
    return grad, hess


def _pinv(M):
    return np.linalg.pinv(np.asarray(M, dtype=float), rcond=1e-10, hermitian=True)


def newton_decrement(grad, hess) -> np.ndarray:
    """Predicted decrease of ``D/2`` by a Newton step, ``g^T M^+ g / 2`` (``(P,)``)."""
    g = np.asarray(grad, dtype=float)
    return 0.5 * np.einsum("pi,pij,pj->p", g, _pinv(hess), g)


def wald_halfwidth(hess, q) -> np.ndarray:
    """``sqrt(q (M^+)_jj)`` per problem and coordinate (``inf`` along null directions)."""
    M = np.asarray(hess, dtype=float)
    cov = _pinv(M)
    diag = np.einsum("pii->pi", cov)
    # A coordinate with (almost) no curvature is undetermined: infinite half-width.  The
    # Hessian is a finite difference of float32 gradients (relative noise ~1e-5), so curvature
    # below 1e-4 of the largest (or negative) is taken as none.
    w, V = np.linalg.eigh(M)
    scale = np.maximum(np.abs(w).max(axis=-1, keepdims=True), 1e-300)
    null = w <= 1e-4 * scale
    weight = np.sqrt(np.sum(np.where(null[:, None, :], V ** 2, 0.0), axis=-1))
    with np.errstate(invalid="ignore"):   # inf x 0 where the curvature is not finite: NaN
        hw = np.sqrt(np.maximum(np.asarray(q, float)[..., None] * diag, 0.0))
    return np.where(weight > 0.1, np.inf, hw)


#: Newton polish (:func:`newton_polish`): step fractions tried, and the longest step
#: (unconstrained units) one round may take.
_POLISH_TRIALS = (1.0, 0.25, 1.0 / 16, 1.0 / 64, 1.0 / 256)
_POLISH_MAX_STEP = 4.0


def newton_polish(objective: Callable, theta, loss, batched, shared, *, coef, active=None,
                  min_lanes: int = 0, step_lanes: int = 0, rounds: int = 20,
                  gap: float = 0.1 * STATIONARY_GAP):
    """Newton steps from the optima ``theta (P, D)`` (objective ``loss (P,)``) of a quasi-Newton
    fit, until the predicted gain is below ``gap`` (log-likelihood units; ``D = coef L``).

    Each round: the gradient and finite-difference Hessian of :func:`curvature`, the step
    ``-M^{-1} g`` with ``M`` the Hessian with its eigenvalues replaced by their absolute values
    (directions below ``1e-10`` of the largest left out, as in :func:`newton_decrement`),
    shortened to at most :data:`_POLISH_MAX_STEP`, and the best of the fractions
    :data:`_POLISH_TRIALS` of it kept when it lowers the objective.  Where a long flat valley
    slows the quasi-Newton iteration down (the SD scale against its baseline of
    ``noise="gamma_kernel"``), a few rounds finish it (the last synapse of 40 of
    ``benchmarks/bench_fit.py``'s design stopped after 18).  Everything runs through the
    optimiser's compiled program (:func:`~jaxlif.fitting.optimise.evaluate_lanes`): the
    curvature with ``min_lanes`` slots per problem, the trial steps with ``step_lanes`` (e.g.
    the slots of the fit's own loop, whose program is then reused).  Rounds stop for a problem
    when its predicted gain is below ``gap`` or when no trial step lowers its objective.

    Returns ``(theta, loss, decrement)``: the polished points, their objective, and each
    problem's predicted gain at the start of its last round (log-likelihood units).
    """
    theta = np.array(theta, dtype=float)
    loss = np.array(loss, dtype=float)
    P, D = theta.shape
    act = np.ones((P, D), bool) if active is None else np.asarray(active, bool)
    fr = np.asarray(_POLISH_TRIALS)
    decrement = np.full(P, np.inf)
    coef = np.broadcast_to(np.asarray(coef, dtype=float), (P,))
    todo = np.isfinite(loss) & np.isfinite(theta).all(axis=1)
    for _ in range(rounds):
        idx = np.flatnonzero(todo)
        if not idx.size:
            break
        grad, hess = curvature(objective, theta[idx], loss[idx], coef[idx], batched, shared,
                               kind="nll", active=act[idx], min_lanes=min_lanes, rows=idx)
        ok = np.isfinite(grad).all(axis=1) & np.isfinite(hess).all(axis=(1, 2))
        w, V = np.linalg.eigh(np.where(ok[:, None, None], hess, 0.0))
        big = np.abs(w).max(axis=1, keepdims=True)
        keep = (np.abs(w) > 1e-10 * big) & (big > 0)      # as newton_decrement's pseudo-inverse
        proj = np.einsum("pji,pj->pi", V, np.where(ok[:, None], grad, 0.0))
        coeff = np.where(keep, proj / np.where(keep, np.abs(w), 1.0), 0.0)
        decrement[idx] = np.where(ok, 0.5 * np.sum(coeff * proj, axis=1), np.inf)
        step = -np.einsum("pij,pj->pi", V, coeff)
        norm = np.linalg.norm(step, axis=1, keepdims=True)
        step = step * np.minimum(1.0, _POLISH_MAX_STEP / np.maximum(norm, 1e-300))
        go = ok & (decrement[idx] > gap)
        todo[idx[~go]] = False
        idx, step = idx[go], step[go]
        if not idx.size:
            break
        pts = theta[idx, None, :] + fr[None, :, None] * step[:, None, :]        # (k, T, D)
        owner = np.repeat(idx, len(fr))
        value, _ = evaluate_lanes(objective, pts.reshape(-1, D), owner, batched, shared,
                                  min_lanes=step_lanes)
        value = np.where(np.isfinite(value), value, np.inf).reshape(len(idx), len(fr))
        pick = np.argmin(value, axis=1)
        best = value[np.arange(len(idx)), pick]
        better = best < loss[idx]
        theta[idx[better]] = pts[np.arange(len(idx)), pick][better]
        loss[idx[better]] = best[better]
        todo[idx[~better]] = False          # no shorter step helps: the rounding floor
    return theta, loss, decrement


def local_minimum(start_loss, kind, coef, floor=0.0) -> np.ndarray:
    """Which starts ended clearly above the best (``(P, S)`` booleans)."""
    loss = np.asarray(start_loss, dtype=float)
    best = np.min(loss, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        gap = 0.5 * deviance(kind, loss, best, np.asarray(coef, float)[:, None])
    return ~np.isfinite(loss) | ((gap > LOCAL_MIN_GAP) & (loss - best > floor))


def profile_intervals(objective: Callable, theta_hat, loss_min, batched, shared, *, kind: str,
                      coef, q, hess, cap, active=None, iters: int = 8, max_steps: int = 300,
                      rel_tol: float = 0.02, min_lanes: int = 0, restarts=None,
                      others=None, verify_rounds: int = 1, n_restarts: int = 2,
                      row_slots: int = 1, pack_min: int = 16, repack_every: int = 5,
                      stragglers="auto", extra_starts: Callable | None = None,
                      fit_rules: dict | None = None):
    """Profile-likelihood endpoints of every coordinate of every problem (module docstring).

    Args:
        objective: the fit's objective ``objective(theta, batched_p, shared)``.
        theta_hat: ``(P, D)`` optimum; loss_min: ``(P,)`` objective there.
        kind, coef: the deviance (:func:`deviance`); q: ``(P,)`` thresholds.
        hess: ``(P, D, D)`` Hessian of ``D/2`` at the optimum (warm starts, first step).
        cap: ``(D,)`` or ``(P, D)`` farthest distance from ``theta_hat`` searched
            (unconstrained units).
        active: ``(P, D)`` booleans: the coordinates that are parameters of the problem's model
            (the others stay fixed and get NaN endpoints); default all.
        iters: secant steps.  max_steps: optimiser steps per profile fit.
        restarts: ``(P, R, D)`` start points (NaN rows unused), e.g. the fit's own starts: each
            endpoint is verified by refitting from ``n_restarts`` points
            (:func:`_verification_starts`), and a false crossing (the deviance there is clearly
            below ``q``) restarts the search; ``verify_rounds`` times at most.  ``None``: no
            verification.
        others: ``(theta (P, R, D), loss (P, R))`` other local optima of the fit (its starts'
            optima): the first choice of verification starts.
        row_slots, pack_min, repack_every: with at least ``pack_min`` problems, the profile
            fits run on packed grids of rows of ``row_slots`` slots, packed again every
            ``repack_every`` steps (:func:`~jaxlif.fitting.optimise.minimise_lanes`); fewer
            problems (or ``row_slots=0``): the fit's grid, ``min_lanes`` slots per problem.
            Either way only the endpoints not yet settled are refitted.
        stragglers: the profile fits' straggler rule
            (:func:`~jaxlif.fitting.optimise.minimise_lanes`); ``"auto"``: none on packed grids
            (a slow fit costs only its own slots there, and is run until it stops), the
            optimiser's default on the fit's grid.
        extra_starts: ``extra_starts(theta (k, D), owner (k,), coord (k,), at (k,)) -> list of
            (k, D)``: more starts for profile fits, made from their continuation starts
            ``theta`` (problem ``owner``, coordinate ``coord`` held at ``at``), e.g. a
            data-informed start of coordinates whose likelihood has several valleys, or a
            start moved along a known ridge; a row of NaN is no start for that fit.  ``None``:
            the two starts only.
        fit_rules: stopping rules of the profile fits (``max_steps``, ``patience``,
            ``rel_improve``, ``abs_improve``, ``gtol`` of
            :func:`~jaxlif.fitting.optimise.minimise_lanes`) in place of the defaults below.

    Returns:
        ``(lo, hi, better)``: ``(P, D)`` unconstrained endpoints (``-inf``/``inf`` where the
        profile stays below ``q``; NaN where the search did not settle), and ``(P,)`` booleans
        "a profile fit found a lower loss than the optimum" (the optimum was not global).
    """
    theta_hat = np.asarray(theta_hat, dtype=float)
    P, D = theta_hat.shape
    loss_min = np.asarray(loss_min, dtype=float)
    coef = np.broadcast_to(np.asarray(coef, dtype=float), (P,))
    q = np.broadcast_to(np.asarray(q, dtype=float), (P,))
    cap = np.broadcast_to(np.asarray(cap, dtype=float), (P, D))
    M = np.asarray(hess, dtype=float)
    cov = _pinv(M)
    hw = wald_halfwidth(M, q)
    # stop a profile fit when it would lower D/2 by < 0.005 (objective units: D = coef dL for
    # "nll", ~ 2 coef dL near the optimum for "log_ssr"; no rule for "ssr")
    c = float(np.max(coef))
    gtol = {"nll": 0.01 / c, "log_ssr": 0.005 / c}.get(kind, -1.0)
    rules = dict(max_steps=max_steps, patience=10, rel_improve=1e-7, abs_improve=0.0, gtol=gtol)
    rules.update(fit_rules or {})

    active = np.ones((P, D), bool) if active is None else np.asarray(active, bool)
    pi = np.repeat(np.arange(P), 2 * D)
    j = np.tile(np.repeat(np.arange(D), 2), P)
    side = np.tile([-1.0, 1.0], P * D)
    use = active[pi, j]
    slot = np.flatnonzero(use)
    pi, j, side = pi[use], j[use], side[use]
    n = pi.size
    phi_hat = theta_hat[pi, j]
    r_star = np.sqrt(q[pi])
    step = np.where(np.isfinite(hw[pi, j]) & (hw[pi, j] > 0), hw[pi, j], 1.0)
    step = np.clip(step, 1e-4, cap[pi, j])
    phi = phi_hat + side * step
    # warm start: move the other coordinates along the conditional direction of the quadratic
    cjj = cov[pi, j, j]
    direction = np.where((cjj > 0)[:, None], cov[pi, :, j] / np.where(cjj > 0, cjj, 1.0)[:, None],
                         0.0)
    direction[np.arange(n), j] = 1.0
    shift = np.clip((phi - phi_hat)[:, None] * direction, -2.0, 2.0)
    warm = theta_hat[pi] + shift
    free = active[pi].copy()
    free[np.arange(n), j] = False
    in_phi, in_r = phi_hat.copy(), np.zeros(n)
    out_phi, out_r = np.full(n, np.nan), np.full(n, np.nan)
    settled = np.zeros(n, bool)
    better = np.zeros(n, bool)
    at_cap = np.zeros(n, bool)
    stale = np.zeros(n)          # secant steps since the outer point last moved (Illinois)

    # Layout of the profile fits.  Many problems: packed grids holding only the lanes still
    # running (``minimise_lanes(row_slots=...)``; rows of one slot by default, each lane reading
    # its own copy of its problem's data), so that neither the endpoints already settled nor the
    # few slow fits of a call keep the whole batch running.  Few problems: the fit's own grid (a
    # row of slots per problem), whose compiled program the curvature already used, with as
    # many starts per call as fit its slots.
    packed = row_slots > 0 and P >= pack_min
    per_problem = int(np.bincount(pi, minlength=P).max()) if n else 1
    slots = _bucket(max(2 * per_problem, int(min_lanes)))
    group = 1 << 30 if packed else max(2, slots // max(per_problem, 1))
    if isinstance(stragglers, str):      # "auto"
        stragglers = None if packed else _STRAGGLERS
    layout = (dict(row_slots=row_slots, repack_every=repack_every) if packed
              else dict(min_lanes=min_lanes))
    layout["stragglers"] = stragglers

    def profile_fit(starts_list, at, sub):
        """Best constrained fit at ``at`` (coordinate j held) over the given starts, for the
        endpoints ``sub`` (indices; ``starts_list`` and ``at`` are theirs): (loss, theta)."""
        k = sub.size
        best_loss, best_th = np.full(k, np.inf), np.full((k, D), np.nan)
        if not k:
            return best_loss, best_th
        for g in range(0, len(starts_list), group):
            part = starts_list[g:g + group]
            m = len(part)
            start = np.concatenate(part)
            start[np.arange(m * k), np.tile(j[sub], m)] = np.tile(at, m)
            use = np.isfinite(start).all(axis=1)       # a NaN row: no such start for that fit
            if not use.any():
                continue
            th, loss2 = np.full((m * k, D), np.nan), np.full(m * k, np.inf)
            th[use], loss2[use], *_ = minimise_lanes(
                objective, start[use], np.tile(pi[sub], m)[use], batched, shared,
                free=np.tile(free[sub], (m, 1))[use], **rules, **layout)
            loss2 = np.where(np.isfinite(loss2), loss2, np.inf).reshape(m, k)
            pick = np.argmin(loss2, axis=0)
            loss_g, th_g = loss2[pick, np.arange(k)], th.reshape(m, k, D)[pick, np.arange(k)]
            take = loss_g < best_loss
            best_loss = np.where(take, loss_g, best_loss)
            best_th = np.where(take[:, None], th_g, best_th)
        # the continuation (first start) where every start failed
        return best_loss, np.where(np.isfinite(best_th), best_th, starts_list[0])

    def root_deviance(loss):
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            dev = deviance(kind, np.asarray(loss, float), np.asarray(loss_min, float)[pi],
                           np.asarray(coef, float)[pi])
        return dev, np.sqrt(np.where(np.isfinite(dev), np.maximum(dev, 0.0), np.inf))

    def search(phi, warm, n_iter=iters):
        """Secant steps; ``warm`` is the profile optimum at the farthest point below ``q`` (the
        continuation start: a point above ``q`` may sit in another valley or a failed fit)."""
        nonlocal in_phi, in_r, out_phi, out_r, settled, better, at_cap, stale
        for it in range(n_iter + _FAILED_EXTRA):
            # beyond n_iter only the searches whose outer point is a failed fit go on (bisecting)
            late = it >= n_iter
            if late and not np.any(failed_out() & ~(settled | at_cap)):
                break
            # two starts per profile point: the farthest profile point below q (continuation)
            # and the optimum with this coordinate moved (robust when the continuation strays),
            # and extra_starts' if given; endpoints already settled (or at the end of their
            # range) are not refitted
            sub = np.flatnonzero(~(settled | at_cap) & (failed_out() if late else True))
            loss, th = np.full(n, np.nan), np.full((n, D), np.nan)
            starts = [warm[sub], theta_hat[pi[sub]]]
            if extra_starts is not None and sub.size:
                starts += [np.asarray(x, dtype=float)
                           for x in extra_starts(warm[sub], pi[sub], j[sub], phi[sub])]
            loss[sub], th[sub] = profile_fit(starts, phi[sub], sub)
            dev, r = root_deviance(loss)
            fitted = np.zeros(n, bool)
            fitted[sub] = True                           # the others: no new information
            better |= fitted & (dev < -2.0 * LOCAL_MIN_GAP)
            dist = np.abs(phi - phi_hat)
            below = fitted & (r < r_star)
            take_in = below & (dist > np.abs(in_phi - phi_hat)) & ~settled
            in_phi = np.where(take_in, phi, in_phi)
            in_r = np.where(take_in, r, in_r)
            warm = np.where(take_in[:, None], th, warm)
            take_out = fitted & ~below & ~settled & (np.isnan(out_phi) |
                                                     (dist < np.abs(out_phi - phi_hat)))
            out_phi = np.where(take_out, phi, out_phi)
            out_r = np.where(take_out, np.where(np.isfinite(r), r, 10 * _FAILED * r_star), out_r)
            kept = take_in & ~np.isnan(out_phi)          # a step that kept the outer point
            stale = np.where(take_out, 0.0, np.where(kept, stale + 1, stale))
            settled |= fitted & (np.abs(r - r_star) <= rel_tol * r_star)
            at_cap |= below & (dist >= cap[pi, j] * (1 - 1e-9))
            if np.all(settled | at_cap):
                break
            nxt = next_point()
            if it == n_iter - 2:
                # last try for a side with no point above q yet: the end of the search range
                # (below q there: unbounded; above: an endpoint to interpolate, not NaN)
                nxt = np.where(np.isnan(out_phi), phi_hat + side * cap[pi, j], nxt)
            phi = np.where(settled | at_cap, phi, nxt)
        return warm

    def failed_out():
        """Searches whose outer point is a failed fit (no finite deviance there)."""
        with np.errstate(invalid="ignore"):
            return out_r >= _FAILED * r_star

    def crossing_fraction(margin, search=True):
        """Where the signed root crosses ``r_star`` between the inner and outer points, as a
        fraction of the way, kept ``margin`` away from both.  A failed fit above (no finite
        deviance) says nothing about where the crossing is: bisect instead of interpolating
        towards a made-up value.  ``search``: the next point of the search, where a profile that
        rises as a cliff (flat, then far above the threshold: a bound of the model reached) is
        bisected while the outer point is more than ``_FAR`` times the threshold's root, and
        interpolated with Illinois steps (each step that kept the same outer point halves its
        excess over ``r_star``) nearer, instead of creeping towards the cliff by ``margin`` of
        the bracket per step; ``False``: the plain interpolation (the reported endpoint)."""
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            out = r_star + (out_r - r_star) * 0.5 ** stale if search else out_r
            frac = np.clip((r_star - in_r) / (out - in_r), margin, 1.0 - margin)
        if search:
            frac = np.where(out_r > _FAR * r_star, 0.5, frac)
        return np.where(out_r >= _FAILED * r_star, 0.5, frac)

    def next_point():
        has_out = ~np.isnan(out_phi)
        interp = in_phi + crossing_fraction(0.05) * (out_phi - in_phi)
        with np.errstate(invalid="ignore", divide="ignore"):
            grow = np.clip(r_star / np.maximum(in_r, 1e-12), 1.5, 4.0)
        extrap = phi_hat + (in_phi - phi_hat) * grow
        nxt = np.where(has_out, interp, extrap)
        return phi_hat + np.clip(nxt - phi_hat, -cap[pi, j], cap[pi, j])

    def endpoint():
        # a failed fit outside says only that the crossing lies in the bracket: its midpoint
        # where the bracket is narrow, NaN (not located) where it is wide
        with np.errstate(invalid="ignore"):
            wide = np.abs(out_phi - in_phi) > _FAILED_BRACKET * np.abs(in_phi - phi_hat)
        located = settled | ~(failed_out() & wide)
        return np.where(np.isnan(out_phi), np.where(settled, in_phi, np.nan),
                        np.where(located,
                                 in_phi + crossing_fraction(0.0, False) * (out_phi - in_phi),
                                 np.nan))

    warm = search(phi, warm)
    # Verification.  A profile fit from the two starts above can stop in a flat or curved region
    # above the constrained optimum (a time constant drifting to infinity, U at 0 or 1): it then
    # overstates the deviance and ends the interval too early (a "false crossing").  Each finite
    # endpoint is refitted from ``n_restarts`` other points (:func:`_verification_starts`), this
    # coordinate held; one clearly below the threshold restarts the search outward from there.
    if restarts is not None:
        pool = _verification_starts(restarts, others, theta_hat, n_restarts)   # (P, k, D)
        for _ in range(verify_rounds):
            end = endpoint()
            check = np.isfinite(end) & ~at_cap
            if not check.any():
                break
            sub = np.flatnonzero(check)
            at = np.where(check, end, phi_hat)
            loss, th = np.full(n, np.inf), warm.copy()
            loss[sub], th[sub] = profile_fit(
                [np.where(active[pi[sub]], pool[pi[sub], r], theta_hat[pi[sub]])
                 for r in range(pool.shape[1])], at[sub], sub)
            dev, r = root_deviance(loss)
            better |= check & (dev < -2.0 * LOCAL_MIN_GAP)
            false = check & (r < r_star * (1.0 - 2.0 * rel_tol))
            if not false.any():
                break
            in_phi = np.where(false, at, in_phi)
            in_r = np.where(false, r, in_r)
            out_phi = np.where(false, np.nan, out_phi)
            out_r = np.where(false, np.nan, out_r)
            stale = np.where(false, 0.0, stale)
            settled = settled & ~false
            warm = np.where(false[:, None], th, warm)
            phi = np.where(false, next_point(), endpoint())
            phi = np.where(np.isfinite(phi), phi, phi_hat)
            warm = search(phi, warm)
    end = endpoint()
    end = np.where(at_cap & np.isnan(out_phi), side * np.inf, end)
    full = np.full(P * D * 2, np.nan)
    full[slot] = end
    full = full.reshape(P, D, 2)
    better = np.bincount(pi, weights=better.astype(float), minlength=P) > 0
    return full[..., 0], full[..., 1], better


def _verification_starts(restarts, others, theta_hat, k: int) -> np.ndarray:
    """``(P, k, D)`` start points for verifying profile endpoints: the starts' own optima that
    are not the optimum (more than 0.5 unconstrained units away in some coordinate), lowest loss
    first (other valleys, and points on a valley floor that refit in few steps); where fewer
    exist, starts spread over ``restarts``."""
    restarts = np.asarray(restarts, dtype=float)
    P, R, D = restarts.shape
    spread = np.unique(np.linspace(0, R - 1, min(k, R)).round().astype(int))
    pool = restarts[:, np.resize(spread, k)]                                # (P, k, D)
    if others is not None:
        o_theta = np.asarray(others[0], dtype=float)
        o_loss = np.asarray(others[1], dtype=float)
        away = np.max(np.abs(np.nan_to_num(o_theta - theta_hat[:, None, :])), axis=2) > 0.5
        rank = np.where(away & np.isfinite(o_loss), o_loss, np.inf)
        order = np.argsort(rank, axis=1)[:, :k]
        have = np.take_along_axis(np.isfinite(rank), order, axis=1)
        cand = np.take_along_axis(o_theta, order[:, :, None], axis=1)
        pool[:, :order.shape[1]] = np.where(have[:, :, None], cand, pool[:, :order.shape[1]])
    return np.where(np.isfinite(pool), pool, theta_hat[:, None, :])


def edge_distance_ok(constraint, theta) -> np.ndarray:
    """True where ``theta`` is not at the edge of the constraint's range (module docstring)."""
    theta = np.asarray(theta, dtype=float)
    if constraint.low == -math.inf:
        return np.ones(theta.shape, bool)
    if constraint.high == math.inf:
        return (theta < math.log(1e5)) & (theta > math.log(1e-2))
    return np.abs(theta) < math.log(1e4)


def _forward_np(constraint, theta):
    """Constraint map in NumPy float64 (endpoints may be +-inf)."""
    theta = np.asarray(theta, dtype=float)
    if constraint.low == -math.inf:     # a real line, possibly in units of ``scale``
        return getattr(constraint, "scale", 1.0) * theta
    with np.errstate(over="ignore"):
        if constraint.high == math.inf:
            return constraint.low + np.exp(theta)
        return constraint.low + (constraint.high - constraint.low) / (1.0 + np.exp(-theta))


def _slope(constraint, x):
    """d x / d theta at the parameter value ``x``."""
    if constraint.low == -math.inf:
        return np.full_like(x, getattr(constraint, "scale", 1.0))
    if constraint.high == math.inf:
        return x - constraint.low
    return (x - constraint.low) * (constraint.high - x) / (constraint.high - constraint.low)


def analyse(objective: Callable, theta, loss, batched, shared, *, kind: str, coef, q,
            constraints, interval: str = "profile", max_rel_uncertainty: float = 0.5,
            positive=None, active=None, min_lanes: int = 0, restarts=None, others=None,
            profile_options: dict | None = None) -> dict:
    """Stationarity, Wald and profile intervals and identifiability at the optima ``theta (P, D)``.

    Args:
        constraints: one :class:`~jaxlif.constraints.Constraint` per coordinate.
        interval: ``"profile"``, ``"wald"`` or ``"none"``.
        max_rel_uncertainty: a parameter whose 95 % interval is wider than this multiple of its
            value on either side (``(hi - lo) / 2 > max_rel |x|``) is not identifiable
            (coordinates with ``positive[j]`` False are judged on boundedness alone).
        restarts: ``(P, R, D)`` the fit's start points: the profile endpoints are verified by
            refitting from them.  others: ``(theta (P, R, D), loss (P, R))`` the starts'
            optima, the first choice of verification starts (:func:`profile_intervals`).
        profile_options: more arguments of :func:`profile_intervals` (``extra_starts``,
            ``fit_rules``).

    Returns:
        dict of NumPy arrays: ``value (P, D)`` parameters, ``lo, hi (P, D)`` interval, ``stderr``
        (Wald, parameter units), ``identifiable``, ``at_edge`` (booleans ``(P, D)``),
        ``stationary``, ``better`` (``(P,)``), ``decrement`` (predicted gain, ``D/2`` units).
    """
    theta = np.asarray(theta, dtype=float)
    P, D = theta.shape
    coef = np.broadcast_to(np.asarray(coef, dtype=float), (P,))
    q = np.broadcast_to(np.asarray(q, dtype=float), (P,))
    active = np.ones((P, D), bool) if active is None else np.asarray(active, bool)
    grad, hess = curvature(objective, theta, loss, coef, batched, shared, kind=kind,
                           active=active, min_lanes=min_lanes)
    finite = np.isfinite(hess).all(axis=(1, 2)) & np.isfinite(grad).all(axis=1)
    hess = np.where(finite[:, None, None], hess, 0.0)
    grad = np.where(finite[:, None], grad, 0.0)
    decrement = newton_decrement(grad, hess)
    stationary = finite & (decrement < STATIONARY_GAP)
    hw = wald_halfwidth(hess, q)
    hw = np.where(finite[:, None], hw, np.inf)
    hw = np.where(active, hw, np.nan)
    value = np.stack([_forward_np(c, theta[:, j]) for j, c in enumerate(constraints)], axis=1)
    slope = np.stack([_slope(c, value[:, j]) for j, c in enumerate(constraints)], axis=1)
    with np.errstate(invalid="ignore"):   # inf x 0 at a bound: NaN (no standard error)
        stderr = np.abs(slope) * hw / np.sqrt(q)[:, None]
    with np.errstate(invalid="ignore"):   # inf x 0 at a bound: NaN, as for stderr
        cov = slope[:, :, None] * _pinv(hess) * slope[:, None, :]
    better = np.zeros(P, bool)
    if interval == "profile":
        # search range per problem and coordinate: 12 transformed units reach the edge of a
        # bounded range (a time constant x e^12, U within 1e-5 of 0 or 1); an unbounded
        # coordinate goes to 1e3 or four of its own Wald half-widths.  (Per problem: one wide
        # problem must not widen the others' searches beyond what ``iters`` steps can cover.)
        bounded = np.array([c.low != -math.inf for c in constraints])
        wide = np.where(np.isfinite(hw), 4.0 * hw, 0.0)
        cap = np.where(bounded, 12.0, np.maximum(1e3, wide))
        lo_t, hi_t, better = profile_intervals(objective, theta, loss, batched, shared,
                                               kind=kind, coef=coef, q=q, hess=hess, cap=cap,
                                               active=active, restarts=restarts, others=others,
                                               min_lanes=min_lanes, **(profile_options or {}))
    elif interval == "wald":
        lo_t, hi_t = theta - hw, theta + hw
    elif interval == "none":
        lo_t = hi_t = np.full_like(theta, np.nan)
    else:
        raise ValueError(interval)  # pragma: no cover
    lo = np.stack([_forward_np(c, lo_t[:, j]) for j, c in enumerate(constraints)], axis=1)
    hi = np.stack([_forward_np(c, hi_t[:, j]) for j, c in enumerate(constraints)], axis=1)
    at_edge = ~np.stack([edge_distance_ok(c, theta[:, j]) for j, c in enumerate(constraints)],
                        axis=1)
    bounded = np.isfinite(lo_t) & np.isfinite(hi_t)
    positive = (np.array([c.low != -math.inf for c in constraints]) if positive is None
                else np.asarray(positive, bool))
    with np.errstate(invalid="ignore", divide="ignore"):
        narrow = (hi - lo) / 2.0 <= max_rel_uncertainty * np.abs(value)
    identifiable = bounded & ~at_edge & np.where(positive[None, :], narrow, True)
    if interval == "none":
        identifiable = ~at_edge & np.isfinite(hw) & np.where(
            positive[None, :], stderr * np.sqrt(q)[:, None] <= max_rel_uncertainty * np.abs(value),
            True)
    return dict(value=value, lo=lo, hi=hi, stderr=stderr, cov=cov, identifiable=identifiable,
                at_edge=at_edge, stationary=stationary, better=better, decrement=decrement,
                theta_lo=lo_t, theta_hi=hi_t)
