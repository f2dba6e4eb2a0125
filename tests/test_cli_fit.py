"""End-to-end tests of ``jaxlif fit-trains`` and ``jaxlif fit-stp`` (in process, ``main([...])``).

Every train fit here has 2 protocols x 10 pulses (the shape of the shipped mossy-fibre data; the
number of sweeps does not enter the compiled program), so the whole file compiles one train fit
and one ratio fit.  The expensive ``--model all`` comparison is exercised with the real
``compare_models`` restricted to one model and no cross-validation (same compiled program).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxlif
import jaxlif.fitting as fitting
from jaxlif.cli import main, read_curve_csv
from jaxlif.plasticity import STPParams

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRUE = STPParams(0.3, 200.0, 100.0)
RATES = (20.0, 100.0)
CURVE = "5,0.8569\n10,0.6957\n20,0.4685\n40,0.2904\n"
#: The exact-mode curve of (0.4, 200 ms, 100 ms) to 4 digits: every parameter identified, so the
#: profile intervals settle in a few steps (CURVE's are unbounded: a longer search).
CLEAN_CURVE = "5,0.8684\n10,0.7165\n20,0.4895\n40,0.2852\n"


def _run(argv, capsys):
    """``main(argv)`` -> (exit status, stdout, stderr); usage errors give their SystemExit code."""
    try:
        rc = main(list(argv) + ["--no-cache"])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _write_trains(path: Path, *, bom: bool = False, edit=None) -> Path:
    """A tidy CSV of simulated TM trains (2 protocols x 3 sweeps x 10 pulses, pA)."""
    times = fitting.regular_protocols(RATES, 10)
    y = fitting.simulate_trains(jax.random.key(1), TRUE, times, n_sweeps=3, scale=100.0,
                                noise_sd=4.0)
    lines = ["protocol,sweep,spike_time_ms,amplitude_pA"]
    for p, rate in enumerate(RATES):
        for s in range(y.shape[1]):
            lines += [f"{rate:g}Hz,{s + 1},{t:g},{a:.4f}" for t, a in zip(times[p], y[p, s])]
    if edit is not None:
        lines = edit(lines)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trains_csv(tmp_path_factory):
    return _write_trains(tmp_path_factory.mktemp("trains") / "trains.csv")


def _refuse_fit(monkeypatch):
    """Make every fit fail the test: what runs after this must stop before fitting."""
    def boom(*a, **k):
        raise AssertionError("the fit ran although the command should have stopped before it")
    for name in ("fit_stp_trains", "compare_models", "fit_stp"):
        monkeypatch.setattr(fitting, name, boom)


# --------------------------------------------------------------------------------------
# fit-trains
# --------------------------------------------------------------------------------------


def test_fit_trains_json_record_equals_the_library_fit(trains_csv, tmp_path, capsys):
    fig = tmp_path / "figs" / "fit.png"
    rc, out, err = _run(["fit-trains", str(trains_csv), "--json", "--out", str(fig), "--quiet"], capsys)
    assert rc == 0, err
    rec = json.loads(out)
    direct = fitting.fit_stp_trains(fitting.read_trains_csv(trains_csv), model="tm")
    assert rec["model"] == "tm" and rec["noise_model"] == "gaussian"
    assert rec["jaxlif_version"] == jaxlif.__version__
    assert rec["protocols"] == ["20Hz", "100Hz"] and rec["n_sweeps"] == 3
    assert rec["units"]["amplitude"] == "pA" and rec["units"]["spike_times"] == "ms"
    assert rec["units"]["tau_d"] == "ms" and rec["units"]["U0"] == ""
    for name in ("U0", "tau_d", "tau_f"):
        value = rec["params"][name]
        np.testing.assert_allclose(value, float(getattr(direct.params, name)), rtol=1e-6)
        low, high = rec["interval"][name]
        assert low <= value <= high
        assert isinstance(rec["identifiable"][name], bool)
    np.testing.assert_allclose(rec["loglik"], float(direct.loglik), rtol=1e-6)
    np.testing.assert_allclose(rec["aic"], 2 * rec["n_params"] - 2 * rec["loglik"], rtol=1e-9)
    n = rec["n_points"]
    assert n == 60
    np.testing.assert_allclose(rec["bic"], rec["n_params"] * np.log(n) - 2 * rec["loglik"])
    assert isinstance(rec["converged"], bool) and isinstance(rec["best_start"], int)
    assert len(rec["start_loglik"]) == len(rec["start_local_minimum"]) > 1
    assert rec["figure"] == str(fig) and fig.read_bytes()[:8] == PNG_MAGIC


def test_fit_trains_text_output_and_out_without_extension(trains_csv, tmp_path, capsys):
    rc, out, err = _run(["fit-trains", str(trains_csv), "--out", str(tmp_path / "noext"), "--quiet"],
                        capsys)
    assert rc == 0, err
    assert (tmp_path / "noext.png").read_bytes()[:8] == PNG_MAGIC
    assert not (tmp_path / "noext").exists()
    assert f"wrote {tmp_path / 'noext.png'}" in out
    for text in ("95 % interval", "converged", "best start:", "AIC", "tau_d", "ms"):
        assert text in out, text


def test_fit_trains_gamma_kernel_noise(tmp_path, capsys):
    """``--noise gamma_kernel``: the library's fit, its SD kernel printed with intervals and in the JSON
    (the amplitudes made positive, as gamma noise needs; Wald intervals, which compile less than the
    profile's)."""
    positive = lambda lines: lines[:1] + [ln.replace(",-", ",") for ln in lines[1:]]  # noqa: E731
    trains_csv = _write_trains(tmp_path / "positive.csv", edit=positive)
    rc, out, err = _run(["fit-trains", str(trains_csv), "--noise", "gamma_kernel", "--interval", "wald", "--json",
                         "--quiet"], capsys)
    assert rc == 0, err
    rec = json.loads(out)
    direct = fitting.fit_stp_trains(fitting.read_trains_csv(trains_csv), model="tm", noise="gamma_kernel",
                                    interval="wald")
    assert rec["noise_model"] == "gamma_kernel" and set(rec["noise_params"]) == {"s", "b_s", "c", "taus_ms"}
    np.testing.assert_allclose(rec["loglik"], float(direct.loglik), rtol=1e-6)
    np.testing.assert_allclose(rec["noise_params"]["b_s"], float(direct.noise_params.b_s), rtol=1e-5, atol=1e-6)
    rc, out, err = _run(["fit-trains", str(trains_csv), "--noise", "gamma_kernel", "--interval", "wald", "--quiet"],
                        capsys)
    assert rc == 0, err
    assert "SD kernel (time constants" in out and "b_s " in out and "c1  =" in out, out


@pytest.mark.slow
def test_fit_trains_fits_the_sd_time_constants(tmp_path, capsys):
    """``--noise gamma_kernel --noise-taus 30 --fit-noise-taus``: the library's fit with the SD time
    constant fitted from 30 ms, printed with its interval and in the JSON."""
    positive = lambda lines: lines[:1] + [ln.replace(",-", ",") for ln in lines[1:]]  # noqa: E731
    trains_csv = _write_trains(tmp_path / "positive.csv", edit=positive)
    argv = ["fit-trains", str(trains_csv), "--noise", "gamma_kernel", "--noise-taus", "30",
            "--fit-noise-taus", "--interval", "wald", "--quiet"]
    rc, out, err = _run(argv + ["--json"], capsys)
    assert rc == 0, err
    rec = json.loads(out)
    direct = fitting.fit_stp_trains(fitting.read_trains_csv(trains_csv), model="tm", noise="gamma_kernel",
                                    interval="wald", noise_taus=(30.0,), fit_noise_taus=True)
    assert rec["noise_params"]["taus_ms"] == [30.0] and rec["n_params"] == direct.n_params
    np.testing.assert_allclose(rec["loglik"], float(direct.loglik), rtol=1e-6)
    np.testing.assert_allclose(rec["noise_params"]["tau"], [float(direct.noise_params.tau[0])], rtol=1e-5)
    rc, out, err = _run(argv, capsys)
    assert rc == 0, err
    assert "fitted, started at 30 ms" in out and "tau1=" in out.replace(" ", ""), out


def test_fit_trains_json_to_file(trains_csv, tmp_path, capsys):
    path = tmp_path / "fit.json"
    rc, out, err = _run(["fit-trains", str(trains_csv), "--out", str(path), "--interval", "wald", "--quiet"],
                        capsys)
    assert rc == 0, err
    rec = json.loads(path.read_text())
    assert rec["interval_method"] == "wald" and set(rec["params"]) == {"U0", "tau_d", "tau_f"}
    assert f"wrote {path}" in out
    assert [p.name for p in tmp_path.iterdir()] == ["fit.json"]        # no temporary file left


def test_fit_trains_accepts_a_bom(trains_csv, tmp_path, capsys):
    rc, out, err = _run(["fit-trains", str(_write_trains(tmp_path / "bom.csv", bom=True)), "--json", "--quiet"],
                        capsys)
    assert rc == 0, err
    plain = _run(["fit-trains", str(trains_csv), "--json", "--quiet"], capsys)
    assert json.loads(out)["params"] == json.loads(plain[1])["params"]


@pytest.mark.parametrize("edit, match", [
    (lambda ls: ls[:5] + [ls[5].replace(ls[5].split(",")[-1], "97.1x")] + ls[6:],
     r"line 6, column 'amplitude_pA': '97.1x' is not a number"),
    (lambda ls: [ls[0].replace("sweep,", "sweeep,")] + ls[1:], r"line 1: missing column\(s\) \['sweep'\]"),
    (lambda ls: ls[:3] + ["20Hz,1,75"] + ls[3:], r"line 4 has 3 fields"),
])
def test_fit_trains_bad_csv_is_one_line_naming_the_line(tmp_path, capsys, monkeypatch, edit, match):
    _refuse_fit(monkeypatch)
    rc, out, err = _run(["fit-trains", str(_write_trains(tmp_path / "bad.csv", edit=edit))], capsys)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert re.search(match, err), err


def test_fit_trains_mossy_fibre_and_model_all(capsys, monkeypatch):
    """``--mossy-fibre`` needs no file; ``--model all`` passes every model to ``compare_models``
    and prints its table (the real comparison, restricted here to tm without cross-validation so
    that it reuses the compiled program)."""
    seen = {}
    real = fitting.compare_models

    def small(*args, **kw):
        seen.update(kw)
        return real(*args, **{**kw, "models": ("tm",), "cross_validate": False})

    monkeypatch.setattr(fitting, "compare_models", small)
    rc, out, err = _run(["fit-trains", "--mossy-fibre", "--model", "all", "--quiet"], capsys)
    assert rc == 0, err
    assert seen["models"] == ("tm", "tm4", "depression", "srp") and seen["cross_validate"]
    assert "loglik" in out and "AIC" in out and "BIC" in out and "cv_nll" in out
    assert "lowest AIC: tm" in out and "model tm:" in out and "mossy_fibre" in out
    rc, out, err = _run(["fit-trains", "--mossy-fibre", "--model", "all", "--json", "--quiet"],
                        capsys)
    rec = json.loads(out)
    assert rec["source"] == "mossy_fibre" and "Chamberland" in rec["citation"]
    assert [r["model"] for r in rec["table"]] == ["tm"] and rec["best_aic"] == "tm"
    assert set(rec["fits"]["tm"]["interval"]) == {"U0", "tau_d", "tau_f"}
    assert rec["units"]["amplitude"] == "normalised"


@pytest.mark.parametrize("command", ["fit-trains", "fit-stp"])
def test_unknown_out_extension_fails_before_the_fit(trains_csv, tmp_path, capsys, monkeypatch,
                                                    command):
    _refuse_fit(monkeypatch)
    data = [str(trains_csv)] if command == "fit-trains" else ["--rates", "5", "10", "20", "40",
                                                             "--ratios", "0.9", "0.7", "0.5", "0.3"]
    rc, out, err = _run([command, *data, "--out", str(tmp_path / "fit.xyz")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "unknown extension '.xyz'" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["fit-trains", "fit-stp"])
def test_unwritable_out_is_one_line_exit_1(trains_csv, tmp_path, capsys, monkeypatch, command):
    _refuse_fit(monkeypatch)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    target = str(blocker / "fit.png")          # its "folder" is a file: cannot be created
    argv = (["fit-trains", str(trains_csv), "--out", target] if command == "fit-trains" else
            ["fit-stp", "--rates", "5", "10", "20", "40", "--ratios", "0.9", "0.7", "0.5", "0.3",
             "--out", target])
    rc, out, err = _run(argv, capsys)
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err and "a_file" in err


def test_fit_trains_option_conflicts(trains_csv, capsys, monkeypatch):
    _refuse_fit(monkeypatch)
    for argv, match in (([], "give the data"), ([str(trains_csv), "--mossy-fibre"], "not both"),
                        ([str(trains_csv), "--noise-sd", "1", "--noise", "gamma"], "--noise-cv"),
                        ([str(trains_csv), "--noise-cv", "0.1"], "--noise gamma"),
                        ([str(trains_csv), "--fit-noise-taus"], "add --noise gamma_kernel"),
                        ([str(trains_csv), "--noise-taus", "20,200"], "add --noise gamma_kernel"),
                        ([str(trains_csv), "--noise", "gamma_kernel", "--noise-taus", "20;200"],
                         "separated by commas")):
        rc, out, err = _run(["fit-trains", *argv], capsys)
        assert rc == 2 and match in err, (argv, err)


def test_fit_trains_kernel_sd_on_means_is_a_usage_error(capsys, monkeypatch):
    """The shipped means have one amplitude per pulse: the kernel SD has no maximum there."""
    _refuse_fit(monkeypatch)
    rc, out, err = _run(["fit-trains", "--mossy-fibre", "--noise", "gamma_kernel"], capsys)
    assert rc == 2 and "Traceback" not in err
    assert "noise='gamma_kernel' needs sweeps" in err


# --------------------------------------------------------------------------------------
# fit-stp
# --------------------------------------------------------------------------------------


def test_fit_stp_json_records_units_model_and_version(tmp_path, capsys):
    path = tmp_path / "curve.csv"
    path.write_text("\ufeff" + CLEAN_CURVE)
    rc, out, err = _run(["fit-stp", "--csv", str(path), "--mode", "exact", "--json",
                         "--out", str(tmp_path / "fit.json"), "--quiet"], capsys)
    assert rc == 0, err
    rec = json.loads(out)
    assert json.loads((tmp_path / "fit.json").read_text()) == {**rec, "seconds": rec["seconds"]}
    assert rec["mode"] == "exact" and rec["dt_ms"] == 0.1 and rec["tau_syn_ms"] == 5.0
    assert rec["n_spike"] == 10 and rec["jaxlif_version"] == jaxlif.__version__
    assert rec["units"]["tau_d"] == "ms" and rec["units"]["rates_hz"] == "Hz"
    assert rec["rates_hz"] == [5.0, 10.0, 20.0, 40.0]      # the BOM row was read, not dropped
    assert set(rec["interval"]) == {"U0", "tau_d", "tau_f"}
    rc, out, err = _run(["fit-stp", "--csv", str(path), "--mode", "exact",
                         "--out", str(tmp_path / "noext"), "--quiet"], capsys)
    assert rc == 0 and f"wrote {tmp_path / 'noext.png'}" in out
    assert (tmp_path / "noext.png").read_bytes()[:8] == PNG_MAGIC
    assert "95 % interval" in out


@pytest.mark.parametrize("text, rates, ratios", [
    (CURVE, [5, 10, 20, 40], [0.8569, 0.6957, 0.4685, 0.2904]),
    ("\ufeff" + CURVE, [5, 10, 20, 40], [0.8569, 0.6957, 0.4685, 0.2904]),
    ("\ufeffrate_hz,ratio\n" + CURVE, [5, 10, 20, 40], [0.8569, 0.6957, 0.4685, 0.2904]),
    ("# comment\n\nrate,a,b\n5,0.9,0.8\n\n10,0.7,0.6\n", [5, 10], [[0.9, 0.7], [0.8, 0.6]]),
])
def test_read_curve_csv_accepts(tmp_path, text, rates, ratios):
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8")
    r, y = read_curve_csv(path)
    np.testing.assert_array_equal(r, rates)
    np.testing.assert_array_equal(y, ratios)


@pytest.mark.parametrize("text, match", [
    ("5,0.8569\n10,0.93x\n20,0.4685\n", r"line 2: '0.93x' is not a finite number"),
    ("5x,0.8569\n10,0.69\n20,0.4685\n", r"line 1: '5x' is not a finite number"),
    ("\ufeff5,0.8569x\n10,0.69\n", r"line 1: '0.8569x'"),
    ("rate,ratio\n5,0.85\nrate,ratio\n10,0.7\n", r"line 3: 'rate'"),
    ("# c\nrate,ratio\n5,0.85\n10,0.7,0.1\n", r"line 4 has 3 columns"),
    ("rate,ratio\n5,nan\n", r"line 2: 'nan'"),
    ("rate,ratio\n", r"no data rows"),
])
def test_read_curve_csv_rejects_naming_the_line(tmp_path, text, match):
    path = tmp_path / "c.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        read_curve_csv(path)
