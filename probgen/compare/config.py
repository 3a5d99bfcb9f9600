"""What a comparison runs: the data, the models (trained here or loaded), budgets, evaluation.

A comparison is described by a YAML file (``probgen/compare/default.yaml`` is
the embedded default that ``probgen compare`` runs without arguments)::

    name: compare
    seed: 0
    data: {name: 8gaussians, options: {}}
    models: registered        # every registered family that builds for the data,
                              # or a list of entries (below)
    workers: auto             # parallel worker processes (one per core), or an integer
    total_time_budget: null   # or: training seconds for all trained models, split equally
    time_budget: null         # or: training seconds per model (exclusive with the above)
    train: {...}              # TrainConfig keys shared by every trained model
    families:                 # per-family settings, used whenever that family is trained
      wgan: {options: {...}, train: {steps: 2000, steps_per_round: {critic: 5}}}
    evaluation: {split: test, n_samples: 2000, heatmap_resolution: 48}

An entry of ``models`` is a registered name (``vae``), a mapping
``{name, label, options, train}`` trained here, or ``{run: DIR, label}``: a run
folder written by ``probgen train``, loaded from its checkpoint. Settings
merge in the order shared ``train`` < ``families[name]`` < the entry itself,
and every trained model's ``RunConfig`` is validated strictly by
``probgen.train.load_config``. Without a time budget each model trains for its
``train.steps`` (the default gives each family a fixed count, so the table is
the same on any machine); with one, every model gets the same
``train.time_budget`` and the step counts are replaced by ``TIME_BUDGET_STEPS``.
With more than one worker, trained entries run with ``train.threads: 1``
unless their settings name a thread count.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from probgen.core import DataSpec, GenerativeModel, ProbgenError
from probgen.data.base import SPLITS, Dataset
from probgen.data.userfiles import data_file
from probgen.models import build_model
from probgen.registry import DATASETS, MODELS
from probgen.train import (
    Callback,
    ComponentConfig,
    ConfigError,
    RunConfig,
    fit,
    load_config,
    load_run,
)
from probgen.train.threads import available_cores

__all__ = [
    "DEFAULT_CONFIG",
    "TIME_BUDGET_STEPS",
    "CompareConfig",
    "EvaluationConfig",
    "LoadedEntry",
    "ModelEntry",
    "Trained",
    "TrainedEntry",
    "applicable_models",
    "data_title",
    "load_compare_config",
]

DEFAULT_CONFIG = "default.yaml"
"""File name of the embedded default comparison inside the ``probgen.compare`` package."""

REGISTERED = "registered"
"""``models: registered`` compares every registered family whose ``for_data`` accepts the data."""

TIME_BUDGET_STEPS = 10**9
"""``train.steps`` of every trained model when a time budget is set: the budget stops it."""

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_TOP_KEYS = (
    "name",
    "seed",
    "data",
    "models",
    "workers",
    "time_budget",
    "total_time_budget",
    "train",
    "families",
    "evaluation",
)


@dataclass(frozen=True)
class EvaluationConfig:
    """How every model is scored: the same split, sample size and picture settings for all.

    Attributes:
        split: data split the metrics use (``test`` by default).
        n_samples: model samples drawn for sample metrics and pictures.
        heatmap_resolution: grid points per axis of the 2-D density heatmaps.
        seed: seed of the sampling generator (the same for every model).
    """

    split: str = "test"
    n_samples: int = 2000
    heatmap_resolution: int = 64
    seed: int = 0


@dataclass
class Trained:
    """A model ready to evaluate, with its training record.

    Attributes:
        model: the trained model (EMA weights when the run used EMA).
        history: the engine's records (``step``, ``loss/<player>``, ``elapsed``, …).
        seconds: training time by the run's budget clock (for a loaded run, as
            recorded in its history).
        steps: training rounds taken.
        stop_reason: ``"steps"``, ``"time_budget"`` or ``"loaded"``.
        threads: intra-op threads of the training (None: unknown or left to torch).
    """

    model: GenerativeModel
    history: list[dict[str, Any]]
    seconds: float
    steps: int
    stop_reason: str
    threads: int | None = None


@dataclass(frozen=True)
class TrainedEntry:
    """A model trained by the comparison, fully described by its validated ``RunConfig``."""

    label: str
    config: RunConfig
    source: ClassVar[str] = "trained"

    @property
    def family(self) -> str:
        """The registered model name."""
        return self.config.model.name

    def obtain(self, run_dir: Path, dataset: Dataset, callbacks: Sequence[Callback]) -> Trained:
        """Train into ``run_dir`` with ``probgen.train.fit`` (its time budget stops it)."""
        result = fit(self.config, run_dir, progress=False, callbacks=callbacks, dataset=dataset)
        seconds = result.history[-1]["elapsed"] if result.history else result.wall_time
        return Trained(
            result.model, result.history, seconds, result.steps, result.stop_reason, result.threads
        )


@dataclass(frozen=True)
class LoadedEntry:
    """A model loaded from a run folder of ``probgen train`` (config.yaml + checkpoint/)."""

    label: str
    run_dir: Path
    config: RunConfig
    source: ClassVar[str] = "loaded"

    @property
    def family(self) -> str:
        """The registered model name."""
        return self.config.model.name

    def obtain(self, run_dir: Path, dataset: Dataset, callbacks: Sequence[Callback]) -> Trained:
        """Load the checkpoint; training time and steps come from the run's history.json."""
        model, _, _ = load_run(self.run_dir)
        history_file = self.run_dir / "history.json"
        history = json.loads(history_file.read_text()) if history_file.is_file() else []
        last = history[-1] if history else {}
        return Trained(model, history, last.get("elapsed", math.nan), last.get("step", 0), "loaded")


