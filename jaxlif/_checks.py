"""Argument validation shared by every public function: in plain Python, and inside traces.

**Concrete values** are checked *before* anything is traced, and raise a ``ValueError`` (or
``TypeError``) whose message names the argument, the value received and the valid range.

**Traced values** (a user who wraps a jaxlif function in ``jax.jit``/``jax.vmap``/``jax.grad``)
cannot be inspected in Python.  The jitted cores therefore evaluate the same rules on the traced
values (:func:`traced_rule`, :func:`traced_params`: one rule table per parameter type, shared with
the concrete checks) and

1. always *poison* the outputs of an invalid call (:func:`poison`): floats become NaN (and so do
   their derivatives, never a finite zero), signed integer counts -1, unsigned integers their
   maximum and boolean rasters all ``True`` (a spike at every step, which no refractory neuron
   can produce), so an invalid value never yields a plausible number; under ``vmap`` only the
   invalid elements are poisoned;
2. emit a :func:`jax.experimental.checkify.debug_check` per rule, which does nothing in a normal
   call and raises a ``ValueError`` naming the argument when the call runs under
   :func:`checked` (opt-in checked mode).

Nothing is ever clipped.  Loops whose trip count depends on a value must be bounded by the
cores themselves (a bad value must not hang).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = ["checked"]  # the rest is private


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
    """A short text form of a value for error messages (never a whole large array)."""
    if arr.ndim == 0:
        return _short(repr(arr.item()))
    flat = arr.ravel()
    bad = flat[:4].tolist()
    return _short(f"array of shape {arr.shape} (first values {bad})")


def _short(text: str, limit: int = 120) -> str:
    """``text`` cut to ``limit`` characters (error messages quote values, which may be huge)."""
    return text if len(text) <= limit else text[:limit - 5] + "[...]"


def _is_real_dtype(dtype: Any) -> bool:
    """Integers and real floats of any width, including the ``ml_dtypes`` ones that NumPy does not count
    as numbers (``bfloat16``, the float8 types)."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        return False
    return dtype != bool and (np.issubdtype(dtype, np.integer) or jnp.issubdtype(dtype, jnp.floating))


def check_numeric(name: str, value: Any) -> np.ndarray | None:
    arr = _concrete(value)
    if arr is None:
        return None
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real, got complex {_show(arr)}")
    if not _is_real_dtype(arr.dtype):
        what = _show(arr) if arr.dtype == bool else _short(repr(value))
        raise TypeError(f"{name} must be a real number or an array of real numbers, got {what} "
                        f"(dtype {arr.dtype}, type {type(value).__name__})")
    return arr


# ----------------------------------------------------------------------------------------------
# Low precision (float16, bfloat16): low-precision inputs are computed in the state's dtype; a
# low-precision state is refused (jaxlif.neurons, "Precision"; measured in tests/test_precision.py)
# ----------------------------------------------------------------------------------------------

def is_low_precision(value: Any) -> bool:
    """Is ``value`` an array (or NumPy/JAX scalar) of a float type narrower than 32 bits (float16,
    bfloat16, the float8 types)?  Python numbers are not."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return False
    return jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits < 32


def upcast(tree: Any, dtype: Any = None) -> Any:
    """``tree`` with every float16/bfloat16 leaf converted to ``dtype`` (default: the default float,
    float32 or float64 under ``jax_enable_x64``); other leaves (Python numbers, float32/64 arrays,
    integers, booleans, ``None``) are returned as they are, so a normal call is unchanged.

    The simulators compute in float32 or float64 only: a low-precision input or parameter is widened
    exactly, so the run equals the float32 run on the same (already rounded) values.
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    return jax.tree.map(lambda x: jnp.asarray(x, dtype) if is_low_precision(x) else x, tree)


#: Why each kind of state cannot be held in float16/bfloat16 (measured: tests/test_precision.py).
LOW_PRECISION_REASONS = {
    "membrane": ("the Euler update v += dt/tau_m*(V_inf - v) moves v by 1 % of its distance to equilibrium per "
                 "step (dt/tau_m = 0.01 at dt = 0.1 ms, tau_m = 10 ms), and {dtype} resolves only {spacing:.3g} mV "
                 "near the resting potential (|v| about 65 mV): v stops about {stall:.3g} mV short of "
                 "equilibrium and spikes are lost without an error (measured in a lif_step scan over 1 s: at "
                 "210 pA float32 fires 31 spikes, float16 0; at 250 pA float32 55, bfloat16 0)"),
    "conductance": ("the Euler decay g -= dt/tau_syn*g is a few % of g per step, and rounding g to {dtype} "
                    "(relative resolution {eps:.2g}) at every step biases it"),
    "synapse": ("the recovery R += dt/tau_d*(1 - R) is about 4e-4*(1 - R) per step (dt = 0.1 ms, tau_d = "
                "250 ms), below {dtype}'s resolution just under R = 1 ({below_one:.2g}), so R stops "
                "recovering (bfloat16: mean R 0.22 where float32 gives 0.50 on a 20 Hz train)"),
}


