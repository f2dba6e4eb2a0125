"""Training a recurrent E/I network with STP to match the statistics of a hidden one: gradients against a
gradient-free search on the same number of simulations.

The network (:func:`jaxlif.network.ei_network`, as in ``experiments/network.py``): ``n_E`` excitatory and
``n_I`` inhibitory conductance-LIF neurons, every ordered pair connected with probability ``p``, the weights of
``EI_WEIGHTS`` (E->E 1, E->I 1, I->E 6, I->I 6 nS for 800 + 200 neurons at p = 0.1; other sizes scale them by
100 / (p n)), delay 1.5 ms, depressing E->E synapses (Tsodyks-Markram, tau_d 100 ms, tau_f 50 ms), 100
external Poisson trains at 10 Hz per neuron.  It is split into structure and a parameter pytree
(:func:`jaxlif.network.partition`) and four numbers of that tree are trained::

    theta = (drive weight [nS], E->E weight scale, I->E weight scale, E->E U0)

each in the unconstrained space of :func:`jaxlif.constraints.default_constraints` (log for the weights,
logit for U0); the E->E and I->E scales multiply every weight of the projection (1 = the default network).

**Statistics** (after the onset transient, t >= ``--late-start``): E rate, I rate [Hz], the mean smooth
ISI CV of the E neurons with at least 4 spikes (:func:`jaxlif.soft_isi_cv`) and the mean pairwise
spike-count correlation of the first ``--corr-n`` E neurons in windows of ``--window`` ms
(:func:`jaxlif.count_correlation`).  A run's statistics are the mean over ``--trials`` drive keys (one
``jax.vmap``).  The **target** is their mean over ``--ref-trials`` keys of the reference network with the
hidden theta (``--hidden``); ``sd`` is their standard deviation across those keys.

**Loss**: ``L = sum_i ((s_i(theta) - target_i) / scale_i)^2`` with ``scale_i = sd_i sqrt(1/ref_trials +
1/trials)``, the standard deviation of the difference between one run and the target when theta is the
hidden one: ``L`` is then about a chi-square with 4 degrees of freedom (mean 4), so ``L <~ 10`` is a fit
within noise.

**Measured** (``python experiments/train_network.py``, 2026-12-08, docs/networks.md): on 8 fresh keys, loss 3.17
at the hidden parameters, 2.08 after 14 Gauss-Newton steps, 1140 after 20 Adam steps, 65.0 for the (1+1)-ES and
206 for random search on 700 forward calls each.

**Gradient fit**: Adam (optax, cosine-decayed learning rate) on theta from ``--start``, gradients from a
fast-sigmoid surrogate and the default mean-field estimator of recurrent gradients
(:mod:`jaxlif.network.gradients`), a new set of drive keys every step.  The CV is passed to the simulation as a
statistic (``simulate_network(statistics=)``), so that its derivative goes through the E rate (its open-loop
change per unit rate in the estimator's replays); through the surrogate rasters it would be tens of times
too large.  With ``--closed-slopes K`` (the default, K = 8; 0 under ``--quick`` and in the main job) it goes
through both rates instead, ``dCV = k_E dr_E + k_I dr_I``, with
slopes measured in the running network (:func:`jaxlif.network.closed_loop_slopes` on ``K`` keys of their own, at
the start and every ``--slopes-every`` steps: through the E rate alone the CV's derivative is a multiple of
the E rate's; through both it is still a combination of the two rates', docs/networks.md).  The slopes' simulations count in the steps' measured time
(the first measurement, made before the timing, as ``4 K / trials`` forward calls).

**Gauss-Newton fit**: the same estimator's Jacobian ``J = d mean stats / d theta`` (forward mode, four tangents,
one program; the drive keys of Adam's step of the same index) in damped Gauss-Newton (Levenberg-Marquardt)
steps on the standardised residuals ``z = (s - target) / scale``: ``delta = -(J_z^T J_z + damping I)^-1 J_z^T
z``, each coordinate clipped to +- ``--gn-max-step``.  A least-squares loss of a few statistics is what
Gauss-Newton is for: Adam rescales each coordinate of the gradient by its own running size (a diagonal
preconditioner), while the loss's curvature is far from diagonal (a narrow valley across the coordinates), so
on the full network its noisy steps zigzag and end with a rate tens of standard errors off.  The fixed point
of the damped iteration is where ``J_z^T z = 0``: with as many statistics as parameters and ``J_z`` of full
rank, the zero of the residuals themselves, whatever the Jacobian's error, if the iteration is stable there
(the damping keeps it stable along directions the estimator gets wrong or hardly sees).  It gets
``floor(budget / --gn-cost-ratio)`` steps, the baselines' budget at a fixed cost per step (default 48 forward
calls: 46.6-47.3 measured at full size with closed-loop slopes on 2026-12-07/08; the run reports the measured
cost).  **Near the fit** each full step lands where the noise of its own ``--trials`` runs puts it (their
statistics scatter by ``sd / sqrt(trials)``, several times the target's standard error): on the full network
the iterates after 3-14 steps scored 2.3-53 on the evaluation keys (median 12.9, as that noise predicts), and
a tail average of the iterates was no better (7.5-17: the iterates still converge along a damped direction).
So from the first step whose runs' loss is at most ``--gn-average-below`` (default 8, twice the loss expected
at the fit) the steps are shrunk, the ``n``-th after it by ``1 / (n + 1)`` (Robbins-Monro gains): theta
becomes the running mean of the points the steps would land on, each linearised afresh, and the noise of the
result falls as ``1 / sqrt(n)``.  At the hidden parameters the run also checks that this
forward-mode Jacobian equals the reverse-mode one of Adam's program on the same keys (``forward_vs_reverse``
in the JSON: the largest difference relative to the largest entry).

**Gradient-free baselines, same budget**: each baseline gets ``round(cost_ratio x steps)`` forward calls,
where ``--cost-ratio`` (default 35) is the cost of an Adam step (value and gradient) in forward calls of the
same number of keys.  It is fixed in the configuration, not measured per run, so that the baselines' result
does not depend on the machine's load; the run measures the ratio too (median wall time of a gradient step over
that of a forward call) and reports it beside the budget.  The estimator's nominal cost is about ``2 (2 + P) + 2 = 10``
simulations for ``P = 2`` populations, plus the backward pass, plus the closed-loop slopes' runs; on this project's
2-core machine the measured ratio at full size with ``--closed-slopes 8`` was 23.6-40.5 in three runs
(2026-12-07/08), so the defaults (35 and 48) give the baselines about what the gradient methods spent.  At the
main job's size, without slopes, it was 12.1-17.1 for Adam and 13.7 for Gauss-Newton, and the main job passes
``--cost-ratio 20 --gn-cost-ratio 32`` (``--quick`` counts a step as 4 calls, to keep the test short).  (1+1)-ES in theta
with the 1/5 success rule, parent and child evaluated on the same fresh keys (common random numbers: 2 calls per
generation), and random search,
uniform in a box of +- ``--box`` around the start in theta (its best noisy loss wins).

**Evaluation**: start, hidden, and each method's final theta are run on the same ``--eval-trials`` fresh
keys: statistics with SE, and the loss of their mean.  **Identifiability**: the Jacobian of the statistics
with respect to theta at the hidden theta, by central finite differences (step ``--fd-step``) over common
random numbers (the evaluation keys), standardised by ``sd``: its singular values and vectors say which
combinations of theta the four statistics pin down, and ``sqrt(diag(F^-1) / ref_trials)`` with ``F =
J_z^T J_z`` is the standard deviation with which each parameter is determined by the target.
**Does the gradient point the right way?**  The estimator's own ``d stat / d theta`` at the hidden theta, on
the first ``--trials`` evaluation keys (from the loss-gradient program: with unit scales its gradient is
linear in the target, so two targets give one row), is compared in sign with the finite differences on
the entries these show clearly non-zero (``|FD| > 2 SE`` over the evaluation keys).  **Does the CV follow
the rate?**  Its derivative goes through the E rate; :func:`jaxlif.network.rate_slopes` on the evaluation
keys at the hidden theta compares the CV's change per Hz of E rate in the running network with that in the
estimator's replays, and the report says whether they agree (``cv_rate_check`` in the summary).

Figures: ``training.png`` (loss and parameters against the number of forward-simulation equivalents, for
the four methods, hidden values dashed), ``statistics.png`` (the four statistics before and after, with SE,
and the standardised Jacobian).  ``train_network.md`` holds the tables, ``train_network.json`` every number.

Keys: ``root = fold_in(key(seed), 12)``; connectivity ``fold_in(root, 0)`` (one network for every method);
reference ``split(fold_in(root, 1), ref_trials)``; Adam step ``i`` ``split(fold_in(fold_in(root, 2), i),
trials)``; ES generation ``g`` ``split(fold_in(fold_in(root, 3), g), trials)``; random-search candidate
``c``: theta ``fold_in(fold_in(root, 4), c)``, keys ``split(fold_in(fold_in(root, 5), c), trials)``; ES
mutations ``fold_in(fold_in(root, 6), g)``; evaluation and finite differences ``split(fold_in(root, 7),
eval_trials)``; Gauss-Newton step ``i`` the keys of Adam's step ``i``; closed-loop slopes at step ``i``
``split(fold_in(fold_in(root, 5), i), closed_slopes)`` (the random-search stream: with the partitionable threefry
their first ``trials`` keys are candidate ``i``'s, at other parameters; the slopes at the hidden theta use
``i = 10^6``).  Units: ms, nS, Hz.
"""

