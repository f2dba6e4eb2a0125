"""Tests of the NumPy oracle ``tests/reference.py`` itself.

The oracle is only useful if it is right, so it is checked here against numbers that do
not come from it: the first tutorial's printed output (pinned in this file), the tutorial's own
global-seed random draws, and the closed forms of docs/conventions.md (section 7). Statistical checks use fixed seeds and bounds of 6 sigma.
Units: ms, mV, nS, pA, Hz (SI only for the first tutorial's loop).
"""

import math

import numpy as np
import pytest

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import reference as ref
except ImportError:  # tests/ is a package
    from tests import reference as ref


# Exercise 1.2 of the synaptic-transmission tutorial (docs/conventions.md 6).
EX12_SYN = dict(gE_bar=2.4, VE=0.0, tau_syn_E=2.0, gI_bar=2.4, VI=-80.0, tau_syn_I=5.0)
STD = dict(U0=0.5, tau_d=100.0, tau_f=50.0)
STF = dict(U0=0.2, tau_d=100.0, tau_f=750.0)


# --------------------------------------------------------------------------------------
# First tutorial: printed values (coding exercises 2-4)
# --------------------------------------------------------------------------------------

# Exercise 2 prints repr(i) for the first 10 steps [A].
PRINTED_CURRENTS_REPR = [
    2.5e-10,
    3.969463130731183e-10,
    4.877641290737885e-10,
    4.877641290737885e-10,
    3.9694631307311837e-10,
    2.5000000000000007e-10,
    1.0305368692688176e-10,
    1.2235870926211617e-11,
    1.223587092621159e-11,
    1.0305368692688186e-10,
]
# Exercise 3 prints f"{t:.3f} {i:.4e}"; exercise 4 prints f"{t:.3f} {v:.4e}" (v after update).
PRINTED_T_I = """0.000 2.5000e-10
0.001 3.9695e-10
0.002 4.8776e-10
0.003 4.8776e-10
0.004 3.9695e-10
0.005 2.5000e-10
0.006 1.0305e-10
0.007 1.2236e-11
0.008 1.2236e-11
0.009 1.0305e-10""".splitlines()
PRINTED_T_V = """0.000 -5.8750e-02
0.001 -5.6828e-02
0.002 -5.4548e-02
0.003 -5.2381e-02
0.004 -5.0778e-02
0.005 -4.9989e-02
0.006 -4.9974e-02
0.007 -5.0414e-02
0.008 -5.0832e-02
0.009 -5.0775e-02""".splitlines()


def test_part1_currents_match_printed_values():
    t, i, _ = ref.lif_part1_loop(10)
    np.testing.assert_allclose(i, PRINTED_CURRENTS_REPR, rtol=1e-13, atol=0)
    assert [f"{tk:.3f} {ik:.4e}" for tk, ik in zip(t, i)] == PRINTED_T_I


def test_part1_voltages_match_printed_values():
    t, _, v = ref.lif_part1_loop(10)
    assert [f"{tk:.3f} {vk:.4e}" for tk, vk in zip(t, v)] == PRINTED_T_V
    # the same as numbers: within half a unit of the last printed digit (1e-6 V)
    printed = np.array([float(line.split()[1]) for line in PRINTED_T_V])
    np.testing.assert_allclose(v, printed, rtol=0, atol=0.5e-6)


def test_part1_first_step_by_hand():
    # v1 = el + dt/tau * (r * i_mean) = -60 mV + 0.05 * 25 mV = -58.75 mV
    _, _, v = ref.lif_part1_loop(1)
    assert v[0] == pytest.approx(-58.75e-3, rel=1e-14)


# --------------------------------------------------------------------------------------
# Parameters and random inputs
# --------------------------------------------------------------------------------------


def test_default_pars_grid_and_overrides():
    pars = ref.default_pars()
    assert pars["range_t"].size == 4000 and pars["range_t"][-1] == pytest.approx(399.9)
    pars = ref.default_pars(T=1000.0, V_th=1e3, gE_bar=2.4)
    assert pars["range_t"].size == 10000  # T = 1000, dt = 0.1 gives 10000
    assert pars["V_th"] == 1e3 and pars["gE_bar"] == 2.4 and pars["tau_m"] == 10.0
    assert ref.default_pars(dt=0.05, T=10.0)["range_t"].size == 200


