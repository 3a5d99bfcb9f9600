"""Wasserstein distances: exact 1-D (quantiles, CDFs), exact OT in any dimension, sliced.

W_p(P, Q) = ( inf_{π ∈ Π(P, Q)} E_π ‖X − Y‖^p )^{1/p}. In one dimension the optimal
coupling is monotone, so W_p^p = ∫_0^1 |F⁻¹(u) − G⁻¹(u)|^p du and, for p = 1,
W_1 = ∫ |F(x) − G(x)| dx. Every function returns a 0-dim tensor; gradients flow
through the transport cost with the optimal plan held fixed (envelope theorem).

Reference: Villani 2009, "Optimal Transport: Old and New"; Peyré & Cuturi 2019,
"Computational Optimal Transport", Chapter 2.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from probgen.core import InvalidInput
from probgen.divergences._samples import sample_pair

__all__ = [
    "sliced_wasserstein",
    "wasserstein",
    "wasserstein1_1d",
    "wasserstein1_cdf",
    "wasserstein_1d",
]

_EMD_MAX_ITER = 10_000_000  # POT's default (1e5) stops early on a few thousand points


def _check_p(p: float) -> None:
    if not p >= 1.0:
        raise InvalidInput(f"p: expected p >= 1, got {p}")


def _quantile_cost(xs: Tensor, ys: Tensor, p: float) -> Tensor:
    """∫_0^1 |F⁻¹(u) − G⁻¹(u)|^p du for each column of sorted xs (N, K), ys (M, K) -> (K,).

    The empirical quantile functions are step functions jumping at u = i/N and
    u = j/M; on each interval between merged jumps both are constant.
    """
    n, m = xs.shape[0], ys.shape[0]
    like = {"dtype": xs.dtype, "device": xs.device}
    steps = (
        torch.cat([torch.arange(1, n + 1, **like) / n, torch.arange(1, m + 1, **like) / m])
        .sort()
        .values
    )  # (N + M,)
    widths = torch.diff(steps, prepend=steps.new_zeros(1))
    middle = steps - 0.5 * widths
    ix = (middle * n).floor().long().clamp_(max=n - 1)
    iy = (middle * m).floor().long().clamp_(max=m - 1)
    return (widths[:, None] * (xs[ix] - ys[iy]).abs().pow(p)).sum(dim=0)


def wasserstein_1d(x: Tensor, y: Tensor, p: float = 1.0) -> Tensor:
    """Exact W_p between two 1-D empirical samples, through their quantile functions.

    W_p^p = ∫_0^1 |F_N⁻¹(u) − G_M⁻¹(u)|^p du, exact for samples of any sizes N and M
    in O((N + M) log(N + M)).

    Args:
        x: samples of P, shape (N,) or (N, 1).
        y: samples of Q, shape (M,) or (M, 1).
        p: order, p ≥ 1.
    """
    _check_p(p)
    x, y = sample_pair(x, y)
    if x.shape[1] != 1:
        raise InvalidInput(
            f"wasserstein_1d: expected 1-D samples (N,) or (N, 1), got D = {x.shape[1]}"
        )
    cost = _quantile_cost(x.sort(dim=0).values, y.sort(dim=0).values, p)
    return cost[0].pow(1.0 / p)


def wasserstein1_1d(x: Tensor, y: Tensor) -> Tensor:
    """Exact W_1 = ∫_0^1 |F_N⁻¹(u) − G_M⁻¹(u)| du between 1-D samples (N,) and (M,)."""
    return wasserstein_1d(x, y, p=1.0)


def wasserstein1_cdf(
    cdf_p: Callable[[Tensor], Tensor], cdf_q: Callable[[Tensor], Tensor], grid: Tensor
) -> Tensor:
    """W_1 = ∫ |F(x) − G(x)| dx between two 1-D laws given by their CDFs.

    The integral is taken by the trapezoid rule on ``grid``, which must be strictly
    increasing and cover both supports (the integrand vanishes outside them).

    Args:
        cdf_p: the CDF F of p, mapping (K,) -> (K,).
        cdf_q: the CDF G of q, mapping (K,) -> (K,).
        grid: evaluation points, shape (K,), K ≥ 2.

    Reference: Vallender 1974, "Calculation of the Wasserstein distance between
    probability distributions on the line".
    """
    if grid.dim() != 1 or grid.shape[0] < 2 or not (torch.diff(grid) > 0).all():
        raise InvalidInput(
            f"grid: expected a strictly increasing 1-D tensor of >= 2 points, got shape "
            f"{tuple(grid.shape)}"
        )
    return torch.trapezoid((cdf_p(grid) - cdf_q(grid)).abs(), grid)


def wasserstein(x: Tensor, y: Tensor, p: float = 2.0) -> Tensor:
    """Exact W_p between two empirical samples in any dimension, by optimal transport.

    W_p^p = min_π Σ_ij π_ij ‖x_i − y_j‖^p over couplings of the uniform weights. For
    N = M an optimal plan is a permutation (Birkhoff), found by the Hungarian
    algorithm (``scipy.optimize.linear_sum_assignment``); otherwise by the network
    simplex (POT ``ot.emd``). Cost O(N³): meant for up to a few thousand points.

    Args:
        x: samples of P, shape (N, *event_shape).
        y: samples of Q, shape (M, *event_shape).
        p: order, p ≥ 1; distances are Euclidean over the flattened event.
    """
    _check_p(p)
    x, y = sample_pair(x, y)
    cost = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").pow(p)  # (N, M)
    plan_cost = cost.detach().cpu().numpy()
    if x.shape[0] == y.shape[0]:
        rows, cols = (
            torch.as_tensor(i, device=cost.device) for i in linear_sum_assignment(plan_cost)
        )
        total = cost[rows, cols].mean()
    else:
        import ot  # POT takes ~1 s to import; load it only for unequal sizes

        a = np.full(x.shape[0], 1.0 / x.shape[0])
        b = np.full(y.shape[0], 1.0 / y.shape[0])
        plan = ot.emd(a, b, plan_cost.astype(np.float64), numItermax=_EMD_MAX_ITER)
        total = (torch.as_tensor(plan).to(cost) * cost).sum()
    return total.pow(1.0 / p)


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    n_projections: int = 128,
    p: float = 2.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sliced W_p: SW_p^p = E_θ[ W_p^p(θᵀX, θᵀY) ], θ uniform on the unit sphere S^{D−1}.

    Estimated with ``n_projections`` random directions (drawn with ``generator``),
    each 1-D distance exact through quantiles: O(K (N + M) log(N + M)) for K
    projections, any sizes N and M. For D = 1 it equals the exact W_p.

    Args:
        x: samples of P, shape (N, *event_shape).
        y: samples of Q, shape (M, *event_shape).
        n_projections: number K of random directions.
        p: order, p ≥ 1.
        generator: source of the directions (on the device of ``x``).

    Reference: Rabin, Peyré, Delon & Bernot 2011, "Wasserstein barycenter and its
    application to texture mixing"; Bonneel, Rabin, Peyré & Pfister 2015, "Sliced and
    Radon Wasserstein barycenters of measures".
    """
    _check_p(p)
    if n_projections < 1:
        raise InvalidInput(f"n_projections: expected >= 1, got {n_projections}")
    x, y = sample_pair(x, y)
    theta = torch.randn(
        x.shape[1], n_projections, generator=generator, dtype=x.dtype, device=x.device
    )
    theta = theta / theta.norm(dim=0, keepdim=True)  # (D, K)
    xs = (x @ theta).sort(dim=0).values  # (N, K)
    ys = (y @ theta).sort(dim=0).values  # (M, K)
    return _quantile_cost(xs, ys, p).mean().pow(1.0 / p)
