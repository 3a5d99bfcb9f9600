"""The flow-matching fast path against the general one, to the dtype's rounding.

- ``ForwardProcess.marginal_and_velocity`` (LinearPath's two fused kernels,
  x_t = x_0 + t u) equals α_t x_0 + σ_t ε and α̇_t x_0 + σ̇_t ε from the schedule;
- a denoiser's deferred ``Prediction`` equals the eager one built from the
  same coefficients, for every path and prediction, and computes no coefficient
  when the quantity it was given is read;
- the ``FlowMatching`` loss and its gradients in the network's parameters equal
  the loss written from the schedule's (α, σ, α̇, σ̇), for every path and
  prediction the objective trains.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probgen.core import InvalidInput, check_input
from probgen.models.diffusion import (
    DataPrediction,
    DDPMChain,
    FlowMatching,
    LinearPath,
    NoisePrediction,
    Prediction,
    ScorePrediction,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
    VelocityPrediction,
)
from probgen.tensors import append_dims, sum_events

PATHS = {
    "linear": lambda: LinearPath(),
    "linear_end": lambda: LinearPath(alpha_end=0.3),
    "vp": lambda: VariancePreserving(),
    "subvp": lambda: SubVariancePreserving(),
    "ve": lambda: VarianceExploding(sigma_max=20.0),
    "ddpm": lambda: DDPMChain.linear(1000),
}
PREDICTIONS = {
    "velocity": VelocityPrediction,
    "data": DataPrediction,
    "noise": NoisePrediction,
    "score": ScorePrediction,
}


class _Net(nn.Module):
    """A small smooth network of (x, t): x (B, 2), t (B,) -> (B, 2)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.layer = nn.Linear(3, 16)
        self.out = nn.Linear(16, 2)

    def forward(self, x, t):
        return self.out(torch.tanh(self.layer(torch.cat([x, t[:, None]], 1))))


def _reference(process, x0, t, noise):
    n = x0.dim()
    alpha, sigma = (append_dims(c, n) for c in process.alpha_sigma(t))
    d_alpha, d_sigma = (append_dims(c, n) for c in process.rates(t))
    return alpha * x0 + sigma * noise, d_alpha * x0 + d_sigma * noise, d_alpha, d_sigma


@pytest.mark.parametrize("name", list(PATHS))
def test_marginal_and_velocity_is_the_schedule(name, theory_dtype, tol):
    process = PATHS[name]()
    g = torch.Generator().manual_seed(0)
    x0 = 3.0 * torch.randn(512, 2, generator=g)
    noise = torch.randn(512, 2, generator=g)
    t = process.sample_times(512, g, like=x0)
    x_t, u = process.marginal_and_velocity(x0, t, noise)
    ref_x, ref_u, d_alpha, d_sigma = _reference(process, x0, t, noise)
    size = (x0.abs() + noise.abs()).max().item()
    rate = 1.0 + (d_alpha.abs() + d_sigma.abs()).max().item()
    assert (x_t - ref_x).abs().max().item() <= tol(theory_dtype, size, 8)
    assert (u - ref_u).abs().max().item() <= tol(theory_dtype, size * rate, 8)
    # and the rounding is that of a correct formula, not a coincidence: a wrong time fails
    wrong, _ = process.marginal_and_velocity(x0, t.flip(0), noise)
    assert (wrong - ref_x).abs().max().item() > 1e3 * tol(theory_dtype, size, 8)


class _CountingPath(LinearPath):
    """LinearPath counting its coefficient evaluations."""

    calls = 0

    def alpha_sigma(self, t):
        type(self).calls += 1
        return super().alpha_sigma(t)

    def rates(self, t):
        type(self).calls += 1
        return super().rates(t)


