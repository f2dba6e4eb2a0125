"""The package around the models: time grid, raster statistics on any raster, tutorial argument
errors, the command line (version, exit statuses, Ctrl-C), the compilation cache, packaging files."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

import reference as ref
import jaxlif
from jaxlif import _cache, cli, nma
from jaxlif.grid import UnitsWarning

ROOT = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------------------------
# Time grid
# ----------------------------------------------------------------------------------------------


def _grid_values(n: int, seed: int = 0):
    """(T, dt) pairs that stress rounding: exact multiples, one ulp either side, decimals, random."""
    rng = np.random.default_rng(seed)
    dts = [0.1, 0.01, 0.05, 0.025, 0.2, 0.3, 0.7, 1.0, 1e-3, 0.0625, 1 / 3]
    for _ in range(n):
        dt = float(rng.choice(dts)) if rng.random() < 0.7 else float(10 ** rng.uniform(-3, 1))
        k = int(rng.integers(1, 5000))
        T = float(rng.choice([k * dt, np.nextafter(k * dt, 0), np.nextafter(k * dt, np.inf), round(k * dt, 6),
                              10 ** rng.uniform(0, 3.5)]))
        if T >= dt:
            yield T, dt


def test_n_steps_equals_numpy_arange_length():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsWarning)
        pairs = list(_grid_values(6000))
        assert len(pairs) > 4500
        for T, dt in pairs:
            assert jaxlif.n_steps(T, dt) == len(np.arange(0.0, T, dt)), (T, dt)
    assert jaxlif.n_steps(1000.0, 0.1) == 10000 and jaxlif.n_steps(400, 0.1) == 4000
    assert jaxlif.n_steps(np.float32(0.3), 0.1) == len(np.arange(0.0, float(np.float32(0.3)), 0.1))


def test_n_steps_of_an_hour_allocates_nothing():
    tracemalloc.start()
    try:
        n = jaxlif.n_steps(3.6e6, 0.01)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == math.ceil(3.6e6 / 0.01) == 360_000_000
    assert peak < 1_000_000          # an arange would take 2.9 GB


def test_T_shorter_than_dt_raises_and_seconds_for_ms_warns():
    with pytest.raises(ValueError, match=r"T=0\.05 ms is shorter than the time step dt=0\.1 ms"):
        jaxlif.n_steps(0.05, 0.1)
    with pytest.raises(ValueError, match="T=0.05 ms"):
        jaxlif.poisson_trains(jaxlif.inputs.jax.random.key(0), 10.0, 2, T=0.05, dt=0.1)
    with pytest.warns(UnitsWarning, match="milliseconds"):
        assert jaxlif.n_steps(1.0, 1e-4) == 10000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jaxlif.n_steps(1000.0, 0.1)         # ordinary values: silent
        jaxlif.n_steps(1.0, 1e-3)


# ----------------------------------------------------------------------------------------------
# Raster statistics on count and float rasters
# ----------------------------------------------------------------------------------------------


# Both raster tests use shape (4, 2000) so that the eagerly compiled operations are shared.
def test_isi_cv_on_float_raster_from_poisson_generator():
    pars = nma.default_pars(T=200.0)
    trains = nma.Poisson_generator(pars, rate=80.0, n=4, myseed=5)
    assert trains.dtype == np.float64
    cv = np.asarray(jaxlif.isi_cv(trains))
    want = [ref.cv_isi(np.flatnonzero(row) * pars["dt"]) for row in trains]
    np.testing.assert_allclose(cv, want, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(jaxlif.isi_cv(trains)), np.asarray(jaxlif.isi_cv(trains > 0)))
    np.testing.assert_array_equal(jaxlif.spike_count(trains), trains.sum(-1))


def test_isi_cv_on_count_raster_counts_every_spike():
    """A count c at step k is c spikes at k*dt: c - 1 intervals of 0, as the tutorial's spike-time list."""
    rng = np.random.default_rng(3)
    counts = rng.poisson(0.03, size=(4, 2000))
    counts[0] = 0
    counts[0, [4, 9]] = [3, 1]          # 4 spikes: CV defined although only two steps hold spikes
    for row, cv in zip(counts, np.asarray(jaxlif.isi_cv(counts))):
        times = np.repeat(np.arange(row.size), row) * 0.1
        assert cv == pytest.approx(ref.cv_isi(times), rel=1e-5, abs=1e-7)
    assert float(jaxlif.isi_cv(counts[0])) > 0
    np.testing.assert_array_equal(jaxlif.spike_count(counts), counts.sum(-1))


