"""The IDX reader: round trips of every type, and clear errors for damaged files."""

from __future__ import annotations

import gzip
import re

import numpy as np
import pytest

from probgen.data.files import CorruptDataFile, MissingDataFile
from probgen.data.idx import read_idx


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-300, 7, 32000], dtype=np.int16),
        np.linspace(-1, 1, 6).reshape(3, 2),
    ],
)
def test_round_trip(tmp_path, write_idx, name, array):
    out = read_idx(write_idx(tmp_path / name, array))
    assert out.shape == array.shape
    assert out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)


def test_compression_is_detected_by_content_not_name(tmp_path, idx_bytes):
    array = np.arange(10, dtype=np.uint8)
    plain_named_gz = tmp_path / "x.gz"
    plain_named_gz.write_bytes(idx_bytes(array))
    gz_named_plain = tmp_path / "x.idx"
    gz_named_plain.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(plain_named_gz), array)
    np.testing.assert_array_equal(read_idx(gz_named_plain), array)


def _damaged(content: bytes) -> dict[str, bytes]:
    return {
        "truncated data": content[:-5],
        "trailing bytes": content + b"\x00",
        "truncated header": content[:9],
        "too short": content[:3],
        "not idx": b"PK\x03\x04" + content[4:],
        "unknown type": content[:2] + b"\x07" + content[3:],
        "zero dims": content[:3] + b"\x00" + content[4:],
    }


@pytest.mark.parametrize("case", list(_damaged(b"")))
@pytest.mark.parametrize("compress", [False, True])
def test_damaged_files_name_the_file(tmp_path, idx_bytes, case, compress):
    content = _damaged(idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8)))[case]
    path = tmp_path / f"bad-{compress}.idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(CorruptDataFile, match=re.escape(str(path))):
        read_idx(path)


def test_truncated_data_message_gives_sizes(tmp_path, idx_bytes):
    path = tmp_path / "t.idx"
    path.write_bytes(idx_bytes(np.zeros((4, 5), dtype=np.uint8))[:-3])
    with pytest.raises(CorruptDataFile, match=r"truncated.*needs 20 bytes of data, found 17"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path, idx_bytes):
    path = tmp_path / "t.idx.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int16)))[:-20])
    with pytest.raises(CorruptDataFile, match="gzip"):
        read_idx(path)


def test_wrong_magic_is_rejected(tmp_path, write_idx):
    labels = write_idx(tmp_path / "labels.idx", np.arange(5, dtype=np.uint8))
    assert read_idx(labels, expected_magic=0x801).shape == (5,)
    with pytest.raises(CorruptDataFile, match="wrong magic number 0x00000801, expected 0x00000803"):
        read_idx(labels, expected_magic=0x803)


def test_missing_file(tmp_path):
    with pytest.raises(MissingDataFile, match=r"nope\.idx"):
        read_idx(tmp_path / "nope.idx")
