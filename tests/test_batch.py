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

from conftest import compiled_programs
import jaxlif
from jaxlif import batch as jb
from jaxlif.batch import devices as jbd
from jaxlif.batch import kernels as jbk
from jaxlif.batch import synapses as jbs
from jaxlif.batch import rng as jbr

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import reference as ref
except ImportError:  # tests/ is a package
    from tests import reference as ref

TOL64 = 1e-9
DT = 0.1
EX12 = dict(gE_bar=2.4, gI_bar=2.4, VE=0.0, VI=-80.0, tau_syn_E=2.0, tau_syn_I=5.0)
BONUS = dict(gE_bar=4.8, gI_bar=6.4, VE=0.0, VI=-80.0, tau_syn_E=5.0, tau_syn_I=10.0, U0_E=0.45, U0_I=0.45)


def _numpy(res):
    """A result with NumPy leaves (``None`` fields stay), so that the test's indexing compiles nothing."""
    return jax.tree.map(np.asarray, res)


def _max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# ----------------------------------------------------------------------------------------------
# random numbers
# ----------------------------------------------------------------------------------------------


def test_threefry_is_jax_threefry():
    """Our hash and the network drive's words (``jaxlif._threefry.counter_words``, for odd and even n, CPU and
    GPU forms) against JAX's ``threefry_2x32``, all in one jitted program (as the simulators use them): run
    eagerly, every jnp operation compiled its own small program (71 of them, 1.3 CPU-s; measured 2026-12-07)."""
    from jax.extend.random import threefry_2x32
    from jaxlif._threefry import counter_words
    rng = np.random.default_rng(0)
    key = rng.integers(0, 2 ** 32, 2, dtype=np.uint32)
    x0, x1 = (rng.integers(0, 2 ** 32, 64, dtype=np.uint32) for _ in range(2))
    sizes, platforms = (1, 7, 8, 33), ("cpu", "gpu")

    @jax.jit
    def hashes(key, x0, x1):
        words = {(n, p): counter_words(key, n, p) for n in sizes for p in platforms}
        wants = {n: threefry_2x32(key, jnp.arange(n, dtype=jnp.uint32)) for n in sizes}
        return jbr._threefry2x32(key[0], key[1], x0, x1), threefry_2x32(key, jnp.concatenate([x0, x1])), words, wants

    ours, theirs, words, wants = jax.tree.map(np.asarray, hashes(key, x0, x1))
    np.testing.assert_array_equal(np.concatenate([ours[0], ours[1]]), theirs)
    # the network drive's words: threefry_2x32(key, arange(n)) for odd and even n
    for n in sizes:
        for platform in platforms:
            np.testing.assert_array_equal(words[n, platform], wants[n])


def test_gpu_choices_give_the_cpu_numbers():
    """The choices made for GPUs (threefry primitive, int32 count buffer, bigger event block) draw the same
    numbers as the CPU ones (so results do not depend on the backend's choice), tested here on CPU."""
    from jaxlif.batch import pooled as jbp
    rng = np.random.default_rng(1)
    k = rng.integers(0, 2 ** 32, 2, dtype=np.uint32)
    x0, x1 = (rng.integers(0, 2 ** 32, (3, 5), dtype=np.uint32) for _ in range(2))
    C, window = 16, 200
    keys = rng.integers(0, 2 ** 32, 4, dtype=np.uint32)                  # NumPy: a constant of the program below
    def fill(platform):
        law = jbp._pooled_law(jnp.full((C,), 0.002), 80, C, jnp.float32)
        run = lambda st, w: jbp._pooled_window(st, w * window, keys, jnp.arange(C, dtype=jnp.uint32), law, window,  # noqa
                                               jbp._pooled_block(window, platform), 5 * window + 1,
                                               jbp._count_dtype(80, platform), platform)[0]
        return jax.lax.scan(run, jbp._pooled_init(C), jnp.arange(5))[1]

    # the hashes and the pooled counts of both platforms in one program (two before: 0.05 CPU-s more; 2026-12-07)
    hashes, (cpu, gpu) = jax.jit(lambda *a: ((jbr._hash(*a, "gpu"), jbr._hash(*a, "cpu")), (fill("cpu"), fill("gpu"))))(
        k[0], k[1], x0, x1)
    for a, b in zip(*hashes):
        np.testing.assert_array_equal(a, b)
    assert cpu.dtype == jnp.int8 and gpu.dtype == jnp.int32 and int(np.asarray(cpu, int).sum()) > 100
    np.testing.assert_array_equal(cpu, gpu)


