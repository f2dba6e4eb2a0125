"""End-to-end tests of ``experiments/``: every experiment at ``--quick`` size, its files, and its numbers.

The main job (``experiments/reproduce.py --quick``) runs once per module into a temporary folder; the
tests then check the files it wrote (PNGs, per-experiment JSON, ``summary.json``, ``report.md``) and
recompute numbers from the summaries with direct calls to the library, deriving the keys as each
script's docstring documents them (so a change of key scheme, batching or bookkeeping fails here).
Compiling the whole main job takes about a minute, so ``pytest -q`` (and ``.ci/run``) runs it on its
two quickest experiments (``SMALL``); the whole job, the checks of the other experiments' numbers and
the fitting demonstration joining an earlier run's folder through ``--only`` are marked ``slow``
(``pytest -m slow``).

Output safety: fresh or ``--overwrite``-replaced folders, ``--only`` merges, nothing changes after an
interrupted run, command-line values are checked before anything runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import jaxlif as jl  # noqa: E402
from experiments import _common as C  # noqa: E402
from experiments import reproduce, stp_explorer  # noqa: E402

SEED = 3
EXPERIMENTS = reproduce.EXPERIMENTS
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


#: The experiments of the default suite's main-job run (the two quickest to compile).
SMALL = ["lif_part1", "stp_explorer"]
slow = pytest.mark.slow


def _main_job(tmp_path_factory, names):
    out = tmp_path_factory.mktemp("quick") / "results"
    summary = reproduce.main(["--quick", "--seed", str(SEED), "--out", str(out), "--only", ",".join(names)])
    return out, summary


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """``reproduce.main(["--quick", "--only", SMALL...])`` once: (output folder, returned summary)."""
    return _main_job(tmp_path_factory, SMALL)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """The whole main job at ``--quick`` size, fitting demonstration excluded (``slow`` tests only)."""
    return _main_job(tmp_path_factory, EXPERIMENTS)


def _run_of(request, name: str):
    """The main-job run that holds experiment ``name``."""
    return request.getfixturevalue("small_run" if name in SMALL else "quick_run")


def _links(report: str) -> list[str]:
    return [line.split("](")[1].rstrip(")") for line in report.splitlines() if line.startswith("![")]


def _leftovers(folder: Path) -> list[str]:
    """Staging folders or temporary files left next to (or inside) ``folder``."""
    return sorted(p.name for p in folder.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def _load(out: Path, name: str) -> dict:
    return json.loads((out / name / f"{name}.json").read_text())


def _key(stream: int, sub: int, trials: int):
    """The documented key scheme: split(fold_in(fold_in(key(seed), stream), sub), trials)."""
    return jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.key(SEED), stream), sub), trials)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["small_run", pytest.param("quick_run", marks=slow)])
def test_main_job_summary_and_report(request, run):
    out, summary = request.getfixturevalue(run)
    names = SMALL if run == "small_run" else EXPERIMENTS
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["ok"] is True and summary["ok"] is True
    assert list(on_disk["experiments"]) == names
    assert {"seed", "quick", "runtime_s", "jax", "device"} <= set(on_disk["info"])
    assert on_disk["info"]["seed"] == SEED and on_disk["info"]["quick"] is True
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["report.md", "summary.json"])
    assert _leftovers(out) == []
    for name in names:
        res = on_disk["experiments"][name]
        assert res["status"] == "ok", (name, res["error"])
        assert res["figures"], name
        assert res["summary"]["conclusion"], name
    report = (out / "report.md").read_text()
    links = _links(report)
    assert len(links) == sum(len(r["figures"]) for r in on_disk["experiments"].values())
    for link in links:
        assert (out / link).is_file(), link
    # summary.json in one unit system: no SI volts anywhere
    assert "_SI" not in json.dumps(on_disk) and on_disk["units"].startswith("ms, mV")


@pytest.mark.parametrize("name", [n if n in SMALL else pytest.param(n, marks=slow) for n in EXPERIMENTS])
def test_experiment_files(request, name):
    out, _ = _run_of(request, name)
    data = _load(out, name)
    assert {"name", "figures", "conclusion", "runtime_s"} <= set(data)
    assert data["name"] == name
    pngs = sorted(p.name for p in (out / name).glob("*.png"))
    assert pngs == sorted(data["figures"]) and len(pngs) >= 2
    for png in pngs:
        raw = (out / name / png).read_bytes()
        assert raw[:8] == PNG_MAGIC, png
        assert len(raw) > 20_000, f"{png} is suspiciously small ({len(raw)} bytes)"
        width, height = int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
        assert width >= 500 and height >= 300, (png, width, height)


@pytest.mark.slow
def test_fitting_demonstration_merges_into_the_main_job(tmp_path):
    """``--only fit_stp`` into an earlier run's folder: fitting added, the earlier experiment kept (merge)."""
    out = tmp_path / "results"
    reproduce.main(["--quick", "--seed", str(SEED), "--out", str(out), "--only", "lif_part1"])
    before = json.loads((out / "summary.json").read_text())
    reproduce.main(["--quick", "--seed", str(SEED), "--out", str(out), "--only", "fit_stp"])
    after = json.loads((out / "summary.json").read_text())
    res = after["experiments"]["fit_stp"]
    module, reason = reproduce.load_fit_module()
    report = (out / "report.md").read_text()
    if module is None:
        assert res["status"] == "pending" and res["figures"] == []
        assert "Fitting pending" in report
    else:
        assert res["status"] == "ok", res["error"]
        assert res["figures"] and all((out / f).is_file() for f in res["figures"])
        assert str(tmp_path) not in json.dumps({k: v for k, v in res.items() if k != "summary"})
    assert list(after["experiments"]) == ["lif_part1", "fit_stp"]
    assert after["experiments"]["lif_part1"] == before["experiments"]["lif_part1"]
    assert all((out / link).is_file() for link in _links(report))


