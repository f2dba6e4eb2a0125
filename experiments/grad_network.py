r"""Recurrent surrogate gradients against finite differences (the table of docs/networks.md and BENCHMARKS.md).

    python experiments/grad_network.py --config small --T 1 --keys 8       # 200 E + 50 I, p 0.2 (about 10 min)
    python experiments/grad_network.py --config default --T 1 --keys 8     # ei_network defaults (800 + 200)
    python experiments/grad_network.py --config double --T 1 --keys 8      # the same with every weight x2
    python experiments/grad_network.py --config hidden --T 0.6 --keys 4 --h 0.1 --start 100   # E->E x2, late window
    python experiments/grad_network.py --quick --out /tmp/g                # seconds: 40 + 10 neurons, 50 ms
    python experiments/grad_network.py --config small --open-loop          # the diagnosis: open loop (minutes)
    python experiments/grad_network.py --config small --T 10 --keys 32 --closure   # replay closure (30 min)

For each network: the E rate, I rate [Hz] and mean smooth ISI CV of the E population
(:func:`jaxlif.soft_isi_cv`), differentiated with respect to four unconstrained parameters (log drive
weight, log E->E weight, log I->E weight, logit E->E U0) by central finite differences with common random
numbers (the same keys on both sides, step ``--h``) and by each requested ``grad_estimator`` in forward mode
(``jax.jacfwd``; the same derivative as ``jax.grad``).  Writes ``grad_network.json`` and ``grad_network.md``
(a markdown table) into ``--out`` (default ``results/grad_network``).

``--open-loop`` isolates the surrogate's own error from that of the feedback: each run's rasters are
replayed as its recurrent input (``simulate_network(replay=)``, so that the delivered spikes do not
change), and the settled rates' central differences of those replays (step 0.1) are compared with the
local surrogate derivative (``grad_estimator="local"``) for the four parameters and two more directions:
a common scale of every excitatory input (the drive and the weights out of E: the estimator's
calibration direction) and of every inhibitory one (the weights out of I).  The E population's mean ISI CV
is differenced the same way, and its replay response is divided by the E rate's: the open-loop change of
the CV per unit change of the rate, to compare with the same ratio of the closed-loop finite differences
(the default mode).  Writes ``grad_network_open_loop.json`` and ``.md``.

``--closure`` asks what a mean-field estimator could reach at best: every open-loop response measured by
replays instead of the surrogate (the four parameters' replay differences, and each population's rate moved
in the replay by thinning or adding to its spikes at the same temporal structure), closed at the level of
population rates, against the closed-loop finite differences (:func:`closure_study`).  Writes
``grad_network_closure.json`` and ``.md``.

The CV is taken with ``simulate_network(..., statistics=)``: under ``"mean_field"`` its derivative is the
library's "through the rate" (:mod:`jaxlif.network.gradients`: the open-loop change of the CV per unit
change of the E rate in the estimator's own replays, times the closed-loop derivative of that rate); under
``"local"`` and ``"full"`` it is the surrogate rasters' (far off: BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxlif
from jaxlif import network as nw

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ("log drive weight", "log E->E weight", "log I->E weight", "logit E->E U0")
OUTPUTS = ("E rate [Hz]", "I rate [Hz]", "E ISI CV")
CONFIGS = {"small": (dict(n_E=200, n_I=50, p=0.2), 1.0), "default": ({}, 1.0), "double": ({}, 2.0),
           "hidden": ({}, {"E->E": 2.0}),
           "quick": (dict(n_E=40, n_I=10, p=0.2), 1.0)}
DT = 0.1


def build(config: str):
    kw, scale = CONFIGS[config]
    scale = {k: scale for k in nw.EI_WEIGHTS} if isinstance(scale, float) else dict(dict.fromkeys(nw.EI_WEIGHTS, 1.0),
                                                                                    **scale)
    net = nw.ei_network(jax.random.key(0), **kw, weights={k: v * scale[k] for k, v in nw.EI_WEIGHTS.items()})
    return nw.partition(net)


def with_theta(params, theta):
    """``params`` moved by the four unconstrained parameters ``theta`` (zero: unchanged)."""
    pops = {k: v._replace(drive=v.drive._replace(weight=v.drive.weight * jnp.exp(theta[0])))
            for k, v in params.populations.items()}
    projs = dict(params.projections)
    ee = projs["E->E"]
    logit = jnp.log(ee.stp.U0) - jnp.log1p(-ee.stp.U0)
    projs["E->E"] = ee._replace(weights=ee.weights * jnp.exp(theta[1]),
                                stp=ee.stp._replace(U0=jax.nn.sigmoid(logit + theta[3])))
    projs["I->E"] = projs["I->E"]._replace(weights=projs["I->E"].weights * jnp.exp(theta[2]))
    return params._replace(populations=pops, projections=projs)


def _mean_cv(spikes, first: int):
    """The mean smooth ISI CV of a raster's neurons (at least 4 spikes) from sample ``first`` on."""
    return jnp.nanmean(jaxlif.soft_isi_cv(spikes[:, first:]))


