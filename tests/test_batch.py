"""Tests of the fast batch simulators ``jaxlif.batch`` against the step-by-step oracles.

The fast paths draw their Poisson input event by event and advance plastic synapses from spike to
spike; the step-by-step simulators (``jaxlif.simulate_cond_lif``, ``jaxlif.simulate_stp_lif``) and the
independent NumPy transcription of the tutorial (``tests/reference.py``) are run on *the same input*
(``cond_lif_batch_inputs`` / ``stp_lif_batch_trains`` return exactly what the fast paths draw) and must
give the same spikes and, in float64, traces within 1e-9.  The samplers' laws are tested separately
(Binomial counts, Bernoulli trains), and so are the invariances (chunks, windows, batch composition,
keys) and the mean output rates.  Units: ms, mV, nS, Hz.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxlif
from jaxlif import batch as jb
from jaxlif.batch import rng as jbr

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import reference as ref
except ImportError:  # tests/ is a package
    from tests import reference as ref

TOL64 = 1e-9
DT = 0.1
EX12 = dict(gE_bar=2.4, gI_bar=2.4, VE=0.0, VI=-80.0, tau_syn_E=2.0, tau_syn_I=5.0)
BONUS = dict(gE_bar=4.8, gI_bar=6.4, VE=0.0, VI=-80.0, tau_syn_E=5.0, tau_syn_I=10.0, U0_E=0.45, U0_I=0.45)


def _max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ----------------------------------------------------------------------------------------------
# random numbers
# ----------------------------------------------------------------------------------------------


def test_threefry_is_jax_threefry():
    from jax.extend.random import threefry_2x32
    rng = np.random.default_rng(0)
    key = rng.integers(0, 2 ** 32, 2, dtype=np.uint32)
    x0, x1 = (rng.integers(0, 2 ** 32, 64, dtype=np.uint32) for _ in range(2))
    ours = jbr._threefry2x32(key[0], key[1], x0, x1)
    theirs = threefry_2x32(jnp.asarray(key), jnp.concatenate([x0, x1]))
    np.testing.assert_array_equal(np.concatenate([ours[0], ours[1]]), np.asarray(theirs))


def test_uniforms_in_half_open_interval():
    w = jnp.array([0, 1, 2 ** 31, 2 ** 32 - 1], jnp.uint32)
    u = np.asarray(jbr._uniform(w, None, jnp.float32))
    assert u.min() > 0 and u.max() <= 1 and u[0] == 2.0 ** -24 and u[-1] == 1.0
    with jax.enable_x64(True):
        u = np.asarray(jbr._uniform(w, w, jnp.float64))
        assert u.min() > 0 and u.max() == 1.0 and u[0] == 2.0 ** -53


def test_geometric_gap_edge_cases():
    u = jnp.array([1.0, 0.5, 2.0 ** -24], jnp.float32)
    np.testing.assert_array_equal(jbr._geometric(u, jbr._gap_scale(jnp.float32(-jnp.inf)), 99), [1, 1, 1])  # p = 1
    np.testing.assert_array_equal(jbr._geometric(u, jbr._gap_scale(jnp.float32(0.0) * -1), 99), [99, 99, 99])  # p = 0
    g = jbr._geometric(u, jbr._gap_scale(jnp.log1p(-jnp.float32(0.5))), 10 ** 6)
    np.testing.assert_array_equal(g, [1, 2, 25])        # 1 + floor(log(u) / log(1/2))


# ----------------------------------------------------------------------------------------------
# one float32 configuration shared by several tests (each distinct configuration costs a compilation)
# ----------------------------------------------------------------------------------------------

B_SHARED, T_SHARED = 8, 1000.0


@pytest.fixture(scope="module")
def shared():
    """Default WL-A and WL-B runs (float32, record=True) and the inputs they drew, for one key."""
    key = jax.random.key(2024)
    return dict(
        key=key,
        A=jb.simulate_cond_lif_batch(key, B_SHARED, T=T_SHARED, dt=DT, record=True),
        B=jb.simulate_stp_lif_batch(key, B_SHARED, T=T_SHARED, dt=DT, record=True),
        counts=jb.cond_lif_batch_inputs(key, B_SHARED, T=T_SHARED, dt=DT),
        trains=jb.stp_lif_batch_trains(key, B_SHARED, T=T_SHARED, dt=DT),
    )


# ----------------------------------------------------------------------------------------------
# laws of the event samplers
# ----------------------------------------------------------------------------------------------


def test_pooled_counts_are_binomial(shared):
    """Per-step pooled counts ~ Binomial(n, p), independent across steps (chi-square, lag-1 correlation)."""
    for c, n, rate in ((shared["counts"][0], 80, 10.0), (shared["counts"][1], 20, 10.0)):
        c = np.asarray(c)
        assert c.shape == (B_SHARED, 10000) and c.dtype == np.float32
        assert np.all(c[:, 0] == 0)                     # index 0 is never seen
        c = c[:, 1:]
        p = rate * DT / 1000.0
        obs = [np.sum(c == 0), np.sum(c == 1), np.sum(c >= 2)]
        pexp = [stats.binom.pmf(0, n, p), stats.binom.pmf(1, n, p), stats.binom.sf(1, n, p)]
        assert stats.chisquare(obs, np.array(pexp) * c.size).pvalue > 1e-4
        assert abs(c.var() / (n * p * (1 - p)) - 1) < 6 * math.sqrt(2 / c.size) + 6 * math.sqrt(1 / (n * p * c.size))
        r = np.corrcoef(c[:, 1:].ravel(), c[:, :-1].ravel())[0, 1]
        assert abs(r) < 6 / math.sqrt(c.size)


def test_synapse_trains_are_bernoulli(shared):
    """Each train is Bernoulli(p) per step: mean, variance of the counts (independence in time), lag-1
    correlation, and coincidences between trains of one neuron (independence across trains)."""
    sE, sI = shared["trains"]
    assert sE.shape == (B_SHARED, 80, 10000) and sI.shape == (B_SHARED, 20, 10000) and sE.dtype == jnp.bool_
    p = 15.0 * DT / 1000.0
    for s in (np.asarray(sE), np.asarray(sI)):
        assert not s[..., 0].any()
        x = s[..., 1:]
        assert abs(x.mean() - p) < 6 * math.sqrt(p * (1 - p) / x.size)
        counts = x.sum(-1).ravel()
        assert abs(counts.var(ddof=1) / (x.shape[-1] * p * (1 - p)) - 1) < 6 * math.sqrt(2 / (counts.size - 1))
        flat = x.reshape(-1, x.shape[-1])
        lag1 = np.corrcoef(flat[:, 1:].ravel(), flat[:, :-1].ravel())[0, 1]
        assert abs(lag1) < 6 / math.sqrt(flat.size)
    per_step = np.asarray(sE[:, :, 1:], np.int64).sum(1)
    coincidences = (per_step * (per_step - 1) // 2).sum()
    expected = B_SHARED * (80 * 79 / 2) * 9999 * p ** 2
    assert abs(coincidences - expected) < 6 * math.sqrt(expected)


# ----------------------------------------------------------------------------------------------
# fast path == step-by-step oracle on shared inputs (float64)
# ----------------------------------------------------------------------------------------------


def test_cond_batch_equals_step_by_step_oracle(x64):
    """WL-A-like batch with per-neuron rates and thresholds and a time-varying current."""
    key, B, T = jax.random.key(11), 4, 300.0
    rate_E, rate_I = np.array([5.0, 10.0, 20.0, 40.0]), np.array([10.0, 0.0, 30.0, 10.0])
    V_th = np.array([-55.0, -54.0, -56.0, -55.0])
    params = jaxlif.CondLIFParams(neuron=jaxlif.LIFParams(V_th=V_th))
    I = jaxlif.sinusoidal_current(40.0, T=T, dt=DT)
    fast = jb.simulate_cond_lif_batch(key, B, params, rate_E=rate_E, rate_I=rate_I, I_inj=I, T=T, dt=DT,
                                      record=True)
    assert fast.v.dtype == jnp.float64 and fast.v.shape == (B, 3000)
    counts_E, counts_I = jb.cond_lif_batch_inputs(key, B, rate_E=rate_E, rate_I=rate_I, T=T, dt=DT)
    assert float(counts_E.sum()) > 500
    for b in range(B):                                   # a Python loop over neurons: vmap == loop
        single = jaxlif.CondLIFParams(neuron=jaxlif.LIFParams(V_th=float(V_th[b])))
        core = jaxlif.simulate_cond_lif(single, counts_E[b], counts_I[b], I, dt=DT)
        pars = ref.default_pars(T=T, dt=DT, V_th=float(V_th[b]), **EX12)
        v_np, spk_np, gE_np, gI_np = ref.run_lif_cond(pars, np.asarray(I), np.asarray(counts_E[b])[None],
                                                      np.asarray(counts_I[b])[None])
        np.testing.assert_array_equal(fast.spikes[b], core.spikes)
        np.testing.assert_allclose(np.flatnonzero(fast.spikes[b]) * DT, spk_np, atol=1e-9)
        assert int(fast.spike_count[b]) == len(spk_np)
        assert _max_abs(fast.v[b], core.v) <= TOL64 and _max_abs(fast.v[b], v_np) <= TOL64
        assert _max_abs(fast.g_E[b], gE_np) <= TOL64 and _max_abs(fast.g_I[b], gI_np) <= TOL64
    assert fast.spike_count.sum() > 20


def test_stp_batch_equals_step_by_step_oracle(x64):
    """WL-B-like batch: per-neuron STP time constants; every synapse has its own u, R, g in the oracles."""
    key, B, T = jax.random.key(12), 3, 300.0
    tau_ratio = np.array([0.2, 0.5, 1.0])
    base = jaxlif.stp_lif_params(0.5)
    stp = base.stp_E._replace(tau_d=500.0 * tau_ratio, tau_f=300.0 * tau_ratio)
    params = base._replace(stp_E=stp, stp_I=stp)
    fast = jb.simulate_stp_lif_batch(key, B, params, rate_E=np.array([10.0, 15.0, 30.0]), rate_I=15.0, T=T,
                                     dt=DT, record=True, window=700)
    sE, sI = jb.stp_lif_batch_trains(key, B, rate_E=np.array([10.0, 15.0, 30.0]), rate_I=15.0, T=T, dt=DT)
    for b in range(B):
        single = jaxlif.stp_lif_params(float(tau_ratio[b]))
        core = jaxlif.simulate_stp_lif(single, sE[b], sI[b], dt=DT, record_synapses=False)
        pars = ref.default_pars(T=T, dt=DT, tau_d_E=500.0 * tau_ratio[b], tau_f_E=300.0 * tau_ratio[b],
                                tau_d_I=500.0 * tau_ratio[b], tau_f_I=300.0 * tau_ratio[b], **BONUS)
        out = ref.run_lif_cond_stp(pars, 0.0, np.asarray(sE[b], float), np.asarray(sI[b], float))
        np.testing.assert_array_equal(fast.spikes[b], core.spikes)
        np.testing.assert_allclose(np.flatnonzero(fast.spikes[b]) * DT, out[1], atol=1e-9)
        assert _max_abs(fast.v[b], core.v) <= TOL64 and _max_abs(fast.v[b], out[0]) <= TOL64
        assert _max_abs(fast.g_E[b], out[4].sum(0)) <= TOL64 and _max_abs(fast.g_I[b], out[7].sum(0)) <= TOL64
    assert fast.spike_count.min() > 5


# ----------------------------------------------------------------------------------------------
# invariances: chunks, windows, batch composition, keys
# ----------------------------------------------------------------------------------------------


# The same configurations run on 4 devices in test_sharding.py (the compiled programs are shared).
OTHER_BATCH = dict(A=dict(batch_chunk=3, window=37), B=dict(batch_chunk=3))


@pytest.mark.parametrize("wl, sim", [("A", jb.simulate_cond_lif_batch), ("B", jb.simulate_stp_lif_batch)])
def test_chunks_windows_and_batch_size_change_nothing(shared, wl, sim):
    """Chunks of 3 neurons, a bigger batch (and for static input another window): neurons 0..7 are
    bit-identical to the default run."""
    other = sim(shared["key"], B_SHARED + 2, T=T_SHARED, dt=DT, record=True, **OTHER_BATCH[wl])
    for a, b in zip(shared[wl][:5], other[:5]):
        np.testing.assert_array_equal(a, b[:B_SHARED])


def test_windows_change_stp_by_rounding_only(shared):
    """The window sets the summation order of coincident jumps: float32 rounding, same spikes."""
    a = shared["B"]
    b = jb.simulate_stp_lif_batch(shared["key"], B_SHARED, T=T_SHARED, dt=DT, record=True, window=123)
    np.testing.assert_array_equal(a.spikes, b.spikes)
    assert _max_abs(a.g_E, b.g_E) < 1e-4 and _max_abs(a.v, b.v) < 1e-3


def test_keys(shared):
    again = jb.simulate_stp_lif_batch(shared["key"], B_SHARED, T=T_SHARED, dt=DT, record=True)
    legacy = jb.simulate_stp_lif_batch(jax.random.key_data(shared["key"]), B_SHARED, T=T_SHARED, dt=DT,
                                       record=True)
    other = jb.simulate_stp_lif_batch(jax.random.key(1), B_SHARED, T=T_SHARED, dt=DT, record=True)
    for a, b, c in zip(shared["B"][:5], again[:5], legacy[:5]):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(shared["B"].spikes, other.spikes)
    assert shared["B"].spike_count.dtype == jnp.int32
    np.testing.assert_array_equal(shared["B"].spike_count, shared["B"].spikes.sum(1))


# ----------------------------------------------------------------------------------------------
# float32 (default) against float64 on the same input
# ----------------------------------------------------------------------------------------------


def test_float32_against_float64_reference(shared):
    fast, sfast = shared["A"], shared["B"]
    (counts_E, counts_I), (sE, sI) = shared["counts"], shared["trains"]
    assert fast.v.dtype == jnp.float32 and sfast.g_E.dtype == jnp.float32
    with jax.enable_x64(True):
        core = jax.vmap(lambda e, i: jaxlif.simulate_cond_lif(jaxlif.CondLIFParams(), e, i, dt=DT))(
            jnp.asarray(counts_E, jnp.float64), jnp.asarray(counts_I, jnp.float64))
        score = jax.vmap(lambda e, i: jaxlif.simulate_stp_lif(jaxlif.stp_lif_params(0.5), e, i, dt=DT,
                                                              record_synapses=False))(sE, sI)
        assert core.v.dtype == jnp.float64
    assert _max_abs(fast.g_E, core.g_E) < 1e-4 and _max_abs(sfast.g_E, score.g_E) < 1e-4
    for f, c in ((fast, core), (sfast, score)):
        for b in range(B_SHARED):
            # up to the first spike-time difference (float32 may cross the threshold a step apart)
            diff = np.flatnonzero(np.asarray(f.spikes[b]) != np.asarray(c.spikes[b]))
            stop = diff[0] if diff.size else f.v.shape[1]
            assert stop > 500
            assert _max_abs(f.v[b, :stop], c.v[b, :stop]) < 1e-3


# ----------------------------------------------------------------------------------------------
# mean output rates (docs/workloads.md: WL-A about 25.5 Hz, WL-B about 65 Hz; Brian2 and NumPy agree)
# ----------------------------------------------------------------------------------------------


def _rate(counts, T):
    c = np.asarray(counts, np.float64)
    return 1000.0 * c.mean() / T, 1000.0 * c.std(ddof=1) / math.sqrt(c.size) / T


def test_mean_rates_against_anchors_and_step_by_step():
    """WL-A and WL-B mean rates against the peers' measured rates (25.5 and 65.1 Hz, rounded to 0.1 Hz and measured on
    far larger batches) within 5 standard errors + 0.1 Hz; WL-A also against the per-step simulator
    (independent draws) within 5 combined standard errors."""
    T = 1000.0
    a = jb.simulate_cond_lif_batch(jax.random.key(41), 1000, T=T, dt=DT).spike_count
    ra, sa = _rate(a, T)
    assert abs(ra - 25.5) < 5 * sa + 0.1
    keys = jax.random.split(jax.random.key(42), 300)
    per_step = jax.vmap(lambda k: jaxlif.simulate_cond_lif_poisson(k, T=T, dt=DT, record=False).spikes.sum())
    a_ref = jax.jit(per_step)(keys)
    rr, sr = _rate(a_ref, T)
    assert abs(ra - rr) < 5 * math.hypot(sa, sr)
    b = jb.simulate_stp_lif_batch(jax.random.key(43), 300, T=T, dt=DT).spike_count
    rb, sb = _rate(b, T)
    assert abs(rb - 65.1) < 5 * sb + 0.1


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


def test_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="batch_size"):
        jb.simulate_cond_lif_batch(key, 0)
    with pytest.raises(TypeError, match="batch_size"):
        jb.simulate_cond_lif_batch(key, 2.5)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        jb.simulate_cond_lif_batch(key, 4, rate_E=np.ones(3))
    with pytest.raises(ValueError, match="V_th"):
        jb.simulate_stp_lif_batch(key, 4, jaxlif.STPLIFParams(neuron=jaxlif.LIFParams(V_th=np.zeros((4, 2)))))
    with pytest.raises(ValueError, match="rate_E"):
        jb.simulate_stp_lif_batch(key, 4, rate_E=20000.0)
    with pytest.raises(ValueError, match="n_E"):
        jb.simulate_cond_lif_batch(key, 4, n_E=5000)
    with pytest.raises(TypeError, match="mesh"):
        jb.simulate_cond_lif_batch(key, 4, mesh="all")
    with pytest.raises(ValueError, match="tau_d"):
        jb.simulate_stp_lif_batch(key, 4, jaxlif.stp_lif_params(0.5)._replace(stp_E=jaxlif.STPParams(0.5, 0.01, 10.0)))
