"""The transform contract of every flow layer, and the two ways of combining layers.

A transform is a bijection f between data space and latent space. Following
the normalizing direction (as in Papamakarios et al. 2021), ``forward`` maps a
data batch x to its latent code z = f(x) and returns the per-example
log-absolute-determinant of the Jacobian; ``inverse`` maps z back to x and
returns the log-determinant of the inverse's Jacobian:

    forward(x, context) -> (z, log|det ∂f(x; c)/∂x|)     x: (B, *in_shape), logdet: (B,)
    inverse(z, context) -> (x, log|det ∂f⁻¹(z; c)/∂z|)   z: (B, *out_shape), logdet: (B,)

so that log|det ∂f⁻¹/∂z| = −log|det ∂f/∂x| at z = f(x). This is the
``torch.distributions.Transform`` contract (``_call``, ``_inverse``,
``log_abs_det_jacobian``) with the Jacobian term returned together with the
value, because every layer computes both in one pass.

``context`` (B, width) is the condition c of a conditional flow p(x | c), as
features (``ConditionSpec.features``: one-hot classes or a flattened vector),
or None. f(·; c) is a bijection of x for every fixed c; layers with a
conditioner network read c there (coupling, masked autoregressive), the
others ignore it, and compositions pass it to every layer.

Reference: Papamakarios, Nalisnick, Rezende, Mohamed & Lakshminarayanan
(2021), "Normalizing Flows for Probabilistic Modeling and Inference".
"""

from __future__ import annotations

import abc
from collections.abc import Iterable

from torch import Tensor, nn

__all__ = ["Compose", "Inverse", "Transform"]


class Transform(nn.Module, abc.ABC):
    """A bijection z = f(x) with a tractable log|det ∂f/∂x|; see the module docstring.

    Layers that own parameters or networks register them as usual for an
    ``nn.Module``; parameter-free layers (permutations, squeezes) are modules
    too so that every layer composes in ``nn.ModuleList``.
    """

    @abc.abstractmethod
    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z = f(x; c) and log|det ∂f/∂x| per example: (B, *in), (B, w) -> ((B, *out), (B,))."""

    @abc.abstractmethod
    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """x = f⁻¹(z; c) and log|det ∂f⁻¹/∂z| per example: (B, *out), (B, w) -> ((B, *in), (B,))."""


class Compose(Transform):
    """The composition f = f_K ∘ … ∘ f_1, applying ``transforms`` in order.

    log|det ∂f/∂x| = Σ_k log|det ∂f_k/∂h_{k-1}| with h_0 = x, h_k = f_k(h_{k-1});
    the inverse applies the inverses in reverse order.
    """

    def __init__(self, transforms: Iterable[Transform]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, logdet = t(x, context)
            total = total + logdet
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[0])
        for t in reversed(self.transforms):
            z, logdet = t.inverse(z, context)
            total = total + logdet
        return z, total


class Inverse(Transform):
    """The inverse bijection f⁻¹ of ``transform``: its ``forward`` is f's ``inverse``.

    Turns a layer that is fast in one direction into one that is fast in the
    other, e.g. the inverse autoregressive flow (IAF) is the ``Inverse`` of a
    masked autoregressive transform (Kingma et al. 2016).
    """

    def __init__(self, transform: Transform) -> None:
        super().__init__()
        self.transform = transform

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform.inverse(x, context)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.transform(z, context)
