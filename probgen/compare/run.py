"""Running a comparison: train or load every model, score each the same way, draw the pictures.

    for each entry of the config, in parallel worker processes (one per core):
        model ← train with probgen.train.fit for its steps (or budget), or load a run
        flags ← how far training fell short of plan (probgen.compare.shortfall)
        metrics, samples ← evaluator(model, data)   (the same for every model, seeded alike)
        pictures: the scored samples beside the data, the 2-D density heatmap, training curves

With ``workers: 1`` the entries run one after another in this process, with
a live progress bar of each one's training; with more, each worker process
runs whole entries with one intra-op thread (``probgen.compare.workers``), so
the evaluator must be picklable (a module-level function).

A model whose training or evaluation fails keeps its row, with the error in
place of the numbers and its traceback in results.json; the others go on. A
comparison runs for minutes over families written independently, so one
family's failure (a diverged loss, non-finite samples, or a bug) must not
discard the others' results.
"""

from __future__ import annotations

import math
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from probgen.compare.config import CompareConfig, ModelEntry, TrainedEntry, data_title
from probgen.compare.figures import (
    Box,
    density_grid,
    heatmap_label,
    plot_class_samples,
    plot_density,
    plot_samples_beside_data,
    plot_tile,
    plot_training,
)
from probgen.compare.shortfall import training_flags
from probgen.compare.workers import map_in_processes
from probgen.core import Estimate, GenerativeModel, Likelihood, ProbgenError
from probgen.data.base import Dataset
from probgen.distributions import GaussianMixture
from probgen.evaluate.plots import plot_samples
from probgen.registry import DATASETS
from probgen.train import TrainState
from probgen.train.threads import intra_op_threads

__all__ = [
    "Comparison",
    "ComparisonExists",
    "Evaluation",
    "Evaluator",
    "ModelResult",
    "run_comparison",
]


class ComparisonExists(ProbgenError, FileExistsError):
    """The output folder already holds runs of a comparison; pass ``overwrite=True``."""


@dataclass(frozen=True)
class Evaluation:
    """An evaluator's output: results by name, and the samples (n, *event_shape) it scored.

    Results are ``Estimate`` s, or plain numbers for counts and timings; the
    table reads ``sampling_seconds``, ``network_evaluations``, ``modes`` and
    ``high_quality`` when present. ``skipped``: result name -> why the evaluator left it out;
    ``notes``: result name -> how to read it (which features a FD used).
    """

    results: dict[str, Estimate | float]
    samples: torch.Tensor
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


class Evaluator(Protocol):
    """Scores one model on one data set; every model of a comparison gets the same one."""

    def __call__(
        self, model: GenerativeModel, dataset: Dataset, *, split: str, n_samples: int, seed: int
    ) -> Evaluation: ...


@dataclass
class ModelResult:
    """One row of the comparison.

    Attributes:
        label: the row's name (the model family unless the config names it).
        family: the registered model name.
        likelihood: what ``log_prob`` means (``Likelihood`` value).
        parameters: number of trainable scalars.
        source: ``"trained"`` here or ``"loaded"`` from a run folder.
        train_seconds, steps, stop_reason: the training record (seconds by the
            run's budget clock).
        train_cpu_seconds: CPU seconds of the training process while it trained.
        cpu_share: ``train_cpu_seconds`` / (wall seconds of training · threads):
            about 1 when the training held its cores, less when it waited for them.
        threads: intra-op threads of the training (None: unknown).
        flags: why training fell far short of plan, one sentence each (empty: it did not).
        metrics: the evaluator's results: ``Estimate`` s with their kind, or plain
            numbers (``sampling_seconds``, ``network_evaluations``, ``modes``).
        n_samples: samples the evaluator drew.
        evaluation_seconds: wall time of the evaluator and the pictures.
        evaluation_cpu_seconds: their CPU seconds.
        n_modes: K, the modes of the data's mixture (None for other data).
        figures: picture name (``samples``, ``density``, ``training``) -> PNG path.
        history: the engine's training records.
        skipped: result name -> why the evaluator left it out (the report's footnotes).
        notes: result name -> how to read it (the evaluator's ``Results.notes``: which
            features a FD used).
        error: why the row has no numbers, when training or evaluation failed.
        traceback: the failure's traceback, for results.json.
    """

    label: str
    family: str
    likelihood: str
    parameters: int = 0
    source: str = "trained"
    train_seconds: float = math.nan
    steps: int = 0
    stop_reason: str = ""
    train_cpu_seconds: float = math.nan
    cpu_share: float = math.nan
    threads: int | None = None
    flags: list[str] = field(default_factory=list)
    metrics: dict[str, Estimate | float] = field(default_factory=dict)
    n_samples: int = 0
    evaluation_seconds: float = math.nan
    evaluation_cpu_seconds: float = math.nan
    n_modes: int | None = None
    figures: dict[str, Path] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None


