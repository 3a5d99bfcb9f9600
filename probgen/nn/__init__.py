"""Building blocks shared by the model families."""

from probgen.nn.masked import MADE, MaskedConv2d, MaskedLinear
from probgen.nn.mlp import MLP

__all__ = ["MADE", "MLP", "MaskedConv2d", "MaskedLinear"]
