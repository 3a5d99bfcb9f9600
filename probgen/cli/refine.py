"""`probgen sample --refine`: a trained GAN's samples corrected by a calibrated density ratio.

The generator's samples are proposals; a log-ratio d(x) ≈ ln p_data(x)/p_g(x)
is calibrated against the frozen generator on the run's training data, and
a sampler of ``probgen.models.gan.refine`` turns the proposals into samples
of p_g · e^d ≈ p_data (docs/gan.md, "Density-ratio correction").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn

from probgen.core import GenerativeModel, InvalidInput
from probgen.data.base import Dataset
from probgen.models import Standardized
from probgen.models.gan import (
    AdversarialGame,
    ClassifierLogRatio,
    CriticLogRatio,
    IndependenceMetropolisHastings,
    Refined,
    Refiner,
    RejectionSampler,
    calibrate,
    critic_log_ratio,
)
from probgen.nn.mlp import MLP

__all__ = ["REFINERS", "refine_samples"]

REFINERS: dict[str, Callable[[nn.Module], Refiner]] = {
    "mh": IndependenceMetropolisHastings,
    "rejection": RejectionSampler,
}
"""``--refine`` names -> sampler from a log-ratio (independence MH; exact rejection, DRS)."""


def _ratio_to_calibrate(game: AdversarialGame) -> ClassifierLogRatio | CriticLogRatio:
    """The game's own critic read as d(x) when it is one, else a fresh 2 × 128 classifier."""
    try:
        return critic_log_ratio(game)
    except InvalidInput:  # packed or Wasserstein critics, total variation
        network = MLP(math.prod(game.event_shape), 1, (128, 128), nn.SiLU, zero_last=True)
        parameter = next(game.parameters())
        return ClassifierLogRatio(network, game.event_shape).to(parameter)


def refine_samples(
    model: GenerativeModel, dataset: Dataset, refiner: str, n: int, steps: int, seed: int
) -> Refined:
    """n samples of ``model`` (a GAN) corrected by ``REFINERS[refiner]``, with its acceptance.

    The log-ratio is calibrated for ``steps`` Adam steps of 512 training
    examples against 512 generated ones (``probgen.models.gan.calibrate``);
    the run's own critic is continued when it reads as ln p_data/p_g, else a
    classifier is trained from scratch.
    """
    # The ratio p_data/p_g is the same in the data map's coordinates z = (x − μ)/s
    # (both laws carry the same Jacobian), so a standardised game is corrected in z.
    data_map = model if isinstance(model, Standardized) else None
    game = model.model if data_map is not None else model
    if not isinstance(game, AdversarialGame):
        raise InvalidInput(
            f"--refine corrects a GAN's generator by its density ratio; "
            f"{type(game).__name__} is not an adversarial game"
        )
    if refiner not in REFINERS:
        raise InvalidInput(f"unknown --refine {refiner!r}; choose one of: {', '.join(REFINERS)}")
    generator = torch.Generator(device=game.device).manual_seed(seed)
    data_generator = torch.Generator().manual_seed(seed)  # the data set draws on the CPU
    ratio = _ratio_to_calibrate(game)
    parameter = next(game.parameters())

    def data(batch: int) -> torch.Tensor:
        x = dataset.batch("train", batch, data_generator).to(parameter)
        return x if data_map is None else data_map.to_inner(x)

    calibrate(ratio, data, game.sample, steps=steps, generator=generator)
    with torch.no_grad():
        refined = REFINERS[refiner](ratio).draw(game.sample, n, generator=generator)
    if data_map is not None:
        refined = dataclasses.replace(refined, samples=data_map.from_inner(refined.samples))
    return refined
