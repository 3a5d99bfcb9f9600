"""Analytic distributions with exact ``log_prob`` and exact ``sample``: ground truth."""

from probgen.distributions.base import Distribution
from probgen.distributions.gaussian import DiagonalGaussian, Gaussian, StandardNormal
from probgen.distributions.mixture import GaussianMixture

__all__ = ["DiagonalGaussian", "Distribution", "Gaussian", "GaussianMixture", "StandardNormal"]
