"""The tutorial drop-in ``jaxlif.nma`` against the independent NumPy oracle (tests/reference.py).

Float64: identical spike times and every trace within 1e-9 (tutorial units).
Float32: traces within 1e-3 mV / 1e-4 nS wherever no spike time differs.
"""

import numpy as np
import pytest

import reference as ref
from conftest import TOL32_MV, TOL32_NS, TOL64
from jaxlif import nma


def _syn_pars(T=1000.0, gE=2.4, gI=2.4, **kw):
    pars = nma.default_pars(T=T, **kw)
    pars.update(gE_bar=gE, VE=0.0, tau_syn_E=2.0, gI_bar=gI, VI=-80.0, tau_syn_I=5.0)
    return pars


def _stp_pars(tau_ratio, T=1000.0):
    pars = nma.default_pars(T=T)
    pars.update(gE_bar=4.8, VE=0.0, tau_syn_E=5.0, gI_bar=6.4, VI=-80.0, tau_syn_I=10.0,
                U0_E=0.45, tau_d_E=500.0 * tau_ratio, tau_f_E=300.0 * tau_ratio,
                U0_I=0.45, tau_d_I=500.0 * tau_ratio, tau_f_I=300.0 * tau_ratio)
    return pars


def test_default_pars_matches_tutorial():
    pars = nma.default_pars(T=1000.0)
    expected = ref.default_pars(T=1000.0)
    assert pars.keys() == expected.keys()
    for k in pars:
        np.testing.assert_array_equal(pars[k], expected[k])
    assert pars["range_t"].size == 10000


@pytest.mark.parametrize("seed", [1, 2020, 0])
def test_poisson_generator_same_array_as_tutorial(seed):
    pars = nma.default_pars(T=200.0)
    state = np.random.get_state()[1].copy()
    out = nma.Poisson_generator(pars, rate=35.0, n=7, myseed=seed)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global RNG untouched
    # the tutorial: np.random.seed(seed); 1. * (np.random.rand(n, Lt) < rate*dt/1000)
    expected = 1.0 * (np.random.RandomState(seed).rand(7, pars["range_t"].size) < 35.0 * 0.1 / 1000)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, ref.poisson_generator(pars, 35.0, 7, seed))
    assert out.shape == (7, 2000) and out.dtype == np.float64


def test_poisson_generator_without_seed_differs_between_calls():
    pars = nma.default_pars(T=1000.0)
    a = nma.Poisson_generator(pars, rate=50.0, n=5)
    b = nma.Poisson_generator(pars, rate=50.0, n=5)
    assert not np.array_equal(a, b)


def test_my_gwn_same_array_as_tutorial():
    pars = nma.default_pars(T=100.0)
    out = nma.my_GWN(pars, mu=20.0, sig=5.0, myseed=2021)
    expected = 20.0 + 5.0 * np.random.RandomState(2021).randn(1000) / np.sqrt(0.1 / 1000.0)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(out, ref.gwn(pars, 20.0, 5.0, 2021), rtol=0, atol=1e-12)


CASES = [
    # (label, pars kwargs, exc rate, inh rate, I_inj description)
    ("exercise 1.2", dict(), 10.0, 10.0, 0.0),
    ("explorer strong E", dict(gE=3.0, gI=3.0), 20.0, 10.0, 0.0),
    ("explorer strong I", dict(gE=3.0, gI=3.0), 20.0, 40.0, 0.0),
    ("free membrane potential", dict(V_th=1e3), 10.0, 10.0, 0.0),
    ("GWN current", dict(T=500.0), 5.0, 20.0, "gwn"),
    ("finer dt, tref 0", dict(T=300.0, dt=0.05, tref=0.0), 12.0, 12.0, 100.0),
]


def _run_case(fn, kw, rate_e, rate_i, inj, seed):
    kw = dict(kw)
    pars = _syn_pars(T=kw.pop("T", 1000.0), gE=kw.pop("gE", 2.4), gI=kw.pop("gI", 2.4), **kw)
    ex = ref.poisson_generator(pars, rate_e, 80, seed)
    inh = ref.poisson_generator(pars, rate_i, 20, seed + 1)
    I = ref.gwn(pars, 50.0, 8.0, seed + 2) if inj == "gwn" else inj
    return fn(pars, I, ex, inh)


@pytest.mark.parametrize("label,kw,rate_e,rate_i,inj", CASES, ids=[c[0] for c in CASES])
def test_run_lif_cond_float64_equals_oracle(x64, label, kw, rate_e, rate_i, inj):
    got = _run_case(nma.run_LIF_cond, kw, rate_e, rate_i, inj, seed=11)
    want = _run_case(ref.run_lif_cond, kw, rate_e, rate_i, inj, seed=11)
    np.testing.assert_array_equal(got[1], want[1])  # identical spike times
    for g, w in zip(got[:1] + got[2:], want[:1] + want[2:]):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=0, atol=TOL64)
    if label != "free membrane potential":
        assert len(want[1]) > 0, "case must exercise spikes"


