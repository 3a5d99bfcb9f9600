"""The ODE solvers' convergence orders against exact solutions of the probability-flow ODE.

**Gaussian data.** For x_0 ~ N(μ, Σ), Σ = U diag(λ) Uᵀ, the probability-flow ODE
in EDM's variables y = x/α_t, σ̃ = σ_t/α_t is dy/dσ̃ = σ̃ (Σ + σ̃² I)⁻¹ (y − μ),
solved in closed form coordinate by coordinate of Uᵀ(y − μ):

    x_s = α_s [μ + U diag(√((λ + σ̃_s²)/(λ + σ̃_t²))) Uᵀ (x_t/α_t − μ)].

**A linear field.** ε̂(x, t) = c x / α_t gives dy/dσ̃ = c y, with
y_s = y_t exp(c (σ̃_s − σ̃_t)): no special structure, so every leading error
term of a method is nonzero there.

The measured order is the least-squares slope of log(error) against log(step)
over K = 32, 64, 128, 256 steps (float32: to 128, as at 256 the error nears
the rounding floor K · eps · |x|), where the next term of the error expansion
has decayed (successive halvings change the local slope by < 0.1); it must lie
within 0.3 of the expected order, as must the slope of the last halving. 0.3 is
less than a third of the distance between consecutive orders, so the check
tells order p from p ± 1 on either side. Solves end at t_min, where the network
is defined (the last jump into t = 0 is a fixed first-order step).

Two expected orders differ from ``solver.order``, for reasons derived here:

- Midpoint on Gaussian data: 3. For one coordinate z' = f(σ̃) z with
  f = σ̃/(λ + σ̃²), the midpoint step's local error is
  h³ z (f''/24 + f³/6 + f f'/4) + O(h⁴), and with g = λ + σ̃²,
  f' = (λ − σ̃²)/g², f'' = (2σ̃³ − 6σ̃λ)/g³, that bracket is 0. On the linear
  field the midpoint method shows its order 2.
- DPM-Solver++(3M) on the linear field: 2. Its first step is first order
  (there is no history yet), with local error O(h²), so the global error is
  O(h²) unless x̂_0 is flat in λ where the solve starts, as it is for
  diffusion at t = 1 (the Gaussian case: order 3). With ``warm_start`` its
  first step is DPM-Solver++(2S) (local error O(h³)) and it shows its order 3
  on the linear field too (``3m_warm``).

References: Hairer, Nørsett & Wanner (1993), "Solving ordinary differential
equations I", Sections II.1-II.3 and III.2; Karras et al. (2022); Lu et al. (2022).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from probgen.models.diffusion import (
    ClassifierFreeGuidance,
    ClassifierGuidance,
    DPMSolver2M,
    DPMSolver3M,
    Euler,
    ExactGaussianDenoiser,
    ExactGaussianMixtureDenoiser,
    ForwardProcess,
    Heun,
    KarrasGrid,
    Midpoint,
    ODESolver,
    Prediction,
    ProbabilityFlow,
    TimeGrid,
    UniformGrid,
    VarianceExploding,
    VariancePreserving,
)
from probgen.models.diffusion.parametrizations import Denoiser

MU = (1.0, -0.5)
SIGMA = ((1.0, 0.6), (0.6, 0.8))
STEPS = (32, 64, 128, 256)


def warm_3m(grid: TimeGrid | None = None) -> DPMSolver3M:
    """DPM-Solver++(3M) whose first step is DPM-Solver++(2S): order 3 on every field."""
    return DPMSolver3M(grid, warm_start=True)


SOLVERS = {
    "euler": Euler,
    "heun": Heun,
    "midpoint": Midpoint,
    "2m": DPMSolver2M,
    "3m": DPMSolver3M,
    "3m_warm": warm_3m,
}
GAUSSIAN_ORDER = {"midpoint": 3}  # superconvergence, see the module docstring
LINEAR_ORDER = {"3m": 2}  # the first-order start, see the module docstring


def _t(values) -> Tensor:
    return torch.tensor(values, dtype=torch.get_default_dtype())


def gaussian_flow(process: ForwardProcess, x: Tensor, t: float, s: float) -> Tensor:
    """The exact probability-flow map x_t -> x_s for data N(μ, Σ), in float64:
    x_s = α_s μ + U diag(√(c_s / c_t)) Uᵀ (x_t − α_t μ), c = α² λ + σ² (finite at α_t = 0)."""
    lam, u = torch.linalg.eigh(torch.tensor(SIGMA, dtype=torch.float64))
    mu = torch.tensor(MU, dtype=torch.float64)
    alpha_t, sigma_t = process.alpha_sigma_at(t)
    alpha_s, sigma_s = process.alpha_sigma_at(s)
    scale = ((alpha_s**2 * lam + sigma_s**2) / (alpha_t**2 * lam + sigma_t**2)).sqrt()
    return alpha_s * mu + ((x.double() - alpha_t * mu) @ u * scale) @ u.T


class LinearField(Denoiser):
    """ε̂(x, t) = c x / α_t: the ODE dy/dσ̃ = c y in EDM's variables."""

    c = 0.7

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        alpha = self.process.alpha_sigma_at(float(t))[0]
        return self.from_noise(x, t, x * (self.c / alpha))


