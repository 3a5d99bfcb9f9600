"""Adversarial models: GAN, f-GAN and Wasserstein GANs as one two-player game.

``AdversarialGame`` plays every game; ``FGAN`` (any f-divergence), ``GAN``
(the original minimax game, non-saturating by default), ``WGAN`` (weight
clipping) and ``WGANGP`` (gradient penalty) configure it. See docs/gan.md.
"""

from probgen.models.gan.constraints import (
    GradientPenalty,
    LipschitzConstraint,
    NoConstraint,
    WeightClipping,
)
from probgen.models.gan.game import AdversarialGame, CriticDiverged
from probgen.models.gan.networks import (
    Critic,
    Generator,
    InputScale,
    build_networks,
    packed_shape,
)
from probgen.models.gan.objectives import CriticObjective, KantorovichRubinstein, minimax_value
from probgen.models.gan.variants import FGAN, GAN, WGAN, WGANGP, resolve_divergence

__all__ = [
    "FGAN",
    "GAN",
    "WGAN",
    "WGANGP",
    "AdversarialGame",
    "Critic",
    "CriticDiverged",
    "CriticObjective",
    "Generator",
    "GradientPenalty",
    "InputScale",
    "KantorovichRubinstein",
    "LipschitzConstraint",
    "NoConstraint",
    "WeightClipping",
    "build_networks",
    "minimax_value",
    "packed_shape",
    "resolve_divergence",
]