from __future__ import annotations

import functools
import math
import sys
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from experiments import _common as C  # noqa: E402
import jaxlif as jl  # noqa: E402
from jaxlif import network as nw  # noqa: E402

NAME = "train_network"
STREAM = 12
#: The trained parameters, their units and how they enter the parameter tree.
PARAMS = ("drive_weight", "ee_scale", "ie_scale", "U0")
LABELS = {"drive_weight": "drive weight (nS)", "ee_scale": "E->E weight scale", "ie_scale": "I->E weight scale",
          "U0": "E->E U0"}
STATS = ("rate_E", "rate_I", "cv_E", "corr_E")
#: The parameter sets evaluated: the start, the hidden truth, and each method's result.
METHODS = ("start", "hidden", "adam", "gauss_newton", "es", "random")
FITS = METHODS[2:]
STAT_LABELS = {"rate_E": "E rate (Hz)", "rate_I": "I rate (Hz)", "cv_E": "mean ISI CV (E)",
               "corr_E": "mean count correlation (E)"}
SURROGATE = jl.surrogates.fast_sigmoid()

DEFAULTS = dict(T=600.0, dt=0.1, trials=2, seed=0, n_E=800, n_I=200, p=0.1, late_start=100.0, window=50.0,
                corr_n=200, ref_trials=16, eval_trials=8, steps=20, learning_rate=0.1,
                hidden=[1.0, 2.0, 1.0, 0.5], start=[0.8, 1.5, 1.5, 0.3], box=1.0, es_sigma=0.3, fd_step=0.1,
                cost_ratio=35.0, cv_through_rate=1, closed_slopes=8, slopes_every=5, gn_cost_ratio=48.0, damping=30.0,
                gn_max_step=0.5, gn_average_below=8.0)
QUICK = dict(T=60.0, trials=2, n_E=40, n_I=10, p=0.2, late_start=20.0, window=10.0, corr_n=20, ref_trials=4,
             eval_trials=2, steps=2, cost_ratio=4.0, gn_cost_ratio=4.0, closed_slopes=0)
EXTRA = {
    "n_E": ("excitatory neurons", int), "n_I": ("inhibitory neurons", int),
    "p": ("connection probability", float),
    "late_start": ("statistics are taken for t >= this [ms] (after the onset transient)", float),
    "window": ("counting window of the spike-count correlation [ms]", float),
    "corr_n": ("E neurons in the pairwise correlation", int),
    "ref_trials": ("drive keys of the reference network (the target; a multiple of --trials)", int),
    "eval_trials": ("drive keys of the final evaluation and of the finite differences (a multiple of --trials)", int),
    "steps": ("Adam steps", int),
    "learning_rate": ("Adam learning rate on theta (cosine-decayed to a tenth)", float),
    "hidden": ("hidden parameters: drive weight [nS], E->E scale, I->E scale, U0", C.float_list),
    "start": ("start of every method: drive weight [nS], E->E scale, I->E scale, U0", C.float_list),
    "box": ("random search: half-width of the box around the start in theta (log units; logit for U0)", float),
    "es_sigma": ("(1+1)-ES: initial mutation step in theta", float),
    "fd_step": ("identifiability: finite-difference step in theta", float),
    "cost_ratio": ("cost of an Adam step in forward calls: the baselines get round(cost_ratio x steps) forward calls",
                   float),
    "cv_through_rate": ("1: the CV's derivative through the E rate (simulate_network(statistics=)); 0: through the "
                        "surrogate rasters", int),
    "closed_slopes": ("0: the CV's derivative through the E rate alone (open-loop slope); K >= 2 (default 8; 0 under "
                      "--quick and in the main job): through both rates, "
                      "with closed-loop slopes measured on K keys (jaxlif.network.closed_loop_slopes)", int),
    "slopes_every": ("with --closed-slopes: re-measure the slopes every this many Adam (and Gauss-Newton) steps",
                     int),
    "gn_cost_ratio": ("cost of a Gauss-Newton step in forward calls: it gets floor(budget / gn_cost_ratio) steps",
                      float),
    "damping": ("Gauss-Newton: Levenberg-Marquardt damping lambda, in squared standardised units", float),
    "gn_max_step": ("Gauss-Newton: largest change of any theta coordinate in one step", float),
    "gn_average_below": ("Gauss-Newton: from the first step whose runs' loss is at most this (the noise level; 0: "
                         "never), the n-th step after it is taken with gain 1/(n + 1), so that theta becomes the "
                         "running mean of the steps' landing points", float),
}


def _four(value, cfg):
    if len(value) != 4:
        return f"must be 4 numbers (drive weight nS, E->E scale, I->E scale, U0), got {len(value)}"
    w, ee, ie, u = value
    if not all(math.isfinite(x) and x > 0 for x in (w, ee, ie)):
        return f"drive weight and weight scales must be finite and > 0, got {value}"
    if not 0.0 < u < 1.0:
        return f"U0 must lie in (0, 1), got {u:g}"


def _multiple(value, cfg):
    if value < cfg.trials or value % cfg.trials:
        return f"must be a multiple of --trials={cfg.trials} (runs go in batches of --trials), got {value}"


def _late_start(value, cfg):
    if not 0.0 <= value < cfg.T:
        return f"must lie in [0, T={cfg.T:g}) ms, got {value:g}"


def _window(value, cfg):
    if not (math.isfinite(value) and value > 0 and 2 * value <= cfg.T - cfg.late_start):
        return f"must be > 0 ms with two windows in T - late_start = {cfg.T - cfg.late_start:g} ms, got {value:g}"


def _corr_n(value, cfg):
    if not 2 <= value <= cfg.n_E:
        return f"must lie in [2, n_E={cfg.n_E}], got {value}"


