r"""The one optimiser loop of every fit: multi-start BFGS, vmapped, run in chunks of steps.

A fit is ``P`` independent *problems* (curves, synapses, bootstrap datasets), each optimised
from ``S`` *starts* in an unconstrained space ``theta`` of dimension ``D``::

    minimise over theta[p, s]:   objective(theta[p, s], batched[p], shared)

The objective is a pure function returning a scalar (a mean loss or a negative log-likelihood
per point); ``batched`` is a pytree whose leaves carry a leading ``P`` axis, ``shared`` is the
same for every problem.  A boolean ``free`` of shape ``(D,)`` per start holds chosen coordinates
fixed at their start value (their gradient is cut with ``stop_gradient``, so the search
direction never moves them): this is how a profile likelihood re-optimises the others.

Algorithm, per start (all starts of all problems at once, ``vmap`` over problems and starts):
BFGS with a dense ``D x D`` inverse-Hessian approximation (Nocedal & Wright 2006, Alg. 6.1;
these models have ``D <= 6`` parameters, where the dense update costs less than the
limited-memory recursion), and a line search that tests the Armijo condition
(``f(x + a d) <= f(x) + 1e-4 a g.d``) at four step sizes at once, ``a = s (1, 1/4, 1/16, 1/64)``
with ``s = 1`` after a successful step, and takes the longest acceptable one; when none is, the
start stays put and tries again from ``s / 256``.  Then one gradient (forward mode: ``D`` is
small) at the new point.  The first step, a non-descent direction and a failed line search
take steepest descent scaled to at most one unconstrained unit per coordinate
(``-g / max(|g|_inf, 1)``; before the first curvature update the inverse Hessian is the
identity, and an unscaled ``-g`` of a likelihood with small noise sds jumped hundreds of units,
onto flat far regions: on the shipped mossy-fibre means 13 of 15 ``tm4`` starts ended there,
against 4 of 15 since); a start whose line search fails along steepest descent with ``s < 1e-9`` has
reached the rounding floor of its objective and stops.  Why not optax's L-BFGS: it compiles the
gradient of the objective into three places (line search, stored gradient, update) and its
backtracking is a data-dependent loop, which under ``vmap`` makes every start wait for the
slowest one's trials; this step has a fixed cost (four values and one gradient) and compiles
about twice as fast.

Stopping: a start stops when its loss is at or below ``floor``, when the quasi-Newton step
would lower it by at most ``gtol + gtol_rel |loss|`` (``g.H.g / 2``, H the inverse-Hessian
approximation), when it
has not improved by ``rel_improve * |best| + abs_improve`` for ``patience`` steps, or when its
loss is not finite.
The compiled program runs at most ``CHUNK`` (25) steps, fewer when told to stop earlier (a
traced count, so any ``progress_every`` reuses the one program); Python runs chunks until every
start has stopped or ``max_steps`` is reached.  Every ``progress_every`` steps (and at the end)
Python calls ``progress`` (in the calling thread, with this fit's own callable) and between
chunks it can react to Ctrl-C: a ``KeyboardInterrupt`` raised
during a chunk or by ``progress`` ends the loop, and the best points so far come back with
``interrupted=True``.  Memory does not depend on ``max_steps``: the loss history is kept only
for the first ``history_steps`` steps.

Under ``vmap`` every lane computes until the slowest one stops: when at most 5 % of the lanes
are still running after twice the median number of steps (plus 10), they are stopped where
they are (the fits then test whether that point is stationary; on 1000 simulated synapses this
changed no fitted log-likelihood by more than 0.002 and halved the time).  The profile fits of
many problems use *packed grids* instead (``minimise_lanes(row_slots=...)``): every few steps the
lanes still running are gathered into a grid of just their size, each row reading a copy of its
problem's data, so a slow lane costs its own slot only and runs until it stops.

Layout and compilation: lanes sit in a ``(P, S)`` grid, problem by problem (``vmap`` over the
problems, whose data it reads directly, and over their ``S`` slots, a power of two >= 8); so the
compiled program depends only on the objective, the data shapes and ``S``: new data
values, tolerances, ``max_steps``, ``progress_every``, and the curvature and profile fits of
:mod:`~jaxlif.fitting.uncertainty` (up to 16 lanes per problem, like a fit from 15 starts plus
one ``init``) reuse it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif import _executables
from jaxlif._host import device_array

__all__ = ["MinimiseResult", "minimise", "minimise_lanes", "evaluate_lanes", "MultiStart",
           "multistart", "FitInterrupted"]

_ARMIJO = 1e-4
#: Step sizes tried at once, relative to the lane's current scale.
_TRIALS = np.array([1.0, 0.25, 1.0 / 16, 1.0 / 64])
#: Stop the last lanes when this fraction is done and the loop has run this factor times the
#: median steps plus this many (None: never).
_STRAGGLERS = (0.95, 2.0, 10)
#: A failed line search along steepest descent below this scale: the rounding floor.
_MIN_SCALE = 1e-9


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a ``KeyboardInterrupt`` from a progress callback) ended a fit early.

    A ``KeyboardInterrupt``, so scripts stop as they would on Ctrl-C; ``partial`` holds the fit
    result built from the best points reached so far (not converged, no intervals), or ``None``.
    """

    def __init__(self, message: str, partial: Any = None):
        super().__init__(message)
        self.partial = partial


