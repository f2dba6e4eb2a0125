"""Current- and conductance-based LIF: tutorial pins, closed forms, the NumPy oracle."""

import jax
import numpy as np
import pytest

import reference as ref
from conftest import TOL64, compiled_programs
import jaxlif
from jaxlif import CondLIFParams, LIFParams, simulate_cond_lif, simulate_lif

# First tutorial (seeds/000, coding exercise 4): "print(f'{t:.3f} {v:.4e}')" after each update, in volts.
PRINTED_V_VOLTS = [-5.8750e-02, -5.6828e-02, -5.4548e-02, -5.2381e-02, -5.0778e-02,
                   -4.9989e-02, -4.9974e-02, -5.0414e-02, -5.0832e-02, -5.0775e-02]
# Coding exercise 2: the synaptic input current in amperes.
PRINTED_I_AMPS = [2.5e-10, 3.969463130731183e-10, 4.877641290737885e-10, 4.877641290737885e-10,
                  3.9694631307311837e-10, 2.5000000000000007e-10, 1.0305368692688176e-10,
                  1.2235870926211617e-11, 1.223587092621159e-11, 1.0305368692688186e-10]

PART1 = LIFParams(tau_m=20.0, E_L=-60.0, V_init=-60.0, V_reset=-70.0, V_th=-50.0, g_L=10.0)


def test_first_tutorial_printed_current_and_voltage():
    I = jaxlif.sinusoidal_current(250.0, T=150.0, dt=1.0)
    np.testing.assert_allclose(np.asarray(I)[:10] * 1e-12, PRINTED_I_AMPS, rtol=1e-6)   # NumPy slicing: no program
    v = simulate_lif(PART1, I, dt=1.0, spiking=False).v
    # the tutorial prints the updated v: v[1..10]; printed with 5 significant digits
    np.testing.assert_allclose(np.asarray(v)[1:11] * 1e-3, PRINTED_V_VOLTS, rtol=6e-5)


def test_first_tutorial_against_oracle_float64(x64):
    I = jaxlif.sinusoidal_current(250.0, T=150.0, dt=1.0)
    v = simulate_lif(PART1, I, dt=1.0, spiking=False).v
    _, i_si, v_si = ref.lif_part1_loop(149)
    np.testing.assert_allclose(np.asarray(I)[:149] * 1e-12, i_si, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(v)[1:], v_si * 1e3, rtol=0, atol=1e-9)


def test_first_tutorial_with_spikes_resets():
    I = jaxlif.sinusoidal_current(250.0, T=150.0, dt=1.0)
    out = jax.tree.map(np.asarray, simulate_lif(PART1, I, dt=1.0, spiking=True))   # NumPy below: nothing compiled
    assert out.spikes.sum() > 0
    assert np.all(np.asarray(out.v)[np.asarray(out.spikes)] == -70.0)
    # every sample before a spike is sub-threshold except the spike sample itself (set to reset)
    v = np.asarray(out.v)
    assert np.all(v[:-1][~np.asarray(out.spikes)[:-1]] < -50.0)


@pytest.mark.parametrize("I_dc", [150.0, 210.0])
def test_subthreshold_dc_is_geometric(x64, I_dc):
    p = LIFParams()
    steps = 500
    v = simulate_lif(p, jaxlif.dc_current(I_dc, T=steps * 0.1, dt=0.1), dt=0.1, spiking=False).v
    v_inf = p.E_L + I_dc / p.g_L
    k = np.arange(steps)
    closed = v_inf + (p.V_init - v_inf) * (1 - 0.1 / p.tau_m) ** k
    np.testing.assert_allclose(np.asarray(v), closed, rtol=0, atol=1e-10)


@pytest.mark.parametrize("I_dc", [250.0, 400.0])
def test_dc_spike_times_closed_form(x64, I_dc):
    p = LIFParams(V_init=-75.0)  # V_init = V_reset
    out = simulate_lif(p, jaxlif.dc_current(I_dc, T=300.0, dt=0.1), dt=0.1)
    idx = np.flatnonzero(np.asarray(out.spikes))
    first = ref.lif_dc_first_spike_steps(I_dc, V_init=-75.0)
    assert idx[0] == first
    # after a spike at step s: 20 clamp steps, then the same climb from V_reset
    np.testing.assert_array_equal(np.diff(idx), first + 20)
    assert float(jaxlif.isi_cv(out.spikes)) == 0.0


def _exercise_trains(seed, T=400.0, rate_e=10.0, rate_i=10.0):
    pars = ref.default_pars(T=T)
    pars.update(gE_bar=2.4, VE=0.0, tau_syn_E=2.0, gI_bar=2.4, VI=-80.0, tau_syn_I=5.0)
    return pars, ref.poisson_generator(pars, rate_e, 80, seed), ref.poisson_generator(pars, rate_i, 20, seed + 7)


