r"""Exponential conductance synapses (static: every spike adds the same jump).

Continuous time::

    tau_syn dg/dt = -g + g_bar * tau_syn * sum_k delta(t - t_k)      (jump g_bar per spike)

Discrete update implemented (the tutorial's ``run_LIF_cond``, step 2 of docs/conventions.md 4.2)::

    g[it+1] = g[it] - dt/tau_syn * g[it] + g_bar * n[it+1]

where ``n[it+1]`` is the number of presynaptic spikes at step ``it+1`` summed over all
trains of that type.  Because the synapses are static and share one time constant,
only that per-step *count* matters, not which train spiked: this is what lets the
batch simulators draw one binomial count per step instead of one Bernoulli number
per train.

The synaptic current into the membrane is ``g (E_rev - V)`` [nS * mV = pA].

With ``integrator="exp_euler"`` (docs/conventions.md section 10) the decay is exact and an input at
step ``k`` enters ``g`` at ``t_k`` (NEST's convention)::

    g(t_it+1) = g(t_it) exp(-dt/tau_syn) + g_bar * n[it+1]

and the membrane sees, held over ``[t_it, t_it + dt)``, the exact mean of the decaying conductance,
``g(t_it) * tau_syn/dt * (1 - exp(-dt/tau_syn))`` (:func:`exp_syn_mean`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxlif import _checks

__all__ = ["SynParams", "EXC_SYN", "INH_SYN", "exp_syn_step", "exp_syn_mean", "check_syn_params"]


class SynParams(NamedTuple):
    """Parameters of one population of exponential conductance synapses.

    Attributes:
        g_bar: conductance jump per presynaptic spike [nS].
        tau_syn: decay time constant [ms].
        E_rev: reversal potential [mV].
    """

    g_bar: jax.typing.ArrayLike = 2.4
    tau_syn: jax.typing.ArrayLike = 2.0
    E_rev: jax.typing.ArrayLike = 0.0


#: Exercise 1.2 excitatory synapses: 2.4 nS, 2 ms, 0 mV.
EXC_SYN = SynParams(g_bar=2.4, tau_syn=2.0, E_rev=0.0)
#: Exercise 1.2 inhibitory synapses: 2.4 nS, 5 ms, -80 mV.
INH_SYN = SynParams(g_bar=2.4, tau_syn=5.0, E_rev=-80.0)


def exp_syn_step(params: SynParams, g: jax.Array, n: jax.Array, dt: float, *,
                 integrator: str = "euler") -> jax.Array:
    """One forward-Euler step: ``g + dt/tau_syn * (-g) + g_bar * n``.

    With ``integrator="exp_euler"`` the exact decay: ``g exp(-dt/tau_syn) + g_bar * n``.

    Args:
        params: synapse parameters.
        g: conductance at step ``it`` [nS].
        n: number of presynaptic spikes at step ``it+1`` (any non-negative number).
        dt: time step [ms].
        integrator: ``"euler"`` (default, the tutorial's scheme) or ``"exp_euler"``.

    Returns:
        The conductance at step ``it+1`` [nS].
    """
    if integrator == "exp_euler":
        return g * jnp.exp(-dt / params.tau_syn) + params.g_bar * n
    if integrator != "euler":
        raise ValueError(f"integrator={integrator!r} must be 'euler' or 'exp_euler'")
    return g - (dt / params.tau_syn) * g + params.g_bar * n


def exp_syn_mean(params: SynParams, g: jax.Array, dt: float) -> jax.Array:
    """Mean over ``[t_it, t_it + dt)`` of a conductance ``g`` [nS] at ``t_it`` decaying exactly:
    ``g * tau_syn/dt * (1 - exp(-dt/tau_syn))`` [nS] (what ``integrator="exp_euler"`` holds over the step).
    """
    x = dt / params.tau_syn
    return g * (-jnp.expm1(-x) / x)


def check_syn_params(name: str, params: SynParams, dt: float) -> None:
    """Validate a :class:`SynParams` (raises ValueError/TypeError naming the field)."""
    if not isinstance(params, SynParams):
        raise TypeError(f"{name} must be a jaxlif.SynParams, got {type(params).__name__}")
    _checks.check_params(name, params, dt, _checks.SYN_RULES)
