"""Your own data from a file or a folder: the ``file`` data set behind ``--data PATH``.

``load_file(path, ...)`` reads, by the path's suffix (docs/data.md, "Your own files"):

    .csv .tsv .parquet         a table: columns by name          (pandas / pyarrow)
    .npy                       an array: columns "0", "1", …       (NumPy, no pickles)
    .npz .safetensors          named arrays                        (NumPy / safetensors)
    a folder of .png/.jpg      images (N, C, H, W), labels from subfolders   (Pillow)
    .txt .text                 characters as tokens (``TextCorpus``)

and picks x (``columns``), the condition (a class ``label`` column, or
``condition`` columns for a continuous vector), the ``levels`` and a seeded
train / validation / test split. Every bad file gets a one-line error naming
the file and the row or column.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.data.arrays import split_rows
from probgen.data.base import ArrayDataset, Dataset
from probgen.data.files import MissingDataFile
from probgen.data.images import IMAGE_SUFFIXES, read_image_folder
from probgen.data.tables import TABLE_READERS, Table, read_table
from probgen.data.text import TextCorpus

__all__ = [
    "AUTO",
    "FILE_SUFFIXES",
    "TEXT_SUFFIXES",
    "FileData",
    "data_config",
    "data_file",
    "load_file",
]

AUTO = "auto"
"""The default of ``label`` and ``levels``: chosen by the kind of file (see ``load_file``)."""

TEXT_SUFFIXES = (".txt", ".text")
"""Files read as text, one token per character."""

FILE_SUFFIXES = (*TABLE_READERS, *TEXT_SUFFIXES)
"""Every suffix ``load_file`` reads (besides a folder of images)."""

IMAGE_LEVELS = 256
"""Levels of 8-bit pixels: an image folder is ordinal discrete data 0…255 by default."""

Names = Sequence[str | int] | str | int | None


class FileData(ArrayDataset):
    """A data set read from a user's file: an ``ArrayDataset`` that remembers where from.

    Attributes:
        path: the file or folder.
        columns: the names of the columns (or arrays) that make up x.
        class_names: the name of each class label k (string labels of a
            table, subfolders of an image folder); empty for integer labels.
    """

    def __init__(
        self,
        train: Tensor,
        validation: Tensor,
        test: Tensor,
        spec: DataSpec,
        conditions: tuple[Tensor, Tensor, Tensor] | None = None,
        *,
        path: Path,
        columns: tuple[str, ...],
        class_names: tuple[str, ...] = (),
    ) -> None:
        super().__init__(train, validation, test, spec, conditions)
        self.path, self.columns, self.class_names = path, columns, class_names


def load_file(
    path: str | os.PathLike[str],
    columns: Names = None,
    label: str | int | None = AUTO,
    classes: int | None = None,
    condition: Names = None,
    levels: int | str | None = AUTO,
    validation: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    header: bool = True,
    context: int = 64,
) -> Dataset:
    """The data set in the file or folder at ``path``, by its suffix.

    Args:
        path: a table or array file, a text file, or a folder of images.
        columns: the columns (arrays of .npz/.safetensors) that make up x, in
            order; default all but the condition and row-name columns.
            Several columns of shape (N,) or (N, d) are put side by side.
        label: a column of class labels, the condition c ∈ {0, …, K−1}:
            integers, or strings (classes numbered in sorted order). ``auto``:
            none for tables; for an image folder, the subfolder names (when
            there are two or more). ``None``: unconditional.
        classes: K, the number of classes (default max(label) + 1, or the
            number of distinct strings).
        condition: columns making a continuous condition vector c, (N, d).
        levels: ``None`` (continuous, the default of tables) or K: every entry
            of x an integer 0…K−1 (ordinal levels, served as floats).
            ``auto``: 256 for an image folder, continuous otherwise.
        validation: the fraction of the rows in the validation split, drawn by
            a permutation seeded ``seed`` (``split_rows``); text is split in
            file order (train | validation | test) and ignores ``seed``.
        test: the fraction of the rows in the test split, drawn likewise.
        header: CSV/TSV only: whether the first line names the columns
            (without one, columns are named 0, 1, …).
        context: text only: the window of tokens of one example.

    Raises ``MissingDataFile``, ``CorruptDataFile`` or ``InvalidInput`` with one
    line naming the file and the row, column or option at fault.
    """
    path = Path(path).expanduser()
    given = {
        name: value
        for name, value in locals().items()
        if name in _DEFAULTS and not _same(value, _DEFAULTS[name])
    }
    if path.is_dir():
        _only(path, "an image folder", given, ("label", "levels", "validation", "test", "seed"))
        return _images(path, label, levels, validation, test, seed)
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        _only(path, "a text file", given, ("context", "validation", "test"))
        train = 1.0 - validation - test
        return TextCorpus(path, context=context, train_fraction=train, test_fraction=test)
    if suffix not in TABLE_READERS:
        if not path.exists():
            raise MissingDataFile(f"{path}: no such file or folder")
        what = (
            "a single image: give the folder of images"
            if suffix in IMAGE_SUFFIXES
            else f"unknown file type {suffix or '(no suffix)'!r}"
        )
        raise InvalidInput(
            f"{path}: {what}; probgen reads {', '.join(FILE_SUFFIXES)} files and folders of images"
        )
    table_options = ["columns", "label", "classes", "condition", "levels", "validation", "test"]
    table_options += ["seed", "header"] if suffix in (".csv", ".tsv") else ["seed"]
    _only(path, f"a {suffix} file", given, table_options)
    table = read_table(path, header)
    return _table(table, columns, label, classes, condition, levels, validation, test, seed)


def data_config(text: str) -> dict[str, Any]:
    """The ``data`` config section that ``--data TEXT`` stands for.

    A registered data set name (``digits``) is that data set, even when a
    folder of that name exists here (write ``./digits`` for the folder);
    anything else that exists, or ends in a suffix ``load_file`` knows, is
    ``{name: file, options: {path: <absolute path>}}``, so the resolved
    config reruns from any folder.
    """
    from probgen.registry import DATASETS, UnknownName

    path = Path(text).expanduser()
    if text in DATASETS and os.sep not in text:
        return {"name": text}
    if path.exists() or path.suffix.lower() in (*FILE_SUFFIXES, *IMAGE_SUFFIXES):
        return {"name": "file", "options": {"path": str(path.resolve())}}
    raise UnknownName(
        f"--data {text!r}: no such file or folder, and not a registered data set; choose one "
        f"of: {', '.join(DATASETS.names())}, or a {', '.join(FILE_SUFFIXES)} file or image folder"
    )


def data_file(name: str, options: Mapping[str, Any]) -> Path | None:
    """The file or folder the data section ``{name, options}`` reads: its ``path`` for the
    ``file`` data set, None for a registered one."""
    path = options.get("path") if name == "file" else None
    return None if path is None else Path(str(path))


# ----------------------------------------------------------------------------- options

_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(load_file).parameters.items()
    if p.default is not inspect.Parameter.empty
}


def _same(value: Any, default: Any) -> bool:
    return value is default or (type(value) is type(default) and value == default)


def _only(path: Path, kind: str, given: dict[str, Any], allowed: Sequence[str]) -> None:
    """Reject the options given that mean nothing for this kind of file."""
    extra = [name for name in given if name not in allowed]
    if extra:
        raise InvalidInput(
            f"{path}: option {extra[0]!r} does not apply to {kind}; its options: "
            f"{', '.join(allowed)}"
        )


def _listed(names: Names) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str | int):
        return [str(names)]
    return [str(n) for n in names]


def _entry(table: Table, name: str, option: str) -> str:
    if name not in table.entries:
        raise InvalidInput(
            f"{table.path}: {option}: no {table.unit} {name!r}; it has {', '.join(table.entries)}"
        )
    return name


# ----------------------------------------------------------------------------- tables


def _table(
    table: Table,
    columns: Names,
    label: str | int | None,
    classes: int | None,
    condition: Names,
    levels: int | str | None,
    validation: float,
    test: float,
    seed: int,
) -> FileData:
    """x, c and the splits of a table's columns (``load_file``'s table options)."""
    label_name = None if label is None or label == AUTO else _entry(table, str(label), "label")
    condition_names = [_entry(table, n, "condition") for n in _listed(condition)]
    if label_name is not None and condition_names:
        raise InvalidInput(
            f"{table.path}: give label (a class column) or condition (a vector), not both"
        )
    if label_name is None and classes is not None:
        raise InvalidInput(f"{table.path}: classes applies to a label column: give label= too")
    taken = {label_name, *condition_names}
    if columns is None:
        x_names = [n for n in table.entries if n not in taken and n not in table.row_names]
    else:
        x_names = [_entry(table, n, "columns") for n in _listed(columns)]
        both = [n for n in x_names if n in taken]
        if both:
            raise InvalidInput(f"{table.path}: {table.describe(both[0])} is both x and condition")
    if not x_names:
        raise InvalidInput(f"{table.path}: no {table.unit}s left for x")
    x = _numbers(table, x_names)
    k = _levels(table, x_names, levels)
    c_spec, c, class_names = None, None, ()
    if label_name is not None:
        c_spec, c, class_names = _labels(table, label_name, classes)
    elif condition_names:
        vector = _numbers(table, condition_names)
        c_spec = ConditionSpec(shape=vector.shape[1:])
        c = torch.from_numpy(vector).to(torch.get_default_dtype())
    x_tensor = torch.from_numpy(x).to(torch.get_default_dtype())
    spec = DataSpec(tuple(x_tensor.shape[1:]), levels=k, condition=c_spec)
    make = functools.partial(
        FileData, path=table.path, columns=tuple(x_names), class_names=class_names
    )
    return split_rows(x_tensor, c, spec, validation, test, seed, name=str(table.path), make=make)


def _numbers(table: Table, names: list[str]) -> np.ndarray:
    """The named entries as one float64 array: ``(N, *shape)`` for one entry, else the
    entries side by side, ``(N, D)``. Non-numeric entries and NaN / inf raise."""
    arrays = [_numeric(table, n) for n in names]
    _first_bad(table, names, [~np.isfinite(a) for a in arrays], "NaN or infinite value(s)")
    if len(arrays) == 1:
        a = arrays[0]
        return a[:, None] if a.ndim == 1 else a
    for name, a in zip(names, arrays, strict=True):
        if a.ndim > 2:
            raise InvalidInput(
                f"{table.path}: {table.describe(name)} has shape {a.shape[1:]} per row and "
                "cannot stand beside other entries; choose it alone with columns"
            )
    return np.concatenate([a.reshape(len(a), -1) for a in arrays], axis=1)


def _numeric(table: Table, name: str) -> np.ndarray:
    """One entry as float64; strings must all parse as numbers."""
    a = table.entries[name]
    if a.dtype == np.bool_ or a.dtype.kind in "iuf":
        return a.astype(np.float64)
    if a.dtype.kind not in "OSU":
        raise InvalidInput(f"{table.path}: {table.describe(name)} is not numeric (dtype {a.dtype})")
    import pandas as pd

    values = pd.Series(a, dtype=object)
    parsed = pd.to_numeric(values, errors="coerce")
    bad = np.flatnonzero(values.notna().to_numpy() & parsed.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise InvalidInput(
            f"{table.path}: {table.describe(name)} is not numeric: {table.where(i)} holds {a[i]!r}"
        )
    return parsed.to_numpy(dtype=np.float64, na_value=np.nan)


def _first_bad(table: Table, names: list[str], masks: list[np.ndarray], what: str) -> None:
    """Raise naming the count of ``what`` and the first row and entry where a mask holds."""
    count = sum(int(m.sum()) for m in masks)
    if not count:
        return
    rows = [np.flatnonzero(m.reshape(len(m), -1).any(axis=1)) for m in masks]
    row = min(int(r[0]) for r in rows if len(r))
    name = next(n for n, r in zip(names, rows, strict=True) if len(r) and r[0] == row)
    raise InvalidInput(
        f"{table.path}: {count} {what} in {table.unit}s {', '.join(names)}; the first at "
        f"{table.where(row)}, {table.describe(name)}"
    )


def _levels(table: Table, names: list[str], levels: int | str | None) -> int | None:
    """K when x holds integers 0…K−1 (checked entry by entry), None for continuous x."""
    if levels is None or levels == AUTO:
        return None
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise InvalidInput(f"{table.path}: levels must be null or an integer >= 2, got {levels!r}")
    arrays = [_numeric(table, n) for n in names]
    outside = [(a != np.floor(a)) | (a < 0) | (a >= levels) for a in arrays]
    what = f"value(s) not an integer in 0..{levels - 1} (levels={levels})"
    _first_bad(table, names, outside, what)
    return levels


def _labels(
    table: Table, name: str, classes: int | None
) -> tuple[ConditionSpec, Tensor, tuple[str, ...]]:
    """Class labels (N,) int64 from a column of integers or of strings, checked against K."""
    a = table.entries[name]
    where = f"{table.path}: label {table.describe(name)}"
    if a.ndim != 1:
        raise InvalidInput(f"{where} must be one value per row, got shape {a.shape[1:]} per row")
    names: tuple[str, ...] = ()
    if a.dtype.kind in "OSU" and _has_text(a):
        missing = np.flatnonzero([v is None or v != v for v in a])  # None or NaN
        if len(missing):
            raise InvalidInput(f"{where} has no value at {table.where(int(missing[0]))}")
        names = tuple(sorted({str(v) for v in a}))
        ids = np.searchsorted(np.array(names), np.array([str(v) for v in a]))
    else:
        values = _numeric(table, name)
        _first_bad(table, [name], [~np.isfinite(values)], "missing, NaN or infinite label(s)")
        _first_bad(table, [name], [values != np.round(values)], "label(s) not an integer")
        ids = values.astype(np.int64)
    k = classes if classes is not None else max(int(ids.max()) + 1, len(names), 2)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise InvalidInput(f"{table.path}: classes must be an integer >= 2, got {classes!r}")
    outside = np.flatnonzero((ids < 0) | (ids >= k))
    if len(outside):
        i = int(outside[0])
        given = f" (classes={classes})" if classes is not None else ""
        held = a[i] if names else int(ids[i])
        raise InvalidInput(
            f"{where} out of range: {table.where(i)} holds {held!r}; labels must lie in "
            f"0..{k - 1}{given}"
        )
    return ConditionSpec(classes=k), torch.from_numpy(ids.astype(np.int64)), names


def _has_text(a: np.ndarray) -> bool:
    """Whether an object/string column holds a value that is not a number."""
    import pandas as pd

    values = pd.Series(a, dtype=object)
    return bool((values.notna() & pd.to_numeric(values, errors="coerce").isna()).any())


# ----------------------------------------------------------------------------- images


def _images(
    folder: Path,
    label: str | int | None,
    levels: int | str | None,
    validation: float,
    test: float,
    seed: int,
) -> FileData:
    """Pixels (N, C, H, W) with K = 256 levels by default; subfolders as class labels."""
    if label not in (AUTO, None):
        raise InvalidInput(
            f"{folder}: label of an image folder is auto (the subfolder names) or null, "
            f"got {label!r}"
        )
    images = read_image_folder(folder)
    k = IMAGE_LEVELS if levels == AUTO else levels
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= IMAGE_LEVELS:
            raise InvalidInput(f"{folder}: levels must be null or an integer in 2..256, got {k!r}")
        high = int(images.pixels.max())
        if high >= k:
            i = int(np.flatnonzero(images.pixels.reshape(len(images.pixels), -1).max(1) >= k)[0])
            raise InvalidInput(
                f"{folder}: pixel value {high} >= levels={k}, first in {images.files[i].name}"
            )
    labelled = label == AUTO and len(images.classes) >= 2
    c_spec = ConditionSpec(classes=len(images.classes)) if labelled else None
    c = torch.from_numpy(images.labels) if labelled and images.labels is not None else None
    x = torch.from_numpy(images.pixels).to(torch.get_default_dtype())
    spec = DataSpec(tuple(x.shape[1:]), levels=k, condition=c_spec)
    names = images.classes if labelled else ()
    make = functools.partial(FileData, path=folder, columns=("pixels",), class_names=names)
    return split_rows(x, c, spec, validation, test, seed, name=str(folder), make=make)
