"""Monotonic univariate transforms applied entry by entry, with parameters given per entry.

A coupling or autoregressive layer is a *conditioner* (a network computing
parameters θ from the entries it may look at) plus one of these univariate
bijections z_i = τ(x_i; θ_i). They hold no weights of their own:

    forward(x, params) -> (z, log|∂τ/∂x|)      x: (…), params: (…, num_params), both outputs (…)
    inverse(z, params) -> (x, log|∂τ⁻¹/∂z|)

Swapping ``Affine`` for ``RationalQuadraticSpline`` turns RealNVP into a
coupling spline flow and MAF into an autoregressive spline flow.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from probgen.tensors import softmax_last

__all__ = ["Affine", "ElementwiseTransform", "RationalQuadraticSpline"]


class ElementwiseTransform(abc.ABC):
    """A family of monotonic increasing bijections τ(·; θ) of ℝ with ``num_params`` parameters.

    All-zero parameters give the identity, so conditioners whose last layer
    starts at zero start the flow at the identity.
    """

    num_params: int

    @abc.abstractmethod
    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """z = τ(x; θ) and log τ'(x; θ) elementwise: x (…), params (…, P) -> (…), (…)."""

    @abc.abstractmethod
    def inverse(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        """x = τ⁻¹(z; θ) and log (τ⁻¹)'(z; θ) elementwise: z (…), params (…, P)."""


@dataclass(frozen=True)
class Affine(ElementwiseTransform):
    """z = x · exp(s) + t with θ = (t, a) and s = c · tanh(a / c), so |s| < c.

    log|∂z/∂x| = s. The soft bound c (``scale_bound``) keeps deep stacks
    stable without changing the family near the identity. This is the
    univariate transform of RealNVP (Dinh, Sohl-Dickstein & Bengio 2017,
    "Density estimation using Real NVP") and of MAF (Papamakarios, Pavlakou &
    Murray 2017, "Masked Autoregressive Flow for Density Estimation").
    """

    scale_bound: float = 3.0
    num_params: ClassVar[int] = 2

    def _shift_log_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, raw = params.unbind(-1)
        return shift, self.scale_bound * torch.tanh(raw / self.scale_bound)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(params)
        return x * torch.exp(log_scale) + shift, log_scale

    def inverse(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(params)
        return (z - shift) * torch.exp(-log_scale), -log_scale


@dataclass(frozen=True)
class RationalQuadraticSpline(ElementwiseTransform):
    """Monotonic rational-quadratic spline on [-B, B] with K bins, identity outside.

    θ holds K unnormalised widths, K heights and K−1 interior knot
    derivatives (the two boundary derivatives are 1, matching the identity
    tails), so ``num_params`` = 3K − 1. In bin k with knots (x_k, y_k),
    width w_k, height h_k, slope s_k = h_k / w_k, knot derivatives δ_k,
    δ_{k+1} and ξ = (x − x_k) / w_k ∈ [0, 1]:

        D(ξ)  = s_k + (δ_{k+1} + δ_k − 2 s_k) ξ(1−ξ)
        τ(x)  = y_k + h_k [s_k ξ² + δ_k ξ(1−ξ)] / D(ξ)
        τ'(x) = s_k² [δ_{k+1} ξ² + 2 s_k ξ(1−ξ) + δ_k (1−ξ)²] / D(ξ)²

    and τ⁻¹ solves the quadratic a ξ² + b ξ + c = 0 for ξ in closed form.
    Widths and heights are at least ``min_bin`` (as a fraction of 2B) and
    derivatives at least ``min_derivative``.

    Reference: Durkan, Bekasov, Murray & Papamakarios (2019), "Neural Spline
    Flows"; Gregory & Delbourgo (1982), "Piecewise rational quadratic
    interpolation to monotonic data".
    """

    bins: int = 8
    bound: float = 5.0
    min_bin: float = 1e-3
    min_derivative: float = 1e-3

    @property
    def num_params(self) -> int:  # type: ignore[override]
        return 3 * self.bins - 1

    def _knot_positions(self, raw: Tensor) -> Tensor:
        """(…, K) unnormalised sizes -> (…, K+1) knots from -B to B."""
        sizes = self.min_bin + (1 - self.min_bin * self.bins) * softmax_last(raw)
        knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0)) * 2 * self.bound - self.bound
        # pin the end knots exactly, so rounding never leaves a gap at ±B
        return torch.cat(
            [
                torch.full_like(knots[..., :1], -self.bound),
                knots[..., 1:-1],
                torch.full_like(knots[..., :1], self.bound),
            ],
            dim=-1,
        )

    def _spline(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Knots x (…, K+1), knots y (…, K+1) and derivatives (…, K+1)."""
        k = self.bins
        xs = self._knot_positions(params[..., :k])
        ys = self._knot_positions(params[..., k : 2 * k])
        # shift so that a zero parameter gives derivative exactly 1 (identity)
        offset = math.log(math.expm1(1 - self.min_derivative))
        inner = self.min_derivative + F.softplus(params[..., 2 * k :] + offset)
        one = torch.ones_like(inner[..., :1])
        return xs, ys, torch.cat([one, inner, one], dim=-1)

    @staticmethod
    def _bin(knots: Tensor, v: Tensor) -> Tensor:
        """Index (…, 1) of the bin of each value v (…) among the knots (…, K+1)."""
        return (v[..., None] >= knots[..., 1:-1]).sum(dim=-1, keepdim=True)

    @staticmethod
    def _gather(t: Tensor, idx: Tensor) -> Tensor:
        return torch.gather(t, -1, idx).squeeze(-1)

    def _bin_geometry(
        self, xs: Tensor, ys: Tensor, derivs: Tensor, idx: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x_k, y_k, w_k, h_k, δ_k, δ_{k+1} of the selected bins, each (…)."""
        x_k, y_k = self._gather(xs, idx), self._gather(ys, idx)
        w = self._gather(xs, idx + 1) - x_k
        h = self._gather(ys, idx + 1) - y_k
        return x_k, y_k, w, h, self._gather(derivs, idx), self._gather(derivs, idx + 1)

    @staticmethod
    def _log_derivative(xi: Tensor, s: Tensor, d0: Tensor, d1: Tensor) -> Tensor:
        """log τ'(x) at relative position ξ in a bin of slope s and end derivatives d0, d1."""
        mix = xi * (1 - xi)
        den = s + (d1 + d0 - 2 * s) * mix
        num = s**2 * (d1 * xi**2 + 2 * s * mix + d0 * (1 - xi) ** 2)
        return torch.log(num) - 2 * torch.log(den)

    def forward(self, x: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        xs, ys, derivs = self._spline(params)
        inside = (x >= -self.bound) & (x <= self.bound)
        xc = x.clamp(-self.bound, self.bound)
        x_k, y_k, w, h, d0, d1 = self._bin_geometry(xs, ys, derivs, self._bin(xs, xc))
        s = h / w
        xi = ((xc - x_k) / w).clamp(0, 1)
        mix = xi * (1 - xi)
        y = y_k + h * (s * xi**2 + d0 * mix) / (s + (d1 + d0 - 2 * s) * mix)
        logd = self._log_derivative(xi, s, d0, d1)
        return torch.where(inside, y, x), torch.where(inside, logd, torch.zeros_like(logd))

    def inverse(self, z: Tensor, params: Tensor) -> tuple[Tensor, Tensor]:
        xs, ys, derivs = self._spline(params)
        inside = (z >= -self.bound) & (z <= self.bound)
        zc = z.clamp(-self.bound, self.bound)
        x_k, y_k, w, h, d0, d1 = self._bin_geometry(xs, ys, derivs, self._bin(ys, zc))
        s = h / w
        dz = zc - y_k
        curvature = d1 + d0 - 2 * s
        a = h * (s - d0) + dz * curvature
        b = h * d0 - dz * curvature
        c = -s * dz
        # the root in [0, 1], in the form that avoids cancellation when a ≈ 0
        xi = (2 * c / (-b - torch.sqrt((b**2 - 4 * a * c).clamp_min(0)))).clamp(0, 1)
        x = x_k + xi * w
        logd = -self._log_derivative(xi, s, d0, d1)
        return torch.where(inside, x, z), torch.where(inside, logd, torch.zeros_like(logd))
