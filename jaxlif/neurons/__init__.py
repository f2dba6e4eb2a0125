r"""Leaky integrate-and-fire neurons: current-based and conductance-based.

Continuous time (docs/conventions.md, section 3)::

    current LIF:      tau_m dV/dt = -(V - E_L) + I(t) / g_L
    conductance LIF:  tau_m dV/dt = -(V - E_L) - (g_E/g_L)(V - E_E) - (g_I/g_L)(V - E_I) + I_inj/g_L
    V >= V_th  ->  spike, V <- V_reset, clamped at V_reset for t_ref

Discrete scheme implemented (the tutorial's ``run_LIF_cond``; docs/conventions.md 4.2), for
``it = 0 .. n_steps-2``::

    1. if r > 0:          v[it] = V_reset; r -= 1                   (refractory clamp)
       elif v[it] >= V_th: spike at it;  v[it] = V_reset; r = t_ref/dt
    2. g_E[it+1] = g_E[it] - dt/tau_E g_E[it] + gE_bar n_E[it+1]     (conductance LIF only)
    3. v[it+1] = v[it] + dt/tau_m (-(v[it]-E_L) - g_E[it+1]/g_L (v[it]-E_E)
                                   - g_I[it+1]/g_L (v[it]-E_I) + I[it]/g_L)

The last sample ``v[n_steps-1]`` is never tested against threshold; the refractory
counter ``r`` is a float, exactly as in the tutorial (t_ref = 2, dt = 0.1 clamps the 20
steps after the spike step).  The current-based LIF is the same scheme with
``g_E = g_I = 0``; with ``spiking=False`` the threshold is removed (``V_th = +inf``),
which gives the first tutorial's subthreshold loop and the free membrane potential.

``integrator="exp_euler"`` (every simulator and step here; docs/conventions.md section 10) replaces
this scheme by exponential Euler: exact synaptic decay with an input at step ``k`` entering ``g`` at
``t_k``, the membrane relaxing exactly towards ``V_inf`` under the conductances' exact means over the
step, the spike at the exact crossing time within the step (``spike_offset``), reset and ``t_ref``
from there.  Second order in ``dt``; exact for the current LIF with a current held over each step.

Gradients (docs/gradients.md): every simulator supports ``jax.grad``.

* Subthreshold runs (``spiking=False``, or no sample reaching ``V_th``): exact derivatives of the
  discrete scheme.
* Spikes without a surrogate (``spike_grad=None``, the default): the threshold is a step, so the
  gradient of a spike raster, count or rate is exactly **zero**, and the gradient of a voltage in a
  spiking run is the derivative *between* resets only: it ignores that a parameter change moves
  spikes and resets, and for quantities that resets pull down (the mean voltage) it is biased
  **upwards** (e.g. d mean(V) / d gE_bar comes out positive when finite differences are negative).
* ``spike_grad=jaxlif.surrogates.fast_sigmoid()`` (or ``arctan``, ``triangle``, ``custom``): the same
  forward values; the spike carries the surrogate derivative ``h(v - V_th)`` and the reset passes it
  on to the voltage (unless ``detach_reset``).  A useful descent direction, not an exact derivative:
  the sign of finite differences, a magnitude off by tens of percent.  The gradient through the reset
  grows exponentially when ``peak(h) (V_th - V_reset) > 2``; the simulators warn
  (:mod:`jaxlif.surrogates`, "Stability").
* ``checkpoint=True`` (or a segment length) bounds the memory of reverse-mode gradients by
  ``O(sqrt(n_steps))`` instead of ``O(n_steps)`` at the cost of one extra forward pass
  (:mod:`jaxlif._scan`); values and gradients are unchanged.
* Poisson input is drawn, not reparameterised: the gradient with respect to ``rate_E``/``rate_I`` is
  zero (use :func:`jaxlif.fmp_shot_noise` for an analytic, differentiable approximation).

Arguments are checked before tracing (errors name the argument, its value and the valid range);
invalid *traced* values (inside your ``jit``/``vmap``) poison the outputs (NaN traces, all-``True``
rasters; their gradients are NaN too, never a finite zero) and :func:`jaxlif.checked` raises naming
them (:mod:`jaxlif._checks`).

Precision: float32 by default, float64 under ``jax_enable_x64``.  float16/bfloat16 inputs and
parameters are accepted and widened exactly, so a run equals the float32 run on the same values.  A
*state* in float16/bfloat16 (your own ``LIFState`` in a ``lif_step`` scan) is refused with a
``TypeError`` naming its dtype: the increment ``dt/tau_m (V_inf - v)``, 1 % of the distance to
equilibrium per step at dt/tau_m = 0.01, rounds to nothing near rest (resolution 0.5 mV in bfloat16,
0.0625 mV in float16 at |v| = 65 mV), so ``v`` stalls about 25 mV (bfloat16) or 3 mV (float16) short
of equilibrium and spikes are lost silently (measured: a bfloat16 scan at 250 pA fires 0 spikes in
1 s where float32 fires 55; float16 at 210 pA 0 where float32 fires 31).

Shapes: traces are ``(n_steps,)``; every simulator here is one neuron, so parameters are scalars
(lists are read as arrays); batch with ``jax.vmap`` (leading batch axes) or :mod:`jaxlif.batch`.
Units: ms, mV, nS, pA, GOhm (docs/conventions.md, section 1).
"""

from jaxlif.neurons.cond import (CondLIFParams, CondLIFResult, CondLIFState, _check_poisson_run,
                                 _current_array, _no_threshold, _poisson_scan, _scalar_rates, _simulate_cond_lif,
                                 _simulate_cond_lif_poisson, _traced_poisson_ok, check_cond_lif_params,
                                 cond_lif_init, cond_lif_step, simulate_cond_lif, simulate_cond_lif_poisson,
                                 traced_cond_lif_ok)
from jaxlif.neurons.lif import (INTEGRATORS, LIFParams, LIFResult, LIFState, _finish, _run_options,
                                _simulate_lif, _single_neuron, check_integrator, check_lif_params, lif_init, lif_step,
                                membrane_step, simulate_lif)

__all__ = [
    "LIFParams",
    "LIFState",
    "LIFResult",
    "CondLIFParams",
    "CondLIFState",
    "CondLIFResult",
    "lif_init",
    "lif_step",
    "simulate_lif",
    "cond_lif_init",
    "cond_lif_step",
    "simulate_cond_lif",
    "simulate_cond_lif_poisson",
    "check_lif_params",
    "check_cond_lif_params",
    "membrane_step",
    "INTEGRATORS",
    "check_integrator",
]
