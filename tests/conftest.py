"""Shared fixtures and the suite's settings.

The suite runs on every core (``pytest-xdist``, ``-n auto --dist loadfile`` in pyproject.toml: one
test file per worker, so module fixtures such as the main job's quick run are computed once); most
of its time is XLA compiling small programs, which is single-threaded.  Long end-to-end tests are
marked ``slow`` and left out of ``pytest -q``; ``pytest -m slow`` runs them (``.ci/run`` does both).

``JAXLIF_TEST_FAST_COMPILE=1`` compiles with XLA's backend (LLVM) optimisations off
(``jax_disable_most_optimizations``): about a quarter less CPU time for the suite, but the
programs then round differently in the last bit (no fused multiply-add), so tests that compare
numbers bit for bit with other processes, or sit right at a tolerance, can fail.  The default runs
the programs users run.  64-bit mode stays off globally (jaxlif defaults to float32); tests that
need it use the ``x64`` fixture.
"""

import os

import jax
import matplotlib
import pytest

matplotlib.use("Agg")

if os.environ.get("JAXLIF_TEST_FAST_COMPILE", "") not in ("", "0"):
    jax.config.update("jax_disable_most_optimizations", True)
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"      # the same for the scripts the tests start

# Scripts started by the tests must not write compiled programs into the user's cache folder.
os.environ.setdefault("JAXLIF_CACHE_DIR", "off")


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (``jax.enable_x64``), restoring the default after."""
    with jax.enable_x64(True):
        yield


# Tolerances per dtype (tutorial units: mV, nS)
TOL64 = 1e-9
TOL32_MV = 1e-3
TOL32_NS = 1e-4
