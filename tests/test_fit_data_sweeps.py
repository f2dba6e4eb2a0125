"""Reader of the per-sweep mossy-fibre data (``read_chamberland2018``) and the tidy CSV writer.

jaxlif does not ship the per-sweep recordings; these tests build a synthetic stand-in of the same
shape (seven protocols, 180-486 sweeps, 6 or 10 pulses, zeros and missing pulses), written as the
srplasticity repository writes its files (a pickled NumPy array per protocol, the global named
``numpy.core.numeric._frombuffer`` as NumPy 1 wrote it), and read it back.
"""

import pickle
import struct

import numpy as np
import pytest

from jaxlif.fitting.data import (CHAMBERLAND2018_PROTOCOLS, read_chamberland2018,
                                 write_trains_csv)

SWEEPS = {"20": 379, "100": 486, "20100": 299, "10020": 180, "10100": 200, "111": 180,
          "invivo": 180}


def _pickle_numpy1(arr: np.ndarray) -> bytes:
    """``arr`` pickled as NumPy 1 did: ``numpy.core.numeric._frombuffer(buf, dtype, shape, 'C')``
    (hand-assembled opcodes of pickle protocol 3, so the test does not depend on how the NumPy
    installed here pickles)."""
    def text(s):
        b = s.encode()
        return b"X" + struct.pack("<I", len(b)) + b
    buf = np.ascontiguousarray(arr, dtype="<f8").tobytes()
    shape = b"(" + b"".join(b"J" + struct.pack("<i", n) for n in arr.shape) + b"t"
    return (b"\x80\x03" + b"cnumpy.core.numeric\n_frombuffer\n" + b"("
            + b"B" + struct.pack("<I", len(buf)) + buf + text("<f8") + shape + text("C")
            + b"tR.")


def _stand_in(rng):
    """Per protocol a (n_sweeps, n_pulses) array: gamma amplitudes, some zeros, and sweeps that
    end early (NaN pulses), as in the real files."""
    out = {}
    for key, (_, isi) in CHAMBERLAND2018_PROTOCOLS.items():
        n = 1 + len(isi)
        a = rng.gamma(3.0, 1.0 / 3.0, size=(SWEEPS[key], n)) * np.arange(1, n + 1)
        a[rng.random(a.shape) < 0.005] = 0.0
        short = rng.random(SWEEPS[key]) < 0.05
        a[short, n - 2:] = np.nan
        out[key] = a
    return out


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chamberland2018")
    arrays = _stand_in(np.random.default_rng(0))
    for key, a in arrays.items():
        (folder / f"{key}_normalized_by_cell.pkl").write_bytes(_pickle_numpy1(a))
    return folder, arrays


@pytest.mark.filterwarnings("ignore:numpy.core.numeric is deprecated")
def test_the_hand_assembled_pickle_is_what_numpy_reads():
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(pickle.loads(_pickle_numpy1(a)), a)


def test_reads_the_srplasticity_folder_into_trains(stand_in):
    folder, arrays = stand_in
    data = read_chamberland2018(folder)
    keys = tuple(CHAMBERLAND2018_PROTOCOLS)
    assert data.protocols == keys and data.unit == "normalised"
    assert data.amplitudes.shape == (7, 486, 10) and data.spike_times_ms.shape == (7, 10)
    for p, key in enumerate(keys):
        a = arrays[key]
        isi = CHAMBERLAND2018_PROTOCOLS[key][1]
        t = data.spike_times_ms[p]
        np.testing.assert_allclose(t[:len(isi) + 1], np.cumsum([0.0, *isi]))
        assert np.isnan(t[len(isi) + 1:]).all()
        got = data.amplitudes[p, :a.shape[0], :a.shape[1]]
        np.testing.assert_array_equal(np.isnan(got), np.isnan(a))
        np.testing.assert_array_equal(got[~np.isnan(a)], a[~np.isnan(a)])   # zeros kept
        assert np.isnan(data.amplitudes[p, a.shape[0]:]).all()
        assert len(data.sweeps[p]) == a.shape[0]
    assert data.mask.sum() == sum(np.isfinite(a).sum() for a in arrays.values())


def test_csv_round_trip_keeps_every_amplitude(stand_in, tmp_path):
    folder, _ = stand_in
    data = read_chamberland2018(folder)
    path = tmp_path / "sweeps.csv"
    write_trains_csv(path, data, header="synthetic stand-in\nsecond line")
    assert path.read_text().startswith("# synthetic stand-in\n# second line\nprotocol,sweep,")
    back = read_chamberland2018(path)
    assert back.protocols == data.protocols and back.sweeps == data.sweeps
    np.testing.assert_array_equal(back.mask, data.mask)
    np.testing.assert_allclose(back.amplitudes[data.mask], data.amplitudes[data.mask], rtol=1e-9)
    np.testing.assert_array_equal(back.spike_times_ms, data.spike_times_ms)


