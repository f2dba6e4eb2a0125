"""Plain-Python argument validation shared by every public function.

All checks run on concrete values *before* anything is traced, and raise a
``ValueError`` (or ``TypeError``) whose message names the argument, the value
received and the valid range.  Values that are already JAX tracers (a user who
wraps a jaxlif function in ``jax.vmap``/``jax.grad``) cannot be inspected and are
skipped: the jitted cores assume valid input, and the fitting code guarantees its
constraints by reparametrisation instead.  Nothing is ever clipped.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = []  # private module


def _concrete(value: Any) -> np.ndarray | None:
    """Return ``value`` as a NumPy array, or ``None`` if it is a tracer."""
    if isinstance(value, jax.core.Tracer):
        return None
    leaves = jax.tree_util.tree_leaves(value)
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        return None
    try:
        return np.asarray(value)
    except Exception as err:  # pragma: no cover - exotic input
        raise TypeError(f"could not read {value!r} as an array: {err}") from err


def _show(arr: np.ndarray) -> str:
    """A short text form of a value for error messages."""
    if arr.ndim == 0:
        return repr(arr.item())
    flat = arr.ravel()
    bad = flat[:4].tolist()
    return f"array of shape {arr.shape} (first values {bad})"


def check_numeric(name: str, value: Any) -> np.ndarray | None:
    arr = _concrete(value)
    if arr is None:
        return None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"{name} must be a real number or array of numbers, got "
                        f"{_show(arr) if arr.dtype == bool else repr(value)} of type {type(value).__name__}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got complex {_show(arr)}")
    return arr


def check_finite(name: str, value: Any, unit: str = "") -> None:
    """Reject NaN and +-inf."""
    arr = check_numeric(name, value)
    if arr is None:
        return
    if not np.all(np.isfinite(arr)):
        bad = arr[~np.isfinite(arr)] if arr.ndim else arr
        raise ValueError(f"{name}={_show(np.asarray(bad))}{unit and ' ' + unit} is not finite; "
                         f"{name} must be a finite number")


def check_positive(name: str, value: Any, unit: str = "") -> None:
    """Finite and strictly positive."""
    check_finite(name, value, unit)
    arr = _concrete(value)
    if arr is not None and not np.all(arr > 0):
        raise ValueError(f"{name}={_show(arr[arr <= 0] if arr.ndim else arr)}{unit and ' ' + unit} "
                         f"must be > 0")


def check_nonnegative(name: str, value: Any, unit: str = "") -> None:
    """Finite and >= 0."""
    check_finite(name, value, unit)
    arr = _concrete(value)
    if arr is not None and not np.all(arr >= 0):
        raise ValueError(f"{name}={_show(arr[arr < 0] if arr.ndim else arr)}{unit and ' ' + unit} "
                         f"must be >= 0")


def check_dt(dt: Any) -> float:
    """The time step must be a positive, finite Python/NumPy scalar (it sets array shapes)."""
    if isinstance(dt, jax.core.Tracer):
        raise TypeError("dt must be a concrete Python float in ms, not a traced value: "
                        "it fixes the number of time steps; pass it as a static argument")
    arr = check_numeric("dt", dt)
    if arr.ndim != 0:
        raise TypeError(f"dt must be a scalar in ms, got {_show(arr)}")
    check_positive("dt", arr, "ms")
    return float(arr)


def check_duration(T: Any, dt: float) -> float:
    """Total duration T [ms]: positive, finite scalar, at least one time step."""
    if isinstance(T, jax.core.Tracer):
        raise TypeError("T must be a concrete Python float in ms, not a traced value")
    arr = check_numeric("T", T)
    if arr.ndim != 0:
        raise TypeError(f"T must be a scalar in ms, got {_show(arr)}")
    check_positive("T", arr, "ms")
    return float(arr)


def check_time_constant(name: str, tau: Any, dt: float) -> None:
    """tau >= dt: forward Euler is unstable below dt/2 and not positive below dt."""
    check_positive(name, tau, "ms")
    arr = _concrete(tau)
    if arr is not None and not np.all(arr >= dt):
        raise ValueError(f"{name}={_show(arr[arr < dt] if arr.ndim else arr)} ms is below the time step "
                         f"dt={dt} ms; forward Euler needs {name} >= dt (unstable below dt/2, not "
                         f"positive below dt): use a smaller dt or a larger {name}")


def check_U0(U0: Any, name: str = "U0") -> None:
    """Release probability at rest in (0, 1]."""
    check_finite(name, U0)
    arr = _concrete(U0)
    if arr is not None and not np.all((arr > 0) & (arr <= 1)):
        bad = arr[~((arr > 0) & (arr <= 1))] if arr.ndim else arr
        raise ValueError(f"{name}={_show(bad)} is outside (0, 1]; {name} is a release probability")


def check_rate(name: str, rate: Any, dt: float) -> None:
    """Poisson rate [Hz]: finite, >= 0 and with p = rate*dt/1000 <= 1."""
    check_nonnegative(name, rate, "Hz")
    arr = _concrete(rate)
    if arr is not None:
        p = arr * dt / 1000.0
        if not np.all(p <= 1):
            worst = float(np.max(arr))
            raise ValueError(f"{name}={worst} Hz with dt={dt} ms gives p = rate*dt/1000 = "
                             f"{worst * dt / 1000.0:.4g} > 1; need {name} <= {1000.0 / dt:.6g} Hz "
                             f"or a smaller dt")


def check_count(name: str, n: Any, minimum: int = 0) -> int:
    """A static integer count (number of trains, batch size)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {n!r} of type {type(n).__name__}")
    if n < minimum:
        raise ValueError(f"{name}={n} must be >= {minimum}")
    return int(n)


def check_key(key: Any, name: str = "key") -> None:
    """A jax.random key: typed key array or legacy uint32[2]."""
    if isinstance(key, jax.core.Tracer):
        return
    if hasattr(key, "dtype") and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return
    arr = np.asarray(key) if hasattr(key, "shape") else None
    if arr is None or arr.dtype != np.uint32 or arr.shape[-1:] != (2,):
        raise TypeError(f"{name} must be a jax.random key (jax.random.key(seed) or "
                        f"jax.random.PRNGKey(seed)), got {key!r}")


def check_spikes(name: str, value: Any) -> None:
    """Spike trains or counts: boolean, or finite numbers >= 0."""
    arr = _concrete(value)
    if arr is None or arr.dtype == bool:
        return
    check_nonnegative(name, arr)


def check_shape(name: str, value: Any, shape: tuple) -> None:
    arr_shape = np.shape(value)
    if tuple(arr_shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(arr_shape)}, expected {tuple(shape)}")


def check_params(name: str, params: Any, dt: float, spec: dict) -> None:
    """Check each field of a parameter NamedTuple by a rule: 'finite', 'positive', 'nonneg', 'tau', 'U0'."""
    for field, rule in spec.items():
        value = getattr(params, field)
        label = f"{name}.{field}"
        if rule == "finite":
            check_finite(label, value)
        elif rule == "positive":
            check_positive(label, value)
        elif rule == "nonneg":
            check_nonnegative(label, value)
        elif rule == "tau":
            check_time_constant(label, value, dt)
        elif rule == "U0":
            check_U0(value, label)
        else:  # pragma: no cover - programming error
            raise AssertionError(rule)
