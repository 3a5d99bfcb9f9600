"""Stochastic-gradient Langevin dynamics over a model's weights, as a posterior of samples.

With the per-example potential L(θ) = -1/B Σ_b log p_θ(x_b) - log p(θ)/N
(an unbiased estimate of U(θ)/N, U = -log p(θ | x_1..N) + const), SGLD is

    θ_{t+1} = θ_t - ε ∇L(θ_t) + √(2ε/N) ξ_t,   ξ_t ~ N(0, I),

i.e. Langevin dynamics on exp(-U) with step η = ε/N. It is run by plain SGD
(learning rate ε, no momentum) on L plus the term Σ_i ξ_i (θ_i - sg(θ_i)),
whose value is zero and whose gradient is the Langevin noise ξ ~ N(0, 2/(εN)).
After ``burn_in`` training-loss evaluations, every ``thin``-th iterate is
kept (the last ``max_samples``); posterior draws pick one uniformly.

For a Gaussian posterior N(m, λ⁻¹) (in U) and exact gradients the chain's
stationary law is N(m, 1/(λ (1 - ηλ/2))): the discretisation bias ηλ/2
vanishes as ε → 0.

Reference: Welling & Teh (2011), "Bayesian Learning via Stochastic Gradient
Langevin Dynamics".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from probgen.bayes.posterior import WeightPosterior
from probgen.core import InvalidInput

__all__ = ["SGLD"]


class SGLD(WeightPosterior):
    """The posterior as SGLD samples of the model's own weights (see module docstring).

    The chosen weights stay the model's parameters and are trained by SGD
    with learning rate ``step_size`` and no momentum, weight decay, clipping
    or EMA (``from_training`` checks a run config for this).

    Args:
        step_size: the SGD learning rate ε.
        prior_std: prior standard deviation s, p(θ_i) = N(0, s²).
        burn_in: training-loss evaluations before the first kept sample.
        thin: keep every ``thin``-th iterate after burn-in.
        max_samples: how many of the latest samples are kept.
    """

    def __init__(
        self,
        step_size: float,
        prior_std: float = 1.0,
        burn_in: int = 1000,
        thin: int = 10,
        max_samples: int = 100,
    ) -> None:
        super().__init__(prior_std)
        if not step_size > 0:
            raise InvalidInput(f"step_size: expected a positive number, got {step_size}")
        if burn_in < 0 or thin < 1 or max_samples < 1:
            raise InvalidInput(
                f"expected burn_in ≥ 0, thin ≥ 1, max_samples ≥ 1; got {burn_in}, {thin}, "
                f"{max_samples}"
            )
        self.step_size = float(step_size)
        self.burn_in, self.thin, self.max_samples = int(burn_in), int(thin), int(max_samples)
        self._weights: dict[str, nn.Parameter] = {}
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("recorded", torch.zeros((), dtype=torch.long))

    @classmethod
    def from_training(cls, options: dict[str, Any], train: Any) -> SGLD:
        """SGLD for a run: ε = ``train.lr``; the optimizer must be plain constant-rate SGD."""
        problems = {
            "optimizer must be sgd": train.optimizer != "sgd",
            "betas[0] (SGD momentum) must be 0": train.betas[0] != 0,
            "weight_decay must be 0 (the prior is the decay)": train.weight_decay != 0,
            "grad_clip must be null": train.grad_clip is not None,
            "ema_decay must be null": train.ema_decay is not None,
            "lr_schedule must be constant": train.lr_schedule != "constant",
            "player_lr must be empty": bool(train.player_lr),
            "step_size is train.lr, not an option": "step_size" in options,
        }
        bad = [text for text, failed in problems.items() if failed]
        if bad:
            raise InvalidInput("bayes method sgld: train." + "; ".join(bad))
        return cls(step_size=train.lr, **options)

    def _bind(self, model: nn.Module, params: dict[str, nn.Parameter]) -> None:
        self._weights = dict(params)
        size = sum(p.numel() for p in params.values())
        first = next(iter(params.values()))
        self.register_buffer(
            "samples", first.new_zeros(self.max_samples, size, requires_grad=False)
        )

    @property
    def num_samples(self) -> int:
        """How many samples are held (at most ``max_samples``)."""
        return min(int(self.recorded), self.max_samples)

    def trainable(self, name: str) -> list[nn.Parameter]:
        return [self._weights[name]]

    def penalty(self, names: Sequence[str]) -> Tensor:
        """-log p(θ) + N Σ_i ξ_i (θ_i - sg(θ_i)) in training, -log p(θ) otherwise."""
        weights = [self._weights[n] for n in names]
        if not weights:
            return self.samples.new_zeros(())
        out = -self.log_prior(weights)
        if self.training and torch.is_grad_enabled():
            std = math.sqrt(2.0 / (self.step_size * self.num_data))
            for w in weights:
                xi = std * torch.randn_like(w)
                out = out + self.num_data * (xi * (w - w.detach())).sum()
        return out

    def training_weights(self) -> Any:
        """Keep the current iterate when one is due (training only); the weights are the model's."""
        if self.training and torch.is_grad_enabled():
            t = int(self.steps)
            if t >= self.burn_in and (t - self.burn_in) % self.thin == 0:
                flat = torch.cat([w.detach().reshape(-1) for w in self._weights.values()])
                self.samples[int(self.recorded) % self.max_samples] = flat
                self.recorded += 1
            self.steps += 1
        return super().training_weights()

    def draw(self, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One kept SGLD sample, chosen uniformly."""
        if self.num_samples == 0:
            raise InvalidInput(
                f"SGLD holds no samples yet: train for more than burn_in = {self.burn_in} steps"
            )
        device = generator.device if generator is not None else self.samples.device
        flat = self.samples[torch.randint(self.num_samples, (), generator=generator, device=device)]
        out, start = {}, 0
        for name, w in self._weights.items():
            out[name] = flat[start : start + w.numel()].view_as(w)
            start += w.numel()
        return out
