"""An ensemble of M independently initialised models of one family: p(x) = (1/M) Σ_m p_m(x).

Each member has its own parameters and its own random initialisation; the
ensemble's loss is the mean of the members' losses, whose parameters are
disjoint, so every member follows its own gradient on the same batches (Adam
is per parameter): M independent trainings in one run, checkpoint and early
stopping. The density is the equally weighted mixture of the members',

    log p(x | c) = logsumexp_m log p_m(x | c) − log M,

exact when the members' densities are exact. With bounds b_m ≤ log p_m the
same expression is a bound on log p (exp is increasing). Averaging the
densities of independently trained models lowers the variance that one
training run's initialisation and batches leave in a held-out likelihood,
which on a few hundred points is as large as the differences between
families (deep ensembles: Lakshminarayanan, Pritzel & Blundell 2017, whose
members differ by their random initialisation alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import (
    DataInitialized,
    DataSpec,
    GenerativeModel,
    InvalidInput,
    Likelihood,
    call_log_prob,
)
from probgen.registry import MODELS

__all__ = ["Ensemble"]

_AVERAGED = (Likelihood.EXACT, Likelihood.BOUND)
"""Members' likelihoods whose log-mean-exp keeps its meaning (exact, or a lower bound)."""


class Ensemble(GenerativeModel):
    """p(x | c) = (1/M) Σ_m p_m(x | c) over M members of one family, trained side by side.

    Args:
        members: M ≥ 1 models with the same event shape, condition and
            likelihood (exact or bound), each with the one player ``"model"``.

    ``Ensemble.for_data(spec, family="maf", members=5, **options)`` builds M
    members of a registered family with the same options (the registry entry
    ``ensemble``). ``sample`` draws the member of each example uniformly.

    Reference: Lakshminarayanan, Pritzel & Blundell (2017), "Simple and
    Scalable Predictive Uncertainty Estimation using Deep Ensembles".
    """

    def __init__(self, members: Sequence[GenerativeModel]) -> None:
        if not members:
            raise InvalidInput("Ensemble: expected at least one member")
        first = members[0]
        super().__init__(first.event_shape)
        for m in members:
            same = (m.event_shape, m.condition_spec, m.likelihood) == (
                first.event_shape, first.condition_spec, first.likelihood,
            )  # fmt: skip
            if not same:
                raise InvalidInput(
                    "Ensemble: every member needs the same event shape, condition and "
                    f"likelihood; got {type(first).__name__} and {type(m).__name__}"
                )
            if list(m.players()) != ["model"]:
                raise InvalidInput(
                    f"Ensemble: {type(m).__name__} has players {sorted(m.players())}; an "
                    "ensemble averages densities of single-player models"
                )
        if first.likelihood not in _AVERAGED:
            raise InvalidInput(
                f"Ensemble: {type(first).__name__}'s likelihood is {first.likelihood.value}; "
                "an ensemble averages exact densities or bounds"
            )
        self.members = nn.ModuleList(members)
        self.likelihood = first.likelihood

    @classmethod
    def small_data_options(cls, spec: DataSpec, options: Mapping[str, Any]) -> dict[str, Any]:
        """The member family's (``family``, default maf), for every member."""
        family = options.get("family", "maf")
        if family == "ensemble" or family not in MODELS:
            return {}  # for_data names the problem
        members = {k: v for k, v in options.items() if k not in ("family", "members")}
        return MODELS.get(family).small_data_options(spec, members)

    @classmethod
    def for_data(
        cls, spec: DataSpec, family: str = "maf", members: int = 5, **options: Any
    ) -> Ensemble:
        """``members`` models of the registered ``family`` for ``spec``, all with ``options``."""
        if family == "ensemble":
            raise InvalidInput("ensemble: family must be a registered family other than ensemble")
        if members < 1:
            raise InvalidInput(f"ensemble: members must be >= 1, got {members}")
        build = MODELS.get(family).for_data
        return cls([build(spec, **options) for _ in range(members)])

    @property  # type: ignore[override]
    def condition_spec(self) -> ConditionSpec | None:
        """The members' condition."""
        return self.members[0].condition_spec

    @property  # type: ignore[override]
    def unconditional_mode(self) -> bool:
        """The members'."""
        return self.members[0].unconditional_mode

    @property
    def handles_levels(self) -> bool:
        """The members' (one family: all or none model integer levels)."""
        return self.members[0].handles_levels

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        """(1/M) Σ_m loss_m(x): each member's own objective on the same batch."""
        self._check_player(player)
        losses = [m.loss(x, "model", condition=condition) for m in self.members]
        return torch.stack(losses).mean()

    def log_prob(
        self,
        x: Tensor,
        condition: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log (1/M) Σ_m p_m(x | c) per example: (B, *event_shape) -> (B,)."""
        per_member = torch.stack(
            [call_log_prob(m, x, generator, condition=condition) for m in self.members]
        )  # (M, B)
        return torch.logsumexp(per_member, dim=0) - math.log(len(self.members))

    def sample(self, n: int, condition: Tensor | None = None, **options: Any) -> Tensor:
        """n draws: member k_i ~ U{1..M} for each, then x_i ~ p_{k_i}(· | c_i); (n, *event_shape).

        Every member draws n examples (so a condition per example stays
        aligned) and row i keeps member k_i's; ``generator`` (if given) draws
        the k_i and is passed on to the members.
        """
        generator = options.get("generator")
        ref = next(iter(self.parameters()), torch.empty(0))
        k = torch.randint(len(self.members), (n,), generator=generator, device=ref.device)
        draws = torch.stack([m.sample(n, condition=condition, **options) for m in self.members])
        return draws[k, torch.arange(n, device=draws.device)]

    @torch.no_grad()
    def initialize_from_data(self, x: Tensor, condition: Tensor | None = None) -> None:
        """Give every data-initialised member the training data (``DataInitialized``)."""
        for m in self.members:
            if isinstance(m, DataInitialized):
                m.initialize_from_data(x, condition)
