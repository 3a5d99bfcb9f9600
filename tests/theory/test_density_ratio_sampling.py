"""Density-ratio correction of a generator (DRS, MH-GAN) against exact 1-D laws.

The generator's law is p_g = N(0, 2²) and the data law p_data = 0.3 N(−2, 0.5²)
+ 0.7 N(1.5, 0.7²), both with exact densities, so the log-ratio
d = ln p_data − ln p_g, its supremum M (p_g has the heavier tails, so d is
bounded) and p_data's CDF are known. Samples are compared with the exact CDF
by the Kolmogorov–Smirnov statistic; its critical value at level 10⁻³ is
1.95/√n, and each test also checks that a wrong ratio (sign flipped, or the
p_g term missing) lies far beyond it, so the test can fail.

Every sampler test runs in float64 and in float32 (``theory_dtype``): the
proposals, the ratios and the samplers compute in that dtype; the CDFs, the
supremum M and the KS statistics are the float64 ground truth.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.special import ndtr
from torch import Tensor, nn

from probgen.distributions import DiagonalGaussian, GaussianMixture
from probgen.models.gan import (
    ClassifierLogRatio,
    ExactLogRatio,
    IndependenceMetropolisHastings,
    RejectionSampler,
    calibrate,
)
from probgen.nn.mlp import MLP

F64 = torch.float64
P_G = DiagonalGaussian(torch.tensor([0.0], dtype=F64), torch.tensor([2.0], dtype=F64))
WEIGHTS, MEANS, STDS = (0.3, 0.7), (-2.0, 1.5), (0.5, 0.7)
P_DATA = GaussianMixture.isotropic(
    torch.tensor(WEIGHTS, dtype=F64), torch.tensor(MEANS, dtype=F64)[:, None], torch.tensor(STDS)
)
EXACT = ExactLogRatio(P_DATA, P_G)
GRID = torch.linspace(-12.0, 12.0, 240_001, dtype=F64)[:, None]
N = 4000
KS_CRITICAL = 1.95 / math.sqrt(N)  # P(KS > this) ≈ 10⁻³ for exact samples


def in_dtype(law: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy of ``law`` in ``dtype`` (the float64 original stays the ground truth)."""
    return copy.deepcopy(law).to(dtype)


def sup_log_ratio() -> float:
    """M = sup_x d(x), on a grid of spacing 10⁻⁴ (d is smooth, its maximum interior)."""
    return EXACT(GRID).max().item()


def data_cdf(x: Tensor) -> Tensor:
    """The exact CDF of p_data."""
    z = [(x - m) / s for m, s in zip(MEANS, STDS, strict=True)]
    return sum(w * torch.from_numpy(ndtr(zk.numpy())) for w, zk in zip(WEIGHTS, z, strict=True))


def ks(samples: Tensor, cdf: Callable[[Tensor], Tensor] = data_cdf) -> float:
    """sup_x |F_n(x) − F(x)| of 1-D samples (n, 1) against the CDF ``cdf`` (in float64)."""
    x, _ = samples.flatten().double().sort()
    f = cdf(x)
    n = len(x)
    upper = torch.arange(1, n + 1, dtype=F64) / n - f
    lower = f - torch.arange(n, dtype=F64) / n
    return max(upper.max().item(), lower.max().item())


def cdf_on_grid(density: Tensor) -> Callable[[Tensor], Tensor]:
    """The CDF of the law with unnormalised ``density`` (one value per GRID node), interpolated."""
    x = GRID.flatten()
    cumulative = torch.cumulative_trapezoid(density.flatten(), x)
    cumulative = torch.cat([cumulative.new_zeros(1), cumulative]) / cumulative[-1]

    def cdf(t: Tensor) -> Tensor:
        return torch.from_numpy(np.interp(t.numpy(), x.numpy(), cumulative.numpy()))

    return cdf


class Laws:
    """p_g, p_data and the exact log-ratio d = ln p_data − ln p_g, in one dtype."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.p_g = in_dtype(P_G, dtype)
        self.p_data = in_dtype(P_DATA, dtype)
        self.exact = ExactLogRatio(self.p_data, self.p_g)
        self.dtype = dtype

    def ratio(self, name: str) -> Callable[[Tensor], Tensor]:
        """The exact ratio, or a wrong one: d/2, or ln p_data with the p_g term missing."""
        return {
            "exact": self.exact,
            "half": lambda x: 0.5 * self.exact(x),
            "missing_p_g": self.p_data.log_prob,
        }[name]

    def bound(self) -> float:
        """sup d from the float64 grid, raised by the rounding of d in this dtype: a bound the
        sampler's own evaluations of d (in this dtype) never exceed."""
        return sup_log_ratio() + 64 * torch.finfo(self.dtype).eps * (1 + abs(sup_log_ratio()))


