"""Every registered data set is built from keyword arguments alone and keeps its promises."""

from __future__ import annotations

import pytest
import torch

from probgen.data.base import Dataset
from probgen.registry import DATASETS

# Options a CLI user would give; {} means the defaults suffice.
OPTIONS = {"text": lambda data_dir: {"path": data_dir / "tinyshakespeare" / "input.txt"}}
# Splits to draw from: Fashion-MNIST has only its test files in ../shared/data; MNIST's
# validation split is empty unless n_validation > 0.
DRAWN = {"fashion_mnist": ("test",), "mnist": ("train", "test")}


@pytest.mark.parametrize("name", DATASETS.names())
def test_registered_data_set(name, data_dir, monkeypatch):
    monkeypatch.setenv("PROBGEN_DATA", str(data_dir))
    dataset = DATASETS.get(name)(**OPTIONS.get(name, lambda _: {})(data_dir))
    assert isinstance(dataset, Dataset)
    spec = dataset.spec
    for split in DRAWN.get(name, ("train", "validation", "test")):
        batch = dataset.batch(split, 5, torch.Generator().manual_seed(0))
        assert batch.shape == (5, *spec.event_shape)
        if spec.levels is None:
            assert batch.dtype == torch.float64
        else:
            # Ordinal values are floats holding integers, tokens are torch.long.
            assert batch.dtype in (torch.float64, torch.long)
            assert torch.equal(batch, batch.round())
            assert batch.min() >= 0 and batch.max() < spec.levels
