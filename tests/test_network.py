"""Networks (``jaxlif.network``) against a step-by-step NumPy loop written here from docs/conventions.md
4.1-4.2 and the delivery rule of ``jaxlif.network.step``; plus the STP release, latency, vmap == loop,
jit == eager, delivery methods, surrogate gradients and checks that survive tracing.

Compiled programs are shared between tests (module-scoped fixtures, equal shapes) to keep the suite short.
"""

from __future__ import annotations

import dataclasses
import functools

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


def _numpy_exp_membrane(v, r, gE, gI, I, dt, V_th, V_reset, tau_m, g_L, E_L, t_ref, E_E, E_I, tau_E, tau_I):
    """docs/conventions.md section 10, steps 2-4, neuron by neuron in NumPy: the membrane over one step
    with each conductance held at its exact mean; ``r`` is the refractory time left [ms].  Returns
    ``(v_next, r_next, spikes, offsets)``."""
    n = v.size
    gEm, gIm = gE * tau_E / dt * (1 - np.exp(-dt / tau_E)), gI * tau_I / dt * (1 - np.exp(-dt / tau_I))
    g_tot = g_L + gEm + gIm
    V_inf = (g_L * E_L + gEm * E_E + gIm * E_I + I) / g_tot
    tau_eff = tau_m * g_L / g_tot
    v_next, r_next, spikes, offsets = np.empty(n), np.empty(n), np.zeros(n, bool), np.zeros(n)
    for i in range(n):
        relax = lambda v0, h: V_inf[i] + (v0 - V_inf[i]) * np.exp(-h / tau_eff[i])  # noqa: E731
        clamp = min(r[i], dt)                   # refractory part of the step [ms]
        if clamp >= dt:
            v_next[i], r_next[i] = V_reset[i], r[i] - dt
            continue
        v_s = V_reset[i] if r[i] > 0 else v[i]
        v_end = relax(v_s, dt - clamp)
        if max(v_s, v_end) < V_th[i]:
            v_next[i], r_next[i] = v_end, 0.0
            continue
        t_c = 0.0 if v_s >= V_th[i] else tau_eff[i] * np.log((V_inf[i] - v_s) / (V_inf[i] - V_th[i]))
        t_spike = clamp + t_c
        spikes[i], offsets[i] = True, t_spike
        rest = t_spike + t_ref[i] - dt         # refractory time left at the end of the step
        v_next[i], r_next[i] = (V_reset[i], rest) if rest >= 0 else (relax(V_reset[i], -rest), 0.0)
    return v_next, r_next, spikes, offsets


def numpy_network(net, ext_E, ext_I, I_inj, steps, dt, integrator="euler"):
    """The network loop in NumPy float64, stacked neurons, absolute-time arrival buffers.

    ext_E, ext_I: ``(n, steps)`` conductance [nS] arriving at each sample; I_inj ``(n, steps)`` [pA].
    Returns v, spikes, g_E, g_I ``(n, steps)`` and per projection ``(u, R)``: traces ``(n_pre, steps)`` for
    ``stp_mode="pre"``, the final values per edge (in :func:`_edges_of`'s order) for ``"synapse"``; with
    ``integrator="exp_euler"`` (docs/conventions.md section 10: the inputs of index 0 are seen, the
    membrane first, the spike of step ``it`` acts on ``u, R`` at ``t_it``, exact decays) also the spike
    offsets.
    """
    exp_euler = integrator == "exp_euler"
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
    GE, GI, OFF = np.zeros((n, steps)), np.zeros((n, steps)), np.zeros((n, steps))
    if exp_euler:                               # an input at index k enters g at t_k: index 0 is seen
        gE, gI = ext_E[:, 0].astype(float), ext_I[:, 0].astype(float)
        GE[:, 0], GI[:, 0] = gE, gI
    for it in range(steps - 1):
        if exp_euler:                           # 1'. the membrane over [t_it, t_it + dt): spikes of step it
            V[:, it] = v
            v, r, S[:, it], OFF[:, it] = _numpy_exp_membrane(v, r, gE, gI, I_inj[:, it], dt, V_th, V_reset, tau_m,
                                                             g_L, E_L, t_ref, E_E, E_I, tau_E, tau_I)
        else:
            for i in range(n):                  # 1. refractory clamp, else threshold test of v[it]
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
                def advance(u, R, s, U0, tau_d, tau_f):
                    if exp_euler:           # the continuous-time synapse: jump at t_it, exact decay to t_it+1
                        u_plus = u + U0 * (1.0 - u) * s
                        rel = u_plus * R * s
                        return u_plus * np.exp(-dt / tau_f), 1.0 - (1.0 - (R - rel)) * np.exp(-dt / tau_d), rel
                    u_new = u + (-(dt / tau_f) * u + U0 * (1.0 - u) * s)
                    R_new = R + ((dt / tau_d) * (1.0 - R) - u_new * R * s)
                    return u_new, R_new, u_new * R * s

                if q.stp_mode == "pre":
                    s_pre = S[offsets[q.pre]:offsets[q.pre] + sizes[q.pre], it].astype(float)
                    U0_p, tau_d_p, tau_f_p = (np.broadcast_to(np.asarray(a, float), (sizes[q.pre],)) for a in q.stp)
                    u_new, R_new, release = advance(u, R, s_pre, U0_p, tau_d_p, tau_f_p)
                    release = release[pre_local]
                    traces[k][0][:, it + 1], traces[k][1][:, it + 1] = u_new, R_new
                else:
                    u_new, R_new, release = advance(u, R, s, U0, tau_d, tau_f)
                stp_state[k] = [u_new, R_new]
            for e in np.nonzero(release)[0]:    # arrives at sample it + d
                arrive[q.receptor][it + d[e], post[e]] += w[e] * release[e]
        if exp_euler:
            gE = gE * np.exp(-dt / tau_E) + arrive["exc"][it + 1] + ext_E[:, it + 1]
            gI = gI * np.exp(-dt / tau_I) + arrive["inh"][it + 1] + ext_I[:, it + 1]
        else:
            gE = gE + (-(dt / tau_E) * gE + arrive["exc"][it + 1] + ext_E[:, it + 1])   # 3.
            gI = gI + (-(dt / tau_I) * gI + arrive["inh"][it + 1] + ext_I[:, it + 1])
            dv = (dt / tau_m) * (-(v - E_L) - (gE / g_L) * (v - E_E) - (gI / g_L) * (v - E_I) + I_inj[:, it] / g_L)
            v = v + dv
        GE[:, it + 1], GI[:, it + 1] = gE, gI
    V[:, -1] = v
    for k, q in enumerate(net.projections):
        if q.stp is not None and q.stp_mode == "synapse":
            traces[k] = tuple(stp_state[k])
    if exp_euler:
        return V, S, GE, GI, traces, OFF
    return V, S, GE, GI, traces


# ----------------------------------------------------------------------------------------------
# A small network with every kind of projection (shared by several tests)
# ----------------------------------------------------------------------------------------------

N_E, N_I, T_REF = 30, 10, 40.0