class MinimiseResult(NamedTuple):
    """Output of :func:`minimise` (or, without the ``P, S`` split, :func:`minimise_lanes`).

    Attributes:
        theta: ``(P, S, D)`` best point of each start.
        loss: ``(P, S)`` objective at ``theta`` (``inf`` where it is not finite).
        n_steps: ``(P, S)`` steps each start took.
        history: ``(P, S, H)`` loss before each of the first ``H <= history_steps`` steps (NaN
            after a start stopped).
        steps: loop steps run (the largest ``n_steps``).
        interrupted: True when a ``KeyboardInterrupt`` ended the loop early.
    """

    theta: np.ndarray
    loss: np.ndarray
    n_steps: np.ndarray
    history: np.ndarray
    steps: int
    interrupted: bool


class _Lane(NamedTuple):
    theta: jax.Array      # (D,) current point
    value: jax.Array      # () objective at theta
    grad: jax.Array       # (D,)
    H: jax.Array          # (D, D) inverse-Hessian approximation
    fresh_H: jax.Array    # () H is the identity (scaled at the first accepted step)
    best_theta: jax.Array
    best: jax.Array       # () best value so far
    fresh: jax.Array      # () value and grad not evaluated yet (the first iteration does it)
    scale: jax.Array      # () largest step tried next (shrinks after a failed line search)
    stall: jax.Array      # () steps without sufficient improvement
    done: jax.Array       # ()
    n_steps: jax.Array    # ()


def _bucket(n: int) -> int:
    """Slots for ``n`` lanes: the next power of two, at least 8 (a few compiled sizes, not one per
    ``n``)."""
    return max(8, 1 << (int(n) - 1).bit_length())


def _lane_fn(objective, data, shared, free):
    def fn(theta):
        return objective(jnp.where(free, theta, jax.lax.stop_gradient(theta)), data, shared)
    return fn


def _value_and_grad(fn):
    """Value and gradient by forward mode: one ``jvp`` per coordinate, vmapped.  With the few
    parameters of these models (D <= 6) this is about 5x faster on CPU than reverse mode through
    the spike-by-spike scans of the forward models, and no slower to compile."""
    def vg(theta):
        basis = jnp.eye(theta.shape[0], dtype=theta.dtype)
        value, dvalue = jax.vmap(lambda e: jax.jvp(fn, (theta,), (e,)))(basis)
        return value[0], dvalue
    return vg


