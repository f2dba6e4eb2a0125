"""Unconstrained parametrisations: round trips, ranges, gradients, the library's default rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlif
from jaxlif import constraints as C


@pytest.mark.parametrize("con, x", [(C.real(), -3.5), (C.positive(), 2.5), (C.greater_than(0.1), 0.35),
                                    (C.interval(-2.0, 5.0), 4.0), (C.unit_interval(), 0.45)])
def test_round_trip_and_range(con, x):
    with jax.enable_x64(True):
        theta = con.inverse(x)
        assert float(con.forward(theta)) == pytest.approx(x, rel=1e-12)
        ys = np.asarray(con.forward(jnp.linspace(-30.0, 30.0, 101)))
        assert (ys >= con.low).all() and (ys <= con.high).all()


def test_boundaries_and_outside_values():
    assert C.positive().inverse(0.0) == -np.inf
    assert np.isnan(C.unit_interval().inverse(1.5))
    with pytest.raises(ValueError, match="low < high"):
        C.interval(1.0, 1.0)
    with pytest.raises(ValueError, match="upper bounds alone"):
        C.Constraint(-np.inf, 3.0)


def test_default_constraints_round_trip_nested_params():
    params = jaxlif.stp_lif_params(0.5)
    cons = C.default_constraints(params, dt=0.1)
    assert isinstance(cons, jaxlif.STPLIFParams) and cons.stp_E.U0 == C.unit_interval()
    theta = C.to_unconstrained(params, cons)
    back = C.from_unconstrained(theta, cons)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    # every unconstrained point maps to valid parameters (the library's own checks accept them)
    wild = jax.tree.map(lambda t: t + 7.0, theta)
    jaxlif.stp_lif.simulate_stp_lif_poisson(jax.random.key(0), C.from_unconstrained(wild, cons), T=5.0)


def test_gradient_through_the_map():
    cons = C.default_constraints(jaxlif.STPParams(), dt=0.1)
    theta = C.to_unconstrained(jaxlif.STD, cons)
    g = jax.grad(lambda th: C.from_unconstrained(th, cons).tau_d)(theta)
    assert float(g.tau_d) == pytest.approx(100.0 - 0.1, rel=1e-5)      # d(dt + e^t)/dt = tau - dt
    assert float(g.U0) == 0.0


def test_unknown_type_is_refused():
    with pytest.raises(TypeError, match="no default constraints"):
        C.default_constraints((1.0, 2.0))
