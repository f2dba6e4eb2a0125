r"""Gradients through recurrent spiking: the calibrated mean-field estimator (the default with ``spike_grad``).

A surrogate derivative (:mod:`jaxlif.surrogates`) is a local estimate: useful for one neuron, but
carried through every synapse of a recurrent network at every step it multiplies along chains of
neurons and grows exponentially (NaN within a second in a balanced E/I network).  Cutting those
chains (spikes delivered without derivative) keeps it finite but answers a different question: how
each neuron responds with the rest of the network held fixed.  In a balanced network that
open-loop response is many times the closed-loop one, because the inhibition it recruits cancels most
of it.

The estimator here keeps the local derivatives, calibrates their size, and puts the network's feedback
back at the level of population rates (linear response of the mean field; e.g. Brunel 2000, Lindner,
Doiron & Longtin 2005, Trousdale et al. 2012).  Let ``R_a(theta, lambda)`` be the mean rate of population
``a`` when every value population ``b`` delivers is scaled by ``lambda_b`` (at ``lambda = 1`` the actual
network), differentiated with the recurrent spikes held fixed ("local").  A change of ``r_b`` by ``dr_b``
acts on the targets, in the mean, as ``lambda_b = 1 + dr_b / r_b``.  The closed-loop derivative of the
rates is then the solution of

.. math::

    dr = C\, \partial_\theta \tilde R\, d\theta + G\, dr,
    \qquad G_{ab} = \frac{c_a}{r_b} \frac{\partial \tilde R_a}{\partial \lambda_b},
    \qquad dr = (I - G)^{-1} C\, \partial_\theta \tilde R\, d\theta, \qquad C = \mathrm{diag}(c_a),

where ``c_a = c^E_a`` and ``R~`` is the local derivative with the derivative of each neuron's inhibitory
conductance multiplied by ``c^I_a / c^E_a`` where it enters the membrane (its value unchanged): so whatever
reaches population ``a`` through its inhibitory conductance (inhibitory weights, drives and STP, the receptor's
time constant, a given ``g_I``, and the feedback of inhibitory populations) is calibrated by ``c^I_a``, and
everything else by ``c^E_a``.  Every output ``y`` of the simulation (rasters, voltages, conductances,
plasticity traces, final state) gets the same feedback correction, the rasters of population ``a`` also the
factor ``c_a``::

    dy = dy~_local + sum_b (dy~/dlambda_b) dr_b / r_b,      d spikes_a = c_a (d spikes~_a,local + ...)

**The calibration** ``c^E_a, c^I_a``.  With the recurrent input held fixed, the surrogate derivative of a
rate is itself 3-13x too large (measured on ``ei_network`` by replaying a run's own rasters as its recurrent
input, ``simulate_network(replay=)``, and differencing: BENCHMARKS.md, "Recurrent gradients"), and the
feedback above multiplies that error.  So ``c^E_a`` is the ratio of two open-loop responses of ``a``'s
rate to one common scale ``s`` of every excitatory conductance input (the excitatory drive, the given
``g_E`` and the weights onto the excitatory receptor): a central finite difference in ``log s``
(:data:`CALIBRATION_STEP`) of two replays of the run, in which the targets still spike and reset but the
delivered spikes do not change (common random numbers and no chaos: precise with one key), over the
local surrogate derivative along the same direction; ``c^I_a`` the same for a common scale of every
inhibitory input.  The surrogate's error is not the same for the two: it sees an input's mean but not the
variance that inhibition adds, so with one calibration (the excitatory one, before 2026-12-08) the rates'
derivatives along the I->E weight stayed 1.67-2.38x too large on three E/I networks at 1 s and 10 s, while
the drive's were 0.74-0.82x; with one per receptor they are 1.20-1.80x, and every resolved derivative of a
rate is 1.20-2.08x, uniformly somewhat too large (BENCHMARKS.md, "Recurrent gradients").  The calibration only rescales what the surrogate says, so within a receptor the
direction (which parameters matter, and their relative weight within a population) is the surrogate's.

**Statistics through the rate.**  A spike-timing statistic of the rasters, such as the mean ISI CV, cannot
use the rasters' tangent: at every step that tangent is the surrogate's, and the CV's derivative taken
through it was 24-300x the finite difference on ``ei_network`` (BENCHMARKS.md).  Measured with the same
replays, the CV moves with the rate: its open-loop change per unit change of the E rate is nearly the same
along every direction of parameters (0.055-0.063 per Hz at the defaults for the drive, E->E, I->E weights,
U0 and the common excitatory scale), and equals the ratio of the closed-loop finite differences.  So a
statistic ``y = fn(raster of a)`` given to ``simulate_network(..., statistics=)`` gets::

    dy = (dy/dr_a)_open loop  dr_a,    (dy/dr_a)_open loop = [y(up) - y(down)] / [r_a(up) - r_a(down)]

with ``up, down`` the two calibration replays (no extra simulation) and ``dr_a`` the closed-loop derivative
of the settled rate above (0 where the replays' rate difference is not positive).  This holds for a
statistic that changes with the parameters mainly through the population's rate, as it does with the
recurrent input held fixed.  Measured against finite differences (BENCHMARKS.md, "Recurrent gradients"):
right sign and within 2.2x wherever resolved at 1 s on four networks, but on the 200 + 50 network at 10 s,
where the CV hardly moves with the drive (-0.06 ± 0.04), the estimate is 0.28.  :func:`rate_slopes` checks
the assumption on a given network: it measures the statistic's change per unit rate change in the closed
loop too (along the same direction, over several keys) and warns where the two differ.  At 1 s on the 1000-neuron
networks they agree (CV 0.071 against 0.061 ± 0.004 per Hz; 0.094 against 0.096 ± 0.009 at twice the
weights; 0.041 against 0.040 ± 0.004 on the hidden network of docs/networks.md); on the 200 + 50 network
they do not (0.032 against 0.0065 ± 0.002 at 1 s, 0.027 against -0.016 ± 0.002 at 10 s), nor on the
defaults network at 10 s (0.048 against 0.024 ± 0.003): the closed-loop
CV depends on the temporal structure of the recurrent input, which replays freeze, and even the closure of
replay-measured responses misses it there (``experiments/grad_network.py --closure``, BENCHMARKS.md).

**Closed-loop slopes.**  A statistic given as ``(population, fn, slopes)``, ``slopes = {b: k_b}`` [units of ``y``
per Hz], gets instead ``dy = sum_b k_b dr_b``: through every population's closed-loop rate derivative.
:func:`closed_loop_slopes` measures the ``k_b`` in the running network (``P`` directions, each scaling the
excitatory input onto one population, over many keys).  In a balanced network the ISI CV rises with the E
rate and falls with the I rate (200 E + 50 I: ``k_E`` 0.029 and 0.018, ``k_I`` -0.0045 and -0.0073 per Hz at
1 s and 10 s), so its derivative is no longer a multiple of one rate's, and along directions that move the
two rates in different proportions (the drive against the I->E weight) it gets the sign the one-slope form
misses at 10 s.  It remains a combination of the rates' derivatives: along a direction that leaves every
rate unchanged it is zero, whatever the statistic does there (docs/networks.md, ``train_network``).  The
slopes are constants of the derivative (no gradient flows into them); they hold around the parameters they
were measured at.

The rates, ``G``, the calibration and the local rate derivatives are taken over the settled part of the
run, after its first quarter (:data:`SETTLE`): the network starts from rest, and the onset transient,
whose response to the feedback differs from the settled state's, otherwise enters the linearisation.
(With the whole run, statistics of a late window got d(E rate) of the wrong sign for the E->E and I->E
weights in a strongly recurrent network; with the settled part, the right sign; docs/networks.md.)

This is a :func:`jax.custom_jvp` of the whole simulation, so ``jax.grad``, ``jax.jvp`` and ``vmap`` work
as usual (the calibration and ``G`` depend on the primal run only, so the tangent stays linear).  Cost
of a derivative: forward-mode passes for the local tangent, one per population for ``G`` (vmapped) and
two for the calibration (one vmapped pass), plus the plain run and four replays: about ``2 (4 + P) + 5``
simulations for ``P`` populations, fewer in practice (vmapped lanes share their primal run): a gradient of
``train_network``'s loss at the main job's size took 1.27x the time it took with one calibration.  Silent populations (``r_b = 0``) feed nothing back.

**When it cannot be trusted.**  The correction is a linearisation around a stationary state: it needs
the mean field to be stable, every eigenvalue of ``G`` with real part below 1.  Otherwise (a network
that runs away, an oscillating or synchronous regime) the simulation warns at run time
(:class:`RecurrentGradientWarning`) and the derivative should not be used.  It also warns when a
spiking population's open-loop response to its excitatory or inhibitory input was not resolved (a finite
difference of 0 or of the wrong sign: too few spikes); that population's derivatives along that receptor then
keep the surrogate's size (``c = 1``, as for a silent population, whose surrogate derivative may still show
the way out of silence, or for a population without input on that receptor).
:func:`loop_gain` returns ``G`` and the calibration to check a configuration beforehand.  Accuracy against
finite differences is tabulated in BENCHMARKS.md ("Recurrent gradients").
"""

