"""Scale-out scripts: smoke tests of the benchmarks at their ``--quick`` sizes and of the GPU check on CPU,
written to temporary folders (the repository's BENCHMARKS.md is never touched).

Several devices and several processes are tested in ``test_distributed.py`` (four devices in one process;
in the slow tier two processes of two devices each, ``jax.distributed``), against this process's single device.
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
    from benchmarks import bench
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


@pytest.mark.slow          # an end-to-end run of the cost-curve script (about 11 s of compilation)
def test_bench_scale_quick_smoke(tmp_path):
    """The cost-curve script at its --quick size (the rate sweep: 4 neurons, 100 ms, programs shared with
    test_batch.py): cells, slopes, figure and its own section of a BENCHMARKS.md that keeps other sections."""
    from benchmarks import bench_scale
    (tmp_path / "BENCHMARKS.md").write_text("# kept\n\n<!-- begin:other -->\nother helper\n<!-- end:other -->\n")
    report = bench_scale.main(["--quick", "--out", str(tmp_path), "--sweeps", "rate"])
    cells = [r for r in report["results"] if r["task"]["system"] == "jaxlif"]
    assert len(cells) == 4 and all("error" not in r["result"] and r["result"]["cpu_s"] > 0 for r in cells)
    by = {(r["task"]["workload"], r["task"]["value"]): r["result"]["rate_hz"] for r in cells}
    assert by[("A", 20.0)] > by[("A", 5.0)] and by[("B", 20.0)] > by[("B", 5.0)]   # more input, more output
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert text.startswith("# kept") and "other helper" in text and "<!-- begin:scale -->" in text
    assert "### Fitted log-log slopes" in text and (tmp_path / "bench_scale.png").stat().st_size > 10_000


def test_bench_scale_pairs_verdict_uses_the_median_round_and_the_same_work():
    """The side-by-side verdict: the median over rounds of Brian2's / jaxlif's median CPU time, and
    MISSED when the two systems' output rates differ (not the same work)."""
    from benchmarks import bench_scale as bs

    def cells(wl, j_cpu, b_cpu, b_rate=25.5):
        out = []
        for v, (jc, bc) in enumerate(zip(j_cpu, b_cpu)):
            cell = bs._cell_args(wl, "pairs", v)
            out += [dict(task=dict(system="jaxlif", workload=wl, sweep="pairs", value=v, cell=cell),
                         result=dict(cpu_s=min(jc), cpu_median_s=sorted(jc)[1], cpu_all=jc, rate_hz=25.5,
                                     rate_se_hz=0.02)),
                    dict(task=dict(system="brian2", workload=wl, sweep="pairs", value=v, cell=cell),
                         result=dict(cpu_s=sorted(bc)[1], cpu_all=bc, rate_hz=b_rate, rate_se_hz=0.02))]
        return out

    assert bs._cell_args("A", "pairs", 2)["B"] == 10_000 and bs._cell_args("B", "pairs", 0)["B"] == 1000
    res = cells("A", [[0.3, 0.4, 0.5], [0.2, 0.25, 0.3], [0.4, 0.4, 0.4]],
                [[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]])
    assert [round(x, 3) for x, _, _ in bs._pair_ratios(res, "A")] == [5.0, 4.0, 5.0]
    res += cells("B", [[0.2, 0.2, 0.2]] * 3, [[7.0, 7.0, 7.0]] * 3, b_rate=30.0)
    report = dict(results=res, machine=dict(cpu="x", cores=2), load=[(0, 0, 0), (0, 0, 0)], command="c",
                  started="s")
    text = bs.render(report, "f.png")
    assert "no worse than 4x (one core each, 3 interleaved rounds, median) | 5.0x (rounds 5.0, 4.0, 5.0) | met" in text
    assert ("35x (one core each, 3 interleaved rounds, median) | 35.0x (rounds 35.0, 35.0, 35.0); "
            "output rates differ | MISSED") in text


def test_gpu_check_exit_status_and_section_report_a_failed_equality(tmp_path, monkeypatch):
    """benchmarks/gpu_check.py: a failed equality check is written as FAIL and gives exit status 1;
    without a GPU and without --cpu it refuses to run (exit status 2) and writes nothing.  The
    simulations are replaced by stubs here; the slow test below runs them."""
    import jax
    from benchmarks import gpu_check as gc
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# kept\n")
    if jax.default_backend() == "cpu":
        assert gc.main(["--out", str(out)]) == 2 and out.read_text() == "# kept\n"
    monkeypatch.setattr(gc, "_equality", lambda B, T: [("WL-A spikes", True, "3 spikes"), ("WL-B v", False, "1e-3")])
    monkeypatch.setattr(gc, "_cross_backend", lambda B, T: [("WL-A", 1.0, 2.0, 2.0)])
    monkeypatch.setattr(gc, "_bench", lambda sizes, T, repeats: [])
    assert gc.main(["--cpu", "--out", str(out)]) == 1
    text = out.read_text()
    assert text.startswith("# kept") and "| WL-B v | FAIL | 1e-3 |" in text and "| WL-A spikes | pass |" in text


@pytest.mark.slow          # the GPU script end to end on CPU (about 30 s, mostly compilation)
def test_gpu_check_cpu_smoke_run(tmp_path):
    """benchmarks/gpu_check.py --cpu: every equality check of the fast paths against the step-by-step
    simulators passes, the cross-backend comparison and the benchmark rows are written."""
    from benchmarks import gpu_check as gc
    out = tmp_path / "BENCHMARKS.md"
    assert gc.main(["--cpu", "--out", str(out), "--sizes", "16", "--repeats", "1"]) == 0
    text = out.read_text()
    assert text.count("| pass |") == 10 and "FAIL" not in text
    assert "| WL-A | 16 |" in text and "| WL-B | 16 |" in text and "% of neurons identical" in text
