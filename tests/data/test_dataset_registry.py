"""Every registered data set is built from keyword arguments alone and keeps its promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from probgen.data.base import Dataset
from probgen.registry import DATASETS


def _arrays(tmp_path: Path) -> dict[str, str]:
    """A small .npz of (x, c) pairs, as a user would give it."""
    rng = np.random.default_rng(0)
    path = tmp_path / "pairs.npz"
    np.savez(path, x=rng.normal(size=(50, 3)), c=rng.integers(0, 4, size=50))
    return {"path": str(path), "conditions": str(path)}


# Options a CLI user would give; {} means the defaults suffice.
OPTIONS = {
    "text": lambda data_dir, tmp: {"path": data_dir / "tinyshakespeare" / "input.txt"},
    "arrays": lambda data_dir, tmp: _arrays(tmp),
    "file": lambda data_dir, tmp: {"path": data_dir / "old_faithful" / "faithful.csv"},
}
# Splits to draw from: Fashion-MNIST has only its test files in ../shared/data; MNIST's
# validation split is empty unless n_validation > 0.
DRAWN = {"fashion_mnist": ("test",), "mnist": ("train", "test")}


@pytest.mark.parametrize("name", DATASETS.names())
def test_registered_data_set(name, data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("PROBGEN_DATA", str(data_dir))
    dataset = DATASETS.get(name)(**OPTIONS.get(name, lambda *_: {})(data_dir, tmp_path))
    assert isinstance(dataset, Dataset)
    spec = dataset.spec
    for split in DRAWN.get(name, ("train", "validation", "test")):
        batch = dataset.batch(split, 5, torch.Generator().manual_seed(0))
        assert batch.shape == (5, *spec.event_shape)
        x, c = dataset.draw(split, 5, torch.Generator().manual_seed(0))
        assert torch.equal(x, batch)  # the same rows as batch, with their conditions
        if spec.condition is None:
            assert c is None
        else:
            spec.condition.check(c, 5)
        if spec.levels is None:
            assert batch.dtype == torch.float64
        else:
            # Ordinal values are floats holding integers, tokens are torch.long.
            assert batch.dtype in (torch.float64, torch.long)
            assert torch.equal(batch, batch.round())
            assert batch.min() >= 0 and batch.max() < spec.levels