def _step(lane: _Lane, fn, floor, patience, rel_improve, abs_improve, gtol,
          gtol_rel) -> tuple[_Lane, jax.Array]:
    """One BFGS step; a fresh lane only evaluates its value and gradient (same code path, so
    the gradient of the objective is compiled once)."""
    fresh = lane.fresh
    live = ~lane.done & ~fresh
    D = lane.theta.shape[0]
    eye = jnp.eye(D, dtype=lane.theta.dtype)
    steepest = -lane.grad / jnp.maximum(jnp.max(jnp.abs(lane.grad)), 1.0)
    d = -lane.H @ lane.grad
    slope = jnp.dot(d, lane.grad)
    reset = ~(slope < 0) | ~jnp.all(jnp.isfinite(d))
    # the first step, like a restart, is scaled steepest descent (module docstring)
    d = jnp.where(reset | lane.fresh_H, steepest, d)
    slope = jnp.dot(d, lane.grad)

    # Line search: the Armijo condition is tested at four step sizes at once (a vectorised
    # evaluation: no data-dependent loop, so under vmap no lane waits for another's
    # backtracking), and the longest acceptable one is taken.  When none is acceptable the lane
    # stays put and its next trials start 64 times shorter.  Then one value and gradient at the
    # new point.  A fresh lane takes no step: the gradient call evaluates it.
    d = jnp.where(fresh, 0.0, d)
    trials = lane.scale * _TRIALS.astype(lane.value.dtype)
    values = jax.vmap(lambda a: fn(lane.theta + a * d))(trials)
    ok = (values <= lane.value + _ARMIJO * trials * slope) & jnp.isfinite(values)
    first = jnp.argmax(ok)
    accepted = live & jnp.any(ok)
    a = trials[first]
    new_theta = jnp.where(accepted, lane.theta + a * d, lane.theta)
    new_value, new_grad = _value_and_grad(fn)(new_theta)
    take = accepted | fresh
    new_value = jnp.where(take, new_value, lane.value)
    new_grad = jnp.where(take, new_grad, lane.grad)
    scale = jnp.where(live, jnp.where(accepted, jnp.minimum(1.0, 4.0 * a),
                                      trials[-1] / 4.0), lane.scale)

    # BFGS update of the inverse Hessian (Nocedal & Wright 2006, eq. 6.17), skipped unless the
    # curvature condition s.y > 0 holds; before the first update H is scaled to s.y / y.y
    # (eq. 6.20).  A reset or a failed line search restarts from the identity.
    s, y = new_theta - lane.theta, new_grad - lane.grad
    sy = jnp.dot(s, y)
    yy = jnp.dot(y, y)
    update = accepted & (sy > 1e-10 * jnp.sqrt(jnp.dot(s, s) * yy))
    restart = (reset | ~accepted) & live
    H0 = jnp.where(restart, eye, lane.H)
    H0 = jnp.where(update & (lane.fresh_H | restart), (sy / jnp.where(update, yy, 1.0)) * eye, H0)
    rho = 1.0 / jnp.where(update, sy, 1.0)
    V = eye - rho * jnp.outer(s, y)
    H_new = jnp.where(update, V @ H0 @ V.T + rho * jnp.outer(s, s), H0)
    fresh_H = jnp.where(update, False, lane.fresh_H | restart)

    value = lane.value
    better = live & (value < lane.best)
    improved = value < lane.best - (rel_improve * jnp.abs(lane.best) + abs_improve)
    best_theta = jnp.where(better, lane.theta, lane.best_theta)
    best = jnp.where(better, value, lane.best)
    stall = jnp.where(live, jnp.where(improved | ~jnp.isfinite(lane.best), 0, lane.stall + 1),
                      lane.stall)
    # A line search that fails along steepest descent at a tiny scale has hit the rounding
    # floor of the objective: this start cannot improve further.
    failed = live & ~accepted & (lane.fresh_H | reset) & (scale < _MIN_SCALE)
    # stationary: the quasi-Newton step would lower the objective by less than gtol
    decrement = 0.5 * jnp.dot(new_grad, H_new @ new_grad)
    flat = accepted & ~fresh_H & (decrement <= gtol + gtol_rel * jnp.abs(new_value))
    finished = (value <= floor) | (stall >= patience) | ~jnp.isfinite(value) | failed | flat
    moved = live | fresh
    out = _Lane(theta=jnp.where(live, new_theta, lane.theta),
                value=jnp.where(moved, new_value, lane.value),
                grad=jnp.where(moved, new_grad, lane.grad),
                H=jnp.where(live, H_new, lane.H), fresh_H=jnp.where(live, fresh_H, lane.fresh_H),
                best_theta=best_theta, best=best, fresh=jnp.zeros_like(fresh), scale=scale,
                stall=stall, done=lane.done | (live & finished),
                n_steps=lane.n_steps + live.astype(jnp.int32))
    return out, jnp.where(live, value, jnp.nan)


