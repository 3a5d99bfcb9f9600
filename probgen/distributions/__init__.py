"""Analytic distributions with exact ``log_prob`` and exact ``sample``: ground truth."""

from probgen.distributions.base import Distribution
from probgen.distributions.gaussian import DiagonalGaussian, Gaussian, StandardNormal

__all__ = ["DiagonalGaussian", "Distribution", "Gaussian", "StandardNormal"]
