"""Helpers shared by the ``jaxlif`` subcommands: JSON output and progress lines."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

__all__ = ["json_safe", "Progress"]


def json_safe(obj: Any) -> Any:
    """Replace non-finite floats (infinite or undefined standard errors) by ``None`` (JSON null)."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


class Progress:
    """Prints fit progress on stderr, at most once a second (so short fits stay silent)."""

    def __init__(self, n_starts: int, stream=None, every_s: float = 1.0):
        self.n_starts, self.stream, self.every_s = n_starts, stream or sys.stderr, every_s
        self.t0 = self.last = time.perf_counter()

    def __call__(self, step: int, best_rmse: np.ndarray, n_done: np.ndarray) -> None:
        now = time.perf_counter()
        if now - self.last < self.every_s:
            return
        self.last = now
        worst = float(np.max(best_rmse))
        print(f"  step {step}: best RMSE {worst:.3g}, {int(n_done)}/{self.n_starts} starts "
              f"stopped ({now - self.t0:.1f} s)", file=self.stream, flush=True)
