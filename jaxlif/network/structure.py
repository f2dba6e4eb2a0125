r"""What a network is made of: populations, their receptors and drive, and projections between them.

All of these are pytrees (``jax.tree_util.register_dataclass``): numbers (parameters, weights,
indices) are leaves that ``jit``, ``vmap`` and ``grad`` see; names, sizes, delays of dense
projections and the plasticity mode are static.  Build them with the functions here, which
validate their arguments and give messages that name the argument and the valid range:

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
import jax.numpy as jnp
import numpy as np

from jaxlif import _checks
from jaxlif.neurons import LIFParams, check_lif_params
from jaxlif.plasticity import STPParams, check_stp_params

__all__ = ["Receptor", "PoissonDrive", "Population", "DenseProjection", "SparseProjection", "Network",
           "dense_projection", "sparse_projection", "random_projection", "random_edges", "check_network"]

RECEPTORS = ("exc", "inh")
STP_MODES = ("pre", "synapse")
RECEPTOR_RULES = {"tau_syn": "tau", "E_rev": "finite"}


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
         meta=["pre", "post", "receptor", "max_delay", "n_post", "stp_mode"])
class SparseProjection:
    """An edge list stored as padded rows per presynaptic neuron (build with :func:`sparse_projection`).

    Row ``j`` holds the synapses of presynaptic neuron ``j``: ``targets[j, c]`` (postsynaptic index),
    ``weights[j, c]`` [nS] and ``delays[j, c]`` [steps]; rows are padded to the largest out-degree
    with target ``n_post`` (out of range: dropped), weight 0 and delay 1.  Per-synapse plasticity parameters have the same ``(n_pre, max_out)`` layout.

    Attributes:
        weights: ``(n_pre, max_out)`` [nS].  targets, delays: ``(n_pre, max_out)`` int.
        stp, pre, post, receptor, stp_mode: as in :class:`DenseProjection`.
        max_delay: the largest delay (static).  n_post: size of the target population (static).
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

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The real synapses as NumPy arrays ``(pre_index, post_index, weights, delays)`` (concrete only)."""
        targets = np.asarray(self.targets)
        real = targets < self.n_post
        pre = np.broadcast_to(np.arange(targets.shape[0])[:, None], targets.shape)[real]
        return pre, targets[real], np.asarray(self.weights)[real], np.asarray(self.delays)[real]


Projection = DenseProjection | SparseProjection


@_pytree(data=["populations", "projections"], meta=[])
class Network:
    """Populations and the projections between them (a pytree).

    Attributes:
        populations: tuple of :class:`Population` (unique names).
        projections: tuple of :class:`DenseProjection` / :class:`SparseProjection`.
    """

    populations: tuple
    projections: tuple = ()

    @property
    def max_delay(self) -> int:
        """The ring length: the largest delay of any projection in steps (at least 1)."""
        return max([1] + [p.max_delay for p in self.projections])

    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(f"no population named {name!r}; the network has {[p.name for p in self.populations]}")

    @property
    def sizes(self) -> dict[str, int]:
        """``{name: size}`` in the order of ``populations``."""
        return {p.name: p.size for p in self.populations}

    @property
    def size(self) -> int:
        """Total number of neurons."""
        return sum(p.size for p in self.populations)

    @property
    def offsets(self) -> dict[str, int]:
        """``{name: index of its first neuron}``: populations are stacked in order into one vector."""
        starts = np.cumsum([0] + [p.size for p in self.populations])
        return {p.name: int(start) for p, start in zip(self.populations, starts)}


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------


def _is_traced(value) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def _as_float(value):
    """Concrete numbers become a NumPy float64 array (the simulators cast to the active float type);
    jax arrays and tracers are kept as they are."""
    return value if isinstance(value, jax.Array) else np.asarray(value, dtype=float)


def _check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} must be one of {list(choices)}")
    return value


def _check_stp_arg(stp, stp_mode: str) -> None:
    if stp is not None and not isinstance(stp, STPParams):
        raise TypeError(f"stp must be a jaxlif.STPParams or None, got {type(stp).__name__}")
    _check_choice("stp_mode", stp_mode, STP_MODES)


def dense_projection(pre: str, post: str, weights, *, receptor: str = "exc", delay: int = 1,
                     stp: STPParams | None = None, stp_mode: str = "pre") -> DenseProjection:
    """All-to-all projection with weights ``(n_post, n_pre)`` [nS] (0 where there is no synapse).

    Args:
        pre, post: names of the presynaptic and postsynaptic populations.
        weights: ``(n_post, n_pre)`` conductance jumps [nS], finite and ``>= 0``.
        receptor: ``"exc"`` or ``"inh"``: which conductance of the targets the spikes open.
        delay: delay in steps, ``>= 1`` (see :mod:`jaxlif.network` for the exact latency).
        stp: :class:`~jaxlif.STPParams` for Tsodyks-Markram plasticity, or ``None``.
        stp_mode: ``"pre"``: one ``u, R`` per presynaptic neuron (parameters scalar or
            ``(n_pre,)``); ``"synapse"``: one per synapse (parameters scalar or ``(n_post, n_pre)``).
    """
    _check_choice("receptor", receptor, RECEPTORS)
    delay = _checks.check_count("delay", delay, minimum=1)
    _check_stp_arg(stp, stp_mode)
    if np.ndim(weights) != 2:
        raise ValueError(f"weights must have shape (n_post, n_pre) in nS, got shape {np.shape(weights)}")
    _checks.check_nonnegative("weights", weights, "nS")
    return DenseProjection(_as_float(weights), stp, str(pre), str(post), receptor, delay, stp_mode)


def _rows_layout(pre_index: np.ndarray, n_pre: int):
    """Row and column of every edge in the padded-row layout (edges keep their order within a row)."""
    order = np.argsort(pre_index, kind="stable")
    counts = np.bincount(pre_index, minlength=n_pre)
    width = max(int(counts.max(initial=0)), 1)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    col = np.empty(len(pre_index), dtype=np.int64)
    col[order] = np.arange(len(pre_index)) - start[pre_index[order]]
    return pre_index, col, width


def _to_rows(name: str, value, rows, cols, shape, fill, n_edges: int):
    """A scalar stays a scalar; an ``(n_edges,)`` array goes to the padded ``shape`` (``fill`` elsewhere)."""
    if np.ndim(value) == 0:
        return value
    if np.shape(value) != (n_edges,):
        raise ValueError(f"{name} must be a scalar or have one value per edge, shape ({n_edges},); "
                         f"got shape {np.shape(value)}")
    if _is_traced(value) or isinstance(value, jax.Array):
        value = jnp.asarray(value)
        return jnp.full(shape, fill, value.dtype).at[rows, cols].set(value)
    value = np.asarray(value)
    out = np.full(shape, fill, dtype=value.dtype)
    out[rows, cols] = value
    return out


def sparse_projection(pre: str, post: str, pre_index, post_index, weights, *, n_pre: int, n_post: int,
                      receptor: str = "exc", delay=1, stp: STPParams | None = None,
                      stp_mode: str = "pre") -> SparseProjection:
    """A projection given as an edge list: synapse ``e`` goes from ``pre_index[e]`` to ``post_index[e]``.

    Args:
        pre, post: population names.
        pre_index, post_index: ``(n_edges,)`` integer indices (concrete), within ``[0, n_pre)`` and
            ``[0, n_post)``; several edges between one pair are several synapses.
        weights: scalar or ``(n_edges,)`` [nS], finite and ``>= 0``.
        n_pre, n_post: sizes of the two populations.
        receptor: ``"exc"`` or ``"inh"``.
        delay: delay in steps, ``>= 1``: an int or ``(n_edges,)`` ints.
        stp: :class:`~jaxlif.STPParams` or ``None``; with ``stp_mode="pre"`` each field is a scalar
            or ``(n_pre,)``, with ``"synapse"`` a scalar or ``(n_edges,)``.
        stp_mode: ``"pre"`` or ``"synapse"`` (see :func:`dense_projection`).

    Returns:
        :class:`SparseProjection` (padded rows per presynaptic neuron).
    """
    _check_choice("receptor", receptor, RECEPTORS)
    _check_stp_arg(stp, stp_mode)
    n_pre = _checks.check_count("n_pre", n_pre, minimum=1)
    n_post = _checks.check_count("n_post", n_post, minimum=1)
    idx = {}
    for name, value, size in (("pre_index", pre_index, n_pre), ("post_index", post_index, n_post)):
        if _is_traced(value):
            raise TypeError(f"{name} must be concrete integers (it fixes the layout), not a traced value")
        arr = np.asarray(value)
        if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must be a 1-D array of integers, got dtype {arr.dtype} and shape {arr.shape}")
        if arr.size and (arr.min() < 0 or arr.max() >= size):
            raise ValueError(f"{name} has values in [{arr.min()}, {arr.max()}], outside [0, {size - 1}]")
        idx[name] = arr.astype(np.int64)
    n_edges = len(idx["pre_index"])
    if len(idx["post_index"]) != n_edges:
        raise ValueError(f"pre_index has {n_edges} edges but post_index has {len(idx['post_index'])}")
    _checks.check_nonnegative("weights", weights, "nS")
    delays = np.asarray(delay)
    if _is_traced(delay) or not np.issubdtype(delays.dtype, np.integer) or delays.shape not in ((), (n_edges,)):
        raise ValueError(f"delay must be a concrete int or {n_edges} ints (steps), got {delay!r}")
    if delays.size and delays.min() < 1:
        raise ValueError(f"delay={int(delays.min())} steps must be >= 1 (a spike of step k reaches the "
                         f"conductance at step k + delay at the earliest k + 1)")
    rows, cols, width = _rows_layout(idx["pre_index"], n_pre)
    shape = (n_pre, width)
    targets = _to_rows("post_index", idx["post_index"].astype(np.int32), rows, cols, shape, n_post, n_edges)
    W = _to_rows("weights", weights if np.ndim(weights) else np.full(n_edges, float(np.asarray(weights))),
                 rows, cols, shape, 0.0, n_edges)
    D = np.broadcast_to(delays, (n_edges,)).astype(np.int32)
    max_delay = int(D.max(initial=1))
    D = _to_rows("delay", D, rows, cols, shape, 1, n_edges)
    if stp is not None and stp_mode == "synapse":
        stp = STPParams(*(_to_rows(f"stp.{f}", v, rows, cols, shape, _pad_value(v), n_edges)
                          for f, v in stp._asdict().items()))
    return SparseProjection(_as_float(W), targets, D, stp, str(pre), str(post), receptor, max_delay,
                            n_post, stp_mode)


def _pad_value(value):
    """Filler for padded synapses of a per-synapse parameter: its largest value (valid when the values are)."""
    return value if np.ndim(value) == 0 else (jnp.max(value) if _is_traced(value) else np.max(value))


def random_edges(key: jax.Array, n_pre: int, n_post: int, p: float, *, autapses: bool = True):
    """Bernoulli connectivity: every pair ``(j, i)`` is connected with probability ``p``.

    Args:
        key: ``jax.random`` key.  n_pre, n_post: population sizes.  p: connection probability in [0, 1].
        autapses: ``False`` removes ``j == i`` (for a population onto itself).

    Returns:
        ``(pre_index, post_index)`` NumPy int arrays, sorted by postsynaptic then presynaptic index.
        (The draw is one ``(n_post, n_pre)`` boolean array: fine for tens of thousands of neurons.)
    """
    _checks.check_key(key)
    n_pre = _checks.check_count("n_pre", n_pre, minimum=1)
    n_post = _checks.check_count("n_post", n_post, minimum=1)
    _checks.check_finite("p", p)
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"p={p} must be a probability in [0, 1]")
    mask = np.array(jax.random.bernoulli(key, float(p), (n_post, n_pre)))
    if not autapses:
        np.fill_diagonal(mask, False)
    post_index, pre_index = np.nonzero(mask)
    return pre_index, post_index


def random_projection(key: jax.Array, pre: str, post: str, *, n_pre: int, n_post: int, p: float, weight: float,
                      receptor: str = "exc", delay: int = 1, stp: STPParams | None = None,
                      stp_mode: str = "pre", sparse: bool = True, autapses: bool | None = None) -> Projection:
    """A projection with Bernoulli connectivity ``p`` (:func:`random_edges`) and one weight [nS].

    ``autapses`` defaults to ``pre != post`` (no neuron connects to itself within a population).
    ``sparse=False`` gives a :class:`DenseProjection` with the same synapses.
    """
    autapses = (pre != post) if autapses is None else bool(autapses)
    pre_index, post_index = random_edges(key, n_pre, n_post, p, autapses=autapses)
    if sparse:
        return sparse_projection(pre, post, pre_index, post_index, weight, n_pre=n_pre, n_post=n_post,
                                 receptor=receptor, delay=delay, stp=stp, stp_mode=stp_mode)
    _checks.check_nonnegative("weight", weight, "nS")
    W = np.zeros((n_post, n_pre))
    np.add.at(W, (post_index, pre_index), 1.0)
    return dense_projection(pre, post, W * float(weight), receptor=receptor, delay=delay, stp=stp,
                            stp_mode=stp_mode)


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
        if proj.stp is not None:
            check_stp_params(proj.stp, dt, f"{label}.stp")
            _check_leaf_shapes(f"{label}.stp", proj.stp,
                               ((), (n_pre,)) if proj.stp_mode == "pre" else ((), per_synapse))
