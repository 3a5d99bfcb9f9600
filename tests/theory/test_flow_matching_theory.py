"""Flow-matching identities on Gaussian data N(μ, Σ), where every marginal quantity is exact.

Under x_t = α_t x_0 + σ_t ε with x_0 ~ N(μ, Σ), p_t = N(α_t μ, C_t), C_t = α_t² Σ + σ_t² I,
and with r = x − α_t μ (Song et al. 2021; Lipman et al. 2023, Theorem 3):

    score     −C_t⁻¹ r                       data      μ + α_t Σ C_t⁻¹ r
    noise     σ_t C_t⁻¹ r                    velocity  α̇_t μ + ½ Ċ_t C_t⁻¹ r,

the last being v*(x, t) = E[α̇_t x_0 + σ̇_t ε | x_t = x], the minimiser of flow
matching. Ground truths are computed in float64 with NumPy; the library runs in
float64 and in float32 (``theory_dtype``) with rounding allowances from the
dtype's epsilon (``tol``), solver allowances from the solver's tolerance and
Monte Carlo allowances of 4 standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from probgen.models.diffusion import (
    DDPMChain,
    ExactGaussianDenoiser,
    FlowMatching,
    FlowMatchingModel,
    ForwardProcess,
    LinearPath,
    OTCoupling,
    Prediction,
    ProbabilityFlow,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
    ode_log_likelihood,
    reflow,
    straightness,
)
from probgen.models.diffusion.parametrizations import Denoiser
from probgen.tensors import sum_events

MU = np.array([1.0, -0.5])
SIGMA = np.array([[1.0, 0.6], [0.6, 0.8]])

PATHS = {
    "linear": lambda: LinearPath(),
    "linear_end": lambda: LinearPath(alpha_end=0.05),
    "vp": lambda: VariancePreserving(),
    "subvp": lambda: SubVariancePreserving(),
    "ve": lambda: VarianceExploding(sigma_max=20.0),
    "ddpm": lambda: DDPMChain.linear(1000),
}


def gaussian(process: ForwardProcess) -> ExactGaussianDenoiser:
    dtype = torch.get_default_dtype()
    return ExactGaussianDenoiser(
        process, torch.tensor(MU, dtype=dtype), torch.tensor(SIGMA, dtype=dtype)
    )


def closed_forms(
    x: np.ndarray, alpha: float, sigma: float, d_alpha: float, d_sigma: float
) -> dict[str, np.ndarray]:
    """Score, data, noise and velocity of p_t at x (B, 2), float64."""
    cov = alpha**2 * SIGMA + sigma**2 * np.eye(2)
    solved = np.linalg.solve(cov, (x - alpha * MU).T).T  # C⁻¹ r (B, 2)
    d_cov = 2 * alpha * d_alpha * SIGMA + 2 * sigma * d_sigma * np.eye(2)
    return {
        "score": -solved,
        "data": MU + alpha * solved @ SIGMA,
        "noise": sigma * solved,
        "velocity": d_alpha * MU + 0.5 * solved @ d_cov,
    }


def points(n: int, seed: int, scale: float = 1.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, 2, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("kind", Prediction.KINDS)
@pytest.mark.parametrize("name", sorted(PATHS))
def test_every_prediction_converts_exactly(name, kind, theory_dtype, tol):
    """Built from any one of score, data, noise and velocity (the exact ones), a ``Prediction``
    returns the other three of the closed form, with one time for the batch (float
    coefficients) and per-example times (tensor coefficients). The allowance is 64 roundings
    of the largest magnitude involved, amplified by the conversion's condition number
    κ = (1 + |α| + |σ|)(1 + |α̇| + |σ̇|) / min(α, σ, Δ), Δ = α σ̇ − σ α̇."""
    process = PATHS[name]()
    times = [0.05, 0.3, 0.7, 0.98]
    if name == "linear" and kind in ("data", "velocity"):
        times.append(1.0)  # α_1 = 0: regular for data and velocity predictions
    for t in times:
        alpha, sigma = process.alpha_sigma_at(t)
        d_alpha, d_sigma = process.rates_at(t)
        x64 = points(6, 1, scale=math.hypot(alpha, sigma) * 1.5)
        x = x64.to(theory_dtype)
        truth = closed_forms(x.double().numpy(), alpha, sigma, d_alpha, d_sigma)
        delta = alpha * d_sigma - sigma * d_alpha
        floor = min(v for v in (alpha, sigma, delta) if v > 0)
        kappa = (1 + abs(alpha) + abs(sigma)) * (1 + abs(d_alpha) + abs(d_sigma)) / floor
        size = max(np.abs(v).max() for v in (*truth.values(), x64.numpy()))
        allowance = tol(theory_dtype, size * kappa)
        given = torch.tensor(truth[kind], dtype=theory_dtype)
        b = torch.full((6, 1), t, dtype=theory_dtype)
        tensors = [c.reshape(1, 1).expand(6, 1) for c in process.alpha_sigma(b[:1, 0])]
        rates = [c.reshape(1, 1).expand(6, 1) for c in process.rates(b[:1, 0])]
        for coefficients in (
            {"alpha": alpha, "sigma": sigma, "d_alpha": d_alpha, "d_sigma": d_sigma},
            dict(zip(("alpha", "sigma", "d_alpha", "d_sigma"), (*tensors, *rates), strict=True)),
        ):
            pred = Prediction(x, **coefficients, **{kind: given})
            for other in Prediction.KINDS:
                error = np.abs(getattr(pred, other).double().numpy() - truth[other]).max()
                assert error <= allowance, (t, other, error, allowance)


@pytest.mark.parametrize("name", ["linear", "vp", "ddpm"])
def test_exact_denoiser_velocity_is_the_marginal_velocity(name, theory_dtype, tol):
    """The exact Gaussian denoiser's velocity (from its score through the conversions and the
    process's rates) is α̇ μ + ½ Ċ C⁻¹ r at per-example times, and the probability-flow
    velocity f x − ½ g² ŝ (Song et al. 2021, eq. (13)) of the same score."""
    process = PATHS[name]()
    denoiser = gaussian(process)
    t = torch.tensor([0.02, 0.2, 0.5, 0.8, 0.95, 0.999], dtype=theory_dtype)
    x = points(6, 2).to(theory_dtype)
    pred = denoiser(x, t)
    for i, time in enumerate(t.tolist()):
        alpha, sigma = process.alpha_sigma_at(time)
        truth = closed_forms(x[i : i + 1].double().numpy(), alpha, sigma, *process.rates_at(time))
        size = max(np.abs(v).max() for v in truth.values())
        kappa = 1 + max(abs(c) for c in process.rates_at(time)) / min(alpha, sigma)
        error = np.abs(pred.velocity[i].double().numpy() - truth["velocity"]).max()
        assert error <= tol(theory_dtype, size * kappa, 256), (time, error)
        if name != "linear" or time < 1.0:
            f, g2 = process.drift_diffusion_at(time)
            pf = f * x[i] - 0.5 * g2 * pred.score[i]
            assert (pf - pred.velocity[i]).abs().max() <= tol(theory_dtype, size * kappa, 256)


class _PerturbedVelocity(Denoiser):
    """v* + δ (a x + b), recording E‖v − v*‖² = δ² ‖a x + b‖² of the batch it is called on."""

    def __init__(self, exact: ExactGaussianDenoiser, delta: float, a: float, b: Tensor) -> None:
        super().__init__(exact.process)
        self.exact, self.delta, self.a, self.b = exact, delta, a, b
        self.gap: Tensor | None = None

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        shift = self.delta * (self.a * x + self.b)
        self.gap = sum_events(shift.square())
        return self.from_velocity(x, t, self.exact(x, t).velocity + shift)


def _fm_minimum(
    process: ForwardProcess, eigenvalues: np.ndarray, power: float = 1.0, n: int = 200_001
) -> float:
    """E_t tr Cov(α̇ x_0 + σ̇ ε | x_t) = E_t Σ_i Δ_t² λ_i / (α_t² λ_i + σ_t²) for
    t = t_min + (1 − t_min) u^k, u ~ U[0, 1], k = ``power``: the trapezoid rule in u, float64."""
    u = np.linspace(0.0, 1.0, n)
    times = process.t_min + (1.0 - process.t_min) * u**power
    values = np.empty(n)
    for k, t in enumerate(times):
        alpha, sigma = process.alpha_sigma_at(float(t))
        d_alpha, d_sigma = process.rates_at(float(t))
        delta = alpha * d_sigma - sigma * d_alpha
        values[k] = (delta**2 * eigenvalues / (alpha**2 * eigenvalues + sigma**2)).sum()
    return float(np.trapezoid(values, u))


@pytest.mark.parametrize(("name", "power"), [("linear", 1.0), ("linear_end", 1.0), ("linear", 2.5)])
def test_flow_matching_is_minimised_by_the_marginal_velocity(name, power, theory_dtype):
    """Lipman et al. (2023), Theorem 2: J(v) = E ‖v(x_t, t) − (α̇ x_0 + σ̇ ε)‖² has minimiser
    v* = E[α̇ x_0 + σ̇ ε | x_t] and minimum E_t Σ_i Δ² λ_i/(α² λ_i + σ²), and for any v,
    J(v) − J(v*) = E ‖v − v*‖² (the cross term has mean zero). Same draws for every candidate;
    both checks two-sided within 4 standard errors. The same holds for any time law with a
    positive density (``time_power`` k: Beta(1/k, 1) times), with the minimum under that law."""
    exact = gaussian(PATHS[name]())
    objective = FlowMatching(time_power=power)
    n = 40_000
    chol = torch.linalg.cholesky(exact.covariance)
    g = torch.Generator().manual_seed(6)
    x0 = exact.mean + torch.randn(n, 2, generator=g) @ chol.T

    def loss(denoiser: Denoiser) -> Tensor:
        return objective(denoiser, x0, torch.Generator().manual_seed(7)).double()

    best = loss(exact)
    expected = _fm_minimum(exact.process, np.linalg.eigvalsh(SIGMA), power)
    assert abs(best.mean().item() - expected) < 4 * best.std().item() / math.sqrt(n)
    for delta, a, b in ((0.1, 0.0, (1.0, 0.0)), (0.2, 1.0, (0.0, 0.0)), (-0.1, 0.5, (0.0, 1.0))):
        worse = _PerturbedVelocity(exact, delta, a, torch.tensor(b))
        difference = loss(worse) - best
        residual = difference - worse.gap.double()
        assert abs(residual.mean().item()) < 4 * residual.std().item() / math.sqrt(n)
        assert difference.mean() > 4 * difference.std() / math.sqrt(n)  # a real gap


def _solver_tolerance(dtype: torch.dtype) -> float:
    """rtol = atol of the adaptive solves: 1e-8 in float64, 100 ε (about 1e-5) in float32."""
    return max(1e-8, 100 * torch.finfo(dtype).eps)


def test_the_flow_transports_the_prior_to_the_data(theory_dtype):
    """The ODE dx/dt = v*(x, t) from t = 1 to 0 on the linear path is an affine map T carrying
    N(0, I) = p_1 to N(μ, Σ) = p_0: T(0) = μ and M Mᵀ = Σ for M = [T(e_i) − T(0)], with a
    solver allowance of 100 × its tolerance."""
    denoiser = gaussian(LinearPath())
    rtol = _solver_tolerance(theory_dtype)
    start = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=theory_dtype)
    end = ProbabilityFlow(rtol=rtol, atol=rtol).run(denoiser, start, 1).samples.double()
    mean, columns = end[0], (end[1:] - end[0]).T
    allowance = 100 * rtol * 3
    assert np.abs(mean.numpy() - MU).max() < allowance
    assert np.abs((columns @ columns.T).numpy() - SIGMA).max() < allowance


def test_ode_likelihood_is_the_gaussian_log_density(theory_dtype):
    """Instantaneous change of variables on the linear path with the exact velocity: log p_{t_min}
    by the ODE with the exact divergence equals log N(x; α μ, α² Σ + σ² I) at t_min, with the
    default prior N(0, I) (exact here: α_1 = 0), within 100 × the solver tolerance per nat;
    and log N(x; μ, Σ) within the t_min smoothing (1e-3)."""
    denoiser = gaussian(LinearPath())
    rtol = _solver_tolerance(theory_dtype)
    x = (torch.tensor(MU) + points(32, 4) @ torch.linalg.cholesky(torch.tensor(SIGMA)).T).to(
        theory_dtype
    )
    log_p = ode_log_likelihood(denoiser, x, rtol=rtol, atol=rtol).double()
    t_min = torch.full((32,), denoiser.process.t_min, dtype=theory_dtype)
    exact = denoiser.log_prob(x, t_min).double()
    assert (log_p - exact).abs().max() < 100 * rtol * (1 + exact.abs().max())
    data = torch.distributions.MultivariateNormal(torch.tensor(MU), torch.tensor(SIGMA))
    assert (log_p - data.log_prob(x.double())).abs().max() < 1e-3


def test_gradient_through_the_likelihood_solve(theory_dtype):
    """``grad=True`` differentiates the solve: ∇_μ Σ_b log p_{t_min}(x_b) = α Σ_b C⁻¹(x_b − α μ)
    and ∇_x log p_{t_min}(x) = −C⁻¹(x − α μ) at t_min (closed forms), within 1000 × the
    solver tolerance relative to the gradient's size."""
    denoiser = gaussian(LinearPath())
    denoiser.mean = nn.Parameter(denoiser.mean.clone())
    rtol = _solver_tolerance(theory_dtype)
    x = (torch.tensor(MU) + points(8, 5)).to(theory_dtype).requires_grad_(True)
    log_p = ode_log_likelihood(denoiser, x, rtol=rtol, atol=rtol, grad=True)
    log_p.sum().backward()
    alpha, sigma = denoiser.process.alpha_sigma_at(denoiser.process.t_min)
    cov = alpha**2 * SIGMA + sigma**2 * np.eye(2)
    solved = np.linalg.solve(cov, (x.detach().double().numpy() - alpha * MU).T).T
    expected_mean, expected_x = alpha * solved.sum(0), -solved
    for got, expected in ((denoiser.mean.grad, expected_mean), (x.grad, expected_x)):
        allowance = 1000 * rtol * (1 + np.abs(expected).max())
        assert np.abs(got.double().numpy() - expected).max() < allowance
    no_graph = ode_log_likelihood(denoiser, x.detach(), rtol=rtol, atol=rtol)
    assert not no_graph.requires_grad


