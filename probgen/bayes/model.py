"""A Bayesian generative model: any GenerativeModel with a posterior over chosen weights.

    loss(x, p)      = -1/B Σ_b E_q[log p_θ(x_b)] + penalty_p / N     (the negative ELBO / N)
    log_prob(x)     = log 1/S Σ_s p_{θ_s}(x),  θ_s ~ q(θ)            (posterior predictive)
    sample(n)       θ ~ q(θ), then x ~ p_θ(x)
    uncertainty(x)  = Var_s[log p_{θ_s}(x)]                           (epistemic)

Weights are swapped with ``torch.func.functional_call``; the wrapped model is
never copied.

References: Blundell et al. (2015), "Weight Uncertainty in Neural Networks";
Welling & Teh (2011), "Bayesian Learning via Stochastic Gradient Langevin
Dynamics".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from probgen.bayes.posterior import WeightPosterior, select_parameters
from probgen.core import Estimate, GenerativeModel, InvalidInput, Likelihood, call_log_prob
from probgen.tensors import logmeanexp

__all__ = ["BayesianModel", "Predictive"]

T = TypeVar("T")

# log mean_s p_θs(x) is a consistent estimate whose mean lies below log p(x) (Jensen).
_PREDICTIVE = {
    Likelihood.EXACT: Likelihood.BOUND,
    Likelihood.BOUND: Likelihood.BOUND,
    Likelihood.ESTIMATE: Likelihood.ESTIMATE,
    Likelihood.UNNORMALIZED: Likelihood.UNNORMALIZED,
    Likelihood.NONE: Likelihood.NONE,
}


@dataclass(frozen=True)
class Predictive:
    """log p_{θ_s}(x_b) for S posterior draws and B inputs, and what follows from them.

    Attributes:
        log_likelihoods: (S, B), in nats.
        kind: what the predictive log-density is (an ``Estimate`` kind).
    """

    log_likelihoods: Tensor
    kind: str = "bound"

    @property
    def log_prob(self) -> Tensor:
        """log p̂(x_b) = log 1/S Σ_s exp ℓ_sb, shape (B,)."""
        return logmeanexp(self.log_likelihoods, dim=0)

    @property
    def stderr(self) -> Tensor:
        """Delta-method standard error of log p̂: sd_s(w_sb) / (√S · mean_s(w_sb)), (B,).

        w_sb = exp(ℓ_sb - max_s ℓ_sb); NaN when S = 1.
        """
        ll = self.log_likelihoods
        w = (ll - ll.max(dim=0).values).exp()  # (S, B)
        return w.std(dim=0) / (math.sqrt(ll.shape[0]) * w.mean(dim=0))

    @property
    def uncertainty(self) -> Tensor:
        """Epistemic uncertainty Var_s[ℓ_sb] (unbiased), shape (B,)."""
        return self.log_likelihoods.var(dim=0)

    def mean(self) -> Estimate:
        """The batch mean of log p̂(x_b) with its Monte Carlo error √(Σ_b se_b²) / B."""
        se = self.stderr
        return Estimate(
            value=self.log_prob.mean().item(),
            stderr=se.square().sum().sqrt().item() / len(se),
            kind=self.kind,
        )


class BayesianModel(GenerativeModel):
    """``model`` with the posterior approximation ``posterior`` over the weights ``layers``.

    Its players are the wrapped model's, each holding the posterior's
    parameters in place of its Bayesian weights; ``loss(x, player)`` is the
    wrapped loss under a draw from q plus that player's penalty / N
    (KL(q ‖ p) for variational posteriors, -log p(θ) for SGLD).

    Args:
        model: any GenerativeModel; its weights are swapped, never copied.
        posterior: a fresh ``WeightPosterior`` (``MeanField``, ``SGLD``); bound here.
        num_data: N, the number of training examples.
        layers: module or parameter paths of the Bayesian weights (``None``: all).
        samples: default number S of posterior draws in ``log_prob`` and
            ``uncertainty`` (and of weight draws per ``sample`` call).

    Shapes: ``x`` is (B, *event_shape); ``log_prob`` and ``uncertainty`` return (B,).
    """

    def __init__(
        self,
        model: GenerativeModel,
        posterior: WeightPosterior,
        *,
        num_data: int,
        layers: Sequence[str] | None = None,
        samples: int = 16,
    ) -> None:
        super().__init__(model.event_shape)
        if samples < 1:
            raise InvalidInput(f"samples: expected a positive integer, got {samples}")
        self.model = model
        self.posterior = posterior
        self.samples = int(samples)
        self.likelihood = _PREDICTIVE[model.likelihood]
        posterior.bind(model, select_parameters(model, layers), num_data)
        names = {id(p): n for n, p in model.named_parameters() if n in set(posterior.names)}
        self._bayesian = {
            player: [names[id(p)] for p in params if id(p) in names]
            for player, params in model.players().items()
        }

    def forward(self, fn: Callable[[GenerativeModel], T]) -> T:
        """``fn(model)``: the call ``functional_call`` runs with swapped weights."""
        return fn(self.model)

    def players(self) -> dict[str, list[nn.Parameter]]:
        """The wrapped model's players; a Bayesian weight becomes the posterior's tensors for it."""
        named = {id(p): n for n, p in self.model.named_parameters()}
        out = {}
        for player, params in self.model.players().items():
            mapped: list[nn.Parameter] = []
            for p in params:
                name = named.get(id(p))
                bayesian = name is not None and name in self._bayesian[player]
                mapped += self.posterior.trainable(name) if bayesian else [p]
            out[player] = mapped
        return out

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        """Negative ELBO per example: E_q[wrapped loss] + penalty(player's weights) / N."""
        self._check_player(player)
        with self.posterior.training_weights() as weights:
            data = self.run(weights, lambda m: m.loss(x, player))
        return data + self.posterior.penalty(self._bayesian[player]) / self.posterior.num_data

    def run(self, weights: dict[str, Tensor], fn: Callable[[GenerativeModel], T]) -> T:
        """``fn(model)`` with the weights ``{name: tensor}`` in place of the model's own."""
        if not weights:
            return fn(self.model)
        return functional_call(self, {f"model.{n}": w for n, w in weights.items()}, (fn,))

    def log_likelihoods(
        self, x: Tensor, samples: int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """log p_{θ_s}(x_b) for S = ``samples`` draws θ_s ~ q, shape (S, B)."""
        x = self._check(x)
        s = self._num(samples)
        draws = [self.posterior.draw(generator) for _ in range(s)]
        return torch.stack(
            [self.run(theta, lambda m: call_log_prob(m, x, generator)) for theta in draws]
        )

    def predictive(
        self, x: Tensor, samples: int | None = None, generator: torch.Generator | None = None
    ) -> Predictive:
        """The posterior predictive at ``x``: log p̂, its standard error, the uncertainty."""
        return Predictive(self.log_likelihoods(x, samples, generator), kind=self.likelihood.value)

    def log_prob(self, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """log p(x | data) ≈ log 1/S Σ_s p_{θ_s}(x), shape (B,); S = ``self.samples``.

        The draws θ_s ~ q (and the inner model's own draws) come from ``generator``.
        """
        return logmeanexp(self.log_likelihoods(x, generator=generator), dim=0)

    def uncertainty(
        self, x: Tensor, samples: int | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Epistemic uncertainty Var_{θ~q}[log p_θ(x)], estimated from S draws, shape (B,)."""
        return self.predictive(x, samples, generator).uncertainty

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        draws: int | None = None,
        **options: Any,
    ) -> Tensor:
        """x ~ p(x | data): ``draws`` weight draws θ ~ q (default min(n, samples)), n/draws each.

        Each sample is exactly from the predictive; samples sharing a θ are
        dependent (``draws=n`` makes all independent). Shuffled; (n, *event_shape).
        """
        draws = min(n, self.samples) if draws is None else draws
        if not 1 <= draws <= n:
            raise InvalidInput(f"expected 1 ≤ draws ≤ n, got n = {n}, draws = {draws}")
        sizes = [n // draws + (i < n % draws) for i in range(draws)]
        x = torch.cat(
            [
                self.run(
                    self.posterior.draw(generator),
                    lambda m, k=k: m.sample(k, generator=generator, **options),
                )
                for k in sizes
                if k
            ]
        )
        device = generator.device if generator is not None else x.device
        return x[torch.randperm(n, generator=generator, device=device).to(x.device)]

    def _num(self, samples: int | None) -> int:
        s = self.samples if samples is None else samples
        if s < 1:
            raise InvalidInput(f"samples: expected a positive integer, got {s}")
        return s
