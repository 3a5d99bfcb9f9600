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

    def __call__(self, vae: VAE, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """L_β(x) (L_β(x | c) for a CVAE) per example, (B, *event_shape) -> (B,)."""
        return vae.elbo(x, k=self.samples, condition=condition, beta=self.beta)


@dataclass(frozen=True)
class IWAE:
    """The importance-weighted bound with ``k`` samples as the training objective.

    L_K(x) = E[log (1/K) Σ_k p_θ(x, z_k) / q_φ(z_k|x)], z_k ~ q_φ(z|x) i.i.d.

    With ``doubly_reparameterized`` the value is the same and the encoder's
    gradient is the DReG estimator (Tucker, Lawson, Gu & Maddison 2019,
    "Doubly reparameterized gradient estimators for Monte Carlo objectives"),
    unbiased for ∇_φ L_K with lower variance:

        ∇_φ L_K ≈ Σ_k w̃_k² ∂log w_k/∂z_k · ∂z_k/∂φ,   w̃_k = w_k / Σ_j w_j,

    where log w_k = log p_θ(x, z_k) - log q_φ'(z_k|x) holds q's parameters
    fixed (φ' = stop-gradient φ); the decoder and prior get the usual
    Σ_k w̃_k ∇ log p(x, z_k). For k = 1 this is the "sticking the landing"
    estimator (Roeder, Wu & Duvenaud 2017).

    Reference: Burda, Grosse & Salakhutdinov (2016), "Importance weighted
    autoencoders".
    """

    k: int = 5
    doubly_reparameterized: bool = False

    def __post_init__(self) -> None:
        if self.k < 1:
            raise InvalidInput(f"IWAE: expected k >= 1, got {self.k}")

    def __call__(self, vae: VAE, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """L_K(x) (L_K(x | c) for a CVAE) per example, (B, *event_shape) -> (B,)."""
        return vae.iwae_bound(
            x, self.k, condition=condition, doubly_reparameterized=self.doubly_reparameterized
        )