def test_run_fit_paths(tmp_path, capsys):
    """The fitting hook: pending while fit_stp does not import, called with --quick --seed --out once it does."""
    cfg = reproduce.C.parse(reproduce.C.make_parser(reproduce.__doc__, "reproduce", reproduce.DEFAULTS,
                                                    reproduce.QUICK, reproduce.EXTRA),
                            ["--quick", "--seed", "7", "--out", str(tmp_path)], reproduce.DEFAULTS, reproduce.QUICK)
    res = reproduce.run_fit(cfg, tmp_path, loader=lambda: (None, "ModuleNotFoundError: jaxlif.fitting"))
    assert res["status"] == "pending" and "fitting pending" in capsys.readouterr().out

    calls = []

    class FakeFit:
        @staticmethod
        def main(argv):
            calls.append(argv)
            out = Path(argv[argv.index("--out") + 1])
            (out / "std_fit.png").write_bytes(PNG_MAGIC)
            return {"loss": np.float32(1e-5)}

    res = reproduce.run_fit(cfg, tmp_path, loader=lambda: (FakeFit, None))
    assert res["status"] == "ok" and res["figures"] == ["fit_stp/std_fit.png"]
    assert res["summary"] == {"loss": pytest.approx(1e-5)}
    argv = calls[0]
    assert "--quick" in argv and argv[argv.index("--seed") + 1] == "7"
    assert Path(argv[argv.index("--out") + 1]) == tmp_path / "fit_stp"


# ----------------------------------------------------------------------------------------------
# Numbers in the summaries agree with the library
# ----------------------------------------------------------------------------------------------


def test_lif_part1_numbers(small_run):
    out, _ = small_run
    data = _load(out, "lif_part1")
    # The first tutorial's printed output (coding exercise 4): volts, its SI units, printed with %.4e.
    printed_volts = [-5.8750e-02, -5.6828e-02, -5.4548e-02, -5.2381e-02, -5.0778e-02,
                     -4.9989e-02, -4.9974e-02, -5.0414e-02, -5.0832e-02, -5.0775e-02]
    v_volts = np.asarray(data["v_first_steps_mV"]) * 1e-3
    np.testing.assert_allclose(v_volts, printed_volts, rtol=0, atol=5.05e-7)
    p = jl.LIFParams(**data["params"]["neuron"])
    I = jl.sinusoidal_current(250.0, T=150.0, dt=1.0)
    spikes = np.asarray(jl.simulate_lif(p, I, dt=1.0).spikes)
    assert data["n_spikes"] == int(spikes.sum()) > 0
    fi = data["f_I"]
    k = len(fi["currents_pA"]) - 1
    ones = np.ones(jl.n_steps(fi["T_ms"], 1.0), np.float32)
    direct = jax.jit(lambda i: jl.spike_rate(jl.simulate_lif(p, i * ones, dt=1.0).spikes, fi["T_ms"]))(  # one program
        fi["currents_pA"][k])                                                                        # (eagerly: 6)
    assert fi["rate_dc_Hz"][k] == pytest.approx(float(direct))
    below = np.asarray(fi["currents_pA"]) < fi["rheobase_pA"]
    assert np.all(np.asarray(fi["rate_dc_Hz"])[below] == 0)


