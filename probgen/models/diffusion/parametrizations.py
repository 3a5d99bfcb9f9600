"""Denoisers: a network plus the parametrization that turns its output into ε̂, x̂_0 and the score.

Under x_t = α_t x_0 + σ_t ε the three targets are interchangeable,

    x̂_0 = (x_t − σ_t ε̂) / α_t,    s(x_t, t) = ∇ log p_t(x_t) ≈ −ε̂ / σ_t,

so the parametrization lives in a small wrapper and every sampler, objective
and likelihood reads the one ``Prediction`` it needs. Networks take
``(x_t, t)`` with x_t (B, *event) and t (B,) and return (B, *event).

References: Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic
models" (noise prediction); Song & Ermon (2019) (score prediction);
Karras, Aittala, Aila & Laine (2022), "Elucidating the design space of
diffusion-based generative models" (data prediction).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from torch import Tensor, nn

from probgen.models.diffusion.processes import ForwardProcess
from probgen.tensors import append_dims

__all__ = [
    "DataPrediction",
    "Denoiser",
    "NetworkDenoiser",
    "NoisePrediction",
    "Prediction",
    "ScorePrediction",
]


@dataclass(frozen=True)
class Prediction:
    """What a denoiser says about x_t at time t, all shaped (B, *event).

    Attributes:
        noise: ε̂, the predicted noise.
        data: x̂_0, the predicted clean data (E[x_0 | x_t] for the exact denoiser).
        score: ŝ = −ε̂ / σ_t ≈ ∇_x log p_t(x_t).
    """

    noise: Tensor
    data: Tensor
    score: Tensor


class Denoiser(nn.Module, abc.ABC):
    """(x_t, t) -> ``Prediction`` under a forward ``process``."""

    def __init__(self, process: ForwardProcess) -> None:
        super().__init__()
        self.process = process

    @abc.abstractmethod
    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        """Predict ε̂, x̂_0 and the score for x_t (B, *event) at times t (B,)."""

    def _coefficients(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        alpha, sigma = self.process.alpha_sigma(t)
        return append_dims(alpha, x.dim()), append_dims(sigma, x.dim())

    def from_noise(self, x: Tensor, t: Tensor, noise: Tensor) -> Prediction:
        """The prediction implied by ε̂ = ``noise``."""
        alpha, sigma = self._coefficients(x, t)
        return Prediction(noise, (x - sigma * noise) / alpha, -noise / sigma)

    def from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Prediction:
        """The prediction implied by ŝ = ``score``: ε̂ = −σ ŝ, x̂_0 = (x + σ² ŝ) / α (Tweedie)."""
        alpha, sigma = self._coefficients(x, t)
        return Prediction(-sigma * score, (x + sigma.square() * score) / alpha, score)

    def from_data(self, x: Tensor, t: Tensor, data: Tensor) -> Prediction:
        """The prediction implied by x̂_0 = ``data``: ε̂ = (x − α x̂_0) / σ."""
        alpha, sigma = self._coefficients(x, t)
        noise = (x - alpha * data) / sigma
        return Prediction(noise, data, -noise / sigma)


class NetworkDenoiser(Denoiser):
    """A denoiser around a network ``net(x_t, t) -> (B, *event)``."""

    def __init__(self, net: nn.Module, process: ForwardProcess) -> None:
        super().__init__(process)
        self.net = net


class NoisePrediction(NetworkDenoiser):
    """The network predicts the noise, ε̂ = net(x_t, t) (Ho et al. 2020)."""

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        return self.from_noise(x, t, self.net(x, t))


class ScorePrediction(NetworkDenoiser):
    """The network predicts the score, ŝ = net(x_t, t) (Song & Ermon 2019)."""

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        return self.from_score(x, t, self.net(x, t))


class DataPrediction(NetworkDenoiser):
    """The network predicts the clean data, x̂_0 = net(x_t, t) (Karras et al. 2022)."""

    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        return self.from_data(x, t, self.net(x, t))
