"""PixelCNN: an autoregressive model of images with masked convolutions.

    log p(x) = Σ_{i,j} Σ_c log p(x_{c,i,j} | x_{<(i,j)}, x_{<c,(i,j)})

Pixels are ordered in raster order (row by row, left to right) and, within
a pixel, by channel (c = 0 before 1 before 2, e.g. R, G, B). Each
conditional is a categorical over the K levels {0, …, K-1} (K = 2 for binary
images). One pass of the masked network gives all conditionals; sampling
takes C·H·W passes.

Known limitation of this original architecture: stacked masked convolutions
leave a "blind spot" above-right of each pixel, so some of x_{<(i,j)} is not
seen beyond the first layer's kernel. It is still an exact, normalised
autoregressive model (the blind spot removes context, never adds future).

Reference: van den Oord, Kalchbrenner & Kavukcuoglu, 2016, "Pixel
Recurrent Neural Networks" (PixelCNN, masks A/B, residual blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.models.autoregressive.sampling import LogitFilter, as_levels, sample_logits
from probgen.nn.masked import MaskedConv2d
from probgen.tensors import log_softmax_last, sum_events

__all__ = ["PixelCNN", "ResidualMaskedBlock"]


class ResidualMaskedBlock(nn.Module):
    """x + Conv1x1_B(act(Conv3x3_B(act(x)))): a type-B residual block, (B, h, H, W)."""

    def __init__(self, width: int, data_channels: int, activation: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.net = nn.Sequential(
            activation(),
            MaskedConv2d(width, width, 3, include_center=True, data_channels=data_channels),
            activation(),
            MaskedConv2d(width, width, 1, include_center=True, data_channels=data_channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


class PixelCNN(GenerativeModel):
    """Categorical PixelCNN over images x ∈ {0…K-1}^{C×H×W} with exact log-likelihood.

    Args:
        event_shape: (C, H, W).
        levels: K, the number of values of each pixel (2 for binary images).
        hidden: feature maps of the hidden layers.
        layers: number of residual type-B blocks.
        kernel_size: side of the first (type A) kernel.
        activation: non-linearity (module factory).

    Input x (B, C, H, W) of whole numbers 0…K-1 (float or integer tensors);
    ``log_prob`` returns (B,) nats; ``sample`` returns (n, C, H, W) floats.
    """

    likelihood = Likelihood.EXACT

    def __init__(
        self,
        event_shape: tuple[int, ...],
        levels: int = 2,
        hidden: int = 64,
        layers: int = 5,
        kernel_size: int = 7,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        if len(event_shape) != 3:
            raise InvalidInput(f"PixelCNN: expected event_shape (C, H, W), got {event_shape}")
        if levels < 2:
            raise InvalidInput(f"PixelCNN: expected levels ≥ 2, got {levels}")
        super().__init__(event_shape)
        self.levels = levels
        c = self.event_shape[0]
        self.net = nn.Sequential(
            MaskedConv2d(c, hidden, kernel_size, include_center=False, data_channels=c),
            *(ResidualMaskedBlock(hidden, c, activation) for _ in range(layers)),
            activation(),
            MaskedConv2d(hidden, hidden, 1, include_center=True, data_channels=c),
            activation(),
            MaskedConv2d(hidden, c * levels, 1, include_center=True, data_channels=c),
        )

    @classmethod
    def for_data(cls, spec: DataSpec, **options: Any) -> PixelCNN:
        """A PixelCNN for images ``spec`` (event (C, H, W), K = ``spec.levels``)."""
        if spec.levels is None:
            raise InvalidInput(
                "PixelCNN: expected discrete images (spec.levels = K), got continuous data"
            )
        return cls(event_shape=spec.event_shape, levels=spec.levels, **options)

    @property
    def handles_levels(self) -> bool:
        """Always: a categorical distribution over the K levels of every pixel."""
        return True

    def logits(self, x: Tensor) -> Tensor:
        """Logits (B, C, H, W, K) of every p(x_{c,i,j} | earlier) for levels x (B, C, H, W)."""
        dtype = self.net[0].weight.dtype
        features = x.to(dtype) * (2 / (self.levels - 1)) - 1  # levels centred to [-1, 1]
        out = self.net(features)  # (B, C·K, H, W), grouped by data channel
        b, _, h, w = out.shape
        return out.reshape(b, self.event_shape[0], self.levels, h, w).permute(0, 1, 3, 4, 2)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) = Σ over pixels and channels of log p(x_{c,i,j} | earlier): (B,)."""
        x = as_levels(x, self.event_shape, self.levels)
        logp = log_softmax_last(self.logits(x))
        return sum_events(logp.gather(-1, x.unsqueeze(-1)).squeeze(-1))

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw pixels in raster order, channels within a pixel: (n, C, H, W) levels as floats."""
        filt = LogitFilter(temperature, top_k, top_p)
        x = torch.zeros(n, *self.event_shape, dtype=self.net[0].weight.dtype, device=self.device)
        channels, height, width = self.event_shape
        for i in range(height):
            for j in range(width):
                for c in range(channels):
                    logits = self.logits(x)[:, c, i, j]  # (n, K)
                    x[:, c, i, j] = sample_logits(logits, filt, generator).to(x.dtype)
        return x
