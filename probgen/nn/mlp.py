"""Multi-layer perceptron, the default network of every vector-data family."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Sequential):
    """Fully connected network ``in_features -> hidden… -> out_features``.

    Each hidden layer is ``Linear`` followed by ``activation``; the output layer
    is linear. Input ``(B, in_features)``, output ``(B, out_features)``.

    Args:
        in_features: input width.
        out_features: output width.
        hidden: widths of the hidden layers, e.g. ``(64, 64)``.
        activation: module factory for the non-linearity (default ``nn.SiLU``).
        zero_last: initialise the output layer to zero, so that residual or
            coupling networks start at the identity.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (64, 64),
        activation: Callable[[], nn.Module] = nn.SiLU,
        zero_last: bool = False,
    ) -> None:
        widths = [in_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(widths):
            layers += [nn.Linear(a, b), activation()]
        last = nn.Linear(widths[-1], out_features)
        if zero_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features

    def forward(self, x: Tensor) -> Tensor:  # (B, in) -> (B, out)
        return super().forward(x)