def _tutorial_global_draw(seed, draw):
    """Run `draw()` after the tutorial's np.random.seed(seed), restoring the global state."""
    state = np.random.get_state()
    try:
        np.random.seed(seed=seed)
        return draw()
    finally:
        np.random.set_state(state)


def test_poisson_generator_equals_tutorial_seeding_and_leaves_global_rng_alone():
    pars = ref.default_pars(T=50.0)
    lt = pars["range_t"].size
    before = np.random.get_state()[1].copy()
    trains = ref.poisson_generator(pars, rate=300.0, n=7, myseed=2020)
    assert np.array_equal(np.random.get_state()[1], before)  # global RNG untouched
    expected = _tutorial_global_draw(2020, lambda: 1.0 * (np.random.rand(7, lt) < 300.0 * (0.1 / 1000.0)))
    assert trains.shape == (7, lt) and trains.dtype == np.float64
    assert np.array_equal(trains, expected)
    assert np.array_equal(trains, ref.poisson_generator(pars, 300.0, 7, myseed=2020))
    assert not np.array_equal(trains, ref.poisson_generator(pars, 300.0, 7, myseed=2021))


@pytest.mark.parametrize("rate", [10.0, 2000.0])
def test_poisson_counts_are_binomial(rate):
    pars = ref.default_pars(T=1000.0)
    n, lt = 50, pars["range_t"].size
    trains = ref.poisson_generator(pars, rate, n, myseed=7)
    assert set(np.unique(trains)) <= {0.0, 1.0}
    p = rate * pars["dt"] / 1000.0
    mean, sd = n * lt * p, math.sqrt(n * lt * p * (1 - p))
    assert abs(trains.sum() - mean) < 6 * sd


def test_poisson_rejects_probability_above_one():
    with pytest.raises(ValueError, match="rate"):
        ref.poisson_generator(ref.default_pars(T=10.0), rate=20000.0, n=1, myseed=1)


def test_gwn_moments_and_tutorial_seeding():
    pars = ref.default_pars(T=1000.0)
    lt, dt = pars["range_t"].size, pars["dt"]
    mu, sig = 200.0, 2.5
    i_gwn = ref.gwn(pars, mu, sig, myseed=11)
    expected = _tutorial_global_draw(11, lambda: mu + sig * np.random.randn(lt) / np.sqrt(dt / 1000.0))
    assert np.array_equal(i_gwn, expected)
    var = sig**2 * 1000.0 / dt  # docs/conventions.md 4.4: sample variance sig^2 * 1000/dt  [pA^2]
    assert abs(i_gwn.mean() - mu) < 6 * math.sqrt(var / lt)
    assert abs(i_gwn.var(ddof=1) / var - 1.0) < 6 * math.sqrt(2.0 / (lt - 1))


# --------------------------------------------------------------------------------------
# Conductance LIF: hand-checkable DC case
# --------------------------------------------------------------------------------------


def _dc_pars(**kw):
    return ref.default_pars(**{**EX12_SYN, "V_init": -75.0, **kw})  # V_init = V_reset


@pytest.mark.parametrize("tref, clamp_steps", [(2.0, 20), (0.25, 3), (0.0, 0)])
def test_run_lif_cond_dc_input_closed_form(tref, clamp_steps):
    I = 250.0  # pA: V_inf = E_L + I/g_L = -50 mV > V_th = -55 mV
    pars = _dc_pars(tref=tref)
    lt, dt = pars["range_t"].size, pars["dt"]
    no_input = np.zeros((0, lt))
    v, spikes, gE, gI = ref.run_lif_cond(pars, I, no_input, no_input)

    n_first = ref.lif_dc_first_spike_steps(I)
    assert n_first == math.ceil(math.log(0.2) / math.log(0.99)) == 161  # by hand
    # spike steps: n_first, then every n_first + clamp_steps, while tested (index <= Lt - 2)
    steps = np.arange(n_first, lt - 1, n_first + clamp_steps)
    np.testing.assert_allclose(spikes, steps * dt, rtol=0, atol=1e-9)
    assert ref.cv_isi(spikes) < 1e-12
    assert ref.spike_rate_hz(spikes, pars["T"]) == pytest.approx(1e3 * steps.size / 400.0)

    # below threshold the Euler loop is geometric: v_k = V_inf + (V_reset - V_inf) a^k
    k = np.arange(n_first)
    np.testing.assert_allclose(v[:n_first], -50.0 - 25.0 * 0.99**k, rtol=1e-12)
    assert -50.0 - 25.0 * 0.99 ** (n_first - 1) < -55.0 <= -50.0 - 25.0 * 0.99**n_first
    # the spike step and the clamp_steps after it sit at V_reset
    assert np.all(v[steps[0] : steps[0] + clamp_steps + 1] == -75.0)
    assert v[steps[0] + clamp_steps + 1] == pytest.approx(-75.0 + 0.01 * 25.0, rel=1e-12)
    assert not gE.any() and not gI.any()


