"""Classifier-free and classifier guidance checked with exact scores of Gaussian classes.

Data: classes x_0 | k ~ N(μ_k, Σ) (shared Σ), weights π. Under the forward
process x_t | k ~ N(α_t μ_k, C_t), C_t = α_t² Σ + σ_t² I, and the exact
scores, the exact mixture score and the exact noisy classifier p(k | x_t) are
known (``probgen.models.diffusion.gaussian``).

What guidance samples (derived here, checked below):

- The guided score s̃_t = (1 + w) ∇ log p_t(x | c) − w ∇ log p_t^∅(x) is the
  score of p̃_t ∝ p_t(x | c)^{1+w} p_t^∅(x)^{−w}; at t = 0 this is the tilted
  law. When the null model is Gaussian, p^∅ = N(μ_∅, Σ_∅), s̃_t = −A_t x + b_t
  is linear, with A_t = (1 + w) C_t⁻¹ − w C_{∅,t}⁻¹ and
  b_t = α_t [(1 + w) C_t⁻¹ μ_c − w C_{∅,t}⁻¹ μ_∅].
- Shared covariance (Σ_∅ = Σ): A_t = C_t⁻¹ and b_t = α_t C_t⁻¹ μ̃ with
  μ̃ = μ_c + w (μ_c − μ_∅), which is the exact score of data N(μ̃, Σ). So every
  sampler samples N(μ̃, Σ), which is exactly the tilted law
  N(μ_c, Σ)^{1+w} N(μ_∅, Σ)^{−w} ∝ N(μ̃, Σ) (test_shared_covariance_...).
- Σ_∅ ≠ Σ: p̃_t is Gaussian at each t but the family is not the marginal path
  of one diffusion, so samplers do not sample the tilted law
  N(P_0⁻¹ [(1+w) Σ⁻¹ μ_c − w Σ_∅⁻¹ μ_∅], P_0⁻¹), P_0 = (1 + w) Σ⁻¹ − w Σ_∅⁻¹
  (Chidambaram et al. 2024). The probability-flow ODE dx/dt = f x − ½ g² s̃ is
  still linear, so its output is Gaussian with mean and covariance from the
  moment ODEs dm/dt = M_t m + c_t, dK/dt = M_t K + K M_tᵀ (M_t = f I + ½ g² A_t,
  c_t = −½ g² b_t), solved here in float64 by SciPy; the sampler matches that,
  and not the tilted law (test_unequal_covariance_...).
- The true p(x) of two classes is a mixture: then neither p̃_t nor the ODE's
  output is Gaussian; only the pointwise identity CFG(w) = classifier guidance
  of the exact unconditional score with scale 1 + w holds exactly (checked).

Monte Carlo tolerances: 4 standard errors (n samples) plus the sampler's
discretisation error, measured as the change when the steps are halved, plus
the prior's error (p_1 ≠ N(0, I)), measured on the exact probability-flow map.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from probgen.conditions import ConditionSpec
from probgen.models.diffusion import (
    DDIM,
    Ancestral,
    ClassifierFreeGuidance,
    ClassifierGuidance,
    DDPMChain,
    Diffusion,
    EulerMaruyama,
    ExactGaussianDenoiser,
    ExactGaussianMixtureDenoiser,
    ForwardProcess,
    PerClassDenoiser,
    PredictorCorrector,
    ProbabilityFlow,
    VariancePreserving,
)

MEANS = ((1.0, -0.5), (-1.0, 0.5))  # μ_0, μ_1 of the two classes
SIGMA = ((1.0, 0.6), (0.6, 0.8))  # the shared Σ
NULL_MEAN = (0.5, 0.0)  # μ_∅ of a Gaussian null model
WIDE = ((3.0, 0.5), (0.5, 2.0))  # Σ_∅ ≠ Σ (Σ_∅ − Σ positive definite)
N = 2000


def _t(values) -> Tensor:
    return torch.tensor(values, dtype=torch.get_default_dtype())


def classes_model(process: ForwardProcess, null: str, null_cov=SIGMA) -> Diffusion:
    """A Diffusion whose conditional denoiser is exact: class k -> N(μ_k, Σ); ∅ -> null."""
    parts = [ExactGaussianDenoiser(process, _t(m), _t(SIGMA)) for m in MEANS]
    if null == "mixture":
        unconditional = ExactGaussianMixtureDenoiser(parts, _t([0.5, 0.5]))
    else:
        unconditional = ExactGaussianDenoiser(process, _t(NULL_MEAN), _t(null_cov))
    denoiser = PerClassDenoiser(parts, unconditional)
    return Diffusion((2,), denoiser, condition=ConditionSpec(classes=2), p_uncond=0.1)


def moments(x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = x.double()
    return x.mean(0).numpy(), torch.cov(x.T).numpy()


def standard_errors(cov: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard errors of the sample mean and covariance of n Gaussian draws N(·, cov)."""
    d = np.diag(cov)
    return np.sqrt(d / n), np.sqrt((np.outer(d, d) + cov**2) / n)


