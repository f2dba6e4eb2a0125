r"""Forward-Euler stability of the conductance membrane: detected, never silent.

The tutorial's membrane step (docs/conventions.md 4.2) is forward Euler on
``C dV/dt = -g_L (V - E_L) - g_E (V - E_E) - g_I (V - E_I) + I`` with the conductances of the step
held fixed, that is::

    v[it+1] = v[it] + a (v_inf - v[it]),   a = dt (g_L + g_E + g_I) / C = dt/tau_m (1 + (g_E + g_I)/g_L)

where ``v_inf`` is the instantaneous equilibrium (a weighted mean of ``E_L, E_E, E_I`` plus
``I/(g_L+g_E+g_I)``).  For ``a <= 1`` the new sample lies between ``v[it]`` and ``v_inf``, so ``v``
stays within the span of its start and the reversal potentials (plus the current's share).  For
``a > 1`` the step overshoots ``v_inf``: ``v`` can leave that span (``V > E_E``, which no
conductance can produce), and for ``a > 2`` the error grows geometrically (``simulate_cond_lif_poisson``
at ``rate_E = 1e4`` Hz reached +213 mV; with ``g_bar = 1000`` nS and no threshold, 1e27 mV).  With
``tau_m = 10`` ms and ``dt = 0.1`` ms, ``a > 1`` needs ``g_E + g_I > 99 g_L`` (990 nS at the
tutorial's ``g_L = 10`` nS), far above any physiological drive.

Every simulator running the tutorial's Euler membrane on conductances therefore tracks the largest
``g_E + g_I`` of a run (one ``max`` per step, on the values the step uses; the recorded numbers are
unchanged) and, where ``a > 1`` was reached:

* poisons that run's outputs (:func:`jaxlif._checks.poison`: NaN traces, all-``True`` raster, spike
  count -1), so that no plausible-looking number comes out, also under ``jit``/``vmap``;
* emits a ``checkify.debug_check`` naming ``a`` (raised by :func:`jaxlif.checked`);
* and, when the result is concrete (not traced), warns (:class:`EulerUnstableWarning`).

Networks (:func:`jaxlif.network.simulate_network`) track the running maximum per neuron of the
``g_E + g_I`` that each Euler membrane step used (step by step and in the min-delay windows) and, since
neurons interact, poison the whole run when any neuron reached ``a > 1``.

``integrator="exp_euler"`` integrates the membrane exponentially and has no such limit.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

__all__ = ["EulerUnstableWarning", "euler_factor", "traced_euler_ok", "warn_if_poisoned", "UNSTABLE_TEXT"]


class EulerUnstableWarning(RuntimeWarning):
    """Forward Euler left its stable range (``dt (g_L + g_E + g_I) / C > 1``); the outputs are poisoned."""


#: What was wrong and what to do, shared by the warning and the checked-mode message.
UNSTABLE_TEXT = ("forward Euler left its stable range: the membrane step factor dt*(g_L+g_E+g_I)/C = "
                 "dt/tau_m*(1+(g_E+g_I)/g_L) exceeded 1, so v overshoots its equilibrium and can leave "
                 "the span of the reversal potentials (beyond 2 it diverges); the outputs are poisoned "
                 "(NaN traces, all-True raster, spike count -1). Use a smaller dt (the factor is "
                 "proportional to dt), smaller conductances or rates, or integrator='exp_euler'")


def euler_factor(neuron, g_syn, dt: float):
    """``a = dt (g_L + g_syn) / C = dt/tau_m (1 + g_syn/g_L)`` for a total synaptic conductance
    ``g_syn`` [nS] (module docstring); dimensionless."""
    return (dt / neuron.tau_m) * (1.0 + g_syn / neuron.g_L)


def traced_euler_ok(neuron, g_peak, dt: float, message: bool = True) -> jax.Array:
    """Inside a jitted core: ``a <= 1`` for the largest total conductance ``g_peak`` of a run
    (elementwise over leading batch axes; NaN counts as stable: invalid values are poisoned by
    their own rules).  With ``message``, one ``checkify.debug_check`` for :func:`jaxlif.checked`."""
    a = euler_factor(neuron, g_peak, dt)
    ok = ~(a > 1.0)
    if message:
        checkify.debug_check(jnp.all(ok), UNSTABLE_TEXT + " (largest factor {a})",
                             a=jnp.max(jnp.where(ok, 0.0, a)))
    return ok


def peak_init(dtype) -> jax.Array:
    """The running maximum's start: no conductance yet."""
    return jnp.zeros((), dtype)


def _last_sample(x) -> np.ndarray:
    """``x[..., -1]`` on the host: a view of the array's memory on CPU (no program, no copy), else the slice
    taken on its device and only that copied (not the whole raster)."""
    if not hasattr(x, "devices") or all(d.platform == "cpu" for d in x.devices()):
        return np.asarray(x)[..., -1]
    return np.asarray(x[..., -1])


def warn_if_poisoned(result, function: str):
    """Warn (:class:`EulerUnstableWarning`) when a *concrete* result of ``function`` is poisoned.

    The simulators validate every concrete argument in Python before running, so a concrete run
    whose raster ends in a spike (the last sample is never tested: only a poisoned raster has one
    there) or whose spike count is -1 was poisoned by the stability check.  Traced results (inside
    the caller's ``jit``/``vmap``) are left alone: their poisoned values speak.  Returns ``result``.
    """
    count = getattr(result, "spike_count", None)
    if count is None and isinstance(result.spikes, dict):      # a network: {population: raster}
        rasters = list(result.spikes.values())
        if any(isinstance(r, jax.core.Tracer) or not getattr(r, "is_fully_addressable", True) for r in rasters):
            return result
        bad = np.concatenate([_last_sample(r).reshape(-1) != 0 for r in rasters])
        if np.any(bad):
            warnings.warn(f"{function}: {UNSTABLE_TEXT}", EulerUnstableWarning, stacklevel=3)
        return result
    probe = count if count is not None else result.spikes
    if isinstance(probe, jax.core.Tracer) or not getattr(probe, "is_fully_addressable", True):
        return result
    bad = np.asarray(probe) == -1 if count is not None else _last_sample(probe) != 0
    if np.any(bad):
        where = f"{int(np.sum(bad))} of {bad.size} neurons: " if bad.ndim else ""
        warnings.warn(f"{function}: {where}{UNSTABLE_TEXT}", EulerUnstableWarning, stacklevel=3)
    return result
