"""Adversarial models: GAN, f-GAN and Wasserstein GANs as one two-player game.

``AdversarialGame`` plays every game; ``FGAN`` (any f-divergence), ``GAN``
(the original minimax game, non-saturating by default), ``WGAN`` (weight
clipping) and ``WGANGP`` (gradient penalty) configure it.
``probgen.models.gan.ratio`` reads a critic (or a calibrated classifier) as the
log density ratio ln p_data/p_g, and ``probgen.models.gan.refine`` corrects a
generator's samples with it (discriminator rejection sampling, MH-GAN). See
docs/gan.md.
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
    FourierFeatures,
    Generator,
    InputScale,
    ProjectionCritic,
    build_networks,
    packed_shape,
)
from probgen.models.gan.objectives import CriticObjective, KantorovichRubinstein, minimax_value
from probgen.models.gan.ratio import (
    LOG_RATIO_OF_CRITIC,
    Calibration,
    ClassifierLogRatio,
    CriticLogRatio,
    ExactLogRatio,
    calibrate,
    critic_log_ratio,
)
from probgen.models.gan.refine import (
    IndependenceMetropolisHastings,
    PerturbedProposal,
    Refined,
    Refiner,
    RejectionSampler,
    TooFewAccepted,
)
from probgen.models.gan.variants import FGAN, GAN, WGAN, WGANGP, resolve_divergence

__all__ = [
    "FGAN",
    "GAN",
    "LOG_RATIO_OF_CRITIC",
    "WGAN",
    "WGANGP",
    "AdversarialGame",
    "Calibration",
    "ClassifierLogRatio",
    "Critic",
    "CriticDiverged",
    "CriticLogRatio",
    "CriticObjective",
    "ExactLogRatio",
    "FourierFeatures",
    "Generator",
    "GradientPenalty",
    "IndependenceMetropolisHastings",
    "InputScale",
    "KantorovichRubinstein",
    "LipschitzConstraint",
    "NoConstraint",
    "PerturbedProposal",
    "ProjectionCritic",
    "Refined",
    "Refiner",
    "RejectionSampler",
    "TooFewAccepted",
    "WeightClipping",
    "build_networks",
    "calibrate",
    "critic_log_ratio",
    "minimax_value",
    "packed_shape",
    "resolve_divergence",
]
