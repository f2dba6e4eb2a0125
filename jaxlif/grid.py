"""The time grid shared by every simulation.

The tutorial samples time as ``range_t = np.arange(0, T, dt)``: ``n_steps`` samples
``t_k = k * dt`` for ``k = 0 .. n_steps - 1`` (so ``T`` itself is not a sample).
``n_steps`` is computed exactly as NumPy does for that call so that every array has
the tutorial's length (T = 1000 ms, dt = 0.1 ms gives 10000 samples).

Time is the **last** axis of every trace and spike train in jaxlif, as in the tutorial
(trains have shape ``(n_trains, n_steps)``); batch axes come first.
"""

from __future__ import annotations

import numpy as np

from jaxlif import _checks

__all__ = ["n_steps", "time_axis"]


def n_steps(T: float, dt: float) -> int:
    """Number of samples of ``np.arange(0, T, dt)`` (T and dt in ms).

    Raises:
        ValueError: if ``T`` or ``dt`` is not positive and finite.
    """
    dt = _checks.check_dt(dt)
    T = _checks.check_duration(T, dt)
    return int(len(np.arange(0.0, T, dt)))


def time_axis(T: float, dt: float) -> np.ndarray:
    """Sample times ``np.arange(0, T, dt)`` in ms (float64 NumPy array, as the tutorial's ``range_t``)."""
    n_steps(T, dt)
    return np.arange(0.0, T, dt)
