"""The suite compiles with its own XLA flags (``conftest.TEST_XLA_FLAGS``: XLA:CPU's per-operation
code generator, to compile faster); users run XLA's defaults.  The bit-for-bit claims of the suite
hold for the users' programs only if both code generators compute the same numbers: this test runs
the batch simulators (every statistic, traces recorded: the largest fused programs of the library,
the configuration of ``test_batch.py``'s shared fixture, so this process usually finds them
compiled) in a process with XLA's defaults and compares every output bit for bit with this
process.  (A ratio fit was compared too when the flag was chosen; it costs 9 s more to compile.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from conftest import TEST_XLA_FLAGS

ROOT = Path(__file__).resolve().parents[1]

#: The programs compared, as source: this process executes it, and a child with XLA's defaults.
_PROGRAMS = textwrap.dedent("""
    import jax
    import numpy as np
    from jaxlif import batch as jb

    def run():
        stats = jb.Stats(burn_in=200.0, isi_cv=True, v=True, g=True, spike_times=16)
        arrays = {}
        for name in ("simulate_cond_lif_batch", "simulate_stp_lif_batch"):
            res = getattr(jb, name)(jax.random.key(2024), 8, T=1000.0, stats=stats, record=True)
            for i, leaf in enumerate(jax.tree.leaves(res)):
                arrays[f"{name}_{i}"] = np.asarray(leaf)
        return arrays
""")


def test_suite_code_generator_computes_the_users_numbers(tmp_path):
    assert TEST_XLA_FLAGS in os.environ.get("XLA_FLAGS", "") or os.environ.get("JAXLIF_TEST_XLA_DEFAULTS")
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(TEST_XLA_FLAGS, "").strip()     # XLA's defaults
    env["JAXLIF_TEST_SHARED_CACHE"] = "off"
    out = tmp_path / "defaults.npz"
    child = _PROGRAMS + "\nimport sys\nnp.savez(sys.argv[1], **run())\n"
    done = subprocess.run([sys.executable, "-c", child, str(out)], env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    users = np.load(out)
    namespace: dict = {}
    exec(_PROGRAMS, namespace)
    ours = namespace["run"]()
    assert set(ours) == set(users.files) and len(ours) > 25
    for name, value in ours.items():
        np.testing.assert_array_equal(value, users[name], err_msg=name)