from __future__ import annotations

import functools
import numbers
import warnings
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlif.network.params import NetworkParams, NetworkStructure
from jaxlif.network.structure import Network
from jaxlif.surrogates import Surrogate

__all__ = ["GRAD_ESTIMATORS", "RecurrentGradientWarning", "LoopGain", "loop_gain", "RateSlopes", "rate_slopes",
           "ClosedLoopSlopes", "closed_loop_slopes", "mean_field", "loop_gain_from"]

#: ``"mean_field"`` (default with ``spike_grad``): calibrated local derivatives plus the population feedback;
#: ``"local"``: recurrent spikes delivered without derivative (open loop); ``"full"``: the surrogate
#: derivative through every synapse (backpropagation through the recurrent network; diverges in
#: chaotic networks).
GRAD_ESTIMATORS = ("mean_field", "local", "full")


class RecurrentGradientWarning(UserWarning):
    """The mean-field gradient estimator's linearisation is unstable: do not trust the gradient."""


def _is_float(x) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)


def _warn_if_untrusted(G, r, open_loop, surrogate, names) -> None:
    """The warnings of the estimator (concrete values, batched or not); ``open_loop`` and ``surrogate`` are
    ``(..., 2, P)``: the responses to the excitatory input (row 0) and to the inhibitory one (row 1)."""
    _warn_if_unstable(G)
    P = len(names)
    r = np.asarray(r, float).reshape(-1, P)
    fd, sg = (np.asarray(x, float).reshape(-1, 2, P) for x in (open_loop, surrogate))
    for row, (what, sign) in enumerate((("excitatory", 1.0), ("inhibitory", -1.0))):
        f, g = sign * fd[:, row], sign * sg[:, row]
        bad = sorted({names[j] for i, j in zip(*np.nonzero((r > 0) & (g > 0) & ~(f > 0)))})
        if bad:
            warnings.warn(f"the mean-field gradient estimator could not calibrate population(s) {bad}: their "
                          f"open-loop response to a common scale of their {what} input was not resolved (not "
                          f"{'> 0' if sign > 0 else '< 0'}), so their derivatives along it keep the surrogate's "
                          f"uncalibrated size (several times too large); use a longer run or more neurons "
                          f"(jaxlif.network.loop_gain shows the calibration)", RecurrentGradientWarning)


def _warn_if_unstable(G) -> None:
    G = np.asarray(G, dtype=float).reshape((-1,) + np.shape(G)[-2:])
    worst = -np.inf
    for g in G:
        if not np.all(np.isfinite(g)):
            continue                    # a poisoned run: its gradient is NaN already
        worst = max(worst, float(np.max(np.linalg.eigvals(g).real)))
    if worst >= 1.0:
        warnings.warn(f"the mean-field gradient estimator is unstable here: the population loop gain has an "
                      f"eigenvalue with real part {worst:.3g} >= 1 (a runaway or oscillating network); the "
                      f"gradient is not a derivative of the mean rates.  Check with "
                      f"jaxlif.network.loop_gain, or use grad_estimator='local'", RecurrentGradientWarning)


