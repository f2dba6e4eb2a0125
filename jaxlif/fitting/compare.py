r"""Model comparison on amplitude trains: AIC, BIC and held-out-protocol cross-validation.

:func:`compare_models` fits several models (:mod:`~jaxlif.fitting.models`) to the same trains and
tabulates, per model::

    k          parameters (model + amplitude scale + estimated noise level)
    loglik     maximised log-likelihood
    aic, bic   2k - 2 loglik,  k log(n) - 2 loglik      (lower is better)
    cv_nll     held-out-protocol cross-validation: for each protocol, fit on the others and
               evaluate the negative log-likelihood of the held-out protocol's amplitudes
               (noise level and scale from the training fit); mean per held-out point
    cv_rmse    the same folds' root-mean-square prediction error (the data's unit)

plus each full fit's goodness of fit (``reproduces_data``, ``gof_pvalue``).  AIC and BIC reward fit
and penalise parameters; cross-validation asks the question that matters for a plasticity model:
does it predict a protocol it has not seen?  All models of one family (the three TM variants;
SRP) run in one vmapped optimiser call, and the cross-validation in one such call per held-out
protocol: the same problem shapes, so the folds reuse the full fits' compiled programs.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif._host import device_array
from jaxlif.fitting import trains as T
from jaxlif.fitting.data import TrainData
from jaxlif.fitting.models import Model, get_model

__all__ = ["ModelComparison", "compare_models"]


class ModelComparison(NamedTuple):
    """Result of :func:`compare_models`.

    Attributes:
        table: one dict per model (keys ``model, k, loglik, aic, bic, delta_aic, cv_nll,
            cv_rmse, reproduces_data, gof_pvalue, converged``), in the order given.
        fits: ``{model: TrainFitResult}`` of the full fits.
        best_aic, best_cv: the model with the lowest AIC and with the lowest ``cv_nll``.
        cv_fitted: ``{model: (n_protocols, n_spikes)}`` each protocol's prediction by the fit
            that did not see it.
    """

    table: list
    fits: dict
    best_aic: str
    best_cv: str | None
    cv_fitted: dict

    def format(self) -> str:
        """The table as aligned text."""
        head = (f"{'model':<11}{'k':>3}{'loglik':>11}{'AIC':>10}{'dAIC':>8}{'BIC':>10}"
                f"{'cv_nll':>9}{'cv_rmse':>9}  reproduces  p(gof)")
        lines = [head]
        for r in self.table:
            lines.append(f"{r['model']:<11}{r['k']:>3}{r['loglik']:>11.2f}{r['aic']:>10.2f}"
                         f"{r['delta_aic']:>8.2f}{r['bic']:>10.2f}{r['cv_nll']:>9.3f}"
                         f"{r['cv_rmse']:>9.3g}  {str(r['reproduces_data']):<10}  "
                         f"{r['gof_pvalue']:.3g}")
        return "\n".join(lines)


def compare_models(spike_times_ms: TrainData | ArrayLike | Sequence[Any],
                   amplitudes: ArrayLike | Sequence[Any] | None = None, *,
                   models: Sequence[str | Model] = ("tm", "tm4", "depression", "srp"),
                   noise: str = "gaussian", noise_sd: ArrayLike | Sequence[Any] | None = None,
                   noise_cv: float | None = None,
                   normalise: bool = False, cross_validate: bool = True,
                   interval: str = "profile", level: float = 0.95,
                   allow_missing: bool = False, zeros: str = "amplitude",
                   max_steps: int = 1000, precision: str = "auto",
                   noise_taus: Sequence[float] | None = None,
                   fit_noise_taus: bool = False) -> ModelComparison:
    """Fit every model in ``models`` to one synapse's trains and compare them (module docstring).

    Arguments as in :func:`~jaxlif.fit_stp_trains` (one synapse: ``amplitudes`` of shape
    ``(n_protocols, n_sweeps, n_spikes)`` or a :class:`~jaxlif.fitting.TrainData`); with
    ``noise="gamma_kernel"`` every model gets the same SD kernel (``noise_taus``, default
    15, 100, 650 ms; each model's fit has its own time constants, started there, when
    ``fit_noise_taus``), so the models differ only in their mean.
    ``cross_validate`` needs at least two protocols.

    Example::

        cmp = jaxlif.fitting.compare_models(jaxlif.fitting.mossy_fibre())
        print(cmp.format())
    """
    ms = [get_model(m) for m in models]
    if not ms:
        raise ValueError("models is empty: give at least one model name")
    if len({m.name for m in ms}) != len(ms):
        raise ValueError(f"models has duplicates: {[m.name for m in ms]}")
    for m in ms:
        T.check_options(m, noise, noise_sd, noise_cv, interval, level)
    if precision not in T.PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {T.PRECISIONS}")
    data, spec = T.prepare_data(spike_times_ms, amplitudes, noise=noise, noise_sd=noise_sd,
                                noise_cv=noise_cv, normalise=normalise,
                                allow_missing=allow_missing, zeros=zeros)
    if data.amplitudes.ndim != 3:
        raise ValueError("compare_models takes one synapse: amplitudes of shape (n_protocols, "
                         "n_sweeps, n_spikes)")
    n_prot = data.amplitudes.shape[0]
    if cross_validate and n_prot < 2:
        raise ValueError("cross_validate=True needs at least two protocols (one is held out at a "
                         "time); pass cross_validate=False")
    fits, cv = {}, {}
    nt = T._check_noise_taus(noise, noise_taus, fit_noise_taus)
    if noise == "gamma_kernel" and nt is None:
        nt = T.SRP_TAUS_MS
    layouts = {m.name: T.layout_of(m, noise, nt, fit_noise_taus) for m in ms}
    with T.precision_context(precision, int(data.mask.sum()), noise):
        rows = T._rows(data, noise, noise_cv, spec.normalised)
        for lay in dict.fromkeys(layouts.values()):
            fam = [m for m in ms if layouts[m.name] == lay]
            arr = T._arrays(rows, np.zeros(len(fam), int), fam, spec)
            same = np.zeros(len(fam), int)
            sol = T._solve(arr, lay, fam, [T.model_starts(m, rows["times"]) for m in fam],
                           interval=interval, level=float(level), max_rel=0.5,
                           max_steps=max_steps, progress=None, spec=spec,
                           groups=np.zeros(len(fam), int),
                           first_mean=T.first_means(rows, same))
            res = T._results(lay, fam, arr, sol, rows["y_nan"], rows["times"], spec,
                             interval, rows["mask"][same], rows["c"][same])
            for i, m in enumerate(fam):
                fits[m.name] = T._result(m, res, sol, slice(i, i + 1), False, noise, interval,
                                         float(level), data.unit)
            if cross_validate:
                cv.update(_cross_validate(fam, lay, rows, spec, n_prot, max_steps))
    table = []
    for m in ms:
        f = fits[m.name]
        row = dict(model=m.name, k=f.n_params, loglik=float(f.loglik), aic=float(f.aic),
                   bic=float(f.bic), reproduces_data=bool(f.reproduces_data),
                   gof_pvalue=float(f.gof_pvalue), converged=bool(f.converged),
                   cv_nll=float(cv[m.name][0]) if cross_validate else np.nan,
                   cv_rmse=float(cv[m.name][1]) if cross_validate else np.nan)
        table.append(row)
    best_aic = min(table, key=lambda r: r["aic"])["model"]
    for r in table:
        r["delta_aic"] = r["aic"] - min(t["aic"] for t in table)
    best_cv = min(table, key=lambda r: r["cv_nll"])["model"] if cross_validate else None
    return ModelComparison(table=table, fits=fits, best_aic=best_aic, best_cv=best_cv,
                           cv_fitted={k: v[2] for k, v in cv.items()})


def _cross_validate(fam, family, rows, spec, n_prot, max_steps) -> dict:
    """Held-out-protocol scores of the models ``fam`` (one layout ``family``):
    ``{name: (nll, rmse, pred)}``."""
    models, held = [], []
    mask = rows["mask"][0]
    dtype = jnp.result_type(float)
    fits = []
    # One call per held-out protocol, fitting every model of the family on the other protocols:
    # the problems of one call have the shapes of the full fits (one problem per model), so the
    # folds run the full fits' compiled programs.
    zeros = np.zeros(len(fam), int)
    for p in range(n_prot):
        train = mask.copy()
        train[p] = False
        masks = np.repeat(train[None], len(fam), axis=0)
        arr = T._arrays(rows, zeros, fam, spec, masks=masks)
        sol = T._solve(arr, family, fam, [T.model_starts(m, rows["times"]) for m in fam],
                       interval="none", level=0.95, max_rel=0.5, max_steps=max_steps,
                       progress=None, spec=spec, groups=zeros,
                       first_mean=T.first_means(rows, zeros, masks))
        fits.append([np.asarray(v, dtype=float) for v in T._evaluate(
            device_array(sol["theta"], dtype), arr, family=T._as_layout(family, fam, spec))])
        models += fam
        held += [p] * len(fam)
    _, A, noise, mean, _, sd_pulse = (np.concatenate(v) for v in zip(*fits))
    y = rows["y"][0]
    sd_given = None if rows["sd"] is None else rows["sd"][0]
    out = {}
    for m in fam:
        nll, sq, count = 0.0, 0.0, 0
        pred = np.full(mask.shape[::2], np.nan)
        for i, (mm, p) in enumerate(zip(models, held)):
            if mm is not m:
                continue
            test = mask[p]
            mu = mean[i, p][None, :]
            yy = y[p]
            pred[p] = mean[i, p]
            if spec.kind == "gamma_kernel":      # gamma with the kernel SD of each pulse
                sd = sd_pulse[i, p][None, :]
                k = (mu / sd) ** 2
                beta = mu / sd ** 2
                from math import lgamma
                yy1 = np.where(test, yy, 1.0)
                per = (np.vectorize(lgamma)(k) - k * np.log(beta) - (k - 1) * np.log(yy1)
                       + beta * yy1)
            elif spec.kind == "gamma":
                cv = noise[i] if spec.estimated else rows["cv"]
                k = 1.0 / np.asarray(cv) ** 2
                from math import lgamma
                lg = np.vectorize(lgamma)(k) if np.ndim(k) else lgamma(float(k))
                per = -k * np.log(k) + lg - (k - 1) * np.log(np.where(test, yy, 1.0)) \
                    + k * np.log(mu) + k * np.where(test, yy, 1.0) / mu
            elif spec.kind == "binomial":       # sd = s sqrt(r (1 - r)), r = mu / A
                r = mu / A[i]
                sd = noise[i] * np.sqrt(np.maximum(r * (1.0 - r), 1e-12))
                per = (yy - mu) ** 2 / (2 * sd ** 2) + np.log(sd) + 0.5 * np.log(2 * np.pi)
            else:
                sd = noise[i] if spec.estimated else sd_given[p]
                per = (yy - mu) ** 2 / (2 * np.asarray(sd) ** 2) + np.log(sd) \
                    + 0.5 * np.log(2 * np.pi)
            nll += float(np.sum(np.where(test, per, 0.0)))
            sq += float(np.sum(np.where(test, (yy - mu) ** 2, 0.0)))
            count += int(test.sum())
        # back to the data's unit (the fit saw y / c): -log p(y) = -log p(y / c) + log c
        c = float(rows["c"][0])
        out[m.name] = (nll / count + np.log(c), c * np.sqrt(sq / count), c * pred)
    return out
