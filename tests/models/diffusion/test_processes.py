"""Every forward process keeps its promises: SDE coefficients, transitions, tables, grids, prior."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probgen.core import InvalidInput
from probgen.models.diffusion import (
    DDPMChain,
    LinearPath,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
)

PROCESSES = {
    "vp": VariancePreserving,
    "subvp": SubVariancePreserving,
    "ve": VarianceExploding,
    "ddpm_linear": lambda: DDPMChain.linear(200),
    "ddpm_cosine": lambda: DDPMChain.cosine(200),
    "linear": lambda: LinearPath(alpha_end=0.01),
}
ALL = pytest.mark.parametrize("name", sorted(PROCESSES))
WITH_RECTIFIED = pytest.mark.parametrize("name", [*sorted(PROCESSES), "rectified"])


def _process(name: str):
    """A process of ``PROCESSES``, or the rectified-flow path (α_1 = 0), whose SDE is singular
    at t = 1 and so is left out of the SDE checks."""
    return LinearPath() if name == "rectified" else PROCESSES[name]()


@WITH_RECTIFIED
def test_rates_are_the_derivatives_of_the_schedule(name):
    """(α̇, σ̇) = d(α, σ)/dt by central differences (away from the DDPM grid's kinks), and the
    float ``rates_at`` equals the tensor ``rates``."""
    process = _process(name)
    t = torch.tensor([0.1234, 0.4567, 0.7891, 0.9512])
    h = 1e-6
    a_plus, s_plus = process.alpha_sigma(t + h)
    a_minus, s_minus = process.alpha_sigma(t - h)
    d_alpha, d_sigma = process.rates(t)
    assert torch.allclose((a_plus - a_minus) / (2 * h), d_alpha, rtol=1e-6, atol=1e-8)
    assert torch.allclose((s_plus - s_minus) / (2 * h), d_sigma, rtol=1e-6, atol=1e-8)
    for i, time in enumerate(t.tolist()):
        assert process.rates_at(time) == pytest.approx(
            [d_alpha[i].item(), d_sigma[i].item()], rel=1e-10, abs=1e-12
        )


def test_linear_path():
    """Lipman et al. (2023) eq. (20) with σ_min = 0, Liu et al. (2023): α_t = 1 − t, σ_t = t,
    so v = ε − x_0 and p_1 = N(0, I) exactly; its SDE is singular at t = 1 and says so."""
    path = LinearPath()
    t = torch.tensor([0.0, 0.25, 1.0])
    alpha, sigma = path.alpha_sigma(t)
    assert torch.equal(alpha, 1 - t) and torch.equal(sigma, t)
    assert path.prior_std() == 1.0
    x0, eps = torch.randn(3, 2), torch.randn(3, 2)
    d_alpha, d_sigma = path.rates(t)
    assert torch.equal(d_alpha[:, None] * x0 + d_sigma[:, None] * eps, eps - x0)
    with pytest.raises(InvalidInput, match="singular at t = 1"):
        path.drift_diffusion_at(1.0)
    assert path.drift_diffusion_at(0.5) == pytest.approx((-2.0, 2.0))  # f = −1/(1−t), g² = 2t/(1−t)
    with pytest.raises(InvalidInput, match="alpha_end"):
        LinearPath(alpha_end=1.0)


@ALL
def test_drift_and_diffusion_reproduce_the_marginal(name):
    """dα/dt = f α and dσ²/dt = 2 f σ² + g² (the moment ODEs of dx = f x dt + g dW), by central
    differences away from the DDPM grid's kinks."""
    process = PROCESSES[name]()
    t = torch.tensor([0.1234, 0.4567, 0.7891, 0.9512])
    h = 1e-6
    a_plus, s_plus = process.alpha_sigma(t + h)
    a_minus, s_minus = process.alpha_sigma(t - h)
    alpha, sigma = process.alpha_sigma(t)
    f, g2 = process.drift_diffusion(t)
    assert torch.allclose((a_plus - a_minus) / (2 * h), f * alpha, rtol=1e-5, atol=1e-8)
    d_var = (s_plus**2 - s_minus**2) / (2 * h)
    assert torch.allclose(d_var, 2 * f * sigma**2 + g2, rtol=1e-5, atol=1e-8)
    assert (g2 > 0).all()


def test_song_et_al_coefficients():
    """Song et al. (2021) eq. (9), (11), (13): VE g² = d σ²/dt; VP f = −β/2, g² = β;
    sub-VP g² = β (1 − e^{−2∫β})."""
    t = torch.linspace(0.01, 1.0, 7)
    vp, subvp, ve = VariancePreserving(), SubVariancePreserving(), VarianceExploding()
    beta = vp.beta_min + t * (vp.beta_max - vp.beta_min)
    f, g2 = vp.drift_diffusion(t)
    assert torch.allclose(f, -0.5 * beta) and torch.allclose(g2, beta)
    f, g2 = subvp.drift_diffusion(t)
    assert torch.allclose(f, -0.5 * beta)
    assert torch.allclose(g2, beta * (1 - torch.exp(-2 * vp.integral(t))))
    f, g2 = ve.drift_diffusion(t)
    sigma = ve.sigma_min * (ve.sigma_max / ve.sigma_min) ** t
    assert torch.allclose(f, torch.zeros_like(t))
    assert torch.allclose(g2, 2 * sigma**2 * math.log(ve.sigma_max / ve.sigma_min))


def test_ddpm_tables_and_consecutive_transitions():
    """ᾱ_n = Π (1 − β_i); q(x_n | x_{n-1}) = N(√(1 − β_n) x, β_n I) on consecutive grid times."""
    chain = DDPMChain.linear(50, 1e-3, 0.2)
    betas = torch.linspace(1e-3, 0.2, 50, dtype=torch.float64)
    assert torch.allclose(chain.log_alpha_bar[1:].exp(), torch.cumprod(1 - betas, 0))
    n = torch.arange(1, 51)
    ratio, std = chain.transition(n / 50, (n - 1) / 50)
    assert torch.allclose(ratio, (1 - betas).sqrt()) and torch.allclose(std, betas.sqrt())
    assert chain.betas.dtype == torch.get_default_dtype()


def test_cosine_schedule():
    """Nichol & Dhariwal (2021) eq. (17): ᾱ_n = h(n/N)/h(0) while β_n ≤ 0.999."""
    chain = DDPMChain.cosine(100)
    u = torch.arange(101) / 100
    h = torch.cos(0.5 * math.pi * (u + 0.008) / 1.008) ** 2
    expected = (h / h[0])[1:-1]  # the last β is clipped to 0.999
    assert torch.allclose(chain.log_alpha_bar[1:-1].exp(), expected, rtol=1e-10)
    assert chain.betas.max() <= 0.999


@settings(max_examples=25, deadline=None)
@given(
    st.floats(0.0, 0.98),
    st.floats(0.005, 0.5),
    st.floats(0.005, 0.5),
    st.sampled_from(sorted(PROCESSES)),
)
def test_transitions_compose(r, gap1, gap2, name):
    """q(x_t|x_r) = ∫ q(x_t|x_s) q(x_s|x_r) dx_s: α_{t|r} = α_{t|s} α_{s|r} and
    σ_{t|r}² = α_{t|s}² σ_{s|r}² + σ_{t|s}² for any r < s < t."""
    process = PROCESSES[name]()
    s, t = min(r + gap1, 0.99), min(r + gap1 + gap2, 1.0)
    if not r < s < t:
        return
    rr, ss, tt = (torch.tensor([v]) for v in (r, s, t))
    a_tr, s_tr = process.transition(tt, rr)
    a_ts, s_ts = process.transition(tt, ss)
    a_sr, s_sr = process.transition(ss, rr)
    assert torch.allclose(a_tr, a_ts * a_sr, rtol=1e-10)
    assert torch.allclose(s_tr**2, a_ts**2 * s_sr**2 + s_ts**2, rtol=1e-8, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.sampled_from(sorted(PROCESSES)))
def test_float_coefficients_match_the_tensor_ones(u, v, name):
    """The samplers' per-step Python floats (α_t, σ_t), (f, g²) and the posterior's
    (c_t, c_0, σ̃) equal ``alpha_sigma``, ``drift_diffusion`` and ``posterior`` at the same times."""
    process = PROCESSES[name]()
    s, t = sorted((u, v))
    t = max(t, s + 1e-3, process.t_min)
    tt, ss = torch.tensor(t), torch.tensor(s)
    assert process.alpha_sigma_at(t) == pytest.approx(
        [c.item() for c in process.alpha_sigma(tt)], rel=1e-12, abs=1e-14
    )
    assert process.drift_diffusion_at(t) == pytest.approx(
        [c.item() for c in process.drift_diffusion(tt)], rel=1e-10, abs=1e-12
    )
    x_t, x0 = torch.tensor([[0.7, -1.3]]), torch.tensor([[0.2, 0.5]])
    mean, std = process.posterior(x_t, x0, tt, ss)
    c_t, c_0, std_float = process.posterior_coefficients(t, s)
    assert torch.allclose(mean, c_t * x_t + c_0 * x0, rtol=1e-10, atol=1e-12)
    assert std_float == pytest.approx(std.item(), rel=1e-10, abs=1e-14)


def test_ddpm_float_tables_follow_a_loaded_state():
    """The float copies of log ᾱ are refreshed when a state dict is loaded."""
    chain, other = DDPMChain.linear(100), DDPMChain.cosine(100)
    chain.load_state_dict(other.state_dict())
    assert chain.alpha_sigma_at(0.37) == pytest.approx(other.alpha_sigma_at(0.37), rel=1e-12)


@WITH_RECTIFIED
def test_grids_times_and_prior(name):
    """Grids run from 1 to 0; training times lie in [t_min, 1]; the prior is N(0, prior_std² I)."""
    process = _process(name)
    like = torch.zeros(())
    grid = process.grid(20, like=like)
    assert grid[0] == 1 and grid[-1] == 0 and (grid.diff() < 0).all() and len(grid) == 21
    t = process.sample_times(1000, torch.Generator().manual_seed(0), like=like)
    assert t.min() >= process.t_min - 1e-12 and t.max() <= 1
    x = process.prior_sample((5000, 3), torch.Generator().manual_seed(1), like=like)
    std = process.prior_std()
    assert abs(x.std().item() / std - 1) < 0.03
    normal = torch.distributions.Normal(0.0, std)
    assert torch.allclose(process.prior_log_prob(x[:4]), normal.log_prob(x[:4]).sum(-1))


@pytest.mark.parametrize("power", [1.0, 2.0, 3.0])
def test_training_times_follow_the_power_law(power):
    """t = t_min + (1 − t_min) u^k has P(t ≤ t_min + s (1 − t_min)) = s^{1/k}: the Kolmogorov–
    Smirnov test accepts that law (p > 0.001) and rejects the law of the neighbouring powers."""
    process = LinearPath(t_min=0.01)
    t = process.sample_times(
        4000, torch.Generator().manual_seed(3), like=torch.zeros(()), power=power
    )
    s = ((t.double() - process.t_min) / (1.0 - process.t_min)).numpy()
    assert t.min() >= process.t_min and t.max() <= 1
    assert scipy.stats.kstest(s, lambda v: v ** (1.0 / power)).pvalue > 1e-3
    for other in (power - 0.5, power + 0.5):
        assert scipy.stats.kstest(s, lambda v, k=other: v ** (1.0 / k)).pvalue < 1e-6


def test_ddpm_grid_lies_on_the_chain_and_rejects_too_many_steps():
    chain = DDPMChain.linear(100)
    grid = chain.grid(7, like=torch.zeros(()))
    assert torch.allclose(grid * 100, (grid * 100).round())
    assert len(chain.grid(100, like=torch.zeros(()))) == 101
    with pytest.raises(InvalidInput, match=r"steps: expected an integer in \[1, 100\]"):
        chain.grid(101, like=torch.zeros(()))
    times = chain.sample_times(500, like=torch.zeros(()))
    assert torch.allclose(times * 100, (times * 100).round()) and times.min() >= 0.01
    with pytest.raises(InvalidInput, match="samples its N grid times uniformly"):
        chain.sample_times(500, like=torch.zeros(()), power=2.0)


def test_invalid_processes_are_rejected():
    with pytest.raises(InvalidInput):
        VariancePreserving(beta_min=0.0)
    with pytest.raises(InvalidInput):
        VarianceExploding(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(InvalidInput):
        DDPMChain(torch.tensor([0.1, 1.5]))