def test_uniforms_in_half_open_interval():
    """Jitted, one program per dtype (eagerly each operation was its own program)."""
    w = np.array([0, 1, 2 ** 31, 2 ** 32 - 1], np.uint32)
    u = np.asarray(jax.jit(lambda w: jbr._uniform(w, None, jnp.float32))(w))
    assert u.min() > 0 and u.max() <= 1 and u[0] == 2.0 ** -24 and u[-1] == 1.0
    with jax.enable_x64(True):
        u = np.asarray(jax.jit(lambda w: jbr._uniform(w, w, jnp.float64))(w))
        assert u.min() > 0 and u.max() == 1.0 and u[0] == 2.0 ** -53


def test_geometric_gap_edge_cases():
    """Jitted, the three cases in one program (eagerly each operation was its own program)."""
    @jax.jit
    def gaps(u, minus_inf, zero, half):
        return (jbr._geometric(u, jbr._gap_scale(minus_inf), 99),            # p = 1
                jbr._geometric(u, jbr._gap_scale(zero * -1), 99),            # p = 0 (log(1-p) = -0.0)
                jbr._geometric(u, jbr._gap_scale(jnp.log1p(-half)), 10 ** 6))

    one, never, half = gaps(np.array([1.0, 0.5, 2.0 ** -24], np.float32), *np.array([-np.inf, 0.0, 0.5], np.float32))
    np.testing.assert_array_equal(one, [1, 1, 1])
    np.testing.assert_array_equal(never, [99, 99, 99])
    np.testing.assert_array_equal(half, [1, 2, 25])        # 1 + floor(log(u) / log(1/2))



def test_flat_scatter_adds_in_the_order_of_the_nd_scatter(monkeypatch):
    """``kernels._scatter_add`` (a 1-D scatter on the flattened buffer) sums coincident updates in
    row-major order, as a sequential NumPy loop does, bit for bit; so does its N-D form, which buffers
    too large for int32 flat indices get.  The values span 8 decades, so another order rounds
    differently (checked), and the test would see it."""
    rng = np.random.default_rng(1)
    buf = rng.normal(size=(7, 2, 50)).astype(np.float32)
    index = np.broadcast_arrays(np.arange(7)[:, None], rng.integers(0, 2, (1, 30)), rng.integers(0, 4, (7, 30)))
    vals = (rng.normal(size=(7, 30)) * 10.0 ** rng.uniform(-4, 4, (7, 30))).astype(np.float32)
    in_order, reversed_order = buf.copy(), buf.copy()
    np.add.at(in_order, tuple(i.ravel() for i in index), vals.ravel())
    np.add.at(reversed_order, tuple(i.ravel()[::-1] for i in index), vals.ravel()[::-1])
    assert not np.array_equal(in_order, reversed_order)
    args = (buf, tuple(np.asarray(i, np.int32) for i in index), vals)      # NumPy: no conversion programs
    np.testing.assert_array_equal(jax.jit(jbk._scatter_add)(*args), in_order)
    monkeypatch.setattr(jbk, "_FLAT_LIMIT", 0)
    # a new function object: jax.jit(jbk._scatter_add) again would reuse the flat form's traced program (JAX caches
    # the trace per function and argument types), and the N-D form would never run (it did not before 2026-12-07)
    with compiled_programs() as names:
        np.testing.assert_array_equal(jax.jit(lambda *a: jbk._scatter_add(*a))(*args), in_order)
    assert names == ["jit(<lambda>)"], names

# ----------------------------------------------------------------------------------------------
# one float32 configuration shared by several tests (each distinct configuration costs a compilation)
# ----------------------------------------------------------------------------------------------

