"""MNIST and Fashion-MNIST: the real files, split and binarization logic, errors, download."""

from __future__ import annotations

import functools
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from probgen.core import InvalidInput
from probgen.data.download import DownloadFailed
from probgen.data.files import CorruptDataFile, MissingDataFile
from probgen.data.mnist import (
    BINARIZATION_SEED,
    FASHION_MNIST_SOURCE,
    MNIST,
    MNIST_SOURCE,
    FashionMNIST,
    binarize,
    download,
)

# From ../shared/data/README.md (the published MNIST statistics).
TRAIN_HISTOGRAM = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_HISTOGRAM = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
TRAIN_PIXEL_MEAN, TRAIN_PIXEL_STD = 0.1306605, 0.3081078


@functools.cache
def _real_mnist(root: Path) -> MNIST:
    """Read once per session: the 60k training file takes about a second to decompress."""
    return MNIST(root=root)


@pytest.fixture
def mnist(data_dir) -> MNIST:
    return _real_mnist(data_dir)


def test_real_mnist_shapes_dtypes_and_ranges(mnist):
    assert mnist.spec.event_shape == (1, 28, 28) and mnist.spec.levels == 256
    train = mnist.stored("train")
    assert train.shape == (60000, 1, 28, 28) and train.dtype == torch.uint8
    test = mnist.split("test")
    assert test.shape == (10000, 1, 28, 28) and test.dtype == torch.float64
    assert test.min() == 0 and test.max() == 255
    assert torch.equal(test, test.round())
    assert mnist.split("validation").shape == (0, 1, 28, 28)


def test_real_mnist_labels_and_pixel_statistics(mnist):
    assert mnist.labels("train").bincount().tolist() == TRAIN_HISTOGRAM
    assert mnist.labels("test").bincount().tolist() == TEST_HISTOGRAM
    counts = torch.bincount(mnist.stored("train").flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum() / counts.sum()
    std = ((counts * (values - mean) ** 2).sum() / counts.sum()).sqrt()
    assert mean.item() == pytest.approx(TRAIN_PIXEL_MEAN, abs=5e-7)
    assert std.item() == pytest.approx(TRAIN_PIXEL_STD, abs=5e-7)


def test_root_may_be_the_folder_of_all_data_sets_or_of_the_files(mnist, data_dir):
    direct = MNIST(root=data_dir / "mnist")
    assert torch.equal(direct.labels("test"), mnist.labels("test"))


def test_real_fashion_mnist_test_only(data_dir):
    fashion = FashionMNIST(root=data_dir)
    test = fashion.split("test")
    assert test.shape == (10000, 1, 28, 28)
    assert fashion.labels("test").bincount().tolist() == [1000] * 10
    with pytest.raises(MissingDataFile, match=r"train-images-idx3-ubyte\.gz.*download"):
        fashion.batch("train", 4, torch.Generator().manual_seed(0))


def test_batches_are_draws_from_the_split(mnist):
    batch = mnist.batch("test", 16, torch.Generator().manual_seed(3))
    assert batch.shape == (16, 1, 28, 28) and batch.dtype == torch.float64
    test = mnist.split("test").flatten(1)
    # Every drawn image is one of the test images.
    assert (torch.cdist(batch.flatten(1), test).min(dim=1).values == 0).all()


# Synthetic files: 20 training and 6 test images, image i filled with the value 10 * i.
N_TRAIN, N_TEST = 20, 6


@pytest.fixture
def synthetic(tmp_path, write_idx) -> Path:
    for part, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None] * 10, 28 * 28, axis=1)
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", images.reshape(n, 28, 28))
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return tmp_path


def test_validation_is_carved_from_the_end_of_train(synthetic):
    full = MNIST(root=synthetic)
    carved = MNIST(root=synthetic, n_validation=5)
    n = N_TRAIN - 5
    assert torch.equal(carved.split("train"), full.split("train")[:n])
    assert torch.equal(carved.split("validation"), full.split("train")[n:])
    assert torch.equal(carved.labels("validation"), full.labels("train")[n:])
    assert torch.equal(carved.split("test"), full.split("test"))


def test_empty_validation_and_bad_sizes(synthetic):
    with pytest.raises(InvalidInput, match="validation split is empty; pass n_validation"):
        MNIST(root=synthetic).batch("validation", 2, torch.Generator())
    with pytest.raises(InvalidInput, match="leaves no training images"):
        MNIST(root=synthetic, n_validation=N_TRAIN).split("train")
    with pytest.raises(InvalidInput, match="n_validation"):
        MNIST(root=synthetic, n_validation=-1)
    with pytest.raises(InvalidInput, match="unknown split 'val'"):
        MNIST(root=synthetic).split("val")


