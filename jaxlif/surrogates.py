r"""Spike functions with surrogate derivatives, for gradients through spiking runs.

The threshold test ``spike = (V >= V_th)`` is a step: its derivative is zero almost everywhere,
so ``jax.grad`` of anything that depends on spikes (a rate, a spike count, the voltage after a
reset) is zero or wrong.  A *surrogate* keeps the forward step exactly and replaces only its
derivative by a smooth bump of unit area around the threshold (the straight-through estimator;
Bengio, Leonard & Courville 2013; Zenke & Ganguli 2018; Neftci, Mostafa & Zenke 2019)::

    forward:   s(x) = 1 if x >= 0 else 0,          x = V - V_th  [mV]
    backward:  ds/dx := h(x)  [1/mV],   integral of h over x = 1

Each factory returns a :class:`Surrogate`, a hashable (static) object that the spiking steps and
simulators take as ``spike_grad=``; ``spike_grad=None`` keeps the exact Heaviside derivative.

==================  ===============================================  =======================
factory             h(x)                                             width
==================  ===============================================  =======================
``fast_sigmoid(k)``  ``k / (2 (1 + k|x|)^2)``  (SuperSpike)           about ``1/k`` mV
``arctan(a)``        ``(a/pi) / (1 + (a x)^2)``                       about ``1/a`` mV
``triangle(w)``      ``max(0, 1 - |x|/w) / w``  (Bellec et al. 2018)  exactly ``w`` mV each side
``custom(h)``        your own ``h(x)`` (a jax function of x in mV)
==================  ===============================================  =======================

``detach_reset=True`` stops the gradient through the reset ``V -> V_reset`` (the surrogate then
acts only on what reads the spike, not on the voltage after it), a common choice that lowers
the variance of long-run gradients.

What the gradient means is stated in the simulators' docstrings; in short it is a *biased*
estimate of how a smoothed version of the network would respond, useful to follow downhill, not
a derivative of the exact model.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["Surrogate", "fast_sigmoid", "arctan", "triangle", "custom", "spike_from_voltage"]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _step(x, derivative):
    return (x >= 0).astype(x.dtype)


@_step.defjvp
def _step_jvp(derivative, primals, tangents):
    (x,), (dx,) = primals, tangents
    return _step(x, derivative), derivative(x) * dx


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """A spike function: Heaviside forward, ``derivative`` backward.

    Attributes:
        derivative: ``h(x)`` [1/mV], a jax function of ``x = V - V_th`` [mV] with unit area.
        detach_reset: stop the gradient through the reset to ``V_reset``.
        name: a label for figures and records.
    """

    derivative: Callable[[jax.Array], jax.Array]
    detach_reset: bool = False
    name: str = "custom"

    def __call__(self, x: jax.Array) -> jax.Array:
        """``1.0`` where ``x >= 0`` else ``0.0`` (dtype of ``x``), with derivative ``h(x)``."""
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        return _step(x, self.derivative)


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


def fast_sigmoid(slope: float = 0.5, *, detach_reset: bool = False) -> Surrogate:
    """SuperSpike's fast sigmoid (Zenke & Ganguli 2018), normalised: ``h = k / (2 (1 + k|x|)^2)``.

    Args:
        slope: ``k`` [1/mV]; the bump is about ``1/k`` mV wide (default 0.5/mV: 2 mV).
        detach_reset: see :class:`Surrogate`.
    """
    k = _positive("slope", slope)
    return Surrogate(_fast_sigmoid_h(k), bool(detach_reset), f"fast_sigmoid({k:g}/mV)")


def arctan(alpha: float = 0.5, *, detach_reset: bool = False) -> Surrogate:
    """Derivative of ``arctan(alpha x)/pi + 1/2``: ``h = (alpha/pi) / (1 + (alpha x)^2)`` [1/mV].

    Args:
        alpha: ``a`` [1/mV]; width about ``1/a`` mV (default 0.5/mV).  Heavy tails: far from the
            threshold the gradient decays like ``1/x^2``.
    """
    a = _positive("alpha", alpha)
    return Surrogate(_arctan_h(a), bool(detach_reset), f"arctan({a:g}/mV)")


def triangle(width: float = 2.0, *, detach_reset: bool = False) -> Surrogate:
    """Piecewise-linear bump (Bellec et al. 2018): ``h = max(0, 1 - |x|/w) / w`` [1/mV].

    Args:
        width: ``w`` [mV]; the gradient is exactly zero further than ``w`` from the threshold.
    """
    w = _positive("width", width)
    return Surrogate(_triangle_h(w), bool(detach_reset), f"triangle({w:g} mV)")


def custom(derivative: Callable[[jax.Array], jax.Array], *, detach_reset: bool = False,
           name: str = "custom") -> Surrogate:
    """A surrogate with your own derivative ``h(x)`` [1/mV] of ``x = V - V_th`` [mV].

    ``derivative`` must be a pure jax function (it is traced) and hashable (a module-level
    function or a lambda kept alive by the caller: a new lambda each call compiles anew).
    """
    if not callable(derivative):
        raise TypeError(f"derivative must be callable, got {type(derivative).__name__}")
    return Surrogate(derivative, bool(detach_reset), str(name))


def spike_from_voltage(v: jax.Array, V_th: jax.Array, spike_grad: Surrogate | None):
    """The threshold test at one step: ``(spike, s)`` with ``spike`` boolean and ``s`` the value
    that carries the gradient (``None`` without a surrogate).

    Exact forward in both cases: ``spike == (v >= V_th)`` (for finite values ``v - V_th >= 0``
    holds exactly when ``v >= V_th``; ``V_th = +inf`` never spikes).
    """
    if spike_grad is None:
        return v >= V_th, None
    if not isinstance(spike_grad, Surrogate):
        raise TypeError(f"spike_grad must be None or a jaxlif.surrogates.Surrogate (e.g. "
                        f"jaxlif.surrogates.fast_sigmoid()), got {type(spike_grad).__name__}")
    s = spike_grad(v - V_th)
    return s > 0, s