def refuse_low_precision_state(label: str, value: Any, kind: str, function: str) -> None:
    """Raise a ``TypeError`` (at trace time) if the state variable ``label`` of ``function`` is held in
    float16/bfloat16; the message names the dtype and why (:data:`LOW_PRECISION_REASONS`)."""
    if not is_low_precision(value):
        return
    dtype = jnp.dtype(value.dtype)
    info = jnp.finfo(dtype)
    spacing = 64.0 * float(info.eps)                     # between adjacent values at 64-128 mV
    reason = LOW_PRECISION_REASONS[kind].format(dtype=dtype.name, spacing=spacing, stall=0.5 * spacing / 0.01,
                                                eps=float(info.eps), below_one=float(info.epsneg))
    raise TypeError(f"{function}: {label} has dtype {dtype.name}; jaxlif refuses a float16/bfloat16 state "
                    f"because {reason}. Keep the state in float32 (the *_init functions give the default "
                    f"float) or float64; inputs and parameters may be float16/bfloat16 (they are computed "
                    f"in the state's dtype)")


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


def check_flag(name: str, value: Any) -> bool:
    """A yes/no option: ``True`` or ``False`` (NumPy booleans too).  Anything else raises naming it:
    ``bool('no')`` is ``True``, so a string or a number is never read as a flag."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")


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


def check_probability(name: str, p: Any) -> None:
    """A probability: finite and in [0, 1]."""
    check_finite(name, p)
    arr = _concrete(p)
    if arr is not None and not np.all((arr >= 0) & (arr <= 1)):
        bad = arr[~((arr >= 0) & (arr <= 1))] if arr.ndim else arr
        raise ValueError(f"{name}={_show(bad)} is outside [0, 1]; {name} is a probability per step")


def check_steps(name: str, value: Any, axis: int = -1) -> int:
    """An input with a time axis must have at least one sample; returns the number of samples."""
    shape = np.shape(value)
    n = shape[axis]
    if n == 0:
        raise ValueError(f"{name} has shape {tuple(shape)}: no time steps; a run needs at least one "
                         f"sample (its time axis is the last one)")
    return int(n)


def _fields(params: Any, name: str):
    """``(label, value, parent, field)`` for every leaf field of a (nested) parameter NamedTuple."""
    for field in params._fields:
        value = getattr(params, field)
        label = f"{name}.{field}"
        if hasattr(value, "_fields"):
            yield from _fields(value, label)
        else:
            yield label, value


def lists_to_arrays(params: Any, name: str = "params") -> Any:
    """A copy of a (nested) parameter NamedTuple with every list or tuple value turned into a float
    NumPy array (``LIFParams(tau_m=[10.0])`` works like ``LIFParams(tau_m=np.array([10.0]))``)."""
    changes = {}
    for field in params._fields:
        value = getattr(params, field)
        if hasattr(value, "_fields"):
            new = lists_to_arrays(value, f"{name}.{field}")
            if new is not value:
                changes[field] = new
        elif isinstance(value, (list, tuple)):
            arr = check_numeric(f"{name}.{field}", value)
            changes[field] = np.asarray(arr, dtype=float)
    return params._replace(**changes) if changes else params


def check_field_shapes(name: str, params: Any, allowed: tuple, hint: str) -> None:
    """Every leaf of a (nested) parameter NamedTuple must have one of the ``allowed`` shapes
    (tracers included: their shape is known); ``hint`` says what to do instead."""
    for label, value in _fields(params, name):
        shape = tuple(np.shape(value))
        if shape not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{label} has shape {shape}, expected {want}; {hint}")


def single_neuron_hint(function: str, batch: str | None = None) -> str:
    """The message part that points a user with per-neuron arrays to ``jax.vmap`` / ``jaxlif.batch``."""
    alt = f" or jaxlif.batch.{batch}" if batch else ""
    return (f"{function} simulates one neuron, so its neuron and synapse parameters are scalars. "
            f"For several neurons map it over the parameter with jax.vmap (e.g. "
            f"jax.vmap(lambda tau_m: {function}(..., params._replace(neuron=params.neuron._replace("
            f"tau_m=tau_m)), ...))(tau_ms)){alt}")


def check_params(name: str, params: Any, dt: float, spec: dict) -> None:
    """Check each field of a parameter NamedTuple by a rule: 'finite', 'positive', 'nonneg', 'tau', 'U0',
    'V_th' (a rule table such as :data:`LIF_RULES`)."""
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
        elif rule == "V_th":  # may be +inf (threshold removed) but not NaN
            arr = check_numeric(label, value)
            if arr is not None and np.any(np.isnan(arr)):
                raise ValueError(f"{label} is NaN; V_th must be a number in mV (+inf removes the threshold)")
        else:  # pragma: no cover - programming error
            raise AssertionError(rule)


# ----------------------------------------------------------------------------------------------
# Checks that survive tracing
# ----------------------------------------------------------------------------------------------

#: Rule tables: field -> rule, shared by the concrete checks (:func:`check_params`) and the
#: traced ones (:func:`traced_params`) so that both enforce the same ranges.
LIF_RULES = {"V_th": "V_th", "V_reset": "finite", "V_init": "finite", "E_L": "finite",
             "g_L": "positive", "tau_m": "tau", "t_ref": "nonneg"}
SYN_RULES = {"g_bar": "nonneg", "tau_syn": "tau", "E_rev": "finite"}
STP_RULES = {"U0": "U0", "tau_d": "tau", "tau_f": "tau"}

_TRACED_RULES: dict[str, tuple[Callable, str]] = {
    # rule: (predicate(x, dt) on a jax array, what the message says about the valid range)
    "finite": (lambda x, dt: jnp.isfinite(x), "must be finite"),
    "positive": (lambda x, dt: jnp.isfinite(x) & (x > 0), "must be finite and > 0"),
    "nonneg": (lambda x, dt: jnp.isfinite(x) & (x >= 0), "must be finite and >= 0"),
    "tau": (lambda x, dt: jnp.isfinite(x) & (x >= dt), "ms must be finite and >= dt = {dt} ms"),
    "U0": (lambda x, dt: (x > 0) & (x <= 1), "must lie in (0, 1]"),
    "V_th": (lambda x, dt: ~jnp.isnan(x), "mV must be a number (+inf removes the threshold)"),
    "rate": (lambda x, dt: jnp.isfinite(x) & (x >= 0) & (x * (dt / 1000.0) <= 1),
             "Hz must be finite, >= 0 and <= 1000/dt = {rate_max} Hz"),
    "prob": (lambda x, dt: (x >= 0) & (x <= 1), "must be a probability in [0, 1]"),
    "one_spike": (lambda x, dt: x <= 1,
                  "has more than one spike in a step: the tutorial's scheme turns a count c into one "
                  "release scaled by c (u > 1 or R < 0 are possible); pass counts='sequential'"),
}


def traced_rule(label: str, value: Any, rule: str, dt: float | None = None) -> jax.Array:
    """Evaluate one validity ``rule`` on a (possibly traced) value inside a jitted core.

    Returns a scalar boolean (all elements valid) and emits a ``checkify.debug_check`` with a
    message naming ``label``, so that :func:`checked` raises for an invalid value.  ``dt`` [ms] is
    needed by the ``"tau"`` and ``"rate"`` rules.
    """
    predicate, _ = _TRACED_RULES[rule]
    x = jnp.asarray(value)
    return traced_rule_result(label, x, rule, jnp.all(predicate(x, dt)), dt)


def rule_predicate(rule: str) -> Callable:
    """The elementwise predicate ``(x, dt) -> bool array`` of a traced ``rule`` (to evaluate it piecewise)."""
    return _TRACED_RULES[rule][0]


def traced_rule_result(label: str, value: Any, rule: str, ok: jax.Array, dt: float | None = None) -> jax.Array:
    """:func:`traced_rule` for a verdict ``ok`` computed elsewhere (e.g. fused into a simulator's scan:
    ``ok = all(predicate(value))`` evaluated step by step, which saves a pass over a long input).

    Emits the same ``checkify.debug_check`` naming ``label`` (raised by :func:`checked`) and returns ``ok``.
    """
    text = _TRACED_RULES[rule][1].format(dt=dt, rate_max=None if dt is None else f"{1000.0 / dt:.6g}")
    checkify.debug_check(ok, f"{label}={{value}} {text}", value=jnp.asarray(value))
    return ok


def traced_params(name: str, params: Any, dt: float | None, rules: dict[str, str]) -> jax.Array:
    """:func:`traced_rule` for every field of a parameter NamedTuple (``rules``: a rule table)."""
    ok = jnp.asarray(True)
    for field, rule in rules.items():
        ok = ok & traced_rule(f"{name}.{field}", getattr(params, field), rule, dt)
    return ok


@jax.custom_jvp
def _nan_where_not(ok: jax.Array, leaf: jax.Array) -> jax.Array:
    """``where(ok, leaf, NaN)`` for a float ``leaf``, whose derivative is NaN where ``ok`` is False.

    The derivative of a plain ``jnp.where`` through its unselected branch is 0, so a poisoned output
    would hand an optimiser a finite zero gradient.  Here the tangent is ``d leaf * mask`` with
    ``mask = where(ok, 1, NaN)``: linear in ``d leaf`` (so reverse mode transposes it to
    ``cotangent * mask``), exactly ``d leaf`` where ``ok`` (``x * 1.0 == x`` for every float), and NaN
    where not, even where ``d leaf`` is 0.  ``ok`` broadcasts against ``leaf``.
    """
    return jnp.where(ok, leaf, jnp.asarray(jnp.nan, leaf.dtype))


@_nan_where_not.defjvp
def _nan_where_not_jvp(primals, tangents):
    ok, leaf = primals
    d_leaf = tangents[1]
    mask = jnp.where(ok, jnp.asarray(1.0, leaf.dtype), jnp.asarray(jnp.nan, leaf.dtype))
    return _nan_where_not(ok, leaf), d_leaf * mask


def _poisoned(leaf: jax.Array, ok: jax.Array) -> jax.Array:
    leaf = jnp.asarray(leaf)
    ok = jnp.reshape(ok, jnp.shape(ok) + (1,) * (leaf.ndim - jnp.ndim(ok)))
    dtype = leaf.dtype
    if jnp.issubdtype(dtype, jnp.floating):
        return _nan_where_not(ok, leaf)
    if jnp.issubdtype(dtype, jnp.inexact):
        bad = jnp.nan
    elif dtype == jnp.bool_:
        bad = True
    elif jnp.issubdtype(dtype, jnp.signedinteger):
        bad = -1
    else:
        bad = jnp.iinfo(dtype).max
    return jnp.where(ok, leaf, jnp.asarray(bad, dtype))


def poison(ok: jax.Array, tree: Any) -> Any:
    """Replace every leaf of ``tree`` by an impossible value where ``ok`` is False.

    Floats become NaN, signed integers -1, unsigned integers their maximum, booleans ``True``.
    ``ok`` is a scalar, or has the leading (batch) shape of the leaves; ``None`` leaves stay.

    Derivatives: a poisoned float leaf has a NaN derivative (``jax.grad``, ``jax.jvp``), not the zero
    that a plain ``jnp.where`` gives through its unselected branch, so an optimiser stepping into an
    invalid value sees NaN instead of stalling; where ``ok`` the derivative is unchanged, bit for
    bit, and under ``vmap`` only the invalid elements get NaN.
    """
    return jax.tree.map(lambda leaf: _poisoned(leaf, ok), tree)


def checked(fn: Callable) -> Callable:
    """Opt-in checked mode: ``checked(fn)(*args)`` raises a ``ValueError`` naming the argument when
    an invalid value reaches a jaxlif computation inside ``fn``, even a traced one.

    Without it, such a value poisons the outputs instead (NaN, -1, all-``True`` rasters; see this
    module's docstring).  Built on :func:`jax.experimental.checkify.checkify` with the library's
    ``debug_check`` rules, so it works through ``jax.jit``, ``jax.vmap`` and ``lax.scan``::

        sim = lambda r: jaxlif.simulate_cond_lif_poisson(key, rate_E=r, record=False).spikes
        f = jax.jit(jax.vmap(sim))
        f(jnp.array([10.0, -5.0]))                  # second row poisoned (all True)
        jaxlif.checked(f)(jnp.array([10.0, -5.0]))  # ValueError: rate_E=-5.0 Hz must be ...

    The error is :class:`jax.experimental.checkify.JaxRuntimeError`, a ``ValueError``.  The
    check costs a little time; use it to debug, not in hot loops.
    """
    if not callable(fn):
        raise TypeError(f"checked() needs a callable, got {type(fn).__name__}")
    checkified = checkify.checkify(fn, errors=checkify.user_checks)

    @functools.wraps(fn)
    def run_checked(*args, **kwargs):
        err, out = checkified(*args, **kwargs)
        err.throw()
        return out

    return run_checked
