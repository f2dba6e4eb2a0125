"""Default results of the simulators against arrays saved from the code before a change.

``tests/data/simulators_d14d50e_*.npz`` hold :func:`runs` computed by the code of commit d14d50e (before the
``record=`` option, the finite check inside the scan and the remat policy that keeps the refractory mask),
``_noopt`` with this suite's compiler settings (``tests/conftest.py``), ``_xla`` with XLA's defaults
(``JAXLIF_TEST_XLA_DEFAULTS=1``)::

    XLA_FLAGS="--xla_cpu_use_fusion_emitters=false --xla_cpu_parallel_codegen_split_count=1" \\
    python -c "import sys; sys.path[:0] = ['OLD_TREE', 'tests']; import jax; \\
               jax.config.update('jax_disable_most_optimizations', True); import test_saved_runs as t; t.save()"
    python -c "import sys; sys.path[:0] = ['OLD_TREE', 'tests']; import test_saved_runs as t; t.save()"

Values, rasters and surrogate gradients (with respect to parameters and to every input sample) of a spiking,
refractory run of ``simulate_lif`` and of ``simulate_cond_lif``.  On the machine that made the files the code
after the change gave them bit for bit with XLA's defaults; with the suite's unoptimised compilation all but
one number (a ``simulate_cond_lif`` parameter gradient, 1 unit in the last place: the backward pass's sums in
another order).  The comparison allows 4 units in the last place (rasters exactly), for that and for other
CPUs' code generation.  Two small programs.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxlif
from jaxlif import CondLIFParams, LIFParams, SynParams

def _data_file() -> Path:
    setting = "noopt" if jax.config.read("jax_disable_most_optimizations") else "xla"
    return Path(__file__).resolve().parent / "data" / f"simulators_d14d50e_{setting}.npz"
SG = jaxlif.surrogates.fast_sigmoid()


def _inputs():
    rng = np.random.default_rng(2)
    I = np.float32(400.0) + np.float32(150.0) * rng.standard_normal(200).astype(np.float32)
    n_E = rng.binomial(80, 0.015, 200).astype(np.float32)
    n_I = rng.binomial(20, 0.01, 200).astype(np.float32)
    return jnp.asarray(I), jnp.asarray(n_E), jnp.asarray(n_I)


@jax.jit
def _lif(theta, I):
    def loss(th, I):
        p = LIFParams(tau_m=20.0 * th[0], g_L=10.0 * th[1], t_ref=2.0)
        r = jaxlif.simulate_lif(p, I, dt=0.5, spike_grad=SG)
        return jnp.mean(r.v) + 10.0 * jnp.mean(r.spikes), (r.v, r.spikes)
    return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(theta, I)


@jax.jit
def _cond(theta, n_E, n_I):
    def loss(th):
        p = CondLIFParams(exc=SynParams(2.4 * th[0], 2.0, 0.0), inh=SynParams(2.4 * th[1], 5.0, -80.0))
        r = jaxlif.simulate_cond_lif(p, n_E, n_I, 300.0, dt=0.1, spike_grad=SG)
        return jnp.mean(r.v) + 10.0 * jnp.mean(r.spikes), (r.v, r.spikes, r.g_E, r.g_I)
    return jax.value_and_grad(loss, has_aux=True)(theta)


def runs() -> dict:
    I, n_E, n_I = _inputs()
    theta = jnp.array([1.0, 1.0], jnp.float32)
    (_, (v, s)), (g_th, g_I) = _lif(theta, I)
    out = dict(lif_v=v, lif_spikes=s, lif_grad_theta=g_th, lif_grad_I=g_I)
    (_, (v, s, gE, gI)), g_th = _cond(theta, n_E, n_I)
    out.update(cond_v=v, cond_spikes=s, cond_g_E=gE, cond_g_I=gI, cond_grad_theta=g_th)
    return {k: np.asarray(x) for k, x in out.items()}


def save() -> None:
    path = _data_file()
    path.parent.mkdir(exist_ok=True)
    np.savez(path, **runs())


def test_defaults_equal_the_saved_runs():
    saved = np.load(_data_file())
    got = runs()
    assert sorted(saved.files) == sorted(got)
    assert saved["lif_spikes"].sum() >= 3 and saved["cond_spikes"].sum() >= 3     # spiking runs
    assert np.abs(saved["lif_grad_I"]).max() > 0                                  # gradients flow
    for name, want in saved.items():
        if "spikes" in name:
            np.testing.assert_array_equal(got[name], want, err_msg=name)
        else:
            np.testing.assert_array_max_ulp(got[name], want, maxulp=4)
