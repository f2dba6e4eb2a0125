"""``benchmarks/srplasticity_refit.py``: its jaxlif part (``--jaxlif-only``; srplasticity needs its
own environment and is not run here) on the synthetic stand-in of the per-sweep data of
``test_fit_data_sweeps``, against a SciPy gamma log-likelihood of the SRP model with the kernel SD
written out pulse by pulse here.

Compiles the float64 SRP fit (about 10 s): slow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import srplasticity_refit as sr  # noqa: E402
from tests.test_fit_data_sweeps import _pickle_numpy1, _stand_in  # noqa: E402


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _loglik_by_hand(folder_arrays, spike_times, p) -> float:
    """Gamma log-likelihood of every non-zero amplitude: mean ``A sigmoid(b + sum_{i<k} sum_j
    a_j/tau_j exp(-(t_k - t_i)/tau_j))``, SD ``s sigmoid(b_s + ... c_j ...)``; ``A`` defaults to
    ``1/sigmoid(b)``."""
    taus = np.array(sr.TAUS_MS)
    scale = p.get("scale", 1.0 / _sigmoid(p["b"]))
    total = 0.0
    for i, y in enumerate(folder_arrays):
        t = spike_times[i][np.isfinite(spike_times[i])]
        for k in range(t.size):
            decay = sum(np.exp(-(t[k] - t[m]) / taus) for m in range(k)) if k else np.zeros(3)
            mu = scale * _sigmoid(p["b"] + np.sum(np.asarray(p["a"]) / taus * decay))
            sd = p["s"] * _sigmoid(p["b_s"] + np.sum(np.asarray(p["c"]) / taus * decay))
            col = y[:, k]
            col = col[np.isfinite(col) & (col != 0.0)]
            total += stats.gamma.logpdf(col, mu ** 2 / sd ** 2, scale=sd ** 2 / mu).sum()
    return float(total)


@pytest.mark.slow
def test_jaxlif_part_against_a_scipy_likelihood(tmp_path):
    from jaxlif.fitting import read_chamberland2018
    arrays = _stand_in(np.random.default_rng(3))
    for key, a in arrays.items():
        (tmp_path / f"{key}_normalized_by_cell.pkl").write_bytes(_pickle_numpy1(a))
    res = sr.main(["--data", str(tmp_path), "--jaxlif-only", "--no-published-check"])
    data = read_chamberland2018(tmp_path)
    ys = [np.asarray(data.amplitudes[i], float) for i in range(len(data.protocols))]
    times = np.asarray(data.spike_times_ms, float)
    n = sum(int((np.isfinite(y) & (y != 0.0)).sum()) for y in arrays.values())
    assert res["n_points"] == n
    # the published parameters and jaxlif's fit, each under the likelihood written out above
    assert res["published_loglik"] == pytest.approx(
        _loglik_by_hand(ys, times, res["published"]), abs=1e-6 * n)
    j = res["jaxlif"]
    assert j["loglik"] == pytest.approx(_loglik_by_hand(ys, times, j), abs=1e-6 * n)
    assert j["loglik_check"] == pytest.approx(j["loglik"], abs=1e-6 * n)
    # the fit maximises the likelihood: at least as good as any other point of its space
    assert j["loglik"] >= res["published_loglik"]
    assert j["cpu_s"] > 0 and j["n_points"] == n
    text = sr.section(res)
    assert f"{j['loglik']:.2f}" in text and f"{res['published_loglik']:.2f}" in text
