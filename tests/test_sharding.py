"""Scale-out scripts: smoke tests of the benchmarks at their ``--quick`` sizes and of the GPU check on CPU,
written to temporary folders (the repository's BENCHMARKS.md is never touched).

Several devices and several processes are tested in ``test_distributed.py`` (two processes of two
devices each, ``jax.distributed``), against this process's single device.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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
