"""The parts of a conditional VAE (CVAE): how networks read the condition, and p(z | c).

A CVAE models p_θ(x | c) = ∫ p_θ(x | z, c) p(z | c) dz with the inference
model q_φ(z | x, c). The networks read the condition through its features
h = ``ConditionSpec.features(c)`` (B, W), one-hot rows for classes:

- vector inputs (MLP encoders, every decoder, whose input z is a vector):
  h is concatenated to the flattened input, [x, h] (``concat_features``);
- image inputs (convolutional encoders): h enters as W extra constant
  channels, h_w broadcast over H × W (``feature_channels``), so the first
  convolution's weights on those channels are a learned bias per output
  channel and class.

The prior p(z | c) is either c-independent (any prior of ``VAE``) or the
learned Gaussian ``ConditionalGaussianPrior`` N(μ_λ(c), diag σ_λ(c)²).

Reference: Sohn, Lee & Yan (2015), "Learning structured output
representation using deep conditional generative models" (the CVAE, its
conditional ELBO and the prior network p(z | c)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.nn.mlp import MLP

__all__ = ["ConditionalGaussianPrior", "Join", "concat_features", "feature_channels"]

_LOG_2PI = math.log(2.0 * math.pi)

Join = Callable[[Tensor, Tensor], Tensor]
"""How a network input x (B, …) and condition features h (B, W) become one input."""


def concat_features(x: Tensor, h: Tensor) -> Tensor:
    """[flatten(x), h]: (B, …) and (B, W) -> (B, prod(…) + W)."""
    return torch.cat([x.reshape(len(x), -1), h.to(x.dtype)], dim=1)


def feature_channels(x: Tensor, h: Tensor) -> Tensor:
    """Images with W constant channels h_w: (B, C, H, H') and (B, W) -> (B, C + W, H, H')."""
    planes = h.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[2:])
    return torch.cat([x, planes], dim=1)


class ConditionalGaussianPrior(nn.Module):
    """The learned prior p_λ(z | c) = N(z; μ_λ(h), diag exp(2 ℓ_λ(h))), h the features of c.

    A network maps h (B, W) to [μ, ℓ] (B, 2Z); with no hidden layers (the
    default) it is linear, which for one-hot classes is one free mean and
    log-std per class. It starts at N(0, I) for every c (zero output layer).

    Reference: Sohn, Lee & Yan (2015), "Learning structured output
    representation using deep conditional generative models", §3.1 (the
    prior network p_θ(z | x), their x being our condition c).

    Args:
        width: W, the width of the condition features.
        latent_dim: Z.
        hidden: hidden widths of the network (default: none, a linear map).
    """

    def __init__(self, width: int, latent_dim: int, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        if width < 1 or latent_dim < 1:
            raise InvalidInput(
                f"ConditionalGaussianPrior: expected width >= 1 and latent_dim >= 1, "
                f"got {width} and {latent_dim}"
            )
        self.latent_dim = int(latent_dim)
        self.event_shape = (self.latent_dim,)
        self.net = MLP(width, 2 * self.latent_dim, hidden, zero_last=True)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(μ_λ(h), σ_λ(h)), each (B, Z), for condition features h (B, W)."""
        mean, log_std = self.net(h).split(self.latent_dim, dim=-1)
        return mean, log_std.exp()

    def log_prob(self, z: Tensor, h: Tensor) -> Tensor:
        """log p_λ(z | c) for draws z (k, B, Z) and features h (B, W): (k, B)."""
        mean, std = self(h.to(z.dtype))
        u = (z - mean) / std
        return (-0.5 * u.square() - std.log() - 0.5 * _LOG_2PI).sum(dim=-1)

    def sample(self, h: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One z ~ p_λ(z | c) per row of h (B, W): (B, Z)."""
        mean, std = self(h)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + std * eps
