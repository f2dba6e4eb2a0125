"""The mean-field gradient estimator of recurrent networks (``jaxlif.network.gradients``).

- Its derivative equals the formula of the module docstring assembled here by hand from the "local"
  estimator's derivatives with respect to the parameter and to the weights out of each population
  (an independent route through the public API: scaling every weight out of ``b`` is scaling what
  ``b`` delivers) and the calibration from replays of the run's rasters (``simulate_network(replay=)``),
  in forward and reverse mode; a replay of a run's own rasters is that run.
- A statistic of the rasters (``statistics=``, the E neurons' mean ISI CV here) gets the derivative "through
  the rate": its open-loop difference over the E rate's in the same replays, times the derivative of the
  settled E rate; its value is the function of the raster.
- The forward values are those of the plain simulation, bit for bit.
- An unstable loop gain and an unresolved calibration warn.
- Against central finite differences with common random numbers (slow tier, 200 E + 50 I at 1 s and
  10 s, four parameters): sign and factor 3 wherever the difference is resolved.

One network shape (40 E + 10 I, p = 0.2) in the default tier.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif
from jaxlif import network as nw
from jaxlif.network import gradients
from jaxlif.network.gradients import RecurrentGradientWarning
from jaxlif.surrogates import fast_sigmoid

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.train_network import late_cv_statistic  # noqa: E402  (the statistic of test_train_network's run)

# The whole-tree gradients include the drive rates, whose derivative is zero by design (Poisson draws are not
# reparameterised): the library warns once per traced program (tested in test_gradients.py).
pytestmark = pytest.mark.filterwarnings("ignore:the gradient with respect to rate is zero")

DT, T = 0.1, 60.0
KEY = jax.random.key(5)


@pytest.fixture(scope="module")
def split():
    return nw.partition(nw.ei_network(jax.random.key(0), n_E=40, n_I=10, p=0.2, drive_weight=1.2))   # = test_network_params


def scaled(params, log_w, s_E, s_I):
    """Drive weight times exp(log_w); every weight out of E times s_E, out of I times s_I."""
    pops = {k: v._replace(drive=v.drive._replace(weight=v.drive.weight * jnp.exp(log_w)))
            for k, v in params.populations.items()}
    projs = {k: v._replace(weights=v.weights * (s_E if k.startswith("E") else s_I))
             for k, v in params.projections.items()}
    return params._replace(populations=pops, projections=projs)


def mean_cv(spikes):
    """The E neurons' mean smooth ISI CV (neurons with at least 3 spikes; 60 ms runs have few)."""
    return jnp.nanmean(jaxlif.soft_isi_cv(spikes, min_spikes=3))


#: Closed-loop slopes [per Hz] given to a second copy of the CV under "mean_field" (any numbers: the test checks
#: the formula ``d cv_closed = sum_b k_b dr_b``; their values are traced, so no program depends on them).
CLOSED = {"E": 0.03, "I": -0.01}


def run(structure, params, estimator, T=T, key=KEY):
    stats = {"cv": ("E", mean_cv)}
    if estimator == "mean_field":
        stats["cv_closed"] = ("E", mean_cv, CLOSED)
    return nw.simulate_network(key, structure, params, T=T, dt=DT, spike_grad=fast_sigmoid(), record=False,
                               grad_estimator=estimator, statistics=stats)


def rates_of(res, settled=False, xp=jnp):
    """Mean E and I rates [Hz] of a run; ``settled``: over the part the estimator linearises around
    (after the first ``gradients.SETTLE`` of the run).  ``xp=np`` (:func:`rates_np`) for a concrete run."""
    start = int(gradients.SETTLE * res.spikes["E"].shape[-1]) if settled else 0
    return xp.stack([xp.asarray(res.spikes[a])[:, start:].mean() for a in ("E", "I")]) * (1000.0 / DT)


def rates_np(res, settled=False):
    """:func:`rates_of` of a concrete run in NumPy (float64): the tests' arithmetic on results compiles no
    programs of one operation each (one per operation, shape and dtype: 17 fewer compilations in the first
    test, 2026-12-07)."""
    return rates_of(res, settled, np)


def rates(structure, params, estimator, T=T, key=KEY, settled=False):
    return rates_of(run(structure, params, estimator, T, key), settled)


# The default tier compiles one program per (estimator, transformation) and the tests share them:
# the local derivative in three directions, the mean-field derivative along the drive weight in forward
# mode (jvp), in reverse mode (grad) and vmapped, the local one in reverse mode, loop_gain, and the plain
# simulation.


def mean_field_jvp(structure, params, key=KEY):
    """(run, its mean-field tangent) along the log drive weight and, at the same time, the log scale of every
    weight out of I (so that both of the estimator's lanes, excitatory and inhibitory, carry a tangent; one
    compiled program, the scaling included)."""
    return _mean_field_jvp(structure, params, key)


@jax.jit
def _mean_field_jvp(structure, params, key):
    return jax.jvp(lambda w: run(structure, scaled(params, w, 1.0, jnp.exp(w)), "mean_field", key=key), (0.0,),
                   (1.0,))


def rate_loss(params, structure, key=KEY):
    """E + I/2 mean spike counts per step: the loss of ``test_network_params.py`` (its network and run are
    these), so that the reverse-mode program over the whole tree is one program for both files."""
    res = nw.simulate_network(key, structure, params, T=T, dt=DT, spike_grad=fast_sigmoid(), record=False)
    return res.spikes["E"].mean() + 0.5 * res.spikes["I"].mean()


