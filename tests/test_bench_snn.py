"""``benchmarks/bench_snn.py``: its jaxlif-only ``--quick`` run (a worker process, every jaxlif variant, the
same-work check against the NumPy loop) and its section writer.

The ``--quick`` run compiles seven small gradient programs in a subprocess (about 30 CPU-seconds): slow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_snn as bs  # noqa: E402


@pytest.mark.slow
def test_quick_run_every_jaxlif_variant_does_the_same_work(tmp_path):
    before = (ROOT / "BENCHMARKS.md").read_text()
    res = bs.main(["--quick", "--no-pin", "--json", str(tmp_path / "snn.json")])
    assert (ROOT / "BENCHMARKS.md").read_text() == before          # --quick writes no section
    assert set(res["rows"]) == {f"jaxlif:{v}" for v in bs.JAXLIF_VARIANTS}
    assert res["same_work_failures"] == {}
    losses = {k: r["loss"] for k, r in res["rows"].items()}
    # every variant runs the same T steps of the same neurons: the same spike count, to float32 rounding
    assert max(losses.values()) - min(losses.values()) <= 1e-5 * max(losses.values())
    assert losses["jaxlif:lif_step"] == pytest.approx(res["numpy_loss"]["zero"], rel=res["loss_tol"])
    assert res["numpy_loss"]["zero"] > 0.5                           # the neurons fire: the test can fail
    for row in res["rows"].values():
        assert len(row["times_s"]) == 2 and row["Mneuron_steps_per_s"] > 0
        assert row["grad_cosine_vs_lif_step"] > 0.999
    assert (tmp_path / "snn.json").exists()


def test_numpy_losses_against_a_scalar_loop():
    """The vectorised NumPy rules against one neuron stepped by hand."""
    I_np = bs.make_current(1, 60, 3, seed=5)
    got = bs.numpy_losses(I_np)
    x = bs.GAIN * I_np[0].astype(float)
    for rule in ("zero", "subtract"):
        total = 0
        for n in range(3):
            u = 0.0
            for t in range(60):
                s = u >= bs.THETA if rule == "zero" else u > bs.THETA
                total += int(s)
                u = bs.BETA * (0.0 if (s and rule == "zero") else u) + x[t, n] - (bs.THETA if s and rule == "subtract"
                                                                                   else 0.0)
        assert got[rule] == pytest.approx(total / 3, abs=1e-12)
    assert got["zero"] > 0


def test_replace_section_keeps_the_rest(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("head\n<!-- begin:snn -->\nold\n<!-- end:snn -->\ntail\n")
    bs.replace_section(path, "snn", "new")
    assert path.read_text() == "head\n<!-- begin:snn -->\nnew\n<!-- end:snn -->\ntail\n"
    other = tmp_path / "C.md"
    other.write_text("only\n")
    bs.replace_section(other, "snn", "x")
    assert other.read_text() == "only\n<!-- begin:snn -->\nx\n<!-- end:snn -->\n"


def test_bad_options_are_refused():
    with pytest.raises(SystemExit):
        bs.parse(["--variants", "lif_step,nope"])
    with pytest.raises(SystemExit):
        bs.parse(["--rounds", "0"])
    args = bs.parse(["--quick"])
    assert args.spyx == "" and args.snntorch == "" and args.no_write and np.prod([args.batch, args.steps]) < 1000
