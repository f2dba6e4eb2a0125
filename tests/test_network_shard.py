"""A network partitioned over devices (``jaxlif.network.simulate_network_sharded``) gives exactly the
one-device results of ``simulate_network``: spikes, voltages, conductances, plasticity traces and the
final state, bit for bit.

The network mixes every layout the sharded delivery handles: a sparse projection with one delay and
depressing synapses (one ``u, R`` per presynaptic neuron, released by the device that owns the neuron),
a dense projection with facilitating synapses, a sparse projection with one delay per synapse and
repeated synapses between one pair (several additions to one slot, whose order must be kept), and a
static sparse projection; populations that differ (per-neuron thresholds, receptors, drives); with a
Poisson drive and given inputs (a conductance train, a current per neuron); the float64 run also continues
from its final state, and a slow variant runs a population without drive with ``record=False`` and the
parameters traced under ``jax.jit``.  Devices are made in child processes
(``XLA_FLAGS=--xla_force_host_platform_device_count``, which must be set before jax is imported; see
``processes.py``): four devices in one process, and two ``jax.distributed`` processes (gloo) of two
devices each.  The children write their results to a file; this process runs the one-device reference
(compiled with the same settings as the children: the suite's).  The default tier runs the four-device
child (one process); the two-process, float64 and variant children are ``slow`` (further processes that compile
on their own; docs/performance.md).
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxlif as jl
from jaxlif import network as nw
from jaxlif.grid import n_steps
from processes import DISTRIBUTED_HEADER, ROOT, child_env, run_children

DT, T, SEED = 0.1, 60.0, 7


def mixed_network():
    """48 E + 16 I neurons (divisible by 4 devices), the four projections of the module docstring; the
    smallest delay is 4 steps (windows of 3 steps), the ring 9 steps long."""
    n = {"E": 48, "I": 16}
    # the populations differ (per-neuron thresholds in E, other receptors and drive in I), so that a per-neuron
    # parameter or drive entry on the wrong device changes the result
    pops = (nw.Population("E", n["E"], jl.LIFParams(V_th=np.linspace(-56.0, -54.0, n["E"])), nw.Receptor(5.0, 0.0),
                          nw.Receptor(10.0, -80.0), nw.PoissonDrive(rate=20.0, weight=1.0, n=100, receptor="exc")),
            nw.Population("I", n["I"], jl.LIFParams(), nw.Receptor(4.0, 0.0), nw.Receptor(8.0, -80.0),
                          nw.PoissonDrive(rate=25.0, weight=0.8, n=100, receptor="exc")))
    # Bernoulli connectivity (p = 0.2 E->E and E->I, 0.3 I->I, no autapses) drawn in NumPy: jax.random draws
    # compiled a few programs here and again in each child (about 0.3 CPU-s per process, 2026-12-07)
    draw = np.random.default_rng(SEED + 1)

    def bernoulli(n_pre, n_post, p):
        mask = draw.random((n_post, n_pre)) < p
        if n_pre == n_post:
            np.fill_diagonal(mask, False)
        return mask

    post_ee, pre_ee = np.nonzero(bernoulli(48, 48, 0.2))
    ee = nw.sparse_projection("E", "E", pre_ee, post_ee, 3.0, n_pre=48, n_post=48, delay=5,
                              stp=jl.STPParams(U0=0.5, tau_d=100.0, tau_f=50.0))
    ei = nw.dense_projection("E", "I", np.where(bernoulli(48, 16, 0.2), 2.0, 0.0), delay=6,
                             stp=jl.STPParams(U0=0.2, tau_d=50.0, tau_f=200.0))
    rng = np.random.default_rng(SEED)
    pre, post = rng.integers(0, 16, 200), rng.integers(0, 48, 200)              # repeated pairs included
    weights, delays = rng.uniform(4.0, 10.0, 200), rng.integers(4, 10, 200)
    # and three synapses from every I neuron onto one E neuron with one delay: three additions to one slot
    # from one spike, whose sum rounds differently in another order (the partition must keep the rows' order)
    pre[:48], post[:48], delays[:48] = np.repeat(np.arange(16), 3), np.repeat(post[:16], 3), np.repeat(delays[:16], 3)
    ie = nw.sparse_projection("I", "E", pre, post, weights, n_pre=16, n_post=48, receptor="inh", delay=delays)
    post_ii, pre_ii = np.nonzero(bernoulli(16, 16, 0.3))
    ii = nw.sparse_projection("I", "I", pre_ii, post_ii, 6.0, n_pre=16, n_post=16, receptor="inh", delay=4)
    # the thresholds and weights rounded to the default float type by NumPy, as partition would round them:
    # partition's jnp.asarray compiled a conversion program per array shape, 5 in this process and 5 in the
    # child (2026-12-07)
    pops = (dataclasses.replace(pops[0], neuron=pops[0].neuron._replace(V_th=_default_float(pops[0].neuron.V_th))),
            pops[1])
    return nw.Network(pops, tuple(dataclasses.replace(q, weights=_default_float(q.weights)) for q in (ee, ei, ie, ii)))


def _default_float(x) -> np.ndarray:
    """``x`` as a NumPy array of the default float type (float32; float64 under ``jax_enable_x64``)."""
    return np.asarray(x, jax.dtypes.canonicalize_dtype(np.float64))


def network_inputs() -> dict:
    """Given inputs that every run here takes: a conductance train onto E, a current per I neuron (both
    permuted onto the devices), in the default float type (rounded by NumPy: nothing to compile)."""
    rng = np.random.default_rng(SEED)
    return {"E": nw.NetworkInput(g_E=_default_float(rng.uniform(0.0, 0.3, (48, n_steps(T, DT))))),
            "I": nw.NetworkInput(I_inj=_default_float(rng.uniform(0.0, 40.0, 16)))}


def _runs(simulate, **kw) -> dict:
    """The leaves of a run from rest (with the given inputs); with ``continued``, also of a second run that
    continues it from its final state with another drive key (the same compiled program)."""
    continued = kw.pop("continued", False)
    first = simulate(jax.random.key(SEED), mixed_network(), T=T, dt=DT, inputs=network_inputs(), **kw)
    leaves = _leaves(first)
    if continued:
        second = simulate(jax.random.key(SEED + 1), mixed_network(), T=T, dt=DT, inputs=network_inputs(),
                          state=first.state, **kw)
        leaves.update({"second" + name: x for name, x in _leaves(second).items()})
    return leaves


def _variants(simulate, **kw) -> dict:
    """The leaves of two further runs: the I population without its drive, recording only the spikes
    (``record=False``); and under ``jax.jit`` with the parameters (plasticity included) traced."""
    key, net = jax.random.key(SEED), mixed_network()
    undriven = nw.Network((net.populations[0], dataclasses.replace(net.populations[1], drive=None)), net.projections)
    first = simulate(key, undriven, T=T, dt=DT, inputs=network_inputs(), record=False, **kw)
    structure, params = nw.partition(net)
    traced = jax.jit(lambda p: simulate(key, structure, p, T=T, dt=DT, inputs=network_inputs(), **kw).spikes)(params)
    return {**{"undriven" + k: x for k, x in _leaves(first).items()},
            **{"traced" + k: x for k, x in _leaves(traced).items()}}


def _leaves(result) -> dict:
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(result)[0]}


_RUN = textwrap.dedent("""
    import numpy as np
    import jax
    sys.path.insert(0, %(tests)r)
    from test_network_shard import _runs, _variants
    from jaxlif import network as nw
    out, x64 = sys.argv[3], sys.argv[4] == "x64"
    if x64:
        jax.config.update("jax_enable_x64", True)
    kw = dict(integrator="exp_euler", continued=True) if x64 else {}
    mesh = nw.network_mesh()
    assert mesh.devices.size == 4, jax.devices()
    if sys.argv[5:] == ["variants"]:
        leaves = _variants(nw.simulate_network_sharded, mesh=mesh)
    else:
        leaves = _runs(nw.simulate_network_sharded, mesh=mesh, **kw)
    if jax.process_index() == 0:
        np.savez(out, **leaves)
