"""PixelCNN: masks, normalisation by enumeration, the AR property by gradients, sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from probgen.core import DataSpec, InvalidInput, Likelihood
from probgen.models.autoregressive import PixelCNN
from probgen.nn import MaskedConv2d
from probgen.registry import MODELS


def all_images(levels: int, shape: tuple[int, int, int]) -> torch.Tensor:
    n = int(np.prod(shape))
    return (
        torch.tensor(list(itertools.product(range(levels), repeat=n))).double().reshape(-1, *shape)
    )


def allowed(shape: tuple[int, int, int]) -> torch.Tensor:
    """[out, in] over flattened (C, H, W): in comes before out (raster order, then channel)."""
    c, h, w = shape
    cc, ii, jj = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    rank = ((ii * w + jj) * c + cc).flatten()  # position in the autoregressive order
    return rank[None, :] < rank[:, None]


def dependence(model: PixelCNN, x: torch.Tensor) -> torch.Tensor:
    """[out, in]: logits of entry ``out`` have nonzero gradient w.r.t. input entry ``in``."""
    shape = model.event_shape
    net_in = x.reshape(1, *shape)

    def f(v):
        out = model.net(v)  # (1, C·K, H, W)
        return out.reshape(shape[0], model.levels, *shape[1:]).transpose(0, 1)  # (K, C, H, W)

    jac = torch.autograd.functional.jacobian(f, net_in)  # (K, C, H, W, 1, C, H, W)
    n = int(np.prod(shape))
    return jac.reshape(model.levels, n, n).abs().sum(0) > 0


def test_mask_types_a_and_b_differ_only_at_the_centre():
    a = MaskedConv2d(2, 4, 3, include_center=False, data_channels=2).mask
    b = MaskedConv2d(2, 4, 3, include_center=True, data_channels=2).mask
    expected_spatial = torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert torch.equal(a[..., 1, 1], torch.tensor([[0.0, 0], [0, 0], [1, 0], [1, 0]]))
    assert torch.equal(b[..., 1, 1], torch.tensor([[1.0, 0], [1, 0], [1, 1], [1, 1]]))
    for m in (a, b):
        off_centre = m.clone()
        off_centre[..., 1, 1] = 0
        assert torch.equal(off_centre, expected_spatial.expand_as(m))


def test_kernel_size_must_be_odd():
    with pytest.raises(InvalidInput, match="odd"):
        MaskedConv2d(1, 4, 4, include_center=True)


def test_sixteen_binary_2x2_images_sum_to_one():
    model = PixelCNN((1, 2, 2), levels=2, hidden=16, layers=2, kernel_size=3)
    assert model.likelihood is Likelihood.EXACT
    total = model.log_prob(all_images(2, (1, 2, 2))).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0))


@pytest.mark.parametrize(("levels", "shape"), [(2, (2, 2, 1)), (3, (3, 1, 1)), (3, (1, 1, 3))])
def test_multichannel_and_multilevel_images_sum_to_one(levels, shape):
    model = PixelCNN(shape, levels=levels, hidden=12, layers=1, kernel_size=3)
    torch.testing.assert_close(
        model.log_prob(all_images(levels, shape)).logsumexp(0), torch.tensor(0.0)
    )


def test_gradients_follow_raster_then_channel_order_exactly_when_the_kernel_covers_the_image():
    # a 7x7 type-A kernel sees every earlier pixel of a 3x4 image: no blind spot
    shape = (2, 3, 4)
    model = PixelCNN(shape, levels=3, hidden=8, layers=1, activation=torch.nn.Tanh)
    assert torch.equal(dependence(model, torch.rand(shape)), allowed(shape))


def test_gradients_never_reach_the_current_or_later_entries_on_a_larger_image():
    shape = (3, 6, 6)
    model = PixelCNN(shape, levels=2, hidden=9, layers=2, kernel_size=3, activation=torch.nn.Tanh)
    dep = dependence(model, torch.rand(shape))
    assert not (dep & ~allowed(shape)).any()
    # and each entry does see its left and upper neighbours and earlier channels
    c, h, w = shape
    idx = torch.arange(c * h * w).reshape(shape)
    assert dep[idx[2, 3, 3], idx[0, 3, 3]] and dep[idx[2, 3, 3], idx[1, 3, 3]]
    assert dep[idx[0, 3, 3], idx[2, 3, 2]] and dep[idx[0, 3, 3], idx[0, 2, 3]]


def test_samples_follow_the_exact_distribution():
    shape = (1, 2, 2)
    model = PixelCNN(shape, levels=2, hidden=8, layers=1, kernel_size=3)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3)
        images = all_images(2, shape)
        probs = model.log_prob(images).exp().numpy()
    draws = model.sample(20000, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (20000, *shape) and draws.dtype == torch.float64
    codes = (draws.reshape(-1, 4).long() * torch.tensor([8, 4, 2, 1])).sum(1).numpy()
    assert stats.chisquare(np.bincount(codes, minlength=16), 20000 * probs).pvalue > 1e-3


def test_top_k_one_is_greedy_and_levels_stay_in_range():
    model = PixelCNN((2, 3, 3), levels=5, hidden=8, layers=1, kernel_size=3)
    a = model.sample(3, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, a[:1].expand_as(a))
    b = model.sample(50, temperature=2.0, top_p=0.9)
    assert ((b >= 0) & (b <= 4) & (b == b.round())).all()


def test_for_data_registry_and_bad_inputs():
    assert MODELS.get("pixelcnn") is PixelCNN
    model = PixelCNN.for_data(DataSpec((1, 8, 8), 17), hidden=8, layers=1)
    assert model.levels == 17 and model.event_shape == (1, 8, 8)
    x = torch.randint(0, 17, (2, 1, 8, 8))
    torch.testing.assert_close(model.log_prob(x), model.log_prob(x.double()))
    with pytest.raises(InvalidInput, match="continuous"):
        PixelCNN.for_data(DataSpec((1, 8, 8)))
    with pytest.raises(InvalidInput, match=r"\(C, H, W\)"):
        PixelCNN((8, 8))
    with pytest.raises(InvalidInput, match="0…16, got values in 17…17"):
        model.log_prob(torch.full((1, 1, 8, 8), 17.0))
