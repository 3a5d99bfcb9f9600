"""MADE as a generative model: exact log-likelihood by the chain rule over D dimensions.

    log p(x) = Σ_i log p(x_i | x_{<i}),   p(x_i | x_{<i}) = q(x_i; f_i(x_{<i}))

where f is a MADE network (probgen.nn.MADE) and q a ``Conditional`` family
(Bernoulli, Categorical, mixtures of Gaussians or logistics). One network
pass gives every conditional at once; sampling takes D passes, one per
dimension in the autoregressive order.

Reference: Germain, Gregor, Murray & Larochelle, 2015, "MADE: Masked
Autoencoder for Distribution Estimation".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from probgen.core import DataSpec, GenerativeModel, Likelihood
from probgen.models.autoregressive.conditionals import (
    Bernoulli,
    Categorical,
    Conditional,
    MixtureOfGaussians,
)
from probgen.models.autoregressive.sampling import LogitFilter
from probgen.nn.masked import MADE

__all__ = ["MADEModel", "default_conditional"]


def default_conditional(levels: int | None) -> Conditional:
    """Bernoulli for binary data, Categorical(K) for K levels, a 10-Gaussian mixture otherwise."""
    if levels is None:
        return MixtureOfGaussians(10)
    return Bernoulli() if levels == 2 else Categorical(levels)


class MADEModel(GenerativeModel):
    """Autoregressive density p(x) = Π_i q(x_i; f_i(x_{<i})) with a MADE network f.

    Events of any ``event_shape`` are flattened to D = prod(event_shape) entries
    ordered by ``order``.

    Args:
        event_shape: shape of one example, e.g. ``(8,)`` or ``(1, 28, 28)``.
        conditional: the 1-D family q (default: a mixture of 10 Gaussians).
        hidden: hidden widths of the MADE network.
        order: autoregressive rank of each flattened entry (default identity).
        activation: hidden non-linearity (module factory).

    Input x (B, *event_shape); ``log_prob`` returns (B,) nats.
    """

    likelihood = Likelihood.EXACT

    def __init__(
        self,
        event_shape: tuple[int, ...],
        conditional: Conditional | None = None,
        hidden: Sequence[int] = (256, 256),
        order: Sequence[int] | Tensor | None = None,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(event_shape)
        self.conditional = conditional or default_conditional(None)
        self.dim = math.prod(self.event_shape)
        self.net = MADE(
            self.dim,
            hidden,
            self.conditional.params_per_dim,
            order=order,
            activation=activation,
        )

    @classmethod
    def for_data(cls, spec: DataSpec, **options: Any) -> MADEModel:
        """A MADE for ``spec``: the conditional follows ``spec.levels`` unless given."""
        options.setdefault("conditional", default_conditional(spec.levels))
        return cls(event_shape=spec.event_shape, **options)

    @property
    def handles_levels(self) -> bool:
        """A probability mass over levels when the conditional is discrete (has ``levels``)."""
        return self.conditional.levels is not None

    def _dtype(self) -> torch.dtype:
        return self.net.net[0].weight.dtype

    def conditionals(self, x: Tensor) -> Tensor:
        """Parameters (B, D, k) of every p(x_i | x_{<i}) for validated x (B, *event_shape)."""
        flat = x.reshape(x.shape[0], self.dim)
        return self.net(self.conditional.features(flat, self._dtype()))

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) = Σ_i log p(x_i | x_{<i}) per example: (B, *event_shape) -> (B,)."""
        x = self.conditional.validate(x, self.event_shape)
        flat = x.reshape(x.shape[0], self.dim)
        return self.conditional.log_prob(self.conditionals(x), flat).sum(dim=1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw x_i ~ p(x_i | x_{<i}) in order: D network passes; (n, *event_shape).

        The filters act on each discrete choice (values, or mixture components).
        """
        filt = LogitFilter(temperature, top_k, top_p)
        x = torch.zeros(n, self.dim, dtype=self._dtype(), device=self.device)
        for i in torch.argsort(self.net.in_degrees).tolist():
            params = self.conditionals(x)[:, i]
            x[:, i] = self.conditional.sample(params, filt, generator)
        return x.reshape(n, *self.event_shape)