""") % dict(tests=str(ROOT / "tests"))


@pytest.fixture(scope="module")
def reference():
    """The one-device run (float32, Euler) that the children's runs must equal."""
    net = mixed_network()
    assert nw.window.window_length(net) == 3 and net.max_delay == 9
    leaves = _runs(nw.simulate_network)
    counts = {k: int(leaves[f".spikes[{k!r}]"].sum()) for k in ("E", "I")}
    assert counts["E"] > 20 and counts["I"] > 20, counts              # every projection carries spikes
    return leaves


def _assert_equal(reference: dict, path, least: int = 20) -> None:
    got = np.load(path)
    assert sorted(got.files) == sorted(reference)
    assert len(reference) > least                                      # traces, plasticity, final state
    for name, want in reference.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_four_devices_equal_one_device(reference, tmp_path):
    out = tmp_path / "four.npz"
    run_children("import sys\n" + _RUN, [str(out), "x32"], 1, child_env(4))
    _assert_equal(reference, out)


@pytest.mark.slow          # two more processes that import jax and compile, about 15 CPU-s (docs/performance.md)
def test_two_processes_equal_one_device(reference, tmp_path):
    """Two ``jax.distributed`` processes (gloo) of two devices each: a mesh of four devices over two hosts."""
    out = tmp_path / "two.npz"
    run_children(DISTRIBUTED_HEADER % dict(num_processes=2) + _RUN, [str(out), "x32"], 2, child_env(2))
    _assert_equal(reference, out)