def _fresh(theta0: np.ndarray, done: np.ndarray) -> _Lane:
    """Fresh lanes at ``theta0 (..., D)`` as NumPy arrays (leading axes ``...``).  Every leaf has
    an explicit, strong dtype, so that the first chunk's signature equals the later ones' (one
    compiled loop)."""
    dtype = jnp.result_type(float)
    theta = np.asarray(theta0, dtype)
    lead, D = theta.shape[:-1], theta.shape[-1]
    full = lambda v, dt: np.full(lead, v, dt)  # noqa: E731
    return _Lane(theta, full(np.inf, dtype), np.zeros_like(theta),
                 np.broadcast_to(np.eye(D, dtype=dtype), lead + (D, D)).copy(), full(True, bool),
                 theta.copy(), full(np.inf, dtype), full(True, bool), full(1.0, dtype),
                 full(0, np.int32), np.array(done, bool), full(0, np.int32))


def _init(theta0: np.ndarray, done: np.ndarray) -> _Lane:
    """Fresh lanes ``(P, S)`` at ``theta0 (P, S, D)``, built on the host and transferred (no
    compiled program)."""
    return jax.device_put(_fresh(theta0, done))


@functools.partial(jax.jit, static_argnames=("objective", "chunk"))
def _run_chunk(lanes: _Lane, data, shared, free, steps_left, floor, patience, rel_improve,
               abs_improve, gtol, gtol_rel, *, objective, chunk):
    """At most ``min(chunk, steps_left)`` steps of every live lane; returns the loss history.

    ``lanes`` and ``free`` have leading axes ``(P, S)``: problem ``p`` (row ``p`` of ``data``) and
    its ``S`` slots; the data is never gathered per lane."""
    def per_problem(lanes_p, data_p, free_p):
        def per_lane(lane, fr):
            fn = _lane_fn(objective, data_p, shared, fr)
            return _step(lane, fn, floor, patience, rel_improve, abs_improve, gtol, gtol_rel)
        return jax.vmap(per_lane)(lanes_p, free_p)

    step_all = jax.vmap(per_problem)
    # the first iteration of a fresh run only evaluates value and gradient (not a step)
    offset = jnp.any(lanes.fresh).astype(jnp.int32)
    limit = jnp.minimum(steps_left, chunk) + offset
    P, S = lanes.value.shape

    def body(state):
        i, lanes, hist = state
        lanes, value = step_all(lanes, data, free)
        col = jnp.where(i < offset, chunk, i - offset)       # the evaluation goes to a spare column
        return i + 1, lanes, hist.at[..., col].set(value)

    def cond(state):
        i, lanes, _ = state
        return (i < limit) & ~jnp.all(lanes.done)

    hist0 = jnp.full((P, S, chunk + 1), jnp.nan, lanes.value.dtype)
    n, lanes, hist = jax.lax.while_loop(cond, body, (jnp.asarray(0), lanes, hist0))
    return lanes, hist[..., :chunk], jnp.maximum(n - offset, 0)


