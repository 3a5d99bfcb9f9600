"""Training objectives of a VAE, per example (B,), to be maximised."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from probgen.core import InvalidInput

if TYPE_CHECKING:
    from probgen.models.vae.model import VAE

__all__ = ["ELBO", "IWAE"]


@dataclass(frozen=True)
class ELBO:
    """The (β-weighted) evidence lower bound with ``samples`` reparameterised draws.

    L_β(x) = E_{q_φ(z|x)}[log p_θ(x|z)] - β KL(q_φ(z|x) || p(z)); β = 1 is the
    ELBO of Kingma & Welling (2014), β > 1 the β-VAE of Higgins et al. (2017),
    "β-VAE: Learning basic visual concepts with a constrained variational
    framework".
    """

    beta: float = 1.0
    samples: int = 1

    def __post_init__(self) -> None:
        if not self.beta >= 0:
            raise InvalidInput(f"ELBO: expected beta >= 0, got {self.beta}")
        if self.samples < 1:
            raise InvalidInput(f"ELBO: expected samples >= 1, got {self.samples}")

    def __call__(self, vae: VAE, x: Tensor) -> Tensor:
        """L_β(x) per example, (B, *event_shape) -> (B,)."""
        return vae.elbo(x, k=self.samples, beta=self.beta)


@dataclass(frozen=True)
class IWAE:
    """The importance-weighted bound with ``k`` samples as the training objective.

    L_K(x) = E[log (1/K) Σ_k p_θ(x, z_k) / q_φ(z_k|x)], z_k ~ q_φ(z|x) i.i.d.

    Reference: Burda, Grosse & Salakhutdinov (2016), "Importance weighted
    autoencoders".
    """

    k: int = 5

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidInput(f"IWAE: expected k >= 1, got {self.k}")

    def __call__(self, vae: VAE, x: Tensor) -> Tensor:
        """L_K(x) per example, (B, *event_shape) -> (B,)."""
        return vae.iwae_bound(x, self.k)