B_SHARED, T_SHARED = 8, 1000.0
# every online statistic, with a burn-in and a cap on the spike times that some neurons exceed
STATS = jb.Stats(burn_in=200.0, isi_cv=True, v=True, g=True, spike_times=16)


@pytest.fixture(scope="module")
def shared():
    """Default WL-A and WL-B runs (float32, record=True, every statistic) and the inputs they drew."""
    key = jax.random.key(2024)
    return dict(
        key=key,
        A=jb.simulate_cond_lif_batch(key, B_SHARED, T=T_SHARED, dt=DT, record=True, stats=STATS),
        B=jb.simulate_stp_lif_batch(key, B_SHARED, T=T_SHARED, dt=DT, record=True, stats=STATS),
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


def _pearson_01(a, b):
    """Pearson's correlation of two 0/1 arrays of one shape, from exact integer counts (np.corrcoef's value to
    about 1e-16; it took 0.4 CPU-s on the trains below, converting 6.4 million booleans to float64; 2026-12-07)."""
    n, sa, sb, sab = a.size, int(np.count_nonzero(a)), int(np.count_nonzero(b)), int(np.count_nonzero(a & b))
    return (n * sab - sa * sb) / math.sqrt((n * sa - sa ** 2) * (n * sb - sb ** 2))


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
        lag1 = _pearson_01(flat[:, 1:], flat[:, :-1])
        assert abs(lag1) < 6 / math.sqrt(flat.size)
    per_step = np.asarray(sE)[:, :, 1:].astype(np.int64).sum(1)
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
    I = np.asarray(jaxlif.sinusoidal_current(40.0, T=T, dt=DT))
    with compiled_programs() as names:
        fast = jb.simulate_cond_lif_batch(key, B, params, rate_E=rate_E, rate_I=rate_I, I_inj=I, T=T, dt=DT,
                                          record=True, stats=STATS64)
    # NumPy rates, thresholds and current reach the program as they are: no small program per argument
    assert set(names) <= {"jit(_program_jit)", "jit(_gather)"}, names
    assert fast.v.dtype == jnp.float64 and fast.v.shape == (B, 3000)
    _check_stats(fast, STATS64, TOL64)
    fast = _numpy(fast)                                  # test-side arithmetic in NumPy: nothing to compile
    counts_E, counts_I = map(np.asarray, jb.cond_lif_batch_inputs(key, B, rate_E=rate_E, rate_I=rate_I, T=T, dt=DT))
    assert float(counts_E.sum()) > 500
    for b in range(B):                                   # a Python loop over neurons: vmap == loop
        single = jaxlif.CondLIFParams(neuron=jaxlif.LIFParams(V_th=float(V_th[b])))
        core = jaxlif.simulate_cond_lif(single, counts_E[b], counts_I[b], I, dt=DT)
        pars = ref.default_pars(T=T, dt=DT, V_th=float(V_th[b]), **EX12)
        v_np, spk_np, gE_np, gI_np = ref.run_lif_cond(pars, I, counts_E[b][None], counts_I[b][None])
        np.testing.assert_array_equal(fast.spikes[b], core.spikes)
        np.testing.assert_allclose(np.flatnonzero(fast.spikes[b]) * DT, spk_np, atol=1e-9)
        assert int(fast.spike_count[b]) == len(spk_np)
        assert _max_abs(fast.v[b], core.v) <= TOL64 and _max_abs(fast.v[b], v_np) <= TOL64
        assert _max_abs(fast.g_E[b], gE_np) <= TOL64 and _max_abs(fast.g_I[b], gI_np) <= TOL64
    assert fast.spike_count.sum() > 20


def test_stp_batch_equals_step_by_step_oracle(x64):
    """WL-B-like batch: per-neuron STP time constants, per-synapse U0 ``(B, n_E)`` and g_bar ``(1, n_E)``
    (the shape rule); every synapse has its own u, R, g in the oracles."""
    key, B, T = jax.random.key(12), 3, 300.0
    tau_ratio = np.array([0.2, 0.5, 1.0])
    U0_E = np.random.default_rng(1).uniform(0.1, 0.9, (B, 80))
    gbar_E = np.linspace(3.0, 6.0, 80)[None, :]
    base = jaxlif.stp_lif_params(0.5)
    stp = base.stp_E._replace(tau_d=500.0 * tau_ratio, tau_f=300.0 * tau_ratio)
    params = base._replace(stp_E=stp._replace(U0=U0_E), stp_I=stp, exc=base.exc._replace(g_bar=gbar_E))
    fast = jb.simulate_stp_lif_batch(key, B, params, rate_E=np.array([10.0, 15.0, 30.0]), rate_I=15.0, T=T,
                                     dt=DT, record=True, window=700, stats=STATS64)
    _check_stats(fast, STATS64, TOL64)
    fast = _numpy(fast)
    sE, sI = map(np.asarray, jb.stp_lif_batch_trains(key, B, rate_E=np.array([10.0, 15.0, 30.0]), rate_I=15.0, T=T,
                                                    dt=DT))
    for b in range(B):
        single = jaxlif.stp_lif_params(float(tau_ratio[b]))
        single = single._replace(stp_E=single.stp_E._replace(U0=U0_E[b]), exc=single.exc._replace(g_bar=gbar_E[0]))
        core = jaxlif.simulate_stp_lif(single, sE[b], sI[b], dt=DT, record_synapses=False)
        pars = ref.default_pars(T=T, dt=DT, tau_d_E=500.0 * tau_ratio[b], tau_f_E=300.0 * tau_ratio[b],
                                tau_d_I=500.0 * tau_ratio[b], tau_f_I=300.0 * tau_ratio[b],
                                **dict(BONUS, U0_E=U0_E[b], gE_bar=gbar_E[0]))
        out = ref.run_lif_cond_stp(pars, 0.0, sE[b].astype(float), sI[b].astype(float))
        np.testing.assert_array_equal(fast.spikes[b], core.spikes)
        np.testing.assert_allclose(np.flatnonzero(fast.spikes[b]) * DT, out[1], atol=1e-9)
        assert _max_abs(fast.v[b], core.v) <= TOL64 and _max_abs(fast.v[b], out[0]) <= TOL64
        assert _max_abs(fast.g_E[b], out[4].sum(0)) <= TOL64 and _max_abs(fast.g_I[b], out[7].sum(0)) <= TOL64
    assert fast.spike_count.min() > 5


# ----------------------------------------------------------------------------------------------
# online statistics == the same statistics computed from the recorded traces (same key, same run)
# ----------------------------------------------------------------------------------------------

STATS64 = jb.Stats(burn_in=50.0, isi_cv=True, v=True, g=True, spike_times=8)


def _np_isi_cv(spikes):
    """The tutorial's ISI CV of one 0/1 raster (0 with 3 or fewer spikes), in NumPy."""
    isi = np.diff(np.flatnonzero(spikes))
    return isi.std() / isi.mean() if isi.size > 2 else 0.0


def _check_stats(res, st, tol):
    """Every field of ``res.stats`` against NumPy on ``res``'s recorded traces (float64 sums)."""
    k0 = len(np.arange(0.0, st.burn_in, DT))
    v, spk, gE, gI = (np.asarray(a, np.float64) for a in (res.v, res.spikes, res.g_E, res.g_I))
    s = _numpy(res.stats)
    n = spk[:, k0:].sum(1)
    np.testing.assert_array_equal(s.n_spikes, n)
    np.testing.assert_allclose(s.rate, n / ((v.shape[1] - k0) * DT / 1000.0), rtol=tol)
    np.testing.assert_allclose(s.isi_cv, [_np_isi_cv(row) for row in spk[:, k0:]], rtol=tol, atol=tol)
    np.testing.assert_allclose(s.v_mean, v[:, k0:].mean(1), rtol=tol)
    np.testing.assert_allclose(s.v_std, v[:, k0:].std(1), rtol=10 * tol)
    np.testing.assert_allclose(s.g_E_mean, gE[:, k0:].mean(1), rtol=tol)
    np.testing.assert_allclose(s.g_I_mean, gI[:, k0:].mean(1), rtol=tol)
    times = np.full((v.shape[0], st.spike_times), np.nan)
    for b in range(v.shape[0]):
        kept = (np.flatnonzero(spk[b, k0:]) + k0)[:st.spike_times]
        times[b, :kept.size] = kept * DT
    np.testing.assert_allclose(s.spike_times, times, rtol=tol)          # NaN where NaN
    assert (n > 3).sum() >= 2 and (s.isi_cv[n > 3] > 0.1).all() and np.isfinite(s.v_std).all()


def test_online_stats_equal_recorded_traces(shared):
    """float32, both workloads, burn-in 200 ms, a spike-time cap that most neurons exceed."""
    for wl in "AB":
        _check_stats(shared[wl], STATS, 2e-5)
    assert (np.asarray(shared["B"].stats.n_spikes) > STATS.spike_times).all()       # the cap is exercised


# ----------------------------------------------------------------------------------------------
# invariances: chunks, windows, batch composition, keys
# ----------------------------------------------------------------------------------------------


# The same configurations run on 4 devices (and 2 processes x 2 in the slow tier) in test_distributed.py (the
# compiled programs differ there).
OTHER_BATCH = dict(A=dict(batch_chunk=3, window=37), B=dict(batch_chunk=3))


@pytest.mark.parametrize("wl, sim", [("A", jb.simulate_cond_lif_batch), ("B", jb.simulate_stp_lif_batch)])
def test_chunks_windows_calls_and_batch_size_change_nothing(shared, wl, sim, monkeypatch):
    """Chunks of 3 neurons streamed one chunk per call (4 calls, progress reported after each), a
    bigger batch (and for static input another window): neurons 0..7 are bit-identical to the default
    run, traces and statistics alike."""
    monkeypatch.setattr(jbd, "_CALL_STEPS", 3 * 10000)          # one chunk of 3 neurons per call
    seen = []
    other = _numpy(sim(shared["key"], B_SHARED + 2, T=T_SHARED, dt=DT, record=True, stats=STATS,
                       progress=lambda done, total: seen.append((done, total)), **OTHER_BATCH[wl]))
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]
    for a, b in zip(jax.tree.leaves(shared[wl][:5]), jax.tree.leaves(other[:5])):
        np.testing.assert_array_equal(a, b[:B_SHARED])
    for name, a in shared[wl].stats._asdict().items():
        b = getattr(other.stats, name)[:B_SHARED]
        if wl == "A" and name in ("v_mean", "v_std", "g_E_mean", "g_I_mean"):
            # another window groups the sums of the streamed means differently: float32 rounding only
            np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_windows_change_stp_by_rounding_only(shared):
    """The window sets the summation order of coincident jumps: float32 rounding, same spikes."""
    a = shared["B"]
    b = jb.simulate_stp_lif_batch(shared["key"], B_SHARED, T=T_SHARED, dt=DT, record=True, window=123)
    np.testing.assert_array_equal(a.spikes, b.spikes)
    assert _max_abs(a.g_E, b.g_E) < 1e-4 and _max_abs(a.v, b.v) < 1e-3