class LoopGain(NamedTuple):
    """The mean field of a network around one run (module docstring).

    Attributes:
        names: population names, the order of the axes.
        rates: mean rate of each population [Hz] over the settled part of the run (:data:`SETTLE`), ``(P,)``.
        G: loop gain ``G_ab = c_a (dR~_a/dlambda_b) / r_b`` (calibrated surrogate), dimensionless, ``(P, P)``
            (0 columns for silent populations); ``c_a = calibration[a]``, and ``R~`` has the derivative of the
            inhibitory conductance scaled by ``calibration_inh[a] / calibration[a]`` (module docstring), so what
            ``b``'s spikes do through ``a``'s inhibitory receptor carries ``calibration_inh[a]``.
        eigenvalues: of ``G``, complex, ``(P,)``.
        stable: every eigenvalue has real part below 1 (the condition of the estimator).
        calibration: ``c_a``, ``(P,)``: the open-loop response of each population's rate to a common scale
            of its excitatory input, by a finite difference of replays, over the surrogate's (module docstring).
        open_loop, surrogate: those two responses [Hz per unit log scale], ``(P,)``.
        calibration_inh, open_loop_inh, surrogate_inh: the same for the inhibitory input (responses
            negative; a calibration of 1 where a population has no inhibitory input or the response was not
            resolved).
    """

    names: tuple
    rates: np.ndarray
    G: np.ndarray
    eigenvalues: np.ndarray
    stable: bool
    calibration: np.ndarray
    open_loop: np.ndarray
    surrogate: np.ndarray
    calibration_inh: np.ndarray
    open_loop_inh: np.ndarray
    surrogate_inh: np.ndarray


def _concrete_run(net, params, T: float, dt: float, inputs):
    """The arguments of :func:`loop_gain` and :func:`rate_slopes` checked as ``simulate_network`` checks them:
    ``(dt, steps, structure, params, net, names, seqs, I_const)`` (``net`` the combined network, ``names`` its
    populations, ``seqs, I_const`` the given inputs stacked)."""
    from jaxlif.network import simulate as sim
    from jaxlif import _checks
    from jaxlif.grid import n_steps

    dt = _checks.check_dt(dt)
    steps = n_steps(T, dt)
    structure, params = sim._split_network(net, params, dt)
    net = sim.combine(structure, params)
    seqs, I_const = sim._given_inputs(net, inputs, steps)
    return dt, steps, structure, params, net, tuple(p.name for p in structure.populations), seqs, I_const


def loop_gain(key: jax.Array | None, net: Network | NetworkStructure, params: NetworkParams | None = None, *,
              T: float, dt: float, spike_grad: Surrogate | None = None, inputs: dict | None = None) -> LoopGain:
    """The population loop gain ``G`` and the calibration of the mean-field estimator for one run of ``net``.

    The same computation as the estimator's (:func:`mean_field`), on concrete values.  Use it to check a
    configuration before trusting its gradients: ``stable`` must hold; eigenvalues with real part close to 1
    mean a gradient that magnifies small errors (stability is necessary, not sufficient: docs/networks.md);
    a ``calibration`` of 1 with ``open_loop <= 0`` means an open-loop response that the finite difference did
    not resolve (the surrogate is then used as it is).

    Args:
        key, net, params, T, dt, inputs: as for :func:`jaxlif.network.simulate_network`.
        spike_grad: the surrogate (default :func:`jaxlif.surrogates.fast_sigmoid`).
    """
    from jaxlif.surrogates import fast_sigmoid
    from jaxlif import _checks

    dt, steps, structure, params, _, names, seqs, I_const = _concrete_run(net, params, T, dt, inputs)
    if any(p.drive_n is not None for p in structure.populations):
        _checks.check_key(key)
    elif key is None:
        key = jax.random.key(0)                                   # unused
    spike_grad = fast_sigmoid() if spike_grad is None else spike_grad
    r, G, calibration = _loop_gain(key, structure, (params, seqs, I_const, None), names,
                                   (steps, dt, spike_grad, False, "event", 4, 0, "euler"))
    r, G, (c, fd, sg) = np.asarray(r, float), np.asarray(G, float), (np.asarray(x, float) for x in calibration)
    hz = 1000.0 / dt
    eig = np.linalg.eigvals(G)
    return LoopGain(names, r * hz, G, eig, bool(np.all(eig.real < 1.0)), c[0], fd[0] * hz, sg[0] * hz, c[1],
                    fd[1] * hz, sg[1] * hz)


@jax.jit(static_argnums=(3, 4))
def _loop_gain(key, structure, diff, names, statics):
    from jaxlif.network import simulate as sim
    run = functools.partial(sim._run_fixed, statics=statics)
    out = run((key, structure), diff, None)
    calibration, _ = _calibration(run, (key, structure), diff, functools.partial(sim._scale_receptor, structure),
                                  out, names)
    D = _feedback(run, (key, structure), diff, names, _inh_gain(calibration[0], [p.size for p in structure.populations]))
    r, G = loop_gain_from(out, D, names)
    return r, calibration[0][0][:, None] * G, calibration


class RateSlopes(NamedTuple):
    """Each statistic's change per unit change of its population's rate, with the recurrent input held fixed
    and in the closed loop (:func:`rate_slopes`).

    Attributes:
        labels: the statistics' labels (sorted), the order of the arrays.
        populations: the population of each statistic.
        open_loop, open_loop_se: ``dy/dr`` [units of ``y`` per Hz] in open-loop replays of each run along a
            common scale of every excitatory input (what ``simulate_network(..., statistics=)`` uses), and its
            standard error over the keys (jackknife), ``(L,)``.
        closed_loop, closed_loop_se: the same along the same direction with the network running closed, ``(L,)``.
        d_rate_open, d_rate_closed: the population's settled rate change [Hz per unit log scale] in each,
            ``(L,)``: a slope is resolved only where this is clearly positive.
        verdict: per statistic, ``"differ"`` (the slopes differ by more than 3 combined standard errors: do
            not trust the derivative through the rate), ``"agree"`` (they do not, and the closed-loop slope is
            known to a third of the open-loop one) or ``"unresolved"`` (a NaN slope, or a closed-loop slope too
            uncertain to tell: more keys).
        keys: the number of keys.
    """

    labels: tuple
    populations: tuple
    open_loop: np.ndarray
    open_loop_se: np.ndarray
    closed_loop: np.ndarray
    closed_loop_se: np.ndarray
    d_rate_open: np.ndarray
    d_rate_closed: np.ndarray
    verdict: tuple
    keys: int


