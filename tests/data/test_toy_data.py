"""Toy data sets: exact samples of their truth, fixed vs fresh training data, seeds."""

from __future__ import annotations

import pytest
import torch

from probgen.core import InvalidInput
from probgen.data.toy import ToyDataset, split_seed
from probgen.distributions import DiagonalGaussian
from probgen.distributions.shapes import SHAPES, make_shape


@pytest.fixture
def gaussian() -> DiagonalGaussian:
    return DiagonalGaussian(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 2.0, 1.0]))


@pytest.mark.parametrize("name", list(SHAPES))
def test_named_shapes(name):
    data = ToyDataset(name, n_validation=100, n_test=100)
    assert isinstance(data.truth, SHAPES[name])
    assert data.spec.event_shape == (2,) and data.spec.levels is None
    batch = data.batch("train", 32, torch.Generator().manual_seed(0))
    assert batch.shape == (32, 2) and batch.dtype == torch.float64
    assert torch.isfinite(data.truth.log_prob(data.split("validation"))).all()


def test_shape_options_reach_the_distribution():
    data = ToyDataset("8gaussians", radius=5.0, n_modes=4)
    expected = make_shape("8gaussians", radius=5.0, n_modes=4)
    x = data.split("test")[:100]
    assert torch.allclose(data.truth.log_prob(x), expected.log_prob(x))


def test_fixed_sets_are_exact_samples_with_the_documented_seeds(gaussian):
    data = ToyDataset(gaussian, n_train=300, n_validation=200, n_test=100, seed=7)
    for split, n in (("train", 300), ("validation", 200), ("test", 100)):
        generator = torch.Generator().manual_seed(split_seed(7, split))
        assert torch.equal(data.split(split), gaussian.sample(n, generator=generator))
    again = ToyDataset(gaussian, n_train=300, n_validation=200, n_test=100, seed=7)
    assert torch.equal(again.split("test"), data.split("test"))


def test_seeds_are_distinct_across_splits_and_seeds():
    seeds = {split_seed(s, split) for s in range(4) for split in ("train", "validation", "test")}
    assert len(seeds) == 12
    assert all(0 <= s < 2**63 for s in seeds)


def test_fixed_sets_follow_the_truth(gaussian):
    test = ToyDataset(gaussian, n_test=20_000).split("test")
    # Mean of 20000 draws: standard error std / sqrt(n).
    assert torch.allclose(test.mean(0), gaussian.mean, atol=5 * 2.0 / 20_000**0.5)
    assert torch.allclose(test.std(0), gaussian.std, rtol=0.03)


def test_fresh_training_data(gaussian):
    data = ToyDataset(gaussian)
    generator = torch.Generator().manual_seed(0)
    a, b = data.batch("train", 16, generator), data.batch("train", 16, generator)
    assert a.shape == (16, 3) and not torch.equal(a, b)
    assert torch.equal(a, gaussian.sample(16, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(InvalidInput, match="training split is infinite"):
        data.split("train")


def test_fixed_training_batches_are_rows_of_the_training_set(gaussian):
    data = ToyDataset(gaussian, n_train=50)
    batch = data.batch("train", 200, torch.Generator().manual_seed(0))
    is_row = (batch[:, None, :] == data.split("train")[None, :, :]).all(dim=2)  # (200, 50)
    assert is_row.any(dim=1).all()


def test_errors(gaussian):
    with pytest.raises(InvalidInput, match="only to a shape given by name"):
        ToyDataset(gaussian, radius=2.0)
    with pytest.raises(InvalidInput, match="n_validation must be >= 1"):
        ToyDataset(gaussian, n_validation=0)
    with pytest.raises(InvalidInput, match="unknown shape 'circle'"):
        ToyDataset("circle")
    with pytest.raises(InvalidInput, match="unknown split"):
        ToyDataset(gaussian).batch("eval", 2, torch.Generator())