def test_run_lif_cond_float32_within_tolerance():
    got = _run_case(nma.run_LIF_cond, {}, 10.0, 10.0, 0.0, seed=5)
    want = _run_case(ref.run_lif_cond, {}, 10.0, 10.0, 0.0, seed=5)
    assert got[0].dtype == np.float32
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=TOL32_MV)
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=TOL32_NS)
    np.testing.assert_allclose(got[3], want[3], rtol=0, atol=TOL32_NS)


@pytest.mark.parametrize("U0,tau_d,tau_f", [(0.5, 100.0, 50.0), (0.2, 100.0, 750.0), (0.45, 250.0, 150.0)])
@pytest.mark.parametrize("kind", ["regular", "poisson", "counts"])
def test_dynamic_syn_float64_equals_oracle(x64, U0, tau_d, tau_f, kind):
    pars = nma.default_pars(T=600.0)
    if kind == "regular":
        train = np.zeros(pars["range_t"].size)
        train[::173] = 1.0
    elif kind == "poisson":
        train = ref.poisson_generator(pars, 40.0, 1, 3)[0]
    else:  # several trains summed: counts > 1 per step
        train = ref.poisson_generator(pars, 300.0, 10, 4).sum(axis=0)
        assert train.max() > 1
    got = nma.dynamic_syn(1.2, 5.0, U0, tau_d, tau_f, train, 0.1)
    want = ref.dynamic_syn(1.2, 5.0, U0, tau_d, tau_f, train, 0.1)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=TOL64)


def test_dynamic_syn_float32_within_tolerance():
    pars = nma.default_pars(T=1000.0)
    train = ref.poisson_generator(pars, 30.0, 1, 8)[0]
    got = nma.dynamic_syn(1.2, 5.0, 0.2, 100.0, 750.0, train, 0.1)
    want = ref.dynamic_syn(1.2, 5.0, 0.2, 100.0, 750.0, train, 0.1)
    np.testing.assert_allclose(got[2], want[2], rtol=0, atol=TOL32_NS)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("tau_ratio", [0.2, 0.6, 1.0])
def test_run_lif_cond_stp_float64_equals_oracle(x64, tau_ratio):
    pars = _stp_pars(tau_ratio, T=500.0)
    ex = ref.poisson_generator(pars, 15.0, 80, 21)
    inh = ref.poisson_generator(pars, 15.0, 20, 22)
    got = nma.run_LIF_cond_STP(pars, 0, ex, inh)
    want = ref.run_lif_cond_stp(pars, 0, ex, inh)
    assert len(want[1]) > 0
    np.testing.assert_array_equal(got[1], want[1])
    for name, g, w in zip(["v", "_", "uE", "RE", "gE", "uI", "RI", "gI"], got, want):
        if name != "_":
            assert g.shape == w.shape, name
            np.testing.assert_allclose(g, w, rtol=0, atol=TOL64, err_msg=name)
    # the tutorial lost uI (returned RI twice); the drop-in returns the real uI
    assert not np.allclose(got[5], got[6])


def test_run_lif_cond_stp_float32_within_tolerance():
    pars = _stp_pars(0.5, T=500.0)
    ex = ref.poisson_generator(pars, 15.0, 80, 31)
    inh = ref.poisson_generator(pars, 15.0, 20, 32)
    got = nma.run_LIF_cond_STP(pars, 50.0, ex, inh)
    want = ref.run_lif_cond_stp(pars, 50.0, ex, inh)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=TOL32_MV)
    np.testing.assert_allclose(got[4], want[4], rtol=0, atol=TOL32_NS)
    np.testing.assert_allclose(got[7], want[7], rtol=0, atol=TOL32_NS)


@pytest.mark.parametrize("rate", [5.0, 13.0, 20.0, 40.0])
@pytest.mark.parametrize("U0,tau_d,tau_f", [(0.5, 100.0, 50.0), (0.2, 100.0, 750.0)])
def test_my_illus_std_equals_oracle(x64, rate, U0, tau_d, tau_f):
    got = nma.my_illus_STD(Poisson=False, rate=rate, U0=U0, tau_d=tau_d, tau_f=tau_f, plot_out=False)
    want = ref.ratio_point(rate, U0, tau_d, tau_f)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got[0] == pytest.approx(1.2 * U0, abs=1e-15)


def test_my_illus_std_poisson_and_plot():
    import matplotlib.pyplot as plt

    assert nma.my_illus_STD(Poisson=True, rate=20.0, plot_out=False, myseed=3) is None
    n_before = len(plt.get_fignums())
    g1, g10 = nma.my_illus_STD(Poisson=False, rate=20.0, plot_out=True)
    fig = plt.figure(plt.get_fignums()[-1])
    assert len(plt.get_fignums()) == n_before + 1
    labels = [ax.get_xlabel() for ax in fig.axes] + [ax.get_ylabel() for ax in fig.axes]
    assert "g (nS)" in labels and "Time (ms)" in labels
    plt.close("all")


def test_plot_volt_trace_does_not_modify_caller_array():
    import matplotlib.pyplot as plt

    pars = _syn_pars(T=200.0)
    v = np.linspace(-70, -50, pars["range_t"].size)
    before = v.copy()
    nma.plot_volt_trace(pars, v, np.array([10.0, 50.0]), show=False)
    np.testing.assert_array_equal(v, before)
    plt.close("all")
