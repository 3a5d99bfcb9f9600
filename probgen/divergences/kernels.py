"""Kernel two-sample distances: unbiased MMD² with a multi-scale Gaussian kernel, energy distance.

Both are the unbiased U-statistic of the squared maximum mean discrepancy

    MMD²(P, Q) = E k(X, X') + E k(Y, Y') − 2 E k(X, Y),   X, X' ~ P,  Y, Y' ~ Q,

    MMD²_u = 1/(N(N−1)) Σ_{i≠j} k(x_i, x_j) + 1/(M(M−1)) Σ_{i≠j} k(y_i, y_j)
             − 2/(NM) Σ_{i,j} k(x_i, y_j),

with a Gaussian kernel for ``mmd`` and k(a, b) = −‖a − b‖ for ``energy_distance``
(Sejdinovic et al. 2013, "Equivalence of distance-based and RKHS-based statistics in
hypothesis testing"). Being unbiased, the estimates are near zero, and can be
slightly negative, when P = Q. They return differentiable 0-dim tensors, so they
serve as training losses (MMD-GAN, generative moment matching) and as metrics.

Reference: Gretton, Borgwardt, Rasch, Schölkopf & Smola 2012, "A kernel two-sample
test", Lemma 6; Székely & Rizzo 2013, "Energy statistics: a class of statistics based
on distances".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.divergences._samples import sample_pair

__all__ = ["MMD_SCALES", "energy_distance", "median_bandwidth", "mmd"]

MMD_SCALES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Default bandwidths of ``mmd``, as multiples of the median pairwise distance."""

_MEDIAN_POINTS = 1024  # points of the pooled sample used by the median heuristic

Gram = Callable[[Tensor, Tensor], Tensor]


def _distances(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances (N, D), (M, D) -> (N, M); exact zeros on duplicates."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _mmd2_unbiased(gram: Gram, x: Tensor, y: Tensor) -> Tensor:
    """The U-statistic MMD²_u for a Gram-matrix function and samples (N, D), (M, D)."""
    n, m = x.shape[0], y.shape[0]
    k_xx, k_yy = gram(x, x), gram(y, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2.0 * gram(x, y).mean()


def median_bandwidth(x: Tensor, y: Tensor) -> Tensor:
    """The median heuristic: median of the pairwise distances ‖z_i − z_j‖ (i < j) of x ∪ y.

    Computed without gradient on at most 1024 evenly strided points of the pooled
    sample (N, D) ∪ (M, D); 1 if every distance is zero.

    Reference: Gretton et al. 2012, Section 8; Garreau, Jitkrittum & Kanagawa 2017,
    "Large sample analysis of the median heuristic".
    """
    z = torch.cat([x, y]).detach()
    z = z[:: -(-z.shape[0] // _MEDIAN_POINTS)]  # stride ⌈(N + M)/1024⌉
    i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    median = _distances(z, z)[i, j].median()
    return torch.where(median > 0, median, torch.ones_like(median))


def mmd(x: Tensor, y: Tensor, bandwidths: Sequence[float] | Tensor | None = None) -> Tensor:
    """Unbiased MMD²_u(P, Q) with a multi-scale Gaussian (RBF) kernel.

    k(a, b) = 1/S Σ_s exp(−‖a − b‖² / (2 h_s²)), a characteristic kernel, so
    MMD² = 0 iff P = Q. Default bandwidths h_s = MMD_SCALES × the median heuristic
    (0.25, 0.5, 1, 2, 4 times the median pairwise distance of the pooled sample).

    Args:
        x: samples of P, shape (N, *event_shape), N ≥ 2.
        y: samples of Q, shape (M, *event_shape), M ≥ 2.
        bandwidths: the h_s (> 0), or ``None`` for the default above.

    Returns:
        MMD²_u as a differentiable 0-dim tensor (it is the square, unbiased, and can
        be slightly negative).

    Reference: Gretton et al. 2012, "A kernel two-sample test", Eq. (3).
    """
    x, y = sample_pair(x, y, min_size=2)
    if bandwidths is None:
        h = median_bandwidth(x, y) * torch.tensor(MMD_SCALES, dtype=x.dtype, device=x.device)
    else:
        h = torch.as_tensor(bandwidths, dtype=x.dtype, device=x.device).flatten()
        if h.numel() == 0 or not (h > 0).all():
            raise InvalidInput(f"bandwidths: expected positive values, got {h.tolist()}")

    def gaussian_gram(a: Tensor, b: Tensor) -> Tensor:
        sq = _distances(a, b).square()  # (N, M)
        # one (N, M) matrix per scale keeps memory at O(NM) rather than O(NMS)
        return sum(torch.exp(-sq / (2.0 * h_s.square())) for h_s in h) / h.numel()

    return _mmd2_unbiased(gaussian_gram, x, y)


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased energy distance 𝓔(P, Q) = 2 E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖.

    𝓔 ≥ 0 with equality iff P = Q; in one dimension 𝓔 = 2 ∫ (F − G)² dx. This is
    the squared form (scipy's ``energy_distance`` reports √𝓔 of the V-statistic).

    Args:
        x: samples of P, shape (N, *event_shape), N ≥ 2.
        y: samples of Q, shape (M, *event_shape), M ≥ 2.

    Returns:
        The U-statistic as a differentiable 0-dim tensor (can be slightly negative).

    Reference: Székely & Rizzo 2013, "Energy statistics: a class of statistics based
    on distances", Eq. (2.1).
    """
    x, y = sample_pair(x, y, min_size=2)
    return _mmd2_unbiased(lambda a, b: -_distances(a, b), x, y)
