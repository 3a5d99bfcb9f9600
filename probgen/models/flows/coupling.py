"""Coupling layers: half of the entries condition an elementwise bijection of the other half.

A conditional coupling layer (for p(x | c)) feeds the condition's features
to the conditioner beside x_A, θ = θ([x_A, c]), as in the conditional flows
of Winkler, Worrall, Hoogeboom & Welling (2019), "Learning Likelihoods with
Conditional Normalizing Flows", and Ardizzone, Lüth, Kruse, Rother & Köthe
(2019), "Guided Image Generation with Conditional Invertible Neural
Networks": for every fixed c the layer is a coupling bijection of x.

Reference: Dinh, Sohl-Dickstein & Bengio (2017), "Density estimation using
Real NVP"; Durkan, Bekasov, Murray & Papamakarios (2019), "Neural Spline Flows".
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.flows.base import Transform
from probgen.models.flows.elementwise import ElementwiseTransform
from probgen.tensors import sum_events

__all__ = ["Coupling", "half_mask", "with_context"]


def with_context(a: Tensor, context: Tensor | None, width: int, layer: str) -> Tensor:
    """[a, c] along dimension 1: a (B, C, …) and c (B, w) broadcast to (B, w, …).

    Raises ``InvalidInput`` when c is missing or of the wrong shape for a layer
    built with context width ``width`` > 0, or given to one built with 0.
    """
    if not width:
        if context is not None:
            raise InvalidInput(f"{layer}: got a context but was built with context=0")
        return a
    if context is None or tuple(context.shape) != (a.shape[0], width):
        got = None if context is None else tuple(context.shape)
        raise InvalidInput(f"{layer}: expected context of shape ({a.shape[0]}, {width}), got {got}")
    c = context.to(a.dtype).reshape(*context.shape, *(1,) * (a.dim() - 2))
    return torch.cat([a, c.expand(-1, -1, *a.shape[2:])], dim=1)


def half_mask(features: int) -> Tensor:
    """Boolean mask (features,) that keeps the first ⌊features/2⌋ entries as the condition."""
    return torch.arange(features) < features // 2


class Coupling(Transform):
    """Coupling layer z_A = x_A, z_B = τ(x_B; θ([x_A, c])) along dimension 1.

    The split is along the first event dimension: the features of vectors
    (B, D) or the channels of images (B, C, H, W). With ``mask`` true on the
    set A, the conditioner ``network(|A| + w, |B|·P)`` maps x_A (B, |A|, …),
    concatenated with the context c (B, w) along dimension 1 (broadcast over
    the positions of an image), to the P parameters of ``univariate`` for
    every entry of x_B, (B, |B|·P, …). The Jacobian is block triangular, so

        log|det ∂z/∂x| = Σ_{i ∈ B} log τ'(x_i; θ([x_A, c])).

    Affine τ gives RealNVP / Glow coupling; a rational-quadratic spline gives
    the coupling neural spline flow.

    Args:
        mask: boolean (C,), true for the conditioning entries A (neither A nor
            its complement may be empty).
        univariate: the elementwise bijection τ and its parameter count P.
        network: factory ``(in_channels, out_channels) -> nn.Module``, e.g.
            ``functools.partial(MLP, hidden=(64, 64))``.
        context: width w of the context the conditioner reads (the condition's
            features); 0 for an unconditional layer.
    """

    def __init__(
        self,
        mask: Tensor,
        univariate: ElementwiseTransform,
        network: Callable[[int, int], nn.Module],
        context: int = 0,
    ) -> None:
        super().__init__()
        mask = torch.as_tensor(mask, dtype=torch.bool)
        kept, changed = mask.nonzero().flatten(), (~mask).nonzero().flatten()
        if mask.dim() != 1 or not len(kept) or not len(changed):
            raise InvalidInput(
                f"Coupling: expected a 1-D mask with both true and false entries, got {mask}"
            )
        self.univariate = univariate
        self.context = context
        self.register_buffer("kept", kept)
        self.register_buffer("changed", changed)
        self.register_buffer("restore", torch.argsort(torch.cat([kept, changed])))
        self.net = network(len(kept) + context, len(changed) * univariate.num_params)

    def _params(self, a: Tensor, context: Tensor | None) -> Tensor:
        """θ([x_A, c]) as (B, |B|, …, P): the parameter axis moved last."""
        h = self.net(with_context(a, context, self.context, "Coupling"))  # (B, |B|·P, …)
        h = h.reshape(h.shape[0], len(self.changed), self.univariate.num_params, *h.shape[2:])
        return h.movedim(2, -1)

    def _couple(
        self,
        v: Tensor,
        context: Tensor | None,
        step: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    ) -> tuple[Tensor, Tensor]:
        """Apply ``step`` (τ or τ⁻¹) to the B entries, conditioned on the A entries."""
        a, b = v.index_select(1, self.kept), v.index_select(1, self.changed)
        b, logdet = step(b, self._params(a, context))
        return torch.cat([a, b], dim=1).index_select(1, self.restore), sum_events(logdet)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(x, context, self.univariate.forward)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._couple(z, context, self.univariate.inverse)