CHECKS = {"n_E": C.integer_counts(4), "n_I": C.integer_counts(2), "p": lambda v, c: None if 0 < v <= 1 else
          f"must be a probability in (0, 1], got {v:g}", "late_start": _late_start, "window": _window,
          "corr_n": _corr_n, "ref_trials": _multiple, "eval_trials": _multiple, "steps": C.integer_counts(1),
          "learning_rate": C.positive(), "hidden": _four, "start": _four, "box": C.positive(),
          "es_sigma": C.positive(), "fd_step": C.positive(), "cost_ratio": C.positive(),
          "cv_through_rate": lambda v, c: None if v in (0, 1) else f"must be 0 or 1, got {v}",
          "closed_slopes": lambda v, c: None if v == 0 or (v >= 2 and c.cv_through_rate == 1) else
          f"must be 0 or at least 2 keys (and needs --cv-through-rate 1: with --cv-through-rate 0 pass "
          f"--closed-slopes 0), got {v}",
          "slopes_every": C.integer_counts(1), "gn_cost_ratio": C.positive(),
          "damping": lambda v, c: None if math.isfinite(v) and v >= 0 else f"must be finite and >= 0, got {v:g}",
          "gn_max_step": C.positive(),
          "gn_average_below": lambda v, c: None if math.isfinite(v) and v >= 0 else f"must be finite and >= 0, got {v:g}"}


# ----------------------------------------------------------------------------------------------
# The model: theta -> parameter tree -> statistics
# ----------------------------------------------------------------------------------------------


def build(key, cfg):
    """``(structure, base, constraints)``: the network for ``cfg`` split by :func:`jaxlif.network.partition`
    (weights scaled by 100 / (p n) as in ``experiments/network.py``) and the four leaves' constraints."""
    scale = 100.0 / (cfg.p * (cfg.n_E + cfg.n_I))
    weights = {k: w * scale for k, w in nw.EI_WEIGHTS.items()}
    structure, base = nw.partition(nw.ei_network(key, n_E=cfg.n_E, n_I=cfg.n_I, p=cfg.p, weights=weights))
    cons = jl.constraints.default_constraints(base, dt=cfg.dt)
    leaf = (cons.populations["E"].drive.weight, cons.projections["E->E"].weights, cons.projections["I->E"].weights,
            cons.projections["E->E"].stp.U0)
    return structure, base, leaf


def to_theta(values, leaf) -> np.ndarray:
    """Physical ``(drive weight, E->E scale, I->E scale, U0)`` -> unconstrained theta (log, log, log, logit)."""
    return np.asarray([float(c.inverse(jnp.asarray(v, jnp.float32))) for c, v in zip(leaf, values)])


def from_theta(theta, leaf):
    """Unconstrained theta -> physical values (works on traced arrays)."""
    return [c.forward(theta[i]) for i, c in enumerate(leaf)]


def with_theta(base: nw.NetworkParams, theta, leaf) -> nw.NetworkParams:
    """The parameter tree with the drive weight of both populations, the E->E and I->E weights (scaled)
    and the E->E U0 set from ``theta``."""
    w, ee, ie, u0 = from_theta(theta, leaf)
    pops = {n: p._replace(drive=p.drive._replace(weight=w + 0.0 * p.drive.weight)) for n, p in base.populations.items()}
    proj = dict(base.projections)
    e = proj["E->E"]
    proj["E->E"] = e._replace(weights=e.weights * ee, stp=e.stp._replace(U0=u0 + 0.0 * e.stp.U0))
    proj["I->E"] = proj["I->E"]._replace(weights=proj["I->E"].weights * ie)
    return base._replace(populations=pops, projections=proj)


def late_cv(spikes, start: int):
    """The mean smooth ISI CV of the neurons with at least 4 spikes from sample ``start`` on (0 if none)."""
    s = spikes[:, start:]
    cv = jl.soft_isi_cv(s)
    counted = jax.lax.stop_gradient(s.sum(-1) >= 3.5)
    return jnp.sum(jnp.where(counted, cv, 0.0)) / jnp.maximum(counted.sum(), 1)


@functools.lru_cache(maxsize=None)
def late_cv_statistic(start: int):
    """:func:`late_cv` from sample ``start`` on, one object per ``start``: the statistic is a static argument of
    the compiled simulations (``simulate_network(statistics=)``, :func:`jaxlif.network.rate_slopes`), and a new
    ``functools.partial`` equals only itself, so each would compile a program of its own."""
    return functools.partial(late_cv, start=start)


def run_stats(theta, key, structure, base, leaf, cfg, slopes=None):
    """The four statistics (``STATS``) of one run with drive key ``key`` (differentiable in theta; the CV's
    derivative through the E rate, ``simulate_network(statistics=)``, or through both rates with the closed-loop
    ``slopes`` ``{population: dCV/dr}`` when given)."""
    start = int(round(cfg.late_start / cfg.dt))
    through_rate = getattr(cfg, "cv_through_rate", 1)
    cv = ("E", late_cv_statistic(start)) if slopes is None else ("E", late_cv_statistic(start), slopes)
    res = nw.simulate_network(key, structure, with_theta(base, theta, leaf), T=cfg.T, dt=cfg.dt,
                              spike_grad=SURROGATE, record=False, delivery=getattr(cfg, "delivery", "event"),
                              statistics={"cv": cv} if through_rate else None)
    cv = res.statistics["cv"] if through_rate else late_cv(res.spikes["E"], start)
    sE, sI = res.spikes["E"][:, start:], res.spikes["I"][:, start:]
    return jnp.stack([jl.population_rate(sE, cfg.dt), jl.population_rate(sI, cfg.dt), cv,
                      jl.count_correlation(sE[:cfg.corr_n], cfg.dt, cfg.window)])


def programs(structure, base, leaf, cfg):
    """``(forward, value_and_grad, jacobian)``, each jitted once (on first use) for a batch of ``cfg.trials`` keys:
    ``forward(theta, keys) -> (trials, 4)`` statistics, ``value_and_grad(theta, keys, target, scale)``
    -> ``((loss, stats), dloss/dtheta)`` (reverse mode, for Adam) and ``jacobian(theta, keys)`` -> ``(J, stats)``
    with ``J[i, j] = d mean stat_i / d theta_j`` (forward mode, four tangents; for Gauss-Newton)."""
    def batch(theta, keys, structure, base, slopes=None):
        return jax.vmap(lambda k: run_stats(theta, k, structure, base, leaf, cfg, slopes))(keys)

    def loss(theta, keys, target, scale, structure, base, slopes):
        stats = batch(theta, keys, structure, base, slopes)
        return jnp.sum(((stats.mean(0) - target) / scale) ** 2), stats

    forward = jax.jit(batch)
    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    def mean_stats(theta, keys, structure, base, slopes):
        stats = batch(theta, keys, structure, base, slopes)
        return stats.mean(0), stats

    mean_jacobian = jax.jit(jax.jacfwd(mean_stats, has_aux=True))

    def grad(theta, keys, target, scale, slopes=None):
        with warnings.catch_warnings():
            # the mean-field estimator differentiates the whole parameter tree, so tracing it warns that
            # the (here untrained) drive rate has no gradient: not a problem of this fit
            warnings.filterwarnings("ignore", message="the gradient with respect to .*rate is zero")
            return value_and_grad(jnp.asarray(theta, jnp.float32), keys, target, scale, structure, base, slopes)

    def jacobian(theta, keys, slopes=None):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="the gradient with respect to .*rate is zero")
            return mean_jacobian(jnp.asarray(theta, jnp.float32), keys, structure, base, slopes)

    # the structure goes in as an argument (its index arrays would otherwise become constants)
    return (lambda theta, keys: forward(jnp.asarray(theta, jnp.float32), keys, structure, base), grad, jacobian)


def batched(forward, theta, keys, trials: int) -> np.ndarray:
    """Statistics ``(n_keys, 4)`` of many keys, in calls of ``trials`` keys (one compiled program)."""
    return np.concatenate([np.asarray(forward(theta, keys[i:i + trials])) for i in range(0, len(keys), trials)])


def chi2(stats_mean, target, scale) -> float:
    """The loss of a mean of statistics: sum of squared standardised differences; ``inf`` for a poisoned
    (NaN) run, e.g. one where the tutorial's Euler left its stable range (:mod:`jaxlif._stability`), so
    that the searches treat it as the worst candidate."""
    value = float(np.sum(((np.asarray(stats_mean) - target) / scale) ** 2))
    return value if np.isfinite(value) else float("inf")