ModelEntry = TrainedEntry | LoadedEntry
"""One row of the comparison."""


@dataclass(frozen=True)
class CompareConfig:
    """A validated comparison: data, model entries and evaluation settings."""

    data: ComponentConfig
    models: tuple[ModelEntry, ...]
    name: str = "compare"
    seed: int = 0
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    workers: int = 1
    """Worker processes that train and evaluate the entries in parallel (1: this process)."""
    source: dict[str, Any] = field(default_factory=dict)
    """The YAML mapping the config was read from (after overrides), written with the results."""


def applicable_models(spec: DataSpec) -> list[str]:
    """Registered model names whose ``for_data(spec)`` builds, sorted.

    A family that rejects the data (``ProbgenError`` or ``TypeError``, e.g. an
    image-only model on 2-D points), or has no conditional mode for data with
    a condition, is left out, so new registry entries are picked up without
    code changes.
    """
    names = []
    for name in MODELS.names():
        try:
            model = build_model(name, spec)
        except (ProbgenError, TypeError, ValueError):
            continue
        if spec.condition is not None and model.condition_spec is None:
            continue  # no conditional mode (yet): it cannot learn p(x | c)
        names.append(name)
    return names


def load_compare_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> CompareConfig:
    """Read a comparison YAML (the embedded default when ``path`` is None) and validate it.

    Without a ``path``, a data set named in ``overrides`` that has its own
    embedded default (``probgen/compare/<name>.yaml``, e.g. ``digits.yaml``)
    starts from that file instead of ``default.yaml``. ``overrides`` maps
    top-level keys to values that replace the file's (``{"models":
    ["gaussian", "vae"], "total_time_budget": 30}``). Raises
    ``ConfigError`` with a one-line message naming the problem.
    """
    raw = _read(path, _embedded_default(overrides or {}))
    raw.update(copy.deepcopy(overrides or {}))
    unknown = sorted(set(raw) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r}; valid keys: {', '.join(_TOP_KEYS)}")
    name = _typed(raw, "name", str, "compare")
    seed = _typed(raw, "seed", int, 0)
    data = _component(raw.get("data"), "data")
    if data.name not in DATASETS:
        choices = ", ".join(DATASETS.names())
        raise ConfigError(f"data.name: unknown data set {data.name!r}; choose one of: {choices}")
    train = _mapping(raw.get("train"), "train")
    families = _mapping(raw.get("families"), "families")
    evaluation = _evaluation(_mapping(raw.get("evaluation"), "evaluation"))
    items = _model_items(raw.get("models", REGISTERED), data)
    budget = _budget(raw, sum("run" not in item for item in items))
    workers = _workers(raw.get("workers", 1), len(items))
    shared = _Shared(name, seed, data, train, families, budget, workers)
    entries = [
        _loaded(item, data, f"models[{i}]") if "run" in item else _trained(item, shared, i)
        for i, item in enumerate(items)
    ]
    labels = [e.label for e in entries]
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise ConfigError(
            f"models: label {duplicates[0]!r} is used twice; give each entry its own 'label'"
        )
    if not entries:
        raise ConfigError("models: the list is empty; name at least one model")
    return CompareConfig(
        data=data,
        models=tuple(entries),
        name=name,
        seed=seed,
        evaluation=evaluation,
        workers=workers,
        source=raw,
    )


