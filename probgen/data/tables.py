"""Reading a user's table or array file into named columns: CSV, Parquet, .npy, .npz, safetensors.

Every reader returns a ``Table``: named arrays with one row per example,
read by a library (pandas for CSV and Parquet, NumPy without pickles,
safetensors), never by a hand-written parser. Only the reading happens
here; which columns become x and c is ``probgen.data.userfiles``.
"""

from __future__ import annotations

import csv
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probgen.core import InvalidInput
from probgen.data.files import CorruptDataFile, MissingDataFile

__all__ = ["TABLE_READERS", "Table", "read_table"]


@dataclass(frozen=True)
class Table:
    """Named arrays read from one file, each ``(N, ...)`` with the same N.

    Attributes:
        path: the file.
        entries: name → values, in file order; a CSV or Parquet column is
            ``(N,)`` (strings stay an object array, so a non-numeric column
            can be named), an array of a .npz or .safetensors file is
            ``(N, *shape)``.
        unit: what an entry is called in messages (``"column"``, ``"array"``).
        row_names: entries that hold row names (a CSV column with an empty
            header, as R and pandas write them); left out of x by default.
        where: row index i ↦ how a person finds it (``"row 3 (line 5)"``).
    """

    path: Path
    entries: dict[str, np.ndarray]
    unit: str
    row_names: tuple[str, ...] = ()
    where: Callable[[int], str] = field(default=lambda i: f"row {i}")

    @property
    def rows(self) -> int:
        """N, the number of examples."""
        return len(next(iter(self.entries.values())))

    def describe(self, name: str) -> str:
        """``"column 'waiting'"``, for messages."""
        return f"{self.unit} {name!r}"


def read_table(path: Path, header: bool = True) -> Table:
    """The named columns of the file at ``path``, read by the reader of its suffix.

    Raises ``MissingDataFile`` for a missing file, ``CorruptDataFile`` for an
    unreadable or empty one (naming the file and the cause), and
    ``InvalidInput`` for ragged rows (naming the row or the array).
    """
    if not path.is_file():
        raise MissingDataFile(f"{path}: no such file")
    reader = TABLE_READERS[path.suffix.lower()]
    try:
        table = reader(path, header)
    except PermissionError as e:
        raise CorruptDataFile(f"{path}: cannot be read ({e.strerror})") from e
    if not table.entries or table.rows == 0:
        raise CorruptDataFile(f"{path}: the file holds no rows")
    return table


# ----------------------------------------------------------------------------- CSV


def _read_csv(path: Path, header: bool, sep: str = ",") -> Table:
    """A CSV file by ``pandas.read_csv``: a header row (unless ``header`` is False), one row
    per example. Blank lines are skipped; a row with more or fewer fields than the header
    is reported with its line number."""
    import pandas as pd

    try:
        frame = pd.read_csv(
            path, sep=sep, header=0 if header else None, index_col=False, skipinitialspace=True
        )
    except pd.errors.EmptyDataError as e:
        raise CorruptDataFile(f"{path}: the file is empty") from e
    except pd.errors.ParserError as e:
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
        if fields:
            expected, line, saw = fields.groups()
            first = "the header" if header else "the first row"
            raise InvalidInput(
                f"{path}: ragged rows: line {line} has {saw} fields, {first} {expected}"
            ) from e
        raise CorruptDataFile(f"{path}: not a readable CSV file ({_first_line(e)})") from e
    except UnicodeDecodeError as e:
        raise CorruptDataFile(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x})") from e
    lines = _CsvLines(path, sep, header)
    if frame.isna().to_numpy().any():
        lines.check_ragged(len(frame.columns))  # pandas pads short rows with NaN
    entries = {str(name): frame[name].to_numpy() for name in frame.columns}
    row_names = tuple(name for name in entries if name.startswith("Unnamed: "))
    return Table(path, entries, "column", row_names, lines.where)


