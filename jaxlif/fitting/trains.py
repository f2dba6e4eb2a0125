r"""Maximum-likelihood fits of plasticity models to recorded amplitude trains.

:func:`fit_stp_trains` fits a model (:mod:`~jaxlif.fitting.models`) to the amplitudes of every
pulse of every sweep of several protocols (:mod:`~jaxlif.fitting.data`), with a noise model
(:mod:`~jaxlif.fitting.likelihood`)::

    maximise over params:  log L = - sum_i NLL(y_i | mu_i = A r_i(params), noise)

the amplitude scale ``A`` and an unknown noise level profiled out.  All starts of all synapses
run in one vmapped loop (:mod:`~jaxlif.fitting.optimise`); every synapse keeps its best start;
intervals, goodness of fit and flags come from :mod:`~jaxlif.fitting.uncertainty`.  The three
TM variants and both noise models are one compiled program (the model and the noise model are
flags of each problem), so a model comparison compiles once per data shape.

What the result's flags mean (per synapse):

``stationary``
    a Newton step would improve the log-likelihood by less than 0.01.
``start_local_minimum``
    per start: it ended more than 0.01 log-likelihood units below the best start; the best
    start is ``best_start``.
``reproduces_data``
    the model is consistent with the data: the goodness-of-fit p-value is >= 0.001 (a
    lack-of-fit F test against the sweep-to-sweep scatter when the noise is estimated and
    sweeps are repeated; a likelihood-ratio (chi-squared) test against a free mean per pulse
    when the noise level is given), and the optimum is not at the edge of the parameter range
    with a residual above 10 % of the data's RMS.
``converged``
    ``stationary`` and ``reproduces_data``, and no profile fit found a better optimum.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks
from jaxlif.fitting import likelihood as lk
from jaxlif.fitting import uncertainty as unc
from jaxlif.fitting.data import TrainData, check_trains
from jaxlif.fitting.forward import check_spike_times
from jaxlif.fitting.models import (SRP_TAUS_MS, Model, family_constraints, family_release,
                                   get_model)
from jaxlif.fitting.optimise import FitInterrupted, minimise_lanes

__all__ = ["TrainFitResult", "fit_stp_trains", "INTERVALS", "ZEROS", "train_loss", "unit_scale",
           "model_starts", "PRECISIONS", "AUTO_FLOAT64_POINTS"]

#: Interval methods of :func:`fit_stp_trains`.
INTERVALS = ("profile", "wald", "none")

#: Working precision of the train fits (``precision=``): ``"auto"`` (float64 from
#: :data:`AUTO_FLOAT64_POINTS` amplitudes on), ``"default"`` (JAX's default float, float32 unless
#: x64 is enabled) or ``"float64"``.
PRECISIONS = ("auto", "default", "float64")

#: From this many amplitudes (in the largest synapse) ``precision="auto"`` fits in float64.  The
#: objective is a per-point NLL; in float32 its resolution is about 1e-7 of its value, so the
#: total log-likelihood is resolved to about ``n 1e-7``: 0.01 units (the tolerance of
#: ``start_local_minimum``) near n = 10^4-10^5.  Measured (docs/fitting.md, Precision): 60
#: simulated data sets of 200-800 amplitudes ended within 0.002 units of their float64 optimum;
#: 8 SRP data sets of 14,000 amplitudes (gamma noise) stopped 0.002-0.032 units short in float32.
AUTO_FLOAT64_POINTS = 2000


def precision_context(precision: str, n_points: int):
    """The context a fit of ``n_points`` amplitudes runs in (``jax.enable_x64`` or nothing)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
    if precision == "float64" or (precision == "auto" and n_points >= AUTO_FLOAT64_POINTS):
        return jax.enable_x64(True)
    return contextlib.nullcontext()


#: What a zero amplitude is (``zeros=``): a recorded amplitude of zero (a release failure), or a
#: missing point (as Rossbroich et al. 2021 treat failures).
ZEROS = ("amplitude", "missing")


