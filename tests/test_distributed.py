"""Several processes: ``jax.distributed`` with two CPU processes of two devices each gives exactly the
single-process, single-device results.

Two child processes (``XLA_FLAGS=--xla_force_host_platform_device_count=2``, so four devices in all)
join a coordinator on 127.0.0.1 (a free port) with ``gloo`` CPU collectives, run a batch
simulator over the four-device mesh (``jaxlif.batch.batch_mesh()``), one neuron per device and call
(two calls), gather
the per-neuron results with ``process_allgather`` and write them to a file.  This process runs the
same calls on its own device and compares bit for bit: the draws of neuron ``b`` are addressed by
``b`` alone, so neither devices, processes nor calls may change a spike, a trace or a count.  (The
streamed means and standard deviations are sums that another compiled program may round differently:
they are held to 1e-6 relative.)  ``pytest -q`` runs the STP-LIF simulator (per-synapse events);
the conductance-LIF one (pooled input; the same device code) is ``slow``, for time.

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

pytestmark = pytest.mark.usefixtures("users_programs")

# test_batch.py's shared configuration (8 neurons, 1 s, every statistic): the single-device reference
# reuses its compiled programs when both modules run in one session
B, T, SEED = 8, 1000.0, 2024
STATS = jb.Stats(burn_in=200.0, isi_cv=True, v=True, g=True, spike_times=16)

_CHILD = DISTRIBUTED_HEADER % dict(num_processes=2) + textwrap.dedent("""
    out = sys.argv[3]
    import numpy as np
    from jax.experimental import multihost_utils
    from jaxlif import batch as jb
    from jaxlif.batch import devices as jbd
    assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
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
    jax.distributed.shutdown()
""") % dict(seed=SEED, B=B, T=T)


@pytest.mark.parametrize("name", ["simulate_stp_lif_batch",
                                  pytest.param("simulate_cond_lif_batch", marks=pytest.mark.slow)])
def test_two_processes_equal_one_device(tmp_path, name):
    out = tmp_path / "gathered.npz"
    run_children(_CHILD, [str(out), name], 2, child_env(2, users_programs=True))
    gathered = np.load(out)
    # this process's devices (one, unless XLA_FLAGS says otherwise): the call of test_batch.py's
    # shared fixture, compiled once per session
    single = getattr(jb, name)(jax.random.key(SEED), B, T=T, stats=STATS, record=True)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(single)[0]]
    assert len(paths) == 13 and single.spike_count.sum() > 0
    for i, (path, leaf) in enumerate(zip(paths, jax.tree.leaves(single))):
        if path.split(".")[-1] in ("v_mean", "v_std", "g_E_mean", "g_I_mean"):
            np.testing.assert_allclose(np.asarray(leaf), gathered[f"{name}_{i}"], rtol=1e-6, err_msg=path)
        else:
            np.testing.assert_array_equal(np.asarray(leaf), gathered[f"{name}_{i}"], err_msg=f"{name}{path}")