@pytest.mark.parametrize("raster", [np.array([0.0, 0.5, 1.0]), np.array([0, -1, 1]), np.array([0.0, np.nan])])
def test_isi_cv_rejects_rasters_that_are_not_counts(raster):
    with pytest.raises(ValueError, match="spikes must hold spike counts per step"):
        jaxlif.isi_cv(raster)


def test_my_illus_std_rejects_a_list_of_rates_by_name():
    with pytest.raises(TypeError, match=r"my_illus_STD: rate must be a single number in Hz, got \[5\.0, 10\.0\]"):
        nma.my_illus_STD(rate=[5.0, 10.0], plot_out=False)
    with pytest.raises(TypeError, match="my_illus_STD: tau_f must be a single number"):
        nma.my_illus_STD(tau_f=np.array([50.0, 60.0]), plot_out=False)


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def test_version_everywhere_agrees(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxlif {jaxlif.__version__}"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{jaxlif.__version__}"' in pyproject
    assert f"## {jaxlif.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def _fake_command(handler):
    def add(sub):
        p = sub.add_parser("fake")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=handler)
    return add


@pytest.mark.parametrize("error,status,text", [
    (KeyboardInterrupt(), 130, "jaxlif fake: interrupted"),
    (ValueError("--rates: need at least one rate"), 2, "jaxlif fake: error: --rates: need at least one rate"),
    (PermissionError(13, "Permission denied", "/root/x.png"), 1, "jaxlif fake: error: /root/x.png: Permission denied"),
])
def test_cli_failures_end_with_one_line_and_a_status(monkeypatch, capsys, error, status, text):
    def handler(args):
        raise error
    monkeypatch.setattr(cli, "SUBCOMMANDS", [_fake_command(handler)])
    try:
        code = cli.main(["fake", "--no-cache", "--quiet"])
    except SystemExit as exit_:
        code = exit_.code
    assert code == status
    err = capsys.readouterr().err
    assert text in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_every_subcommand_takes_the_cache_options():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices
    for name, subparser in sub.choices.items():
        help_text = subparser.format_help()
        assert "--cache-dir" in help_text and "--no-cache" in help_text, name


# ----------------------------------------------------------------------------------------------
# Compilation cache
# ----------------------------------------------------------------------------------------------


def test_cache_folder_rules(tmp_path):
    home = str(Path("~").expanduser())
    assert _cache.default_cache_dir({}) == Path(home) / ".cache" / "jaxlif" / "jax"
    assert _cache.default_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/jaxlif/jax")
    assert _cache.default_cache_dir({"JAXLIF_CACHE_DIR": str(tmp_path), "XDG_CACHE_HOME": "/x"}) == tmp_path
    for off in ("off", "0", "", "none"):
        assert _cache.default_cache_dir({"JAXLIF_CACHE_DIR": off}) is None


def test_cache_is_off_on_import_and_an_unwritable_folder_is_one_line(tmp_path, capsys):
    import jax
    # importing jaxlif changed nothing (the suite keeps no cache either: tests/conftest.py)
    session = jax.config.jax_compilation_cache_dir
    assert session in (None, "")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _cache.enable(blocker / "cache") is None
    assert "compilation cache off: cannot write" in capsys.readouterr().err
    assert jax.config.jax_compilation_cache_dir == session


_CACHE_SCRIPT = """
import sys, jax, jax.numpy as jnp, jax.monitoring
from jaxlif import _cache
hits = []
jax.monitoring.register_event_listener(lambda name, **kw: name.endswith("cache_hits") and hits.append(name))
print("FOLDER", _cache.enable(sys.argv[1]))
def f(x):
    return jax.lax.scan(lambda c, _: (jnp.sin(c) * 1.0001 + c * c / 3, c), x, None, length=64)[1].sum()
jax.block_until_ready(jax.jit(jax.grad(f))(jnp.float32(0.1)))
print("HITS", len(hits))
"""