@pytest.mark.parametrize("dt", [0.1, 0.05])
@pytest.mark.parametrize("I", [201.0, 230.0, 333.3, 1000.0])
def test_first_spike_step_closed_form_matches_loop(I, dt):
    pars = _dc_pars(T=300.0, dt=dt)
    lt = pars["range_t"].size
    _, spikes, _, _ = ref.run_lif_cond(pars, I, np.zeros((0, lt)), np.zeros((0, lt)))
    assert round(spikes[0] / dt) == ref.lif_dc_first_spike_steps(I, dt=dt)


def test_threshold_test_is_greater_or_equal():
    pars = _dc_pars(T=5.0, V_init=-55.0)  # exactly at V_th: spikes at step 0
    lt = pars["range_t"].size
    v, spikes, _, _ = ref.run_lif_cond(pars, 0.0, np.zeros((0, lt)), np.zeros((0, lt)))
    assert np.array_equal(spikes, [0.0]) and v[0] == -75.0


def test_run_lif_cond_last_sample_is_never_tested():
    n_first = ref.lif_dc_first_spike_steps(250.0)
    dt = 0.1
    # Lt = n_first + 1: the sample that crosses threshold is the last one, never tested
    pars = _dc_pars(T=(n_first + 0.5) * dt)
    assert pars["range_t"].size == n_first + 1
    v, spikes, _, _ = ref.run_lif_cond(pars, 250.0, np.zeros((0, n_first + 1)), np.zeros((0, n_first + 1)))
    assert spikes.size == 0 and v[-1] >= pars["V_th"]
    # one more sample: it is tested and recorded
    pars = _dc_pars(T=(n_first + 1.5) * dt)
    v, spikes, _, _ = ref.run_lif_cond(pars, 250.0, np.zeros((0, n_first + 2)), np.zeros((0, n_first + 2)))
    np.testing.assert_allclose(spikes, [n_first * dt])


def test_run_lif_cond_synapse_jumps_and_train_shapes():
    pars = ref.default_pars(T=20.0, **EX12_SYN)
    lt, dt = pars["range_t"].size, pars["dt"]
    ex = np.zeros((3, lt))
    ex[0, 10] = ex[2, 10] = 1.0  # two coincident excitatory spikes at step 10
    inh = np.zeros(lt)
    inh[0] = 1.0  # a spike at index 0 is never seen
    _, _, gE, gI = ref.run_lif_cond(pars, 0.0, ex, inh)
    assert not gE[:10].any() and gE[10] == 2 * 2.4
    # the spike entering gE[10] already drives v[10] (step 3 uses gE[it+1]); from rest:
    pars_rest = dict(pars, V_init=-75.0)
    v, _, _, _ = ref.run_lif_cond(pars_rest, 0.0, ex, np.zeros((0, lt)))
    assert np.all(v[:10] == -75.0)
    assert v[10] == pytest.approx(-75.0 + (dt / 10.0) * (-(4.8 / 10.0) * (-75.0 - 0.0)), rel=1e-14)
    np.testing.assert_allclose(gE[10:60], 4.8 * (1 - dt / 2.0) ** np.arange(50), rtol=1e-12)
    assert not gI.any()
    # a 1-D array is one train, identical to the same train as (1, Lt)
    v1, s1, gE1, _ = ref.run_lif_cond(pars, 0.0, ex[0], inh)
    v2, s2, gE2, _ = ref.run_lif_cond(pars, 0.0, ex[:1], inh[None])
    assert np.array_equal(v1, v2) and np.array_equal(gE1, gE2) and gE1[10] == 2.4


