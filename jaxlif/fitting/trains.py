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
from jaxlif._host import device_array
from jaxlif import constraints as C
from jaxlif.fitting import likelihood as lk
from jaxlif.fitting import uncertainty as unc
from jaxlif.fitting.data import TrainData, check_trains, given_sd_taus
from jaxlif.fitting.forward import check_spike_times
from jaxlif.fitting.models import (SRP_TAUS_MS, Model, ScaledReal, family_constraints,
                                   family_dim, family_release, get_model, kernel_basis,
                                   kernel_drive, start_candidates)
from jaxlif.fitting.optimise import FitInterrupted, _bucket, evaluate_lanes, minimise_lanes

__all__ = ["TrainFitResult", "fit_stp_trains", "INTERVALS", "ZEROS", "train_loss", "unit_scale",
           "model_starts", "PRECISIONS", "AUTO_FLOAT64_POINTS", "SDKernelParams", "Layout",
           "layout_of"]

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


def precision_context(precision: str, n_points: int, noise: str | None = None):
    """The context a fit of ``n_points`` amplitudes under noise model ``noise`` runs in
    (``jax.enable_x64`` or nothing).  ``"auto"``: float64 from :data:`AUTO_FLOAT64_POINTS`
    amplitudes on, and always for ``noise="gamma_kernel"``, whose coverage studies run in float64
    (:func:`~jaxlif.fitting.calibration.coverage_trains_kernel`).  On ``benchmarks/bench_fit.py``'s
    kernel-SD design (100 synapses of 200 amplitudes) float64 took 1.48 million optimiser steps
    against float32's 1.71 million (in float32 a third of the profile re-fits ended by the stall
    rule, stepping at the rounding floor), for about the same CPU time (each step costs more;
    90.7 against 94.9 CPU-s in one measurement), left 100 fits stationary instead of 98, and
    moved 142 of the 600 endpoints of the flat ``c_j`` by more than 10 % of their interval's
    width."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {PRECISIONS}")
    if precision == "float64" or (precision == "auto" and (n_points >= AUTO_FLOAT64_POINTS
                                                            or noise == "gamma_kernel")):
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
        noise_params, noise_interval: for ``noise="gamma_kernel"``, the fitted
            :class:`SDKernelParams` (``s`` in the data's unit, ``b_s``, ``c_j`` [ms], and with
            ``fit_noise_taus=True`` the time constants ``tau_j`` [ms]; else ``tau`` is ``None``)
            and their 95 % profile intervals (each field ``(..., 2)``); ``None`` otherwise.
        fitted_sd: ``(n_protocols, n_spikes)`` the model's SD of every pulse (data unit; the
            Gaussian sd, CV times the mean, the binomial or the kernel SD).
        noise_taus: the SD kernel's time constants [ms] as given (``"gamma_kernel"``): the
            fixed ones, or the start of the fitted ones (``noise_params.tau``).
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
    noise_params: Any = None
    noise_interval: Any = None
    fitted_sd: Any = None
    noise_taus: tuple = ()

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
                   precision=self.precision, fitted_sd=tolist(self.fitted_sd),
                   units={**dict(zip(m.fields, m.units)), "amplitude": self.unit,
                          "spike_times": "ms"})
        if self.noise_params is not None:
            np_, ni = self.noise_params, self.noise_interval
            out["noise_params"] = dict(s=tolist(np_.s), b_s=tolist(np_.b_s),
                                       c=[tolist(x) for x in np_.c],
                                       taus_ms=list(self.noise_taus))
            out["noise_interval"] = dict(s=tolist(ni.s), b_s=tolist(ni.b_s),
                                         c=[tolist(x) for x in ni.c])
            if np_.tau is not None:      # fitted SD time constants (taus_ms: their start)
                out["noise_params"]["tau"] = [tolist(x) for x in np_.tau]
                out["noise_interval"]["tau"] = [tolist(x) for x in ni.tau]
        return out


class _Arrays(NamedTuple):
    """One row per problem (a synapse, a model, a fold)."""
    delta: jax.Array     # (P, Pr, n-1) intervals [ms], 1 where padded
    st: lk.Stats         # (P, Pr, n) sufficient statistics of the amplitudes
    flags: jax.Array     # (P, 4) tie_f, zero_f, estimated, normalised
    kern: Any = None     # (P, Pr, n, J) the SD kernel's unit sums (gamma_kernel, fixed taus)


def _with_kernel(arr: _Arrays, lay) -> _Arrays:
    """``arr`` with the SD kernel's unit sums (:func:`~jaxlif.fitting.models.kernel_basis`) when
    ``lay`` fits ``noise="gamma_kernel"`` with fixed time constants: computed once per data set
    instead of at every evaluation of the likelihood (the optimiser's loop does not hoist them)."""
    if arr.kern is not None or lay.noise != "gamma_kernel" or lay.fit_noise_taus:
        return arr
    taus = jnp.asarray(lay.noise_taus, arr.delta.dtype)
    return arr._replace(kern=_kernel_basis(taus, arr.delta))


_kernel_basis = jax.jit(kernel_basis)


class SDKernelParams(NamedTuple):
    """The history-dependent noise of ``noise="gamma_kernel"`` (gamma amplitudes)::

        sd_k = s sigmoid(b_s + sum_j (c_j / tau_j) sum_{i<k} exp(-(t_k - t_i) / tau_j))

    Attributes:
        s: SD scale (the data's unit; the SD of a pulse from rest is ``s sigmoid(b_s)``).
        b_s: baseline of the SD sigmoid (dimensionless).
        c: tuple of the SD kernel amplitudes ``c_j`` [ms] (``> 0``: the scatter grows after
            spikes), one per time constant ``tau_j``.
        tau: tuple of the SD kernel's time constants ``tau_j`` [ms], one per ``c_j``, when they
            are fitted (``fit_noise_taus=True``) or given here; ``None``: the ``noise_taus``
            of the call (fixed).
    """

    s: Any
    b_s: Any
    c: Any
    tau: Any = None


class Layout(NamedTuple):
    """What one compiled fit program computes (static): the model family and its kernel time
    constants, and the noise model.  The unconstrained vector of a problem is the family's
    (:func:`~jaxlif.fitting.models.family_dim` entries), followed for ``noise="gamma_kernel"`` by
    ``log(A / A_cv)``, ``s``, ``b_s`` and one ``c_j / tau_j`` per SD time constant (in units of
    the start ``tau_j``: ``c_j = noise_taus[j] theta``), and with ``fit_noise_taus`` one
    ``log tau_j`` per SD time constant (started at ``noise_taus``)."""

    family: str
    taus: tuple = SRP_TAUS_MS
    fit_taus: bool = False
    noise: Any = False              # _code(kind): False, True, "binomial", "gamma_kernel"
    noise_taus: tuple = ()
    fit_noise_taus: bool = False

    @property
    def model_dim(self) -> int:
        return family_dim(self.family, self.taus, self.fit_taus)

    @property
    def noise_dim(self) -> int:
        if self.noise != "gamma_kernel":
            return 0
        return 3 + len(self.noise_taus) * (2 if self.fit_noise_taus else 1)

    @property
    def dim(self) -> int:
        return self.model_dim + self.noise_dim

    def constraints(self) -> list:
        cons = family_constraints(self.family, self.taus, self.fit_taus)
        if self.noise == "gamma_kernel":
            cons = (cons + [C.real(), C.positive(), C.real()]
                    + [ScaledReal(scale=float(t)) for t in self.noise_taus]
                    + ([C.positive()] * len(self.noise_taus) if self.fit_noise_taus else []))
        return cons


def layout_of(m: Model, kind: str, noise_taus: Sequence[float] | None = None,
              fit_noise_taus: bool = False) -> Layout:
    """The :class:`Layout` of model ``m`` under noise model ``kind`` (``noise_taus``: the SD
    kernel's time constants for ``"gamma_kernel"``, default the SRP kernel's; fitted from there
    when ``fit_noise_taus``)."""
    taus = tuple(m.taus) if m.family == "srp" else SRP_TAUS_MS
    nt = ()
    if kind == "gamma_kernel":
        nt = tuple(float(t) for t in (taus if noise_taus is None else noise_taus))
    return Layout(m.family, taus, bool(m.fit_taus), _code(kind), nt,
                  bool(fit_noise_taus) and kind == "gamma_kernel")


def _as_layout(family, models=None, spec=None) -> Layout:
    """``family`` as a :class:`Layout` (a bare family name: the default time constants)."""
    if isinstance(family, Layout):
        return family
    kind = "gaussian" if spec is None else spec.kind
    if models:
        return layout_of(models[0], kind)
    return Layout(family, SRP_TAUS_MS, False, _code(kind), SRP_TAUS_MS if kind == "gamma_kernel"
                  else ())


def kernel_log_sd(log_s, b_s, jumps, taus, delta, basis=None):
    """Logarithm of the kernel SD, ``log s + log sigmoid(b_s + sum_j jumps_j e_j)``
    (:class:`SDKernelParams`; ``jumps = c / tau``, ``e_j`` the kernel sums of
    :func:`~jaxlif.fitting.models.kernel_drive`, or ``basis (..., n, J)`` if given:
    :func:`~jaxlif.fitting.models.kernel_basis` of ``taus`` and ``delta``), ``(..., n)``.  In
    logarithms because along the likelihood's ridge in the sigmoid's lower tail only ``s e^{b_s}``
    matters: there ``s`` grows as ``e^{-b_s}`` (beyond the float range) while the SD stays what
    it is."""
    drive = kernel_drive(jumps, taus, delta) if basis is None else basis @ jumps
    return log_s + jax.nn.log_sigmoid(b_s + drive)


def _nll(family, gamma, theta, a: _Arrays):
    """``(nll per point, A, noise, release, sd per pulse)`` of one problem at ``theta``
    (``family``: a :class:`Layout` or a family name; ``gamma``: the noise code)."""
    lay = family if isinstance(family, Layout) else Layout(family, noise=gamma)
    cons = lay.constraints()
    vec = [c.forward(theta[i]) for i, c in enumerate(cons)]
    dm = lay.model_dim
    r = family_release(lay.family, vec[:dm], a.delta, a.flags[0], a.flags[1], taus=lay.taus,
                       fit_taus=lay.fit_taus)
    st = a.st
    some = st.count > 0
    n = jnp.sum(st.count)
    if lay.noise == "gamma_kernel":
        rr = jnp.where(some, r, 1.0)
        A_cv = jnp.sum(jnp.where(some, st.sy / rr, 0.0)) / n
        A = jnp.where(a.flags[3], 1.0 / r[0, 0], A_cv * jnp.exp(vec[dm]))
        s_, b_s = vec[dm + 1], vec[dm + 2]
        J = len(lay.noise_taus)
        if lay.fit_noise_taus:        # c_j / tau_j with the fitted tau_j
            taus = jnp.stack(vec[dm + 3 + J:dm + 3 + 2 * J])
            jumps = jnp.stack(vec[dm + 3:dm + 3 + J]) / taus
        else:
            taus = jnp.asarray(lay.noise_taus)
            jumps = jnp.stack([c.forward(theta[dm + 3 + j]) / c.scale
                               for j, c in enumerate(cons[dm + 3:dm + 3 + J])])
        # log s is the unconstrained coordinate itself (s = exp(theta): C.positive())
        log_sd = kernel_log_sd(theta[dm + 1], b_s, jumps, taus, a.delta,
                               basis=None if lay.fit_noise_taus else a.kern)
        value = lk.nll_gamma_sd(st, A * r, log_sd=log_sd)
        return value, A, s_, r, jnp.exp(log_sd)
    value, A, noise = lk.nll(st, r, r[0, 0], lay.noise, a.flags[2], a.flags[3])
    mean = A * r
    if lay.noise == "binomial":
        sd = noise * jnp.sqrt(jnp.maximum(r * (1.0 - r), 0.0))
    elif lay.noise:                       # gamma: CV times the mean
        cv = jnp.where(a.flags[2], noise, st.cv)
        sd = cv * mean
    else:                                 # Gaussian: the sd (RMS of the given ones per pulse)
        given = jnp.sqrt(st.ss2 / jnp.where(some, st.count, 1.0))
        sd = jnp.where(a.flags[2], noise, given)
    return value, A, noise, r, sd


@functools.lru_cache(maxsize=None)
def _objective(family, gamma=None) -> Callable:
    """Per-point NLL of a fit layout (a :class:`Layout`, or a family name with the noise code
    ``gamma`` and the default time constants): one cached function per layout, so the compiled
    optimiser is reused across calls, models of the family, and given or estimated noise
    levels."""
    lay = family if isinstance(family, Layout) else Layout(family, noise=gamma)

    def objective(theta, a: _Arrays, shared):
        return _nll(lay, None, theta, a)[0]
    if isinstance(family, Layout):
        objective._jaxlif_cache_id = f"jaxlif.fitting.trains._objective({tuple(family)!r})"
    else:
        objective._jaxlif_cache_id = f"jaxlif.fitting.trains._objective({family!r}, {gamma!r})"
    return objective


def _objective_for(lay: Layout) -> Callable:
    """The cached objective of ``lay``: a layout with the default SRP time constants and no SD
    kernel is the one of ``_objective(family, noise code)`` (one compiled program for both)."""
    if lay == Layout(lay.family, noise=lay.noise):
        return _objective(lay.family, lay.noise)
    return _objective(lay)


def _code(noise: str):
    """The static noise argument of :func:`~jaxlif.fitting.likelihood.nll` for ``noise``."""
    return {"gaussian": False, "gamma": True, "binomial": "binomial",
            "gamma_kernel": "gamma_kernel"}[noise]


@functools.partial(jax.jit, static_argnames=("family", "gamma"))
def _evaluate(theta, a: _Arrays, *, family, gamma=None):
    """Per problem: NLL per point, scale, noise, fitted means, the NLL per point of the
    saturated model (a free mean per protocol and pulse) for the goodness of fit, and the SD
    of every pulse."""
    lay = family if isinstance(family, Layout) else Layout(family, noise=gamma)

    def one(th, arr):
        value, A, noise, r, sd = _nll(lay, None, th, arr)
        g = False if lay.noise in ("binomial", "gamma_kernel") else lay.noise  # (no test: NaN)
        sat, _, _ = lk.nll(arr.st, lk.saturated_release(arr.st, g), 1.0, g, arr.flags[2], True)
        return value, A, noise, A * r, sat, sd
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
    return _Arrays(device_array(rows["delta"][idx], dtype),
                   lk.Stats(*(device_array(v, dtype) for v in st)), device_array(flags))


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
    taus = np.asarray(m.taus)
    J = len(taus)
    lag = t[:, :, None] - t[:, None, :]                                  # (rows, k, i)
    earlier = np.isfinite(lag) & (lag > 0)
    with np.errstate(invalid="ignore", over="ignore"):
        decay = np.where(earlier[..., None], np.exp(-np.where(earlier, lag, 0.0)[..., None]
                                                     / taus), 0.0)
    K = decay.sum(axis=2)[np.isfinite(t)]                               # (spikes, J)
    b = grid[:, 0]
    kernel = (grid[:, 1:1 + J] / taus) @ K.T                             # (S, spikes)
    cap = SRP_START_MAX_ARG
    with np.errstate(invalid="ignore", divide="ignore"):
        # the largest lam <= 1 with |b + lam kernel| <= cap at every spike (|b| < cap)
        room = np.where(kernel > 0, cap - b[:, None], -cap - b[:, None]) / kernel
        lam = np.min(np.where(np.abs(b[:, None] + kernel) > cap, room, 1.0), axis=1,
                     initial=1.0)
    grid[:, 1:1 + J] *= np.clip(lam, 0.0, 1.0)[:, None]
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


#: Candidates screened per default start of the TM family (:func:`_screen_starts`): 17 x 15 =
#: 255 for ``tm`` and ``tm4``, 119 for ``depression``.
SCREEN_FACTOR = 17


@functools.partial(jax.jit, static_argnames=("lay",))
def _screen_values(theta, a: _Arrays, *, lay: Layout):
    """``(P, K)`` NLL per point of ``K`` candidate vectors ``theta (P, K, D)`` per problem."""
    def one(th, arr):
        return jax.vmap(lambda t: _nll(lay, None, t, arr)[0])(th)
    return jax.vmap(one)(theta, a)


def _screen_starts(lay: Layout, models, starts, n_grid, arr: _Arrays, first_mean) -> list:
    """Data-informed default starts of the TM family.

    The last ``n_grid[p]`` rows of ``starts[p]`` (the default grid: the first points of the
    Halton sequence over the model's start box) are replaced by the ``n_grid[p]`` best of
    ``SCREEN_FACTOR * n_grid[p]`` points of the Halton sequence over the screening box
    (:func:`~jaxlif.fitting.models.start_candidates`: ``U`` and ``f`` of ``tm`` and ``tm4``
    down to 0.001), ranked by the likelihood of problem ``p``'s data at the point (one
    vectorised evaluation, no optimisation).  On the 14,481 per-sweep mossy-fibre amplitudes
    the plain grid's starts ended in several valleys (tm4: 1-3 of 15 at the best optimum under
    Gaussian, gamma and binomial noise); the screened ones start where the data are likely (docs/fitting.md,
    section Starts, has the counts).  Keeping a quarter of the grid points (those farthest from
    the screened starts) was tried and measured worse there: tm4 10 and 5 of 15 starts at the
    optimum under Gaussian and binomial noise, against 12 and 7.
    User ``init`` rows are kept as given; SRP models (capped starts) are not screened.
    ``noise="gamma_kernel"`` fits are screened by :func:`_screen_kernel_starts` instead (each
    candidate with its own data-informed SD start): with the constant SD start of
    :func:`_noise_starts`, screened mean starts let the depression model's SD sigmoid run onto
    its saturated plateau (``b_s -> +inf``, a constant SD) on the per-sweep data and on the
    shipped means, missing the optimum the plain grid finds (-32757 against -32237 and -42.0
    against -31.6)."""
    if lay.noise == "gamma_kernel":
        return [np.asarray(st, dtype=float) for st in starts]     # (_screen_kernel_starts)
    return _screen(
        models, starts, n_grid, arr,
        lambda p, c: _family_theta(models[p], c, lay, first_mean[p]),
        lambda theta, sub: (_screen_values(theta, sub, lay=lay), None))[0]


def _screen(models, starts, n_grid, arr: _Arrays, theta_of, values_of) -> tuple:
    """The screening of :func:`_screen_starts` and :func:`_screen_kernel_starts`: the last
    ``n_grid[p]`` rows of ``starts[p]`` replaced by the ``n_grid[p]`` candidates of
    :func:`~jaxlif.fitting.models.start_candidates` (``SCREEN_FACTOR`` times as many) with the
    lowest NLL.  ``theta_of(p, candidates)``: their unconstrained vectors; ``values_of(theta (P',
    K, dim), arrays of those P' problems)``: ``(P', K)`` NLL and ``(P', K, ...)`` coordinates
    that go with each candidate, or ``None``.  Returns ``(starts, extra)``: ``extra[p]`` the
    coordinates of the chosen candidates (``None`` where not screened)."""
    out = [np.asarray(st, dtype=float) for st in starts]
    extra = [None] * len(out)
    todo = [p for p, m in enumerate(models)
            if n_grid[p] > 0 and start_candidates(m, 1) is not None]
    if not todo:
        return out, extra
    K = SCREEN_FACTOR * max(n_grid[p] for p in todo)
    cand = [start_candidates(models[p], K) for p in todo]
    theta = np.stack([theta_of(p, c) for p, c in zip(todo, cand)])
    sub = jax.tree_util.tree_map(lambda x: device_array(np.asarray(x)[todo]), arr)
    values, coords = values_of(device_array(theta, jnp.result_type(float)), sub)
    values = np.asarray(values, dtype=float)
    for i, p in enumerate(todo):
        k = n_grid[p]
        n = SCREEN_FACTOR * k                       # this model's own number of candidates
        v = np.where(np.isfinite(values[i, :n]), values[i, :n], np.inf)
        best = np.argsort(v, kind="stable")[:k]
        out[p] = np.concatenate([out[p][:len(out[p]) - k], cand[i][:n][best]])
        if coords is not None:
            extra[p] = np.asarray(coords, dtype=float)[i, :n][best]
    return out, extra


@functools.partial(jax.jit, static_argnames=("lay",))
def _kernel_screen_values(theta, a: _Arrays, *, lay: Layout):
    """``(P, K)`` NLL per point and ``(P, K, noise_dim)`` noise coordinates of ``K`` candidate
    model vectors ``theta (P, K, model_dim)`` per problem under ``noise="gamma_kernel"``, each
    with the SD start of :func:`_kernel_noise_start`."""
    def one(th, arr):
        def cand(t):
            noise = _kernel_noise_start(lay, t, arr)
            return _nll(lay, None, jnp.concatenate([t, noise]), arr)[0], noise
        return jax.vmap(cand)(th)
    return jax.vmap(one)(theta, a)


@functools.partial(jax.jit, static_argnames=("lay",))
def _kernel_noise_starts(theta, owner, a: _Arrays, *, lay: Layout):
    """``(K, noise_dim)`` data-informed noise coordinates (:func:`_kernel_noise_start`) for the
    vectors ``theta (K, dim)`` of the problems ``owner (K,)`` of ``a``."""
    sub = jax.tree_util.tree_map(lambda x: x[owner], a)
    return jax.vmap(lambda t, arr: _kernel_noise_start(lay, t[:lay.model_dim], arr))(theta, sub)


def _kernel_profile_options(lay: Layout, arr: _Arrays, coef) -> dict:
    """Options of the profile intervals of ``noise="gamma_kernel"``
    (:func:`~jaxlif.fitting.uncertainty.profile_intervals`).

    Its likelihood has two kinds of valley: the SD sigmoid in its interior, and its lower tail,
    where only ``s e^{b_s}`` matters and ``s`` runs off to infinity along a flat ridge.  A
    profile fit continued from the optimum stays in the optimum's valley, and there stopped short
    of the ridge's end: on 100 simulated data sets (TM, one SD time constant), profile fits at the
    true ``c_1`` run with care (L-BFGS from several starts) gave a deviance below the threshold
    where the intervals had ended, and 24 of the 100 ``c_1`` intervals missed the truth.  So every
    profile fit gets a third start, the data-informed SD start (:func:`_kernel_noise_start`) for
    its continuation's model parameters, and runs until the predicted gain is below
    ``1e-5 / coef`` (objective units; the fit's own rule is ``1e-6 / n``, :func:`_stop_rules`),
    with a patience of 50 steps and at most 3000.  docs/fitting.md has the coverage before and
    after.  The profile fits of ``s`` and ``b_s`` get a fourth start, the continuation moved
    along the ridge (``log s + b_s`` kept): without it they stopped on the ridge's slope, and
    every lower end of ``b_s`` of 100 simulated synapses was finite where an independent
    optimiser found 83 of them within the threshold 300 units further (docs/fitting.md,
    Intervals)."""
    j_s, j_b = lay.model_dim + 1, lay.model_dim + 2          # log s, b_s

    def extra_starts(theta, owner, coord, at):
        theta = np.asarray(theta, dtype=float)
        k = len(owner)
        K = _bucket(k)                                 # a few compiled sizes, not one per k
        pad = np.concatenate([np.arange(k), np.zeros(K - k, int)])
        noise = _kernel_noise_starts(device_array(theta[pad], jnp.result_type(float)),
                                     device_array(np.asarray(owner)[pad], jnp.int32), arr,
                                     lay=lay)
        informed = theta.copy()
        informed[:, lay.model_dim:] = np.asarray(noise, dtype=float)[:k]
        # along the ridge: log s + b_s kept where the continuation had it
        ridge = np.full_like(theta, np.nan)
        for held, other in ((j_b, j_s), (j_s, j_b)):
            rows = np.flatnonzero(coord == held)
            ridge[rows] = theta[rows]
            ridge[rows, other] += theta[rows, held] - at[rows]
        return [informed, ridge]
    rules = dict(max_steps=3000, patience=50, gtol=1e-5 / float(np.max(coef)))
    return dict(extra_starts=extra_starts, fit_rules=rules, stragglers=None)


def _kernel_noise_start(lay: Layout, th, a: _Arrays):
    """Data-informed start of the ``"gamma_kernel"`` coordinates for the model vector ``th``:
    the SD kernel that best reproduces the constant-CV gamma fit of the same mean.

    With the release ``r`` of ``th``, the gamma model's profiled scale ``A`` and CV ``c``
    (:func:`~jaxlif.fitting.likelihood.nll`), the target SD of every protocol and pulse is
    ``c A r``.  The scale is ``s = 2 max(c A r)``, so that the sigmoid's targets are at most
    1/2 (arguments at most 0, away from the saturated plateau ``b_s -> +inf`` where the SD is
    the constant ``s`` and the kernel has no gradient), and ``b_s``, ``c_j / tau_j`` are the
    least-squares fit (weighted by the amplitudes recorded) of the sigmoid's argument
    ``logit(c A r / s)``, clipped to ``[-SRP_START_MAX_ARG, 0]``, by
    ``b_s + sum_j (c_j / tau_j) sum_{i<k} exp(-(t_k - t_i)/tau_j)``: a linear problem (then
    ``b_s`` is lowered, if needed, until the fitted argument is at most
    :data:`SRP_START_MAX_ARG` at every pulse, as for the SRP starts; below, the SD is
    ``s exp(argument)`` and keeps its gradient).
    Returns ``(noise_dim,)``: ``log(A / A_cv) = 0``, ``log s``, ``b_s``, ``c_j / tau_j`` (and
    ``log tau_j`` when they are fitted)."""
    cons = lay.constraints()
    dm = lay.model_dim
    vec = [c.forward(th[i]) for i, c in enumerate(cons[:dm])]
    r = family_release(lay.family, vec, a.delta, a.flags[0], a.flags[1], taus=lay.taus,
                       fit_taus=lay.fit_taus)
    st = a.st
    some = st.count > 0
    _, A, cv = lk.nll(st, r, r[0, 0], True, True, a.flags[3])
    target = jnp.where(some, cv * A * r, 0.0)
    s_ = 2.0 * jnp.max(target)
    p = jnp.clip(target / s_, 1e-30, 0.5)
    x = jnp.clip(jnp.log(p) - jnp.log1p(-p), -SRP_START_MAX_ARG, 0.0)
    J = len(lay.noise_taus)
    taus = jnp.asarray(lay.noise_taus, x.dtype)
    drive = kernel_basis(taus, a.delta) if a.kern is None else a.kern
    X = jnp.concatenate([jnp.ones(x.shape + (1,), x.dtype), drive], axis=-1)   # (..., 1 + J)
    w = jnp.where(some, st.count, 0.0)[..., None]
    XtX = jnp.einsum("...i,...j->ij", w * X, X)
    Xtx = jnp.einsum("...i,...->i", w * X, x)
    ridge = 1e-8 * jnp.trace(XtX) / (1 + J) + jnp.finfo(x.dtype).tiny
    beta = jnp.linalg.solve(XtX + ridge * jnp.eye(1 + J, dtype=x.dtype), Xtx)
    # the fitted argument at most SRP_START_MAX_ARG at every recorded pulse, as the SRP starts
    top = jnp.max(jnp.where(some, X @ beta, -jnp.inf))
    beta = beta.at[0].add(-jnp.maximum(top - SRP_START_MAX_ARG, 0.0))
    start = [jnp.zeros(1, x.dtype), jnp.log(s_)[None], beta]
    if lay.fit_noise_taus:            # fitted time constants start at the given ones
        start.append(jnp.log(taus))
    return jnp.concatenate(start)


def _screen_kernel_starts(lay: Layout, models, starts, n_grid, arr: _Arrays) -> tuple:
    """Data-informed default starts of the TM family under ``noise="gamma_kernel"``: as
    :func:`_screen_starts`, the ``n_grid[p]`` best of ``SCREEN_FACTOR * n_grid[p]`` points of
    the start sequence, each with its own SD start (:func:`_kernel_noise_start`) and ranked by
    the ``"gamma_kernel"`` likelihood of the data there.  Returns ``(starts, noise)``:
    ``noise[p]`` the ``(n_grid[p], noise_dim)`` unconstrained noise starts of the trailing grid
    rows of ``starts[p]`` (``None`` where not screened: user ``init`` rows, SRP models)."""
    return _screen(models, starts, n_grid, arr, lambda p, c: _family_theta(models[p], c),
                   lambda theta, sub: _kernel_screen_values(theta, sub, lay=lay))


def _family_theta(m: Model, starts: np.ndarray, lay: Layout | None = None,
                  noise_start=None) -> np.ndarray:
    """Unconstrained vectors ``(S, dim)`` of starts given in the model's fields (followed by the
    noise coordinates of ``lay``: :func:`_noise_starts`)."""
    vec = np.asarray(m.family_vector(m.params_type(*starts.T)), dtype=float)
    cons = family_constraints(m.family, m.taus or SRP_TAUS_MS, m.fit_taus)
    th = np.stack([np.asarray(c.inverse(vec[:, i]), dtype=float) for i, c in enumerate(cons)],
                  axis=1)
    if lay is None or lay.noise_dim == 0:
        return th
    return np.concatenate([th, _noise_starts(lay, th, noise_start)], axis=1)


#: Start of the SD scale of ``noise="gamma_kernel"``: the SD of the first pulse is this
#: fraction of the data's mean first amplitude (a CV of 0.5).
_START_CV = 0.5


def _noise_starts(lay: Layout, th: np.ndarray, first_mean) -> np.ndarray:
    """Unconstrained starts of the ``"gamma_kernel"`` coordinates for model starts ``th (S,
    model_dim)``: the scale at its constant-CV estimate, and an SD that mirrors the mean (SRP with
    the same time constants: ``b_s = b``, ``c_j = a_j``, a constant CV of 0.5) or is constant
    (``b_s = 0``, ``c_j = 0``), scaled so that the first pulse has a CV of 0.5; fitted SD time
    constants start at the layout's ``noise_taus``."""
    S = th.shape[0]
    J = len(lay.noise_taus)
    out = np.zeros((S, lay.noise_dim))
    if lay.fit_noise_taus:            # fitted time constants start at the given ones
        out[:, 3 + J:] = np.log(lay.noise_taus)
    mirror = lay.family == "srp" and tuple(lay.noise_taus) == tuple(lay.taus)
    if mirror:
        out[:, 2] = th[:, 0]
        out[:, 3:3 + J] = th[:, 1:1 + J]
    b_s = out[:, 2]
    m1 = 1.0 if first_mean is None else float(first_mean)
    out[:, 1] = np.log(_START_CV * m1 * (1.0 + np.exp(-b_s)))     # s sigmoid(b_s) = 0.5 m1
    return out


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


def _stop_rules(n_points: float, kernel: bool = False) -> dict:
    """Stopping rules on the per-point NLL: stop when the predicted or the recent improvement
    of the total log-likelihood is below 1e-4 (far below the 1.92 of a 95 % interval).

    ``kernel`` (``noise="gamma_kernel"``): the predicted improvement must be below 1e-6.  Its
    likelihood has a long flat ridge (the SD scale ``s`` against the SD baseline ``b_s``) along
    which the quasi-Newton estimate of the remaining gain is too small: with 1e-4, 14 of 15
    starts on a small simulated data set (3 protocols x 6 pulses) stopped 0.05-1.7 units short
    and the best was not stationary; with 1e-6, 13 of 15 reached the optimum, and on the
    14,481 per-sweep amplitudes 15 of 15 (8 before) for about twice the steps.  The best start
    is then finished by Newton rounds (:func:`~jaxlif.fitting.uncertainty.newton_polish`).
    Measured on 40 synapses of ``benchmarks/bench_fit.py``'s design: with 1e-6 alone 18 of 40
    best starts were not stationary (21 ended 0.01-0.8 units below the optimum); with the
    Newton rounds 1 of 40.  The Newton rounds after 1e-4 instead saved 10 % of the steps but
    left fewer starts at the optimum (per-sweep SRP data: 8 of 15 against 15)."""
    return dict(patience=20, rel_improve=1e-7, abs_improve=1e-5 / n_points,
                gtol=(1e-6 if kernel else 1e-4) / n_points)


def _nested_refit(objective, arr, family, models, groups, sol_theta, sol_loss, max_steps, lanes,
                  active_all=None):
    """Refit each problem from the optima of its nested sub-models fitted on the same data
    (``groups``): ``(extra_theta (P, E, D), extra_loss (P, E))`` with ``inf`` where none."""
    lay = _as_layout(family, models)
    cons = lay.constraints()
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
    active = np.zeros((len(pairs), lay.dim), bool)
    for i, (p, _) in enumerate(pairs):
        active[i] = active_all[p] if active_all is not None else False
        active[i, list(models[p].coords)] = True
    n_pts = float(np.min(_n_points(arr)))
    th, loss, *_ = minimise_lanes(objective, np.array(starts), owner, arr, None, free=active,
                                  max_steps=max_steps,
                                  **_stop_rules(n_pts, lay.noise == "gamma_kernel"),
                                  min_lanes=lanes)
    return owner, th, loss


def _active(lay: Layout, models, normalised) -> np.ndarray:
    """``(P, dim)`` booleans: the coordinates each problem fits (its model's, and for
    ``"gamma_kernel"`` the noise's, the scale factor only when not normalised)."""
    active = np.zeros((len(models), lay.dim), bool)
    for p, m in enumerate(models):
        active[p, list(m.coords)] = True
        if lay.noise_dim:
            active[p, lay.model_dim:] = True
            active[p, lay.model_dim] = not bool(np.asarray(normalised)[p])
    return active


def _n_points(arr: _Arrays) -> np.ndarray:
    """Amplitudes of each problem (summed on the host: no compiled program)."""
    return np.asarray(arr.st.count, dtype=float).sum(axis=(1, 2))


def _solve(arr: _Arrays, family, models, starts, *, interval, level, max_rel, max_steps,
           progress, spec: lk.NoiseSpec, groups=None, first_mean=None, n_grid=None) -> dict:
    """Fit every problem (row of ``arr``) from its starts; intervals and flags.  Problems with
    the same ``groups`` label share data: nested models among them also start from each other's
    optima (``_NESTED``).  ``family``: a :class:`Layout` (or a family name: default time
    constants); ``first_mean (P,)``: the data's mean first amplitude (the ``"gamma_kernel"``
    starts); ``n_grid (P,)``: how many trailing rows of each problem's starts are the model's
    default grid, screened against the data (:func:`_screen_starts`; ``None``: all of them)."""
    P = len(models)
    lay = _as_layout(family, models, spec)
    arr = _with_kernel(arr, lay)
    estimated = spec.estimated
    objective = _objective_for(lay)
    fm = [None] * P if first_mean is None else list(first_mean)
    n_grid = [len(s) for s in starts] if n_grid is None else list(n_grid)
    if lay.noise == "gamma_kernel":
        starts, noise = _screen_kernel_starts(lay, models, starts, n_grid, arr)
    else:
        starts, noise = _screen_starts(lay, models, starts, n_grid, arr, fm), [None] * P
    thetas = [_family_theta(m, s, lay, fm[p]) for p, (m, s) in enumerate(zip(models, starts))]
    for t, nz in zip(thetas, noise):
        if nz is not None:
            t[len(t) - len(nz):, lay.model_dim:] = nz
    owner = np.concatenate([np.full(len(t), p) for p, t in enumerate(thetas)])
    normalised = np.asarray(arr.flags)[:, 3]
    active = _active(lay, models, normalised)
    theta0 = np.concatenate(thetas)
    # slots per problem: enough for the starts, the curvature (9) and the profile fits (two
    # per side and parameter), so that all of them run one compiled program
    lanes = max(int(np.bincount(owner).max()), 9, 4 * int(active.sum(axis=1).max()))
    n_pts = float(np.min(_n_points(arr)))
    # "gamma_kernel": the starts run in as few slots as they fill (16 for 15 starts, not the 64
    # of the profile fits): every slot costs a step whether used or not, and this loop is most
    # of the fit (3x less CPU time on 40 synapses, for one more compiled program)
    th, loss, n_steps, _, steps, interrupted, _ = minimise_lanes(
        objective, theta0, owner, arr, None, free=active[owner], max_steps=max_steps,
        **_stop_rules(n_pts, lay.noise == "gamma_kernel"), progress=progress,
        min_lanes=0 if lay.noise == "gamma_kernel" else lanes)
    polished = np.full(P, -1)           # the lane of each problem that Newton rounds finished
    if not interrupted:
        if lay.noise == "gamma_kernel":
            # the best start is finished first, so that the continued starts are measured
            # against (and continue towards) the polished best end
            polished = np.array([np.flatnonzero(owner == q)[np.argmin(loss[owner == q])]
                                 for q in range(P)])
            th[polished], loss[polished] = _polish(objective, lay, th[polished],
                                                   loss[polished], arr, _n_points(arr), active,
                                                   lanes, max(len(t) for t in thetas))
        try:
            th, loss, n_steps, interrupted = _continue_stalled(
                objective, th, loss, n_steps, owner, arr, active[owner], _n_points(arr),
                max_steps=max_steps, rules=_continue_rules(n_pts),
                min_lanes=(_bucket_of(owner) if lay.noise == "gamma_kernel" else lanes))
        except KeyboardInterrupt:       # during the probes: the starts' own ends stand
            interrupted = True
    S = max(len(t) for t in thetas)
    D = lay.dim
    slot = np.concatenate([np.arange(len(t)) for t in thetas])
    extra = None
    if groups is not None and not interrupted:
        first = np.full((P, D), np.nan)
        best_loss = np.full(P, np.inf)
        for lane in range(len(owner)):
            if loss[lane] < best_loss[owner[lane]]:
                best_loss[owner[lane]], first[owner[lane]] = loss[lane], th[lane]
        extra = _nested_refit(objective, arr, lay, models, groups, first, best_loss,
                              max_steps, lanes, active)
    if extra is not None:   # the nested starts come after the model's own
        e_owner, e_th, e_loss = extra
        e_slot = np.array([S + np.sum(e_owner[:i] == o) for i, o in enumerate(e_owner)])
        S = S + int(np.max(np.bincount(e_owner)))
        owner, slot = np.concatenate([owner, e_owner]), np.concatenate([slot, e_slot])
        th, loss = np.concatenate([th, e_th]), np.concatenate([loss, e_loss])
        n_steps = np.concatenate([n_steps, np.zeros(len(e_owner), int)])
    start_loss = np.full((P, S), np.inf)
    start_theta = np.full((P, S, D), np.nan)
    start_steps = np.zeros((P, S), int)
    start_loss[owner, slot] = loss
    start_theta[owner, slot] = th
    start_steps[owner, slot] = n_steps
    best = np.argmin(start_loss, axis=1)
    rows = np.arange(P)
    theta, loss_best = start_theta[rows, best], start_loss[rows, best]
    n = _n_points(arr)
    p = np.array([m.n_params for m in models]) + np.where(normalised, 0, 1)
    if lay.noise_dim:
        p = p + lay.noise_dim - 1
    # the binomial-variance NLL has a log r(1 - r) term, and the gamma_kernel noise is fitted
    # explicitly: plain likelihood-ratio calibration
    kind, coef, q = _deviance_setup(n, p, estimated and spec.kind not in ("binomial",
                                                                          "gamma_kernel"), level)
    if lay.noise == "gamma_kernel" and not interrupted:
        # Newton rounds for a best start that is not the one finished above (a continued or
        # a nested start ended lower)
        again = best != np.where(polished >= 0, slot[np.maximum(polished, 0)], -1)
        if again.any():
            new, new_loss = _polish(objective, lay, theta, np.where(again, loss_best, np.inf),
                                    arr, n, active, lanes, max(len(t) for t in thetas))
            theta = np.where(again[:, None], new, theta)
            loss_best = np.where(again, new_loss, loss_best)
        start_theta[rows, best], start_loss[rows, best] = theta, loss_best
    out = dict(theta=theta, loss=loss_best, best_start=best, start_theta=start_theta,
               start_loss=start_loss, n_steps=start_steps[rows, best], n=n, p=p, kind=kind,
               coef=coef, q=q, active=active, steps=steps, interrupted=interrupted,
               start_local=unc.local_minimum(start_loss, kind, coef), lanes=lanes)
    if interrupted:
        return out
    cons = lay.constraints()
    out["stats"] = unc.analyse(objective, theta, loss_best, arr, None, kind=kind, coef=coef, q=q,
                               constraints=cons, interval=interval,
                               max_rel_uncertainty=max_rel,
                               positive=[c.low != -np.inf for c in cons],
                               active=active, min_lanes=lanes, restarts=_restarts(thetas),
                               others=(start_theta, start_loss),
                               profile_options=(_kernel_profile_options(lay, arr, coef)
                                                if lay.noise == "gamma_kernel" else None))
    return out


#: Fractions of the segment from a start's (moved) end to its problem's best end at which
#: :func:`_continue_stalled` evaluates the objective.
CONTINUE_FRACTIONS = (0.25, 0.5, 0.75)
#: Log-likelihood units (:func:`_continue_stalled`): a start more than this below the best end
#: is tested, and continued from a point at least this much more likely than its end.
CONTINUE_TOL = 1e-3
#: A barrier lower than this fraction of a start's gap to the best end (and than
#: :data:`CONTINUE_TOL`, whichever is larger) does not stop :func:`_continue_stalled`: the
#: flat limits are flat only to within the rounding and the remaining effect of ``U``.
CONTINUE_BARRIER = 0.1


def _continue_rules(n_points: float) -> dict:
    """Stopping rules of the runs that :func:`_continue_stalled` continues: until the predicted
    gain, or the gain over 50 steps, is below 1e-9 log-likelihood units.  They follow a flat
    valley towards an optimum, where the fit's own rules (:func:`_stop_rules`) stop early: on
    the per-sweep mossy-fibre data (14,481 amplitudes) under gamma noise, 14 ``tm4`` starts
    continued with those rules stopped 0.013 units short of the optimum (from points 0.014
    short); with these, 14 of the 15 starts end at it."""
    return dict(patience=50, rel_improve=0.0, abs_improve=1e-9 / n_points,
                gtol=1e-9 / n_points)


def _bucket_of(owner) -> int:
    """Slots per problem of a loop over the lanes ``owner`` (the optimiser's power of two)."""
    return _bucket(np.bincount(owner).max())


def _continue_stalled(objective, th, loss, n_steps, owner, arr: _Arrays, free, n, *, max_steps,
                      rules, min_lanes):
    """Continue the starts that stopped on a flat region short of their problem's best end.

    The TM family's likelihood has flat limits: as ``U -> 0`` (logit coordinates) the gradient
    in ``U`` vanishes and ``tau_d`` loses its effect (no depression is left), so a start can stop
    there at any ``tau_d``, a few 0.01 units below an interior optimum that needs a particular
    ``tau_d`` (the quasi-Newton curvature of such a plateau is not positive, and its steps
    shrink with the gradient).  Such an end is no local minimum: a path that first moves along
    the flat directions, at no cost, then descends, leaves it.  Every start more than
    :data:`CONTINUE_TOL` log-likelihood units below its problem's best end is tested, with the
    best end as the direction to try:

    1. each coordinate in turn is moved to the best end's value; those along whose way (at
       its midpoint and its end) the log-likelihood never falls below the end's by more than
       the barrier allowance (flat directions, or better) are moved, all together (none where
       the joint move, checked the same way, crosses a barrier);
    2. the objective is evaluated on the straight segment from that point towards the best end,
       at the fractions :data:`CONTINUE_FRACTIONS` (each evaluation one vectorised call of the
       fit's own compiled program);
    3. of the points reached without crossing a barrier, the lowest, if it is more than
       :data:`CONTINUE_TOL` above the end in log-likelihood, is where the start's optimisation
       continues (a line search along that direction), with :func:`_continue_rules`; its end
       becomes the end of that run (kept only if lower), wherever it leads.

    The barrier allowance is :data:`CONTINUE_BARRIER` times the start's gap to the best end, at
    least :data:`CONTINUE_TOL`.  An end with a higher barrier between it and the best end (a
    separate valley) is left where it is, and a point is never continued from the best end
    itself (a segment of length zero).  Each start's end stays the end of its own optimisation
    path.  Returns ``(theta, loss, n_steps, interrupted)``: every lane's (``n_steps``: the
    continued run's steps added), and whether Ctrl-C stopped the continued runs (their best
    points so far are kept where lower)."""
    th, loss, n_steps = np.array(th, float), np.array(loss, float), np.array(n_steps)
    n_lane = np.asarray(n, float)[owner]
    best_lane = np.full(int(owner.max()) + 1, -1)
    for lane in np.argsort(np.where(np.isfinite(loss), loss, np.inf), kind="stable")[::-1]:
        best_lane[owner[lane]] = lane                       # the lowest loss wins (last)
    ref = best_lane[owner]
    gap = (loss - loss[ref]) * n_lane                        # log-likelihood units below the best
    todo = np.flatnonzero(np.isfinite(gap) & (gap > CONTINUE_TOL) & np.isfinite(th).all(axis=1))
    if not todo.size:
        return th, loss, n_steps, False
    o, fr_ = owner[todo], free[todo]
    n_t = n_lane[todo]
    slots = _bucket(min_lanes)

    def values(pts):
        """Log-likelihood units below the end at ``pts (len(todo), K, D)``: all points in as
        few calls as the fit's own slots per problem allow (its compiled program)."""
        K = pts.shape[1]
        flat_o, flat_f = np.repeat(o, K), np.repeat(fr_, K, axis=0)
        flat_p = pts.reshape(-1, pts.shape[-1])
        rank = np.zeros(len(flat_o), int)                     # position among its problem's
        for q in np.unique(flat_o):
            rank[flat_o == q] = np.arange(np.sum(flat_o == q))
        v = np.empty(len(flat_o))
        for c in range(int(rank.max()) // slots + 1):
            sel = rank // slots == c
            v[sel] = evaluate_lanes(objective, flat_p[sel], flat_o[sel], arr, None,
                                    free=flat_f[sel], min_lanes=min_lanes)[0]
        v = v.reshape(len(todo), K)
        return np.where(np.isfinite(v), (v - loss[todo, None]) * n_t[:, None], np.inf)

    end = th[todo]
    target = np.where(fr_, th[ref[todo]], end)       # coordinates a lane holds fixed stay fixed
    barrier = np.maximum(CONTINUE_TOL, CONTINUE_BARRIER * gap[todo])
    half = np.array([0.5, 1.0])
    coords = np.flatnonzero((fr_ & (end != target)).any(axis=0))
    moves = np.repeat(end[:, None, :], len(coords), axis=1)          # (todo, C, D)
    moves[:, np.arange(len(coords)), coords] = target[:, coords]
    path = end[:, None, None, :] + half[None, None, :, None] * (moves - end[:, None, :])[:, :, None]
    rises = values(path.reshape(len(todo), -1, end.shape[1])).reshape(len(todo), len(coords), 2)
    flat = np.zeros(end.shape, bool)
    flat[:, coords] = fr_[:, coords] & (rises.max(axis=2) <= barrier[:, None])
    moved = np.where(flat, target, end)
    keep = np.zeros(len(todo), bool)
    if flat.any():      # the joint move, checked the same way
        keep = values(end[:, None] + half[None, :, None] * (moved - end)[:, None]).max(
            axis=1) <= barrier
    moved = np.where(keep[:, None], moved, end)
    fr = np.asarray(CONTINUE_FRACTIONS)
    pts = moved[:, None, :] + fr[None, :, None] * (target - moved)[:, None, :]
    value = values(pts)
    # no barrier on the way to a point; the lowest such point more than CONTINUE_TOL lower
    clear = np.maximum.accumulate(value, axis=1) <= barrier[:, None]
    lower = clear & (value < -CONTINUE_TOL)
    # a segment of length zero (every coordinate moved) would copy the best end: not continued
    go = lower.any(axis=1) & (fr_ & (moved != target)).any(axis=1)
    if not go.any():
        return th, loss, n_steps, False
    pick = np.argmin(np.where(lower, value, np.inf), axis=1)
    lanes = todo[go]
    # many problems: packed rows of the continued lanes only, as the profile fits run them
    # (the same compiled programs), not the whole grid of every problem's slots
    layout = (dict(row_slots=1, repack_every=5) if len(n) >= 16 else dict(min_lanes=min_lanes))
    new_th, new_loss, new_steps, _, _, interrupted, _ = minimise_lanes(
        objective, pts[go, pick[go]], owner[lanes], arr, None, free=free[lanes],
        max_steps=max_steps, **rules, **layout)
    better = np.isfinite(new_loss) & (new_loss < loss[lanes])
    th[lanes[better]], loss[lanes[better]] = new_th[better], new_loss[better]
    n_steps[lanes] = n_steps[lanes] + new_steps
    return th, loss, n_steps, interrupted


def _polish(objective, lay: Layout, theta, loss, arr: _Arrays, n, active, lanes, step_lanes):
    """Newton rounds from the best starts ``theta (P, D)`` along the flat SD scale / baseline
    valley of ``"gamma_kernel"`` (:func:`_stop_rules`,
    :func:`~jaxlif.fitting.uncertainty.newton_polish`).  A polished point is kept only where
    :func:`_evaluate` (the program that computes the reported log-likelihood) agrees that it is
    lower: with a large gamma shape (a small CV) the NLL's float32 rounding differs from one
    compiled program to another by up to a few 0.01 units, and the trial steps would otherwise
    keep the point whose rounding happened to be favourable.

    Then the quasi-Newton fit is restarted from the polished points with the strict rules of
    :func:`_continue_rules` (with 16 or more problems on packed rows holding only the runs still
    going), and the Newton rounds run again on its ends (each kept only where lower, as above).
    The SD sigmoid's upper plateau (``b_s`` large: the SD near ``s`` until spikes pull it down)
    is a second slow direction that neither the first run nor the Newton rounds (whose Hessian
    there is nearly singular) follow to its end.  On 100 simulated data sets (TM, one SD time
    constant shrinking the SD) 17 fits were flagged not stationary; the restart made all 17
    stationary and raised their log-likelihoods by 0.04-2.0 units (to the optimum SciPy's
    L-BFGS-B reaches from the same points).  Restarting only the problems whose Newton rounds
    left a predicted gain was tried: it left 7 of those 100 fits not stationary."""
    dtype = jnp.result_type(float)

    def newton(th, ls):
        new, _, _ = unc.newton_polish(objective, th, ls, arr, None, coef=2.0 * n,
                                      active=active, min_lanes=lanes, step_lanes=step_lanes)
        return keep_lower(th, ls, new)

    def keep_lower(th, ls, new):
        before, after = (np.asarray(_evaluate(device_array(t, dtype), arr, family=lay)[0], float)
                         for t in (th, new))          # (the shapes of _results' call: no compile)
        keep = after < before
        return np.where(keep[:, None], new, th), np.where(keep, after, ls)

    theta, loss = newton(theta, loss)
    # many problems: packed rows holding only the runs still going (as _continue_stalled's)
    layout = dict(row_slots=1, repack_every=5) if len(theta) >= 16 else dict(min_lanes=lanes)
    again, _, *_ = minimise_lanes(objective, theta, np.arange(len(theta)), arr, None,
                                  free=active, max_steps=3000,
                                  **_continue_rules(float(np.min(n))), **layout)
    return newton(*keep_lower(theta, loss, again))


def _restarts(thetas) -> np.ndarray:
    """The problems' start points as one ``(P, R, D)`` array (NaN-padded)."""
    R = max(len(t) for t in thetas)
    out = np.full((len(thetas), R, thetas[0].shape[1]), np.nan)
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
    lay = _as_layout(family, models, spec)
    arr = _with_kernel(arr, lay)
    value, A, sd, mean, sat, sd_pulse = (np.asarray(v, dtype=float) for v in _evaluate(
        device_array(sol["theta"], dtype), arr, family=lay))
    c = np.broadcast_to(np.asarray(c, dtype=float), value.shape)
    # back to the data's unit: the density of y = c y' is p(y') / c
    A, mean, sd_pulse = A * c, mean * c[:, None, None], sd_pulse * c[:, None, None]
    if spec.kind in ("gaussian", "binomial", "gamma_kernel"):     # an sd (a CV has no unit)
        sd = sd * c
    mask = np.asarray(mask)
    n, p = sol["n"], sol["p"]
    log_c = n * np.log(c)
    loglik = -n * value - log_c
    k = p + (1 if spec.estimated else 0)
    groups = mask.any(axis=2).sum(axis=(1, 2)).astype(float)
    pval = _gof(value, sat, n, groups, p, spec.estimated, spec.kind == "gamma")
    if spec.kind in ("binomial", "gamma_kernel"):
        pval = np.full_like(pval, np.nan)
    residuals = np.where(mask, rows_y - mean[:, :, None, :], np.nan)
    fitted = np.where(np.isnan(times), np.nan, mean)
    fitted_sd = np.where(np.isnan(times), np.nan, sd_pulse)
    P = len(models)
    D = lay.dim
    stats = sol.get("stats")
    cons = lay.constraints()
    if stats is None:
        nan = np.full((P, D), np.nan)
        vec = np.stack([np.asarray(cn.forward(jnp.asarray(sol["theta"][:, i])), float)
                        for i, cn in enumerate(cons)], axis=1)
        stats = dict(value=vec, lo=nan, hi=nan, stderr=nan, identifiable=np.zeros((P, D), bool),
                     at_edge=np.zeros((P, D), bool), stationary=np.zeros(P, bool),
                     better=np.zeros(P, bool))
    if lay.noise_dim:     # the SD scale s in the data's unit
        j = lay.model_dim + 1
        stats = dict(stats)
        for key in ("value", "lo", "hi", "stderr"):
            stats[key] = np.array(stats[key], dtype=float)
            stats[key][:, j] = stats[key][:, j] * c
    act = sol["active"]
    rms = np.sqrt(np.sum(np.where(mask, rows_y, 0.0) ** 2, axis=(1, 2, 3)) / n)
    rmse = np.sqrt(np.nansum(np.where(mask, residuals, 0.0) ** 2, axis=(1, 2, 3)) / n)
    poor_edge = (stats["at_edge"] & act).any(axis=1) & (rmse > 0.1 * rms)
    reproduces = ~(np.nan_to_num(pval, nan=1.0) < 1e-3) & ~poor_edge
    # fewer points than free parameters: the optimum is a whole set of parameter values
    enough = n >= k
    converged = (stats["stationary"] & reproduces & ~stats["better"] & (not sol["interrupted"])
                 & enough)
    start_vec = np.stack([np.asarray(cn.forward(jnp.asarray(sol["start_theta"][..., i])), float)
                          for i, cn in enumerate(cons)], axis=-1)
    return dict(stats=stats, A=A, sd=sd, loglik=loglik, aic=2 * k - 2 * loglik,
                bic=k * np.log(n) - 2 * loglik, n=n.astype(int), k=k, pval=pval,
                reproduces=reproduces, converged=converged, enough=enough, fitted=fitted,
                residuals=residuals, fitted_sd=fitted_sd, layout=lay,
                start_vec=start_vec,
                start_loglik=-n[:, None] * sol["start_loss"] - log_c[:, None])


def _result(m: Model, res: dict, sol: dict, rows: slice, many: bool, noise: str, interval: str,
            level: float, unit: str) -> TrainFitResult:
    """The :class:`TrainFitResult` of the problems ``rows`` (all fitted with model ``m``)."""
    pick = (lambda a: a[rows]) if many else (lambda a: a[rows][0])
    st = res["stats"]
    named = lambda arr: m.params_type(*(pick(arr[:, c]) for c in m.coords))  # noqa: E731
    lay = res["layout"]
    noise_params = noise_interval = None
    if lay.noise_dim:
        j = lay.model_dim + 1
        J = len(lay.noise_taus)
        sd_named = lambda arr: SDKernelParams(  # noqa: E731
            pick(arr[:, j]), pick(arr[:, j + 1]),
            tuple(pick(arr[:, i]) for i in range(j + 2, j + 2 + J)),
            tuple(pick(arr[:, i]) for i in range(j + 2 + J, j + 2 + 2 * J))
            if lay.fit_noise_taus else None)
        noise_params = sd_named(st["value"])
        noise_interval = sd_named(np.stack([st["lo"], st["hi"]], axis=-1))
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
        notes=_notes(m, res, rows, many), precision=str(jnp.dtype(jnp.result_type(float))),
        noise_params=noise_params, noise_interval=noise_interval,
        fitted_sd=pick(res["fitted_sd"]), noise_taus=tuple(lay.noise_taus))


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
    if noise == "gamma_kernel" and (noise_sd is not None or noise_cv is not None):
        raise ValueError("noise='gamma_kernel' fits its SD kernel (s, b_s, c_j); give neither "
                         "noise_sd nor noise_cv")
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
    if noise in ("gamma", "gamma_kernel") and zeros == "amplitude" and zero.any():
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
    if noise in ("gamma", "gamma_kernel"):      # the positivity check, after the zeros are settled
        check_trains(data.spike_times_ms, data.amplitudes, noise_sd=data.noise_sd, positive=True,
                     allow_missing=True, unit=data.unit)
    if noise == "gamma_kernel":
        _check_replicates(data.mask)
    if normalise:
        data = _normalise(data)
    estimated = ((data.noise_sd is None) if noise == "gaussian" else
                 False if noise == "gamma_kernel" else noise == "binomial" or noise_cv is None)
    return data, lk.NoiseSpec(noise, estimated, bool(normalise))


def _check_replicates(mask: np.ndarray) -> None:
    """Refuse ``noise="gamma_kernel"`` on a synapse with no pulse recorded twice.

    The kernel SD gives every pulse its own SD, ``s sigmoid(b_s + sum_j c_j k_j)``.  With one
    amplitude per pulse (means, or a single sweep) the fit can put the model's mean on one
    amplitude and send that pulse's SD to 0 while the others stay finite: the likelihood has no
    maximum (measured on the 20 mossy-fibre means: the log-likelihood grows without bound, with
    ``b_s`` near 70-80 and ``c_j`` in the thousands).  Two or more amplitudes that differ at a
    pulse bound its likelihood.  ``mask``: ``([n_synapses,] n_protocols, n_sweeps, n_spikes)``.
    """
    per_pulse = mask.reshape((-1,) + mask.shape[-3:]).sum(axis=2)     # (S, P, K) amplitudes
    single = per_pulse.max(axis=(1, 2)) <= 1
    if single.any():
        which = (f"synapse {int(np.argmax(single))}'s" if mask.ndim == 4 else "the")
        raise ValueError(
            f"noise='gamma_kernel' needs sweeps: {which} data have at most one amplitude per "
            f"pulse (means, or a single sweep), where the kernel SD can shrink to 0 at one pulse "
            f"and the likelihood has no maximum; give the per-sweep amplitudes "
            f"(amplitudes of shape (n_protocols, n_sweeps, n_spikes) with n_sweeps >= 2), or fit "
            f"means with noise='gaussian' and their SEMs as noise_sd")


def _check_noise_taus(noise: str, noise_taus, fit_noise_taus=False):
    """Validated SD time constants (a tuple) or ``None`` (and ``fit_noise_taus`` checked)."""
    fit = _checks.check_flag("fit_noise_taus", fit_noise_taus)
    if fit and noise != "gamma_kernel":
        raise ValueError("fit_noise_taus=True fits the SD time constants of noise='gamma_kernel'; "
                         f"noise={noise!r} has none")
    if noise_taus is None:
        return None
    if noise != "gamma_kernel":
        raise ValueError("noise_taus are the time constants of noise='gamma_kernel'")
    arr = np.atleast_1d(np.asarray(_checks.check_numeric("noise_taus", noise_taus), dtype=float))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"noise_taus={noise_taus!r} must be one or more time constants > 0 ms")
    return tuple(float(t) for t in arr)