def _grid(theta0, owner, free, batched, min_slots):
    """Place lanes ``(B, D)`` into a ``(P, S)`` grid (``S`` a power of two >= 8): problem
    ``owner[b]``, the next free slot.  Returns the initial lanes, ``free`` and the lane -> grid
    positions."""
    theta0 = np.asarray(theta0, dtype=float)
    owner = np.asarray(owner, dtype=int)
    B, D = theta0.shape
    P = jax.tree.leaves(batched)[0].shape[0]
    counts = np.bincount(owner, minlength=P)
    S = _bucket(max(int(counts.max()), int(min_slots)))
    order = np.argsort(owner, kind="stable")
    slot = np.empty(B, int)
    slot[order] = np.arange(B) - np.repeat(np.cumsum(counts) - counts, counts)
    th = np.zeros((P, S, D))
    th[owner, slot] = theta0
    fr = np.ones((P, S, D), bool)
    if free is not None:
        fr[owner, slot] = np.asarray(free, bool)
    empty = np.ones((P, S), bool)
    empty[owner, slot] = False
    return _init(th, empty), jax.device_put(fr), (owner, slot)


def _rows_bucket(n: int) -> int:
    """Rows of a packed grid (:func:`_packed`): a power of two >= 8.  Every size is a compiled
    program (seconds each for the kernel-SD likelihood): with four sizes per octave, a fit of 40
    synapses with profile intervals (``benchmarks/bench_fit.py``'s design,
    ``noise="gamma_kernel"``) took 16 CPU-seconds instead of 19-20 once compiled, but its first
    call 117 instead of 56."""
    return _bucket(n)


def _packed(lanes: _Lane, free, owner, data, S: int):
    """Lanes ``lanes`` (NumPy fields, leading axis ``B``) of problems ``owner (B,)`` placed in
    rows of ``S`` slots: each problem's lanes fill consecutive rows and each row reads a copy of
    its problem's data (``data``: NumPy leaves with a leading problem axis, gathered on the
    host), so a grid holds only the lanes still to run.  Returns the device lanes and ``free``
    ``(R, S, ...)``, the data ``(R, ...)`` and every lane's ``(row, slot)``."""
    owner = np.asarray(owner, dtype=int)
    B = owner.size
    order = np.argsort(owner, kind="stable")
    o = owner[order]
    first = np.r_[True, o[1:] != o[:-1]]
    rank = np.arange(B) - np.maximum.accumulate(np.where(first, np.arange(B), 0))
    opens = rank % S == 0                       # a lane that opens a new row
    row, slot = np.empty(B, int), np.empty(B, int)
    row[order] = np.cumsum(opens) - 1
    slot[order] = rank % S
    problem = o[opens]
    R = _rows_bucket(problem.size)
    problem = np.r_[problem, np.full(R - problem.size, problem[0])]     # padding rows: empty
    D = lanes.theta.shape[-1]
    grid = _fresh(np.zeros((R, S, D)), np.ones((R, S), bool))
    grid.fresh[:] = False          # empty slots: not evaluated first (that would cost a step)
    for field, value in zip(grid, lanes):
        field[row, slot] = value
    fr = np.ones((R, S, D), bool)
    fr[row, slot] = free
    rows = jax.tree.map(lambda x: x[problem], data)
    return jax.device_put(grid), jax.device_put(fr), jax.device_put(rows), (row, slot)


#: Most lanes in one call of a packed loop (:func:`_minimise_packed`).
PACK_LANES = 4096


def _stop_stragglers(done, n_steps, steps, rule) -> bool:
    """The straggler rule (module docstring): ``rule = (fraction, factor, extra)`` or ``None``."""
    if rule is None or not done.any():
        return False
    frac, factor, extra = rule
    return bool(done.mean() >= frac and steps >= factor * np.median(n_steps[done]) + extra)