def rate_slopes(keys: jax.Array, net: Network | NetworkStructure, params: NetworkParams | None = None, *,
                T: float, dt: float, statistics: dict, inputs: dict | None = None) -> RateSlopes:
    """Check the assumption behind the derivative "through the rate" of ``simulate_network(..., statistics=)``.

    That derivative is ``(dy/dr)_open loop * dr``: the statistic's change per unit change of its population's
    settled rate when the recurrent input is held fixed (two replays of the run, every excitatory input scaled
    by ``e^(+-h)``, ``h =`` :data:`CALIBRATION_STEP`), times the closed-loop derivative of the rate.  It is
    right when the statistic follows the rate in the running network as it does with the recurrent input
    frozen.  This runs, for each key, the network, those two replays, and the network itself (closed loop) with
    the same two scales, and returns both slopes::

        slope = sum_keys [y(+h) - y(-h)] / sum_keys [r(+h) - r(-h)]     (r in Hz, over the settled part)

    with jackknife standard errors over the keys.  Where ``closed_loop`` differs from ``open_loop`` by more
    than their errors, the statistic depends on more than the rate (for example the ISI CV of a recurrent
    network, whose temporal structure the replays freeze: docs/networks.md), the derivative through the
    rate cannot be trusted (along this direction it is off by about their ratio; along others by other
    factors), and a :class:`RecurrentGradientWarning` says so (a difference beyond 3 combined standard
    errors; a slope that is NaN or too uncertain to tell warns too, ``verdict`` says which).  Agreement along
    this one direction is necessary, not sufficient.  Use finite differences over common random numbers for
    such a statistic.  Cost: five simulations per key (the closed-loop pair is the expensive part to
    resolve: use tens of keys; each closed-loop difference is as noisy as a finite difference; the run and the
    closed-loop pair are one vmapped simulation, the replay pair another).

    Args:
        keys: ``(K,)`` ``jax.random`` keys of the Poisson drive, ``K >= 2``.
        net, params, T, dt, inputs: as for :func:`jaxlif.network.simulate_network`.
        statistics: ``{label: (population, fn)}`` as for :func:`jaxlif.network.simulate_network` (pairs).
    """
    _pairs_only(statistics, "rate_slopes")
    keys, dt, structure, diff, names, statics, stats = _keyed_runs(keys, net, params, T, dt, inputs, statistics)
    (open_r, open_y), (shut_r, shut_y) = _rate_slopes(keys, structure, diff, names, statics, stats)
    to_hz = 1000.0 / dt
    out = {name: [] for name in ("open", "open_se", "shut", "shut_se", "dr_open", "dr_shut")}
    for label, pop, _ in stats:
        i = names.index(pop)
        for tag, r, y in (("open", open_r, open_y), ("shut", shut_r, shut_y)):
            dr = (np.asarray(r[:, 0, i], float) - np.asarray(r[:, 1, i], float)) * to_hz
            dy = np.asarray(y[label][:, 0], float) - np.asarray(y[label][:, 1], float)
            slope, se = _ratio_jackknife(dy, dr)
            out[tag].append(slope)
            out[tag + "_se"].append(se)
            out["dr_" + tag].append(dr.mean() / (2 * CALIBRATION_STEP))
    values = [np.asarray(out[k]) for k in ("open", "open_se", "shut", "shut_se", "dr_open", "dr_shut")]
    verdicts = tuple(_verdict(*(v[j] for v in values[:4])) for j in range(len(stats)))
    result = RateSlopes(tuple(e[0] for e in stats), tuple(e[1] for e in stats), *values, verdicts, int(keys.shape[0]))
    for j, label in enumerate(result.labels):
        numbers = (f"{result.closed_loop[j]:.3g} ± {result.closed_loop_se[j]:.2g} against {result.open_loop[j]:.3g} ± "
                   f"{result.open_loop_se[j]:.2g} per Hz (closed against open loop, {result.keys} keys; population "
                   f"{result.populations[j]!r}'s rate moved {result.d_rate_closed[j]:.3g} and {result.d_rate_open[j]:.3g} "
                   f"Hz per unit log scale)")
        if verdicts[j] == "differ":
            warnings.warn(f"statistics[{label!r}] does not follow its population's rate in the closed loop as it "
                          f"does with the recurrent input held fixed: {numbers}, so its derivative through the rate "
                          f"(simulate_network(statistics=)) cannot be trusted here (along this direction it is off by "
                          f"about their ratio); give it closed-loop slopes (jaxlif.network.closed_loop_slopes) or use "
                          f"finite differences over common random numbers for it",
                          RecurrentGradientWarning)
        elif verdicts[j] == "unresolved":
            warnings.warn(f"rate_slopes: statistics[{label!r}] not resolved: {numbers}; the closed-loop slope must be "
                          f"finite and known to a third of the open-loop one to tell the two apart: use more keys or a "
                          f"longer run", RecurrentGradientWarning)
    return result


def _keyed_runs(keys, net, params, T: float, dt: float, inputs, statistics):
    """The arguments of :func:`rate_slopes` and :func:`closed_loop_slopes` checked: ``(keys, dt, structure, diff,
    names, statics, statistics)`` for their compiled runs (plain, event delivery, min-delay windows)."""
    from jaxlif.network import simulate as sim
    from jaxlif.network import window as window_mod

    dt, steps, structure, params, net, names, seqs, I_const = _concrete_run(net, params, T, dt, inputs)
    stats = sim._check_statistics(statistics, net)
    if not stats:
        raise ValueError("statistics must name at least one statistic {label: (population, fn)}")
    keys = jnp.asarray(keys)
    if not (jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key) and keys.ndim == 1 and keys.shape[0] >= 2):
        raise ValueError(f"keys must be a 1-D array of at least 2 jax.random keys (jax.random.split), got "
                         f"{keys.dtype}{list(keys.shape)}")
    window = window_mod.window_length(net, spike_grad=None, delivery="event") if steps > 1 else 0
    statics = (steps, dt, None, False, "event", 4, window, "euler")
    return keys, dt, structure, (params, seqs, I_const, None), names, statics, stats