def test_straightness_of_the_exact_flow_matches_its_closed_form(theory_dtype):
    """Liu et al. (2023), eq. (5): along the exact linear-path flow Z_t = α_t μ + U diag(s_t) Uᵀ z,
    s_t = √(α_t² λ + σ_t²), the straightness E_z ∫ ‖(Z_1 − Z_0) − v(Z_t, t)‖² dt is
    Σ_i ∫ (1 − √λ_i − ṡ_i)² dt; quadratic in z, so its mean is the sum over the eigenvector
    starts z = U e_i (deterministic). ``straightness`` with 400 Euler steps is within the
    O(1/K) discretisation allowance 2/K of it (relative)."""
    denoiser = gaussian(LinearPath())
    eigenvalues, vectors = np.linalg.eigh(SIGMA)
    t = np.linspace(0.0, 1.0, 200_001)
    expected = 0.0
    for lam in eigenvalues:
        s = np.sqrt((1 - t) ** 2 * lam + t**2)
        rate = (t - (1 - t) * lam) / s
        expected += np.trapezoid((1 - math.sqrt(lam) - rate) ** 2, t)
    starts = torch.tensor(vectors.T, dtype=theory_dtype)  # rows U e_i
    steps = 400
    measured = straightness(denoiser, starts, steps).double().sum().item()
    assert expected > 0.01  # the Gaussian flow is curved unless Σ = I
    assert abs(measured - expected) < 2 / steps * expected


