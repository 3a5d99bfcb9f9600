"""Small convolutional encoder and decoder for images of any size (B, C, H, W)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from torch import Tensor, nn

__all__ = ["ConvDecoder", "ConvEncoder", "downsampled_sizes"]


def downsampled_sizes(size: int, n: int) -> list[int]:
    """Spatial sizes ``[size, s_1, …, s_n]`` after ``n`` stride-2 3×3 convolutions.

    A convolution with kernel 3, stride 2 and padding 1 maps a side s to
    ⌊(s - 1)/2⌋ + 1 (28 → 14 → 7 → 4; 8 → 4 → 2).
    """
    sizes = [size]
    for _ in range(n):
        sizes.append((sizes[-1] - 1) // 2 + 1)
    return sizes


class ConvEncoder(nn.Module):
    """Image to vector: stride-2 3×3 convolutions, then a linear layer.

    (B, C, H, W) -> (B, C_1, H_1, W_1) -> … -> (B, C_L, H_L, W_L) -> (B, out_features),
    each side halving as in ``downsampled_sizes``.

    Args:
        in_shape: (C, H, W) of the input images.
        out_features: width of the output vector.
        channels: channels C_1, …, C_L of the convolutions (one per halving).
        activation: module factory for the non-linearity.
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        out_features: int,
        channels: Sequence[int] = (32, 64),
        activation: Callable[[], nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise([c, *channels]):
            layers += [nn.Conv2d(a, b, kernel_size=3, stride=2, padding=1), activation()]
        self.features = nn.Sequential(*layers)
        hl = downsampled_sizes(h, len(channels))[-1]
        wl = downsampled_sizes(w, len(channels))[-1]
        self.head = nn.Linear(channels[-1] * hl * wl, out_features)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, out_features)
        return self.head(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """Vector to image, the mirror of ``ConvEncoder``: a linear layer, then
    stride-2 3×3 transposed convolutions back to the exact output size.

    (B, in_features) -> (B, C_1, H_L, W_L) -> … -> (B, out_channels, H, W). A
    transposed convolution maps a side s to 2s - 1 + p with output padding
    p ∈ {0, 1} chosen so every intermediate size matches the encoder's.

    Args:
        in_features: width of the input vector.
        out_shape: (out_channels, H, W) of the output.
        channels: channels before each doubling, from the smallest image up.
        activation: module factory for the non-linearity.
    """

    def __init__(
        self,
        in_features: int,
        out_shape: tuple[int, int, int],
        channels: Sequence[int] = (64, 32),
        activation: Callable[[], nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        c, h, w = out_shape
        hs = downsampled_sizes(h, len(channels))[::-1]  # smallest first
        ws = downsampled_sizes(w, len(channels))[::-1]
        self.start_shape = (channels[0], hs[0], ws[0])
        self.head = nn.Sequential(nn.Linear(in_features, channels[0] * hs[0] * ws[0]), activation())
        layers: list[nn.Module] = []
        widths = [*channels, c]
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            pad = (hs[i + 1] - (2 * hs[i] - 1), ws[i + 1] - (2 * ws[i] - 1))
            layers.append(
                nn.ConvTranspose2d(a, b, kernel_size=3, stride=2, padding=1, output_padding=pad)
            )
            if i < len(channels) - 1:
                layers.append(activation())
        self.features = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:  # (B, in_features) -> (B, C, H, W)
        return self.features(self.head(z).reshape(z.shape[0], *self.start_shape))
