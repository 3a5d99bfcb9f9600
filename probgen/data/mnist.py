"""MNIST and Fashion-MNIST from their standard IDX files, optionally dynamically binarized."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from probgen.core import ConditionSpec, DataSpec, InvalidInput
from probgen.data.base import SPLITS
from probgen.data.download import Opener, RemoteFile, fetch, url_opener
from probgen.data.files import CorruptDataFile, candidate_dirs, locate
from probgen.data.idx import read_idx
from probgen.data.quantized import QuantizedDataset

__all__ = [
    "BINARIZATION_SEED",
    "FASHION_MNIST_SOURCE",
    "MNIST",
    "MNIST_SOURCE",
    "SOURCES",
    "FashionMNIST",
    "IdxSource",
    "binarize",
    "download",
]

BINARIZATION_SEED = 0
"""Split ``s`` of a binarized data set is binarized once with seed ``BINARIZATION_SEED + i``,
``i`` the index of ``s`` in ``("train", "validation", "test")``."""

_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801
_CHUNK = 8192  # rows binarized at a time, to bound the float copy's memory


@dataclass(frozen=True)
class IdxSource:
    """Where an MNIST-like data set lives: folder name, mirrors and its four IDX files.

    ``files[part]`` is ``(images, labels)`` for ``part`` in ``("train", "t10k")``.
    """

    name: str
    mirrors: tuple[str, ...]
    files: dict[str, tuple[RemoteFile, RemoteFile]]

    def all_files(self) -> list[RemoteFile]:
        """The four files, training part first."""
        return [f for pair in self.files.values() for f in pair]

    def how_to_get(self, root: str | os.PathLike[str] | None) -> str:
        """A sentence telling a user how to put the files where they will be found."""
        target = candidate_dirs(root, self.name)[-1]
        return (
            f'Download them (needs internet) with: python -c "from probgen.data.mnist import '
            f"download; download('{target}', dataset='{self.name}')\", or copy the standard "
            f"files from {self.mirrors[0]} into {target}."
        )


MNIST_SOURCE = IdxSource(
    name="mnist",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    files={
        "train": (
            RemoteFile(
                "train-images-idx3-ubyte.gz", content_md5="6bbc9ace898e44ae57da46a324031adb"
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz", content_md5="a25bea736e30d166cdddb491f175f624"
            ),
        ),
        "t10k": (
            RemoteFile("t10k-images-idx3-ubyte.gz", content_md5="2646ac647ad5339dbf082846283269ea"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", content_md5="27ae3e4e09519cfbb04c329615203637"),
        ),
    },
)
"""MNIST (LeCun et al. 1998); checksums are MD5s of the decompressed official files."""

FASHION_MNIST_SOURCE = IdxSource(
    name="fashion_mnist",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    files={
        "train": (
            RemoteFile(
                "train-images-idx3-ubyte.gz", archive_md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"
            ),
            RemoteFile(
                "train-labels-idx1-ubyte.gz", archive_md5="25c81989df183df01b3e8a0aad5dffbe"
            ),
        ),
        "t10k": (
            RemoteFile("t10k-images-idx3-ubyte.gz", content_md5="8181f5470baa50b63fa0f6fddb340f0a"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", content_md5="15d484375f8d13e6eb1aabb0c3f46965"),
        ),
    },
)
"""Fashion-MNIST (Xiao et al. 2017); the training files are checked by the published MD5
of the official .gz (the only one published), the test files by their decompressed MD5."""

SOURCES = {s.name: s for s in (MNIST_SOURCE, FASHION_MNIST_SOURCE)}


def download(
    root: str | os.PathLike[str] | None = None,
    dataset: str = "mnist",
    *,
    opener: Opener = url_opener,
) -> Path:
    """Download the four standard files of ``dataset`` (a key of ``SOURCES``) into ``root``.

    ``root=None`` means the default folder ``MNIST()`` searches
    ($PROBGEN_DATA/<dataset>, else ./data/<dataset>). Each file is verified
    against its published checksum before it is kept (see ``fetch``). Returns
    the folder.
    """
    if dataset not in SOURCES:
        raise InvalidInput(f"unknown dataset {dataset!r}; choose one of: {', '.join(SOURCES)}")
    source = SOURCES[dataset]
    directory = candidate_dirs(root, source.name)[0]
    fetch(source.all_files(), source.mirrors, directory, opener)
    return directory


def binarize(pixels: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Dynamic binarization: b ~ Bernoulli(x / 255) per pixel, as uint8 in {0, 1}.

    ``pixels`` are uint8 intensities ``(N, …)``; the result has the same shape.
    Reference: Salakhutdinov & Murray (2008), "On the quantitative analysis
    of deep belief networks".
    """
    out = torch.empty_like(pixels)
    for start in range(0, len(pixels), _CHUNK):
        p = pixels[start : start + _CHUNK].to(torch.float32) / 255
        out[start : start + _CHUNK] = torch.bernoulli(p, generator=generator).to(out.dtype)
    return out


