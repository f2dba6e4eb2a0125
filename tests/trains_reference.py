"""Independent NumPy float64 oracles for the train models of ``jaxlif.fitting``.

Written from the model equations in ``jaxlif/fitting/models.py`` and docs/fitting.md, spike by
spike in plain Python floats, with no import of jaxlif:

* :func:`tm4_release`: Tsodyks-Markram with a separate facilitation increment (``f = U`` is the
  tutorial's model, ``f = 0`` depression only), exact between spikes, for any spike times;
* :func:`srp_release`: the spike-response plasticity model (kernel of three exponentials,
  sigmoid readout), evaluated by direct summation over all earlier spikes (not recursively);
* :func:`euler_release`: the tutorial's forward-Euler ``dynamic_syn`` run step by step on a grid,
  reading the jump of ``g`` at each spike step;
* :func:`gaussian_nll`, :func:`gamma_nll`: log-likelihoods written with the densities' textbook
  formulas, the nuisance parameters maximised by brute force (a fine grid), not in closed form.
"""

from __future__ import annotations

import math

import numpy as np

SRP_TAUS = (15.0, 100.0, 650.0)


def tm4_release(times_ms, U, f, tau_d, tau_f):
    """Release ``u_k R_k`` at each spike: ``u_1 = U, R_1 = 1``; between spikes
    ``R <- 1 - (1 - R (1 - u)) e^(-D/tau_d)``, ``u <- U + (u + f (1 - u) - U) e^(-D/tau_f)``."""
    out = []
    u, R = U, 1.0
    prev = None
    for t in times_ms:
        if prev is not None:
            D = t - prev
            R = 1.0 - (1.0 - R * (1.0 - u)) * math.exp(-D / tau_d)
            u = U + (u + f * (1.0 - u) - U) * math.exp(-D / tau_f)
        out.append(u * R)
        prev = t
    return np.array(out)


def srp_release(times_ms, b, a1, a2, a3):
    """``sigmoid(b + sum_{i<k} sum_j (a_j / tau_j) exp(-(t_k - t_i) / tau_j))`` by direct sums."""
    out = []
    for k, t in enumerate(times_ms):
        total = b
        for ti in times_ms[:k]:
            for a, tau in zip((a1, a2, a3), SRP_TAUS):
                total += a / tau * math.exp(-(t - ti) / tau)
        out.append(1.0 / (1.0 + math.exp(-total)))
    return np.array(out)


def euler_release(times_ms, U0, tau_d, tau_f, dt=0.1):
    """The tutorial's scheme step by step: spike ``k`` on step ``round(t_k/dt) + 1`` (a spike at
    step 0 would never be seen), ``u[it+1] = u - dt/tau_f u + U0 (1 - u) s``,
    ``R[it+1] = R + dt/tau_d (1 - R) - u[it+1] R s``; release = ``u[it+1] R[it]`` at spike steps."""
    steps = [int(round(t / dt)) + 1 for t in times_ms]
    u, R = 0.0, 1.0
    out = []
    spikes = set(steps)
    for it in range(steps[-1]):
        s = 1.0 if (it + 1) in spikes else 0.0
        u_new = u - dt / tau_f * u + U0 * (1.0 - u) * s
        R_new = R + dt / tau_d * (1.0 - R) - u_new * R * s
        if s:
            out.append(u_new * R)
        u, R = u_new, R_new
    return np.array(out)


def gaussian_nll(y, mu, sd=None):
    """Gaussian negative log-likelihood of ``y`` around ``A mu`` (``A`` maximised on a grid, and
    the sd too when not given)."""
    y, mu = np.asarray(y, float).ravel(), np.asarray(mu, float).ravel()
    best = math.inf
    A0 = np.sum(y * mu) / np.sum(mu * mu)
    for A in A0 * (1.0 + np.linspace(-1e-3, 1e-3, 2001)):
        r = y - A * mu
        if sd is None:
            s2 = np.mean(r ** 2)
            value = 0.5 * y.size * (math.log(2 * math.pi * s2) + 1.0)
        else:
            value = np.sum(r ** 2 / (2 * sd ** 2) + math.log(sd) + 0.5 * math.log(2 * math.pi))
        best = min(best, value)
    return best


def gamma_nll(y, mu, cv):
    """Gamma negative log-likelihood (mean ``A mu``, coefficient of variation ``cv``), ``A`` on a
    grid, from the density ``x^(k-1) e^(-x/theta) / (Gamma(k) theta^k)``, ``k = 1/cv^2``."""
    y, mu = np.asarray(y, float).ravel(), np.asarray(mu, float).ravel()
    k = 1.0 / cv ** 2
    best = math.inf
    A0 = np.mean(y / mu)
    for A in A0 * (1.0 + np.linspace(-1e-3, 1e-3, 2001)):
        theta = A * mu / k
        value = -np.sum((k - 1) * np.log(y) - y / theta - math.lgamma(k) - k * np.log(theta))
        best = min(best, value)
    return best