# --------------------------------------------------------------------------------------
# dynamic_syn and the ratio curve
# --------------------------------------------------------------------------------------


def test_dynamic_syn_silent_stretches_are_geometric():
    dt, g_bar, tau_syn = 0.1, 1.2, 5.0
    U0, tau_d, tau_f = STD["U0"], STD["tau_d"], STD["tau_f"]
    train = np.zeros(3000)
    train[[0, 100, 400, 1000]] = 1.0
    u, R, g = ref.dynamic_syn(g_bar, tau_syn, U0, tau_d, tau_f, train, dt)
    a_f, a_d, a_s = 1 - dt / tau_f, 1 - dt / tau_d, 1 - dt / tau_syn
    assert u[100] == U0 and R[100] == 1 - U0 and g[100] == g_bar * U0  # first seen spike
    assert not u[:100].any() and np.all(R[:100] == 1.0)  # index-0 spike never seen

    silent = np.flatnonzero(train[1:] == 0)  # steps it with s = train[it+1] = 0
    silent = silent[silent >= 100]
    np.testing.assert_allclose(u[silent + 1], a_f * u[silent], rtol=1e-13)
    np.testing.assert_allclose(1 - R[silent + 1], a_d * (1 - R[silent]), rtol=0, atol=1e-15)
    np.testing.assert_allclose(g[silent + 1], a_s * g[silent], rtol=1e-13)
    # k silent steps in one go
    for j, k in [(100, 299), (400, 599), (1000, 1999)]:
        assert u[j + k] == pytest.approx(u[j] * a_f**k, rel=1e-12)
        assert 1 - R[j + k] == pytest.approx((1 - R[j]) * a_d**k, rel=1e-11)
        assert g[j + k] == pytest.approx(g[j] * a_s**k, rel=1e-11)
    # jump at a spike (update order of docs/conventions.md 4.1: u first, then R and g with the new u)
    it = 399
    u_new = a_f * u[it] + U0 * (1 - u[it])
    assert u[400] == pytest.approx(u_new, rel=1e-14)
    assert R[400] == pytest.approx(a_d * R[it] + (1 - a_d) - u_new * R[it], rel=1e-14)
    assert g[400] == pytest.approx(a_s * g[it] + g_bar * R[it] * u_new, rel=1e-14)


def test_dynamic_syn_batched_rows_equal_single_calls():
    pars = ref.default_pars(T=100.0)
    trains = ref.poisson_generator(pars, 200.0, 4, myseed=5)
    batched = ref.dynamic_syn(1.2, 5.0, 0.45, 250.0, 150.0, trains, 0.1)
    for k in range(4):
        single = ref.dynamic_syn(1.2, 5.0, 0.45, 250.0, 150.0, trains[k], 0.1)
        for b, s in zip(batched, single):
            assert np.array_equal(b[k], s)


def _euler_regular_events(rate, U0, tau_d, tau_f, dt, g_bar=1.2, tau_syn=5.0, n_seen=9):
    """docs/conventions.md 7, Euler scheme for a regular train, event by event (no time loop)."""
    k = int((1e3 / rate) / dt)
    a_f, a_d, a_s = 1 - dt / tau_f, 1 - dt / tau_d, 1 - dt / tau_syn
    u, R, g, out = 0.0, 1.0, 0.0, []
    for n in range(n_seen):
        if n:  # k - 1 silent steps
            u, R, g = u * a_f ** (k - 1), 1 - (1 - R) * a_d ** (k - 1), g * a_s ** (k - 1)
        u_new = a_f * u + U0 * (1 - u)
        R, g, u = a_d * R + (1 - a_d) - u_new * R, a_s * g + g_bar * R * u_new, u_new
        out.append(g)
    return out


@pytest.mark.parametrize("params", [STD, STF], ids=["STD", "STF"])
@pytest.mark.parametrize("rate", [5.0, 14.0, 30.0, 40.0])
def test_ratio_point_first_value_exact_and_event_driven_agreement(params, rate):
    g1, g9 = ref.ratio_point(rate, **params)
    assert g1 == 1.2 * params["U0"]  # docs/conventions.md 7: g1 = g_bar U0 exactly
    events = _euler_regular_events(rate, dt=0.1, **params)
    assert events[0] == g1
    assert g9 == pytest.approx(events[8], rel=1e-11)


