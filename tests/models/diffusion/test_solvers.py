"""The ODE solvers' interface, time grids and EDM preconditioning (orders: tests/theory)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.diffusion import (
    DDIM,
    DDPM,
    DDPMChain,
    DPMSolver2M,
    DPMSolver3M,
    EDMPreconditioning,
    Euler,
    ExactGaussianDenoiser,
    Heun,
    History,
    KarrasGrid,
    LogSNRGrid,
    Midpoint,
    Prediction,
    ProbabilityFlow,
    UniformGrid,
    VarianceExploding,
    VariancePreserving,
    noise_ratio,
    sampler_by_name,
    time_at_noise_ratio,
)
from probgen.models.diffusion.parametrizations import Denoiser

PROCESSES = {
    "vp": VariancePreserving,
    "ve": VarianceExploding,
    "ddpm": lambda: DDPMChain.linear(1000),
}


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def gaussian(process) -> ExactGaussianDenoiser:
    return ExactGaussianDenoiser(
        process, torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 0.6], [0.6, 0.8]])
    )


class Calls(Denoiser):
    """Counts the calls of the denoiser it wraps (B rows each)."""

    def __init__(self, inner: Denoiser) -> None:
        super().__init__(inner.process)
        self.inner, self.calls = inner, 0

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        self.calls += 1
        return self.inner(x, t)


@pytest.mark.parametrize(
    ("solver", "expected"),
    [
        (Euler(), 10),
        (Heun(), 19),  # the last step into t = 0 is Euler's
        (DPMSolver2M(), 10),
        (DPMSolver3M(), 10),
        (DPMSolver3M(warm_start=True), 11),  # the 2S first step evaluates at its midpoint
        (Heun(KarrasGrid()), 19),
        (Midpoint(), 20),  # the last stage, at σ̃(0.1)/2, lies above t_min
        (Midpoint(LogSNRGrid()), 19),  # from t_min the stage would lie below it: Euler
    ],
)
def test_solvers_count_their_network_evaluations(solver, expected):
    den = Calls(gaussian(VariancePreserving()))
    result = solver.run(den, torch.randn(8, 2), 10, record_every=5)
    assert result.n_evaluations == den.calls == expected
    assert result.samples.shape == (8, 2) and result.trajectory.shape == (2, 8, 2)


def test_warm_start_is_checked_and_leaves_the_first_order_cases_alone():
    """``warm_start`` must be a bool; a one-step grid (below ``lower_order_final`` its
    only step has order 1) stays DDIM with it."""
    with pytest.raises(InvalidInput, match="warm_start: expected True or False"):
        DPMSolver3M(warm_start=1)
    den = gaussian(VarianceExploding())
    x = 10 * torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(
        DPMSolver3M(warm_start=True).run(den, x, 1).samples, DDIM().run(den, x, 1).samples
    )


def test_euler_and_first_order_dpm_solver_are_ddim():
    """Song et al. (2021) DDIM with η = 0 is Euler in (σ̃, y) (Karras et al. 2022) and
    DPM-Solver++'s first order (Lu et al. 2022): one update, the same numbers."""
    den = gaussian(DDPMChain.linear(1000))
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    ddim = DDIM().run(den, x, 20).samples
    assert torch.equal(Euler().run(den, x, 20).samples, ddim)
    t, s = torch.tensor(0.6), torch.tensor(0.4)
    assert torch.equal(DPMSolver2M().step(den, x, t, s), DDIM().step(den, x, t, s))


def test_lower_order_final_steps():
    """Below ``lower_order_final`` steps, step k has order min(order, k + 1, K − k): on three
    steps both 3M and 2M take orders 1, 2, 1 (the same numbers), on two steps both are DDIM;
    with ``lower_order_final=0`` the last step of 2M is second order (different numbers)."""
    den = gaussian(VarianceExploding())
    x = 10 * torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    three = DPMSolver2M().run(den, x, 3).samples
    assert torch.allclose(DPMSolver3M().run(den, x, 3).samples, three, rtol=0, atol=1e-12)
    assert torch.allclose(
        DPMSolver3M().run(den, x, 2).samples, DDIM().run(den, x, 2).samples, atol=1e-12
    )
    assert not torch.allclose(
        DPMSolver2M(lower_order_final=0).run(den, x, 3).samples, three, atol=1e-6
    )


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_karras_grid_follows_its_formula(name):
    """Karras et al. (2022) eq. (5) in σ̃ = σ/α: t_0 = 1, t_K = 0, and
    σ̃(t_i) = (σ̃_max^{1/ρ} + i/(K−1)(σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ for i < K."""
    process = PROCESSES[name]()
    steps, rho = 12, 7.0
    times = KarrasGrid(rho).__call__(process, steps, like=torch.empty(0))
    assert times.shape == (steps + 1,) and times[0] == 1.0 and times[-1] == 0.0
    assert (times[1:] < times[:-1]).all()
    high, low = noise_ratio(process, 1.0), noise_ratio(process, process.t_min)
    for i in range(steps):
        want = (high ** (1 / rho) + i / (steps - 1) * (low ** (1 / rho) - high ** (1 / rho))) ** rho
        assert noise_ratio(process, float(times[i])) == pytest.approx(want, rel=1e-9)


