"""jaxlif: leaky integrate-and-fire neurons, conductance synapses and short-term plasticity in JAX.

Pure step functions run through ``jax.lax.scan``; batches come from ``jax.vmap``; parameters and
state are NamedTuple pytrees that ``jit``, ``vmap`` and ``grad`` accept.  The discrete-time
conventions are the Neuromatch Academy tutorials' (forward Euler; see docs/conventions.md).

Units (one system everywhere):

=============  ======  ======================================
quantity       unit    note
=============  ======  ======================================
time           ms      T, dt, tau_m, tau_syn, tau_d, tau_f, t_ref
voltage        mV      V_th, V_reset, V_init, E_L, E_rev
conductance    nS      g_L, g_bar, g_E, g_I
current        pA      I, I_inj  (nS * mV = pA)
resistance     GOhm    R = 1/g_L
rate           Hz      Poisson and regular train rates
=============  ======  ======================================

Modules: :mod:`~jaxlif.neurons` (LIF, conductance LIF), :mod:`~jaxlif.synapses`,
:mod:`~jaxlif.plasticity` (Tsodyks-Markram STP, ratio curves), :mod:`~jaxlif.stp_lif`,
:mod:`~jaxlif.inputs`, :mod:`~jaxlif.analysis`, :mod:`~jaxlif.spike_stats` (differentiable spike statistics), :mod:`~jaxlif.network` (recurrent networks of populations,
dense and sparse projections with delays and STP), :mod:`~jaxlif.surrogates` (spike functions with
surrogate derivatives), :mod:`~jaxlif.constraints` (unconstrained parametrisations for fits), :mod:`~jaxlif.batch` (event-driven,
chunked and sharded batch simulators), :mod:`~jaxlif.fitting` (STP models fitted to ratio curves
and recorded amplitude trains, with calibrated intervals), :mod:`~jaxlif.grid`, and :mod:`~jaxlif.nma`
(drop-ins with the tutorial's names).

The command line (``jaxlif --help``) and the scripts in ``experiments/`` keep compiled programs in a
persistent cache; importing the package never does (docs/command_line.md).
"""

from jaxlif import (analysis, batch, constraints, fitting, grid, inputs, network, neurons, nma, plasticity,
                    spike_stats, stp_lif, surrogates, synapses)
from jaxlif._checks import checked
from jaxlif._stability import EulerUnstableWarning
from jaxlif.analysis import (balanced_inh_rate, fmp_shot_noise, fmp_stats, isi_cv, spike_count, spike_rate,
                             values_at_events)
from jaxlif.fitting import (FitInterrupted, FitResult, TrainFitResult, default_starts, fit_stp,
                            fit_stp_dataset, fit_stp_trains, ratio_curve_poisson, ratio_loss,
                            stp_amplitudes, stp_ratio)
from jaxlif.batch import (BatchResult, batch_mesh, cond_lif_batch_inputs, simulate_cond_lif_batch,
                          simulate_stp_lif_batch, stp_lif_batch_trains)
from jaxlif.grid import UnitsWarning, n_steps, time_axis
from jaxlif.inputs import (dc_current, poisson_counts, poisson_trains, regular_train,
                           sinusoidal_current, white_noise_current)
from jaxlif.neurons import (CondLIFParams, CondLIFResult, CondLIFState, LIFParams, LIFResult,
                            LIFState, cond_lif_step, lif_step, simulate_cond_lif,
                            simulate_cond_lif_poisson, simulate_lif)
from jaxlif.network import (DenseProjection, Network, NetworkInput, NetworkResult, PoissonDrive, Population,
                            Receptor, SparseProjection, dense_projection, ei_network, network_init, network_step,
                            random_projection, simulate_network, sparse_projection)
from jaxlif.plasticity import (STD, STF, STPParams, STPState, ratio_curve, ratio_curve_exact,
                               simulate_stp, stp_efficacy, stp_step)
from jaxlif.stp_lif import (STPLIFParams, STPLIFResult, simulate_stp_lif, simulate_stp_lif_poisson,
                            stp_lif_params, stp_lif_step)
from jaxlif.synapses import EXC_SYN, INH_SYN, SynParams, exp_syn_step
from jaxlif.spike_stats import (NonDifferentiableError, SpikeGradWarning, count_correlation,
                                count_correlation_matrix, fano_factor, firing_rate, population_rate, psth,
                                soft_isi_cv, van_rossum_distance)

__version__ = "0.1.0"

__all__ = [
    "analysis", "batch", "constraints", "fitting", "grid", "inputs", "neurons", "nma", "plasticity", "stp_lif", "surrogates",
    "synapses", "checked",
    "LIFParams", "LIFState", "LIFResult", "CondLIFParams", "CondLIFState", "CondLIFResult",
    "SynParams", "EXC_SYN", "INH_SYN", "STPParams", "STPState", "STD", "STF",
    "STPLIFParams", "STPLIFResult", "stp_lif_params",
    "lif_step", "cond_lif_step", "exp_syn_step", "stp_step", "stp_lif_step",
    "simulate_lif", "simulate_cond_lif", "simulate_cond_lif_poisson", "simulate_stp",
    "simulate_stp_lif", "simulate_stp_lif_poisson", "ratio_curve",
    "poisson_trains", "poisson_counts", "regular_train", "white_noise_current",
    "sinusoidal_current", "dc_current",
    "spike_count", "spike_rate", "isi_cv", "fmp_stats", "values_at_events", "fmp_shot_noise",
    "balanced_inh_rate",
    "FitResult", "fit_stp", "fit_stp_dataset", "stp_ratio", "ratio_loss", "ratio_curve_exact",
    "ratio_curve_poisson", "default_starts", "stp_amplitudes", "fit_stp_trains", "TrainFitResult",
    "FitInterrupted",
    "n_steps", "time_axis", "UnitsWarning", "EulerUnstableWarning",
    "BatchResult", "simulate_cond_lif_batch", "simulate_stp_lif_batch", "cond_lif_batch_inputs",
    "stp_lif_batch_trains", "batch_mesh",
    "network", "stp_efficacy", "Network", "Population", "Receptor", "PoissonDrive", "DenseProjection",
    "SparseProjection", "NetworkInput", "NetworkResult", "dense_projection", "sparse_projection",
    "random_projection", "ei_network", "network_init", "network_step", "simulate_network",
    "spike_stats", "firing_rate", "population_rate", "psth", "fano_factor", "soft_isi_cv", "count_correlation",
    "count_correlation_matrix", "van_rossum_distance", "SpikeGradWarning", "NonDifferentiableError",
]
