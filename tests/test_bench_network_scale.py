"""``benchmarks/bench_network_scale.py``: the fixed in-degree edge lists, the slope fit, and (slow) its
jaxlif-only ``--quick`` run in a worker process."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_network_scale as ns  # noqa: E402


def test_fixed_indegree_edges_give_every_neuron_k_inputs_without_autapses():
    n_E, n_I, K = 40, 10, 20
    edges = ns.fixed_indegree_edges(3, n_E, n_I, K)
    sizes, k_from = {"E": n_E, "I": n_I}, {"E": 16, "I": 4}
    for pre in "EI":
        for post in "EI":
            src, dst = edges[f"{pre}{post}_pre"], edges[f"{pre}{post}_post"]
            assert np.array_equal(np.bincount(dst, minlength=sizes[post]), np.full(sizes[post], k_from[pre]))
            assert src.min() >= 0 and src.max() < sizes[pre]
            if pre == post:
                assert not np.any(src == dst)
    total = sum(v.size for k, v in edges.items() if k.endswith("_pre"))
    assert total == (n_E + n_I) * K
    # uniform presynaptic choice: every E neuron is drawn about (n_E + n_I) * 16 / n_E = 20 times
    out_E = np.bincount(np.concatenate([edges["EE_pre"], edges["EI_pre"]]), minlength=n_E)
    assert abs(out_E.mean() - 20.0) < 1e-12 and out_E.std() < 10.0
    again = ns.fixed_indegree_edges(3, n_E, n_I, K)
    assert all(np.array_equal(edges[k], again[k]) for k in edges)          # the seed fixes the draw


def test_slopes_recover_power_laws():
    rows = []
    for N in (1e3, 1e4, 1e5):
        rows.append(dict(system="jaxlif", K=100, N=N, T=1000.0, steady_s=1.0, s_per_s=2e-4 * N ** 1.1,
                         peak_rss_mb=3 * N ** 0.5))
        rows.append(dict(system="nest", K=100, N=N, T=1000.0, steady_s=1.0, s_per_s=1e-3 * N, peak_rss_mb=N ** 0.9))
    # a shorter run of one cell does not count where the cell also ran for longer
    rows.append(dict(system="jaxlif", K=100, N=1e5, T=100.0, steady_s=1.0, s_per_s=1.0, peak_rss_mb=1.0))
    rows.append(dict(system="brian2", K=100, N=1e3, T=1000.0, error="timed out"))
    s = ns.slopes(rows)
    assert s["jaxlif K=100 time vs N"] == pytest.approx(1.1)
    assert s["jaxlif K=100 RSS vs N"] == pytest.approx(0.5)
    assert s["nest K=100 time vs N"] == pytest.approx(1.0)
    assert s["nest time vs synapses"] == pytest.approx(1.0)
    assert not any(k.startswith("brian2") for k in s)                      # one failed cell: nothing to fit


@pytest.mark.slow
def test_quick_run_writes_its_section_table_and_figure(tmp_path):
    before = (ROOT / "BENCHMARKS.md").read_text()
    report = ns.main(["--quick", "--out", str(tmp_path)])
    assert (ROOT / "BENCHMARKS.md").read_text() == before                  # --quick writes into --out only
    (row,) = report["rows"]
    assert row["system"] == "jaxlif" and "error" not in row, row
    assert row["n_synapses"] == row["N"] * row["K"]
    assert len(row["rates"]["E"]) == 2 and 0.5 < np.mean(row["rates"]["E"]) < 100.0
    assert 0.0 < row["peak_rss_mb"] < 8 * 1024 and row["s_per_s"] > 0
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- begin:network-scale -->" in text and "| 50 | 500 | 25,000 | jaxlif |" in text
    assert (tmp_path / "bench_network_scale.png").stat().st_size > 1000