class TrainFitResult(NamedTuple):
    """Result of :func:`fit_stp_trains` (arrays gain a leading ``(n_synapses,)`` axis for many).

    Attributes:
        params: the model's parameter NamedTuple at the maximum likelihood.
        interval: same NamedTuple, each field ``(..., 2)``: the ``level`` (95 %) confidence
            interval ``(low, high)``; the range's end (0, 1, inf) on an unbounded side.
        stderr: Wald standard errors (parameter units; local, for orientation only).
        identifiable: NamedTuple of booleans: the interval is bounded, not wider than
            ``max_rel_uncertainty`` times the value on either side, and the optimum is not at
            the edge of the range.
        at_edge: NamedTuple of booleans: the optimum lies at the edge of the parameter's range.
        scale: amplitude scale ``A`` (the data's unit); ``1 / r_1`` when normalised.
        noise: the noise sd (Gaussian, data unit; RMS of the given ones), CV (gamma) or ``s``
            (binomial: the sd is ``s sqrt(r (1 - r))``, data unit).
        loglik: maximised log-likelihood.  aic, bic: ``2k - 2 loglik``, ``k log n - 2 loglik``.
        n_points: amplitudes used.  n_params: ``k`` (model + scale + estimated noise level).
        gof_pvalue: goodness-of-fit p-value (NaN when it cannot be tested: noise estimated and
            no repeated sweeps).
        reproduces_data, stationary, converged: see the module docstring.
        fitted: ``(n_protocols, n_spikes)`` fitted mean amplitude ``A r`` (NaN where padded).
        residuals: amplitudes minus ``fitted`` (NaN where absent).
        best_start: index of the start that won (``init`` starts first, then the grid).
        start_params: each start's optimum.  start_loglik: each start's log-likelihood.
        start_local_minimum: starts that ended in a worse local minimum.
        n_steps: optimiser steps of the best start.
        model, noise_model, interval_method, level, unit: what was fitted.
        notes: reasons, in words, why a fit cannot be ``converged`` whatever the optimiser did
            (fewer points than free parameters); empty otherwise.
        precision: the float type the fit ran in (``"float32"`` or ``"float64"``).
    """

    params: Any
    interval: Any
    stderr: Any
    identifiable: Any
    at_edge: Any
    scale: np.ndarray
    noise: np.ndarray
    loglik: np.ndarray
    aic: np.ndarray
    bic: np.ndarray
    n_points: np.ndarray
    n_params: int
    gof_pvalue: np.ndarray
    reproduces_data: np.ndarray
    stationary: np.ndarray
    converged: np.ndarray
    fitted: np.ndarray
    residuals: np.ndarray
    best_start: np.ndarray
    start_params: Any
    start_loglik: np.ndarray
    start_local_minimum: np.ndarray
    n_steps: np.ndarray
    model: str
    noise_model: str
    interval_method: str
    level: float
    unit: str = ""
    notes: tuple = ()
    precision: str = ""

    def summary(self) -> dict:
        """A JSON-ready dict (plain floats and lists; ``inf`` stays ``inf``)."""
        tolist = lambda a: np.asarray(a).tolist()  # noqa: E731
        named = lambda p: {k: tolist(v) for k, v in p._asdict().items()}  # noqa: E731
        out = {k: tolist(getattr(self, k)) for k in (
            "scale", "noise", "loglik", "aic", "bic", "n_points", "gof_pvalue", "reproduces_data",
            "stationary", "converged", "best_start", "n_steps")}
        m = get_model(self.model)
        out.update(params=named(self.params), interval=named(self.interval),
                   stderr=named(self.stderr), identifiable=named(self.identifiable),
                   at_edge=named(self.at_edge), n_params=self.n_params, model=self.model,
                   noise_model=self.noise_model, interval_method=self.interval_method,
                   level=self.level, fitted=tolist(self.fitted), notes=list(self.notes),
                   precision=self.precision,
                   units={**dict(zip(m.fields, m.units)), "amplitude": self.unit,
                          "spike_times": "ms"})
        return out


class _Arrays(NamedTuple):
    """One row per problem (a synapse, a model, a fold)."""
    delta: jax.Array     # (P, Pr, n-1) intervals [ms], 1 where padded
    st: lk.Stats         # (P, Pr, n) sufficient statistics of the amplitudes
    flags: jax.Array     # (P, 4) tie_f, zero_f, estimated, normalised


def _nll(family, gamma, theta, a: _Arrays):
    """``(nll per point, A, noise, release)`` of one problem at ``theta``."""
    cons = family_constraints(family)
    vec = [c.forward(theta[i]) for i, c in enumerate(cons)]
    r = family_release(family, vec, a.delta, a.flags[0], a.flags[1])
    value, A, noise = lk.nll(a.st, r, r[0, 0], gamma, a.flags[2], a.flags[3])
    return value, A, noise, r


@functools.lru_cache(maxsize=None)
def _objective(family: str, gamma: bool) -> Callable:
    """Per-point NLL of a model of ``family`` under Gaussian or gamma noise (one cached function
    per pair, so the compiled optimiser is reused across calls, models of the family, and
    given or estimated noise levels)."""
    def objective(theta, a: _Arrays, shared):
        return _nll(family, gamma, theta, a)[0]
    objective._jaxlif_cache_id = f"jaxlif.fitting.trains._objective({family!r}, {gamma!r})"
    return objective


def _code(noise: str):
    """The static noise argument of :func:`~jaxlif.fitting.likelihood.nll` for ``noise``."""
    return {"gaussian": False, "gamma": True, "binomial": "binomial"}[noise]


@functools.partial(jax.jit, static_argnames=("family", "gamma"))
def _evaluate(theta, a: _Arrays, *, family, gamma):
    """Per problem: NLL per point, scale, noise, fitted means, and the NLL per point of the
    saturated model (a free mean per protocol and pulse) for the goodness of fit."""
    def one(th, arr):
        value, A, noise, r = _nll(family, gamma, th, arr)
        g = False if gamma == "binomial" else gamma     # (no saturated model: NaN p-value)
        sat, _, _ = lk.nll(arr.st, lk.saturated_release(arr.st, g), 1.0, g, arr.flags[2], True)
        return value, A, noise, A * r, sat
    return jax.vmap(one)(theta, a)


# --------------------------------------------------------------------------------------
# Problems: data rows with their model and noise model
# --------------------------------------------------------------------------------------


def unit_scale(y, mask) -> np.ndarray:
    """Per synapse, the amplitude unit the fit works in: the median ``|y|`` of the recorded
    non-zero amplitudes (``y (N, P, S, n)``; 1 where there is none).

    The fit sees ``y / c`` (and a given sd ``/ c``), so amplitudes in A, pA or normalised units
    (anything from 1e-15 to 1e15 and beyond, within the float64 range) give the same
    optimisation problem, and float32 keeps its digits: the likelihood of ``y / c`` differs from
    that of ``y`` by the constant ``n log c``, and the amplitude scale and the sd are mapped back
    (``A c``, ``s c``; a CV has no unit)."""
    a = np.abs(np.where(mask, y, np.nan)).reshape(len(y), -1)
    a = np.where(a > 0, a, np.nan)
    c = np.full(len(y), 1.0)
    some = np.isfinite(a).any(axis=1)
    if some.any():
        c[some] = np.nanmedian(a[some], axis=1)
    return np.where(np.isfinite(c) & (c > 0), c, 1.0)