def _verdict(open_loop, open_se, closed_loop, closed_se) -> str:
    """``"differ"``: the two slopes differ by more than 3 combined standard errors; ``"agree"``: they do not, and
    the closed-loop slope is known to a third of the open-loop one (so that a closed-loop slope of zero would
    have been told apart); ``"unresolved"``: anything else (too few keys, or a rate that did not move)."""
    if not (np.isfinite(open_loop) and np.isfinite(closed_loop) and np.isfinite(closed_se)):
        return "unresolved"
    if abs(closed_loop - open_loop) > 3 * np.hypot(open_se, closed_se):
        return "differ"
    return "agree" if closed_se <= abs(open_loop) / 3 else "unresolved"


def _ratio_jackknife(dy: np.ndarray, dr: np.ndarray) -> tuple[float, float]:
    """``sum(dy) / sum(dr)`` over keys and its jackknife standard error (NaN where ``sum(dr) <= 0``)."""
    k = len(dy)
    total_y, total_r = dy.sum(), dr.sum()
    if not total_r > 0:
        return float("nan"), float("nan")
    loo_r = total_r - dr
    loo = np.where(loo_r > 0, (total_y - dy) / np.where(loo_r > 0, loo_r, 1.0), np.nan)
    se = np.sqrt((k - 1) / k * np.sum((loo - loo.mean()) ** 2))
    return float(total_y / total_r), float(se)


@jax.jit(static_argnums=(3, 4, 5))
def _rate_slopes(keys, structure, diff, names, statics, statistics):
    """Per key: the settled rates and statistics of the open-loop replay pair and of the closed-loop pair."""
    from jaxlif.network import simulate as sim
    run = functools.partial(sim._run_fixed, statics=statics)
    scale = functools.partial(sim._scale_receptor, structure)
    h = CALIBRATION_STEP

    def one(key):
        fixed = (key, structure)
        # the run itself and the closed-loop pair in one vmapped simulation (scale 1, e^h, e^-h: one program)
        spikes = jax.vmap(lambda log_s: run(fixed, scale(diff, jnp.exp(log_s)), None).spikes)(
            jnp.asarray([0.0, h, -h], jnp.result_type(float)))
        shut = jax.vmap(lambda sp: _summary(sp, names, statistics))({a: x[1:] for a, x in spikes.items()})
        raster = {a: x[0] for a, x in spikes.items()}
        return _replay_pair(run, fixed, diff, scale, raster, names, statistics), shut

    return jax.lax.map(one, keys)


class ClosedLoopSlopes(NamedTuple):
    """Each statistic's change per unit change of every population's rate in the running network
    (:func:`closed_loop_slopes`).

    Attributes:
        labels: the statistics' labels (sorted).
        names: the populations, the order of the axes.
        slopes: ``{label: {population: dy/dr_b}}`` [units of ``y`` per Hz]: pass as the third element of a
            statistic, ``statistics={label: (population, fn, slopes[label])}`` (or :meth:`attach`).
        se: the same layout: jackknife standard errors over the keys.
        d_rates: ``(P, P)`` [Hz per unit log scale]: row ``j``, the settled rates' closed-loop response to
            the excitatory input onto population ``j``; the slopes are solved from these directions.
        condition: the condition number of ``d_rates`` (large: the directions move the rates alike, and the
            slopes are poorly determined).
        keys: the number of keys.
    """

    labels: tuple
    names: tuple
    slopes: dict
    se: dict
    d_rates: np.ndarray
    condition: float
    keys: int

    def attach(self, statistics: dict) -> dict:
        """``statistics`` (``{label: (population, fn)}``) with each measured statistic's slopes attached, ready for
        :func:`jaxlif.network.simulate_network`; an entry whose label was not measured is passed through as it is
        (its derivative then goes through its own population's rate)."""
        return {label: (entry[0], entry[1], self.slopes[label]) if label in self.slopes else entry
                for label, entry in statistics.items()}


