"""Finding data files on disk, and the errors raised when they are missing or damaged."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from probgen.core import ProbgenError

__all__ = ["CorruptDataFile", "MissingDataFile", "candidate_dirs", "locate"]

ENV_VAR = "PROBGEN_DATA"


class MissingDataFile(ProbgenError, FileNotFoundError):
    """A data file is not where it was looked for; the message lists where and how to get it."""

    def __str__(self) -> str:  # FileNotFoundError would format (errno, strerror)
        return str(self.args[0])


class CorruptDataFile(ProbgenError, ValueError):
    """A data file exists but cannot be read (truncated, wrong format, bad encoding)."""


def candidate_dirs(root: str | os.PathLike[str] | None, name: str) -> list[Path]:
    """The folders searched for data set ``name``, in order.

    With ``root`` given: ``root`` itself, then ``root/name`` (so both the
    folder holding the files and the folder holding every data set work).
    Otherwise ``$PROBGEN_DATA/name`` when that variable is set, else
    ``./data/name``.
    """
    if root is not None:
        return [Path(root), Path(root) / name]
    env = os.environ.get(ENV_VAR)
    return [Path(env) / name] if env else [Path("data") / name]


def locate(
    root: str | os.PathLike[str] | None,
    name: str,
    files: Sequence[str],
    how_to_get: str,
) -> Path:
    """The first of ``candidate_dirs(root, name)`` that holds every one of ``files``.

    Raises ``MissingDataFile`` naming the files, every folder searched and
    ``how_to_get`` (a sentence saying how to download them).
    """
    dirs = candidate_dirs(root, name)
    for d in dirs:
        if all((d / f).is_file() for f in files):
            return d
    looked = ", ".join(str(d.resolve()) for d in dirs)
    raise MissingDataFile(f"{name}: could not find {', '.join(files)} in {looked}. {how_to_get}")
