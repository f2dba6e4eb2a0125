"""Shared fixtures and the suite's compilation settings.

Speed: most of the suite's time is XLA compiling small programs, not running them.  The tests
therefore compile with XLA's backend (LLVM) optimisations off (``jax_disable_most_optimizations``):
compilation takes about half as long, the compiled programs compute the same operations in the
same order (no fast-math, no reassociation), they only run slower, which the small test sizes do
not notice.  Set ``JAXLIF_TEST_OPTIMIZED=1`` to run the suite with the full optimisations users
get.  64-bit mode stays off globally (jaxlif defaults to float32); tests that need it use the
``x64`` fixture.
"""

import os

import jax
import matplotlib
import pytest

matplotlib.use("Agg")

if os.environ.get("JAXLIF_TEST_OPTIMIZED", "") in ("", "0"):
    jax.config.update("jax_disable_most_optimizations", True)

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