def _rows(data: TrainData, noise: str, noise_cv, normalised: bool = False) -> dict:
    """NumPy arrays of every synapse of ``data`` (leading synapse axis), amplitudes (and a given
    sd) divided by the synapse's :func:`unit_scale` ``c`` (1 when normalised: the first pulse
    is fixed to 1)."""
    y = data.amplitudes if data.amplitudes.ndim == 4 else data.amplitudes[None]
    mask = data.mask if data.mask.ndim == 4 else data.mask[None]
    t = data.spike_times_ms if data.amplitudes.ndim == 4 else data.spike_times_ms[None]
    t = np.broadcast_to(t, (y.shape[0],) + t.shape[-2:])
    d = np.diff(t, axis=-1)
    c = np.ones(len(y)) if normalised else unit_scale(y, mask)
    cb = c[:, None, None, None]
    sd = None
    if data.noise_sd is not None and noise == "gaussian":
        sd = (data.noise_sd if data.noise_sd.ndim == 4 else data.noise_sd[None]) / cb
    return dict(times=t, delta=np.where(np.isfinite(d), d, 1.0), y=np.where(mask, y / cb, 0.0),
                y_nan=y, mask=mask, sd=sd, cv=noise_cv, c=c)


def _arrays(rows: dict, idx, models, spec: lk.NoiseSpec, masks=None) -> _Arrays:
    """Stack problems: data row ``idx[p]`` fitted with ``models[p]`` (optionally ``masks[p]``)."""
    dtype = jnp.result_type(float)
    idx = np.asarray(idx)
    flags = np.array([[m.tie_f, m.zero_f, *spec.flags()] for m in models])
    mask = rows["mask"][idx] if masks is None else np.asarray(masks)
    sd = None if rows["sd"] is None else rows["sd"][idx]
    st = lk.stats(rows["y"][idx], mask, sd=sd, cv=rows["cv"])
    return _Arrays(jnp.asarray(rows["delta"][idx], dtype),
                   lk.Stats(*(jnp.asarray(v, dtype) for v in st)), jnp.asarray(flags))


#: Largest |argument| of the SRP sigmoid at any spike of the data at a default start.
SRP_START_MAX_ARG = 5.0


def model_starts(m: Model, spike_times_ms) -> np.ndarray:
    """The default starts ``(S, n_fields)`` of model ``m`` for trains with these spike times.

    The model's grid (:attr:`Model.starts`); for ``"srp"`` each start's kernel amplitudes are
    shrunk (all by one factor) where needed so that the sigmoid's argument
    ``b + sum_j (a_j/tau_j) sum_{i<k} exp(-(t_k - t_i)/tau_j)`` stays within
    +-:data:`SRP_START_MAX_ARG` at every spike of every protocol: no start lies on a saturated
    plateau (release 0 or 1 at every spike, where no gradient is left), however long or fast
    the trains.
    """
    grid = np.array(m.starts, dtype=float)
    if m.family != "srp":
        return grid
    t = np.asarray(spike_times_ms, dtype=float).reshape(-1, np.shape(spike_times_ms)[-1])
    taus = np.asarray(SRP_TAUS_MS)
    lag = t[:, :, None] - t[:, None, :]                                  # (rows, k, i)
    earlier = np.isfinite(lag) & (lag > 0)
    with np.errstate(invalid="ignore", over="ignore"):
        decay = np.where(earlier[..., None], np.exp(-np.where(earlier, lag, 0.0)[..., None]
                                                     / taus), 0.0)
    K = decay.sum(axis=2)[np.isfinite(t)]                               # (spikes, 3)
    b = grid[:, 0]
    kernel = (grid[:, 1:] / taus) @ K.T                                  # (S, spikes)
    cap = SRP_START_MAX_ARG
    with np.errstate(invalid="ignore", divide="ignore"):
        # the largest lam <= 1 with |b + lam kernel| <= cap at every spike (|b| < cap)
        room = np.where(kernel > 0, cap - b[:, None], -cap - b[:, None]) / kernel
        lam = np.min(np.where(np.abs(b[:, None] + kernel) > cap, room, 1.0), axis=1,
                     initial=1.0)
    grid[:, 1:] *= np.clip(lam, 0.0, 1.0)[:, None]
    return grid


def _starts(m: Model, init, check_starts, spike_times_ms=None) -> np.ndarray:
    """Starts ``(S, n_fields)`` in parameter units: the user's, then the default grid."""
    grid = (np.asarray(m.starts, dtype=float) if spike_times_ms is None
            else model_starts(m, spike_times_ms))
    if init is None:
        return grid
    if isinstance(init, tuple) and hasattr(init, "_fields"):
        if not isinstance(init, m.params_type):
            raise TypeError(f"init must be a {m.params_type.__name__} for model {m.name!r}, got "
                            f"{type(init).__name__}")
        fields = [np.asarray(_checks.check_numeric(f"init.{f}", v), dtype=float)
                  for f, v in zip(m.fields, init)]
        arr = np.stack(np.broadcast_arrays(*fields), axis=-1)
    else:
        arr = np.asarray(_checks.check_numeric("init", init), dtype=float)
    arr = np.atleast_2d(arr)
    if arr.ndim != 2 or arr.shape[-1] != m.n_params:
        raise ValueError(f"init must be a {m.params_type.__name__} or an (n_starts, "
                         f"{m.n_params}) array, got shape {arr.shape}")
    _checks.check_finite("init", arr)
    for j, (field, c) in enumerate(zip(m.fields, m.constraints(None))):
        ok = (arr[:, j] > c.low) & (arr[:, j] < c.high)
        if not ok.all():
            raise ValueError(f"init {field}={arr[~ok, j][0]} must lie in ({c.low}, {c.high})")
    return np.concatenate([arr, grid]) if check_starts else arr


