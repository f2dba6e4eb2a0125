"""Scale-out: the batch axis sharded over several devices gives exactly the single-device results.

XLA can only be given several host (CPU) devices before JAX starts, so the multi-device run happens in a
subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``; it writes its results to a file
and this process compares them bit for bit with the same calls on this process's single device.  The
configuration (10 neurons in chunks of 3, 1000 ms) is that of ``test_batch.py``'s chunk test, so that the
compiled programs are shared when both modules run in one session.  Also: a smoke test of the benchmark
script at its ``--quick`` size, written to a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np

from jaxlif import batch as jb

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

B, T, DT, SEED = 10, 1000.0, 0.1, 2024
CONFIGS = dict(A=("simulate_cond_lif_batch", dict(batch_chunk=3, window=37)),
               B=("simulate_stp_lif_batch", dict(batch_chunk=3)))

_CHILD = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jaxlif import batch as jb
    out, B, T, DT, SEED, configs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), \\
        int(sys.argv[5]), json.loads(sys.argv[6])
    assert len(jax.devices()) == 4, jax.devices()
    mesh = jb.batch_mesh()
    assert mesh.devices.size == 4
    arrays = {}
    for wl, (name, kw) in configs.items():
        res = getattr(jb, name)(jax.random.key(SEED), B, T=T, dt=DT, record=True, mesh=mesh, **kw)
        for field, value in res._asdict().items():
            arrays[wl + "_" + field] = np.asarray(value)
    np.savez(out, **arrays)
""")


def test_sharded_equals_single_device(tmp_path):
    out = tmp_path / "sharded.npz"
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(out), str(B), str(T), str(DT), str(SEED),
                           json.dumps(CONFIGS)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sharded = np.load(out)
    mesh = jb.batch_mesh(jax.devices()[:1])
    for wl, (name, kw) in CONFIGS.items():
        single = getattr(jb, name)(jax.random.key(SEED), B, T=T, dt=DT, record=True, mesh=mesh, **kw)
        for field, value in single._asdict().items():
            np.testing.assert_array_equal(np.asarray(value), sharded[wl + "_" + field], err_msg=f"{wl} {field}")
        assert single.spike_count.sum() > 0


def test_bench_quick_smoke(tmp_path):
    from experiments import bench
    repo_md = ROOT / "BENCHMARKS.md"
    before = repo_md.stat().st_mtime_ns if repo_md.exists() else None
    report = bench.main(["--quick", "--out", str(tmp_path), "--A", "4", "--B", "4", "--repeats", "1",
                         "--workloads", "A,B,C"])
    text = (tmp_path / "BENCHMARKS.md").read_text()
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["config"]["T"] == 100.0 and saved["results"] == json.loads(json.dumps(report["results"]))
    for heading in ("## WL-A", "## WL-B", "## WL-C", "## WL-D", "## Targets"):
        assert heading in text
    assert "GPU figures: pending" in text
    errors = [r for r in report["results"] if "error" in r["result"]]
    assert not errors, errors
    cells = {(r["task"]["system"], r["task"]["workload"]): r["result"] for r in report["results"]}
    assert cells[("jaxlif", "A")]["steady_s"] > 0 and cells[("numpy", "B")]["n_simulated"] == 1
    # WL-C: jaxlif's float32 curves agree with the tutorial's NumPy loop
    for name in ("STD", "STF"):
        np.testing.assert_allclose(cells[("jaxlif", "C")]["ratio_curves"][name],
                                   cells[("numpy", "C")]["ratio_curves"][name], atol=1e-4)
    assert (repo_md.stat().st_mtime_ns if repo_md.exists() else None) == before   # repository untouched