def mean_field_grad(structure, params):
    """d(E rate + I rate / 2)/d(log drive weight) [Hz], reverse mode over the whole parameter tree."""
    g = jax.grad(rate_loss)(params, structure)
    return sum(np.asarray(g.populations[a].drive.weight, float) * np.asarray(params.populations[a].drive.weight, float)
               for a in ("E", "I")) * (1000.0 / DT)


def test_mean_field_is_the_calibrated_local_derivative_plus_the_population_feedback(split):
    """The estimator's formula rebuilt from public pieces: the local derivatives (forward mode), and the
    calibration of each receptor: an open-loop finite difference (the run's own rasters replayed, ``replay=``)
    of the rates against a common scale of every excitatory input (drive weight and weights out of E), and of
    every inhibitory input (weights out of I), each over the local derivative along the same direction.  The
    drive weight is calibrated by the excitatory response, the weights out of I by the inhibitory one, and the
    loop gain's column of each population by the response to the receptor its projections act on."""
    structure, params = split
    theta = jnp.array([0.0, 1.0, 1.0])
    f = lambda th: (lambda res: (rates_of(res), rates_of(res, True)))(run(structure, scaled(params, *th), "local"))  # noqa: E731
    (_, r), both = jax.jit(jax.vmap(lambda t: jax.jvp(f, (theta,), (t,)), out_axes=(None, -1)))(jnp.eye(3))  # jacfwd
    local, settled, r = (np.asarray(x) for x in (*both, r))
    plain = nw.simulate_network(KEY, structure, params, T=T, dt=DT, record=False)
    raster = {a: plain.spikes[a] for a in ("E", "I")}

    def replayed(h, inh=False, cv=False):
        moved = scaled(params, 0.0, 1.0, np.exp(h)) if inh else scaled(params, h, np.exp(h), 1.0)
        res = nw.simulate_network(KEY, structure, moved, T=T, dt=DT, record=False, replay=raster)
        return float(mean_cv(jnp.asarray(res.spikes["E"], jnp.float32))) if cv else rates_np(res, True)

    again = nw.simulate_network(KEY, structure, params, T=T, dt=DT, record=False, replay=raster)
    for name in ("E", "I"):                                       # a replay of a run's own rasters is that run
        np.testing.assert_array_equal(np.asarray(again.spikes[name]), np.asarray(plain.spikes[name]))
    h = gradients.CALIBRATION_STEP
    open_loop = (replayed(h) - replayed(-h)) / (2 * h)
    open_inh = (replayed(h, inh=True) - replayed(-h, inh=True)) / (2 * h)
    surrogate, surrogate_inh = settled[:, 0] + settled[:, 1], settled[:, 2]
    c, c_inh = open_loop / surrogate, open_inh / surrogate_inh
    cal = np.stack([c, c_inh], axis=1)                            # cal[a, b]: E's spikes act on the excitatory
    G = cal * np.asarray(settled[:, 1:]) / r[None, :]             # receptor, I's on the inhibitory one

    def expected(v, settled_only=False):
        """The mean-field derivative of the rates [Hz] along ``v = (drive, inhibitory scale)``."""
        dR = c * settled[:, 0] * v[0] + c_inh * settled[:, 2] * v[1]
        coef = np.linalg.solve(np.eye(2) - G, dR) / r
        x = settled if settled_only else local
        return c * x[:, 0] * v[0] + c_inh * x[:, 2] * v[1] + (cal * x[:, 1:]) @ coef

    primal, tangent = mean_field_jvp(structure, params)
    forward = rates_np(tangent)
    reverse = mean_field_grad(structure, params)
    both_ways, drive = expected((1.0, 1.0)), expected((1.0, 0.0))
    assert r.min() > 1.0 and abs(drive[0]) > 1.0 and np.all((c > 0.05) & (c < 0.95))
    assert np.all(open_inh < 0) and np.all(surrogate_inh < 0) and np.all((c_inh > 0.05) & (c_inh < 0.95))
    assert abs(c_inh[0] / c[0] - 1) > 0.1                         # the two receptors' calibrations differ
    np.testing.assert_allclose(forward, both_ways, rtol=2e-3)
    np.testing.assert_allclose(reverse, drive[0] + 0.5 * drive[1], rtol=2e-3)
    assert abs(drive[0]) < 0.5 * abs(float(local[0, 0]))          # the feedback and the calibration matter
    gain = nw.loop_gain(KEY, structure, params, T=T, dt=DT)
    assert gain.names == ("E", "I") and gain.stable
    for got, want in ((gain.calibration, c), (gain.open_loop, open_loop), (gain.surrogate, surrogate),
                      (gain.calibration_inh, c_inh), (gain.open_loop_inh, open_inh),
                      (gain.surrogate_inh, surrogate_inh), (gain.G, G)):
        np.testing.assert_allclose(got, want, rtol=1e-4)
    np.testing.assert_allclose(gain.rates, r, rtol=1e-6)
    # the statistic: its value, and its derivative through the settled E rate (Hz here, as the slope)
    assert float(primal.statistics["cv"]) == float(mean_cv(jnp.asarray(primal.spikes["E"], jnp.float32)))
    slope = (replayed(h, cv=True) - replayed(-h, cv=True)) / (2 * h * open_loop[0])
    d_rates = rates_np(tangent, settled=True)
    np.testing.assert_allclose(d_rates, expected((1.0, 1.0), settled_only=True), rtol=2e-3)
    assert abs(slope) > 1e-3 and np.isfinite(primal.statistics["cv"])
    np.testing.assert_allclose(float(tangent.statistics["cv"]), slope * d_rates[0], rtol=2e-3)
    # with closed-loop slopes given: their sum over the populations' settled rate derivatives [Hz]
    assert float(primal.statistics["cv_closed"]) == float(primal.statistics["cv"])
    np.testing.assert_allclose(float(tangent.statistics["cv_closed"]),
                               CLOSED["E"] * d_rates[0] + CLOSED["I"] * d_rates[1], rtol=1e-4)