#: The estimator ``"mean_field"`` with the CV's closed-loop slopes (:func:`jaxlif.network.closed_loop_slopes`).
CLOSED = "mean_field_closed"


def statistics(structure, params, theta, key, T, estimator, start=0.0, slopes=None, both=False):
    """E rate, I rate [Hz] and E ISI CV of one run; ``slopes``: the CV's closed-loop slopes (for :data:`CLOSED`).

    ``both`` (with ``slopes``): a fourth output, the same CV without slopes (its derivative through the E rate
    alone, the default of ``"mean_field"``), so that one Jacobian serves both estimators."""
    spike_grad = None if estimator is None else jaxlif.surrogates.fast_sigmoid()
    first = int(round(start / DT))
    cv = ("E", _cv_fn(first)) if slopes is None else ("E", _cv_fn(first), slopes)
    stats = {"cv": cv, "cv_rate": ("E", _cv_fn(first))} if both else {"cv": cv}
    res = nw.simulate_network(key, structure, with_theta(params, theta), T=T, dt=DT, spike_grad=spike_grad,
                              record=False, grad_estimator="mean_field" if estimator == CLOSED else estimator,
                              statistics=stats)
    E, I = (jnp.asarray(res.spikes[p][:, first:], jnp.result_type(float)) for p in ("E", "I"))
    return jnp.stack([jaxlif.population_rate(E, DT).mean(), jaxlif.population_rate(I, DT).mean(),
                      *(res.statistics[k] for k in stats)])


@functools.lru_cache(maxsize=None)
def _cv_fn(first: int):
    """One function object per start sample (a new function would compile a new program)."""
    return functools.partial(_mean_cv, first=first)


#: What a run reused with ``--fd-from`` must share with this one.
SAME = ("config", "T_s", "start_ms", "keys", "h")