def _bimodal(n: int, g: torch.Generator) -> Tensor:
    """Two Gaussians at (±2, 0) with std 0.3: trajectories of the independent coupling cross."""
    side = torch.randint(0, 2, (n, 1), generator=g) * 2.0 - 1.0
    return torch.cat([2.0 * side, torch.zeros(n, 1)], 1) + 0.3 * torch.randn(n, 2, generator=g)


def _trained(coupling: str, steps: int, seed: int) -> FlowMatchingModel:
    torch.manual_seed(seed)
    model = FlowMatchingModel((2,), coupling=coupling, hidden=(32, 32))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model.loss(_bimodal(128, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_ot_coupling_and_reflow_straighten_the_learned_flow():
    """Tong et al. (2024), Pooladian et al. (2023): a minibatch OT coupling makes the learned
    flow straighter than the independent one; Liu et al. (2023), Theorem 3.6: reflow on the
    model's own (ODE(ε), ε) pairs straightens it further. Measured on small trained models of
    a bimodal law (float32, 1000 trajectories); each decrease must exceed 4 standard errors of
    the paired difference."""
    torch.set_default_dtype(torch.float32)
    independent, ot = _trained("independent", 100, 0), _trained("ot", 100, 0)
    z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    s_ind = straightness(independent.denoiser, z, 20)
    s_ot = straightness(ot.denoiser, z, 20)
    flowed = reflow(
        independent,
        pairs=1000,
        train_steps=100,
        lr=3e-3,
        generator=torch.Generator().manual_seed(2),
    )
    s_reflow = straightness(flowed.denoiser, z, 20)
    for better in (s_ot, s_reflow):
        difference = (s_ind - better).double()
        assert difference.mean() > 4 * difference.std() / math.sqrt(len(z)), (
            s_ind.mean(),
            better.mean(),
        )


def test_ot_coupling_is_the_optimal_assignment():
    """POT's network simplex (``ot.emd``) returns the permutation of least total cost
    Σ ‖x_i − ε_σ(i)‖², the optimum of SciPy's Hungarian ``linear_sum_assignment`` (exact)."""
    from scipy.optimize import linear_sum_assignment

    g = torch.Generator().manual_seed(3)
    x, eps = torch.randn(64, 2, generator=g) + 2.0, torch.randn(64, 2, generator=g)
    j = OTCoupling()(x, eps)
    assert sorted(j.tolist()) == list(range(64))
    cost = torch.cdist(x, eps).square().numpy()
    rows, cols = linear_sum_assignment(cost)
    optimum = cost[rows, cols].sum()
    assert cost[np.arange(64), j.numpy()].sum() == pytest.approx(optimum, rel=1e-12)