def test_compaction_of_active_synapses_changes_no_number(monkeypatch, x64):
    """Small chunks run every pass over all synapses; forcing the compaction of the active ones (as
    chunks of >= _COMPACT_MIN_LANES synapses do) gives the same traces, statistics and trains bit for
    bit.  The spy proves the compared program was traced with the compaction, not taken from a cache.
    The plain run has the static configuration of test_stp_batch_equals_step_by_step_oracle (float64,
    per-synapse U0 ``(B, n_E)`` and g_bar ``(1, n_E)``, per-neuron time constants and rates), so it
    reuses that program; the compacted lanes gather their constants from both kinds of per-synapse columns."""
    key, B = jax.random.key(7), 3
    kw = dict(T=300.0, dt=DT, rate_E=np.full(B, 40.0), rate_I=40.0)    # about 3 spikes per synapse and window
    assert B * 100 < jbs._COMPACT_MIN_LANES
    base = jaxlif.stp_lif_params(0.5)
    stp = base.stp_E._replace(tau_d=np.linspace(50.0, 500.0, B), tau_f=np.linspace(20.0, 300.0, B))
    params = base._replace(stp_E=stp._replace(U0=np.random.default_rng(2).uniform(0.1, 0.9, (B, 80))), stp_I=stp,
                           exc=base.exc._replace(g_bar=np.linspace(3.0, 6.0, 80)[None, :]))
    plain = jb.simulate_stp_lif_batch(key, B, params, record=True, window=700, stats=STATS64, **kw)
    trains = jb.stp_lif_batch_trains(key, B, **kw)
    calls = []
    compact_indices = jbs._compact_indices
    monkeypatch.setattr(jbs, "_COMPACT_MIN_LANES", 0)
    monkeypatch.setattr(jbs, "_compact_indices", lambda *a: calls.append(a[1]) or compact_indices(*a))
    compacted = jb.simulate_stp_lif_batch(key, B, params, record=True, window=700, stats=STATS64, batch_chunk=2,
                                          **kw)                   # chunks of 2 (one padded): a new program
    assert calls == [2 * 100 // 8]
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(compacted)):
        np.testing.assert_array_equal(a, b)
    assert np.asarray(plain.spike_count).min() > 0
    for a, b in zip(trains, jb.stp_lif_batch_trains(key, B, window=777, **kw)):
        np.testing.assert_array_equal(a, b)
    assert len(calls) == 2