def _family_theta(m: Model, starts: np.ndarray) -> np.ndarray:
    """Unconstrained family vectors ``(S, 4)`` of starts given in the model's fields."""
    vec = np.asarray(m.family_vector(m.params_type(*starts.T)), dtype=float)
    cons = family_constraints(m.family)
    return np.stack([np.asarray(c.inverse(vec[:, i]), dtype=float) for i, c in enumerate(cons)],
                    axis=1)


def _deviance_setup(n, p, estimated, level):
    """Deviance kind, coefficient and threshold of problems with ``n`` points, ``p`` params."""
    if estimated:
        return "log_ssr", n - p, lk.t2_quantile(level, n - p)
    return "nll", 2.0 * n, np.full(np.shape(n), lk.chi2_quantile(level, 1.0))


#: Sub-models: the optimum of a key is a point of each model it names (f = U gives "tm", f = 0
#: gives "depression"), so their fits start there too (a nested model never fits worse).
_NESTED = {"tm": ("depression",), "tm4": ("tm", "depression")}


def _as_start_of(sub: Model, vec: np.ndarray) -> np.ndarray:
    """A family vector (constrained values) of sub-model ``sub`` as a point of its super-models:
    ``f = U`` (tm), ``f`` near 0 and a short ``tau_f`` (depression)."""
    vec = np.array(vec, dtype=float)
    if sub.tie_f:
        vec[1] = vec[0]
    if sub.zero_f:
        vec[1], vec[3] = 1e-6, 1.0
    return vec


def _stop_rules(n_points: float) -> dict:
    """Stopping rules on the per-point NLL: stop when the predicted or the recent improvement
    of the total log-likelihood is below 1e-4 (far below the 1.92 of a 95 % interval)."""
    return dict(patience=20, rel_improve=1e-7, abs_improve=1e-5 / n_points,
                gtol=1e-4 / n_points)


def _nested_refit(objective, arr, family, models, groups, sol_theta, sol_loss, max_steps, lanes):
    """Refit each problem from the optima of its nested sub-models fitted on the same data
    (``groups``): ``(extra_theta (P, E, 4), extra_loss (P, E))`` with ``inf`` where none."""
    cons = family_constraints(family)
    pairs = [(p, q) for p, m in enumerate(models) for q, sub in enumerate(models)
             if groups[q] == groups[p] and sub.name in _NESTED.get(m.name, ())]
    if not pairs:
        return None
    starts = []
    for p, q in pairs:
        vec = np.array([float(c.forward(jnp.asarray(sol_theta[q, i]))) for i, c in enumerate(cons)])
        vec = _as_start_of(models[q], vec)
        starts.append([float(c.inverse(jnp.asarray(v))) for c, v in zip(cons, vec)])
    owner = np.array([p for p, _ in pairs])
    active = np.zeros((len(pairs), 4), bool)
    for i, (p, _) in enumerate(pairs):
        active[i, list(models[p].coords)] = True
    n_pts = float(np.min(np.asarray(jnp.sum(arr.st.count, axis=(1, 2)))))
    th, loss, *_ = minimise_lanes(objective, np.array(starts), owner, arr, None, free=active,
                                  max_steps=max_steps, **_stop_rules(n_pts),
                                  min_lanes=lanes)
    return owner, th, loss


def _solve(arr: _Arrays, family: str, models, starts, *, interval, level, max_rel, max_steps,
           progress, spec: lk.NoiseSpec, groups=None) -> dict:
    """Fit every problem (row of ``arr``) from its starts; intervals and flags.  Problems with
    the same ``groups`` label share data: nested models among them also start from each other's
    optima (``_NESTED``)."""
    P = len(models)
    estimated = spec.estimated
    objective = _objective(family, _code(spec.kind))
    thetas = [_family_theta(m, s) for m, s in zip(models, starts)]
    owner = np.concatenate([np.full(len(t), p) for p, t in enumerate(thetas)])
    active = np.zeros((P, 4), bool)
    for p, m in enumerate(models):
        active[p, list(m.coords)] = True
    theta0 = np.concatenate(thetas)
    # slots per problem: enough for the starts, the curvature (9) and the profile fits (two
    # per side and parameter), so that all of them run one compiled program
    lanes = max(int(np.bincount(owner).max()), 9, 4 * int(active.sum(axis=1).max()))
    n_pts = float(np.min(np.asarray(jnp.sum(arr.st.count, axis=(1, 2)))))
    th, loss, n_steps, _, steps, interrupted, _ = minimise_lanes(
        objective, theta0, owner, arr, None, free=active[owner], max_steps=max_steps,
        **_stop_rules(n_pts), progress=progress, min_lanes=lanes)
    S = max(len(t) for t in thetas)
    slot = np.concatenate([np.arange(len(t)) for t in thetas])
    extra = None
    if groups is not None and not interrupted:
        first = np.full((P, 4), np.nan)
        best_loss = np.full(P, np.inf)
        for lane in range(len(owner)):
            if loss[lane] < best_loss[owner[lane]]:
                best_loss[owner[lane]], first[owner[lane]] = loss[lane], th[lane]
        extra = _nested_refit(objective, arr, family, models, groups, first, best_loss,
                              max_steps, lanes)
    if extra is not None:   # the nested starts come after the model's own
        e_owner, e_th, e_loss = extra
        e_slot = np.array([S + np.sum(e_owner[:i] == o) for i, o in enumerate(e_owner)])
        S = S + int(np.max(np.bincount(e_owner)))
        owner, slot = np.concatenate([owner, e_owner]), np.concatenate([slot, e_slot])
        th, loss = np.concatenate([th, e_th]), np.concatenate([loss, e_loss])
        n_steps = np.concatenate([n_steps, np.zeros(len(e_owner), int)])
    start_loss = np.full((P, S), np.inf)
    start_theta = np.full((P, S, 4), np.nan)
    start_steps = np.zeros((P, S), int)
    start_loss[owner, slot] = loss
    start_theta[owner, slot] = th
    start_steps[owner, slot] = n_steps
    best = np.argmin(start_loss, axis=1)
    rows = np.arange(P)
    theta, loss_best = start_theta[rows, best], start_loss[rows, best]
    n = np.asarray(jnp.sum(arr.st.count, axis=(1, 2)), dtype=float)
    normalised = np.asarray(arr.flags[:, 3])
    p = np.array([m.n_params for m in models]) + np.where(normalised, 0, 1)
    # the binomial-variance NLL has a log r(1 - r) term: plain likelihood-ratio calibration
    kind, coef, q = _deviance_setup(n, p, estimated and spec.kind != "binomial", level)
    out = dict(theta=theta, loss=loss_best, best_start=best, start_theta=start_theta,
               start_loss=start_loss, n_steps=start_steps[rows, best], n=n, p=p, kind=kind,
               coef=coef, q=q, active=active, steps=steps, interrupted=interrupted,
               start_local=unc.local_minimum(start_loss, kind, coef), lanes=lanes)
    if interrupted:
        return out
    out["stats"] = unc.analyse(objective, theta, loss_best, arr, None, kind=kind, coef=coef, q=q,
                               constraints=family_constraints(family), interval=interval,
                               max_rel_uncertainty=max_rel, positive=[family != "srp"] * 4,
                               active=active, min_lanes=lanes, restarts=_restarts(thetas),
                               others=(start_theta, start_loss))
    return out