@dataclass
class Comparison:
    """The outcome of ``run_comparison``: one ``ModelResult`` per entry, in config order."""

    config: CompareConfig
    out_dir: Path
    results: list[ModelResult]
    data_figures: dict[str, Path]
    wall_time: float


def run_comparison(
    config: CompareConfig,
    out_dir: str | Path,
    *,
    evaluator: Evaluator,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> Comparison:
    """Train or load every model of ``config``, evaluate each with ``evaluator``, draw pictures.

    Runs go to ``out_dir/runs/<label>/`` (config.yaml, checkpoint/,
    history.json) and pictures to ``out_dir/figures/``. Raises
    ``ComparisonExists`` when a run folder is already there, unless
    ``overwrite`` (then it is replaced). The reports are written by
    ``probgen.compare.report.write_reports``.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    _prepare(config, out_dir, overwrite)
    dataset = DATASETS.get(config.data.name)(**config.data.options)
    data_figures = _data_figures(config, dataset, out_dir / "figures")
    with _ModelProgress(len(config.models), progress, console) as bar:
        if config.workers > 1 and len(config.models) > 1:
            bar.phase(f"{config.workers} worker processes", None)
            tasks = [_Task(entry, config, out_dir, evaluator) for entry in config.models]
            results = map_in_processes(
                _run_task,
                tasks,
                config.workers,
                on_error=_task_failed,
                on_done=lambda row: bar.done(),
            )
        else:
            results = [
                _one(entry, config, dataset, out_dir, evaluator, bar) for entry in config.models
            ]
    return Comparison(config, out_dir, results, data_figures, time.perf_counter() - start)


# ----------------------------------------------------------------------------- steps


def _prepare(config: CompareConfig, out_dir: Path, overwrite: bool) -> None:
    trained = [out_dir / "runs" / e.label for e in config.models if isinstance(e, TrainedEntry)]
    existing = [d for d in trained if d.exists()]
    if existing and not overwrite:
        raise ComparisonExists(
            f"{existing[0]} already exists; pass --overwrite to replace the comparison in "
            f"{out_dir}, or choose another --out"
        )
    for d in existing:
        shutil.rmtree(d)
    shutil.rmtree(out_dir / "figures", ignore_errors=True)


@dataclass(frozen=True)
class _Task:
    """One entry, as sent to a worker process, with this process's default dtype."""

    entry: ModelEntry
    config: CompareConfig
    out_dir: Path
    evaluator: Evaluator
    dtype: torch.dtype = field(default_factory=torch.get_default_dtype)


def _run_task(task: _Task) -> ModelResult:
    """A worker's job: build the data set, then train, evaluate and draw the entry."""
    config = task.config
    torch.set_default_dtype(task.dtype)
    dataset = DATASETS.get(config.data.name)(**config.data.options)
    quiet = _ModelProgress(1, False, None)
    return _one(task.entry, config, dataset, task.out_dir, task.evaluator, quiet)


def _task_failed(task: _Task, error: BaseException) -> ModelResult:
    """The row of an entry whose worker failed outside ``_one`` (it died, or pickling failed)."""
    row = ModelResult(task.entry.label, task.entry.family, "", source=task.entry.source)
    _record_error(row, error)
    return row


def _record_error(row: ModelResult, error: BaseException) -> None:
    row.error = f"{type(error).__name__}: {' '.join(str(error).split())}"
    row.traceback = "".join(traceback.format_exception(error))


def _one(
    entry: ModelEntry,
    config: CompareConfig,
    dataset: Dataset,
    out_dir: Path,
    evaluator: Evaluator,
    bar: _ModelProgress,
) -> ModelResult:
    """Train (or load), evaluate and draw one model; a failure becomes the row's error."""
    row = ModelResult(entry.label, entry.family, "", source=entry.source)
    try:
        budget = entry.config.train.time_budget if isinstance(entry, TrainedEntry) else None
        bar.phase(f"training {entry.label}", budget)
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        trained = entry.obtain(out_dir / "runs" / entry.label, dataset, [bar.callback()])
        wall = time.perf_counter() - wall_start
        model = trained.model
        row.likelihood = model.likelihood.value
        row.parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
        row.train_seconds, row.steps = trained.seconds, trained.steps
        row.stop_reason, row.history = trained.stop_reason, trained.history
        row.threads = trained.threads
        if isinstance(entry, TrainedEntry):
            row.train_cpu_seconds = time.process_time() - cpu_start
            row.cpu_share = row.train_cpu_seconds / (wall * (trained.threads or 1))
            row.flags = training_flags(row, entry.config.train, model.players())
        bar.phase(f"evaluating {entry.label}", None)
        start, cpu_start = time.perf_counter(), time.process_time()
        e = config.evaluation
        with intra_op_threads(trained.threads):  # as trained: the same sums in any process
            evaluation = evaluator(
                model, dataset, split=e.split, n_samples=e.n_samples, seed=e.seed
            )
        samples = evaluation.samples
        row.metrics, row.n_samples = evaluation.results, len(samples)
        row.skipped, row.notes = dict(evaluation.skipped), dict(evaluation.notes)
        if isinstance(dataset.truth, GaussianMixture):
            row.n_modes = len(dataset.truth.weights)
        row.figures = _model_figures(
            entry.label, model, trained.history, samples, dataset, config, out_dir / "figures"
        )
        row.evaluation_seconds = time.perf_counter() - start
        row.evaluation_cpu_seconds = time.process_time() - cpu_start
    except Exception as err:  # reported in the row (see the module docstring)
        _record_error(row, err)
    bar.done()
    return row


def _is_2d(dataset: Dataset) -> bool:
    return dataset.spec.event_shape == (2,) and dataset.spec.levels is None


def _reference(config: CompareConfig, dataset: Dataset) -> tuple[torch.Tensor, Box | None]:
    """The examples the pictures show beside the samples, and their box (2-D data only)."""
    e = config.evaluation
    reference = dataset.split(e.split)[: e.n_samples]
    return reference, Box(reference) if _is_2d(dataset) else None


def _data_figures(config: CompareConfig, dataset: Dataset, folder: Path) -> dict[str, Path]:
    """The data alone, its small multiple, and its true density when known (2-D)."""
    e = config.evaluation
    reference, box = _reference(config, dataset)
    figures = {
        "samples": plot_samples(
            reference,
            folder / "data_samples.png",
            title=f"{data_title(config)} ({e.split} split)",
            levels=dataset.spec.levels,
            decoder=getattr(dataset, "decode", None),
        )
    }
    tile = plot_tile(reference, dataset, box, folder / "data_tile.png", f"data ({e.split})")
    if tile is not None:
        figures["tile"] = tile
    if box is not None and dataset.truth is not None:
        values = density_grid(dataset.truth, box, e.heatmap_resolution)
        figures["density"] = plot_density(
            values, box, folder / "data_density.png", "true density", "p(x)"
        )
    return figures


def _model_figures(
    label: str,
    model: GenerativeModel,
    history: list[dict[str, Any]],
    samples: torch.Tensor,
    dataset: Dataset,
    config: CompareConfig,
    folder: Path,
) -> dict[str, Path]:
    """Samples beside the data and as a small multiple; the density heatmap (2-D data,
    models with a density); training curves."""
    figures = {
        "samples": plot_samples_beside_data(
            samples, dataset, folder / f"{label}_samples.png", f"{label}: samples"
        )
    }
    _, box = _reference(config, dataset)
    tile = plot_tile(samples, dataset, box, folder / f"{label}_tile.png", label)
    if tile is not None:
        figures["tile"] = tile
    marginal = model.condition_spec is None or model.unconditional_mode  # p(x) on the grid
    if box is not None and model.likelihood is not Likelihood.NONE and marginal:
        values = density_grid(model, box, config.evaluation.heatmap_resolution)
        title = f"{label} ({model.likelihood.value})"
        figures["density"] = plot_density(
            values, box, folder / f"{label}_density.png", title, heatmap_label(model)
        )
    by_class = plot_class_samples(
        model, dataset, folder / f"{label}_classes.png", f"{label}: samples of p(x | c)"
    )
    if by_class is not None:
        figures["classes"] = by_class
    curves = plot_training(history, folder / f"{label}_training.png", f"{label}: training")
    if curves is not None:
        figures["training"] = curves
    return figures


class _ModelProgress:
    """A rich progress bar across models, and one for the current phase's time budget."""

    def __init__(self, total: int, enabled: bool, console: Console | None) -> None:
        self._progress = (
            Progress(
                TextColumn("[bold]{task.description:<28}"),
                BarColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=console,
            )
            if enabled
            else None
        )
        self._total = total
        self._finished = 0
        self._budget: float | None = None
        self._started = time.perf_counter()
        if self._progress is not None:
            self._models = self._progress.add_task("models", total=total, detail=f"0/{total}")
            self._phase = self._progress.add_task("", total=None, detail="")

    def __enter__(self) -> _ModelProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.update(self._phase, visible=False)  # the phase line is done
            self._progress.stop()

    def phase(self, description: str, budget: float | None) -> None:
        """Show ``description``; with a ``budget`` in seconds, a bar filling over it."""
        self._started, self._budget = time.perf_counter(), budget
        if self._progress is not None:
            self._progress.reset(self._phase, description=description, detail="")
            self._progress.update(self._phase, total=budget or 1.0)

    def callback(self) -> Callable[[TrainState], None]:
        """A training callback moving the phase bar to the seconds spent."""

        def update(state: TrainState) -> None:
            if self._progress is not None and self._budget is not None:
                seconds = time.perf_counter() - self._started
                detail = f"{seconds:.0f}/{self._budget:.0f} s, step {state.step}"
                self._progress.update(self._phase, completed=seconds, detail=detail)

        return update

    def done(self) -> None:
        """One more model finished."""
        self._finished += 1
        if self._progress is not None:
            self._progress.update(
                self._models, completed=self._finished, detail=f"{self._finished}/{self._total}"
            )
