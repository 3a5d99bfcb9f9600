"""Ready-made diffusion models for the CLI: the discrete DDPM chain and continuous score SDEs.

Both are ``Diffusion`` models configured by keyword arguments (YAML-friendly
names map to objects in the tables below, in one place). ``for_data`` picks
the network from the data: a time-conditioned MLP for vectors (B, D), a small
U-Net for images (B, C, H, W). On data with a condition (``DataSpec.condition``)
it builds the conditional model: the network also reads the condition's
features and a null flag (``guidance.condition_features``), embedded and added
to the time embedding (Dhariwal & Nichol 2021), trained with condition dropout
``p_uncond`` for classifier-free guidance (Ho & Salimans 2022).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.conditioning import condition_for
from probgen.models.diffusion.likelihood import HutchinsonDivergence
from probgen.models.diffusion.model import (
    Diffusion,
    LikelihoodMethod,
    ODELikelihood,
    VLBLikelihood,
)
from probgen.models.diffusion.objectives import (
    DiffusionWeighting,
    NoiseMatching,
    Objective,
    ScoreMatching,
    VariationalBound,
)
from probgen.models.diffusion.parametrizations import (
    DataPrediction,
    NetworkDenoiser,
    NoisePrediction,
    ScorePrediction,
)
from probgen.models.diffusion.processes import (
    DDPMChain,
    ForwardProcess,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
)
from probgen.models.diffusion.samplers import sampler_by_name
from probgen.nn.time_embedding import TimeMLP
from probgen.nn.unet import UNet

__all__ = [
    "DDPM",
    "EXACT_DIVERGENCE_MAX_DIM",
    "LIKELIHOODS",
    "OBJECTIVES",
    "PARAMETRIZATIONS",
    "SDE_PROCESSES",
    "ScoreSDE",
    "default_network",
]

EXACT_DIVERGENCE_MAX_DIM = 16
"""Up to this many dimensions ``likelihood="auto"`` uses the exact divergence (EXACT)."""

SDE_PROCESSES: dict[str, Callable[[], ForwardProcess]] = {
    "vp": VariancePreserving,
    "subvp": SubVariancePreserving,
    "ve": VarianceExploding,
}
PARAMETRIZATIONS: dict[str, type[NetworkDenoiser]] = {
    "noise": NoisePrediction,
    "score": ScorePrediction,
    "data": DataPrediction,
}
OBJECTIVES: dict[str, Callable[[int], Objective]] = {
    "simple": lambda steps: NoiseMatching(),
    "dsm": lambda steps: ScoreMatching(),
    "dsm_likelihood": lambda steps: ScoreMatching(DiffusionWeighting()),
    "vlb": VariationalBound,
}
LIKELIHOODS: dict[str, Callable[[int], LikelihoodMethod]] = {
    "ode": lambda steps: ODELikelihood(),
    "hutchinson": lambda steps: ODELikelihood(HutchinsonDivergence()),
    "vlb": VLBLikelihood,
}


def default_network(
    event_shape: tuple[int, ...], hidden: Sequence[int] = (128, 128, 128), condition: int = 0
) -> nn.Module:
    """A small U-Net for images (C, H, W); a ``TimeMLP`` with ``hidden`` widths otherwise.

    ``condition`` > 0 is the width of the condition features the network reads.
    """
    if len(event_shape) == 3:
        return UNet(event_shape[0], condition=condition)
    return TimeMLP(math.prod(event_shape), hidden, condition=condition)


def _choose(table: dict[str, Any], name: str, what: str) -> Any:
    if name not in table:
        raise InvalidInput(f"unknown {what} {name!r}; choose one of: {', '.join(sorted(table))}")
    return table[name]


def _likelihood(name: str, dim: int, steps: int) -> LikelihoodMethod:
    if name == "auto":
        name = "ode" if dim <= EXACT_DIVERGENCE_MAX_DIM else "hutchinson"
    return _choose(LIKELIHOODS, name, "likelihood")(steps)


class _Configured(Diffusion):
    """A ``Diffusion`` assembled from names; ``for_data`` passes event shape, levels, condition."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        process: ForwardProcess,
        parametrization: str,
        objective: str,
        sampler: str,
        sample_steps: int,
        likelihood: str,
        vlb_steps: int,
        hidden: Sequence[int],
        levels: int | None,
        condition: ConditionSpec | None,
        p_uncond: float,
    ) -> None:
        shape = tuple(int(s) for s in event_shape)
        net = default_network(shape, hidden, 0 if condition is None else condition.width + 1)
        denoiser = _choose(PARAMETRIZATIONS, parametrization, "parametrization")(net, process)
        super().__init__(
            shape,
            denoiser,
            objective=_choose(OBJECTIVES, objective, "objective")(vlb_steps),
            sampler=sampler_by_name(sampler),
            steps=sample_steps,
            likelihood_method=_likelihood(likelihood, math.prod(shape), vlb_steps),
            levels=levels,
            condition=condition,
            p_uncond=p_uncond,
        )

    @classmethod
    def for_data(cls, spec: DataSpec, conditional: bool | None = None, **options: Any) -> Diffusion:
        """This model for ``spec``: its event shape, levels and condition.

        ``conditional`` None builds p(x | c) exactly when ``spec.condition`` is set;
        False builds p(x); True demands a condition (``condition_for``).
        """
        condition = condition_for(spec, conditional, cls.__name__)
        return cls(event_shape=spec.event_shape, levels=spec.levels, condition=condition, **options)


