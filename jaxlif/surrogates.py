r"""Spike functions with surrogate derivatives, for gradients through spiking runs.

The threshold test ``spike = (V >= V_th)`` is a step: its derivative is zero almost everywhere,
so ``jax.grad`` of anything that depends on spikes (a rate, a spike count, the voltage after a
reset) is zero or wrong.  A *surrogate* keeps the forward step exactly and replaces only its
derivative by a smooth bump of unit area around the threshold (the straight-through estimator;
Bengio, Leonard & Courville 2013; Zenke & Ganguli 2018; Neftci, Mostafa & Zenke 2019)::

    forward:   s = 1 if V >= V_th else 0          (the exact comparison, bit-identical values)
    backward:  ds/dV := h(V - V_th)  [1/mV],   integral of h = 1

Each factory returns a :class:`Surrogate`, a hashable (static) object that the spiking steps and
simulators take as ``spike_grad=``; ``spike_grad=None`` keeps the exact Heaviside derivative.
The defaults share one peak height, ``h(0) = 0.05/mV`` (see "Stability" below):

==================  ===============================================  ========================
factory (default)   h(x)                                             width
==================  ===============================================  ========================
``fast_sigmoid(k)``  ``k / (2 (1 + k|x|)^2)``  (SuperSpike)           about ``1/k`` (10 mV)
``arctan(a)``        ``(a/pi) / (1 + (a x)^2)``                       about ``1/a`` (6.7 mV)
``triangle(w)``      ``max(0, 1 - |x|/w) / w``  (Bellec et al. 2018)  ``w`` each side (20 mV)
``custom(h)``        your own ``h(x)`` (a jax function of x in mV)
==================  ===============================================  ========================

**The reset.**  With a surrogate the reset ``V -> V_reset`` is differentiated as
``V+ = (1 - s) V + s V_reset``: the surrogate acts on the voltage after the spike too, which lets
the gradient see that an earlier spike means a reset (this is what makes the gradients of rates
and mean voltages of spiking runs close to finite differences, docs/gradients.md).
``detach_reset=True`` stops that path (``V+`` then has the derivative of the exact model).

**Stability.**  Through the reset, one step multiplies the voltage's sensitivity by
``dV+/dV = 1 - s - h(V - V_th) (V - V_reset)``.  Just below the threshold (``s = 0``) this is
``1 - h(V - V_th) (V_th - V_reset)``, of modulus above 1 when ``peak(h) (V_th - V_reset) > 2``: every
step spent near threshold then multiplies the gradient by a factor < -1 and it grows
exponentially (NaN within a 1 s run at dt = 0.1 ms for ``h(0) = 0.25/mV`` and a 20 mV reset).  The
simulators warn when a surrogate's :attr:`Surrogate.peak` breaks ``peak (V_th - V_reset) <= 2`` with
concrete parameters; widen the surrogate or pass ``detach_reset=True``.

What the gradient means, measured against finite differences, is in docs/gradients.md: a
*biased* estimate (a descent direction), not a derivative of the exact model.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

__all__ = ["Surrogate", "fast_sigmoid", "arctan", "triangle", "custom", "spike_from_voltage", "check_spike_grad",
           "warn_if_unstable"]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _threshold(v, V_th, derivative):
    """``1.0`` where ``v >= V_th`` else ``0.0``: the exact comparison, in the dtype of ``v``."""
    return (v >= V_th).astype(v.dtype)


@_threshold.defjvp
def _threshold_jvp(derivative, primals, tangents):
    (v, V_th), (dv, dV_th) = primals, tangents
    x = v - V_th
    finite = jnp.isfinite(x)                       # V_th = +inf (no threshold): no gradient at all
    h = jnp.where(finite, derivative(jnp.where(finite, x, 0.0)), 0.0)
    return _threshold(v, V_th, derivative), (h * (dv - dV_th)).astype(v.dtype)


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A spike function: Heaviside forward, ``derivative`` backward.

    Attributes:
        derivative: ``h(x)`` [1/mV], a jax function of ``x = V - V_th`` [mV] with unit area.
        detach_reset: stop the gradient through the reset to ``V_reset``.
        name: a label for figures and records.
        known_peak: the maximum of ``h`` [1/mV] if known (the factories set it); see :attr:`peak`.
    """

    derivative: Callable[[jax.Array], jax.Array]
    detach_reset: bool = False
    name: str = "custom"
    known_peak: float | None = None

    @property
    def peak(self) -> float:
        """The largest value of ``h`` [1/mV]: ``known_peak`` (the factories') or the maximum on a fine
        grid over [-100, 100] mV."""
        return self.known_peak if self.known_peak is not None else _peak(self.derivative)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``1.0`` where ``x >= 0`` else ``0.0`` (dtype of ``x``), with derivative ``h(x)``."""
        x = _float(x)
        return _threshold(x, jnp.zeros((), x.dtype), self.derivative)

    def spike(self, v: jax.Array, V_th: jax.Array) -> jax.Array:
        """``1.0`` where ``v >= V_th`` else ``0.0`` (the exact comparison, dtype of ``v``), with
        derivative ``h(v - V_th)`` with respect to ``v`` and ``-h(v - V_th)`` with respect to ``V_th``."""
        v = _float(v)
        return _threshold(v, jnp.asarray(V_th, v.dtype), self.derivative)


def _float(x) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.result_type(float))


@functools.lru_cache(maxsize=64)
def _peak(derivative) -> float:
    with jax.ensure_compile_time_eval():
        x = jnp.concatenate([jnp.zeros(1), jnp.linspace(-100.0, 100.0, 20001)]).astype(jnp.float32)
        return float(jnp.max(derivative(x)))


def warn_if_unstable(spike_grad: "Surrogate | None", V_th: ArrayLike, V_reset: ArrayLike) -> None:
    """Warn when the gradient through the reset would grow exponentially (module docstring, "Stability"):
    ``peak(h) * (V_th - V_reset) > 2`` with concrete, finite ``V_th, V_reset`` [mV]."""
    if spike_grad is None or spike_grad.detach_reset:
        return
    try:
        gap = float(np.max(np.asarray(V_th, dtype=float) - np.asarray(V_reset, dtype=float)))
    except (TypeError, jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return                                  # traced parameters: cannot check here
    if np.isfinite(gap) and spike_grad.peak * gap > 2.0:
        warnings.warn(f"spike_grad={spike_grad.name} peaks at {spike_grad.peak:.3g}/mV; with V_th - V_reset = "
                      f"{gap:g} mV the gradient through the reset grows exponentially over a run "
                      f"(peak * (V_th - V_reset) = {spike_grad.peak * gap:.3g} > 2): widen the surrogate "
                      f"(peak <= {2.0 / gap:.3g}/mV, e.g. the factories' defaults) or pass detach_reset=True",
                      UserWarning, stacklevel=3)


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name}={value} must be a finite number > 0")
    return value


@functools.lru_cache(maxsize=None)
def _fast_sigmoid_h(k: float):
    return lambda x: (k / 2.0) / (1.0 + k * jnp.abs(x)) ** 2


@functools.lru_cache(maxsize=None)
def _arctan_h(a: float):
    return lambda x: (a / jnp.pi) / (1.0 + (a * x) ** 2)


@functools.lru_cache(maxsize=None)
def _triangle_h(w: float):
    return lambda x: jnp.maximum(0.0, 1.0 - jnp.abs(x) / w) / w


def fast_sigmoid(slope: float = 0.1, *, detach_reset: bool = False) -> Surrogate:
    """SuperSpike's fast sigmoid (Zenke & Ganguli 2018), normalised: ``h = k / (2 (1 + k|x|)^2)``.

    Args:
        slope: ``k`` [1/mV]; the bump is about ``1/k`` mV wide and peaks at ``k/2`` (default
            0.1/mV: 10 mV, peak 0.05/mV).
        detach_reset: see :class:`Surrogate`.
    """
    k = _positive("slope", slope)
    return Surrogate(_fast_sigmoid_h(k), bool(detach_reset), f"fast_sigmoid({k:g}/mV)", k / 2.0)


def arctan(alpha: float = 0.15, *, detach_reset: bool = False) -> Surrogate:
    """Derivative of ``arctan(alpha x)/pi + 1/2``: ``h = (alpha/pi) / (1 + (alpha x)^2)`` [1/mV].

    Args:
        alpha: ``a`` [1/mV]; width about ``1/a`` mV, peak ``a/pi`` (default 0.15/mV: peak 0.048/mV).
            Heavy tails: far from the threshold the gradient decays like ``1/x^2``.
        detach_reset: see :class:`Surrogate`.
    """
    a = _positive("alpha", alpha)
    return Surrogate(_arctan_h(a), bool(detach_reset), f"arctan({a:g}/mV)", a / math.pi)


def triangle(width: float = 20.0, *, detach_reset: bool = False) -> Surrogate:
    """Piecewise-linear bump (Bellec et al. 2018): ``h = max(0, 1 - |x|/w) / w`` [1/mV].

    Args:
        width: ``w`` [mV]; the gradient is exactly zero further than ``w`` from the threshold; peak
            ``1/w`` (default 20 mV: peak 0.05/mV).
        detach_reset: see :class:`Surrogate`.
    """
    w = _positive("width", width)
    return Surrogate(_triangle_h(w), bool(detach_reset), f"triangle({w:g} mV)", 1.0 / w)


def custom(derivative: Callable[[jax.Array], jax.Array], *, detach_reset: bool = False,
           name: str = "custom") -> Surrogate:
    """A surrogate with your own derivative ``h(x)`` [1/mV] of ``x = V - V_th`` [mV].

    ``derivative`` must be a pure jax function (it is traced) and hashable (a module-level
    function or a lambda kept alive by the caller: a new lambda each call compiles anew).
    """
    if not callable(derivative):
        raise TypeError(f"derivative must be callable, got {type(derivative).__name__}")
    return Surrogate(derivative, bool(detach_reset), str(name))


def spike_from_voltage(v: jax.Array, V_th: jax.Array,
                       spike_grad: Surrogate | None) -> tuple[jax.Array, jax.Array | None]:
    """The threshold test at one step: ``(spike, s)`` with ``spike = v >= V_th`` (boolean) and ``s``
    the float 0/1 value that carries the surrogate derivative (``None`` without a surrogate).

    The forward value is the exact comparison in both cases (not ``v - V_th >= 0``, which can differ
    when the difference rounds to zero); ``V_th = +inf`` never spikes and has a zero gradient.
    """
    spike = v >= V_th
    if spike_grad is None:
        return spike, None
    check_spike_grad(spike_grad)
    return spike, spike_grad.spike(v, V_th)


def check_spike_grad(spike_grad: Any) -> None:
    """``spike_grad`` must be ``None`` or a :class:`Surrogate` (raises ``TypeError`` otherwise)."""
    if spike_grad is not None and not isinstance(spike_grad, Surrogate):
        raise TypeError(f"spike_grad must be None (exact threshold, zero gradient through spikes) or a "
                        f"jaxlif.surrogates.Surrogate such as jaxlif.surrogates.fast_sigmoid(), got "
                        f"{spike_grad!r} of type {type(spike_grad).__name__}")
