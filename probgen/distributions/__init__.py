"""Analytic distributions with exact ``log_prob`` and exact ``sample``: ground truth."""

from probgen.distributions.base import Distribution
from probgen.distributions.curves import Arm, CurveParameter, NoisyCurve
from probgen.distributions.gaussian import DiagonalGaussian, Gaussian, StandardNormal
from probgen.distributions.mixture import GaussianMixture, isotropic_covariances
from probgen.distributions.shapes import (
    SHAPES,
    Checkerboard,
    EightGaussians,
    Pinwheel,
    Rings,
    SwissRoll,
    TwentyFiveGaussians,
    TwoMoons,
    TwoSpirals,
    make_shape,
)

__all__ = [
    "SHAPES",
    "Arm",
    "Checkerboard",
    "CurveParameter",
    "DiagonalGaussian",
    "Distribution",
    "EightGaussians",
    "Gaussian",
    "GaussianMixture",
    "NoisyCurve",
    "Pinwheel",
    "Rings",
    "StandardNormal",
    "SwissRoll",
    "TwentyFiveGaussians",
    "TwoMoons",
    "TwoSpirals",
    "isotropic_covariances",
    "make_shape",
]
