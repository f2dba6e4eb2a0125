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
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.mark.slow          # an end-to-end run of the benchmark script (about 10 s)
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


def test_bench_scale_quick_smoke(tmp_path):
    """The cost-curve script at its --quick size (the rate sweep: 4 neurons, 100 ms, programs shared with
    test_batch.py): cells, slopes, figure and its own section of a BENCHMARKS.md that keeps other sections."""
    from experiments import bench_scale
    (tmp_path / "BENCHMARKS.md").write_text("# kept\n\n<!-- begin:other -->\nother helper\n<!-- end:other -->\n")
    report = bench_scale.main(["--quick", "--out", str(tmp_path), "--sweeps", "rate"])
    cells = [r for r in report["results"] if r["task"]["system"] == "jaxlif"]
    assert len(cells) == 4 and all("error" not in r["result"] and r["result"]["cpu_s"] > 0 for r in cells)
    by = {(r["task"]["workload"], r["task"]["value"]): r["result"]["rate_hz"] for r in cells}
    assert by[("A", 20.0)] > by[("A", 5.0)] and by[("B", 20.0)] > by[("B", 5.0)]   # more input, more output
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.startswith("# kept") and "other helper" in text and "<!-- begin:scale -->" in text
    assert "### Fitted log-log slopes" in text and (tmp_path / "bench_scale.png").stat().st_size > 10_000