TRUTH = Laws(F64)


@pytest.fixture
def laws(theory_dtype: torch.dtype) -> Laws:
    """The three laws in the test's dtype (float64 and float32)."""
    return Laws(theory_dtype)


def test_rejection_acceptance_rate_is_exp_minus_m(laws: Laws) -> None:
    """Azadi et al. 2019, Sec. 3: exact ratio, accepted / proposed = E_pg[e^{d−M}] = e^{−M}.

    200,000 proposals; the binomial standard error sets the tolerance (4 SE).
    """
    m = laws.bound()
    sampler = RejectionSampler(laws.exact, log_bound=m, chunk=200_000)
    out = sampler.draw(laws.p_g.sample, 1, generator=torch.Generator().manual_seed(0))
    rate = math.exp(-m)
    assert out.proposals == 200_000
    assert out.info["above_bound"] == 0.0
    stderr = math.sqrt(rate * (1 - rate) / out.proposals)
    assert abs(out.acceptance_rate - rate) < 4 * stderr
    assert 0.1 < rate < 0.9  # the test distinguishes e^{−M} from 0 and 1


def test_rejection_sampling_with_the_exact_ratio_samples_p_data(laws: Laws) -> None:
    """Accepted proposals pass KS against p_data's CDF; mode weights within 4 SE of (0.3, 0.7)."""
    out = RejectionSampler(laws.exact, log_bound=laws.bound()).draw(
        laws.p_g.sample, N, generator=torch.Generator().manual_seed(1)
    )
    assert out.samples.shape == (N, 1) and out.samples.dtype == laws.dtype
    assert ks(out.samples) < KS_CRITICAL
    left = (out.samples < -0.5).double().mean().item()  # the left component's mass, ~0.3
    assert abs(left - WEIGHTS[0]) < 4 * math.sqrt(0.3 * 0.7 / N)
    assert ks(laws.p_g.sample(N, generator=torch.Generator().manual_seed(2))) > 3 * KS_CRITICAL


