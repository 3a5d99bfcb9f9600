"""Denoisers: a network plus the parametrization that turns its output into ε̂, x̂_0, ŝ and v̂.

Under x_t = α_t x_0 + σ_t ε, with velocity v = dx_t/dt = α̇_t x_0 + σ̇_t ε, the
four targets are interchangeable (each is an affine function of x_t and any other),

    x̂_0 = (x_t − σ_t ε̂) / α_t,    ŝ = ∇ log p_t(x_t) ≈ −ε̂ / σ_t,    v̂ = α̇_t x̂_0 + σ̇_t ε̂,

and from a velocity, with Δ = α_t σ̇_t − σ_t α̇_t (≠ 0 wherever σ_t/α_t is increasing),

    x̂_0 = (σ̇_t x_t − σ_t v̂) / Δ,    ε̂ = (α_t v̂ − α̇_t x_t) / Δ.

For the exact denoiser, v̂ = E[α̇ x_0 + σ̇ ε | x_t] is the marginal velocity of flow
matching and equals the probability-flow velocity f x − ½ g² ŝ,

so the parametrization lives in a small wrapper and every sampler, objective
and likelihood reads the one ``Prediction`` it needs. Networks take
``(x_t, t)`` with x_t (B, *event) and t (B,) and return (B, *event); a
conditional network also takes condition features h (B, F) as
``net(x_t, t, h)``, passed by ``denoiser(x_t, t, condition=h)``
(``probgen.models.diffusion.guidance``).

References: Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic
models" (noise prediction); Song & Ermon (2019) (score prediction);
Karras, Aittala, Aila & Laine (2022), "Elucidating the design space of
diffusion-based generative models" (data prediction); Lipman et al. (2023),
"Flow matching for generative modeling" (velocity prediction).
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable

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
    "TimeReversed",
    "VelocityPrediction",
]


Coefficient = Tensor | float
"""α_t or σ_t: a tensor broadcastable over (B, *event), or one Python float for the batch."""

PathCoefficients = tuple[Coefficient, Coefficient, Coefficient | None, Coefficient | None]
"""(α_t, σ_t, α̇_t, σ̇_t) of one call; the rates may be None where no velocity is read."""


def _combine(a: Coefficient, x: Tensor, b: Coefficient, y: Tensor) -> Tensor:
    """a x + b y; two kernels (a multiply and a fused add) when a and b are Python floats."""
    if isinstance(a, float) and isinstance(b, float):
        return torch.add(x * a, y, alpha=b)
    return a * x + b * y


class Prediction:
    """What a denoiser says about x_t at time t, all shaped (B, *event).

    Built from the one quantity the network outputs; the others follow from
    x_t = α_t x_0 + σ_t ε and v = α̇_t x_0 + σ̇_t ε when first read (and are then
    kept), so a sampler pays only for what it uses. The rates (α̇_t, σ̇_t) are
    needed only to read or give a velocity. ``Prediction.deferred`` takes the
    coefficients as a function called on the first conversion: reading the
    quantity the network gave (a velocity network's velocity, what flow matching
    trains on) then costs nothing beyond the network.

    Attributes:
        noise: ε̂, the predicted noise.
        data: x̂_0, the predicted clean data (E[x_0 | x_t] for the exact denoiser).
        score: ŝ = −ε̂ / σ_t ≈ ∇_x log p_t(x_t).
        velocity: v̂ = α̇_t x̂_0 + σ̇_t ε̂, the velocity dx_t/dt of the path.
        kind: the name of the quantity it was built from.
    """

    KINDS = ("noise", "data", "score", "velocity")

    def __init__(
        self,
        x: Tensor,
        alpha: Coefficient,
        sigma: Coefficient,
        *,
        noise: Tensor | None = None,
        data: Tensor | None = None,
        score: Tensor | None = None,
        velocity: Tensor | None = None,
        d_alpha: Coefficient | None = None,
        d_sigma: Coefficient | None = None,
    ) -> None:
        given = {"noise": noise, "data": data, "score": score, "velocity": velocity}
        kinds = [k for k, v in given.items() if v is not None]
        if len(kinds) != 1:
            raise InvalidInput("Prediction: give exactly one of noise, data, score and velocity")
        if kinds[0] == "velocity" and (d_alpha is None or d_sigma is None):  # fail now
            raise InvalidInput("Prediction: a velocity needs the rates d_alpha and d_sigma")
        self._set(x, kinds[0], given[kinds[0]], lambda: (alpha, sigma, d_alpha, d_sigma))

    @classmethod
    def deferred(
        cls, x: Tensor, kind: str, value: Tensor, coefficients: Callable[[], PathCoefficients]
    ) -> Prediction:
        """The prediction of ``kind`` = ``value`` whose (α_t, σ_t, α̇_t, σ̇_t) are
        ``coefficients()``, called once, at the first read of another quantity."""
        if kind not in cls.KINDS:
            raise InvalidInput(f"kind: expected one of {', '.join(cls.KINDS)}, got {kind!r}")
        prediction = cls.__new__(cls)
        prediction._set(x, kind, value, coefficients)
        return prediction

    def _set(
        self, x: Tensor, kind: str, value: Tensor, coefficients: Callable[[], PathCoefficients]
    ) -> None:
        self._x, self.kind, self._coefficients = x, kind, coefficients
        self._given = dict.fromkeys(self.KINDS)
        self._given[kind] = value

    @functools.cached_property
    def _path(self) -> PathCoefficients:
        return self._coefficients()

    @property
    def _alpha(self) -> Coefficient:
        return self._path[0]

    @property
    def _sigma(self) -> Coefficient:
        return self._path[1]

    def _rates(self) -> tuple[Coefficient, Coefficient]:
        d_alpha, d_sigma = self._path[2:]
        if d_alpha is None or d_sigma is None:
            raise InvalidInput("Prediction: a velocity needs the rates d_alpha and d_sigma")
        return d_alpha, d_sigma

    @functools.cached_property
    def noise(self) -> Tensor:
        given = self._given
        if given["noise"] is not None:
            return given["noise"]
        alpha, sigma = self._alpha, self._sigma
        if given["data"] is not None:  # ε̂ = (x − α x̂_0) / σ
            return _combine(1 / sigma, self._x, -alpha / sigma, given["data"])
        if given["velocity"] is not None:  # ε̂ = (α v̂ − α̇ x) / Δ
            d_alpha, d_sigma = self._rates()
            det = alpha * d_sigma - sigma * d_alpha
            return _combine(-d_alpha / det, self._x, alpha / det, given["velocity"])
        return -sigma * given["score"]  # ε̂ = −σ ŝ

    @functools.cached_property
    def data(self) -> Tensor:
        given = self._given
        if given["data"] is not None:
            return given["data"]
        alpha, sigma = self._alpha, self._sigma
        if given["noise"] is not None:  # x̂_0 = (x − σ ε̂) / α
            return _combine(1 / alpha, self._x, -sigma / alpha, given["noise"])
        if given["velocity"] is not None:  # x̂_0 = (σ̇ x − σ v̂) / Δ
            d_alpha, d_sigma = self._rates()
            det = alpha * d_sigma - sigma * d_alpha
            return _combine(d_sigma / det, self._x, -sigma / det, given["velocity"])
        return _combine(1 / alpha, self._x, sigma * sigma / alpha, given["score"])  # Tweedie

    @functools.cached_property
    def score(self) -> Tensor:
        given = self._given
        if given["score"] is not None:
            return given["score"]
        return self.noise * (-1 / self._sigma)  # ŝ = −ε̂ / σ

    @functools.cached_property
    def velocity(self) -> Tensor:
        given = self._given
        if given["velocity"] is not None:
            return given["velocity"]
        alpha, sigma = self._alpha, self._sigma
        d_alpha, d_sigma = self._rates()
        if given["data"] is not None:  # v̂ = (σ̇/σ) x + (α̇ − σ̇ α/σ) x̂_0
            return _combine(d_sigma / sigma, self._x, d_alpha - d_sigma * alpha / sigma, self.data)
        # v̂ = (α̇/α) x + (σ̇ − α̇ σ/α) ε̂
        return _combine(d_alpha / alpha, self._x, d_sigma - d_alpha * sigma / alpha, self.noise)


class Denoiser(nn.Module, abc.ABC):
    """(x_t, t) -> ``Prediction`` under a forward ``process``.

    Times t are per example (B,) or one 0-dim time for the whole batch; with
    one time, α_t and σ_t are computed once, as Python floats (the samplers'
    fast path). ``evaluations`` is the number of network evaluations on a
    batch of B rows that one call costs (what the samplers' ``n_evaluations``
    adds up): 1, or 2 for a classifier-free guided denoiser. ``features`` are
    the condition features (B, F) a denoiser is fixed at (``Conditioned``), or
    None: what a coupling of flow matching pairs within (``couplings``).
    """

    evaluations: int = 1
    features: Tensor | None = None

    def __init__(self, process: ForwardProcess) -> None:
        super().__init__()
        self.process = process

    @abc.abstractmethod
    def forward(self, x: Tensor, t: Tensor) -> Prediction:
        """Predict ε̂, x̂_0 and the score for x_t (B, *event) at times t (B,) or 0-dim."""

    def path_coefficients(self, x: Tensor, t: Tensor) -> PathCoefficients:
        """(α_t, σ_t, α̇_t, σ̇_t): Python floats for one time, else (B, 1, …) tensors."""
        process = self.process
        if t.dim() == 0:
            return (*process.alpha_sigma_at(float(t)), *process.rates_at(float(t)))
        n = x.dim()
        (alpha, sigma), (d_alpha, d_sigma) = process.alpha_sigma(t), process.rates(t)
        return tuple(append_dims(c, n) for c in (alpha, sigma, d_alpha, d_sigma))  # type: ignore[return-value]

    def predict(self, x: Tensor, t: Tensor, kind: str, value: Tensor) -> Prediction:
        """The prediction implied by the quantity ``kind`` (one of ``Prediction.KINDS``).

        The path's coefficients at t are computed only if a conversion reads them.
        """
        return Prediction.deferred(x, kind, value, lambda: self.path_coefficients(x, t))

    def from_noise(self, x: Tensor, t: Tensor, noise: Tensor) -> Prediction:
        """The prediction implied by ε̂ = ``noise``."""
        return self.predict(x, t, "noise", noise)

    def from_score(self, x: Tensor, t: Tensor, score: Tensor) -> Prediction:
        """The prediction implied by ŝ = ``score``: ε̂ = −σ ŝ, x̂_0 = (x + σ² ŝ) / α (Tweedie)."""
        return self.predict(x, t, "score", score)

    def from_data(self, x: Tensor, t: Tensor, data: Tensor) -> Prediction:
        """The prediction implied by x̂_0 = ``data``: ε̂ = (x − α x̂_0) / σ."""
        return self.predict(x, t, "data", data)

    def from_velocity(self, x: Tensor, t: Tensor, velocity: Tensor) -> Prediction:
        """The prediction implied by v̂ = ``velocity``: x̂_0 = (σ̇ x − σ v̂)/Δ, ε̂ = (α v̂ − α̇ x)/Δ."""
        return self.predict(x, t, "velocity", velocity)


class NetworkDenoiser(Denoiser):
    """A denoiser around a network ``net(x_t, t[, h]) -> (B, *event)``, times (B,).

    The network's output is the quantity ``kind`` (one of ``Prediction.KINDS``),
    set by each parametrization below. ``forward(x, t, condition=h)`` passes
    condition features h (B, F) to a conditional network; ``condition=None``
    calls ``net(x_t, t)``. With a ``reference`` (a module called as
    ``reference(x_t, kind, α_t, σ_t, α̇_t, σ̇_t)``, e.g.
    ``reference.MixtureReference``) the prediction is the reference's plus the
    network's output: the network learns a residual.
    """

    kind: str

    def __init__(
        self, net: nn.Module, process: ForwardProcess, reference: nn.Module | None = None
    ) -> None:
        super().__init__(process)
        self.net = net
        self.reference = reference

    def _output(self, x: Tensor, t: Tensor, condition: Tensor | None) -> Tensor:
        t = t.expand(x.shape[0])
        return self.net(x, t) if condition is None else self.net(x, t, condition)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Prediction:
        value = self._output(x, t, condition)
        if self.reference is None:
            return self.predict(x, t, self.kind, value)
        coefficients = self.path_coefficients(x, t)
        value = value + self.reference(x, self.kind, *coefficients)
        return Prediction.deferred(x, self.kind, value, lambda: coefficients)


class NoisePrediction(NetworkDenoiser):
    """The network predicts the noise, ε̂ = net(x_t, t) (Ho et al. 2020)."""

    kind = "noise"


class ScorePrediction(NetworkDenoiser):
    """The network predicts the score, ŝ = net(x_t, t) (Song & Ermon 2019)."""

    kind = "score"


class DataPrediction(NetworkDenoiser):
    """The network predicts the clean data, x̂_0 = net(x_t, t) (Karras et al. 2022)."""

    kind = "data"


class VelocityPrediction(NetworkDenoiser):
    """The network predicts the velocity, v̂ = net(x_t, t) ≈ E[α̇_t x_0 + σ̇_t ε | x_t].

    The parametrization of flow matching and rectified flow (on ``LinearPath``,
    v̂ ≈ E[ε − x_0 | x_t]); well defined at t = 1 where α_1 = 0.

    Reference: Lipman et al. (2023), "Flow matching for generative modeling";
    Liu, Gong & Liu (2023), "Flow straight and fast".
    """

    kind = "velocity"


class TimeReversed(nn.Module):
    """A velocity network of the other time convention, read in probgen's: (B, *event), (B,).

    TorchCFM, Meta's flow_matching and most flow-matching code put the noise at
    s = 0 and the data at s = 1, x_s = s x_0 + (1 − s) ε, and learn
    u(x, s) ≈ dx_s/ds = E[x_0 − ε | x_s = x]. probgen's ``LinearPath`` is the same
    family of paths with t = 1 − s (noise at t = 1), so dx/dt = −dx/ds and

        v(x, t) = −u(x, 1 − t),

    the field ``VelocityPrediction(TimeReversed(net), LinearPath())`` samples and
    scores (the ODE likelihood) exactly as ``net`` does in its own library.
    ``net(x, s)`` takes x (B, *event) and times s (B,) and returns (B, *event).

    Reference: Lipman et al. (2023), "Flow matching for generative modeling",
    eq. (20)-(23) (noise at 0); Liu, Gong & Liu (2023), "Flow straight and fast".
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return -self.net(x, 1.0 - t)
