"""Input generators: Poisson and regular spike trains, white-noise, sinusoidal and DC currents.

Every stochastic generator takes an explicit ``jax.random`` key first; nothing reads or
sets a global seed.  Shapes follow the tutorial: time is the last axis, trains are
``(n_trains, n_steps)``, currents ``(n_steps,)``; ``n_steps = len(np.arange(0, T, dt))``.

Poisson randomness is drawn *per time step* from ``jax.random.fold_in(key, step)``.
The same per-step draw is used by the whole-array generators here and inside the
batch simulators' scans, so a simulation that draws its input on the fly sees exactly
the train (or count) that :func:`poisson_trains` (or :func:`poisson_counts`) returns
for the same key: the two paths can be checked against each other.

Invalid traced values (a rate below 0 or above ``1000/dt``, a probability outside [0, 1], NaN)
poison the outputs: float counts become NaN, boolean trains all ``True``; :func:`jaxlif.checked`
raises naming the argument.  A rate of ``-0.0`` (e.g. ``np.round(-0.4)``) is 0.

Gradients: the draws compare uniforms with ``p``, so nothing here is differentiable with respect
to a rate or a probability (the gradient is zero, not an estimate); see docs/gradients.md.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlog1py, xlogy

from jaxlif import _checks
from jaxlif._threefry import uniform_at
from jaxlif.grid import n_steps as _n_steps

__all__ = [
    "poisson_trains",
    "poisson_counts",
    "regular_train",
    "white_noise_current",
    "sinusoidal_current",
    "dc_current",
    "bernoulli_step",
    "binomial_step",
    "binomial_count",
]


def _p_spike(rate, dt: float, name: str = "rate"):
    """Probability of a spike in one step, p = rate [Hz] * dt [ms] / 1000 (``-0.0`` becomes ``+0.0``).

    Differentiating through it warns (once per trace) that the draws are not reparameterised."""
    rate = _drawn_rate(jnp.asarray(rate, dtype=jnp.result_type(float)), name)
    return jnp.where(rate == 0, 0.0, rate) * (dt / 1000.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _drawn_rate(rate, name: str):
    return rate


@_drawn_rate.defjvp
def _drawn_rate_jvp(name, primals, tangents):
    warnings.warn(f"the gradient with respect to {name} is zero: Poisson spikes are drawn by comparing uniforms "
                  f"with rate*dt/1000, which is not reparameterised. Use finite differences over common random "
                  f"numbers (the same key), or jaxlif.fmp_shot_noise for a differentiable approximation of the "
                  f"free membrane potential (docs/gradients.md)", UserWarning, stacklevel=2)
    return primals[0], jnp.zeros_like(tangents[0])


#: Most trains per population that the per-step Poisson samplers accept.  Every step draws the
#: pooled count by comparing one uniform with the ``n + 1`` binomial tail probabilities, so a step
#: costs time and memory in proportion to ``n`` (10**6 trains: about 4 MB and 5 s per
#: simulated second on one CPU core; 10**9 would need gigabytes and hours).
MAX_TRAINS = 1_000_000


def check_n_trains(name: str, n, minimum: int = 0) -> int:
    """A static number of trains, ``minimum <= n <= MAX_TRAINS`` (message names ``name``)."""
    n = _checks.check_count(name, n, minimum)
    if n > MAX_TRAINS:
        raise ValueError(f"{name}={n} trains is above the limit of {MAX_TRAINS}: the per-step sampler "
                         f"holds the table of the {name} binomial tail probabilities, so memory and the "
                         f"time to build it grow in proportion to {name}. For very many weak "
                         f"inputs use fewer trains at a proportionally higher rate (the pooled count is "
                         f"then nearly the same Poisson law while rate*dt/1000 stays small), or a "
                         f"current input (jaxlif.white_noise_current)")
    return n


def _bernoulli(key, step, p, n: int):
    u = uniform_at(key, step, (n,), jnp.result_type(float))      # = jax.random.uniform(fold_in(key, step), (n,))
    return u < p


def bernoulli_step(key: jax.Array, step: jax.Array, p: jax.Array, n: int) -> jax.Array:
    """Spikes of ``n`` independent trains at one step: ``uniform(fold_in(key, step), (n,)) < p`` (bool).

    ``p`` must lie in [0, 1]: a concrete value outside raises ``ValueError``; a traced one gives an
    all-``True`` (poisoned) result, never the clipped "no spikes" (``p < 0``) or "all spikes" (``p > 1``).
    """
    _checks.check_probability("p", p)
    _checks.check_count("n", n)
    p = jnp.asarray(p, dtype=jnp.result_type(float))
    return _checks.poison(_checks.traced_rule("p", p, "prob"), _bernoulli(key, step, p, n))


def _binomial_tail(p: jax.Array, n: int) -> jax.Array:
    """``P(X > k)`` for ``k = 0 .. n-1``, X ~ Binomial(n, p); differentiable in p, for p in [0, 1].

    Non-increasing in ``k`` (what :func:`binomial_count`'s search needs): each of the two sums is monotone
    in floating point, and a running minimum guards the switch between them (it changes no entry of a
    tail that is already non-increasing).  All NaN for ``p`` outside [0, 1] or NaN
    (:func:`binomial_count` then returns NaN)."""
    k = jnp.arange(n + 1, dtype=jnp.result_type(float))
    log_pmf = (gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)
               + xlogy(k, p) + xlog1py(n - k, -p))
    pmf = jnp.exp(log_pmf)
    upper = jnp.cumsum(pmf[::-1])[::-1][1:]  # P(X > k) summed from the top: accurate when small
    lower = 1.0 - jnp.cumsum(pmf)[:-1]       # 1 - P(X <= k): accurate when P(X > k) is near 1
    tail = jax.lax.cummin(jnp.where(upper < 0.5, upper, lower)) if n > 0 else upper
    return jnp.where((p >= 0) & (p <= 1), tail, jnp.nan)


def _prefix_length(v: jax.Array, n: int, entry) -> jax.Array:
    """``#{k < n : v <= entry(k)}`` for entries non-increasing in ``k`` (``n >= 1``), int32 of ``v``'s shape:
    the length of the prefix of entries ``>= v``, by bisection in ``ceil(log2(n + 1))`` probes instead of
    ``n`` comparisons.  ``entry(k)``: the entries at the int32 indices ``k`` (``v``'s shape, ``0 <= k < n``).
    Equal to ``sum(v <= entries)`` on non-increasing entries."""
    lo, hi = jnp.zeros(jnp.shape(v), jnp.int32), jnp.full(jnp.shape(v), n, jnp.int32)   # the length is in [lo, hi]
    for _ in range(int(n).bit_length()):                        # ceil(log2(n + 1)) halvings of [lo, hi]
        mid = (lo + hi) // 2
        inside = v <= entry(jnp.minimum(mid, n - 1))
        open_ = lo < hi
        lo, hi = jnp.where(open_ & inside, mid + 1, lo), jnp.where(open_ & ~inside, mid, hi)
    return lo


def binomial_count(key: jax.Array, step: jax.Array, tail: jax.Array) -> jax.Array:
    """Binomial count at one step by inverse CDF, given ``tail[k] = P(X > k)`` from :func:`_binomial_tail`.

    ``V = 1 - U`` is uniform on ``(0, 1]`` and ``count = #{k : V <= P(X > k)}``, so
    ``P(count > k) = P(V <= tail[k]) = tail[k]`` up to the resolution of ``U`` (2**-23 in float32,
    2**-52 in float64); the tail is non-increasing, so the count is found by bisection
    (:func:`_prefix_length`, ``ceil(log2(n + 1))`` probes).  Returns a float count, NaN if the tail
    is NaN (an invalid probability).
    """
    if tail.shape[0] == 0:                     # no trains
        return jnp.zeros((), tail.dtype)
    u = uniform_at(key, step, (), tail.dtype)                   # = jax.random.uniform(fold_in(key, step), ())
    count = _prefix_length(1.0 - u, tail.shape[0], lambda k: tail[k]).astype(tail.dtype)
    return jnp.where(jnp.isnan(tail[0]), jnp.nan, count)


def binomial_step(key: jax.Array, step: jax.Array, p: jax.Array, n: int) -> jax.Array:
    """Number of spikes among ``n`` independent trains at one step, drawn as one Binomial(n, p) count.

    Inverse-CDF sampling from one uniform variate per step (:func:`binomial_count`).  This is
    the exact binomial law up to the resolution of the uniform (2**-23 in float32, 2**-52 in
    float64: the same resolution a per-train test ``uniform < p`` has), so the count has the
    same distribution as summing ``n`` Bernoulli trains, at the cost of one random number
    instead of ``n``.  Inside a scan, compute the tail once with :func:`_binomial_tail` and call
    :func:`binomial_count` (what the simulators do).  Returns a float count; ``p`` outside [0, 1]
    raises (concrete) or gives NaN (traced).
    """
    _checks.check_probability("p", p)
    check_n_trains("n", n)
    p = jnp.asarray(p, dtype=jnp.result_type(float))
    _checks.traced_rule("p", p, "prob")
    return binomial_count(key, step, _binomial_tail(p, n))


def _check_poisson(key, rate, n, T, dt, name="rate"):
    _checks.check_key(key)
    steps = _n_steps(T, dt)
    _checks.check_rate(name, rate, dt)
    check_n_trains("n", n, minimum=1)
    if np.ndim(rate) != 0 and not isinstance(rate, jax.core.Tracer):
        raise ValueError(f"{name} must be a scalar rate in Hz, got shape {np.shape(rate)}; "
                         f"use jax.vmap for several rates")
    return steps


def poisson_trains(key: jax.Array, rate: float, n: int, *, T: float, dt: float) -> jax.Array:
    """``n`` independent Poisson (Bernoulli-per-step) trains, shape ``(n, n_steps)``, dtype bool.

    ``spike[i, k] = U[i, k] < p`` with ``p = rate * dt / 1000`` (docs/conventions.md 4.4); ``U[:, k]`` is
    drawn from ``fold_in(key, k)``.

    Args:
        key: a ``jax.random`` key.
        rate: firing rate [Hz], ``0 <= rate <= 1000/dt``.
        n: number of trains.
        T: duration [ms].
        dt: time step [ms].

    Raises:
        ValueError: negative or non-finite rate, ``rate*dt/1000 > 1``, bad T or dt.
    """
    steps = _check_poisson(key, rate, n, T, dt)
    return _poisson_trains(key, rate, n, steps, float(dt))


@jax.jit(static_argnums=(2, 3, 4))
def _poisson_trains(key, rate, n, steps, dt):
    ok = _checks.traced_rule("rate", rate, "rate", dt)
    p = _p_spike(rate, dt)
    spikes = jax.vmap(lambda k: _bernoulli(key, k, p, n))(jnp.arange(steps))
    return _checks.poison(ok, spikes.T)


def poisson_counts(key: jax.Array, rate: float, n: int, *, T: float, dt: float) -> jax.Array:
    """Per-step spike counts of ``n`` pooled Poisson trains, shape ``(n_steps,)``, float.

    Equal in law to ``poisson_trains(key, rate, n, ...).sum(0)`` (Binomial(n, p) per step), drawn
    with :func:`binomial_step` from ``fold_in(key, k)``: exactly the counts that
    :func:`jaxlif.simulate_cond_lif_poisson` draws inside its scan for the same key.
    """
    steps = _check_poisson(key, rate, n, T, dt)
    return _poisson_counts(key, rate, n, steps, float(dt))


@jax.jit(static_argnums=(2, 3, 4))
def _poisson_counts(key, rate, n, steps, dt):
    ok = _checks.traced_rule("rate", rate, "rate", dt)
    tail = _binomial_tail(_p_spike(rate, dt), n)
    return _checks.poison(ok, jax.vmap(lambda k: binomial_count(key, k, tail))(jnp.arange(steps)))


def regular_train(rate: float, *, T: float, dt: float) -> jax.Array:
    """The tutorial's regular train: spikes at indices ``0, isi, 2*isi, ...`` with
    ``isi = int((1000/rate)/dt)`` steps, shape ``(n_steps,)``, dtype bool.

    Args:
        rate: rate [Hz]; needs ``isi >= 1`` step, i.e. ``rate <= 1000/dt``.
    """
    steps = _n_steps(T, dt)
    if isinstance(rate, jax.core.Tracer):
        raise TypeError("regular_train needs a concrete rate (it sets where the spikes are); for a "
                        "differentiable regular-train quantity see jaxlif.ratio_curve")
    _checks.check_positive("rate", rate, "Hz")
    isi = int((1e3 / float(rate)) / dt)
    if isi < 1:
        raise ValueError(f"rate={rate} Hz with dt={dt} ms gives an inter-spike interval of "
                         f"{1e3 / float(rate)} ms, under one step; need rate <= {1000.0 / dt:.6g} Hz")
    train = np.zeros(steps, dtype=bool)
    train[::isi] = True
    return jnp.asarray(train)


def white_noise_current(key: jax.Array, mu: float, sig: float, *, T: float, dt: float) -> jax.Array:
    """Gaussian white-noise current ``mu + sig * N(0, 1) / sqrt(dt/1000)`` [pA], shape ``(n_steps,)``.

    The sample variance is ``sig**2 * 1000 / dt`` (the tutorial's ``my_GWN`` convention).

    Args:
        mu: mean [pA].  sig: noise amplitude [pA * sqrt(s)], >= 0.
    """
    _checks.check_key(key)
    steps = _n_steps(T, dt)
    _checks.check_finite("mu", mu, "pA")
    _checks.check_nonnegative("sig", sig)
    xi = jax.random.normal(key, (steps,), dtype=jnp.result_type(float))
    ok = _checks.traced_rule("mu", mu, "finite") & _checks.traced_rule("sig", sig, "nonneg")
    return _checks.poison(ok, mu + sig * xi / np.sqrt(dt / 1000.0))


def sinusoidal_current(i_mean: float, *, T: float, dt: float, period: float = 10.0) -> jax.Array:
    """The first tutorial's input ``I(t) = i_mean * (1 + sin(2*pi*t/period))`` [pA], ``t = k*dt``.

    Args:
        i_mean: mean current [pA] (the tutorial: 250 pA).
        period: period of the sinusoid [ms] (the tutorial: 10 ms).
    """
    steps = _n_steps(T, dt)
    _checks.check_finite("i_mean", i_mean, "pA")
    _checks.check_positive("period", period, "ms")
    t = np.arange(steps) * dt
    return jnp.asarray(i_mean * (1.0 + np.sin((t * 2.0 * np.pi) / period)), dtype=jnp.result_type(float))


def dc_current(I: float, *, T: float, dt: float) -> jax.Array:
    """Constant current ``I`` [pA], shape ``(n_steps,)``."""
    steps = _n_steps(T, dt)
    _checks.check_finite("I", I, "pA")
    return jnp.full((steps,), I, dtype=jnp.result_type(float))