@slow
def test_free_membrane_potential_trial0(quick_run):
    out, _ = quick_run
    data = _load(out, "free_membrane_potential")
    key = jax.random.split(jax.random.fold_in(jax.random.key(SEED), data["key_stream"]), data["trials"])[0]
    params = jl.CondLIFParams(exc=jl.SynParams(2.4, 2.0, 0.0), inh=jl.SynParams(2.4, 5.0, -80.0))
    kw = dict(rate_E=10.0, rate_I=10.0, T=data["T"], dt=data["dt"])
    run = jl.simulate_cond_lif_poisson(key, params, **kw)
    fmp = jl.simulate_cond_lif_poisson(key, params, spiking=False, **kw)
    m, s = jl.fmp_stats(fmp.v)
    t0 = data["trial0"]
    assert t0["n_spikes"] == int(run.spikes.sum())
    assert t0["fmp_mean_mV"] == pytest.approx(float(m), abs=1e-4)
    assert t0["fmp_std_mV"] == pytest.approx(float(s), abs=1e-4)
    assert data["approximation"]["fmp_mean_mV"] == pytest.approx(-58.0, abs=0.05)   # docs/conventions.md 7: -58.0 mV
    assert data["approximation"]["fmp_std_mV"] == pytest.approx(4.1, abs=0.05)      # docs/conventions.md 7: 4.1 mV


@slow
def test_ei_heatmap_cell_equals_direct_simulation(quick_run):
    out, _ = quick_run
    data = _load(out, "ei_explorer")
    trials, T, dt = data["trials"], data["T"], data["dt"]
    keys = _key(data["key_stream"], 0, trials)
    params = jl.CondLIFParams(exc=jl.SynParams(3.0, 2.0, 0.0), inh=jl.SynParams(3.0, 5.0, -80.0))
    i, j = len(data["exc_rates_Hz"]) - 1, 1          # high excitation: a cell that fires
    rE, rI = data["exc_rates_Hz"][i], data["inh_rates_Hz"][j]
    rates, means, stds = [], [], []
    for t in range(trials):
        kw = dict(rate_E=rE, rate_I=rI, n_E=80, n_I=20, T=T, dt=dt)
        spikes = jl.simulate_cond_lif_poisson(keys[t], params, **kw).spikes
        m, s = jl.fmp_stats(jl.simulate_cond_lif_poisson(keys[t], params, spiking=False, **kw).v)
        rates.append(float(jl.spike_rate(spikes, T)))
        means.append(float(m))
        stds.append(float(s))
    grid = data["grid"]
    assert np.mean(rates) > 0
    assert grid["rate_Hz"][i][j] == pytest.approx(np.mean(rates), abs=1e-3)
    assert grid["fmp_mean_mV"][i][j] == pytest.approx(np.mean(means), abs=1e-3)
    assert grid["fmp_std_mV"][i][j] == pytest.approx(np.mean(stds), abs=1e-3)
    # the balance line sits where the shot-noise approximation puts the target mean FMP
    line = data["balance"][0]
    mu, _ = C.shot_noise_fmp(np.asarray(line["rate_E_Hz"]), np.asarray(line["rate_I_Hz"]), gE_bar=3.0, gI_bar=3.0)
    np.testing.assert_allclose(mu, line["target_fmp_mV"], atol=1e-9)


