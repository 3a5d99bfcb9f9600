"""The training loop: Lightning Fabric underneath, the GenerativeModel protocol on top.

The engine knows nothing about model families. It asks the model for its
``players()`` (one optimizer each), calls ``loss(x, player)`` on batches the
data set draws with a dedicated generator, and steps each player
``steps_per_round[player]`` times per round:

    for t in rounds:
        for player p:                         # in the order of model.players()
            lr_p ← lr_p⁰ · schedule(t)
            repeat steps_per_round[p] times:  # each on a fresh batch x ~ data
                θ_p ← optimizer_p(θ_p, ∇ loss(x, p))   (gradient clipped)
        θ_ema ← decay · θ_ema + (1 - decay) · θ      (when EMA is on)

Device, precision and data parallelism come from Lightning Fabric; with DDP,
``loss`` runs through the wrapped module's forward (``mark_forward_method``),
so its gradients are all-reduced across processes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from probgen.core import GenerativeModel, IntractableLikelihood, Likelihood, ProbgenError
from probgen.data.base import Dataset
from probgen.data.merged import MergedTraining
from probgen.registry import DATASETS
from probgen.train.build import build, standardization_record
from probgen.train.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from probgen.train.config import (
    ConfigError,
    RunConfig,
    atomic_write_text,
    load_config,
    save_config,
)
from probgen.train.early_stopping import early_stopping_for, validation_examples
from probgen.train.optim import clip_grad_norm, make_optimizers, make_schedule, set_lr
from probgen.train.progress import TrainingProgress
from probgen.train.refit import refits, select_then_refit
from probgen.train.threads import ThreadTuner, intra_op_threads, training_threads

__all__ = [
    "Callback",
    "TrainResult",
    "TrainState",
    "TrainingDiverged",
    "fit",
    "load_run",
    "resolve_device",
    "validation_nll",
]


class TrainingDiverged(ProbgenError, RuntimeError):
    """A player's loss became NaN or infinite; the message names player, step and loss."""


@dataclass
class TrainState:
    """What a callback sees after round ``step``: the model to evaluate (EMA if on) and data."""

    step: int
    model: GenerativeModel
    dataset: Dataset
    global_rank: int
    history: list[dict[str, Any]]


Callback = Callable[[TrainState], "dict[str, float] | None"]
"""Called every ``eval_every`` rounds and after the last; returned metrics go into history."""


@dataclass
class TrainResult:
    """The outcome of ``fit``.

    ``model`` holds the weights to sample and evaluate with (the EMA weights
    when EMA is on); ``history`` has one record per logged round
    (``step``, ``loss/<player>``, ``elapsed`` seconds, evaluation metrics);
    ``wall_time`` is this call's duration; ``stop_reason`` is ``"steps"``,
    ``"time_budget"`` or ``"early_stopping"``; ``best_step`` is the round whose
    weights ``model`` holds when early stopping was on (else None); ``threads``
    the intra-op threads it ran with (the count of most rounds when
    ``ThreadTuner`` measured; ``probgen.train.threads``; None: torch's
    setting was left alone); ``lr_milestones`` the rounds from which
    ``lr_schedule: plateau`` cut the rate.
    """

    model: GenerativeModel
    dataset: Dataset
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    wall_time: float = 0.0
    stop_reason: str = "steps"
    global_rank: int = 0
    best_step: int | None = None
    threads: int | None = None
    lr_milestones: tuple[int, ...] = ()


