r"""Unconstrained parametrisations of parameter pytrees, for gradient fits and your own losses.

A gradient optimiser moves parameters freely, but most model parameters are bounded (a time
constant must stay above the time step, a release probability inside (0, 1)).  Fitting in an
unconstrained space ``theta`` and mapping back guarantees validity at every step, without clipping::

    real               x = theta
    greater_than(lo)   x = lo + exp(theta)                   theta = log(x - lo)
    interval(lo, hi)   x = lo + (hi - lo) sigmoid(theta)     theta = logit((x - lo) / (hi - lo))

Time constants get ``exp`` rather than ``softplus``: one unit of ``theta`` is then a factor e at every
scale, which keeps time constants from 1 ms to seconds equally well conditioned.

A *constraint tree* has the structure of the parameter pytree with one :class:`Constraint` per leaf.
:func:`default_constraints` gives the library's rules for its parameter types (the same ranges as
its argument checks, docs/conventions.md); other pytrees (your own, or the STP models of
:mod:`jaxlif.fitting`) bring their own tree.  Example, a loss on the unconstrained tail of an
exponential synapse::

    cons = jaxlif.constraints.default_constraints(jaxlif.SynParams(), dt=0.1)
    theta = jaxlif.constraints.to_unconstrained(jaxlif.SynParams(2.4, 5.0, 0.0), cons)
    loss = lambda th: my_loss(jaxlif.constraints.from_unconstrained(th, cons))
    jax.grad(loss)(theta)

Both maps work leaf-wise on arrays of any shape (per-synapse or per-neuron values), under ``jit``,
``vmap`` and ``grad``.

The library's rules (:func:`default_constraints`), one per field, for every parameter pytree a
simulator takes (:class:`~jaxlif.LIFParams`, :class:`~jaxlif.SynParams`, :class:`~jaxlif.STPParams` and
the composites :class:`~jaxlif.CondLIFParams` = (neuron, exc, inh), :class:`~jaxlif.STPLIFParams` =
(neuron, exc, inh, stp_E, stp_I))::

    potentials V_th, V_reset, V_init, E_L, E_rev [mV]   real
    tau_m, tau_syn, tau_d, tau_f [ms]                   greater_than(dt)   (> 0 without dt)
    g_L, g_bar [nS], t_ref [ms]                         positive
    U0                                                  unit_interval

Every value they produce passes the simulators' checks (``g_bar = 0`` and ``t_ref = 0``, allowed by the
checks, are boundaries the maps approach but do not reach).  Surrogate-gradient fits of spiking runs use
the same maps (docs/gradients.md).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["Constraint", "real", "positive", "greater_than", "interval", "unit_interval",
           "to_unconstrained", "from_unconstrained", "default_constraints"]


@dataclasses.dataclass(frozen=True)
class Constraint:
    """The valid open range ``(low, high)`` of one parameter leaf (a pytree leaf itself).

    ``low = -inf, high = inf``: unconstrained; ``high = inf``: ``low + exp(theta)``; both finite:
    ``low + (high - low) sigmoid(theta)``.
    """

    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self):
        if math.isnan(self.low) or math.isnan(self.high) or not self.low < self.high:
            raise ValueError(f"a constraint needs low < high, got ({self.low}, {self.high})")
        if self.low == -math.inf and self.high < math.inf:
            raise ValueError("upper bounds alone are not supported; give a finite low too")

    def forward(self, theta: jax.Array) -> jax.Array:
        """Unconstrained ``theta`` -> the parameter in ``(low, high)``."""
        if self.low == -math.inf:
            return theta
        if self.high == math.inf:
            return self.low + jnp.exp(theta)
        return self.low + (self.high - self.low) * jax.nn.sigmoid(theta)

    def inverse(self, x: jax.Array) -> jax.Array:
        """The parameter ``x`` -> unconstrained ``theta`` (``-inf``/``inf`` on the boundary, NaN outside)."""
        x = jnp.asarray(x, dtype=jnp.result_type(x, float))
        if self.low == -math.inf:
            return x
        if self.high == math.inf:
            return jnp.log(x - self.low)
        z = (x - self.low) / (self.high - self.low)
        return jnp.log(z) - jnp.log1p(-z)


def real() -> Constraint:
    """No constraint: ``x = theta``."""
    return Constraint()


def positive() -> Constraint:
    """``x > 0``: ``x = exp(theta)``."""
    return Constraint(0.0)


def greater_than(low: float) -> Constraint:
    """``x > low``: ``x = low + exp(theta)`` (e.g. a time constant above ``dt``)."""
    return Constraint(float(low))


def interval(low: float, high: float) -> Constraint:
    """``low < x < high``: ``x = low + (high - low) sigmoid(theta)``."""
    return Constraint(float(low), float(high))


def unit_interval() -> Constraint:
    """``0 < x < 1`` (a probability such as ``U0``): ``x = sigmoid(theta)``."""
    return Constraint(0.0, 1.0)


def _is_constraint(x) -> bool:
    return isinstance(x, Constraint)


def to_unconstrained(params: Any, constraints: Any) -> Any:
    """Map a parameter pytree to its unconstrained form, leaf by leaf (:meth:`Constraint.inverse`)."""
    return jax.tree.map(lambda c, x: c.inverse(x), constraints, params, is_leaf=_is_constraint)


def from_unconstrained(theta: Any, constraints: Any) -> Any:
    """Map an unconstrained pytree back to parameters, leaf by leaf (:meth:`Constraint.forward`)."""
    return jax.tree.map(lambda c, t: c.forward(jnp.asarray(t)), constraints, theta, is_leaf=_is_constraint)


def default_constraints(params: Any, *, dt: float | None = None) -> Any:
    """The library's validity rules as a constraint tree for one of its parameter types.

    Time constants must exceed ``dt`` [ms] (or 0 without ``dt``: continuous time), conductances
    and the refractory period are positive, potentials unconstrained, ``U0`` in (0, 1).  Accepts
    :class:`~jaxlif.LIFParams`, :class:`~jaxlif.SynParams`, :class:`~jaxlif.STPParams`, the
    composites :class:`~jaxlif.CondLIFParams`, :class:`~jaxlif.STPLIFParams`, and a network's
    :class:`~jaxlif.network.NetworkParams` (and its parts): receptor ``tau_syn > dt``, drive rate in
    ``(0, 1000/dt)`` Hz, drive and synaptic weights ``> 0`` (a weight of exactly 0, an absent or padded
    synapse, maps to ``-inf`` and stays 0; see :mod:`jaxlif.network.params`).

    Raises:
        TypeError: for any other type (give your own constraint tree).
    """
    from jaxlif.neurons import CondLIFParams, LIFParams
    from jaxlif.plasticity import STPParams
    from jaxlif.stp_lif import STPLIFParams
    from jaxlif.synapses import SynParams

    tau = greater_than(0.0 if dt is None else float(dt))
    if isinstance(params, LIFParams):
        return LIFParams(V_th=real(), V_reset=real(), tau_m=tau, g_L=positive(), V_init=real(), E_L=real(),
                         t_ref=positive())
    if isinstance(params, SynParams):
        return SynParams(g_bar=positive(), tau_syn=tau, E_rev=real())
    if isinstance(params, STPParams):
        return STPParams(U0=unit_interval(), tau_d=tau, tau_f=tau)
    if isinstance(params, (CondLIFParams, STPLIFParams)):
        return type(params)(*(default_constraints(p, dt=dt) for p in params))
    from jaxlif.network.params import DriveParams, NetworkParams, PopulationParams, ProjectionParams
    from jaxlif.network.structure import Receptor
    if isinstance(params, Receptor):
        return Receptor(tau_syn=tau, E_rev=real())
    if isinstance(params, DriveParams):
        return DriveParams(rate=positive() if dt is None else interval(0.0, 1000.0 / float(dt)), weight=positive())
    if isinstance(params, PopulationParams):
        return PopulationParams(*(None if p is None else default_constraints(p, dt=dt) for p in params))
    if isinstance(params, ProjectionParams):
        return ProjectionParams(positive(), None if params.stp is None else default_constraints(params.stp, dt=dt))
    if isinstance(params, NetworkParams):
        return NetworkParams({k: default_constraints(v, dt=dt) for k, v in params.populations.items()},
                             {k: default_constraints(v, dt=dt) for k, v in params.projections.items()})
    raise TypeError(f"no default constraints for {type(params).__name__}; build a tree of "
                    f"jaxlif.constraints.Constraint with the structure of your parameters")
