"""Shared fixtures and the suite's settings.

The suite runs on every core (``pytest-xdist``, ``-n auto --dist loadfile`` in pyproject.toml: one
test file per worker, so module fixtures such as the main job's quick run are computed once); most
of its time is XLA compiling small programs, which is single-threaded, so the suite compiles with
``TEST_XLA_FLAGS`` (below).  Long end-to-end tests are marked ``slow`` and left out of ``pytest -q``
(and so of ``.ci/run``); ``pytest -m slow`` runs them.

``JAXLIF_TEST_FAST_COMPILE=1`` compiles with XLA's backend (LLVM) optimisations off
(``jax_disable_most_optimizations``): about a quarter less CPU time for the suite, but the
programs then round differently in the last bit (no fused multiply-add), so tests that compare
numbers bit for bit with other processes, or sit right at a tolerance, can fail.  The default runs
the programs users run.  64-bit mode stays off globally (jaxlif defaults to float32); tests that
need it use the ``x64`` fixture.
"""

import os
import shutil
import tempfile

import jax
import matplotlib
import pytest

matplotlib.use("Agg")

#: The suite's XLA flags: XLA:CPU's per-operation code generator instead of its newer fusion
#: emitters, and the generated module compiled in one piece (``parallel_codegen_split_count=1``:
#: XLA otherwise splits it to compile on several threads, which on a suite that already keeps
#: every core busy only adds work, about 4 % of the suite's CPU time; it changes how the module is
#: compiled, not what it computes).  Compiling is most of the suite's time, and this compiles about 40 % faster; the
#: compiled programs computed the same numbers bit for bit on every program compared when it was
#: chosen (two batch simulators, a ratio fit, a Poisson run), and ``tests/test_distributed.py``
#: checks the STP-LIF batch simulator against processes with XLA's defaults on every run (spikes,
#: traces and counts bit for bit; streamed means and stds, sums that any other compiled program may
#: round differently, to 1e-6).  The batch simulators run about half as fast this way, so it
#: is a setting for the suite, not for users.  ``JAXLIF_TEST_XLA_DEFAULTS=1`` tests with XLA's
#: defaults.  Set here, before any test module initialises a backend; scripts the tests start
#: inherit it.
TEST_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1"
if os.environ.get("JAXLIF_TEST_XLA_DEFAULTS", "") in ("", "0") and TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + TEST_XLA_FLAGS).strip()

if os.environ.get("JAXLIF_TEST_FAST_COMPILE", "") not in ("", "0"):
    jax.config.update("jax_disable_most_optimizations", True)
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"      # the same for the scripts the tests start

# Scripts started by the tests must not write compiled programs into the user's cache folder.
os.environ.setdefault("JAXLIF_CACHE_DIR", "off")

#: Environment variable naming the session's shared compilation cache ("off": none).
SHARED_CACHE = "JAXLIF_TEST_SHARED_CACHE"


def pytest_configure(config):
    """One JAX compilation cache per test session, in a fresh temporary folder, shared by the
    xdist workers (they inherit the variable from the controller, which creates the folder): a
    program that several test files compile (the default simulators, the fits) is compiled once
    per session instead of once per worker.  The cache holds compiled executables keyed by the
    program and the compiler's options, so a program loaded from it is the one compiled, bit for
    bit.  Nothing is read from or written to the user's cache; ``JAXLIF_TEST_SHARED_CACHE=off``
    turns it off."""
    if SHARED_CACHE not in os.environ and not hasattr(config, "workerinput"):
        os.environ[SHARED_CACHE] = tempfile.mkdtemp(prefix="jaxlif-test-cache-")
        config._jaxlif_shared_cache = os.environ[SHARED_CACHE]
    folder = os.environ.get(SHARED_CACHE, "off")
    if folder not in ("", "off", "0"):
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    folder = getattr(config, "_jaxlif_shared_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (``jax.enable_x64``), restoring the default after."""
    with jax.enable_x64(True):
        yield


# Tolerances per dtype (tutorial units: mV, nS)
TOL64 = 1e-9
TOL32_MV = 1e-3
TOL32_NS = 1e-4
