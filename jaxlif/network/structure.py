r"""What a network is made of: populations, their receptors and drive, and projections between them.

All of these are pytrees (``jax.tree_util.register_dataclass``): numbers (parameters, weights,
indices) are leaves that ``jit``, ``vmap`` and ``grad`` see; names, sizes, delays of dense
projections and the plasticity mode are static.  Build projections with :mod:`jaxlif.network.build`,
whose functions validate their arguments with messages that name the argument and the valid range;
:func:`check_network` validates a whole network:

- :class:`Population`: ``size`` conductance-LIF neurons with one :class:`~jaxlif.LIFParams`
  (each field a scalar or one value per neuron), an excitatory and an inhibitory
  :class:`Receptor` (decay time constant and reversal potential of the summed conductance) and an
  optional external :class:`PoissonDrive`;
- :func:`dense_projection` (weights ``(n_post, n_pre)`` [nS], one delay) and
  :func:`sparse_projection` (an edge list ``pre_index, post_index, weights`` [nS] with one delay or
  one per edge), optionally with Tsodyks-Markram plasticity per presynaptic neuron or per synapse;
- :func:`random_projection`: Bernoulli connectivity with probability ``p``;
- :class:`Network`: the populations and the projections.

Units: ms, mV, nS, Hz; delays in steps of ``dt`` (``d >= 1``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import jax
import numpy as np

from jaxlif import _checks
from jaxlif.neurons import LIFParams, check_lif_params
from jaxlif.plasticity import STPParams, check_stp_params

__all__ = ["Receptor", "PoissonDrive", "Population", "DenseProjection", "SparseProjection", "Network",
           "check_network"]

RECEPTORS = ("exc", "inh")
STP_MODES = ("pre", "synapse")
RECEPTOR_RULES = {"tau_syn": "tau", "E_rev": "finite"}


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {list(choices)}")
    return value


def _pytree(data: list[str], meta: list[str]):
    def register(cls):
        return jax.tree_util.register_dataclass(dataclasses.dataclass(frozen=True)(cls),
                                                data_fields=data, meta_fields=meta)
    return register


@_pytree(data=["tau_syn", "E_rev"], meta=[])
class Receptor:
    """The summed conductance of one receptor type on a population.

    ``tau_syn dg/dt = -g`` between inputs; every arriving input adds its weight [nS] to ``g``.

    Attributes:
        tau_syn: decay time constant [ms] (scalar or one per neuron).
        E_rev: reversal potential [mV].
    """

    tau_syn: Any = 5.0
    E_rev: Any = 0.0


@_pytree(data=["rate", "weight"], meta=["n", "receptor"])
class PoissonDrive:
    """External drive: every neuron receives its own ``n`` independent Poisson trains.

    Each step adds ``weight * count`` [nS] to the ``receptor`` conductance of every neuron, with
    ``count ~ Binomial(n, rate dt / 1000)`` drawn per neuron and step (docs/conventions.md 4.4).

    Attributes:
        rate: rate of each train [Hz] (scalar; ``rate dt / 1000 <= 1``).
        weight: conductance jump per input spike [nS] (scalar).
        n: number of trains per neuron (static int).
        receptor: ``"exc"`` or ``"inh"`` (static).
    """

    rate: Any = 10.0
    weight: Any = 1.0
    n: int = 100
    receptor: str = "exc"


@_pytree(data=["neuron", "exc", "inh", "drive"], meta=["name", "size"])
class Population:
    """``size`` conductance-LIF neurons (docs/conventions.md 4.2) sharing a name.

    Attributes:
        name, size: static label and number of neurons.
        neuron: :class:`~jaxlif.LIFParams`, each field a scalar or an array ``(size,)``.
        exc, inh: :class:`Receptor` of the excitatory and inhibitory conductance.
        drive: optional :class:`PoissonDrive`.
    """

    name: str
    size: int
    neuron: LIFParams = LIFParams()
    exc: Receptor = Receptor(5.0, 0.0)
    inh: Receptor = Receptor(10.0, -80.0)
    drive: Optional[PoissonDrive] = None


@_pytree(data=["weights", "stp"], meta=["pre", "post", "receptor", "delay", "stp_mode"])
class DenseProjection:
    """All-to-all weights from population ``pre`` to ``post`` with one delay.

    Attributes:
        weights: ``(n_post, n_pre)`` [nS], ``>= 0`` (0: no synapse).
        stp: :class:`~jaxlif.STPParams` or ``None`` (static synapses).
        pre, post: population names (static).  receptor: ``"exc"`` or ``"inh"`` (static).
        delay: delay in steps, ``>= 1`` (static).
        stp_mode: ``"pre"`` (one ``u, R`` per presynaptic neuron) or ``"synapse"`` (one per synapse).
    """

    weights: Any
    stp: Optional[STPParams]
    pre: str
    post: str
    receptor: str
    delay: int
    stp_mode: str = "pre"

    @property
    def max_delay(self) -> int:
        return self.delay


@_pytree(data=["weights", "targets", "delays", "stp"],
         meta=["pre", "post", "receptor", "max_delay", "n_post", "stp_mode", "delay", "min_delay"])
class SparseProjection:
    """An edge list stored as padded rows per presynaptic neuron (build with :func:`sparse_projection`).

    Row ``j`` holds the synapses of presynaptic neuron ``j``: ``targets[j, c]`` (postsynaptic index),
    ``weights[j, c]`` [nS] and ``delays[j, c]`` [steps]; rows are padded to the largest out-degree
    with target ``n_post`` (out of range: dropped), weight 0 and delay 1.  Per-synapse plasticity parameters have the same ``(n_pre, max_out)`` layout.

    Attributes:
        weights: ``(n_pre, max_out)`` [nS].  targets, delays: ``(n_pre, max_out)`` int.
        stp, pre, post, receptor, stp_mode: as in :class:`DenseProjection`.
        max_delay: the largest delay (static): the ring length.  n_post: size of the target population (static).
        delay: the one delay of every synapse (static), or 0 when they differ (then ``delays`` is used).
        min_delay: a declared lower bound of the delays (static; ``sparse_projection(delay_bounds=)``),
            or 0: the simulator's min-delay windows then follow the concrete ``delays``.
    """

    weights: Any
    targets: Any
    delays: Any
    stp: Optional[STPParams]
    pre: str
    post: str
    receptor: str
    max_delay: int
    n_post: int
    stp_mode: str = "pre"
    delay: int = 0
    min_delay: int = 0

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The real synapses as NumPy arrays ``(pre_index, post_index, weights, delays)`` (concrete only)."""
        targets = np.asarray(self.targets)
        real = targets < self.n_post
        pre = np.broadcast_to(np.arange(targets.shape[0])[:, None], targets.shape)[real]
        return pre, targets[real], np.asarray(self.weights)[real], np.asarray(self.delays)[real]