def corrected_cdf(log_ratio: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """The CDF of p_g e^{d}/Z for a float64 log-ratio d, by quadrature on the grid."""
    d = log_ratio(GRID)
    return cdf_on_grid(P_G.log_prob(GRID).exp() * (d - d.max()).exp())


def distance_to_data(cdf: Callable[[Tensor], Tensor]) -> float:
    """sup_x |F(x) − F_data(x)| on the grid (the population KS distance)."""
    x = GRID.flatten()
    return (cdf(x) - data_cdf(x)).abs().max().item()


@pytest.mark.parametrize("wrong", ["half", "missing_p_g"])
def test_rejection_sampling_with_a_wrong_ratio_fails_the_check(wrong: str, laws: Laws) -> None:
    """The KS check above rejects samples corrected by a wrong ratio (d/2, or ln p_data alone).

    Their laws p_g e^{wrong}/Z are more than 1.5 critical values from p_data.
    """
    target = corrected_cdf(TRUTH.ratio(wrong))
    assert distance_to_data(target) > 1.5 * KS_CRITICAL
    m = TRUTH.ratio(wrong)(GRID).max().item() + 64 * torch.finfo(laws.dtype).eps
    out = RejectionSampler(laws.ratio(wrong), log_bound=m).draw(
        laws.p_g.sample, N, generator=torch.Generator().manual_seed(1)
    )
    assert ks(out.samples) > KS_CRITICAL
    assert ks(out.samples, target) < KS_CRITICAL


def test_rejection_with_an_estimated_bound(laws: Laws) -> None:
    """M estimated from 50,000 proposals lies just below sup d, and the samples still pass KS."""
    sampler = RejectionSampler(laws.exact)
    out = sampler.draw(laws.p_g.sample, N, generator=torch.Generator().manual_seed(3))
    assert sup_log_ratio() - 0.01 < out.info["log_bound"] <= laws.bound()
    assert out.proposals > sampler.burn_in
    assert ks(out.samples) < KS_CRITICAL


def test_shifted_rejection_samples_p_g_times_its_acceptance(laws: Laws) -> None:
    """With γ ≠ 0 DRS samples p_g(x) σ(F(x)) / Z, F = d − M − ln(1 − e^{d−M}) − γ.

    The target's CDF is integrated on the grid; γ = −2 accepts more than the
    exact e^{−M} and its samples are not p_data's.
    """
    m = laws.bound()
    sampler = RejectionSampler(laws.exact, log_bound=m, shift=-2.0)
    target_cdf = cdf_on_grid(
        P_G.log_prob(GRID).exp() * sampler.acceptance_probability(EXACT(GRID), m)
    )
    out = sampler.draw(laws.p_g.sample, N, generator=torch.Generator().manual_seed(4))
    assert ks(out.samples, target_cdf) < KS_CRITICAL
    assert ks(out.samples) > 2 * KS_CRITICAL
    assert out.acceptance_rate > math.exp(-m) + 0.1
    torch.testing.assert_close(
        RejectionSampler(EXACT, log_bound=m).acceptance_probability(EXACT(GRID), m),
        (EXACT(GRID) - m).exp(),
    )


@pytest.mark.parametrize("ratio", ["exact", "half", "missing_p_g"])
def test_independence_metropolis_hastings_samples_p_data(ratio: str, laws: Laws) -> None:
    """Turner et al. 2019: N independent chains, 60 steps each (e^{M} < 4), end in p_data.

    With the exact ratio the last states pass KS against p_data; with a wrong
    ratio (d/2, or ln p_data alone) they fail it, and pass against the law
    p_g e^{wrong}/Z that chain does target.
    """
    out = IndependenceMetropolisHastings(laws.ratio(ratio), steps=60).draw(
        laws.p_g.sample, N, generator=torch.Generator().manual_seed(5)
    )
    assert out.samples.shape == (N, 1)
    assert out.proposals == N * 61
    if ratio == "exact":
        assert math.exp(sup_log_ratio()) < 4
        assert ks(out.samples) < KS_CRITICAL
        assert out.info["unmoved"] < 1e-3
        assert 0.2 < out.acceptance_rate < 1.0
    else:
        assert ks(out.samples) > KS_CRITICAL
        assert ks(out.samples, corrected_cdf(TRUTH.ratio(ratio))) < KS_CRITICAL


def test_a_calibrated_classifier_corrects_the_generator(laws: Laws) -> None:
    """A classifier trained on samples learns d; both samplers then sample p_g e^{d̂}/Z, near p_data.

    A 2×32 SiLU MLP, 800 calibration steps of 256 per side (logistic loss, lr
    3e-3), in the test's dtype. (i) Its logit is within 0.25 (RMS under p_data,
    after removing the mean, which no sampler sees) of the exact d. (ii) The
    law it corrects p_g to, p_g e^{d̂}/Z, is integrated on the grid: its CDF is
    within 0.02 of p_data's everywhere, while p_g's is 0.15 away or more. (iii)
    Rejection sampling (M estimated, so its law is p_g min(e^{d̂ − M}, 1)/Z)
    and MH (100 steps) pass KS against the CDF of the law each targets.
    """
    ratio = ClassifierLogRatio(MLP(1, 1, (32, 32), activation=nn.SiLU, zero_last=True), (1,))
    g = torch.Generator().manual_seed(6)
    cal = calibrate(
        ratio,
        lambda b: laws.p_data.sample(b, generator=g),
        laws.p_g.sample,
        steps=800,
        batch=256,
        lr=3e-3,
        generator=g,
    )
    assert cal.steps == 800
    x = laws.p_data.sample(20_000, generator=g)
    with torch.no_grad():
        err = ratio(x).double() - EXACT(x.double())
        d_hat = ratio(GRID.to(laws.dtype)).double()
        target = corrected_cdf(lambda grid: ratio(grid.to(laws.dtype)).double())
    assert (err - err.mean()).square().mean().sqrt() < 0.25
    assert distance_to_data(target) < 0.02
    assert ks(laws.p_g.sample(N, generator=g)) > 0.15

    seed = torch.Generator().manual_seed(7)
    out = RejectionSampler(ratio).draw(laws.p_g.sample, N, generator=seed)
    clipped = (d_hat - out.info["log_bound"]).clamp_max(0.0).exp()
    assert ks(out.samples, cdf_on_grid(P_G.log_prob(GRID).exp() * clipped)) < KS_CRITICAL
    out = IndependenceMetropolisHastings(ratio, steps=100).draw(laws.p_g.sample, N, generator=seed)
    assert ks(out.samples, target) < KS_CRITICAL
