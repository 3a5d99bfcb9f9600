"""Glow: multi-scale flow for images built from ActNorm, 1×1 convolutions and affine coupling.

One step of flow is ActNorm -> invertible 1×1 convolution (``LULinear`` on
channels) -> affine coupling with a convolutional conditioner. A level is

    squeeze (B, C, H, W) -> (B, 4C, H/2, W/2);  K steps;
    factor out 4C/2 channels, pass the rest to the next level;  unsqueeze,

so every level keeps its input's shape and the whole transform maps
(B, C, H, W) to latents of the same shape, modelled by N(0, I). (Glow's
learned prior for the factored-out channels is not used: the base is N(0, I).)

The conditional Glow p(x | c) has Glow's class-conditional prior, a learned
N(μ(c), diag σ(c)²) base whose mean and log-scale are a linear map of the
one-hot class (``ConditionalNormal``), and in addition feeds φ(c) to every
coupling conditioner as extra input channels, constant over the image.

Reference: Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible
1×1 Convolutions"; Dinh, Sohl-Dickstein & Bengio (2017), "Density
estimation using Real NVP" (squeeze and multi-scale architecture).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import InvalidInput
from probgen.distributions import StandardNormal
from probgen.models.flows.base import Compose, Inverse, Transform
from probgen.models.flows.coupling import Coupling, half_mask
from probgen.models.flows.elementwise import Affine
from probgen.models.flows.flow import Flow
from probgen.models.flows.linear import ActNorm, LULinear
from probgen.models.flows.prior import ConditionalNormal
from probgen.models.flows.reshape import FactorOut, Squeeze

__all__ = ["CouplingConvNet", "Glow", "glow_level"]


class CouplingConvNet(nn.Sequential):
    """Glow's coupling conditioner: conv 3×3 -> ReLU -> conv 1×1 -> ReLU -> conv 3×3.

    (B, in_channels, H, W) -> (B, out_channels, H, W); the last convolution
    starts at zero so each coupling starts at the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 64) -> None:
        last = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            last,
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, in, H, W) -> (B, out, H, W)
        return super().forward(x)


def glow_level(
    channels: int,
    levels: int,
    steps: int,
    network: Callable[[int, int], nn.Module],
    scale_bound: float = 3.0,
    context: int = 0,
) -> Transform:
    """The Glow transform of ``levels`` levels on (B, channels, H, W), shape-preserving.

    Level 1 squeezes to 4C channels, applies ``steps`` steps of flow, factors
    out half the channels and hands the other half to level 2 (recursively),
    then unsqueezes. With ``context`` = w > 0 every coupling conditioner also
    reads a context (B, w), broadcast over the positions.
    """
    c = 4 * channels
    body: list[Transform] = [Squeeze(2)]
    for _ in range(steps):
        coupling = Coupling(half_mask(c), Affine(scale_bound), network, context)
        body += [ActNorm(c), LULinear(c), coupling]
    if levels > 1:
        keep = c // 2
        inner = glow_level(c - keep, levels - 1, steps, network, scale_bound, context)
        body.append(FactorOut(inner, keep))
    body.append(Inverse(Squeeze(2)))
    return Compose(body)


class Glow(Flow):
    """Glow on images (B, C, H, W) with N(0, I) latents of the same shape, or p(x | c).

    Args:
        event_shape: (C, H, W), with H and W divisible by 2^levels.
        levels: number of scales L.
        steps: steps of flow K per level.
        hidden: channels of the coupling conditioners.
        scale_bound: bound c on the coupling log-scales, |s| < c.
        condition: what c is for p(x | c) (None: p(x)); the base is then the
            class-conditional prior N(μ(c), diag σ(c)²) (``ConditionalNormal``)
            and the coupling conditioners read φ(c) as extra channels.

    Reference: Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible
    1×1 Convolutions".
    """

    def __init__(
        self,
        event_shape: tuple[int, ...],
        levels: int = 2,
        steps: int = 4,
        hidden: int = 64,
        scale_bound: float = 3.0,
        condition: ConditionSpec | None = None,
    ) -> None:
        shape = tuple(int(s) for s in event_shape)
        if len(shape) != 3 or shape[1] % 2**levels or shape[2] % 2**levels:
            raise InvalidInput(
                f"Glow: expected event_shape (C, H, W) with H, W divisible by 2^levels = "
                f"{2**levels}, got {shape}"
            )
        network = functools.partial(CouplingConvNet, hidden=hidden)
        width = 0 if condition is None else condition.width
        transform = glow_level(shape[0], levels, steps, network, scale_bound, width)
        base = StandardNormal(shape) if condition is None else ConditionalNormal(shape, condition)
        super().__init__(transform, base, shape, condition)
