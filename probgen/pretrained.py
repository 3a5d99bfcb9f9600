"""Shareable models: a folder with config.json, model.safetensors and a README.md model card.

    model.save_pretrained("my-flow")            # or probgen.save_pretrained(model, ...)
    model = probgen.from_pretrained("my-flow")   # the same model, bit for bit
    model = probgen.load("runs/flow")            # the model of a finished run

Layout (the Hugging Face Hub's: ``huggingface_hub.upload_folder`` uploads it
as it is, and ``snapshot_download`` gives back a folder to load)::

    config.json         format and library versions, the family and its options,
                        the data spec (event shape, levels, condition), the data
                        map, the weights' dtype and SHA-256, provenance (data
                        set, run config, metrics) when known
    model.safetensors   every parameter and persistent buffer (the data map too)
    README.md           the model card: YAML front matter (library_name, tags),
                        family, data, likelihood kind, metrics, how it was trained

Loading reads JSON and safetensors only, so it never unpickles (no code in a
downloaded file can run). The model is rebuilt by ``build_model`` from the
record and its weights loaded strictly: every key, shape and dtype must match.
A new folder is written atomically (a temporary sibling renamed into place);
into an existing folder (a clone of a Hub repository) each file is renamed
into place, the weights first and config.json last, and the weights' SHA-256
in config.json catches a save that was interrupted between the two.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model

from probgen.core import ConditionSpec, DataSpec, GenerativeModel, InvalidInput
from probgen.model_card import model_card
from probgen.models.build import BuildRecord, build_model
from probgen.models.wrapper import DataWrapper
from probgen.registry import MODELS
from probgen.train.checkpoint import CheckpointError, atomic_directory, fsync_dir, fsync_file

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "PretrainedVersionWarning",
    "Provenance",
    "from_pretrained",
    "load",
    "read_pretrained_config",
    "save_pretrained",
]

FORMAT_VERSION = 1
"""Version of the folder layout and of config.json's keys; a reader refuses any other."""

CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"


class PretrainedVersionWarning(UserWarning):
    """A folder saved by another probgen version: it loads, but the family's code may differ."""


@dataclass(frozen=True)
class Provenance:
    """Where a model came from, for its card: the data set, the run and its metrics.

    ``data`` is ``{"name", "options"}`` of a registered data set; ``run`` is
    ``{"name", "steps", "elapsed", "config"}`` with the run's resolved config
    (what ``probgen train config.yaml`` reruns); ``metrics`` is the run's
    metrics.json (``{split: {metric: {value, stderr, kind, unit}}}``).
    ``probgen.load`` sets it as a model's ``provenance``; ``from_pretrained``
    restores it, so a folder saved again keeps its card.
    """

    data: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None


