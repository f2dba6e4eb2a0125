"""The time grid shared by every simulation.

The tutorial samples time as ``range_t = np.arange(0, T, dt)``: ``n_steps`` samples
``t_k = k * dt`` for ``k = 0 .. n_steps - 1`` (so ``T`` itself is not a sample).
``n_steps`` is the length of that array, computed the way NumPy computes it
(``ceil(T / dt)`` in double precision) without building it, so that every array has the
tutorial's length (T = 1000 ms, dt = 0.1 ms gives 10000 samples) and an hour at
dt = 0.01 ms costs nothing to count (docs/conventions.md, section 2).

Time is the **last** axis of every trace and spike train in jaxlif, as in the tutorial
(trains have shape ``(n_trains, n_steps)``); batch axes come first.

All times are in **milliseconds**.  A time step below :data:`DT_SECONDS_HINT` ms (one
microsecond) is far below any time constant of these models and is almost always a
duration typed in seconds (``T=1.0, dt=1e-4`` for one second at 0.1 ms): it triggers a
:class:`UnitsWarning` (filter it with ``warnings.simplefilter("ignore", jaxlif.grid.UnitsWarning)``
if you really mean it).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from jaxlif import _checks

__all__ = ["n_steps", "time_axis", "UnitsWarning", "DT_SECONDS_HINT"]

#: Time steps below this many ms (1 microsecond) raise a :class:`UnitsWarning`.
DT_SECONDS_HINT = 1e-3


class UnitsWarning(UserWarning):
    """A value that looks like it was given in the wrong unit (seconds for ms)."""


def n_steps(T: float, dt: float) -> int:
    """Number of samples of ``np.arange(0, T, dt)`` (T and dt in ms), without building it.

    Equal to ``len(np.arange(0.0, T, dt))`` for every valid ``T`` and ``dt``: NumPy sizes
    that array as ``ceil((T - 0) / dt)`` in double precision, and so does this function.

    Raises:
        ValueError: if ``T`` or ``dt`` is not positive and finite, or ``T < dt`` (the run
            would have no step).
        TypeError: if either is not a concrete scalar.

    Warns:
        UnitsWarning: if ``dt`` is below one microsecond (:data:`DT_SECONDS_HINT` ms), the
            signature of times typed in seconds.
    """
    dt = _checks.check_dt(dt)
    T = _checks.check_duration(T, dt)
    if T < dt:
        raise ValueError(f"T={T!r} ms is shorter than the time step dt={dt!r} ms: the run would "
                         f"hold no step; T must be at least dt (both in ms)")
    count = T / dt
    if not math.isfinite(count):
        raise ValueError(f"T={T!r} ms with dt={dt!r} ms gives no finite number of steps")
    if dt < DT_SECONDS_HINT:
        warnings.warn(
            f"dt={dt!r} ms (T={T!r} ms) is below one microsecond: jaxlif takes times in "
            f"milliseconds; if you meant seconds, multiply by 1000 (dt=1e-4 s is dt=0.1 ms, "
            f"T=1 s is T=1000 ms). This run has {math.ceil(count)} steps.",
            UnitsWarning, stacklevel=3)
    return math.ceil(count)


def time_axis(T: float, dt: float) -> np.ndarray:
    """Sample times ``np.arange(0, T, dt)`` in ms (float64 NumPy array, as the tutorial's ``range_t``)."""
    n_steps(T, dt)
    return np.arange(0.0, T, dt)