def _r(x, digits: int = 2) -> list:
    """A short printable list of floats."""
    return [round(float(v), digits) for v in np.asarray(x).ravel()]


def _keys(root, sub: int, index: int | None, n: int):
    k = jax.random.fold_in(root, sub)
    return jax.random.split(k if index is None else jax.random.fold_in(k, index), n)


# ----------------------------------------------------------------------------------------------
# The three optimisers
# ----------------------------------------------------------------------------------------------


def closed_slopes_at(theta, keys, structure, base, leaf, cfg, log=None) -> dict:
    """The CV's closed-loop slopes ``{population: dCV/dr [per Hz]}`` at ``theta`` on ``keys``
    (:func:`jaxlif.network.closed_loop_slopes`), as float32 scalars for the gradient programs.  Their standard
    errors and condition number go to ``log`` (instead of the library's warnings); slopes that are not finite
    raise (the programs take them as traced values, which the library does not check)."""
    start = int(round(cfg.late_start / cfg.dt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nw.RecurrentGradientWarning)        # logged below instead
        got = nw.closed_loop_slopes(keys, structure, with_theta(base, jnp.asarray(theta, jnp.float32), leaf), T=cfg.T,
                                    dt=cfg.dt, statistics={"cv": ("E", late_cv_statistic(start))})
    slopes, se = got.slopes["cv"], got.se["cv"]
    if log is not None:
        log("closed-loop slopes of the CV: " + ", ".join(f"{a} {slopes[a]:.3g} +- {se[a]:.2g}" for a in slopes)
            + f" per Hz ({got.keys} keys, condition {got.condition:.3g})")
    if not all(math.isfinite(v) for v in slopes.values()):
        raise RuntimeError(f"the CV's closed-loop slopes at theta {np.round(np.asarray(theta), 3).tolist()} are not "
                           f"finite ({slopes}); a population's rate did not move: use more keys (--closed-slopes) or "
                           f"run without slopes")
    return {a: jnp.float32(v) for a, v in slopes.items()}


def _slopes_for_step(measure, theta, i: int, cfg, hist: dict, slopes, log, method: str):
    """The CV's closed-loop slopes for step ``i`` of a fit: re-measured (``measure(theta, i)``, recorded in
    ``hist["slopes"]`` and logged) every ``cfg.slopes_every`` steps, else the current ``slopes``; ``None`` without
    ``measure``."""
    if measure is None or i % cfg.slopes_every:
        return slopes
    slopes = measure(theta, i)
    hist["slopes"].append([i, {a: float(v) for a, v in slopes.items()}])
    log(f"{method} step {i}: closed-loop slopes of the CV " + ", ".join(f"{a} {float(v):.3g}" for a, v in
                                                                      slopes.items()) + " per Hz")
    return slopes


def _step_cost(seconds: list, t_fwd, cfg, with_slopes: bool) -> float:
    """A fit's cost per step in forward calls.  With slopes, the first step's (measured before the timing, with
    the compilation) are added to its time as their runs, ``2 P = 4`` per key over ``trials`` runs per call, and
    the mean counts the steps that re-measure them; else the median step."""
    if with_slopes:
        seconds[0] += float(np.median(t_fwd)) * 4 * cfg.closed_slopes / cfg.trials
    return float((np.mean(seconds) if with_slopes else np.median(seconds)) / np.median(t_fwd))


def fit_adam(grad, theta0, target, scale, root, cfg, log, measure=None):
    """Adam from ``theta0``; a new key set per step.  Returns the history (theta before each step, loss, time).
    ``measure(theta, i)``: the CV's closed-loop slopes, re-measured every ``cfg.slopes_every`` steps (its time
    counts in the step's)."""
    opt = optax.adam(optax.cosine_decay_schedule(cfg.learning_rate, cfg.steps, alpha=0.1))
    theta = jnp.asarray(theta0, jnp.float32)
    state = opt.init(theta)
    hist = dict(theta=[], loss=[], grad=[], seconds=[], slopes=[])
    slopes = None
    for i in range(cfg.steps):
        t0 = time.perf_counter()
        slopes = _slopes_for_step(measure, theta, i, cfg, hist, slopes, log, "adam")
        (value, _), g = grad(theta, _keys(root, 2, i, cfg.trials), target, scale, slopes)
        g = jax.block_until_ready(g)
        hist["seconds"].append(time.perf_counter() - t0)
        hist["theta"].append(np.asarray(theta))
        hist["loss"].append(float(value))
        hist["grad"].append(np.asarray(g))
        if not np.all(np.isfinite(np.asarray(g))):
            log(f"adam step {i}: gradient not finite ({np.asarray(g)}); step skipped")
            continue
        updates, state = opt.update(g, state)
        theta = optax.apply_updates(theta, updates)
    hist["theta"].append(np.asarray(theta))
    return hist


def gauss_newton_step(J, stats_mean, target, scale, damping: float, max_step: float) -> np.ndarray:
    """One damped Gauss-Newton (Levenberg-Marquardt) step on ``L = sum_i z_i^2``, ``z = (s - t) / scale``:
    ``delta = -(J_z^T J_z + damping I)^-1 J_z^T z`` with the standardised Jacobian ``J_z = J / scale``, each
    coordinate clipped to +- ``max_step``.  (The damping keeps the step short along the directions that the
    statistics hardly determine, U0 here, and averages the noise of a few runs over steps.)"""
    Jz = np.asarray(J, float) / np.asarray(scale, float)[:, None]
    z = (np.asarray(stats_mean, float) - np.asarray(target, float)) / np.asarray(scale, float)
    delta = -np.linalg.solve(Jz.T @ Jz + damping * np.eye(Jz.shape[1]), Jz.T @ z)
    return np.clip(delta, -max_step, max_step)


def fit_gauss_newton(jacobian, theta0, target, scale, n_steps: int, root, cfg, log, measure=None):
    """Damped Gauss-Newton from ``theta0`` on the estimator's Jacobian of the four statistics (one forward-mode
    call per step, the same drive keys as Adam's step of the same index); from the first step whose runs' loss
    is at most ``cfg.gn_average_below``, the ``n``-th step after it shrunk by ``1 / (n + 1)`` (module
    docstring).  Returns the history (theta before each step, loss of the step's runs, time, Jacobian, gain)."""
    theta = np.asarray(theta0, float)
    hist = dict(theta=[], loss=[], seconds=[], jacobian=[], stats=[], slopes=[], gain=[])
    slopes, settled = None, None        # settled: the first step whose runs' loss reached the noise level
    for i in range(n_steps):
        t0 = time.perf_counter()
        slopes = _slopes_for_step(measure, theta, i, cfg, hist, slopes, log, "gauss-newton")
        J, stats = jacobian(theta, _keys(root, 2, i, cfg.trials), slopes)
        J, mean = np.asarray(jax.block_until_ready(J), float), np.asarray(stats, float).mean(0)
        hist["seconds"].append(time.perf_counter() - t0)
        hist["theta"].append(theta.copy())
        hist["loss"].append(chi2(mean, target, scale))
        hist["jacobian"].append(J)
        hist["stats"].append(mean)
        if not (np.all(np.isfinite(J)) and np.all(np.isfinite(mean))):
            log(f"gauss-newton step {i}: Jacobian or statistics not finite; step skipped")
            hist["gain"].append(0.0)
            continue
        if settled is None and hist["loss"][-1] <= cfg.gn_average_below:
            settled = i
        gain = 1.0 if settled is None else 1.0 / (i - settled + 1)
        hist["gain"].append(gain)
        theta = theta + gain * gauss_newton_step(J, mean, target, scale, cfg.damping, cfg.gn_max_step)
    hist["theta"].append(theta.copy())
    return hist


def fit_es(forward, theta0, target, scale, budget: int, root, cfg):
    """(1+1)-ES with the 1/5 success rule; parent and child on the same fresh keys (2 forward calls per
    generation) until ``budget`` forward calls are spent.  Returns the history per generation."""
    theta, sigma = np.asarray(theta0, float), cfg.es_sigma
    hist = dict(theta=[theta.copy()], loss=[], calls=[], sigma=[])
    calls, g = 0, 0
    while calls + 2 <= budget:
        keys = _keys(root, 3, g, cfg.trials)
        child = theta + sigma * np.asarray(jax.random.normal(jax.random.fold_in(jax.random.fold_in(root, 6), g), (4,)))
        lp = chi2(np.asarray(forward(theta, keys)).mean(0), target, scale)
        lc = chi2(np.asarray(forward(child, keys)).mean(0), target, scale)
        calls += 2
        if lc < lp:
            theta, sigma, loss = child, sigma * 1.5, lc
        else:
            sigma, loss = sigma * 1.5 ** -0.25, lp
        hist["theta"].append(theta.copy())
        hist["loss"].append(loss)
        hist["calls"].append(calls)
        hist["sigma"].append(sigma)
        g += 1
    return hist


def fit_random(forward, theta0, target, scale, budget: int, root, cfg):
    """Random search: ``budget`` candidates uniform in theta0 +- box, one forward call each on fresh keys."""
    cand, losses = [], []
    for c in range(budget):
        u = np.asarray(jax.random.uniform(jax.random.fold_in(jax.random.fold_in(root, 4), c), (4,),
                                          minval=-1.0, maxval=1.0))
        theta = np.asarray(theta0, float) + cfg.box * u
        cand.append(theta)
        losses.append(chi2(np.asarray(forward(theta, _keys(root, 5, c, cfg.trials))).mean(0), target, scale))
    best = int(np.argmin(losses))
    return dict(theta=np.asarray(cand), loss=np.asarray(losses), best=best, best_so_far=np.minimum.accumulate(losses))


# ----------------------------------------------------------------------------------------------
# Identifiability
# ----------------------------------------------------------------------------------------------


def jacobian(forward, theta, keys, h: float, trials: int) -> tuple[np.ndarray, np.ndarray]:
    """``J[i, j] = d stat_i / d theta_j`` by central differences on common random numbers (the same keys):
    the mean over keys and its SE ``(4, 4)`` each."""
    cols = []
    for j in range(4):
        e = np.zeros(4)
        e[j] = h
        plus, minus = (batched(forward, theta + s * e, keys, trials) for s in (1, -1))
        cols.append((plus - minus) / (2 * h))                       # (n_keys, 4 stats)
    per_key = np.stack(cols, axis=2)                                # (n_keys, stat, theta)
    return C.mean_sem(per_key, axis=0)


def estimator_jacobian(grad, theta, keys, slopes=None) -> np.ndarray:
    """The gradient estimator's ``d stat_i / d theta_j`` (mean over ``keys``, one call's batch), from the loss
    gradient program alone: with unit scales ``dL/dtheta = sum_i 2 (s_i - t_i) ds_i/dtheta`` is linear in
    the target ``t``, so ``(g(t=0) - g(t=e_i)) / 2 = ds_i/dtheta`` (same keys, same primal run)."""
    ones, zero = jnp.ones(4, jnp.float32), jnp.zeros(4, jnp.float32)
    extra = () if slopes is None else (slopes,)
    g0 = np.asarray(grad(theta, keys, zero, ones, *extra)[1], float)
    return np.stack([(g0 - np.asarray(grad(theta, keys, zero.at[i].set(1.0), ones, *extra)[1], float)) / 2.0
                     for i in range(4)])


def sign_agreement(J_est, J_fd, se_fd) -> tuple[int, int]:
    """``(agree, clear)``: entries whose finite difference is clearly non-zero (``|J_fd| > 2 SE``) and, of
    those, how many the estimator gives with the same sign."""
    clear = np.abs(J_fd) > 2 * se_fd
    return int(np.sum(clear & (np.sign(J_est) == np.sign(J_fd)))), int(np.sum(clear))


def cv_rate_check(structure, params, keys, cfg) -> dict:
    """Does the CV follow the E rate in the closed loop as in the estimator's replays?  (The assumption of
    its derivative through the rate: :func:`jaxlif.network.rate_slopes`, at ``params`` on ``keys``.)"""
    start = int(round(cfg.late_start / cfg.dt))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nw.RecurrentGradientWarning)        # the verdict is reported instead
        r = nw.rate_slopes(keys, structure, params, T=cfg.T, dt=cfg.dt,
                           statistics={"cv": ("E", late_cv_statistic(start))})
    return dict(open_loop=float(r.open_loop[0]), open_loop_se=float(r.open_loop_se[0]),
                closed_loop=float(r.closed_loop[0]), closed_loop_se=float(r.closed_loop_se[0]), keys=r.keys,
                verdict=r.verdict[0])


