r"""A ready-made recurrent E/I network: random sparse connectivity, depressing E->E synapses, Poisson drive.

:func:`ei_network` builds the network of the experiment ``experiments/network.py`` and of the
benchmark ``benchmarks/bench_network.py`` (parameter sets in docs/networks.md, "Building a network"):

- ``n_E`` excitatory and ``n_I`` inhibitory conductance-LIF neurons with the tutorials' neuron
  (``LIFParams()``: V_th -55 mV, V_reset -75 mV, tau_m 10 ms, g_L 10 nS, E_L -75 mV, t_ref 2 ms),
  an excitatory receptor (tau 5 ms, 0 mV) and an inhibitory one (tau 10 ms, -80 mV), as the
  tutorials' bonus STP-LIF neuron;
- every ordered pair of neurons is connected with probability ``p`` (no self-connections), with one
  weight [nS] per projection (``weights``) and one delay in steps;
- E->E synapses depress (Tsodyks-Markram, one ``u, R`` per presynaptic neuron); the other three
  projections are static;
- every neuron receives ``drive_n`` independent Poisson trains at ``drive_rate`` Hz, each spike
  opening ``drive_weight`` nS of excitatory conductance.
"""

from __future__ import annotations

import jax

from jaxlif.neurons import LIFParams
from jaxlif.plasticity import STPParams
from jaxlif.network.build import random_projection
from jaxlif.network.structure import Network, PoissonDrive, Population, Receptor

__all__ = ["EI_WEIGHTS", "EI_STP", "ei_network"]

#: Default weights [nS] per projection ("pre->post") for p = 0.1 and 800 E + 200 I neurons
#: (80 excitatory and 20 inhibitory recurrent inputs per neuron).
EI_WEIGHTS = {"E->E": 1.0, "E->I": 1.0, "I->E": 6.0, "I->I": 6.0}
#: Depressing E->E synapses: the tutorials' STD parameters (U0 0.5, tau_d 100 ms, tau_f 50 ms).
EI_STP = STPParams(U0=0.5, tau_d=100.0, tau_f=50.0)


def ei_network(key: jax.Array, *, n_E: int = 800, n_I: int = 200, p: float = 0.1, weights: dict | None = None,
               delay: int = 15, stp: STPParams | None = EI_STP, drive_rate: float = 10.0, drive_n: int = 100,
               drive_weight: float = 1.0, sparse: bool = True, neuron: LIFParams = LIFParams()) -> Network:
    """The recurrent E/I network of the module docstring.

    Args:
        key: ``jax.random`` key of the connectivity (four projections from ``split(key, 4)`` in the order
            E->E, E->I, I->E, I->I).
        n_E, n_I: population sizes.  p: connection probability.
        weights: ``{"E->E", "E->I", "I->E", "I->I"}`` -> weight [nS] (missing keys: :data:`EI_WEIGHTS`).
        delay: synaptic delay in steps (15 = 1.5 ms at dt = 0.1 ms) for every projection.
        stp: :class:`~jaxlif.STPParams` of the E->E synapses, or ``None`` for static E->E synapses.
        drive_rate: rate of each external Poisson train [Hz].  drive_n: trains per neuron.
        drive_weight: conductance jump per external spike [nS].
        sparse: padded-row (``True``) or dense weight matrices.
        neuron: :class:`~jaxlif.LIFParams` of every neuron.

    Returns:
        :class:`~jaxlif.network.Network` with populations ``"E"`` and ``"I"``.
    """
    w = dict(EI_WEIGHTS, **(weights or {}))
    unknown = sorted(set(w) - set(EI_WEIGHTS))
    if unknown:
        raise ValueError(f"weights has keys {unknown}; use {sorted(EI_WEIGHTS)}")
    drive = PoissonDrive(rate=drive_rate, weight=drive_weight, n=drive_n, receptor="exc")
    exc, inh = Receptor(5.0, 0.0), Receptor(10.0, -80.0)
    pops = (Population("E", n_E, neuron, exc, inh, drive), Population("I", n_I, neuron, exc, inh, drive))
    sizes = {"E": n_E, "I": n_I}
    keys = jax.random.split(key, 4)
    projections = []
    for k, name in zip(keys, ("E->E", "E->I", "I->E", "I->I")):
        pre, post = name.split("->")
        projections.append(random_projection(
            k, pre, post, n_pre=sizes[pre], n_post=sizes[post], p=p, weight=w[name],
            receptor="exc" if pre == "E" else "inh", delay=delay, stp=stp if name == "E->E" else None,
            sparse=sparse))
    return Network(pops, tuple(projections))