def test_ratio_point_tutorial_direction():
    # STD: g10/g1 falls with rate; STF at 10 Hz: facilitation wins (ratio > 1)
    ratios = [np.divide(*ref.ratio_point(r, **STD)[::-1]) for r in (5.0, 20.0, 40.0)]
    assert ratios[0] > ratios[1] > ratios[2] and ratios[2] < 0.5
    g1, g9 = ref.ratio_point(10.0, **STF)
    assert g9 / g1 > 1.5


def test_tm_continuous_regular_by_hand_and_steady_state():
    U, tau_d, tau_f, rate = 0.2, 100.0, 750.0, 20.0
    release, u_star, x_star = ref.tm_continuous_regular(rate, U, tau_d, tau_f, 400)
    ef, ed = math.exp(-50.0 / tau_f), math.exp(-50.0 / tau_d)
    assert release[0] == U
    u2 = U + U * (1 - U) * ef
    x2 = 1 - (1 - (1 - U)) * ed
    assert release[1] == pytest.approx(u2 * x2, rel=1e-14)
    assert release[-1] == pytest.approx(u_star * x_star, rel=1e-12)
    # the steady state is a fixed point of the two recursions
    assert u_star == pytest.approx(U + u_star * (1 - U) * ef, rel=1e-14)
    assert x_star == pytest.approx(1 - (1 - x_star * (1 - u_star)) * ed, rel=1e-14)
    # delta_ms overrides the rate
    assert np.array_equal(ref.tm_continuous_regular(1.0, U, tau_d, tau_f, 5, delta_ms=50.0)[0], release[:5])


@pytest.mark.parametrize("params", [STD, STF], ids=["STD", "STF"])
@pytest.mark.parametrize("rate", [10.0, 20.0])
def test_euler_ratio_converges_to_continuous_first_order(params, rate):
    errors = []
    for dt in (0.1, 0.05):
        g1, g9 = ref.ratio_point(rate, dt=dt, **params)
        delta = int((1e3 / rate) / dt) * dt
        assert delta == pytest.approx(1e3 / rate)
        release, _, _ = ref.tm_continuous_regular(rate, n_spikes=9, delta_ms=delta, **params)
        g_cont = ref.tm_continuous_conductance(release, delta, g_bar=1.2, tau_syn=5.0)
        errors.append(g9 / g1 - g_cont[8] / g_cont[0])
    assert 1e-5 < abs(errors[0]) < 3e-3  # a real O(dt) discretisation error, well above rounding
    assert 0.45 < errors[1] / errors[0] < 0.55  # halving dt halves the error


# --------------------------------------------------------------------------------------
# Closed forms for the neuron
# --------------------------------------------------------------------------------------


def test_lif_dc_first_spike_steps_edge_cases():
    assert ref.lif_dc_first_spike_steps(200.0) is None  # V_inf = -55 = V_th: never fires
    assert ref.lif_dc_first_spike_steps(250.0, V_init=-54.0) == 0
    # a larger current fires sooner; dt halved doubles the step count (to within one)
    assert ref.lif_dc_first_spike_steps(400.0) < ref.lif_dc_first_spike_steps(250.0)
    assert abs(ref.lif_dc_first_spike_steps(250.0, dt=0.05) - 2 * 161) <= 1


def test_free_membrane_potential_exercise_1_2():
    mu_est, sd_est = ref.fmp_shot_noise_estimate(
        g_L=10.0, E_L=-75.0, tau_m=10.0, inputs=[(80, 10.0, 2.4, 2.0, 0.0), (20, 10.0, 2.4, 5.0, -80.0)]
    )
    assert round(mu_est, 1) == -58.0 and round(sd_est, 1) == 4.1  # docs/conventions.md 7's values

    # FMP: threshold removed (V_th = 1e3), 80 E + 20 I trains at 10 Hz, T = 1000 ms.
    # One 1-s run fluctuates by about 0.4 mV (mean) and 8 % (std), so pool 8 runs from fixed seeds.
    pars = ref.default_pars(T=1000.0, V_th=1e3, **EX12_SYN)
    means, stds = [], []
    for k in range(8):
        ex = ref.poisson_generator(pars, 10.0, 80, myseed=4000 + 2 * k)
        inh = ref.poisson_generator(pars, 10.0, 20, myseed=4001 + 2 * k)  # not the E seed
        v_fmp, spikes, _, _ = ref.run_lif_cond(pars, 0.0, ex, inh)
        assert spikes.size == 0
        means.append(v_fmp.mean())
        stds.append(v_fmp.std())
    assert abs(np.mean(means) - mu_est) < 0.6
    assert abs(np.mean(stds) / sd_est - 1.0) < 0.10


