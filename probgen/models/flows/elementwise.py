"""Monotonic univariate transforms applied entry by entry, with parameters given per entry.

A coupling or autoregressive layer is a *conditioner* (a network computing
parameters θ from the entries it may look at) plus one of these univariate
bijections z_i = τ(x_i; θ_i). They hold no weights of their own:

    forward(x, params) -> (z, log|∂τ/∂x|)      x: (…), params: (…, num_params), both outputs (…)
    inverse(z, params) -> (x, log|∂τ⁻¹/∂z|)

Swapping ``Affine`` for ``RationalQuadraticSpline`` (``spline.py``) turns RealNVP into a
coupling spline flow and MAF into an autoregressive spline flow.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

__all__ = ["Affine", "ElementwiseTransform"]


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
