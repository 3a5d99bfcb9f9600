"""Amortised Gaussian encoders q_φ(z|x) = N(z; μ_φ(x), diag σ_φ(x)²), reparameterised."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.vae.conditional import Join

__all__ = ["GaussianEncoder", "GaussianPosterior"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class GaussianPosterior:
    """A batch of diagonal Gaussians N(μ_b, diag σ_b²), one per example.

    Attributes:
        mean: μ, shape (B, Z).
        std: σ > 0, shape (B, Z).
    """

    mean: Tensor
    std: Tensor

    def rsample(self, k: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """k reparameterised draws per example, z = μ + σ ⊙ ε, ε ~ N(0, I): (k, B, Z).

        Reference: Kingma & Welling (2014), "Auto-encoding variational Bayes".
        """
        eps = torch.randn(
            (k, *self.mean.shape),
            generator=generator,
            dtype=self.mean.dtype,
            device=self.mean.device,
        )
        return self.mean + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """log q(z|x) = Σ_j [-½((z_j - μ_j)/σ_j)² - log σ_j - ½ log 2π]: (…, B, Z) -> (…, B)."""
        u = (z - self.mean) / self.std
        return (-0.5 * u.square() - self.std.log() - 0.5 * _LOG_2PI).sum(dim=-1)


class GaussianEncoder(nn.Module):
    """The inference network q_φ(z|x) = N(z; μ_φ(x), diag exp(2 ℓ_φ(x))).

    ``net`` maps x (B, *event_shape) to (B, 2Z): the first Z outputs are the
    mean μ, the last Z the log standard deviation ℓ = log σ. On data with K
    levels (``levels`` given) the network sees x centred to [-1, 1],
    2x/(K-1) - 1, as the decoders emit their parameters on that scale: raw
    levels 0 … 255 would give outputs, hence ℓ, of order 100 at
    initialisation and σ = e^ℓ beyond float32's range.

    Args:
        net: the network, e.g. ``nn.Sequential(nn.Flatten(), MLP(D, 2 * Z))``
            or ``ConvEncoder((C, H, W), 2 * Z)``.
        latent_dim: Z.
        levels: K when x holds levels {0, …, K-1}; ``None`` feeds x as it is.
        join: how x and the condition features h meet (``concat_features`` for
            an MLP, ``feature_channels`` for a convolutional net); ``None``
            for an unconditional encoder.
    """

    def __init__(
        self,
        net: nn.Module,
        latent_dim: int,
        levels: int | None = None,
        join: Join | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.latent_dim = int(latent_dim)
        self.levels = None if levels is None else int(levels)
        self.join = join

    @property
    def conditional(self) -> bool:
        """Whether this is q_φ(z|x, c) (it has a ``join``)."""
        return self.join is not None

    def forward(self, x: Tensor, h: Tensor | None = None) -> GaussianPosterior:
        """q_φ(z|x) (or q_φ(z|x, c), h the features (B, W) of c) for x (B, *event_shape)."""
        if (h is not None) != self.conditional:
            raise InvalidInput(
                "GaussianEncoder: "
                + ("a conditional encoder needs" if self.conditional else "takes no")
                + " condition features h"
            )
        if self.levels is not None:
            x = x * (2.0 / (self.levels - 1)) - 1.0
        out = self.net(x if self.join is None or h is None else self.join(x, h))  # (B, 2Z)
        mean, log_std = out.split(self.latent_dim, dim=-1)
        return GaussianPosterior(mean=mean, std=log_std.exp())
