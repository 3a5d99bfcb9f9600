"""Mode-collapse metrics on mixtures with known modes (ring of 8, grid of 25 Gaussians).

Given samples x_1…x_N of a model and the K modes (μ_k, σ_k, π_k) of the true
mixture, each sample is assigned to its nearest mode in standardised distance
d_n = min_k ‖x_n − μ_k‖ / σ_k, and

- a sample is **high quality** when d_n < 3 (within three standard deviations
  of its nearest mode);
- a mode is **covered** when at least ``min_count`` high-quality samples are
  assigned to it (``min_count = 1`` as in the PacGAN evaluation: a mode is
  captured if any high-quality sample lands on it);
- the **reverse KL** is KL(q̂ ‖ π) = Σ_k q̂_k ln(q̂_k / π_k), where q̂ is the
  histogram of the high-quality samples over the modes (the model's law of
  modes) and π the true weights. Missing modes contribute 0 (0 ln 0 = 0), so the
  reverse KL stays finite under collapse: a model spreading evenly over m of K
  equal modes scores ln(K/m).

For exact samples of the mixture itself, q̂ is a multinomial histogram and
2 N_hq KL(q̂ ‖ π) is the G-test statistic, asymptotically χ²_{K−1}; in 2-D the
expected high-quality fraction of isotropic components is P(χ²_2 < 9) = 1 − e^{−9/2}.

References: Srivastava et al. 2017, "VEEGAN: Reducing mode collapse in GANs
using implicit variational learning", Section 5.1; Lin et al. 2018, "PacGAN:
The power of two samples in generative adversarial networks", Section 5.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.distributions import GaussianMixture
from probgen.tensors import flatten_events

__all__ = ["ModeReport", "assign_modes", "mode_metrics", "mode_metrics_for"]


@dataclass(frozen=True)
class ModeReport:
    """Mode-collapse figures of one set of samples.

    Attributes:
        modes_covered: modes with at least ``min_count`` high-quality samples.
        n_modes: K.
        high_quality: fraction of samples within ``threshold`` σ of their nearest mode.
        reverse_kl: KL(q̂ ‖ π) in nats (``inf`` when no sample is high quality).
        counts: high-quality samples per mode, shape (K,).
    """

    modes_covered: int
    n_modes: int
    high_quality: float
    reverse_kl: float
    counts: Tensor

    def as_dict(self) -> dict[str, float]:
        """The three scalar figures, for tables and JSON."""
        return {
            "modes": float(self.modes_covered),
            "high_quality": self.high_quality,
            "reverse_kl": self.reverse_kl,
        }


def assign_modes(samples: Tensor, means: Tensor, stds: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest mode in standardised distance: (N, D) samples, (K, D) means, (K,) σ.

    Returns the index k_n (N,) of argmin_k ‖x_n − μ_k‖/σ_k and that distance d_n (N,).
    Events of any shape are flattened to D entries.
    """
    x = flatten_events(samples)
    mu = flatten_events(means).to(x)
    if mu.shape[1] != x.shape[1]:
        raise InvalidInput(
            f"samples: expected {mu.shape[1]} entries per example (like the means), "
            f"got {x.shape[1]}"
        )
    sigma = stds.to(x).reshape(-1)
    if sigma.shape[0] != mu.shape[0] or not bool((sigma > 0).all()):
        raise InvalidInput(
            f"stds: expected {mu.shape[0]} positive values, got shape {tuple(stds.shape)}"
        )
    d = torch.cdist(x, mu) / sigma  # (N, K)
    dist, nearest = d.min(dim=1)
    return nearest, dist


def mode_metrics(
    samples: Tensor,
    means: Tensor,
    stds: Tensor,
    weights: Tensor | None = None,
    *,
    threshold: float = 3.0,
    min_count: int = 1,
) -> ModeReport:
    """Modes covered, high-quality fraction and reverse KL (see the module docstring).

    Args:
        samples: model samples, (N, *event_shape).
        means: μ_k, (K, *event_shape).
        stds: σ_k, (K,).
        weights: π_k, (K,), normalised here; uniform if None.
        threshold: a sample is high quality when ‖x − μ_k‖/σ_k < threshold (3 in
            VEEGAN and PacGAN).
        min_count: high-quality samples a mode needs to count as covered.
    """
    if not isinstance(samples, Tensor) or samples.dim() < 2 or len(samples) == 0:
        raise InvalidInput("samples: expected a non-empty tensor of shape (N, *event_shape)")
    if not bool(torch.isfinite(samples).all()):
        raise InvalidInput("samples: contain non-finite values (NaN or inf)")
    if min_count < 1 or not threshold > 0:
        raise InvalidInput(
            f"expected min_count >= 1 and threshold > 0, got {min_count}, {threshold}"
        )
    nearest, dist = assign_modes(samples, means, stds)
    k = len(means)
    pi = torch.full((k,), 1.0 / k, dtype=torch.float64) if weights is None else weights
    pi = pi.detach().to(torch.float64).cpu()
    if tuple(pi.shape) != (k,) or bool((pi <= 0).any()):
        raise InvalidInput(f"weights: expected {k} positive values, got shape {tuple(pi.shape)}")
    pi = pi / pi.sum()
    good = dist < threshold
    counts = torch.bincount(nearest[good].cpu(), minlength=k)
    n_good = int(counts.sum())
    if n_good == 0:
        reverse_kl = math.inf
    else:
        q = counts.to(torch.float64) / n_good
        reverse_kl = float(torch.xlogy(q, q / pi).sum().clamp_min(0.0))
    return ModeReport(
        modes_covered=int((counts >= min_count).sum()),
        n_modes=k,
        high_quality=n_good / len(samples),
        reverse_kl=reverse_kl,
        counts=counts,
    )


def mode_metrics_for(
    mixture: GaussianMixture, samples: Tensor, *, threshold: float = 3.0, min_count: int = 1
) -> ModeReport:
    """``mode_metrics`` against a ``GaussianMixture``'s means, component σ_k and weights."""
    return mode_metrics(
        samples,
        mixture.means,
        mixture.component_stds,
        mixture.weights,
        threshold=threshold,
        min_count=min_count,
    )
