"""Analytic distributions with exact ``log_prob`` and exact ``sample``: ground truth."""

from probgen.distributions.base import Distribution
from probgen.distributions.conditional import (
    ConditionalDistribution,
    ConditionalMixture,
    RotatedShape,
)
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
from probgen.distributions.simulators import (
    GaussianLinear,
    GaussianLinearPosterior,
    Simulator,
    TwoMoonsSimulator,
)

__all__ = [
    "SHAPES",
    "Arm",
    "Checkerboard",
    "ConditionalDistribution",
    "ConditionalMixture",
    "CurveParameter",
    "DiagonalGaussian",
    "Distribution",
    "EightGaussians",
    "Gaussian",
    "GaussianLinear",
    "GaussianLinearPosterior",
    "GaussianMixture",
    "NoisyCurve",
    "Pinwheel",
    "Rings",
    "RotatedShape",
    "Simulator",
    "StandardNormal",
    "SwissRoll",
    "TwentyFiveGaussians",
    "TwoMoons",
    "TwoMoonsSimulator",
    "TwoSpirals",
    "isotropic_covariances",
    "make_shape",
]