@pytest.mark.slow    # a vmapped program of its own (5 CPU-s); the default tier checks vmap == loop of the
def test_vmap_equals_the_loop(split):    # mean-field gradient in test_network.py (exp_euler network)
    structure, params = split
    keys = jax.random.split(jax.random.key(9), 2)
    loop = np.stack([rates_of(mean_field_jvp(structure, params, k)[1]) for k in keys])
    batched = jax.vmap(lambda k: rates_of(mean_field_jvp(structure, params, k)[1]))(keys)
    np.testing.assert_allclose(batched, loop, rtol=1e-5)


def test_forward_values_are_the_plain_simulation(split):
    """Spikes bit for bit; the final state (every neuron's v, g, refractory clock, delay buffers, STP) to
    float32 rounding (the plain run takes the min-delay window path, which sums a window's deliveries in
    another order)."""
    structure, params = split
    plain = nw.simulate_network(KEY, structure, params, T=T, dt=DT, record=False)
    mf = mean_field_jvp(structure, params)[0]
    for name in ("E", "I"):
        np.testing.assert_array_equal(np.asarray(plain.spikes[name]), np.asarray(mf.spikes[name]) > 0)
    leaves = jax.tree.leaves(plain.state)
    assert len(leaves) > 4
    for a, b in zip(leaves, jax.tree.leaves(mf.state), strict=True):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-6, atol=1e-6)


def test_the_old_flag_and_bad_values(split):
    structure, params = split
    # the old flag's run takes the same statistics and loss as ``rates(..., "local")``, so that the two reverse-mode
    # programs are one if the flag means the "local" estimator (4 compilations of the simulator became 2: 2.8 -> about
    # 2 CPU-s, 2026-12-07); the values are compared as before
    a = jax.grad(lambda w: rates(structure, scaled(params, w, 1.0, 1.0), "local")[0])(0.0)
    b = jax.grad(lambda w: rates_of(nw.simulate_network(KEY, structure, scaled(params, w, 1.0, 1.0), T=T, dt=DT,
                                                        spike_grad=fast_sigmoid(), record=False, recurrent_grad=False,
                                                        statistics={"cv": ("E", mean_cv)}))[0])(0.0)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    for bad, error, match in [([("E", mean_cv)], TypeError, "statistics must be None or a dict"),
                              ({"cv": mean_cv}, TypeError, r"statistics\['cv'\] must be a \(population, fn\) pair"),
                              ({"cv": ("X", mean_cv)}, ValueError, r"population 'X' must be one of \['E', 'I'\]"),
                              ({1: ("E", mean_cv)}, TypeError, "every label must be a str"),
                              ({"n": ("E", lambda s: s.sum() > 0)}, TypeError, "must return floats"),
                              ({"cv": ("E", mean_cv, [0.1])}, TypeError, "slopes must be a non-empty dict"),
                              ({"cv": ("E", mean_cv, {"X": 0.1})}, ValueError, r"slopes for \['X'\]"),
                              ({"cv": ("E", mean_cv, {"E": np.nan})}, ValueError, "slope of 'E' must be finite"),
                              ({"cv": ("E", mean_cv, {"I": np.ones(2)})}, ValueError, "slope of 'I' must be a scalar")]:
        with pytest.raises(error, match=match):
            nw.simulate_network(KEY, structure, params, T=T, dt=DT, statistics=bad)
    with pytest.raises(ValueError, match=r"statistics\['v'\] carries closed-loop slopes, so its function must return "
                                         r"a scalar, got shape \(40,\)"):
        nw.simulate_network(KEY, structure, params, T=T, dt=DT, spike_grad=fast_sigmoid(), record=False,
                            statistics={"v": ("E", lambda s: s.mean(1), CLOSED)})
    with pytest.raises(ValueError, match=r"closed-loop slopes, which only grad_estimator='mean_field' uses .* 'local'"):
        nw.simulate_network(KEY, structure, params, T=T, dt=DT, spike_grad=fast_sigmoid(), grad_estimator="local",
                            statistics={"cv": ("E", mean_cv, CLOSED)})
    with pytest.raises(ValueError, match="grad_estimator='exact' must be one of"):
        nw.simulate_network(KEY, structure, params, T=T, dt=DT, grad_estimator="exact")
    with pytest.raises(ValueError, match="not both"):
        nw.simulate_network(KEY, structure, params, T=T, dt=DT, grad_estimator="local", recurrent_grad=True)
    with pytest.raises(ValueError, match="replay must be a dict with a raster for every population"):
        nw.simulate_network(KEY, structure, params, T=T, dt=DT, replay={"E": np.zeros((40, 600))})
    with pytest.raises(ValueError, match=r"replay\['I'\] must have shape \(10, 600\)"):
        nw.simulate_network(KEY, structure, params, T=T, dt=DT, replay={"E": np.zeros((40, 600)),
                                                                        "I": np.zeros((10, 599))})


