"""Networks of conductance-LIF populations: building blocks (:mod:`.structure`, :mod:`.build`), the split
into structure and trainable parameters (:mod:`.params`), one step
(:mod:`.step`, which states the scheme and the delivery latency), spike delivery (:mod:`.delivery`), the
simulator (:mod:`.simulate`; in min-delay windows, :mod:`.window`; over several devices, :mod:`.shard`) and a
ready-made E/I network (:mod:`.models`)."""

from jaxlif.network import build, delivery, models, params, simulate, step, structure, window  # noqa: F401
from jaxlif.network.structure import (Receptor, PoissonDrive, Population, DenseProjection,
                                      SparseProjection, Network, check_network)
from jaxlif.network.build import (dense_projection, sparse_projection, random_projection,
                                  random_edges, out_degree_bound)
from jaxlif.network.params import (DriveParams, PopulationParams, ProjectionParams, NetworkParams,
                                   PopulationStructure, ProjectionStructure, NetworkStructure, partition, combine,
                                   projection_keys)
from jaxlif.network.step import (SynapseState, NetworkState, network_init, network_step, per_neuron,
                                 drive_draw)
from jaxlif.network.simulate import (NetworkInput, NetworkResult, drive_counts, simulate_network,
                                     traced_network_ok, DELIVERY_METHODS)
from jaxlif.network.shard import network_mesh, simulate_network_sharded
from jaxlif.network import shard  # noqa: F401
from jaxlif.network.gradients import (GRAD_ESTIMATORS, ClosedLoopSlopes, LoopGain, RateSlopes,
                                     RecurrentGradientWarning, closed_loop_slopes, loop_gain, rate_slopes)
from jaxlif.network.models import (EI_WEIGHTS, EI_STP, ei_network)

__all__ = [
    "build", "delivery", "models", "params", "simulate", "shard", "step", "structure", "window",
    "Receptor", "PoissonDrive", "Population", "DenseProjection", "SparseProjection", "Network",
    "check_network", "dense_projection", "sparse_projection", "random_projection", "random_edges",
    "out_degree_bound", "DriveParams", "PopulationParams", "ProjectionParams", "NetworkParams", "PopulationStructure",
    "ProjectionStructure", "NetworkStructure", "partition", "combine", "projection_keys",
    "SynapseState", "NetworkState", "network_init", "network_step", "per_neuron", "drive_draw",
    "NetworkInput", "NetworkResult", "drive_counts", "simulate_network", "traced_network_ok",
    "network_mesh", "simulate_network_sharded", "DELIVERY_METHODS", "GRAD_ESTIMATORS", "LoopGain",
    "RecurrentGradientWarning", "loop_gain", "RateSlopes", "rate_slopes", "ClosedLoopSlopes", "closed_loop_slopes",
    "EI_WEIGHTS", "EI_STP", "ei_network",
]
