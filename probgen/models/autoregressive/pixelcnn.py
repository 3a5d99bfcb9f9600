"""PixelCNN: an autoregressive model of images with masked convolutions.

    log p(x) = Σ_{i,j} Σ_c log p(x_{c,i,j} | x_{<(i,j)}, x_{<c,(i,j)})

Pixels are ordered in raster order (row by row, left to right) and, within
a pixel, by channel (c = 0 before 1 before 2, e.g. R, G, B). Each
conditional is a categorical over the K levels {0, …, K-1} (K = 2 for binary
images). One pass of the masked network gives all conditionals; sampling
takes C·H·W passes.

The conditional model p(x | c) adds a bias computed from the condition to
every masked layer, the conditioning of the conditional PixelCNN (van den
Oord et al. 2016b, eq. 4, there inside each gated unit):

    h_l = W_l ∗ h_{l−1} + b_l + V_l φ(c),   φ(c) the one-hot class (or the vector c)

V_l φ(c) is one vector per layer, the same at every pixel, so for K classes
it is a learned class embedding per layer. c is not an image entry, so the
masks, and the exact normalisation of each conditional, are unchanged.

Known limitation of this original architecture: stacked masked convolutions
leave a "blind spot" above-right of each pixel, so some of x_{<(i,j)} is not
seen beyond the first layer's kernel. It is still an exact, normalised
autoregressive model (the blind spot removes context, never adds future).

References: van den Oord, Kalchbrenner & Kavukcuoglu, 2016, "Pixel
Recurrent Neural Networks" (PixelCNN, masks A/B, residual blocks); van den
Oord, Kalchbrenner, Vinyals, Espeholt, Graves & Kavukcuoglu, 2016b,
"Conditional Image Generation with PixelCNN Decoders" (the conditional bias).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.models.autoregressive.sampling import LogitFilter, as_levels, sample_logits
from probgen.models.conditioning import condition_for
from probgen.nn.masked import MaskedConv2d
from probgen.tensors import log_softmax_last, sum_events

__all__ = ["PixelCNN", "ResidualMaskedBlock"]


class ResidualMaskedBlock(nn.Module):
    """x + Conv1x1_B(act(Conv3x3_B(act(x)) + b₁) + b₂: a type-B residual block, (B, h, H, W).

    ``bias`` (b₁, b₂), each (B, h, 1, 1), is the conditional bias V φ(c) of
    each convolution (none: zero).
    """

    def __init__(self, width: int, data_channels: int, activation: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.net = nn.Sequential(
            activation(),
            MaskedConv2d(width, width, 3, include_center=True, data_channels=data_channels),
            activation(),
            MaskedConv2d(width, width, 1, include_center=True, data_channels=data_channels),
        )

    def forward(self, x: Tensor, bias: tuple[Tensor, Tensor] | None = None) -> Tensor:
        if bias is None:
            return x + self.net(x)
        act_in, conv3, act_mid, conv1 = self.net
        return x + conv1(act_mid(conv3(act_in(x)) + bias[0])) + bias[1]


class PixelCNN(GenerativeModel):
    """Categorical PixelCNN p(x | c) over images x ∈ {0…K-1}^{C×H×W}, exact log-likelihood.

    Args:
        event_shape: (C, H, W).
        levels: K, the number of values of each pixel (2 for binary images).
        hidden: feature maps of the hidden layers.
        layers: number of residual type-B blocks.
        kernel_size: side of the first (type A) kernel.
        activation: non-linearity (module factory).
        condition: what c is for p(x | c) (None: p(x)); every masked layer then
            adds the bias V_l φ(c) to its output.

    Input x (B, C, H, W) of whole numbers 0…K-1 (float or integer tensors)
    and c (B,) labels or (B, *shape) vectors; ``log_prob`` returns (B,) nats;
    ``sample`` returns (n, C, H, W) floats.
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
        condition: ConditionSpec | None = None,
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
        self.condition_spec = condition
        masked = [m for m in self.net.modules() if isinstance(m, MaskedConv2d)]
        self._bias_channels = [m.out_channels for m in masked]
        # V = [V_1; …; V_L]: one bias per masked layer, all from one product V φ(c)
        self.condition_bias = (
            None
            if condition is None
            else nn.Linear(condition.width, sum(self._bias_channels), bias=False)
        )

    @classmethod
    def for_data(cls, spec: DataSpec, conditional: bool | None = None, **options: Any) -> PixelCNN:
        """A PixelCNN for images ``spec`` (event (C, H, W), K = ``spec.levels``).

        ``conditional``: None models p(x | c) exactly when ``spec.condition``
        is set, True demands a condition, False builds p(x) on any data.
        """
        if spec.levels is None:
            raise InvalidInput(
                "PixelCNN: expected discrete images (spec.levels = K), got continuous data"
            )
        condition = condition_for(spec, conditional, cls.__name__)
        return cls(event_shape=spec.event_shape, levels=spec.levels, condition=condition, **options)

    @property
    def handles_levels(self) -> bool:
        """Always: a categorical distribution over the K levels of every pixel."""
        return True

    def biases(self, condition: Tensor) -> list[Tensor]:
        """V_l φ(c) of every masked layer l in order, each (B, channels_l, 1, 1), for checked c."""
        assert self.condition_spec is not None and self.condition_bias is not None
        features = self.condition_spec.features(condition, self.net[0].weight.dtype)
        bias = self.condition_bias(features)[:, :, None, None]  # (B, Σ channels_l, 1, 1)
        return list(bias.split(self._bias_channels, dim=1))

    def logits(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """Logits (B, C, H, W, K) of every p(x_{c,i,j} | earlier, c) for levels x (B, C, H, W)
        and checked conditions c (None for an unconditional model)."""
        dtype = self.net[0].weight.dtype
        features = x.to(dtype) * (2 / (self.levels - 1)) - 1  # levels centred to [-1, 1]
        if condition is None:
            out = self.net(features)  # (B, C·K, H, W), grouped by data channel
        else:
            bias = iter(self.biases(condition))
            first, *blocks, act_a, head, act_b, last = self.net
            h = first(features) + next(bias)
            for block in blocks:
                h = block(h, (next(bias), next(bias)))
            out = last(act_b(head(act_a(h)) + next(bias))) + next(bias)
        b, _, h, w = out.shape
        return out.reshape(b, self.event_shape[0], self.levels, h, w).permute(0, 1, 3, 4, 2)

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(x | c) = Σ over pixels and channels of log p(x_{c,i,j} | earlier, c): (B,)."""
        x = as_levels(x, self.event_shape, self.levels)
        c = self._condition(condition, len(x))
        logp = log_softmax_last(self.logits(x, c))
        return sum_events(logp.gather(-1, x.unsqueeze(-1)).squeeze(-1))

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
        """Draw pixels in raster order, channels within a pixel: (n, C, H, W) levels as floats.

        ``condition``: one c for all n, or n of them.
        """
        c = self._condition(condition, n, expand=True)
        filt = LogitFilter(temperature, top_k, top_p)
        x = torch.zeros(n, *self.event_shape, dtype=self.net[0].weight.dtype, device=self.device)
        channels, height, width = self.event_shape
        for i in range(height):
            for j in range(width):
                for k in range(channels):
                    logits = self.logits(x, c)[:, k, i, j]  # (n, K)
                    x[:, k, i, j] = sample_logits(logits, filt, generator).to(x.dtype)
        return x