def study(config: str, T_s: float, n_keys: int, h: float, estimators, start: float = 0.0,
          slope_keys: int = 32, estimator_keys: int | None = None, fd_from: dict | None = None) -> dict:
    """Finite differences over ``n_keys`` keys; each estimator's Jacobian on the first ``estimator_keys`` of them
    (default all: its mean is compared with the differences' mean, its own SE is reported beside it).

    ``fd_from``: the JSON of an earlier run of the same network, duration, keys, step and start (the estimator's
    changes do not touch the forward runs): its finite differences and closed-loop slopes are reused, and only
    the estimators' Jacobians are computed."""
    structure, params = build(config)
    T = 1000.0 * T_s
    keys = [jax.random.key(100 + i) for i in range(n_keys)]
    n_est = n_keys if estimator_keys is None else min(estimator_keys, n_keys)
    out = {"config": config, "T_s": T_s, "start_ms": start, "keys": n_keys, "estimator_keys": n_est, "h": h,
           "estimators": {}}
    slopes = None
    theta0 = jnp.zeros(4)
    if fd_from is not None:
        differ = [k for k in SAME if fd_from.get(k) != out[k]]
        if differ:
            raise ValueError(f"--fd-from is a run with other {differ}: " + ", ".join(
                f"{k} {fd_from.get(k)!r} there, {out[k]!r} here" for k in differ))
        if CLOSED in estimators and fd_from.get("closed_slopes", {}).get("keys") != slope_keys:
            raise ValueError(f"--fd-from has no closed-loop slopes on {slope_keys} keys (--slope-keys)")
        out.update({k: fd_from[k] for k in ("values", "fd", "fd_se", "seconds_per_forward")},
                   fd_reused_from=fd_from.get("run_id", "an earlier run"))
        if CLOSED in estimators:
            out["closed_slopes"] = fd_from["closed_slopes"]
            slopes = out["closed_slopes"]["slopes"]
    else:
        if CLOSED in estimators:    # measured once, at the unperturbed parameters, on keys of their own
            closed = nw.closed_loop_slopes(jnp.stack([jax.random.key(500 + i) for i in range(slope_keys)]),
                                           structure, params, T=T, dt=DT,
                                           statistics={"cv": ("E", _cv_fn(int(round(start / DT))))})
            slopes = closed.slopes["cv"]
            out["closed_slopes"] = {"slopes": closed.slopes["cv"], "se": closed.se["cv"], "keys": slope_keys,
                                    "condition": closed.condition}
        forward = jax.jit(lambda th, k: statistics(structure, params, th, k, T, None, start))
        forward(theta0, keys[0]).block_until_ready()                     # compiled outside the timing
        t0 = time.perf_counter()
        values = np.array([forward(theta0, k) for k in keys])
        t_forward = (time.perf_counter() - t0) / n_keys
        fd = np.array([[(forward(theta0.at[i].set(h), k) - forward(theta0.at[i].set(-h), k)) / (2 * h)
                        for i in range(4)] for k in keys])               # (keys, params, outputs)
        out.update(values=values.mean(0).tolist(), fd=fd.mean(0).T.tolist(),
                   fd_se=(fd.std(0, ddof=1).T / np.sqrt(n_keys)).tolist(), seconds_per_forward=t_forward)
    # "mean_field" and its closed-loop variant differ only in the CV's derivative: one Jacobian gives both
    shared = CLOSED in estimators and "mean_field" in estimators
    for est in [e for e in estimators if not (shared and e == "mean_field")]:
        both = shared and est == CLOSED
        jac = jax.jit(jax.jacfwd(lambda th, k: statistics(structure, params, th, k, T, est, start,
                                                          slopes if est == CLOSED else None, both)))
        jac(theta0, keys[0]).block_until_ready()
        t0 = time.perf_counter()
        J = np.array([jac(theta0, k) for k in keys[:n_est]])          # (keys, outputs, params)
        seconds = (time.perf_counter() - t0) / n_est
        parts = {est: J[:, :3], "mean_field": J[:, [0, 1, 3]]} if both else {est: J}
        for name, Jp in parts.items():
            out["estimators"][name] = {"mean": Jp.mean(0).tolist(),
                                       "se": (Jp.std(0, ddof=1) / np.sqrt(n_est)).tolist() if n_est > 1 else None,
                                       "seconds_per_jacobian": seconds}
    return out


def resolved_ratios(result: dict, n_se: float = 3.0) -> dict:
    """Estimate / FD for each estimator on the entries whose difference is beyond ``n_se`` standard errors:
    ``{estimator: [(output, parameter, ratio), ...]}`` (a negative ratio is a wrong sign)."""
    fd, se = np.array(result["fd"]), np.array(result["fd_se"])
    clear = np.abs(fd) > n_se * se
    return {est: [(OUTPUTS[o], PARAMS[i], float(np.array(r["mean"])[o, i] / fd[o, i]))
                  for o, i in zip(*np.nonzero(clear))] for est, r in result["estimators"].items()}


OPEN_LOOP = PARAMS + ("log excitatory scale", "log inhibitory scale")


def _moved(params, th):
    """``params`` moved by the six open-loop directions ``th`` (:data:`OPEN_LOOP`)."""
    p = with_theta(params, th[:4])
    pops = {k: v._replace(drive=v.drive._replace(weight=v.drive.weight * jnp.exp(th[4])))
            for k, v in p.populations.items()}
    projs = {k: v._replace(weights=v.weights * jnp.exp(th[4] if k.startswith("E") else th[5]))
             for k, v in p.projections.items()}
    return p._replace(populations=pops, projections=projs)


def _settled_statistics(res):
    """E rate, I rate [Hz] and the E population's mean smooth ISI CV, over the settled part."""
    start = int(nw.gradients.SETTLE * res.spikes["E"].shape[-1])
    E, I = (jnp.asarray(res.spikes[a][:, start:], jnp.result_type(float)) for a in ("E", "I"))
    return jnp.stack([jnp.mean(E) * (1000.0 / DT), jnp.mean(I) * (1000.0 / DT), jnp.nanmean(jaxlif.soft_isi_cv(E))])