@pytest.mark.slow          # a second pair of compiled programs (float64, exp_euler, two runs), about 20 CPU-s
def test_four_devices_equal_one_device_float64_exp_euler(tmp_path, x64):
    out = tmp_path / "four64.npz"
    run_children("import sys\n" + _RUN, [str(out), "x64"], 1, child_env(4))
    want = _runs(nw.simulate_network, integrator="exp_euler", continued=True)
    assert want[".v['E']"].dtype == np.float64 and want[".spike_offset['E']"].max() > 0
    assert want["second.state.step"] == 2 * (n_steps(T, DT) - 1)
    _assert_equal(want, out)


@pytest.mark.slow          # two more programs compiled in the child and here, about 20 CPU-s
def test_four_devices_variants_equal_one_device(tmp_path):
    """A population without drive with ``record=False``, and traced parameters under ``jax.jit``."""
    out = tmp_path / "variants.npz"
    run_children("import sys\n" + _RUN, [str(out), "x32", "variants"], 1, child_env(4))
    want = _variants(nw.simulate_network)
    assert "undriven.v['E']" not in want and "undriven.state.synapses[0].u" in want       # record=False
    assert want["undriven.spikes['I']"].sum() > 0 and want["traced['I']"].sum() > 0
    _assert_equal(want, out, least=12)


@pytest.mark.slow          # the benchmark script end to end at its --quick size (3 programs, about 40 s)
def test_bench_network_shard_quick(tmp_path):
    """benchmarks/bench_network_shard.py --quick: two devices, the three runs equal bit for bit, its section
    written to the given folder's BENCHMARKS.md."""
    script = "import sys\nfrom benchmarks import bench_network_shard as b\nb.main(sys.argv[3:])\n"
    run_children(script, ["--quick", "--repeats", "1", "--out", str(tmp_path)], 1, child_env(2))
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- begin:network-shard -->" in text and "bit for bit, in every round" in text
    assert text.count("| simulate_network") == 3


