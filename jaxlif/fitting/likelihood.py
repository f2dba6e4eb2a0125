r"""Noise models of recorded amplitudes: negative log-likelihoods with the nuisance parts profiled.

The mean amplitude of pulse ``k`` of a protocol is ``mu_k = A r_k`` (``r_k`` the model's release,
:mod:`jaxlif.fitting.models`; ``A`` the amplitude scale).  Each recorded amplitude ``y_i`` (one
sweep, one pulse) is drawn around its mean:

``"gaussian"`` (additive)
    ``y_i = mu_i + eps_i``, ``eps_i ~ N(0, s_i^2)``.  With ``s_i`` given (scalar, per pulse or
    per point)::

        NLL = sum_i (y_i - mu_i)^2 / (2 s_i^2) + log s_i + log(2 pi)/2

    With one unknown ``s`` estimated (maximum likelihood ``s^2 = SSR/n``, profiled out)::

        NLL = n/2 (log(2 pi SSR / n) + 1)

``"gamma"`` (multiplicative: the standard deviation grows with the amplitude)
    ``y_i ~ Gamma`` with mean ``mu_i`` and coefficient of variation ``c`` (shape ``k = 1/c^2``),
    as Rossbroich et al. (2021) use for PSC amplitudes; needs ``y_i > 0``::

        NLL = sum_i  -k log k + lgamma(k) - (k - 1) log y_i + k log mu_i + k y_i / mu_i

    With ``c`` unknown, ``k`` is profiled: it solves ``log k - digamma(k) = mean(log(mu/y) + y/mu - 1)``
    (Minka's starting point, then Newton steps; a fixed number of them).

``"binomial"`` (release-dependent variance: the scatter follows the train's history)
    ``y_i ~ N(mu_i, s^2 r_i (1 - r_i))``: the variance of a quantal response ``q B`` with
    ``B ~ Binomial(N, r)`` (``A = N q``, so ``s^2 = q A``, the quantal size ``q = s^2 / A``),
    largest at ``r = 1/2`` and vanishing as the release goes to 0 or 1, so it changes along the
    train as the release does.  ``s`` is estimated (profiled: ``s^2 = WSS / n``, ``WSS`` the sum
    of ``(y - mu)^2 / (r (1 - r))``)::

        NLL = n/2 (log(2 pi WSS / n) + 1) + 1/2 sum_i log(r_i (1 - r_i))

    and the scale ``A`` minimises ``WSS`` (``sum y r / g / sum r^2 / g``, ``g = r (1 - r)``).
    For any model whose release is a probability (all four).

``"gamma_kernel"`` (history-dependent SD: an SRP cascade for the noise, Rossbroich et al. 2021)
    ``y_i`` gamma-distributed with mean ``mu_k`` and standard deviation::

        sd_k = s sigmoid(b_s + sum_j (c_j / tau_j) sum_{i<k} exp(-(t_k - t_i) / tau_j))

    (shape ``mu^2 / sd^2``, rate ``mu / sd^2``), so the scatter has its own dynamics along the
    train, which need not follow the mean's (a constant CV is the special case ``b_s = b``,
    ``c_j = a_j`` of an SRP mean).  ``s > 0`` (the data's unit), ``b_s`` and ``c_j`` [ms] are
    parameters of the fit, each with a profile interval (:func:`nll_gamma_sd`; the time
    constants ``tau_j`` are those of the SRP kernel, 15, 100 and 650 ms by default)::

        NLL = sum_i  lgamma(k_i) - k_i log(beta_i) - (k_i - 1) log y_i + beta_i y_i

    with ``k = mu^2/sd^2``, ``beta = mu/sd^2``.  Needs ``y_i > 0``.  The amplitude scale is not
    profiled in closed form under this model: the fits optimise it (as a factor of the
    constant-CV estimate ``mean(y / r)``).

The scale ``A`` is profiled in closed form (its maximum-likelihood value for the current
release): ``sum w y r / sum w r^2`` with ``w = 1/s^2`` (Gaussian), ``mean(y / r)`` (gamma).  With
``normalise=True`` in the fits the data are divided by their mean first-pulse amplitude and
``A = 1 / r_1`` is fixed (the first pulse is 1).

Both likelihoods depend on the data only through sums per protocol and pulse (:class:`Stats`:
counts, sums of ``y``, ``y^2``, ``log y`` with the weights), computed once before the fit; the
fit then costs the same for 5 or 500 sweeps.  :func:`nll` returns the NLL *per point* (the
optimiser's objective) and the profiled nuisance values.  Whether the noise level
is estimated and whether the data are normalised are traced flags (both branches are
evaluated; one compiled fit serves them all).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special

__all__ = ["NOISE_MODELS", "NoiseSpec", "nll", "nll_gamma_sd", "chi2_sf", "f_sf", "t2_quantile",
           "chi2_quantile"]

#: Noise models accepted by the fits.
NOISE_MODELS = ("gaussian", "gamma", "binomial", "gamma_kernel")

_LOG_2PI = math.log(2.0 * math.pi)


class NoiseSpec(NamedTuple):
    """The noise model of one fit problem (``kind`` selects the compiled code; ``estimated``
    and ``normalised`` are traced flags, so they share it).

    Attributes:
        kind: ``"gaussian"``, ``"gamma"`` or ``"binomial"``.
        estimated: True when the noise level (sd or CV) is estimated, False when given.
        normalised: True when ``A = 1/r_1`` is fixed (data normalised by the first pulse).
    """

    kind: str
    estimated: bool
    normalised: bool

    def flags(self) -> np.ndarray:
        """``(estimated, normalised)`` as booleans (the traced part)."""
        return np.array([self.estimated, self.normalised])


def _digamma(k):
    """Digamma for k > 0: recurrence ``psi(k) = psi(k + 6) - sum 1/(k + i)``, then the
    asymptotic series (error < 1e-12); plain arithmetic, cheap to compile."""
    shift = sum(1.0 / (k + i) for i in range(6))
    x = k + 6.0
    x2 = 1.0 / (x * x)
    return (jnp.log(x) - 0.5 / x - x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 * (1.0 / 252 - x2 / 240)))
            - shift)


def _trigamma(k):
    """Trigamma for k > 0, by the same recurrence and asymptotic series."""
    shift = sum(1.0 / (k + i) ** 2 for i in range(6))
    x = k + 6.0
    x2 = 1.0 / (x * x)
    return (1.0 / x + 0.5 * x2 + (x2 / x) * (1.0 / 6 - x2 * (1.0 / 30 - x2 * (1.0 / 42 - x2 / 30)))
            + shift)


def _gamma_shape(s):
    """Solve ``log k - digamma(k) = s`` (s > 0) for the gamma shape ``k``; fixed iteration count."""
    s = jnp.maximum(s, 1e-12)
    k = (3.0 - s + jnp.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    for _ in range(4):
        f = jnp.log(k) - _digamma(k) - s
        df = 1.0 / k - _trigamma(k)
        k = k * jnp.exp(-f / (k * df))          # Newton in log k (keeps k > 0)
    return k


class Stats(NamedTuple):
    """Sufficient statistics of one synapse's amplitudes, per protocol and pulse (``(...,
    n_protocols, n_spikes)`` each): the likelihoods below depend on the data only through
    them, so a fit costs the same for 5 or 500 sweeps.

    Attributes:
        count: amplitudes recorded.  sw, swy, swyy: sums of ``w``, ``w y``, ``w y^2`` with
            ``w = 1/s^2`` (given Gaussian sd) or 1.  slogs, ss2: sums of ``log s`` and ``s^2``
            (given sd; 0 otherwise).  sy, slogy: sums of ``y`` and ``log y`` (gamma).
        cv: given gamma CV of the pulse (1 otherwise).
    """

    count: jax.Array
    sw: jax.Array
    swy: jax.Array
    swyy: jax.Array
    slogs: jax.Array
    ss2: jax.Array
    sy: jax.Array
    slogy: jax.Array
    cv: jax.Array


def stats(y, mask, sd=None, cv=None, xp=np) -> Stats:
    """:class:`Stats` of amplitudes ``y (..., n_sweeps, n_spikes)`` (sums over the sweep axis).

    ``sd``: given Gaussian sd per point (broadcast to ``y``) or ``None``; ``cv``: given gamma CV
    per pulse (broadcast to ``(..., n_spikes)``) or ``None``.  ``xp``: ``numpy`` or
    ``jax.numpy`` (for traced amplitudes).
    """
    m = mask
    y0 = xp.where(m, y, 0.0)
    if sd is None:
        w = xp.where(m, 1.0, 0.0)
        logs = s2 = xp.zeros_like(y0)
    else:
        s = xp.where(m, sd, 1.0)
        w = xp.where(m, 1.0 / (s * s), 0.0)
        logs, s2 = xp.where(m, xp.log(s), 0.0), xp.where(m, s * s, 0.0)
    pos = m & (y0 > 0)
    ly = xp.where(pos, xp.log(xp.where(pos, y0, 1.0)), 0.0)
    sum_ = lambda a: xp.sum(a, axis=-2)  # noqa: E731
    count = sum_(xp.where(m, 1.0, 0.0))
    cvk = xp.ones_like(count) if cv is None else xp.broadcast_to(xp.asarray(cv, float),
                                                                 count.shape)
    return Stats(count, sum_(w), sum_(w * y0), sum_(w * y0 * y0), sum_(logs), sum_(s2),
                 sum_(y0), sum_(ly), cvk)


def nll(st: Stats, r, r1, gamma: bool, estimated, normalised):
    """Per-point negative log-likelihood, the amplitude scale and the noise level.

    Args:
        st: :class:`Stats` of the amplitudes.  r: release ``(..., n_protocols, n_spikes)``.
        r1: release of the first spike (for ``normalised``).
        gamma: the noise model, selecting the compiled code: ``False`` Gaussian, ``True``
            gamma, ``"binomial"`` the release-dependent Gaussian (``s`` always estimated).
        estimated, normalised: the rest of :class:`NoiseSpec` (may be traced).

    Returns:
        ``(nll_per_point, A, noise)``: ``noise`` is the sd (Gaussian; the RMS of the given ones)
        or the CV (gamma) in use.
    """
    some = st.count > 0
    n = jnp.sum(st.count)
    if gamma == "binomial":
        return _nll_binomial(st, jnp.where(some, r, 0.5), r1, some, n, normalised)
    r = jnp.where(some, r, 1.0)
    if not gamma:
        A_fit = jnp.sum(r * st.swy) / jnp.sum(r * r * st.sw)
        A = jnp.where(normalised, 1.0 / r1, A_fit)
        mu = A * r
        wss = jnp.sum(jnp.where(some, st.swyy - 2.0 * mu * st.swy + mu * mu * st.sw, 0.0))
        eps = jnp.finfo(wss.dtype).eps
        # floor: a fit exact to rounding must not send the log-likelihood to -inf
        wss = jnp.maximum(wss, 10.0 * eps * jnp.sum(st.swyy))
        est = 0.5 * n * (jnp.log(2.0 * jnp.pi * wss / n) + 1.0)
        given = 0.5 * wss + jnp.sum(st.slogs) + 0.5 * n * _LOG_2PI
        total = jnp.where(estimated, est, given)
        noise = jnp.where(estimated, jnp.sqrt(wss / n), jnp.sqrt(jnp.sum(st.ss2) / n))
        return total / n, A, noise
    A_fit = jnp.sum(jnp.where(some, st.sy / r, 0.0)) / n
    A = jnp.where(normalised, 1.0 / r1, A_fit)
    mu = A * r
    log_mu = jnp.log(mu)
    dev = jnp.sum(jnp.where(some, st.sy / mu - st.slogy + st.count * (log_mu - 1.0), 0.0)) / n
    k_est = _gamma_shape(dev)
    k = jnp.where(estimated, k_est, 1.0 / (st.cv * st.cv))
    per = (st.count * (-k * jnp.log(k) + special.gammaln(k) + k * log_mu)
           - (k - 1.0) * st.slogy + k * st.sy / mu)
    total = jnp.sum(jnp.where(some, per, 0.0))
    noise = jnp.where(estimated, 1.0 / jnp.sqrt(k_est),
                      jnp.sqrt(jnp.sum(st.count * st.cv * st.cv) / n))
    return total / n, A, noise


def _nll_binomial(st: Stats, r, r1, some, n, normalised):
    """Per-point NLL of the release-dependent (binomial-like) Gaussian, ``s`` profiled."""
    g = jnp.maximum(r * (1.0 - r), 1e-12)
    sw, swy, swyy = st.sw / g, st.swy / g, st.swyy / g
    A_fit = jnp.sum(r * swy) / jnp.sum(r * r * sw)
    A = jnp.where(normalised, 1.0 / r1, A_fit)
    mu = A * r
    wss = jnp.sum(jnp.where(some, swyy - 2.0 * mu * swy + mu * mu * sw, 0.0))
    eps = jnp.finfo(wss.dtype).eps
    wss = jnp.maximum(wss, 10.0 * eps * jnp.sum(jnp.where(some, swyy, 0.0)))
    total = (0.5 * n * (jnp.log(2.0 * jnp.pi * wss / n) + 1.0)
             + 0.5 * jnp.sum(jnp.where(some, st.count * jnp.log(g), 0.0)))
    return total / n, A, jnp.sqrt(wss / n)


def nll_gamma_sd(st: Stats, mu, sd=None, *, log_sd=None):
    """Per-point NLL of gamma amplitudes with mean ``mu`` and standard deviation ``sd`` per
    protocol and pulse (``(..., n_protocols, n_spikes)``; module docstring, ``"gamma_kernel"``).
    Depends on the data through ``count``, ``sy``, ``slogy`` of :class:`Stats` only.

    ``log_sd`` in place of ``sd``: the SD's logarithm, for SDs that ``sd`` could not hold
    (the kernel SD ``s sigmoid(x)`` far in the sigmoid's tail, with ``s`` very large: the
    rate ``mu / sd^2`` and shape ``(mu / sd)^2`` are computed from logarithms either way)."""
    some = st.count > 0
    n = jnp.sum(st.count)
    mu = jnp.where(some, mu, 1.0)
    # masked before the logarithm: a pulse with no amplitudes may carry sd = 0 (no NaN gradient)
    log_sd = jnp.where(some, jnp.log(jnp.where(some, sd, 1.0)) if log_sd is None else log_sd, 0.0)
    log_beta = jnp.log(mu) - 2.0 * log_sd
    k = mu * jnp.exp(log_beta)
    per = (st.count * (special.gammaln(k) - k * log_beta) - (k - 1.0) * st.slogy
           + jnp.exp(log_beta) * st.sy)
    return jnp.sum(jnp.where(some, per, 0.0)) / n


def saturated_release(st: Stats, gamma: bool):
    """The saturated model's mean per pulse (the maximum-likelihood free mean), for the
    goodness of fit: ``nll(st, saturated_release(st), 1.0, gamma, estimated, True)``."""
    some = st.count > 0
    mean = st.sy / jnp.where(some, st.count, 1.0) if gamma else st.swy / jnp.where(some, st.sw, 1.0)
    return jnp.where(some & (mean > 0), mean, 1.0)


# --------------------------------------------------------------------------------------
# Distribution functions, in plain float64 Python (SciPy is not a dependency; compiling the
# JAX special functions would cost more than evaluating a few values here)
# --------------------------------------------------------------------------------------


def _gammainc_upper(a: float, x: float) -> float:
    """Regularised upper incomplete gamma ``Q(a, x) = 1 - P(a, x)``: ``1 -`` the series below
    ``a + 1``, the continued fraction itself above (Numerical Recipes 6.2), so that a far tail
    keeps its digits (no ``1 - P`` there)."""
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    lg = math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(10000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return 1.0 - total * math.exp(-x + a * math.log(x) - lg)
    return _gammainc_upper_cf(a, x, lg)


_TINY = 1e-300


def _lentz(c, d, a_n, b_n):
    """One step of Lentz's method for a continued fraction ``b_0 + a_1/(b_1 + a_2/(b_2 + ...))``
    (Numerical Recipes 5.2): the updated ``(c, d)`` and the factor ``delta`` that multiplies the
    running value; tiny denominators are replaced by ``_TINY``."""
    d = b_n + a_n * d
    d = _TINY if abs(d) < _TINY else d
    c = b_n + a_n / c
    c = _TINY if abs(c) < _TINY else c
    d = 1.0 / d
    return c, d, d * c


def _gammainc_upper_cf(a, x, lg):
    """Upper regularised incomplete gamma ``Q(a, x)`` by its continued fraction (NR 6.2)."""
    b = x + 1.0 - a
    c, d = 1.0 / _TINY, 1.0 / b
    h = d
    for i in range(1, 10000):
        b += 2.0
        c, d, delta = _lentz(c, d, -i * (i - a), b)
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return math.exp(-x + a * math.log(x) - lg) * h


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (NR 6.4): even and odd steps."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (_TINY if abs(d) < _TINY else d)
    c, h = 1.0, d
    for m in range(1, 10000):
        m2 = 2 * m
        c, d, delta = _lentz(c, d, m * (b - m) * x / ((qam + m2) * (a + m2)), 1.0)
        h *= delta
        c, d, delta = _lentz(c, d, -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)), 1.0)
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` (continued fraction; Numerical Recipes 6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _vectorised(fn, *args):
    arrs = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in args))
    out = np.array([fn(*vals) for vals in zip(*(a.ravel() for a in arrs))], dtype=float)
    return out.reshape(arrs[0].shape)


def chi2_sf(x, dof) -> np.ndarray:
    """Survival function of the chi-squared distribution, ``P(X > x)`` (NaN for dof <= 0)."""
    def one(x, k):
        if not (k > 0) or math.isnan(x):
            return math.nan
        return _gammainc_upper(k / 2.0, max(x, 0.0) / 2.0)
    return _vectorised(one, x, dof)


def f_sf(x, d1, d2) -> np.ndarray:
    """Survival function of the F distribution with ``(d1, d2)`` degrees of freedom."""
    def one(x, d1, d2):
        if not (d1 > 0 and d2 > 0) or math.isnan(x):
            return math.nan
        x = max(x, 0.0)
        if math.isinf(x):
            return 0.0
        return _betainc(d2 / 2.0, d1 / 2.0, d2 / (d2 + d1 * x))
    return _vectorised(one, x, d1, d2)


def _bisect(fn, lo, hi, iters=200):
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if fn(mid):
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def chi2_quantile(p: float, dof: float) -> float:
    """``x`` with ``P(X <= x) = p`` for a chi-squared variable (bisection)."""
    return _bisect(lambda x: 1.0 - float(chi2_sf(x, dof)) >= p, 0.0, 1e4)


def t2_quantile(p: float, dof) -> np.ndarray:
    """Square of the two-sided ``p`` quantile of Student's t with ``dof`` degrees of freedom
    (= the ``p`` quantile of F(1, dof)); ``inf`` for ``dof <= 0``.  Vectorised over ``dof``."""
    dof = np.atleast_1d(np.asarray(dof, dtype=float))
    out = np.full(dof.shape, np.inf)
    cache: dict = {}
    for i, d in enumerate(dof):
        if d <= 0:
            continue
        if d not in cache:
            cache[d] = _bisect(lambda x, d=d: float(f_sf(x, 1.0, d)) <= 1.0 - p, 0.0, 1e7, 100)
        out[i] = cache[d]
    return out
