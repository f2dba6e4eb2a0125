r"""A network split into its structure and its parameters, for training with ``jax.grad`` and optax.

A :class:`~jaxlif.network.Network` mixes two kinds of numbers: the values a user may fit (neuron and
receptor parameters, drive rate and weight, synaptic weights, plasticity parameters) and the
connectivity (sizes, target indices, delays in steps), which is never differentiated.
:func:`partition` separates them::

    structure, params = jaxlif.network.partition(net)
    loss = lambda params: rate_loss(jaxlif.network.simulate_network(key, structure, params, T=1000.0,
                                                                     dt=0.1, spike_grad=fast_sigmoid()))
    grads = jax.grad(loss)(params)                  # same tree as params, every leaf a float array
    updates, opt_state = optimiser.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)

- :class:`NetworkParams` holds only float arrays (the default float type, float64 under
  ``jax_enable_x64``): ``params.populations[name]`` is a :class:`PopulationParams` (``neuron``
  :class:`~jaxlif.LIFParams`, ``exc``/``inh`` :class:`~jaxlif.network.Receptor`, ``drive``
  :class:`DriveParams` or ``None``), ``params.projections[key]`` a :class:`ProjectionParams`
  (``weights`` [nS] in the projection's layout, ``stp`` :class:`~jaxlif.STPParams` or ``None``), with
  ``key = "pre->post"`` (``"pre->post#2"`` for a second projection between the same populations).
  ``jax.grad``, optax, ``jax.vmap`` and ``equinox.filter_grad`` see every value.
- :class:`NetworkStructure` holds the rest: names, sizes, receptors, delays, plasticity modes (static)
  and the integer index arrays of sparse projections (``targets``, ``delays``: pytree leaves, so that a
  new connectivity of the same shape is a new *value* and compiles nothing; pass the structure as an
  argument of your jitted function rather than closing over it, or its arrays become constants).

:func:`combine` is the inverse.  :func:`jaxlif.constraints.default_constraints` maps a
:class:`NetworkParams` to and from an unconstrained space (time constants ``> dt``, conductances and
weights ``> 0``, ``U0`` in (0, 1), drive rates in (0, 1000/dt) Hz).  A weight of exactly 0 (an absent
synapse of a dense projection, the padding of a sparse one) maps to ``-inf`` there and stays 0: a
log-parametrised synapse cannot grow from nothing.  (Decoupled weight decay such as ``optax.adamw``
applied to the unconstrained tree would turn ``-inf`` into NaN: mask those leaves or decay the weights
themselves.)

Shapes: population parameters are scalars or one value per neuron ``(size,)``; dense weights
``(n_post, n_pre)``; sparse weights ``(n_pre, max_out)`` padded rows; plasticity parameters scalars,
``(n_pre,)`` (``stp_mode="pre"``) or the weights' shape (``"synapse"``).  Units: ms, mV, nS, Hz.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxlif._host import device_array
from jaxlif.neurons import LIFParams
from jaxlif.network.structure import (DenseProjection, Network, PoissonDrive, Population, Receptor,
                                      SparseProjection, _pytree, _Sizes)
from jaxlif.plasticity import STPParams

__all__ = ["DriveParams", "PopulationParams", "ProjectionParams", "NetworkParams", "PopulationStructure",
           "ProjectionStructure", "NetworkStructure", "partition", "combine", "projection_keys"]


class DriveParams(NamedTuple):
    """Trainable values of a :class:`~jaxlif.network.PoissonDrive`: ``rate`` of each train [Hz] and
    ``weight``, the conductance jump per input spike [nS] (scalars)."""

    rate: Any
    weight: Any


class PopulationParams(NamedTuple):
    """Trainable values of one population: ``neuron`` (:class:`~jaxlif.LIFParams`), ``exc`` and ``inh``
    (:class:`~jaxlif.network.Receptor`: ``tau_syn`` [ms], ``E_rev`` [mV]), ``drive`` (:class:`DriveParams`
    or ``None``)."""

    neuron: LIFParams
    exc: Receptor
    inh: Receptor
    drive: Optional[DriveParams]


class ProjectionParams(NamedTuple):
    """Trainable values of one projection: ``weights`` [nS] (dense ``(n_post, n_pre)`` or padded rows
    ``(n_pre, max_out)``) and ``stp`` (:class:`~jaxlif.STPParams` or ``None``)."""

    weights: Any
    stp: Optional[STPParams]


class NetworkParams(NamedTuple):
    """Every trainable value of a network: ``populations`` ``{name: PopulationParams}`` and
    ``projections`` ``{key: ProjectionParams}`` (keys from :func:`projection_keys`)."""

    populations: dict
    projections: dict


@_pytree(data=[], meta=["name", "size", "drive_n", "drive_receptor"])
class PopulationStructure:
    """Static description of a population: ``name``, ``size`` and, with a drive, the number of trains
    per neuron ``drive_n`` and its ``drive_receptor`` (both ``None`` without a drive)."""

    name: str
    size: int
    drive_n: Optional[int] = None
    drive_receptor: Optional[str] = None


@_pytree(data=["targets", "delays"],
         meta=["key", "pre", "post", "receptor", "sparse", "delay", "max_delay", "n_post", "stp_mode",
               "min_delay"])
class ProjectionStructure:
    """Everything of a projection but its values: ``targets`` and ``delays`` (int, ``(n_pre, max_out)``,
    sparse only, else ``None``) and the static fields of :class:`~jaxlif.network.SparseProjection` /
    :class:`~jaxlif.network.DenseProjection`; ``key`` names its entry of :class:`NetworkParams`."""

    targets: Any
    delays: Any
    key: str
    pre: str
    post: str
    receptor: str
    sparse: bool
    delay: int
    max_delay: int
    n_post: int
    stp_mode: str
    min_delay: int = 0


@_pytree(data=["populations", "projections"], meta=[])
class NetworkStructure(_Sizes):
    """The structure of a network (tuples of :class:`PopulationStructure` and :class:`ProjectionStructure`),
    with ``sizes``, ``size`` and ``max_delay`` as on a :class:`~jaxlif.network.Network`."""

    populations: tuple
    projections: tuple


def projection_keys(net: Network | NetworkStructure) -> tuple[str, ...]:
    """The keys of ``NetworkParams.projections``, in the order of ``net.projections``: ``"pre->post"``,
    and ``"pre->post#2"``, ``#3``, ... for further projections between the same two populations."""
    if isinstance(net, NetworkStructure):
        return tuple(p.key for p in net.projections)
    keys, seen = [], {}
    for proj in net.projections:
        base = f"{proj.pre}->{proj.post}"
        seen[base] = seen.get(base, 0) + 1
        keys.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return tuple(keys)