def test_keys(shared):
    run = lambda key: jb.simulate_stp_lif_batch(key, B_SHARED, T=T_SHARED, dt=DT, record=True, stats=STATS)  # noqa
    again, legacy, other = run(shared["key"]), run(jax.random.key_data(shared["key"])), run(jax.random.key(1))
    for a, b, c in zip(jax.tree.leaves(shared["B"]), jax.tree.leaves(again), jax.tree.leaves(legacy)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert not np.array_equal(shared["B"].spikes, other.spikes)
    assert shared["B"].spike_count.dtype == jnp.int32
    np.testing.assert_array_equal(shared["B"].spike_count, np.asarray(shared["B"].spikes).sum(1))


# ----------------------------------------------------------------------------------------------
# float32 (default) against float64 on the same input
# ----------------------------------------------------------------------------------------------


def test_float32_against_float64_reference(shared):
    """The first 4 neurons of the float32 runs against float64 step-by-step runs on the same input."""
    n = 4
    fast, sfast = (jax.tree.map(lambda a: np.asarray(a)[:n], shared[wl]) for wl in "AB")
    (counts_E, counts_I), (sE, sI) = (jax.tree.map(lambda a: np.asarray(a)[:n], shared[k])
                                      for k in ("counts", "trains"))
    assert fast.v.dtype == np.float32 and sfast.g_E.dtype == np.float32
    with jax.enable_x64(True):
        core = jax.vmap(lambda e, i: jaxlif.simulate_cond_lif(jaxlif.CondLIFParams(), e, i, dt=DT))(
            counts_E.astype(np.float64), counts_I.astype(np.float64))
        score = jax.vmap(lambda e, i: jaxlif.simulate_stp_lif(jaxlif.stp_lif_params(0.5), e, i, dt=DT,
                                                              record_synapses=False))(sE, sI)
        assert core.v.dtype == jnp.float64
    core, score = _numpy(core), _numpy(score)
    assert _max_abs(fast.g_E, core.g_E) < 1e-4 and _max_abs(sfast.g_E, score.g_E) < 1e-4
    for f, c in ((fast, core), (sfast, score)):
        for b in range(n):
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


@pytest.mark.slow
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
    with pytest.raises(ValueError, match=r"stats.burn_in=1000.0 ms"):
        jb.simulate_cond_lif_batch(key, 4, T=1000.0, stats=jb.Stats(burn_in=1000.0))
    with pytest.raises(TypeError, match="stats must be"):
        jb.simulate_cond_lif_batch(key, 4, stats=dict(v=True))
    with pytest.raises(TypeError, match="progress"):
        jb.simulate_cond_lif_batch(key, 4, progress="bar")


def test_shape_rule_per_neuron_and_per_synapse_errors():
    """docs/conventions.md section 8: a 1-D array is per neuron even when batch_size == n_E; per-synapse
    arrays only for STP parameters and g_bar of plastic synapses; everything else names the argument."""
    key = jax.random.key(0)
    stp = jaxlif.stp_lif_params(0.5)
    with pytest.raises(ValueError, match=r"params.stp_E.U0 has shape \(4, 3\).*\(4, 80\) or \(1, 80\)"):
        jb.simulate_stp_lif_batch(key, 4, stp._replace(stp_E=stp.stp_E._replace(U0=np.full((4, 3), 0.5))))
    with pytest.raises(ValueError, match=r"params.stp_I.tau_d has shape \(80,\)"):   # batch 4: not per neuron
        jb.simulate_stp_lif_batch(key, 4, stp._replace(stp_I=stp.stp_I._replace(tau_d=np.full(80, 200.0))))
    with pytest.raises(ValueError, match=r"params.exc.tau_syn has shape \(4, 80\).*\(per neuron\)$"):
        jb.simulate_stp_lif_batch(key, 4, stp._replace(exc=stp.exc._replace(tau_syn=np.full((4, 80), 5.0))))
    with pytest.raises(ValueError, match=r"params.exc.g_bar has shape \(4, 80\).*\(per neuron\)$"):
        jb.simulate_cond_lif_batch(key, 4, jaxlif.CondLIFParams(exc=jaxlif.SynParams(np.ones((4, 80)), 2.0, 0.0)))
    with pytest.raises(ValueError, match=r"rate_E has shape \(4, 80\)"):
        jb.simulate_stp_lif_batch(key, 4, rate_E=np.full((4, 80), 15.0))
    with pytest.raises(ValueError, match=r"params.stp_E.U0=.*outside \(0, 1\]"):    # values checked per synapse
        jb.simulate_stp_lif_batch(key, 4, stp._replace(stp_E=stp.stp_E._replace(U0=np.full((1, 80), 1.5))))


def test_outputs_that_cannot_fit_are_refused_up_front():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"record=True keeps 4 traces of \(batch_size, n_steps\) = "
                                         r"\(1000000, 1000000\).*GiB.*stats=jaxlif.batch.Stats"):
        jb.simulate_cond_lif_batch(key, 10 ** 6, T=100_000.0, record=True)
    with pytest.raises(ValueError, match=r"spike_times=100000 keeps \(10000000, 100000\) spike times"):
        jb.simulate_stp_lif_batch(key, 10 ** 7, stats=jb.Stats(spike_times=100_000))