def test_fixed_binarization_uses_the_documented_seeds(synthetic):
    data = MNIST(root=synthetic, binarize=True, n_validation=5)
    assert data.spec.levels == 2
    raw = MNIST(root=synthetic, n_validation=5)
    for index, split in enumerate(("train", "validation", "test")):
        generator = torch.Generator().manual_seed(BINARIZATION_SEED + index)
        expected = binarize(raw.stored(split), generator).double()
        assert torch.equal(data.split(split), expected)
        assert torch.equal(data.split(split), data.split(split))


def test_dynamic_binarization_is_fresh_and_reproducible(synthetic):
    data = MNIST(root=synthetic, binarize=True)
    a = data.batch("train", 64, torch.Generator().manual_seed(1))
    b = data.batch("train", 64, torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(1)
    c, d = data.batch("train", 64, generator), data.batch("train", 64, generator)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(c, d)
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_binarize_is_bernoulli_of_intensity_over_255():
    pixels = torch.tensor([0, 255, 51, 204], dtype=torch.uint8).repeat(20000, 1)
    b = binarize(pixels, torch.Generator().manual_seed(0)).double()
    assert b.dtype == torch.float64 and b.shape == pixels.shape
    p = torch.tensor([0.0, 1.0, 0.2, 0.8])
    assert torch.equal(b[:, :2], p[:2].expand(20000, 2))
    # Binomial standard error of a mean of 20000 draws is at most 0.0029.
    assert torch.allclose(b[:, 2:].mean(0), p[2:], atol=5 * 0.0029)


def test_malformed_pairs_of_files(synthetic, write_idx):
    write_idx(synthetic / "t10k-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    with pytest.raises(CorruptDataFile, match="do not form a data set"):
        MNIST(root=synthetic).split("test")
    write_idx(synthetic / "t10k-images-idx3-ubyte.gz", np.zeros((5, 27, 28), dtype=np.uint8))
    with pytest.raises(CorruptDataFile, match="do not form a data set"):
        MNIST(root=synthetic).split("test")
    write_idx(synthetic / "t10k-images-idx3-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(CorruptDataFile, match=r"t10k-images.*wrong magic"):
        MNIST(root=synthetic).split("test")


def test_missing_files_say_where_and_how(tmp_path, monkeypatch):
    with pytest.raises(MissingDataFile, match=f"{tmp_path}.*{tmp_path}/mnist.*download"):
        MNIST(root=tmp_path).split("test")
    monkeypatch.setenv("PROBGEN_DATA", str(tmp_path / "env"))
    with pytest.raises(MissingDataFile, match=f"{tmp_path}/env/mnist"):
        MNIST().split("test")
    monkeypatch.delenv("PROBGEN_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDataFile, match=f"{tmp_path}/data/fashion_mnist"):
        FashionMNIST().split("test")


def _serving(folder: Path, log: list[str]):
    """An opener serving ``folder``'s files under any URL, recording the URLs."""

    def opener(url: str):
        log.append(url)
        return (folder / url.rsplit("/", 1)[1]).open("rb")

    return opener


def _offline(url: str):
    raise urllib.error.URLError("no network")


def test_download_verifies_and_falls_back_to_the_next_mirror(data_dir, tmp_path, monkeypatch):
    log: list[str] = []
    served = _serving(data_dir / "mnist", log)

    def first_mirror_down(url: str):
        return _offline(url) if url.startswith(MNIST_SOURCE.mirrors[0]) else served(url)

    target = download(tmp_path / "mnist", opener=first_mirror_down)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f.filename for f in MNIST_SOURCE.all_files()
    )
    assert all(url.startswith(MNIST_SOURCE.mirrors[1]) for url in log) and len(log) == 4
    assert MNIST(root=target).labels("test").bincount().tolist() == TEST_HISTOGRAM
    # The default folder is $PROBGEN_DATA/mnist; verified files there are kept, not fetched.
    monkeypatch.setenv("PROBGEN_DATA", str(tmp_path))
    assert download(opener=_offline) == target


def test_download_rejects_a_wrong_file(data_dir, tmp_path):
    # Fashion-MNIST files served under MNIST's names fail MNIST's checksums.
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    for part in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            source = data_dir / "fashion_mnist" / f"t10k-{kind}-ubyte.gz"
            (wrong / f"{part}-{kind}-ubyte.gz").write_bytes(source.read_bytes())
    with pytest.raises(DownloadFailed, match=r"train-images.*content md5 .*expected 6bbc9ace"):
        download(tmp_path / "m", opener=_serving(wrong, []))
    assert list((tmp_path / "m").iterdir()) == []
    with pytest.raises(DownloadFailed, match="no network"):
        download(tmp_path / "x", "fashion_mnist", opener=_offline)
    with pytest.raises(InvalidInput, match="unknown dataset 'cifar'"):
        download(tmp_path, "cifar", opener=_offline)


def test_fashion_checksums_match_the_real_test_files(data_dir):
    for remote in FASHION_MNIST_SOURCE.files["t10k"]:
        assert remote.mismatch((data_dir / "fashion_mnist" / remote.filename).read_bytes()) is None
