"""A Gaussian-mixture reference prediction: a denoiser that starts at the best mixture's density.

For data x_0 ~ p_0 = Σ_k π_k N(μ_k, Σ_k) and the path x_t = α_t x_0 + σ_t ε, the
noised marginal is exactly the mixture

    p_t = Σ_k π_k N(α_t μ_k, α_t² Σ_k + σ_t² I),

so its score, E[ε | x_t], E[x_0 | x_t] and the marginal velocity
α̇_t E[x_0 | x_t] + σ̇_t E[ε | x_t] are closed form at every t
(``gaussian.mixture_posterior``). A ``NetworkDenoiser`` given ``reference=``
predicts the reference's quantity of its own kind plus the network's output,

    ε̂ = ε_ref(x_t, t) + net(x_t, t)   (likewise for x̂_0, ŝ or v̂),

and the network's last layer starts at zero, so the model starts at the
denoiser of the mixture: its probability-flow ODE carries p_1 to p_{t_min}
of the mixture, its samplers sample the mixture. Training (and early
stopping on the validation likelihood) keeps only what the residual adds.
The mixture is fitted once by EM with the number of components chosen by BIC
(``MixtureNormal.initialize_from_data``, the flows' mixture base) and then
held fixed: its parameters do not train, and they are saved with the weights,
so a saved model rebuilds without the data.

References: Wang & Vastola (2023), "The hidden linear structure in score-based
models and its application"; Papamakarios, Pavlakou & Murray (2017) (a
Gaussian-mixture start by EM); Schwarz (1978) for BIC.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.diffusion.gaussian import mixture_posterior
from probgen.models.diffusion.parametrizations import Coefficient, Prediction
from probgen.models.flows.prior import MixtureNormal

__all__ = ["MixtureReference"]


class MixtureReference(nn.Module):
    """The exact prediction of a fixed Gaussian mixture over events (flattened to D values).

    ``reference(x, kind, alpha, sigma, d_alpha, d_sigma)`` is the ``kind``
    (one of ``Prediction.KINDS``) the exact denoiser of the mixture gives at
    x_t (B, *event), with the coefficients of ``Denoiser.path_coefficients``
    (Python floats or (B, 1, …) tensors; the rates only for a velocity).
    Before ``initialize_from_data`` the mixture is N(0, I). Full covariances
    cost O(K D³) per call: meant for low-dimensional data.

    Args:
        event_shape: shape of one example.
        components: the most components (chosen by BIC from 1 to this).
    """

    def __init__(self, event_shape: tuple[int, ...], components: int = 5) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        self.mixture = MixtureNormal(math.prod(self.event_shape), components)
        self.mixture.requires_grad_(False)  # fitted by EM, then fixed

    @torch.no_grad()
    def initialize_from_data(self, x: Tensor, condition: Tensor | None = None) -> None:
        """Fit the mixture to examples x (N, *event) by EM, k by BIC; conditions are ignored
        (a conditional model's reference is the mixture of the marginal p(x))."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise InvalidInput(
                f"MixtureReference: expected examples (N, {self.event_shape}), got {tuple(x.shape)}"
            )
        self.mixture.initialize_from_data(x.flatten(1))

    def forward(
        self,
        x: Tensor,
        kind: str,
        alpha: Coefficient,
        sigma: Coefficient,
        d_alpha: Coefficient | None = None,
        d_sigma: Coefficient | None = None,
    ) -> Tensor:
        if kind not in Prediction.KINDS:
            raise InvalidInput(f"kind: expected one of {', '.join(Prediction.KINDS)}, got {kind!r}")
        mixture, active = self.mixture, self.mixture.active
        tril = mixture.scale_tril()[active]  # (K, D, D)
        eigenvalues, eigenvectors = torch.linalg.eigh(tril @ tril.mT)
        posterior = mixture_posterior(
            x.flatten(1),
            _rows(alpha),
            _rows(sigma),
            mixture.log_weights()[active],
            mixture.means[active],
            eigenvalues,
            eigenvectors,
        )
        if kind == "velocity":
            if d_alpha is None or d_sigma is None:
                raise InvalidInput("MixtureReference: a velocity needs d_alpha and d_sigma")
            data, noise = posterior.data.reshape(x.shape), posterior.noise.reshape(x.shape)
            return d_alpha * data + d_sigma * noise
        return getattr(posterior, kind).reshape(x.shape)


def _rows(value: Coefficient) -> Coefficient:
    """A (B, 1, …) coefficient as (B,); a Python float as it is."""
    return value if isinstance(value, float) else value.reshape(-1)