def small_network(seed: int = 1) -> nw.Network:
    """30 E + 10 I neurons: sparse and dense projections, per-edge delays 1..4 (E->E) and 1..3 (I->E) and
    one delay (the others), STP per presynaptic neuron and per synapse (heterogeneous U0); a Poisson drive
    on E only; 8 E neurons spike at step 0."""
    rng = np.random.default_rng(seed)
    V_init = np.concatenate([np.full(8, -50.0), rng.uniform(-70.0, -56.0, N_E - 8)])   # 8 spikes at step 0
    neuron_E = jl.LIFParams(V_init=V_init, tau_m=rng.uniform(8.0, 12.0, N_E))
    E = nw.Population("E", N_E, neuron=neuron_E, exc=nw.Receptor(2.0, 0.0), inh=nw.Receptor(5.0, -80.0),
                      drive=nw.PoissonDrive(rate=80.0, weight=0.5, n=100))
    I = nw.Population("I", N_I, neuron=jl.LIFParams(V_init=-60.0, t_ref=1.0))
    post, pre = np.nonzero((rng.random((N_E, N_E)) < 0.25) & ~np.eye(N_E, dtype=bool))
    EE = nw.sparse_projection("E", "E", pre, post, rng.uniform(0.5, 1.5, pre.size), n_pre=N_E, n_post=N_E,
                              delay=rng.integers(1, 5, pre.size), stp=jl.STD)
    W_EI = np.where(rng.random((N_I, N_E)) < 0.4, rng.uniform(0.5, 1.0, (N_I, N_E)), 0.0)
    EI = nw.dense_projection("E", "I", W_EI, delay=2,
                             stp=jl.STPParams(U0=rng.uniform(0.1, 0.6, (N_I, N_E)), tau_d=80.0, tau_f=200.0),
                             stp_mode="synapse")
    post, pre = np.nonzero(rng.random((N_E, N_I)) < 0.5)
    U0_IE = rng.uniform(0.2, 0.5, pre.size)
    IE = nw.sparse_projection("I", "E", pre, post, 2.0, n_pre=N_I, n_post=N_E, receptor="inh",
                              delay=rng.integers(1, 4, pre.size),
                              stp=jl.STPParams(U0=U0_IE, tau_d=60.0, tau_f=30.0), stp_mode="synapse")
    II = nw.dense_projection("I", "I", 1.5 * (1 - np.eye(N_I)), receptor="inh", delay=3,
                             stp=jl.STPParams(0.3, 100.0, 50.0))
    return nw.Network((E, I), (EE, EI, IE, II))


def _drive_counts(key, steps: int) -> dict:
    """The Poisson drive counts that a run of ``small_network`` or ``window_network`` (the same populations)
    draws with ``key`` over its first ``steps`` samples.  One compiled program for every run here: the counts of
    ``small_network`` over the 401 samples of the longest run, cut to ``steps`` (``drive_counts`` draws step k
    from ``key`` and k alone, so the cut equals the counts of the shorter run, bit for bit; a program per network
    and length cost 1.1 CPU-s more, 2026-12-07).  Cut in NumPy (a cut of a jax array compiles a program per
    shape)."""
    longest = round(T_REF / DT) + 1                    # two halves of T_REF / 2 share a sample
    counts = nw.drive_counts(key, small_network(), T=longest * DT - DT / 2, dt=DT)
    assert counts["E"].shape[1] == longest >= steps
    return {name: np.asarray(c)[:, :steps] for name, c in counts.items()}


@functools.lru_cache(maxsize=None)
def _init_program(builder):
    """``network_init`` of the network that ``builder`` returns, jitted: one compiled program per network
    and float type (op by op every broadcast and concatenation compiled a program of its own, 13 for the
    small network, 2026-12-07)."""
    net = builder()
    return jax.jit(lambda: nw.network_init(net))


def rest(builder) -> nw.NetworkState:
    """The resting state (``network_init``) of ``builder()``'s network in the current float type."""
    return _init_program(builder)()


@pytest.fixture(scope="module")
def x64_module():
    """Marks a test (directly or through a fixture) as a float64 test: :func:`_x64_if_asked` runs it with
    ``jax.enable_x64``; the module fixtures that compute in float64 enter it themselves."""


@pytest.fixture(autouse=True)
def _x64_if_asked(request):
    """float64 for the tests that take ``x64_module``, float32 (the library's default) for every other one.
    (Until 2026-12-07 ``x64_module`` held ``jax.enable_x64`` open from the first test that took it to the end
    of the module, so the tiny network's float32 tests after it ran in float64.)"""
    with jax.enable_x64("x64_module" in request.fixturenames):
        yield


@pytest.fixture(scope="module")
def small_run(x64_module):
    with jax.enable_x64(True):
        return _small_run()


def _small_run():
    """The small network in float64 (event delivery, capacity 4 so that busy steps take several chunks),
    with a current into I, run in two halves (the second continues from the first's final state; one
    compiled program), and the NumPy loop over the whole run on the same drive."""
    net = small_network()
    key = jax.random.key(7)
    I_inj = {"I": nw.NetworkInput(I_inj=np.linspace(150.0, 250.0, N_I))}
    run = lambda state: nw.simulate_network(key, net, T=T_REF / 2, dt=DT, inputs=I_inj, state=state,  # noqa: E731
                                            capacity=4)
    first = run(rest(small_network))
    second = run(first.state)
    half = first.v["E"].shape[1]
    steps = 2 * half - 1        # the halves share sample half - 1 (the first never tests it, the second does)
    counts = _drive_counts(key, steps)
    assert counts["E"].shape[1] == steps
    ext_E = np.concatenate([0.5 * np.asarray(counts["E"]), np.zeros((N_I, steps))])
    I_arr = np.concatenate([np.zeros((N_E, steps)), np.repeat(np.linspace(150.0, 250.0, N_I)[:, None], steps, 1)])
    ref = numpy_network(net, ext_E, np.zeros_like(ext_E), I_arr, steps, DT)
    return net, (first, second), ref, counts


def _joined(first, second, field, name):
    a, b = np.asarray(getattr(first, field)[name]), np.asarray(getattr(second, field)[name])
    if field in ("spikes", "v", "spike_offset"):   # the first half's last sample is tested by the second half
        return np.concatenate([a[:, :-1], b], axis=1)
    return np.concatenate([a, b[:, 1:]], axis=1)


def window_network() -> nw.Network:
    """The small network with every delay >= 4 steps and plasticity per presynaptic neuron only, so that
    the simulator runs it in windows of 3 steps (``jaxlif.network.window``): per-edge delays 4..7 (E->E,
    depressing), one delay 4 (E->I, dense; I->E, sparse) and 6 (I->I, facilitating)."""
    net = small_network()
    rng = np.random.default_rng(2)
    EE, EI, IE, II = net.projections
    EE = dataclasses.replace(EE, delays=np.asarray(EE.delays) + 3, max_delay=EE.max_delay + 3)
    EI = dataclasses.replace(EI, delay=4, stp=None, stp_mode="pre")
    IE = dataclasses.replace(IE, delay=4, delays=np.full_like(IE.delays, 4), max_delay=4, stp=None, stp_mode="pre")
    II = dataclasses.replace(II, delay=6, stp=jl.STPParams(rng.uniform(0.1, 0.3, N_I), 100.0, 300.0))
    return nw.Network(net.populations, (EE, EI, IE, II))


@pytest.fixture(scope="module")
def window_run(x64_module):
    with jax.enable_x64(True):
        return _window_run()


def _window_run():
    """``window_network`` in float64 over 40 ms in two halves (each 199 updates: 66 windows of 3 and a last
    one of 1), with a current into I, and the NumPy loop over the whole run on the same drive."""
    net = window_network()
    key = jax.random.key(11)
    I_inj = {"I": nw.NetworkInput(I_inj=np.linspace(150.0, 250.0, N_I))}
    run = lambda state: nw.simulate_network(key, net, T=T_REF / 2, dt=DT, inputs=I_inj, state=state,  # noqa: E731
                                            capacity=1)         # 4 events per chunk of a window's delivery
    first = run(rest(window_network))
    second = run(first.state)
    half = first.v["E"].shape[1]
    steps = 2 * half - 1
    counts = _drive_counts(key, steps)
    ext_E = np.concatenate([0.5 * np.asarray(counts["E"]), np.zeros((N_I, steps))])
    I_arr = np.concatenate([np.zeros((N_E, steps)), np.repeat(np.linspace(150.0, 250.0, N_I)[:, None], steps, 1)])
    ref = numpy_network(net, ext_E, np.zeros_like(ext_E), I_arr, steps, DT)
    return net, (first, second), ref