class _CsvLines:
    """Line numbers of a CSV file's data rows, read by the ``csv`` module on first need
    (error messages only), skipping blank lines as pandas does."""

    def __init__(self, path: Path, sep: str, header: bool) -> None:
        self.path, self.sep, self.header = path, sep, header
        self._rows: list[tuple[int, int]] | None = None  # (line number, number of fields)

    def rows(self) -> list[tuple[int, int]]:
        if self._rows is None:
            with self.path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f, delimiter=self.sep)
                self._rows = [(reader.line_num, len(row)) for row in reader if row]
            if self.header:
                self._rows = self._rows[1:]
        return self._rows

    def where(self, i: int) -> str:
        rows = self.rows()
        return f"row {i} (line {rows[i][0]})" if i < len(rows) else f"row {i}"

    def check_ragged(self, width: int) -> None:
        first = "the header" if self.header else "the first row"
        for line, n in self.rows():
            if n != width:
                raise InvalidInput(
                    f"{self.path}: ragged rows: line {line} has {n} fields, {first} {width}"
                )


def _read_tsv(path: Path, header: bool) -> Table:
    return _read_csv(path, header, sep="\t")


# ----------------------------------------------------------------------------- Parquet


def _read_parquet(path: Path, header: bool) -> Table:
    """A Parquet file by ``pandas.read_parquet`` (pyarrow): its columns, in file order."""
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise CorruptDataFile(f"{path}: not a readable Parquet file ({_first_line(e)})") from e
    entries = {str(name): frame[name].to_numpy() for name in frame.columns}
    return Table(path, entries, "column")


# ----------------------------------------------------------------------------- NumPy


def _read_npy(path: Path, header: bool) -> Table:
    """A .npy array by ``numpy.load(allow_pickle=False)``: the columns of a 1-D or 2-D
    array are named ``"0"``, ``"1"``, …; a higher-dimensional array is one entry ``"x"``."""
    array = _numpy_load(path)
    if not isinstance(array, np.ndarray):
        raise CorruptDataFile(f"{path}: a .npz archive named .npy; rename it to .npz")
    if array.ndim == 0:
        raise InvalidInput(f"{path}: holds one number, not rows (shape ())")
    if array.ndim > 2:
        return Table(path, {"x": array}, "array")
    columns = array[:, None] if array.ndim == 1 else array
    return Table(path, {str(j): columns[:, j] for j in range(columns.shape[1])}, "column")


def _read_npz(path: Path, header: bool) -> Table:
    """The arrays of a .npz archive by ``numpy.load(allow_pickle=False)``, by name."""
    archive = _numpy_load(path)
    if isinstance(archive, np.ndarray):
        raise CorruptDataFile(f"{path}: a .npy array named .npz; rename it to .npy")
    with archive:
        try:
            entries = {name: archive[name] for name in archive.files}
        except ValueError as e:
            raise CorruptDataFile(f"{path}: holds Python objects, not numbers ({e})") from e
    return _arrays(path, entries)


def _numpy_load(path: Path) -> np.ndarray | np.lib.npyio.NpzFile:
    with path.open("rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):  # .npy header, .npz = zip
        raise CorruptDataFile(f"{path}: not a NumPy .npy/.npz file (no NumPy or zip header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise CorruptDataFile(
                f"{path}: holds Python objects (ragged rows?), not an array of numbers"
            ) from e
        raise CorruptDataFile(f"{path}: not a NumPy .npy/.npz file ({e})") from e
    except (EOFError, zipfile.BadZipFile) as e:
        raise CorruptDataFile(f"{path}: not a NumPy .npy/.npz file ({e})") from e


# ----------------------------------------------------------------------------- safetensors


def _read_safetensors(path: Path, header: bool) -> Table:
    """The tensors of a .safetensors file, by name (half precision read as float32)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CorruptDataFile(f"{path}: not a readable safetensors file ({_first_line(e)})") from e
    entries = {
        name: (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()
        for name, t in tensors.items()
    }
    return _arrays(path, entries)


def _arrays(path: Path, entries: dict[str, np.ndarray]) -> Table:
    """A table of named arrays, each with a row axis and the same number of rows."""
    for name, a in entries.items():
        if a.ndim == 0:
            raise InvalidInput(f"{path}: array {name!r} holds one number, not rows (shape ())")
    counts = {name: len(a) for name, a in entries.items()}
    if len(set(counts.values())) > 1:
        (first, n), *rest = counts.items()
        other, m = next((k, v) for k, v in rest if v != n)
        raise InvalidInput(
            f"{path}: ragged rows: array {other!r} has {m} rows, array {first!r} has {n}"
        )
    return Table(path, entries, "array")


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


TABLE_READERS: dict[str, Callable[[Path, bool], Table]] = {
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".parquet": _read_parquet,
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".safetensors": _read_safetensors,
}
"""File suffix → reader of its table (``reader(path, header)``)."""
