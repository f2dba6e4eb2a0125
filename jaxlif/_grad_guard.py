"""Guards against silent zero gradients through spike statistics.

Two ways a spike statistic silently returns a zero gradient, and what jaxlif does about each:

1. **Integer counting of a float (surrogate) raster.**  :func:`jaxlif.spike_count`,
   :func:`jaxlif.spike_rate` and :func:`jaxlif.isi_cv` count spikes as integers; a cast to an
   integer has no derivative, so ``jax.grad`` through them would be exactly zero.  They pass the raster
   through :func:`refuse_derivative`, an identity whose derivative rule raises
   :class:`NonDifferentiableError` naming the differentiable replacement in
   :mod:`jaxlif.spike_stats`.  The rule runs only when the raster carries a tangent (it depends on
   what is differentiated), under every JAX transformation that differentiates (``grad``, ``jvp``,
   ``jacfwd``, ``jacrev``, ``vjp``, with or without ``jit``/``vmap`` around or inside).  A raster
   wrapped in ``jax.lax.stop_gradient`` carries no tangent and is counted as usual.

2. **A boolean raster** (a simulator called without ``spike_grad``) has no derivative at all: JAX
   drops its tangent, so the raster itself cannot tell that it is being differentiated.  What can be
   seen is the *context*: :func:`under_differentiation` looks for a JVP or linearize trace among the
   traces that are active when a jaxlif statistic is called.  The statistics of
   :mod:`jaxlif.spike_stats` and the counting functions of :mod:`jaxlif.analysis` then warn with
   :class:`SpikeGradWarning`.  What this cannot catch: a boolean raster reduced by plain ``jnp``
   (``raster.mean()``), which never calls jaxlif; a boolean raster cast to float before the call
   (it then looks like any constant, e.g. a target train); and a jitted function traced *before*
   being differentiated (the check runs when a function is traced, once per compilation, and a
   compiled program is reused as it is).  The check reads JAX's internal trace stack
   (``jax._src.core.trace_ctx``); if a JAX version moves it, the check answers ``False`` (no
   warning) rather than fail.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["SpikeGradWarning", "NonDifferentiableError", "under_differentiation", "refuse_derivative",
           "warn_if_boolean_under_grad"]


class SpikeGradWarning(UserWarning):
    """A boolean spike raster reduced while differentiating: its gradient is exactly zero (the
    simulator was called without ``spike_grad``)."""


class NonDifferentiableError(TypeError):
    """An integer-counting spike statistic was differentiated (its gradient would be a silent zero)."""


def _differentiating_traces() -> tuple[type, ...]:
    try:
        from jax._src.interpreters import ad
    except ImportError:                                   # pragma: no cover - JAX internals moved
        return ()
    return tuple(t for t in (getattr(ad, "JVPTrace", None), getattr(ad, "LinearizeTrace", None))
                 if isinstance(t, type))


def under_differentiation() -> bool:
    """Whether the current computation is being differentiated (forward or reverse mode).

    True inside ``jax.grad``, ``jax.jvp``, ``jax.jacfwd``/``jacrev``, ``jax.vjp`` and ``jax.linearize``, also
    through ``jit``/``vmap`` traced inside them; False otherwise, and False if JAX's internal trace
    stack cannot be read (module docstring).
    """
    kinds = _differentiating_traces()
    if not kinds:
        return False
    try:
        from jax._src import core
        trace = core.trace_ctx.trace
    except (ImportError, AttributeError):                 # pragma: no cover - JAX internals moved
        return False
    for _ in range(1000):                                 # the stack is short; never loop forever
        if trace is None:
            return False
        if isinstance(trace, kinds):
            return True
        trace = getattr(trace, "parent_trace", None)
    return False                                          # pragma: no cover


def warn_if_boolean_under_grad(spikes, function: str, stacklevel: int = 3) -> None:
    """Warn (:class:`SpikeGradWarning`) when a boolean raster reaches ``function`` while differentiating."""
    dtype = getattr(spikes, "dtype", None)               # read, not converted: no copy to the device
    if (np.asarray(spikes).dtype if dtype is None else dtype) == np.bool_ and under_differentiation():
        warnings.warn(f"jaxlif.{function} got a boolean spike raster while differentiating: a boolean raster "
                      f"has no derivative, so every gradient through these spikes is exactly zero. Simulate "
                      f"with spike_grad=jaxlif.surrogates.fast_sigmoid() (or another surrogate) to get a float "
                      f"raster that carries a surrogate derivative. If the spikes are meant to be a constant "
                      f"here (a logged statistic), filter jaxlif.SpikeGradWarning.",
                      SpikeGradWarning, stacklevel=stacklevel)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _refuse(x, function: str, replacement: str):
    return x


@_refuse.defjvp
def _refuse_jvp(function, replacement, primals, tangents):
    raise NonDifferentiableError(
        f"jaxlif.{function} counts spikes as integers and has no derivative (jax.grad would silently "
        f"return 0). Use {replacement} on the float raster that a simulator returns with spike_grad=..., or "
        f"wrap the raster in jax.lax.stop_gradient to count spikes without differentiating them.")


def refuse_derivative(spikes, function: str, replacement: str) -> jax.Array:
    """``spikes`` unchanged; differentiating through it raises :class:`NonDifferentiableError`
    naming ``function`` and its differentiable ``replacement``.  Boolean and integer rasters pass
    through untouched (they carry no tangent)."""
    spikes = jnp.asarray(spikes)
    if not jnp.issubdtype(spikes.dtype, jnp.inexact):
        return spikes
    return _refuse(spikes, function, replacement)
