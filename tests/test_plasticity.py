"""Tsodyks-Markram STP: step-by-step vs oracle, event-driven closed form, ratio curves, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif

import reference as ref
from jaxlif import STD, STF, STPParams, SynParams, ratio_curve, simulate_stp
from jaxlif.plasticity import stp_decay, stp_init, stp_step

SYN = SynParams(g_bar=1.2, tau_syn=5.0, E_rev=0.0)
STD_RATES = np.arange(5.0, 40.1, 5.0)
STF_RATES = np.arange(2.0, 40.1, 2.0)


def test_simulate_stp_multi_train_equals_oracle(x64):
    pars = ref.default_pars(T=500.0)
    trains = ref.poisson_generator(pars, 25.0, 4, 9)
    out = simulate_stp(STF, SYN, trains, dt=0.1)
    u, R, g = ref.dynamic_syn(1.2, 5.0, 0.2, 100.0, 750.0, trains, 0.1)
    assert out.u.shape == trains.shape
    np.testing.assert_allclose(np.asarray(out.u), u, atol=1e-12, rtol=0)
    np.testing.assert_allclose(np.asarray(out.R), R, atol=1e-12, rtol=0)
    np.testing.assert_allclose(np.asarray(out.g), g, atol=1e-12, rtol=0)


@pytest.mark.parametrize("k", [1, 7, 250])
def test_silent_steps_closed_form(x64, k):
    step = jax.jit(stp_step, static_argnums=4)          # one program for every step (the scans' step)
    decay = jax.jit(stp_decay, static_argnums=4)        # one program for every k (eagerly: 8 for the first)
    state = step(STD, SYN, stp_init(), 1.0, 0.1)[0]
    stepped = state
    for _ in range(k):
        stepped = step(STD, SYN, stepped, 0.0, 0.1)[0]
    closed = decay(STD, SYN, state, k, 0.1)
    for a, b in zip(stepped, closed):
        np.testing.assert_allclose(float(a), float(b), rtol=1e-12)


@pytest.mark.parametrize("params,rates", [(STD, STD_RATES), (STF, STF_RATES)], ids=["STD", "STF"])
def test_ratio_curve_reproduces_tutorial_numbers(x64, params, rates):
    g1, g10 = ratio_curve(params, rates)
    want = np.array([ref.ratio_point(r, *params) for r in rates])
    np.testing.assert_allclose(np.asarray(g1), want[:, 0], rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(g10), want[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(g1), 1.2 * params.U0)


def test_ratio_curve_float32_close():
    g1, g10 = ratio_curve(STF, STF_RATES)
    assert g10.dtype == jnp.float32
    want = np.array([ref.ratio_point(r, *STF) for r in STF_RATES])
    # the log1p form of the decay factors keeps float32 within a few ulp of the float64 loop (the ratio in
    # NumPy, float32 / float32 as the jnp division: nothing to compile)
    np.testing.assert_allclose(np.asarray(g10) / np.asarray(g1), want[:, 1] / want[:, 0], rtol=1e-6)


def test_euler_decay_factor_edge_cases(x64):
    from jaxlif.plasticity import euler_decay_factor

    @jax.jit      # the three cases elementwise and the gradient in one program (eagerly: 10 programs)
    def factors(tau, k):
        return euler_decay_factor(tau, k, 0.1), jax.grad(lambda t: euler_decay_factor(t, 0, 0.1))(tau[0])

    values, g = factors(np.array([0.1, 0.1, 50.0]), np.array([0, 3, 7]))
    no_step, tau_dt, tau_50 = np.asarray(values)
    assert float(no_step) == 1.0                                  # tau = dt, no silent step
    assert float(tau_dt) == 0.0                                   # tau = dt: a = 0
    assert float(tau_50) == pytest.approx((1 - 0.1 / 50) ** 7, rel=1e-14)
    assert np.isfinite(float(g))


def test_ratio_curve_pinned_shape():
    """Depression: the ratio falls with rate below 1; facilitation: it rises above 1 first.  Both on the
    facilitation's grid of 20 rates, 2-40 Hz (one compiled program, that of the test above)."""
    r_std = np.asarray(np.divide(*ratio_curve(STD, STF_RATES)[::-1]))
    r_stf = np.asarray(np.divide(*ratio_curve(STF, STF_RATES)[::-1]))
    assert np.all(np.diff(r_std) < 0) and r_std.max() < 1
    assert r_stf.max() > 1.5