def test_log_snr_grid_is_uniform_in_lambda_and_uniform_grid_is_the_process_grid():
    process = VariancePreserving()
    times = LogSNRGrid()(process, 8, like=torch.empty(0))
    lam = torch.tensor([-math.log(noise_ratio(process, float(t))) for t in times[:-1]])
    steps = lam[1:] - lam[:-1]
    assert torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-9, atol=0)
    assert times[-1] == 0.0
    chain = DDPMChain.linear(100)
    assert torch.equal(
        UniformGrid()(chain, 7, like=torch.empty(0)), chain.grid(7, like=torch.empty(0))
    )


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_time_at_noise_ratio_inverts_the_ratio(name):
    process = PROCESSES[name]()
    for t in (process.t_min, 0.01, 0.37, 0.9, 1.0):
        ratio = noise_ratio(process, t)
        back = time_at_noise_ratio(process, ratio)
        assert back == pytest.approx(t, abs=1e-12)
        assert noise_ratio(process, back) >= ratio  # never below the requested noise level
    with pytest.raises(InvalidInput, match="noise ratio"):
        time_at_noise_ratio(process, 2 * noise_ratio(process, 1.0))


def test_bad_solver_options_are_named():
    with pytest.raises(InvalidInput, match="grid: expected a TimeGrid"):
        Heun(grid="karras")
    with pytest.raises(InvalidInput, match="rho"):
        KarrasGrid(rho=0.0)
    with pytest.raises(InvalidInput, match="lower_order_final"):
        DPMSolver2M(lower_order_final=-1)
    with pytest.raises(InvalidInput, match="adaptive torchdiffeq method"):
        ProbabilityFlow(method="rk4")
    with pytest.raises(InvalidInput, match="decreasing"):
        Euler().solve(gaussian(VariancePreserving()), torch.zeros(2, 2), torch.tensor([0.2, 0.5]))
    with pytest.raises(InvalidInput, match="History"):
        DPMSolver2M().advance(
            gaussian(VariancePreserving()),
            torch.zeros(2, 2),
            torch.tensor(0.5),
            torch.tensor(0.4),
            None,
            None,
        )
    assert History(steps=3).previous == ()


def test_solvers_are_registered_and_run_from_the_model():
    expected = {
        "euler": Euler,
        "heun": Heun,
        "midpoint": Midpoint,
        "dpm_solver_2m": DPMSolver2M,
        "dpm_solver_3m": DPMSolver3M,
    }
    for name, cls in expected.items():
        assert type(sampler_by_name(name)) is cls
    assert ProbabilityFlow().order == 5 and Heun.order == 2 and DPMSolver3M.order == 3
    model = DDPM((2,), chain_steps=100, sample_steps=10, hidden=(16,))
    for name in expected:
        result = model.run_sampler(4, sampler=name, steps=6)
        assert result.samples.shape == (4, 2) and torch.isfinite(result.samples).all()


class InverseEDM(nn.Module):
    """The network F that makes EDMPreconditioning equal a given denoiser d:
    F(c_in y, c_noise) = (d(x, t).data − c_skip y) / c_out, reading σ̃ = e^{4 c_noise}."""

    def __init__(self, target: Denoiser, sigma_data: float) -> None:
        super().__init__()
        self.target, self.sigma_data = target, sigma_data

    def forward(self, inputs: Tensor, c_noise: Tensor) -> Tensor:
        process = self.target.process
        ratio = (4 * c_noise).exp()  # σ̃ (B,)
        var = ratio.square() + self.sigma_data**2
        y = inputs * var.sqrt()[:, None]  # c_in y / c_in
        t = torch.tensor([time_at_noise_ratio(process, r) for r in ratio.tolist()])
        alpha = process.alpha_sigma(t)[0]
        data = self.target(alpha[:, None] * y, t).data
        c_skip, c_out = self.sigma_data**2 / var, ratio * self.sigma_data / var.sqrt()
        return (data - c_skip[:, None] * y) / c_out[:, None]


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_edm_preconditioning_is_a_reparametrisation(name):
    """Karras et al. (2022) Table 1: D = c_skip y + c_out F(c_in y, c_noise) with y = x/α_t.
    Wrapping the network that inverts it around the exact Gaussian denoiser gives the exact
    x̂_0 back (per-example times and one time for the batch)."""
    process = PROCESSES[name]()
    exact = gaussian(process)
    wrapped = EDMPreconditioning(InverseEDM(exact, 0.5), process, sigma_data=0.5)
    g = torch.Generator().manual_seed(2)
    x, t = 3 * torch.randn(16, 2, generator=g), 0.9 * torch.rand(16, generator=g) + 0.05
    assert torch.allclose(wrapped(x, t).data, exact(x, t).data, rtol=0, atol=1e-9)
    one = torch.tensor(0.3)
    assert torch.allclose(wrapped(x, one).noise, exact(x, one.expand(16)).noise, rtol=0, atol=1e-8)


def test_edm_coefficients_give_unit_variance_inputs_and_targets():
    """Karras et al. (2022) Appendix B.6: for data of variance σ_d², Var[c_in y] = 1 and the
    effective target (x_0 − c_skip y)/c_out, of variance ((1 − c_skip)² σ_d² + c_skip² σ̃²)/c_out²,
    has unit variance, at every σ̃ (to rounding)."""
    sigma_data = 0.7
    edm = EDMPreconditioning(nn.Identity(), VariancePreserving(), sigma_data)
    ratio = torch.logspace(-3, 3, 61)
    c_skip, c_out, c_in, c_noise = edm.coefficients(ratio)
    input_var = c_in.square() * (sigma_data**2 + ratio.square())
    target_var = (
        (1 - c_skip).square() * sigma_data**2 + c_skip.square() * ratio.square()
    ) / c_out.square()
    eps = torch.finfo(torch.float64).eps
    assert torch.allclose(input_var, torch.ones_like(ratio), rtol=0, atol=64 * eps)
    assert torch.allclose(target_var, torch.ones_like(ratio), rtol=0, atol=64 * eps)
    assert torch.allclose(c_noise, 0.25 * ratio.log())
    with pytest.raises(InvalidInput, match="sigma_data"):
        EDMPreconditioning(nn.Identity(), VariancePreserving(), 0.0)
