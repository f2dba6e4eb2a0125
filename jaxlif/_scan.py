r"""The time loop of every simulator: ``lax.scan``, optionally checkpointed in segments.

Reverse-mode differentiation of a scan stores what the backward pass needs of *every* step
(the residuals), so the memory of ``jax.grad`` through a run grows like ``n_steps``: for a 10 s
STP-LIF run with 100 synapses (100000 steps) that is hundreds of MiB while the forward pass needs
about one.  With ``checkpoint=`` the steps are grouped into segments of ``k`` steps and the time
loop becomes a scan over segments whose body, an inner scan over ``k`` steps, is wrapped in
:func:`jax.checkpoint`::

    outer scan over n_steps // k segments    (stores only the carry at each segment start)
      inner scan over k steps                (recomputed during the backward pass)

The backward pass then holds the ``n_steps / k`` segment-start carries plus the residuals of one
segment, ``O(n_steps / k + k)``, which is smallest, ``O(sqrt(n_steps))``, at the default
``k = round(sqrt(n_steps))``; the price is one extra forward pass during differentiation.  Leftover
steps (``n_steps mod k``) run in a final plain scan.  Forward values are those of the plain scan
(the same step function on the same inputs in the same order).

Used by the simulators' ``checkpoint=`` argument: ``None``/``False`` (plain scan), ``True`` (segments
of ``round(sqrt(n_steps))`` steps) or an ``int`` segment length.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__: list[str] = []  # private module

#: The one intermediate that the rematerialised neuron steps keep for the backward pass: the boolean
#: "refractory at this step" mask (``jax.ad_checkpoint.checkpoint_name`` in the membrane step).  Keeping it
#: (1 byte per neuron and step) instead of the float refractory counter it comes from (4 bytes) lets reverse
#: mode drop the counter from the stored residuals: a LIF step then stores ``v`` and this mask.  The same
#: operations on the same numbers, so values and gradients are unchanged; it only moves less memory
#: (BENCHMARKS.md "snn").
REMAT_SAVED = "jaxlif_refractory"
REMAT_POLICY = jax.checkpoint_policies.save_only_these_names(REMAT_SAVED)


def check_checkpoint(checkpoint: Any) -> bool | int | None:
    """Validate a ``checkpoint=`` argument (``None``, ``False``, ``True`` or an int >= 1), before tracing."""
    if checkpoint is None or isinstance(checkpoint, (bool, np.bool_)):
        return None if checkpoint is None else bool(checkpoint)
    if isinstance(checkpoint, (int, np.integer)) and checkpoint >= 1:
        return int(checkpoint)
    raise ValueError(f"checkpoint={checkpoint!r} must be None or False (no checkpointing), True (segments "
                     f"of about sqrt(n_steps) steps) or a segment length in steps, an int >= 1")


def segment_length(n: int, checkpoint: bool | int | None) -> int | None:
    """Steps per checkpointed segment for a scan of ``n`` steps, or ``None`` for a plain scan."""
    if checkpoint is None or checkpoint is False:
        return None
    k = max(1, round(math.sqrt(n))) if checkpoint is True else int(checkpoint)
    return k if 1 <= k < n else None


def scan(body: Callable, carry: Any, xs: Any, length: int, checkpoint: bool | int | None = None, *,
         remat_steps: bool = False):
    """``jax.lax.scan(body, carry, xs, length)``, as nested checkpointed segments when asked.

    Args:
        body: ``(carry, x) -> (carry, y)``.
        carry: initial carry.  xs: pytree of arrays with leading axis ``length`` (may be ``None``).
        length: number of steps (static).
        checkpoint: ``None``/``False``, ``True`` or a segment length (see the module docstring).
        remat_steps: without segments, wrap ``body`` in :func:`jax.checkpoint`: reverse mode then keeps
            only each step's carry and input (the membrane step's boolean refractory mask,
            :data:`REMAT_SAVED`, in place of the refractory counter) and recomputes the step's
            intermediates in the backward pass.  For the cheap elementwise steps of the neuron
            simulators this is faster (a LIF step stores ``v`` and the mask per step instead of 7
            arrays: memory traffic, not arithmetic, bounds their backward pass; BENCHMARKS.md "snn")
            and uses less memory; values and gradients are the same
            operations on the same numbers, so they are unchanged.  No effect without differentiation.

    Returns:
        ``(carry, ys)`` exactly as ``lax.scan``.
    """
    k = segment_length(length, checkpoint)
    if k is None:
        if remat_steps:
            body = jax.checkpoint(body, prevent_cse=False, policy=REMAT_POLICY)
        return jax.lax.scan(body, carry, xs, length=length)
    n_seg, rest = divmod(length, k)
    head = jax.tree.map(lambda x: x[:n_seg * k].reshape((n_seg, k) + x.shape[1:]), xs)

    @functools.partial(jax.checkpoint, prevent_cse=False)   # scan already keeps the recomputation
    def segment(c, x):
        return jax.lax.scan(body, c, x, length=k)

    carry, ys = jax.lax.scan(segment, carry, head, length=n_seg)
    ys = jax.tree.map(lambda y: y.reshape((n_seg * k,) + y.shape[2:]), ys)
    if rest:
        tail = jax.tree.map(lambda x: x[n_seg * k:], xs)
        carry, ys_tail = jax.lax.scan(body, carry, tail, length=rest)
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, ys_tail)
    return carry, ys