# ----------------------------------------------------------------------------------------------
# STP release
# ----------------------------------------------------------------------------------------------


def test_stp_efficacy_is_the_jump_of_stp_step(x64):
    rng = np.random.default_rng(0)
    params = jl.STPParams(U0=rng.uniform(0.05, 1.0, 64), tau_d=rng.uniform(0.1, 800, 64), tau_f=rng.uniform(0.1, 900, 64))
    u, R, g = rng.uniform(0, 1, 64), rng.uniform(0, 1, 64), rng.uniform(0, 5, 64)
    s = (rng.random(64) < 0.5).astype(float)
    syn = jl.SynParams(g_bar=rng.uniform(0.1, 3.0, 64), tau_syn=rng.uniform(0.1, 10, 64), E_rev=0.0)
    # both functions in one compiled program (op by op, each operation compiled a program of its own: 10
    # programs, 2026-12-07); the results to NumPy
    (u1, R1, g1), (u2, R2, release) = jax.tree.map(np.asarray, jax.jit(lambda params, syn, u, R, g, s: (
        jl.stp_step(params, syn, jl.STPState(u, R, g), s, DT)[0], jl.plasticity.stp_efficacy(params, u, R, s, DT)))(
        params, syn, u, R, g, s))
    np.testing.assert_array_equal(u2, u1)
    np.testing.assert_array_equal(R2, R1)
    jump = g1 - (g - (DT / syn.tau_syn) * g)
    np.testing.assert_allclose(syn.g_bar * release, jump, rtol=1e-12, atol=1e-14)
    assert np.all(release[s == 0] == 0) and np.all(release[s == 1] > 0)


def test_stp_efficacy_first_spike_releases_U0():
    u, R, release = jl.plasticity.stp_efficacy(jl.STD, 0.0, 1.0, 1.0, DT)
    assert float(release) == pytest.approx(0.5) and float(u) == pytest.approx(0.5) and float(R) == pytest.approx(0.5)


# ----------------------------------------------------------------------------------------------
# The network against the NumPy loop
# ----------------------------------------------------------------------------------------------


def _assert_halves_equal_numpy(net, first, second, S, refs: dict, traces) -> None:
    """A run split in two halves against the NumPy loop: spikes exact, the traces ``refs`` within 1e-9,
    the per-presynaptic ``u, R`` traces (``stp_mode="pre"``) within 1e-12."""
    for name, sl in (("E", slice(0, N_E)), ("I", slice(N_E, N_E + N_I))):
        np.testing.assert_array_equal(_joined(first, second, "spikes", name), S[sl], err_msg=name)
        for field, ref in refs.items():
            np.testing.assert_allclose(_joined(first, second, field, name), ref[sl], rtol=0, atol=1e-9,
                                       err_msg=f"{field} {name}")
    for k, q in enumerate(net.projections):
        if q.stp is not None and q.stp_mode == "pre":
            for i, field in enumerate(("u", "R")):
                a, b = (np.asarray(getattr(r.stp[k], field)) for r in (first, second))
                np.testing.assert_allclose(np.concatenate([a, b[:, 1:]], 1), traces[k][i], rtol=0, atol=1e-12)


def test_small_network_equals_numpy_loop(small_run):
    net, (first, second), (V, S, GE, GI, traces), _ = small_run
    _assert_halves_equal_numpy(net, first, second, S, {"v": V, "g_E": GE, "g_I": GI}, traces)
    for k, q in enumerate(net.projections):
        if not (q.stp is not None and q.stp_mode == "pre"):
            assert first.stp[k] is None
    # the test exercises what it claims: spikes in both populations, several per step, synapses depressed
    n_E, n_I = S[:N_E].sum(), S[N_E:].sum()
    assert n_E > 50 and n_I >= 10, (n_E, n_I)
    assert S.sum(0).max() > 4                     # more spikes in one step than the capacity of 4
    assert traces[0][1].min() < 0.8


WINDOW_VARIANTS = [(True, True), (False, True), (True, False)]      # (window.WHOLE_RASTER, window.DIRECT)


@pytest.fixture(scope="module")
def window_deliveries():
    """The inputs of ``test_window_delivery_equals_the_sum_over_synapses``, the delivery and its jvp under each of
    ``WINDOW_VARIANTS`` (the module's switches are read while tracing: the three variants traced into one compiled
    program instead of three, 2026-12-07), and the sums written out in NumPy."""
    from jaxlif.network import window
    net = nw.ei_network(jax.random.key(4), n_E=64, n_I=32, p=0.2, delay=6)
    L, D, n = 5, net.max_delay, net.size
    rng = np.random.default_rng(1)
    spikes = rng.random((L, n)) < 0.15
    dtype = jax.dtypes.canonicalize_dtype(np.result_type(net.projections[0].weights))   # the ring's: the weights'
    release = (rng.random((L, 64)) * spikes[:, :64]).astype(dtype)
    d_release = rng.random((L, 64)).astype(dtype)
    ring = {r: rng.random((D, n)).astype(dtype) for r in ("exc", "inh")}     # NumPy: no conversion to compile
    d_ring = {r: rng.random((D, n)).astype(dtype) for r in ("exc", "inh")}

    def deliver(ring, rel):
        released = tuple(rel if q.stp is not None else None for q in net.projections)
        return window._deliver_all(net, 2, ring, spikes, released, L)

    def variants(*a):
        out = {}
        for whole_raster, direct in WINDOW_VARIANTS:
            saved = window.WHOLE_RASTER, window.DIRECT
            window.WHOLE_RASTER, window.DIRECT = whole_raster, direct
            try:
                out[whole_raster, direct] = jax.jvp(deliver, a[:2], a[2:])
            finally:
                window.WHOLE_RASTER, window.DIRECT = saved
        return out

    out = jax.jit(variants)(ring, release, d_ring, d_release)
    expected = {r: np.array(v, np.float64) for r, v in ring.items()}           # copies (writable)
    expected_tangent = {r: np.array(v, np.float64) for r, v in d_ring.items()}
    for q in net.projections:
        lo, hi, post = net.offsets[q.pre], net.offsets[q.pre] + net.sizes[q.pre], net.offsets[q.post]
        x = spikes[:, lo:hi] if q.stp is None else release
        tg, W = np.asarray(q.targets), np.asarray(q.weights)
        for l, j, c in zip(*np.nonzero((x[:, :, None] != 0) & (tg < net.sizes[q.post]))):
            expected[q.receptor][l + q.delay - L, post + tg[j, c]] += x[l, j] * W[j, c]
        if q.stp is not None:           # every synapse, spiking or not
            for l, j, c in zip(*np.nonzero(np.ones((L, 1, 1), bool) & (tg < net.sizes[q.post]))):
                expected_tangent[q.receptor][l + q.delay - L, post + tg[j, c]] += d_release[l, j] * W[j, c]
    return net, spikes, out, expected, expected_tangent


@pytest.mark.parametrize("whole_raster, direct", WINDOW_VARIANTS)
def test_window_delivery_equals_the_sum_over_synapses(whole_raster, direct, window_deliveries):
    """A window's delivery (``window._deliver_all``: one loop over each population's events for all its
    projections) against the sum written out in NumPy: ``pending[l + d - L, target] += x[l, j] W[j, c]``, with
    x the spikes or (E->E) a given release; and its jvp in the ring and the release, the sum over every
    synapse.  Populations of 64 and 32 neurons (whole blocks of 32: the events found in the whole raster, or
    in each population's columns), delay = ring length (the events added straight into the ring, or through
    a buffer), several spikes per step, chunks of 8."""
    net, spikes, outs, expected, expected_tangent = window_deliveries
    out, tangent = outs[whole_raster, direct]
    D = net.max_delay
    assert spikes.sum(axis=1).min() > 8 and {q.delay for q in net.projections} == {D}
    for r in expected:
        np.testing.assert_allclose(np.asarray(out[r]), expected[r], rtol=1e-6, err_msg=r)
        np.testing.assert_allclose(np.asarray(tangent[r]), expected_tangent[r], rtol=1e-6, err_msg=r)


