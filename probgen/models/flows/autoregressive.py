"""Masked autoregressive layers (MAF), whose inverse is the inverse autoregressive flow (IAF).

A conditional layer (for p(x | c)) gives the MADE the condition's features
as a context input of degree 0, which reaches every output: θ_i = θ_i(x_{<i}, c)
(Papamakarios et al. 2017, §3.4 "Conditional MAF"; the MADE network of
Germain et al. 2015 with the context as extra inputs).

Reference: Papamakarios, Pavlakou & Murray (2017), "Masked Autoregressive Flow
for Density Estimation"; Kingma, Salimans, Jozefowicz, Chen, Sutskever &
Welling (2016), "Improved Variational Inference with Inverse Autoregressive
Flow"; Germain, Gregor, Murray & Larochelle (2015), "MADE".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from probgen.models.flows.base import Transform
from probgen.models.flows.elementwise import ElementwiseTransform
from probgen.nn.masked import MADE

__all__ = ["MaskedAutoregressive"]


class MaskedAutoregressive(Transform):
    """Autoregressive layer z_i = τ(x_i; θ_i(x_{<i}, c)) with θ computed by one MADE pass.

    The Jacobian ∂z/∂x is triangular (in the order π) for every context c, so

        log|det ∂z/∂x| = Σ_i log τ'(x_i; θ_i(x_{<i}, c)).

    ``forward`` (density direction) takes one network pass; ``inverse``
    (sampling direction) takes D passes, x_i = τ⁻¹(z_i; θ_i(x_{<i})), each
    fixing the next entry in the order. ``Inverse(MaskedAutoregressive(...))``
    is the IAF layer, fast to sample and slow to evaluate. Inputs (B, D), and
    context (B, w) when built with ``context=w``.

    Args:
        features: D.
        univariate: the elementwise bijection τ (``Affine`` for MAF,
            ``RationalQuadraticSpline`` for the autoregressive spline flow).
        hidden: hidden widths of the MADE conditioner.
        order: the autoregressive order π (``order[j]`` = rank of entry j);
            default 0, 1, …, D-1.
        activation: hidden non-linearity of the MADE.
        zero_last: start the conditioner's output at zero (the layer at the identity).
        context: width w of the context (the condition's features); 0 for none.
    """

    def __init__(
        self,
        features: int,
        univariate: ElementwiseTransform,
        hidden: Sequence[int] = (64, 64),
        order: Sequence[int] | Tensor | None = None,
        activation: Callable[[], nn.Module] = nn.ReLU,
        zero_last: bool = True,
        context: int = 0,
    ) -> None:
        super().__init__()
        self.features = features
        self.univariate = univariate
        self.made = MADE(
            features,
            hidden,
            univariate.num_params,
            context=context,
            order=order,
            activation=activation,
            zero_last=zero_last,
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z, logdet = self.univariate.forward(x, self.made(x, context))  # (B, D), (B, D)
        return z, logdet.sum(dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = z.new_zeros(z.shape)
        logdet = z.new_zeros(z.shape)
        for _ in range(self.features):  # pass k fixes the entry of rank k
            x, logdet = self.univariate.inverse(z, self.made(x, context))
        return x, logdet.sum(dim=1)
