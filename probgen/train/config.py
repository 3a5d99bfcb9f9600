"""Run configurations: dataclasses, strict YAML loading, and the resolved file every run writes.

A run is fully described by a ``RunConfig``; ``fit`` writes it back as
``config.yaml`` beside the checkpoint, so ``probgen train <run>/config.yaml``
reruns any result. Loading is strict: an unknown key, a value of the wrong
type, or an unknown model, data set, optimizer or schedule raises a
``ConfigError`` whose one-line message names the problem and the valid
choices.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from probgen.core import InvalidInput, ProbgenError
from probgen.registry import DATASETS, MODELS, Registry

__all__ = [
    "CLOCKS",
    "DEVICES",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULES",
    "SMALL_DATA",
    "STRATEGIES",
    "BayesConfig",
    "ComponentConfig",
    "ConfigError",
    "RunConfig",
    "TrainConfig",
    "config_to_dict",
    "load_config",
    "parse_overrides",
    "save_config",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
"""Optimizer names a config may choose (torch.optim classes, see ``probgen.train.optim``)."""

SCHEDULES = ("constant", "cosine", "warmup", "multistep", "plateau")
"""Learning-rate schedule names (see ``probgen.train.optim``)."""

CLOCKS = ("wall", "cpu")
"""What ``time_budget`` counts: wall-clock seconds, or CPU seconds of this process
(``time.process_time``, all its threads; fair between runs on a shared CPU
machine, meaningless for GPU work)."""

DEVICES = ("auto", "cpu", "cuda", "mps")
"""``"auto"`` picks CUDA, then MPS, then CPU."""

PRECISIONS = ("32-true", "64-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true")
"""Lightning Fabric precision settings."""

STRATEGIES = ("auto", "ddp", "ddp_spawn", "dp", "fsdp", "deepspeed")
"""Lightning Fabric strategy names."""

SMALL_DATA = 10_000
"""``early_stopping: auto`` is on for finite training splits of at most this many examples."""


class ConfigError(ProbgenError, ValueError):
    """A configuration is invalid; the message names the key, the problem and the valid choices."""


@dataclass
class ComponentConfig:
    """A registered component: its registry ``name`` and the keyword ``options`` to build it."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Settings of the training loop (see docs/training.md for every key).

    ``steps`` counts rounds; in one round each player ``p`` takes
    ``steps_per_round[p]`` optimizer steps (default 1), each on its own batch.
    ``standardize`` is the map continuous data get (``probgen.models.build_model``:
    ``mean_std``, ``robust``, ``none`` or ``{shift, scale}``; a run records the
    fitted map here). ``early_stopping`` (``auto``: on for a finite training
    split of at most ``SMALL_DATA`` examples and a model with a likelihood)
    stops after ``patience`` validations without a better validation NLL and
    keeps the best weights. ``refit`` (``auto``: whenever early stopping is on,
    the training split is finite with at most ``SMALL_DATA`` examples and there
    is no ``time_budget``) then trains a
    fresh model for the chosen number of steps on ``splits`` = training and
    validation together (``probgen.train.refit``); ``splits`` lists the splits
    a run trains on, ``[train]`` by default. ``eval_examples`` is how many
    validation examples ``val_nll`` averages (``auto``:
    ``probgen.train.early_stopping.validation_examples``, the whole split when
    validation is once per epoch).
    """

    steps: int = 1000
    time_budget: float | None = None
    budget_clock: str = "wall"
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    player_lr: dict[str, float] = field(default_factory=dict)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    steps_per_round: dict[str, int] = field(default_factory=dict)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    lr_factor: float = 0.5
    lr_patience: int = 5
    lr_milestones: tuple[int, ...] = ()
    grad_clip: float | None = None
    ema_decay: float | None = None
    eval_every: int = 0
    eval_examples: int | str = "auto"
    standardize: Any = "mean_std"
    early_stopping: Any = "auto"
    patience: int = 20
    refit: Any = "auto"
    splits: tuple[str, ...] = ("train",)
    checkpoint_every: int = 0
    log_every: int = 10
    device: str = "auto"
    precision: str = "32-true"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    threads: int | str = "auto"


@dataclass
class BayesConfig:
    """Makes the run's model Bayesian (see docs/bayes.md and ``probgen.bayes.make_bayesian``).

    ``method`` names a posterior in ``POSTERIORS``; ``layers`` lists module or
    parameter paths (``None``: all weights); the prior is N(0, ``prior_std``²);
    ``samples`` posterior draws per log_prob; ``num_data`` is N (``None``: the
    training split's size); ``options`` go to the posterior class.
    """

    method: str = "mean_field"
    layers: list | None = None
    prior_std: float = 1.0
    samples: int = 16
    num_data: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """Everything needed to reproduce a run: name, seed, model, data and training settings."""

    model: ComponentConfig
    data: ComponentConfig
    name: str = "run"
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    bayes: BayesConfig | None = None


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn command-line ``key=value`` strings into an overrides dict.

    Keys are dotted paths (``train.lr=3e-4``, ``model.options.hidden=[64,64]``);
    values are parsed as YAML, so numbers, lists and ``null`` come out typed.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = _parse_scalar(value)
    return out


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML config (or none), apply ``overrides``, validate strictly.

    ``overrides`` maps dotted keys (``"train.steps"``) or nested dicts
    (``{"train": {"steps": 10}}``) to values; they win over the file.
    Raises ``ConfigError`` naming the problem and the valid choices.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as e:
            raise ConfigError(f"cannot read config {path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config {path} is not valid YAML: {_one_line(e)}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config {path}: expected a mapping at top level, got {loaded!r}")
        raw = loaded or {}
    for key, value in (overrides or {}).items():
        _merge(raw, _nest(key, value))
    config = _build_dataclass(RunConfig, raw, "")
    _validate(config)
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The resolved config as plain YAML-able data (tuples become lists)."""
    fields = dataclasses.asdict(config)
    order = ("name", "seed", "model", "data", "train", "bayes")  # how a reader scans a run file
    return _plain({key: fields[key] for key in order if fields[key] is not None})


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as YAML atomically (temp file, fsync, rename)."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    atomic_write_text(Path(path), text)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- parsing


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _nest(key: str, value: Any) -> dict[str, Any]:
    parts = key.split(".")
    # ``options`` are free-form: a dotted key stops nesting below them.
    out: dict[str, Any] = {}
    node = out
    for i, part in enumerate(parts[:-1]):
        if part == "options" and i > 0:
            node[part] = {".".join(parts[i + 1 :]): value}
            return out
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build_dataclass(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix + unknown[0]!r}; valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = _coerce(raw[name], hints[name], f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {prefix + name!r}")
    return cls(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in that type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], key)
        for option in inner:  # the first type the value fits, in the annotation's order
            try:
                return _coerce(value, option, key)
            except ConfigError:
                pass
        names = " or ".join(_type_name(a) for a in inner)
        raise ConfigError(f"{key}: expected {names}, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args
        return {
            _coerce(k, kt, f"{key} key"): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()
        }
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[T, ...]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if tp is Any:
        return value
    if tp is float:
        # PyYAML reads ``1e-3`` (no dot) as a string; accept numeric strings here.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


# ----------------------------------------------------------------------------- validation


def _choice(key: str, value: str, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}: unknown value {value!r}; choose one of: {', '.join(choices)}")


def _check_options(
    component: ComponentConfig, registry: Registry, key: str, reserved: tuple[str, ...] = ()
) -> None:
    """Check the component's name and its options against the signature it is built with.

    ``reserved`` names arguments the builder fills itself (a model's ``event_shape``,
    which ``for_data`` takes from the data set).
    """
    _choice(f"{key}.name", component.name, registry.names())
    try:
        target = registry.get(component.name)
    except ImportError as e:
        raise ConfigError(
            f"{key}: {registry.kind} {component.name!r} cannot be imported: {e}"
        ) from e
    try:
        params = dict(inspect.signature(target).parameters)
        # A model is built by for_data: its named options, and the constructor's when it
        # passes the rest on (**options).
        for_data = getattr(target, "for_data", None)
        if for_data is not None:
            own = inspect.signature(for_data).parameters
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in own.values()):
                params.update({n: p for n, p in own.items() if p.kind is not p.VAR_KEYWORD})
            else:
                params = dict(own)
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = sorted(
        n
        for n, p in params.items()
        if p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in reserved
    )
    for opt in component.options:
        if opt not in valid:
            raise ConfigError(
                f"{key}.options: unknown option {opt!r} for {registry.kind} "
                f"{component.name!r}; valid options: {', '.join(valid) or '(none)'}"
            )


def _positive(key: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ConfigError(f"{key}: must be {bound}, got {value!r}")


def _check_standardize(value: Any) -> None:
    from probgen.models.standardize import STANDARDIZATIONS

    if isinstance(value, dict):
        valid = {"method", "shift", "scale", "condition_shift", "condition_scale"}
        extra = sorted(set(value) - valid)
        if extra:
            raise ConfigError(
                f"train.standardize: unknown key {extra[0]!r}; "
                f"valid keys: {', '.join(sorted(valid))}"
            )
    elif value not in STANDARDIZATIONS:
        raise ConfigError(
            f"train.standardize: unknown value {value!r}; choose one of: "
            f"{', '.join(STANDARDIZATIONS)}, or give {{shift: ..., scale: ...}}"
        )


def _validate(config: RunConfig) -> None:
    _check_options(config.model, MODELS, "model", reserved=("event_shape", "spec"))
    _check_options(config.data, DATASETS, "data")
    t = config.train
    _choice("train.optimizer", t.optimizer, OPTIMIZERS)
    _choice("train.lr_schedule", t.lr_schedule, SCHEDULES)
    _choice("train.budget_clock", t.budget_clock, CLOCKS)
    _choice("train.device", t.device, DEVICES)
    _choice("train.precision", t.precision, PRECISIONS)
    _choice("train.strategy", t.strategy, STRATEGIES)
    for key in ("batch_size", "lr", "log_every", "devices", "num_nodes"):
        _positive(f"train.{key}", getattr(t, key))
    if t.eval_examples != "auto" and not (
        isinstance(t.eval_examples, int) and t.eval_examples >= 1
    ):
        raise ConfigError(
            f"train.eval_examples: expected 'auto' or an integer ≥ 1, got {t.eval_examples!r}"
        )
    # steps: 0 is the model as built (a refit whose selection kept the data-initialised start)
    for key in ("steps", "weight_decay", "warmup_steps", "eval_every", "checkpoint_every"):
        _positive(f"train.{key}", getattr(t, key), allow_zero=True)
    if t.threads != "auto" and not (isinstance(t.threads, int) and t.threads >= 1):
        raise ConfigError(f"train.threads: expected 'auto' or an integer ≥ 1, got {t.threads!r}")
    _positive("train.time_budget", t.time_budget)
    _positive("train.patience", t.patience)
    _positive("train.lr_patience", t.lr_patience)
    if not 0.0 < t.lr_factor < 1.0:
        raise ConfigError(f"train.lr_factor: must be in (0, 1), got {t.lr_factor!r}")
    milestones = list(t.lr_milestones)
    if milestones != sorted(milestones) or any(m < 0 for m in milestones):
        raise ConfigError(
            f"train.lr_milestones: expected rounds ≥ 0 in increasing order, got {milestones}"
        )
    if t.early_stopping not in ("auto", True, False):
        raise ConfigError(
            f"train.early_stopping: expected auto, true or false, got {t.early_stopping!r}"
        )
    if t.refit not in ("auto", True, False):
        raise ConfigError(f"train.refit: expected auto, true or false, got {t.refit!r}")
    splits = tuple(t.splits)
    if not splits or splits[0] != "train" or not set(splits) <= {"train", "validation"}:
        raise ConfigError(
            f"train.splits: expected [train] or [train, validation], got {list(t.splits)}"
        )
    _check_standardize(t.standardize)
    _positive("train.grad_clip", t.grad_clip)
    for player, lr in t.player_lr.items():
        _positive(f"train.player_lr.{player}", lr)
    for player, n in t.steps_per_round.items():
        _positive(f"train.steps_per_round.{player}", n)
    if t.ema_decay is not None and not 0.0 < t.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay: must be in (0, 1) or null, got {t.ema_decay!r}")
    if not all(0.0 <= b < 1.0 for b in t.betas):
        raise ConfigError(f"train.betas: each must be in [0, 1), got {list(t.betas)}")
    if config.bayes is not None:
        from probgen.bayes.config import make_posterior  # only runs that use it pay the import

        try:
            make_posterior(config.bayes, t)
        except InvalidInput as e:
            raise ConfigError(str(e)) from e
