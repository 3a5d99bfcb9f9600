"""Early stopping on the validation split: keep the weights with the best validation NLL.

A flexible density model fitted to a few hundred points keeps lowering its
training loss long after its held-out likelihood has started to rise. With
early stopping on, the engine evaluates −mean log p_θ(x) on the validation
split every ``interval`` rounds, remembers the weights of the best
evaluation, stops after ``patience`` evaluations without improvement, and
returns (and checkpoints) the best weights.

``train.early_stopping: auto`` (the default) turns it on exactly when it is
needed and affordable: a finite training split of at most ``SMALL_DATA``
examples, a non-empty validation split, and a model with a likelihood.

Reference: Prechelt (1998), "Early stopping — but when?", in Neural
Networks: Tricks of the Trade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import Tensor, nn

from probgen.core import GenerativeModel, InvalidInput, Likelihood
from probgen.data.base import Dataset
from probgen.train.config import SMALL_DATA, TrainConfig

__all__ = ["EVAL_EXAMPLES", "EarlyStopping", "early_stopping_for", "validation_examples"]

EVAL_EXAMPLES = 2048
"""The fewest validation examples ``eval_examples: auto`` averages (when the split has them)."""


@dataclass
class EarlyStopping:
    """The best validation NLL so far, its step and weights, and the evaluations since.

    Attributes:
        interval: rounds between validations.
        patience: validations without improvement before stopping.
        best: the best (lowest) validation NLL seen, ``inf`` before the first.
        best_step: the round of ``best`` (0 before the first).
        since_best: validations since ``best``.
        weights: a CPU copy of the state_dict at ``best``.
    """

    interval: int
    patience: int
    best: float = math.inf
    best_step: int = 0
    since_best: int = 0
    weights: dict[str, Tensor] = field(default_factory=dict)

    def update(self, step: int, value: float, model: nn.Module) -> bool:
        """Record the validation NLL ``value`` of ``model`` at ``step``; True: time to stop."""
        if value < self.best:
            self.best, self.best_step, self.since_best = value, step, 0
            self.weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.since_best += 1
        return self.since_best >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best weights into ``model`` (nothing when no validation ran yet)."""
        if self.weights:
            model.load_state_dict(self.weights)

    def tensors(self) -> dict[str, Tensor]:
        """The best weights under ``best/<key>``, for a checkpoint."""
        return {f"best/{k}": v for k, v in self.weights.items()}

    def state(self) -> dict[str, float | int]:
        """The counters, JSON-serialisable, for a checkpoint."""
        return {"best": self.best, "best_step": self.best_step, "since_best": self.since_best}

    def load(self, state: dict[str, float | int], tensors: dict[str, Tensor]) -> None:
        """Restore what ``state`` and ``tensors`` saved."""
        self.best, self.best_step = float(state["best"]), int(state["best_step"])
        self.since_best = int(state["since_best"])
        self.weights = {k[len("best/") :]: v for k, v in tensors.items() if k.startswith("best/")}


def early_stopping_for(
    config: TrainConfig, dataset: Dataset, model: GenerativeModel
) -> EarlyStopping | None:
    """The early stopping ``config`` asks for on ``dataset``, or None when it is off.

    ``auto`` is on for a finite training split of at most ``SMALL_DATA``
    examples with a validation split, and a model with a likelihood. The
    interval is ``eval_every`` when set, else one epoch, ⌈N / batch_size⌉,
    at least 10 rounds.
    """
    setting = config.early_stopping
    if setting is False or model.likelihood is Likelihood.NONE:
        return None
    n = dataset.train_size
    if setting == "auto" and (n is None or n > SMALL_DATA or not _has_validation(dataset)):
        return None
    epoch = math.ceil((n or config.batch_size) / config.batch_size)
    interval = config.eval_every or max(10, epoch)
    return EarlyStopping(interval=interval, patience=config.patience)


def _has_validation(dataset: Dataset) -> bool:
    try:
        return len(dataset.split("validation")) > 0
    except InvalidInput:  # a data set without a fixed validation split
        return False


def validation_examples(config: TrainConfig, dataset: Dataset, interval: int) -> int:
    """How many validation examples ``val_nll`` averages, validating every ``interval`` rounds.

    An integer ``eval_examples`` is taken as given. ``auto`` takes

        E = min(N_val, max(EVAL_EXAMPLES, interval · batch_size)),

    the whole validation split unless it is larger than what the rounds
    between two validations train on. A forward pass over E examples costs
    about a third of a training step (forward and backward) over as many, so
    validation stays under about a third of the training time, and a run that
    validates once per epoch (interval · batch_size ≥ N_train ≥ N_val for a
    validation split no larger than the training one) uses the whole split:
    its NLL then has the smallest standard error the split allows,
    ∝ 1/√N_val, and the best weights are chosen on every held-out example,
    not on its first rows (as sbi's NPE does). Frequent validation of a large
    split (a few rounds apart) keeps the first ``EVAL_EXAMPLES`` rows.
    """
    if config.eval_examples != "auto":
        return int(config.eval_examples)
    try:
        n = len(dataset.split("validation"))
    except InvalidInput:  # no fixed validation split: nothing to average
        return EVAL_EXAMPLES
    return min(n, max(EVAL_EXAMPLES, interval * config.batch_size))
