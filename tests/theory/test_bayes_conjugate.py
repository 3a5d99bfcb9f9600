"""Bayes' theorem on a conjugate model: both weight posteriors against the exact answer.

Model: x_n ~ N(θ, σ² I), prior θ ~ N(0, s² I); the exact posterior is
N(μ_N, σ_N² I) and the exact predictive N(μ_N, (σ² + σ_N²) I)
(``GaussianMeanPosterior``). The model is ``GaussianModel`` with its
covariance frozen at σ² I and only its mean ``loc`` Bayesian.

Every test runs in float64 and float32 (``theory_dtype``) on the same data (drawn in
float64, then rounded); the exact answers are computed in float64 from those data.
Monte Carlo and optimisation allowances are unchanged; a rounding allowance
``tol(dtype, size)`` = 64 eps · size is added to each.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from probgen.bayes import SGLD, BayesianModel, GaussianMeanPosterior, MeanField
from probgen.core import GenerativeModel, Likelihood
from probgen.models.gaussian import GaussianModel

SIGMA, PRIOR_STD, N = 0.5, 1.0, 40


def _gaussian(dim: int) -> GaussianModel:
    g = GaussianModel((dim,))
    with torch.no_grad():
        g.log_diag.fill_(math.log(SIGMA))
    g.log_diag.requires_grad_(False)
    g.tril.requires_grad_(False)
    return g


class _GaussianMean(GenerativeModel):
    """N(θ, σ² I) with a learnable mean only: GaussianModel's log-density without its
    (D, D) triangular solve, so a 128-dimensional SGLD chain costs well under a millisecond."""

    likelihood = Likelihood.EXACT

    def __init__(self, dim: int) -> None:
        super().__init__((dim,))
        self.loc = torch.nn.Parameter(torch.zeros(dim))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.distributions.Normal(self.loc, SIGMA).log_prob(self._check(x)).sum(dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.loc + SIGMA * torch.randn(n, len(self.loc), generator=generator)


def _data(dim: int) -> torch.Tensor:
    """N draws of N(0.7, σ² I), drawn in float64 and rounded to the default dtype (same data)."""
    x = 0.7 + SIGMA * torch.randn(N, dim, dtype=torch.float64)
    return x.to(torch.get_default_dtype())


def _exact_mean_field(x: torch.Tensor, exact: GaussianMeanPosterior, samples: int) -> BayesianModel:
    """A mean-field model whose q is set to the exact posterior (no training noise)."""
    model = BayesianModel(
        _gaussian(x.shape[1]),
        MeanField(prior_std=PRIOR_STD),
        num_data=N,
        layers=["loc"],
        samples=samples,
    )
    q = model.posterior
    with torch.no_grad():
        q.loc[0].copy_(exact.mean)
        q.rho[0].fill_(math.log(math.expm1(math.sqrt(exact.var))))  # softplus(ρ) = σ_N
    return model


def test_mean_field_learns_the_exact_posterior(theory_dtype: torch.dtype, tol) -> None:
    """q's optimum is the exact posterior (it is in the family): μ within 0.1 σ_N, σ within 8%.

    Adam with a decaying rate, averaged over the last 1000 of 2000 steps; over
    seeds 0-5 the errors were at most 0.05 σ_N and 4.8%.
    """
    x = _data(2)
    exact = GaussianMeanPosterior.from_data(x.double(), SIGMA, PRIOR_STD)
    model = BayesianModel(
        _gaussian(2), MeanField(prior_std=PRIOR_STD, init_std=0.1), num_data=N, layers=["loc"]
    )
    q = model.posterior
    params = [p for p in model.players()["model"] if p.requires_grad]
    assert params == [q.loc[0], q.rho[0]]
    opt = torch.optim.Adam(params, lr=0.01)
    steps, tail = 2000, 1000
    mean_sum = torch.zeros(2)
    std_sum = torch.zeros(2)
    for t in range(steps):
        for group in opt.param_groups:  # decay, then average the last iterates (Polyak)
            group["lr"] = 0.01 * (1 - t / steps) + 1e-4
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if t >= steps - tail:
            mean_sum += q.mean("loc").detach()
            std_sum += q.std("loc").detach()
    sd_n = math.sqrt(exact.var)
    rounding = tol(theory_dtype, exact.mean.abs().max())
    assert ((mean_sum / tail - exact.mean).abs() < 0.1 * sd_n + rounding).all()
    assert ((std_sum / tail / sd_n - 1).abs() < 0.08 + tol(theory_dtype, 1.0)).all()


def test_mean_field_elbo_matches_closed_form(theory_dtype: torch.dtype, tol) -> None:
    """E_q[loss] = -1/N Σ_n E_q[log p_θ(x_n)] + KL(q ‖ p)/N, each term in closed form."""
    x = _data(2)
    exact = GaussianMeanPosterior.from_data(x.double(), SIGMA, PRIOR_STD)
    model = _exact_mean_field(x, exact, samples=1)
    losses = torch.stack([model.loss(x).detach() for _ in range(1000)])
    d = x - exact.mean
    expected_ll = (
        -math.log(2 * math.pi * SIGMA**2) - (d.square().sum(1) + 2 * exact.var) / (2 * SIGMA**2)
    ).mean()
    var_ratio = exact.var / PRIOR_STD**2
    kl = 0.5 * (
        2 * var_ratio + exact.mean.square().sum() / PRIOR_STD**2 - 2 - 2 * math.log(var_ratio)
    )
    expected = -expected_ll + kl / N
    stderr = losses.std() / math.sqrt(len(losses))
    assert abs(losses.mean() - expected) < 4 * stderr + tol(theory_dtype, 1 + abs(expected))
    assert stderr < 0.01


def test_predictive_matches_exact_gaussian_predictive(theory_dtype: torch.dtype, tol) -> None:
    """log 1/S Σ_s p_θs(x) with q = exact posterior equals log N(x; μ_N, σ² + σ_N²) within 4 se."""
    x = _data(2)
    exact = GaussianMeanPosterior.from_data(x.double(), SIGMA, PRIOR_STD)
    model = _exact_mean_field(x, exact, samples=2000)
    x_test = torch.cat([x[:5], exact.mean + torch.tensor([[2.0, -1.0], [3.0, 3.0]])])
    pred = model.predictive(x_test)
    truth = exact.predictive_log_prob(x_test)
    assert (pred.stderr < 0.05).all()
    rounding = 64 * torch.finfo(theory_dtype).eps * (1 + truth.abs())  # per point
    assert ((pred.log_prob - truth).abs() < 4 * pred.stderr + rounding).all()
    summary = pred.mean()
    rounding = tol(theory_dtype, 1 + truth.abs().max())
    assert abs(summary.value - truth.mean().item()) < 4 * summary.stderr + rounding


def test_uncertainty_matches_closed_form_and_grows_with_distance(
    theory_dtype: torch.dtype, tol
) -> None:
    """Var_θ[log p_θ(x)] = Σ_d (d_d² σ_N² + σ_N⁴/2)/σ⁴ within 10% (S = 2000), rising with |d|."""
    x = _data(2)
    exact = GaussianMeanPosterior.from_data(x.double(), SIGMA, PRIOR_STD)
    model = _exact_mean_field(x, exact, samples=2000)
    radii = torch.tensor([0.0, 0.5, 1.0, 2.0, 4.0])
    x_test = exact.mean + radii[:, None] * torch.tensor([0.6, 0.8])
    score = model.uncertainty(x_test)
    truth = exact.log_prob_variance(x_test)
    assert ((score / truth - 1).abs() < 0.1 + tol(theory_dtype, 1.0)).all()
    assert (score.diff() > 0).all()


def test_predictive_samples_follow_exact_predictive(theory_dtype: torch.dtype) -> None:
    """θ ~ q, then x ~ p_θ, one θ per sample: KS test per coordinate vs N(μ_N, σ² + σ_N²)."""
    x = _data(2)
    exact = GaussianMeanPosterior.from_data(x.double(), SIGMA, PRIOR_STD)
    model = _exact_mean_field(x, exact, samples=16)
    samples = model.sample(3000, generator=torch.Generator().manual_seed(1), draws=3000).detach()
    scale = math.sqrt(SIGMA**2 + exact.var)
    for d in range(2):
        p = stats.kstest(samples[:, d].numpy(), "norm", args=(exact.mean[d].item(), scale)).pvalue
        assert p > 1e-3


def _run_sgld(x: torch.Tensor, eta_lambda: float, steps: int, burn_in: int) -> tuple[SGLD, float]:
    """SGLD by full-batch SGD, with ε chosen so that η λ = (ε/N) / σ_N² equals ``eta_lambda``."""
    exact = GaussianMeanPosterior.from_data(x.double(), SIGMA, PRIOR_STD)
    step_size = eta_lambda * N * exact.var
    posterior = SGLD(step_size, PRIOR_STD, burn_in=burn_in, thin=1, max_samples=steps - burn_in)
    model = BayesianModel(_GaussianMean(x.shape[1]), posterior, num_data=N, layers=["loc"])
    with torch.no_grad():
        model.model.loc.copy_(exact.mean)  # start in the bulk; burn-in forgets it anyway
    opt = torch.optim.SGD([p for p in model.players()["model"] if p.requires_grad], lr=step_size)
    for _ in range(steps):
        loss = model.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert posterior.num_samples == steps - burn_in
    return posterior, exact


@pytest.mark.parametrize(
    ("eta_lambda", "tolerance"),
    [
        # large step: the chain's law is the known biased N(μ_N, σ_N²/(1 - ηλ/2)) (ratio 1.43)
        (0.6, 0.08),
        # small step: the bias ηλ/2 = 2.5% is inside the tolerance of the exact posterior
        (0.05, 0.1),
    ],
)
def test_sgld_samples_the_exact_posterior(
    eta_lambda: float, tolerance: float, theory_dtype: torch.dtype, tol
) -> None:
    """Pooled over 128 independent coordinates, the SGLD samples' variance is the ULA
    stationary variance σ_N²/(1 - ηλ/2), which tends to the posterior's σ_N², and their
    mean is μ_N up to the chain's Monte Carlo error.

    The chain is AR(1) with ρ = 1 - ηλ, so the mean of K samples has variance
    σ_stat² (1 + ρ) / ((1 - ρ) K) per coordinate; the RMS error over coordinates
    must be within 30% of that standard error.
    """
    dim = 128
    x = _data(dim)
    posterior, exact = _run_sgld(x, eta_lambda, steps=1200, burn_in=200)
    samples = posterior.samples  # (K, D)
    sd_n = math.sqrt(exact.var)
    var_ratio = (samples.var(dim=0) / exact.var).mean().item()
    stationary_ratio = 1 / (1 - eta_lambda / 2)
    expected_ratio = stationary_ratio if eta_lambda > 0.5 else 1.0
    assert abs(var_ratio / expected_ratio - 1) < tolerance + tol(theory_dtype, 1.0)
    rho, k = 1 - eta_lambda, len(samples)
    mean_se = sd_n * math.sqrt(stationary_ratio * (1 + rho) / ((1 - rho) * k))
    rms_mean_error = (samples.mean(dim=0) - exact.mean).square().mean().sqrt().item()
    assert rms_mean_error < 1.3 * mean_se + tol(theory_dtype, exact.mean.abs().max())