def test_grad_is_refused_naming_the_differentiable_alternative():
    key = jax.random.key(0)

    def mean_v(g_bar):
        params = jaxlif.CondLIFParams(exc=jaxlif.EXC_SYN._replace(g_bar=g_bar))
        return jb.simulate_cond_lif_batch(key, 4, params, T=100.0, stats=V_STATS).stats.v_mean.sum()

    with pytest.raises(TypeError, match=r"simulate_cond_lif_batch cannot be differentiated.*jax.vmap over "
                                        r"jaxlif.simulate_cond_lif_poisson.*spike_grad="):
        jax.grad(mean_v)(2.4)
    with pytest.raises(TypeError, match=r"simulate_stp_lif_batch cannot be differentiated.*"
                                        r"simulate_stp_lif_poisson"):
        jax.grad(lambda r: jb.simulate_stp_lif_batch(key, 4, rate_E=r, T=100.0, stats=V_STATS)
                 .stats.v_mean.sum())(15.0)


# ----------------------------------------------------------------------------------------------
# values that cannot be checked in Python (traced) or that used to hang: poisoned, never a hang
# (docs/conventions.md section 9).  The concrete calls share one small configuration (B = 4, T = 100 ms,
# the benchmark's --quick size, so test_sharding's smoke run reuses the compiled programs)
# ----------------------------------------------------------------------------------------------

