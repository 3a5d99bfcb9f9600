"""Theory checks for Langevin sampling and energy-based models (issue 4, item 5).

Each test names the identity it checks; tolerances are Monte Carlo standard
errors of independent chains (z-scores), and each test also shows that the
same criterion rejects a wrong answer.
"""

from __future__ import annotations

import math

import pytest
import torch

from probgen.distributions import Gaussian, GaussianMixture
from probgen.divergences import mmd
from probgen.models.ebm import EBM, contrastive_loss
from probgen.nn import MLP
from probgen.sampling import HMC, MALA, Kernel, Langevin, LogDensity

Z_MAX = 4.5  # two-sided z threshold; with < 100 z-scores per test a false alarm is < 1e-3


def _mixture() -> GaussianMixture:
    """Three overlapping modes (weights 0.5, 0.3, 0.2) so that chains can cross between them."""
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]])
    return GaussianMixture.isotropic(torch.tensor([0.5, 0.3, 0.2]), means, 0.5)


def _mode_fractions(mix: GaussianMixture, x: torch.Tensor) -> torch.Tensor:
    """Fraction of points whose most responsible component is k, (K,)."""
    k = mix.responsibilities(x).argmax(1)
    return torch.bincount(k, minlength=len(mix.means)).to(x) / len(x)


def _mode_z(mix: GaussianMixture, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """z-scores of the mode fractions of x against those of independent exact samples."""
    f, p = _mode_fractions(mix, x), _mode_fractions(mix, reference)
    se = (p * (1 - p) * (1 / len(x) + 1 / len(reference))).sqrt()
    return (f - p) / se


@pytest.mark.parametrize(
    ("kernel", "steps"), [(Langevin(0.1), 1500), (MALA(0.5), 600)], ids=["langevin", "mala"]
)
def test_langevin_with_the_exact_mixture_energy_samples_the_mixture(
    kernel: Kernel, steps: int, theory_dtype: torch.dtype
) -> None:
    """Langevin dynamics x ← x + (ε²/2)∇log p(x) + εη with p the exact mixture density.

    Started far from equilibrium (N(0, 2² I)), 2000 independent chains end as
    i.i.d. draws of p: their mode weights match p's within binomial error, and
    MMD²(1000 chains, exact) is within 5 null standard deviations of 0, where the
    null spread is measured on independent exact sample pairs. The same MMD
    criterion rejects the right modes with the wrong weights.
    """
    mix = _mixture()
    g = torch.Generator().manual_seed(1)
    n = 2000
    x0 = 2.0 * torch.randn(n, 2, generator=g)
    result = kernel.run(LogDensity(mix.log_prob), x0, steps, generator=g)
    x = result.samples
    assert _mode_z(mix, x, mix.sample(100_000, generator=g)).abs().max() < Z_MAX

    m = n // 2  # MMD on half the chains keeps the (m, m) kernel matrices cheap
    null = torch.stack(
        [mmd(mix.sample(m, generator=g), mix.sample(m, generator=g)) for _ in range(6)]
    )
    threshold = 5 * null.square().mean().sqrt()  # MMD²_u has mean 0 under the null
    reference = mix.sample(m, generator=g)
    assert mmd(x[:m], reference) < threshold
    wrong = GaussianMixture.isotropic(torch.tensor([0.2, 0.3, 0.5]), mix.means, 0.5)
    assert mmd(wrong.sample(m, generator=g), reference) > threshold
    assert mmd(x0[:m], reference) > threshold


def _gaussian() -> Gaussian:
    return Gaussian(torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.4], [0.4, 0.6]]))