class DDPM(_Configured):
    """DDPM: the discrete chain (linear or cosine β), ε-prediction, ancestral sampling.

    Args:
        event_shape: shape of one example.
        chain_steps: N, the length of the chain.
        schedule: ``"linear"`` (Ho et al. 2020) or ``"cosine"`` (Nichol & Dhariwal 2021).
        parametrization: ``"noise"``, ``"score"`` or ``"data"``.
        objective: ``"simple"`` (L_simple), ``"dsm"``, ``"dsm_likelihood"`` or ``"vlb"``.
        sampler: a registered diffusion sampler name.
        sample_steps: default sampler steps (≤ N); N runs the exact chain.
        likelihood: ``"auto"`` (exact ODE up to 16 dimensions, Hutchinson above),
            ``"ode"``, ``"hutchinson"`` or ``"vlb"``.
        hidden: hidden widths of the MLP (vector data).
        levels: K for discrete data (set by ``for_data``).
        condition: the ``ConditionSpec`` of p(x | c) (set by ``for_data``), or None.
        p_uncond: condition dropout of a conditional model (Ho & Salimans 2022).

    Reference: Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic models".
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        chain_steps: int = 1000,
        schedule: str = "linear",
        parametrization: str = "noise",
        objective: str = "simple",
        sampler: str = "ancestral",
        sample_steps: int = 1000,
        likelihood: str = "auto",
        hidden: Sequence[int] = (128, 128, 128),
        levels: int | None = None,
        condition: ConditionSpec | None = None,
        p_uncond: float = 0.1,
    ) -> None:
        chains = {"linear": DDPMChain.linear, "cosine": DDPMChain.cosine}
        process = _choose(chains, schedule, "schedule")(chain_steps)
        super().__init__(
            event_shape,
            process,
            parametrization,
            objective,
            sampler,
            sample_steps,
            likelihood,
            chain_steps,
            hidden,
            levels,
            condition,
            p_uncond,
        )


class ScoreSDE(_Configured):
    """A continuous score SDE (VP, sub-VP or VE) trained by denoising score matching.

    Args:
        event_shape: shape of one example.
        process: ``"vp"``, ``"subvp"`` or ``"ve"``.
        parametrization: ``"noise"``, ``"score"`` or ``"data"``.
        objective: ``"dsm"`` (λ = σ²), ``"dsm_likelihood"`` (λ = g²), ``"simple"`` or ``"vlb"``.
        sampler: a registered diffusion sampler name.
        sample_steps: default sampler steps.
        likelihood: ``"auto"``, ``"ode"``, ``"hutchinson"`` or ``"vlb"``.
        vlb_steps: grid of the VLB objective / likelihood.
        hidden: hidden widths of the MLP (vector data).
        levels: K for discrete data (set by ``for_data``).
        condition: the ``ConditionSpec`` of p(x | c) (set by ``for_data``), or None.
        p_uncond: condition dropout of a conditional model (Ho & Salimans 2022).

    Reference: Song et al. (2021), "Score-based generative modeling through SDEs".
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        process: str = "vp",
        parametrization: str = "noise",
        objective: str = "dsm",
        sampler: str = "euler_maruyama",
        sample_steps: int = 500,
        likelihood: str = "auto",
        vlb_steps: int = 1000,
        hidden: Sequence[int] = (128, 128, 128),
        levels: int | None = None,
        condition: ConditionSpec | None = None,
        p_uncond: float = 0.1,
    ) -> None:
        super().__init__(
            event_shape,
            _choose(SDE_PROCESSES, process, "process")(),
            parametrization,
            objective,
            sampler,
            sample_steps,
            likelihood,
            vlb_steps,
            hidden,
            levels,
            condition,
            p_uncond,
        )
