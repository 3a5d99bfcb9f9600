"""The scikit-learn 8×8 digits: Tomczak's split, shapes and the 0…16 value range."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits

from probgen.core import InvalidInput
from probgen.data.digits import Digits


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


def test_split_sizes_and_shapes(digits):
    assert digits.spec.event_shape == (1, 8, 8) and digits.spec.levels == 17
    sizes = {s: digits.split(s).shape for s in ("train", "validation", "test")}
    assert sizes == {
        "train": (1000, 1, 8, 8),
        "validation": (350, 1, 8, 8),
        "test": (447, 1, 8, 8),
    }


def test_splits_are_consecutive_rows_of_load_digits(digits):
    source = load_digits()
    whole = torch.cat([digits.split(s) for s in ("train", "validation", "test")])
    assert whole.dtype == torch.float64
    assert torch.equal(whole.squeeze(1), torch.from_numpy(source.images))
    labels = torch.cat([digits.labels(s) for s in ("train", "validation", "test")])
    assert torch.equal(labels, torch.from_numpy(source.target).long())


def test_values_are_integers_0_to_16(digits):
    train = digits.split("train")
    assert train.min() == 0 and train.max() == 16
    assert torch.equal(train, train.round())
    assert digits.stored("train").dtype == torch.uint8


def test_batch(digits):
    generator = torch.Generator().manual_seed(0)
    batch = digits.batch("validation", 32, generator)
    assert batch.shape == (32, 1, 8, 8) and batch.dtype == torch.float64
    validation = digits.split("validation").flatten(1)
    assert (torch.cdist(batch.flatten(1), validation).min(dim=1).values == 0).all()
    again = digits.batch("validation", 32, torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)


def test_unknown_split(digits):
    with pytest.raises(InvalidInput, match="unknown split 'dev'"):
        digits.batch("dev", 4, torch.Generator())