def test_stp_ratio_curves_equal_library(small_run):
    out, _ = small_run
    data = _load(out, "stp_explorer")
    for kind, params in (("std", jl.STD), ("stf", jl.STF)):
        d = data[kind]
        g1, g10 = jl.ratio_curve(params, d["rates_Hz"], dt=0.1, g_bar=1.2, tau_syn=5.0)
        np.testing.assert_allclose(d["regular"]["g1_nS"], g1, rtol=1e-6)
        np.testing.assert_allclose(d["regular"]["ratio"], np.asarray(g10) / np.asarray(g1), rtol=1e-6)
        # independent path: the step-by-step loop on the tutorial's regular train
        rate = d["rates_Hz"][-1]
        isi = int((1000.0 / rate) / 0.1)
        g = np.asarray(jl.simulate_stp(params, jl.SynParams(1.2, 5.0, 0.0),
                                       jl.regular_train(rate, T=10 * 1000.0 / rate, dt=0.1), dt=0.1).g)
        assert d["regular"]["g10_nS"][-1] == pytest.approx(float(g[9 * isi]), rel=1e-4)
        # a Poisson train's first received spike finds a rested synapse: g = g_bar U0 exactly
        np.testing.assert_allclose(d["poisson"]["g1_mean_nS"], 1.2 * params.U0, rtol=1e-5)


def test_poisson_events_equal_step_by_step():
    """The event-driven Poisson trials equal simulate_stp on the step-by-step train with the same gaps."""
    rates = [10.0, 40.0]
    g, gaps = stp_explorer.poisson_event_conductances(jax.random.key(0), jl.STF, rates, trials=3, dt=0.1,
                                                      g_bar=1.2, tau_syn=5.0)
    assert g.shape == gaps.shape == (2, 3, stp_explorer.LATE_SPIKE)
    syn = jl.SynParams(1.2, 5.0, 0.0)
    n = int(np.cumsum(gaps, axis=-1).max()) + 2           # one length for both rates: one simulate_stp program
    for r in range(2):
        idx = np.cumsum(gaps[r], axis=-1)                 # spike indices of each train
        trains = np.zeros((3, n), bool)
        np.put_along_axis(trains, idx, True, axis=-1)
        trace = np.asarray(jl.simulate_stp(jl.STF, syn, trains, dt=0.1).g)
        np.testing.assert_allclose(g[r], np.take_along_axis(trace, idx, axis=-1), rtol=2e-5, atol=1e-7)
    # gaps are Geometric(p): mean 1/p steps (loose check on a larger draw)
    _, big = stp_explorer.poisson_event_conductances(jax.random.key(1), jl.STD, [20.0], trials=2000, dt=0.1,
                                                     g_bar=1.2, tau_syn=5.0)
    p = 20.0 * 0.1 / 1000.0
    sd = np.sqrt((1 - p) / p ** 2) / np.sqrt(big.size)
    assert abs(big.mean() - 1 / p) < 6 * sd


@slow
def test_bonus_numbers_equal_library(quick_run):
    out, _ = quick_run
    data = _load(out, "bonus_stp_lif")
    trials, T, dt, late_start = data["trials"], data["T"], data["dt"], data["late_start_ms"]
    keys = _key(data["key_stream"], 0, trials)
    r = np.float32(data["tau_ratios"][-1])
    late = int(round(late_start / dt))
    rates, gE = [], []
    for t in range(trials):
        run = jl.simulate_stp_lif_poisson(keys[t], jl.stp_lif_params(r), rate_E=15.0, rate_I=15.0, T=T, dt=dt)
        rates.append(float(jl.spike_rate(run.spikes[late:], T - late_start)))
        gE.append(float(run.g_E[late:].mean()))
    res = data["results"]
    assert res["stp"]["rate_late_Hz"][0][-1] == pytest.approx(np.mean(rates), abs=1e-3)
    assert res["stp"]["gE_late_nS"][0][-1] == pytest.approx(np.mean(gE), rel=1e-4)
    # the static equivalent delivers the same mean conductance: g_bar = <g> / (K rate tau_syn)
    assert res["static_same_mean"]["gE_bar_nS"][-1] == pytest.approx(np.mean(gE) / (80 * 0.015 * 5.0), rel=1e-4)
    assert res["static_at_rest"]["gE_bar_nS"] == pytest.approx(0.45 * 4.8)
    # ... and the static runs do measure that mean conductance (within Poisson noise)
    np.testing.assert_allclose(res["static_same_mean"]["gE_late_nS"][0], res["stp"]["gE_late_nS"][0], rtol=0.15)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _module(name):
    import importlib
    return importlib.import_module(f"experiments.{name}")


