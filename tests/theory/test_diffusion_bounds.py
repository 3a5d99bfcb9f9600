"""Diffusion bounds and reverse-time marginals in closed form, on Gaussian data N(μ, Σ).

With Gaussian data the exact denoiser is affine (Tweedie): x̂_0(x_t) = A_t x_t + c_t
with A_t = α_t Σ C_t⁻¹, c_t = μ − α_t A_t μ, C_t = α_t² Σ + σ_t² I. Everything the
library computes by Monte Carlo on the exact reverse chain (the VLB, its
discretised-decoder version on discrete data, Euler–Maruyama marginals) is then an
expectation of a quadratic form, or a 1-D Gaussian integral, computed here in
float64 with NumPy / SciPy from the schedule's own definition (β_n, β(t)), never
from the library's posterior or sampler code. Monte Carlo comparisons allow four
standard errors (a false alarm rate below 1e-4 per comparison) plus the rounding
allowance of the test's dtype (``tol``); each test runs in float64 and float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.polynomial.hermite_e import hermegauss
from scipy import stats

from probgen.data.dequantize import uniform_dequantize
from probgen.evaluate.likelihood import bits_per_dim
from probgen.models.diffusion import (
    DDPMChain,
    Diffusion,
    EulerMaruyama,
    ExactGaussianDenoiser,
    ODELikelihood,
    VariancePreserving,
    VLBLikelihood,
    variational_bound,
)

MU = np.array([1.0, -0.5])
SIGMA = np.array([[1.0, 0.6], [0.6, 0.8]])
D = 2


def chain_alpha_bar(chain: DDPMChain) -> np.ndarray:
    """ᾱ_n = Π_{i≤n} (1 − β_i), n = 0…N, in float64 from the chain's defining betas."""
    betas = chain.betas.double().numpy()
    return np.concatenate([[1.0], np.cumprod(1.0 - betas)])


def tweedie(alpha: float, sigma: float, mu: np.ndarray, cov: np.ndarray):
    """(A, c) of the exact denoiser x̂_0(x_t) = A x_t + c for data N(mu, cov) at (α, σ)."""
    c_t = alpha**2 * cov + sigma**2 * np.eye(len(mu))
    a = alpha * cov @ np.linalg.inv(c_t)
    return a, mu - alpha * a @ mu


def closed_form_vlb_terms(
    alpha_bar: np.ndarray, x0: np.ndarray, mu: np.ndarray, cov: np.ndarray
) -> tuple[np.ndarray, float, tuple[np.ndarray, np.ndarray]]:
    """E_q of every term of L_VLB(x0) on the full chain, for the exact Gaussian denoiser.

    Returns the prior term KL(N(α_N x0, σ_N² I) ‖ N(0, I)) plus the expected KLs
    E ‖c_0 (x0 − x̂_0(x_n))‖² / (2σ̃²) for n = N…2, as one (B,) array; the
    continuous decoder's −E log N(x0; x̂_0(x_1), σ_1² I); and the mean and
    covariance of the decoder mean x̂_0(x_1) (for the discretised decoder).
    Ho et al. (2020) eq. (5)-(7) with q(x_n | x_0) = N(√ᾱ_n x_0, (1 − ᾱ_n) I).
    """
    n_steps = len(alpha_bar) - 1
    a_n, s2_n = math.sqrt(alpha_bar[-1]), 1.0 - alpha_bar[-1]
    total = 0.5 * ((s2_n + a_n**2 * x0**2) - 1.0 - math.log(s2_n)).sum(-1)
    for n in range(n_steps, 1, -1):
        ab_t, ab_s = alpha_bar[n], alpha_bar[n - 1]
        alpha_t, var_t, alpha_s, var_s = math.sqrt(ab_t), 1 - ab_t, math.sqrt(ab_s), 1 - ab_s
        var_ts = 1.0 - ab_t / ab_s
        c_0 = alpha_s * var_ts / var_t
        post_var = var_ts * var_s / var_t
        a, c = tweedie(alpha_t, math.sqrt(var_t), mu, cov)
        residual = x0 @ (np.eye(D) - alpha_t * a).T - c
        expected_sq = (residual**2).sum(-1) + var_t * (a**2).sum()
        total = total + c_0**2 * expected_sq / (2 * post_var)
    alpha_1, var_1 = math.sqrt(alpha_bar[1]), 1.0 - alpha_bar[1]
    a, c = tweedie(alpha_1, math.sqrt(var_1), mu, cov)
    residual = x0 @ (np.eye(D) - alpha_1 * a).T - c
    expected_sq = (residual**2).sum(-1) + var_1 * (a**2).sum()
    decoder = 0.5 * D * math.log(2 * math.pi * var_1) + expected_sq / (2 * var_1)
    decoder_mean = x0 @ (alpha_1 * a).T + c  # E x̂_0(x_1), (B, D)
    decoder_cov = var_1 * a @ a.T
    return total, decoder, (decoder_mean, decoder_cov)


