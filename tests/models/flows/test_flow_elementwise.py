"""Properties of the univariate bijections: monotone, invertible, exact log-derivative."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probgen.models.flows import Affine, ElementwiseTransform, RationalQuadraticSpline

TRANSFORMS = [
    Affine(),
    Affine(scale_bound=1.0),
    RationalQuadraticSpline(bins=3, bound=2.0),
    RationalQuadraticSpline(bins=10, bound=4.0),
]


def _draw(tau: ElementwiseTransform, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted inputs (400,) spanning both tails and random parameters (400, P)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.linspace(-6, 6, 400)
    params = scale * torch.randn(1, tau.num_params, generator=g).expand(400, -1)
    return x, params


def _bound(tau: ElementwiseTransform) -> float:
    return tau.bound if isinstance(tau, RationalQuadraticSpline) else 1.0


def _flattest_slope(tau: ElementwiseTransform, params: torch.Tensor) -> float:
    """min_k h_k / w_k of a spline (one shared θ); infinite for the affine map."""
    if not isinstance(tau, RationalQuadraticSpline):
        return math.inf
    knots = tau._table(params[:1])[0][0]  # (3, K+1): x, y, δ
    return float((knots[1].diff() / knots[0].diff()).min())


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.floats(0.0, 3.0), index=st.integers(0, 3))
def test_monotone_invertible_with_exact_log_derivative(seed: int, scale: float, index: int) -> None:
    tau = TRANSFORMS[index]
    x, params = _draw(tau, seed, scale)
    x = x.requires_grad_(True)
    z, log_d = tau.forward(x, params)
    assert torch.all(z[1:] > z[:-1])  # one shared θ: strictly increasing in x
    (grad,) = torch.autograd.grad(z.sum(), x)
    torch.testing.assert_close(log_d, grad.log(), atol=1e-9, rtol=1e-9)
    back, inv_log_d = tau.inverse(z.detach(), params)
    # z − y_k is rounded to eps·(|z| + B), which τ⁻¹ magnifies by 1/τ'(x) and,
    # through the quadratic's coefficients, by the bin's 1/s_k: flat splines
    # (τ' ~ 1e-6 at scale 3) round-trip only to that (measured: ≤ 3.9× the bound
    # below over 6000 draws of both splines)
    eps = torch.finfo(x.dtype).eps
    magnified = (z.abs() + _bound(tau)) * (1 / log_d.exp() + 1 / _flattest_slope(tau, params))
    tolerance = 16 * eps * (x.abs() + magnified).detach()
    assert torch.all((back - x.detach()).abs() <= tolerance)
    torch.testing.assert_close(inv_log_d, -log_d.detach(), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("tau", TRANSFORMS, ids=repr)
def test_zero_parameters_give_the_identity(tau: ElementwiseTransform) -> None:
    x = torch.linspace(-6, 6, 101)
    z, log_d = tau.forward(x, torch.zeros(101, tau.num_params))
    torch.testing.assert_close(z, x, atol=1e-12, rtol=0)
    torch.testing.assert_close(log_d, torch.zeros(101), atol=1e-12, rtol=0)


def test_spline_maps_its_interval_onto_itself_and_is_continuous_at_knots() -> None:
    spline = RationalQuadraticSpline(bins=5, bound=2.0)
    params = torch.randn(1, spline.num_params).expand(3, -1)
    z, _ = spline.forward(torch.tensor([-2.0, 2.0, 0.0]), params)
    torch.testing.assert_close(z[:2], torch.tensor([-2.0, 2.0]), atol=1e-12, rtol=0)
    knots = spline._table(params[:1])[0][0, 0]  # the x knots (6,)
    eps = 1e-9
    left, _ = spline.forward(knots - eps, params[:1].expand(6, -1))
    right, _ = spline.forward(knots + eps, params[:1].expand(6, -1))
    torch.testing.assert_close(left, right, atol=1e-7, rtol=0)


@pytest.mark.parametrize(("bins", "bound"), [(3, 2.0), (8, 2.5)])
def test_spline_gradient_equals_finite_differences(bins: int, bound: float) -> None:
    """The hand-written backward of the density direction, in x and θ, inside and in the tails."""
    spline = RationalQuadraticSpline(bins=bins, bound=bound)
    g = torch.Generator().manual_seed(bins)
    x = 2 * torch.randn(64, 2, generator=g)
    x = x[(x.abs() - bound).abs() > 1e-3][:40].reshape(20, 2)  # off the kinks at ±B
    assert (x.abs() > bound).any() and (x.abs() < bound).any()
    params = 1.5 * torch.randn(20, 2, spline.num_params, generator=g)
    inputs = (x.requires_grad_(), params.requires_grad_())
    assert torch.autograd.gradcheck(spline.forward, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)
