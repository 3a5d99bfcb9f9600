"""Every f-divergence: generator, conjugate, optimal critic, activation and variational bound."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probgen.divergences import (
    F_DIVERGENCES,
    FDivergence,
    GANJensenShannon,
    JensenShannon,
    TotalVariation,
    kl_divergence,
    variational_bound,
)

DIVERGENCES = list(F_DIVERGENCES.values())
IDS = list(F_DIVERGENCES)
T_GRID = torch.cat(
    [torch.logspace(-3, 2, 400, dtype=torch.float64), torch.ones(1, dtype=torch.float64)]
)


def f_divergence_by_quadrature(div: FDivergence, gaussians) -> torch.Tensor:
    return gaussians.quad(lambda x, p, q: q * div.f(p / q))


def test_table_names_match_instances() -> None:
    assert set(F_DIVERGENCES) == {
        "kl",
        "reverse_kl",
        "js",
        "gan",
        "pearson",
        "hellinger",
        "total_variation",
    }
    for name, div in F_DIVERGENCES.items():
        assert div.name == name


@pytest.mark.parametrize("div", DIVERGENCES, ids=IDS)
def test_generator_vanishes_at_one_and_is_convex(div: FDivergence) -> None:
    assert div.f(torch.tensor(1.0)).abs() < 1e-15
    t = torch.logspace(-3, 2, 200)
    # midpoint convexity on neighbouring grid points
    assert (div.f((t[:-2] + t[2:]) / 2) <= (div.f(t[:-2]) + div.f(t[2:])) / 2 + 1e-12).all()


@pytest.mark.parametrize("div", DIVERGENCES, ids=IDS)
def test_f_prime_is_the_derivative(div: FDivergence) -> None:
    t = T_GRID[(T_GRID - 1.0).abs() > 1e-3].clone().requires_grad_(True)  # TV: kink at 1
    (grad,) = torch.autograd.grad(div.f(t).sum(), t)
    torch.testing.assert_close(div.f_prime(t.detach()), grad)


@pytest.mark.parametrize("div", DIVERGENCES, ids=IDS)
def test_fenchel_equality(div: FDivergence) -> None:
    """f*(f'(t)) = t f'(t) − f(t): the supremum defining f* is attained at t."""
    u = div.f_prime(T_GRID)
    assert div.in_domain(u).all()
    torch.testing.assert_close(div.f_star(u), T_GRID * u - div.f(T_GRID))


@pytest.mark.parametrize("div", DIVERGENCES, ids=IDS)
@settings(max_examples=30, deadline=None, derandomize=True)
@given(log_t=st.floats(-6.0, 6.0), v=st.floats(-8.0, 8.0))
def test_fenchel_young_inequality(div: FDivergence, log_t: float, v: float) -> None:
    """f*(u) ≥ u t − f(t) for every t ≥ 0 and every u in dom(f*) (u = g_f(v))."""
    t, u = torch.tensor(math.exp(log_t)), div.activation(torch.tensor(v))
    assert div.f_star(u) >= u * t - div.f(t) - 1e-9 * (1.0 + (u * t).abs())


@pytest.mark.parametrize("div", DIVERGENCES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_activation_lands_in_domain(div: FDivergence, dtype: torch.dtype) -> None:
    v = torch.linspace(-15.0, 15.0, 301, dtype=dtype)
    u = div.activation(v)
    assert div.in_domain(u).all()
    assert torch.isfinite(div.f_star(u)).all()
    # the stable form agrees with the float64 composition, also where float32 rounds
    # g_f(v) onto the edge of dom(f*)
    reference = div.f_star(div.activation(v.double())).to(dtype)
    torch.testing.assert_close(div.f_star_of_activation(v), reference)
    extreme = torch.tensor([-60.0, 60.0], dtype=dtype)
    assert torch.isfinite(div.f_star_of_activation(extreme)).all()


@pytest.mark.parametrize("div", [d for d in DIVERGENCES if not d.in_domain(torch.tensor(5.0))])
def test_conjugate_is_infinite_outside_domain(div: FDivergence) -> None:
    assert div.f_star(torch.tensor(5.0)) == torch.inf


def test_known_divergences_by_quadrature(gaussians) -> None:
    """KL and reverse KL against the closed form; Hellinger against the Bhattacharyya form."""
    kl_pq, kl_qp = kl_divergence(gaussians.p, gaussians.q), kl_divergence(gaussians.q, gaussians.p)
    torch.testing.assert_close(f_divergence_by_quadrature(F_DIVERGENCES["kl"], gaussians), kl_pq)
    torch.testing.assert_close(
        f_divergence_by_quadrature(F_DIVERGENCES["reverse_kl"], gaussians), kl_qp
    )
    (m1, s1), (m2, s2) = (0.0, 1.0), (0.5, 1.3)
    bc = math.sqrt(2 * s1 * s2 / (s1**2 + s2**2)) * math.exp(
        -((m1 - m2) ** 2) / (4 * (s1**2 + s2**2))
    )
    hellinger = f_divergence_by_quadrature(F_DIVERGENCES["hellinger"], gaussians)
    torch.testing.assert_close(hellinger, torch.tensor(2.0 * (1.0 - bc)))


def test_js_convention_by_quadrature(gaussians) -> None:
    """JensenShannon is ½ KL(P‖M) + ½ KL(Q‖M); the GAN generator gives exactly twice it."""

    def jsd_definition(x, p, q):
        m = (p + q) / 2
        return 0.5 * (torch.xlogy(p, p / m) + torch.xlogy(q, q / m))

    jsd = gaussians.quad(jsd_definition)
    assert 0.0 < jsd < math.log(2.0)
    torch.testing.assert_close(f_divergence_by_quadrature(JensenShannon(), gaussians), jsd)
    torch.testing.assert_close(f_divergence_by_quadrature(GANJensenShannon(), gaussians), 2 * jsd)


def test_total_variation_by_quadrature(gaussians) -> None:
    tv = gaussians.quad(lambda x, p, q: 0.5 * (p - q).abs())
    torch.testing.assert_close(f_divergence_by_quadrature(TotalVariation(), gaussians), tv)


@pytest.mark.parametrize("div", DIVERGENCES, ids=IDS)
def test_variational_bound_tight_at_optimal_critic(div: FDivergence, gaussians) -> None:
    """E_P[T*] − E_Q[f*(T*)] = D_f for T* = f'(p/q), and 0.8·T* falls strictly below."""
    n = 100_000
    g = torch.Generator().manual_seed(0)
    x_p, x_q = gaussians.p.sample(n, generator=g), gaussians.q.sample(n, generator=g)

    def critic(x: torch.Tensor) -> torch.Tensor:
        return div.f_prime(torch.exp(gaussians.p.log_prob(x) - gaussians.q.log_prob(x)))

    t_p, t_q = critic(x_p), critic(x_q)
    exact = f_divergence_by_quadrature(div, gaussians)
    bound = variational_bound(div, t_p, t_q)
    stderr = math.sqrt(t_p.var() / n + div.f_star(t_q).var() / n)
    assert abs(bound - exact) < 4 * stderr

    # a perturbed critic, on the same draws and by quadrature
    gap_p, gap_q = t_p - 0.8 * t_p, div.f_star(t_q) - div.f_star(0.8 * t_q)
    gap = gap_p.mean() - gap_q.mean()
    assert gap > 4 * math.sqrt(gap_p.var() / n + gap_q.var() / n)

    def perturbed_bound(x, p, q):
        t = 0.8 * div.f_prime(p / q)
        return p * t - q * div.f_star(t)

    assert gaussians.quad(perturbed_bound) < exact - 1e-6
