"""Posteriors over any model's parameters, the posterior predictive, epistemic uncertainty.

posterior   WeightPosterior (the contract), select_parameters
mean_field  MeanField: Bayes by Backprop with the local reparameterisation trick
sgld        SGLD: stochastic-gradient Langevin samples of the weights
model       BayesianModel (a GenerativeModel), Predictive
conjugate   GaussianMeanPosterior: the exact answer for a Gaussian mean
config      BayesConfig and make_bayesian (the run-config switch)

See docs/bayes.md.
"""

from probgen.bayes.config import BayesConfig, make_bayesian
from probgen.bayes.conjugate import GaussianMeanPosterior
from probgen.bayes.mean_field import MeanField
from probgen.bayes.model import BayesianModel, Predictive
from probgen.bayes.posterior import WeightPosterior, select_parameters
from probgen.bayes.sgld import SGLD

__all__ = [
    "SGLD",
    "BayesConfig",
    "BayesianModel",
    "GaussianMeanPosterior",
    "MeanField",
    "Predictive",
    "WeightPosterior",
    "make_bayesian",
    "select_parameters",
]