def save_pretrained(
    model: GenerativeModel,
    directory: str | os.PathLike[str],
    *,
    record: BuildRecord | None = None,
    provenance: Provenance | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a pretrained folder at ``directory`` (see the module docstring).

    Args:
        model: a model as ``build_model`` (or ``probgen.load``, ``from_pretrained``)
            returns it, which carries its ``build_record``.
        directory: the folder; created if missing. An existing folder keeps its
            other files (e.g. a Hub clone's ``.git``).
        record: how to build the model again, for a model built otherwise
            (e.g. ``BuildRecord("realnvp", DataSpec((2,)), {"transforms": 4})``).
        provenance: data set, run and metrics for the card (default: the
            model's ``provenance`` attribute, when it has one).
        overwrite: replace config.json, model.safetensors and README.md when
            the folder already holds any of them.

    Returns the folder's path. Raises ``InvalidInput`` for a model without a
    record, options that are not JSON data, a record that does not rebuild the
    model (same parameter and buffer names, shapes and dtypes), or a folder
    that holds these files and ``overwrite`` is False.
    """
    directory = Path(directory)
    record = record or getattr(model, "build_record", None)
    if record is None:
        raise InvalidInput(
            f"save_pretrained: {type(model).__name__} carries no build_record (it was not "
            "built by build_model); pass record=BuildRecord(family, spec, options)"
        )
    provenance = provenance or getattr(model, "provenance", None) or Provenance()
    config = _config(model, record, provenance)
    _check_rebuilds(model, config)
    existing = [n for n in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME) if (directory / n).exists()]
    if existing and not overwrite:
        raise InvalidInput(
            f"save_pretrained: {directory / existing[0]} exists; pass overwrite=True "
            "(probgen export --overwrite) to replace it, or choose another folder"
        )
    with _new_files(directory) as tmp:
        save_model(model, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        config["weights_sha256"] = _sha256(tmp / WEIGHTS_NAME)
        (tmp / CARD_NAME).write_text(model_card(config))
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1) + "\n")
    return directory


def from_pretrained(directory: str | os.PathLike[str], *, device: str = "cpu") -> GenerativeModel:
    """The model saved in ``directory`` by ``save_pretrained``, in eval mode, on ``device``.

    Reads config.json and model.safetensors only (no pickle). Raises
    ``CheckpointError`` for a missing or unreadable folder, another format
    version, or weights that do not match the config; warns
    (``PretrainedVersionWarning``) when another probgen version saved it.
    """
    directory = Path(directory)
    config = read_pretrained_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory} is not a pretrained folder: {weights} is missing")
    if _sha256(weights) != config["weights_sha256"]:
        raise CheckpointError(
            f"{weights} does not match {directory / CONFIG_NAME} (its SHA-256 differs): the "
            "folder was changed after saving or a save was interrupted; save it again"
        )
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"cannot read {weights}: {e}") from e
    model = _rebuild(config)
    _check_state(
        model, state, f"{weights} does not fit the {type(model).__name__} config.json builds"
    )
    model.load_state_dict(_tied(model, state))
    model.provenance = Provenance(**{k: config.get(k) for k in ("data", "run", "metrics")})
    return model.to(device).eval()


def read_pretrained_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """config.json of a pretrained folder, checked: its format version and required keys.

    Raises ``CheckpointError`` (missing or invalid file, another format version,
    a missing key) and warns (``PretrainedVersionWarning``) for another library version.
    """
    file = Path(directory) / CONFIG_NAME
    if not file.is_file():
        raise CheckpointError(f"{directory} is not a pretrained folder: {file} is missing")
    try:
        config = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(config, dict) or config.get("library") != "probgen":
        raise CheckpointError(f'{file} was not written by probgen (no "library": "probgen")')
    version, saved_by = config.get("format_version"), config.get("library_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise CheckpointError(
            f"{file} has format version {version!r} (written by probgen {saved_by}); this "
            f"probgen ({_library_version()}) reads version {FORMAT_VERSION}: "
            + ("upgrade probgen" if newer else f"load it with probgen {saved_by} and save it again")
        )
    missing = [k for k in _REQUIRED if k not in config]
    if missing:
        raise CheckpointError(f"{file}: missing key {missing[0]!r}")
    if saved_by != _library_version():
        warnings.warn(
            f"{file} was saved by probgen {saved_by}, this is probgen {_library_version()}: "
            "it loads, but samples and densities may differ if the family's code changed",
            PretrainedVersionWarning,
            stacklevel=3,
        )
    return config


def load(run_dir: str | os.PathLike[str]) -> GenerativeModel:
    """The trained model of a finished run folder (``probgen train``, ``probgen compare``).

    The weights ``probgen.train.load_run`` gives: the EMA copy when the run
    used EMA, the best validation's when early stopping kept them. The model
    carries its ``provenance`` (data set, resolved config, steps, metrics.json),
    so ``save_pretrained`` writes them into the card.
    """
    from probgen.train import config_to_dict, load_run  # the engine's imports load on use

    run_dir = Path(run_dir)
    model, config, _ = load_run(run_dir)
    history = _json_or_none(run_dir / "history.json") or [{}]
    last = history[-1] if isinstance(history, list) and history else {}
    model.provenance = Provenance(
        data={"name": config.data.name, "options": config.data.options},
        run={
            "name": config.name,
            "steps": last.get("step"),
            "elapsed": last.get("elapsed"),
            "config": config_to_dict(config),
        },
        metrics=_json_or_none(run_dir / "metrics.json"),
    )
    return model


# ----------------------------------------------------------------------------- config.json

_REQUIRED = ("family", "options", "spec", "data_map", "dtype", "weights_sha256")


def _config(model: GenerativeModel, record: BuildRecord, provenance: Provenance) -> dict[str, Any]:
    from probgen.train import standardization_record

    MODELS.target(record.family)  # an unknown family fails here, with the valid names
    return {
        "library": "probgen",
        "format_version": FORMAT_VERSION,
        "library_version": _library_version(),
        "family": record.family,
        "family_class": MODELS.target(record.family),
        "structure": _structure(model),
        "options": _json_options(record.options, record.family),
        "spec": _spec_to_json(record.spec),
        "data_map": standardization_record(model),
        "likelihood": model.likelihood.value,
        "dtype": str(_dtype(model)).removeprefix("torch."),
        "parameters": sum(p.numel() for p in model.parameters()),
        **{k: v for k, v in dataclasses.asdict(provenance).items()},
    }


def _structure(model: GenerativeModel) -> str:
    """The data wrappers around the family: ``"Standardized(RealNVP)"``, ``"Dequantized(NSF)"``."""
    if isinstance(model, DataWrapper):
        return f"{type(model).__name__}({_structure(model.model)})"
    return type(model).__name__


def _json_options(options: Mapping[str, Any], family: str) -> dict[str, Any]:
    """The options as JSON data (tuples become lists); InvalidInput names one that is not."""
    out = {}
    for key, value in options.items():
        try:
            out[key] = json.loads(json.dumps(value))
        except (TypeError, ValueError) as e:
            raise InvalidInput(
                f"save_pretrained: option {key!r} of {family!r} is a {type(value).__name__}, "
                "not JSON data (numbers, strings, lists, mappings), so config.json cannot "
                "rebuild it; pass it by name as a config file would"
            ) from e
    return out


def _spec_to_json(spec: DataSpec) -> dict[str, Any]:
    condition = spec.condition
    return {
        "event_shape": list(spec.event_shape),
        "levels": spec.levels,
        "condition": None
        if condition is None
        else {"classes": condition.classes}
        if condition.is_classes
        else {"shape": list(condition.shape or ())},
    }


def _spec_from_json(spec: Mapping[str, Any]) -> DataSpec:
    condition = spec.get("condition")
    return DataSpec(
        event_shape=tuple(spec["event_shape"]),
        levels=spec.get("levels"),
        condition=None if condition is None else ConditionSpec(**condition),
    )


def _rebuild(config: Mapping[str, Any]) -> GenerativeModel:
    """``build_model`` on the record, in the saved dtype, from a fixed seed (the weights follow)."""
    try:
        spec = _spec_from_json(config["spec"])
        dtype = getattr(torch, config["dtype"])
        with _default_dtype(dtype), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return build_model(
                config["family"],
                spec,
                standardize=config["data_map"] or "none",
                **config["options"],
            )
    except (TypeError, KeyError, AttributeError, ValueError) as e:  # InvalidInput is a ValueError
        raise CheckpointError(
            f"config.json cannot rebuild {config.get('family')!r} with options "
            f"{config.get('options')}: {e}"
        ) from e


def _check_rebuilds(model: GenerativeModel, config: Mapping[str, Any]) -> None:
    """InvalidInput unless the config builds a model with ``model``'s tensors (names, shapes)."""
    try:
        rebuilt = _rebuild(config)
    except (CheckpointError, InvalidInput) as e:
        raise InvalidInput(
            f"save_pretrained: the build record does not rebuild the model: {e}"
        ) from e
    lead = (
        f"save_pretrained: this {type(model).__name__} is not what its build record "
        f"({config['family']!r}, options {config['options']}) builds (was it changed after "
        "build_model, e.g. made Bayesian?)"
    )
    _check_state(rebuilt, model.state_dict(), lead, error=InvalidInput)


def _check_state(
    model: GenerativeModel,
    state: Mapping[str, torch.Tensor],
    lead: str,
    error: Callable[[str], Exception] = CheckpointError,
) -> None:
    """``error(lead: the first difference)`` unless ``state`` has ``model``'s tensors.

    Every name, shape and dtype must match; of tied tensors (shared storage)
    one name per group suffices, as safetensors keeps one.
    """
    expected = model.state_dict()
    missing = sorted(
        group[0] for group in _tied_groups(model) if not any(n in state for n in group)
    )
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise error(f"{lead}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for key, tensor in state.items():
        want = expected[key]
        if tensor.shape != want.shape or tensor.dtype != want.dtype:
            raise error(
                f"{lead}: {key} is {tensor.dtype} {tuple(tensor.shape)}, the rebuilt model "
                f"expects {want.dtype} {tuple(want.shape)}"
            )


def _tied_groups(model: torch.nn.Module) -> list[list[str]]:
    """The state's names grouped by shared storage (tied weights); safetensors keeps one each."""
    groups: dict[tuple[int, int, tuple[int, ...]], list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        key = (t.data_ptr(), t.storage_offset(), tuple(t.shape)) if t.numel() else (id(t), 0, ())
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def _tied(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the tied names safetensors left out (each the tensor of its twin)."""
    full = dict(state)
    for group in _tied_groups(model):
        kept = next(n for n in group if n in state)
        full.update({n: state[kept] for n in group if n not in state})
    return full


# ----------------------------------------------------------------------------- files


@contextlib.contextmanager
def _new_files(directory: Path) -> Iterator[Path]:
    """A temporary folder to write the files in; then they take their place in ``directory``.

    A new ``directory`` appears whole (``atomic_directory``); into an existing
    one each file is renamed, config.json last (the module docstring says why).
    """
    if not directory.exists():
        with atomic_directory(directory) as tmp:
            yield tmp
            _shareable(tmp)
        return
    if not directory.is_dir():
        raise InvalidInput(f"save_pretrained: {directory} exists and is not a folder")
    with tempfile.TemporaryDirectory(dir=directory, prefix=".probgen-save-") as name:
        tmp = Path(name)
        yield tmp
        _shareable(tmp)
        for file in (WEIGHTS_NAME, CARD_NAME, CONFIG_NAME):
            fsync_file(tmp / file)
            os.replace(tmp / file, directory / file)
        fsync_dir(directory)


def _shareable(folder: Path) -> None:
    """Give ``folder`` and its files the modes of ordinary ones (rw-r--r-- under umask 022).

    ``mkdtemp`` makes a private folder (0700), which a folder meant for sharing must not be.
    """
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for file in folder.iterdir():
        file.chmod(0o666 & ~umask)


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_or_none(file: Path) -> Any:
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None


def _dtype(model: GenerativeModel) -> torch.dtype:
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _library_version() -> str:
    import probgen  # the package's version is set after its imports

    return probgen.__version__
