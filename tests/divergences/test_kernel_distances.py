"""MMD and energy distance: unbiasedness against Gaussian closed forms, exact self-distance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.special import ndtr

from probgen.core import InvalidInput
from probgen.divergences import MMD_SCALES, energy_distance, median_bandwidth, mmd

BANDWIDTHS = (0.5, 1.0, 3.0)


def mmd2_gaussians(delta: float, std_p: float, std_q: float, d: int) -> float:
    """MMD² between N(0, σ_p² I) and N(δ e_1, σ_q² I) for the kernel averaged over BANDWIDTHS.

    E exp(−‖Z‖²/(2h²)) = (h²/(h² + s²))^{d/2} exp(−‖μ‖²/(2(h² + s²))) for Z ~ N(μ, s² I).
    """

    def expect(mean_sq: float, var: float, h: float) -> float:
        return (h**2 / (h**2 + var)) ** (d / 2) * math.exp(-mean_sq / (2 * (h**2 + var)))

    return float(
        np.mean(
            [
                expect(0.0, 2 * std_p**2, h)
                + expect(0.0, 2 * std_q**2, h)
                - 2 * expect(delta**2, std_p**2 + std_q**2, h)
                for h in BANDWIDTHS
            ]
        )
    )


def energy_gaussians_1d(delta: float, std_p: float, std_q: float) -> float:
    """2E|X − Y| − E|X − X'| − E|Y − Y'| for N(0, σ_p²), N(δ, σ_q²), from the folded normal."""
    s = math.hypot(std_p, std_q)
    cross = s * math.sqrt(2 / math.pi) * math.exp(-(delta**2) / (2 * s**2)) + delta * (
        1 - 2 * ndtr(-delta / s)
    )
    return 2 * cross - 2 * std_p / math.sqrt(math.pi) - 2 * std_q / math.sqrt(math.pi)


def repeated(statistic, delta: float, std_q: float, d: int, runs: int = 40, n: int = 150):
    """Mean and standard error of ``statistic`` over independent two-sample draws."""
    g = torch.Generator().manual_seed(10)
    shift = torch.zeros(d)
    shift[0] = delta
    values = torch.stack(
        [
            statistic(
                torch.randn(n, d, generator=g), shift + std_q * torch.randn(n + 7, d, generator=g)
            )
            for _ in range(runs)
        ]
    )
    return values.mean().item(), values.std().item() / math.sqrt(runs)


@pytest.mark.parametrize(("delta", "std_q"), [(0.0, 1.0), (1.0, 1.0), (0.0, 1.6)])
def test_mmd_is_unbiased_for_gaussians(delta: float, std_q: float) -> None:
    exact = mmd2_gaussians(delta, 1.0, std_q, d=2)
    mean, stderr = repeated(lambda x, y: mmd(x, y, bandwidths=BANDWIDTHS), delta, std_q, d=2)
    assert abs(mean - exact) < 4 * stderr
    if exact > 1e-9:
        assert mean > 10 * stderr  # clearly positive for different laws


@pytest.mark.parametrize(("delta", "std_q"), [(0.0, 1.0), (1.0, 1.0), (0.5, 2.0)])
def test_energy_distance_is_unbiased_for_gaussians(delta: float, std_q: float) -> None:
    exact = energy_gaussians_1d(delta, 1.0, std_q)
    mean, stderr = repeated(energy_distance, delta, std_q, d=1)
    assert abs(mean - exact) < 4 * stderr
    if exact > 1e-9:
        assert mean > 10 * stderr


def test_distance_of_a_sample_to_itself() -> None:
    """The U-statistics of (x, x) equal −2/N × (1 − mean k) and −2/N × mean distance."""
    x = torch.randn(40, 3)
    n = x.shape[0]
    dist = torch.from_numpy(pdist(x.numpy()))
    kernel = torch.stack([torch.exp(-dist.square() / (2 * h**2)).mean() for h in BANDWIDTHS]).mean()
    self_mmd = mmd(x, x, bandwidths=BANDWIDTHS)
    torch.testing.assert_close(self_mmd, -2.0 / n * (1.0 - kernel))
    assert -2.0 / n <= self_mmd <= 0.0
    torch.testing.assert_close(energy_distance(x, x), -2.0 / n * dist.mean())


def test_median_bandwidth_and_default_scales() -> None:
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(30, 2, generator=g), torch.randn(20, 2, generator=g) + 3.0
    median = float(np.median(pdist(torch.cat([x, y]).numpy())))
    assert median_bandwidth(x, y).item() == pytest.approx(median, rel=1e-12)
    default = mmd(x, y)
    torch.testing.assert_close(default, mmd(x, y, bandwidths=[s * median for s in MMD_SCALES]))
    assert default > 0.0


def test_symmetric_and_image_shaped() -> None:
    x, y = torch.randn(12, 2, 2, 2), torch.randn(9, 2, 2, 2) + 0.3
    torch.testing.assert_close(mmd(x, y), mmd(y, x))
    torch.testing.assert_close(energy_distance(x, y), energy_distance(y, x))
    torch.testing.assert_close(energy_distance(x, y), energy_distance(x.flatten(1), y.flatten(1)))


def test_gradients_are_finite_with_duplicate_points() -> None:
    x = torch.randn(10, 2)
    x = torch.cat([x, x[:3]]).requires_grad_(True)
    y = torch.randn(8, 2)
    (mmd(x, y) + energy_distance(x, y)).backward()
    assert torch.isfinite(x.grad).all()


def test_invalid_inputs() -> None:
    with pytest.raises(InvalidInput, match="at least 2"):
        mmd(torch.randn(1, 2), torch.randn(5, 2))
    with pytest.raises(InvalidInput, match="bandwidths"):
        mmd(torch.randn(4, 2), torch.randn(5, 2), bandwidths=[1.0, -1.0])
    with pytest.raises(InvalidInput, match="y: expected shape"):
        energy_distance(torch.randn(4, 2), torch.randn(5, 3))
