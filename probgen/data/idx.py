"""Reader for the IDX format of MNIST-like data sets, plain or gzip-compressed.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian uint32 sizes, then ``prod(sizes)`` values of ``<type>``
in row-major order, big-endian. MNIST images have magic ``0x00000803``
(uint8, 3 dims), labels ``0x00000801`` (uint8, 1 dim).

Reference: LeCun, Cortes & Burges (1998), "The MNIST database of
handwritten digits", http://yann.lecun.com/exdb/mnist/ (file format section).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from probgen.data.files import CorruptDataFile, MissingDataFile

__all__ = ["IDX_TYPES", "decompress", "parse_idx", "read_idx"]

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX type codes and the big-endian NumPy dtypes they denote."""

_GZIP_MAGIC = b"\x1f\x8b"


def decompress(raw: bytes, name: str) -> bytes:
    """``raw`` itself, or its gzip decompression when it starts with the gzip magic bytes.

    Raises ``CorruptDataFile`` naming ``name`` for a damaged or truncated gzip stream.
    """
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise CorruptDataFile(f"{name}: damaged or truncated gzip data ({err})") from err


def parse_idx(content: bytes, name: str, expected_magic: int | None = None) -> np.ndarray:
    """Decode uncompressed IDX bytes into an array of the declared type and shape.

    Checks the two zero bytes and type code of the magic number, the header
    length and that the payload holds exactly ``prod(sizes)`` values; every
    error is a ``CorruptDataFile`` naming ``name``. With ``expected_magic``
    (e.g. ``0x803``), a file of another kind is rejected too.
    """
    if len(content) < 4:
        raise CorruptDataFile(f"{name}: {len(content)} bytes, too short for an IDX header")
    magic = int.from_bytes(content[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise CorruptDataFile(
            f"{name}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    type_code, ndim = content[2], content[3]
    if content[:2] != b"\x00\x00" or type_code not in IDX_TYPES or ndim == 0:
        raise CorruptDataFile(f"{name}: not an IDX file (magic number 0x{magic:08x})")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise CorruptDataFile(
            f"{name}: truncated header, {len(content)} bytes for {ndim} dimension sizes"
        )
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_TYPES[type_code]
    expected = math.prod(shape) * dtype.itemsize
    found = len(content) - header
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise CorruptDataFile(
            f"{name}: {what}: shape {shape} of {dtype.name} needs {expected} bytes of data, "
            f"found {found}"
        )
    # A bytearray makes the array writable, so torch.from_numpy can share it.
    data = np.frombuffer(bytearray(content[header:]), dtype=dtype).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or plain, told apart by its first bytes).

    Returns an array of the file's type and shape, e.g. ``(60000, 28, 28)``
    uint8 for MNIST training images. Raises ``MissingDataFile`` if ``path``
    does not exist and ``CorruptDataFile`` (naming the file) if it is not a
    valid IDX file, or not of ``expected_magic``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise MissingDataFile(f"{path}: no such file") from err
    return parse_idx(decompress(raw, str(path)), str(path), expected_magic)