def reverse_chain_marginal(alpha_bar: np.ndarray, mu: np.ndarray, cov: np.ndarray):
    """Mean and covariance of p_θ(x_0) of the exact Gaussian reverse chain, propagated exactly:
    x_1 ~ N(0, I), x_{n-1} = c_t x_n + c_0 x̂_0(x_n) + σ̃ z (affine), the last step its mean."""
    m, p = np.zeros(D), np.eye(D)
    for n in range(len(alpha_bar) - 1, 0, -1):
        ab_t, ab_s = alpha_bar[n], alpha_bar[n - 1]
        var_t, var_s, var_ts = 1 - ab_t, 1 - ab_s, 1 - ab_t / ab_s
        c_t = math.sqrt(ab_t / ab_s) * var_s / var_t
        c_0 = math.sqrt(ab_s) * var_ts / var_t
        a, c = tweedie(math.sqrt(ab_t), math.sqrt(var_t), mu, cov)
        lin, shift = c_t * np.eye(D) + c_0 * a, c_0 * c
        noise = var_ts * var_s / var_t if n > 1 else var_ts  # the decoder's σ_1² at n = 1
        m, p = lin @ m + shift, lin @ p @ lin.T + noise * np.eye(D)
    return m, p


def exact_denoiser(process, mu=MU, cov=SIGMA) -> ExactGaussianDenoiser:
    dtype = torch.get_default_dtype()
    return ExactGaussianDenoiser(
        process, torch.tensor(mu, dtype=dtype), torch.tensor(cov, dtype=dtype)
    )


def test_vlb_equals_its_closed_form_and_bounds_the_nll(theory_dtype, tol):
    """Ho et al. (2020) eq. (5): on the exact Gaussian reverse chain (N = 100) every term of
    L_VLB(x) is the expectation of a quadratic form, so E L_VLB(x) has a closed form; the
    library's Monte Carlo VLB (20,000 repeats per point) equals it within 4 s.e., and the closed
    form exceeds −log p_θ(x), p_θ(x_0) the chain's exact Gaussian marginal, at every point."""
    chain = DDPMChain.linear(100)
    alpha_bar = chain_alpha_bar(chain)
    x = np.array([[-1.0, -1.5]])
    terms, decoder, _ = closed_form_vlb_terms(alpha_bar, x, MU, SIGMA)
    exact = terms + decoder
    m, p = reverse_chain_marginal(alpha_bar, MU, SIGMA)
    assert (exact + stats.multivariate_normal(m, p).logpdf(x) > 1e-3).all()

    repeats = 20_000  # s.e. ≈ 0.03 nats on a sum of KL terms of about 11 nats
    g = torch.Generator().manual_seed(8)
    xs = torch.tensor(x, dtype=theory_dtype).repeat(repeats, 1)
    vlb = variational_bound(exact_denoiser(chain), xs, 100, generator=g)
    assert vlb.dtype == theory_dtype
    vlb = vlb.double().reshape(repeats, len(x))
    mean, se = vlb.mean(0).numpy(), (vlb.std(0) / math.sqrt(repeats)).numpy()
    allowance = 4 * se + tol(theory_dtype, np.abs(exact).max(), ops=100 * 64)
    assert (np.abs(mean - exact) < allowance).all(), (mean - exact, se)


