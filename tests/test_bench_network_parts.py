"""``benchmarks/bench_network_parts.py``: its variants are what its docstring says, and a short run writes its
section (slow: three 4000-neuron programs)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.slow
def test_short_run_writes_its_section(tmp_path):
    import bench_network_parts as bp
    res = bp.main(["--repeats", "1", "--T", "20", "--out", str(tmp_path)])
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "<!-- begin:network-parts -->" in text and "| Poisson drive |" in text
    us = res["us_per_step"]
    assert set(us) == {"network", "neurons + drive", "neurons"} and all(v > 0 for v in us.values())
    # the variants without projections fire (the constant current, the drive) and the token synapse's
    # neuron never does, so that no event is delivered
    assert all(r["E"] > 0 and r["I"] > 0 for r in res["rates"]["neurons"])


def test_variants_keep_the_windows_and_deliver_nothing():
    import jax
    import bench_network_parts as bp
    from jaxlif import network as nw
    net = nw.ei_network(jax.random.key(0), n_E=40, n_I=10, p=0.2, delay=15)
    v = bp.variants(net, nw, np)
    assert list(v) == ["network", "neurons + drive", "neurons"]
    for name in ("neurons + drive", "neurons"):
        n, _ = v[name]
        assert nw.window.window_length(n) == nw.window.window_length(net) > 0
        (token,) = n.projections
        assert token.pre == "silent" and n.sizes["silent"] == 1 and n.populations[-1].drive is None
    assert all(p.drive is None for p in v["neurons"][0].populations)
    assert v["neurons"][1] is not None and v["neurons + drive"][1] is None