def flow_law(
    process: ForwardProcess, w: float, mu_c, cov_c, mu_null, cov_null
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the probability-flow sampler's output with the guided score.

    The moment ODEs from x_1 ~ N(0, prior_std² I) at t = 1 down to t_min, in
    float64, then the sampler's last deterministic jump x_0 = x̂_0(x, t_min),
    an affine map x̂_0 = [(I − σ² A) x + σ² b] / α.
    """
    mu_c, mu_null = np.asarray(mu_c, float), np.asarray(mu_null, float)
    cov_c, cov_null = np.asarray(cov_c, float), np.asarray(cov_null, float)
    eye = np.eye(len(mu_c))

    def linear(t: float) -> tuple[np.ndarray, np.ndarray]:
        alpha, sigma = process.alpha_sigma_at(t)
        pc = np.linalg.inv(alpha**2 * cov_c + sigma**2 * eye)
        pn = np.linalg.inv(alpha**2 * cov_null + sigma**2 * eye)
        a = (1 + w) * pc - w * pn
        b = alpha * ((1 + w) * pc @ mu_c - w * pn @ mu_null)
        return a, b  # s̃(x, t) = −A x + b

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        f, g2 = process.drift_diffusion_at(t)
        a, b = linear(t)
        m, k = y[:2], y[2:].reshape(2, 2)
        big_m = f * eye + 0.5 * g2 * a
        dm = big_m @ m - 0.5 * g2 * b
        dk = big_m @ k + k @ big_m.T
        return np.concatenate([dm, dk.ravel()])

    start = np.concatenate([np.zeros(2), (process.prior_std() ** 2 * eye).ravel()])
    sol = solve_ivp(rhs, (1.0, process.t_min), start, rtol=1e-11, atol=1e-12, method="DOP853")
    m, k = sol.y[:2, -1], sol.y[2:, -1].reshape(2, 2)
    alpha, sigma = process.alpha_sigma_at(process.t_min)
    a, b = linear(process.t_min)
    jump = (eye - sigma**2 * a) / alpha
    return jump @ m + sigma**2 * b / alpha, jump @ k @ jump.T


def tilted_law(w: float, mu_c, cov_c, mu_null, cov_null) -> tuple[np.ndarray, np.ndarray]:
    """N(m, P⁻¹) ∝ N(μ_c, Σ_c)^{1+w} N(μ_∅, Σ_∅)^{−w}: P = (1+w) Σ_c⁻¹ − w Σ_∅⁻¹."""
    pc, pn = np.linalg.inv(np.asarray(cov_c)), np.linalg.inv(np.asarray(cov_null))
    precision = (1 + w) * pc - w * pn
    cov = np.linalg.inv(precision)
    return cov @ ((1 + w) * pc @ np.asarray(mu_c) - w * pn @ np.asarray(mu_null)), cov


SAMPLERS = {
    # id: (process, sampler, steps K; the allowance is the change from K to K/2)
    "ancestral": (lambda: DDPMChain.linear(1000), Ancestral, 250),
    "ddim": (lambda: DDPMChain.linear(1000), DDIM, 50),
    "euler_maruyama": (VariancePreserving, EulerMaruyama, 250),
    "predictor_corrector": (VariancePreserving, PredictorCorrector, 100),
}


@pytest.mark.parametrize("w", [0.0, 2.0])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_shared_covariance_guidance_samples_the_tilted_gaussian(name, w, theory_dtype):
    """Σ_∅ = Σ: CFG of scale w with exact scores samples N(μ_c + w(μ_c − μ_∅), Σ), the tilted
    law; w = 0 is p(x | c) itself. Through ``Diffusion.sample(condition=c, guidance=w)``:
    mean and covariance within 4 s.e. + the halving allowance + the prior allowance."""
    make_process, make_sampler, steps = SAMPLERS[name]
    process = make_process()
    model = classes_model(process, "gaussian")
    mu_c = np.asarray(MEANS[0])
    target_mean = mu_c + w * (mu_c - np.asarray(NULL_MEAN))
    target_cov = np.asarray(SIGMA)
    runs = {}
    for k in (steps, steps // 2):
        result = model.run_sampler(
            N, 0, make_sampler(), k, torch.Generator().manual_seed(5), guidance=w
        )
        assert result.samples.dtype == theory_dtype
        assert result.n_evaluations == (2 if w else 1) * (
            k if name != "predictor_corrector" else 2 * k
        )
        runs[k] = moments(result.samples)
    flow_mean, flow_cov = flow_law(process, w, mu_c, SIGMA, NULL_MEAN, SIGMA)
    se_mean, se_cov = standard_errors(target_cov, N)
    (mean, cov), (mean2, cov2) = runs[steps], runs[steps // 2]
    mean_tol = 4 * se_mean + abs(mean - mean2) + abs(flow_mean - target_mean)
    cov_tol = 4 * se_cov + abs(cov - cov2) + abs(flow_cov - target_cov)
    assert (abs(mean - target_mean) < mean_tol).all(), (mean, target_mean, mean_tol)
    assert (abs(cov - target_cov) < cov_tol).all(), (cov, target_cov, cov_tol)


def test_shared_covariance_guided_score_is_the_score_of_the_tilted_gaussian(theory_dtype, tol):
    """Pointwise: (1 + w) ŝ_c − w ŝ_∅ = ∇ log N(x; α_t μ̃, C_t) with μ̃ = μ_c + w (μ_c − μ_∅)."""
    process, w = VariancePreserving(), 1.5
    g = torch.Generator().manual_seed(0)
    x, t = 3 * torch.randn(64, 2, generator=g), torch.rand(64, generator=g) * 0.99 + 0.01
    conditional = ExactGaussianDenoiser(process, _t(MEANS[0]), _t(SIGMA))
    null = ExactGaussianDenoiser(process, _t(NULL_MEAN), _t(SIGMA))
    guided = ClassifierFreeGuidance(conditional, null, w)(x, t).score
    mu = _t(MEANS[0]) + w * (_t(MEANS[0]) - _t(NULL_MEAN))
    expected = ExactGaussianDenoiser(process, mu, _t(SIGMA))(x, t).score
    size = expected.abs().max().item() * (1 + 2 * w)
    torch.testing.assert_close(guided, expected, atol=tol(theory_dtype, size, 256), rtol=0)


def test_unequal_covariance_flow_samples_the_moment_ode_law_not_the_tilted_law(theory_dtype):
    """Σ_∅ ≠ Σ: the probability-flow sampler's output law (the moment ODEs, float64 SciPy)
    is matched within 4 s.e. + the solver allowance, and it differs from the tilted law
    N(m_0, P_0⁻¹) by more than 4 times that tolerance (guidance is not the tilted law)."""
    process, w = VariancePreserving(), 2.0
    model = classes_model(process, "gaussian", null_cov=WIDE)
    mean_ode, cov_ode = flow_law(process, w, MEANS[0], SIGMA, NULL_MEAN, WIDE)
    mean_tilt, cov_tilt = tilted_law(w, MEANS[0], SIGMA, NULL_MEAN, WIDE)
    x = model.sample(N, 0, ProbabilityFlow(), 1, torch.Generator().manual_seed(2), guidance=w)
    mean, cov = moments(x)
    se_mean, se_cov = standard_errors(cov_ode, N)
    allowance = 1e-3  # rtol = atol = 1e-5 of the sampler's solve, on values of size ~ 1
    mean_tol, cov_tol = 4 * se_mean + allowance, 4 * se_cov + allowance
    assert (abs(mean - mean_ode) < mean_tol).all(), (mean, mean_ode, mean_tol)
    assert (abs(cov - cov_ode) < cov_tol).all(), (cov, cov_ode, cov_tol)
    gap = max(abs(mean_ode - mean_tilt).max(), abs(cov_ode - cov_tilt).max())
    assert gap > 4 * max(mean_tol.max(), cov_tol.max()), (gap, mean_tilt, cov_tilt)


def test_cfg_equals_exact_classifier_guidance_of_the_mixture_score(theory_dtype, tol):
    """Bayes: ∇ log p_t(x | c) = ∇ log p_t(x) + ∇ log p_t(c | x), so CFG of scale w on the exact
    class and mixture scores equals classifier guidance of the mixture score with the exact
    noisy classifier and scale 1 + w (Ho & Salimans 2022, Section 3.2); pointwise."""
    process, w = VariancePreserving(), 2.0
    g = torch.Generator().manual_seed(1)
    x, t = 2 * torch.randn(64, 2, generator=g), torch.rand(64, generator=g) * 0.99 + 0.01
    parts = [ExactGaussianDenoiser(process, _t(m), _t(SIGMA)) for m in MEANS]
    mixture = ExactGaussianMixtureDenoiser(parts, _t([0.3, 0.7]))
    labels = torch.zeros(64, dtype=torch.long)
    cfg = ClassifierFreeGuidance(parts[0], mixture, w)(x, t).score
    cg = ClassifierGuidance(mixture, mixture.class_log_posterior, labels, 1 + w)(x, t).score
    size = (1 + 2 * w) * parts[0](x, t).score.abs().max().item()
    torch.testing.assert_close(cfg, cg, atol=tol(theory_dtype, size, 512), rtol=0)


def test_exact_classifier_guidance_samples_the_class_conditional(theory_dtype):
    """Classifier guidance of scale 1 on the exact mixture score with the exact noisy classifier
    p(c | x_t) is the exact class score, so an unconditional model guided toward class c
    samples N(μ_c, Σ): 4 s.e. + the halving allowance + the prior allowance."""
    process = DDPMChain.linear(1000)
    parts = [ExactGaussianDenoiser(process, _t(m), _t(SIGMA)) for m in MEANS]
    mixture = ExactGaussianMixtureDenoiser(parts, _t([0.5, 0.5]))
    model = Diffusion((2,), mixture)
    runs = {}
    for k in (50, 25):
        x = model.sample(
            N,
            sampler=DDIM(),
            steps=k,
            generator=torch.Generator().manual_seed(4),
            classifier=mixture.class_log_posterior,
            classifier_labels=1,
        )
        runs[k] = moments(x)
    target_mean, target_cov = np.asarray(MEANS[1]), np.asarray(SIGMA)
    flow_mean, flow_cov = flow_law(process, 0.0, MEANS[1], SIGMA, NULL_MEAN, SIGMA)
    se_mean, se_cov = standard_errors(target_cov, N)
    (mean, cov), (mean2, cov2) = runs[50], runs[25]
    mean_tol = 4 * se_mean + abs(mean - mean2) + abs(flow_mean - target_mean)
    cov_tol = 4 * se_cov + abs(cov - cov2) + abs(flow_cov - target_cov)
    assert (abs(mean - target_mean) < mean_tol).all(), (mean, target_mean, mean_tol)
    assert (abs(cov - target_cov) < cov_tol).all(), (cov, target_cov, cov_tol)
