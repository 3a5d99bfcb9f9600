"""Simulation-based inference data: pairs (θ, x) from a prior and a simulator, target p(θ | x).

θ is the modelled variable (the events) and the simulated observation x is
the condition, so a conditional model trained on these pairs is an
amortised posterior estimator (neural posterior estimation; Papamakarios &
Murray 2016, "Fast ε-free inference of simulation models with Bayesian
conditional density estimation").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from probgen.core import DataSpec, InvalidInput
from probgen.data.sampled import SampledDataset
from probgen.distributions.simulators import GaussianLinear, Simulator, TwoMoonsSimulator

__all__ = ["SIMULATORS", "SimulationDataset"]

SIMULATORS: dict[str, Callable[..., Simulator]] = {
    "gaussian_linear": GaussianLinear,
    "two_moons": TwoMoonsSimulator,
}
"""The simulators by name (sbibm's task names)."""


class SimulationDataset(SampledDataset):
    """Simulated pairs (θ, x): θ ~ p(θ) the events, x ~ p(x | θ) their condition.

    ``spec`` is ``DataSpec(parameter_shape, condition=ConditionSpec(shape=observation_shape))``;
    ``truth`` is the exact posterior p(θ | x) (a ``ConditionalDistribution``)
    where it is closed-form (``gaussian_linear``), else None (``two_moons``).
    ``n_train`` is the simulation budget: a fixed training set of that many
    pairs (None: fresh pairs in every batch); ``n_validation`` and ``n_test``
    fixed held-out pairs. Each fixed set is simulated once with the seed
    ``split_seed(seed, split)`` (see ``SampledDataset``).

    Args:
        simulator: a name of ``SIMULATORS`` or a ``Simulator``.
        simulator_options: keyword arguments of the simulator given by name
            (e.g. ``dim`` of ``gaussian_linear``).
    """

    def __init__(
        self,
        simulator: str | Simulator,
        n_train: int | None = 10_000,
        n_validation: int = 1_000,
        n_test: int = 1_000,
        seed: int = 0,
        **simulator_options: Any,
    ) -> None:
        if isinstance(simulator, str):
            if simulator not in SIMULATORS:
                raise InvalidInput(
                    f"unknown simulator {simulator!r}; choose one of: {', '.join(SIMULATORS)}"
                )
            simulator = SIMULATORS[simulator](**simulator_options)
        elif simulator_options:
            raise InvalidInput(
                f"simulator options {sorted(simulator_options)} apply only to a simulator "
                "given by name"
            )
        self.simulator = simulator
        self.truth = simulator.posterior()
        self.spec = DataSpec(simulator.parameter_shape, condition=simulator.condition_spec)
        super().__init__({"train": n_train, "validation": n_validation, "test": n_test}, seed)

    def _sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.simulator.sample_joint(n, generator)
