"""Refit after early stopping: choose the steps on validation, then train on all the data.

On a small data set the validation split that early stopping needs is a
large share of the data: 20 % of Old Faithful's 218 training points. Once
early stopping has chosen the number of rounds S* at which the held-out
likelihood peaked, a fresh model (same seed, same settings) is trained for
S* rounds on the training and validation splits together, and that model is
the run's result (the usual "select on a held-out split, then refit on
everything" of cross-validation; Hastie, Tibshirani & Friedman 2009, §7.10).

    run_dir/selection/   the early-stopped run (config.yaml, checkpoint/, history.json)
    run_dir/selection/result.json   S*, written when the selection has finished
    run_dir/             the refitted run: train.splits = [train, validation],
                         train.steps = S*, early stopping off; config.yaml reruns it

``train.refit: auto`` (the default) refits whenever early stopping is on, the
training split is finite and small (at most ``SMALL_DATA`` examples, where
early stopping's ``auto`` is on too), the model is unconditional and the run
has no ``time_budget`` (a budget is for the whole run; a second phase would
overrun it). Conditional models are not refitted under ``auto``: on sbibm's
two_moons pairs (10³ and 10⁴, three seeds each) the early-stopped best
weights of NSF and MAF had a lower C2ST than the refit's last iterate in 10
of 12 runs (the other two within one standard error), at half the training
time; on gaussian_linear (one seed) the refit was slightly better in 3 of 4,
each within one standard error (benchmarks/README.md, session 12). On more data
the held-out share adds little while the refit costs about as much as the
selection (S* of its S* + patience · interval rounds), so ``auto`` stops there;
``refit: true`` still refits. A resumed run skips a finished selection and
resumes whichever phase was running. With ``lr_schedule: plateau`` the refit
runs its S* rounds at the selection's rates: the cuts before S* as a
``multistep`` schedule (``lr_milestones``, in the refit's config.yaml).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probgen.core import GenerativeModel, InvalidInput
from probgen.data.base import Dataset
from probgen.data.merged import MergedTraining
from probgen.train.config import SMALL_DATA, RunConfig, TrainConfig, atomic_write_text
from probgen.train.early_stopping import early_stopping_for

if TYPE_CHECKING:
    from probgen.train.engine import TrainResult

__all__ = ["refits", "select_then_refit"]

SELECTION = "selection"


def refits(config: TrainConfig, dataset: Dataset, model: GenerativeModel) -> bool:
    """Whether ``config`` asks for a refit on ``dataset`` (see the module docstring).

    Raises ``InvalidInput`` for ``refit: true`` where early stopping is off (no
    step count to refit for) or the data are infinite.
    """
    if config.refit is False or tuple(config.splits) != ("train",):
        return False
    stops = early_stopping_for(config, dataset, model) is not None
    n = dataset.train_size
    if config.refit is True and not (stops and n is not None):
        why = "early stopping is off" if not stops else "the training split is infinite"
        raise InvalidInput(f"train.refit: true needs early stopping on finite data; {why}")
    if config.refit is True:
        return True
    return (
        stops
        and n is not None
        and n <= SMALL_DATA
        and config.time_budget is None
        and model.condition_spec is None
    )


def select_then_refit(
    fit: Callable[..., TrainResult],
    config: RunConfig,
    run_dir: Path,
    model: GenerativeModel,
    dataset: Dataset,
    *,
    model_given: bool,
    resume: bool,
    progress: bool,
    callbacks: Sequence[Any],
) -> TrainResult:
    """Early-stopped selection into ``run_dir/selection``, then the refit into ``run_dir``.

    ``fit`` is ``probgen.train.fit`` (passed in, so this module sits beside the
    engine without importing it). The refit starts from a copy of ``model``'s
    initial weights when the caller gave the model, else from a model built
    afresh for the merged data (so a data map is fitted on all of it).
    """
    initial = copy.deepcopy(model)
    selection_dir, marker = run_dir / SELECTION, run_dir / SELECTION / "result.json"
    if resume and marker.is_file():
        record = json.loads(marker.read_text())
        best_step, milestones = int(record["best_step"]), record.get("lr_milestones", [])
    else:
        selection = fit(
            _with(config, refit=False),
            selection_dir,
            resume=resume and (selection_dir / "checkpoint" / "state.json").is_file(),
            progress=progress,
            callbacks=callbacks,
            model=model,
            dataset=dataset,
        )
        # S* = 0 when the model as built (e.g. a flow's EM-started mixture base) was best
        best_step = selection.steps if selection.best_step is None else selection.best_step
        milestones = [m for m in selection.lr_milestones if m < best_step]
        record = {"best_step": best_step, "steps": selection.steps, "stop": selection.stop_reason}
        atomic_write_text(marker, json.dumps({**record, "lr_milestones": milestones}))
    final = _with(
        config, steps=best_step, early_stopping=False, refit=False, splits=("train", "validation")
    )
    if config.train.lr_schedule == "plateau":  # the rates the selection ran its S* rounds at
        final = _with(final, lr_schedule="multistep", lr_milestones=tuple(milestones))
    merged = MergedTraining(dataset, final.train.splits)
    result = fit(
        final,
        run_dir,
        resume=resume and (run_dir / "checkpoint" / "state.json").is_file(),
        progress=progress,
        callbacks=callbacks,
        model=initial if model_given else None,
        dataset=merged,
    )
    # the result's data set is the caller's: evaluations read its own splits
    return dataclasses.replace(result, dataset=dataset, best_step=best_step, stop_reason="refit")


def _with(config: RunConfig, **train: Any) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **train))
