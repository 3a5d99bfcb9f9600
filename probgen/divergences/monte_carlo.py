"""Monte Carlo estimates of KL, Jensen–Shannon and any f-divergence from exact densities.

They work for any two objects with ``log_prob(x) -> (B,)`` and
``sample(n, generator=None) -> (n, *event_shape)`` (analytic distributions, flows,
autoregressive models), and return a ``probgen.core.Estimate``: the sample mean of
i.i.d. per-draw values and its standard error s/√n.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from probgen.core import Estimate, InvalidInput
from probgen.divergences.f_divergences import FDivergence

__all__ = ["Density", "f_divergence_monte_carlo", "js_monte_carlo", "kl_monte_carlo"]

_CHUNK = 8192  # draws per sample/log_prob call, to bound memory for large n


class Density(Protocol):
    """Anything with an exact density and an exact sampler."""

    def log_prob(self, x: Tensor) -> Tensor: ...

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor: ...


def _per_draw(n: int, value: Callable[[int], Tensor]) -> Tensor:
    """Concatenate ``value(k)`` over chunks of at most ``_CHUNK`` draws, n in total."""
    if n < 2:
        raise InvalidInput(f"expected n >= 2 Monte Carlo draws, got {n}")
    with torch.no_grad():
        return torch.cat([value(min(_CHUNK, n - start)) for start in range(0, n, _CHUNK)])


def kl_monte_carlo(
    p: Density, q: Density, n: int, generator: torch.Generator | None = None
) -> Estimate:
    """KL(p ‖ q) ≈ 1/n Σ_i [ln p(x_i) − ln q(x_i)], x_i ~ p, with its standard error.

    Unbiased; the standard error is finite when E_p[(ln p/q)²] < ∞.

    Reference: Kullback & Leibler 1951, "On information and sufficiency".
    """

    def log_ratio(k: int) -> Tensor:
        x = p.sample(k, generator=generator)
        return p.log_prob(x) - q.log_prob(x)

    return Estimate.from_samples(_per_draw(n, log_ratio), kind="estimate")


def js_monte_carlo(
    p: Density, q: Density, n: int, generator: torch.Generator | None = None
) -> Estimate:
    """The Jensen–Shannon divergence JSD(p, q) ∈ [0, ln 2] in nats, by Monte Carlo.

    JSD = ½ E_p[ln(p/m)] + ½ E_q[ln(q/m)] with the mixture m = (p + q)/2. With
    x_i ~ p and y_i ~ q (n each) the estimate averages the i.i.d. pair values
    ½ [ln 2 − softplus(ln q(x_i) − ln p(x_i))] + ½ [ln 2 − softplus(ln p(y_i) − ln q(y_i))],
    each ≤ ln 2, so the estimate never exceeds ln 2. This is the true JSD, half of
    the GAN divergence (``GANJensenShannon``).

    Reference: Lin 1991, "Divergence measures based on the Shannon entropy".
    """

    def pair_value(k: int) -> Tensor:
        x = p.sample(k, generator=generator)
        y = q.sample(k, generator=generator)
        from_p = math.log(2.0) - F.softplus(q.log_prob(x) - p.log_prob(x))
        from_q = math.log(2.0) - F.softplus(p.log_prob(y) - q.log_prob(y))
        return 0.5 * (from_p + from_q)

    return Estimate.from_samples(_per_draw(n, pair_value), kind="estimate")


def f_divergence_monte_carlo(
    divergence: FDivergence,
    p: Density,
    q: Density,
    n: int,
    generator: torch.Generator | None = None,
) -> Estimate:
    """D_f(p ‖ q) ≈ 1/n Σ_i f(p(x_i)/q(x_i)), x_i ~ q, with its standard error.

    Unbiased; the standard error is finite when E_q[f(p/q)²] < ∞ (for KL and χ² this
    needs q to have heavier tails than p).

    Reference: Ali & Silvey 1966; Csiszár 1967, "Information-type measures of
    difference of probability distributions and indirect observations".
    """

    def value(k: int) -> Tensor:
        x = q.sample(k, generator=generator)
        return divergence.f(torch.exp(p.log_prob(x) - q.log_prob(x)))

    return Estimate.from_samples(_per_draw(n, value), kind="estimate")