Projection = DenseProjection | SparseProjection


class _Sizes:
    """What a :class:`Network` and its structure (:class:`jaxlif.network.NetworkStructure`) both answer
    from their ``populations`` (each with ``name``, ``size``) and ``projections`` (each with ``max_delay``)."""

    @property
    def sizes(self) -> dict[str, int]:
        """``{name: size}`` in the order of ``populations``."""
        return {p.name: p.size for p in self.populations}

    @property
    def size(self) -> int:
        """Total number of neurons."""
        return sum(p.size for p in self.populations)

    @property
    def max_delay(self) -> int:
        """The ring length: the largest delay of any projection in steps (at least 1)."""
        return max([1] + [p.max_delay for p in self.projections])


@_pytree(data=["populations", "projections"], meta=[])
class Network(_Sizes):
    """Populations and the projections between them (a pytree).

    Attributes:
        populations: tuple of :class:`Population` (unique names).
        projections: tuple of :class:`DenseProjection` / :class:`SparseProjection`.
    """

    populations: tuple
    projections: tuple = ()

    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(f"no population named {name!r}; the network has {[p.name for p in self.populations]}")

    @property
    def offsets(self) -> dict[str, int]:
        """``{name: index of its first neuron}``: populations are stacked in order into one vector."""
        starts = np.cumsum([0] + [p.size for p in self.populations])
        return {p.name: int(start) for p, start in zip(self.populations, starts)}


# ----------------------------------------------------------------------------------------------
# Validation (concrete values; traced ones are checked inside the simulator's jitted core)
# ----------------------------------------------------------------------------------------------


def _check_leaf_shapes(label: str, params, allowed: tuple) -> None:
    for field, value in params._asdict().items() if hasattr(params, "_asdict") else vars(params).items():
        if np.shape(value) not in allowed:
            raise ValueError(f"{label}.{field} has shape {np.shape(value)}; expected a scalar or "
                             f"{' or '.join(str(a) for a in allowed if a)}")


