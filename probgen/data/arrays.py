"""A user's own (x, c) arrays from .npy / .npz files, split into train / validation / test.

Files are read with NumPy (``numpy.load(..., allow_pickle=False)``), so a file
can hold numbers only and never runs code.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from probgen.core import ConditionSpec, DataSpec, InvalidInput
from probgen.data.base import ArrayDataset
from probgen.data.files import CorruptDataFile, MissingDataFile

__all__ = ["load_arrays", "read_array", "split_rows"]


def read_array(path: str | os.PathLike[str], key: str) -> np.ndarray:
    """The array in ``path``: a .npy file, or the entry ``key`` of a .npz archive.

    Raises ``MissingDataFile`` for a missing file, ``CorruptDataFile`` for a
    file NumPy cannot read without unpickling, and ``InvalidInput`` for a
    missing key (listing the keys there are).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataFile(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            if key not in loaded.files:
                raise InvalidInput(f"{path}: no array {key!r}; it holds {', '.join(loaded.files)}")
            return loaded[key]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        if isinstance(e, InvalidInput):
            raise
        raise CorruptDataFile(f"{path}: not a NumPy .npy/.npz file of numbers ({e})") from e


def load_arrays(
    path: str,
    conditions: str | None = None,
    key: str = "x",
    condition_key: str = "c",
    validation: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    classes: int | None = None,
    levels: int | None = None,
) -> ArrayDataset:
    """A data set of the rows of x (and their conditions c) read from files.

    Args:
        path: x, a .npy file or a .npz archive holding it under ``key``;
            rows are examples, ``(N, *event_shape)`` (a 1-D array is ``(N, 1)``).
        conditions: c, a .npy or .npz file (under ``condition_key``; it may be
            the same .npz as ``path``), one row per example of x; None for
            unconditional data. Integer c are class labels in 0…K−1 (K =
            ``classes``, or max(c) + 1 when not given; ``ConditionSpec(classes=K)``);
            floating-point c are continuous vectors (a 1-D array is ``(N, 1)``).
        validation: fraction of the rows in the validation split (rounded
            down), chosen by a permutation seeded ``seed``.
        test: fraction of the rows in the test split (rounded down; the rest
            is training).
        classes: the number of classes K of integer c.
        levels: for integer x, the number of levels K (values 0…K−1; default
            max(x) + 1), served as floats holding integers (docs/data.md);
            floating-point x are continuous.

    Raises one-line errors for a missing file, a row count of c that is not
    that of x, NaN or inf (with their count), labels or levels out of range,
    and split fractions that leave no training rows.
    """
    x = _as_rows(read_array(path, key), f"{path}[{key}]")
    spec_levels = _levels(x, levels, f"{path}[{key}]")
    c_spec: ConditionSpec | None = None
    c: Tensor | None = None
    if conditions is not None:
        name = f"{conditions}[{condition_key}]"
        c_array = read_array(conditions, condition_key)
        if len(c_array) != len(x):
            raise InvalidInput(f"{name}: has {len(c_array)} rows but x has {len(x)}")
        c_spec, c = _conditions(c_array, classes, name)
    elif classes is not None:
        raise InvalidInput("classes applies to integer conditions: give conditions= too")
    x_tensor = torch.from_numpy(np.ascontiguousarray(x)).to(torch.get_default_dtype())
    spec = DataSpec(tuple(x_tensor.shape[1:]), levels=spec_levels, condition=c_spec)
    return split_rows(x_tensor, c, spec, validation, test, seed, name=str(path))


def split_rows(
    x: Tensor,
    c: Tensor | None,
    spec: DataSpec,
    validation: float,
    test: float,
    seed: int,
    *,
    name: str,
    make: Callable[..., ArrayDataset] = ArrayDataset,
) -> ArrayDataset:
    """The rows of x (and c) split at random into train / validation / test.

    A permutation π of the N rows drawn by ``numpy.random.default_rng(seed)``;
    rows π[:n_v] are the validation split, π[n_v : n_v + n_t] the test split
    and the rest the training split, with n_v = ⌊validation · N⌋ and
    n_t = ⌊test · N⌋. ``make(train, validation, test, spec=, conditions=)``
    builds the data set (an ``ArrayDataset`` subclass, say). Raises
    ``InvalidInput`` (naming ``name``) for fractions outside [0, 1) or
    fractions that leave no training row.
    """
    n = len(x)
    if not (0.0 <= validation < 1.0 and 0.0 <= test < 1.0):
        raise InvalidInput(f"validation and test must be in [0, 1), got {validation}, {test}")
    n_val, n_test = int(validation * n), int(test * n)
    if n - n_val - n_test < 1:
        raise InvalidInput(
            f"{name}: {n} rows leave no training rows with validation={validation}, test={test}"
        )
    order = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    parts = (order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test])
    xs = tuple(x[i] for i in parts)
    cs = None if c is None else tuple(c[i] for i in parts)
    return make(*xs, spec=spec, conditions=cs)


def _as_rows(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` with a leading row axis and at least one event axis; numbers, finite."""
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise InvalidInput(f"{name}: expected integers or floats, got dtype {a.dtype}")
    if a.ndim == 0 or len(a) == 0:
        raise InvalidInput(f"{name}: expected at least one row, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        bad = int((~np.isfinite(a)).sum())
        if bad:
            raise InvalidInput(f"{name}: contains {bad} NaN or infinite value(s) of {a.size}")
    return a[:, None] if a.ndim == 1 else a


def _levels(x: np.ndarray, levels: int | None, name: str) -> int | None:
    """The number of levels of integer x (checked against its values); None for floats."""
    if np.issubdtype(x.dtype, np.floating):
        if levels is not None:
            raise InvalidInput(f"{name}: levels applies to integer data, got dtype {x.dtype}")
        return None
    low, high = int(x.min()), int(x.max())
    k = high + 1 if levels is None else levels
    if low < 0 or high >= k or k < 2:
        raise InvalidInput(f"{name}: integer values must lie in 0..{k - 1}, got [{low}, {high}]")
    return k


def _conditions(c: np.ndarray, classes: int | None, name: str) -> tuple[ConditionSpec, Tensor]:
    """The condition spec of c and c as a tensor: labels (N,) long, or vectors (N, *shape)."""
    if c.dtype == np.bool_ or np.issubdtype(c.dtype, np.integer):
        if c.ndim != 1:
            raise InvalidInput(f"{name}: expected class labels of shape (N,), got {c.shape}")
        low, high = int(c.min()), int(c.max())
        k = max(high + 1, 2) if classes is None else classes
        if low < 0 or high >= k:
            raise InvalidInput(f"{name}: labels must lie in 0..{k - 1}, got [{low}, {high}]")
        return ConditionSpec(classes=k), torch.from_numpy(c.astype(np.int64))
    if classes is not None:
        raise InvalidInput(f"{name}: classes applies to integer labels, got dtype {c.dtype}")
    rows = _as_rows(c, name)
    tensor = torch.from_numpy(np.ascontiguousarray(rows)).to(torch.get_default_dtype())
    return ConditionSpec(shape=tuple(rows.shape[1:])), tensor
