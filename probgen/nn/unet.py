"""A small U-Net f(x, t[, h]) for images (B, C, H, W) of any size, conditioned on time."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probgen.nn.time_embedding import ConditionEmbedding, SinusoidalEmbedding

__all__ = ["ResidualBlock", "UNet"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResidualBlock(nn.Module):
    """Residual block h + conv(SiLU(norm(conv(SiLU(norm(h))) + W e(t)))).

    (B, C_in, H, W), (B, E) -> (B, C_out, H, W).

    Reference: Ho, Jain & Abbeel (2020), Appendix B (the Wide-ResNet block with time added).
    """

    def __init__(self, in_channels: int, out_channels: int, embedding: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(embedding, out_channels)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        out = self.conv1(F.silu(self.norm1(h)))
        out = out + self.time(emb)[:, :, None, None]
        out = self.conv2(F.silu(self.norm2(out)))
        return self.skip(h) + out


class UNet(nn.Module):
    """U-Net: residual blocks at each resolution, stride-2 downsampling, skip connections.

    Level i has ``channels[i]`` channels; between levels the side halves
    (⌈s/2⌉) on the way down and is restored to the skip's size on the way
    up, so any H, W work (8×8 digits, 28×28 MNIST). The output convolution
    starts at zero. (B, C, H, W), t (B,) -> (B, C, H, W). With ``condition`` = F > 0
    it also reads condition features h (B, F), embedded and added to the time
    embedding (``ConditionEmbedding``; Dhariwal & Nichol 2021).

    Reference: Ronneberger, Fischer & Brox (2015), "U-Net"; Ho, Jain & Abbeel
    (2020), "Denoising diffusion probabilistic models", Appendix B.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (32, 64),
        embedding: int = 64,
        condition: int = 0,
    ) -> None:
        super().__init__()
        chans = list(channels)
        self.embed = nn.Sequential(
            SinusoidalEmbedding(embedding),
            nn.Linear(embedding, embedding),
            nn.SiLU(),
            nn.Linear(embedding, embedding),
        )
        self.condition = ConditionEmbedding(condition, embedding)
        self.stem = nn.Conv2d(in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, c in enumerate(chans):
            self.down.append(ResidualBlock(chans[max(i - 1, 0)], c, embedding))
            if i < len(chans) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.middle = ResidualBlock(chans[-1], chans[-1], embedding)
        self.up = nn.ModuleList(
            ResidualBlock(2 * c + (chans[i + 1] - c if i < len(chans) - 1 else 0), c, embedding)
            for i, c in reversed(list(enumerate(chans)))
        )
        self.out_norm = _norm(chans[0])
        self.out = nn.Conv2d(chans[0], in_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        emb = self.condition(self.embed(t.to(x.dtype)), condition)  # (B, E)
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.middle(h, emb)
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(F.silu(self.out_norm(h)))
