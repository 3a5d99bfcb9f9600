"""Sample metrics on features: Fréchet distance, KID, precision/recall, density/coverage.

Each compares model samples Y = {y_j}_{j=1}^M with data X = {x_i}_{i=1}^N through a
feature network φ (``probgen.evaluate.features``; ``None`` picks
``default_features(event_shape)``: the shipped digit classifiers for images,
reading them on their training scale, the raw coordinates otherwise; pass
``default_features(event_shape, levels=K)`` for images of K levels, as
``evaluate_model`` does). The kernel and transport distances on raw
samples (MMD, energy distance, sliced Wasserstein) live in
``probgen.divergences``.

    FD   = ‖μ_X − μ_Y‖² + tr(Σ_X + Σ_Y − 2 (Σ_X Σ_Y)^{1/2})   (Gaussian fits of φ(X), φ(Y))
    KID  = unbiased MMD² with k(a, b) = (aᵀb / F + 1)³, averaged over random subsets

With r_k(a) the distance from a to its k-th nearest neighbour within its own
set (the point itself excluded) and B(a, r) the open ball:

    precision = 1/M Σ_j 1[∃ i: y_j ∈ B(x_i, r_k(x_i))]     (samples on the data manifold)
    recall    = 1/N Σ_i 1[∃ j: x_i ∈ B(y_j, r_k(y_j))]     (data on the sample manifold)
    density   = 1/(kM) Σ_j Σ_i 1[y_j ∈ B(x_i, r_k(x_i))]
    coverage  = 1/N Σ_i 1[∃ j: y_j ∈ B(x_i, r_k(x_i))]

A set against itself scores FD = 0 and precision = recall = density = coverage = 1
exactly: each point lies in its own ball, and with open balls its k-th neighbour
does not (so density counts k points per ball, itself and k − 1 neighbours).

References: Heusel et al. 2017, "GANs trained by a two time-scale update rule
converge to a local Nash equilibrium" (FID); Bińkowski et al. 2018, "Demystifying
MMD GANs" (KID); Kynkäänniemi et al. 2019, "Improved precision and recall metric
for assessing generative models"; Naeem et al. 2020, "Reliable fidelity and
diversity metrics for generative models".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from probgen.core import Estimate, InvalidInput
from probgen.divergences._samples import sample_pair
from probgen.evaluate.features import default_features

__all__ = [
    "PRDC",
    "coverage",
    "density",
    "embed",
    "frechet_distance",
    "kernel_inception_distance",
    "prdc",
    "precision",
    "recall",
]

_BATCH = 1000  # examples per feature-network call


def embed(x: Tensor, features: nn.Module | None = None) -> Tensor:
    """φ(x) for x (N, *event_shape) in batches, without gradients: (N, F)."""
    net = default_features(x.shape[1:]) if features is None else features
    with torch.no_grad():
        return torch.cat([net(chunk) for chunk in x.split(_BATCH)])


class _Precomputed(nn.Module):
    """Hands already computed features (N, F) to torchmetrics unchanged."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, f: Tensor) -> Tensor:
        return f


def _feature_pair(
    samples: Tensor, data: Tensor, features: nn.Module | None
) -> tuple[Tensor, Tensor]:
    samples, data = _check_pair(samples, data)
    net = default_features(samples.shape[1:]) if features is None else features
    return embed(samples, net).double(), embed(data, net).double()


def _check_pair(samples: Tensor, data: Tensor) -> tuple[Tensor, Tensor]:
    """Validate two batches of one event shape (≥ 2 each); returns them unflattened."""
    sample_pair(samples, data, min_size=2)
    dtype = torch.promote_types(samples.dtype, data.dtype)
    return samples.to(dtype), data.to(dtype)


def frechet_distance(samples: Tensor, data: Tensor, features: nn.Module | None = None) -> Tensor:
    """The Fréchet distance between Gaussian fits of φ(samples) (M, …) and φ(data) (N, …).

    FD = ‖μ_X − μ_Y‖² + tr(Σ_X + Σ_Y − 2 (Σ_X Σ_Y)^{1/2}), unbiased covariances,
    computed in float64 by torchmetrics' ``FrechetInceptionDistance``; with
    Inception features it is the FID. A 0-dim float64 tensor ≥ 0 (up to rounding).
    """
    fy, fx = _feature_pair(samples, data, features)
    metric = FrechetInceptionDistance(feature=_Precomputed(fx.shape[1]))
    metric.update(fx, real=True)
    metric.update(fy, real=False)
    return metric.compute().double()