def identifiability(J, sd, ref_trials: int) -> dict:
    """Singular values/vectors of the standardised Jacobian ``J / sd`` and each parameter's standard
    deviation given a target of ``ref_trials`` runs (``sqrt(diag((J_z^T J_z)^-1) / ref_trials)``, theta units)."""
    Jz = J / sd[:, None]
    u, s, vt = np.linalg.svd(Jz)
    F = Jz.T @ Jz
    with np.errstate(all="ignore"):
        try:
            cov = np.linalg.inv(F) / ref_trials
            param_sd = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
        except np.linalg.LinAlgError:
            param_sd = np.full(4, np.inf)
    return dict(jacobian=J, jacobian_standardised=Jz, singular_values=s, right_singular_vectors=vt,
                param_sd_theta=param_sd)


# ----------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------


def markdown(cfg, target, sd, evals, ident, ratio, budget, adam, conclusion, gn, gn_ratio) -> str:
    """``train_network.md``: the tables of the run (statistics with SE, parameters, cost, identifiability)."""
    se_t = sd / math.sqrt(cfg.ref_trials)
    methods = tuple(m for m in METHODS if m in evals)
    lines = [f"# Training a {cfg.n_E} E + {cfg.n_I} I network with STP to a hidden network's statistics", "",
             f"`python experiments/train_network.py` (seed {cfg.seed}, T {cfg.T:g} ms, {cfg.trials} runs per call, "
             f"{cfg.steps} Adam steps, {budget} forward calls per baseline){' --quick' if cfg.quick else ''}.", "",
             f"## Statistics on {cfg.eval_trials} common fresh keys (mean +- SE)", "",
             "| | target | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    for i, stat in enumerate(STATS):
        lines.append(f"| {STAT_LABELS[stat]} | {target[i]:.4g} +- {se_t[i]:.2g} | " + " | ".join(
            f"{evals[m]['stats_mean'][i]:.4g} +- {evals[m]['stats_se'][i]:.2g}" for m in methods) + " |")
    lines.append("| loss (sum of squared z) | | " + " | ".join(f"{evals[m]['loss']:.3g}" for m in methods) + " |")
    lines += ["", "## Parameters", "", "| | " + " | ".join(methods) + " | determined to (theta units) |",
              "|---" * (len(methods) + 2) + "|"]
    for k, p in enumerate(PARAMS):
        lines.append(f"| {LABELS[p]} | " + " | ".join(f"{evals[m]['values'][k]:.3g}" for m in methods)
                     + f" | {ident['param_sd_theta'][k]:.2g} |")
    lines += ["", "## Cost", "",
              f"Median wall time of a gradient step {np.median(adam['seconds']):.3g} s = {ratio:.2f} forward calls "
              f"measured in this run (nominal cost of the mean-field estimator: 10); every baseline got {budget} forward calls "
              f"(`--cost-ratio` {cfg.cost_ratio:g} x {cfg.steps} steps, fixed so that it does not depend on timing)."
              + f" Gauss-Newton: {len(gn['loss'])} steps of a forward-mode Jacobian, each counted as "
                f"{cfg.gn_cost_ratio:g} forward calls (`--gn-cost-ratio`), {gn_ratio:.2f} measured "
                f"(median {np.median(gn['seconds']):.3g} s); step gains " + ", ".join(f"{g:.2g}" for g in gn["gain"])
                + f" (shrunk from the first step with a loss <= `--gn-average-below` {cfg.gn_average_below:g}).", "",
              "## Conclusion", "", conclusion, ""]
    return "\n".join(lines)


def run(cfg, log, files) -> dict:
    caveat = " [--quick: too small and too short for conclusions]" if cfg.quick else ""
    root = C.experiment_key(cfg.seed, STREAM)
    structure, base, leaf = build(jax.random.fold_in(root, 0), cfg)
    forward, grad, jacobian_fn = programs(structure, base, leaf, cfg)
    theta_hidden, theta_start = to_theta(cfg.hidden, leaf), to_theta(cfg.start, leaf)
    log(f"network: {cfg.n_E} E + {cfg.n_I} I neurons, p = {cfg.p:g}, T = {cfg.T:g} ms; theta "
        f"{list(PARAMS)}: hidden {cfg.hidden}, start {cfg.start}")

    # --- target: the reference network on ref_trials keys (also compiles and times the forward call) ----
    t0 = time.perf_counter()
    ref_keys = _keys(root, 1, None, cfg.ref_trials)
    first = np.asarray(forward(theta_hidden, ref_keys[:cfg.trials]))
    compile_forward = time.perf_counter() - t0
    ref = np.concatenate([first, batched(forward, theta_hidden, ref_keys[cfg.trials:], cfg.trials)]) \
        if cfg.ref_trials > cfg.trials else first
    target, sd = ref.mean(0), ref.std(0, ddof=1)
    if not np.all(np.isfinite(target)) or np.any(target[:2] <= 0):
        raise RuntimeError(f"the reference network is silent or invalid (statistics {target}); choose other "
                           f"--hidden values")
    sd = np.where(sd > 0, sd, np.maximum(np.abs(target) * 1e-3, 1e-6))
    scale = sd * math.sqrt(1.0 / cfg.ref_trials + 1.0 / cfg.trials)
    log("target: " + ", ".join(f"{n} {m:.4g} +- {s / math.sqrt(cfg.ref_trials):.2g}" for n, m, s in zip(STATS, target, sd)))

    # --- compile and time: the gradient program once, the forward call three times on the same keys -----
    # (with --closed-slopes: the slopes at the start, which Adam's first step uses, measured first, so that the
    # gradient program compiled here is the one with slopes)
    measure = first = None
    if getattr(cfg, "closed_slopes", 0):
        first = closed_slopes_at(theta_start, _keys(root, 5, 0, cfg.closed_slopes), structure, base, leaf, cfg, log)
        measure = (lambda th, i: first if i == 0 else
                   closed_slopes_at(th, _keys(root, 5, i, cfg.closed_slopes), structure, base, leaf, cfg, log))
    tkeys = _keys(root, 2, 10**6, cfg.trials)
    t0 = time.perf_counter()
    jax.block_until_ready(grad(theta_start, tkeys, target, scale, first))
    compile_grad = time.perf_counter() - t0
    t_fwd = []
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(forward(theta_start, tkeys))
        t_fwd.append(time.perf_counter() - t0)

    # --- the gradient fit; its steps' wall times against the forward call's are reported beside the budget ----
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", nw.gradients.RecurrentGradientWarning)
        adam = fit_adam(grad, theta_start, target, scale, root, cfg, log, measure)
    unstable = sum(issubclass(w.category, nw.gradients.RecurrentGradientWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, nw.gradients.RecurrentGradientWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    ratio = _step_cost(adam["seconds"], t_fwd, cfg, measure is not None)
    t_grad = adam["seconds"]
    budget = max(2, int(round(cfg.cost_ratio * cfg.steps)))
    log(f"adam: loss {adam['loss'][0]:.4g} -> {adam['loss'][-1]:.4g} in {cfg.steps} steps; {unstable} "
        f"unstable-estimator warnings; forward {np.median(t_fwd):.3g} s, value+gradient {np.median(t_grad):.3g} s "
        f"per call of {cfg.trials} keys: a gradient step costs {ratio:.2f} forward calls (measured); baselines get {budget} "
        f"(--cost-ratio {cfg.cost_ratio:g})")

    # --- damped Gauss-Newton on the estimator's Jacobian, the same budget at its fixed cost per step -------
    gn_steps = max(1, int(budget // cfg.gn_cost_ratio))
    t0 = time.perf_counter()
    jax.block_until_ready(jacobian_fn(theta_start, tkeys, first)[0])
    compile_jacobian = time.perf_counter() - t0
    gn = fit_gauss_newton(jacobian_fn, theta_start, target, scale, gn_steps, root, cfg, log, measure)
    gn_ratio = _step_cost(gn["seconds"], t_fwd, cfg, measure is not None)
    log(f"gauss-newton: loss {gn['loss'][0]:.4g} -> {gn['loss'][-1]:.4g} in {gn_steps} steps (budget {budget} / "
        f"--gn-cost-ratio {cfg.gn_cost_ratio:g}); a step costs {gn_ratio:.2f} forward calls (measured)")

    # --- the gradient-free baselines on the same number of forward calls ---------------------------------
    es = fit_es(forward, theta_start, target, scale, budget, root, cfg)
    rs = fit_random(forward, theta_start, target, scale, budget, root, cfg)
    log(f"(1+1)-ES: {len(es['loss'])} generations, last loss {es['loss'][-1] if es['loss'] else float('nan'):.4g}; "
        f"random search: best loss {rs['loss'][rs['best']]:.4g} of {budget}")

    # --- evaluation on common fresh keys ---------------------------------------------------------------
    eval_keys = _keys(root, 7, None, cfg.eval_trials)
    finals = {"start": theta_start, "hidden": theta_hidden, "adam": adam["theta"][-1],
              "gauss_newton": gn["theta"][-1], "es": es["theta"][-1], "random": rs["theta"][rs["best"]]}
    evals = {}
    for name, th in finals.items():
        st = batched(forward, th, eval_keys, cfg.trials)
        m, se = C.mean_sem(st, axis=0)
        evals[name] = dict(theta=np.asarray(th), values=[float(v) for v in from_theta(jnp.asarray(th, jnp.float32), leaf)],
                           stats_mean=m, stats_se=se,
                           loss=chi2(m, target, sd * math.sqrt(1.0 / cfg.ref_trials + 1.0 / cfg.eval_trials)))
    # --- identifiability at the hidden theta ----------------------------------------------------------
    J, J_se = jacobian(forward, theta_hidden, eval_keys, cfg.fd_step, cfg.trials)
    ident = identifiability(J, sd, cfg.ref_trials)
    ident["jacobian_se"] = J_se
    # --- does the gradient estimator point the right way?  Its Jacobian on the first evaluation batch ---
    hidden_slopes = measure(theta_hidden, 10**6) if measure is not None else None
    J_est = estimator_jacobian(grad, jnp.asarray(theta_hidden, jnp.float32), eval_keys[:cfg.trials], hidden_slopes)
    agree, clear = sign_agreement(J_est, J, J_se)
    # the same Jacobian in forward mode (Gauss-Newton's program), on the same keys: the two modes must agree
    J_fwd = np.asarray(jacobian_fn(theta_hidden, eval_keys[:cfg.trials], hidden_slopes)[0], float)
    ident.update(estimator_jacobian=J_est, sign_agree=agree, sign_clear=clear, estimator_jacobian_forward=J_fwd,
                 forward_vs_reverse=float(np.max(np.abs(J_fwd - J_est)) / max(float(np.max(np.abs(J_est))), 1e-30)))
    log(f"estimator vs finite differences at the hidden theta: same sign in {agree} of {clear} clearly non-zero "
        f"entries of d stat / d theta")
    cv_check = (cv_rate_check(structure, with_theta(base, jnp.asarray(theta_hidden, jnp.float32), leaf),
                              eval_keys, cfg) if getattr(cfg, "cv_through_rate", 1) else None)
    if cv_check:
        log(f"the CV per E rate at the hidden theta: {cv_check['closed_loop']:.3g} +- {cv_check['closed_loop_se']:.2g} "
            f"per Hz in the closed loop, {cv_check['open_loop']:.3g} +- {cv_check['open_loop_se']:.2g} in the "
            f"estimator's replays ({cv_check['verdict']})")
    log("evaluation (loss of the mean of " f"{cfg.eval_trials} runs): " +
        ", ".join(f"{n} {e['loss']:.3g}" for n, e in evals.items()))

    # --- figures ---------------------------------------------------------------------------------------
    sims_adam = cfg.cost_ratio * np.arange(cfg.steps + 1)
    sims_gn = cfg.gn_cost_ratio * np.arange(gn_steps + 1)
    es_calls = np.concatenate([[0], es["calls"]])
    values = lambda thetas: np.asarray([[float(v) for v in from_theta(jnp.asarray(t, jnp.float32), leaf)]
                                        for t in thetas])
    adam_v, gn_v, es_v = values(adam["theta"]), values(gn["theta"]), values(es["theta"])
    rs_best_v = values([rs["theta"][int(np.argmin(rs["loss"][:i + 1]))] for i in range(budget)])
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes[0, 0]
    ax.semilogy(sims_adam[:-1], adam["loss"], "o-", ms=3, color="tab:blue", label="Adam (surrogate + mean-field gradient)")
    ax.semilogy(sims_gn[:-1], gn["loss"], "s-", ms=3, color="tab:purple", label="Gauss-Newton (the same estimator's Jacobian)")
    if es["loss"]:
        ax.semilogy(es["calls"], es["loss"], "-", color="tab:orange", label="(1+1)-ES (parent's loss)")
    ax.semilogy(np.arange(1, budget + 1), rs["best_so_far"], "-", color="tab:green", label="random search (best so far)")
    ax.axhline(4.0, color="k", ls=":", lw=1, label="noise level (chi-square mean, 4)")
    ax.set(xlabel="forward-simulation equivalents (calls of --trials runs)", ylabel="loss (sum of squared z)",
           title="Loss of each call's runs")
    ax.legend(fontsize=7)
    for k, (ax, pname) in enumerate(zip(axes.ravel()[1:5], PARAMS)):
        ax.plot(sims_adam, adam_v[:, k], "o-", ms=3, color="tab:blue", label="Adam")
        ax.plot(sims_gn, gn_v[:, k], "s-", ms=3, color="tab:purple", label="Gauss-Newton")
        ax.plot(es_calls, es_v[:, k], "-", color="tab:orange", label="(1+1)-ES")
        ax.plot(np.arange(1, budget + 1), rs_best_v[:, k], "-", color="tab:green", label="random search (best)")
        ax.axhline(cfg.hidden[k], color="k", ls="--", lw=1, label="hidden")
        ax.set(xlabel="forward-simulation equivalents", ylabel=LABELS[pname],
               title=f"{LABELS[pname]}: hidden {cfg.hidden[k]:g}, determined to +-{ident['param_sd_theta'][k]:.2g} "
                     f"({'log' if k < 3 else 'logit'})")
        ax.title.set_fontsize(9)
        if k == 0:
            ax.legend(fontsize=7)
    ax = axes[1, 2]
    for vals, x, col, lab in ((adam_v, sims_adam, "tab:blue", "Adam"), (gn_v, sims_gn, "tab:purple", "Gauss-Newton"),
                              (es_v, es_calls, "tab:orange", "(1+1)-ES"),
                              (rs_best_v, np.arange(1, budget + 1), "tab:green", "random search (best)")):
        ax.plot(x, vals[:, 1] * vals[:, 3], "-", color=col, label=lab)
    ax.axhline(cfg.hidden[1] * cfg.hidden[3], color="k", ls="--", lw=1, label="hidden")
    ax.set(xlabel="forward-simulation equivalents", ylabel="E->E scale x U0 (rested efficacy)",
           title="E->E rested efficacy, scale x U0")
    fig.suptitle(f"Fitting 4 parameters of a {cfg.n_E} E + {cfg.n_I} I network with STP to its E/I rates, ISI CV and "
                 f"count correlation: a gradient step counted as {cfg.cost_ratio:g} forward calls ({ratio:.1f} measured); "
                 f"{cfg.steps} Adam steps, {gn_steps} Gauss-Newton steps (counted as {cfg.gn_cost_ratio:g}) vs {budget} "
                 f"forward calls per baseline{caveat}", fontsize=10)
    fig.tight_layout()
    C.save_figure(fig, cfg.out, "training.png", files)

    fig, axes = plt.subplots(1, 6, figsize=(24, 4.4), gridspec_kw=dict(width_ratios=[1, 1, 1, 1, 1.3, 1.3]))
    names = list(finals)
    colours = {"start": "tab:gray", "hidden": "k", "adam": "tab:blue", "gauss_newton": "tab:purple", "es": "tab:orange",
               "random": "tab:green"}
    for i, (ax, stat) in enumerate(zip(axes, STATS)):
        for j, n in enumerate(names):
            ax.errorbar([j], [evals[n]["stats_mean"][i]], yerr=[evals[n]["stats_se"][i]], fmt="o", capsize=3,
                        color=colours[n])
        ax.axhspan(target[i] - sd[i] / math.sqrt(cfg.ref_trials), target[i] + sd[i] / math.sqrt(cfg.ref_trials),
                   color="k", alpha=0.15, label=f"target +- SE ({cfg.ref_trials} runs)")
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set(ylabel=STAT_LABELS[stat], xlabel="parameters", title=f"{STAT_LABELS[stat]}, mean +- SE")
        ax.title.set_fontsize(9)
        if i == 0:
            ax.legend(fontsize=7)
    Jz = ident["jacobian_standardised"]
    Jz_est = J_est / sd[:, None]
    lim = float(np.nanmax(np.abs(Jz))) or 1.0
    titles = (f"finite differences ({cfg.eval_trials} keys, CRN)\nsingular values "
              + ", ".join(f"{s:.2g}" for s in ident["singular_values"]),
              f"gradient estimator ({cfg.trials} keys)\nsign of FD in {agree} of {clear} clear entries")
    for ax, M, title in zip(axes[4:], (Jz, Jz_est), titles):
        im = ax.imshow(np.clip(M, -lim, lim), cmap="RdBu_r", vmin=-lim, vmax=lim)
        for (r, c), v in np.ndenumerate(M):
            ax.text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(4), [LABELS[p] for p in PARAMS], rotation=30, fontsize=7, ha="right")
        ax.set_yticks(range(4), [STAT_LABELS[s] for s in STATS], fontsize=7)
        ax.set(xlabel="parameter (theta)", title=title)
        ax.title.set_fontsize(8)
        fig.colorbar(im, ax=ax, label="d stat / d theta / sd at hidden (clipped)")
    fig.suptitle(f"Statistics on {cfg.eval_trials} common fresh keys at each method's final parameters; right: "
                 f"sensitivities at the hidden parameters (numbers in the cells; 'clear': |FD| > 2 SE){caveat}",
                 fontsize=10)
    fig.tight_layout()
    C.save_figure(fig, cfg.out, "statistics.png", files)

    # --- conclusion ------------------------------------------------------------------------------------
    rel_err = {n: np.abs(evals[n]["theta"] - theta_hidden) for n in FITS}
    identified = [p for p, s in zip(PARAMS, ident["param_sd_theta"]) if np.isfinite(s) and s < 0.1]
    sloppy = ident["right_singular_vectors"][-1]
    sloppy_text = " ".join(f"{c:+.2f} {p}" for c, p in zip(sloppy, PARAMS))
    best = min(FITS, key=lambda n: evals[n]["loss"])
    others = [p for p in PARAMS if p not in identified]
    if not others:
        ident_text = "all four are locally identifiable (standard deviation below 0.1 in theta)"
    else:
        ident_text = (f"{', '.join(identified) if identified else 'none'} locally identifiable (standard deviation "
                      f"below 0.1 in theta), {', '.join(others)} only in combination")
    conclusion = (
        f"A {cfg.n_E} E + {cfg.n_I} I network with depressing E->E synapses, {cfg.T:g} ms runs: target E "
        f"{target[0]:.2f} Hz, I {target[1]:.2f} Hz, ISI CV {target[2]:.3f}, count correlation {target[3]:.4f}. "
        f"A gradient step (surrogate, mean-field recurrent estimator) took {np.median(adam['seconds']):.2f} s, "
        f"{ratio:.1f} forward calls of {cfg.trials} runs (the estimator's nominal cost is 10; the baselines' budget counts "
        f"a step as {cfg.cost_ratio:g}). On {cfg.eval_trials} "
        f"fresh keys the loss (chi-square-like, about 4 at the hidden parameters; here "
        f"{evals['hidden']['loss']:.2f}) fell from {evals['start']['loss']:.3g} at the start to "
        f"{evals['adam']['loss']:.3g} after {cfg.steps} Adam steps and {evals['gauss_newton']['loss']:.3g} after "
        f"{gn_steps} damped Gauss-Newton steps on the same estimator's Jacobian ({_gain_text(gn['gain'])}; a step "
        f"{gn_ratio:.1f} forward calls, "
        f"counted as {cfg.gn_cost_ratio:g}), against {evals['es']['loss']:.3g} for a (1+1)-ES "
        f"and {evals['random']['loss']:.3g} for random search on the same {budget} forward calls (best: {best}). "
        f"Parameter error |theta - hidden| (log or logit units, in the order {', '.join(PARAMS)}): Adam "
        f"{_r(rel_err['adam'])}, Gauss-Newton {_r(rel_err['gauss_newton'])}, ES {_r(rel_err['es'])}, random "
        f"{_r(rel_err['random'])}. Identifiability from the standardised finite-difference "
        f"Jacobian at the hidden parameters: singular values {_r(ident['singular_values'], 3)}; "
        f"the least determined direction is ({sloppy_text}); with a {cfg.ref_trials}-run target each parameter is "
        f"determined to {_r(ident['param_sd_theta'])} (theta units): {ident_text}. This is a linearisation at the "
        f"hidden point: a distant parameter set can still fit almost as well (compare the methods' final "
        f"parameters and losses above). Does the gradient point the right way? At the hidden parameters the estimator's "
        f"d stat / d theta has the sign of the finite difference in {agree} of the {clear} entries that the "
        f"finite differences show clearly non-zero." + _cv_text(cv_check) + _closed_text(cfg, hidden_slopes) + caveat)
    log(conclusion)
    (Path(cfg.out) / f"{NAME}.md").write_text(markdown(cfg, target, sd, evals, ident, ratio, budget, adam, conclusion,
                                                       gn, gn_ratio))
    return dict(name=NAME, figures=files, conclusion=conclusion, units="ms, nS, Hz", seed=cfg.seed,
                config={k: v for k, v in vars(cfg).items() if not k.startswith("_") and k != "out"},
                params=list(PARAMS), stats=list(STATS), theta_hidden=theta_hidden, theta_start=theta_start,
                target=dict(mean=target, sd=sd, se=sd / math.sqrt(cfg.ref_trials), per_run=ref, loss_scale=scale),
                timing=dict(forward_s=t_fwd, grad_s=t_grad, ratio_grad_to_forward=ratio, nominal_ratio=10.0, cost_ratio=cfg.cost_ratio,
                            compile_forward_s=compile_forward, compile_grad_s=compile_grad,
                            adam_step_s=adam["seconds"], adam_step_median_s=float(np.median(adam["seconds"])),
                            compile_jacobian_s=compile_jacobian, gn_step_s=gn["seconds"], gn_ratio=gn_ratio,
                            gn_cost_ratio=cfg.gn_cost_ratio),
                budget_forward_calls=budget,
                adam=dict(theta=adam["theta"], values=adam_v, loss=adam["loss"], grad=adam["grad"],
                          unstable_warnings=unstable, closed_slopes=adam["slopes"],
                          hidden_slopes=None if hidden_slopes is None else {a: float(v) for a, v in
                                                                             hidden_slopes.items()}),
                gauss_newton=dict(theta=gn["theta"], values=gn_v, loss=gn["loss"], jacobian=gn["jacobian"],
                                  stats=gn["stats"], steps=gn_steps, closed_slopes=gn["slopes"], gain=gn["gain"]),
                es=dict(theta=es["theta"], values=es_v, loss=es["loss"], calls=es["calls"], sigma=es["sigma"]),
                random=dict(theta=rs["theta"], loss=rs["loss"], best=rs["best"]),
                evaluation=evals, identifiability=ident, identified=identified, cv_rate_check=cv_check)


def _gain_text(gains) -> str:
    """Where Gauss-Newton's steps began to shrink (:func:`fit_gauss_newton`), in words."""
    shrunk = [i for i, g in enumerate(gains) if 0.0 < g < 1.0]
    if not shrunk:
        return "every step taken in full: no step's loss reached --gn-average-below"
    return (f"steps {shrunk[0]}-{len(gains) - 1} shrunk by 1/2 .. 1/{len(gains) - shrunk[0] + 1} after step "
            f"{shrunk[0] - 1} reached the noise level, so the result is the mean of {len(gains) - shrunk[0] + 1} "
            f"landing points")


_VERDICT = {"agree": "they agree, so the CV's derivative through the rate can be used here",
            "differ": "they differ (beyond 3 SE), so the CV's derivative through the rate is not to be trusted here "
                      "(docs/networks.md, rate_slopes)",
            "unresolved": "too few keys or too short a run to tell (the closed-loop slope is NaN or not known to a "
                          "third of the open-loop one), so the CV's derivative through the rate is unchecked here"}


def _cv_text(check) -> str:
    """The conclusion's sentence on the CV's derivative through the rate (``check``: :func:`cv_rate_check`)."""
    if check is None:
        return ""
    verdict = _VERDICT[check["verdict"]]
    return (f" The CV's derivative goes through the E rate: per Hz of E rate the CV moves "
            f"{check['closed_loop']:.3g} +- {check['closed_loop_se']:.2g} in the running network and "
            f"{check['open_loop']:.3g} +- {check['open_loop_se']:.2g} in the estimator's replays "
            f"(jaxlif.network.rate_slopes, {check['keys']} keys, at the hidden parameters): {verdict}.")


def _closed_text(cfg, hidden_slopes) -> str:
    """The conclusion's sentence on closed-loop slopes (``--closed-slopes``), empty without them."""
    if hidden_slopes is None:
        return ""
    return (f" With --closed-slopes {cfg.closed_slopes} the CV's derivative went through both rates, with closed-loop "
            f"slopes (jaxlif.network.closed_loop_slopes on {cfg.closed_slopes} keys, re-measured every "
            f"{cfg.slopes_every} Adam or Gauss-Newton steps; their simulations count in the step's time); at the hidden "
            f"parameters "
            + ", ".join(f"dCV/dr_{a} = {v:.3g}" for a, v in hidden_slopes.items()) + " per Hz.")


def main(argv=None) -> dict:
    return C.run_main(run, __doc__, NAME, DEFAULTS, QUICK, EXTRA, CHECKS, argv)


if __name__ == "__main__":
    C.script(main)