def log_discretised_gaussian(x: np.ndarray, mean: np.ndarray, std: float, levels: int):
    """log P(x) per entry of N(mean, std²) integrated over the bin of level x on [-1, 1]
    (outer edges at ±∞), in float64 by SciPy: Ho et al. (2020) eq. (13)."""
    centre = (2 * x + 1) / levels - 1
    upper = np.where(x == levels - 1, np.inf, (centre + 1 / levels - mean) / std)
    lower = np.where(x == 0, -np.inf, (centre - 1 / levels - mean) / std)
    # log(Φ(u) − Φ(l)) on the side away from the tail; np.where evaluates both branches
    with np.errstate(divide="ignore"):
        return np.where(
            lower > 0,
            stats.norm.logsf(lower)
            + np.log1p(-np.exp(stats.norm.logsf(upper) - stats.norm.logsf(lower))),
            stats.norm.logcdf(upper)
            + np.log1p(-np.exp(stats.norm.logcdf(lower) - stats.norm.logcdf(upper))),
        )


def test_discretised_vlb_on_discrete_data_equals_its_closed_form(theory_dtype, tol):
    """Ho et al. (2020) eq. (5) and (13): for K = 64 levels the VLB of ``Diffusion(levels=K,
    VLBLikelihood)`` uses bin centres c = (2x + 1)/K − 1 and the decoder P(x | x_1) =
    Π_d ∫_bin N(y; x̂_0(x_1), σ_1²); its expectation is the closed-form KL terms at c plus
    E −log P, a 1-D Gaussian integral per coordinate (x̂_0(x_1) is Gaussian), taken by
    200-node Gauss–Hermite quadrature over SciPy's exact bin probabilities. The library's
    −log_prob (10,000 repeats) equals it within 4 s.e., and so does its bits/dim."""
    levels = 64  # bins 1/32 wide: comparable to σ_1 = 0.01, so the decoder term matters
    mu, cov = np.array([0.1, -0.2]), np.array([[0.3, 0.1], [0.1, 0.2]])
    chain = DDPMChain.linear(100)
    alpha_bar = chain_alpha_bar(chain)
    x = np.array([[35.0, 25.0], [0.0, 63.0]])
    centres = (2 * x + 1) / levels - 1
    terms, _, (dec_mean, dec_cov) = closed_form_vlb_terms(alpha_bar, centres, mu, cov)
    nodes, weights = hermegauss(200)
    weights = weights / weights.sum()
    std_1 = math.sqrt(1.0 - alpha_bar[1])
    decoder = np.zeros(len(x))
    for d in range(D):
        means = dec_mean[:, d : d + 1] + math.sqrt(dec_cov[d, d]) * nodes  # (B, nodes)
        log_p = log_discretised_gaussian(x[:, d : d + 1], means, std_1, levels)
        decoder -= (weights * log_p).sum(-1)
    exact = terms + decoder
    assert (decoder > 0.05).all()  # the decoder term is not negligible at these bins

    model = Diffusion(
        (D,), exact_denoiser(chain, mu, cov), likelihood_method=VLBLikelihood(100), levels=levels
    )
    repeats = 10_000
    xs = torch.tensor(x, dtype=theory_dtype).repeat(repeats, 1)
    log_p = model.log_prob(xs, generator=torch.Generator().manual_seed(9))
    assert log_p.dtype == theory_dtype
    nll = -log_p.double().reshape(repeats, len(x))
    mean, se = nll.mean(0).numpy(), (nll.std(0) / math.sqrt(repeats)).numpy()
    allowance = 4 * se + tol(theory_dtype, np.abs(exact).max(), ops=100 * 64)
    assert (np.abs(mean - exact) < allowance).all(), (mean - exact, se)

    bpd = bits_per_dim(
        model, xs[:2000], levels, dequantized=False, generator=torch.Generator().manual_seed(9)
    )
    target = exact.mean() / (D * math.log(2))
    assert abs(bpd.value - target) < 4 * bpd.stderr + tol(theory_dtype, target, ops=100 * 64)