def _replays(structure, params, T: float):
    """``(plain, replay)``: a run's rasters ``plain(key)``, and ``replay(th, key, rasters)`` the settled
    statistics of those rasters replayed with ``params`` moved by ``th`` (:data:`OPEN_LOOP`)."""
    plain = jax.jit(lambda k: nw.simulate_network(k, structure, params, T=T, dt=DT, record=False).spikes)
    replay = jax.jit(lambda th, k, sp: _settled_statistics(nw.simulate_network(
        k, structure, _moved(params, th), T=T, dt=DT, record=False, replay=sp)))
    return plain, replay


def open_loop_study(config: str, T_s: float, n_keys: int, h: float = 0.1) -> dict:
    """Open-loop responses (rates over the settled part) by replay differences and by the local surrogate."""
    structure, params = build(config)
    T = 1000.0 * T_s

    moved, rates = functools.partial(_moved, params), _settled_statistics
    plain, replay = _replays(structure, params, T)
    local = jax.jit(jax.jacfwd(lambda th, k: rates(nw.simulate_network(
        k, structure, moved(th), T=T, dt=DT, record=False, spike_grad=jaxlif.surrogates.fast_sigmoid(),
        grad_estimator="local"))))
    zero, fd, sg = jnp.zeros(len(OPEN_LOOP)), [], []
    for i in range(n_keys):
        k = jax.random.key(100 + i)
        sp = plain(k)
        fd.append(np.stack([(replay(zero.at[j].set(h), k, sp) - replay(zero.at[j].set(-h), k, sp)) / (2 * h)
                            for j in range(len(OPEN_LOOP))], 1))                 # (outputs, directions)
        sg.append(np.asarray(local(zero, k)))
    fd, sg = np.array(fd), np.array(sg)
    return {"config": config, "T_s": T_s, "keys": n_keys, "h": h, "fd": fd.mean(0).tolist(),
            "fd_se": (fd.std(0, ddof=1) / np.sqrt(n_keys)).tolist(), "local": sg.mean(0).tolist()}


