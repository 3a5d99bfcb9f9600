"""Autoregressive models: exact log p(x) = Σ_i log p(x_i | x_{<i}) by the chain rule."""

from probgen.models.autoregressive.conditionals import (
    Bernoulli,
    Categorical,
    Conditional,
    Mixture,
    MixtureOfGaussians,
    MixtureOfLogistics,
)
from probgen.models.autoregressive.made import MADEModel
from probgen.models.autoregressive.pixelcnn import PixelCNN, ResidualMaskedBlock
from probgen.models.autoregressive.sampling import LogitFilter, as_levels, sample_logits
from probgen.models.autoregressive.transformer import Transformer, TransformerConfig

__all__ = [
    "Bernoulli",
    "Categorical",
    "Conditional",
    "LogitFilter",
    "MADEModel",
    "Mixture",
    "MixtureOfGaussians",
    "MixtureOfLogistics",
    "PixelCNN",
    "ResidualMaskedBlock",
    "Transformer",
    "TransformerConfig",
    "as_levels",
    "sample_logits",
]