# --------------------------------------------------------------------------------------
# STP-LIF
# --------------------------------------------------------------------------------------


def test_stp_lif_reduces_to_static_lif():
    # U0 = 1, tau_d = tau_f = dt: each seen spike releases exactly g_bar and u, R recover in
    # one step, so (with no spikes on consecutive steps) STP-LIF == static LIF up to rounding.
    pars = ref.default_pars(T=300.0, gE_bar=3.0, VE=0.0, tau_syn_E=2.0, gI_bar=3.0, VI=-80.0, tau_syn_I=5.0)
    dt = pars["dt"]
    pars.update(U0_E=1.0, tau_d_E=dt, tau_f_E=dt, U0_I=1.0, tau_d_I=dt, tau_f_I=dt)
    ex = ref.poisson_generator(pars, 20.0, 80, myseed=31)
    inh = ref.poisson_generator(pars, 10.0, 20, myseed=32)
    for tr in (ex, inh):
        tr[:, 1:] *= 1.0 - tr[:, :-1]  # drop spikes that follow a spike on the same train
    v_s, sp_s, gE_s, gI_s = ref.run_lif_cond(pars, 0.0, ex, inh)
    v, sp, uE, RE, gE, uI, RI, gI = ref.run_lif_cond_stp(pars, 0.0, ex, inh)
    assert sp_s.size >= 5
    np.testing.assert_array_equal(sp, sp_s)
    np.testing.assert_allclose(v, v_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(gE.sum(axis=0), gE_s, rtol=0, atol=1e-10)
    np.testing.assert_allclose(gI.sum(axis=0), gI_s, rtol=0, atol=1e-10)
    assert gE.shape == uE.shape == RE.shape == (80, pars["range_t"].size)
    assert gI.shape == uI.shape == RI.shape == (20, pars["range_t"].size)
    # uI is returned (not RI twice): u is 1 right after an inhibitory spike, R is 0
    k, it = np.argwhere(inh[:, 1:] == 1)[0]
    assert uI[k, it + 1] == 1.0 and RI[k, it + 1] == 0.0


def test_stp_lif_bonus_depresses_and_returns_distinct_uI():
    pars = ref.default_pars(
        T=300.0, gE_bar=4.8, VE=0.0, tau_syn_E=5.0, gI_bar=6.4, VI=-80.0, tau_syn_I=10.0,
        U0_E=0.45, tau_d_E=250.0, tau_f_E=150.0, U0_I=0.45, tau_d_I=250.0, tau_f_I=150.0,
    )  # fmt: skip
    ex = ref.poisson_generator(pars, 15.0, 80, myseed=41)
    inh = ref.poisson_generator(pars, 15.0, 20, myseed=42)
    v, sp, uE, RE, gE, uI, RI, gI = ref.run_lif_cond_stp(pars, 0.0, ex, inh)
    # each synapse is dynamic_syn on its own train
    u0, R0, g0 = ref.dynamic_syn(6.4, 10.0, 0.45, 250.0, 150.0, inh[3], pars["dt"])
    assert np.array_equal(uI[3], u0) and np.array_equal(RI[3], R0) and np.array_equal(gI[3], g0)
    assert not np.array_equal(uI, RI)
    # resources are depleted on average after a few hundred ms at 15 Hz
    assert RE[:, -500:].mean() < 0.8 and np.all((RE >= 0) & (RE <= 1))
    assert np.all(np.isfinite(v)) and v.max() < pars["V_th"] + 5.0


def test_spike_rate_and_cv_helpers():
    assert ref.cv_isi(np.array([1.0, 2.0, 4.0])) == 0.0  # 3 or fewer spikes -> 0
    assert ref.cv_isi(np.array([0.0, 1.0, 3.0, 4.0, 6.0])) == pytest.approx(np.std([1, 2, 1, 2]) / 1.5)
    assert ref.spike_rate_hz(np.arange(5.0), 250.0) == 20.0