def first_means(rows: dict, idx=None, masks=None) -> np.ndarray:
    """Per problem (data row ``idx[p]``, optionally with its own ``masks[p]``), the mean
    first-pulse amplitude in the fit's unit (the start of the SD scale of ``"gamma_kernel"``)."""
    y, mask = rows["y"], rows["mask"]
    if idx is not None:
        y, mask = y[idx], mask[idx]
    if masks is not None:
        mask = np.asarray(masks, bool)
    first = np.where(mask[..., 0], y[..., 0], 0.0).sum(axis=(1, 2))
    count = mask[..., 0].sum(axis=(1, 2))
    return np.where(count > 0, first / np.maximum(count, 1), 1.0)


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
               noise_cv: float | None = None, normalise: bool = False,
               noise_params: SDKernelParams | None = None, scale: Any = None,
               noise_taus: Sequence[float] | None = None) -> jax.Array:
    """The negative log-likelihood per point that :func:`fit_stp_trains` minimises (the fit
    works on the amplitudes divided by :func:`unit_scale`, which shifts this by a constant).

    ``noise="gamma_kernel"`` has no closed-form nuisance parameters: give ``noise_params`` (an
    :class:`SDKernelParams`, ``c`` one amplitude per SD time constant), the amplitude ``scale``
    ``A`` (unless ``normalise``: then ``A = 1 / r_1``) and the time constants, either as
    ``noise_params.tau`` (as a fit with ``fit_noise_taus=True`` returns them; differentiable) or
    as ``noise_taus`` (default the SRP kernel's); the value is the gamma NLL per point with mean
    ``A r`` and the kernel SD.

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
    kernel = noise == "gamma_kernel"
    if kernel and (not isinstance(noise_params, SDKernelParams)
                   or (scale is None and not normalise)):
        raise ValueError("noise='gamma_kernel' needs noise_params=SDKernelParams(s, b_s, c) and "
                         "scale (the amplitude scale A) unless normalise=True")
    spec = lk.NoiseSpec(noise, noise_sd is None and noise_cv is None and not kernel,
                        bool(normalise))
    t = check_spike_times("spike_times_ms", spike_times_ms)
    if t.ndim != 2:
        raise ValueError(f"spike_times_ms must have shape (n_protocols, n_spikes), got {t.shape}")
    y_shape = jnp.shape(amplitudes)
    if len(y_shape) != 3 or (y_shape[0], y_shape[2]) != t.shape:
        raise ValueError(f"amplitudes must have shape (n_protocols={t.shape[0]}, n_sweeps, "
                         f"n_spikes={t.shape[1]}), got {tuple(y_shape)}")
    concrete = _checks._concrete(amplitudes)
    mask = np.broadcast_to(~np.isnan(t)[:, None, :], y_shape)
    if concrete is not None:
        mask = mask & np.isfinite(np.asarray(concrete, float))
    d = np.diff(t, axis=-1)
    lay = layout_of(m, noise, noise_taus)
    if kernel:
        tau = given_sd_taus(noise_params, noise_taus)
        if tau is None and len(noise_params.c) != len(lay.noise_taus):
            raise ValueError(f"noise_params.c has {len(noise_params.c)} amplitudes for "
                             f"{len(lay.noise_taus)} SD time constants {lay.noise_taus}")
        noise_params = SDKernelParams(noise_params.s, noise_params.b_s, tuple(noise_params.c),
                                      tau)
    flags = np.array([m.tie_f, m.zero_f, *spec.flags()])

    def host(x):                    # lists and scalars as NumPy (one argument, not a pytree)
        return x if x is None or isinstance(x, jax.Array) else np.asarray(x, float)
    return _train_loss(params, amplitudes if concrete is None else host(amplitudes), mask,
                       np.where(np.isfinite(d), d, 1.0), flags, host(noise_sd), host(noise_cv),
                       noise_params if kernel else None,
                       scale if kernel and not normalise else None, m=m, lay=lay)


@functools.partial(jax.jit, static_argnames=("m", "lay"))
def _train_loss(params, amplitudes, mask, delta, flags, noise_sd, noise_cv, noise_params, scale,
                *, m: Model, lay: Layout):
    """The value of :func:`train_loss` after its checks: one compiled program per model, layout
    and data shape (``params``, ``amplitudes`` and the noise levels traced)."""
    dtype = jnp.result_type(float)
    y = jnp.asarray(amplitudes, dtype)
    sd = None if noise_sd is None else jnp.broadcast_to(jnp.asarray(noise_sd, dtype), y.shape)
    st = lk.stats(jnp.where(mask, y, 0.0), mask, sd=sd, cv=noise_cv, xp=jnp)
    arr = _Arrays(jnp.asarray(delta, dtype), lk.Stats(*(jnp.asarray(v, dtype) for v in st)),
                  flags)
    vec = m.family_vector(params)
    if noise_params is not None:                    # noise="gamma_kernel"
        r = family_release(m.family, [vec[..., i] for i in range(m.dim)], arr.delta, m.tie_f,
                           m.zero_f, taus=lay.taus, fit_taus=lay.fit_taus)
        c = [jnp.asarray(x, dtype) for x in noise_params.c]
        taus = (jnp.asarray(lay.noise_taus, dtype) if noise_params.tau is None
                else jnp.stack([jnp.asarray(x, dtype) for x in noise_params.tau]))
        log_sd = kernel_log_sd(jnp.log(jnp.asarray(noise_params.s, dtype)), noise_params.b_s,
                               jnp.stack(c) / taus, taus, arr.delta)
        A = 1.0 / r[0, 0] if scale is None else scale          # scale None: normalised
        return lk.nll_gamma_sd(arr.st, A * r, log_sd=log_sd)
    cons = family_constraints(m.family, lay.taus, lay.fit_taus)
    theta = jnp.stack([c.inverse(vec[i]) for i, c in enumerate(cons)])
    return _objective_for(lay)(theta, arr, None)


def fit_stp_trains(spike_times_ms: TrainData | ArrayLike | Sequence[Any],
                   amplitudes: ArrayLike | Sequence[Any] | None = None, *,
                   model: str | Model = "tm", noise: str = "gaussian",
                   noise_sd: ArrayLike | Sequence[Any] | None = None, noise_cv: float | None = None,
                   normalise: bool = False, init: ArrayLike | Sequence[Any] | None = None,
                   check_starts: bool = True, interval: str = "profile", level: float = 0.95,
                   max_rel_uncertainty: float = 0.5, allow_missing: bool = False,
                   zeros: str = "amplitude", max_steps: int = 1000,
                   progress: Callable | None = None, precision: str = "auto",
                   noise_taus: Sequence[float] | None = None,
                   fit_noise_taus: bool = False) -> TrainFitResult:
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
        model: ``"tm"``, ``"tm4"``, ``"depression"``, ``"srp"`` (:mod:`~jaxlif.fitting.models`),
            or SRP with other (or fitted) kernel time constants: :func:`~jaxlif.fitting.srp_model`,
            ``"srp:10,50,200"``, ``"srp:15,100,650:fit"``.
        noise: ``"gaussian"`` (additive), ``"gamma"`` (multiplicative; amplitudes > 0),
            ``"binomial"`` (Gaussian with the release-dependent variance ``s^2 r (1 - r)`` of a
            quantal response, ``s`` estimated: the scatter follows the train's history) or
            ``"gamma_kernel"`` (gamma amplitudes whose SD follows its own SRP cascade,
            ``sd = s sigmoid(b_s + sum_j (c_j/tau_j) sum exp(-dt/tau_j))``, as Rossbroich et al.
            2021; ``s, b_s, c_j`` fitted with intervals: ``result.noise_params``;
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
            of their optimum; and always with ``noise="gamma_kernel"``, whose profile intervals
            float32 cut short (:func:`precision_context`).  ``"default"``: JAX's default float.
            ``"float64"``: always (``jax.enable_x64`` around this call only; results are NumPy
            arrays either way).
        noise_taus: time constants [ms] of the SD kernel of ``noise="gamma_kernel"`` (default:
            the SRP model's kernel time constants, 15, 100 and 650 ms unless it has others).
        fit_noise_taus: fit the SD kernel's time constants too, started at ``noise_taus``
            (``noise="gamma_kernel"`` only): ``result.noise_params.tau`` with profile intervals
            in ``result.noise_interval.tau``; ``J`` more parameters in ``k``.

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
    with precision_context(precision, n_max, noise):
        rows = _rows(data, noise, noise_cv, spec.normalised)
        N = rows["y"].shape[0]
        starts = _starts(m, init, check_starts, rows["times"])
        n_grid = len(m.starts) if (check_starts or init is None) else 0
        arr = _arrays(rows, np.arange(N), [m] * N, spec)
        lay = layout_of(m, noise, _check_noise_taus(noise, noise_taus, fit_noise_taus),
                        fit_noise_taus)
        sol = _solve(arr, lay, [m] * N, [starts] * N, interval=interval,
                     level=float(level), max_rel=max_rel_uncertainty, max_steps=max_steps,
                     progress=progress, spec=spec, first_mean=first_means(rows),
                     n_grid=[n_grid] * N)
        res = _results(lay, [m] * N, arr, sol, rows["y_nan"], rows["times"], spec,
                       interval, rows["mask"], rows["c"])
        fit = _result(m, res, sol, slice(0, N), many, noise,
                      interval if not sol["interrupted"] else "none (interrupted)", float(level),
                      data.unit)
    if sol["interrupted"]:
        raise FitInterrupted(f"fit_stp_trains interrupted after {sol['steps']} optimiser steps; "
                             f"err.partial holds the best parameters so far (not converged, no "
                             f"intervals)", fit)
    return fit
