"""Annealed Langevin dynamics against the exact law of its linear-Gaussian recursion."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.core import InvalidInput
from probgen.sampling import AnnealedLangevin, LogDensity, NoiseConditionalScore

MU, S = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.5  # data N(μ, s² I)
SIGMAS = [3.0, 1.5, 0.7, 0.3, 0.1]


def _exact_score() -> NoiseConditionalScore:
    """s(x, σ) = -(x - μ) / (s² + σ²), the score of p_σ = N(μ, (s² + σ²) I)."""
    return NoiseConditionalScore(lambda x, sigma: -(x - MU) / (S**2 + sigma[:, None] ** 2))


def test_final_law_matches_the_exact_recursion() -> None:
    """Song & Ermon (2019), Alg. 1 with α_i = ε σ_i²/σ_L² on Gaussian data.

    Each step x ← x - (α_i/2)(x - μ)/v_i + √α_i η (v_i = s² + σ_i²) is linear, so
    the mean and variance after all L·T steps follow m ← μ + a(m - μ),
    v ← a² v + α_i with a = 1 - α_i/(2 v_i). Tolerance: 4.5 standard errors.
    """
    eps, steps, n = 2e-2, 50, 4000
    sampler = AnnealedLangevin(SIGMAS, eps)
    x0 = 2.0 * torch.randn(n, 2)  # starts N(0, 4 I)
    result = sampler.run(_exact_score(), x0, steps)
    mean, var = torch.zeros(2), torch.full((2,), 4.0)
    for sigma in SIGMAS:
        alpha = eps * sigma**2 / SIGMAS[-1] ** 2
        a = 1 - alpha / (2 * (S**2 + sigma**2))
        for _ in range(steps):
            mean, var = MU + a * (mean - MU), a**2 * var + alpha
    z_mean = (result.samples.mean(0) - mean) / (var / n).sqrt()
    z_var = (result.samples.var(0) - var) / (var * math.sqrt(2 / n))
    assert z_mean.abs().max() < 4.5 and z_var.abs().max() < 4.5
    # ...and the schedule brings the chains close to the data law itself
    assert (mean - MU).abs().max() < 0.05 and (var.sqrt() - S).abs().max() < 0.05
    assert result.n_evaluations == len(SIGMAS) * steps and result.acceptance_rate is None


def test_level_kernels_use_the_song_ermon_step_sizes() -> None:
    sampler = AnnealedLangevin(SIGMAS, 2e-5)
    for i, sigma in enumerate(SIGMAS):
        # noise scale √α_i with α_i = ε σ_i² / σ_L²
        assert math.isclose(sampler.kernel(i).step_size ** 2, 2e-5 * sigma**2 / SIGMAS[-1] ** 2)


def test_trajectory_spans_every_level() -> None:
    result = AnnealedLangevin(SIGMAS, 1e-3).run(
        _exact_score(), torch.zeros(3, 2), 4, record_every=2
    )
    assert result.trajectory.shape == (len(SIGMAS) * 2, 3, 2)
    torch.testing.assert_close(result.trajectory[-1], result.samples)


def test_reproducible_with_a_generator() -> None:
    sampler = AnnealedLangevin(SIGMAS, 1e-3)

    def draw() -> torch.Tensor:
        g = torch.Generator().manual_seed(5)
        return sampler.run(_exact_score(), torch.zeros(4, 2), 3, generator=g).samples

    assert torch.equal(draw(), draw())


@pytest.mark.parametrize("sigmas", [[], [1.0, 2.0], [1.0, 1.0], [1.0, -0.5], [math.nan]])
def test_sigmas_must_be_positive_and_strictly_decreasing(sigmas: list[float]) -> None:
    with pytest.raises(InvalidInput, match="sigmas"):
        AnnealedLangevin(sigmas, 1e-3)


def test_needs_a_noise_conditional_score() -> None:
    with pytest.raises(InvalidInput, match="NoiseConditionalScore"):
        AnnealedLangevin(SIGMAS, 1e-3).run(LogDensity(lambda x: -x.sum(1)), torch.zeros(2, 2), 1)
