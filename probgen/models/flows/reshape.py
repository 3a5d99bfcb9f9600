"""Volume-preserving rearrangements for multi-scale flows: reshape, squeeze, factor-out.

Glow's multi-scale structure (Dinh et al. 2017; Kingma & Dhariwal 2018) is a
composition of these with ordinary steps of flow: each level squeezes
(B, C, H, W) to (B, 4C, H/2, W/2), runs K steps, factors out half of the
channels as latent code, and hands the other half to the next level.

Reference: Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using
Real NVP"; Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible
1×1 Convolutions".
"""

from __future__ import annotations

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.models.flows.base import Transform

__all__ = ["FactorOut", "Reshape", "Squeeze"]


class Reshape(Transform):
    """z = x viewed with event shape ``out_shape``; log|det| = 0.

    E.g. ``Reshape((1, 28, 28), (784,))`` lets a vector flow model images.
    """

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        if torch.Size(self.in_shape).numel() != torch.Size(self.out_shape).numel():
            raise InvalidInput(f"Reshape: cannot view {self.in_shape} as {self.out_shape}")

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.reshape(x.shape[0], *self.out_shape), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.reshape(z.shape[0], *self.in_shape), z.new_zeros(z.shape[0])


class Squeeze(Transform):
    """Space-to-channel squeeze (B, C, H, W) -> (B, C·f², H/f, W/f); log|det| = 0.

    Each f×f spatial patch becomes f² channels, so the following 1×1 and
    coupling layers mix neighbouring pixels.
    """

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        f = self.factor
        if h % f or w % f:
            raise InvalidInput(f"Squeeze: expected H and W divisible by {f}, got {(h, w)}")
        x = x.reshape(b, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(b, c * f * f, h // f, w // f), x.new_zeros(b)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        b, c, h, w = z.shape
        f = self.factor
        z = z.reshape(b, c // (f * f), f, f, h, w).permute(0, 1, 4, 2, 5, 3)
        return z.reshape(b, c // (f * f), h * f, w * f), z.new_zeros(b)


class FactorOut(Transform):
    """Keep the first ``keep`` channels as latent code and transform the rest with ``inner``.

    z = (x_{:keep}, g(x_{keep:})) along dimension 1, so
    log|det ∂z/∂x| = log|det ∂g/∂x_{keep:}|. Nesting levels inside ``inner``
    gives the multi-scale architecture: the factored-out half is modelled by
    the base distribution directly, at the resolution of its level.
    """

    def __init__(self, inner: Transform, keep: int) -> None:
        super().__init__()
        self.inner = inner
        self.keep = keep

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        rest, logdet = self.inner(x[:, self.keep :], context)
        return torch.cat([x[:, : self.keep], rest], dim=1), logdet

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        rest, logdet = self.inner.inverse(z[:, self.keep :], context)
        return torch.cat([z[:, : self.keep], rest], dim=1), logdet