@pytest.mark.parametrize("name", list(PATHS))
@pytest.mark.parametrize("kind", list(PREDICTIONS))
def test_deferred_prediction_equals_the_eager_one(name, kind, theory_dtype):
    process = PATHS[name]()
    denoiser = PREDICTIONS[kind](_Net(), process)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 2, generator=g)
    t = 0.05 + 0.9 * torch.rand(64, generator=g)  # α_t, σ_t > 0: every conversion defined
    for times in (t, t[7]):  # per-example times and one time (Python-float coefficients)
        fast = denoiser(x, times)
        value = denoiser.net(x, times.expand(64))
        alpha, sigma, d_alpha, d_sigma = denoiser.path_coefficients(x, times)
        eager = Prediction(x, alpha, sigma, d_alpha=d_alpha, d_sigma=d_sigma, **{kind: value})
        for other in Prediction.KINDS:
            assert torch.equal(getattr(fast, other), getattr(eager, other)), (times, other)


def test_reading_the_given_quantity_computes_no_coefficient():
    process = _CountingPath()
    denoiser = VelocityPrediction(_Net(), process)
    x, t = torch.randn(8, 2), torch.rand(8)
    pred = denoiser(x, t)
    _CountingPath.calls = 0
    assert pred.velocity.shape == (8, 2)
    assert _CountingPath.calls == 0
    assert pred.data.shape == (8, 2)
    assert _CountingPath.calls == 2  # α, σ and the rates once,
    assert pred.noise.shape == (8, 2)
    assert _CountingPath.calls == 2  # and kept for every later conversion


@pytest.mark.parametrize("name", ["linear", "linear_end", "vp", "subvp", "ddpm"])
@pytest.mark.parametrize("kind", ["velocity", "data", "noise"])
def test_flow_matching_loss_and_gradients_equal_the_general_formula(name, kind, theory_dtype, tol):
    process = PATHS[name]()
    if kind == "noise" and name.startswith("linear") and name != "linear_end":
        pytest.skip("noise prediction is singular where α_t = 0")
    denoiser = PREDICTIONS[kind](_Net(), process)
    x0 = 2.0 * torch.randn(256, 2, generator=torch.Generator().manual_seed(2))
    fast = FlowMatching()(denoiser, x0, torch.Generator().manual_seed(5)).mean()
    fast_grads = torch.autograd.grad(fast, list(denoiser.parameters()))
    g = torch.Generator().manual_seed(5)  # the objective's draws, in its order: ε, then t
    noise = torch.randn(x0.shape, generator=g)
    t = process.sample_times(256, g, like=x0)
    x_t, target, _, _ = _reference(process, x0, t, noise)
    alpha, sigma, d_alpha, d_sigma = denoiser.path_coefficients(x_t, t)
    value = denoiser.net(x_t, t)
    eager = Prediction(x_t, alpha, sigma, d_alpha=d_alpha, d_sigma=d_sigma, **{kind: value})
    general = sum_events((eager.velocity - target).square()).mean()
    grads = torch.autograd.grad(general, list(denoiser.parameters()))
    # the conversions amplify the rounding of x_t by up to |d/dx| ≤ 1/min(α, σ, Δ)
    floor = min(torch.as_tensor(c).abs().min().item() for c in (alpha, sigma, 1.0))
    ratio = 1.0 / floor if kind != "velocity" else 1.0
    scale = 64.0 * ratio
    assert abs(fast.item() - general.item()) <= tol(theory_dtype, general.item(), scale)
    for a, b in zip(fast_grads, grads, strict=True):
        size = b.abs().max().item() + 1.0
        assert (a - b).abs().max().item() <= tol(theory_dtype, size, scale)


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_finiteness_check_finds_every_non_finite_value(bad, dtype):
    for position in (0, 37, 511):
        x = torch.randn(256, 2).to(dtype)
        x.view(-1)[position] = bad
        with pytest.raises(InvalidInput, match="1 non-finite"):
            check_input(x, (2,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finiteness_check_accepts_extreme_finite_values(dtype):
    info = torch.finfo(dtype)
    x = torch.tensor([[info.max, -info.max], [info.tiny / 4, -info.tiny / 4]] * 64, dtype=dtype)
    assert check_input(x, (2,)) is x  # Σ x would overflow; Σ (x − x) does not
    assert check_input(torch.empty(0, 2, dtype=dtype), (2,)).shape == (0, 2)
