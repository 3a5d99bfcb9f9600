"""The conditional PixelCNN p(x | c) (a bias V_l φ(c) in every masked layer): normalised for each
c by enumeration, autoregressive in x with the condition present, reading c, sampled from
p(· | c), built from the data's condition, with the standard errors for bad conditions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from probgen.compare.config import applicable_models
from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.autoregressive import PixelCNN

CLASSES = ConditionSpec(classes=3)
VECTOR = ConditionSpec(shape=(2,))


def all_images(levels: int, shape: tuple[int, int, int]) -> torch.Tensor:
    n = int(np.prod(shape))
    grid = torch.tensor(list(itertools.product(range(levels), repeat=n)), dtype=torch.float64)
    return grid.reshape(-1, *shape)


def sharpened(model: PixelCNN, factor: float = 3.0) -> PixelCNN:
    with torch.no_grad():  # a far-from-uniform law, so a wrong or ignored condition would show
        for p in model.parameters():
            p.mul_(factor)
    return model


def later_or_same(shape: tuple[int, int, int]) -> torch.Tensor:
    """[out, in] over flattened (C, H, W): ``in`` is ``out`` or after it in the AR order."""
    c, h, w = shape
    cc, ii, jj = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    rank = ((ii * w + jj) * c + cc).flatten()  # raster order over pixels, then channel
    return rank[None, :] >= rank[:, None]


@pytest.mark.parametrize("spec", [CLASSES, VECTOR], ids=["classes", "vector"])
def test_every_conditional_law_of_binary_2x2_images_sums_to_one(spec: ConditionSpec) -> None:
    """Σ over all 2^4 images of p(x | c) = 1 for every c, and the laws of two c differ."""
    model = sharpened(
        PixelCNN((1, 2, 2), levels=2, hidden=8, layers=2, kernel_size=3, condition=spec)
    )
    x = all_images(2, (1, 2, 2))
    conditions = range(3) if spec.is_classes else (torch.randn(2), torch.randn(2))
    laws = []
    for c in conditions:
        log_p = model.log_prob(x, condition=spec.expand(c, len(x)))
        torch.testing.assert_close(log_p.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
        laws.append(log_p)
    assert (laws[0] - laws[1]).abs().max() > 0.1  # the condition reaches the law


@pytest.mark.parametrize("spec", [CLASSES, VECTOR], ids=["classes", "vector"])
def test_gradients_reach_exactly_the_earlier_entries_with_the_condition_present(
    spec: ConditionSpec,
) -> None:
    """∂ logits_i / ∂x_j = 0 for every j ≥ i in raster-then-channel order, and ≠ 0 for every
    j < i (a 7×7 first kernel covers the 3×4 image: no blind spot), for a fixed c."""
    shape = (2, 3, 4)
    model = PixelCNN(shape, levels=3, hidden=8, layers=1, activation=torch.nn.Tanh, condition=spec)
    c = spec.expand(1 if spec.is_classes else torch.randn(2), 1)

    def logits(v: torch.Tensor) -> torch.Tensor:  # (1, C, H, W) levels -> (K, C·H·W)
        return model.logits(v, c)[0].permute(3, 0, 1, 2).reshape(3, -1)

    jac = torch.autograd.functional.jacobian(logits, torch.rand(1, *shape) * 2)
    n = int(np.prod(shape))
    dependence = jac.reshape(3, n, n).abs().sum(0) > 0
    assert torch.equal(dependence, ~later_or_same(shape))


def test_every_conditional_reads_a_continuous_condition() -> None:
    """∂ logits_i / ∂c ≠ 0 for every entry i, the first included."""
    shape = (1, 2, 3)
    model = PixelCNN(shape, levels=2, hidden=8, layers=1, kernel_size=3, condition=VECTOR)
    x = torch.randint(0, 2, (1, *shape)).double()
    jac = torch.autograd.functional.jacobian(lambda c: model.logits(x, c), torch.randn(1, 2))
    assert bool((jac.abs().flatten(4).sum(-1).flatten(1).sum(0) > 0).all())


def test_samples_of_each_class_follow_its_exact_law() -> None:
    shape = (1, 1, 3)
    model = sharpened(
        PixelCNN(shape, levels=2, hidden=8, layers=1, kernel_size=3, condition=CLASSES)
    )
    x = all_images(2, shape)
    codes_of = torch.tensor([4, 2, 1])
    for k in (0, 2):
        with torch.no_grad():
            probs = model.log_prob(x, condition=torch.full((8,), k)).exp().numpy()
        draws = model.sample(20_000, condition=k, generator=torch.Generator().manual_seed(k))
        codes = (draws.reshape(-1, 3).long() * codes_of).sum(1).numpy()
        assert stats.chisquare(np.bincount(codes, minlength=8), 20_000 * probs).pvalue > 1e-3


def test_bad_conditions_get_the_standard_errors() -> None:
    model = PixelCNN((1, 2, 2), levels=2, hidden=4, layers=1, kernel_size=3, condition=CLASSES)
    x = torch.zeros(2, 1, 2, 2)
    with pytest.raises(
        InvalidInput, match=r"class labels must lie in 0\.\.2, got values in \[0, 3\]"
    ):
        model.log_prob(x, condition=torch.tensor([0, 3]))
    with pytest.raises(InvalidInput, match=r"class labels must lie in 0\.\.2"):
        model.sample(2, condition=-1)
    with pytest.raises(InvalidInput, match="no unconditional mode: pass condition="):
        model.log_prob(x)
    with pytest.raises(InvalidInput, match="expected labels of shape"):
        model.log_prob(x, condition=torch.tensor([0, 1, 2]))
    unconditional = PixelCNN((1, 2, 2), levels=2, hidden=4, layers=1, kernel_size=3)
    with pytest.raises(InvalidInput, match="is unconditional"):
        unconditional.log_prob(x, condition=torch.tensor([0, 1]))


def test_for_data_follows_the_data_condition_and_compare_lists_it() -> None:
    spec = DataSpec((1, 8, 8), 17, condition=ConditionSpec(classes=10))
    model = PixelCNN.for_data(spec, hidden=4, layers=1)
    assert model.condition_spec == spec.condition
    assert PixelCNN.for_data(spec, conditional=False, hidden=4, layers=1).condition_spec is None
    with pytest.raises(InvalidInput, match="conditional=True needs data with a condition"):
        PixelCNN.for_data(DataSpec((1, 8, 8), 17), conditional=True)
    assert "pixelcnn" in applicable_models(spec)