class MNIST(QuantizedDataset):
    """MNIST handwritten digits, 28×28 grayscale, read from the four standard IDX files.

    Splits: the standard 60 000 training and 10 000 test images. With
    ``n_validation > 0`` the last ``n_validation`` training images become the
    validation split and are removed from train; with the default 0 the
    validation split is empty (``split`` returns ``(0, 1, 28, 28)``,
    ``batch`` raises). Events have shape ``(1, 28, 28)``.

    Values: intensities 0…255 (``levels = 256``), or with ``binarize=True``
    binary pixels 0/1 (``levels = 2``): ``batch("train", …)`` then returns a
    fresh Bernoulli(x/255) sample of each drawn image, drawn with the given
    generator (dynamic binarization), while ``split(...)`` and the
    validation and test batches use one fixed binarization per split (seed
    ``BINARIZATION_SEED`` + split index).

    With ``conditional=True`` the data are pairs (image, class):
    ``spec.condition = ConditionSpec(classes=10)``, ``draw`` returns the
    labels of the drawn rows and ``conditions(split)`` is ``labels(split)``,
    the labels of the rows of ``split(split)`` (the validation split's are
    the last ``n_validation`` training labels).

    Files are looked for in ``root`` and ``root/<name>``, else in
    ``$PROBGEN_DATA/<name>``, else ``./data/<name>`` (``name`` = ``mnist``);
    plain or gzip files under the standard names. Each part (train, t10k) is
    read on first use, so a folder holding only the t10k files serves the
    test split and raises ``MissingDataFile`` for the others.

    Reference: LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based
    learning applied to document recognition".
    """

    source: IdxSource = MNIST_SOURCE
    feature_net: str | None = "mnist"
    empty_split_hint = (
        "pass n_validation > 0 to carve a validation split from the end of the training set"
    )

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        binarize: bool = False,
        n_validation: int = 0,
        conditional: bool = False,
    ) -> None:
        if n_validation < 0:
            raise InvalidInput(f"n_validation must be >= 0, got {n_validation}")
        self.root = root
        self.binarize = binarize
        self.n_validation = n_validation
        condition = ConditionSpec(classes=10) if conditional else None
        self.spec = DataSpec((1, 28, 28), levels=2 if binarize else 256, condition=condition)
        self._parts: dict[str, tuple[Tensor, Tensor]] = {}
        self._binarized: dict[str, Tensor] = {}

    def stored(self, split: str) -> Tensor:
        self._check_split(split)
        if not self.binarize:
            return self._raw(split)[0]
        if split not in self._binarized:
            generator = torch.Generator().manual_seed(BINARIZATION_SEED + SPLITS.index(split))
            self._binarized[split] = binarize(self._raw(split)[0], generator)
        return self._binarized[split]

    def _source(self, split: str) -> Tensor:
        if self.binarize and split == "train":  # binarized afresh per batch, in _rows
            return self._raw("train")[0]
        return self.stored(split)

    def _rows(self, split: str, rows: Tensor, generator: torch.Generator) -> Tensor:
        return binarize(rows, generator) if self.binarize and split == "train" else rows

    def labels(self, split: str) -> Tensor:
        """The class 0…9 of every example of ``split``, shape ``(N,)``, torch.long."""
        self._check_split(split)
        return self._raw(split)[1]

    def _raw(self, split: str) -> tuple[Tensor, Tensor]:
        """(images uint8 (N, 1, 28, 28), labels long (N,)) of ``split`` before binarization."""
        if split == "test":
            return self._part("t10k")
        images, labels = self._part("train")
        n_train = len(images) - self.n_validation
        if n_train <= 0:
            raise InvalidInput(
                f"n_validation = {self.n_validation} leaves no training images "
                f"(the training file has {len(images)})"
            )
        rows = slice(None, n_train) if split == "train" else slice(n_train, None)
        return images[rows], labels[rows]

    def _part(self, part: str) -> tuple[Tensor, Tensor]:
        if part not in self._parts:
            image_file, label_file = self.source.files[part]
            names = [image_file.filename, label_file.filename]
            folder = locate(self.root, self.source.name, names, self.source.how_to_get(self.root))
            images = read_idx(folder / names[0], expected_magic=_IMAGE_MAGIC)
            labels = read_idx(folder / names[1], expected_magic=_LABEL_MAGIC)
            if images.shape[1:] != (28, 28) or len(images) != len(labels):
                raise CorruptDataFile(
                    f"{folder}: images {images.shape} and labels {labels.shape} do not form "
                    "a data set of N 28×28 images with N labels"
                )
            self._parts[part] = (
                torch.from_numpy(images).unsqueeze(1),
                torch.from_numpy(labels).long(),
            )
        return self._parts[part]


class FashionMNIST(MNIST):
    """Fashion-MNIST: 28×28 grayscale Zalando article images in 10 classes.

    A drop-in replacement for MNIST with the same options, splits, shapes and
    file names; files are looked for under the name ``fashion_mnist``. No
    feature network trained on it ships (``feature_net`` is None): the sample
    metrics use the MNIST digit classifier's features, chosen by shape, and
    say so in ``Results.notes``.

    Reference: Xiao, Rasul & Vollgraf (2017), "Fashion-MNIST: a novel image
    dataset for benchmarking machine learning algorithms".
    """

    source = FASHION_MNIST_SOURCE
    feature_net = None