def closed_loop_slopes(keys: jax.Array, net: Network | NetworkStructure, params: NetworkParams | None = None, *,
                       T: float, dt: float, statistics: dict, inputs: dict | None = None,
                       max_condition: float = 30.0) -> ClosedLoopSlopes:
    """Measure how each statistic moves with every population's rate in the closed loop, for the derivative
    ``dy = sum_b (dy/dr_b) dr_b`` of ``simulate_network(..., statistics={label: (population, fn, slopes)})``.

    The default derivative of a statistic "through the rate" (module docstring) uses its open-loop change
    per unit change of its own population's rate: one number, so the statistic's derivative is a multiple
    of that rate's, and it misses what the running network does (the ISI CV of a balanced network rises
    with the E rate and falls with the I rate).  This measures, for ``P`` populations, ``P`` directions
    ``j``: every excitatory input onto population ``j`` (its excitatory drive, the projections onto its
    excitatory receptor, a given ``g_E``) scaled by ``e^(+-h)``, ``h =`` :data:`CALIBRATION_STEP`, the
    network running closed, with common random numbers.  Pooled over the keys, the responses of the
    settled rates ``D[j, b]`` [Hz] and of the statistic ``Y[j]`` give the slopes by solving::

        Y[j] = sum_b k_b D[j, b]        (k_b = dy/dr_b, per Hz; the rates over the settled part of the run)

    with jackknife standard errors over the keys.  The slopes hold around these parameters; re-measure them
    as a fit moves.  Cost: ``2 P`` simulations per key (one vmapped program); each closed-loop difference
    is as noisy as a finite difference, so use tens of keys (``se`` says how well they are known).  A
    :class:`RecurrentGradientWarning` is issued where the directions hardly separate the rates
    (``condition > max_condition``; the condition number of ``d_rates`` with the rates in Hz), where a
    population's rate moved in no direction (no excitatory input, or silent: its slopes are NaN, the others
    are solved from the remaining directions), where a slope is otherwise not finite (a NaN statistic, a
    poisoned run), or where no slope of a statistic exceeds its standard error (more keys needed).

    Measured (BENCHMARKS.md, "Recurrent gradients"; 200 E + 50 I, p 0.2): with these slopes the E ISI CV's
    derivative has the sign of every resolved finite difference and is within a factor 3 at 1 s; at 10 s
    (48 keys) it lies within 1 standard error of three of the four differences and is 2.0x the resolved one
    (I->E weight, right sign), where the open-loop slope put the drive weight's 0.28 at 7.7 standard errors
    from its (unresolved) difference, and the I->E weight's at 4.2x.

    Args:
        keys: ``(K,)`` ``jax.random`` keys of the Poisson drive, ``K >= 2``.
        net, params, T, dt, inputs: as for :func:`jaxlif.network.simulate_network`.
        statistics: ``{label: (population, fn)}`` as for :func:`jaxlif.network.simulate_network` (pairs: the
            slopes are what is measured); each ``fn`` returns a scalar.
        max_condition: warn above this condition number of ``d_rates``.
    """
    if not (isinstance(max_condition, numbers.Real) and not isinstance(max_condition, bool) and max_condition > 1):
        raise ValueError(f"max_condition must be a number > 1, got {max_condition!r}")
    _pairs_only(statistics, "closed_loop_slopes")
    keys, dt, structure, diff, names, statics, stats = _keyed_runs(keys, net, params, T, dt, inputs, statistics)
    r, y = _closed_pairs(keys, structure, diff, names, statics, stats)
    P, K = len(names), int(keys.shape[0])
    r = np.asarray(r, float) * (1000.0 / dt)                       # (K, 2P, P): +h directions, then -h
    dR = r[:, :P] - r[:, P:]                                       # (K, j, b)
    slopes, se = {}, {}
    for label, _, _ in stats:
        v = np.asarray(y[label], float)
        if v.shape != (K, 2 * P):
            raise ValueError(f"closed_loop_slopes: statistics[{label!r}] must return a scalar, got shape "
                             f"{v.shape[2:]}")
        dY = v[:, :P] - v[:, P:]                                   # (K, j)
        k, s = _solve_jackknife(dR, dY)
        slopes[label] = {a: float(k[b]) for b, a in enumerate(names)}
        se[label] = {a: float(s[b]) for b, a in enumerate(names)}
    D = dR.mean(0) / (2 * CALIBRATION_STEP)
    rows, cols = _moved(dR.sum(0))
    sub = D[np.ix_(rows, cols)]
    cond = (float(np.linalg.cond(sub)) if sub.size and rows.sum() == cols.sum() and np.all(np.isfinite(sub))
            else float("inf"))
    result = ClosedLoopSlopes(tuple(e[0] for e in stats), names, slopes, se, D, cond, K)
    still = [a for a, moved in zip(names, cols) if not moved]
    if still:
        warnings.warn(f"closed_loop_slopes: the rate of {still} moved in no direction (no excitatory input, or "
                      f"silent), so its slopes are NaN; the others are solved from the remaining directions",
                      RecurrentGradientWarning)
    if cols.any() and not cond <= max_condition:
        warnings.warn(f"closed_loop_slopes: the {P} directions hardly separate the populations' rates (condition "
                      f"number {cond:.3g} > {max_condition:g}; d_rates = {np.round(D, 3).tolist()} Hz per unit log "
                      f"scale), so the slopes are poorly determined", RecurrentGradientWarning)
    moved_names = [a for a, moved in zip(names, cols) if moved]
    bad = sorted(label for label in slopes if not all(np.isfinite([slopes[label][a] for a in moved_names])))
    if bad:
        warnings.warn(f"closed_loop_slopes: statistics {bad} have slopes that are not finite (a NaN statistic, or "
                      f"a poisoned run)", RecurrentGradientWarning)
    noisy = sorted(label for label in slopes if label not in bad and moved_names and not any(
        abs(slopes[label][a]) > se[label][a] for a in moved_names))
    if noisy:
        warnings.warn(f"closed_loop_slopes: no slope of statistics {noisy} exceeds its standard error ({K} keys): "
                      f"their derivative would be mostly noise; use more keys", RecurrentGradientWarning)
    return result


def _pairs_only(statistics, caller: str) -> None:
    """Refuse ``(population, fn, slopes)`` triples in the statistics a measurement is asked for."""
    if isinstance(statistics, dict):
        triples = sorted(label for label, entry in statistics.items() if isinstance(entry, tuple) and len(entry) == 3)
        if triples:
            raise ValueError(f"{caller}: statistics {triples} carry slopes; pass (population, fn) pairs, the "
                             f"statistics to measure")


def _moved(R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)``: the directions that moved some rate, and the populations whose rate some direction moved
    (non-zero rows and columns of the pooled responses ``R``)."""
    nonzero = np.isfinite(R) & (R != 0)
    return nonzero.any(axis=1), nonzero.any(axis=0)


def _solve_jackknife(dR: np.ndarray, dY: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``k`` solving ``sum_keys dY[:, j] = sum_b k_b sum_keys dR[:, j, b]``, and its jackknife standard error over
    the keys.  A population whose rate no direction moved (a zero column of the pooled responses) gets NaN, and
    the others are solved from the directions that moved something (least squares where those outnumber them);
    NaN throughout where that system is singular."""
    rows, cols = _moved(dR.sum(0))

    def solve(R, Y):
        k = np.full(R.shape[1], np.nan)
        A = R[np.ix_(rows, cols)]
        if not cols.any() or rows.sum() < cols.sum() or not np.all(np.isfinite(A)):
            return k
        sol, _, rank, _ = np.linalg.lstsq(A, Y[rows], rcond=None)
        if rank == cols.sum():
            k[cols] = sol
        return k

    K = dR.shape[0]
    k = solve(dR.sum(0), dY.sum(0))
    loo = np.array([solve(dR.sum(0) - dR[i], dY.sum(0) - dY[i]) for i in range(K)])
    se = np.sqrt((K - 1) / K * np.sum((loo - loo.mean(0)) ** 2, axis=0))
    return k, se


@jax.jit(static_argnums=(3, 4, 5))
def _closed_pairs(keys, structure, diff, names, statics, statistics):
    """Per key: the settled rates ``(2P, P)`` and statistics ``{label: (2P,)}`` of the network running closed
    with the excitatory input onto each population scaled by ``e^h`` (rows ``0..P-1``), then ``e^-h``."""
    from jaxlif.network import simulate as sim
    run = functools.partial(sim._run_fixed, statics=statics)
    eye = CALIBRATION_STEP * jnp.eye(len(names), dtype=jnp.result_type(float))
    logs = jnp.concatenate([eye, -eye])

    def one(key):
        return jax.vmap(lambda ls: _summary(run((key, structure), sim._scale_receptor(structure, diff, jnp.exp(ls)),
                                                None).spikes, names, statistics))(logs)

    return jax.lax.map(one, keys)


