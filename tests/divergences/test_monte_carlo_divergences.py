"""Monte Carlo KL, JS and f-divergences against closed forms and quadrature."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probgen.core import InvalidInput
from probgen.distributions import DiagonalGaussian, Gaussian, StandardNormal
from probgen.divergences import (
    F_DIVERGENCES,
    FDivergence,
    f_divergence_monte_carlo,
    js_monte_carlo,
    kl_divergence,
    kl_monte_carlo,
)

LN2 = math.log(2.0)


def jsd_by_quadrature(gaussians) -> torch.Tensor:
    def integrand(x, p, q):
        m = (p + q) / 2
        return 0.5 * (torch.xlogy(p, p / m) + torch.xlogy(q, q / m))

    return gaussians.quad(integrand)


@pytest.mark.parametrize("order", ["pq", "qp"])
def test_kl_monte_carlo_matches_closed_form(order: str) -> None:
    full = Gaussian(torch.tensor([0.3, -0.2]), torch.tensor([[1.0, 0.4], [0.4, 0.8]]))
    diag = DiagonalGaussian(torch.tensor([0.0, 0.5]), torch.tensor([1.2, 1.1]))
    p, q = (full, diag) if order == "pq" else (diag, full)
    est = kl_monte_carlo(p, q, 50_000, generator=torch.Generator().manual_seed(1))
    exact = kl_divergence(p, q).item()
    assert est.kind == "estimate"
    assert 0.0 < est.stderr < 0.05 * exact
    assert abs(est.value - exact) < 4 * est.stderr


def test_kl_monte_carlo_of_identical_laws_is_zero() -> None:
    p = StandardNormal((3,))
    est = kl_monte_carlo(p, p, 100)
    assert est.value == 0.0
    assert est.stderr == 0.0


def test_js_matches_quadrature_and_is_symmetric(gaussians) -> None:
    g = torch.Generator().manual_seed(2)
    exact = jsd_by_quadrature(gaussians).item()
    pq = js_monte_carlo(gaussians.p, gaussians.q, 50_000, generator=g)
    qp = js_monte_carlo(gaussians.q, gaussians.p, 50_000, generator=g)
    for est in (pq, qp):
        assert abs(est.value - exact) < 4 * est.stderr
    assert abs(pq.value - qp.value) < 4 * math.hypot(pq.stderr, qp.stderr)


def test_js_extremes() -> None:
    p = DiagonalGaussian(torch.zeros(2), torch.ones(2))
    same = js_monte_carlo(p, p, 1000)
    assert same.value == 0.0
    far = js_monte_carlo(p, DiagonalGaussian(torch.full((2,), 60.0), torch.ones(2)), 1000)
    assert far.value == pytest.approx(LN2, abs=1e-12)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(
    mean=st.floats(-3.0, 3.0),
    log_std=st.floats(-1.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_js_in_range(mean: float, log_std: float, seed: int) -> None:
    p = DiagonalGaussian(torch.tensor([0.0]), torch.tensor([1.0]))
    q = DiagonalGaussian(torch.tensor([mean]), torch.tensor([math.exp(log_std)]))
    est = js_monte_carlo(p, q, 2000, generator=torch.Generator().manual_seed(seed))
    assert est.value <= LN2
    x = torch.linspace(-30.0, 30.0, 60_001)[:, None]
    dp, dq = p.log_prob(x).exp(), q.log_prob(x).exp()
    dm = (dp + dq) / 2
    exact = torch.trapezoid(0.5 * (torch.xlogy(dp, dp / dm) + torch.xlogy(dq, dq / dm)), x[:, 0])
    assert 0.0 <= exact.item() < LN2
    assert abs(est.value - exact.item()) <= 4 * est.stderr + 1e-9


@pytest.mark.parametrize("div", list(F_DIVERGENCES.values()), ids=list(F_DIVERGENCES))
def test_f_divergence_monte_carlo_matches_quadrature(div: FDivergence, gaussians) -> None:
    exact = gaussians.quad(lambda x, p, q: q * div.f(p / q)).item()
    est = f_divergence_monte_carlo(
        div, gaussians.p, gaussians.q, 50_000, generator=torch.Generator().manual_seed(3)
    )
    assert 0.0 < est.stderr < 0.1 * exact
    assert abs(est.value - exact) < 4 * est.stderr


def test_rejects_too_few_draws() -> None:
    p = StandardNormal((1,))
    with pytest.raises(InvalidInput, match="n >= 2"):
        kl_monte_carlo(p, p, 1)
