"""Denoisers: a network plus the parametrization that turns its output into ε̂, x̂_0 and the score.

Under x_t = α_t x_0 + σ_t ε the three targets are interchangeable,

    x̂_0 = (x_t − σ_t ε̂) / α_t,    s(x_t, t) = ∇ log p_t(x_t) ≈ −ε̂ / σ_t,

so the parametrization lives in a small wrapper and every sampler, objective
and likelihood reads the one ``Prediction`` it needs. Networks take
``(x_t, t)`` with x_t (B, *event) and t (B,) and return (B, *event); a
conditional network also takes condition features h (B, F) as
``net(x_t, t, h)``, passed by ``denoiser(x_t, t, condition=h)``
(``probgen.models.diffusion.guidance``).

References: Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic
models" (noise prediction); Song & Ermon (2019) (score prediction);
Karras, Aittala, Aila & Laine (2022), "Elucidating the design space of
diffusion-based generative models" (data prediction).
"""

from __future__ import annotations

import abc
import functools

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.diffusion.processes import ForwardProcess
from probgen.tensors import append_dims

__all__ = [
    "Coefficient",
    "DataPrediction",
    "Denoiser",
    "NetworkDenoiser",
    "NoisePrediction",
    "Prediction",
    "ScorePrediction",
]


Coefficient = Tensor | float
"""α_t or σ_t: a tensor broadcastable over (B, *event), or one Python float for the batch."""


def _combine(a: Coefficient, x: Tensor, b: Coefficient, y: Tensor) -> Tensor:
    """a x + b y; two kernels (a multiply and a fused add) when a and b are Python floats."""
    if isinstance(a, float) and isinstance(b, float):
        return torch.add(x * a, y, alpha=b)
    return a * x + b * y


class Prediction:
    """What a denoiser says about x_t at time t, all shaped (B, *event).

    Built from the one quantity the network outputs; the other two follow
    from x_t = α_t x_0 + σ_t ε when first read (and are then kept), so a
    sampler pays only for what it uses.

    Attributes:
        noise: ε̂, the predicted noise.
        data: x̂_0, the predicted clean data (E[x_0 | x_t] for the exact denoiser).
        score: ŝ = −ε̂ / σ_t ≈ ∇_x log p_t(x_t).
    """

    def __init__(
        self,
        x: Tensor,
        alpha: Coefficient,
        sigma: Coefficient,
        *,
        noise: Tensor | None = None,
        data: Tensor | None = None,
        score: Tensor | None = None,
    ) -> None:
        if sum(v is not None for v in (noise, data, score)) != 1:
            raise InvalidInput("Prediction: give exactly one of noise, data and score")
        self._x, self._alpha, self._sigma = x, alpha, sigma
        self._given = {"noise": noise, "data": data, "score": score}

    @functools.cached_property
    def noise(self) -> Tensor:
        given = self._given
        if given["noise"] is not None:
            return given["noise"]
        alpha, sigma = self._alpha, self._sigma
        if given["data"] is not None:  # ε̂ = (x − α x̂_0) / σ
            return _combine(1 / sigma, self._x, -alpha / sigma, given["data"])
        return -sigma * given["score"]  # ε̂ = −σ ŝ

    @functools.cached_property
    def data(self) -> Tensor:
        given = self._given
        if given["data"] is not None:
            return given["data"]
        alpha, sigma = self._alpha, self._sigma
        if given["noise"] is not None:  # x̂_0 = (x − σ ε̂) / α
            return _combine(1 / alpha, self._x, -sigma / alpha, given["noise"])
        return _combine(1 / alpha, self._x, sigma * sigma / alpha, given["score"])  # Tweedie

    @functools.cached_property
    def score(self) -> Tensor:
        given = self._given
        if given["score"] is not None:
            return given["score"]
        return self.noise * (-1 / self._sigma)  # ŝ = −ε̂ / σ


class Denoiser(nn.Module, abc.ABC):
    """(x_t, t) -> ``Prediction`` under a forward ``process``.

    Times t are per example (B,) or one 0-dim time for the whole batch; with
    one time, α_t and σ_t are computed once, as Python floats (the samplers'
    fast path). ``evaluations`` is the number of network evaluations on a
    batch of B rows that one call costs (what the samplers' ``n_evaluations``
    adds up): 1, or 2 for a classifier-free guided denoiser.
    """

    evaluations: int = 1

    def __init__(self, process: ForwardProcess) -> None:
        super().__init__()
        self.process = process

    @abc.abstractmethod
    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        """Predict ε̂, x̂_0 and the score for x_t (B, *event) at times t (B,) or 0-dim."""

    def _coefficients(self, x: Tensor, t: Tensor) -> tuple[Coefficient, Coefficient]:
        if t.dim() == 0:
            return self.process.alpha_sigma_at(float(t))
        alpha, sigma = self.process.alpha_sigma(t)
        return append_dims(alpha, x.dim()), append_dims(sigma, x.dim())

    def from_noise(self, x: Tensor, t: Tensor, noise: Tensor) -> Prediction:
        """The prediction implied by ε̂ = ``noise``."""
        return Prediction(x, *self._coefficients(x, t), noise=noise)

    def from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Prediction:
        """The prediction implied by ŝ = ``score``: ε̂ = −σ ŝ, x̂_0 = (x + σ² ŝ) / α (Tweedie)."""
        return Prediction(x, *self._coefficients(x, t), score=score)

    def from_data(self, x: Tensor, t: Tensor, data: Tensor) -> Prediction:
        """The prediction implied by x̂_0 = ``data``: ε̂ = (x − α x̂_0) / σ."""
        return Prediction(x, *self._coefficients(x, t), data=data)


class NetworkDenoiser(Denoiser):
    """A denoiser around a network ``net(x_t, t[, h]) -> (B, *event)``, times (B,).

    ``forward(x, t, condition=h)`` passes condition features h (B, F) to a
    conditional network; ``condition=None`` calls ``net(x_t, t)``.
    """

    def __init__(self, net: nn.Module, process: ForwardProcess) -> None:
        super().__init__(process)
        self.net = net

    def _output(self, x: Tensor, t: Tensor, condition: Tensor | None) -> Tensor:
        t = t.expand(x.shape[0])
        return self.net(x, t) if condition is None else self.net(x, t, condition)


class NoisePrediction(NetworkDenoiser):
    """The network predicts the noise, ε̂ = net(x_t, t) (Ho et al. 2020)."""

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Prediction:
        return self.from_noise(x, t, self._output(x, t, condition))


class ScorePrediction(NetworkDenoiser):
    """The network predicts the score, ŝ = net(x_t, t) (Song & Ermon 2019)."""

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Prediction:
        return self.from_score(x, t, self._output(x, t, condition))


class DataPrediction(NetworkDenoiser):
    """The network predicts the clean data, x̂_0 = net(x_t, t) (Karras et al. 2022)."""

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Prediction:
        return self.from_data(x, t, self._output(x, t, condition))