#: Fraction of the run left out of the rates and the loop gain: the network starts from rest, and its
#: onset transient would otherwise weigh in a linearisation meant for the settled state.
SETTLE = 0.25


def _settled(x):
    """The samples of a ``(..., n_steps)`` raster after the first ``SETTLE`` of the run."""
    return x[..., int(SETTLE * x.shape[-1]):]


def loop_gain_from(out, D, names: Sequence[str]) -> tuple[jax.Array, jax.Array]:
    """``(r, G)``: mean rates per step ``(P,)`` of ``out.spikes`` and ``G_ab = (dR_a/dlambda_b) / r_b``
    from the tangents ``D`` (each leaf with a leading axis over ``b``), over the settled part of the run."""
    r = jnp.stack([jnp.mean(_settled(out.spikes[a])) for a in names])
    dR = jnp.stack([jnp.mean(_settled(D.spikes[a]), axis=tuple(range(1, D.spikes[a].ndim))) for a in names])
    return _gain(r, dR)


def _gain(r, dR):
    """``(r, G)`` with ``G_ab = dR[a, b] / r_b`` (a column of zeros for a silent population ``b``)."""
    return r, jnp.where(r[None, :] > 0, dR / jnp.where(r > 0, r, 1.0)[None, :], 0.0)


#: Step of the calibration's central finite difference, in log units of the excitatory input's scale.
CALIBRATION_STEP = 0.1


def _rates(spikes, names):
    """Mean of each population's raster over the settled part of the run, per step, ``(P,)``."""
    return jnp.stack([jnp.mean(_settled(spikes[a])) for a in names])


def statistics_of(spikes: dict, statistics: tuple) -> dict:
    """``{label: fn(raster)}`` for the ``(label, population, fn)`` of ``statistics``, each raster
    ``(size, n_steps)`` as the default float type (0/1)."""
    dtype = jnp.result_type(float)
    out = {}
    for label, pop, fn in statistics:
        value = jnp.asarray(fn(jnp.asarray(spikes[pop], dtype)))
        if not jnp.issubdtype(value.dtype, jnp.floating):
            raise TypeError(f"statistics[{label!r}]: the function must return floats, got {value.dtype}")
        out[label] = value
    return out


def _calibration(run, fixed, diff, scale, out, names, statistics: tuple = ()):
    """The calibration of the estimator around the run ``out`` (primal-only work): ``((c, open_loop, surrogate),
    slopes)``.

    ``c, open_loop, surrogate``, each ``(2, P)``, row 0 for the excitatory receptor and row 1 for the inhibitory
    one: each population's response (rate per step over the settled part, per unit log scale) to a common scale
    ``s`` of every conductance input onto that receptor (``scale(diff, s, receptor)``), by a central finite
    difference of open-loop replays of ``out`` (:data:`CALIBRATION_STEP`) and by the local surrogate derivative;
    ``c = open_loop / surrogate`` where both have the receptor's sign (positive for excitation, negative for
    inhibition), else 1 (the surrogate as it is: a silent population, whose surrogate derivative may still show
    the way out of silence, a population without input on that receptor, or an unresolved difference, which
    warns).  ``slopes``: ``{label: dy/dr}`` for each ``(label, population, fn)`` of ``statistics``: the
    excitatory pair of replays' difference of ``y = fn(raster of population)`` over that of the population's
    settled rate per step (0 where the rate's difference is not positive).

    The two receptor scales are one vmapped forward-mode pass (tangents on ``s`` only), the four replays one
    vmapped simulation.
    """
    dtype = jnp.result_type(float)
    ones = {a: jnp.ones((), dtype) for a in names}
    both = lambda d, s: scale(scale(d, s[0], "exc"), s[1], "inh")                  # noqa: E731
    sg = jax.vmap(lambda t: _rates(jax.jvp(lambda s: run(fixed, both(diff, s), ones), (jnp.ones(2, dtype),),
                                           (t,))[1].spikes, names))(jnp.eye(2, dtype=dtype))
    h = CALIBRATION_STEP
    rates, stats = _replays(run, fixed, diff, both, jax.lax.stop_gradient(out.spikes), names, statistics,
                            jnp.asarray([[h, 0.0], [-h, 0.0], [0.0, h], [0.0, -h]], dtype))
    fd = (rates[0::2] - rates[1::2]) / (2 * h)                                     # (2, P)
    sign = jnp.asarray([[1.0], [-1.0]], dtype)
    ok = (sign * sg > 0) & (sign * fd > 0)
    c = jnp.where(ok, fd / jnp.where(ok, sg, 1.0), 1.0)
    slopes = _slopes(rates[0], rates[1], {k: v[:2] for k, v in stats.items()}, names, statistics)
    return (c, fd, sg), slopes


def _inh_gain(c, sizes):
    """Per neuron, ``c^I / c^E`` of its population, ``(n,)``: the factor on the inhibitory conductance's
    derivative (:func:`jaxlif.network.network_step`'s ``inh_gain``) that turns the excitatory calibration
    ``c^E`` of everything a population's rate responds to into ``c^I`` for its inhibitory input."""
    ratio = c[1] / c[0]
    return jnp.concatenate([jnp.full((size,), ratio[i], ratio.dtype) for i, size in enumerate(sizes)])


def _feedback(run, fixed, diff, names, inh_gain):
    """The outputs' local derivatives with respect to each population's feedback scale (each leaf with a leading
    axis ``b`` over the populations): one vmapped forward-mode pass, tangents on the feedback scales only."""
    dtype = jnp.result_type(float)
    ones = {a: jnp.ones((), dtype) for a in names}
    eye = {a: jnp.eye(len(names), dtype=dtype)[i] for i, a in enumerate(names)}
    return jax.vmap(lambda e: jax.jvp(lambda fb: run(fixed, diff, fb, inh_gain=inh_gain), (ones,), (e,))[1])(eye)


