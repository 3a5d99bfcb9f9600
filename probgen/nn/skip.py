"""A network beside a learned affine map: y = A x + b + f(x), a linear skip connection."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LinearSkip"]


class LinearSkip(nn.Module):
    """y = A flatten(x) + b + f(x): the network f beside a learned affine map (A, b).

    With f's output layer at zero the module is exactly the affine map, so a
    model can start at a chosen linear function (the identity, say) and learn
    the non-linear part f from there, as a residual network starts at the
    identity (He, Zhang, Ren & Sun 2016, "Deep residual learning for image
    recognition", with a learned rather than a fixed shortcut).

    Args:
        net: f, mapping x (B, …) to (B, out_features).
        in_features: the width of flatten(x).
        out_features: the width of the output.

    Input (B, …) with ``in_features`` entries per example, output (B, out_features).
    """

    def __init__(self, net: nn.Module, in_features: int, out_features: int) -> None:
        super().__init__()
        self.net = net
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:  # (B, …) -> (B, out)
        return self.linear(x.flatten(1)) + self.net(x)
