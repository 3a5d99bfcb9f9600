"""Conditional flows against exact conditional densities p(x | c), in float64 and float32.

1. A linear-Gaussian conditional model x | c ~ N(A c + b, Σ) (continuous c) is
   exactly one conditional MAF layer with affine transforms and a masked
   *linear* conditioner (a MADE without hidden layers): with Σ = L Lᵀ and
   M = L⁻¹ (lower triangular), z = M (x − A c − b) ~ N(0, I) is

       z_i = x_i · M_ii + Σ_{j<i} M_ij x_j − (M A c + M b)_i,

   autoregressive in x, with the context c reaching every shift and
   log|det ∂z/∂x| = Σ_i log M_ii. With those weights set, the flow's
   log p(x | c) must equal the closed form (SciPy, float64) to rounding, and
   its samples at a fixed c must have mean A c + b.
2. Class conditions: the eight Gaussians conditioned on their component,
   x | c = k ~ N(μ_k, σ² I), drawn as (x, c) pairs of an ``ArrayDataset``. A
   conditional MAF, RealNVP and NSF trained on them for 800 Adam steps reach a
   conditional KL gap E[log p(x | c) − log p_θ(x | c)] (a Monte Carlo
   estimate on 5000 fresh pairs, ± its standard error) below 0.03 nats; measured
   (seed 0): MAF 0.0045 / 0.0017, RealNVP 0.0048 / 0.0021, NSF 0.0095 / 0.0088
   in float64 / float32, each with a standard error of 0.001–0.002. Two-sided:
   the estimate may not lie significantly below 0 either (a KL is ≥ 0, so an
   unnormalised or mis-conditioned density would show there).

Reference: Papamakarios, Pavlakou & Murray (2017), "Masked Autoregressive Flow
for Density Estimation" (§3.4, conditional MAF).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec
from probgen.data.base import ArrayDataset
from probgen.distributions.shapes import EightGaussians
from probgen.models.flows import MAF, NSF, Flow, MaskedAutoregressive, RealNVP

D, M_DIM = 3, 2
RNG = np.random.default_rng(0)
A = RNG.normal(size=(D, M_DIM))
B = RNG.normal(size=D)
_F = RNG.normal(size=(D, D))
SIGMA = _F @ _F.T / D + 0.5 * np.eye(D)
SCALE_BOUND = 3.0


def linear_gaussian_maf() -> MAF:
    """A one-layer conditional MAF whose weights make it exactly N(A c + b, Σ)."""
    flow = MAF((D,), transforms=1, hidden=(), scale_bound=SCALE_BOUND, condition=VECTOR)
    layer = flow.transform.transforms[0].transforms[0]
    assert isinstance(layer, MaskedAutoregressive)
    linear = layer.made.net[0]
    m = np.linalg.inv(np.linalg.cholesky(SIGMA))  # M = L⁻¹, lower triangular
    weight = np.zeros((D, 2, M_DIM + D))  # rows (i, shift | raw log-scale), cols (c, x)
    bias = np.zeros((D, 2))
    weight[:, 0, :M_DIM] = -m @ A
    weight[:, 0, M_DIM:] = np.tril(m, -1)
    bias[:, 0] = -m @ B
    log_scale = np.log(np.diag(m))
    assert np.abs(log_scale).max() < SCALE_BOUND
    bias[:, 1] = SCALE_BOUND * np.arctanh(log_scale / SCALE_BOUND)  # s = c·tanh(raw/c)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight.reshape(2 * D, M_DIM + D)))
        linear.bias.copy_(torch.from_numpy(bias.reshape(2 * D)))
    return flow


VECTOR = ConditionSpec(shape=(M_DIM,))


def test_a_conditional_maf_is_exactly_the_linear_gaussian_model(
    theory_dtype: torch.dtype, tol: Callable[..., float]
) -> None:
    flow = linear_gaussian_maf()
    g = torch.Generator().manual_seed(1)
    c = 1.5 * torch.randn(200, M_DIM, generator=g, dtype=torch.float64)
    x = torch.randn(200, D, generator=g, dtype=torch.float64) * 2.0
    truth = np.array(
        [
            stats.multivariate_normal(A @ ci + B, SIGMA).logpdf(xi)
            for ci, xi in zip(c.numpy(), x.numpy(), strict=True)
        ]
    )
    with torch.no_grad():
        got = flow.log_prob(x.to(theory_dtype), condition=c.to(theory_dtype)).double().numpy()
    size = np.abs(truth).max()
    np.testing.assert_allclose(got, truth, rtol=0, atol=tol(theory_dtype, size))
    # and the flow's samples at one c are draws of N(A c + b, Σ): mean within 4 standard errors
    c0 = torch.tensor([0.7, -1.1], dtype=torch.float64)
    with torch.no_grad():
        draws = flow.sample(20_000, condition=c0.to(theory_dtype), generator=g).double().numpy()
    se = np.sqrt(np.diag(SIGMA) / len(draws))
    np.testing.assert_array_less(np.abs(draws.mean(0) - (A @ c0.numpy() + B)), 4 * se)
    np.testing.assert_allclose(np.cov(draws.T), SIGMA, atol=0.06)  # ≈ 4 standard errors


# --- class conditions: the eight Gaussians conditioned on their component --------------------

STEPS, BATCH, KL_GAP = 800, 256, 0.03
CLASSES = ConditionSpec(classes=8)
FAMILIES: dict[str, Callable[[], Flow]] = {
    "maf": lambda: MAF((2,), transforms=3, hidden=(32, 32), condition=CLASSES),
    "realnvp": lambda: RealNVP((2,), transforms=4, hidden=(32, 32), condition=CLASSES),
    "nsf": lambda: NSF((2,), transforms=3, hidden=(32, 32), condition=CLASSES),
}


def _pairs(means: torch.Tensor, std: float, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs (x, c): c uniform over the components, x | c = k ~ N(μ_k, σ² I)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(len(means), (n,), generator=g)
    return means[c] + std * torch.randn(n, 2, generator=g, dtype=means.dtype), c


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_class_conditional_flow_learns_each_component(
    name: str, theory_dtype: torch.dtype
) -> None:
    mixture = EightGaussians()
    means, std = mixture.means, float(mixture.scale_tril[0, 0, 0])
    assert torch.allclose(mixture.scale_tril, std * torch.eye(2).expand(8, 2, 2))
    train, validation, test = (
        _pairs(means, std, n, s) for n, s in ((20_000, 0), (2_000, 1), (5_000, 2))
    )
    data = ArrayDataset(
        train[0],
        validation[0],
        test[0],
        DataSpec((2,), condition=CLASSES),
        conditions=(train[1], validation[1], test[1]),
    )
    torch.manual_seed(0)
    flow = FAMILIES[name]()
    optimizer = torch.optim.Adam(flow.parameters(), lr=5e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / STEPS)
    g = torch.Generator().manual_seed(3)
    for _ in range(STEPS):
        x, c = data.draw("train", BATCH, g)
        optimizer.zero_grad()
        flow.loss(x, condition=c).backward()
        optimizer.step()
        decay.step()
    x, c = test
    exact = (
        -0.5 * ((x - means[c]) / std).square().sum(1) - 2 * math.log(std) - math.log(2 * math.pi)
    )
    with torch.no_grad():
        gap = (exact - flow.eval().log_prob(x, condition=c)).double()
    mean, se = gap.mean().item(), gap.std().item() / math.sqrt(len(gap))
    assert mean < KL_GAP, f"{name}: KL gap {mean:.4f} ± {se:.4f} nats"
    assert mean > -3 * se, f"{name}: KL gap {mean:.4f} ± {se:.4f} nats is negative"
