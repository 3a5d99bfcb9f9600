"""Building blocks shared by the model families."""

from probgen.nn.mlp import MLP

__all__ = ["MLP"]