def resolve_device(device: str) -> str:
    """The Fabric accelerator for ``device``: ``"auto"`` picks CUDA, then MPS, then CPU."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


EVAL_SMALL = 64
"""Examples of at most this many values (points, tables, SBI pairs, digits 8×8) validate in
larger batches than they train in; larger ones (images, sequences) in the training batch."""

EVAL_VALUES = 2**16
"""Values per validation batch to aim for with small examples."""

EVAL_ROWS = 2048
"""The most examples per validation batch (beyond it, no faster per example on this CPU)."""


def evaluation_batch(batch_size: int, event_shape: tuple[int, ...]) -> int:
    """Examples per validation batch: the training batch, or more for small examples.

    A no-grad pass over small vectors costs mostly per-operation overhead, so
    validating in batches of about ``EVAL_VALUES`` values (at most ``EVAL_ROWS``
    rows) is several times faster: 10 000 pairs of a 2-D conditional NSF take
    97 ms in batches of 200, 38 ms in batches of 2000 (one thread). Examples of
    more than ``EVAL_SMALL`` values (images, sequences) keep the training batch.
    """
    per_example = max(math.prod(event_shape), 1)
    if per_example > EVAL_SMALL:
        return batch_size
    return max(batch_size, min(EVAL_ROWS, EVAL_VALUES // per_example))


def validation_nll(state: TrainState, max_examples: int, batch_size: int) -> dict[str, float]:
    """Mean -log p_θ(x | c) over the first ``max_examples`` of the validation split.

    Recorded as ``val_nll`` for an exact likelihood and ``val_nll_<kind>``
    otherwise (an ELBO gives an upper bound, an EBM an energy off by log Z);
    nothing for models without a density. Batches of ``evaluation_batch`` rows.
    """
    model = state.model
    if model.likelihood is Likelihood.NONE:
        return {}
    batch_size = evaluation_batch(batch_size, tuple(model.event_shape))
    data = state.dataset.split("validation")[:max_examples]
    conditions = state.dataset.conditions("validation")
    conditions = None if conditions is None else conditions[:max_examples]  # the rows of data
    rows = range(0, len(data), batch_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            total = sum(
                -model.log_prob(
                    data[i : i + batch_size].to(model.device),
                    condition=_rows(conditions, i, batch_size, model.device),
                )
                .sum()
                .item()
                for i in rows
            )
    except IntractableLikelihood:
        return {}
    finally:
        model.train(was_training)
    kind = model.likelihood
    key = "val_nll" if kind is Likelihood.EXACT else f"val_nll_{kind.value}"
    return {key: total / len(data)}


def _rows(
    c: torch.Tensor | None, start: int, size: int, device: torch.device
) -> torch.Tensor | None:
    return None if c is None else c[start : start + size].to(device)


def fit(
    config: RunConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    model: GenerativeModel | None = None,
    dataset: Dataset | None = None,
) -> TrainResult:
    """Train ``config`` into ``run_dir`` (config.yaml, checkpoint/, history.json).

    ``model`` and ``dataset`` are built from the config unless given (a model
    is then built for the given data set; the config still names them, so
    pass registered names for ``load_run`` to rebuild the run). With
    ``resume=True`` training continues from ``run_dir/checkpoint`` up to
    ``config.train.steps``; on CPU with the same
    seed the losses equal those of an uninterrupted run. Raises
    ``TrainingDiverged`` on a non-finite loss; the last good checkpoint stays.

    With early stopping on small data the run refits (``train.refit``,
    ``probgen.train.refit``): the early-stopped run goes to ``run_dir/selection``
    and a fresh model trained on training and validation for its best step
    count is the result (``stop_reason`` ``"refit"``).
    """
    model_given = model is not None
    if model is not None:  # the saved config must rebuild the model given, not a fresh one
        data_map = standardization_record(model) or "none"
        config = dataclasses.replace(
            config, train=dataclasses.replace(config.train, standardize=data_map)
        )
    if dataset is None:
        dataset = DATASETS.get(config.data.name)(**config.data.options)
    if tuple(config.train.splits) != ("train",) and not isinstance(dataset, MergedTraining):
        dataset = MergedTraining(dataset, tuple(config.train.splits))
    if model is None:
        method = config.train.standardize  # build records the fitted map in the config
        model, dataset = build(config, dataset)
    if refits(config.train, dataset, model):
        if not model_given:  # a refit builds afresh: the map is fitted on all its data
            config = dataclasses.replace(
                config, train=dataclasses.replace(config.train, standardize=method)
            )
        return select_then_refit(
            fit,
            config,
            Path(run_dir),
            model,
            dataset,
            model_given=model_given,
            resume=resume,
            progress=progress,
            callbacks=callbacks,
        )
    run = _Run(config, Path(run_dir), model, dataset, list(callbacks))
    with intra_op_threads(run.start_threads):  # process-global: restored when the run ends
        return run.train(resume, progress)


def load_run(run_dir: Path) -> tuple[GenerativeModel, RunConfig, Dataset]:
    """The trained model (EMA weights when the run used EMA), its config and data set.

    With early stopping, the model holds the weights of the best validation.

    Raises ``CheckpointError`` when the config or checkpoint is missing or unreadable.
    """
    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: {config_file} is missing")
    config = load_config(config_file)
    checkpoint = read_checkpoint(run_dir / "checkpoint")
    model, dataset = build(config)
    checkpoint.load_module("ema" if checkpoint.has_module("ema") else "model", model)
    best = {k[len("best/") :]: v for k, v in checkpoint.tensors.items() if k.startswith("best/")}
    if best:  # early stopping kept the weights of the best validation
        model.load_state_dict(best)
    model.eval()
    return model, config, dataset


class _Run:
    """One training run: Fabric, optimizers, EMA, RNGs, and the state a checkpoint holds."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        model: GenerativeModel,
        dataset: Dataset,
        callbacks: list[Callback],
    ) -> None:
        # Imported here: lightning_fabric pulls in torch._dynamo (seconds), which
        # configs, load_run and the CLI's help never need.
        from lightning_fabric import Fabric

        t = config.train
        self.config, self.run_dir, self.model, self.dataset = config, run_dir, model, dataset
        self.callbacks = callbacks
        players = model.players()
        spr = {p: t.steps_per_round.get(p, 1) for p in players}
        device = resolve_device(t.device)
        self.clock = time.process_time if t.budget_clock == "cpu" else time.perf_counter
        plan = training_threads(
            t.threads, device, model, dataset, t.batch_size, spr, clock=self.clock
        )
        self.tuner = plan if isinstance(plan, ThreadTuner) else None
        self.start_threads = plan.current if isinstance(plan, ThreadTuner) else plan
        self.fabric = Fabric(
            accelerator=device,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=_strategy(t.strategy, multi_player=len(players) > 1),
            precision=t.precision,  # type: ignore[arg-type]
        )
        self.fabric.launch()
        self.module = self.fabric.setup_module(model)
        # every player's loss may reach every weight: all gradients are cleared per step,
        # from a list (Module.zero_grad walks the module tree: 56 µs for an NSF, per step)
        self.weights = list(model.parameters())
        self.module.mark_forward_method("loss")
        optimizers = make_optimizers(model.players(), t)
        wrapped = self.fabric.setup_optimizers(*optimizers.values())
        wrapped = wrapped if isinstance(wrapped, tuple) else (wrapped,)
        self.optimizers = dict(zip(optimizers, wrapped, strict=True))
        # Fabric's clipping unscales 16-mixed gradients and reduces sharded ones; elsewhere
        # the gradients are the plain tensors, clipped in three operations (clip_grad_norm)
        own_clip = t.precision != "16-mixed" and t.strategy in ("auto", "ddp", "ddp_spawn")
        self.clipped = (
            {p: [w for g in o.param_groups for w in g["params"]] for p, o in optimizers.items()}
            if own_clip
            else None
        )
        self.base_lr = {p: t.player_lr.get(p, t.lr) for p in optimizers}
        self.steps_per_round = {p: t.steps_per_round.get(p, 1) for p in optimizers}
        self.schedule = make_schedule(t)
        self.ema = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(t.ema_decay), use_buffers=True)
            if t.ema_decay is not None
            else None
        )
        rank = self.fabric.global_rank
        self.data_rng = torch.Generator().manual_seed(config.seed + rank)
        torch.manual_seed(config.seed + rank)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []
        self.checkpoint_step: int | None = None
        self.early = early_stopping_for(t, dataset, model)
        self.eval_every = self.early.interval if self.early is not None else t.eval_every
        self.eval_examples = validation_examples(t, dataset, self.eval_every)
        if t.lr_schedule == "plateau" and self.early is None:
            raise ConfigError("train.lr_schedule: plateau needs early stopping (its validations)")

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoint"

    @property
    def eval_model(self) -> GenerativeModel:
        return self.model if self.ema is None else self.ema.module

    # ------------------------------------------------------------------ the loop

    def train(self, resume: bool, progress: bool) -> TrainResult:
        t = self.config.train
        if resume:
            self._restore()
        elif (self.checkpoint_dir / "state.json").is_file():
            raise CheckpointError(
                f"{self.checkpoint_dir} already holds a checkpoint; resume it or use a new run_dir"
            )
        if self.fabric.is_global_zero:
            save_config(self.config, self.run_dir / "config.yaml")
        self.model.train()
        if self.early is not None and self.step == 0:
            self._validate_start()
        start = time.perf_counter()
        clock = self.clock
        clock_start, elapsed_before = clock(), self.elapsed
        stop_reason = "steps"
        bar = TrainingProgress(
            t.steps,
            self.step,
            enabled=progress and self.fabric.is_global_zero,
            description=self.config.name,
        )
        with bar:
            while self.step < t.steps:
                with self.tuner.round() if self.tuner is not None else nullcontext():
                    losses = self._round()
                self.step += 1
                self.elapsed = elapsed_before + clock() - clock_start
                bar.advance()
                if self._out_of_time():
                    stop_reason = "time_budget"
                last = self.step == t.steps or stop_reason != "steps"
                record = self._record(losses, last)
                if record:
                    self.history.append(record)
                    bar.show(losses)
                if self._no_longer_improving(record):
                    stop_reason, last = "early_stopping", True
                if last or (t.checkpoint_every and self.step % t.checkpoint_every == 0):
                    self._save()
                if last:
                    break
        if t.steps == 0 and self.checkpoint_step is None:  # no rounds: the model as built
            self._save()
        if self.early is not None:  # the checkpoint keeps the last weights to resume from
            self.early.restore(self.eval_model)
        return TrainResult(
            model=self.eval_model,
            dataset=self.dataset,
            history=self.history,
            steps=self.step,
            wall_time=time.perf_counter() - start,
            stop_reason=stop_reason,
            global_rank=self.fabric.global_rank,
            best_step=None if self.early is None else self.early.best_step,
            threads=self.start_threads if self.tuner is None else self.tuner.threads,
            lr_milestones=tuple(self.schedule.state().get("milestones", ())),
        )

    def _round(self) -> dict[str, float]:
        """One round: every player takes its steps; returns each player's mean loss."""
        t = self.config.train
        factor = self.schedule(self.step)
        losses = {}
        for player, optimizer in self.optimizers.items():
            set_lr(optimizer, self.base_lr[player] * factor)
            total = 0.0
            for _ in range(self.steps_per_round[player]):
                x, c = self.fabric.to_device(
                    self.dataset.draw("train", t.batch_size, self.data_rng)
                )
                loss = self.module.loss(x, player, condition=c)
                value = loss.item()
                self._check_finite(player, value)
                for w in self.weights:
                    w.grad = None
                self.fabric.backward(loss)
                if t.grad_clip is not None and self.clipped is not None:
                    clip_grad_norm(self.clipped[player], t.grad_clip)
                elif t.grad_clip is not None:
                    self.fabric.clip_gradients(self.module, optimizer, max_norm=t.grad_clip)
                optimizer.step()
                total += value
            losses[player] = total / self.steps_per_round[player]
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return losses

    def _check_finite(self, player: str, value: float) -> None:
        bad = not math.isfinite(value)
        if self.fabric.world_size > 1:  # every process must stop, not only the one that saw it
            flag = torch.tensor(float(bad), device=self.fabric.device)
            bad = bool(self.fabric.all_reduce(flag, reduce_op="sum").item() > 0)
        if not bad:
            return
        if self.fabric.is_global_zero:
            atomic_write_text(self.run_dir / "history.json", json.dumps(self.history, indent=1))
        kept = (
            f"the last good checkpoint (step {self.checkpoint_step}) is kept in "
            f"{self.checkpoint_dir}"
            if self.checkpoint_step is not None
            else "no checkpoint had been written yet"
        )
        raise TrainingDiverged(
            f"training diverged: loss of player {player!r} is {value} at step "
            f"{self.step + 1}; {kept}. Try a lower lr, grad_clip or a warm-up."
        )

    def _out_of_time(self) -> bool:
        budget = self.config.train.time_budget
        if budget is None:
            return False
        out = self.elapsed >= budget
        if self.fabric.world_size > 1:  # rank 0's clock decides for all
            out = self.fabric.broadcast(out, src=0)
        return out

    def _record(self, losses: dict[str, float], last: bool) -> dict[str, Any]:
        """The history record of this round, or {} when nothing is due."""
        t = self.config.train
        record: dict[str, Any] = {}
        if last or self.step % t.log_every == 0:
            record.update({f"loss/{p}": v for p, v in losses.items()})
        if last or (self.eval_every and self.step % self.eval_every == 0):
            state = TrainState(
                self.step, self.eval_model, self.dataset, self.fabric.global_rank, self.history
            )
            if self.eval_every:
                record.update(validation_nll(state, self.eval_examples, t.batch_size))
            for callback in self.callbacks:
                record.update(callback(state) or {})
        if not record:
            return {}
        return {"step": self.step, **record, "elapsed": self.elapsed}

    def _validate_start(self) -> None:
        """Validate the model before any update (round 0), so early stopping can keep it.

        A data-initialised model (a flow over a mixture base started by EM)
        can be best before training: round 0 is then the one kept.
        """
        state = TrainState(0, self.eval_model, self.dataset, self.fabric.global_rank, self.history)
        nll = validation_nll(state, self.eval_examples, self.config.train.batch_size)
        record = {"step": 0, **nll, "elapsed": 0.0}
        self.history.append(record)
        self._no_longer_improving(record)

    def _no_longer_improving(self, record: dict[str, Any]) -> bool:
        """Feed a validation NLL to early stopping; True when it says stop (rank 0 decides)."""
        if self.early is None:
            return False
        value = next((v for k, v in record.items() if k.startswith("val_nll")), None)
        stop = value is not None and self.early.update(self.step, value, self.eval_model)
        if self.fabric.world_size > 1:
            stop = self.fabric.broadcast(stop, src=0)
        if value is not None and not stop:  # a plateau schedule may cut the rate from here on
            self.schedule.observe(self.step, self.early.since_best)
        return stop

    # ------------------------------------------------------------------ checkpoints

    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"rng/torch": torch.get_rng_state(), "rng/data": self.data_rng.get_state()}
        device = self.fabric.device
        if device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(device)
        return tensors

    def _save(self) -> None:
        if self.fabric.is_global_zero:
            modules = {"model": self.model}
            tensors = self._rng_tensors()
            if self.ema is not None:
                modules["ema"] = self.ema.module
                tensors["ema/n_averaged"] = self.ema.n_averaged
            meta: dict[str, Any] = {
                "step": self.step,
                "elapsed": self.elapsed,
                "history": self.history,
                "schedule": self.schedule.state(),
            }
            if self.early is not None:
                tensors.update(self.early.tensors())
                meta["early_stopping"] = self.early.state()
            write_checkpoint(
                self.checkpoint_dir,
                modules=modules,
                optimizers=dict(self.optimizers.items()),
                tensors=tensors,
                meta=meta,
            )
            atomic_write_text(self.run_dir / "history.json", json.dumps(self.history, indent=1))
        self.checkpoint_step = self.step
        self.fabric.barrier()

    def _restore(self) -> None:
        checkpoint = read_checkpoint(self.checkpoint_dir)
        checkpoint.load_module("model", self.model)
        for player, optimizer in self.optimizers.items():
            checkpoint.load_optimizer(player, optimizer)
        if self.ema is not None:
            if not checkpoint.has_module("ema"):
                raise CheckpointError(
                    f"{checkpoint.path} was saved without EMA; cannot resume with ema_decay set"
                )
            checkpoint.load_module("ema", self.ema.module)
            self.ema.n_averaged.copy_(checkpoint.tensors["ema/n_averaged"])
        tensors = checkpoint.tensors
        torch.set_rng_state(tensors["rng/torch"])
        self.data_rng.set_state(tensors["rng/data"])
        if "rng/cuda" in tensors and self.fabric.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng/cuda"], self.fabric.device)
        meta = checkpoint.meta
        self.step, self.elapsed, self.history = meta["step"], meta["elapsed"], meta["history"]
        self.schedule.load(meta.get("schedule", {}))
        if self.early is not None and "early_stopping" in meta:
            self.early.load(meta["early_stopping"], tensors)
        self.checkpoint_step = self.step


def _strategy(name: str, *, multi_player: bool) -> Any:
    """Fabric's strategy; DDP must tolerate parameters a player's loss leaves unused."""
    if name == "ddp" and multi_player:
        from lightning_fabric.strategies import DDPStrategy

        return DDPStrategy(find_unused_parameters=True)
    return name