def test_cond_lif_counts_equal_oracle(x64):
    pars, ex, inh = _exercise_trains(3)
    want_v, want_sp, want_gE, want_gI = ref.run_lif_cond(pars, 30.0, ex, inh)
    with compiled_programs() as names:
        out = simulate_cond_lif(CondLIFParams(), ex.sum(0), inh.sum(0), 30.0, dt=0.1)
    # NumPy counts and a scalar current reach the compiled simulator as they are: no program of their own
    assert not {"jit(stage)", "jit(broadcast_in_dim)", "jit(convert_element_type)"} & set(names), names
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(out.spikes)) * 0.1, want_sp)
    np.testing.assert_allclose(np.asarray(out.v), want_v, rtol=0, atol=TOL64)
    np.testing.assert_allclose(np.asarray(out.g_E), want_gE, rtol=0, atol=TOL64)
    np.testing.assert_allclose(np.asarray(out.g_I), want_gI, rtol=0, atol=TOL64)


def test_poisson_in_scan_equals_explicit_counts(x64):
    """400 ms: the duration of the test above, whose compiled ``simulate_cond_lif`` program (float64 counts, a
    scalar current) the explicit run reuses."""
    key = jax.random.key(42)
    p = CondLIFParams()
    out = jaxlif.simulate_cond_lif_poisson(key, p, rate_E=10.0, rate_I=10.0, T=400.0, dt=0.1)

    @jax.jit
    def counts(key):               # the key split and both draws in one program (eagerly: 4 programs)
        k_E, k_I = jax.random.split(key)
        return (jaxlif.poisson_counts(k_E, 10.0, 80, T=400.0, dt=0.1),
                jaxlif.poisson_counts(k_I, 10.0, 20, T=400.0, dt=0.1))

    n_E, n_I = map(np.asarray, counts(key))
    want = simulate_cond_lif(p, n_E, n_I, dt=0.1)
    for a, b in zip(out, want):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lean = jaxlif.simulate_cond_lif_poisson(key, p, T=400.0, dt=0.1, rate_E=10.0, rate_I=10.0, record=False)
    assert lean.v is None
    np.testing.assert_array_equal(lean.spikes, out.spikes)


#: Exercise 1.2's runs of the two tests below in one vmapped call (a module fixture): 16 lanes of free membrane
#: potential (the threshold at +inf, which is what ``spiking=False`` does: ``neurons.cond._no_threshold``) and 64
#: spiking lanes, with the same keys as when each test ran its own program and the same numbers bit for bit
#: (checked 2026-12-07; one program of this simulator less, about 0.6 CPU-s).
FMP_KEYS, RATE_KEYS = 16, 64


@pytest.fixture(scope="module")
def exercise_runs():
    keys = jax.numpy.concatenate([jax.random.split(jax.random.key(0), FMP_KEYS),
                                  jax.random.split(jax.random.key(1), RATE_KEYS)])
    V_th = np.concatenate([np.full(FMP_KEYS, np.inf), np.full(RATE_KEYS, LIFParams().V_th)]).astype(np.float32)
    run = jax.vmap(lambda k, th: jaxlif.simulate_cond_lif_poisson(k, CondLIFParams(neuron=LIFParams(V_th=th)),
                                                                  T=1000.0, dt=0.1))
    out = run(keys, V_th)
    return np.asarray(out.v)[:FMP_KEYS], np.asarray(out.spikes)[FMP_KEYS:]      # NumPy slices: no programs


def test_fmp_matches_shot_noise_approximation(exercise_runs):
    """docs/conventions.md 7: exercise 1.2 mean FMP about -58.0 mV, std about 4.1 mV (simulations within ~0.2 mV, 3%)."""
    v = exercise_runs[0]
    mean, std = map(np.asarray, jax.jit(jaxlif.fmp_stats)(v))   # one program; the means below in NumPy
    assert float(mean.mean()) == pytest.approx(-58.0, abs=0.5)
    assert float(std.mean()) == pytest.approx(4.1, rel=0.07)


def test_wl_a_mean_rate_agrees_with_peers(exercise_runs):
    """docs/workloads.md: WL-A mean output rate about 25.5 Hz (Brian2, BrainPy, NumPy agree)."""
    rates = np.asarray(jax.jit(lambda s: jaxlif.spike_rate(s, 1000.0))(exercise_runs[1]))     # one program
    sem = rates.std(ddof=1) / np.sqrt(rates.size)
    assert abs(rates.mean() - 25.5) < 5 * sem + 0.5
