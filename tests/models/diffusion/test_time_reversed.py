"""``TimeReversed``: a velocity field trained with noise at s = 0 (TorchCFM, Meta's
flow_matching) read in probgen's convention (noise at t = 1), checked against the
exact marginal density of Gaussian data and through a saved state dict."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from probgen.core import DataSpec
from probgen.models.diffusion import (
    FlowMatchingModel,
    LinearPath,
    TimeReversed,
    VelocityPrediction,
    ode_log_likelihood,
)
from probgen.nn.time_embedding import TimeMLP


class NoiseAtZeroGaussianField(nn.Module):
    """The exact marginal velocity of x_s = s x_0 + (1 − s) ε, x_0 ~ N(m, c² I), ε ~ N(0, I):

        u(x, s) = E[x_0 − ε | x_s = x] = m + (s c² − (1 − s)) / (s² c² + (1 − s)²) (x − s m),

    the field a noise-at-zero library learns for Gaussian data (regression of
    x_0 − ε on the jointly Gaussian x_s).
    """

    def __init__(self, mean: Tensor, std: float) -> None:
        super().__init__()
        self.mean, self.var = mean, std * std

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        s = s[:, None]
        gain = (s * self.var - (1 - s)) / (s * s * self.var + (1 - s) ** 2)
        return self.mean + gain * (x - s * self.mean)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reversed_field_scores_the_exact_gaussian_density(dtype: torch.dtype) -> None:
    mean, std = torch.tensor([1.5, -0.5], dtype=dtype), 0.6
    path = LinearPath(t_min=1e-3)
    denoiser = VelocityPrediction(TimeReversed(NoiseAtZeroGaussianField(mean, std)), path)
    x = mean + std * torch.randn(64, 2, generator=torch.Generator().manual_seed(0)).to(dtype)
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    log_q = ode_log_likelihood(denoiser, x, rtol=tol, atol=tol)
    # ode_log_likelihood is log p_{t_min}: x_t = (1 − t) x_0 + t ε ~ N((1 − t) m, v_t I)
    t = path.t_min
    var = (1 - t) ** 2 * std * std + t * t
    exact = -0.5 * ((x - (1 - t) * mean).square().sum(1) / var + 2 * math.log(2 * math.pi * var))
    assert torch.allclose(log_q, exact, rtol=0.0, atol=50 * tol)
    # the field without the reversal scores the same points far from the truth
    wrong = VelocityPrediction(NoiseAtZeroGaussianField(mean, std), path)
    assert (ode_log_likelihood(wrong, x, rtol=1e-5, atol=1e-5) - exact).abs().max() > 1.0


def test_saved_peer_state_dict_loads_as_the_reversed_field(tmp_path) -> None:
    torch.manual_seed(0)
    peer = TimeMLP(2, (8, 8))
    for p in peer.parameters():  # leave the zero-initialised output layer
        nn.init.normal_(p, std=0.3)
    save_file(dict(peer.state_dict()), str(tmp_path / "net.safetensors"))
    model = FlowMatchingModel.for_data(DataSpec(event_shape=(2,)), hidden=(8, 8))
    model.denoiser.net = TimeReversed(model.denoiser.net)
    model.denoiser.net.net.load_state_dict(load_file(str(tmp_path / "net.safetensors")))
    x, t = torch.randn(5, 2), torch.rand(5)
    with torch.no_grad():
        assert torch.equal(model.denoiser(x, t).velocity, -peer(x, 1 - t))