def linear_flow(process: ForwardProcess, x: Tensor, t: float, s: float) -> Tensor:
    """The exact solution x_s = (α_s/α_t) x_t exp(c (σ̃_s − σ̃_t)), in float64."""
    alpha_t, sigma_t = process.alpha_sigma_at(t)
    alpha_s, sigma_s = process.alpha_sigma_at(s)
    return (
        x.double()
        * (alpha_s / alpha_t)
        * math.exp(LinearField.c * (sigma_s / alpha_s - sigma_t / alpha_t))
    )


def errors(
    solver: ODESolver, denoiser: Denoiser, exact, grids: list[Tensor], x: Tensor
) -> list[float]:
    """Max |x_K − x(t_end)| over the batch for each grid."""
    out = []
    for times in grids:
        got = solver.solve(denoiser, x, times).samples
        want = exact(denoiser.process, x, float(times[0]), float(times[-1]))
        out.append((got.double() - want).abs().max().item())
    return out


def steps_for(dtype: torch.dtype) -> tuple[int, ...]:
    """K = 32…256; in float32 without 256, where the error nears rounding (K · eps · |x| ~ 1e-4)."""
    return STEPS if dtype == torch.float64 else STEPS[:-1]


def assert_order(errs: list[float], expected: float) -> None:
    """The fitted slope and the last halving's slope lie within 0.3 of ``expected``."""
    steps = STEPS[: len(errs)]
    slope = np.polyfit(np.log([1.0 / k for k in steps]), np.log(errs), 1)[0]
    last = math.log2(errs[-2] / errs[-1])
    assert abs(slope - expected) < 0.3 and abs(last - expected) < 0.3, (slope, last, errs)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_convergence_order_on_gaussian_data(name, theory_dtype):
    """The exact denoiser of N(μ, Σ) on the VP SDE, Karras grid (ρ = 7) from t = 1 to t_min:
    the error against the closed-form flow falls as K^(−p), p the declared order (midpoint:
    3, see the module docstring)."""
    process = VariancePreserving()
    denoiser = ExactGaussianDenoiser(process, _t(MU), _t(SIGMA))
    solver = SOLVERS[name](KarrasGrid())
    x = process.prior_sample((64, 2), torch.Generator().manual_seed(0), like=denoiser.mean)
    grids = [solver.times(process, k, like=x)[:-1] for k in steps_for(theory_dtype)]
    assert all(float(g[-1]) >= process.t_min for g in grids)
    errs = errors(solver, denoiser, gaussian_flow, grids, x)
    assert_order(errs, GAUSSIAN_ORDER.get(name, solver.order))


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_convergence_order_on_a_linear_field(name, theory_dtype):
    """dy/dσ̃ = c y on the VE path (σ from 2 to 0.01), uniform t: the declared order
    (3M: 2, the first-order start; see the module docstring)."""
    process = VarianceExploding(sigma_min=0.01, sigma_max=2.0)
    denoiser = LinearField(process)
    solver = SOLVERS[name](UniformGrid())
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    grids = [torch.linspace(1.0, process.t_min, k + 1) for k in steps_for(theory_dtype)]
    errs = errors(solver, denoiser, linear_flow, grids, x)
    assert_order(errs, LINEAR_ORDER.get(name, solver.order))


class LinearPath(ForwardProcess):
    """α_t = 1 − t, σ_t = t: the rectified-flow path, here only to check the solvers on a
    path with α_1 = 0 (where σ/α and λ are infinite) through the generic interface."""

    def __init__(self) -> None:
        super().__init__(t_min=1e-3)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1 - t, t

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        return 1.0 - t, t