#: Experiments without a simulated time grid (they fit recorded data), so without --T and --dt.
NO_TIME_GRID = {"fit_trains"}


@pytest.mark.parametrize("name", EXPERIMENTS + ["reproduce"])
def test_script_help(name, capsys):
    """``--help`` documents the standard options, names only files the script writes, and stays short."""
    with pytest.raises(SystemExit) as exit_:
        _module(name).main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--seed", "--out", "--quick", "--overwrite"):
        assert option in text
    if name == "reproduce":
        assert "reproduce.json" not in text and "summary.json" in text and "report.md" in text
    elif name in NO_TIME_GRID:          # fits of recorded data: no simulation grid to set
        assert "--dt" not in text and "--T" not in text and f"{name}.json" in text
    else:
        assert "--dt" in text and "--T" in text and f"{name}.json" in text
    # long default lists are summarised (lif_part1 sweeps 101 currents)
    assert max(len(tok.split(",")) for tok in text.split()) <= 8


@slow          # a script started as a new process (import, compilation, figures: about 10 s)
def test_script_runs_as_file(tmp_path):
    """A script run as a file (not imported) from another folder writes its outputs."""
    out = tmp_path / "part1"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "lif_part1.py"), "--quick", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "[lif_part1] config:" in proc.stdout
    assert json.loads((out / "lif_part1.json").read_text())["n_spikes"] > 0
    assert _leftovers(out) == []


def test_existing_output_needs_overwrite_and_is_replaced_whole(tmp_path, capsys):
    from experiments import lif_part1
    out = tmp_path / "part1"
    out.mkdir()
    (out / "stale.png").write_bytes(PNG_MAGIC)
    with pytest.raises(SystemExit) as exit_:
        lif_part1.main(["--quick", "--out", str(out)])
    assert exit_.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["stale.png"]          # untouched
    summary = lif_part1.main(["--quick", "--out", str(out), "--overwrite"])
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(summary["figures"] + ["lif_part1.json"])      # the stale file is gone
    assert _leftovers(out) == []


def test_interrupted_run_leaves_the_output_folder_as_it_was(tmp_path, monkeypatch, capsys):
    """Ctrl-C half-way: the earlier results stay whole, no staging folder is left, exit status 130."""
    from experiments import lif_part1
    out = tmp_path / "part1"
    out.mkdir()
    (out / "old.json").write_text("{}")
    real_save = C.save_figure

    def save_then_interrupt(fig, folder, filename, files):
        real_save(fig, folder, filename, files)      # one new figure is written to the staging folder...
        raise KeyboardInterrupt                      # ...then the user presses Ctrl-C

    monkeypatch.setattr(C, "save_figure", save_then_interrupt)
    monkeypatch.setattr(sys, "argv", ["lif_part1.py", "--quick", "--out", str(out), "--overwrite"])
    monkeypatch.setattr(C, "enable_compilation_cache", lambda: None)
    with pytest.raises(SystemExit) as exit_:
        C.script(lif_part1.main)
    assert exit_.value.code == C.EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["old.json"]
    assert _leftovers(out) == []


def test_only_merges_into_an_earlier_run(small_run, tmp_path):
    """``--only lif_part1`` with another seed: its folder and entry replaced, the others kept, links valid."""
    src, _ = small_run
    out = tmp_path / "results"
    shutil.copytree(src, out)
    before = json.loads((out / "summary.json").read_text())
    reproduce.main(["--quick", "--seed", str(SEED + 1), "--out", str(out), "--only", "lif_part1"])
    after = json.loads((out / "summary.json").read_text())
    assert list(after["experiments"]) == SMALL and SMALL[0] == "lif_part1"
    assert after["experiments"]["lif_part1"]["seed"] == SEED + 1
    assert after["info"]["ran"] == ["lif_part1"] and set(after["info"]["kept_from_earlier_run"]) == set(SMALL[1:])
    for name in SMALL[1:]:
        assert after["experiments"][name] == before["experiments"][name]
    report = (out / "report.md").read_text()
    assert len(_links(report)) == sum(len(r["figures"]) for r in after["experiments"].values())
    assert all((out / link).is_file() for link in _links(report))
    assert _leftovers(out) == []


