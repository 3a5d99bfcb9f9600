"""The diffusion networks: time embedding, TimeMLP and the U-Net keep shapes and start at zero."""

from __future__ import annotations

import pytest
import torch

from probgen.nn.time_embedding import SinusoidalEmbedding, TimeMLP
from probgen.nn.unet import UNet


def test_sinusoidal_embedding():
    """e(t) = [sin(s t ω_i), cos(s t ω_i)]: shape (B, dim), sin² + cos² = 1 per frequency."""
    emb = SinusoidalEmbedding(16)(torch.rand(5))
    assert emb.shape == (5, 16)
    assert torch.allclose(emb[:, :8] ** 2 + emb[:, 8:] ** 2, torch.ones(5, 8))
    with pytest.raises(ValueError, match="even"):
        SinusoidalEmbedding(7)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 7, 9)])
def test_unet_keeps_any_image_shape_and_starts_at_zero(shape):
    net = UNet(shape[0], channels=(8, 16))
    x, t = torch.randn(2, *shape), torch.rand(2)
    out = net(x, t)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(out))
    torch.nn.init.normal_(net.out.weight)
    out = net(x, t)
    out.sum().backward()
    assert net.stem.weight.grad is not None and out.abs().sum() > 0


def test_time_mlp_depends_on_time():
    net = TimeMLP(3, hidden=(16,))
    torch.nn.init.normal_(net.net[-1].weight)
    x = torch.randn(4, 3)
    assert net(x, torch.zeros(4)).shape == (4, 3)
    assert not torch.allclose(net(x, torch.zeros(4)), net(x, torch.ones(4)))