def _minimise_packed(objective, theta0, owner, free, batched, shared, scalars, *, max_steps,
                     row_slots, repack_every, stragglers):
    """The loop of :func:`minimise_lanes` on packed grids (its ``row_slots``): every
    ``repack_every`` steps the lanes still running are packed again into as few rows as they
    fill (:func:`_packed`), so that the last, slow lanes no longer pay for the whole batch.
    Returns the lanes' final state (NumPy fields, leading axis ``B``), the steps run and whether
    a ``KeyboardInterrupt`` ended the loop."""
    theta0 = np.asarray(theta0, dtype=float)
    B, D = theta0.shape
    owner = np.asarray(owner, dtype=int)
    host = _fresh(theta0, np.zeros(B, bool))
    fr_all = np.ones((B, D), bool) if free is None else np.asarray(free, bool)
    data = jax.tree.map(np.asarray, batched)
    steps, interrupted = 0, False
    try:
        while steps < max_steps:
            live = np.flatnonzero(~host.done)
            if not live.size:
                break
            left = device_array(min(max_steps - steps, repack_every), jnp.int32)
            n = 0
            # at most PACK_LANES lanes per call (lanes are independent: the same steps), so
            # that the largest grid, and the padding of the last, stay small
            for idx in np.array_split(live, -(-live.size // PACK_LANES)):
                lanes, fr, rows, pos = _packed(jax.tree.map(lambda f: f[idx], host),
                                               fr_all[idx], owner[idx], data, row_slots)
                lanes, _, n_part = _chunk(objective, lanes, rows, shared, fr, left, *scalars)
                n = max(n, int(n_part))
                for field, value in zip(host, lanes):
                    field[idx] = np.asarray(value)[pos]
            steps += n
            if n == 0 or _stop_stragglers(host.done, host.n_steps, steps, stragglers):
                break
    except KeyboardInterrupt:
        interrupted = True
    return host, steps, interrupted


def _final(best, value, theta, best_theta, grad):
    """A lane's result: its current point is its best one (every accepted step lowers the
    objective), unless its value is not finite; then the best point recorded before.  Returns
    ``(theta, loss, grad)`` (``loss`` ``inf`` where not finite, ``grad`` NaN where not current)."""
    best, value = np.asarray(best, dtype=float), np.asarray(value, dtype=float)
    current = np.isfinite(value) & ~(value > best)
    theta = np.where(current[:, None], np.asarray(theta, dtype=float),
                     np.asarray(best_theta, dtype=float))
    loss = np.where(current, value, best)
    loss = np.where(np.isfinite(loss), loss, np.inf)
    grad = np.where(current[:, None], np.asarray(grad, dtype=float), np.nan)
    return theta, loss, grad


def _scalars(floor, patience, rel_improve, abs_improve, gtol, gtol_rel=0.0):
    dtype = jnp.result_type(float)
    # transfers, not compiled conversions
    return (device_array(floor, dtype), device_array(patience, jnp.int32),
            device_array(rel_improve, dtype), device_array(abs_improve, dtype),
            device_array(gtol, dtype), device_array(gtol_rel, dtype))


#: Most optimiser steps in one call of the compiled program (a static size: the history buffer).
CHUNK = 25


def _chunk(objective, *args):
    """:func:`_run_chunk` through :mod:`jaxlif._executables` (a stored executable when the command
    line turned that on: a second process skips tracing and lowering the loop)."""
    return _executables.call(_run_chunk, "jaxlif.fitting.optimise._run_chunk", args,
                             dict(objective=objective, chunk=CHUNK))


def evaluate_lanes(objective: Callable, theta, owner, batched, shared=None, *, free=None,
                   min_lanes: int = 0):
    """Objective and gradient at ``theta (B, D)`` through the optimiser's own compiled program
    (no step taken; no extra compilation when the slot count matches a fit's)."""
    lanes, fr, pos = _grid(theta, owner, free, batched, min_lanes)
    lanes, _, _ = _chunk(objective, lanes, batched, shared, fr, device_array(0, jnp.int32),
                         *_scalars(-np.inf, 1, 0.0, 0.0, -1.0))
    return (np.asarray(lanes.value, dtype=float)[pos],
            np.asarray(lanes.grad, dtype=float)[pos])


def minimise_lanes(objective: Callable, theta0, owner, batched, shared=None, *, free=None,
                   max_steps: int = 500, floor: float = -np.inf, patience: int = 20,
                   rel_improve: float = 1e-4, abs_improve: float = 0.0, gtol: float = -1.0,
                   gtol_rel: float = 0.0, progress_every: int = CHUNK, history_steps: int = 0,
                   min_lanes: int = 0,
                   progress: Callable[[int, np.ndarray, int], None] | None = None,
                   row_slots: int = 0, repack_every: int = CHUNK, stragglers=_STRAGGLERS):
    """:func:`minimise` on a flat list of lanes: ``theta0 (B, D)``, ``owner (B,)`` the problem
    (row of ``batched``) of each lane, ``free (B, D)``.  ``gtol``: stop when the predicted
    decrease is at most ``gtol + gtol_rel |value|`` (negative: never).  ``min_lanes``: at least this many slots per
    problem (to reuse another call's compiled program).  Returns ``(theta, loss, n_steps,
    history, steps, interrupted, grad)`` with a leading ``B`` axis (``grad`` at ``theta``);
    ``progress(step, best (B,), n_done)`` after every ``progress_every`` steps and at the end.

    ``row_slots > 0``: packed grids instead of one slot row per problem (:func:`_packed`,
    :func:`_minimise_packed`): rows of ``row_slots`` slots holding only the lanes still running,
    packed again every ``repack_every`` steps (at most :data:`CHUNK`); no ``progress`` or
    ``history``.  For many lanes of uneven length (the profile fits of
    :mod:`~jaxlif.fitting.uncertainty`): the same steps of every lane, at the cost of the lanes
    still running rather than of the whole grid, for a few more compiled programs (one per
    size of :func:`_rows_bucket`).  ``stragglers``: the straggler rule ``(fraction, factor,
    extra)`` (module docstring), or ``None`` to run every lane until it stops."""
    if isinstance(progress_every, bool) or not isinstance(progress_every, (int, np.integer)) or progress_every < 1:
        raise ValueError(f"progress_every must be an integer >= 1 (optimiser steps), got {progress_every!r}")
    if row_slots:
        if progress is not None or history_steps:
            raise ValueError("row_slots > 0 keeps no progress or history: pass progress=None and "
                             "history_steps=0")
        if not 1 <= repack_every <= CHUNK:
            raise ValueError(f"repack_every must be in [1, {CHUNK}] (optimiser steps), got "
                             f"{repack_every!r}")
        host, steps, interrupted = _minimise_packed(
            objective, theta0, owner, free, batched, shared,
            _scalars(floor, patience, rel_improve, abs_improve, gtol, gtol_rel),
            max_steps=max_steps, row_slots=int(row_slots), repack_every=int(repack_every),
            stragglers=stragglers)
        theta, loss, grad = _final(host.best, host.value, host.theta, host.best_theta, host.grad)
        return (theta, loss, host.n_steps, np.zeros((len(loss), 0)), steps, interrupted, grad)
    lanes, fr, pos = _grid(theta0, owner, free, batched, min_lanes)
    B = len(pos[0])
    scalars = _scalars(floor, patience, rel_improve, abs_improve, gtol, gtol_rel)
    history, kept, steps, interrupted = [], 0, 0, False
    try:
        while steps < max_steps:
            # stop at the next multiple of progress_every (the program stops itself after CHUNK)
            next_report = (steps // progress_every + 1) * progress_every
            left = device_array(min(max_steps, next_report) - steps, jnp.int32)
            lanes, hist, n = _chunk(objective, lanes, batched, shared, fr, left, *scalars)
            n = int(n)
            steps += n
            if kept < history_steps:
                take = min(n, history_steps - kept)
                history.append(np.asarray(hist)[..., :take][pos])
                kept += take
            done = np.asarray(lanes.done)[pos]
            # Stragglers: under vmap every lane pays for the slowest (module docstring).
            stop = done.all() or n == 0 or _stop_stragglers(
                done, np.asarray(lanes.n_steps)[pos], steps, stragglers)
            if progress is not None and (stop or steps % progress_every == 0 or steps >= max_steps):
                progress(steps, np.asarray(lanes.best)[pos], int(done.sum()))
            if stop:
                break
    except KeyboardInterrupt:
        interrupted = True
    theta, loss, grad = _final(*(np.asarray(f)[pos] for f in (
        lanes.best, lanes.value, lanes.theta, lanes.best_theta, lanes.grad)))
    hist = np.concatenate(history, axis=-1) if history else np.zeros((B, 0))
    return theta, loss, np.asarray(lanes.n_steps)[pos], hist, steps, interrupted, grad


def minimise(objective: Callable, theta0, batched, shared=None, *, free=None,
             **kwargs) -> MinimiseResult:
    """Minimise ``objective`` from every start of every problem (module docstring).

    Args:
        objective: ``objective(theta (D,), batched_p, shared) -> scalar``; must be hashable and
            the same object from call to call for the compiled program to be reused.
        theta0: ``(P, S, D)`` starts in the unconstrained space.
        batched: pytree with a leading ``P`` axis on every leaf.  shared: any pytree.
        free: ``(P, D)`` booleans (default all True): False holds a coordinate at its start.
        max_steps, floor, patience, rel_improve, abs_improve, progress_every, history_steps:
            see :func:`minimise_lanes` and the module docstring.
        progress: ``progress(step, best_loss (P,), n_done)`` every ``progress_every`` steps.

    Returns:
        :class:`MinimiseResult`.
    """
    theta0 = np.asarray(theta0)
    P, S, D = theta0.shape
    owner = np.repeat(np.arange(P), S)
    fr = None if free is None else np.repeat(np.asarray(free, bool), S, axis=0)
    progress = kwargs.pop("progress", None)
    report = None if progress is None else (
        lambda step, best, n_done: progress(step, best.reshape(P, S).min(axis=1), n_done))
    theta, loss, n_steps, hist, steps, interrupted, _ = minimise_lanes(
        objective, theta0.reshape(P * S, D), owner, batched, shared, free=fr, progress=report,
        **kwargs)
    return MinimiseResult(theta.reshape(P, S, D), loss.reshape(P, S), n_steps.reshape(P, S),
                          hist.reshape(P, S, -1), steps, interrupted)


class MultiStart(NamedTuple):
    """Output of :func:`multistart`: :func:`minimise` plus the best start of every problem.

    Attributes:
        theta: ``(P, D)`` best point.  loss: ``(P,)`` its objective.  best_start: ``(P,)`` index.
        start_theta, start_loss, start_n_steps: per start ``(P, S, ...)``.
        n_steps: ``(P,)`` steps of the best start.  history: ``(P, H)`` its loss history.
        steps, interrupted: as in :class:`MinimiseResult`.
    """

    theta: np.ndarray
    loss: np.ndarray
    best_start: np.ndarray
    start_theta: np.ndarray
    start_loss: np.ndarray
    start_n_steps: np.ndarray
    n_steps: np.ndarray
    history: np.ndarray
    steps: int
    interrupted: bool


def multistart(objective: Callable, starts, batched, shared=None, **kwargs) -> MultiStart:
    """:func:`minimise` from ``starts (P, S, D)`` and keep each problem's best start."""
    res = minimise(objective, starts, batched, shared, **kwargs)
    loss = np.asarray(res.loss, dtype=float)
    best = np.argmin(loss, axis=1)
    rows = np.arange(loss.shape[0])
    theta = np.asarray(res.theta, dtype=float)
    n_steps = np.asarray(res.n_steps)
    return MultiStart(theta=theta[rows, best], loss=loss[rows, best], best_start=best,
                      start_theta=theta, start_loss=loss, start_n_steps=n_steps,
                      n_steps=n_steps[rows, best], history=res.history[rows, best],
                      steps=res.steps, interrupted=res.interrupted)
