"""Ways to keep a Wasserstein critic (approximately) 1-Lipschitz: weight clipping, gradient penalty.

The Kantorovich–Rubinstein duality W_1(P, Q) = sup_{‖V‖_L ≤ 1} E_P[V] − E_Q[V]
holds only over 1-Lipschitz critics, so a Wasserstein GAN constrains its
critic. A constraint acts at two moments of the critic's step: ``prepare``
runs before the critic is evaluated (weight clipping projects the weights
there, which is the same as clipping after every optimizer step), and
``penalty`` is added to the critic's loss (the gradient penalty).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.tensors import append_dims, flatten_events

__all__ = ["GradientPenalty", "LipschitzConstraint", "NoConstraint", "WeightClipping"]


class LipschitzConstraint:
    """A constraint on the critic; the base class constrains nothing."""

    def prepare(self, critic: nn.Module) -> None:
        """Act on the critic's parameters before it is evaluated in a loss."""

    def penalty(self, critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
        """A term added to the critic's loss; real, fake (B, *event_shape) -> 0-dim tensor."""
        return real.new_zeros(())

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class NoConstraint(LipschitzConstraint):
    """The critic is left free (every f-GAN)."""


class WeightClipping(LipschitzConstraint):
    """Clip every critic parameter to [−c, c], so the critic is K-Lipschitz for some K(c).

    The dual then estimates K·W_1 instead of W_1 (Arjovsky, Chintala & Bottou
    2017, "Wasserstein GAN", Algorithm 1, c = 0.01).
    """

    def __init__(self, clip: float = 0.01) -> None:
        if not clip > 0:
            raise InvalidInput(f"clip: expected c > 0, got {clip}")
        self.clip = float(clip)

    def prepare(self, critic: nn.Module) -> None:
        with torch.no_grad():
            for p in critic.parameters():
                p.clamp_(-self.clip, self.clip)


class GradientPenalty(LipschitzConstraint):
    """λ E_x̂[(‖∇_x̂ V(x̂)‖₂ − 1)²] on x̂ = ε x + (1 − ε) x̃, ε ~ U(0, 1) per example.

    x ~ P (real) and x̃ ~ Q (generated); the norm runs over all entries of an
    example, so any event shape works. The optimal 1-Lipschitz critic has unit
    gradient norm on the lines between coupled points, which the penalty
    enforces softly (Gulrajani et al. 2017, "Improved Training of Wasserstein
    GANs", Eq. (3), λ = 10).
    """

    def __init__(self, weight: float = 10.0) -> None:
        if not weight > 0:
            raise InvalidInput(f"weight: expected λ > 0, got {weight}")
        self.weight = float(weight)

    def penalty(self, critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
        eps = torch.rand(len(real), dtype=real.dtype, device=real.device)
        eps = append_dims(eps, real.dim())
        x_hat = (eps * real + (1.0 - eps) * fake).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        norm = flatten_events(grad).norm(dim=1)  # (B,)
        return self.weight * (norm - 1.0).square().mean()
