"""Networks (``jaxlif.network``) against a step-by-step NumPy loop written here from docs/conventions.md
4.1-4.2 and the delivery rule of ``jaxlif.network.step``; plus the STP release, latency, vmap == loop,
jit == eager, delivery methods, surrogate gradients and checks that survive tracing.

Compiled programs are shared between tests (module-scoped fixtures, equal shapes) to keep the suite short.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif as jl
from jaxlif import network as nw
from jaxlif.network import delivery as dl

DT = 0.1


# ----------------------------------------------------------------------------------------------
# The NumPy oracle
# ----------------------------------------------------------------------------------------------


def _edges_of(proj, offsets, sizes):
    """Every synapse of a projection as global (pre, post) indices, weights, delays, and per-edge STP
    parameters (``None`` if static), plus the presynaptic index each edge takes its STP state from."""
    if isinstance(proj, nw.DenseProjection):
        W = np.asarray(proj.weights)
        post, pre = np.nonzero(np.ones_like(W, bool))                   # every pair, zeros included
        w, d = W[post, pre], np.full(post.size, proj.delay)
        per_syn = lambda a: np.broadcast_to(np.asarray(a), W.shape)[post, pre]  # noqa: E731
    else:
        targets = np.asarray(proj.targets)
        real = targets < proj.n_post
        pre = np.broadcast_to(np.arange(targets.shape[0])[:, None], targets.shape)[real]
        post, w, d = targets[real], np.asarray(proj.weights)[real], np.asarray(proj.delays)[real]
        per_syn = lambda a: np.broadcast_to(np.asarray(a), targets.shape)[real]  # noqa: E731
    stp = None
    if proj.stp is not None:
        if proj.stp_mode == "pre":
            stp = [np.broadcast_to(np.asarray(a, float), (sizes[proj.pre],))[pre] for a in proj.stp]
        else:
            stp = [per_syn(a).astype(float) for a in proj.stp]
    return pre + offsets[proj.pre], post + offsets[proj.post], w.astype(float), d, stp, pre


def numpy_network(net, ext_E, ext_I, I_inj, steps, dt):
    """The network loop in NumPy float64, stacked neurons, absolute-time arrival buffers.

    ext_E, ext_I: ``(n, steps)`` conductance [nS] arriving at each sample; I_inj ``(n, steps)`` [pA].
    Returns v, spikes, g_E, g_I ``(n, steps)`` and the per-projection ``(u, R)`` traces (per presynaptic
    neuron for ``stp_mode="pre"``).
    """
    offsets, sizes = net.offsets, net.sizes
    n = sum(sizes.values())

    def stacked(get):
        return np.concatenate([np.broadcast_to(np.asarray(get(p), float), (p.size,)) for p in net.populations])

    V_th, V_reset, tau_m, g_L, V_init, E_L, t_ref = (stacked(lambda p, f=f: getattr(p.neuron, f))
                                                     for f in jl.LIFParams._fields)
    tau_E, E_E = stacked(lambda p: p.exc.tau_syn), stacked(lambda p: p.exc.E_rev)
    tau_I, E_I = stacked(lambda p: p.inh.tau_syn), stacked(lambda p: p.inh.E_rev)
    edges = [_edges_of(q, offsets, sizes) for q in net.projections]
    horizon = steps + max(int(e[3].max()) for e in edges) + 1
    arrive = {"exc": np.zeros((horizon, n)), "inh": np.zeros((horizon, n))}
    stp_state = []
    for q, e in zip(net.projections, edges):
        m = sizes[q.pre] if q.stp_mode == "pre" else len(e[0])
        stp_state.append([np.zeros(m), np.ones(m)])
    traces = [(np.zeros((sizes[q.pre], steps)), np.ones((sizes[q.pre], steps))) for q in net.projections]

    v, r = V_init.copy(), np.zeros(n)
    gE, gI = np.zeros(n), np.zeros(n)
    V, S = np.zeros((n, steps)), np.zeros((n, steps), bool)
    GE, GI = np.zeros((n, steps)), np.zeros((n, steps))
    for it in range(steps - 1):
        for i in range(n):                      # 1. refractory clamp, else threshold test of v[it]
            if r[i] > 0:
                v[i] = V_reset[i]
                r[i] = r[i] - 1
            elif v[i] >= V_th[i]:
                S[i, it] = True
                v[i] = V_reset[i]
                r[i] = t_ref[i] / dt
        V[:, it] = v
        for k, (q, (pre, post, w, d, stp, pre_local)) in enumerate(zip(net.projections, edges)):
            s = S[pre, it].astype(float)        # 2. the spike of step it, per edge
            if stp is None:
                release = s
            else:
                U0, tau_d, tau_f = stp
                u, R = stp_state[k]
                if q.stp_mode == "pre":
                    s_pre = S[offsets[q.pre]:offsets[q.pre] + sizes[q.pre], it].astype(float)
                    U0_p, tau_d_p, tau_f_p = (np.broadcast_to(np.asarray(a, float), (sizes[q.pre],)) for a in q.stp)
                    u_new = u + (-(dt / tau_f_p) * u + U0_p * (1.0 - u) * s_pre)
                    R_new = R + ((dt / tau_d_p) * (1.0 - R) - u_new * R * s_pre)
                    release = (u_new * R * s_pre)[pre_local]
                    traces[k][0][:, it + 1], traces[k][1][:, it + 1] = u_new, R_new
                else:
                    u_new = u + (-(dt / tau_f) * u + U0 * (1.0 - u) * s)
                    R_new = R + ((dt / tau_d) * (1.0 - R) - u_new * R * s)
                    release = u_new * R * s
                stp_state[k] = [u_new, R_new]
            for e in np.nonzero(release)[0]:    # arrives at sample it + d
                arrive[q.receptor][it + d[e], post[e]] += w[e] * release[e]
        gE = gE + (-(dt / tau_E) * gE + arrive["exc"][it + 1] + ext_E[:, it + 1])   # 3.
        gI = gI + (-(dt / tau_I) * gI + arrive["inh"][it + 1] + ext_I[:, it + 1])
        dv = (dt / tau_m) * (-(v - E_L) - (gE / g_L) * (v - E_E) - (gI / g_L) * (v - E_I) + I_inj[:, it] / g_L)
        v = v + dv
        GE[:, it + 1], GI[:, it + 1] = gE, gI
    V[:, -1] = v
    return V, S, GE, GI, traces


# ----------------------------------------------------------------------------------------------
# A small network with every kind of projection (shared by several tests)
# ----------------------------------------------------------------------------------------------

N_E, N_I, T_REF = 30, 10, 40.0


def small_network(seed: int = 1) -> nw.Network:
    """30 E + 10 I neurons: sparse and dense projections, per-edge delays 1..4, STP per presynaptic
    neuron and per synapse (heterogeneous U0), static synapses; a Poisson drive on E only."""
    rng = np.random.default_rng(seed)
    k = jax.random.split(jax.random.key(seed), 4)
    V_init = np.concatenate([np.full(8, -50.0), rng.uniform(-70.0, -56.0, N_E - 8)])   # 8 spikes at step 0
    neuron_E = jl.LIFParams(V_init=V_init, tau_m=rng.uniform(8.0, 12.0, N_E))
    E = nw.Population("E", N_E, neuron=neuron_E, exc=nw.Receptor(2.0, 0.0), inh=nw.Receptor(5.0, -80.0),
                      drive=nw.PoissonDrive(rate=80.0, weight=0.5, n=100))
    I = nw.Population("I", N_I, neuron=jl.LIFParams(V_init=-60.0, t_ref=1.0))
    pre, post = nw.random_edges(k[0], N_E, N_E, 0.25, autapses=False)
    EE = nw.sparse_projection("E", "E", pre, post, rng.uniform(0.5, 1.5, pre.size), n_pre=N_E, n_post=N_E,
                              delay=rng.integers(1, 5, pre.size), stp=jl.STD)
    W_EI = np.where(rng.random((N_I, N_E)) < 0.4, rng.uniform(0.5, 1.0, (N_I, N_E)), 0.0)
    EI = nw.dense_projection("E", "I", W_EI, delay=2,
                             stp=jl.STPParams(U0=rng.uniform(0.1, 0.6, (N_I, N_E)), tau_d=80.0, tau_f=200.0),
                             stp_mode="synapse")
    pre, post = nw.random_edges(k[1], N_I, N_E, 0.5)
    IE = nw.sparse_projection("I", "E", pre, post, 2.0, n_pre=N_I, n_post=N_E, receptor="inh",
                              delay=rng.integers(1, 4, pre.size),
                              stp=jl.STPParams(U0=rng.uniform(0.2, 0.5, pre.size), tau_d=60.0, tau_f=30.0),
                              stp_mode="synapse")
    II = nw.dense_projection("I", "I", 1.5 * (1 - np.eye(N_I)), receptor="inh", delay=3,
                             stp=jl.STPParams(0.3, 100.0, 50.0))
    pre, post = nw.random_edges(k[2], N_E, N_I, 0.2)
    EI_static = nw.sparse_projection("E", "I", pre, post, 0.8, n_pre=N_E, n_post=N_I, delay=1)
    return nw.Network((E, I), (EE, EI, IE, II, EI_static))


@pytest.fixture(scope="module")
def x64_module():
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="module")
def small_run(x64_module):
    """The small network in float64 (event delivery, capacity 4 so that busy steps take several chunks),
    with a current into I, and the NumPy loop on the same drive."""
    net = small_network()
    key = jax.random.key(7)
    steps = jl.n_steps(T_REF, DT)
    I_inj = {"I": nw.NetworkInput(I_inj=np.linspace(150.0, 250.0, N_I))}
    res = nw.simulate_network(key, net, T=T_REF, dt=DT, inputs=I_inj, capacity=4)
    counts = nw.drive_counts(key, net, T=T_REF, dt=DT)
    ext_E = np.concatenate([0.5 * np.asarray(counts["E"]), np.zeros((N_I, steps))])
    I_arr = np.concatenate([np.zeros((N_E, steps)), np.repeat(np.linspace(150.0, 250.0, N_I)[:, None], steps, 1)])
    ref = numpy_network(net, ext_E, np.zeros_like(ext_E), I_arr, steps, DT)
    return net, key, I_inj, res, ref, counts


# ----------------------------------------------------------------------------------------------
# STP release
# ----------------------------------------------------------------------------------------------


def test_stp_efficacy_is_the_jump_of_stp_step(x64):
    rng = np.random.default_rng(0)
    params = jl.STPParams(U0=rng.uniform(0.05, 1.0, 64), tau_d=rng.uniform(0.1, 800, 64), tau_f=rng.uniform(0.1, 900, 64))
    u, R, g = rng.uniform(0, 1, 64), rng.uniform(0, 1, 64), rng.uniform(0, 5, 64)
    s = (rng.random(64) < 0.5).astype(float)
    syn = jl.SynParams(g_bar=rng.uniform(0.1, 3.0, 64), tau_syn=rng.uniform(0.1, 10, 64), E_rev=0.0)
    (u1, R1, g1), _ = jl.stp_step(params, syn, jl.STPState(u, R, g), s, DT)
    u2, R2, release = jl.plasticity.stp_efficacy(params, u, R, s, DT)
    np.testing.assert_array_equal(u2, u1)
    np.testing.assert_array_equal(R2, R1)
    jump = np.asarray(g1) - (g - (DT / syn.tau_syn) * g)
    np.testing.assert_allclose(syn.g_bar * release, jump, rtol=1e-12, atol=1e-14)
    assert np.all(np.asarray(release)[s == 0] == 0) and np.all(np.asarray(release)[s == 1] > 0)


def test_stp_efficacy_first_spike_releases_U0():
    u, R, release = jl.plasticity.stp_efficacy(jl.STD, 0.0, 1.0, 1.0, DT)
    assert float(release) == pytest.approx(0.5) and float(u) == pytest.approx(0.5) and float(R) == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# The network against the NumPy loop
# ----------------------------------------------------------------------------------------------


def test_small_network_equals_numpy_loop(small_run):
    net, _, _, res, (V, S, GE, GI, traces), _ = small_run
    for name, sl in (("E", slice(0, N_E)), ("I", slice(N_E, N_E + N_I))):
        np.testing.assert_array_equal(np.asarray(res.spikes[name]), S[sl], err_msg=name)
        np.testing.assert_allclose(res.v[name], V[sl], rtol=0, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(res.g_E[name], GE[sl], rtol=0, atol=1e-9, err_msg=name)
        np.testing.assert_allclose(res.g_I[name], GI[sl], rtol=0, atol=1e-9, err_msg=name)
    for k, q in enumerate(net.projections):
        if q.stp is not None and q.stp_mode == "pre":
            np.testing.assert_allclose(res.stp[k].u, traces[k][0], atol=1e-12)
            np.testing.assert_allclose(res.stp[k].R, traces[k][1], atol=1e-12)
        else:
            assert res.stp[k] is None
    # the test exercises what it claims: spikes in both populations, several per step, synapses depressed
    n_E, n_I = S[:N_E].sum(), S[N_E:].sum()
    assert n_E > 50 and n_I > 20, (n_E, n_I)
    assert S.sum(0).max() > 4                     # more spikes in one step than the capacity of 4
    assert traces[0][1].min() < 0.8


def test_drive_counts_are_binomial_and_drawn_inside(small_run):
    net, key, _, res, _, counts = small_run
    c = np.asarray(counts["E"])
    assert np.all(np.asarray(counts["I"]) == 0) and c.shape == (N_E, jl.n_steps(T_REF, DT))
    p = 80.0 * DT / 1000.0
    assert c.max() <= 100 and c.min() >= 0 and np.all(c == np.round(c))
    assert abs(c.mean() - 100 * p) < 4 * np.sqrt(100 * p * (1 - p) / c.size)


def test_continuing_a_run_equals_one_long_run(small_run):
    net, key, I_inj, res, _, _ = small_run
    run = lambda state: nw.simulate_network(key, net, T=T_REF / 2, dt=DT, inputs=I_inj, state=state,  # noqa: E731
                                            capacity=4)
    first = run(nw.network_init(net))                        # one compiled program for both halves
    second = run(first.state)
    half = first.v["E"].shape[1]
    for name in ("E", "I"):
        # the last sample of a run is never tested against the threshold: the next run tests it
        joined = np.concatenate([np.asarray(first.spikes[name])[:, :-1], np.asarray(second.spikes[name])[:, :-1]], 1)
        np.testing.assert_array_equal(joined, np.asarray(res.spikes[name])[:, :joined.shape[1]])
        v2 = np.asarray(second.v[name])[:, :-1]                    # (the last sample is before any reset)
        np.testing.assert_allclose(v2, np.asarray(res.v[name])[:, half - 1:half - 1 + v2.shape[1]], atol=1e-9)
