"""Mode-collapse metrics: ideal scores on exact samples, monotone under dropped modes and noise."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2

from probgen.core import InvalidInput
from probgen.distributions import GaussianMixture
from probgen.distributions.shapes import EightGaussians, TwentyFiveGaussians
from probgen.evaluate.modes import assign_modes, mode_metrics, mode_metrics_for

N = 2500  # the PacGAN protocol's sample size
HQ_2D = 1.0 - math.exp(-4.5)  # P(‖ε‖ < 3) for ε ~ N(0, I_2): the Rayleigh CDF at 3


def ring() -> GaussianMixture:
    return EightGaussians(radius=1.0, std=0.01)


def grid() -> GaussianMixture:
    return TwentyFiveGaussians(spacing=2.0, std=0.05)


@pytest.mark.parametrize("make", [ring, grid], ids=["ring", "grid"])
def test_exact_samples_score_ideally(make) -> None:
    """Exact mixture samples: every mode covered, HQ fraction 1 − e^{−9/2}, small reverse KL.

    The HQ count is Binomial(N, 1 − e^{−9/2}) (modes are > 70σ apart, so the
    nearest mode is the drawing one): within 4 binomial standard errors. The
    G-statistic 2 N_hq KL(q̂ ‖ π) is asymptotically χ²_{K−1}: below its 0.9999 quantile.
    """
    mixture = make()
    x = mixture.sample(N, generator=torch.Generator().manual_seed(0))
    report = mode_metrics_for(mixture, x)
    k = len(mixture.means)
    assert report.modes_covered == report.n_modes == k
    assert abs(report.high_quality - HQ_2D) < 4 * math.sqrt(HQ_2D * (1 - HQ_2D) / N)
    n_hq = int(report.counts.sum())
    assert n_hq == round(report.high_quality * N)
    assert 0 <= 2 * n_hq * report.reverse_kl < chi2.ppf(0.9999, k - 1)


def test_assignment_is_the_drawing_component() -> None:
    """On the PacGAN grid, the nearest mode of each exact sample is the component that drew it."""
    mixture = grid()
    x, k = mixture.sample_with_components(N, generator=torch.Generator().manual_seed(1))
    nearest, dist = assign_modes(x, mixture.means, mixture.component_stds)
    assert torch.equal(nearest, k)
    torch.testing.assert_close(dist, (x - mixture.means[k]).norm(dim=1) / 0.05)


@pytest.mark.parametrize("make", [ring, grid], ids=["ring", "grid"])
def test_dropping_modes_worsens_every_figure(make) -> None:
    """Keeping m of K equal modes: coverage = m, reverse KL ≈ ln(K/m), strictly rising as m falls.

    Samples of the kept modes are equal-weight exact draws, so q̂ is close to
    uniform on m modes: KL(q̂ ‖ π) = ln(K/m) + KL(q̂ ‖ uniform_m), the second term
    below χ²_{m−1, 0.9999} / (2 N_hq).
    """
    mixture = make()
    k = len(mixture.means)
    x, comp = mixture.sample_with_components(4 * N, generator=torch.Generator().manual_seed(2))
    previous = -1.0
    for m in range(k, 0, -1):
        kept = x[comp < m][:N]
        report = mode_metrics_for(mixture, kept)
        n_hq = int(report.counts.sum())
        excess = report.reverse_kl - math.log(k / m)
        assert report.modes_covered == m
        assert -1e-12 <= excess < chi2.ppf(0.9999, max(m - 1, 1)) / (2 * n_hq)
        assert report.reverse_kl > previous
        previous = report.reverse_kl


@pytest.mark.parametrize("make", [ring, grid], ids=["ring", "grid"])
def test_noise_lowers_the_high_quality_fraction(make) -> None:
    """Adding N(0, s² I) noise: HQ fraction = 1 − exp(−9σ²/(2(σ² + s²))), falling with s.

    Each sample is then N(μ_k, (σ² + s²) I) around its own mode; the expected HQ
    fraction follows from the Rayleigh CDF, matched within 4 binomial standard
    errors, and the fractions fall strictly as s grows (s/σ = 0, ½, 1, 2, 4).
    """
    mixture = make()
    sigma = float(mixture.component_stds[0])
    g = torch.Generator().manual_seed(3)
    x = mixture.sample(N, generator=g)
    eps = torch.randn(N, 2, generator=g)
    fractions = []
    for ratio in (0.0, 0.5, 1.0, 2.0, 4.0):
        s = ratio * sigma
        expected = 1.0 - math.exp(-9.0 * sigma**2 / (2.0 * (sigma**2 + s**2)))
        hq = mode_metrics_for(mixture, x + s * eps).high_quality
        assert abs(hq - expected) < 4 * math.sqrt(expected * (1 - expected) / N) + 1e-12
        fractions.append(hq)
    assert all(a > b for a, b in itertools.pairwise(fractions))


@settings(max_examples=20, deadline=None)
@given(
    counts=st.lists(st.integers(0, 30), min_size=8, max_size=8).filter(lambda c: sum(c) > 0),
    min_count=st.integers(1, 5),
)
def test_histogram_properties(counts: list[int], min_count: int) -> None:
    """Points placed on the modes: coverage, HQ = 1 and KL(q̂ ‖ π) = Σ q̂ ln(q̂/π) exactly.

    Also: the figures do not depend on the order of the samples, and the reverse
    KL is 0 exactly when q̂ = π.
    """
    torch.set_default_dtype(torch.float64)
    mixture = ring()
    c = torch.tensor(counts)
    x = mixture.means.repeat_interleave(c, dim=0)
    weights = torch.arange(1.0, 9.0)
    report = mode_metrics(x, mixture.means, mixture.component_stds, weights, min_count=min_count)
    q = c / c.sum()
    pi = weights / weights.sum()
    expected = float(torch.xlogy(q, q / pi).sum())
    assert report.modes_covered == int((c >= min_count).sum())
    assert report.high_quality == 1.0
    assert report.reverse_kl == pytest.approx(expected, abs=1e-12)
    shuffled = x[torch.randperm(len(x))]
    again = mode_metrics(
        shuffled, mixture.means, mixture.component_stds, weights, min_count=min_count
    )
    assert torch.equal(again.counts, report.counts)
    balanced = mixture.means.repeat_interleave(torch.arange(1, 9), dim=0)
    assert mode_metrics(balanced, mixture.means, mixture.component_stds, weights).reverse_kl == 0.0


def test_total_collapse_and_errors() -> None:
    """No high-quality sample: 0 modes, HQ 0, reverse KL inf; bad inputs raise InvalidInput."""
    mixture = ring()
    far = torch.full((10, 2), 50.0)
    report = mode_metrics_for(mixture, far)
    assert (report.modes_covered, report.high_quality, report.reverse_kl) == (0, 0.0, math.inf)
    assert report.as_dict() == {"modes": 0.0, "high_quality": 0.0, "reverse_kl": math.inf}
    with pytest.raises(InvalidInput, match="entries"):
        mode_metrics_for(mixture, torch.zeros(4, 3))
    with pytest.raises(InvalidInput, match="non-finite"):
        mode_metrics_for(mixture, torch.full((4, 2), math.nan))
    with pytest.raises(InvalidInput, match="stds"):
        mode_metrics(torch.zeros(4, 2), mixture.means, torch.zeros(8))
    with pytest.raises(InvalidInput, match="weights"):
        mode_metrics(torch.zeros(4, 2), mixture.means, mixture.component_stds, torch.ones(3))
    with pytest.raises(InvalidInput, match="min_count"):
        mode_metrics_for(mixture, torch.zeros(4, 2), min_count=0)
