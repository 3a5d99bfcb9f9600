"""MCMC shared by every family: Langevin, MALA, HMC and annealed Langevin.

Samplers act on a ``Target`` (an energy E(x), a log-density or a score
s(x) = -∇E(x)); kernels step one transition at a time and share one ``run``
loop returning a ``SampleResult``. See docs/ebm_and_sampling.md.
"""

from probgen.sampling.annealed import AnnealedLangevin
from probgen.sampling.base import Kernel, Sampler, SampleResult, Transition
from probgen.sampling.kernels import HMC, MALA, Langevin, metropolis
from probgen.sampling.targets import (
    Energy,
    LogDensity,
    NoEnergy,
    NoiseConditionalScore,
    Score,
    Target,
)

__all__ = [
    "HMC",
    "MALA",
    "AnnealedLangevin",
    "Energy",
    "Kernel",
    "Langevin",
    "LogDensity",
    "NoEnergy",
    "NoiseConditionalScore",
    "SampleResult",
    "Sampler",
    "Score",
    "Target",
    "Transition",
    "metropolis",
]