class GaussianPosteriorMean(Denoiser):
    """x̂_0 = E[x_0 | x_t] = μ + α_t Σ C_t⁻¹ (x_t − α_t μ), finite where α_t = 0 (p_1 = N(0, I))."""

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        alpha, sigma = self.process.alpha_sigma_at(float(t))
        mu, cov = _t(MU), _t(SIGMA)
        c_t = alpha**2 * cov + sigma**2 * torch.eye(2)
        return self.from_data(
            x, t, mu + (alpha * (x - alpha * mu)) @ torch.linalg.solve(c_t, cov).T
        )


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_convergence_order_on_a_path_with_no_signal_at_t_1(name, theory_dtype):
    """On α_t = 1 − t, σ_t = t from t = 1 (α = 0) to t_min, uniform t, Gaussian data: the
    first step is Euler's (σ̃ = ∞) and leaves no multistep history; the error against the
    closed-form flow still falls as K^(−order)."""
    process = LinearPath()
    solver = SOLVERS[name]()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(4))
    grids = [torch.linspace(1.0, process.t_min, k + 1) for k in steps_for(theory_dtype)]
    errs = errors(solver, GaussianPosteriorMean(process), gaussian_flow, grids, x)
    assert_order(errs, solver.order)


@pytest.mark.parametrize("name", ["2m", "3m", "3m_warm"])
def test_dpm_solver_agrees_with_an_adaptive_reference_solve_to_its_order(name):
    """DPM-Solver++ against dopri5 at rtol = atol = 1e-10 (torchdiffeq, the PF-ODE in t),
    float64: the reference is within 1e-7 of the closed-form flow, and DPM-Solver++'s
    distance to it falls as K^(−order) (Lu et al. 2022)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        process = VariancePreserving()
        denoiser = ExactGaussianDenoiser(process, _t(MU), _t(SIGMA))
        x = process.prior_sample((64, 2), torch.Generator().manual_seed(2), like=denoiser.mean)
        solver = SOLVERS[name](KarrasGrid())
        grids = [solver.times(process, k, like=x)[:-1] for k in STEPS]
        end = grids[0][-1]
        reference = ProbabilityFlow(rtol=1e-10, atol=1e-10).solve(
            denoiser, x, torch.stack([grids[0][0], end])
        )
        exact = gaussian_flow(process, x, 1.0, float(end))
        assert (reference.samples - exact).abs().max().item() < 1e-7
        errs = errors(solver, denoiser, lambda *_: reference.samples, grids, x)
        assert_order(errs, solver.order)
    finally:
        torch.set_default_dtype(old)


GUIDED_STEPS = 10


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_guidance_runs_through_every_solver(name, theory_dtype, tol):
    """Classifier-free guidance of scale w on exact Gaussian scores with a shared Σ is the
    exact score of N(μ_c + w (μ_c − μ_∅), Σ) (tests/theory/test_guidance.py), and classifier
    guidance of the exact mixture score with the exact p(c | x_t) at scale 1 is the class
    score (Bayes' rule): each solver, from the same x_1, gives the same samples as on that
    exact denoiser, to the pointwise rounding allowance of one evaluation (256 ε) times
    the steps, with two network evaluations per call for CFG."""
    process, w = VariancePreserving(), 1.5
    solver = SOLVERS[name](KarrasGrid())
    classes = [ExactGaussianDenoiser(process, _t(m), _t(SIGMA)) for m in (MU, (-1.0, 0.5))]
    null = ExactGaussianDenoiser(process, _t((0.5, 0.0)), _t(SIGMA))
    tilted = ExactGaussianDenoiser(process, 2.5 * _t(MU) - 1.5 * _t((0.5, 0.0)), _t(SIGMA))
    x = process.prior_sample((256, 2), torch.Generator().manual_seed(3), like=null.mean)

    guided = solver.run(ClassifierFreeGuidance(classes[0], null, w), x, GUIDED_STEPS)
    plain = solver.run(tilted, x, GUIDED_STEPS)
    assert guided.n_evaluations == 2 * plain.n_evaluations
    size = plain.samples.abs().max().item() * (1 + 2 * w)
    allowance = tol(theory_dtype, size, 256 * GUIDED_STEPS)
    torch.testing.assert_close(guided.samples, plain.samples, atol=allowance, rtol=0)

    mixture = ExactGaussianMixtureDenoiser(classes, _t([0.5, 0.5]))
    labels = torch.zeros(len(x), dtype=torch.long)
    classified = solver.run(
        ClassifierGuidance(mixture, mixture.class_log_posterior, labels), x, GUIDED_STEPS
    )
    conditional = solver.run(classes[0], x, GUIDED_STEPS)
    size = conditional.samples.abs().max().item()
    allowance = tol(theory_dtype, size, 256 * GUIDED_STEPS)
    torch.testing.assert_close(classified.samples, conditional.samples, atol=allowance, rtol=0)
