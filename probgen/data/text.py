"""Character-level text corpora: any UTF-8 file as windows of token ids."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from probgen.core import DataSpec, InvalidInput
from probgen.data.base import Dataset
from probgen.data.files import CorruptDataFile, MissingDataFile, locate

__all__ = ["TINY_SHAKESPEARE_URL", "TextCorpus", "TinyShakespeare"]

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)


class TextCorpus(Dataset):
    """A text file as a sequence of character ids, served as windows of ``context`` tokens.

    The vocabulary is the sorted set of distinct characters of the file
    (``vocab[i]`` is token ``i``). The first ``train_fraction`` of the
    characters is the training split, the rest the validation split; the
    test split is the validation split (nanoGPT's convention), unless
    ``test_fraction`` > 0 cuts a test split of its own from the end of the
    file (train | validation | test, in file order, so no window straddles
    two splits). Events are
    windows ``(context,)`` of ``torch.long`` ids in {0, …, V-1}
    (``spec.levels = V``): ``batch`` draws windows at uniformly random
    offsets, ``split`` cuts the split into consecutive non-overlapping
    windows (dropping the incomplete last one).

    Reference: Karpathy (2015), "The unreasonable effectiveness of recurrent
    neural networks" (char-rnn); Karpathy (2022), nanoGPT.

    Token ids are labels, not magnitudes: ``categorical`` is True, so the
    evaluators leave out distances between raw ids.
    """

    categorical = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        context: int = 64,
        train_fraction: float = 0.9,
        test_fraction: float = 0.0,
    ) -> None:
        if context < 1:
            raise InvalidInput(f"context must be >= 1, got {context}")
        if not 0.0 < train_fraction < 1.0:
            raise InvalidInput(f"train_fraction must be in (0, 1), got {train_fraction}")
        if not 0.0 <= test_fraction < 1.0 - train_fraction:
            raise InvalidInput(
                f"test_fraction must be in [0, 1 - train_fraction) = [0, {1 - train_fraction:g}), "
                f"got {test_fraction}"
            )
        self.path = Path(path)
        text = _read_text(self.path)
        self._codes = np.unique(_code_points(text))  # sorted code points of the vocabulary
        self.vocab = [chr(c) for c in self._codes]
        self.context = context
        self.spec = DataSpec((context,), levels=len(self.vocab))
        tokens = self.encode(text)
        n_train = int(train_fraction * len(tokens))
        n_test = int(test_fraction * len(tokens))
        end = len(tokens) - n_test
        self._tokens = {"train": tokens[:n_train], "validation": tokens[n_train:end]}
        if n_test:
            self._tokens["test"] = tokens[end:]
        for name, part in self._tokens.items():
            if len(part) < context:
                raise InvalidInput(
                    f"{self.path}: the {name} split has {len(part)} characters, fewer than "
                    f"one window of context = {context}"
                )

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters V."""
        return len(self.vocab)

    def encode(self, text: str) -> Tensor:
        """Token ids of ``text``, shape ``(len(text),)``, torch.long."""
        codes = _code_points(text)
        ids = np.searchsorted(self._codes, codes).clip(max=len(self._codes) - 1)
        unknown = np.flatnonzero(self._codes[ids] != codes)
        if len(unknown):
            i = int(unknown[0])
            raise InvalidInput(
                f"character {text[i]!r} (position {i}) is not in the vocabulary of "
                f"{len(self.vocab)} characters of {self.path.name}"
            )
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: Tensor | Iterable[int]) -> str:
        """The text of a 1-D sequence of token ids (inverse of ``encode``)."""
        values = ids.cpu().numpy() if isinstance(ids, Tensor) else np.fromiter(ids, np.int64)
        bad = values[(values < 0) | (values >= len(self._codes))]
        if len(bad):
            raise InvalidInput(f"token ids {bad[:5].tolist()} outside 0…{len(self._codes) - 1}")
        return self._codes[values].astype("<u4").tobytes().decode("utf-32-le")

    def tokens(self, split: str) -> Tensor:
        """The whole split as one token sequence ``(N,)``, torch.long."""
        self._check_split(split)
        return self._tokens.get(split, self._tokens["validation"])

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> Tensor:
        """``batch_size`` windows at uniformly random offsets, ``(B, context)`` torch.long."""
        data = self.tokens(split)
        starts = torch.randint(len(data) - self.context + 1, (batch_size,), generator=generator)
        offsets = torch.arange(self.context)
        return data[starts[:, None] + offsets]  # (B, T)

    def split(self, split: str) -> Tensor:
        """Consecutive non-overlapping windows ``(N // context, context)``, torch.long."""
        data = self.tokens(split)
        n = len(data) // self.context
        return data[: n * self.context].reshape(n, self.context)


class TinyShakespeare(TextCorpus):
    """Karpathy's tiny Shakespeare corpus (1 115 394 characters, vocabulary 65).

    Read from ``input.txt`` in ``root`` or ``root/tinyshakespeare``, else in
    ``$PROBGEN_DATA/tinyshakespeare``, else ``./data/tinyshakespeare``; 90 %
    train, 10 % validation (= test), as in nanoGPT.

    Reference: Karpathy (2015), char-rnn, ``data/tinyshakespeare/input.txt``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, context: int = 64) -> None:
        folder = locate(
            root,
            "tinyshakespeare",
            ["input.txt"],
            f"Download it (needs internet) from {TINY_SHAKESPEARE_URL}.",
        )
        super().__init__(folder / "input.txt", context=context)


def _code_points(text: str) -> np.ndarray:
    """The Unicode code points of ``text``, shape ``(len(text),)``."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _read_text(path: Path) -> str:
    """The file's text decoded as UTF-8, with errors naming the file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as err:
        raise MissingDataFile(f"{path}: no such text file") from err
    except IsADirectoryError as err:
        raise MissingDataFile(f"{path}: is a directory, not a text file") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptDataFile(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start})"
        ) from err
    if not text:
        raise CorruptDataFile(f"{path}: the file is empty")
    return text
