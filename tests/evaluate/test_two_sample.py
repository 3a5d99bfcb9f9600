"""C2ST against its ground truth: ½ for one law, ½ + ½ TV (the Bayes accuracy) for two."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm

from probgen.core import InvalidInput
from probgen.evaluate.two_sample import c2st


def _normal(n: int, shift: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) + torch.tensor([shift, 0.0])


def test_one_law_gives_one_half() -> None:
    result = c2st(_normal(1000, 0.0, 1), _normal(1000, 0.0, 2))
    assert abs(result.value - 0.5) < 4 * result.stderr


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_two_gaussians_give_the_bayes_accuracy(shift: float) -> None:
    """For N(0, I) vs N(δe₁, I) with equal sizes, ½ + ½ TV = Φ(δ/2)."""
    result = c2st(_normal(1000, shift, 1), _normal(1000, 0.0, 2))
    bayes = norm.cdf(shift / 2)
    # a trained classifier is at most Bayes-optimal; allow 4 binomial standard errors either way
    assert abs(result.value - bayes) < 4 * math.sqrt(bayes * (1 - bayes) / 2000)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(InvalidInput, match="2 features per row, reference 3"):
        c2st(torch.zeros(10, 2), torch.zeros(10, 3))
    with pytest.raises(InvalidInput, match="non-finite"):
        c2st(torch.full((10, 2), math.nan), torch.zeros(10, 2))
