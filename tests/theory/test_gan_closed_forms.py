"""GAN, W1 and Pearson χ² checks against closed forms, from a critic that starts elsewhere.

The critics here are exact families: a quadratic logit V(x) = a + b x + c x² holds
the optimal GAN discriminator's logit ln p/q of two Gaussians, and a linear V(x) =
wᵀx + b holds the optimal Kantorovich potential of a translation. Each critic starts
from a random initialisation far from the answer and is fitted by L-BFGS to the
game's own critic loss on one fixed batch (the generator's draws fixed by re-seeding
before every evaluation), so what remains is the statistical error of a finite
sample, whose size is known: the asymptotic covariance of the logistic-regression
estimate, or the exact minimiser of the penalised W1 objective. Closed forms and
quadratures are computed in float64 (NumPy / SciPy); every test runs in float64 and
float32 (``theory_dtype``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats
from torch import Tensor, nn

from probgen.distributions import StandardNormal
from probgen.divergences import F_DIVERGENCES, PearsonChiSquared, wasserstein1_cdf
from probgen.divergences.f_divergences import FDivergence
from probgen.models.gan import GAN, WGANGP, Critic, Generator

FAKE_SEED = 123  # the generator's draws in every critic-loss evaluation


class Quadratic(nn.Module):
    """x ↦ a + b x + c x², (B, 1) -> (B, 1): the logit family holding ln N(m1, s1²)/N(m2, s2²)."""

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.theta[0] + self.theta[1] * x + self.theta[2] * x.square()


def affine_generator(mean: np.ndarray, std: float) -> Generator:
    """G(z) = mean + std·z, z ~ N(0, I), so Q = N(mean, std² I) exactly."""
    d = len(mean)
    net = nn.Linear(d, d)
    with torch.no_grad():
        net.weight.copy_(std * torch.eye(d))
        net.bias.copy_(torch.as_tensor(mean, dtype=net.bias.dtype))
    return Generator(net, StandardNormal((d,)), (d,))


def fit_critic(model: GAN | WGANGP, real: Tensor) -> None:
    """Minimise the model's critic loss on ``real`` and a fixed generated batch by L-BFGS."""
    params = list(model.critic.parameters())
    optimizer = torch.optim.LBFGS(
        params,
        lr=1.0,
        max_iter=500,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        torch.manual_seed(FAKE_SEED)
        loss = model.loss(real, "critic")
        loss.backward()
        return loss

    optimizer.step(closure)


def fixed_fake(model: GAN | WGANGP, n: int) -> Tensor:
    torch.manual_seed(FAKE_SEED)
    return model.generator.sample(n).detach()


GAN_CASES = {
    # (data mean, data std, generator mean, generator std)
    "equilibrium": (0.0, 1.0, 0.0, 1.0),
    "p_neq_q": (0.0, 1.0, 0.7, 1.3),
}


@pytest.mark.parametrize("case", sorted(GAN_CASES))
def test_equilibrium_discriminator_is_one_half(case, theory_dtype):
    """Goodfellow et al. 2014, Prop. 1 and Thm. 1: D* = p/(p + q); at p_g = p_data, D* ≡ ½.

    The logit family V = a + b x + c x² holds ln p/q; started at random (D far from D*),
    the discriminator is fitted by the GAN's critic loss on n = 20,000 draws per side.
    The maximiser of the empirical V(D, G) is a logistic-regression estimate θ̂ with
    Cov θ̂ = J⁻¹ (J − 2 m mᵀ) J⁻¹ / n, J = ∫ (p + q) D*(1 − D*) φφᵀ, m = ∫ p (1 − D*) φ,
    φ = (1, x, x²) (by quadrature); the fitted logit equals ln p/q on x ∈ [−2, 2] within
    4 of its standard deviations, in both directions.
    """
    m1, s1, m2, s2 = GAN_CASES[case]
    p, q = stats.norm(m1, s1), stats.norm(m2, s2)
    n = 20_000
    real = torch.tensor(p.rvs(n, random_state=np.random.default_rng(1)), dtype=theory_dtype)
    theta0 = torch.tensor([1.5, -1.0, 0.5])  # D far from D* everywhere
    critic = Critic(Quadratic(theta0), (1,))
    model = GAN((1,), generator=affine_generator(np.array([m2]), s2), critic=critic)

    x = np.linspace(-2.0, 2.0, 41)
    log_ratio = p.logpdf(x) - q.logpdf(x)
    features = np.stack([np.ones_like(x), x, x**2], 1)
    with torch.no_grad():
        start = model.critic_output(torch.tensor(x, dtype=theory_dtype)[:, None]).double()
    assert np.abs(start.numpy() - log_ratio).max() > 1.0

    fit_critic(model, real[:, None])
    with torch.no_grad():
        fitted = model.critic_output(torch.tensor(x, dtype=theory_dtype)[:, None]).double()

    grid = np.linspace(-14.0, 14.0, 40_001)
    phi = np.stack([np.ones_like(grid), grid, grid**2], 1)
    pg, qg = p.pdf(grid), q.pdf(grid)
    d_star = pg / (pg + qg)
    j = integrate.simpson(
        (pg + qg)[:, None, None]
        * (d_star * (1 - d_star))[:, None, None]
        * phi[:, :, None]
        * phi[:, None, :],
        x=grid,
        axis=0,
    )
    mvec = integrate.simpson((pg * (1 - d_star))[:, None] * phi, x=grid, axis=0)
    j_inv = np.linalg.inv(j)
    cov = j_inv @ (j - 2 * np.outer(mvec, mvec)) @ j_inv / n
    sd = np.sqrt(np.einsum("bi,ij,bj->b", features, cov, features))
    z = (fitted.numpy() - log_ratio) / sd
    assert np.abs(z).max() < 4, z


def test_kantorovich_dual_of_a_translation_is_exact(theory_dtype, tol):
    """Kantorovich–Rubinstein (Villani 2009, Thm. 5.10) for Q = P translated by δu in 2-D:
    W_1 = δ, attained by the 1-Lipschitz f(x) = −⟨x, u⟩ (E_P f − E_Q f = δ).

    (i) The dual with f on 40,000 fresh draws per side equals δ within 4 s.e. (ii) The
    WGAN-GP critic loss −(E_P V − E_Q V) + λ (‖w‖ − 1)² of a linear critic V = wᵀx + b
    (gradient w everywhere) has the exact minimiser w* = (1 + ‖d‖/(2λ)) d/‖d‖ on its
    batch, d = mean(real) − mean(fake); L-BFGS from a random start reaches it to 16 √ε,
    and w*/‖w*‖ recovers the dual: E_P − E_Q of V/‖w‖ on fresh draws equals δ within 4 s.e.
    (iii) In 1-D, ``wasserstein1_cdf`` of N(0, 1) and N(0, s²) equals |1 − s| √(2/π)
    (the quantile coupling) to the trapezoid rule's error on its grid.
    """
    delta, lam = 1.5, 10.0
    u = np.array([0.6, 0.8])
    rng = np.random.default_rng(2)
    n = 40_000
    p_eval, q_eval = rng.standard_normal((n, 2)), rng.standard_normal((n, 2)) + delta * u
    f_p, f_q = -p_eval @ u, -q_eval @ u
    dual = f_p.mean() - f_q.mean()
    se = math.sqrt(f_p.var() / n + f_q.var() / n)
    assert abs(dual - delta) < 4 * se

    critic = Critic(nn.Linear(2, 1), (2,))  # PyTorch's random initialisation
    model = WGANGP((2,), penalty=lam, generator=affine_generator(delta * u, 1.0), critic=critic)
    real = torch.tensor(rng.standard_normal((4096, 2)), dtype=theory_dtype)
    fit_critic(model, real)
    d = (real.double().mean(0) - fixed_fake(model, 4096).double().mean(0)).numpy()
    w_star = (1 + np.linalg.norm(d) / (2 * lam)) * d / np.linalg.norm(d)
    w = critic.network.weight.detach().double().numpy()[0]
    # a line search compares loss values, so it fixes a minimiser only to √ε of its scale
    sqrt_eps = math.sqrt(torch.finfo(theory_dtype).eps)
    assert np.abs(w - w_star).max() < 16 * sqrt_eps * np.abs(w_star).max(), (w, w_star)
    v_p, v_q = p_eval @ w / np.linalg.norm(w), q_eval @ w / np.linalg.norm(w)
    normalised = v_p.mean() - v_q.mean()
    se = math.sqrt(v_p.var() / n + v_q.var() / n)
    assert abs(normalised - delta) < 4 * se

    grid = torch.linspace(-12.0, 12.0, 24_001)
    h = float(grid[1] - grid[0])
    for s in (0.5, 2.0):
        by_cdf = wasserstein1_cdf(
            torch.special.ndtr, lambda t, s=s: torch.special.ndtr(t / s), grid
        )
        exact = abs(1 - s) * math.sqrt(2 / math.pi)
        # trapezoid error ≤ h²/12 · ∫|F − G|'' plus rounding of the sum of 24,001 terms
        allowance = h**2 + tol(theory_dtype, exact, ops=len(grid))
        assert abs(float(by_cdf) - exact) < allowance


def chi2_gaussians(m1: float, s1: float, m2: float, s2: float) -> float:
    """χ²(N(m1, s1²) ‖ N(m2, s2²)) = s2² / (s1 √r) · exp((m1 − m2)² / r) − 1, r = 2 s2² − s1²,
    finite when r > 0 (∫ p²/q of two Gaussians, completing the square)."""
    r = 2 * s2**2 - s1**2
    return s2**2 / (s1 * math.sqrt(r)) * math.exp((m1 - m2) ** 2 / r) - 1.0


@pytest.mark.parametrize("params", [(0.0, 1.0, 1.0, 1.0), (0.3, 0.8, -0.4, 1.1)])
def test_pearson_chi2_of_two_gaussians_has_its_closed_form(params, theory_dtype, tol):
    """Pearson (1900): χ²(P ‖ Q) = ∫ q f(p/q) with f(t) = (t − 1)² equals the closed form
    (e^{Δ²} − 1 for unit variances): by quadrature of the library's f (Simpson, 40,001
    nodes on [−14, 14]) to the rounding of ``theory_dtype``; and the Monte Carlo
    E_Q f(p/q) (200,000 draws) within 4 s.e."""
    m1, s1, m2, s2 = params
    exact = chi2_gaussians(m1, s1, m2, s2)
    assert exact > 0.1
    div = PearsonChiSquared()
    p, q = stats.norm(m1, s1), stats.norm(m2, s2)
    grid = np.linspace(-14.0, 14.0, 40_001)
    ratio = torch.tensor(np.exp(p.logpdf(grid) - q.logpdf(grid)), dtype=theory_dtype)
    integrand = q.pdf(grid) * div.f(ratio).double().numpy()
    by_quadrature = integrate.simpson(integrand, x=grid)
    assert abs(by_quadrature - exact) < 1e-9 + tol(theory_dtype, exact + 1)

    y = q.rvs(200_000, random_state=np.random.default_rng(3))
    values = div.f(torch.tensor(np.exp(p.logpdf(y) - q.logpdf(y)), dtype=theory_dtype)).double()
    se = values.std().item() / math.sqrt(len(y))
    assert abs(values.mean().item() - exact) < 4 * se


DIVERGENCES = list(F_DIVERGENCES.values())  # every registered f, so a new one is checked too


def numerical_conjugate(div: FDivergence, u: float) -> float:
    """sup_{t ≥ 0} {u t − f(t)} by bounded scalar maximisation in float64 (t ∈ [0, 1e4]),
    with the end point t = 0 compared explicitly (the sup may sit there)."""

    def negative(t: float) -> float:
        return -(u * t - float(div.f(torch.tensor(t, dtype=torch.float64))))

    best = optimize.minimize_scalar(
        negative, bounds=(0.0, 1e4), method="bounded", options={"xatol": 1e-12}
    )
    at_zero = -negative(0.0)  # f(0) may be NaN (t ln t): then 0 is a limit, not a candidate
    return max(-best.fun, at_zero) if math.isfinite(at_zero) else -best.fun


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: d.name)
def test_conjugate_is_the_numerical_supremum(divergence, theory_dtype, tol):
    """Fenchel conjugate f*(u) = sup_{t ≥ 0} {u t − f(t)} (the f-GAN's f*, Nowozin et al. 2016,
    Table 2): the library's ``f_star`` at u = g_f(v) for v ∈ [−4, 4] (every value its
    critic can output) equals the numerical supremum to the optimiser's accuracy (1e-6)
    plus the rounding of ``theory_dtype``."""
    v = torch.linspace(-4.0, 4.0, 33)
    u = divergence.activation(v)
    mine = divergence.f_star(u).double()
    for ui, fi in zip(u.double().tolist(), mine.tolist(), strict=True):
        sup = numerical_conjugate(divergence, ui)
        assert abs(fi - sup) < 1e-6 + tol(theory_dtype, abs(sup) + abs(ui), ops=256), (ui, fi, sup)