def test_an_untrusted_mean_field_warns(split):
    """The warnings' conditions on given values (a calibrated loop gain is below 1 in every stationary run
    we could build: a saturated runaway network sits at a stable state); a stable network run through the
    estimator stays silent, and a silent network keeps the surrogate's derivative (nothing new to compile)."""
    structure, params = split
    names, r = ("E", "I"), np.array([10.0, 20.0])
    ok = np.array([[1.0, 2.0], [-1.0, -2.0]])          # responses to the excitatory (> 0) and inhibitory (< 0) input
    with pytest.warns(RecurrentGradientWarning, match="real part 1.2"):
        gradients._warn_if_untrusted(np.array([[1.2, 0.0], [0.0, 0.5]]), r, ok, ok, names)
    with pytest.warns(RecurrentGradientWarning, match=r"could not calibrate population\(s\) \['I'\].*excitatory"):
        gradients._warn_if_untrusted(np.zeros((1, 2, 2)), r[None], np.array([[[1.0, 0.0], [-1.0, -2.0]]]), ok[None],
                                     names)
    with pytest.warns(RecurrentGradientWarning, match=r"could not calibrate population\(s\) \['E'\].*inhibitory"):
        gradients._warn_if_untrusted(np.zeros((2, 2)), r, np.array([[1.0, 2.0], [0.5, -2.0]]), ok, names)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecurrentGradientWarning)
        gradients._warn_if_untrusted(np.array([[0.9, -2.0], [2.0, -1.0]]), r, ok, ok, names)
        gradients._warn_if_untrusted(np.zeros((2, 2)), np.array([10.0, 0.0]), np.array([[1.0, 0.0], [-1.0, 0.0]]),
                                     ok, names)
        no_inh = np.array([[1.0, 2.0], [0.0, 0.0]])     # no inhibitory input: nothing to calibrate, no warning
        gradients._warn_if_untrusted(np.zeros((2, 2)), r, no_inh, no_inh, names)
        mean_field_grad(structure, params)                              # the stable one stays silent
        jax.effects_barrier()
    # a silent network: nothing to calibrate (c = 1), and the surrogate still points out of silence
    silent = scaled(params, -1.5, 1.0, 1.0)
    gain = nw.loop_gain(KEY, structure, silent, T=T, dt=DT)
    assert gain.rates.max() == 0.0 and np.all(gain.calibration == 1.0) and np.all(gain.open_loop == 0.0)
    assert np.all(gain.calibration_inh == 1.0) and np.all(gain.open_loop_inh == 0.0)
    assert float(mean_field_grad(structure, silent)) > 0.0


