"""Fixed-shape spike statistics against the tutorial's list-based rules (tests/reference.py).

The statistics are evaluated in compiled programs shared by the cases (jitted wrappers, one raster length
where the claim does not depend on it): eagerly, converting each NumPy raster and each operation after the
library's own compiled kernels compiled a program of its own, 67 in this module (2026-12-07)."""

import jax
import numpy as np
import pytest

import reference as ref
import jaxlif


def _raster(n_steps, idx):
    r = np.zeros(n_steps, bool)
    r[idx] = True
    return r


_isi_cv = jax.jit(jaxlif.isi_cv)                       # one program per raster shape
_cv_and_rate = jax.jit(lambda r: (jaxlif.isi_cv(r), jaxlif.spike_rate(r, 400.0)))


@pytest.mark.parametrize("seed", range(5))
def test_isi_cv_and_rate_match_tutorial_rule(seed):
    rng = np.random.default_rng(seed)
    r = rng.random(4000) < 0.01 * (seed + 1)
    times = np.flatnonzero(r) * 0.1
    cv, rate = _cv_and_rate(r)
    assert float(cv) == pytest.approx(ref.cv_isi(times), rel=1e-5)
    assert float(rate) == pytest.approx(ref.spike_rate_hz(times, 400.0))


@pytest.mark.parametrize("idx", [[], [3], [3, 9, 20], [1, 5, 9, 13]])
def test_isi_cv_three_or_fewer_spikes_is_zero_and_regular_is_zero(idx):
    assert float(_isi_cv(_raster(50, idx))) == 0.0


def test_isi_cv_known_value():
    # ISIs 2, 4, 2, 4 steps: mean 3, population std 1 -> CV 1/3 (in a record of 50 steps, the length of the
    # test above: its program; the value does not depend on the silent steps after the last spike)
    r = _raster(50, [0, 2, 6, 8, 12])
    assert float(_isi_cv(r)) == pytest.approx(1 / 3, rel=1e-6)


def test_batched_statistics_reduce_last_axis():
    rng = np.random.default_rng(0)
    r = rng.random((3, 4, 1000)) < 0.05
    cv, one, count = jax.jit(lambda r: (jaxlif.isi_cv(r), jaxlif.isi_cv(r[1, 2]), jaxlif.spike_count(r)))(r)
    assert cv.shape == (3, 4)
    assert float(np.asarray(cv)[1, 2]) == pytest.approx(float(one))
    np.testing.assert_array_equal(count, r.sum(-1))


def test_fmp_stats_population_std():
    v = np.random.default_rng(1).normal(-60, 3, (2, 500))
    m, s = jax.jit(jaxlif.fmp_stats)(v)
    np.testing.assert_allclose(m, v.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(s, v.std(-1), rtol=1e-5)


def test_values_at_events_gives_conductance_at_each_spike():
    train = jaxlif.regular_train(20.0, T=500.0, dt=0.1)
    out = jaxlif.simulate_stp(jaxlif.STD, jaxlif.SynParams(1.2, 5.0, 0.0), train, dt=0.1)
    # one program (eagerly, its vmapped operations compiled 30 programs of their own, 2026-12-07)
    vals, ok = map(np.asarray, jax.jit(jaxlif.values_at_events, static_argnums=2)(out.g, train, 12))
    isi = 500
    assert int(ok.sum()) == 10 and not bool(ok[10])
    np.testing.assert_allclose(vals[:10], np.asarray(out.g)[np.arange(10) * isi])
    assert np.isnan(vals[10:]).all()
    assert float(vals[1]) == pytest.approx(1.2 * 0.5, rel=1e-6)  # g[isi] = g_bar * U0


@jax.jit
def _shot_noise(p, rate_E, rate_I, I_inj):
    """The approximation and its inverse at its mu, one program for the three cases (eagerly: 8)."""
    mu, sd = jaxlif.analysis.fmp_shot_noise(p, rate_E, rate_I, I_inj=I_inj)
    return mu, sd, jaxlif.analysis.balanced_inh_rate(p, mu, rate_E, I_inj=I_inj)


@pytest.mark.parametrize("rate_E,rate_I,I_inj", [(10.0, 10.0, 0.0), (20.0, 45.0, 0.0), (4.0, 12.0, 80.0)])
def test_fmp_shot_noise_equals_reference_formula(x64, rate_E, rate_I, I_inj):
    mu, sd, r_I = _shot_noise(jaxlif.CondLIFParams(), rate_E, rate_I, I_inj)
    want = ref.fmp_shot_noise_estimate(10.0, -75.0, 10.0, [(80, rate_E, 2.4, 2.0, 0.0), (20, rate_I, 2.4, 5.0, -80.0)],
                                       I_inj=I_inj)
    assert float(mu) == pytest.approx(want[0], rel=1e-12)
    assert float(sd) == pytest.approx(want[1], rel=1e-12)
    assert float(r_I) == pytest.approx(rate_I, rel=1e-9)
