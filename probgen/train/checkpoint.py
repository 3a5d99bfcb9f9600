"""Checkpoints without pickle: safetensors for tensors, JSON for the rest, written atomically.

Layout of a checkpoint directory::

    model.safetensors   the model's state_dict
    ema.safetensors     the EMA copy of the model (only when EMA is on)
    state.safetensors   optimizer tensors (``optimizer/<player>/<param>/<key>``)
                        and RNG states (``rng/<name>``), plus any extra tensors
    state.json          step, elapsed time, history, optimizer hyper-parameters

A checkpoint is written into a temporary sibling directory, every file is
fsynced, and only then does the directory take the checkpoint's name, so an
interrupted run leaves the previous checkpoint intact. Nothing is ever
unpickled: safetensors and JSON cannot run code on load.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn
from torch.optim import Optimizer

from probgen.core import ProbgenError

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "atomic_directory",
    "fsync_file",
    "read_checkpoint",
    "write_checkpoint",
]

FORMAT_VERSION = 1


class CheckpointError(ProbgenError, OSError):
    """A checkpoint is missing or unreadable; the message says which file and why."""


@dataclass
class Checkpoint:
    """A checkpoint read from disk: its JSON ``meta`` and the tensors of state.safetensors."""

    path: Path
    meta: dict[str, Any]
    tensors: dict[str, Tensor]

    def has_module(self, name: str) -> bool:
        """Whether ``<name>.safetensors`` was saved (e.g. ``"ema"`` only when EMA was on)."""
        return (self.path / f"{name}.safetensors").is_file()

    def load_module(self, name: str, module: nn.Module) -> None:
        """Load ``<name>.safetensors`` into ``module`` (strict: every key must match)."""
        file = self.path / f"{name}.safetensors"
        try:
            missing, unexpected = load_model(module, file, strict=False, device=_device_of(module))
        except (OSError, SafetensorError) as e:
            raise CheckpointError(f"cannot read {file}: {e}") from e
        if missing or unexpected:
            raise CheckpointError(
                f"{file} does not fit {type(module).__name__}: missing keys "
                f"{sorted(missing)[:5]}, unexpected keys {sorted(unexpected)[:5]}"
            )

    def load_optimizer(self, name: str, optimizer: Optimizer) -> None:
        """Restore an optimizer saved under ``name`` by ``write_checkpoint``."""
        saved = self.meta["optimizers"].get(name)
        if saved is None:
            raise CheckpointError(f"{self.path}: no optimizer state for player {name!r}")
        state: dict[int, dict[str, Any]] = {
            int(pid): dict(values) for pid, values in saved["state"].items()
        }
        prefix = f"optimizer/{name}/"
        for key, tensor in self.tensors.items():
            if key.startswith(prefix):
                pid, _, field = key[len(prefix) :].partition("/")
                state.setdefault(int(pid), {})[field] = tensor
        groups = [
            {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
            for g in saved["param_groups"]
        ]
        optimizer.load_state_dict({"state": state, "param_groups": groups})


def write_checkpoint(
    path: Path,
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, Optimizer],
    tensors: dict[str, Tensor],
    meta: dict[str, Any],
) -> None:
    """Write a checkpoint directory at ``path`` atomically (see the module docstring).

    ``modules`` become ``<name>.safetensors``; ``optimizers`` and ``tensors`` go
    to state.safetensors and state.json; ``meta`` must be JSON-serialisable.
    """
    with atomic_directory(Path(path)) as tmp:
        for name, module in modules.items():
            save_model(module, str(tmp / f"{name}.safetensors"))
        flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        opt_meta = {}
        for name, optimizer in optimizers.items():
            opt_tensors, opt_meta[name] = _flatten_optimizer(optimizer)
            flat.update({f"optimizer/{name}/{k}": v for k, v in opt_tensors.items()})
        save_file(flat, str(tmp / "state.safetensors"))
        record = {"format_version": FORMAT_VERSION, **meta, "optimizers": opt_meta}
        (tmp / "state.json").write_text(json.dumps(record, indent=1))


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to fill; then it is fsynced and takes ``path``'s name.

    Readers see the previous directory or the complete new one, never a torn
    one (see ``_swap_into_place``); on an error the temporary one is removed
    and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for file in tmp.iterdir():
            fsync_file(file)
        fsync_dir(tmp)
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint directory; ``CheckpointError`` if it is missing or unreadable.

    If a crash fell between the two renames of ``write_checkpoint``, the
    previous checkpoint is still at ``<path>.old`` and is read instead.
    """
    path = Path(path)
    if not (path / "state.json").is_file() and (_old(path) / "state.json").is_file():
        path = _old(path)
    state_json = path / "state.json"
    if not state_json.is_file():
        raise CheckpointError(f"no checkpoint at {path} (expected {state_json})")
    try:
        meta = json.loads(state_json.read_text())
        tensors = load_file(str(path / "state.safetensors"))
    except (OSError, ValueError, SafetensorError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable: {e}") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('format_version')!r}; "
            f"this probgen reads version {FORMAT_VERSION}"
        )
    return Checkpoint(path=path, meta=meta, tensors=tensors)


def _flatten_optimizer(optimizer: Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (``<param>/<key>``) and JSON data."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, values in sd["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"{pid}/{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "state": scalars}


def _device_of(module: nn.Module) -> str:
    for t in (*module.parameters(), *module.buffers()):
        return str(t.device)
    return "cpu"


def _old(path: Path) -> Path:
    return path.with_name(path.name + ".old")


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is moved aside first, then removed.

    POSIX cannot rename a directory over a non-empty one, so there is a
    moment with only ``<path>.old``; ``read_checkpoint`` falls back to it.
    """
    old = _old(path)
    if old.exists() and path.exists():  # a crash after the swap left a stale ``old``
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def fsync_file(file: Path) -> None:
    """Flush ``file``'s contents to disk (before a rename makes it visible)."""
    with open(file, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(directory: Path) -> None:
    """Flush ``directory``'s entries (a rename into it) to disk; a no-op on Windows."""
    if not hasattr(os, "O_DIRECTORY"):  # Windows cannot open a directory to sync it
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