def _header(title: str, columns) -> list:
    """The first lines of a markdown table: its title, a blank line, the column names and the rule."""
    return [title, "", "| output | method | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]


def open_loop_table(result: dict) -> str:
    fd, se, sg = (np.array(result[k]) for k in ("fd", "fd_se", "local"))
    lines = _header(f"{result['config']} network, T = {result['T_s']:g} s, {result['keys']} keys: open-loop responses "
                    f"of the settled rates [Hz per unit] and E ISI CV [per unit] (replay differences ± SE, local "
                    f"surrogate, their ratio; for the CV also its replay response over the E rate's)", OPEN_LOOP)
    for o, name in enumerate(OUTPUTS):
        live = np.abs(sg[o]) > 0
        lines.append(f"| {name} | replay FD | " + " | ".join(f"{fd[o, i]:.3g} ± {se[o, i]:.2g}" if live[i] else "-"
                                                          for i in range(len(OPEN_LOOP))) + " |")
        lines.append("| | local | " + " | ".join(f"{sg[o, i]:.3g}" if live[i] else "-"
                                                  for i in range(len(OPEN_LOOP))) + " |")
        lines.append("| | FD / local | " + " | ".join(f"{fd[o, i] / sg[o, i]:.3g}" if live[i] else "-"
                                                       for i in range(len(OPEN_LOOP))) + " |")
    lines.append("| | CV FD / E rate FD | " + " | ".join(f"{fd[2, i] / fd[0, i]:.3g}" for i in range(len(OPEN_LOOP)))
                 + " |")
    return "\n".join(lines)


#: Fraction of a population's spikes removed (down) or added (up) in :func:`closure_study`'s replays.
THIN = 0.1


def _rate_moved(spikes: dict, name: str, sign: int, key) -> dict:
    """``spikes`` with population ``name``'s rate moved by a factor ``1 + sign THIN`` at the same temporal
    structure: down, each spike kept with probability ``1 - THIN``; up, each neuron also fires the spikes of
    another neuron of the population (a random permutation) kept with probability ``THIN``."""
    x = spikes[name]
    k_keep, k_perm = jax.random.split(key)
    u = jax.random.uniform(k_keep, x.shape)
    if sign < 0:
        return dict(spikes, **{name: x & (u >= THIN)})
    return dict(spikes, **{name: x | (x[jax.random.permutation(k_perm, x.shape[0])] & (u < THIN))})


def closure_study(config: str, T_s: float, n_keys: int, h: float = 0.1) -> dict:
    """The mean-field closure with every open-loop response measured by replays (no surrogate), against the
    closed-loop finite differences, per key::

        dr = (I - G)^-1 D,   dCV = D_CV + K dr / r,

    ``D``: the settled rates' and the CV's replay differences along the four parameters (:data:`PARAMS`);
    ``G_ab``, ``K_b``: the responses of ``a``'s rate and of the CV to population ``b``'s rate, by replays in
    which ``b``'s spikes are thinned or added to (:func:`_rate_moved`, per unit ``log r_b``), over ``r_b``.
    What any estimator built on replays and population rates can reach at best (docs/networks.md)."""
    structure, params = build(config)
    T = 1000.0 * T_s
    names = ("E", "I")
    plain, replay = _replays(structure, params, T)
    closed = jax.jit(lambda th, k: _settled_statistics(nw.simulate_network(
        k, structure, with_theta(params, th), T=T, dt=DT, record=False)))
    moved = jax.jit(_rate_moved, static_argnums=(1, 2))
    zero = jnp.zeros(len(OPEN_LOOP))
    fd, est = [], []
    for i in range(n_keys):
        k, k_thin = jax.random.key(100 + i), jax.random.key(7000 + i)
        sp = plain(k)
        r = np.asarray(closed(zero[:4], k), float)
        fd.append(np.stack([(closed(zero[:4].at[j].set(h), k) - closed(zero[:4].at[j].set(-h), k)) / (2 * h)
                            for j in range(4)], 1))
        D = np.stack([(replay(zero.at[j].set(h), k, sp) - replay(zero.at[j].set(-h), k, sp)) / (2 * h)
                      for j in range(4)], 1)                               # (outputs, params)
        B = np.stack([(replay(zero, k, moved(sp, b, 1, k_thin)) - replay(zero, k, moved(sp, b, -1, k_thin)))
                      / (2 * THIN) for b in names], 1) / r[None, :2]       # (outputs, populations) per Hz
        dr = np.linalg.solve(np.eye(2) - B[:2], D[:2])
        est.append(np.vstack([dr, D[2] + B[2] @ dr]))
    fd, est = np.array(fd), np.array(est)
    se = lambda x: (x.std(0, ddof=1) / np.sqrt(n_keys)).tolist()           # noqa: E731
    return {"config": config, "T_s": T_s, "keys": n_keys, "h": h, "thin": THIN, "fd": fd.mean(0).tolist(),
            "fd_se": se(fd), "closure": est.mean(0).tolist(), "closure_se": se(est)}


def closure_table(result: dict) -> str:
    title = (f"{result['config']} network, T = {result['T_s']:g} s, {result['keys']} keys: closed-loop finite "
             f"differences (± SE) and the mean-field closure of replay responses (source rates moved by "
             f"thinning / adding {result['thin']:g} of their spikes)")
    return table(dict(result, estimators={"closure": {"mean": result["closure"]}}), title)


def table(result: dict, title: str | None = None) -> str:
    late = f", spikes from {result['start_ms']:g} ms" if result.get("start_ms") else ""
    n_est = result.get("estimator_keys", result["keys"])
    est_keys = f" (estimators on the first {n_est})" if n_est != result["keys"] else ""
    lines = _header(title or f"{result['config']} network, T = {result['T_s']:g} s{late}, {result['keys']} keys"
                             f"{est_keys}: finite differences (± SE) and estimators (± SE where measured)", PARAMS)
    fd, se = np.array(result["fd"]), np.array(result["fd_se"])
    for o, name in enumerate(OUTPUTS):
        lines.append(f"| {name} | FD | " + " | ".join(f"{fd[o, i]:.3g} ± {se[o, i]:.2g}" for i in range(4)) + " |")
        for est, r in result["estimators"].items():
            m = np.array(r["mean"])
            e = np.array(r["se"]) if r.get("se") is not None else None
            lines.append(f"| | {est} | " + " | ".join(f"{m[o, i]:.3g}" + (f" ± {e[o, i]:.2g}" if e is not None else "")
                                                        for i in range(4)) + " |")
    if "closure" not in result["estimators"]:
        for est, rows in resolved_ratios(result).items():
            lines.append(f"\n{est}, estimate / FD where the difference is beyond 3 SE: "
                         + (", ".join(f"{o} / {p} {q:.2f}" for o, p, q in rows) or "none resolved"))
    if "fd_reused_from" in result:
        lines.append(f"\nThe finite differences (and closed-loop slopes) are those of {result['fd_reused_from']}; the "
                     f"estimators were computed in this run.")
    if "closed_slopes" in result:
        c = result["closed_slopes"]
        lines.append(f"\n{CLOSED}: the CV's closed-loop slopes ({c['keys']} keys of their own; condition "
                     f"{c['condition']:.3g}): " + ", ".join(f"dCV/dr_{a} = {c['slopes'][a]:.3g} ± {c['se'][a]:.2g}"
                                                          for a in c["slopes"]) + " per Hz")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--T", type=float, default=1.0, help="duration of each run [s]")
    ap.add_argument("--keys", type=int, default=8, help="common random numbers: keys per derivative")
    ap.add_argument("--h", type=float, default=0.05, help="finite-difference step (unconstrained units)")
    ap.add_argument("--estimators", default="mean_field,local", help="comma-separated grad_estimator values")
    ap.add_argument("--start", type=float, default=0.0, help="statistics of the spikes from this time on [ms]")
    ap.add_argument("--quick", action="store_true", help="40 + 10 neurons, 50 ms, 2 keys (a smoke run)")
    ap.add_argument("--open-loop", action="store_true", help="the open-loop diagnosis (module docstring) instead")
    ap.add_argument("--closure", action="store_true", help="the replay-measured mean-field closure (module docstring)")
    ap.add_argument("--slope-keys", type=int, default=32,
                    help=f"keys of the closed-loop slopes measured for --estimators {CLOSED}")
    ap.add_argument("--estimator-keys", type=int, default=None,
                    help="the estimators' Jacobians on the first this many keys (default: all; a Jacobian costs "
                         "tens of forward runs)")
    ap.add_argument("--fd-from", type=Path, default=None,
                    help="grad_network.json of an earlier run of the same --config, --T, --keys, --h and --start: "
                         "reuse its finite differences (and closed-loop slopes), compute only the estimators")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "grad_network")
    args = ap.parse_args(argv)
    if args.keys < 2:
        ap.error(f"--keys={args.keys} must be at least 2 (standard errors)")
    config, T_s, keys = ("quick", 0.05, 2) if args.quick else (args.config, args.T, args.keys)
    estimators = [e for e in args.estimators.split(",") if e]
    bad = sorted(set(estimators) - set(nw.gradients.GRAD_ESTIMATORS) - {CLOSED})
    if bad:
        ap.error(f"--estimators has {bad}; choose from {list(nw.gradients.GRAD_ESTIMATORS) + [CLOSED]}")
    if args.slope_keys < 2:
        ap.error(f"--slope-keys={args.slope_keys} must be at least 2")
    if args.estimator_keys is not None and args.estimator_keys < 1:
        ap.error(f"--estimator-keys={args.estimator_keys} must be at least 1")
    if args.open_loop:
        return _write(open_loop_study(config, T_s, keys), open_loop_table, args.out, "grad_network_open_loop")
    if args.closure:
        return _write(closure_study(config, T_s, keys), closure_table, args.out, "grad_network_closure")
    if not 0.0 <= args.start < 1000.0 * T_s:
        ap.error(f"--start={args.start:g} must be in [0, T) ms")
    fd_from = None
    if args.fd_from is not None:
        fd_from = json.loads(args.fd_from.read_text())
        fd_from.setdefault("run_id", str(args.fd_from))
    try:
        result = study(config, T_s, keys, args.h, estimators, args.start, args.slope_keys, args.estimator_keys,
                       fd_from)
    except ValueError as err:
        ap.error(str(err))
    return _write(result, table, args.out, "grad_network")


def _write(result: dict, to_table, out: Path, stem: str) -> dict:
    """Write ``result`` as ``stem.json`` and its table as ``stem.md`` into ``out``; print the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(to_table(result) + "\n")
    print(to_table(result))
    return result


if __name__ == "__main__":
    main()
