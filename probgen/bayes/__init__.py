"""Posteriors over any model's parameters, the posterior predictive, epistemic uncertainty.

posterior   WeightPosterior (the contract), select_parameters
mean_field  MeanField: Bayes by Backprop with the local reparameterisation trick
sgld        SGLD: stochastic-gradient Langevin samples of the weights
model       BayesianModel (a GenerativeModel), Predictive
conjugate   GaussianMeanPosterior: the exact answer for a Gaussian mean
config      make_bayesian, make_posterior (the run-config switch ``bayes:``)

See docs/bayes.md.
"""

from probgen.bayes.config import make_bayesian, make_posterior
from probgen.bayes.conjugate import GaussianMeanPosterior
from probgen.bayes.mean_field import MeanField
from probgen.bayes.model import BayesianModel, Predictive
from probgen.bayes.posterior import WeightPosterior, select_parameters
from probgen.bayes.sgld import SGLD

__all__ = [
    "SGLD",
    "BayesianModel",
    "GaussianMeanPosterior",
    "MeanField",
    "Predictive",
    "WeightPosterior",
    "make_bayesian",
    "make_posterior",
    "select_parameters",
]