def test_rate_slopes_are_the_open_and_closed_loop_differences(split):
    """``rate_slopes`` rebuilt from public pieces: for each key, the run's rasters replayed and the network run
    closed, both with every excitatory input (drive weight, weights out of E) scaled by ``e^(+-h)``; the slope
    is the ratio of the summed differences of the statistic and of the settled E rate [Hz], its error the
    jackknife over keys.  The statistic and the number of keys are those of ``train_network``'s
    ``cv_rate_check`` (this file runs in that test's worker: the 40 E + 10 I network's structure is the same, so
    both use one compiled ``rate_slopes`` program)."""
    structure, params = split
    statistic = late_cv_statistic(int(round(20.0 / DT)))           # train_network --quick: late_start 20 ms
    keys = jax.random.split(jax.random.key(3), 2)
    dy, dr = {"open": [], "closed": []}, {"open": [], "closed": []}
    for k in keys:
        raster = dict(nw.simulate_network(k, structure, params, T=T, dt=DT, record=False).spikes)
        for loop, replay in (("open", raster), ("closed", None)):
            runs = [nw.simulate_network(k, structure, scaled(params, log_s, jnp.exp(log_s), 1.0), T=T, dt=DT,
                                        record=False, replay=replay)
                    for log_s in jnp.asarray([gradients.CALIBRATION_STEP, -gradients.CALIBRATION_STEP])]
            cv, r = ([f(res) for res in runs] for f in (lambda res: float(statistic(jnp.asarray(res.spikes["E"],
                                                                                                  jnp.float32))),
                                                        lambda res: float(rates_np(res, True)[0])))
            dy[loop].append(cv[0] - cv[1])
            dr[loop].append(r[0] - r[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecurrentGradientWarning)
        got = nw.rate_slopes(keys, structure, params, T=T, dt=DT, statistics={"cv": ("E", statistic)})
    # it warns exactly when the verdict is not "agree" (2 keys of 60 ms: here "unresolved")
    assert len([w for w in caught if w.category is RecurrentGradientWarning]) == (got.verdict[0] != "agree")
    n = len(keys)
    assert got.labels == ("cv",) and got.populations == ("E",) and got.keys == n
    for loop, slope, se, d_rate in (("open", got.open_loop, got.open_loop_se, got.d_rate_open),
                                    ("closed", got.closed_loop, got.closed_loop_se, got.d_rate_closed)):
        y, r = np.array(dy[loop]), np.array(dr[loop])
        loo = (y.sum() - y) / (r.sum() - r)
        assert r.sum() > 0 and np.all(np.isfinite(y))
        np.testing.assert_allclose(slope, [y.sum() / r.sum()], rtol=1e-4)
        np.testing.assert_allclose(se, [np.sqrt((n - 1) / n * np.sum((loo - loo.mean()) ** 2))], rtol=1e-3)
        np.testing.assert_allclose(d_rate, [r.mean() / (2 * gradients.CALIBRATION_STEP)], rtol=1e-4)
    assert got.open_loop[0] != got.closed_loop[0]                  # two different experiments
    assert got.verdict == (gradients._verdict(got.open_loop[0], got.open_loop_se[0], got.closed_loop[0],
                                              got.closed_loop_se[0]),)
    with pytest.raises(ValueError, match="at least 2 jax.random keys"):
        nw.rate_slopes(keys[:1], structure, params, T=T, dt=DT, statistics={"cv": ("E", mean_cv)})
    with pytest.raises(ValueError, match="at least one statistic"):
        nw.rate_slopes(keys, structure, params, T=T, dt=DT, statistics={})
    with pytest.raises(ValueError, match=r"population 'X' must be one of"):
        nw.rate_slopes(keys, structure, params, T=T, dt=DT, statistics={"cv": ("X", mean_cv)})


def onto(params, name, s):
    """The excitatory input onto population ``name`` (its drive and the weights from E onto it) times ``s``."""
    pops = {k: v._replace(drive=v.drive._replace(weight=v.drive.weight * s)) if k == name else v
            for k, v in params.populations.items()}
    projs = {k: v._replace(weights=v.weights * s) if k == f"E->{name}" else v for k, v in params.projections.items()}
    return params._replace(populations=pops, projections=projs)


def test_closed_loop_slopes_solve_the_closed_loop_differences(split):
    """``closed_loop_slopes`` rebuilt from public pieces: for each key the network runs closed with the excitatory
    input onto E, then onto I, scaled by ``e^(+-h)``; the differences of the settled rates [Hz] and of the
    statistic, summed over the keys, give the slopes by a 2 x 2 solve, their errors the jackknife over keys.
    A statistic that is NaN and a tight ``max_condition`` warn; the slopes attach to the statistics."""
    structure, params = split
    statistic = late_cv_statistic(int(round(20.0 / DT)))
    keys = jax.random.split(jax.random.key(3), 3)
    h = gradients.CALIBRATION_STEP
    dR, dY = [], []
    for k in keys:
        rows_r, rows_y = [], []
        for name in ("E", "I"):
            up, down = (nw.simulate_network(k, structure, onto(params, name, np.exp(x)), T=T, dt=DT, record=False)
                        for x in (h, -h))
            rows_r.append(rates_np(up, True) - rates_np(down, True))
            rows_y.append(float(statistic(jnp.asarray(up.spikes["E"], jnp.float32)))
                          - float(statistic(jnp.asarray(down.spikes["E"], jnp.float32))))
        dR.append(rows_r)
        dY.append(rows_y)
    dR, dY = np.array(dR), np.array(dY)                             # (keys, direction, population), (keys, direction)
    expected = np.linalg.solve(dR.sum(0), dY.sum(0))
    loo = np.array([np.linalg.solve(dR.sum(0) - dR[i], dY.sum(0) - dY[i]) for i in range(len(keys))])
    se = np.sqrt((len(keys) - 1) / len(keys) * np.sum((loo - loo.mean(0)) ** 2, axis=0))
    stats = {"cv": ("E", statistic), "nan": ("I", lambda s: jnp.full((), jnp.nan, s.dtype))}
    with pytest.warns(RecurrentGradientWarning, match=r"statistics \['nan'\] have slopes that are not finite"):
        got = nw.closed_loop_slopes(keys, structure, params, T=T, dt=DT, statistics=stats)
    assert got.labels == ("cv", "nan") and got.names == ("E", "I") and got.keys == 3
    assert np.all(np.isfinite(dY)) and np.linalg.cond(dR.sum(0)) < 30
    np.testing.assert_allclose([got.slopes["cv"][a] for a in ("E", "I")], expected, rtol=1e-3)
    np.testing.assert_allclose([got.se["cv"][a] for a in ("E", "I")], se, rtol=1e-2)
    np.testing.assert_allclose(got.d_rates, dR.mean(0) / (2 * h), rtol=1e-4)
    assert got.condition == pytest.approx(np.linalg.cond(dR.mean(0)), rel=1e-4)
    attached = got.attach({"cv": ("E", statistic), "other": ("I", mean_cv)})
    assert attached["cv"] == ("E", statistic, got.slopes["cv"]) and attached["other"] == ("I", mean_cv)
    with pytest.warns(RecurrentGradientWarning) as caught:           # and the NaN statistic's warning again
        nw.closed_loop_slopes(keys, structure, params, T=T, dt=DT, statistics=stats, max_condition=1.0001)
    assert any("hardly separate the populations' rates" in str(w.message) for w in caught)
    for kw, match in ((dict(keys=keys[:1]), "at least 2 jax.random keys"),
                      (dict(statistics={}), "at least one statistic"),
                      (dict(max_condition=1.0), "max_condition must be a number > 1")):
        args = dict(keys=keys, statistics=stats) | kw
        with pytest.raises(ValueError, match=match):
            nw.closed_loop_slopes(args.pop("keys"), structure, params, T=T, dt=DT, **args)


def test_closed_loop_slopes_of_a_population_that_never_moves(split, monkeypatch):
    """Given differences (the simulations replaced): where the I population's rate moves in no direction (no
    excitatory input, or silent), its slopes are NaN and say why, and the E slope is still solved from the
    direction that moved it; a statistic whose slopes are all within their standard errors warns; statistics given
    with slopes are refused (pairs are what is measured); ``max_condition`` may be a NumPy number."""
    structure, params = split
    keys = jax.random.split(jax.random.key(3), 4)
    per_step = np.float32(DT / 1000.0)
    dr = np.asarray([0.10, 0.12, 0.08, 0.11])                      # the E rate's response to its own input [Hz]
    r = np.zeros((4, 4, 2), np.float32)                            # (keys, +h E, +h I, -h E, -h I; E, I)
    r[:, 0, 0], r[:, 2, 0] = (5.0 + dr / 2) * per_step, (5.0 - dr / 2) * per_step
    r[:, 1, 0] = r[:, 3, 0] = 5.0 * per_step
    y_cv = np.zeros((4, 4), np.float32)
    y_cv[:, 0], y_cv[:, 2] = 0.02 * dr / 2, -0.02 * dr / 2          # 0.02 per Hz of E rate
    noise = np.asarray([[0.01, 0, -0.01, 0], [-0.01, 0, 0.01, 0], [0.01, 0, -0.012, 0], [-0.01, 0, 0.011, 0]],
                       np.float32)                                 # no slope beyond its standard error
    monkeypatch.setattr(gradients, "_closed_pairs",
                        lambda *a: (r, {"cv": y_cv, "noise": noise}))
    stats = {"cv": ("E", mean_cv), "noise": ("E", mean_cv)}
    with pytest.warns(RecurrentGradientWarning) as caught:
        got = nw.closed_loop_slopes(keys, structure, params, T=T, dt=DT, statistics=stats,
                                    max_condition=np.float32(30.0))
    text = [str(w.message) for w in caught]
    assert any("the rate of ['I'] moved in no direction" in t for t in text)
    assert any("no slope of statistics ['noise'] exceeds its standard error" in t for t in text)
    assert not any("hardly separate" in t or "not finite" in t for t in text)
    assert got.slopes["cv"]["E"] == pytest.approx(0.02, rel=1e-4) and np.isnan(got.slopes["cv"]["I"])
    assert got.se["cv"]["E"] < 1e-4 and np.isfinite(got.condition)
    for fn in (nw.closed_loop_slopes, nw.rate_slopes):
        with pytest.raises(ValueError, match=r"statistics \['cv'\] carry slopes; pass \(population, fn\) pairs"):
            fn(keys, structure, params, T=T, dt=DT, statistics={"cv": ("E", mean_cv, {"E": 0.1})})


def test_rate_slopes_warn_where_the_statistic_leaves_the_rate(split, monkeypatch):
    """The warning's condition on given differences (the simulations replaced): it names the statistic when the
    closed-loop slope differs from the open-loop one by more than 3 combined standard errors, and only then."""
    structure, params = split
    keys = jax.random.split(jax.random.key(3), 4)
    # the fake results in NumPy, as rate_slopes reads them (np.asarray): no programs of one operation each to compile;
    # rates (keys, up/down, P) per step: dr 0.1 Hz
    rates = np.asarray([[[1.0, 2.0], [0.9, 2.0]]] * 4, np.float32) * np.float32(DT / 1000.0)

    def fake(dy_closed, closed_rates=rates):
        def _rate_slopes(keys, structure, diff, names, statics, statistics):
            y_open = np.asarray([[0.003, 0.0], [0.0032, 0.0], [0.0028, 0.0], [0.003, 0.0]], np.float32)  # 0.03 per Hz
            y_closed = np.stack([np.asarray(dy_closed, np.float32), np.zeros(4, np.float32)], 1)
            return (rates, {"cv": y_open}), (closed_rates, {"cv": y_closed})
        return _rate_slopes

    statistics = {"cv": ("E", mean_cv)}
    monkeypatch.setattr(gradients, "_rate_slopes", fake([0.0002, 0.0003, 0.0001, 0.0002]))   # 0.002 per Hz
    with pytest.warns(RecurrentGradientWarning, match=r"statistics\['cv'\] does not follow its population's rate"):
        got = nw.rate_slopes(keys, structure, params, T=T, dt=DT, statistics=statistics)
    np.testing.assert_allclose([got.open_loop[0], got.closed_loop[0]], [0.03, 0.002], rtol=1e-3)
    assert got.verdict == ("differ",)
    monkeypatch.setattr(gradients, "_rate_slopes", fake([0.003, 0.0031, 0.0029, 0.003]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecurrentGradientWarning)
        got = nw.rate_slopes(keys, structure, params, T=T, dt=DT, statistics=statistics)
    np.testing.assert_allclose(got.closed_loop, [0.03], rtol=1e-3)
    assert got.verdict == ("agree",)
    # unresolved: the closed-loop rate did not move (NaN slope), or its slope is too uncertain to tell (SE 0.016,
    # more than a third of 0.03, and within 3 SE of it)
    for dy, closed_rates in (([0.003] * 4, rates[:, :1].repeat(2, 1)), ([0.003, -0.003, 0.006, 0.0], rates)):
        monkeypatch.setattr(gradients, "_rate_slopes", fake(dy, closed_rates=closed_rates))
        with pytest.warns(RecurrentGradientWarning, match=r"statistics\['cv'\] not resolved: .* use more keys"):
            got = nw.rate_slopes(keys, structure, params, T=T, dt=DT, statistics=statistics)
        assert got.verdict == ("unresolved",)
    assert got.closed_loop_se[0] > 0.01 and abs(got.closed_loop[0] - 0.03) < 3 * got.closed_loop_se[0]


def moved(params, theta):
    """``params`` moved by (log drive weight, log E->E weight, log I->E weight, logit E->E U0)."""
    pops = {k: v._replace(drive=v.drive._replace(weight=v.drive.weight * jnp.exp(theta[0])))
            for k, v in params.populations.items()}
    projs = dict(params.projections)
    ee = projs["E->E"]
    U0 = jax.nn.sigmoid(jnp.log(ee.stp.U0) - jnp.log1p(-ee.stp.U0) + theta[3])
    projs["E->E"] = ee._replace(weights=ee.weights * jnp.exp(theta[1]), stp=ee.stp._replace(U0=U0))
    projs["I->E"] = projs["I->E"]._replace(weights=projs["I->E"].weights * jnp.exp(theta[2]))
    return params._replace(populations=pops, projections=projs)


@pytest.mark.slow
@pytest.mark.parametrize("T_s", [1.0, 10.0])
def test_gradients_against_finite_differences(T_s):
    """200 E + 50 I, p = 0.2: d(E rate), d(I rate) with respect to the drive weight, the E->E and I->E
    weights and the E->E U0 against central differences over the same 8 keys: finite everywhere; where the
    difference is clearly non-zero (beyond 3 standard errors), the same sign and within a factor of 3."""
    structure, params = nw.partition(nw.ei_network(jax.random.key(0), n_E=200, n_I=50, p=0.2))
    keys = [jax.random.key(100 + i) for i in range(8)]
    T_ms = 1000.0 * T_s
    plain = jax.jit(lambda th, k: rates_of(nw.simulate_network(k, structure, moved(params, th), T=T_ms, dt=DT,
                                                               record=False)))
    estimate = jax.jit(jax.jacfwd(lambda th, k: rates(structure, moved(params, th), "mean_field", T=T_ms, key=k)))
    h, zero = 0.05, jnp.zeros(4)
    fd = np.array([[(plain(zero.at[i].set(h), k) - plain(zero.at[i].set(-h), k)) / (2 * h) for i in range(4)]
                   for k in keys])                                         # (keys, parameters, outputs)
    mean, se = fd.mean(0).T, fd.std(0, ddof=1).T / np.sqrt(len(keys))     # (outputs, parameters)
    est = np.mean([estimate(zero, k) for k in keys], axis=0)
    assert np.all(np.isfinite(est))
    resolved = np.abs(mean) > 3 * se
    assert resolved[:, :3].sum() >= 4, (mean, se)                          # the test can fail
    ratio = est[resolved] / mean[resolved]
    assert np.all(ratio > 1 / 3) and np.all(ratio < 3), (est, mean, se)


@pytest.mark.slow
def test_cv_with_closed_loop_slopes_against_finite_differences(users_programs):
    """200 E + 50 I, p = 0.2, 1 s: the E neurons' mean ISI CV with closed-loop slopes measured on 24 keys of their
    own (``closed_loop_slopes``) against central differences over 48 other keys, for the drive, E->E and I->E
    weights and the E->E U0: finite; where the difference is clearly non-zero (beyond 3 SE), the same sign and
    within a factor of 3 (about 4 CPU minutes with the programs optimised, as users compile them; more than
    20 without)."""
    structure, params = nw.partition(nw.ei_network(jax.random.key(0), n_E=200, n_I=50, p=0.2))
    cv = {"cv": ("E", mean_cv)}
    slopes = nw.closed_loop_slopes(jax.random.split(jax.random.key(7), 24), structure, params, T=1000.0, dt=DT,
                                   statistics=cv)
    assert slopes.condition < 10 and slopes.slopes["cv"]["E"] > 3 * slopes.se["cv"]["E"]
    keys = [jax.random.key(100 + i) for i in range(48)]

    def cv_of(th, k, spike_grad):
        res = nw.simulate_network(k, structure, moved(params, th), T=1000.0, dt=DT, record=False,
                                  spike_grad=spike_grad, statistics=slopes.attach(cv) if spike_grad else cv)
        return res.statistics["cv"]

    plain = jax.jit(lambda th, k: cv_of(th, k, None))
    estimate = jax.jit(jax.jacfwd(lambda th, k: cv_of(th, k, fast_sigmoid())))
    h, zero = 0.05, jnp.zeros(4)
    fd = np.array([[(plain(zero.at[i].set(h), k) - plain(zero.at[i].set(-h), k)) / (2 * h) for i in range(4)]
                   for k in keys])                                         # (keys, parameters)
    mean, se = fd.mean(0), fd.std(0, ddof=1) / np.sqrt(len(keys))
    est = np.mean([estimate(zero, k) for k in keys], axis=0)
    assert np.all(np.isfinite(est))
    resolved = np.abs(mean) > 3 * se
    assert resolved.sum() >= 2, (mean, se)                                 # the test can fail
    ratio = est[resolved] / mean[resolved]
    assert np.all(ratio > 1 / 3) and np.all(ratio < 3), (est, mean, se)


@pytest.mark.slow
def test_grad_network_script_quick(tmp_path):
    """The study script behind BENCHMARKS.md "Recurrent gradients" runs and writes its tables."""
    import importlib.util
    import json
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "experiments" / "grad_network.py"
    spec = importlib.util.spec_from_file_location("grad_network", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(["--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "grad_network.json").read_text())
    assert saved["fd"] == result["fd"] and set(saved["estimators"]) == {"mean_field", "local"}
    assert np.all(np.isfinite(saved["estimators"]["mean_field"]["mean"]))
    assert "| E rate [Hz] | FD |" in (tmp_path / "grad_network.md").read_text()
    diag = module.main(["--quick", "--open-loop", "--out", str(tmp_path)])
    assert np.shape(diag["fd"]) == np.shape(diag["local"]) == (3, 6)          # E rate, I rate, E ISI CV
    text = (tmp_path / "grad_network_open_loop.md").read_text()
    assert "| E rate [Hz] | replay FD |" in text and "| | CV FD / E rate FD |" in text
    fd = np.array(diag["fd"])
    ratio = [float(x) for x in text.split("| | CV FD / E rate FD | ")[1].split(" |\n")[0].split(" | ")]
    np.testing.assert_allclose(ratio, fd[2] / fd[0], rtol=6e-3)                # printed to 3 digits
    closure = module.main(["--quick", "--closure", "--out", str(tmp_path)])
    assert np.shape(closure["closure"]) == np.shape(closure["fd"]) == (3, 4)
    assert np.all(np.isfinite(closure["closure"])) and np.all(np.isfinite(closure["fd"]))
    assert "| | closure |" in (tmp_path / "grad_network_closure.md").read_text()
    spikes = {"E": jnp.ones((40, 5), bool), "I": jnp.zeros((10, 5), bool)}
    down = module._rate_moved(spikes, "E", -1, jax.random.key(0))["E"]
    up = module._rate_moved({"E": jnp.eye(40, 5, dtype=bool), "I": spikes["I"]}, "E", 1, jax.random.key(0))["E"]
    assert 0.8 < float(down.mean()) < 0.97 and int(up.sum()) >= 5                  # thinned; added to (never removed)
    # "mean_field" and its closed-loop variant from one Jacobian: the former equal to its own run
    both = module.main(["--quick", "--estimators", "mean_field,mean_field_closed", "--slope-keys", "2",
                        "--estimator-keys", "1", "--out", str(tmp_path)])
    alone = module.main(["--quick", "--estimators", "mean_field", "--estimator-keys", "1", "--out", str(tmp_path)])
    assert both["estimator_keys"] == 1 and both["estimators"]["mean_field"]["se"] is None
    np.testing.assert_array_equal(both["estimators"]["mean_field"]["mean"], alone["estimators"]["mean_field"]["mean"])
    closed, one = (np.array(both["estimators"][e]["mean"]) for e in ("mean_field_closed", "mean_field"))
    np.testing.assert_array_equal(closed[:2], one[:2])                           # the rates: the same estimator
    assert not np.allclose(closed[2], one[2])                                    # the CV: two derivatives
    ratios = module.resolved_ratios(both, n_se=0.0)                              # every entry "resolved"
    fd = np.array(both["fd"])
    assert [q for _, _, q in ratios["mean_field"]] == pytest.approx(
        [one[o, i] / fd[o, i] for o in range(3) for i in range(4) if fd[o, i] != 0])
    assert "estimate / FD where the difference is beyond 3 SE" in (tmp_path / "grad_network.md").read_text()


def late_cv(spikes, first: int = 1000):
    """The E neurons' mean smooth ISI CV (at least 4 spikes) from sample ``first`` (100 ms) on."""
    return jnp.nanmean(jaxlif.soft_isi_cv(spikes[:, first:]))


@pytest.mark.slow
def test_cv_through_the_rate_against_finite_differences():
    """``experiments/train_network.py``'s hidden network (800 E + 200 I, p = 0.1, E->E weights x2), 600 ms,
    the E neurons' mean ISI CV over 100-600 ms: its derivative with respect to the drive, E->E and I->E weights
    given as ``statistics=`` (through the E rate) against central differences (step 0.1) over the same 4 keys:
    finite; where the difference is clearly non-zero (beyond 3 SE), the same sign and within a factor of 3.
    The same CV taken of the surrogate rasters (their tangent) is more than 3x off in a resolved case: the
    comparison can tell the two apart."""
    structure, params = nw.partition(nw.ei_network(jax.random.key(0), weights={"E->E": 2.0}))
    keys = [jax.random.key(100 + i) for i in range(4)]

    def cvs(th, k, spike_grad):
        res = nw.simulate_network(k, structure, moved(params, jnp.append(th, 0.0)), T=600.0, dt=DT, record=False,
                                  spike_grad=spike_grad, statistics={"cv": ("E", late_cv)})
        return jnp.stack([res.statistics["cv"], late_cv(jnp.asarray(res.spikes["E"], jnp.float32))])

    plain = jax.jit(lambda th, k: cvs(th, k, None)[0])
    estimate = jax.jit(jax.jacfwd(lambda th, k: cvs(th, k, fast_sigmoid())))
    h, zero = 0.1, jnp.zeros(3)
    fd = np.array([[(plain(zero.at[i].set(h), k) - plain(zero.at[i].set(-h), k)) / (2 * h) for i in range(3)]
                   for k in keys])                                         # (keys, parameters)
    mean, se = fd.mean(0), fd.std(0, ddof=1) / np.sqrt(len(keys))
    est = np.mean([estimate(zero, k) for k in keys], axis=0)               # (through the rate, rasters) x 3
    assert np.all(np.isfinite(est))
    resolved = np.abs(mean) > 3 * se
    assert resolved.sum() >= 2, (mean, se)                                 # the test can fail
    ratio = est[:, resolved] / mean[resolved]
    assert np.all(ratio[0] > 1 / 3) and np.all(ratio[0] < 3), (est, mean, se)
    assert np.any((ratio[1] < 1 / 3) | (ratio[1] > 3)), (est, mean, se)