@pytest.mark.parametrize("script,argv,message", [
    ("ei_explorer", ["--exc-rates=20000,-5,10"], "argument --exc-rates: rates must lie in [0, 1000/dt]"),
    ("ei_explorer", ["--inh-rates=-5"], "argument --inh-rates"),
    ("ei_explorer", ["--balance-fmp=-90"], "argument --balance-fmp"),
    ("bonus_stp_lif", ["--tau-ratios=-1"], "argument --tau-ratios: tau_ratio must be positive"),
    ("bonus_stp_lif", ["--late-start=5000"], "argument --late-start"),
    ("free_membrane_potential", ["--trials=0"], "argument --trials"),
    ("free_membrane_potential", ["--T=0.05"], "argument --T"),
    ("stp_explorer", ["--std-rates=0,10"], "argument --std-rates"),
    ("lif_part1", ["--dt=-1"], "argument --dt"),
    ("reproduce", ["--only=nope"], "unknown experiments"),
])
def test_bad_option_values_are_usage_errors(script, argv, message, tmp_path, capsys):
    """Checked before anything is computed or written: argparse's message, exit status 2."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        _module(script).main(argv + ["--out", str(out)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_options_quick_and_explicit(tmp_path):
    from experiments import ei_explorer as E
    parser = C.make_parser(E.__doc__, E.NAME, E.DEFAULTS, E.QUICK, E.EXTRA)
    cfg = C.parse(parser, ["--quick", "--trials", "5", "--out", str(tmp_path)], E.DEFAULTS, E.QUICK, E.CHECKS)
    assert cfg.trials == 5 and cfg.T == E.QUICK["T"] and cfg.dt == E.DEFAULTS["dt"]
    cfg = C.parse(parser, ["--exc-rates", "2:6:2", "--out", str(tmp_path)], E.DEFAULTS, E.QUICK, E.CHECKS)
    assert cfg.exc_rates == [2.0, 4.0, 6.0] and cfg.trials == E.DEFAULTS["trials"]
    for bad in ("2:6:-1", "6:2:1", "a,b", ""):
        with pytest.raises(SystemExit):
            C.parse(parser, ["--exc-rates", bad], E.DEFAULTS, E.QUICK, E.CHECKS)


def test_rate_histogram_bins_hold_whole_spike_counts():
    """Rates from T = 200 ms are multiples of 5 Hz: every bin holds the same number of lattice points."""
    from experiments.free_membrane_potential import histogram_bins
    rates = np.array([5.0, 10.0, 10.0, 25.0, 40.0, 45.0])
    edges = histogram_bins(rates, 5.0)
    lattice = np.arange(0.0, 100.0, 5.0)
    per_bin = np.histogram(lattice[(lattice >= edges[0]) & (lattice < edges[-1])], edges)[0]
    assert np.all(per_bin == per_bin[0]) and per_bin[0] >= 1
    assert np.histogram(rates, edges)[0].sum() == rates.size
    many = np.arange(0, 500) * 5.0
    assert len(histogram_bins(many, 5.0)) - 1 <= 30


def test_balance_helpers_invert_each_other():
    r_E = np.array([5.0, 20.0, 100.0])
    for mu in (-62.0, -55.0):
        r_I = C.balanced_inh_rate(mu, r_E, gE_bar=3.0, gI_bar=3.0)
        np.testing.assert_allclose(C.shot_noise_fmp(r_E, r_I, gE_bar=3.0, gI_bar=3.0)[0], mu, atol=1e-9)


def test_help_shows_lists_of_numbers_and_of_names():
    """--help values: evenly spaced numbers as start:stop:step, other numbers listed, names as written."""
    assert C._shown(list(np.arange(0.0, 101.0, 1.0))) == "0:100:1 (101 values)"
    assert C._shown([1.0, 2.0, 5.0]) == "1,2,5"
    assert C._shown(["tm", "tm4", "srp"]) == "tm,tm4,srp"
    # the printed config line abbreviates long lists, numbers and names alike (a list of 7 names crashed it)
    assert C._short(list(np.arange(10.0))) == "[0, 1, ..., 9] (10 values)"
    assert C._short([f"e{i}" for i in range(7)]) == "[e0, e1, ..., e6] (7 values)"
