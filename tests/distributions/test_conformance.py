"""One conformance test for every analytic 2-D distribution: adding one is one line in CASES.

Each case is checked for: sample/log_prob shapes and dtypes, normalisation on a
grid, agreement of exact samples with the exact density (binned chi-square on
space, and a z-test of the mean density at the samples), and InvalidInput on
bad input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from scipy import stats
from torch import Tensor

from probgen.core import InvalidInput, Likelihood
from probgen.distributions import (
    Checkerboard,
    ConditionalMixture,
    DiagonalGaussian,
    Distribution,
    EightGaussians,
    Gaussian,
    GaussianMixture,
    Pinwheel,
    Rings,
    RotatedShape,
    StandardNormal,
    SwissRoll,
    TwentyFiveGaussians,
    TwoMoons,
    TwoSpirals,
)

ALPHA = 1e-3  # a correct sampler passes each test with probability 1 - ALPHA
N_SAMPLES = 10_000
SPATIAL_BINS = 16  # per side


@dataclass(frozen=True)
class Case:
    """A distribution, the square [-extent, extent]² holding its mass, and a grid cell size.

    ``scale`` is its smallest length scale: a sampler shifted by half of it must fail.
    """

    make: Callable[[], Distribution]
    extent: float
    scale: float

    def grid(self) -> tuple[Tensor, float, int]:
        """Cell midpoints (n², 2) of a grid resolving ``scale`` in 2 cells, the cell size, n."""
        n = SPATIAL_BINS * math.ceil(2.0 * self.extent / (0.5 * self.scale) / SPATIAL_BINS)
        cell = 2.0 * self.extent / n
        axis = -self.extent + cell * (torch.arange(n) + 0.5)
        return torch.cartesian_prod(axis, axis), cell, n


def _mixture() -> GaussianMixture:
    covs = torch.tensor(
        [[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]], [[0.1, 0], [0, 0.1]]]
    )
    means = torch.tensor([[-1.0, 0.0], [1.0, 1.0], [0.5, -1.5]])
    return GaussianMixture(torch.tensor([0.2, 0.5, 0.3]), means, covs)


CASES = {
    "diagonal": Case(
        lambda: DiagonalGaussian(torch.tensor([0.5, -1.0]), torch.tensor([0.7, 1.1])), 6.0, 0.7
    ),
    "standard_normal": Case(lambda: StandardNormal((2,)), 5.0, 1.0),
    "gaussian": Case(
        lambda: Gaussian(torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 0.6], [0.6, 0.8]])),
        6.0,
        0.5,
    ),
    "mixture": Case(_mixture, 4.5, 0.3),
    "8gaussians": Case(EightGaussians, 4.5, 0.35),
    "8gaussians_pacgan": Case(lambda: EightGaussians(radius=1.0, std=0.01), 1.1, 0.01),
    "25gaussians": Case(TwentyFiveGaussians, 1.6, 0.0177),
    "25gaussians_pacgan": Case(lambda: TwentyFiveGaussians(spacing=2.0, std=0.05), 4.4, 0.05),
    "checkerboard": Case(Checkerboard, 4.0, 0.5),
    "8gaussians_by_component": Case(lambda: ConditionalMixture(EightGaussians()), 4.5, 0.35),
    "8gaussians_rotated": Case(lambda: RotatedShape(EightGaussians()), 4.5, 0.35),
    "two_moons": Case(TwoMoons, 3.5, 0.2),
    "swiss_roll": Case(SwissRoll, 3.5, 0.2),
    "pinwheel": Case(Pinwheel, 4.5, 0.2),
    "rings": Case(Rings, 3.6, 0.08),
    "2spirals": Case(TwoSpirals, 3.8, 0.11),
}


@pytest.fixture(scope="module")
def grids() -> dict[str, tuple]:
    """Per case (in float64): the distribution, grid points, cell size, n and log density."""
    cache: dict[str, tuple] = {}

    def get(name: str) -> tuple:
        if name not in cache:
            old = torch.get_default_dtype()
            torch.set_default_dtype(torch.float64)
            case = CASES[name]
            dist = case.make()
            points, cell, n = case.grid()
            cache[name] = (dist, points, cell, n, dist.log_prob(points))
            torch.set_default_dtype(old)
        return cache[name]

    return get


def _chi_square_pvalue(observed: Tensor, expected: Tensor) -> float:
    """Pearson chi-square p-value; bins with expected count < 5 are pooled into one."""
    if ((expected == 0) & (observed > 0)).any():
        return 0.0
    small = expected < 5
    obs = torch.cat([observed[~small], observed[small].sum()[None]])
    exp = torch.cat([expected[~small], expected[small].sum()[None]])
    keep = exp > 0
    obs, exp = obs[keep].double(), exp[keep]
    statistic = ((obs - exp).square() / exp).sum().item()
    return float(stats.chi2.sf(statistic, df=len(exp) - 1))


def _sample_pvalue(samples: Tensor, dist: Distribution, grid: tuple, extent: float) -> float:
    """Smallest of two p-values (Bonferroni-corrected) of samples against the density.

    Coarse: Pearson chi-square of counts on a 16×16 grid of squares (plus
    "outside") against the cell masses ∫ p. Fine: a z-test of the sample mean of
    p(x_i) against E_p[p(X)] = ∫ p², which a grid integrates accurately because
    p² is smooth at the grid's scale; it catches shifts and scalings far below
    the square size (narrow modes, thin curves).
    """
    _, _, cell, n, log_p = grid
    n_samples = len(samples)
    mass = log_p.exp() * cell**2
    k = n // SPATIAL_BINS
    coarse = mass.reshape(SPATIAL_BINS, k, SPATIAL_BINS, k).sum((1, 3)).flatten()
    outside_mass = (1.0 - coarse.sum()).clamp_min(0.0)
    expected = torch.cat([coarse, outside_mass[None]]) * n_samples
    idx = torch.floor((samples + extent) / (2.0 * extent / SPATIAL_BINS)).long()
    inside = ((idx >= 0) & (idx < SPATIAL_BINS)).all(1)
    flat = torch.where(inside, idx[:, 0] * SPATIAL_BINS + idx[:, 1], SPATIAL_BINS**2)
    spatial = _chi_square_pvalue(torch.bincount(flat, minlength=SPATIAL_BINS**2 + 1), expected)

    density = dist.log_prob(samples).exp()
    deviation = density.mean().item() - (mass * log_p.exp()).sum().item()
    stderr = density.std().item() / math.sqrt(n_samples)
    if stderr == 0.0:  # p is constant on its support (checkerboard)
        fine = 1.0 if abs(deviation) < 1e-12 else 0.0
    else:
        fine = float(2.0 * stats.norm.sf(abs(deviation) / stderr))
    return min(1.0, 2.0 * min(spatial, fine))


@pytest.mark.parametrize("name", CASES)
def test_shapes_dtype_and_likelihood(name: str) -> None:
    dist = CASES[name].make()
    assert dist.likelihood is Likelihood.EXACT
    x = dist.sample(7, generator=torch.Generator().manual_seed(1))
    assert x.shape == (7, *dist.event_shape) and x.dtype == torch.float64
    log_p = dist.log_prob(x)
    assert log_p.shape == (7,) and log_p.dtype == torch.float64 and torch.isfinite(log_p).all()
    single = dist.to(torch.float32)
    assert single.sample(3).dtype == torch.float32
    assert single.log_prob(x.float()).dtype == torch.float32


@pytest.mark.parametrize("name", CASES)
def test_sampling_is_reproducible(name: str) -> None:
    dist = CASES[name].make()
    a = dist.sample(5, generator=torch.Generator().manual_seed(3))
    b = dist.sample(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", CASES)
def test_density_integrates_to_one(name: str, grids) -> None:
    _, _, cell, _, log_p = grids(name)
    assert abs(log_p.exp().sum().item() * cell**2 - 1.0) < 1e-3


@pytest.mark.parametrize("name", CASES)
def test_samples_agree_with_density(name: str, grids) -> None:
    grid = grids(name)
    samples = grid[0].sample(N_SAMPLES, generator=torch.Generator().manual_seed(7))
    assert _sample_pvalue(samples, grid[0], grid, CASES[name].extent) > ALPHA


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("error", ["shift", "scale"])
def test_wrong_sampler_is_detected(name: str, error: str, grids) -> None:
    grid = grids(name)
    samples = grid[0].sample(N_SAMPLES, generator=torch.Generator().manual_seed(7))
    wrong = samples + 0.5 * CASES[name].scale if error == "shift" else 1.2 * samples
    assert _sample_pvalue(wrong, grid[0], grid, CASES[name].extent) < ALPHA


@pytest.mark.parametrize("name", CASES)
def test_invalid_input_raises(name: str) -> None:
    dist = CASES[name].make()
    with pytest.raises(InvalidInput, match="shape"):
        dist.log_prob(torch.zeros(4, 3))
    with pytest.raises(InvalidInput, match="floating"):
        dist.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(InvalidInput, match="non-finite"):
        dist.log_prob(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(InvalidInput, match=r"torch\.Tensor"):
        dist.log_prob([[0.0, 0.0]])


@pytest.mark.parametrize("name", CASES)
def test_entropy_is_an_estimate_with_stderr(name: str) -> None:
    dist = CASES[name].make()
    h = dist.entropy(n=2000, generator=torch.Generator().manual_seed(2))
    closed = dist.closed_form_entropy()
    if closed is None:
        assert h.kind == "estimate" and h.stderr > 0
    else:
        assert h.kind == "exact" and h.stderr == 0.0 and h.value == pytest.approx(float(closed))


@pytest.mark.parametrize("name", CASES)
def test_float32_log_density_equals_float64(name: str, grids) -> None:
    """At the grid points rounded to float32, float32 log p = float64 log p within 16 eps₃₂ size.

    Both are evaluated at the same (rounded) points, so only arithmetic differs:
    size = 1 + |log p| + |∇log p|·|x|, since the first float32 operation on x
    (x − μ, x/side) rounds it by eps·|x|, which moves log p by |∇log p|·|x|·eps.
    Points where p is 0 or underflows in float64 (log p < -600) are left out.
    """
    dist, points, _, _, _ = grids(name)
    x32 = points.float()
    x64 = x32.double().requires_grad_(True)
    log_p64 = dist.log_prob(x64)
    piecewise_constant = not log_p64.requires_grad  # the checkerboard
    grad = (
        torch.zeros_like(x64) if piecewise_constant else torch.autograd.grad(log_p64.sum(), x64)[0]
    )
    log_p64, keep = log_p64.detach(), log_p64.detach() > -600
    size = (1 + log_p64.abs() + (grad * x64.detach()).abs().sum(1))[keep]
    torch.set_default_dtype(torch.float32)
    log_p32 = CASES[name].make().log_prob(x32).double()
    assert log_p32.isfinite()[keep].all()
    ratio = (log_p32 - log_p64).abs()[keep] / (torch.finfo(torch.float32).eps * size)
    assert ratio.max().item() <= 16, ratio.max().item()


@pytest.mark.parametrize("name", CASES)
def test_float32_samples_agree_with_density(name: str, grids) -> None:
    """Samples drawn in float32 pass the same two-sided tests against the float64 density."""
    grid = grids(name)
    torch.set_default_dtype(torch.float32)
    samples = CASES[name].make().sample(N_SAMPLES, generator=torch.Generator().manual_seed(7))
    assert samples.dtype == torch.float32
    torch.set_default_dtype(torch.float64)
    assert _sample_pvalue(samples.double(), grid[0], grid, CASES[name].extent) > ALPHA