# ----------------------------------------------------------------------------- helpers


def _embedded_default(overrides: dict[str, Any]) -> str:
    """``<data name>.yaml`` when the package embeds one for the overridden data set, else the
    default's file name."""
    data = overrides.get("data")
    name = data.get("name") if isinstance(data, dict) else data  # {name: …} or the name
    own = f"{name}.yaml"
    if isinstance(name, str) and resources.files("probgen.compare").joinpath(own).is_file():
        return own
    return DEFAULT_CONFIG


def _read(path: str | Path | None, embedded: str = DEFAULT_CONFIG) -> dict[str, Any]:
    """The mapping of the YAML at ``path``, or of the package's file ``embedded`` if None."""
    if path is None:
        text = resources.files("probgen.compare").joinpath(embedded).read_text()
        where = f"the default comparison ({embedded})"
    else:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read comparison config {path}: {e.strerror}") from e
        where = f"comparison config {path}"
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(e).split())}") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{where}: expected a mapping at top level, got {loaded!r}")
    return loaded


def _typed(raw: dict[str, Any], key: str, tp: type, default: Any) -> Any:
    value = raw.get(key, default)
    if not isinstance(value, tp) or isinstance(value, bool):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    return value


def _component(value: Any, key: str) -> ComponentConfig:
    if isinstance(value, str):
        return ComponentConfig(value)
    value = _mapping(value, key)
    if set(value) - {"name", "options"} or not isinstance(value.get("name"), str):
        raise ConfigError(f"{key}: expected a name or {{name: ..., options: {{...}}}}, got {value}")
    return ComponentConfig(value["name"], dict(_mapping(value.get("options"), f"{key}.options")))