def test_dequantized_ode_likelihood_has_the_d_log_2_over_k_offset(theory_dtype, tol):
    """Theis et al. (2016): for x ∈ {0…K-1}^D the dequantized y = 2(x + u)/K − 1 on [-1, 1]
    has log p(x + u) = log p_Y(y) + D log(2/K). With the exact denoiser of N(0, S) the ODE
    gives log p_Y = log N(y; 0, α²S + σ²I) at t_min, so (i) per draw of u (reproduced from the
    same generator) log_prob equals log N(y) + D log(2/K) to the solver's accuracy (1e-3
    nats, as for the continuous ODE check); (ii) its mean over 400 draws equals the closed
    form E_u log N(y) + D log(2/K) (E_u (y−c)(y−c)ᵀ = I/(3K²)) within 4 s.e. plus 1e-3; (iii)
    that is below log P(x) = log Π_d ∫_bin N (SciPy, exact bins; Jensen), and bits/dim is
    −mean / (D ln 2)."""
    levels = 8
    cov = np.diag([0.16, 0.09])  # mean 0: the default N(0, I) prior is p_1 up to O(α_1²)
    process = VariancePreserving()
    model = Diffusion(
        (D,),
        exact_denoiser(process, np.zeros(D), cov),
        likelihood_method=ODELikelihood(rtol=1e-7, atol=1e-7),
        levels=levels,
    )
    x = np.array([[4.0, 3.0], [1.0, 6.0], [7.0, 0.0]])
    alpha = vp_alpha(1e-3)  # at t_min
    c_tmin = alpha**2 * cov + (1 - alpha**2) * np.eye(D)
    offset = D * math.log(2 / levels)
    truth = stats.multivariate_normal(np.zeros(D), c_tmin)

    repeats = 400
    xs = torch.tensor(x, dtype=theory_dtype).repeat(repeats, 1)
    log_p = model.log_prob(xs, generator=torch.Generator().manual_seed(10))
    assert log_p.dtype == theory_dtype
    y = 2 * uniform_dequantize(xs, levels, torch.Generator().manual_seed(10)) - 1
    per_draw = truth.logpdf(y.double().numpy()) + offset
    solver = 1e-3 + tol(theory_dtype, np.abs(per_draw).max())
    assert np.abs(log_p.double().numpy() - per_draw).max() < solver

    centres = (2 * x + 1) / levels - 1
    inv = np.linalg.inv(c_tmin)
    quad = np.einsum("bi,ij,bj->b", centres, inv, centres) + np.trace(inv) / (3 * levels**2)
    expected = -0.5 * quad - 0.5 * math.log(np.linalg.det(2 * math.pi * c_tmin)) + offset
    per = log_p.double().reshape(repeats, len(x))
    mean, se = per.mean(0).numpy(), (per.std(0) / math.sqrt(repeats)).numpy()
    assert (np.abs(mean - expected) < 4 * se + solver).all(), (mean - expected, se)
    std = np.sqrt(np.diag(c_tmin))
    log_mass = log_discretised_gaussian(x, np.zeros(D), std, levels).sum(-1)  # edges at ±∞
    assert (expected < log_mass).all()

    bpd = bits_per_dim(model, xs, levels, dequantized=False)
    target = -expected.mean() / (D * math.log(2))
    assert abs(bpd.value - target) < 4 * bpd.stderr + solver / (D * math.log(2))


def vp_alpha(t: float) -> float:
    """α_t = exp(−½ ∫_0^t β) of the VP SDE with β(t) = 0.1 + 19.9 t (Song et al. 2021 eq. (33))."""
    return math.exp(-0.5 * (0.1 * t + 0.5 * 19.9 * t**2))


REVERSE_TIMES = (0.75, 0.5, 0.25, 0.1, 0.0)


def euler_maruyama_moments(steps: int, record_every: int, mu: np.ndarray, cov: np.ndarray):
    """Exact mean and covariance of the Euler–Maruyama chain on the VP reverse SDE
    (Song et al. 2021 eq. (6)) with the exact score −C_t⁻¹(x − α_t μ), after every
    ``record_every`` steps: x ← (1 + f h) x + g² h ∇log p_t − ... with h = −1/steps,
    f = −β(t)/2, g² = β(t), β(t) = 0.1 + 19.9 t; the step is affine, so moments propagate
    exactly. Also the forward marginals N(α_t μ, C_t) at the recorded times."""
    m, p = exact_p1(mu, cov)
    h = -1.0 / steps
    chain, forward = [], []
    for k in range(steps):
        t = 1.0 - k / steps
        beta = 0.1 + 19.9 * t
        alpha = vp_alpha(t)
        inv = np.linalg.inv(alpha**2 * cov + (1 - alpha**2) * np.eye(D))
        lin = (1 - 0.5 * beta * h) * np.eye(D) + beta * h * inv
        shift = -beta * h * inv @ (alpha * mu)
        m, p = lin @ m + shift, lin @ p @ lin.T + (-beta * h) * np.eye(D)
        if (k + 1) % record_every == 0:
            s = 1.0 - (k + 1) / steps
            a_s = vp_alpha(s)
            chain.append((m, p))
            forward.append((a_s * mu, a_s**2 * cov + (1 - a_s**2) * np.eye(D)))
    return chain, forward


