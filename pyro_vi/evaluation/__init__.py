"""Evaluation: log-likelihood, active units, gradient signal-to-noise, posterior means.

=====================================  ===========================================================
function                               what it measures
=====================================  ===========================================================
:func:`log_likelihood`                 log p(x_i) per datapoint, importance sampling with the guide
:func:`active_units`                   latent dimensions whose posterior mean varies over the data
:func:`gradient_snr`                   mean, variance and SNR of an estimator's gradient, per group
:func:`posterior_mean`                 E_q[z | x_i] per datapoint (codes for plots, interpolation)
:func:`reconstruction_log_likelihood`  E_q log p(x_i | z), the ELBO's first term (not a bound)
:func:`refine`                         per-datapoint ELBO before and after refining the encoder's
                                       context (semi-amortized; the amortization gap)
=====================================  ===========================================================

All of them take a Pyro ``model`` and ``guide`` and the arguments they are called with, like
``SVI.step``. Networks are put in eval mode while :func:`log_likelihood` and
:func:`active_units` run, and left as they were afterwards.
"""

from pyro_vi.evaluation.likelihood import log_likelihood
from pyro_vi.evaluation.posterior import active_units, posterior_mean
from pyro_vi.evaluation.reconstruction import reconstruction_log_likelihood
from pyro_vi.evaluation.refine import Refinement, per_datapoint_elbo, refine
from pyro_vi.evaluation.snr import GradientStats, gradient_snr

__all__ = [
    "GradientStats",
    "Refinement",
    "active_units",
    "gradient_snr",
    "log_likelihood",
    "per_datapoint_elbo",
    "posterior_mean",
    "reconstruction_log_likelihood",
    "refine",
]