def test_windowed_network_equals_numpy_loop(window_run):
    """The min-delay scheme (windows of d_min - 1 = 3 steps, delivery once per window) against the
    NumPy loop, which delivers every step: the same spikes, voltages, conductances and STP traces."""
    from jaxlif.network import window
    net, (first, second), (V, S, GE, GI, traces) = window_run
    assert window.window_length(net) == 3 and (first.v["E"].shape[1] - 1) % 3 == 1    # windows and a tail
    for name, sl in (("E", slice(0, N_E)), ("I", slice(N_E, N_E + N_I))):
        np.testing.assert_array_equal(_joined(first, second, "spikes", name), S[sl], err_msg=name)
        for field, ref in (("v", V), ("g_E", GE), ("g_I", GI)):
            np.testing.assert_allclose(_joined(first, second, field, name), ref[sl], rtol=0, atol=1e-9,
                                       err_msg=f"{field} {name}")
    for k in (0, 3):
        for i, field in enumerate(("u", "R")):
            a, b = (np.asarray(getattr(r.stp[k], field)) for r in (first, second))
            np.testing.assert_allclose(np.concatenate([a, b[:, 1:]], 1), traces[k][i], rtol=0, atol=1e-12)
    assert S[:N_E].sum() > 50 and S[N_E:].sum() >= 10 and traces[0][1].min() < 0.8
    assert np.convolve(S[:N_E].sum(0), np.ones(3)).max() > 4     # windows of several chunks of 4 events


def test_windowed_delivery_derivatives_equal_the_full_sum(x64):
    """Forward derivative of the conductances with respect to the weights: the windowed event delivery
    (a custom_jvp whose tangent is the sum over every synapse) equals the step-by-step full method."""
    net = window_network()
    structure, params = nw.partition(net)

    def g(scale, delivery):
        p = params._replace(projections={k: v._replace(weights=v.weights * scale)
                                         for k, v in params.projections.items()})
        res = nw.simulate_network(jax.random.key(3), structure, p, T=5.0, dt=DT, delivery=delivery)
        return jnp.concatenate([res.g_E["E"], res.g_I["E"]])

    # each jvp jitted whole: one program per delivery, the weight scaling and the concatenation not compiled
    # operation by operation (3 compilations instead of 18, about 0.4 CPU-s less, 2026-12-07)
    jvp = jax.jit(lambda s, t, delivery: jax.jvp(lambda s: g(s, delivery), (s,), (t,)), static_argnums=2)
    a = jvp(1.0, 1.0, "event")
    b = jvp(1.0, 1.0, "full")
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-10, atol=1e-10)
    assert np.abs(np.asarray(a[1])).max() > 0


def _per_edge(proj, syn, step):
    """A per-synapse :class:`SynapseState` (``u, R`` holding at each presynaptic neuron's ``sample``) as
    per-edge ``(u, R)`` at sample ``step``, in :func:`_edges_of`'s order: the silent Euler steps since
    ``sample`` applied as powers ``(1 - dt/tau)^k`` (NumPy)."""
    _, post, _, _, (U0, tau_d, tau_f), pre = _edges_of(proj, {proj.pre: 0, proj.post: 0}, None)
    u, R, sample = (np.asarray(a) for a in syn)
    if isinstance(proj, nw.DenseProjection):
        u, R = u[post, pre], R[post, pre]
    else:
        real = np.asarray(proj.targets) < proj.n_post
        u, R = u[real], R[real]
    k = step - sample[pre]
    return u * (1 - DT / tau_f) ** k, 1 - (1 - R) * (1 - DT / tau_d) ** k


SYNAPSE_MODE = (1, 2)          # the projections of small_network with per-synapse plasticity (dense, sparse)


def test_per_synapse_plasticity_is_event_driven_and_equals_the_numpy_loop(small_run):
    """Per-synapse ``u, R`` (dense E->I, sparse I->E) are updated only at presynaptic spikes: each
    presynaptic neuron's ``sample`` is one after its last spike (0 if none), carried from the first half
    into the second; advanced to the last sample they equal the NumPy loop's, which updates every
    synapse every step."""
    net, (first, second), (V, S, GE, GI, traces), _ = small_run
    step = int(second.state.step)
    assert step == S.shape[1] - 1
    for k in SYNAPSE_MODE:
        q = net.projections[k]
        syn = second.state.synapses[k]
        lo = net.offsets[q.pre]
        spikes = S[lo:lo + net.sizes[q.pre], :step]
        last = np.where(spikes.any(1), spikes.shape[1] - 1 - np.argmax(spikes[:, ::-1], 1) + 1, 0)
        np.testing.assert_array_equal(np.asarray(syn.sample), last, err_msg=str(k))
        assert len(np.unique(last)) > 2                              # the rows hold at different samples
        u, R = _per_edge(q, syn, step)
        np.testing.assert_allclose(u, traces[k][0], rtol=0, atol=1e-12, err_msg=str(k))
        np.testing.assert_allclose(R, traces[k][1], rtol=0, atol=1e-12, err_msg=str(k))
        assert traces[k][1].min() < 0.9 and traces[k][0].max() > 0.1    # depressed, facilitated


@pytest.fixture(scope="module")
def per_synapse_linearised(x64_module):
    with jax.enable_x64(True):
        return _per_synapse_linearised()


def _per_synapse_linearised():
    """``small_run``'s first half (float64, the same drive, current and duration) as a function of theta =
    (U0 scales of the two per-synapse projections, a common weight scale), with ``delivery="event"`` and
    ``"full"``, linearised at theta = 1: the conductances, their forward derivative along (1, -2, 0.5), the
    gradient of sum(cot * conductances), and the run itself (at theta = 1 every value is unchanged).  One
    compiled program per delivery serves the two tests below (a separate run with ``delivery="full"`` cost
    about 0.6 CPU-s more, 2026-12-07)."""
    net = small_network()
    structure, params = nw.partition(net)
    keys = nw.projection_keys(structure)
    cot = np.random.default_rng(5).normal(size=(2 * N_E + N_I, jl.n_steps(T_REF / 2, DT)))
    I_inj = {"I": nw.NetworkInput(I_inj=np.linspace(150.0, 250.0, N_I))}          # small_run's

    def g(theta, delivery):
        proj = dict(params.projections)
        for i, k in enumerate(SYNAPSE_MODE):
            v = proj[keys[k]]
            proj[keys[k]] = v._replace(stp=v.stp._replace(U0=v.stp.U0 * theta[i]))
        proj = {key: v._replace(weights=v.weights * theta[2]) for key, v in proj.items()}
        res = nw.simulate_network(jax.random.key(7), structure, params._replace(projections=proj), T=T_REF / 2,
                                  dt=DT, inputs=I_inj, delivery=delivery)
        assert res.spikes["I"].shape == (N_I, cot.shape[1])
        return jnp.concatenate([res.g_E["E"], res.g_I["E"], res.g_E["I"]]), res

    @functools.partial(jax.jit, static_argnums=0)
    def both(delivery, theta):
        # the forward derivative and the gradient of sum(cot * f) from one linearisation: jax.linearize is
        # jax.jvp's forward and tangent passes split, jax.grad transposes that same linear map
        # (jax.linear_transpose); one forward pass in the program instead of two (0.9 CPU-s less of 4.7, 2026-12-07)
        value, f_jvp, res = jax.linearize(lambda t: g(t, delivery), theta, has_aux=True)
        (grad,) = jax.linear_transpose(f_jvp, theta)(jnp.asarray(cot))
        return (value, f_jvp(jnp.array([1.0, -2.0, 0.5]))), grad, res

    return {m: both(m, np.ones(3)) for m in ("event", "full")}


