"""Helpers for the data tests: writing small IDX files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

IDX_CODES = {np.dtype("uint8"): 0x08, np.dtype("int16"): 0x0B, np.dtype("float64"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: magic, big-endian sizes, big-endian values."""
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim])
    sizes = b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + sizes + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture(name="idx_bytes")
def idx_bytes_fixture() -> Callable[[np.ndarray], bytes]:
    """The IDX encoder ``idx_bytes`` as a fixture."""
    return idx_bytes


@pytest.fixture
def write_idx() -> Callable[[Path, np.ndarray], Path]:
    """Write ``array`` as an IDX file at ``path``, gzip-compressed if the name ends in .gz."""

    def write(path: Path, array: np.ndarray) -> Path:
        content = idx_bytes(array)
        path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
        return path

    return write