def _moment_z(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """z-scores of the sample mean (D,) and covariance (D, D) of n i.i.d. Gaussian rows.

    se(x̄_i) = √(C_ii/n); se(S_ij) = √((C_ij² + C_ii C_jj)/n) (Gaussian fourth moments).
    """
    n = len(x)
    var = cov.diagonal()
    z_mean = (x.mean(0) - mean) / (var / n).sqrt()
    z_cov = (torch.cov(x.T) - cov) / ((cov.square() + var[:, None] * var[None, :]) / n).sqrt()
    return torch.cat([z_mean, z_cov.flatten()])


def _ula_covariance(cov: torch.Tensor, eps: float, start: torch.Tensor, steps: int) -> torch.Tensor:
    """Exact covariance of ULA on N(μ, Σ): C ← A C A + ε² I, A = I - (ε²/2) Σ⁻¹."""
    a = torch.eye(len(cov)) - 0.5 * eps**2 * torch.linalg.inv(cov)
    c = start
    for _ in range(steps):
        c = a @ c @ a + eps**2 * torch.eye(len(cov))
    return c


@pytest.mark.parametrize("kernel", [MALA(0.8), HMC(0.5, n_leapfrog=3)], ids=["mala", "hmc"])
def test_metropolis_adjusted_kernels_are_exact_where_ula_is_biased(
    kernel: Kernel, theory_dtype: torch.dtype
) -> None:
    """MALA (Roberts & Tweedie 1996) and HMC (Neal 2011) leave N(μ, Σ) exactly invariant.

    4000 chains started at exact samples and run 40 steps keep mean μ and
    covariance Σ (z-scores below 4.5). ULA with the same ε instead follows
    C ← A C Aᵀ + ε² I with A = I - (ε²/2)Σ⁻¹ towards ε²(I - A²)⁻¹ ≠ Σ: its
    chains match that recursion, and differ from Σ by far more than the
    tolerance, so the test tells the exact kernel from the biased one.
    """
    p = _gaussian()
    g = torch.Generator().manual_seed(2)
    n, steps, eps = 4000, 40, 0.8
    x0 = p.sample(n, generator=g)
    target = LogDensity(p.log_prob)
    exact = kernel.run(target, x0, steps, generator=g)
    assert _moment_z(exact.samples, p.mean, p.covariance).abs().max() < Z_MAX
    assert 0.3 < exact.acceptance_rate < 1.0

    biased = Langevin(eps).run(target, x0, steps, generator=g).samples
    ula_cov = _ula_covariance(p.covariance, eps, p.covariance, steps)
    assert _moment_z(biased, p.mean, ula_cov).abs().max() < Z_MAX
    assert _moment_z(biased, p.mean, p.covariance).abs().max() > 4 * Z_MAX


def test_mala_converges_to_the_gaussian_from_a_far_start(theory_dtype: torch.dtype) -> None:
    """MALA chains started at one far point forget it: moments of N(μ, Σ) after 300 steps."""
    p = _gaussian()
    g = torch.Generator().manual_seed(3)
    x0 = torch.tensor([4.0, 3.0]).expand(3000, 2)
    result = MALA(0.8).run(LogDensity(p.log_prob), x0, 300, generator=g)
    assert _moment_z(result.samples, p.mean, p.covariance).abs().max() < Z_MAX


def _binary_states(d: int) -> torch.Tensor:
    """All 2^d binary vectors, (2^d, d)."""
    bits = torch.arange(2**d)[:, None] >> torch.arange(d)
    return (bits & 1).to(torch.get_default_dtype())


def _small_ebm() -> EBM:
    """A tanh-MLP energy, initialised in float64 and cast: the same model in every dtype."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(4)
    model = EBM((4,), energy=MLP(4, 1, hidden=(8,), activation=torch.nn.Tanh), buffer_size=1)
    torch.set_default_dtype(dtype)
    return model.to(dtype)


def _p_data(generator: torch.Generator | None = None) -> torch.Tensor:
    """A data law on the 16 states, drawn in float64 and rounded to the default dtype."""
    logits = torch.randn(16, generator=generator, dtype=torch.float64)
    return torch.softmax(logits, 0).to(torch.get_default_dtype())


def _grad(model: EBM, value: torch.Tensor) -> torch.Tensor:
    params = list(model.net.parameters())
    return torch.cat([gr.flatten() for gr in torch.autograd.grad(value, params, retain_graph=True)])


def test_cd_gradient_with_exact_expectations_equals_the_exact_nll_gradient(
    theory_dtype: torch.dtype, tol
) -> None:
    """∇_θ E_pdata[−log p_θ(x)] = E_pdata[∇_θ E_θ(x)] − E_pθ[∇_θ E_θ(x)].

    On {0,1}⁴ Z_θ = Σ_x exp(−E_θ(x)) is a sum of 16 terms, so the left side is
    autograd of the exact NLL E_pdata[E_θ] + log Z_θ; the right side weights
    the energy gradients by the exact p_θ (held fixed). Equal to rounding.
    """
    model, states = _small_ebm(), _binary_states(4)
    p_data = _p_data()
    energy = model.energy(states)
    nll = (p_data * energy).sum() + torch.logsumexp(-energy, 0)
    p_model = torch.softmax(-energy, 0).detach()
    cd = (p_data * energy).sum() - (p_model * energy).sum()
    jac = torch.stack([_grad(model, e) for e in energy]).abs()  # (16, P): |∂E(x)/∂θ|
    size = (p_data + p_model) @ jac  # the magnitude of the two expectations that cancel
    bound = 64 * torch.finfo(theory_dtype).eps * (1 + size)
    if theory_dtype == torch.float64:
        bound = torch.minimum(bound, 1e-12 + 1e-10 * _grad(model, nll).abs())  # as before
    assert ((_grad(model, cd) - _grad(model, nll)).abs() <= bound).all()
    # log_prob is −E: the same NLL through the model's own density
    torch.testing.assert_close(-model.log_prob(states), energy)


def test_cd_gradient_of_the_ebm_loss_with_exact_model_samples_is_unbiased(
    theory_dtype: torch.dtype,
) -> None:
    """E[∇_θ contrastive_loss(E(x⁺), E(x⁻))] = ∇_θ NLL for x⁺ ~ p_data, x⁻ ~ p_θ (α = 0).

    With B exact draws of each, every coordinate of the gradient estimate is
    within 4.5 standard errors √((Var_pdata[∂E] + Var_pθ[∂E]) / B) of the
    exact NLL gradient; negatives drawn uniformly instead of from p_θ fail.
    """
    model, states = _small_ebm(), _binary_states(4)
    g = torch.Generator().manual_seed(5)
    p_data = _p_data(g)
    energy = model.energy(states)
    p_model = torch.softmax(-energy, 0).detach()
    exact = _grad(model, (p_data * energy).sum() + torch.logsumexp(-energy, 0))
    jac = torch.stack([_grad(model, e) for e in model.energy(states)])  # (16, P): ∂E(x)/∂θ

    def var(p: torch.Tensor) -> torch.Tensor:  # centred first: E[X²] − E[X]² cancels in float32
        return p @ (jac - p @ jac).square()

    b = 20_000
    se = ((var(p_data) + var(p_model)) / b).sqrt()
    # rounding of the two batch means: 64 eps E|∂E| per side (se is 0 for the output bias)
    rounding = 64 * torch.finfo(theory_dtype).eps * ((p_data + p_model) @ jac.abs())
    x_data = states[torch.multinomial(p_data, b, replacement=True, generator=g)]

    def z(p_negative: torch.Tensor) -> torch.Tensor:
        x_neg = states[torch.multinomial(p_negative, b, replacement=True, generator=g)]
        loss = contrastive_loss(model.energy(x_data), model.energy(x_neg), alpha=0.0)
        return ((_grad(model, loss) - exact).abs() - rounding).clamp_min(0) / se

    assert z(p_model).nan_to_num(0.0).max() < Z_MAX
    assert z(torch.full((16,), 1 / 16)).nan_to_num(0.0).max() > 3 * Z_MAX
    assert math.isfinite(float(exact.abs().sum()))