KEY_G, B_G, T_G = jax.random.key(5), 4, 100.0
V_STATS = jb.Stats(v=True)


def _poisoned(res, rows):
    for r in rows:
        assert res.spike_count[r] == -1 and res.stats.n_spikes[r] == -1
        assert np.isnan(res.stats.v_mean[r]) and np.isnan(res.stats.rate[r])


def test_traced_invalid_rates_poison_under_jit_and_vmap():
    """-5 Hz, -100 Hz (used to hang) and 2e4 Hz (p > 1), traced under jit(vmap): poisoned rows; the valid
    row equals the concrete call; a traced -0.0 is a valid rate of zero."""
    run = lambda r: jb.simulate_cond_lif_batch(KEY_G, B_G, rate_E=r, T=T_G, stats=V_STATS)  # noqa: E731
    out = _numpy(jax.jit(jax.vmap(run))(np.array([10.0, -5.0, -100.0, 2e4, -0.0], np.float32)))
    np.testing.assert_array_equal(out.spike_count[0], jb.simulate_cond_lif_batch(KEY_G, B_G, T=T_G).spike_count)
    _poisoned(jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), out), range(4, 16))   # NumPy reshapes
    assert (out.spike_count[4] >= 0).all() and not np.isnan(out.stats.v_mean[4]).any()