def _loss(theta, rates, target):
    p = STPParams(theta[0], theta[1], theta[2])
    g1, g10 = ratio_curve(p, rates)
    return jnp.mean((g10 / g1 - target) ** 2)


# one program each (the rates, which set the spike times, static as a tuple), not op by op
_loss_jit, _loss_grad = jax.jit(_loss, static_argnums=1), jax.jit(jax.grad(_loss), static_argnums=1)


@pytest.mark.parametrize("theta", [(0.3, 300.0, 300.0), (0.5, 100.0, 50.0), (0.2, 100.0, 750.0)])
def test_ratio_curve_gradients_vs_central_differences(x64, theta):
    rates = tuple(STF_RATES)
    g1, g10 = ratio_curve(STF, rates)
    target = np.asarray(g10) / np.asarray(g1) * 0.97
    theta = np.asarray(theta, dtype=np.float64)
    grad = np.asarray(_loss_grad(theta, rates, target))
    for i, h in enumerate([1e-6, 1e-3, 1e-3]):
        e = np.zeros(3)
        e[i] = h
        fd = (float(_loss_jit(theta + e, rates, target)) - float(_loss_jit(theta - e, rates, target))) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-12), (i, grad[i], fd)
    assert np.all(np.abs(grad) > 0)


def test_per_rate_gradients_vs_central_differences(x64):
    """Each point of the g10/g1 curve, w.r.t. each parameter."""
    rates = np.array([4.0, 20.0, 40.0])
    f = jax.jit(lambda th: jnp.divide(*ratio_curve(STPParams(*th), rates)[::-1]))
    theta = np.array([0.3, 200.0, 400.0])
    jac = np.asarray(jax.jit(jax.jacfwd(f))(theta))
    for i, h in enumerate([1e-6, 1e-3, 1e-3]):
        e = np.zeros(3)
        e[i] = h
        fd = (np.asarray(f(theta + e)) - np.asarray(f(theta - e))) / (2 * h)
        np.testing.assert_allclose(jac[:, i], fd, rtol=1e-6, atol=1e-12)


def test_euler_converges_to_continuous_time(x64):
    """Tutorial scheme -> exact Tsodyks-Markram as dt -> 0 (first order)."""
    rate, n = 20.0, 9
    delta = 1000.0 / rate
    release, _, _ = ref.tm_continuous_regular(rate, 0.2, 100.0, 750.0, n)
    g_exact = ref.tm_continuous_conductance(release, delta, 1.2, 5.0)
    errs = []
    i = list(STF_RATES).index(rate)         # on the facilitation's grid: at dt = 0.1 ms, the program of the tests above
    for dt in (0.1, 0.05):
        g1, g10 = (np.asarray(g) for g in ratio_curve(STF, STF_RATES, dt=dt))
        errs.append(abs(float(g10[i] / g1[i]) - g_exact[n - 1] / g_exact[0]))
    assert errs[1] < 0.6 * errs[0]
    assert errs[1] > 0.4 * errs[0]


# ------------------------------------------------------------------------------------------------
# Several spikes in one step: counts="sequential" (default: that many releases, checked against the
# one-spike scheme in NumPy) or counts="tutorial" (the tutorial's scaled update, with a warning).
# ------------------------------------------------------------------------------------------------

def _one_spike_loop(U0, tau_d, tau_f, g_bar, tau_syn, counts, dt):
    """The tutorial's update with 0/1 spikes only: the first spike of a step comes with the step's
    decay, each further spike of the same step is one more update with no time elapsed (dt = 0)."""
    def update(u, R, g, s, h):
        u_new = u - h / tau_f * u + U0 * (1.0 - u) * s
        return u_new, R + h / tau_d * (1.0 - R) - u_new * R * s, g - h / tau_syn * g + g_bar * R * u_new * s

    state, trace = (0.0, 1.0, 0.0), [(0.0, 1.0, 0.0)]
    for c in counts[1:]:
        state = update(*state, min(c, 1.0), dt)
        for _ in range(int(c) - 1):
            state = update(*state, 1.0, 0.0)
        trace.append(state)
    return np.array(trace).T


