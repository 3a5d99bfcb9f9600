"""Masked layers that make a network autoregressive: MaskedLinear, MADE, MaskedConv2d.

A network f: R^D -> R^{D×k} is autoregressive in an ordering π when output
group i depends only on the inputs j with π(j) < π(i). MADE enforces this by
giving every unit a degree and masking each weight matrix:

    input j        m(j) = π(j) + 1                      ∈ {1, …, D}
    hidden unit u  m(u) ∈ {lo, …, D-1}, lo = 0 with a context or D = 1, else 1
    hidden  W[u, v] kept iff m(u) ≥ m(v)
    output  W[i, v] kept iff m(i) > m(v),  m(i) = m(input i)

so a path from input j to output i exists only if m(j) < m(i). Context inputs
(for conditional use) get degree 0, and hidden units of degree 0 carry them
to every output, the first one included.

For images (PixelCNN) the ordering is raster order over pixels and, within a
pixel, channel order; MaskedConv2d masks its kernel accordingly.

References: Germain, Gregor, Murray & Larochelle, 2015, "MADE: Masked
Autoencoder for Distribution Estimation"; van den Oord, Kalchbrenner &
Kavukcuoglu, 2016, "Pixel Recurrent Neural Networks".
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probgen.core import InvalidInput

__all__ = [
    "MADE",
    "MaskedConv2d",
    "MaskedLinear",
    "channel_groups",
    "hidden_degrees",
    "made_masks",
]


class MaskedLinear(nn.Linear):
    """Linear layer whose weight is multiplied by a fixed 0/1 mask.

    y = (W ⊙ M) x + b, with M of shape (out_features, in_features).
    Input (B, in_features), output (B, out_features).
    """

    mask: Tensor

    def __init__(self, mask: Tensor, bias: bool = True) -> None:
        out_features, in_features = mask.shape
        super().__init__(in_features, out_features, bias=bias)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:  # (B, in) -> (B, out)
        return F.linear(x, self.weight * self.mask, self.bias)


def hidden_degrees(width: int, features: int, lo: int = 1) -> Tensor:
    """Degrees of one hidden layer of ``width`` units, cycling through {lo, …, D-1}.

    lo = 1 for an unconditional MADE; lo = 0 lets units see only the context
    (degree-0 inputs), which the first output needs in a conditional MADE.
    Cycling (rather than sampling) makes every degree appear as soon as
    width ≥ D - lo, so no conditional loses capacity by chance.
    """
    lo = min(lo, features - 1)
    return torch.arange(width) % (features - lo) + lo


def made_masks(
    in_degrees: Tensor,
    hidden: Sequence[Tensor],
    out_degrees: Tensor,
) -> list[Tensor]:
    """The MADE masks (out, in) for degrees input -> hidden… -> output.

    Hidden masks keep m(out) ≥ m(in); the final mask keeps m(out) > m(in).
    """
    degrees = [in_degrees, *hidden]
    masks = [(b[:, None] >= a[None, :]) for a, b in itertools.pairwise(degrees)]
    masks.append(out_degrees[:, None] > degrees[-1][None, :])
    return [m.float() for m in masks]


class MADE(nn.Module):
    """Masked autoencoder: outputs (B, D, k) with group i a function of x_{<π(i)}.

    out[:, i, :] = f_i(x_j for π(j) < π(i), context), i = 0, …, D-1; each of the
    D groups holds ``params_per_dim`` = k parameters of p(x_i | x_{<i}) (e.g.
    a shift and a log-scale for MAF, spline knots, mixture logits).

    Args:
        features: D, the number of autoregressive inputs.
        hidden: widths of the hidden layers, e.g. ``(64, 64)``; ``()`` gives a
            single masked linear map.
        params_per_dim: k, outputs per input dimension.
        context: width of an optional conditioning input (degree 0: it reaches
            every output); 0 for none.
        order: π as a sequence of D distinct ranks 0…D-1 (``order[j]`` is the
            position of input j in the autoregressive order); default the
            identity ``0, 1, …, D-1``. Use ``range(D)[::-1]`` to reverse.
        activation: module factory for the hidden non-linearity.
        zero_last: initialise the output layer to zero (flows then start at
            the identity).

    Input ``x`` (B, D) and, when ``context > 0``, ``context`` (B, context).

    Reference: Germain, Gregor, Murray & Larochelle, 2015, "MADE: Masked
    Autoencoder for Distribution Estimation".
    """

    in_degrees: Tensor

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (64, 64),
        params_per_dim: int = 1,
        *,
        context: int = 0,
        order: Sequence[int] | Tensor | None = None,
        activation: Callable[[], nn.Module] = nn.ReLU,
        zero_last: bool = False,
    ) -> None:
        super().__init__()
        if features < 1 or params_per_dim < 1 or context < 0:
            raise InvalidInput(
                f"MADE: expected features ≥ 1, params_per_dim ≥ 1, context ≥ 0, got "
                f"features={features}, params_per_dim={params_per_dim}, context={context}"
            )
        rank = torch.arange(features) if order is None else torch.as_tensor(order).long()
        if sorted(rank.tolist()) != list(range(features)):
            raise InvalidInput(
                f"MADE: order must be a permutation of 0…{features - 1}, got {rank.tolist()}"
            )
        self.features = features
        self.params_per_dim = params_per_dim
        self.context = context
        self.register_buffer("in_degrees", rank + 1)

        in_degrees = torch.cat([torch.zeros(context, dtype=torch.long), rank + 1])
        lo = 0 if context else 1
        hidden_deg = [hidden_degrees(w, features, lo) for w in hidden]
        out_degrees = (rank + 1).repeat_interleave(params_per_dim)
        masks = made_masks(in_degrees, hidden_deg, out_degrees)
        layers: list[nn.Module] = []
        for mask in masks[:-1]:
            layers += [MaskedLinear(mask), activation()]
        last = MaskedLinear(masks[-1])
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def connectivity(self) -> Tensor:
        """Boolean (D, D) matrix: entry [i, j] is True iff some path joins input j to output i.

        Equals π(j) < π(i) when every degree is present in the hidden layers;
        never more (the autoregressive guarantee).
        """
        masks = [layer.mask.bool().long() for layer in self.net if isinstance(layer, MaskedLinear)]
        path = masks[0]
        for m in masks[1:]:
            path = (m @ path).clamp(max=1)
        path = path[:, self.context :].reshape(self.features, self.params_per_dim, -1)
        return path.amax(dim=1).bool()

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """Parameters (B, D, k) of each conditional from x (B, D) and context (B, c)."""
        if x.dim() != 2 or x.shape[1] != self.features:
            raise InvalidInput(
                f"MADE: expected x of shape (B, {self.features}), got {tuple(x.shape)}"
            )
        if self.context:
            if context is None or context.shape != (x.shape[0], self.context):
                got = None if context is None else tuple(context.shape)
                raise InvalidInput(
                    f"MADE: expected context of shape ({x.shape[0]}, {self.context}), got {got}"
                )
            x = torch.cat([context, x], dim=1)
        elif context is not None:
            raise InvalidInput("MADE: got a context but was built with context=0")
        return self.net(x).reshape(x.shape[0], self.features, self.params_per_dim)


def channel_groups(width: int, data_channels: int) -> Tensor:
    """Data channel (0…C-1) that each of ``width`` feature maps belongs to, in contiguous blocks."""
    return torch.arange(width) * data_channels // width


class MaskedConv2d(nn.Conv2d):
    """Convolution that sees only pixels before the current one in raster order.

    Kernel taps above the centre row and left of the centre are kept; at the
    centre, feature maps are split into C contiguous groups, one per data
    channel, and output group g sees input groups g' < g (type A, the first
    layer: x_{c,i,j} must not see itself) or g' ≤ g (type B, later layers).
    Input (B, in_channels, H, W), output (B, out_channels, H, W) ("same" padding).

    Args:
        in_channels: feature maps in.
        out_channels: feature maps out.
        kernel_size: odd kernel side.
        include_center: False for type A, True for type B.
        data_channels: C, the channels of the modelled image (ordering within a pixel).

    Reference: van den Oord, Kalchbrenner & Kavukcuoglu, 2016, "Pixel
    Recurrent Neural Networks" (masks A and B).
    """

    mask: Tensor

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        include_center: bool,
        data_channels: int = 1,
    ) -> None:
        if kernel_size % 2 != 1:
            raise InvalidInput(f"MaskedConv2d: kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        c = kernel_size // 2
        mask = torch.zeros(out_channels, in_channels, kernel_size, kernel_size)
        mask[:, :, :c, :] = 1
        mask[:, :, c, :c] = 1
        g_out = channel_groups(out_channels, data_channels)[:, None]
        g_in = channel_groups(in_channels, data_channels)[None, :]
        mask[:, :, c, c] = (g_in <= g_out) if include_center else (g_in < g_out)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, out, H, W)
        return self._conv_forward(x, self.weight * self.mask, self.bias)