def exact_p1(mu: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the true p_1 (the default prior N(0, I) is off by O(α_1 |μ|),
    which the reverse SDE carries to t = 0 and which would mask the discretisation error)."""
    a_1 = vp_alpha(1.0)
    return a_1 * mu, a_1**2 * cov + (1 - a_1**2) * np.eye(D)


def _recorded(steps: int) -> list[int]:
    return [round((1.0 - t) * steps) for t in REVERSE_TIMES]


def test_reverse_sde_marginals_match_the_forward_marginals(theory_dtype, tol):
    """Anderson (1982); Song et al. (2021) eq. (6): with the exact score, the reverse SDE run
    from p_1 has the forward marginals p_t = N(α_t μ, α_t² Σ + σ_t² I) at every t. Checked at
    t ∈ {0.75, 0.5, 0.25, 0.1, 0}: (i) Euler–Maruyama's sample means and covariances (n = 100,000,
    400 steps) equal the exact moments of the Euler–Maruyama chain (propagated in float64)
    within 4 s.e.; (ii) the chain's moments converge to the forward marginals at first order:
    every error above 1e-4 at 400 steps is 2.0 ± 0.2 times that at 800 (halving the step; at
    most 0.0102 here, on the variances);
    (iii) so the samples match the forward marginals within 4 s.e. + that measured error."""
    steps, n = 400, 100_000
    denoiser = exact_denoiser(VariancePreserving())
    g = torch.Generator().manual_seed(11)
    m_1, p_1 = (torch.tensor(v, dtype=theory_dtype) for v in exact_p1(MU, SIGMA))
    x1 = m_1 + torch.randn(n, D, generator=g) @ torch.linalg.cholesky(p_1).T
    run = EulerMaruyama().run(denoiser, x1, steps, generator=g, record_every=steps // 20)
    assert run.trajectory.dtype == theory_dtype
    picks = [k // (steps // 20) - 1 for k in _recorded(steps)]
    states = run.trajectory[picks].double().numpy()

    chain, forward = euler_maruyama_moments(steps, steps // 20, MU, SIGMA)
    chain = [chain[i] for i in picks]
    forward = [forward[i] for i in picks]
    fine, _ = euler_maruyama_moments(2 * steps, steps // 10, MU, SIGMA)
    fine = [fine[i] for i in picks]
    for x, (m, p), (m_fwd, p_fwd), (m_fine, p_fine) in zip(
        states, chain, forward, fine, strict=True
    ):
        se_mean = np.sqrt(np.diag(p) / n)
        se_cov = np.sqrt((np.outer(np.diag(p), np.diag(p)) + p**2) / n)
        rounding = tol(theory_dtype, np.abs(p).max(), ops=steps * 64)
        assert (np.abs(x.mean(0) - m) < 4 * se_mean + rounding).all(), (x.mean(0), m)
        assert (np.abs(np.cov(x.T) - p) < 4 * se_cov + rounding).all(), (np.cov(x.T), p)
        error = np.concatenate([m - m_fwd, (p - p_fwd).ravel()])
        error_fine = np.concatenate([m_fine - m_fwd, (p_fine - p_fwd).ravel()])
        big = np.abs(error) > 1e-4  # entries with a measurable discretisation error
        assert (np.abs(error_fine[big] / error[big] - 0.5) < 0.05).all(), (error, error_fine)
        assert (np.abs(x.mean(0) - m_fwd) < 4 * se_mean + np.abs(m - m_fwd) + rounding).all()
        assert (np.abs(np.cov(x.T) - p_fwd) < 4 * se_cov + np.abs(p - p_fwd) + rounding).all()
