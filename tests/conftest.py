"""Shared fixtures: 64-bit mode on demand (jaxlif defaults to float32; never enable x64 globally)."""

import jax
import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture
def x64():
    """Run the test body with float64 enabled (``jax.enable_x64``), restoring the default after."""
    with jax.enable_x64(True):
        yield


# Tolerances per dtype (tutorial units: mV, nS)
TOL64 = 1e-9
TOL32_MV = 1e-3
TOL32_NS = 1e-4
