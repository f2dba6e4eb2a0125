r"""Building projections: dense weight matrices, edge lists (padded rows per presynaptic neuron), and
Bernoulli random connectivity.  Weights in nS, delays in steps (``>= 1``).  Every function validates its
arguments and raises ``ValueError``/``TypeError`` naming the argument and the valid range.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks
from jaxlif.network.structure import (RECEPTORS, STP_MODES, DenseProjection, Projection, SparseProjection,
                                      _check_choice)
from jaxlif.plasticity import STPParams

__all__ = ["dense_projection", "sparse_projection", "random_projection", "random_edges", "out_degree_bound"]


def _is_traced(value) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def _as_float(value):
    """Concrete numbers become a NumPy float64 array (the simulators cast to the active float type);
    jax arrays and tracers are kept as they are."""
    return value if isinstance(value, jax.Array) else np.asarray(value, dtype=float)


def _check_stp_arg(stp, stp_mode: str) -> None:
    if stp is not None and not isinstance(stp, STPParams):
        raise TypeError(f"stp must be a jaxlif.STPParams or None, got {type(stp).__name__}")
    _check_choice("stp_mode", stp_mode, STP_MODES)


def dense_projection(pre: str, post: str, weights: ArrayLike | Sequence[Any], *, receptor: str = "exc",
                     delay: int = 1, stp: STPParams | None = None, stp_mode: str = "pre") -> DenseProjection:
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


def sparse_projection(pre: str, post: str, pre_index: ArrayLike | Sequence[int],
                      post_index: ArrayLike | Sequence[int], weights: ArrayLike | Sequence[float], *,
                      n_pre: int, n_post: int, receptor: str = "exc", delay: ArrayLike | Sequence[int] = 1,
                      stp: STPParams | None = None, stp_mode: str = "pre",
                      max_out: int | None = None, delay_bounds: tuple[int, int] | None = None) -> SparseProjection:
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
        max_out: width of the padded rows (``>=`` the largest out-degree; default: the largest
            out-degree).  Projections of equal sizes and width share one compiled program: give the
            same ``max_out`` to connectivities that should (:func:`random_projection` does).
        delay_bounds: ``(lo, hi)`` steps, ``1 <= lo <= hi``, bounds that every delay respects (checked),
            or ``None``.  Without it the ring length is the largest delay of *these* synapses and the
            simulator's min-delay window follows the smallest, so a new draw of random delays with
            another extreme compiles a new program; with it both follow the bounds (declare the range
            the delays are drawn from).

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
    if max_out is not None:
        max_out = _checks.check_count("max_out", max_out, minimum=1)
        if max_out < width:
            raise ValueError(f"max_out={max_out} is below the largest out-degree, {width} synapses of one "
                             f"presynaptic neuron; give max_out >= {width} or None")
        width = max_out
    shape = (n_pre, width)
    targets = _to_rows("post_index", idx["post_index"].astype(np.int32), rows, cols, shape, n_post, n_edges)
    W = _to_rows("weights", weights if np.ndim(weights) else np.full(n_edges, float(np.asarray(weights))),
                 rows, cols, shape, 0.0, n_edges)
    D = np.broadcast_to(delays, (n_edges,)).astype(np.int32)
    max_delay, min_delay = int(D.max(initial=1)), 0
    if delay_bounds is not None:
        lo, hi = _check_delay_bounds(delay_bounds, D)
        max_delay, min_delay = hi, lo
    D = _to_rows("delay", D, rows, cols, shape, 1, n_edges)
    if stp is not None and stp_mode == "synapse":
        stp = STPParams(*(_to_rows(f"stp.{f}", v, rows, cols, shape, _pad_value(v), n_edges)
                          for f, v in stp._asdict().items()))
    one_delay = max_delay if delays.ndim == 0 or np.all(delays == max_delay) else 0
    return SparseProjection(_as_float(W), targets, D, stp, str(pre), str(post), receptor, max_delay,
                            n_post, stp_mode, one_delay, min_delay)


def _check_delay_bounds(bounds, delays: np.ndarray) -> tuple[int, int]:
    """``delay_bounds = (lo, hi)``: integers with ``1 <= lo <= hi`` that contain every delay."""
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"delay_bounds must be a pair (lo, hi) of steps, got {bounds!r}")
    lo = _checks.check_count("delay_bounds[0]", bounds[0], minimum=1)
    hi = _checks.check_count("delay_bounds[1]", bounds[1], minimum=lo)
    if delays.size and (delays.min() < lo or delays.max() > hi):
        raise ValueError(f"delay has values in [{delays.min()}, {delays.max()}] steps, outside "
                         f"delay_bounds=({lo}, {hi})")
    return lo, hi


def _pad_value(value):
    """Filler for padded synapses of a per-synapse parameter: its largest value (valid when the values are)."""
    return value if np.ndim(value) == 0 else (jnp.max(value) if _is_traced(value) else np.max(value))


def random_edges(key: jax.Array, n_pre: int, n_post: int, p: float, *,
                 autapses: bool = True) -> tuple[np.ndarray, np.ndarray]:
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


def out_degree_bound(n_pre: int, n_post: int, p: float, *, miss: float = 1e-6) -> int:
    """A padded-row width that the largest of ``n_pre`` out-degrees ``Binomial(n_post, p)`` exceeds with
    probability below ``miss``: the smallest ``k`` with ``n_pre P(X > k) < miss`` (union bound).

    It depends only on the sizes and ``p``, so that connectivities drawn with other keys have the same
    shapes and share one compiled program (one in a million draws needs a wider row, and compiles).
    """
    n_pre = _checks.check_count("n_pre", n_pre, minimum=1)
    n_post = _checks.check_count("n_post", n_post, minimum=1)
    p = float(p)
    if p <= 0.0 or p >= 1.0:
        return max(1, n_post if p >= 1.0 else 1)
    tail = 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    for k in range(n_post + 1):                     # tail = P(X > k) after subtracting pmf(k)
        tail -= math.exp(math.lgamma(n_post + 1) - math.lgamma(k + 1) - math.lgamma(n_post - k + 1)
                         + k * log_p + (n_post - k) * log_q)
        if k >= n_post * p and n_pre * max(tail, 0.0) < miss:
            return max(1, k)
    return n_post


def random_projection(key: jax.Array, pre: str, post: str, *, n_pre: int, n_post: int, p: float, weight: float,
                      receptor: str = "exc", delay: int = 1, stp: STPParams | None = None,
                      stp_mode: str = "pre", sparse: bool = True, autapses: bool | None = None,
                      max_out: int | None = None) -> Projection:
    """A projection with Bernoulli connectivity ``p`` (:func:`random_edges`) and one weight [nS].

    ``autapses`` defaults to ``pre != post`` (no neuron connects to itself within a population).
    ``sparse=False`` gives a :class:`DenseProjection` with the same synapses.  The padded rows of a
    sparse one are ``max_out`` wide, by default :func:`out_degree_bound` (or the largest out-degree
    in the rare draw that exceeds it): a new key gives arrays of the same shapes, so nothing
    recompiles.
    """
    autapses = (pre != post) if autapses is None else bool(autapses)
    pre_index, post_index = random_edges(key, n_pre, n_post, p, autapses=autapses)
    if sparse:
        if max_out is None:
            degree = int(np.bincount(pre_index, minlength=n_pre).max(initial=0))
            max_out = max(degree, out_degree_bound(n_pre, n_post, p))
        return sparse_projection(pre, post, pre_index, post_index, weight, n_pre=n_pre, n_post=n_post,
                                 receptor=receptor, delay=delay, stp=stp, stp_mode=stp_mode, max_out=max_out)
    _checks.check_nonnegative("weight", weight, "nS")
    W = np.zeros((n_post, n_pre))
    np.add.at(W, (post_index, pre_index), 1.0)
    return dense_projection(pre, post, W * float(weight), receptor=receptor, delay=delay, stp=stp,
                            stp_mode=stp_mode)
