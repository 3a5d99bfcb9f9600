"""MADE as a generative model: exact log-likelihood by the chain rule over D dimensions.

    log p(x) = Σ_i log p(x_i | x_{<i}),   p(x_i | x_{<i}) = q(x_i; f_i(x_{<i}))

where f is a MADE network (probgen.nn.MADE) and q a ``Conditional`` family
(Bernoulli, Categorical, mixtures of Gaussians or logistics). One network
pass gives every conditional at once; sampling takes D passes, one per
dimension in the autoregressive order.

The conditional model p(x | c) = Π_i q(x_i; f_i(x_{<i}, c)) gives the MADE
the condition's features φ(c) as context inputs of degree 0, connected to
every hidden unit, so every conditional sees c (Papamakarios, Pavlakou &
Murray 2017, §3.4; the MADE masks of Germain et al. 2015 are unchanged).

``initialize_from_data`` starts the model as the product of its fitted
marginals, p₀(x) = Π_i q(x_i; θ̂_i) with θ̂_i the family fitted to dimension
i alone: the output biases are the θ̂_i and the output weights are zero, so
training only has to learn the dependence (Bishop 1994, for a mixture
density network). Without it the first conditional p(x_1), which sees no
input and is set by the output biases alone, starts as m near-identical
components at 0 and separates them only slowly, while the later ones
already overfit small data.

Reference: Germain, Gregor, Murray & Larochelle, 2015, "MADE: Masked
Autoencoder for Distribution Estimation"; Papamakarios, Pavlakou & Murray,
2017, "Masked Autoregressive Flow for Density Estimation"; Bishop, 1994,
"Mixture Density Networks".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.models.autoregressive.conditionals import (
    Bernoulli,
    Categorical,
    Conditional,
    MixtureOfGaussians,
)
from probgen.models.autoregressive.sampling import LogitFilter
from probgen.models.conditioning import condition_for
from probgen.nn.masked import MADE

__all__ = ["MADEModel", "default_conditional"]


def default_conditional(levels: int | None) -> Conditional:
    """Bernoulli for binary data, Categorical(K) for K levels, a 10-Gaussian mixture otherwise."""
    if levels is None:
        return MixtureOfGaussians(10)
    return Bernoulli() if levels == 2 else Categorical(levels)


class MADEModel(GenerativeModel):
    """Autoregressive density p(x | c) = Π_i q(x_i; f_i(x_{<i}, c)) with a MADE network f.

    Events of any ``event_shape`` are flattened to D = prod(event_shape) entries
    ordered by ``order``.

    Args:
        event_shape: shape of one example, e.g. ``(8,)`` or ``(1, 28, 28)``.
        conditional: the 1-D family q (default: a mixture of 10 Gaussians).
        hidden: hidden widths of the MADE network.
        order: autoregressive rank of each flattened entry (default identity).
        activation: hidden non-linearity (module factory).
        condition: what c is for p(x | c) (None: p(x)); its features φ(c)
            (B, w) enter the MADE as context inputs.

    Input x (B, *event_shape) and c (B,) labels or (B, *shape) vectors;
    ``log_prob`` returns (B,) nats.
    """

    likelihood = Likelihood.EXACT
    init_examples = 10_000
    """The most examples ``initialize_from_data`` fits the marginals on."""

    def __init__(
        self,
        event_shape: tuple[int, ...],
        conditional: Conditional | None = None,
        hidden: Sequence[int] = (256, 256),
        order: Sequence[int] | Tensor | None = None,
        activation: Callable[[], nn.Module] = nn.ReLU,
        condition: ConditionSpec | None = None,
    ) -> None:
        super().__init__(event_shape)
        self.condition_spec = condition
        self.conditional = conditional or default_conditional(None)
        self.dim = math.prod(self.event_shape)
        self.net = MADE(
            self.dim,
            hidden,
            self.conditional.params_per_dim,
            context=0 if condition is None else condition.width,
            order=order,
            activation=activation,
        )

    @classmethod
    def for_data(
        cls, spec: DataSpec, conditional: bool | Conditional | None = None, **options: Any
    ) -> MADEModel:
        """A MADE for ``spec``, modelling p(x | c) when ``spec.condition`` is set.

        ``conditional`` is spelt as in every family's ``for_data``: None
        (conditional exactly when the data have a condition), True (demand
        one) or False (p(x) on any data). A ``Conditional`` instance there is
        the family q itself (the constructor's argument of that name), with the
        condition following the data; q otherwise follows ``spec.levels``.
        """
        if isinstance(conditional, Conditional):
            options["conditional"], conditional = conditional, None
        options.setdefault("conditional", default_conditional(spec.levels))
        condition = condition_for(spec, conditional, cls.__name__)
        return cls(event_shape=spec.event_shape, condition=condition, **options)

    @property
    def handles_levels(self) -> bool:
        """A probability mass over levels when the conditional is discrete (has ``levels``)."""
        return self.conditional.levels is not None

    @torch.no_grad()
    def initialize_from_data(self, x: Tensor, condition: Tensor | None = None) -> None:
        """Start as p₀(x | c) = Π_i q(x_i; θ̂_i), θ̂_i fitted to column i of x (N, *event_shape).

        ``DataInitialized``: the output layer's bias for dimension i becomes
        ``conditional.marginal_params(x[:, i])`` and its weights zero, so every
        conditional starts as its dimension's marginal fit, whatever x_{<i}
        and c are (the conditions are not used). Beyond ``init_examples``
        examples the fits use that many drawn at random (torch's global
        generator), which bounds the EM's cost (about 0.4 CPU-s per dimension).
        """
        flat = self.conditional.validate(x, self.event_shape).reshape(-1, self.dim)
        if len(flat) == 0:
            raise InvalidInput("MADEModel.initialize_from_data: got no examples")
        if len(flat) > self.init_examples:
            flat = flat[torch.randperm(len(flat))[: self.init_examples]]
        last = self.net.net[-1]
        params = torch.stack([self.conditional.marginal_params(col) for col in flat.T])  # (D, k)
        last.weight.zero_()
        last.bias.copy_(params.reshape(-1))

    def _dtype(self) -> torch.dtype:
        return self.net.net[0].weight.dtype

    def conditionals(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """Parameters (B, D, k) of every p(x_i | x_{<i}, c) for validated x (B, *event_shape)
        and checked conditions c (None for an unconditional model)."""
        flat = x.reshape(x.shape[0], self.dim)
        context = None
        if condition is not None and self.condition_spec is not None:
            context = self.condition_spec.features(condition, self._dtype())
        return self.net(self.conditional.features(flat, self._dtype()), context)

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(x | c) = Σ_i log p(x_i | x_{<i}, c) per example: (B, *event_shape) -> (B,)."""
        x = self.conditional.validate(x, self.event_shape)
        c = self._condition(condition, len(x))
        flat = x.reshape(x.shape[0], self.dim)
        return self.conditional.log_prob(self.conditionals(x, c), flat).sum(dim=1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        condition: Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw x_i ~ p(x_i | x_{<i}, c) in order: D network passes; (n, *event_shape).

        ``condition``: one c for all n, or n of them. The filters act on each
        discrete choice (values, or mixture components).
        """
        c = self._condition(condition, n, expand=True)
        filt = LogitFilter(temperature, top_k, top_p)
        x = torch.zeros(n, self.dim, dtype=self._dtype(), device=self.device)
        for i in torch.argsort(self.net.in_degrees).tolist():
            params = self.conditionals(x, c)[:, i]
            x[:, i] = self.conditional.sample(params, filt, generator)
        return x.reshape(n, *self.event_shape)
