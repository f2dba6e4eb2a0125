"""Surrogate spike functions: exact forward, unit-area derivatives, identical membrane steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from jaxlif import surrogates
from jaxlif.neurons import LIFParams, lif_init, membrane_step

FACTORIES = [surrogates.fast_sigmoid(0.5), surrogates.arctan(0.5), surrogates.triangle(2.0)]


@pytest.mark.parametrize("sg", FACTORIES, ids=lambda s: s.name)
def test_forward_is_the_heaviside_and_derivative_has_unit_area(sg):
    x = jnp.array([-3.0, -1e-6, 0.0, 1e-6, 3.0, jnp.inf, -jnp.inf])
    np.testing.assert_array_equal(sg(x), [0, 0, 1, 1, 1, 1, 0])
    area, _ = integrate.quad(lambda z: float(sg.derivative(z)), -np.inf, np.inf, limit=200)
    assert area == pytest.approx(1.0, rel=1e-6)
    g = jax.grad(lambda z: sg(z))(0.0)
    assert g == pytest.approx(float(sg.derivative(0.0)))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_factories_reject_bad_widths(bad):
    with pytest.raises(ValueError, match="slope"):
        surrogates.fast_sigmoid(bad)
    with pytest.raises(ValueError, match="width"):
        surrogates.triangle(bad)


@pytest.mark.parametrize("v0", [-60.0, -55.0, -54.0])
@pytest.mark.parametrize("refractory", [0.0, 3.0])
def test_membrane_step_values_identical_with_surrogate(v0, refractory):
    p = LIFParams()
    st = lif_init(p)._replace(v=jnp.float32(v0), refractory=jnp.float32(refractory))
    args = (p, st, 2.0, 0.0, 1.0, -80.0, 10.0, 0.1)
    exact = membrane_step(*args)
    for sg in FACTORIES + [surrogates.fast_sigmoid(detach_reset=True)]:
        soft = membrane_step(*args, spike_grad=sg)
        np.testing.assert_array_equal(soft[0].v, exact[0].v)
        np.testing.assert_array_equal(soft[0].refractory, exact[0].refractory)
        np.testing.assert_array_equal(soft[1][0], exact[1][0])
        assert soft[1][1].dtype == jnp.float32 and float(soft[1][1]) == float(exact[1][1])


def test_reset_gradient_and_detach():
    p = LIFParams()

    def v_after(v, sg):
        st = lif_init(p)._replace(v=v)
        return membrane_step(p, st, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, spike_grad=sg)[1][0]

    sg = surrogates.triangle(2.0)
    # just above threshold: v_it = V_reset, d/dv = (1 - s) + h(x) (V_reset - v) = 0 + 0.5*(1 - 0.5)*(-20.5)
    g = jax.grad(v_after)(jnp.float32(-54.5), sg)
    assert g == pytest.approx(0.5 * (1 - 0.25) * (-75.0 + 54.5), rel=1e-5)
    g0 = jax.grad(v_after)(jnp.float32(-54.5), surrogates.triangle(2.0, detach_reset=True))
    assert g0 == 0.0
    assert jax.grad(v_after)(jnp.float32(-54.5), None) == 0.0


def test_spike_grad_type_is_checked():
    with pytest.raises(TypeError, match="spike_grad"):
        surrogates.spike_from_voltage(jnp.float32(0.0), -55.0, "fast")