def test_refusals():
    """What the sharded simulator does not support is refused before tracing, naming the reason."""
    net = mixed_network()
    mesh = nw.network_mesh()
    key = jax.random.key(0)
    run = lambda n, **kw: nw.simulate_network_sharded(key, n, T=10.0, dt=DT, **kw)  # noqa: E731
    with pytest.raises(ValueError, match="at least 3 steps"):        # built in NumPy: no random draws to compile
        run(nw.Network(net.populations, (nw.dense_projection("I", "I", np.ones((16, 16)), delay=2),)), mesh=mesh)
    with pytest.raises(ValueError, match="stp_mode='synapse'"):
        per_synapse = dataclasses.replace(net.projections[0], stp_mode="synapse")
        run(nw.Network(net.populations, (per_synapse,) + net.projections[1:]), mesh=mesh)
    with pytest.raises(ValueError, match="per-neuron parameters"):
        per_neuron = dataclasses.replace(net.projections[0], stp=jl.STPParams(U0=_default_float(np.full(48, 0.5))))
        run(nw.Network(net.populations, (per_neuron,) + net.projections[1:]), mesh=mesh)
    with pytest.raises(ValueError, match=r"targets is traced"):
        structure, params = nw.partition(net)
        jax.jit(lambda st: run(st, params=params, mesh=mesh).spikes)(structure)
    with pytest.raises(ValueError, match="at least 2 samples"):
        nw.simulate_network_sharded(key, net, T=0.1, dt=DT, mesh=mesh)
    with pytest.raises(ValueError, match="one-axis"):
        run(net, mesh=jax.sharding.Mesh(np.asarray(jax.devices()).reshape(1, -1), ("a", "b")))
    with pytest.raises(ValueError, match="at least one device"):
        run(net, mesh=jax.sharding.Mesh(np.zeros(0, object), ("neurons",)))
    for devices in ([], "cpu"):
        with pytest.raises(ValueError, match="non-empty sequence of jax.Device"):
            nw.network_mesh(devices)
    with pytest.raises(ValueError, match="not divisible"):
        run(net, mesh=_fake_mesh(5))


def test_partition_keeps_each_rows_order():
    """Each device's share of a sparse row holds the row's synapses onto the device's block in the row's
    order (a Python loop as the oracle), padding elsewhere; the cache is keyed by the targets' content."""
    rng = np.random.default_rng(SEED)
    n_post, n_dev, block = 12, 3, 4
    targets = rng.integers(0, n_post + 1, (6, 9))               # n_post: padding
    targets[2] = n_post                                          # a row without synapses
    targets[3, :5] = 5                                           # repeated targets on one device
    index = nw.shard._partition(targets, n_post, n_dev)
    assert index.cols.shape == index.targets.shape == index.valid.shape
    for p in range(n_dev):
        for j in range(targets.shape[0]):
            mine = [c for c in range(targets.shape[1]) if targets[j, c] < n_post and targets[j, c] // block == p]
            valid = index.valid[p, j]
            assert valid.tolist() == [True] * len(mine) + [False] * (valid.size - len(mine))
            assert index.cols[p, j, valid].tolist() == mine
            assert index.targets[p, j, valid].tolist() == [targets[j, c] - p * block for c in mine]
            assert (index.targets[p, j, ~valid] == block).all()
    proj = mixed_network().projections[2]
    first = nw.shard._device_index(proj, 4)
    changed = np.array(proj.targets)
    changed[0, 0] = (changed[0, 0] + 12) % 48                    # the same shape, another device
    again = nw.shard._device_index(dataclasses.replace(proj, targets=changed), 4)
    for a, b, c in zip(first, again, nw.shard._partition(changed, 48, 4)):
        np.testing.assert_array_equal(b, c)
    assert not np.array_equal(first.targets, again.targets)


def _fake_mesh(n_dev: int):
    """A one-axis mesh of ``n_dev`` entries for the divisibility check (refused before anything runs)."""
    return jax.sharding.Mesh(np.asarray([jax.devices()[0]] * n_dev), ("neurons",))


if __name__ == "__main__":        # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-n", "0"]))