def test_second_process_finds_the_compiled_program_on_disk(tmp_path):
    """First process compiles and stores; the second reads the compiled programs back (cache hits)."""
    def run():
        proc = subprocess.run([sys.executable, "-c", _CACHE_SCRIPT, str(tmp_path / "cache")],
                              capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert proc.returncode == 0, proc.stderr
        assert f"FOLDER {tmp_path / 'cache'}" in proc.stdout
        return int(proc.stdout.split("HITS")[1])
    assert run() == 0
    assert any((tmp_path / "cache").iterdir())
    assert run() >= 1


def test_compiling_line_only_for_a_compilation_that_takes_a_while(capsys):
    """Lowered then found in the cache: silent.  Lowered and still compiling after the delay: one line."""
    import time
    import jax.monitoring as mon
    stop = _cache.announce_compilation("COMPILING", delay_s=0.2)
    try:
        mon.record_event_duration_secs(_cache._LOWERED, 0.01)
        mon.record_event(_cache._CACHE_HIT)                   # a cache hit cancels the line
        mon.record_event_duration_secs(_cache._LOWERED, 0.01)
        mon.record_event_duration_secs(_cache._COMPILED, 0.05)   # a quick compilation too
        time.sleep(0.4)
        assert "COMPILING" not in capsys.readouterr().err
        mon.record_event_duration_secs(_cache._LOWERED, 0.01)   # a slow one: announced once, while it runs
        time.sleep(0.4)
        mon.record_event_duration_secs(_cache._COMPILED, 0.4)
        mon.record_event_duration_secs(_cache._LOWERED, 0.01)
        time.sleep(0.4)
        assert capsys.readouterr().err.count("COMPILING") == 1
    finally:
        stop()


# ----------------------------------------------------------------------------------------------
# Packaging files
# ----------------------------------------------------------------------------------------------


def test_packaging_files_and_no_dangling_references():
    assert (ROOT / "jaxlif" / "py.typed").is_file()
    licence = (ROOT / "LICENSE").read_text()
    assert "BSD 3-Clause" in licence and "Neuromatch" in licence and "CC BY 4.0" in licence
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert "py.typed" in pyproject
    # every docs/ link in the repository points at a file it holds; no document outside it is cited
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert tracked, "not a git checkout"
    texts = [p for p in tracked if p.endswith((".py", ".md", ".toml", ".txt")) or p == ".ci/run"]
    # the team's own notes outside the repository, spelled so that this line does not match itself
    notes = ["".join(parts) for parts in (("SP", "EC"), ("ANCH", "ORS"), ("STY", "LE"))]
    outside = [name + ".md" for name in notes] + ["shar" + "ed/", notes[0] + " parameter"]
    for path in texts:
        text = (ROOT / path).read_text()
        for banned in outside:
            assert banned not in text, (path, banned)
        for doc in set(re.findall(r"docs/[A-Za-z0-9_./-]+?\.md", text)):
            assert (ROOT / doc).is_file(), (path, doc)
        # every script or module named by its path exists (e.g. after a move from experiments/ to benchmarks/)
        for name in set(re.findall(r"(?<![\w/.-])(?:experiments|benchmarks|tests|jaxlif)/[a-z0-9_/]+\.(?:py|md)\b",
                                   text)):
            assert (ROOT / name).is_file(), (path, name)


def test_startup_benchmark_rewrites_only_its_own_section(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks import startup
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nother section\n")
    startup.write_section(f"{startup.BEGIN}\nfirst\n{startup.END}", path)
    startup.write_section(f"{startup.BEGIN}\nsecond\n{startup.END}", path)
    text = path.read_text()
    assert text.count(startup.BEGIN) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Benchmarks\n\nother section\n")
    table = startup.section([("row", [(2.0, 1.5, 0), (1.0, 0.9, 0), (3.0, 2.0, 0)])], (1.0, 1.0, 1.0),
                            (2.0, 2.0, 2.0), 3)
    assert "| row | 1.00 | 2.00 | 0.90 | 0 |" in table


def test_conftest_hooks_load_without_xdist(request):
    # the suite's xdist scheduler hook is optional: a plugin manager without xdist's hook specifications (a
    # run with -p no:xdist, or without pytest-xdist) accepts tests/conftest.py (it raised "unknown hook")
    from _pytest.config import PytestPluginManager
    conftest = next(p for p in request.config.pluginmanager.get_plugins()
                    if getattr(p, "__file__", "").endswith(os.path.join("tests", "conftest.py")))
    assert hasattr(conftest, "pytest_xdist_make_scheduler")
    manager = PytestPluginManager()
    manager.register(conftest, name="suite-conftest")
    manager.check_pending()


def test_suite_settings_reach_the_processes_that_run_tests():
    """tests/conftest.py sets JAX up in the processes that run tests (the xdist controller, which runs none,
    does not import JAX): the suite's XLA flags and unoptimised compilation (unless
    ``JAXLIF_TEST_XLA_DEFAULTS``), figures without a display, and no compilation cache on disk."""
    import jax
    import conftest
    if not conftest.XLA_DEFAULTS:
        assert jax.config.read("jax_disable_most_optimizations") is True
        assert conftest.TEST_XLA_FLAGS in os.environ["XLA_FLAGS"]
    assert os.environ["MPLBACKEND"] == "Agg"
    assert jax.config.jax_compilation_cache_dir in (None, "")