def _summary(spikes, names, statistics):
    """``(rates, {label: y})``: the settled rates per step ``(P,)`` and the statistics of one run's rasters."""
    return _rates(spikes, names), statistics_of(spikes, statistics)


def _replays(run, fixed, diff, scale, raster, names, statistics, logs):
    """:func:`_summary` of open-loop replays of ``raster``, one per row of ``logs``, the ``diff`` given to each
    ``scale(diff, exp(row))`` (one vmapped simulation), without derivative: rates ``(L, P)``, statistics
    ``{label: (L, ...)}``."""
    replayed = jax.vmap(lambda log_s: _summary(run(fixed, scale(diff, jnp.exp(log_s)), None, raster).spikes, names,
                                               statistics))
    return jax.lax.stop_gradient(replayed(logs))


def _replay_pair(run, fixed, diff, scale, raster, names, statistics):
    """:func:`_replays` with every excitatory input scaled by ``e^(+-h)`` (:data:`CALIBRATION_STEP`): rates
    ``(2, P)``, statistics ``{label: (2, ...)}``."""
    h = CALIBRATION_STEP
    return _replays(run, fixed, diff, lambda d, s: scale(d, s, "exc"), raster, names, statistics,
                    jnp.asarray([h, -h], jnp.result_type(float)))


def _slopes(up, down, stats, names, statistics) -> dict:
    """``{label: dy/dr}``: each statistic's difference between the two runs of a pair over that of its
    population's settled rate per step (0 where the rate's difference is not positive)."""
    out = {}
    for label, pop, _ in statistics:
        d_rate = up[names.index(pop)] - down[names.index(pop)]
        y = stats[label]
        out[label] = jnp.where(d_rate > 0, (y[0] - y[1]) / jnp.where(d_rate > 0, d_rate, 1.0), 0.0)
    return out


def mean_field(run: Callable, fixed, diff, names: Sequence[str], scale: Callable, statistics: tuple = (),
               closed: dict | None = None, to_hz: float = 1.0, *, sizes: Sequence[int]):
    """The simulation ``run(fixed, diff, feedback)`` with the calibrated mean-field derivative (module docstring),
    and the ``statistics`` of its rasters with their derivative through the rate.

    Args:
        run: ``run(fixed, diff, feedback, replay=None) -> NetworkResult``, the simulation with spikes
            delivered without derivative, ``feedback`` ``None`` or ``{name: scale}``
            (:func:`jaxlif.network.network_step`), ``replay`` ``None`` or rasters ``{name: (size, n_steps)}``
            to deliver instead of the network's own spikes; a function that closes over no traced value.
        fixed: arrays that are not differentiated (the key, the connectivity).
        diff: the pytree of differentiable inputs (parameters, given inputs, initial state).
        names: the population names.
        scale: ``scale(diff, s, receptor)``: ``diff`` with every conductance input onto ``receptor`` (``"exc"``
            or ``"inh"``) multiplied by ``s``.
        statistics: ``((label, population, fn), ...)``; each ``y = fn(raster)`` gets the derivative
            ``(dy/dr)_open loop * dr`` of the module docstring ("Statistics through the rate").
        closed: ``{label: (P,) array}``: for these statistics the derivative is instead
            ``sum_b k_b dr_b``, ``k_b`` the given closed-loop slopes [per Hz] (:func:`closed_loop_slopes`) and
            ``dr_b`` the rates' mean-field derivative, ``to_hz`` converting a rate per step to Hz.
        sizes: the populations' sizes, in the order of ``names`` (the neurons' order).

    Returns:
        ``(result, {label: y})``.
    """
    names = tuple(names)
    closed = {} if closed is None else closed

    def stats_of(spikes):
        stats = statistics_of(spikes, statistics)
        for label in closed:
            if jnp.ndim(stats[label]) != 0:
                raise ValueError(f"statistics[{label!r}] carries closed-loop slopes, so its function must return a "
                                 f"scalar, got shape {jnp.shape(stats[label])}")
        return stats

    @jax.custom_jvp
    def simulate(fixed, diff, closed):
        out = run(fixed, diff, None)
        return out, stats_of(out.spikes)

    @simulate.defjvp
    def simulate_jvp(primals, tangents):
        (fixed, diff, closed), (_, d_diff, _) = primals, tangents
        dtype = jnp.result_type(float)
        ones = {a: jnp.ones((), dtype) for a in names}
        # the calibration around the run (primal-only work), then the local tangent (linear in d_diff) and the
        # outputs' derivatives with respect to each population's feedback scale, both with the inhibitory
        # conductance's derivative scaled by c^I / c^E where it enters the membrane
        (c, fd, sg), slopes = _calibration(run, fixed, diff, scale, run(fixed, diff, None), names, statistics)
        gain = _inh_gain(c, sizes)
        out, d_local = jax.jvp(lambda d: run(fixed, d, ones, inh_gain=gain), (diff,), (d_diff,))
        D = _feedback(run, fixed, diff, names, gain)
        r, G = loop_gain_from(out, D, names)
        G = c[0][:, None] * G
        jax.debug.callback(functools.partial(_warn_if_untrusted, names=names), G, r, fd, sg)
        dr = jnp.linalg.solve(jnp.eye(len(names), dtype=dtype) - G, c[0] * _rates(d_local.spikes, names))
        coef = jnp.where(r > 0, dr / jnp.where(r > 0, r, 1.0), 0.0)

        def correct(d, Db):
            if not _is_float(d) or not _is_float(Db):
                return d
            return d + jnp.tensordot(coef.astype(d.dtype), Db, axes=(0, 0))

        tangent = jax.tree.map(correct, d_local, D)
        spikes = {a: tangent.spikes[a] * c[0, i].astype(tangent.spikes[a].dtype) if _is_float(tangent.spikes[a])
                  else tangent.spikes[a] for i, a in enumerate(names)}
        stats = stats_of(out.spikes)
        d_stats = {label: (jnp.dot(closed[label].astype(dr.dtype), dr) * to_hz if label in closed
                           else slopes[label] * dr[names.index(pop)]).astype(stats[label].dtype)
                   for label, pop, _ in statistics}
        return (out, stats), (tangent._replace(spikes=spikes), d_stats)

    return simulate(fixed, diff, jax.lax.stop_gradient(closed))