COUNTS = np.array([0, 0, 2, 0, 0, 3, 1, 0, 2, 2, 0, 0, 0, 4, 0] * 4, dtype=float)
SINGLE = np.minimum(COUNTS, 1.0)


def test_sequential_counts_equal_the_one_spike_scheme(x64):
    trains = np.stack([COUNTS, SINGLE])
    seq = simulate_stp(STD, SYN, trains, dt=0.1)                  # the default is "sequential"
    want = _one_spike_loop(0.5, 100.0, 50.0, 1.2, 5.0, COUNTS, 0.1)
    for got, ref_trace in zip(seq, want):
        np.testing.assert_allclose(np.asarray(got)[0], ref_trace, rtol=0, atol=1e-12)
    assert (np.asarray(seq.u) <= 1).all() and (np.asarray(seq.R) >= 0).all()
    with pytest.warns(UserWarning, match=r"spikes has up to 4 spikes in one step.*counts='sequential'"):
        tut = simulate_stp(STD, SYN, trains, dt=0.1, counts="tutorial")
    for a, b in zip(seq, tut):                          # 0/1 spikes: the two modes agree bit for bit
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[1])
    assert np.asarray(tut.R)[0].min() < 0               # the tutorial's update leaves its range
    # differentiable in every mode: the gradient of the sequential update against central differences
    g_sum = lambda U0: jnp.sum(simulate_stp(STPParams(U0, 100.0, 50.0), SYN, trains, dt=0.1, counts="sequential").g)
    # the two runs and the gradient in one program (eagerly, with the sums and the gradient's pieces: 5)
    up, down, grad = jax.jit(lambda U0, h: (g_sum(U0 + h), g_sum(U0 - h), jax.grad(g_sum)(U0)))(0.5, 1e-6)
    fd = (float(up) - float(down)) / 2e-6
    assert float(grad) == pytest.approx(fd, rel=1e-6)


def test_counts_option_reaches_the_stp_lif_step():
    from jaxlif.stp_lif import stp_lif_init, stp_lif_step
    import jaxlif
    p = jaxlif.STPLIFParams()                           # U0 = 0.45

    @jax.jit      # the state made inside the program too (eagerly: 4 more programs)
    def step():
        state = stp_lif_init(p, 2, 1)
        x = (jnp.array([2.0, 0.0]), jnp.zeros(1), 0.0)
        return (stp_lif_step(p, state, x, 0.1)[0].syn_E.u,                      # default: sequential
                stp_lif_step(p, state, x, 0.1, counts="tutorial")[0].syn_E.u)

    seq, tut = step()
    np.testing.assert_allclose(np.asarray(seq), [1 - 0.55 ** 2, 0.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(tut), [0.9, 0.0], rtol=1e-6)
    with pytest.raises(ValueError, match="counts='often' must be 'tutorial'"):
        simulate_stp(STD, SYN, SINGLE, dt=0.1, counts="often")


def test_traced_counts_above_one_are_reported_by_checked_mode():
    import jaxlif
    f = jax.jit(lambda s: simulate_stp(STD, SYN, s, dt=0.1, counts="tutorial").g)
    with pytest.raises(ValueError, match=r"spikes=.*4.* has more than one spike in a step"):
        jaxlif.checked(f)(jnp.asarray(COUNTS))
    np.testing.assert_array_equal(jaxlif.checked(f)(jnp.asarray(SINGLE)), f(jnp.asarray(SINGLE)))


@pytest.mark.parametrize("curve", ["ratio_curve", "ratio_curve_exact"])
def test_ratio_curves_refuse_n_spike_below_3(curve):
    """n_spike = 2 would compare the first conductance with itself (ratio 1 at every rate)."""
    with pytest.raises(ValueError, match="n_spike=2 must be >= 3"):
        getattr(jaxlif, curve)(STD, [10.0, 20.0], n_spike=2)