def _restarts(thetas) -> np.ndarray:
    """The problems' start points as one ``(P, R, 4)`` array (NaN-padded)."""
    R = max(len(t) for t in thetas)
    out = np.full((len(thetas), R, 4), np.nan)
    for p, t in enumerate(thetas):
        out[p, :len(t)] = t
    return out


def _gof(value, sat, n, groups, p, estimated, gamma):
    """Goodness-of-fit p-values against the saturated model (a free mean per pulse)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        if estimated and not gamma:
            ratio = np.exp(2.0 * (value - sat))            # SSR / SS_pure_error
            d1, d2 = groups - p, n - groups
            return lk.f_sf((ratio - 1.0) * d2 / d1, d1, d2)
        dof = groups - p
        ok = (dof > 0) & ((n > groups) | (not estimated))
        return np.where(ok, lk.chi2_sf(2.0 * n * (value - sat), np.where(ok, dof, 1.0)), np.nan)


def _results(family, models, arr: _Arrays, sol: dict, rows_y, times, spec, interval,
             mask, c=1.0) -> dict:
    """Per-problem results (NumPy) from a :func:`_solve` output (``mask``: the points used;
    ``rows_y``: the amplitudes in the data's unit; ``c (P,)``: the unit the fit worked in,
    :func:`unit_scale`)."""
    dtype = jnp.result_type(float)
    value, A, sd, mean, sat = (np.asarray(v, dtype=float) for v in _evaluate(
        jnp.asarray(sol["theta"], dtype), arr, family=family, gamma=_code(spec.kind)))
    c = np.broadcast_to(np.asarray(c, dtype=float), value.shape)
    # back to the data's unit: the density of y = c y' is p(y') / c
    A, mean = A * c, mean * c[:, None, None]
    if spec.kind in ("gaussian", "binomial"):     # an sd (a CV has no unit)
        sd = sd * c
    mask = np.asarray(mask)
    n, p = sol["n"], sol["p"]
    log_c = n * np.log(c)
    loglik = -n * value - log_c
    k = p + (1 if spec.estimated else 0)
    groups = mask.any(axis=2).sum(axis=(1, 2)).astype(float)
    pval = _gof(value, sat, n, groups, p, spec.estimated, spec.kind == "gamma")
    if spec.kind == "binomial":
        pval = np.full_like(pval, np.nan)
    residuals = np.where(mask, rows_y - mean[:, :, None, :], np.nan)
    fitted = np.where(np.isnan(times), np.nan, mean)
    P = len(models)
    stats = sol.get("stats")
    cons = family_constraints(family)
    if stats is None:
        nan = np.full((P, 4), np.nan)
        vec = np.stack([np.asarray(c.forward(jnp.asarray(sol["theta"][:, i])), float)
                        for i, c in enumerate(cons)], axis=1)
        stats = dict(value=vec, lo=nan, hi=nan, stderr=nan, identifiable=np.zeros((P, 4), bool),
                     at_edge=np.zeros((P, 4), bool), stationary=np.zeros(P, bool),
                     better=np.zeros(P, bool))
    act = sol["active"]
    rms = np.sqrt(np.sum(np.where(mask, rows_y, 0.0) ** 2, axis=(1, 2, 3)) / n)
    rmse = np.sqrt(np.nansum(np.where(mask, residuals, 0.0) ** 2, axis=(1, 2, 3)) / n)
    poor_edge = (stats["at_edge"] & act).any(axis=1) & (rmse > 0.1 * rms)
    reproduces = ~(np.nan_to_num(pval, nan=1.0) < 1e-3) & ~poor_edge
    # fewer points than free parameters: the optimum is a whole set of parameter values
    enough = n >= k
    converged = (stats["stationary"] & reproduces & ~stats["better"] & (not sol["interrupted"])
                 & enough)
    start_vec = np.stack([np.asarray(c.forward(jnp.asarray(sol["start_theta"][..., i])), float)
                          for i, c in enumerate(cons)], axis=-1)
    return dict(stats=stats, A=A, sd=sd, loglik=loglik, aic=2 * k - 2 * loglik,
                bic=k * np.log(n) - 2 * loglik, n=n.astype(int), k=k, pval=pval,
                reproduces=reproduces, converged=converged, enough=enough, fitted=fitted,
                residuals=residuals,
                start_vec=start_vec,
                start_loglik=-n[:, None] * sol["start_loss"] - log_c[:, None])


def _result(m: Model, res: dict, sol: dict, rows: slice, many: bool, noise: str, interval: str,
            level: float, unit: str) -> TrainFitResult:
    """The :class:`TrainFitResult` of the problems ``rows`` (all fitted with model ``m``)."""
    pick = (lambda a: a[rows]) if many else (lambda a: a[rows][0])
    st = res["stats"]
    named = lambda arr: m.params_type(*(pick(arr[:, c]) for c in m.coords))  # noqa: E731
    return TrainFitResult(
        params=named(st["value"]),
        interval=named(np.stack([st["lo"], st["hi"]], axis=-1)),
        stderr=named(st["stderr"]), identifiable=named(st["identifiable"]),
        at_edge=named(st["at_edge"]), scale=pick(res["A"]), noise=pick(res["sd"]),
        loglik=pick(res["loglik"]), aic=pick(res["aic"]), bic=pick(res["bic"]),
        n_points=pick(res["n"]), n_params=int(res["k"][rows][0]), gof_pvalue=pick(res["pval"]),
        reproduces_data=pick(res["reproduces"]), stationary=pick(st["stationary"]),
        converged=pick(res["converged"]), fitted=pick(res["fitted"]),
        residuals=pick(res["residuals"]), best_start=pick(sol["best_start"]),
        start_params=m.params_type(*(pick(res["start_vec"][..., c]) for c in m.coords)),
        start_loglik=pick(res["start_loglik"]), start_local_minimum=pick(sol["start_local"]),
        n_steps=pick(sol["n_steps"]), model=m.name, noise_model=noise,
        interval_method=interval, level=float(level), unit=unit,
        notes=_notes(m, res, rows, many), precision=str(jnp.dtype(jnp.result_type(float))))


def _notes(m: Model, res: dict, rows: slice, many: bool) -> tuple:
    """Why the problems ``rows`` cannot be converged, in words (empty when nothing stands out)."""
    idx = np.arange(len(res["n"]))[rows]
    few = [int(i) for i in idx if not res["enough"][i]]
    if not few:
        return ()
    k = int(np.broadcast_to(res["k"], res["n"].shape)[few[0]])
    where = f" (synapses {[i - int(idx[0]) for i in few]})" if many else ""
    n = int(res["n"][few[0]])
    return (f"fewer points ({n}) than free parameters (n_params = {k}: the {m.n_params} of "
            f"{m.name!r}, the amplitude scale unless normalised, the noise level if estimated)"
            f"{where}: the data do not determine the fit, so it is not converged",)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def check_options(model, noise, noise_sd, noise_cv, interval, level) -> Model:
    """Validate the options shared by the train fits; returns the :class:`Model`."""
    m = get_model(model)
    if noise not in lk.NOISE_MODELS:
        raise ValueError(f"noise={noise!r} is not one of {lk.NOISE_MODELS}")
    if noise == "gaussian" and noise_cv is not None:
        raise ValueError("noise_cv is the CV of the gamma noise model; with noise='gaussian' give "
                         "noise_sd (or nothing to estimate it)")
    if noise == "gamma" and noise_sd is not None:
        raise ValueError("noise_sd is the sd of the Gaussian noise model; with noise='gamma' give "
                         "noise_cv (or nothing to estimate it)")
    if noise == "binomial" and (noise_sd is not None or noise_cv is not None):
        raise ValueError("noise='binomial' estimates its scale s (variance s^2 r (1 - r)); give "
                         "neither noise_sd nor noise_cv")
    if noise_cv is not None:
        arr = _checks.check_numeric("noise_cv", noise_cv)
        if arr.ndim != 0 or not (np.isfinite(arr) and arr > 0):
            raise ValueError(f"noise_cv={noise_cv!r} must be one finite number > 0")
    if interval not in INTERVALS:
        raise ValueError(f"interval={interval!r} is not one of {INTERVALS}")
    lvl = _checks.check_numeric("level", level)
    if lvl.ndim != 0 or not 0.5 <= float(lvl) < 1:
        raise ValueError(f"level={level!r} must be a number in [0.5, 1) (0.95 for 95 % intervals)")
    return m


def prepare_data(spike_times_ms, amplitudes, *, noise, noise_sd, noise_cv, normalise,
                 allow_missing, zeros="amplitude") -> tuple[TrainData, lk.NoiseSpec]:
    """Validate the data (zeros as ``zeros`` says, normalised if asked); returns it with its
    noise spec."""
    if zeros not in ZEROS:
        raise ValueError(f"zeros={zeros!r} is not one of {ZEROS} ('amplitude': a zero is a "
                         f"recorded amplitude of 0; 'missing': zeros are left out of the fit)")
    labels = {}
    if isinstance(spike_times_ms, TrainData):
        if amplitudes is not None:
            raise ValueError("give either a TrainData or spike_times_ms with amplitudes")
        data = spike_times_ms
        sd = data.noise_sd if noise_sd is None and noise == "gaussian" else noise_sd
        labels = dict(protocols=data.protocols, sweeps=data.sweeps)
        data = check_trains(data.spike_times_ms, data.amplitudes, noise_sd=sd,
                            allow_missing=allow_missing, unit=data.unit)._replace(**labels)
    else:
        if amplitudes is None:
            raise ValueError("amplitudes is missing: fit_stp_trains(spike_times_ms, amplitudes)")
        data = check_trains(spike_times_ms, amplitudes, noise_sd=noise_sd,
                            allow_missing=allow_missing)
    zero = data.mask & (np.nan_to_num(data.amplitudes, nan=1.0) == 0.0)
    if noise == "gamma" and zeros == "amplitude" and zero.any():
        idx = np.argwhere(zero)[0]
        raise ValueError(f"amplitudes[{', '.join(str(int(i)) for i in idx)}]=0.0 is a zero "
                         f"amplitude (a release failure?), which the gamma noise model cannot "
                         f"produce (it needs amplitudes > 0): pass zeros='missing' to leave the "
                         f"zeros out of the fit, or use noise='gaussian'")
    if zeros == "missing" and zero.any():
        y = np.where(zero, np.nan, data.amplitudes)
        sd = None if data.noise_sd is None else np.where(zero, np.nan, data.noise_sd)
        data = check_trains(data.spike_times_ms, y, noise_sd=sd, allow_missing=True,
                            unit=data.unit)._replace(protocols=data.protocols, sweeps=data.sweeps)
    if noise == "gamma":      # the positivity check, after the zeros are settled
        check_trains(data.spike_times_ms, data.amplitudes, noise_sd=data.noise_sd, positive=True,
                     allow_missing=True, unit=data.unit)
    if normalise:
        data = _normalise(data)
    estimated = ((data.noise_sd is None) if noise == "gaussian" else
                 noise == "binomial" or noise_cv is None)
    return data, lk.NoiseSpec(noise, estimated, bool(normalise))


def _normalise(data: TrainData) -> TrainData:
    y = data.amplitudes
    first = np.where(data.mask[..., 0], y[..., 0], np.nan)              # (..., P, S)
    flat = first.reshape(first.shape[:-2] + (-1,))
    with np.errstate(invalid="ignore"):
        denom = np.nanmean(flat, axis=-1) if np.isfinite(flat).any(axis=-1).all() else np.nan
    if np.any(~np.isfinite(denom)) or np.any(np.asarray(denom) == 0):
        raise ValueError("normalise=True needs a recorded first pulse with a non-zero mean in "
                         "every synapse")
    denom = np.asarray(denom)[..., None, None, None]
    sd = None if data.noise_sd is None else data.noise_sd / np.abs(denom)
    return data._replace(amplitudes=y / denom, noise_sd=sd)


def train_loss(params: Any, spike_times_ms: ArrayLike | Sequence[Any],
               amplitudes: ArrayLike | Sequence[Any], *, model: str | Model = "tm",
               noise: str = "gaussian", noise_sd: ArrayLike | Sequence[Any] | None = None,
               noise_cv: float | None = None, normalise: bool = False) -> jax.Array:
    """The negative log-likelihood per point that :func:`fit_stp_trains` minimises (the fit
    works on the amplitudes divided by :func:`unit_scale`, which shifts this by a constant).

    Differentiable in ``params`` and in ``amplitudes`` (which may be traced, e.g. ``jax.vmap``
    over bootstrap samples); ``spike_times_ms`` is concrete.  Pulses whose amplitude is NaN
    (when ``amplitudes`` is concrete) or whose spike time is NaN do not count.  One synapse:
    ``amplitudes`` of shape ``(n_protocols, n_sweeps, n_spikes)``; returns a scalar.
    """
    m = get_model(model)
    if not isinstance(params, m.params_type):
        raise TypeError(f"params must be a {m.params_type.__name__} for model {m.name!r}, got "
                        f"{type(params).__name__}")
    check_options(m, noise, noise_sd, noise_cv, "none", 0.95)
    spec = lk.NoiseSpec(noise, noise_sd is None and noise_cv is None, bool(normalise))
    t = check_spike_times("spike_times_ms", spike_times_ms)
    if t.ndim != 2:
        raise ValueError(f"spike_times_ms must have shape (n_protocols, n_spikes), got {t.shape}")
    dtype = jnp.result_type(float)
    y = jnp.asarray(amplitudes, dtype)
    if y.ndim != 3 or (y.shape[0], y.shape[2]) != t.shape:
        raise ValueError(f"amplitudes must have shape (n_protocols={t.shape[0]}, n_sweeps, "
                         f"n_spikes={t.shape[1]}), got {y.shape}")
    concrete = _checks._concrete(amplitudes)
    mask = np.broadcast_to(~np.isnan(t)[:, None, :], y.shape)
    if concrete is not None:
        mask = mask & np.isfinite(np.asarray(concrete, float))
    d = np.diff(t, axis=-1)
    sd = None if noise_sd is None else jnp.broadcast_to(jnp.asarray(noise_sd, dtype), y.shape)
    st = lk.stats(jnp.where(mask, y, 0.0), jnp.asarray(mask), sd=sd, cv=noise_cv, xp=jnp)
    flags = jnp.asarray([m.tie_f, m.zero_f, *spec.flags()])
    arr = _Arrays(jnp.asarray(np.where(np.isfinite(d), d, 1.0), dtype),
                  lk.Stats(*(jnp.asarray(v, dtype) for v in st)), flags)
    vec = m.family_vector(params)
    theta = jnp.stack([c.inverse(vec[i]) for i, c in enumerate(family_constraints(m.family))])
    return _objective(m.family, _code(noise))(theta, arr, None)


def fit_stp_trains(spike_times_ms: TrainData | ArrayLike | Sequence[Any],
                   amplitudes: ArrayLike | Sequence[Any] | None = None, *,
                   model: str | Model = "tm", noise: str = "gaussian",
                   noise_sd: ArrayLike | Sequence[Any] | None = None, noise_cv: float | None = None,
                   normalise: bool = False, init: ArrayLike | Sequence[Any] | None = None,
                   check_starts: bool = True, interval: str = "profile", level: float = 0.95,
                   max_rel_uncertainty: float = 0.5, allow_missing: bool = False,
                   zeros: str = "amplitude", max_steps: int = 1000,
                   progress: Callable | None = None, precision: str = "auto") -> TrainFitResult:
    r"""Maximum-likelihood fit of a plasticity model to amplitude trains, with intervals.

    Example (real data shipped with jaxlif)::

        data = jaxlif.fitting.mossy_fibre()                 # 20 and 100 Hz trains, mean +- SEM
        fit = jaxlif.fit_stp_trains(data, model="tm4")
        fit.params, fit.interval, fit.reproduces_data, fit.aic

    Args:
        spike_times_ms: ``(n_protocols, n_spikes)`` spike times [ms] (NaN-padded), or a
            :class:`~jaxlif.fitting.TrainData` (then ``amplitudes`` is ``None`` and its
            ``noise_sd``, if any, is used unless ``noise_sd`` is given).
        amplitudes: ``(n_protocols, n_sweeps, n_spikes)``, or ``(n_synapses, ...)`` to fit many
            synapses in one call (each gets its own parameters, scale and noise).
        model: ``"tm"``, ``"tm4"``, ``"depression"``, ``"srp"`` (:mod:`~jaxlif.fitting.models`).
        noise: ``"gaussian"`` (additive), ``"gamma"`` (multiplicative; amplitudes > 0) or
            ``"binomial"`` (Gaussian with the release-dependent variance ``s^2 r (1 - r)`` of a
            quantal response, ``s`` estimated: the scatter follows the train's history;
            :mod:`~jaxlif.fitting.likelihood`).
        noise_sd: Gaussian sd if known (scalar, per pulse or per point); else estimated.
        noise_cv: gamma coefficient of variation if known; else estimated.
        normalise: divide by the mean first-pulse amplitude and fix the first pulse to 1;
            otherwise a free amplitude scale is fitted.
        init: extra start(s): the model's parameters (fields scalar or ``(n_starts,)``) or an
            ``(n_starts, n_fields)`` array.  check_starts: also run the model's default grid (and
            so detect a start that ends in a local minimum).
        interval: ``"profile"`` (default, calibrated), ``"wald"`` (local, cheap) or ``"none"``.
        level: confidence level of the intervals.
        max_rel_uncertainty: identifiability threshold (see :class:`TrainFitResult`).
        allow_missing: accept NaN amplitudes inside recorded sweeps (missing pulses).
        zeros: what an amplitude of exactly 0 is.  ``"amplitude"`` (default): a recorded
            amplitude of 0 (a release failure is a response of size 0; it lowers the mean, and
            the gamma noise model, which needs amplitudes > 0, refuses it).  ``"missing"``: a
            point not recorded, left out of the fit like a NaN (as Rossbroich et al. 2021 treat
            failures; the fit then describes the amplitude of the successes).
        max_steps: most optimiser steps.  progress: ``progress(step, best_loss, n_done)``.
        precision: the float type of the fit.  ``"auto"`` (default): float64 when a synapse has
            at least :data:`AUTO_FLOAT64_POINTS` (2000) amplitudes, else JAX's default (float32
            unless x64 is on): in float32 the total log-likelihood of ``n`` points is resolved
            to about ``n 1e-7`` units, and 14,000-amplitude fits stopped up to 0.03 units short
            of their optimum.  ``"default"``: JAX's default float.  ``"float64"``: always
            (``jax.enable_x64`` around this call only; results are NumPy arrays either way).

    Returns:
        :class:`TrainFitResult`.

    Raises:
        ValueError: bad data (:func:`~jaxlif.fitting.check_trains`) or options.
        FitInterrupted: Ctrl-C during the fit; ``err.partial`` holds the best points so far.
    """
    m = check_options(model, noise, noise_sd, noise_cv, interval, level)
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {type(progress).__name__}")
    max_steps = _checks.check_count("max_steps", max_steps, minimum=1)
    data, spec = prepare_data(spike_times_ms, amplitudes, noise=noise, noise_sd=noise_sd,
                              noise_cv=noise_cv, normalise=normalise,
                              allow_missing=allow_missing, zeros=zeros)
    many = data.amplitudes.ndim == 4
    n_max = int(data.mask.reshape((-1,) + data.mask.shape[-3:]).sum(axis=(1, 2, 3)).max())
    with precision_context(precision, n_max):
        rows = _rows(data, noise, noise_cv, spec.normalised)
        N = rows["y"].shape[0]
        starts = _starts(m, init, check_starts, rows["times"])
        arr = _arrays(rows, np.arange(N), [m] * N, spec)
        sol = _solve(arr, m.family, [m] * N, [starts] * N, interval=interval,
                     level=float(level), max_rel=max_rel_uncertainty, max_steps=max_steps,
                     progress=progress, spec=spec)
        res = _results(m.family, [m] * N, arr, sol, rows["y_nan"], rows["times"], spec,
                       interval, rows["mask"], rows["c"])
        fit = _result(m, res, sol, slice(0, N), many, noise,
                      interval if not sol["interrupted"] else "none (interrupted)", float(level),
                      data.unit)
    if sol["interrupted"]:
        raise FitInterrupted(f"fit_stp_trains interrupted after {sol['steps']} optimiser steps; "
                             f"err.partial holds the best parameters so far (not converged, no "
                             f"intervals)", fit)
    return fit
