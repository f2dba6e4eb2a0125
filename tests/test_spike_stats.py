"""Differentiable spike statistics (jaxlif.spike_stats) and the guards against silent zero gradients.

Three kinds of reference:

* forward values on hand-made rasters against plain NumPy formulas written here;
* the exact derivative of each statistic with respect to the raster values (a smooth function of
  them) against central differences of the raster values, in float64 (``jax.test_util.check_grads``);
* the surrogate gradient of each statistic of a noisy LIF population against central finite
  differences of the same runs (common random numbers), per parameter: the same sign wherever the
  difference is clearly non-zero, within a factor of 3 where stated (the module docstring of
  ``jaxlif.spike_stats`` and docs/gradients.md list the ratios measured).

One simulation program (16 groups x 16 neurons, 2 s at dt = 0.5 ms) serves every statistic.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif
from jaxlif import spike_stats as ss
from jaxlif.spike_stats import NonDifferentiableError, SpikeGradWarning

SG = jaxlif.surrogates.fast_sigmoid()


def _random_raster(shape, p, seed):
    return (np.random.default_rng(seed).random(shape) < p)


# ------------------------------------------------------------------------------------------------
# forward values against NumPy on hand-made rasters
# ------------------------------------------------------------------------------------------------

R = _random_raster((3, 5, 1000), 0.03, 0)          # (trials, neurons, steps) at dt = 0.2 ms
DT = 0.2

# Each forward test below evaluates its statistics in one compiled program (jax.jit of them all): called
# eagerly, converting each NumPy raster and each operation around the library's compiled kernels compiled a
# program of its own (5 to 12 per test, 2026-12-07).  The statistics are the same functions, traced.


def test_rates_are_spikes_per_second():
    s = R.astype(np.float32)
    expect = R.sum(-1) / (R.shape[-1] * DT / 1000.0)
    # 10 spikes in 200 steps of 0.5 ms: 100 Hz
    train = np.zeros(200)
    train[::20] = 1
    rate, rate_bool, pop, pop0, rate_train = jax.jit(lambda s, r, train: (
        ss.firing_rate(s, DT), ss.firing_rate(r, DT), ss.population_rate(s, DT),
        ss.population_rate(s, DT, axis=0), ss.firing_rate(train, 0.5)))(s, R, train)
    np.testing.assert_allclose(rate, expect, rtol=1e-6)
    np.testing.assert_allclose(rate_bool, expect, rtol=1e-6)                     # boolean accepted
    np.testing.assert_allclose(pop, expect.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(pop0, expect.mean(0), rtol=1e-6)
    assert float(rate_train) == pytest.approx(100.0, rel=1e-6)


def _np_gaussian_psth(train, dt, width):
    half = int(np.ceil(4 * width / dt))
    j = np.arange(-half, half + 1)
    w = np.exp(-0.5 * (j * dt / width) ** 2)
    w /= w.sum()
    return np.convolve(train, w, mode="same") * 1000.0 / dt      # centred, zero-padded


def _np_exponential_psth(train, dt, tau):
    a, r, out = np.exp(-dt / tau), 0.0, []
    for x in train:
        r = a * r + (1 - a) * 1000.0 * x / dt
        out.append(r)
    return np.array(out)


def test_psth_matches_numpy_convolution_and_recursion():
    s = R.astype(np.float32)
    # a regular 50 Hz train: the smoothed rate is 50 Hz away from the edges
    train = np.zeros(5000)
    train[::100] = 1
    each, mean, expo_mean, regular = jax.jit(lambda s, train: (
        ss.psth(s, DT, 3.0, axis=None), ss.psth(s, DT, 3.0), ss.psth(s, DT, 10.0, kernel="exponential", axis=0),
        ss.psth(train, DT, 20.0, axis=None)))(s, train)
    gauss = np.array([[_np_gaussian_psth(tr, DT, 3.0) for tr in trial] for trial in R])
    np.testing.assert_allclose(each, gauss, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(mean, gauss.mean(-2), rtol=1e-4, atol=1e-2)
    expo = np.array([[_np_exponential_psth(tr, DT, 10.0) for tr in trial] for trial in R])
    np.testing.assert_allclose(expo_mean, expo.mean(0), rtol=1e-4, atol=1e-2)
    mid = np.asarray(regular)[1000:4000]
    assert np.all(np.abs(mid - 50.0) < 0.5)


def test_fano_factor_matches_numpy():
    s = R.astype(np.float32)
    # a trailing partial window is dropped (windows of 330 steps: 3 of them); a silent train gives 0,
    # a regular train whose period divides the window 0
    special = np.zeros((3, 5, 1000), np.float32)
    special[0, 0, ::10] = 1
    fano = jax.jit(lambda s, special: ([ss.fano_factor(s, DT, 20.0, ddof=ddof) for ddof in (0, 1)],
                                       ss.fano_factor(s, DT, 66.0), ss.fano_factor(special, DT, 20.0)))
    by_ddof, partial, fano_special = fano(s, special)
    counts = R[..., :1000].reshape(3, 5, 10, 100).sum(-1)            # 20 ms windows of 100 steps
    for ddof in (0, 1):
        expect = counts.var(-1, ddof=ddof) / counts.mean(-1)
        np.testing.assert_allclose(by_ddof[ddof], expect, rtol=1e-5)
    counts = R[..., :990].reshape(3, 5, 3, 330).sum(-1)
    np.testing.assert_allclose(partial, counts.var(-1, ddof=1) / counts.mean(-1), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(fano_special)[0, :2], [0.0, 0.0])


def test_soft_isi_cv_equals_the_interval_cv_on_01_rasters():
    rng = np.random.default_rng(3)
    rasters = rng.random((6, 2000)) < np.array([0.002, 0.01, 0.03, 0.1, 0.3, 0.6])[:, None]
    # ISIs 2, 4, 2, 4 steps: CV 1/3; a regular train: exactly 0; 3 spikes (the tutorial's rule): 0;
    # fewer than min_spikes: 0
    hand = np.zeros((6, 2000), np.float32)
    hand[0, [0, 2, 6, 8, 12]] = 1
    hand[1, 5::37] = 1
    hand[2, [0, 2, 6]] = 1
    cv, counted, cv_hand, cv_min6 = map(np.asarray, jax.jit(lambda r, hand: (
        ss.soft_isi_cv(r.astype(np.float32)), jaxlif.isi_cv(r), ss.soft_isi_cv(hand),
        ss.soft_isi_cv(hand, min_spikes=6)))(rasters, hand))
    for i, r in enumerate(rasters):
        isi = np.diff(np.flatnonzero(r))
        expect = isi.std() / isi.mean() if r.sum() > 3 else 0.0
        assert cv[i] == pytest.approx(expect, rel=1e-5, abs=1e-7), i
    np.testing.assert_allclose(cv, counted, rtol=1e-5)
    assert cv_hand[0] == pytest.approx(1 / 3, rel=1e-6)
    assert cv_hand[1] == 0.0 and cv_hand[2] == 0.0
    assert float(cv_min6[0]) == 0.0


def test_count_correlation_matches_numpy_corrcoef():
    rng = np.random.default_rng(4)
    common = rng.random(2000) < 0.05
    trains = (rng.random((2, 6, 2000)) < 0.03) | (common & (rng.random((2, 6, 2000)) < 0.5))
    trains[1, 2] = False                                              # a silent neuron
    counts = trains.reshape(2, 6, 40, 50).sum(-1)                     # 10 ms windows of 50 steps
    rho, mean, swapped = map(np.asarray, jax.jit(lambda t, t_swapped: (
        ss.count_correlation_matrix(t, DT, 10.0), ss.count_correlation(t, DT, 10.0),
        ss.count_correlation(t_swapped, DT, 10.0, axis=0)))(trains.astype(np.float32), np.swapaxes(trains, 0, 1)))
    np.testing.assert_allclose(rho[0], np.corrcoef(counts[0]), rtol=1e-5, atol=1e-6)
    keep = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(rho[1][np.ix_(keep, keep)], np.corrcoef(counts[1][keep]), rtol=1e-5, atol=1e-6)
    assert np.all(rho[1, 2] == 0) and np.all(rho[1, :, 2] == 0)
    c0 = np.corrcoef(counts[0])
    c1 = np.corrcoef(counts[1][keep])
    np.testing.assert_allclose(mean, [c0[np.triu_indices(6, 1)].mean(), c1[np.triu_indices(5, 1)].mean()],
                               rtol=1e-5)
    # the neuron axis may be another one
    np.testing.assert_allclose(swapped, mean, rtol=1e-6)


def test_constant_counts_are_exactly_zero_variance():
    """Equal counts in every window (a regular train): Fano factor exactly 0, correlations 0 and the
    train left out of the mean, for a number of windows whose mean count is rounded (7)."""
    r = np.zeros((3, 210), np.float32)
    r[0, ::10] = 1                                                     # 3 spikes in each 30-step window
    r[1:] = _random_raster((2, 210), 0.1, 8)
    counts = r.reshape(3, 7, 30).sum(-1)
    fano, rho, mean = map(np.asarray, jax.jit(lambda r: (ss.fano_factor(r, 1.0, 30.0),
                                                         ss.count_correlation_matrix(r, 1.0, 30.0),
                                                         ss.count_correlation(r, 1.0, 30.0)))(r))
    assert float(fano[0]) == 0.0
    assert np.all(rho[0] == 0) and np.all(rho[:, 0] == 0)
    assert float(mean) == pytest.approx(np.corrcoef(counts[1:])[0, 1], rel=1e-5)


def _np_van_rossum2(s, g, dt, tau, extra_tau=20):
    """(1 - a^2)/2 * sum of squared differences of the filtered trains, continued past the record
    by zeros for ``extra_tau`` time constants (the tail a loop sees)."""
    a = np.exp(-dt / tau)
    n_extra = int(extra_tau * tau / dt)
    d, f = np.concatenate([s - g, np.zeros(n_extra)]), 0.0
    total = 0.0
    for x in d:
        f = a * f + x
        total += f * f
    return 0.5 * (1 - a * a) * total


def test_van_rossum_distance_matches_a_loop_and_closed_forms():
    rng = np.random.default_rng(5)
    s, g = rng.random((4, 600)) < 0.02, rng.random(600) < 0.02
    # one unmatched spike: exactly 1/2, wherever it is (also in the last step); none: 0
    ones = np.zeros((3, 600))
    ones[[0, 1, 2], [0, 300, 599]] = 1
    # two spikes shifted by delta: D^2 = 1 - exp(-delta/tau) in the continuum (here delta = 10 dt)
    a, b = np.zeros(2000), np.zeros(2000)
    a[500], b[510] = 1, 1
    d2, d, d2_ones, d_same, d2_shifted = jax.jit(lambda s, g, ones, a, b: (
        ss.van_rossum_distance(s, g, 0.5, 8.0, squared=True), ss.van_rossum_distance(s, g, 0.5, 8.0),
        [ss.van_rossum_distance(one, np.zeros(600), 0.5, 8.0, squared=True) for one in ones],
        ss.van_rossum_distance(s[0], s[0], 0.5, 8.0), ss.van_rossum_distance(a, b, 0.1, 5.0, squared=True)))(
        s, g, ones, a, b)
    expect = [_np_van_rossum2(si.astype(float), g.astype(float), 0.5, 8.0) for si in s]
    np.testing.assert_allclose(d2, expect, rtol=1e-5)
    np.testing.assert_allclose(d, np.sqrt(expect), rtol=1e-5)
    for one in d2_ones:
        assert float(one) == pytest.approx(0.5, rel=1e-5)
    assert float(d_same) == 0.0
    assert float(d2_shifted) == pytest.approx(1 - np.exp(-1.0 / 5.0), rel=2e-2)


BAD_ARGUMENTS = [
    (lambda: ss.firing_rate(R, 0.0), ValueError, "dt"),
    (lambda: ss.firing_rate(R.astype(np.complex64), DT), TypeError, "spikes must be a spike raster"),
    (lambda: ss.firing_rate(np.zeros((3, 0)), DT), ValueError, "at least one time step"),
    (lambda: ss.population_rate(R[0, 0], DT), ValueError, "at least 2 axes"),
    (lambda: ss.population_rate(R, DT, axis=-1), ValueError, "axis=-1 is the time axis"),
    (lambda: ss.population_rate(R, DT, axis=3), ValueError, "axis=3 is out of range"),
    (lambda: ss.psth(R, DT, -1.0), ValueError, "width"),
    (lambda: ss.psth(R, DT, 2.0, kernel="box"), ValueError, "kernel='box'"),
    (lambda: ss.fano_factor(R, DT, 0.3), ValueError, r"window=0.3 ms must be a whole number of time steps"),
    (lambda: ss.fano_factor(R, DT, 150.0), ValueError, "fewer than 2 windows"),
    (lambda: ss.fano_factor(R, DT, 20.0, ddof=2), ValueError, "ddof"),
    (lambda: ss.soft_isi_cv(R, min_spikes=2), ValueError, "min_spikes"),
    (lambda: ss.count_correlation(R[:, :1], DT, 20.0), ValueError, "at least 2 trains"),
    (lambda: ss.van_rossum_distance(R, R[..., :10], DT, 5.0), ValueError, "target has 10 time steps"),
    (lambda: ss.van_rossum_distance(R, R[:2], DT, 5.0), ValueError, "does not broadcast"),
    (lambda: ss.van_rossum_distance(R, R, DT, 0.0), ValueError, "tau"),
    (lambda: jax.jit(lambda d: ss.firing_rate(R, d))(0.5), TypeError, "dt must be a concrete"),
]


@pytest.mark.parametrize("case", range(len(BAD_ARGUMENTS)))
def test_bad_arguments_raise_naming_them(case):
    call, error, message = BAD_ARGUMENTS[case]
    with pytest.raises(error, match=message):
        jax.eval_shape(call)            # raised before anything is computed: traced only, nothing compiled


# ------------------------------------------------------------------------------------------------
# the derivative with respect to the raster values: exact (central differences in float64)
# ------------------------------------------------------------------------------------------------

STATS = {
    "firing_rate": lambda s: ss.firing_rate(s, 0.5),
    "population_rate": lambda s: ss.population_rate(s, 0.5),
    "psth_gaussian": lambda s: ss.psth(s, 0.5, 2.0)[::7],
    "psth_exponential": lambda s: ss.psth(s, 0.5, 3.0, kernel="exponential")[::7],
    "fano_factor": lambda s: ss.fano_factor(s, 0.5, 5.0),
    "soft_isi_cv": lambda s: ss.soft_isi_cv(s),
    "count_correlation": lambda s: ss.count_correlation(s, 0.5, 5.0),
    "count_correlation_matrix": lambda s: ss.count_correlation_matrix(s, 0.5, 5.0),
    "van_rossum_distance": lambda s: ss.van_rossum_distance(s, (np.arange(60) % 9 == 0), 0.5, 4.0),
}


def _check_first_derivatives(f, x, eps=1e-4, atol=1e-5, rtol=1e-5):
    """``jax.test_util.check_grads(f, (x,), order=1, modes=("fwd", "rev"))`` with its tolerances (scaled
    by the output's size, as it scales them), everything AD computes in one compiled program: the JVP
    along a random direction ``t`` against the central difference ``(f(x + eps t) - f(x - eps t)) /
    (2 eps)``, and the VJP of a random cotangent ``c`` through ``<t, J^T c> = <J t, c>``."""
    t = np.random.RandomState(0).randn(*x.shape)
    c = np.random.RandomState(1).randn(*jax.eval_shape(f, x).shape)

    def derivatives(x, x_up, x_down, t, c):
        value, jvp = jax.jvp(f, (x,), (t,))
        return f(x), value, f(x_up), f(x_down), jvp, jax.vjp(f, x)[1](c)[0]

    plain, value, up, down, jvp, vjp = map(np.asarray, jax.jit(derivatives)(x, x + eps * t, x - eps * t, t, c))
    np.testing.assert_allclose(value, plain, rtol=rtol * plain.size, atol=atol * plain.size)      # primal
    fd = (up - down) / (2 * eps)
    np.testing.assert_allclose(jvp, fd, rtol=rtol * fd.size, atol=atol * fd.size)               # forward mode
    np.testing.assert_allclose(np.vdot(t, vjp), np.vdot(fd, c), rtol=rtol, atol=atol)           # reverse mode


@pytest.mark.parametrize("name", sorted(STATS))
def test_derivative_with_respect_to_raster_values(name, x64):
    """Fractional rasters (0/1 plus small offsets, as a surrogate's perturbation makes them): every
    statistic is a smooth function of the values there, and its derivative matches central
    differences in both modes."""
    rng = np.random.default_rng(6)
    s = (rng.random((3, 60)) < 0.25) + rng.uniform(-0.05, 0.05, (3, 60))
    _check_first_derivatives(STATS[name], s)


def test_soft_isi_cv_derivative_follows_the_fractional_spike_picture(x64):
    """The docstring's first-order picture: a fraction eps of a spike at offset x inside an interval I
    adds an interval x with weight eps and shortens I by eps x (the intervals' total stays fixed); after
    the last spike it adds the interval x from that spike with weight eps; before the first spike it adds,
    with weight eps, the interval from the start of the record (step -1) to the first spike."""
    r = np.zeros(45)
    r[[3, 13, 19, 33, 37]] = 1                                # intervals 10, 6, 14, 4
    g = np.asarray(jax.jit(jax.grad(ss.soft_isi_cv))(r))     # one program (eagerly: 5)

    def cv(intervals, weights):
        intervals, weights = np.asarray(intervals, float), np.asarray(weights, float)
        n = weights.sum()
        mean = (weights * intervals).sum() / n
        return np.sqrt((weights * (intervals - mean) ** 2).sum() / n) / mean

    eps = 1e-7
    base = cv([10, 6, 14, 4], [1, 1, 1, 1])
    cases = {23: cv([10, 6, 4, 14 - 4 * eps, 4], [1, 1, eps, 1, 1]),      # offset 4 inside 19 -> 33
             40: cv([10, 6, 14, 4, 3], [1, 1, 1, 1, eps]),                 # 3 steps after the last spike
             1: cv([4, 10, 6, 14, 4], [eps, 1, 1, 1, 1])}                  # before the first spike
    for k, moved in cases.items():
        assert g[k] == pytest.approx((moved - base) / eps, rel=1e-4), k


# ------------------------------------------------------------------------------------------------
# surrogate gradients of a noisy LIF population against finite differences (common random numbers)
# ------------------------------------------------------------------------------------------------

SIM_DT, SIM_STEPS, GROUPS, PER_GROUP, SIGMA, WINDOW = 0.5, 4000, 16, 16, 7.0, 50.0
THETA0 = np.array([195.0, 10.0, 0.2], np.float32)     # mean drive mu [pA], tau_m [ms], shared-noise fraction c
STEP = np.array([5.0, 1.0, 0.05], np.float32)         # central-difference steps
PARAMS = ("mu", "tau_m", "c")
NAMES = ("firing_rate", "population_rate", "psth", "fano_factor", "soft_isi_cv", "count_correlation",
         "van_rossum_distance")
_T = np.arange(SIM_STEPS) * SIM_DT
TARGET_PSTH = (40.0 * (1.0 + 0.5 * np.sin(2 * np.pi * _T / 100.0))).astype(np.float32)   # [Hz]
TARGET_TRAIN = np.arange(SIM_STEPS) % 80 == 0                                            # 25 Hz, regular


def _group_stats(theta, xi_group, xi_own):
    """Each statistic per group, ``(7, GROUPS)``, of 16 groups x 16 LIF neurons.

    Input ``I = mu (1 + 0.05 sin(2 pi t / 100 ms)) + sigma (sqrt(c) xi_group + sqrt(1 - c) xi_own) / sqrt(dt)``
    (white noise, the tutorial's convention): ``c`` sets the correlation within a group."""
    mu, tau, c = theta[0], theta[1], theta[2]
    drive = mu * (1.0 + 0.05 * jnp.sin(2 * np.pi * _T / 100.0))
    xi = jnp.sqrt(c) * xi_group[:, None, :] + jnp.sqrt(1.0 - c) * xi_own
    current = drive + SIGMA * xi / np.sqrt(SIM_DT / 1000.0)
    params = jaxlif.LIFParams(tau_m=tau)
    run = lambda i: jaxlif.simulate_lif(params, i, dt=SIM_DT, spike_grad=SG).spikes
    s = jax.vmap(jax.vmap(run))(current)                                   # (GROUPS, PER_GROUP, steps)
    return jnp.stack([
        ss.firing_rate(s, SIM_DT).mean(-1),
        ss.population_rate(s, SIM_DT),
        jnp.mean((ss.psth(s, SIM_DT, 5.0) - TARGET_PSTH) ** 2, -1),          # a PSTH loss [Hz^2]
        ss.fano_factor(s, SIM_DT, WINDOW).mean(-1),
        ss.soft_isi_cv(s).mean(-1),
        ss.count_correlation(s, SIM_DT, WINDOW),
        ss.van_rossum_distance(s, TARGET_TRAIN, SIM_DT, 10.0, squared=True).mean(-1),
    ])


_per_group = jax.jit(_group_stats)
_surrogate_jacobian = jax.jit(jax.jacfwd(lambda th, a, b: _group_stats(th, a, b).mean(-1)))


@jax.jit
def _noise(seed):
    """The white noise of a seed, drawn in one program (eagerly: 5, the key and its split included)."""
    k_group, k_own = jax.random.split(jax.random.key(seed))
    return (jax.random.normal(k_group, (GROUPS, SIM_STEPS)),
            jax.random.normal(k_own, (GROUPS, PER_GROUP, SIM_STEPS)))


def _central_difference(e, seed):
    """``d/dt`` of each statistic at ``theta = THETA0 + t e``, ``t = 0``, from ``t = +-1`` with the same
    noise: the mean over groups ``(7,)`` and its standard error over the 16 groups.  (``theta +- e`` in
    float32 NumPy, as jnp would round them: nothing to compile.)"""
    theta, noise = THETA0, _noise(seed)
    e = np.asarray(e, np.float32)
    d = (np.asarray(_per_group(theta + e, *noise)) - np.asarray(_per_group(theta - e, *noise))) / 2.0
    return d.mean(-1), d.std(-1, ddof=1) / np.sqrt(GROUPS)


@functools.lru_cache(maxsize=None)
def gradient_study(seed: int = 0):
    """``(values, surrogate, fd, fd_se)``: ``(7,)`` means over the groups and ``(7, 3)`` derivatives with
    respect to ``PARAMS``: the surrogate's, central differences of the same runs (common random numbers),
    and the standard error of those differences over the 16 groups."""
    theta, noise = THETA0, _noise(seed)
    values = np.asarray(_per_group(theta, *noise)).mean(-1)
    sur = np.asarray(_surrogate_jacobian(theta, *noise))
    fd, se = zip(*(_central_difference(STEP[j] * np.eye(3)[j], seed) for j in range(3)))
    return values, sur, np.stack(fd, -1) / STEP, np.stack(se, -1) / STEP


#: (statistic, parameter) pairs held to a factor of 3; the others are held to the sign where the
#: difference is clearly non-zero.  Measured ratios surrogate/FD over seeds 0-5 (docs/gradients.md):
#: rate mu 1.53-1.60, tau_m 1.15-1.16; PSTH loss c 1.13-1.40; Fano mu 1.91-2.15; CV mu 1.02-1.66;
#: correlation c 1.22-1.50; van Rossum mu 0.86-0.99, tau_m 1.11-1.14.
FACTOR_3 = {("firing_rate", "mu"), ("firing_rate", "tau_m"), ("population_rate", "mu"),
            ("population_rate", "tau_m"), ("psth", "c"), ("fano_factor", "mu"), ("soft_isi_cv", "mu"),
            ("count_correlation", "c"), ("van_rossum_distance", "mu"), ("van_rossum_distance", "tau_m")}


@pytest.mark.parametrize("name", NAMES)
def test_surrogate_gradient_against_crn_finite_differences(name):
    values, sur, fd, se = gradient_study()
    i = NAMES.index(name)
    assert np.all(np.isfinite(sur[i])) and np.isfinite(values[i])
    checked = 0
    for j, param in enumerate(PARAMS):
        if (name, param) in FACTOR_3:
            assert abs(fd[i, j]) > 4 * se[i, j], (name, param, fd[i, j], se[i, j])       # clearly non-zero
            assert 1 / 3 < sur[i, j] / fd[i, j] < 3, (name, param, sur[i, j], fd[i, j])
            checked += 1
        elif abs(fd[i, j]) > 4 * se[i, j]:
            assert np.sign(sur[i, j]) == np.sign(fd[i, j]), (name, param, sur[i, j], fd[i, j])
    assert checked >= 1


def test_cv_gradient_is_not_a_multiple_of_the_rate_gradient():
    """The ratio d CV / d theta over d rate / d theta differs in sign between the mean drive and
    tau_m (surrogate and finite differences agree): raising mu and tau_m together so that the rate
    stays put lowers the CV.  Along that iso-rate direction the finite difference of the CV is
    clearly non-zero and has the surrogate's sign, while the rate barely moves."""
    values, sur, fd, se = gradient_study()
    rate, cv = NAMES.index("firing_rate"), NAMES.index("soft_isi_cv")
    for jac in (sur, fd):
        ratio_mu, ratio_tau = jac[cv, 0] / jac[rate, 0], jac[cv, 1] / jac[rate, 1]
        assert ratio_mu < 0 < ratio_tau, (ratio_mu, ratio_tau)
    # the iso-rate direction of the surrogate rate gradient, one difference step long in units of STEP
    a, b = sur[rate, :2] * STEP[:2]
    u = np.array([-b * STEP[0], a * STEP[1], 0.0]) / np.hypot(a, b)
    fd_u, se_u = _central_difference(u, 0)
    sur_u = sur @ u
    assert abs(fd_u[cv]) > 4 * se_u[cv] and np.sign(fd_u[cv]) == np.sign(sur_u[cv]), (fd_u[cv], sur_u[cv])
    # the rate moves along u far less than along its gradient (the same step length)
    assert abs(fd_u[rate]) < 0.3 * np.hypot(*(fd[rate, :2] * STEP[:2])), (fd_u[rate], fd[rate])


# ------------------------------------------------------------------------------------------------
# guards: integer counting refuses to be differentiated; boolean rasters under differentiation warn
# ------------------------------------------------------------------------------------------------

_R01 = _random_raster((2, 80), 0.2, 7)
COUNTERS = {   # a loss built on each integer-counting function, and the replacement its error names
    "spike_count": (lambda s: jaxlif.spike_count(s).astype(jnp.float32).sum(), "firing_rate"),
    "spike_rate": (lambda s: jaxlif.spike_rate(s, 8.0).sum(), "firing_rate"),
    "isi_cv": (lambda s: jaxlif.isi_cv(s).sum(), "soft_isi_cv"),
}
TRANSFORMS = {
    "grad": lambda f: jax.grad(f),
    "jit(grad)": lambda f: jax.jit(jax.grad(f)),
    "grad(jit)": lambda f: jax.grad(jax.jit(f)),
    "vmap(grad)": lambda f: jax.vmap(jax.grad(f)),
    "jacfwd": lambda f: jax.jacfwd(f),
}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("counter", sorted(COUNTERS))
def test_integer_counting_refuses_to_be_differentiated(counter, transform):
    loss, replacement = COUNTERS[counter]
    f = TRANSFORMS[transform](lambda a: loss(a * _R01.astype(np.float32)))
    a = np.ones(3, np.float32) if transform == "vmap(grad)" else 1.0
    with pytest.raises(NonDifferentiableError, match=rf"jaxlif\.{counter} counts spikes as integers.*"
                                                     rf"spike_stats\.{replacement}.*stop_gradient"):
        jax.eval_shape(f, a)            # raised while differentiating (tracing): nothing to compile
    assert issubclass(NonDifferentiableError, TypeError)


def test_counting_still_works_on_float_rasters_and_under_stop_gradient():
    s = _R01.astype(np.float32)
    # the count, and the rate's value and gradient under stop_gradient, in one program (eagerly: 12)
    count, (value, grad) = jax.jit(lambda s, a: (jaxlif.spike_count(s), jax.value_and_grad(
        lambda a: a * jaxlif.spike_rate(jax.lax.stop_gradient(a * s), 8.0).sum())(a)))(s, 1.0)
    np.testing.assert_array_equal(count, _R01.sum(-1))
    assert float(value) == pytest.approx(float(grad)) == pytest.approx(1000.0 * _R01.sum() / 8.0)
    # the differentiable replacement, on a surrogate run: a non-zero gradient (the refusal is raised while
    # differentiating, traced only; the gradient in one program)
    run = lambda g: jaxlif.simulate_lif(jaxlif.LIFParams(g_L=g), np.full(300, 260.0, np.float32), dt=0.5,
                                        spike_grad=SG).spikes
    with pytest.raises(NonDifferentiableError, match="spike_stats.firing_rate"):
        jax.eval_shape(jax.grad(lambda g: jaxlif.spike_rate(run(g), 150.0)), 10.0)
    assert float(jax.jit(jax.grad(lambda g: ss.firing_rate(run(g), 0.5)))(10.0)) < 0


WARNED = {
    "firing_rate": lambda s: ss.firing_rate(s, 0.5),
    "population_rate": lambda s: ss.population_rate(s, 0.5),
    "psth": lambda s: ss.psth(s, 0.5, 2.0),
    "fano_factor": lambda s: ss.fano_factor(s, 0.5, 5.0),
    "soft_isi_cv": ss.soft_isi_cv,
    "count_correlation": lambda s: ss.count_correlation(s, 0.5, 5.0),
    "count_correlation_matrix": lambda s: ss.count_correlation_matrix(s, 0.5, 5.0),
    "van_rossum_distance": lambda s: ss.van_rossum_distance(s, _R01[0], 0.5, 4.0),
    "spike_count": jaxlif.spike_count,
    "spike_rate": lambda s: jaxlif.spike_rate(s, 40.0),
    "isi_cv": jaxlif.isi_cv,
}


@pytest.mark.parametrize("name", sorted(WARNED))
def test_boolean_raster_while_differentiating_warns_and_not_otherwise(name):
    f = WARNED[name]
    # the warning is decided while tracing: the jit and grad cases are traced only (jax.eval_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpikeGradWarning)
        f(_R01)                                                       # not differentiating: silent
        jax.eval_shape(jax.jit(f), _R01)
        jax.eval_shape(jax.grad(lambda a: a * f(_R01.astype(np.float32)).sum().astype(jnp.float32)), 1.0)  # float
    with pytest.warns(SpikeGradWarning, match=r"boolean spike raster while differentiating.*spike_grad"):
        jax.eval_shape(jax.grad(lambda a: a * f(_R01).sum().astype(jnp.float32)), 1.0)


def test_forgotten_spike_grad_is_reported_through_jit_and_vmap():
    current = np.full(300, 260.0, np.float32)
    run = lambda g: jaxlif.simulate_lif(jaxlif.LIFParams(g_L=g), current, dt=0.5).spikes      # boolean
    loss = lambda g: ss.firing_rate(run(g), 0.5)
    for transform in (jax.grad, lambda f: jax.jit(jax.grad(f)), lambda f: jax.grad(jax.jit(f))):
        with pytest.warns(SpikeGradWarning):
            assert float(transform(loss)(10.0)) == 0.0                # the zero it warns about
    with pytest.warns(SpikeGradWarning):    # warned while tracing: traced only
        jax.eval_shape(jax.vmap(jax.grad(loss)), np.array([10.0, 11.0], np.float32))


def test_under_differentiation_sees_every_differentiating_transform():
    from jaxlif._grad_guard import under_differentiation
    seen = []

    def fresh():                         # a new function each time: nothing cached from an earlier trace
        def f(x):
            seen.append(under_differentiation())
            return x * 2.0
        return f

    cases = {"plain": (lambda f: f, False), "jit": (jax.jit, False), "vmap": (jax.vmap, False),
             "grad": (jax.grad, True), "jacfwd": (jax.jacfwd, True), "jacrev": (jax.jacrev, True),
             "jvp": (lambda f: lambda x: jax.jvp(f, (x,), (x,)), True),
             "jit(grad)": (lambda f: jax.jit(jax.grad(f)), True), "grad(jit)": (lambda f: jax.grad(jax.jit(f)), True),
             "vmap(grad)": (lambda f: jax.vmap(jax.grad(f)), True),
             "grad(vmap)": (lambda f: jax.grad(lambda v: jax.vmap(f)(v).sum()), True)}
    for name, (transform, expect) in cases.items():
        seen.clear()
        jax.eval_shape(transform(fresh()), np.ones(2) if "vmap" in name else 1.5)     # traced, not compiled
        assert seen and all(s is expect for s in seen), (name, seen)
    # the documented limit: a jitted function traced before it is differentiated is not traced again
    f = jax.jit(fresh())
    f(1.5)
    seen.clear()
    jax.grad(f)(1.5)
    assert seen == []


# ------------------------------------------------------------------------------------------------
# a larger study (slow): the conductance LIF driven by Poisson trains, 64 keys, 1 s
# ------------------------------------------------------------------------------------------------

COND_NAMES = ("firing_rate", "psth", "fano_factor", "soft_isi_cv", "van_rossum_distance")
COND_DT, COND_T, COND_KEYS = 0.1, 1000.0, 64
COND_STEPS = 10000
_COND_TARGET = (np.arange(COND_STEPS) % 400 == 0)                                           # 25 Hz
_COND_PSTH = (30.0 * (1.0 + 0.5 * np.sin(2 * np.pi * np.arange(COND_STEPS) * COND_DT / 100.0))).astype(np.float32)


def _cond_stats(log_g, keys):
    """Per key ``(5, COND_KEYS)``: statistics of one conductance LIF per key (80 + 20 Poisson trains
    at 10 Hz) with ``g_bar = exp(log_g)`` [nS] of the excitatory and inhibitory synapses (the PSTH
    loss per group of 8 keys, repeated for each key of the group)."""
    params = jaxlif.CondLIFParams(exc=jaxlif.SynParams(jnp.exp(log_g[0]), 2.0, 0.0),
                                  inh=jaxlif.SynParams(jnp.exp(log_g[1]), 5.0, -80.0))
    run = lambda k: jaxlif.simulate_cond_lif_poisson(k, params, T=COND_T, dt=COND_DT, record=False,
                                                     spike_grad=SG).spikes
    s = jax.vmap(run)(keys)
    trials = s.reshape(8, COND_KEYS // 8, COND_STEPS)              # 8 groups of 8 trials for the PSTH
    psth_loss = jnp.mean((ss.psth(trials, COND_DT, 5.0) - _COND_PSTH) ** 2, -1)
    return jnp.stack([ss.firing_rate(s, COND_DT), jnp.repeat(psth_loss, COND_KEYS // 8),
                      ss.fano_factor(s, COND_DT, WINDOW), ss.soft_isi_cv(s),
                      ss.van_rossum_distance(s, _COND_TARGET, COND_DT, 10.0, squared=True)])


@pytest.mark.slow   # about 30 s of CPU
@pytest.mark.parametrize("g_bar", [(2.4, 2.4), (3.0, 4.0)])
def test_conductance_lif_statistics_against_crn_finite_differences(g_bar):
    keys = jax.random.split(jax.random.key(1), COND_KEYS)
    log_g, h = jnp.log(jnp.asarray(g_bar, jnp.float32)), 0.1
    per_key = jax.jit(_cond_stats)
    sur = np.asarray(jax.jit(jax.jacfwd(lambda th: _cond_stats(th, keys).mean(-1)))(log_g))
    fd, se = np.zeros_like(sur), np.zeros_like(sur)
    for j in range(2):
        e = h * np.eye(2, dtype=np.float32)[j]
        d = (np.asarray(per_key(log_g + e, keys)) - np.asarray(per_key(log_g - e, keys))) / (2 * h)
        fd[:, j], se[:, j] = d.mean(-1), d.std(-1, ddof=1) / np.sqrt(COND_KEYS)
    print(f"\ng_bar {g_bar}: surrogate / finite difference (d/d log gE, d/d log gI), FD in units of its SE")
    for i, name in enumerate(COND_NAMES):
        print(f"  {name:20s} sur {sur[i]} fd {fd[i]} fd/se {fd[i] / se[i]} ratio {sur[i] / fd[i]}")
    clear = np.abs(fd) > 4 * se
    # the one clear disagreement measured (docs/gradients.md): the van Rossum distance to a 25 Hz
    # train from a 25 Hz neuron (the rate matched, only the timing left) against inhibition
    known = np.zeros_like(clear)
    if g_bar == (2.4, 2.4):
        known[COND_NAMES.index("van_rossum_distance"), 1] = True
    assert clear[0].all()                                         # the rate moves with both conductances
    same = np.sign(sur) == np.sign(fd)
    assert np.all(same[clear & ~known]), np.argwhere(clear & ~same)
    ratio = sur / fd
    assert np.all((1 / 3 < ratio[0]) & (ratio[0] < 3))            # the rate, both conductances
    cv = COND_NAMES.index("soft_isi_cv")
    assert not clear[cv, 0] or 1 / 3 < ratio[cv, 0] < 3           # the CV against excitation, where clear
