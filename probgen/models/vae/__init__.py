"""Variational autoencoders: Gaussian encoders, decoders (observation models), the VAE."""

from probgen.models.vae.build import DECODERS, build_networks
from probgen.models.vae.conditional import ConditionalGaussianPrior
from probgen.models.vae.decoders import (
    BernoulliDecoder,
    CategoricalDecoder,
    Decoder,
    DiscretizedLogisticDecoder,
    GaussianDecoder,
)
from probgen.models.vae.encoders import GaussianEncoder, GaussianPosterior
from probgen.models.vae.model import VAE
from probgen.models.vae.objectives import ELBO, IWAE
from probgen.models.vae.priors import PRIORS, MixturePrior, VampPrior, build_prior
from probgen.models.vae.start import IdentityStart

__all__ = [
    "DECODERS",
    "ELBO",
    "IWAE",
    "PRIORS",
    "VAE",
    "BernoulliDecoder",
    "CategoricalDecoder",
    "ConditionalGaussianPrior",
    "Decoder",
    "DiscretizedLogisticDecoder",
    "GaussianDecoder",
    "GaussianEncoder",
    "GaussianPosterior",
    "IdentityStart",
    "MixturePrior",
    "VampPrior",
    "build_networks",
    "build_prior",
]