def check_network(net: Network, dt: float) -> None:
    """Validate a :class:`Network` for time step ``dt`` [ms]: ``ValueError``/``TypeError`` naming the field."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a jaxlif.network.Network, got {type(net).__name__}")
    names = [p.name for p in net.populations]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"net.populations must be a non-empty tuple with unique names, got names {names}")
    for pop in net.populations:
        label = f"populations[{pop.name!r}]"
        if not isinstance(pop, Population):
            raise TypeError(f"{label} must be a jaxlif.network.Population, got {type(pop).__name__}")
        _checks.check_count(f"{label}.size", pop.size, minimum=1)
        check_lif_params(pop.neuron, dt, f"{label}.neuron")
        _check_leaf_shapes(f"{label}.neuron", pop.neuron, ((), (pop.size,)))
        for rec in RECEPTORS:
            receptor = getattr(pop, rec)
            if not isinstance(receptor, Receptor):
                raise TypeError(f"{label}.{rec} must be a jaxlif.network.Receptor, got {type(receptor).__name__}")
            _checks.check_params(f"{label}.{rec}", receptor, dt, RECEPTOR_RULES)
            _check_leaf_shapes(f"{label}.{rec}", receptor, ((), (pop.size,)))
        if pop.drive is not None:
            d = pop.drive
            if not isinstance(d, PoissonDrive):
                raise TypeError(f"{label}.drive must be a jaxlif.network.PoissonDrive or None")
            _checks.check_rate(f"{label}.drive.rate", d.rate, dt)
            _checks.check_nonnegative(f"{label}.drive.weight", d.weight, "nS")
            _checks.check_count(f"{label}.drive.n", d.n)
            _check_choice(f"{label}.drive.receptor", d.receptor, RECEPTORS)
            _check_leaf_shapes(f"{label}.drive", d, ((),))
    sizes = net.sizes
    for i, proj in enumerate(net.projections):
        label = f"projections[{i}]"
        if not isinstance(proj, (DenseProjection, SparseProjection)):
            raise TypeError(f"{label} must be a Dense- or SparseProjection, got {type(proj).__name__}")
        for end in ("pre", "post"):
            if getattr(proj, end) not in sizes:
                raise ValueError(f"{label}.{end}={getattr(proj, end)!r} is not a population; have {names}")
        label = f"{label} ({proj.pre}->{proj.post})"
        n_pre, n_post = sizes[proj.pre], sizes[proj.post]
        _check_choice(f"{label}.receptor", proj.receptor, RECEPTORS)
        _check_choice(f"{label}.stp_mode", proj.stp_mode, STP_MODES)
        _checks.check_nonnegative(f"{label}.weights", proj.weights, "nS")
        if isinstance(proj, DenseProjection):
            _checks.check_count(f"{label}.delay", proj.delay, minimum=1)
            per_synapse = (n_post, n_pre)
            if np.shape(proj.weights) != per_synapse:
                raise ValueError(f"{label}.weights has shape {np.shape(proj.weights)}, expected (n_post, n_pre) "
                                 f"= {per_synapse}")
        else:
            per_synapse = (n_pre, np.shape(proj.weights)[1] if np.ndim(proj.weights) == 2 else -1)
            for field in ("weights", "targets", "delays"):
                if np.shape(getattr(proj, field)) != per_synapse:
                    raise ValueError(f"{label}.{field} has shape {np.shape(getattr(proj, field))}, expected "
                                     f"padded rows (n_pre, max_out) = {per_synapse}; build it with sparse_projection")
            if proj.n_post != n_post:
                raise ValueError(f"{label} was built for n_post={proj.n_post} targets, but {proj.post!r} has {n_post}")
            for field, lo, hi in (("targets", 0, n_post), ("delays", 1, proj.max_delay)):
                arr = _checks._concrete(getattr(proj, field))
                if arr is not None and arr.size and (arr.min() < lo or arr.max() > hi):
                    raise ValueError(f"{label}.{field} has values in [{arr.min()}, {arr.max()}], outside [{lo}, {hi}]")
            delays, targets = _checks._concrete(proj.delays), _checks._concrete(proj.targets)
            if proj.min_delay:
                if not 1 <= proj.min_delay <= proj.max_delay:
                    raise ValueError(f"{label}.min_delay={proj.min_delay} must be in [1, max_delay={proj.max_delay}]")
                if delays is not None and targets is not None and np.any(
                        (delays < proj.min_delay) & (targets < n_post)):
                    raise ValueError(f"{label}.delays has values below its declared min_delay={proj.min_delay}")
            if proj.delay and delays is not None and targets is not None and np.any(
                    (delays != proj.delay) & (targets < n_post)):
                raise ValueError(f"{label}.delay={proj.delay} (one delay for all synapses) but delays has other "
                                 f"values; build it with sparse_projection")
        if proj.stp is not None:
            check_stp_params(proj.stp, dt, f"{label}.stp")
            _check_leaf_shapes(f"{label}.stp", proj.stp,
                               ((), (n_pre,)) if proj.stp_mode == "pre" else ((), per_synapse))