def test_a_pickle_with_any_other_global_is_refused(stand_in, tmp_path):
    folder, arrays = stand_in
    bad = tmp_path / "bad"
    bad.mkdir()
    for key, a in arrays.items():
        (bad / f"{key}_normalized_by_cell.pkl").write_bytes(_pickle_numpy1(a))
    # a pickle that would call os.system if it were unpickled naively
    (bad / "20_normalized_by_cell.pkl").write_bytes(b"\x80\x03cos\nsystem\nX\x04\x00\x00\x00true\x85R.")
    with pytest.raises(ValueError, match="refused global os.system"):
        read_chamberland2018(bad)


def test_wrong_files_are_named(stand_in, tmp_path):
    folder, arrays = stand_in
    with pytest.raises(ValueError, match="no file 20_normalized_by_cell.pkl"):
        read_chamberland2018(tmp_path)
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for key, a in arrays.items():
        b = a[:, :5] if key == "111" else a
        (wrong / f"{key}_normalized_by_cell.pkl").write_bytes(_pickle_numpy1(b))
    with pytest.raises(ValueError, match="5 pulses per sweep, protocol '111' has 6"):
        read_chamberland2018(wrong)


@pytest.mark.slow
def test_fit_trains_experiment_runs_the_per_sweep_analysis_on_the_stand_in(stand_in, tmp_path):
    """``experiments/fit_trains.py --sweeps`` end to end on the stand-in: every noise model's
    table row, the held-out errors, the figures, and a report that states the numbers."""
    from experiments import fit_trains
    folder, _ = stand_in
    out = tmp_path / "out"
    summary = fit_trains.main(["--quick", "--models", "tm,srp", "--sweeps", str(folder),
                               "--coverage", "2", "--out", str(out)])
    sw = summary["sweeps"]
    assert {(r["model"], r["noise"]) for r in sw["table"]} == {
        (m, n) for m in ("tm", "srp") for n in fit_trains.NOISES}
    assert all(np.isfinite(r["loglik"]) for r in sw["table"])
    assert all(1 <= r["starts_at_best"] <= r["n_default_starts"] == 15 for r in sw["table"])
    assert set(sw["heldout"]["rms_sem"]) == {"tm", "srp"}
    assert all(np.isfinite(v) for v in sw["heldout"]["rms_sem"]["srp"].values())
    assert sw["coverage"]["n_datasets"] == 2
    for name in ("fit_trains_heldout.png", "fit_trains_sd.png"):
        assert (out / name).is_file()
    assert f"{sw['best']['loglik']:.1f}" in summary["conclusion"]


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["gaussian", "gamma", "binomial"])
def test_screened_starts_do_better_than_the_plain_grid_on_the_per_sweep_stand_in(
        stand_in, noise, monkeypatch):
    """Issue 20 item 3 on data shaped like the per-sweep recordings (14,000 amplitudes, float64):
    each TM-family model's data-informed starts find an optimum at least as good as the plain
    grid's, and at least as many of them end near the best of both (the counts on the real
    data: docs/fitting.md, section Starts).  "Near" and "as good" are within 0.05
    log-likelihood units, not the 0.01 of ``start_local_minimum``: under gamma noise ``tm4``'s
    optimum lies on the ridge towards ``U -> 0`` (linear facilitation), where starts stop 0.01-
    0.04 units apart (here the grid's best start 0.027 above the screened ones).

    ``depression`` gets only the first check.  These facilitating data put its likelihood on two
    edges separated by a barrier (``U -> 1`` with ``tau_d`` near 1.8 ms, the best, and ``U -> 0``,
    no depression, about 8 units lower under gamma noise).  Which start ends on which edge
    depends on where it starts, not on the screening: measured under gamma noise, 1 of 7
    screened starts and 2 of 7 grid starts ended at the best (on the real per-sweep data the
    screened starts end there 7 of 7: docs/fitting.md, section Starts)."""
    from jaxlif.fitting import fit_stp_trains, models
    from jaxlif.fitting import trains as T
    folder, _ = stand_in
    data = read_chamberland2018(folder)
    opts = dict(noise=noise, interval="none", zeros="missing", allow_missing=True)
    for model in ("tm", "tm4", "depression"):
        screened = np.asarray(fit_stp_trains(data, model=model, **opts).start_loglik, float)
        with monkeypatch.context() as mp:
            mp.setattr(T, "SCREEN_FACTOR", 1)          # the candidates are the grid itself
            mp.setattr(models, "_SCREEN_BOXES", models._TM_BOXES)
            grid = np.asarray(fit_stp_trains(data, model=model, **opts).start_loglik, float)
        best = max(screened.max(), grid.max())
        near = [int(np.sum(ll >= best - 0.05)) for ll in (screened, grid)]
        assert screened.max() >= grid.max() - 0.05, (model, screened.max(), grid.max())
        if model == "depression":
            continue
        assert near[0] >= near[1], (model, near, np.round(np.sort(screened)[::-1], 3),
                                    np.round(np.sort(grid)[::-1], 3))
