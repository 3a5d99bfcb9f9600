"""Ready-made continuous-time models for the CLI: the DDPM chain, score SDEs and flow matching.

All are ``Diffusion`` models configured by keyword arguments (YAML-friendly
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.conditioning import condition_for
from probgen.models.diffusion.couplings import (
    Coupling,
    EntropicOTCoupling,
    IndependentCoupling,
    OTCoupling,
)
from probgen.models.diffusion.likelihood import HutchinsonDivergence
from probgen.models.diffusion.model import (
    Diffusion,
    LikelihoodMethod,
    ODELikelihood,
    VLBLikelihood,
)
from probgen.models.diffusion.objectives import (
    DiffusionWeighting,
    FlowMatching,
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
    VelocityPrediction,
)
from probgen.models.diffusion.processes import (
    DDPMChain,
    ForwardProcess,
    LinearPath,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
)
from probgen.models.diffusion.reference import MixtureReference
from probgen.models.diffusion.samplers import sampler_by_name
from probgen.nn.time_embedding import TimeMLP
from probgen.nn.unet import UNet

__all__ = [
    "COUPLINGS",
    "DDPM",
    "EXACT_DIVERGENCE_MAX_DIM",
    "LIKELIHOODS",
    "OBJECTIVES",
    "PARAMETRIZATIONS",
    "REFERENCES",
    "SDE_PROCESSES",
    "FlowMatchingModel",
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
    "velocity": VelocityPrediction,
}
OBJECTIVES: dict[str, Callable[[int], Objective]] = {
    "simple": lambda steps: NoiseMatching(),
    "dsm": lambda steps: ScoreMatching(),
    "dsm_likelihood": lambda steps: ScoreMatching(DiffusionWeighting()),
    "vlb": VariationalBound,
}
COUPLINGS: dict[str, Callable[[float], tuple[Coupling, float]]] = {
    "independent": lambda s: (IndependentCoupling(), 0.0),
    "ot": lambda s: (OTCoupling(), 0.0),
    "schrodinger_bridge": lambda s: (EntropicOTCoupling(2.0 * s * s), s),
}
"""Coupling names -> (coupling, Brownian-bridge noise) given the bridge noise s."""
REFERENCES: dict[str, Callable[[tuple[int, ...], int], nn.Module | None]] = {
    "none": lambda shape, components: None,
    "mixture": MixtureReference,
}
"""Reference names -> the reference prediction the network corrects (or None), given the
event shape and the most mixture components."""
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
        objective: Objective,
        sampler: str,
        sample_steps: int,
        likelihood: str,
        vlb_steps: int,
        hidden: Sequence[int],
        levels: int | None,
        condition: ConditionSpec | None,
        p_uncond: float,
        reference: str,
        components: int,
    ) -> None:
        shape = tuple(int(s) for s in event_shape)
        make_reference = _choose(REFERENCES, reference, "reference")
        if reference != "none" and levels is not None:
            raise InvalidInput(
                f"reference: {reference!r} is for continuous data; data with levels are "
                f"dequantized inside the model (use reference: none)"
            )
        net = default_network(shape, hidden, 0 if condition is None else condition.width + 1)
        denoiser = _choose(PARAMETRIZATIONS, parametrization, "parametrization")(
            net, process, make_reference(shape, components)
        )
        super().__init__(
            shape,
            denoiser,
            objective=objective,
            sampler=sampler_by_name(sampler),
            steps=sample_steps,
            likelihood_method=_likelihood(likelihood, math.prod(shape), vlb_steps),
            levels=levels,
            condition=condition,
            p_uncond=p_uncond,
        )

    @classmethod
    def small_data_options(cls, spec: DataSpec, options: Mapping[str, Any]) -> dict[str, Any]:
        """``reference: mixture``: on small data the network corrects the EM/BIC mixture."""
        return {"reference": "mixture"}

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
        reference: ``"none"`` or ``"mixture"``: the network predicts a residual on the
            exact prediction of a Gaussian mixture fitted by EM to the training data
            (``reference.MixtureReference``; continuous data).
        components: the most mixture components of ``"mixture"`` (chosen by BIC).

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
        reference: str = "none",
        components: int = 5,
    ) -> None:
        chains = {"linear": DDPMChain.linear, "cosine": DDPMChain.cosine}
        process = _choose(chains, schedule, "schedule")(chain_steps)
        super().__init__(
            event_shape,
            process,
            parametrization,
            _choose(OBJECTIVES, objective, "objective")(chain_steps),
            sampler,
            sample_steps,
            likelihood,
            chain_steps,
            hidden,
            levels,
            condition,
            p_uncond,
            reference,
            components,
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
        reference: ``"none"`` or ``"mixture"``: the network predicts a residual on the
            exact prediction of a Gaussian mixture fitted by EM to the training data
            (``reference.MixtureReference``; continuous data).
        components: the most mixture components of ``"mixture"`` (chosen by BIC).

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
        reference: str = "none",
        components: int = 5,
    ) -> None:
        super().__init__(
            event_shape,
            _choose(SDE_PROCESSES, process, "process")(),
            parametrization,
            _choose(OBJECTIVES, objective, "objective")(vlb_steps),
            sampler,
            sample_steps,
            likelihood,
            vlb_steps,
            hidden,
            levels,
            condition,
            p_uncond,
            reference,
            components,
        )


class FlowMatchingModel(_Configured):
    """Flow matching / rectified flow: the linear path, velocity prediction, an ODE sampler.

    x_t = (1 − t) x_0 + t ε (``LinearPath``; t = 0 data, t = 1 noise), trained by
    ‖v̂(x_t, t) − (ε − x_0)‖² with (x_0, ε) from a coupling (``FlowMatching``),
    sampled by the ODE dx/dt = v̂ from N(0, I) at t = 1, scored by the ODE
    likelihood. Reflow and few-step distillation: ``probgen.models.diffusion.reflow``.

    Args:
        event_shape: shape of one example.
        coupling: ``"independent"`` (Lipman et al. 2023; rectified flow, Liu et al.
            2023), ``"ot"`` (minibatch OT, exact up to 1024 rows) or
            ``"schrodinger_bridge"`` (entropic OT at reg 2 s² and bridge noise s).
        bridge_noise: s of the Schrödinger-bridge coupling.
        time_power: k of the training-time law t = t_min + (1 − t_min) u^k, u ~ U[0, 1]
            (``ForwardProcess.sample_times``): 1 is uniform, k > 1 puts more times near
            the data end. Default 2: lower KL gaps and NLLs on eight 2-D shapes and on
            digits in the runs of docs/flow_matching.md, worse only in the shortest 2-D runs.
        parametrization: ``"velocity"`` or ``"data"`` (noise and score predictions
            are singular at t = 1, where α_1 = 0).
        sampler: a registered diffusion sampler name; the SDE samplers need
            ``alpha_end`` > 0 and the independent coupling.
        sample_steps: default sampler steps (one adaptive solve for ``probability_flow``).
        likelihood: ``"auto"`` (exact divergence up to 16 dimensions, Hutchinson
            above), ``"ode"`` or ``"hutchinson"``.
        alpha_end: α_1 of the path (0: the straight path to pure noise).
        hidden: hidden widths of the MLP (vector data).
        levels: K for discrete data (set by ``for_data``).
        condition: the ``ConditionSpec`` of p(x | c) (set by ``for_data``), or None.
        p_uncond: condition dropout of a conditional model (Ho & Salimans 2022).
        reference: ``"none"`` or ``"mixture"``: the network predicts a residual on the
            exact prediction of a Gaussian mixture fitted by EM to the training data
            (``reference.MixtureReference``; continuous data).
        components: the most mixture components of ``"mixture"`` (chosen by BIC).

    Reference: Lipman et al. (2023), "Flow matching for generative modeling";
    Liu, Gong & Liu (2023), "Flow straight and fast"; Tong et al. (2024),
    "Improving and generalizing flow-based generative models with minibatch
    optimal transport".
    """

    @classmethod
    def small_data_options(cls, spec: DataSpec, options: Mapping[str, Any]) -> dict[str, Any]:
        """None: on Old Faithful plain flow matching beats the KDE and ties the GMM
        (−4.216 with the default time power 2, −4.191 with uniform times, against −4.219
        with ``reference: mixture``; GMM −4.213, KDE −4.399; benchmarks/README.md)."""
        return {}

    def __init__(
        self,
        event_shape: tuple[int, ...],
        coupling: str = "independent",
        bridge_noise: float = 0.5,
        time_power: float = 2.0,
        parametrization: str = "velocity",
        sampler: str = "probability_flow",
        sample_steps: int = 1,
        likelihood: str = "auto",
        alpha_end: float = 0.0,
        hidden: Sequence[int] = (128, 128, 128),
        levels: int | None = None,
        condition: ConditionSpec | None = None,
        p_uncond: float = 0.1,
        reference: str = "none",
        components: int = 5,
    ) -> None:
        if parametrization not in ("velocity", "data"):
            raise InvalidInput(
                f"parametrization: expected 'velocity' or 'data' for flow matching, got "
                f"{parametrization!r} (noise and score are singular where α_t = 0)"
            )
        if likelihood not in ("auto", "ode", "hutchinson"):
            raise InvalidInput(
                f"likelihood: expected 'auto', 'ode' or 'hutchinson' for flow matching, got "
                f"{likelihood!r}"
            )
        pairing, noise = _choose(COUPLINGS, coupling, "coupling")(float(bridge_noise))
        super().__init__(
            event_shape,
            LinearPath(alpha_end),
            parametrization,
            FlowMatching(pairing, noise, time_power),
            sampler,
            sample_steps,
            likelihood,
            1,
            hidden,
            levels,
            condition,
            p_uncond,
            reference,
            components,
        )
