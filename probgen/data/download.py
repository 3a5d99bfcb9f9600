"""Fetching data files from mirrors, verified against published checksums."""

from __future__ import annotations

import hashlib
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from probgen.core import ProbgenError
from probgen.data.idx import decompress

__all__ = ["DownloadFailed", "Opener", "RemoteFile", "fetch", "url_opener"]

Opener = Callable[[str], AbstractContextManager[IO[bytes]]]
"""Opens a URL for reading, like ``urllib.request.urlopen`` (tests pass one serving local files)."""


class DownloadFailed(ProbgenError, OSError):
    """No mirror delivered a file whose checksum matched; the message lists each attempt."""

    def __str__(self) -> str:  # OSError would format (errno, strerror)
        return str(self.args[0])


@dataclass(frozen=True)
class RemoteFile:
    """A file to download and the MD5 digests that identify its official version.

    ``content_md5`` is the digest of the decompressed content (robust to a
    mirror recompressing the file); ``archive_md5`` the digest of the bytes
    as served, used where only that one is published. At least one is set,
    and every one that is set must match.
    """

    filename: str
    content_md5: str | None = None
    archive_md5: str | None = None

    def __post_init__(self) -> None:
        if self.content_md5 is None and self.archive_md5 is None:
            raise ValueError(f"{self.filename}: a RemoteFile needs at least one checksum")

    def mismatch(self, raw: bytes) -> str | None:
        """``None`` if ``raw`` (the bytes as served) is the official file, else the reason."""
        checks = (
            ("archive", self.archive_md5, lambda: raw),
            ("content", self.content_md5, lambda: decompress(raw, self.filename)),
        )
        for what, expected, data in checks:
            if expected is None:
                continue
            got = hashlib.md5(data(), usedforsecurity=False).hexdigest()
            if got != expected:
                return f"{what} md5 {got}, expected {expected}"
        return None


def url_opener(url: str) -> AbstractContextManager[IO[bytes]]:
    """``urllib.request.urlopen`` with a 60 s timeout, the default ``Opener``."""
    return urllib.request.urlopen(url, timeout=60)


def fetch(
    files: Sequence[RemoteFile],
    mirrors: Sequence[str],
    directory: Path,
    opener: Opener = url_opener,
) -> list[Path]:
    """Download every file into ``directory``, trying ``mirrors`` (base URLs) in order.

    A file already present and matching its checksums is kept. Each download
    is verified before it is moved into place, so a failed or corrupted
    transfer never leaves a file under the final name. Raises
    ``DownloadFailed`` listing the error of every mirror when none delivered
    a valid copy. Returns the paths of all ``files``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for remote in files:
        target = directory / remote.filename
        paths.append(target)
        if target.is_file() and remote.mismatch(target.read_bytes()) is None:
            continue
        failures = []
        for mirror in mirrors:
            url = mirror + remote.filename
            try:
                with opener(url) as response:
                    raw = response.read()
                reason = remote.mismatch(raw)
            except (OSError, ProbgenError) as err:  # URLError is an OSError
                reason = str(err)
            if reason is None:
                partial = target.with_name(target.name + ".part")
                partial.write_bytes(raw)
                partial.replace(target)
                break
            failures.append(f"{url}: {reason}")
        else:
            raise DownloadFailed(f"could not download {remote.filename}: " + "; ".join(failures))
    return paths
