"""probgen: every family of generative model on one probabilistic footing."""

from probgen.core import (
    DataSpec,
    Estimate,
    GenerativeModel,
    IntractableLikelihood,
    InvalidInput,
    Likelihood,
    ProbgenError,
    UnknownPlayer,
    check_input,
)

__all__ = [
    "DataSpec",
    "Estimate",
    "GenerativeModel",
    "IntractableLikelihood",
    "InvalidInput",
    "Likelihood",
    "ProbgenError",
    "UnknownPlayer",
    "check_input",
]

__version__ = "0.1.0"
