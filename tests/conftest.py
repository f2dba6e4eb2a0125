"""Shared fixtures and the suite's settings.

The suite runs on every core (``pytest-xdist``, ``-n auto --dist loadfile`` in pyproject.toml: each test
file, or group of files that build the same programs (``FILE_GROUPS`` below), runs whole in one worker,
so module fixtures such as the main job's quick run are computed once); most
of its time is XLA compiling small programs, which is single-threaded, so the suite compiles with
``TEST_XLA_FLAGS`` (below).  Long end-to-end tests are marked ``slow`` and left out of ``pytest -q``
(and so of ``.ci/run``); ``pytest -m slow`` runs them.

The suite compiles with XLA's backend (LLVM) optimisations off (``jax_disable_most_optimizations``):
the programs are the same computations, but LLVM neither vectorises nor fuses multiply-adds, so
sums and products may round differently in the last bit from the optimised programs users run (as
they do between two CPUs with different vector units).  That halves the compile time of the
largest programs (the network gradients: 8.4 to 4.4 CPU-s) and takes about a quarter off the
suite's CPU time.  Tests hold within the same process (two programs compared bit for bit are both
compiled this way) and against NumPy oracles within their tolerances; the documentation's pages print
what they show either way, to the digits they show, except docs/fitting.md, whose cross-validated
``cv_nll`` moves in its third decimal.  The places where the optimised programs themselves are the
subject take the ``users_programs`` fixture below, which compiles the rest of their module's programs
with the optimisations on: that page (``test_docs.py``: what a reader runs) and the comparison with
processes on XLA's defaults (``test_distributed.py``).  ``test_fitting.py`` compiles its fits optimised too,
for time (its own ``optimised_fits`` fixture, which keeps the worker's programs: its checks are not about the
optimised programs, and it reuses the docs page's fit of the same shape): its fits run many optimiser
iterations, and there the optimised programs save more running than they cost compiling (its CPU
time doubles without).  ``JAXLIF_TEST_XLA_DEFAULTS=1`` runs the whole suite with XLA's
defaults (optimised programs, fusion emitters, split code generation).  64-bit mode stays off
globally (jaxlif defaults to float32); tests that need it use the ``x64`` fixture.
"""

import contextlib
import os

import pytest

# Figures without a display (set before anything imports matplotlib; the workers inherit it).
os.environ["MPLBACKEND"] = "Agg"

#: The suite's XLA flags: XLA:CPU's per-operation code generator instead of its newer fusion
#: emitters, and the generated module compiled in one piece (``parallel_codegen_split_count=1``:
#: XLA otherwise splits it to compile on several threads, which on a suite that already keeps
#: every core busy only adds work, about 4 % of the suite's CPU time; it changes how the module is
#: compiled, not what it computes).  Compiling is most of the suite's time, and this compiles about 40 % faster; the
#: compiled programs computed the same numbers bit for bit on every program compared when it was
#: chosen (two batch simulators, a ratio fit, a Poisson run), and ``tests/test_distributed.py``
#: checks the STP-LIF batch simulator against a process with XLA's defaults on every run (spikes,
#: traces and counts bit for bit; streamed means and stds, sums that any other compiled program may
#: round differently, to 1e-6).  The batch simulators run about half as fast this way, so it
#: is a setting for the suite, not for users.  ``JAXLIF_TEST_XLA_DEFAULTS=1`` tests with XLA's
#: defaults.  Set here, before any test module initialises a backend; scripts the tests start
#: inherit it.
TEST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"
XLA_DEFAULTS = os.environ.get("JAXLIF_TEST_XLA_DEFAULTS", "") not in ("", "0")
if not XLA_DEFAULTS and TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + TEST_XLA_FLAGS).strip()

#: Environment variable that carries the unoptimised compilation to the scripts the tests start.
FAST_COMPILE = "JAX_DISABLE_MOST_OPTIMIZATIONS"
if not XLA_DEFAULTS:
    os.environ[FAST_COMPILE] = "1"          # read when jax is imported (pytest_configure below)

