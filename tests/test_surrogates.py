"""Surrogate spike functions: exact forward, unit-area derivatives, identical membrane steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from jaxlif import surrogates
from jaxlif.neurons import LIFParams, lif_init, membrane_step

FACTORIES = [surrogates.fast_sigmoid(0.5), surrogates.arctan(0.5), surrogates.triangle(2.0)]

# The surrogates evaluated in compiled programs (a surrogate is a static argument: hashable), two per
# surrogate: eagerly, each of their operations compiled a program of its own (about 30 in this test,
# 2026-12-07).
_heaviside = jax.jit(lambda sg, x: sg(x), static_argnums=0)
#: ``(h(z), d sg / dz)``: the derivative given and the one AD takes through the spike function.
_bump_and_grad = jax.jit(lambda sg, z: (sg.derivative(z), jax.grad(lambda y: sg(y))(z)), static_argnums=0)


@pytest.mark.parametrize("sg", FACTORIES, ids=lambda s: s.name)
def test_forward_is_the_heaviside_and_derivative_has_unit_area(sg):
    x = np.array([-3.0, -1e-6, 0.0, 1e-6, 3.0, np.inf, -np.inf], np.float32)
    np.testing.assert_array_equal(_heaviside(sg, x), [0, 0, 1, 1, 1, 1, 0])
    area, _ = integrate.quad(lambda z: float(_bump_and_grad(sg, z)[0]), -np.inf, np.inf, limit=200)
    assert area == pytest.approx(1.0, rel=1e-6)
    h, g = _bump_and_grad(sg, 0.0)
    assert g == pytest.approx(float(h))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_factories_reject_bad_widths(bad):
    with pytest.raises(ValueError, match="slope"):
        surrogates.fast_sigmoid(bad)
    with pytest.raises(ValueError, match="width"):
        surrogates.triangle(bad)


@jax.jit
def _steps(v0, refractory):
    """The exact step and the step with each surrogate from the same state: one program for every case
    (eagerly: 11 one-operation programs)."""
    p = LIFParams()
    st = lif_init(p)._replace(v=v0, refractory=refractory)
    args = (p, st, 2.0, 0.0, 1.0, -80.0, 10.0, 0.1)
    return membrane_step(*args), [membrane_step(*args, spike_grad=sg)
                                  for sg in FACTORIES + [surrogates.fast_sigmoid(detach_reset=True)]]


@pytest.mark.parametrize("v0", [-60.0, -55.0, -54.0])
@pytest.mark.parametrize("refractory", [0.0, 3.0])
def test_membrane_step_values_identical_with_surrogate(v0, refractory):
    exact, softs = _steps(np.float32(v0), np.float32(refractory))
    for soft in softs:
        np.testing.assert_array_equal(soft[0].v, exact[0].v)
        np.testing.assert_array_equal(soft[0].refractory, exact[0].refractory)
        np.testing.assert_array_equal(soft[1][0], exact[1][0])
        assert soft[1][1].dtype == jnp.float32 and float(soft[1][1]) == float(exact[1][1])


def test_reset_gradient_and_detach():
    p = LIFParams()

    def v_after(v, sg):
        st = lif_init(p)._replace(v=v)
        return membrane_step(p, st, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, spike_grad=sg)[1][0]

    # the three gradients in one program (eagerly: 16 one-operation programs)
    sgs = (surrogates.triangle(2.0), surrogates.triangle(2.0, detach_reset=True), None)
    g, g0, g_exact = jax.jit(lambda v: [jax.grad(v_after)(v, sg) for sg in sgs])(np.float32(-54.5))
    # just above threshold: v_it = V_reset, d/dv = (1 - s) + h(x) (V_reset - v) = 0 + 0.5*(1 - 0.5)*(-20.5)
    assert g == pytest.approx(0.5 * (1 - 0.25) * (-75.0 + 54.5), rel=1e-5)
    assert float(g0) == 0.0
    assert float(g_exact) == 0.0


def test_spike_grad_type_is_checked():
    with pytest.raises(TypeError, match="spike_grad"):      # raised while tracing: nothing to compile
        jax.eval_shape(lambda v: surrogates.spike_from_voltage(v, -55.0, "fast"), np.float32(0.0))
