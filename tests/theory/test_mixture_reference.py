"""The Gaussian-mixture reference is the exact denoiser of the mixture, on every path.

For x_0 ~ Σ_k π_k N(μ_k, Σ_k) the noised marginal is p_t = Σ_k π_k N(α_t μ_k,
α_t² Σ_k + σ_t² I). The ground truth is that density written with
``torch.distributions`` in float64 and its score by autograd; the library's
side runs in float64 and float32 (``theory_dtype``), with tolerances of
rounding (``tol``) or of the ODE solver's tolerance, never loosened.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from probgen.models.diffusion import (
    DataPrediction,
    DDPMChain,
    Diffusion,
    ForwardProcess,
    LinearPath,
    NoisePrediction,
    ProbabilityFlow,
    ScorePrediction,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
    VelocityPrediction,
    ode_log_likelihood,
)
from probgen.models.diffusion.reference import MixtureReference
from probgen.nn.time_embedding import TimeMLP

WEIGHTS = (0.3, 0.7)
MEANS = ((1.5, -0.5), (-1.0, 0.8))
COVARIANCES = (((0.5, 0.2), (0.2, 0.3)), ((0.25, -0.1), (-0.1, 0.4)))

PROCESSES = {
    "vp": VariancePreserving,
    "subvp": SubVariancePreserving,
    "ve": lambda: VarianceExploding(sigma_max=20.0),
    "ddpm": lambda: DDPMChain.linear(1000),
    "linear": LinearPath,
}
KINDS = {
    "noise": NoisePrediction,
    "data": DataPrediction,
    "score": ScorePrediction,
    "velocity": VelocityPrediction,
}


def reference() -> MixtureReference:
    """The mixture above in 2 of 3 slots (the third inactive), in the default dtype."""
    ref = MixtureReference((2,), components=3)
    m = ref.mixture
    tril = torch.linalg.cholesky(torch.tensor(COVARIANCES))
    with torch.no_grad():
        m.active.copy_(torch.tensor([True, True, False]))
        m.logits[:2] = torch.tensor(WEIGHTS).log()
        m.means[:2] = torch.tensor(MEANS)
        m.log_diagonal[:2] = torch.diagonal(tril, dim1=-2, dim2=-1).log()
        m.lower[:2] = torch.tril(tril, -1)
        m.means[2] = 40.0  # an inactive slot must not matter
    return ref


def noised(alpha: Tensor, sigma: Tensor) -> torch.distributions.MixtureSameFamily:
    """p_t in float64 for per-example α, σ (B,): a batch of B two-component mixtures."""
    mu, cov = (
        torch.tensor(MEANS, dtype=torch.float64),
        torch.tensor(COVARIANCES, dtype=torch.float64),
    )
    a, s = alpha.double()[:, None, None], sigma.double()[:, None, None]
    components = torch.distributions.MultivariateNormal(
        a * mu, a[..., None] ** 2 * cov + s[..., None] ** 2 * torch.eye(2, dtype=torch.float64)
    )
    weights = torch.tensor(WEIGHTS, dtype=torch.float64).expand(len(alpha), 2)
    return torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(weights), components
    )


def exact_score(x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
    """∇ log p_t(x) by autograd of the closed-form density, float64 (B, D)."""
    y = x.double().requires_grad_(True)
    (grad,) = torch.autograd.grad(noised(alpha, sigma).log_prob(y).sum(), y)
    return grad


def points(n: int = 64) -> Tensor:
    return 2.0 * torch.randn(n, 2, generator=torch.Generator().manual_seed(3))


def exact_kinds(process: ForwardProcess, x: Tensor, t: Tensor) -> dict[str, Tensor]:
    """Every kind of the exact prediction at times t (B,), float64: ε = −σ s,
    x̂_0 = (x + σ² s)/α (Tweedie), s, and v = f x − ½ g² s."""
    t = t.double()
    alpha, sigma = (c[:, None] for c in process.alpha_sigma(t))
    f, g2 = (c[:, None] for c in process.drift_diffusion(t))
    s, x = exact_score(x, alpha[:, 0], sigma[:, 0]), x.double()
    return {
        "noise": -sigma * s,
        "data": (x + sigma**2 * s) / alpha,
        "score": s,
        "velocity": f * x - 0.5 * g2 * s,
    }


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("name", list(PROCESSES))
def test_zero_residual_prediction_is_the_exact_prediction_of_the_noised_mixture(
    name, kind, theory_dtype, tol
):
    """With the network at zero, the denoiser's own kind equals that kind of the exact
    denoiser of p_t (from ∇ log p_t by autograd of the closed form) at per-example times in
    [t_min, 0.95] and at one shared time; every parametrization, every path. The score and
    velocity it implies through ``Prediction`` match too where σ_t ≥ 0.05 (nearer t = 0
    the conversions divide by σ_t and multiply the rounding; the own kind is checked there)."""
    process = PROCESSES[name]()
    denoiser = KINDS[kind](TimeMLP(2, (16,)), process, reference())
    x = points()
    g = torch.Generator().manual_seed(4)
    t = process.t_min + (0.95 - process.t_min) * torch.rand(len(x), generator=g)
    for times in (t, torch.tensor(0.5)):
        truth = exact_kinds(process, x, times.expand(len(x)))
        prediction = denoiser(x, times)
        checks = {kind: getattr(prediction, kind)}
        regular = process.alpha_sigma(times.expand(len(x)))[1] >= 0.05
        checks.update(score=prediction.score[regular], velocity=prediction.velocity[regular])
        for what, value in checks.items():
            expected = truth[what] if value.shape == x.shape else truth[what][regular]
            size = expected.abs().max().item()
            torch.testing.assert_close(
                value.double(), expected, rtol=0, atol=tol(theory_dtype, size, 512)
            )


def test_the_velocity_is_regular_where_alpha_vanishes(theory_dtype, tol):
    """On the straight path at t = 1 (α = 0, x_t = ε) the exact velocity is
    E[ε − x_0 | x_t] = x − Σ_k π_k μ_k: finite, where the Tweedie form divides by α."""
    denoiser = VelocityPrediction(TimeMLP(2, (16,)), LinearPath(), reference())
    x = points()
    mean = (torch.tensor(WEIGHTS)[:, None] * torch.tensor(MEANS)).sum(0)
    v = denoiser(x, torch.tensor(1.0)).velocity
    torch.testing.assert_close(v, x - mean, rtol=0, atol=tol(theory_dtype, x.abs().max(), 64))


def _model(name: str) -> Diffusion:
    process = PROCESSES[name]()
    kind = "velocity" if name == "linear" else "noise"
    return Diffusion((2,), KINDS[kind](TimeMLP(2, (16,)), process, reference()))


@pytest.mark.parametrize("name", list(PROCESSES))
def test_zero_residual_ode_likelihood_is_the_mixture_density(name, theory_dtype, tol):
    """The probability-flow ODE of the zero-residual model, started from the exact p_1,
    returns log p_{t_min}(x) of the noised mixture (closed form) to the solver's tolerance
    (1e-3 nats plus rounding, as for the exact Gaussian in test_diffusion_theory)."""
    model = _model(name)
    process = model.process
    x = points(16) * 0.6
    ones = torch.ones(len(x), dtype=torch.float64)
    a1, s1 = process.alpha_sigma(ones)
    solver_tol = max(1e-7, 8 * torch.finfo(theory_dtype).eps)

    def prior(y: Tensor) -> Tensor:
        return noised(a1, s1).log_prob(y.double()).to(y.dtype)

    log_p = ode_log_likelihood(
        model.denoiser, x, rtol=solver_tol, atol=solver_tol, prior_log_prob=prior
    )
    a0, s0 = process.alpha_sigma(torch.full((len(x),), process.t_min, dtype=torch.float64))
    exact = noised(a0, s0).log_prob(x.double())
    allowance = 1e-3 + tol(theory_dtype, exact.abs().max(), 1000)
    assert (log_p.double() - exact).abs().max() < allowance


@pytest.mark.parametrize("name", ["vp", "ddpm", "linear"])
def test_zero_residual_samples_have_the_mixture_moments(name, theory_dtype):
    """Samples of the zero-residual model (its probability-flow ODE) have the mixture's
    mean and second moments within 4 standard errors plus 0.02 of discretisation."""
    model = _model(name)
    n = 4000
    g = torch.Generator().manual_seed(6)
    x = model.sample(n, sampler=ProbabilityFlow(), steps=1, generator=g).double()
    w, mu = torch.tensor(WEIGHTS, dtype=torch.float64), torch.tensor(MEANS, dtype=torch.float64)
    cov = torch.tensor(COVARIANCES, dtype=torch.float64)
    mean = (w[:, None] * mu).sum(0)
    second = (w[:, None, None] * (cov + mu[:, :, None] * mu[:, None, :])).sum(0)  # E[x xᵀ]
    products = x[:, :, None] * x[:, None, :]
    se_mean = x.std(0) / math.sqrt(n)
    se_second = products.flatten(1).std(0).reshape(2, 2) / math.sqrt(n)
    assert ((x.mean(0) - mean).abs() < 4 * se_mean + 0.02).all()
    assert ((products.mean(0) - second).abs() < 4 * se_second + 0.02).all()