def test_per_synapse_plasticity_event_equals_every_step(small_run, per_synapse_linearised):
    """The same run (first half) with ``delivery="full"``, which updates every synapse every step: the
    same spikes, voltages and conductances, and the same ``u, R`` to rounding."""
    net, (first, _), _, _ = small_run
    full = per_synapse_linearised["full"][2]
    step = int(full.state.step)
    for name in ("E", "I"):
        np.testing.assert_array_equal(full.spikes[name], first.spikes[name])
        np.testing.assert_allclose(full.v[name], first.v[name], rtol=0, atol=1e-10)
        np.testing.assert_allclose(full.g_E[name], first.g_E[name], rtol=0, atol=1e-10)
    for k in SYNAPSE_MODE:
        q = net.projections[k]
        assert np.all(np.asarray(full.state.synapses[k].sample) == step)
        assert np.asarray(first.state.synapses[k].sample).min() < step - 1
        for a, b in zip(_per_edge(q, full.state.synapses[k], step), _per_edge(q, first.state.synapses[k], step)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)


def test_per_synapse_plasticity_derivatives_equal_every_step(per_synapse_linearised):
    """Forward and reverse derivatives of the conductances with respect to U0 of the per-synapse
    projections and a common weight scale: the event-driven update (a custom_jvp whose tangent is the
    update of every synapse) equals ``delivery="full"`` (every synapse every step)."""
    (a, da), ga, _ = per_synapse_linearised["event"]
    (b, db), gb, _ = per_synapse_linearised["full"]
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(da, db, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(ga, gb, rtol=1e-9, atol=1e-10)
    assert np.all(np.abs(np.asarray(ga)) > 0)                      # each parameter reaches the conductances


@pytest.mark.slow
def test_per_synapse_plasticity_event_equals_every_step_float32_bench_shape():
    """The benchmark's E/I network at a tenth of its size (320 E + 80 I, p = 0.1, delay 15 steps) with
    per-synapse depressing E->E synapses, 300 ms in float32: event-driven and every-synapse-every-step
    updates give the same rasters and the same u, R to float32 rounding."""
    net = nw.ei_network(jax.random.key(0), n_E=320, n_I=80, weights={k: 10 * w for k, w in
                                                                     {"E->E": 0.25, "E->I": 0.25, "I->E": 1.5,
                                                                      "I->I": 1.5}.items()})
    EE = dataclasses.replace(net.projections[0], stp_mode="synapse")
    net = nw.Network(net.populations, (EE,) + net.projections[1:])
    runs = {m: nw.simulate_network(jax.random.key(1), net, T=300.0, dt=DT, record=False, delivery=m)
            for m in ("event", "full")}
    for name in ("E", "I"):
        np.testing.assert_array_equal(runs["event"].spikes[name], runs["full"].spikes[name])
    step = int(runs["full"].state.step)
    (u_e, R_e), (u_f, R_f) = (_per_edge(EE, runs[m].state.synapses[0], step) for m in ("event", "full"))
    np.testing.assert_allclose(u_e, u_f, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(R_e, R_f, rtol=2e-5, atol=1e-6)
    assert np.asarray(runs["event"].spikes["E"]).sum() > 1000 and R_f.min() < 0.5


def test_drive_counts_are_binomial(small_run):
    _, _, _, counts = small_run
    c = np.asarray(counts["E"])
    assert np.all(np.asarray(counts["I"]) == 0)
    p = 80.0 * DT / 1000.0
    assert c.max() <= 100 and c.min() >= 0 and np.all(c == np.round(c))
    assert abs(c.mean() - 100 * p) < 4 * np.sqrt(100 * p * (1 - p) / c.size)


# ----------------------------------------------------------------------------------------------
# A tiny network (float32) for latency, vmap, jit, poisoning, checked mode and gradients
# ----------------------------------------------------------------------------------------------

T_TINY = 30.0
DELAYS = np.array([1, 2, 5, 1, 3, 2])
W_AB = np.array([1.0, 2.0, 0.5, 1.5, 3.0, 2.5])


def tiny_network(tau_m_B=10.0) -> nw.Network:
    """``A`` (one neuron that fires at step 0) -> ``B`` (6 neurons) on inhibitory synapses with delays
    1, 2, 5, 1, 3, 2 steps."""
    A = nw.Population("A", 1, neuron=jl.LIFParams(V_init=-50.0, t_ref=100.0))
    B = nw.Population("B", 6, neuron=jl.LIFParams(tau_m=tau_m_B, V_init=-60.0))
    AB = nw.sparse_projection("A", "B", np.zeros(6, int), np.arange(6), W_AB, n_pre=1, n_post=6,
                              receptor="inh", delay=DELAYS)
    return nw.Network((A, B), (AB,))


G_TINY = (np.random.default_rng(3).random((6, jl.n_steps(T_TINY, DT))) < 0.05) * 3.0   # nS


def tiny_inputs(scale=1.0):
    return {"B": nw.NetworkInput(g_E=scale * G_TINY)}


def _tiny(tau_m_B, spike_grad=None, scale=1.0, statistics=None):
    return nw.simulate_network(None, tiny_network(tau_m_B), T=T_TINY, dt=DT, inputs=tiny_inputs(scale),
                               spike_grad=spike_grad, statistics=statistics)


def _spike_counts(spikes):
    """A statistic of a raster (``simulate_network(statistics=)``): spikes per neuron."""
    return spikes.sum(-1)


@pytest.fixture(scope="module")
def tiny_checked():
    """The tiny network's run as a function of tau_m of B, jitted, in checked mode (one compiled program
    serves the single runs below and the invalid call of ``test_checked_mode_names_the_field``)."""
    return jl.checked(jax.jit(lambda tau: _tiny(tau)))


@pytest.fixture(scope="module")
def tiny_runs(tiny_checked):
    return {tau: tiny_checked(np.float32(tau)) for tau in (10.0, 12.0)}     # NumPy scalars: nothing to compile


def test_delivery_latency_is_the_delay(tiny_runs):
    res = tiny_runs[10.0]
    spikes_A = np.asarray(res.spikes["A"])[0]
    assert spikes_A[0] and spikes_A.sum() == 1                    # A fires at step k = 0 only
    g_I = np.asarray(res.g_I["B"])
    first = np.argmax(g_I > 0, axis=1)
    np.testing.assert_array_equal(first, 0 + DELAYS)              # changed at sample k + d, not before
    np.testing.assert_allclose(g_I[np.arange(6), DELAYS], W_AB, rtol=1e-6)   # by the weight [nS]


# the tiny network's B gets its only inhibitory inputs (A's one spike) in the first steps of the 30 ms run: the
# estimator's replays cannot resolve B's open-loop response to inhibition over the settled part, and it says so
# (RecurrentGradientWarning); these tests are about vmap == loop and the gradient's sign
@pytest.mark.filterwarnings("ignore:the mean-field gradient estimator could not calibrate population")
def test_vmap_equals_loop_surrogate_gradient_and_poisoned_rows(tiny_runs):
    """One vmapped program of value-and-gradient with a surrogate, over tau_m of B = 10, 12 and 0.05 ms
    (invalid: below dt): rows 0 and 1 equal the single runs without surrogate (vmap == loop, the same
    forward values), their gradients are finite and positive, row 2 is poisoned."""
    def rate(scale, tau):
        res = _tiny(tau, jl.surrogates.fast_sigmoid(), scale)
        return res.spikes["B"].mean() * 1000.0 / DT, res

    batched = jax.jit(jax.vmap(jax.value_and_grad(rate, has_aux=True), (None, 0)))(
        1.0, np.array([10.0, 12.0, 0.05], np.float32))                 # a NumPy array: no conversion to compile
    (value, out), grad = jax.tree.map(np.asarray, batched)   # NumPy: rows cut without compiling an operation each
    for row, tau in enumerate((10.0, 12.0)):
        for name in ("A", "B"):
            np.testing.assert_array_equal(np.asarray(out.spikes[name][row]) > 0, tiny_runs[tau].spikes[name])
            np.testing.assert_allclose(out.v[name][row], tiny_runs[tau].v[name], atol=1e-4)
            np.testing.assert_allclose(out.g_I[name][row], tiny_runs[tau].g_I[name], atol=1e-5)
        assert np.isfinite(grad[row]) and grad[row] > 0                # more input, more spikes
    assert out.spikes["B"].dtype != bool                             # float spikes carry the derivative
    assert np.asarray(tiny_runs[10.0].spikes["B"]).sum() > 5          # B spikes: the rows are not trivially equal
    assert np.isnan(value[2]) and all(np.asarray(out.spikes[n][2]).all() for n in ("A", "B"))
    assert np.isnan(out.v["B"][2]).all() and np.isnan(out.g_I["B"][2]).all() and int(out.state.step[2]) == -1


def test_boolean_rasters_under_vmap_poison_only_the_invalid_row(tiny_runs):
    """Without a surrogate the rasters are boolean and are made neuron-major inside a conditional on the run's
    validity (``jaxlif.network.simulate._result``); under ``vmap`` with one invalid tau_m (0.05 ms, below dt)
    only that row is all ``True``, the valid row equals the single run bit for bit.  A statistic of the rasters
    (``statistics=``) is the function of the valid row's raster, NaN in the invalid row."""
    out, stats = jax.tree.map(np.asarray, jax.jit(jax.vmap(lambda tau: (lambda r: (r.spikes, r.statistics))(
        _tiny(tau, statistics={"n": ("B", _spike_counts)}))))(np.array([10.0, 0.05], np.float32)))  # rows cut in NumPy
    for name in ("A", "B"):
        assert out[name].dtype == jnp.bool_
        np.testing.assert_array_equal(out[name][0], tiny_runs[10.0].spikes[name])
        assert np.asarray(out[name][1]).all() and not np.asarray(out[name][0]).all()
    np.testing.assert_array_equal(stats["n"][0], np.asarray(tiny_runs[10.0].spikes["B"]).sum(-1))
    assert stats["n"].dtype == jnp.result_type(float) and np.isnan(stats["n"][1]).all() and stats["n"][0].sum() > 5


def test_checked_mode_names_the_field(tiny_checked, tiny_runs):
    with pytest.raises(ValueError, match=r"populations\['B'\]\.neuron\.tau_m=0.05.* ms must be finite and >= dt"):
        tiny_checked(np.float32(0.05))
    assert not np.asarray(tiny_runs[10.0].spikes["B"]).all()          # valid values: no error, plausible output


def test_jit_equals_eager(tiny_runs):
    """``network_step`` op by op (``jax.disable_jit``: the delivery loop runs in Python) for 4 steps,
    while A's spike of step 0 reaches B, against the compiled scan."""
    net, steps = tiny_network(), 4
    # the initial state jitted and the inputs and results handled in NumPy: only network_step runs op by op
    # (the rest compiled 14 one-operation programs more, 2026-12-07)
    state = rest(tiny_network)
    dtype = state.g_E.dtype
    v, spikes = [], []
    with jax.disable_jit():
        for it in range(steps):
            ext = (np.concatenate([np.zeros(1), G_TINY[:, it + 1]]).astype(dtype), 0.0, 0.0)
            state, (v_it, s_it, _, _) = nw.network_step(net, state, ext, DT)
            v.append(v_it)
            spikes.append(s_it)
    v, spikes = np.stack(v, 1), np.stack(spikes, 1)
    g_I = np.asarray(state.g_I)
    ref = tiny_runs[10.0]
    np.testing.assert_array_equal(spikes[:1], np.asarray(ref.spikes["A"])[:, :steps])
    np.testing.assert_array_equal(spikes[1:], np.asarray(ref.spikes["B"])[:, :steps])
    np.testing.assert_allclose(v[1:], np.asarray(ref.v["B"])[:, :steps], atol=1e-4)
    np.testing.assert_allclose(g_I[1:], np.asarray(ref.g_I["B"])[:, steps], rtol=1e-6)
    assert g_I[1:].max() > 0 and spikes[0, 0]


# ----------------------------------------------------------------------------------------------
# integrator="exp_euler" (docs/conventions.md section 10) and Euler's stability check
# ----------------------------------------------------------------------------------------------


def _exp_run(path):
    """``small_network`` (``"step"``: step by step, every projection kind, delays 1..4, STP per neuron and
    per synapse) or ``window_network`` (``"window"``: windows of 3) with ``integrator="exp_euler"`` in
    float64 over 20 ms in two halves of one compiled program, and the NumPy loop over the whole run on the
    same drive."""
    builder, key = (small_network, 7) if path == "step" else (window_network, 11)
    net, key = builder(), jax.random.key(key)
    I_inj = {"I": nw.NetworkInput(I_inj=np.linspace(150.0, 250.0, N_I))}
    run = lambda state: nw.simulate_network(key, net, T=T_REF / 4, dt=DT, inputs=I_inj, state=state,  # noqa: E731
                                            capacity=1, integrator="exp_euler")
    first = run(rest(builder))
    second = run(first.state)
    steps = 2 * first.v["E"].shape[1] - 1
    counts = _drive_counts(key, steps)
    ext_E = np.concatenate([0.5 * np.asarray(counts["E"]), np.zeros((N_I, steps))])
    I_arr = np.concatenate([np.zeros((N_E, steps)), np.repeat(np.linspace(150.0, 250.0, N_I)[:, None], steps, 1)])
    return net, (first, second), numpy_network(net, ext_E, np.zeros_like(ext_E), I_arr, steps, DT,
                                               integrator="exp_euler")


# the step path is also exercised by the tiny network's exp_euler tests below (default tier); the small
# network adds per-synapse STP and dense projections at the cost of another float64 program: slow tier
@pytest.mark.parametrize("path", [pytest.param("step", marks=pytest.mark.slow), "window"])
def test_exp_euler_network_equals_numpy_loop(x64_module, path):
    """exp_euler networks against the NumPy loop written from docs/conventions.md section 10: the drive of
    index 0 is seen, the membrane relaxes on the step means of g, a spike of step k (at k dt + offset)
    enters the targets' g at sample k + d, u and R jump at t_k and decay exactly; in two halves (the
    second starts from the first's state, whose g already holds its sample's inputs)."""
    from jaxlif.network import window
    net, (first, second), (V, S, GE, GI, traces, OFF) = _exp_run(path)
    assert window.window_length(net) == (3 if path == "window" else 0)
    _assert_halves_equal_numpy(net, first, second, S, {"v": V, "g_E": GE, "g_I": GI, "spike_offset": OFF}, traces)
    assert GE[:N_E, 0].max() > 0                                  # the drive of index 0 entered g at t = 0
    assert S[:N_E].sum() > 30 and S[N_E:].sum() >= 5 and traces[0][1].min() < 0.9
    assert 0 < OFF[S].max() < DT and OFF[S].min() == 0             # offsets within the step (V_init above V_th: 0)


@pytest.fixture(scope="module")
def tiny_exp():
    """The tiny network under exp_euler as a function of the projection's weight scale (and of B's input
    ``g_E``), without a surrogate jitted whole: one program, the weight scaling and the preparation of the
    inputs included (called outside jit, these compiled 11 one-operation programs, 2026-12-07)."""
    structure, params = nw.partition(tiny_network())

    def run(scale, spike_grad=None, g_E=G_TINY):
        p = params._replace(projections={k: v._replace(weights=v.weights * scale)
                                         for k, v in params.projections.items()})
        return nw.simulate_network(None, structure, p, T=T_TINY, dt=DT, inputs={"B": nw.NetworkInput(g_E=g_E)},
                                   spike_grad=spike_grad, integrator="exp_euler")

    plain = jax.jit(lambda scale, g_E: run(scale, g_E=g_E))
    return lambda scale, spike_grad=None, g_E=G_TINY: (plain(scale, g_E) if spike_grad is None
                                                       else run(scale, spike_grad, g_E))


def test_exp_euler_uncoupled_network_equals_the_single_neuron_simulator(tiny_exp):
    """With the A->B weights at 0, B's neurons are six independent conductance LIFs: those of
    ``simulate_cond_lif(..., integrator="exp_euler")`` (an independent code path) on the same inputs, the
    same spikes and the other fields to rounding (two programs: XLA may order a few operations differently)."""
    res = tiny_exp(0.0)
    pop = tiny_network().populations[1]
    params = jl.CondLIFParams(pop.neuron, jl.SynParams(3.0, pop.exc.tau_syn, pop.exc.E_rev),
                              jl.SynParams(1.0, pop.inh.tau_syn, pop.inh.E_rev))
    ref = jax.jit(jax.vmap(lambda n: jl.simulate_cond_lif(params, n, jnp.zeros_like(n), dt=DT,  # one program
                                                          integrator="exp_euler")))((G_TINY / 3.0).astype(np.float32))
    np.testing.assert_array_equal(res.spikes["B"], ref.spikes)
    tol = 1e-12 if res.v["B"].dtype == np.float64 else 1e-5
    for field in ("v", "g_E", "g_I", "spike_offset"):
        np.testing.assert_allclose(getattr(res, field)["B"], getattr(ref, field), rtol=tol, atol=tol, err_msg=field)
    assert np.asarray(ref.spikes).sum() > 5


def test_exp_euler_latency_and_convergence_to_a_fine_step(tiny_exp, tiny_runs):
    """A fires at t = 0 exactly; its spike reaches B at sample d (d dt ms later, as under Euler).  Against
    the same network at dt = 0.1/8 ms (delays 8 d steps, the inputs at the same times) B's spike times
    under exp_euler at dt = 0.1 ms are within 0.01 ms (second order); the tutorial's Euler is not."""
    res = tiny_exp(1.0)
    g_I = np.asarray(res.g_I["B"])
    np.testing.assert_array_equal(np.argmax(g_I > 0, axis=1), DELAYS)
    np.testing.assert_allclose(g_I[np.arange(6), DELAYS], W_AB, rtol=1e-6)
    fine_net = dataclasses.replace(tiny_network(), projections=tuple(
        dataclasses.replace(q, delays=8 * np.asarray(q.delays), max_delay=8 * q.max_delay)
        for q in tiny_network().projections))
    G_fine = np.zeros((6, 8 * G_TINY.shape[1]))
    G_fine[:, ::8] = G_TINY
    fine = jax.jit(lambda: nw.simulate_network(None, fine_net, T=T_TINY, dt=DT / 8, integrator="exp_euler",
                                               inputs={"B": nw.NetworkInput(g_E=G_fine)}))()   # one program

    def times(r, dt):
        s, off = np.asarray(r.spikes["B"]), None if r.spike_offset is None else np.asarray(r.spike_offset["B"])
        return [np.flatnonzero(row) * dt + (0 if off is None else off[i][row]) for i, row in enumerate(s)]

    ref, exp, euler = times(fine, DT / 8), times(res, DT), times(tiny_runs[10.0], DT)
    assert [len(t) for t in exp] == [len(t) for t in ref] and sum(len(t) for t in ref) > 5
    err = max(np.abs(a - b).max() for a, b in zip(exp, ref) if len(a))
    assert err < 0.01, err
    euler_err = max(np.abs(a - b).max() for a, b in zip(euler, ref) if len(a) and len(a) == len(b))
    assert euler_err > 0.05, euler_err


# the tiny network's B gets its only inhibitory inputs (A's one spike) in the first steps of the 30 ms run: the
# estimator's replays cannot resolve B's open-loop response to inhibition over the settled part, and it says so
# (RecurrentGradientWarning); these tests are about vmap == loop and the gradient's sign
@pytest.mark.filterwarnings("ignore:the mean-field gradient estimator could not calibrate population")
def test_exp_euler_vmap_equals_loop_with_mean_field_gradient(tiny_exp):
    """One vmapped value-and-gradient program with a surrogate (the mean-field estimator, the default)
    over the A->B weight scale: each row equals the single run without surrogate, and the first row's
    gradient the unbatched gradient (vmap == loop); the gradient of B's rate with respect to the inhibitory
    weight is finite and negative."""
    def rate(scale):
        res = tiny_exp(scale, jl.surrogates.fast_sigmoid())
        return res.spikes["B"].mean() * 1000.0 / DT, res

    (value, out), grad = jax.tree.map(np.asarray, jax.jit(jax.vmap(jax.value_and_grad(rate, has_aux=True)))(
        np.array([1.0, 3.0], np.float32)))             # NumPy arrays: rows cut without compiling
    for row, scale in enumerate((1.0, 3.0)):
        single = tiny_exp(scale)
        np.testing.assert_array_equal(np.asarray(out.spikes["B"][row]) > 0, single.spikes["B"])
        for field in ("spike_offset", "v", "g_I"):
            np.testing.assert_allclose(np.asarray(getattr(out, field)["B"][row], float),
                                       np.asarray(getattr(single, field)["B"], float), atol=1e-4, err_msg=field)
        assert np.isfinite(grad[row]) and grad[row] < 0, grad
    assert value[0] > value[1] > 0
    # jitted: one program (without jit, the gradient of the jitted simulator is split into a forward and a
    # backward program and a dozen operations compiled one by one: about 0.5 CPU-s more, 2026-12-07)
    np.testing.assert_allclose(jax.jit(jax.grad(lambda s: rate(s)[0]))(1.0), grad[0], rtol=1e-5)


def test_euler_instability_poisons_and_warns_a_network(tiny_checked, tiny_runs, tiny_exp):
    """Forward Euler beyond its stable range (dt (g_L + g_E + g_I) / C > 1) in a network: 3000 nS of input
    poisons the run with a warning; tau_m = dt (a valid value, factor 1 + g/g_L) raises in checked mode;
    the same inputs under exp_euler are finite; a normal run (tiny_runs) is not poisoned."""
    from jaxlif._stability import EulerUnstableWarning
    with pytest.warns(EulerUnstableWarning, match="stable range"):
        bad = _tiny(10.0, scale=1000.0)
    assert all(np.asarray(bad.spikes[n]).all() for n in ("A", "B")) and np.isnan(bad.v["B"]).all()
    with pytest.raises(ValueError, match="forward Euler left its stable range"):
        tiny_checked(np.float32(DT))
    hard = tiny_exp(1.0, g_E=1000.0 * G_TINY)                       # the program of the exp_euler tests above
    v = np.asarray(hard.v["B"])
    assert np.isfinite(v).all() and v.max() <= 0.0                   # never above E_E = 0 mV
    assert not np.asarray(tiny_runs[10.0].spikes["B"]).all()


# ----------------------------------------------------------------------------------------------
# Delivery: event == full, values and derivatives
# ----------------------------------------------------------------------------------------------


def test_event_and_full_delivery_agree_with_derivatives(x64):
    """Dense and sparse layouts (one delay, or one per synapse), event and full methods: values against
    the sum written out, and equal jvp and gradients (one compiled program for all six)."""
    rng = np.random.default_rng(4)
    n_pre, n_post, width, D, it = 9, 7, 4, 5, 11
    x = np.where(rng.random(n_pre) < 0.5, rng.uniform(0.2, 1.0, n_pre), 0.0)
    W_sparse, W_dense = rng.uniform(0, 2, (n_pre, width)), rng.uniform(0, 2, (n_post, n_pre))
    targets = rng.integers(0, n_post + 1, (n_pre, width)).astype(np.int32)      # n_post: padding
    delays = rng.integers(1, D + 1, (n_pre, width)).astype(np.int32)
    pending = rng.uniform(0, 1, (D, n_post + 3))                # targets are neurons 1 .. n_post of 10
    cot = rng.normal(size=pending.shape)
    tangents = {True: (rng.normal(size=pending.shape), rng.normal(size=n_pre), rng.normal(size=W_sparse.shape)),
                False: (rng.normal(size=pending.shape), rng.normal(size=n_pre), rng.normal(size=W_dense.shape))}

    cases = {"sparse, delay per synapse": (True, 0), "sparse, one delay": (True, 3), "dense": (False, 3)}

    @jax.jit
    def all_cases(pending, x, W_sparse, W_dense):
        rows = dl.active_rows(x != 0, 2)
        out = {}
        for case, (sparse, delay) in cases.items():
            W, aux = (W_sparse, (targets, delays if delay == 0 else np.full_like(delays, delay))) if sparse \
                else (W_dense, (None, None))
            for m in ("event", "full"):
                f = lambda p, x, W, m=m, sparse=sparse, delay=delay, aux=aux: dl.deliver(  # noqa: E731
                    dl.Layout(sparse, D, delay, m, 2, 1, n_post), p, x, W, *aux, rows, it)
                out[case, m] = (f(pending, x, W), jax.jvp(f, (pending, x, W), tangents[sparse])[1],
                                jax.grad(lambda *a: jnp.sum(cot * f(*a)), argnums=(0, 1, 2))(pending, x, W))
        return out

    out = jax.tree.map(np.asarray, all_cases(pending, x, W_sparse, W_dense))   # NumPy: indexed without compiling
    for case, (sparse, delay) in cases.items():
        ref = pending.copy()            # the sum over synapses, written out
        for j in range(n_pre):
            for c in range(width if sparse else n_post):
                post, d, w = ((targets[j, c], delay or delays[j, c], W_sparse[j, c]) if sparse
                              else (c, delay, W_dense[c, j]))
                if post < n_post:
                    ref[(it + d) % D, 1 + post] += x[j] * w
        np.testing.assert_allclose(out[case, "event"][0], ref, rtol=1e-14, err_msg=case)
        for a, b in zip(jax.tree.leaves(out[case, "event"]), jax.tree.leaves(out[case, "full"])):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-14, err_msg=case)
        assert np.abs(out[case, "event"][2][1][x == 0]).sum() > 0   # silent neurons get the full-sum derivative


# ----------------------------------------------------------------------------------------------
# Building blocks and argument checks (no simulation)
# ----------------------------------------------------------------------------------------------


def test_network_init_broadcasts_each_population():
    net = small_network()
    state = rest(small_network)                                  # network_init(net), jitted
    assert state.neuron.v.shape == (N_E + N_I,) and state.pending_E.shape == (4, N_E + N_I)
    v = np.asarray(state.neuron.v)                               # cut in NumPy: nothing to compile
    np.testing.assert_allclose(v[:N_E], net.populations[0].neuron.V_init)
    np.testing.assert_allclose(v[N_E:], -60.0)
    assert state.synapses[0].u.shape == (N_E,) and state.synapses[1].u.shape == (N_I, N_E)
    assert state.synapses[2].R.shape == np.shape(net.projections[2].weights)
    assert net.offsets == {"E": 0, "I": N_E} and net.max_delay == 4


def test_sparse_layout_keeps_every_edge_and_dense_equals_sparse():
    k = jax.random.key(2)
    sp = nw.random_projection(k, "E", "I", n_pre=20, n_post=20, p=0.3, weight=0.7, delay=2)
    de = nw.random_projection(k, "E", "I", n_pre=20, n_post=20, p=0.3, weight=0.7, delay=2, sparse=False)
    pre, post, w, d = sp.edges()
    W = np.zeros((20, 20))
    np.add.at(W, (post, pre), w)
    np.testing.assert_array_equal(W, de.weights)
    assert np.all(d == 2) and 0.2 < len(pre) / 400 < 0.4 and np.any(pre == post)
    rec = nw.random_projection(k, "E", "E", n_pre=20, n_post=20, p=1.0, weight=1.0)
    assert len(rec.edges()[0]) == 20 * 19                        # no autapses within a population


@pytest.mark.parametrize("change, match", [
    (lambda n: dataclasses.replace(n, projections=(dataclasses.replace(n.projections[0], pre="X"),)),
     r"projections\[0\]\.pre='X' is not a population"),
    (lambda n: dataclasses.replace(n, populations=(n.populations[0], dataclasses.replace(n.populations[1], name="A"))),
     "unique names"),
    (lambda n: dataclasses.replace(n, projections=(nw.dense_projection("B", "B", np.ones((6, 6))),
                                                   dataclasses.replace(n.projections[0], weights=-W_AB[:, None]))),
     r"projections\[1\] \(A->B\)\.weights=.* nS must be >= 0"),
    (lambda n: dataclasses.replace(n, projections=(nw.dense_projection("B", "B", np.ones((5, 6))),)),
     r"weights has shape \(5, 6\), expected \(n_post, n_pre\) = \(6, 6\)"),
    (lambda n: dataclasses.replace(n, populations=(n.populations[0], dataclasses.replace(
        n.populations[1], neuron=jl.LIFParams(tau_m=np.ones(4) * 10.0)))), r"neuron\.tau_m has shape \(4,\)"),
    (lambda n: dataclasses.replace(n, populations=(n.populations[0], dataclasses.replace(
        n.populations[1], drive=nw.PoissonDrive(rate=2e4)))), r"drive\.rate=20000.0 Hz .* gives p"),
    (lambda n: dataclasses.replace(n, populations=(n.populations[0], dataclasses.replace(
        n.populations[1], inh=nw.Receptor(0.01, -80.0)))), r"inh\.tau_syn=0\.01 ms is below the time step"),
])
def test_invalid_networks_are_refused_naming_the_field(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nw.simulate_network(jax.random.key(0), change(tiny_network()), T=5.0, dt=DT)


def test_builders_refuse_bad_arguments():
    with pytest.raises(ValueError, match="delay=0 steps must be >= 1"):
        nw.sparse_projection("A", "B", [0], [0], 1.0, n_pre=1, n_post=1, delay=0)
    with pytest.raises(ValueError, match=r"delay=0 must be >= 1"):
        nw.dense_projection("A", "B", np.ones((2, 2)), delay=0)
    with pytest.raises(ValueError, match=r"post_index has values in \[0, 3\], outside \[0, 2\]"):
        nw.sparse_projection("A", "B", [0, 0], [0, 3], 1.0, n_pre=1, n_post=3)
    with pytest.raises(ValueError, match="receptor='gaba' must be one of"):
        nw.dense_projection("A", "B", np.ones((2, 2)), receptor="gaba")
    with pytest.raises(ValueError, match=r"weights must be a scalar or have one value per edge, shape \(2,\)"):
        nw.sparse_projection("A", "B", [0, 0], [0, 1], [1.0, 2.0, 3.0], n_pre=1, n_post=2)
    with pytest.raises(ValueError, match="p=1.5 must be a probability"):
        nw.random_edges(jax.random.key(0), 3, 3, 1.5)
    with pytest.raises(ValueError, match=r"inputs\['B'\]\.g_E must have shape"):
        nw.simulate_network(None, tiny_network(), T=5.0, dt=DT, inputs={"B": nw.NetworkInput(g_E=np.ones((6, 3)))})
    with pytest.raises(ValueError, match=r"inputs has entries \['C'\]"):
        nw.simulate_network(None, tiny_network(), T=5.0, dt=DT, inputs={"C": nw.NetworkInput()})
    with pytest.raises(ValueError, match="state does not fit this network"):
        nw.simulate_network(None, tiny_network(), T=5.0, dt=DT, state=rest(small_network))
    with pytest.raises(TypeError, match="key must be a jax.random key"):
        nw.simulate_network(None, small_network(), T=5.0, dt=DT)
