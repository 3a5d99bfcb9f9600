"""Diffusion identities checked on Gaussian data N(μ, Σ), where p_t and ∇ log p_t are exact.

Every test names the equation it checks. Monte Carlo tolerances are 4 standard
errors (a false alarm rate below 1e-4 per comparison) plus, for samplers, a
stated discretisation allowance. Each test runs in float64 and in float32
(``theory_dtype``); the library computes in that dtype, the ground truth in
float64, and the rounding allowance ``tol(dtype, size, ops)`` (tests/theory/
conftest.py) is added to the statistical one, never in its place.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from probgen.models.diffusion import (
    DDIM,
    Ancestral,
    AnnealedLangevin,
    DDPMChain,
    DiffusionWeighting,
    EulerMaruyama,
    ExactGaussianDenoiser,
    ForwardProcess,
    HutchinsonDivergence,
    NoiseMatching,
    Prediction,
    PredictorCorrector,
    ProbabilityFlow,
    ScoreMatching,
    SigmaSquaredWeighting,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
    ode_log_likelihood,
)
from probgen.models.diffusion.parametrizations import Denoiser

MU = (1.0, -0.5)
SIGMA = ((1.0, 0.6), (0.6, 0.8))


def gaussian(process: ForwardProcess) -> ExactGaussianDenoiser:
    return ExactGaussianDenoiser(process, torch.tensor(MU), torch.tensor(SIGMA))


PROCESSES = {
    "vp": lambda: VariancePreserving(),
    "subvp": lambda: SubVariancePreserving(),
    "ve": lambda: VarianceExploding(sigma_max=100.0),
    "ddpm_linear": lambda: DDPMChain.linear(1000),
    "ddpm_cosine": lambda: DDPMChain.cosine(1000),
}


def test_closed_form_marginal_matches_iterated_chain(theory_dtype, tol):
    """Ho et al. (2020) eq. (4): iterating q(x_n|x_{n-1}) = N(√(1-β_n) x_{n-1}, β_n I) gives
    q(x_n|x_0) = N(√ᾱ_n x_0, (1-ᾱ_n) I); moments of the iterated chain within 4 s.e."""
    chain = DDPMChain.linear(1000)
    n = 20_000
    g = torch.Generator().manual_seed(1)
    x0 = (
        torch.tensor(MU)
        + torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(torch.tensor(SIGMA)).T
    )
    x = x0.clone()
    for k, beta in enumerate(chain.betas, start=1):
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(n, 2, generator=g)
        if k in (10, 100, 400, 1000):
            alpha_bar = chain.log_alpha_bar[k].exp()
            mean = alpha_bar.sqrt() * torch.tensor(MU)
            cov = alpha_bar * torch.tensor(SIGMA) + (1 - alpha_bar) * torch.eye(2)
            # closed form of the process itself at t = k/N
            a, s = chain.alpha_sigma(torch.tensor(k / 1000))
            assert torch.allclose(a, alpha_bar.sqrt(), rtol=0, atol=tol(theory_dtype, 1.0, 4))
            assert torch.allclose(s, (1 - alpha_bar).sqrt(), rtol=0, atol=tol(theory_dtype, 1.0, 4))
            se_mean = (cov.diagonal() / n).sqrt()
            assert ((x.mean(0) - mean).abs() < 4 * se_mean).all()
            se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
            assert ((torch.cov(x.T) - cov).abs() < 4 * se_cov).all()


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_posterior_matches_bayes_rule(name, theory_dtype, tol):
    """Ho et al. (2020) eq. (6)-(7), Kingma et al. (2021) eq. (4): Bayes' rule
    q(x_s|x_t,x_0) ∝ q(x_s|x_0) q(x_t|x_s); mean and variance by 1-D quadrature over x_s
    (in float64, from the float64 process: the ground truth), against the library's closed
    form in the test's dtype. The quadrature's own error is 1e-6 in the mean, 1e-4 relative
    in the variance; the dtype adds the rounding of a handful of operations on the schedule
    (whose entries are O(1) but enter through 1 − ᾱ, so near t = 0 relative to σ_s²)."""
    process, truth = PROCESSES[name]().to(theory_dtype), PROCESSES[name]().double()
    for t, s in ((0.9, 0.5), (0.3, 0.29), (0.02, 0.001), (1.0, 0.999)):
        tt, ss = torch.tensor([t], dtype=torch.float64), torch.tensor([s], dtype=torch.float64)
        alpha_s, sigma_s = truth.alpha_sigma(ss)
        width = 12 * sigma_s.item() + 2  # covers q(x_s | x_0) and the posterior
        grid = torch.linspace(-width, width, 600_001, dtype=torch.float64)
        ratio, sigma_ts = truth.transition(tt, ss)
        x0, xt = torch.tensor([[0.7]]), torch.tensor([[-0.4]])
        log_w = (
            -0.5 * ((grid - alpha_s * x0[0].double()) / sigma_s) ** 2
            - 0.5 * ((xt[0].double() - ratio * grid) / sigma_ts) ** 2
        )
        w = (log_w - log_w.max()).exp()
        w = w / w.sum()
        mean_num = (w * grid).sum()
        var_num = (w * (grid - mean_num) ** 2).sum()
        mean, std = process.posterior(xt, x0, tt.to(theory_dtype), ss.to(theory_dtype))
        rounding = tol(theory_dtype, 1.0, 64)
        assert mean.item() == pytest.approx(mean_num.item(), abs=1e-6 + rounding)
        variance_rounding = rounding / sigma_s.item() ** 2
        assert std.item() ** 2 == pytest.approx(var_num.item(), rel=1e-4 + variance_rounding)


SAMPLER_CASES = {
    # id: (process, sampler, steps, discretisation allowance on means and covariances)
    "ddpm-ancestral-1000": ("ddpm_linear", lambda: Ancestral(), 1000, 0.02),
    "ddpm-ddim0-100": ("ddpm_linear", lambda: DDIM(0.0), 100, 0.02),
    "ddpm-ddim0.5-100": ("ddpm_cosine", lambda: DDIM(0.5), 100, 0.02),
    "vp-euler_maruyama-500": ("vp", lambda: EulerMaruyama(), 500, 0.03),
    "subvp-euler_maruyama-500": ("subvp", lambda: EulerMaruyama(), 500, 0.03),
    "vp-predictor_corrector-200": ("vp", lambda: PredictorCorrector(), 200, 0.03),
    "vp-probability_flow": ("vp", lambda: ProbabilityFlow(), 1, 0.01),
    "ve-probability_flow": ("ve", lambda: ProbabilityFlow(), 1, 0.01),
    "ve-annealed_langevin-100": ("ve", lambda: AnnealedLangevin(1e-4, 20), 100, 0.05),
}


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_samplers_with_exact_score_reproduce_the_gaussian(case, theory_dtype):
    """Reverse SDE (Song et al. 2021 eq. (6)), probability-flow ODE (eq. (13)), DDPM ancestral
    (Ho et al. Alg. 2), DDIM (Song, Meng & Ermon eq. (12)), annealed Langevin (Song & Ermon
    Alg. 1): with ∇ log p_t exact, samples follow N(μ, Σ); means and covariances within
    4 s.e. (n = 2000) plus the stated discretisation allowance (which dwarfs float32's
    rounding over 1000 steps, ~1000 · 6e-8)."""
    process_name, make, steps, allowance = SAMPLER_CASES[case]
    denoiser = gaussian(PROCESSES[process_name]())
    n = 2000
    g = torch.Generator().manual_seed(3)
    x1 = denoiser.process.prior_sample((n, 2), g, like=denoiser.mean)
    result = make().run(denoiser, x1, steps, generator=g)
    x = result.samples
    mu, sigma = torch.tensor(MU), torch.tensor(SIGMA)
    se_mean = (sigma.diagonal() / n).sqrt()
    se_cov = ((sigma.diagonal()[:, None] * sigma.diagonal()[None] + sigma**2) / n).sqrt()
    assert ((x.mean(0) - mu).abs() < 4 * se_mean + allowance).all(), x.mean(0)
    assert ((torch.cov(x.T) - sigma).abs() < 4 * se_cov + allowance).all(), torch.cov(x.T)
    assert result.n_evaluations >= steps


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "ddpm_linear", "ddpm_cosine"])
def test_probability_flow_likelihood_is_exact(name, theory_dtype, tol):
    """Instantaneous change of variables (Chen et al. 2018; Song et al. 2021 eq. (39)):
    log p_{t_min}(x) = log p_1(x_1) + ∫ ∇·v dt equals log N(x; α μ, α² Σ + σ² I) at t_min
    within 1e-3 nats per example, and log N(x; μ, Σ) within 1e-3 nats. The prior is the exact
    p_1 here: the default N(0, I) differs from it by O(α_1 |μ|) (about 0.01 nats for VP).
    In float32 the solver's tolerances stop at 8 ε ≈ 1e-6 (at 1e-5 the cosine chain's stiff
    end, g² ≈ 7000, is off by 0.014 nats in float64 too: a tolerance, not a rounding,
    effect), and the rounding of each of its evaluations, on a log-density of size ~5."""
    denoiser = gaussian(PROCESSES[name]())
    g = torch.Generator().manual_seed(4)
    x = (
        torch.tensor(MU)
        + torch.randn(32, 2, generator=g) @ torch.linalg.cholesky(torch.tensor(SIGMA)).T
    )
    ones = torch.ones(32)
    solver_tol = max(1e-7, 8 * torch.finfo(theory_dtype).eps)
    log_p = ode_log_likelihood(
        denoiser,
        x,
        rtol=solver_tol,
        atol=solver_tol,
        prior_log_prob=lambda y: denoiser.log_prob(y, ones),
    )
    allowance = 1e-3 + tol(theory_dtype, 5.0, 1000)
    t_min = torch.full((32,), denoiser.process.t_min)
    exact_t_min = denoiser.log_prob(x, t_min)
    assert (log_p - exact_t_min).abs().max() < allowance
    mu, sigma = torch.tensor(MU, dtype=torch.float64), torch.tensor(SIGMA, dtype=torch.float64)
    data = torch.distributions.MultivariateNormal(mu, sigma)
    assert (log_p.double() - data.log_prob(x.double())).abs().max() < allowance


def test_hutchinson_likelihood_is_unbiased(theory_dtype, tol):
    """Hutchinson (1989): E_ε[εᵀ (∂v/∂x) ε] = ∇·v, so the ODE log-likelihood with a
    Rademacher probe fixed per solve (Grathwohl et al. 2019) averages to the exact one:
    for each of 4 points, the mean of 300 estimates is within 4 s.e. of the exact value
    (plus, in float32, the rounding of the two solves)."""
    denoiser = gaussian(VariancePreserving())
    x = torch.tensor([[1.0, -0.5], [2.5, 0.5], [-0.5, -1.5], [1.0, 1.0]])
    repeats = 300
    solver_tol = max(1e-6, 100 * torch.finfo(theory_dtype).eps)
    exact = ode_log_likelihood(denoiser, x, rtol=solver_tol, atol=solver_tol)
    g = torch.Generator().manual_seed(5)
    estimates = ode_log_likelihood(
        denoiser,
        x.repeat(repeats, 1),
        HutchinsonDivergence(),
        rtol=solver_tol,
        atol=solver_tol,
        generator=g,
    ).reshape(repeats, 4)
    mean, se = estimates.mean(0), estimates.std(0) / math.sqrt(repeats)
    assert (se > 1e-4).all()  # a genuine stochastic estimate
    assert ((mean - exact).abs() < 4 * se + 2 * tol(theory_dtype, 5.0, 1000)).all()


class _PerturbedScore(Denoiser):
    """The exact Gaussian denoiser with the score changed to s + δ (a·x + b)."""

    def __init__(self, exact: ExactGaussianDenoiser, delta: float, a: float, b: Tensor) -> None:
        super().__init__(exact.process)
        self.exact, self.delta, self.a, self.b = exact, delta, a, b

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        score = self.exact(x, t).score + self.delta * (self.a * x + self.b)
        return self.from_score(x, t, score)


def _dsm_minimum(denoiser: ExactGaussianDenoiser, weighting, times: Tensor) -> Tensor:
    """E_t λ(t) (D/σ_t² − tr C_t⁻¹): E‖∇log q(x_t|x_0)‖² − E‖∇log p_t(x_t)‖² averaged over t."""
    _, sigma = denoiser.process.alpha_sigma(times)
    alpha = denoiser.process.alpha_sigma(times)[0]
    variances = alpha[:, None] ** 2 * denoiser.eigenvalues + sigma[:, None] ** 2
    per_t = 2 / sigma**2 - (1 / variances).sum(-1)
    return weighting(denoiser, times) * per_t


@pytest.mark.parametrize("weighting", [SigmaSquaredWeighting(), DiffusionWeighting()])
@pytest.mark.parametrize("name", ["vp", "ddpm_linear"])
def test_denoising_score_matching_is_minimised_by_the_true_score(name, weighting, theory_dtype):
    """Vincent (2011); Song et al. (2021) eq. (7): J(s) = E λ(t) ‖s(x_t,t) − ∇log q(x_t|x_0)‖²
    is minimised by s = ∇ log p_t; its minimum is E_t λ(t) (D/σ_t² − tr C_t⁻¹), and any
    perturbation raises it (same draws for every candidate)."""
    exact = gaussian(PROCESSES[name]())
    objective = ScoreMatching(weighting)
    n = 50_000
    x0 = torch.tensor(MU) + torch.randn(n, 2) @ torch.linalg.cholesky(torch.tensor(SIGMA)).T

    def loss(denoiser: Denoiser) -> Tensor:
        return objective(denoiser, x0, torch.Generator().manual_seed(6))

    best = loss(exact)
    process = exact.process
    if isinstance(process, DDPMChain):
        expected = _dsm_minimum(exact, weighting, torch.arange(1, 1001) / 1000).mean()
    else:
        times = torch.linspace(process.t_min, 1.0, 20_001)
        values = _dsm_minimum(exact, weighting, times)
        expected = torch.trapezoid(values, times) / (1.0 - process.t_min)
    se = best.std() / math.sqrt(n)
    assert abs(best.mean() - expected) < 4 * se
    for delta, a, b in ((0.05, 0.0, (1.0, 0.0)), (0.1, 1.0, (0.0, 0.0)), (-0.1, 0.5, (0.0, 1.0))):
        worse = loss(_PerturbedScore(exact, delta, a, torch.tensor(b)))
        difference = worse - best  # paired: same x_0, t and ε
        assert difference.mean() > 4 * difference.std() / math.sqrt(n)


def test_l_simple_is_dsm_with_sigma_squared_weighting(theory_dtype, tol):
    """Ho et al. (2020) eq. (14) = Song & Ermon (2019) eq. (6) with λ = σ²: the same number
    for the same draws (‖ε − ε̂‖² = σ² ‖ŝ + ε/σ‖² with ε̂ = −σ ŝ)."""
    exact = gaussian(VariancePreserving())
    x0 = torch.randn(256, 2)
    simple = NoiseMatching()(exact, x0, torch.Generator().manual_seed(7))
    dsm = ScoreMatching(SigmaSquaredWeighting())(exact, x0, torch.Generator().manual_seed(7))
    # σ² ‖ŝ + ε/σ‖² cancels terms of size ‖ε‖² + ‖ε̂‖² (below 50 for 256 draws in 2-D):
    # the rounding is relative to that size, not to the (possibly small) difference
    assert torch.allclose(simple, dsm, rtol=0, atol=tol(theory_dtype, 50.0, 64))
