"""The training loop: Lightning Fabric underneath, the GenerativeModel protocol on top.

The engine knows nothing about model families. It asks the model for its
``players()`` (one optimizer each), calls ``loss(x, player)`` on batches the
data set draws with a dedicated generator, and steps each player
``steps_per_round[player]`` times per round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probgen.core import GenerativeModel, ProbgenError
from probgen.data.base import Dataset
from probgen.train.config import RunConfig

__all__ = ["Callback", "TrainResult", "TrainState", "TrainingDiverged", "build", "fit", "load_run"]


class TrainingDiverged(ProbgenError, RuntimeError):
    """A player's loss became NaN or infinite; the message names player, step and loss."""


@dataclass
class TrainState:
    """What a callback sees: the step just finished, the model to evaluate (EMA if on), data."""

    step: int
    model: GenerativeModel
    dataset: Dataset
    global_rank: int
    history: list[dict[str, Any]]


Callback = Callable[[TrainState], "dict[str, float] | None"]
"""Called every ``eval_every`` rounds (and at the end); returned metrics go into history."""


@dataclass
class TrainResult:
    """The outcome of ``fit``."""

    model: GenerativeModel
    dataset: Dataset
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    wall_time: float = 0.0
    stop_reason: str = "steps"
    global_rank: int = 0


def build(config: RunConfig) -> tuple[GenerativeModel, Dataset]:
    """Build the data set, then the model for its spec, seeding torch with ``config.seed`` first.

    ``DATASETS.get(data.name)(**data.options)``, then
    ``MODELS.get(model.name).for_data(dataset.spec, **model.options)``.
    """
    raise NotImplementedError


def fit(
    config: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``config`` into ``run_dir`` (config.yaml, checkpoint/, history.json).

    With ``resume=True`` continue from ``run_dir/checkpoint``; on CPU with the
    same seed the losses equal those of an uninterrupted run. Raises
    ``TrainingDiverged`` on a non-finite loss (the last good checkpoint stays).
    """
    raise NotImplementedError


def load_run(run_dir: Path) -> tuple[GenerativeModel, RunConfig, Dataset]:
    """The trained model (EMA weights when the run used EMA), its config and data set.

    Raises ``CheckpointError`` when the checkpoint is missing or unreadable.
    """
    raise NotImplementedError
