"""Training objectives of a diffusion model, per example (B,), for any process and parametrization.

With t drawn by ``process.sample_times``, ε ~ N(0, I) and x_t = α_t x_0 + σ_t ε:

    NoiseMatching     L_simple = ‖ε − ε̂(x_t, t)‖²                          (Ho et al. 2020, eq. 14)
    ScoreMatching     λ(t) ‖ŝ(x_t, t) − ∇ log q(x_t | x_0)‖²,  ∇ log q = −ε/σ_t
                      (denoising score matching; Vincent 2011, Song & Ermon 2019)
    VariationalBound  an unbiased one-term estimate of L_VLB: prior + K · term_k, k ~ U{1…K}
    FlowMatching      ‖v̂(x_t, t) − (α̇_t x_0 + σ̇_t ε)‖², (x_0, ε) from a ``Coupling``
                      (conditional flow matching; Lipman et al. 2023, Tong et al. 2024)

For score matching the minimiser over all functions is the true score
∇ log p_t, and the minimum is E_t λ(t) E‖∇ log q(x_t|x_0) − ∇ log p_t(x_t)‖²
(the conditional variance of the regression target). Likewise flow matching
is minimised by the marginal velocity v*(x, t) = E[α̇_t x_0 + σ̇_t ε | x_t = x],
and J(v) − J(v*) = E_t E‖v(x_t, t) − v*(x_t, t)‖².
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.models.diffusion.couplings import Coupling, IndependentCoupling
from probgen.models.diffusion.likelihood import (
    DiscretizedGaussianDecoder,
    GaussianDecoder,
    prior_term,
    vlb_term,
)
from probgen.models.diffusion.parametrizations import Denoiser
from probgen.tensors import append_dims, sum_events

__all__ = [
    "DiffusionWeighting",
    "FlowMatching",
    "NoiseMatching",
    "Objective",
    "ScoreMatching",
    "SigmaSquaredWeighting",
    "VariationalBound",
    "Weighting",
]


class Objective(abc.ABC):
    """A per-example training loss of a denoiser on clean data x_0 (B, *event) -> (B,)."""

    @abc.abstractmethod
    def __call__(
        self, denoiser: Denoiser, x0: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """The loss of every example, shape (B,)."""


def _perturb(
    denoiser: Denoiser, x0: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """(t (B,), ε (B, *event), x_t (B, *event)) drawn from the forward process."""
    t = denoiser.process.sample_times(x0.shape[0], generator, like=x0)
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    return t, noise, denoiser.process.marginal(x0, t, noise)


class NoiseMatching(Objective):
    """L_simple = ‖ε − ε̂(x_t, t)‖² summed over the event.

    Reference: Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic models", eq. (14).
    """

    def __call__(
        self, denoiser: Denoiser, x0: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        t, noise, x_t = _perturb(denoiser, x0, generator)
        return sum_events((denoiser(x_t, t).noise - noise).square())


class Weighting(abc.ABC):
    """λ(t) of denoising score matching, per example (B,)."""

    @abc.abstractmethod
    def __call__(self, denoiser: Denoiser, t: Tensor) -> Tensor:
        """λ at times t (B,)."""


class SigmaSquaredWeighting(Weighting):
    """λ(t) = σ_t², which makes every noise level's loss O(1) and DSM equal to L_simple.

    Reference: Song & Ermon (2019), "Generative modeling by estimating gradients of
    the data distribution", eq. (6).
    """

    def __call__(self, denoiser: Denoiser, t: Tensor) -> Tensor:
        return denoiser.process.alpha_sigma(t)[1].square()


class DiffusionWeighting(Weighting):
    """λ(t) = g(t)², the likelihood weighting: the weighted DSM bounds the KL to the data.

    Reference: Song, Durkan, Murray & Ermon (2021), "Maximum likelihood training of
    score-based diffusion models", Theorem 1.
    """

    def __call__(self, denoiser: Denoiser, t: Tensor) -> Tensor:
        return denoiser.process.drift_diffusion(t)[1]


class ScoreMatching(Objective):
    """Denoising score matching λ(t) ‖ŝ(x_t, t) + ε/σ_t‖² summed over the event.

    Args:
        weighting: λ(t); default ``SigmaSquaredWeighting()``.

    Reference: Vincent (2011), "A connection between score matching and denoising
    autoencoders"; Song et al. (2021), "Score-based generative modeling through SDEs", eq. (7).
    """

    def __init__(self, weighting: Weighting | None = None) -> None:
        self.weighting = weighting if weighting is not None else SigmaSquaredWeighting()

    def __call__(
        self, denoiser: Denoiser, x0: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        t, noise, x_t = _perturb(denoiser, x0, generator)
        sigma = denoiser.process.alpha_sigma(t)[1]
        target = -noise / append_dims(sigma, x0.dim())
        return self.weighting(denoiser, t) * sum_events((denoiser(x_t, t).score - target).square())


class VariationalBound(Objective):
    """Unbiased estimate of L_VLB: prior term + K · term_k with k ~ U{1, …, K} per example.

    Args:
        steps: K, the grid ``process.grid(K)`` of the bound (N for the exact DDPM chain).
        decoder: the decoder term; default ``GaussianDecoder()`` (continuous data).

    Reference: Ho, Jain & Abbeel (2020), eq. (5); Nichol & Dhariwal (2021), "Improved
    denoising diffusion probabilistic models", Section 3.
    """

    def __init__(
        self, steps: int, decoder: GaussianDecoder | DiscretizedGaussianDecoder | None = None
    ) -> None:
        if steps < 1:
            raise InvalidInput(f"steps: expected a positive integer, got {steps}")
        self.steps = int(steps)
        self.decoder = decoder if decoder is not None else GaussianDecoder()

    def __call__(
        self, denoiser: Denoiser, x0: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        grid = denoiser.process.grid(self.steps, like=x0)
        k = torch.randint(0, self.steps, (x0.shape[0],), generator=generator, device=x0.device)
        term = vlb_term(denoiser, x0, grid[k], grid[k + 1], self.decoder, generator)
        return prior_term(denoiser, x0) + self.steps * term


class FlowMatching(Objective):
    """Conditional flow matching ‖v̂(x_t, t) − u_t‖² summed over the event, per example (B,).

        x_t = α_t x_0 + σ_t ε + γ_t z,    u_t = α̇_t x_0 + σ̇_t ε + γ̇_t z,

    with (x_0, ε) paired by ``coupling`` (independent by default), t from
    ``process.sample_times`` (uniform, or t − t_min ∝ Beta(1/k, 1) for ``time_power``
    k > 1, which weights the data end) and, for the Schrödinger-bridge variant, Brownian-bridge
    noise γ_t = s √(t (1 − t)) with z ~ N(0, I) (``bridge_noise`` = s; 0 by default),
    γ̇_t = s (1 − 2t) / (2 √(t (1 − t))). The minimiser is the marginal velocity
    v* = E[u_t | x_t], whose ODE carries p_1 = N(0, I) to the data (γ vanishes
    at both ends, so the end marginals are those of the path).

    On ``LinearPath`` u_t = ε − x_0 (rectified flow); on any path with the
    independent coupling it is a weighted noise-matching loss, since
    v̂ − u = (α σ̇ − σ α̇)/α · (ε̂ − ε).

    Args:
        coupling: a ``Coupling``; ``OTCoupling()`` for minibatch OT-CFM,
            ``EntropicOTCoupling(2 s²)`` with ``bridge_noise=s`` for SB-CFM.
        bridge_noise: s ≥ 0.
        time_power: k > 0 of the time law; 1 is uniform.

    References: Lipman et al. (2023), "Flow matching for generative modeling",
    eq. (9)-(14); Liu, Gong & Liu (2023), "Flow straight and fast", eq. (1);
    Tong et al. (2024), "Improving and generalizing flow-based generative models
    with minibatch optimal transport", eq. (14) and Section 3.3.
    """

    def __init__(
        self,
        coupling: Coupling | None = None,
        bridge_noise: float = 0.0,
        time_power: float = 1.0,
    ) -> None:
        if not bridge_noise >= 0:
            raise InvalidInput(f"bridge_noise: expected a number >= 0, got {bridge_noise}")
        if not (time_power > 0 and math.isfinite(time_power)):
            raise InvalidInput(f"time_power: expected a finite number > 0, got {time_power}")
        self.coupling = coupling if coupling is not None else IndependentCoupling()
        self.bridge_noise = float(bridge_noise)
        self.time_power = float(time_power)

    def __call__(
        self, denoiser: Denoiser, x0: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        noise = self.coupling.paired_noise(x0, noise, denoiser.features, generator)
        return self.on_pairs(denoiser, x0, noise, generator)

    def on_pairs(
        self,
        denoiser: Denoiser,
        x0: Tensor,
        noise: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The loss (B,) on given pairs (x_0, ε), both (B, *event): the reflow objective."""
        t = denoiser.process.sample_times(x0.shape[0], generator, like=x0, power=self.time_power)
        x_t, target = denoiser.process.marginal_and_velocity(x0, t, noise)
        if self.bridge_noise > 0:
            n = x0.dim()
            z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
            root = (t * (1.0 - t)).clamp_min(torch.finfo(x0.dtype).tiny).sqrt()
            x_t = x_t + append_dims(self.bridge_noise * root, n) * z
            rate = self.bridge_noise * (1.0 - 2.0 * t) / (2.0 * root)
            target = target + append_dims(rate, n) * z
        return sum_events((denoiser(x_t, t).velocity - target).square())