def kernel_inception_distance(
    samples: Tensor,
    data: Tensor,
    features: nn.Module | None = None,
    *,
    subsets: int = 50,
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Estimate:
    """KID: unbiased MMD² of φ(samples) and φ(data) with the cubic polynomial kernel.

    k(a, b) = (aᵀb / F + 1)³ over F features, averaged over ``subsets`` random
    subsets of min(``subset_size``, M, N) examples of each set (default
    min(1000, M/2, N/2), so that subsets differ; torchmetrics'
    ``KernelInceptionDistance``; subsets drawn from ``generator``). ``stderr`` is
    the standard deviation over subsets (a conservative error). Zero in
    expectation when the two laws are equal.
    """
    fy, fx = _feature_pair(samples, data, features)
    size = min(len(fx), len(fy))
    size = min(1000, max(2, size // 2)) if subset_size is None else min(subset_size, size)
    with warnings.catch_warnings():  # the features are ours and already in memory
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=_Precomputed(fx.shape[1]), subsets=subsets, subset_size=size
        )
    metric.update(fx, real=True)
    metric.update(fy, real=False)
    seed = int(torch.randint(2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return Estimate(float(mean), float(std), kind="estimate")


@dataclass(frozen=True)
class PRDC:
    """Precision, recall, density and coverage of one sample set (each in [0, 1]; density ≥ 0)."""

    precision: float
    recall: float
    density: float
    coverage: float

    def as_dict(self) -> dict[str, float]:
        """The four figures by name, for tables and JSON."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "density": self.density,
            "coverage": self.coverage,
        }


def _distances(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances (P, F), (Q, F) -> (P, Q), computed entry by entry.

    Not through ‖a‖² + ‖b‖² − 2aᵀb: the radii and the ball tests must use one
    exact, symmetric formula, or a set compared with itself finds its k-th
    neighbour inside an open ball by rounding.
    """
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _knn_radii(points: Tensor, k: int) -> Tensor:
    """Distance from each point (P, F) to its k-th nearest neighbour, itself excluded: (P,)."""
    # the k + 1 smallest of each row include the point itself, at distance 0
    return _distances(points, points).kthvalue(k + 1, dim=1).values


def prdc(samples: Tensor, data: Tensor, k: int = 5, features: nn.Module | None = None) -> PRDC:
    """Precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020).

    Args:
        samples: model samples Y, (M, *event_shape), M > k.
        data: real examples X, (N, *event_shape), N > k.
        k: the neighbour defining each ball's radius (5 in both papers).
        features: φ (default ``default_features``).

    See the module docstring for the formulas. Exact k-nearest-neighbour radii from
    the full distance matrices (memory O((M + N)²)); returns a ``PRDC``.
    """
    if not (isinstance(k, int) and k >= 1):
        raise InvalidInput(f"k: expected an integer >= 1, got {k!r}")
    fy, fx = _feature_pair(samples, data, features)
    if min(len(fx), len(fy)) <= k:
        raise InvalidInput(
            f"prdc: expected more than k = {k} examples in each set, got {len(fy)} and {len(fx)}"
        )
    d_yx = _distances(fy, fx)  # (M, N)
    y_in_x = d_yx < _knn_radii(fx, k)[None, :]  # y_j in the ball of x_i
    x_in_y = d_yx.T < _knn_radii(fy, k)[None, :]  # x_i in the ball of y_j, (N, M)
    return PRDC(
        precision=y_in_x.any(dim=1).double().mean().item(),
        recall=x_in_y.any(dim=1).double().mean().item(),
        density=y_in_x.sum().item() / (k * len(fy)),
        coverage=y_in_x.any(dim=0).double().mean().item(),
    )


def precision(samples: Tensor, data: Tensor) -> float:
    """``prdc(samples, data).precision`` (k = 5, default features)."""
    return prdc(samples, data).precision


def recall(samples: Tensor, data: Tensor) -> float:
    """``prdc(samples, data).recall`` (k = 5, default features)."""
    return prdc(samples, data).recall


def density(samples: Tensor, data: Tensor) -> float:
    """``prdc(samples, data).density`` (k = 5, default features)."""
    return prdc(samples, data).density


def coverage(samples: Tensor, data: Tensor) -> float:
    """``prdc(samples, data).coverage`` (k = 5, default features)."""
    return prdc(samples, data).coverage
