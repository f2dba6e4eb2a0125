"""Several devices and several processes give exactly the single-device results of the batch simulators.

A child process with four CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=4``) runs a batch
simulator over the four-device mesh (``jaxlif.batch.batch_mesh()``), one neuron per device and call (two
calls), gathers the per-neuron results and writes them to a file; this process runs the same calls on its
own device and compares bit for bit: the draws of neuron ``b`` are addressed by ``b`` alone, so neither
devices, processes nor calls may change a spike, a trace or a count.  (The streamed means and standard
deviations are sums that another compiled program may round differently: they are held to 1e-6 relative.)
``pytest -q`` runs the STP-LIF simulator (per-synapse events) on four devices of one process; the slow
tier runs both batch simulators over two ``jax.distributed`` processes of two devices each (``gloo`` CPU
collectives, a coordinator on 127.0.0.1, gathered with ``process_allgather``; the second process and the
collectives cost about 7 CPU-s more).

The children compile with XLA's default flags, this process with the suite's code generator flags
(``conftest.TEST_XLA_FLAGS``, XLA:CPU's per-operation code generator, which compiles faster) but with
LLVM's optimisations on (the ``users_programs`` fixture; the rest of the suite turns them off, which
moves the last bit of a voltage trace): the same comparison shows that the suite's code generator
computes the users' numbers (bit for bit, the streamed means and stds to 1e-6 as above).
"""

from __future__ import annotations

import textwrap

import jax
import numpy as np
import pytest

from jaxlif import batch as jb
from processes import DISTRIBUTED_HEADER, child_env, run_children

# test_batch.py's shared configuration (8 neurons, 1 s, every statistic): the single-device reference
# reuses its compiled programs when both modules run in one session
B, T, SEED = 8, 1000.0, 2024
STATS = jb.Stats(burn_in=200.0, isi_cv=True, v=True, g=True, spike_times=16)

#: The child: its devices run the calls, the gathered results go to ``argv[3]`` (process 0 writes).
_BODY = textwrap.dedent("""
    out = sys.argv[3]
    import numpy as np
    from jax.experimental import multihost_utils
    from jaxlif import batch as jb
    from jaxlif.batch import devices as jbd
    assert (jax.process_count(), len(jax.devices()), len(jax.local_devices())) == %(layout)r
    jbd._CALL_STEPS = 4 * 10000             # one neuron per device and call: 2 calls for 8 neurons
    stats = jb.Stats(burn_in=200.0, isi_cv=True, v=True, g=True, spike_times=16)
    arrays = {}
    for name in sys.argv[4].split(","):
        res = getattr(jb, name)(jax.random.key(%(seed)d), %(B)d, T=%(T)r, stats=stats, batch_chunk=1, record=True)
        gathered = multihost_utils.process_allgather(res, tiled=True)
        for i, leaf in enumerate(jax.tree.leaves(gathered)):
            arrays[f"{name}_{i}"] = np.asarray(leaf)
    if pid == 0:
        np.savez(out, **arrays)
""")
_ONE_PROCESS = "import sys\nimport jax\nport, pid = sys.argv[1], int(sys.argv[2])\n" + _BODY % dict(
    layout=(1, 4, 4), seed=SEED, B=B, T=T)
_TWO_PROCESSES = DISTRIBUTED_HEADER % dict(num_processes=2) + _BODY % dict(
    layout=(2, 4, 2), seed=SEED, B=B, T=T) + "jax.distributed.shutdown()\n"


def _compare(name, gathered):
    """This process's devices (one, unless XLA_FLAGS says otherwise) against the gathered results: the call
    of test_batch.py's shared fixture, compiled once per session."""
    single = getattr(jb, name)(jax.random.key(SEED), B, T=T, stats=STATS, record=True)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(single)[0]]
    assert len(paths) == 13 and single.spike_count.sum() > 0
    for i, (path, leaf) in enumerate(zip(paths, jax.tree.leaves(single))):
        if path.split(".")[-1] in ("v_mean", "v_std", "g_E_mean", "g_I_mean"):
            np.testing.assert_allclose(np.asarray(leaf), gathered[f"{name}_{i}"], rtol=1e-6, err_msg=path)
        else:
            np.testing.assert_array_equal(np.asarray(leaf), gathered[f"{name}_{i}"], err_msg=f"{name}{path}")


@pytest.mark.usefixtures("users_programs")
def test_four_devices_equal_one_device(tmp_path):
    out = tmp_path / "gathered.npz"
    run_children(_ONE_PROCESS, [str(out), "simulate_stp_lif_batch"], 1, child_env(4, users_programs=True))
    _compare("simulate_stp_lif_batch", np.load(out))


@pytest.mark.slow
@pytest.mark.usefixtures("users_programs")
@pytest.mark.parametrize("name", ["simulate_stp_lif_batch", "simulate_cond_lif_batch"])
def test_two_processes_equal_one_device(tmp_path, name):
    out = tmp_path / "gathered.npz"
    run_children(_TWO_PROCESSES, [str(out), name], 2, child_env(2, users_programs=True))
    _compare(name, np.load(out))
