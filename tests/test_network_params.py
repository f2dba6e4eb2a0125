"""A network split into structure and parameters (``jaxlif.network.partition``): the parameter tree is all
floats and works with ``jax.grad``, optax, equinox and ``jaxlif.constraints``; a new value, a new
connectivity of the same sizes, a new drive rate or a Python/NumPy scalar compiles nothing; the drive
sampler's bisection equals the direct count; the padded-row width bound is the binomial quantile.

One small E/I network shape (40 E + 10 I, p = 0.2, 60 ms) serves every test that simulates.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.extend.random import threefry_2x32
from scipy import stats

import jaxlif as jl
from jaxlif import constraints as C
from jaxlif import network as nw
from jaxlif.surrogates import fast_sigmoid

# The whole-tree gradients include the drive rates, whose derivative is zero by design (Poisson draws are not
# reparameterised): the library warns once per traced program (tested in test_gradients.py).
pytestmark = pytest.mark.filterwarnings("ignore:the gradient with respect to rate is zero")

DT, T = 0.1, 60.0
SIZES = dict(n_E=40, n_I=10, p=0.2)


def make(seed=0, **kw):
    """The network of ``test_network_gradients.py`` (a new ``seed``: new connectivity), run for the same ``T``: the
    gradient program over the whole tree (``rate_loss``) and the plain run are the same programs in both files."""
    return nw.ei_network(jax.random.key(seed), **SIZES, **{"drive_weight": 1.2, **kw})


def rate_loss(params, structure, key=jax.random.key(3)):
    res = nw.simulate_network(key, structure, params, T=T, dt=DT, spike_grad=fast_sigmoid(), record=False)
    return res.spikes["E"].mean() + 0.5 * res.spikes["I"].mean()


@pytest.fixture(scope="module")
def split():
    return nw.partition(make())


def test_params_are_floats_and_structure_holds_the_indices(split):
    structure, params = split
    leaves = jax.tree.leaves(params)
    assert leaves and all(x.dtype == jnp.result_type(float) for x in leaves)
    assert sorted(params.populations) == ["E", "I"]
    assert sorted(params.projections) == ["E->E", "E->I", "I->E", "I->I"]
    assert params.projections["E->E"].stp is not None and params.projections["I->E"].stp is None
    assert all(x.dtype == jnp.int32 for x in jax.tree.leaves(structure))
    assert nw.projection_keys(structure) == ("E->E", "E->I", "I->E", "I->I")


def test_combine_inverts_partition_and_runs_the_same(split):
    structure, params = split
    net = make()
    key = jax.random.key(4)
    a = nw.simulate_network(key, net, T=T, dt=DT, record=False).spikes
    b = nw.simulate_network(key, structure, params, T=T, dt=DT, record=False).spikes
    c = nw.simulate_network(key, nw.combine(structure, params), T=T, dt=DT, record=False).spikes
    assert sum(int(x.sum()) for x in a.values()) > 0
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        np.testing.assert_array_equal(a[name], c[name])


def test_duplicate_projections_get_numbered_keys():
    E = nw.Population("E", 3)
    W = np.ones((3, 3))
    net = nw.Network((E,), (nw.dense_projection("E", "E", W), nw.dense_projection("E", "E", W, receptor="inh")))
    assert nw.projection_keys(net) == ("E->E", "E->E#2")
    structure, params = nw.partition(net)
    assert sorted(params.projections) == ["E->E", "E->E#2"]
    assert isinstance(nw.combine(structure, params).projections[1], nw.DenseProjection)


def test_errors_name_the_argument(split):
    structure, params = split
    with pytest.raises(TypeError, match="params is required"):
        nw.simulate_network(jax.random.key(0), structure, T=T, dt=DT)
    with pytest.raises(TypeError, match="params must be None"):
        nw.simulate_network(jax.random.key(0), make(), params, T=T, dt=DT)
    with pytest.raises(ValueError, match=r"params.projections must have the keys"):
        nw.combine(structure, params._replace(projections={"E->E": params.projections["E->E"]}))
    with pytest.raises(TypeError, match="structure must be"):
        nw.combine(make(), params)
    with pytest.raises(TypeError, match="net must be"):
        nw.partition(params)
    bad = params._replace(projections=dict(params.projections, **{
        "E->E": params.projections["E->E"]._replace(stp=jl.STPParams(1.5, 100.0, 50.0))}))
    with pytest.raises(ValueError, match=r"E->E.*stp.*U0"):
        nw.simulate_network(jax.random.key(0), structure, bad, T=T, dt=DT)


def test_grad_over_the_whole_tree_matches_the_network_path(split):
    """Every leaf gets a gradient, and the same one through a ``Network`` built from the traced tree (the path
    that existed before the split: ``simulate_network(key, combine(structure, params))``), bit for bit."""
    structure, params = split
    grads = jax.grad(rate_loss)(params, structure)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    # checked in NumPy (in jnp: 13 compilations of one operation each, one per leaf shape, 2026-12-07)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
    assert abs(float(grads.populations["E"].drive.weight)) > 0
    assert np.abs(np.asarray(grads.projections["I->E"].weights)).sum() > 0
    assert abs(float(grads.projections["E->E"].stp.U0)) > 0

    def via_network(p):
        res = nw.simulate_network(jax.random.key(3), nw.combine(structure, p), T=T, dt=DT,
                                  spike_grad=fast_sigmoid(), record=False)
        return res.spikes["E"].mean() + 0.5 * res.spikes["I"].mean()

    expected = jax.grad(via_network)(params)
    for name, a, b in zip(_leaf_names(params), jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)


def _leaf_names(tree) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def test_optax_and_constraints_train_the_tree(split):
    structure, params = split
    cons = C.default_constraints(params, dt=DT)
    assert cons.populations["E"].drive.rate == C.interval(0.0, 1000.0 / DT)
    assert cons.projections["E->E"].stp.U0 == C.unit_interval()
    # the maps and the optimiser's step jitted, as a training loop has them, and the comparisons in NumPy: 96
    # compilations of one operation each (one per operation and leaf shape) became 10 (1.9 -> 1.1 CPU-s, 2026-12-07)
    to_params = jax.jit(lambda th: C.from_unconstrained(th, cons))
    theta = jax.jit(lambda p: C.to_unconstrained(p, cons))(params)
    back = to_params(theta)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    opt = optax.adam(0.05)
    state = opt.init(theta)
    loss = lambda th: rate_loss(to_params(th), structure)  # noqa: E731

    @jax.jit
    def step(g, state, theta):
        updates, state = opt.update(g, state, theta)
        return optax.apply_updates(theta, updates), state

    for _ in range(2):
        g = jax.grad(loss)(theta)
        theta, state = step(g, state, theta)
    new = to_params(theta)
    nw.check_network(nw.combine(structure, new), DT)          # still valid
    moved = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(jax.tree.leaves(params),
                                                                                    jax.tree.leaves(new))]
    assert max(moved) > 0
    # padding and absent synapses stay at exactly 0 weight
    W0, W1 = np.asarray(params.projections["E->E"].weights), np.asarray(new.projections["E->E"].weights)
    assert np.all((W1 == 0) == (W0 == 0))


def test_equinox_filter_grad_sees_every_float(split):
    import equinox as eqx
    structure, params = split
    grads = eqx.filter_grad(rate_loss)(params, structure)
    assert len(jax.tree.leaves(grads)) == len(jax.tree.leaves(params))


def test_new_values_connectivity_rates_and_scalar_types_compile_nothing(split):
    structure, params = split
    key = jax.random.key(3)
    run = lambda s, p: nw.simulate_network(key, s, p, T=T, dt=DT, record=False).spikes["E"]  # noqa: E731
    run_net = lambda net: nw.simulate_network(key, net, T=T, dt=DT, record=False).spikes["E"]  # noqa: E731
    base = run(structure, params)
    run_net(make())
    changed = params._replace(populations=dict(params.populations, E=params.populations["E"]._replace(
        neuron=params.populations["E"].neuron._replace(tau_m=jnp.float32(12.0)))))
    results = []

    def new_values():
        results.append(run(*nw.partition(make(seed=7))))                        # new connectivity
        weights = {"E->E": 2, "I->E": np.float64(4.0)}
        run_net(make(seed=8, drive_rate=20, drive_weight=np.float64(1.2), weights=weights))   # int, float64, rate
        run_net(make(seed=9, stp=jl.STPParams(U0=0.3, tau_d=200, tau_f=20)))
        run(structure, changed)

    assert _compiles(new_values) == []
    jax.grad(rate_loss)(params, structure)          # compiles its own program once ...
    assert _compiles(lambda: jax.grad(rate_loss)(changed, nw.partition(make(seed=11))[0])) == []   # ... only once
    assert _compiles(lambda: jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(3)))   # the listener hears a new program
    other = results[0]
    assert not np.array_equal(base, other)


def make_synapse(seed=0, U0_seed=0):
    """``make(seed)`` with per-synapse plasticity on E->E (``stp_mode="synapse"``, U0 drawn per synapse)."""
    net = make(seed)
    EE = net.projections[0]
    U0 = np.random.default_rng(U0_seed).uniform(0.3, 0.6, np.shape(EE.weights))
    EE = dataclasses.replace(EE, stp_mode="synapse", stp=jl.STPParams(U0, 100.0, 50.0))
    return nw.Network(net.populations, (EE,) + net.projections[1:])


def _compiles(fn) -> list:
    """The compilation, tracing and lowering events heard while ``fn()`` runs."""
    events = []

    def listen(name, *args, **kwargs):
        if "compile" in name or "tracing" in name or "lower" in name:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        fn()
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return events


def test_per_synapse_plasticity_new_connectivity_and_values_compile_nothing():
    """``stp_mode="synapse"`` (u, R per synapse, advanced at presynaptic spikes): a new connectivity and
    new per-synapse values compile nothing (under ``jax.grad``: the slow test below)."""
    key = jax.random.key(3)
    run = lambda s, p: nw.simulate_network(key, s, p, T=T, dt=DT, record=False).spikes["E"]  # noqa: E731
    base = run(*nw.partition(make_synapse()))
    other = []
    assert _compiles(lambda: other.append(run(*nw.partition(make_synapse(seed=7, U0_seed=1))))) == []
    assert not np.array_equal(base, other[0]) and np.asarray(base).any()


@pytest.mark.slow
def test_per_synapse_plasticity_mean_field_gradient_event_equals_every_step():
    """``jax.grad`` with a surrogate (mean-field estimator) of a rate loss, float64, per-synapse E->E
    plasticity: the event-driven update (``delivery="event"``) and every synapse every step
    (``"full"``) give the same gradient tree to rounding; a new connectivity and new per-synapse values
    compile nothing."""
    def loss(params, structure, delivery):
        res = nw.simulate_network(jax.random.key(3), structure, params, T=T, dt=DT, spike_grad=fast_sigmoid(),
                                  record=False, delivery=delivery)
        return res.spikes["E"].mean() + 0.5 * res.spikes["I"].mean()

    with jax.enable_x64(True):
        structure, params = nw.partition(make_synapse())
        event, full = (jax.grad(loss)(params, structure, d) for d in ("event", "full"))
        assert _compiles(lambda: jax.grad(loss)(*nw.partition(make_synapse(8, 2))[::-1], "event")) == []
    for a, b in zip(jax.tree.leaves(event), jax.tree.leaves(full)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(np.asarray(b)).max())
    assert np.abs(np.asarray(event.projections["E->E"].stp.U0)).max() > 0


def _random_delays_network(seed, lo, hi, **kw):
    """20 driven neurons, 10 % connectivity, per-synapse delays drawn from [lo, hi] steps (rows 10 wide)."""
    rng = np.random.default_rng(seed)
    E = nw.Population("E", 20, neuron=jl.LIFParams(V_init=-56.0), drive=nw.PoissonDrive(rate=50.0, weight=0.5, n=100))
    post, pre = np.nonzero(rng.random((20, 20)) < 0.1)
    delays = rng.integers(lo, hi + 1, pre.size)
    delays[:2] = lo, hi
    EE = nw.sparse_projection("E", "E", pre, post, 1.0, n_pre=20, n_post=20, delay=delays, max_out=10, **kw)
    return nw.Network((E,), (EE,))


def test_declared_delay_bounds_fix_ring_and_window():
    """Per-synapse delays drawn from [3, 40]: the ring length (largest delay) and the min-delay window
    (smallest) follow the draw, so another draw compiles a new program; with ``delay_bounds=(3, 40)``
    they follow the bounds: new draws compile nothing, and the spikes equal the run without bounds."""
    from jaxlif.network import window
    key = jax.random.key(5)
    run = lambda net: nw.simulate_network(key, net, T=T, dt=DT, record=False).spikes["E"]  # noqa: E731
    free = _random_delays_network(0, 4, 39)
    bounded = _random_delays_network(0, 4, 39, delay_bounds=(3, 40))
    assert (window.window_length(free), free.max_delay) == (3, 39)
    assert (window.window_length(bounded), bounded.max_delay) == (2, 40)
    a, b = run(free), run(bounded)
    np.testing.assert_array_equal(a, b)
    assert np.asarray(a).sum() > 20
    assert _compiles(lambda: run(_random_delays_network(1, 3, 40, delay_bounds=(3, 40)))) == []
    assert _compiles(lambda: jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(3)))      # the listener hears programs
    again = _random_delays_network(1, 3, 40)              # without bounds: another window and ring, a new program
    assert (window.window_length(again), again.max_delay) == (2, 40)
    with pytest.raises(ValueError, match=r"delay has values in \[3, 40\] steps, outside delay_bounds=\(4, 40\)"):
        _random_delays_network(1, 3, 40, delay_bounds=(4, 40))


def test_bisected_drive_counts_equal_the_direct_count():
    """A drive whose counts exceed the directly compared entries (rate 3000 Hz x 100 trains: mean 30 per
    step): the counts equal ``#{k: V <= P(X > k)}`` over the whole table, computed here by brute force
    from the uniforms of the documented stream (``drive_uniform``: the 23 high bits of each word of
    ``threefry_2x32(key_data(fold_in(key, step)), arange(n))``), and follow Binomial(100, 0.3)."""
    pop = nw.Population("A", 500, drive=nw.PoissonDrive(rate=3000.0, weight=0.1, n=100))
    net = nw.Network((pop,))
    key = jax.random.key(2)
    counts = np.asarray(nw.drive_counts(key, net, T=1.0, dt=DT)["A"])          # (500, 10)
    # the table in one compiled program, as the sampler computes it in its own (with the window test's table below:
    # 58 compilations in these two tests, most of one operation each, became 15, 2026-12-07)
    tail = np.asarray(jax.jit(lambda: jax.lax.cummin(jl.inputs._binomial_tail(jl.inputs._p_spike(3000.0, DT), 100)))())
    for k in range(1, counts.shape[1]):
        words = np.asarray(threefry_2x32(jax.random.key_data(jax.random.fold_in(key, k)),
                                         jnp.arange(500, dtype=jnp.uint32)))
        v = (1.0 - (words >> 9).astype(np.float64) * 2.0 ** -23).astype(np.float32)    # both words of 250 hashes
        np.testing.assert_array_equal(counts[:, k], (v[:, None] <= tail[None, :]).sum(1))
    x = counts[:, 1:].ravel()
    assert abs(x.mean() - 30.0) < 4 * np.sqrt(21.0 / x.size)
    assert x.max() > 8


@pytest.mark.parametrize("rates", [(3000.0, 10.0), (10.0, 20.0)])
def test_window_drive_drawn_in_pairs_equals_the_step_draws(rates, monkeypatch):
    """A window's drive with each hash's two words counted in one kernel (``window.paired_head``, unpacked by
    ``paired_counts``) equals ``drive_draw`` step by step, and so does the draw from every word separately
    (``PAIRED = False``): an odd number of neurons (the last hash's second word unused), and a population
    at 3000 Hz whose counts pass the table's head (the rows bisected) or none that does."""
    pops = (nw.Population("A", 7, drive=nw.PoissonDrive(rate=rates[0], weight=0.1, n=100)),
            nw.Population("B", 6, drive=nw.PoissonDrive(rate=rates[1], weight=0.1, n=100)))
    table = jax.jit(lambda: nw.step.drive_table(nw.Network(pops), DT, jnp.float32))()   # one program (see above)
    key = jax.random.key(5)
    steps = jnp.arange(3, 8, dtype=jnp.int32)
    expected = np.asarray(_step_draws(table, key, steps))
    assert (expected.max() > 8) == (rates[0] > 1000.0)
    for paired in (True, False):
        monkeypatch.setattr(nw.window, "PAIRED", paired)
        block = _block_draws[paired](table, key, steps[0], 5)
        np.testing.assert_array_equal(np.asarray(block), expected)


# The programs of the test above, the table and key as arguments (both rates are one program).  One jitted function
# per value of ``window.PAIRED``, which is read when the function is traced: ``jax.jit(window.drive_draw_block)``
# made anew in the loop found the first value's program in JAX's cache (keyed on the function), so the second
# iteration ran PAIRED = True again (found 2026-12-07).
_step_draws = jax.jit(jax.vmap(nw.step.drive_draw, in_axes=(None, None, 0)))
_block_draws = {paired: jax.jit(lambda table, key, first, length: nw.window.drive_draw_block(table, key, first, length),
                                static_argnums=3) for paired in (True, False)}


def test_packed_spikes_unpack_to_the_neuron_major_raster():
    """``window.PackedSpikes``: windows of 11 steps packed into words, and a last window of 4, give back the
    raster neuron-major with its zero last column."""
    rng = np.random.default_rng(3)
    raster = rng.random((37, 5)) < 0.3                                 # (n_updates, n): 3 windows and 4 steps
    # packing and unpacking jitted, as the simulator runs them (20 compilations of one operation each became 2,
    # 2026-12-07)
    pack = jax.jit(nw.window.PackedSpikes.pack)
    words = [pack(jnp.asarray(raster[w * 11:(w + 1) * 11])) for w in range(3)]
    words.append(pack(jnp.asarray(np.pad(raster[33:], ((0, 7), (0, 0))))))
    packed = nw.window.PackedSpikes(np.stack(words), 11, 37)
    assert packed.words.dtype == jnp.uint16
    expected = np.concatenate([raster.T, np.zeros((5, 1), bool)], axis=1)
    unpacked = jax.jit(lambda p: p.neuron_major(1, 4, 38))(packed)
    np.testing.assert_array_equal(np.asarray(unpacked), expected[1:4])


@pytest.mark.parametrize("n_pre, n_post, p", [(3200, 3200, 0.1), (800, 200, 0.2), (50, 1000, 0.01)])
def test_out_degree_bound_is_the_binomial_quantile(n_pre, n_post, p):
    k = nw.out_degree_bound(n_pre, n_post, p)
    assert n_pre * stats.binom.sf(k, n_post, p) < 1e-6 <= n_pre * stats.binom.sf(k - 1, n_post, p)


def test_random_projection_width_is_the_bound_and_new_keys_keep_shapes():
    shapes = {nw.random_projection(jax.random.key(s), "E", "E", n_pre=200, n_post=200, p=0.1,
                                   weight=1.0).targets.shape for s in range(4)}
    assert shapes == {(200, nw.out_degree_bound(200, 200, 0.1))}
    with pytest.raises(ValueError, match="max_out=1 is below the largest out-degree"):
        nw.sparse_projection("A", "B", [0, 0], [0, 1], 1.0, n_pre=1, n_post=2, max_out=1)
