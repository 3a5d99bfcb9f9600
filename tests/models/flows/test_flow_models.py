"""Every flow model is a normalized density that its own sampler follows; builders and errors."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from scipy import stats

from probgen.core import DataSpec, InvalidInput, Likelihood
from probgen.distributions import Gaussian, StandardNormal
from probgen.models.flows import IAF, MAF, NSF, ActNorm, Compose, Flow, Glow, LULinear, RealNVP
from probgen.registry import MODELS

SMALL = {"transforms": 3, "hidden": (16, 16)}
FLOWS: dict[str, Callable[[], Flow]] = {
    "realnvp": lambda: RealNVP((2,), **SMALL),
    "maf": lambda: MAF((2,), **SMALL),
    "iaf": lambda: IAF((2,), **SMALL),
    "nsf-ar": lambda: NSF((2,), bins=5, bound=3.0, **SMALL),
    "nsf-coupling": lambda: NSF((2,), bins=5, bound=3.0, autoregressive=False, **SMALL),
    "maf-mixture": lambda: MAF((2,), base="mixture", components=3, **SMALL),
}
DTYPES = (torch.float32, torch.float64)  # the fixture below is module-scoped: no ``dtype``
HALF_WIDTH, CELLS = 10.0, 500  # integration grid [-10, 10]², cell side 0.04


def randomized(flow: Flow) -> Flow:
    """Perturb every parameter: the zero-initialised conditioners would be the identity."""
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.15 * torch.randn_like(p))
    return flow


def grid_masses(flow: Flow) -> torch.Tensor:
    """Midpoint-rule probability of each cell of the grid, shape (CELLS, CELLS), in float64.

    The flow's log-density is evaluated in its own dtype; exponentiation and the
    sum over 250,000 cells are done in float64, so only the flow's rounding enters.
    """
    h = 2 * HALF_WIDTH / CELLS
    centers = -HALF_WIDTH + h * (torch.arange(CELLS) + 0.5)
    points = torch.cartesian_prod(centers, centers)  # (CELLS², 2), first coordinate slowest
    with torch.no_grad():
        log_p = torch.cat([flow.log_prob(chunk) for chunk in points.split(50_000)])
    return (log_p.double().exp() * h * h).reshape(CELLS, CELLS)


@pytest.fixture(
    params=list(itertools.product(FLOWS, DTYPES)),
    ids=lambda p: f"{p[0]}-{str(p[1]).removeprefix('torch.')}",
    scope="module",
)
def flow_and_masses(request: pytest.FixtureRequest) -> tuple[Flow, torch.Tensor]:
    """A randomized flow (built in float64, then cast to the dtype) and its cell masses."""
    name, dtype = request.param
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    flow = randomized(FLOWS[name]()).to(dtype)  # the same flow in both dtypes
    torch.set_default_dtype(dtype)
    masses = grid_masses(flow)
    torch.set_default_dtype(old)
    return flow, masses


def test_density_integrates_to_one(flow_and_masses: tuple[Flow, torch.Tensor]) -> None:
    """The midpoint rule's 1e-3 plus the flow's rounding, 64 eps Σ_cells m (1 + |log p|)."""
    flow, masses = flow_and_masses
    dtype = next(flow.parameters()).dtype
    m_log_p = torch.special.xlogy(masses, masses) - masses * math.log((2 * HALF_WIDTH / CELLS) ** 2)
    size = (masses + m_log_p.abs()).sum().item()  # Σ m (1 + |log p|)
    assert abs(masses.sum().item() - 1) < 1e-3 + 64 * torch.finfo(dtype).eps * size
    x = torch.randn(1000, 2, dtype=dtype)
    with torch.no_grad():  # and the flow is far from its N(0, I) base
        assert (flow.log_prob(x) - flow.base.log_prob(x)).abs().mean() > 0.2


def _chi_square_p_value(samples: torch.Tensor, masses: torch.Tensor) -> float:
    """Pearson χ² test of samples (n, 2) against cell masses pooled into 1×1 blocks.

    Blocks expecting fewer than 5 samples, and everything off the grid, are
    pooled into one remainder cell.
    """
    n, block = len(samples), CELLS // int(2 * HALF_WIDTH)
    coarse = masses.reshape(CELLS // block, block, CELLS // block, block).sum(dim=(1, 3))
    idx = ((samples + HALF_WIDTH) // (block * 2 * HALF_WIDTH / CELLS)).long()
    on_grid = ((idx >= 0) & (idx < len(coarse))).all(dim=1)
    counts = torch.zeros_like(coarse)
    counts.index_put_((idx[on_grid, 0], idx[on_grid, 1]), torch.ones(int(on_grid.sum())), True)
    big = coarse * n >= 5
    observed = torch.cat([counts[big], (n - counts[big].sum()).reshape(1)])
    expected = torch.cat([coarse[big], (1 - coarse[big].sum()).reshape(1)]) * n
    statistic = ((observed - expected) ** 2 / expected).sum().item()
    return float(stats.chi2.sf(statistic, df=len(observed) - 1))


def test_samples_follow_the_density(flow_and_masses: tuple[Flow, torch.Tensor]) -> None:
    flow, masses = flow_and_masses
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        samples = flow.sample(20_000, generator=generator)
    assert samples.shape == (20_000, 2)
    assert samples.dtype == next(flow.parameters()).dtype
    samples = samples.double()  # binned against the float64 masses
    assert _chi_square_p_value(samples, masses) > 1e-3
    # the same test rejects samples displaced by a fraction of a cell
    assert _chi_square_p_value(samples + 0.15, masses) < 1e-3


@pytest.mark.parametrize("name", list(FLOWS))
def test_sample_and_log_prob_agree_with_log_prob(name: str, dtype: torch.dtype) -> None:
    """The log-density of the sampling pass equals log_prob of its samples.

    Within 64 eps · (1 + |log p| + Σ_i |∂ log p/∂x_i| |x_i|) (the samples are rounded
    by eps |x|), and in float64 also within the tolerance from before (1e-10 (1 + |log p|)).
    """
    flow = randomized(FLOWS[name]())
    x, log_p = flow.sample_and_log_prob(7, generator=torch.Generator().manual_seed(2))
    assert x.dtype == log_p.dtype == dtype
    x = x.detach().requires_grad_(True)
    again = flow.log_prob(x)
    (grad,) = torch.autograd.grad(again.sum(), x)
    size = 1 + again.abs() + (grad * x).abs().sum(1)
    tol = 64 * torch.finfo(dtype).eps * size
    if dtype == torch.float64:
        tol = torch.minimum(tol, 1e-10 * (1 + again.abs()))
    err = (log_p - again).abs()
    assert (err <= tol).all(), (err / (torch.finfo(dtype).eps * size)).max().item()


def test_same_generator_same_samples() -> None:
    flow = randomized(MAF((3,), **SMALL))
    a = flow.sample(5, generator=torch.Generator().manual_seed(3))
    b = flow.sample(5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_maximum_likelihood_linear_flow_is_the_sample_gaussian() -> None:
    """MLE over x = W⁻¹(z) + m, z ~ N(0, I), is the sample mean and (biased) covariance."""
    truth = Gaussian(
        torch.tensor([1.0, -2.0, 0.5]),
        torch.tensor([[1.0, 0.8, 0.1], [0.8, 1.0, -0.3], [0.1, -0.3, 2.0]]),
    )
    data = truth.sample(500, generator=torch.Generator().manual_seed(4))
    flow = Flow(Compose([ActNorm(3, data_init=False), LULinear(3)]), StandardNormal((3,)))
    optimizer = torch.optim.LBFGS(
        flow.parameters(),
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = flow.loss(data)
        loss.backward()
        return loss

    optimizer.step(closure)
    centred = data - data.mean(0)
    mle = Gaussian(data.mean(0), centred.mT @ centred / len(data))
    test = truth.sample(100, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(test), mle.log_prob(test), atol=1e-6, rtol=0)


def test_glow_on_images() -> None:
    flow = Glow((1, 8, 8), levels=2, steps=2, hidden=8)
    x = torch.rand(16, 1, 8, 8)
    flow.train()
    log_p = flow.log_prob(x)  # first training batch initialises every ActNorm
    assert log_p.shape == (16,) and torch.isfinite(log_p).all()
    assert all(bool(m.initialized) for m in flow.modules() if isinstance(m, ActNorm))
    flow.loss(x).backward()
    assert all(p.grad is not None for p in flow.parameters())
    assert flow.sample(3, generator=torch.Generator().manual_seed(5)).shape == (3, 1, 8, 8)


def test_actnorm_data_init_standardises_the_first_batch() -> None:
    layer = ActNorm(3)
    x = torch.randn(64, 3, 5, 5) * torch.tensor([1.0, 2.0, 0.5]).reshape(3, 1, 1) + 4.0
    z, _ = layer(x)
    flat = z.movedim(1, -1).reshape(-1, 3)
    torch.testing.assert_close(flat.mean(0), torch.zeros(3), atol=1e-12, rtol=0)
    torch.testing.assert_close(flat.std(0), torch.ones(3), atol=1e-12, rtol=0)
    layer(x + 1)  # later batches no longer move the parameters
    torch.testing.assert_close(layer(x)[0], z)


@pytest.mark.parametrize("name", ["realnvp", "maf", "nsf"])
def test_vector_flows_from_registry_flatten_images(name: str) -> None:
    flow = MODELS.get(name).for_data(DataSpec((1, 4, 4), levels=256), transforms=2)
    assert flow.likelihood is Likelihood.EXACT
    x = torch.rand(5, 1, 4, 4)
    z, _ = flow.transform(x)
    assert z.shape == (5, 16)
    torch.testing.assert_close(flow.transform.inverse(z)[0], x, atol=1e-10, rtol=1e-10)
    assert flow.sample(2).shape == (2, 1, 4, 4)


def test_glow_from_registry_and_its_shape_check() -> None:
    flow = MODELS.get("glow").for_data(DataSpec((3, 4, 4)), levels=2, steps=1, hidden=8)
    assert flow.log_prob(torch.rand(2, 3, 4, 4)).shape == (2,)
    with pytest.raises(InvalidInput, match="divisible"):
        Glow((1, 6, 6), levels=2)


def test_log_prob_rejects_bad_input() -> None:
    flow = RealNVP((2,), **SMALL)
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 2\), got \(4, 3\)"):
        flow.log_prob(torch.zeros(4, 3))
    with pytest.raises(InvalidInput, match="non-finite"):
        flow.log_prob(torch.tensor([[math.nan, 0.0]]))