def _evaluation(raw: dict[str, Any]) -> EvaluationConfig:
    known = EvaluationConfig.__dataclass_fields__
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown key 'evaluation.{unknown[0]}'; valid keys: {', '.join(sorted(known))}"
        )
    config = EvaluationConfig(**raw)
    if config.split not in SPLITS:
        raise ConfigError(
            f"evaluation.split: unknown split {config.split!r}; choose one of: {', '.join(SPLITS)}"
        )
    for key in ("n_samples", "heatmap_resolution"):
        value = getattr(config, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise ConfigError(f"evaluation.{key}: expected an integer >= 2, got {value!r}")
    return config


def _model_items(value: Any, data: ComponentConfig) -> list[dict[str, Any]]:
    if value == REGISTERED:
        spec = DATASETS.get(data.name)(**data.options).spec
        return [{"name": n} for n in applicable_models(spec)]
    if not isinstance(value, list):
        raise ConfigError(f"models: expected {REGISTERED!r} or a list of entries, got {value!r}")
    items = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise ConfigError(f"models[{i}]: expected a name or a mapping, got {item!r}")
        allowed = {"run", "label"} if "run" in item else {"name", "label", "options", "train"}
        extra = sorted(set(item) - allowed)
        if extra:
            raise ConfigError(
                f"models[{i}]: unknown key {extra[0]!r}; valid keys: {', '.join(sorted(allowed))}"
            )
        items.append(item)
    return items


def _label(item: dict[str, Any], default: str, where: str) -> str:
    label = item.get("label", default)
    if not isinstance(label, str) or not _LABEL.match(label):
        raise ConfigError(
            f"{where}.label: expected letters, digits and _.+- (it names a folder), got {label!r}"
        )
    return label


@dataclass(frozen=True)
class _Shared:
    """Settings every trained entry starts from."""

    name: str
    seed: int
    data: ComponentConfig
    train: dict[str, Any]
    families: dict[str, Any]
    budget: float | None
    workers: int


def _trained(item: dict[str, Any], shared: _Shared, i: int) -> TrainedEntry:
    """A trained entry: shared train < families[name] < the entry, then the time budget."""
    where = f"models[{i}]"
    family = item.get("name")
    if not isinstance(family, str):
        raise ConfigError(f"{where}: expected a model 'name' or a 'run' folder, got {item}")
    defaults = _mapping(shared.families.get(family), f"families.{family}")
    extra = sorted(set(defaults) - {"options", "train"})
    if extra:
        raise ConfigError(
            f"families.{family}: unknown key {extra[0]!r}; valid keys: options, train"
        )
    options = {
        **_mapping(defaults.get("options"), f"families.{family}.options"),
        **_mapping(item.get("options"), f"{where}.options"),
    }
    train = copy.deepcopy(shared.train)
    for update in (defaults.get("train"), item.get("train")):
        _merge(train, copy.deepcopy(_mapping(update, f"{where}.train")))
    if shared.budget is not None:
        train.update(time_budget=shared.budget, steps=TIME_BUDGET_STEPS)
    if shared.workers > 1:
        train.setdefault("threads", 1)  # one core per worker
    label = _label(item, family, where)
    run = {
        "name": f"{shared.name}-{label}",
        "seed": shared.seed,
        "model": {"name": family, "options": options},
        "data": {"name": shared.data.name, "options": dict(shared.data.options)},
        "train": train,
    }
    try:
        return TrainedEntry(label, load_config(None, run))
    except ConfigError as e:
        raise ConfigError(f"model {label!r}: {e}") from e


def _budget(raw: dict[str, Any], n_trained: int) -> float | None:
    per_model, total = raw.get("time_budget"), raw.get("total_time_budget")
    for key, value in (("time_budget", per_model), ("total_time_budget", total)):
        if value is not None and (
            not isinstance(value, int | float) or isinstance(value, bool) or not value > 0
        ):
            raise ConfigError(f"{key}: expected a positive number of seconds, got {value!r}")
    if per_model is not None and total is not None:
        raise ConfigError("time_budget and total_time_budget exclude each other; set one")
    if total is not None and n_trained:
        return float(total) / n_trained
    return None if per_model is None else float(per_model)


def _workers(value: Any, n_entries: int) -> int:
    """``auto``: one process per core, no more than there are entries; or the integer given."""
    if value == "auto":
        return max(1, min(available_cores(), n_entries))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"workers: expected 'auto' or an integer ≥ 1, got {value!r}")
    return value


def _loaded(item: dict[str, Any], data: ComponentConfig, where: str) -> LoadedEntry:
    run_dir = Path(str(item["run"]))
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"{where}.run: {run_dir} is not a run folder ({config_file} is missing)")
    config = load_config(config_file)
    # The data set must be the same (for a file, the same file); its options (split
    # sizes, say) may differ, as every model is evaluated on the comparison's own data.
    trained, compared = _data_label(config.data), _data_label(data)
    if trained != compared:
        raise ConfigError(
            f"{where}.run: {run_dir} was trained on {trained}, not on the comparison's {compared}"
        )
    return LoadedEntry(_label(item, run_dir.name, where), run_dir, config)


def data_title(config: CompareConfig) -> str:
    """The compared data's name in reports: the registered name, or the file's name
    (basename) for ``--data PATH``, whose full path is ``data_file(name, options)``."""
    path = data_file(config.data.name, config.data.options)
    return config.data.name if path is None else path.name


def _data_label(data: ComponentConfig) -> str:
    """The data set's name, or the file's absolute path for the ``file`` data set."""
    path = data_file(data.name, data.options)
    return data.name if path is None else str(path.resolve())


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