def _as(x, dtype) -> jax.Array:
    """``jnp.asarray(x, dtype)``; a host value (Python number, NumPy array) is converted by NumPy and transferred
    (the same values, bit for bit, and no compiled program: ``jnp.asarray`` compiled a conversion program per
    shape, about 70 one-operation programs in the default test tier, 2026-12-07).  Only for float32, float64 and
    int32, where NumPy and XLA round alike; narrower types keep XLA's conversion."""
    if isinstance(x, jax.Array) or jnp.dtype(dtype) not in (jnp.float32, jnp.float64, jnp.int32):
        return jnp.asarray(x, dtype)
    return device_array(x, dtype)


def _floats(tree, dtype):
    """Every leaf as an array of ``dtype`` (tracers keep their values, cast only if needed)."""
    return jax.tree.map(lambda x: _as(x, dtype), tree)


def partition(net: Network, dtype: DTypeLike | None = None) -> tuple[NetworkStructure, NetworkParams]:
    """Split ``net`` into ``(structure, params)`` (module docstring); :func:`combine` inverts it.

    Args:
        net: :class:`~jaxlif.network.Network` (its values may be traced).
        dtype: float type of the parameters (default: the default float type).

    Every value becomes an array of ``dtype``, so that Python ints, NumPy float64 scalars and float32
    arrays of the same shapes give the same compiled program.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jaxlif.network.Network, got {type(net).__name__}")
    dtype = dtype or jnp.result_type(float)
    pops, pop_params = [], {}
    for p in net.populations:
        drive = p.drive
        pops.append(PopulationStructure(p.name, p.size, None if drive is None else drive.n,
                                        None if drive is None else drive.receptor))
        pop_params[p.name] = PopulationParams(p.neuron, p.exc, p.inh,
                                              None if drive is None else DriveParams(drive.rate, drive.weight))
    projs, proj_params = [], {}
    for key, q in zip(projection_keys(net), net.projections):
        sparse = isinstance(q, SparseProjection)
        projs.append(ProjectionStructure(
            _as(q.targets, jnp.int32) if sparse else None, _as(q.delays, jnp.int32) if sparse else None,
            key, q.pre, q.post, q.receptor, sparse, q.delay, q.max_delay,
            q.n_post if sparse else net.sizes[q.post], q.stp_mode, q.min_delay if sparse else 0))
        proj_params[key] = ProjectionParams(q.weights, q.stp)
    params = NetworkParams(pop_params, proj_params)
    return NetworkStructure(tuple(pops), tuple(projs)), _floats(params, dtype)


def combine(structure: NetworkStructure, params: NetworkParams) -> Network:
    """The :class:`~jaxlif.network.Network` of ``structure`` with the values ``params`` (inverse of
    :func:`partition`; works on traced values)."""
    if not isinstance(structure, NetworkStructure):
        raise TypeError(f"structure must be a jaxlif.network.NetworkStructure (from partition), got "
                        f"{type(structure).__name__}")
    if not isinstance(params, NetworkParams):
        raise TypeError(f"params must be a jaxlif.network.NetworkParams (from partition), got {type(params).__name__}")
    names = [p.name for p in structure.populations]
    keys = [q.key for q in structure.projections]
    for field, have, want in (("populations", params.populations, names), ("projections", params.projections, keys)):
        if not isinstance(have, dict) or sorted(have) != sorted(want):
            got = sorted(have) if isinstance(have, dict) else type(have).__name__
            raise ValueError(f"params.{field} must have the keys {sorted(want)} of the structure, got {got}")
    pops = []
    for s in structure.populations:
        v = params.populations[s.name]
        if (s.drive_n is None) != (v.drive is None):
            raise ValueError(f"params.populations[{s.name!r}].drive must be {'None' if s.drive_n is None else 'a DriveParams'}"
                             f" for this structure")
        drive = None if v.drive is None else PoissonDrive(v.drive.rate, v.drive.weight, s.drive_n, s.drive_receptor)
        pops.append(Population(s.name, s.size, v.neuron, v.exc, v.inh, drive))
    projs = []
    for s in structure.projections:
        v = params.projections[s.key]
        if s.sparse:
            projs.append(SparseProjection(v.weights, s.targets, s.delays, v.stp, s.pre, s.post, s.receptor,
                                          s.max_delay, s.n_post, s.stp_mode, s.delay, s.min_delay))
        else:
            projs.append(DenseProjection(v.weights, v.stp, s.pre, s.post, s.receptor, s.delay, s.stp_mode))
    return Network(tuple(pops), tuple(projs))

