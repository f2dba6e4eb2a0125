r"""The forward model of a spike train: the release of every spike, and the conductance it drives.

:func:`stp_amplitudes` gives the release ``r_k = u+_k R-_k`` of each spike of one or many trains
(the PSC amplitude is ``g_bar r_k``), for any spike times, from rest at the first spike:

``mode="exact"`` (default)
    The model's continuous-time recursion over the intervals ``Delta_k = t_{k+1} - t_k`` [ms]
    (:mod:`jaxlif.fitting.models`); no time step.
``mode="tutorial"`` (model ``"tm"`` only)
    The tutorial's forward-Euler scheme (``dynamic_syn``, docs/conventions.md 4.1) on a grid of
    step ``dt``: spike ``k`` falls on step ``round(t_k / dt)``; between spikes ``K - 1`` silent
    steps in closed form and one spike step, as :func:`jaxlif.plasticity.stp_event`; the release
    is ``u[it+1] R[it]`` of the spike step.  Two spikes must not share a step.

Trains of different lengths are padded with NaN at the end of the spike axis; the releases
there are NaN.  Spike times must increase.  The result is differentiable with respect to the
parameters (padding and invalid trains never put NaN into gradients of the valid entries).

The conductance at each spike, ``g+_k = e_k g+_{k-1} + g_bar r_k`` with ``e_k`` the decay over
the interval (``exp(-Delta/tau_syn)``, or the Euler factor ``(1 - dt/tau_syn)^K``), is
:func:`conductance_at_spikes`; the g10/g1 ratio curve of :mod:`jaxlif.fitting.ratio` is that
readout on regular trains.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxlif import _checks
from jaxlif.fitting.models import Model, get_model
from jaxlif.plasticity import STPParams, STPState, euler_decay_factor, stp_decay, stp_step
from jaxlif.synapses import SynParams

__all__ = ["stp_amplitudes", "conductance_at_spikes", "FORWARD_MODES", "check_spike_times"]

#: Integration modes of :func:`stp_amplitudes`.
FORWARD_MODES = ("exact", "tutorial")

# The Euler chain never reads g; a unit synapse with an effectively infinite decay keeps
# stp_decay / stp_step usable unchanged.
_NO_SYN = SynParams(g_bar=1.0, tau_syn=1e30, E_rev=0.0)


def euler_release(params: STPParams, k_steps, dt: float):
    """Release ``(..., n)`` of the tutorial's Euler scheme from intervals ``k_steps (..., n-1)``.

    From rest the first spike releases ``U0``; before each later spike ``K - 1`` silent steps
    (:func:`~jaxlif.plasticity.stp_decay`), then the spike step
    (:func:`~jaxlif.plasticity.stp_step`), whose release is ``u[it+1] R[it]``.
    """
    U0, tau_d, tau_f = params
    shape = jnp.broadcast_shapes(jnp.shape(U0), jnp.shape(tau_d), jnp.shape(tau_f),
                                 k_steps.shape[:-1])
    dtype = jnp.result_type(k_steps, U0, float)
    p = STPParams(*(jnp.broadcast_to(jnp.asarray(x, dtype), shape) for x in params))
    ks = jnp.moveaxis(jnp.broadcast_to(k_steps, shape + k_steps.shape[-1:]), -1, 0)
    zero = jnp.zeros(shape, dtype)
    first = STPState(p.U0, jnp.ones(shape, dtype) - p.U0, zero)     # after spike 1 from rest

    def step(state, k):
        before = stp_decay(p, _NO_SYN, state, k - 1, dt)
        after, _ = stp_step(p, _NO_SYN, before, 1.0, dt)
        return after, after.u * before.R

    _, rest = jax.lax.scan(step, first, ks)
    return jnp.moveaxis(jnp.concatenate([p.U0[None] + zero[None], rest]), 0, -1)


def conductance_at_spikes(release: jax.Array | np.ndarray, decay: jax.Array | np.ndarray) -> jax.Array:
    """``g+_k = decay_k g+_{k-1} + release_k`` along the last axis (``g+_1 = release_1``).

    Args:
        release: ``(..., n)`` release (times ``g_bar``) of each spike.
        decay: ``(..., n-1)`` decay factor of the conductance over each interval.

    Returns:
        ``(..., n)`` conductance just after each spike (units of ``release``).
    """
    r = jnp.moveaxis(release, -1, 0)
    d = jnp.moveaxis(jnp.broadcast_to(decay, release.shape[:-1] + decay.shape[-1:]), -1, 0)

    def step(g, x):
        rk, dk = x
        g = dk * g + rk
        return g, g

    _, rest = jax.lax.scan(step, r[0], (r[1:], d))
    return jnp.moveaxis(jnp.concatenate([r[:1], rest]), 0, -1)


def euler_conductance_decay(tau_syn, k_steps, dt):
    """Decay of g over ``K`` Euler steps (``K - 1`` silent and the spike step): ``(1 - dt/tau)^K``."""
    return euler_decay_factor(tau_syn, k_steps, dt)


def check_spike_times(name: str, times) -> np.ndarray:
    """Validate NaN-padded spike times ``(..., n)`` [ms]; returns them as float64 NumPy.

    Each train: finite times first, then only NaN (padding); at least one spike; strictly
    increasing.  Errors name the train (index) and the spike.
    """
    t = np.asarray(_checks.check_numeric(name, times), dtype=float)
    if t.ndim < 1 or t.shape[-1] == 0:
        raise ValueError(f"{name} must have a spike axis (last) with at least one spike, got "
                         f"shape {t.shape}")
    if np.isinf(t).any():
        idx = tuple(np.argwhere(np.isinf(t))[0])
        raise ValueError(f"{name}[{', '.join(map(str, idx))}]={t[idx]} is infinite; pad "
                         f"shorter trains with NaN at the end")
    valid = ~np.isnan(t)
    flat_t, flat_v = t.reshape(-1, t.shape[-1]), valid.reshape(-1, t.shape[-1])
    batch = t.shape[:-1]
    for i, (row, ok) in enumerate(zip(flat_t, flat_v)):
        where = f"{name}[{', '.join(map(str, np.unravel_index(i, batch)))}]" if batch else name
        n = int(ok.sum())
        if n == 0:
            raise ValueError(f"{where} is empty (all NaN): every train needs at least one spike")
        if not ok[:n].all():
            gap = int(np.argmin(ok))
            raise ValueError(f"{where} has NaN at spike {gap} followed by spike times; NaN may "
                             f"only pad the end of a train")
        steps = np.diff(row[:n])
        if np.any(steps <= 0):
            k = int(np.argmax(steps <= 0)) + 1
            raise ValueError(f"{where}: spike times must increase, but spike {k} at "
                             f"{row[k]} ms follows {row[k - 1]} ms")
    return t


def _check_mode(mode, model):
    if mode not in FORWARD_MODES:
        raise ValueError(f"mode={mode!r} is not one of {FORWARD_MODES}")
    if mode == "tutorial" and model.name != "tm":
        raise ValueError(f"mode='tutorial' is the tutorial's Euler scheme of the 'tm' model; "
                         f"model {model.name!r} has only mode='exact'")


def _check_params(model, params, mode, dt):
    if not isinstance(params, model.params_type):
        raise TypeError(f"params must be a {model.params_type.__name__} for model "
                        f"{model.name!r}, got {type(params).__name__}")
    floor = dt if mode == "tutorial" else 0.0
    for field, unit, value in zip(model.fields, model.units, params):
        arr = _checks.check_numeric(f"params.{field}", value)
        if arr is None:
            continue
        _checks.check_finite(f"params.{field}", arr, unit)
        if model.family == "srp":          # b and a_j any real; fitted time constants > 0
            if field.startswith("tau") and not np.all(arr > 0):
                raise ValueError(f"params.{field}={_checks._show(np.asarray(arr))} ms must be > 0")
            continue
        if unit == "" and not np.all((arr > 0) & (arr <= 1)):
            raise ValueError(f"params.{field}={_checks._show(np.asarray(arr))} is outside (0, 1]")
        if unit == "ms" and not np.all(arr > floor):
            raise ValueError(f"params.{field}={_checks._show(np.asarray(arr))} ms must be > "
                             f"{floor} ms" + (" (the time step dt)" if floor else ""))


def stp_amplitudes(params: Any, spike_times_ms: ArrayLike | Sequence[Any], *, model: str | Model = "tm",
                   mode: str = "exact", dt: float = 0.1) -> jax.Array:
    r"""Release ``u+_k R-_k`` of every spike of one or many trains (module docstring).

    Example::

        t = jnp.array([[0., 50., 100., 150.], [0., 10., 20., jnp.nan]])   # 20 Hz; 100 Hz, padded
        r = jaxlif.stp_amplitudes(jaxlif.STF, t)        # (2, 4), NaN where padded
        psc = g_bar * r

    Args:
        params: the model's parameters (``STPParams`` for ``"tm"``, :class:`TM4Params`,
            :class:`DepressionParams`, :class:`SRPParams`); leaves broadcast against the train
            axes of ``spike_times_ms``.  May be traced (``jax.grad``, ``jax.vmap``).
        spike_times_ms: ``(..., n_spikes)`` spike times [ms], NaN-padded at the end.
        model: ``"tm"``, ``"tm4"``, ``"depression"`` or ``"srp"``.
        mode: ``"exact"`` or ``"tutorial"`` (Euler on the grid, ``"tm"`` only).
        dt: time step [ms] of tutorial mode.

    Returns:
        ``(..., n_spikes)`` release per spike (dimensionless), NaN at padded positions.

    Raises:
        ValueError: empty trains, NaN inside a train, spike times not increasing, two spikes on
            one step (tutorial mode), parameters out of range, unknown model or mode.
    """
    m = get_model(model)
    _check_mode(mode, m)
    if mode == "tutorial":
        dt = _checks.check_dt(dt)
    _check_params(m, params, mode, dt)
    concrete = _checks._concrete(spike_times_ms) is not None
    if concrete:
        times = check_spike_times("spike_times_ms", spike_times_ms)
        if mode == "tutorial":
            steps = np.round(times / dt)
            same = np.diff(steps, axis=-1) == 0
            if np.any(same):
                idx = tuple(np.argwhere(same)[0])
                raise ValueError(f"spike_times_ms{list(idx[:-1])}: spikes {idx[-1]} and "
                                 f"{idx[-1] + 1} fall on the same step of dt={dt} ms; the "
                                 f"tutorial's scheme sees one spike per step")
        spike_times_ms = jnp.asarray(times, jnp.result_type(float))
    return _amplitudes(params, spike_times_ms, m, mode, float(dt))


@jax.jit(static_argnums=(2, 3, 4))
def _amplitudes(params, times, model, mode, dt):
    # invalid traced parameters poison the output (the concrete checks ran before)
    rules = {f: "finite" if model.family == "srp" else
             ("U0" if u == "" else ("tau" if mode == "tutorial" else "positive"))
             for f, u in zip(model.fields, model.units)}
    ok = _checks.traced_params("params", params, dt if mode == "tutorial" else None, rules)
    valid = ~jnp.isnan(times)
    delta = jnp.diff(times, axis=-1)
    ok_delta = valid[..., 1:]
    order = ok_delta & ~(delta > 0)          # traced times: must increase where valid
    if mode == "tutorial":
        k = jnp.diff(jnp.round(times / dt), axis=-1)
        k = jnp.where(ok_delta & (k >= 1), k, 1.0)
        release = euler_release(params, k, dt)
    else:
        release = model.release(params, jnp.where(ok_delta & (delta > 0), delta, 1.0))
    bad = jnp.any(order, axis=-1, keepdims=True)
    _checks.traced_rule("spike_times_ms", ~bad, "finite")
    # poison (not a plain where) so that invalid parameters or times also get NaN derivatives
    # (the mask broadcast to the output first: parameters with a batch axis, (B, 1) against
    # (P, n) times, must not be lined up with the protocols)
    mask = jnp.broadcast_to(ok & ~bad, release.shape)
    return _checks.poison(mask, jnp.where(valid, release, jnp.nan))