def test_traced_invalid_per_neuron_values_poison_only_those_neurons():
    """STP batch under jit with per-neuron traced rates and U0: exactly the invalid neurons are poisoned.
    (jaxlif.checked on these programs raises naming the argument, e.g. ``params.stp_E.U0=[...] must lie in
    (0, 1]``; the mechanism is tested in test_guards.py, and one more compilation here costs too much.)"""
    def run(rate_E, U0):
        params = jaxlif.stp_lif_params(0.5)
        params = params._replace(stp_E=params.stp_E._replace(U0=U0))
        return jb.simulate_stp_lif_batch(KEY_G, B_G, params, rate_E=rate_E, T=T_G, stats=V_STATS)

    rates, U0 = np.array([15.0, -5.0, -0.0, 15.0], np.float32), np.array([0.45, 0.45, 0.45, -0.5], np.float32)
    out = _numpy(jax.jit(run)(rates, U0))
    _poisoned(out, [1, 3])
    assert out.spike_count[0] > 0 and out.spike_count[2] >= 0 and not np.isnan(np.asarray(out.stats.v_mean)[[0, 2]]).any()


def test_concrete_negative_zero_rate_is_zero(shared):
    """np.round(-0.4) == -0.0 used to hang every batch simulator (-1/log1p(0.0) = -inf).  The rate is no
    static argument: the cond-LIF run reuses the program of the concrete calls above, the STP-LIF run the
    shared fixture's (its B = 4, T = 100 ms program cost 0.5 CPU-s to compile; measured 2026-12-07)."""
    runs = (jb.simulate_cond_lif_batch(KEY_G, B_G, rate_E=np.round(-0.4), rate_I=-0.0, T=T_G),
            jb.simulate_stp_lif_batch(shared["key"], B_SHARED, rate_E=np.round(-0.4), rate_I=-0.0, T=T_SHARED, dt=DT,
                                      record=True, stats=STATS))
    for res in runs:
        np.testing.assert_array_equal(res.spike_count, 0)


def test_rate_sweep_compiles_once():
    """20 new scalar rates reuse one compiled program (the rate sets no static size)."""
    run = lambda r: jb.simulate_cond_lif_batch(KEY_G, B_G, rate_E=r, T=T_G).spike_count  # noqa: E731
    first = np.asarray(run(0.5))
    with compiled_programs() as compiles:
        counts = [np.asarray(run(float(r))) for r in np.linspace(1.0, 60.0, 20)]
    assert compiles == [], f"{len(compiles)} compilations for 20 rates"
    assert sum(c.sum() for c in counts[-3:]) > sum(c.sum() for c in counts[:3]) >= first.sum() >= 0


def test_default_window_fits_long_runs_of_small_chunks():
    """100 neurons for 100 s (10^6 steps): the default window shrinks to keep event times in int32 (it used to
    be refused); an explicit window that cannot fit is still an error."""
    from jaxlif.batch.pooled import _pooled_default_window
    plan = jbd._plan(100, 1, 1_000_000, 2048, None, _pooled_default_window)
    assert plan["chunk"] == 100 and (1_000_000 + plan["window"] + 2) * (plan["window"] + 2) < 2 ** 31
    assert plan["n_windows"] * plan["window"] >= 999_999
    with pytest.raises(ValueError, match="window=29412 steps is too large"):
        jbd._plan(100, 1, 1_000_000, 2048, 30_000, _pooled_default_window)