# NumPy's OpenBLAS on one thread in the test processes (set before the workers import NumPy): its linear
# algebra here is on small matrices, and its idle threads spin on the cores the other worker needs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Scripts started by the tests must not write compiled programs into the user's cache folder.
os.environ.setdefault("JAXLIF_CACHE_DIR", "off")


def _xdist_controller(config) -> bool:
    """This process only hands the tests to pytest-xdist's workers (it runs none, so it needs no JAX)."""
    try:
        workers = config.getoption("numprocesses")
    except ValueError:                                    # pytest-xdist not loaded
        return False
    return bool(workers) and not hasattr(config, "workerinput") and not config.getoption("collectonly")


#: The cyclic garbage collector's thresholds in the processes that run tests (Python's default: 700, 10, 10).
#: Tracing and lowering allocate millions of short-lived containers, and with the default thresholds the
#: collector ran about 16,000 times in the default tier and took 22 CPU-s of it (measured with
#: ``gc.callbacks``, 2026-12-07); with these it runs about 800 times and takes 5.  Garbage in reference cycles
#: is still collected, only in larger batches.
GC_THRESHOLDS = (50_000, 20, 100)


def _collect_garbage_less_often() -> None:
    """Freeze what the imports created (the collector no longer traverses it) and raise the thresholds."""
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def pytest_configure(config):
    """JAX's settings for the processes that run tests (the xdist controller does not import JAX).

    No compilation cache on disk: one shared by the workers was measured (2026-12-06, the whole default
    tier) to save 2 CPU-s of compiling (about 220 hits, nearly all programs of a few milliseconds) and to
    cost 10 CPU-s writing every program it compiled, so the suite keeps none."""
    if _xdist_controller(config):
        return
    import jax
    if not XLA_DEFAULTS:
        jax.config.update("jax_disable_most_optimizations", True)      # also if jax was imported before
    _collect_garbage_less_often()


#: Test files that run in the same worker (:func:`pytest_xdist_make_scheduler`; every other file is its own
#: group, as with plain ``--dist loadfile``): files that build the same programs (the same shapes and options), so
#: that the second one finds them in the worker's memory, traced and compiled.
FILE_GROUPS = {
    # the 40 E + 10 I network at 60 ms: the plain run and the mean-field gradient over the whole tree; the
    # main job's network training at its test size (the same network builder and estimator pieces)
    "test_network_gradients.py": "network-gradients", "test_network_params.py": "network-gradients",
    "test_train_network.py": "network-gradients",
    # the fits' optimiser and likelihood programs (the docs' fitting page, the command line, the fits)
    "test_cli_fit.py": "fitting", "test_docs.py": "fitting", "test_fit_trains.py": "fitting",
    "test_fitting.py": "fitting",
}


@pytest.hookimpl(optionalhook=True)         # a run without xdist (-p no:xdist) must not reject it
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadfile`` (pyproject.toml), schedule by :data:`FILE_GROUPS`: each group of files, and
    every other file, goes to one worker whole (xdist's own ``loadgroup`` marks do not reach its scheduler
    under pytest 9.2, which keeps node ids elsewhere)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileGroupScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return FILE_GROUPS.get(path.rsplit("/", 1)[-1], path)

    return FileGroupScheduling(config, log)


@pytest.fixture(scope="module")
def users_programs():
    """Compile the module's programs with XLA's optimisations on, as users' programs are (module
    docstring); the suite's setting is restored after the module."""
    import jax
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    jax.clear_caches()        # the in-memory caches do not key on the setting: drop what this worker compiled
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (``jax.enable_x64``), restoring the default after."""
    import jax
    with jax.enable_x64(True):
        yield


# Tolerances per dtype (tutorial units: mV, nS)
TOL64 = 1e-9
TOL32_MV = 1e-3
TOL32_NS = 1e-4


@contextlib.contextmanager
def compiled_programs():
    """The names (``jit(name)``) of the programs XLA compiles inside the block (cache hits are not counted)."""
    import jax
    from jax._src.dispatch import BACKEND_COMPILE_EVENT
    names = []

    def listen(event, duration, **kw):
        if event == BACKEND_COMPILE_EVENT:
            names.append(kw.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield names
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
