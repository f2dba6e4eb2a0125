r"""Fitting short-term plasticity models to data: ratio curves and recorded amplitude trains.

Modules, in the order a fit uses them:

- :mod:`~jaxlif.fitting.models`: the models (``"tm"``, ``"tm4"``, ``"depression"``, ``"srp"``) as
  small parameter pytrees with their ranges and unconstrained transforms;
- :mod:`~jaxlif.fitting.forward`: :func:`stp_amplitudes`, the release of every spike of any
  trains (exact, or the tutorial's Euler scheme), and the conductance readout;
- :mod:`~jaxlif.fitting.ratio`: the g10/g1 ratio curve as a readout of the train model;
- :mod:`~jaxlif.fitting.data`: trains in the shape labs have them, a tidy CSV reader, simulated
  data and the shipped mossy-fibre recordings;
- :mod:`~jaxlif.fitting.likelihood`: noise models (Gaussian, gamma, binomial-variance, gamma with a
  history-dependent SD kernel) and their likelihoods;
- :mod:`~jaxlif.fitting.optimise`: the one multi-start BFGS loop every fit runs (vmapped,
  chunked so that Ctrl-C and progress callbacks work);
- :mod:`~jaxlif.fitting.uncertainty`: profile-likelihood and Wald intervals, flags;
- :mod:`~jaxlif.fitting.ratio_fit` (:func:`fit_stp`) and :mod:`~jaxlif.fitting.trains`
  (:func:`fit_stp_trains`): the two fits;
- :mod:`~jaxlif.fitting.compare`: model comparison (AIC, BIC, held-out-protocol
  cross-validation).
"""

from jaxlif.fitting.compare import ModelComparison, compare_models
from jaxlif.fitting.data import (CHAMBERLAND2018_CITATION, CHAMBERLAND2018_PROTOCOLS,
                                 MOSSY_FIBRE_CITATION, TrainData, check_trains, mossy_fibre,
                                 read_chamberland2018, read_trains_csv, regular_protocols,
                                 simulate_trains, write_trains_csv)
from jaxlif.fitting.forward import conductance_at_spikes, stp_amplitudes
from jaxlif.fitting.models import (MODELS, DepressionParams, Model, SRPParams, TM4Params,
                                   from_unconstrained, get_model, srp_model, to_unconstrained)
from jaxlif.fitting.optimise import FitInterrupted
from jaxlif.fitting.ratio import (MODES, poisson_isi_steps, ratio_curve_poisson, ratio_loss,
                                  stp_ratio)
from jaxlif.fitting.ratio_fit import FitResult, default_starts, fit_stp, fit_stp_dataset
from jaxlif.fitting.trains import SDKernelParams, TrainFitResult, fit_stp_trains, train_loss

__all__ = [
    "FitResult", "fit_stp", "fit_stp_dataset", "default_starts", "MODES", "stp_ratio",
    "ratio_loss", "ratio_curve_poisson", "poisson_isi_steps",
    "stp_amplitudes", "conductance_at_spikes",
    "Model", "MODELS", "get_model", "TM4Params", "DepressionParams", "SRPParams", "srp_model",
    "SDKernelParams",
    "to_unconstrained", "from_unconstrained",
    "TrainData", "check_trains", "read_trains_csv", "regular_protocols", "simulate_trains",
    "mossy_fibre", "MOSSY_FIBRE_CITATION", "read_chamberland2018", "write_trains_csv",
    "CHAMBERLAND2018_PROTOCOLS", "CHAMBERLAND2018_CITATION",
    "TrainFitResult", "fit_stp_trains", "train_loss", "FitInterrupted",
    "ModelComparison", "compare_models",
]
