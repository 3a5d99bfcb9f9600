"""Building blocks shared by the model families."""

from probgen.nn.conv import ConvDecoder, ConvEncoder
from probgen.nn.masked import MADE, MaskedConv2d, MaskedLinear
from probgen.nn.mlp import MLP
from probgen.nn.skip import LinearSkip

__all__ = [
    "MADE",
    "MLP",
    "ConvDecoder",
    "ConvEncoder",
    "LinearSkip",
    "MaskedConv2d",
    "MaskedLinear",
]
