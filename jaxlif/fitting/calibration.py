r"""Calibration studies: how often do the 95 % intervals contain the truth?

An interval method is honest when its coverage (the fraction of simulated datasets whose
interval contains the true parameter) is close to its nominal level.  These functions simulate
``n_datasets`` datasets from known parameters, fit them all in one vmapped call and measure the
coverage of every parameter, with a binomial 95 % (Wilson) interval for the coverage itself.

Two methods:

``"lr"`` (likelihood ratio; fast)
    The profile-likelihood interval of parameter ``j`` contains the truth exactly when the
    deviance of the best fit with ``theta_j`` held at its true value stays below the threshold
    ``q`` (docs/fitting.md).  So the coverage of the profile interval is measured directly: one
    multi-start fit per dataset and one constrained fit per dataset and parameter, no endpoint
    search.  This is what the default test suite runs (200 datasets).
``"profile"``
    The intervals :func:`~jaxlif.fit_stp_trains` (or :func:`~jaxlif.fit_stp`) actually reports,
    endpoints searched; slower, run by ``benchmarks/fit_calibration.py`` and the slow tests.

Noise: ``rel_noise`` sets a Gaussian sd equal to that fraction of the mean amplitude (trains:
over all pulses of all protocols; ratio curves: the absolute sd of the ratios is ``rel_noise``,
i.e. a fraction of a ratio of 1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif import _checks
from jaxlif.fitting import likelihood as lk
from jaxlif.fitting import ratio_fit as RF
from jaxlif.fitting import trains as T
from jaxlif.fitting import uncertainty as unc
from jaxlif.fitting.data import check_trains, simulate_trains
from jaxlif.fitting.forward import stp_amplitudes
from jaxlif.fitting.models import SRP_TAUS_MS, family_constraints, get_model
from jaxlif.fitting.optimise import minimise_lanes
from jaxlif.fitting.ratio import kernel_inputs, stp_ratio

__all__ = ["Coverage", "coverage_trains", "coverage_trains_kernel", "coverage_ratio",
           "wilson_interval"]


class Coverage(NamedTuple):
    """Result of a calibration study.

    Attributes:
        coverage: ``{field: fraction of datasets whose interval contains the truth}``.
        ci: ``{field: (low, high)}`` Wilson 95 % interval of that fraction.
        n_datasets: datasets simulated.  n_valid: datasets whose fit succeeded (finite).
        method: ``"lr"`` or ``"profile"``.  level: nominal level of the intervals.
        config: the study's settings (JSON-ready).
        covered: ``(n_datasets, n_fields)`` booleans: the interval of that dataset holds the truth.
    """

    coverage: dict
    ci: dict
    n_datasets: int
    n_valid: int
    method: str
    level: float
    config: dict
    covered: np.ndarray | None = None


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion ``k / n``."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (mid - half, mid + half)


def _summarise(fields, covered, valid, method, level, config) -> Coverage:
    cov, ci = {}, {}
    nv = int(valid.sum())
    for j, f in enumerate(fields):
        k = int(np.sum(covered[valid, j]))
        cov[f] = k / nv if nv else math.nan
        ci[f] = wilson_interval(k, nv)
    return Coverage(cov, ci, int(valid.size), nv, method, float(level), config,
                    np.asarray(covered, bool))


def _check_study(key, method, n_datasets) -> int:
    """The arguments every study shares, checked before anything is traced."""
    _checks.check_key(key)
    if method not in ("lr", "profile"):
        raise ValueError(f"method={method!r} is not one of ('lr', 'profile')")
    return _checks.check_count("n_datasets", n_datasets, minimum=1)


def coverage_trains(params, spike_times_ms, *, key, model="tm", n_sweeps: int = 5,
                    n_datasets: int = 200, rel_noise: float = 0.1, scale: float = 1.0,
                    method: str = "lr", level: float = 0.95,
                    max_steps: int = 1000, noise: str = "gaussian",
                    noise_cv: float | None = None, noise_sd: float | None = None,
                    noise_params=None, precision: str = "auto") -> Coverage:
    """Coverage of :func:`~jaxlif.fit_stp_trains`'s intervals on simulated trains.

    Args:
        params: true parameters of ``model``.  spike_times_ms: ``(n_protocols, n_spikes)``.
        key: ``jax.random`` key of the simulated noise.
        n_sweeps: sweeps per protocol.  n_datasets: datasets (synapses) simulated.
        rel_noise: ``noise="gaussian"``: sd as a fraction of the mean amplitude.
        scale: amplitude scale.
        method: ``"lr"`` (Gaussian noise only) or ``"profile"`` (module docstring).
        level: interval level.
        noise: the noise model of the simulation and of the fit (the fit estimates its level):
            ``"gaussian"``, ``"gamma"`` (CV ``noise_cv``), ``"binomial"`` (sd ``noise_sd *
            sqrt(r (1 - r))``) or ``"gamma_kernel"`` (``noise_params``; the coverage of the noise
            parameters is reported too: :func:`coverage_trains_kernel`).
        precision: of the fits (:func:`~jaxlif.fit_stp_trains`).
    """
    if noise == "gamma_kernel":
        if method != "profile":
            raise ValueError(f"noise='gamma_kernel' is studied with method='profile', got "
                             f"{method!r}")
        return coverage_trains_kernel(params, noise_params, spike_times_ms, key=key, model=model,
                                      n_sweeps=n_sweeps, n_datasets=n_datasets, scale=scale,
                                      level=level, max_steps=max_steps, precision=precision)
    if noise not in ("gaussian", "gamma", "binomial"):
        raise ValueError(f"noise={noise!r} is not one of ('gaussian', 'gamma', 'binomial', "
                         f"'gamma_kernel')")
    if noise != "gaussian" and method != "profile":
        raise ValueError(f"method='lr' is implemented for noise='gaussian'; use "
                         f"method='profile' for noise={noise!r}")
    level_of = {"gamma": ("noise_cv", noise_cv), "binomial": ("noise_sd", noise_sd)}
    if noise in level_of and (level_of[noise][1] is None or not float(level_of[noise][1]) > 0):
        raise ValueError(f"noise={noise!r} needs {level_of[noise][0]} > 0, got "
                         f"{level_of[noise][1]!r}")
    m = get_model(model)
    n_datasets = _check_study(key, method, n_datasets)
    times = np.asarray(spike_times_ms, dtype=float)
    release = np.asarray(stp_amplitudes(params, times, model=m), dtype=float)
    batch = m.params_type(*(np.full(n_datasets, float(v)) for v in params))
    config = dict(model=m.name, noise=noise,
                  params={f: float(v) for f, v in zip(m.fields, params)},
                  spike_times_ms=np.where(np.isnan(times), None, times).tolist(),
                  n_sweeps=n_sweeps, n_datasets=n_datasets, scale=scale)
    if noise == "gaussian":
        sd = float(rel_noise) * float(scale) * float(np.nanmean(release))
        y = simulate_trains(key, batch, times, model=m, n_sweeps=n_sweeps, scale=scale,
                            noise_sd=sd)
        config.update(rel_noise=rel_noise, noise_sd=sd)
    else:
        y = simulate_trains(key, batch, times, model=m, n_sweeps=n_sweeps, scale=scale,
                            noise=noise, noise_cv=noise_cv, noise_sd=noise_sd)
        config.update(noise_cv=noise_cv, noise_sd=noise_sd)
    truth = np.array([float(v) for v in params])
    if method == "profile":
        fit = T.fit_stp_trains(times, y, model=m, noise=noise, level=level,
                               max_steps=max_steps, precision=precision)
        return _profile_coverage(fit, m.fields, truth, list(fit.interval), level, config)
    data = check_trains(times, y)
    spec = lk.NoiseSpec("gaussian", True, False)
    rows = T._rows(data, "gaussian", None)
    N = n_datasets
    arr = T._arrays(rows, np.arange(N), [m] * N, spec)
    starts = T.model_starts(m, times)
    sol = T._solve(arr, m.family, [m] * N, [starts] * N, interval="none", level=level,
                   max_rel=0.5, max_steps=max_steps, progress=None, spec=spec)
    covered = _lr_covered(m, sol, arr, truth, max_steps)
    valid = np.isfinite(sol["loss"])
    return _summarise(m.fields, covered, valid, method, level, config)


def _profile_coverage(fit, fields, truth, intervals, level, config) -> Coverage:
    """Coverage of the reported ``intervals`` (one ``(N, 2)`` array per field) of ``fit``, a
    batched :class:`~jaxlif.fitting.TrainFitResult`; ``config`` gains the fits' flags.  A
    dataset is valid when its fit is finite and no endpoint is left unsettled (NaN)."""
    lo = np.stack([np.asarray(v)[:, 0] for v in intervals], axis=1)
    hi = np.stack([np.asarray(v)[:, 1] for v in intervals], axis=1)
    covered = (lo <= truth) & (truth <= hi)
    valid = (np.all(~np.isnan(lo) & ~np.isnan(hi), axis=1)
             & np.isfinite(np.asarray(fit.loglik, dtype=float)))
    config = {**config, "n_points": np.asarray(fit.n_points).tolist(),
              "stationary": np.asarray(fit.stationary).tolist(),
              "loglik": np.asarray(fit.loglik).tolist(),
              "at_edge": {f: np.asarray(getattr(fit.at_edge, f)).tolist()
                          for f in fit.params._fields},
              "low": lo.tolist(), "high": hi.tolist()}
    return _summarise(fields, covered, valid, "profile", level, config)


def _lr_covered(m, sol, arr, truth, max_steps) -> np.ndarray:
    """``(N, n_fields)``: the deviance with each field held at its true value is below ``q``."""
    cons = family_constraints(m.family)
    N = sol["theta"].shape[0]
    true_vec = np.asarray(m.family_vector(m.params_type(*truth)), dtype=float)
    true_theta = np.array([float(c.inverse(jnp.asarray(v))) for c, v in zip(cons, true_vec)])
    objective = T._objective(m.family, False)
    lanes, owner, free = [], [], []
    for j, c in enumerate(m.coords):
        for p in range(N):
            for origin in (sol["theta"][p], true_theta):   # from the optimum and from the truth
                th = origin.copy()
                th[c] = true_theta[c]
                lanes.append(th)
                owner.append(p)
                fr = sol["active"][p].copy()
                fr[c] = False
                free.append(fr)
    n_pts = float(np.min(sol["n"]))
    th, loss, *_ = minimise_lanes(objective, np.array(lanes), np.array(owner), arr, None,
                                  free=np.array(free), max_steps=max_steps,
                                  **T._stop_rules(n_pts), min_lanes=sol["lanes"])
    loss = loss.reshape(len(m.coords), N, 2).min(axis=2).T                 # (N, fields)
    dev = np.asarray(unc.deviance(sol["kind"], jnp.asarray(loss),
                                  jnp.asarray(sol["loss"][:, None]),
                                  jnp.asarray(np.asarray(sol["coef"])[:, None])), dtype=float)
    return dev <= np.asarray(sol["q"])[:, None]


def coverage_trains_kernel(params, noise_params, spike_times_ms, *, key, model="srp",
                           n_sweeps: int = 200, n_datasets: int = 20, scale: float = 1.0,
                           mask=None, level: float = 0.95, max_steps: int = 1000,
                           precision: str = "float64", fit_noise_taus: bool = False,
                           start_taus=None) -> Coverage:
    """Coverage of the profile intervals of ``noise="gamma_kernel"`` fits on simulated trains.

    Every dataset is simulated from the same truth (``params`` of ``model``, the SD kernel
    ``noise_params``, an :class:`~jaxlif.fitting.trains.SDKernelParams` whose time constants are
    ``noise_params.tau`` or, when that is ``None``, the default 15, 100, 650 ms, and the amplitude
    ``scale``), gamma amplitudes with the kernel SD, then fitted (all datasets in one call, profile
    intervals as reported) with those time constants given, or with ``fit_noise_taus=True``
    fitted from ``start_taus`` [ms] (default: the true ones).  ``mask (n_protocols, n_sweeps,
    n_spikes)``: the points that exist (e.g. a real data set's ``mask``: its numbers of sweeps
    per protocol and its missing pulses); others are left out.  The coverage is reported for
    every model field and for ``s``, ``b_s``, ``c1..cJ`` (and ``tau1..tauJ`` when fitted).
    """
    from jaxlif.fitting.trains import SDKernelParams
    m = get_model(model)
    n_datasets = _check_study(key, "profile", n_datasets)
    if not isinstance(noise_params, SDKernelParams):
        raise TypeError("noise_params must be an SDKernelParams")
    c = [float(x) for x in noise_params.c]
    taus = [float(t) for t in (SRP_TAUS_MS if noise_params.tau is None else noise_params.tau)]
    if len(taus) != len(c):
        raise ValueError(f"noise_params has {len(c)} amplitudes c_j and {len(taus)} time "
                         f"constants; give one per c_j")
    if start_taus is not None and not fit_noise_taus:
        raise ValueError("start_taus is the start of fitted SD time constants: add "
                         "fit_noise_taus=True")
    start = taus if start_taus is None else [float(t) for t in start_taus]
    if len(start) != len(c) or not all(np.isfinite(t) and t > 0 for t in start):
        raise ValueError(f"start_taus={start_taus!r} must be {len(c)} time constants > 0 ms")
    times = np.asarray(spike_times_ms, dtype=float)
    batch = m.params_type(*(np.full(n_datasets, float(v)) for v in params))
    y = simulate_trains(key, batch, times, model=m, n_sweeps=int(n_sweeps), scale=scale,
                        noise="gamma_kernel",
                        noise_params=SDKernelParams(noise_params.s, noise_params.b_s, c),
                        noise_taus=taus)
    if mask is not None:
        y = np.where(np.asarray(mask, bool)[None], y, np.nan)
    fit = T.fit_stp_trains(times, y, model=m, noise="gamma_kernel", level=level,
                           max_steps=max_steps, allow_missing=mask is not None,
                           precision=precision, noise_taus=start,
                           fit_noise_taus=bool(fit_noise_taus))
    fields = list(m.fields) + ["s", "b_s"] + [f"c{j + 1}" for j in range(len(c))]
    truth = [float(v) for v in params] + [float(noise_params.s), float(noise_params.b_s)] + c
    ivs = list(fit.interval) + [fit.noise_interval.s, fit.noise_interval.b_s] + list(
        fit.noise_interval.c)
    if fit_noise_taus:
        fields += [f"tau{j + 1}" for j in range(len(c))]
        truth += taus
        ivs += list(fit.noise_interval.tau)
    config = dict(model=m.name, noise="gamma_kernel",
                  params={f: float(v) for f, v in zip(m.fields, params)},
                  noise_params=dict(s=float(noise_params.s), b_s=float(noise_params.b_s), c=c,
                                    taus_ms=taus),
                  fit_noise_taus=bool(fit_noise_taus), start_taus=start,
                  scale=float(scale), n_sweeps=int(n_sweeps), n_datasets=n_datasets,
                  masked=mask is not None)
    return _profile_coverage(fit, fields, np.array(truth), ivs, level, config)


def coverage_ratio(params, rates_hz, *, key, n_datasets: int = 200, rel_noise: float = 0.02,
                   method: str = "lr", level: float = 0.95, mode: str = "tutorial",
                   max_steps: int = 500) -> Coverage:
    """Coverage of :func:`~jaxlif.fit_stp`'s intervals on noisy ratio curves.

    The datasets are ``stp_ratio(params) + rel_noise * N(0, 1)`` (noise level estimated by the
    fit, as a user without replicates would).
    """
    n_datasets = _check_study(key, method, n_datasets)
    rates = np.asarray(rates_hz, dtype=float)
    clean = np.asarray(stp_ratio(params, rates, mode=mode), dtype=float)
    noise = np.asarray(jax.random.normal(key, (n_datasets, rates.size), jnp.result_type(float)))
    targets = np.maximum(clean + rel_noise * noise, 1e-3)
    truth = np.array([float(v) for v in params])
    config = dict(params=dict(zip(("U0", "tau_d", "tau_f"), truth.tolist())),
                  rates_hz=rates.tolist(), n_datasets=n_datasets, rel_noise=rel_noise,
                  mode=mode)
    fields = ("U0", "tau_d", "tau_f")
    if method == "profile":
        fit = RF.fit_stp_dataset(rates, targets, mode=mode, level=level, max_steps=max_steps)
        lo = np.stack([np.asarray(v)[:, 0] for v in fit.interval], axis=1)
        hi = np.stack([np.asarray(v)[:, 1] for v in fit.interval], axis=1)
        covered = (lo <= truth) & (truth <= hi)
        valid = np.isfinite(np.asarray(fit.loss))
        return _summarise(fields, covered, valid, method, level, config)
    fit = RF.fit_stp_dataset(rates, targets, mode=mode, interval="none", max_steps=max_steps)
    n, p = rates.size, 3
    tmin = RF.tau_min(mode, 0.1)
    theta_hat = RF._to_theta(np.stack([np.asarray(v, float) for v in fit.params], axis=1), tmin)
    true_theta = RF._to_theta(truth[None], tmin)[0]
    isi, m, euler = kernel_inputs(rates, mode, 0.1, 10)
    pad = -n % 8
    isi = jnp.concatenate([isi, jnp.broadcast_to(isi[:1], (pad,) + isi.shape[1:])])
    dtype = jnp.result_type(float)
    shared = (isi, m, euler, jnp.asarray(0.1, dtype), jnp.asarray(5.0, dtype),
              jnp.asarray(tmin, dtype))
    batched = (jnp.asarray(np.pad(targets, ((0, 0), (0, pad)), constant_values=1.0), dtype),
               jnp.asarray(np.pad(np.ones((n_datasets, n)), ((0, 0), (0, pad))), dtype))
    lanes, owner, free = [], [], []
    for j in range(3):
        for d in range(n_datasets):
            for origin in (theta_hat[d], true_theta):
                th = origin.copy()
                th[j] = true_theta[j]
                lanes.append(th)
                owner.append(d)
                fr = np.ones(3, bool)
                fr[j] = False
                free.append(fr)
    _, loss, *_ = minimise_lanes(RF._objective, np.array(lanes), np.array(owner), batched,
                                 shared, free=np.array(free), max_steps=max_steps,
                                 patience=20, rel_improve=1e-4, gtol_rel=1e-4, min_lanes=16)
    loss = loss.reshape(3, n_datasets, 2).min(axis=2).T
    loss_min = np.asarray(fit.loss, dtype=float)[:, None]
    # a constrained fit below the free one means the free fit missed the global optimum
    loss_min = np.minimum(loss_min, loss.min(axis=1, keepdims=True))
    q = lk.t2_quantile(level, n - p)[0]
    dev = (n - p) * (loss / np.maximum(loss_min, 1e-30) - 1.0)
    covered = dev <= q
    valid = np.isfinite(loss_min[:, 0])
    return _summarise(fields, covered, valid, method, level, config)
