"""The normalizing flow model: a base distribution pushed through an invertible transform."""

from __future__ import annotations

import torch
from torch import Tensor

from probgen.core import GenerativeModel, Likelihood
from probgen.models.flows.base import Transform

__all__ = ["Flow"]


class Flow(GenerativeModel):
    """p_θ(x) for x = f⁻¹(z), z ~ p_Z, with f = ``transform`` (data -> latent).

    Change of variables gives the exact density

        log p_θ(x) = log p_Z(f(x)) + log|det ∂f(x)/∂x|,

    and ``sample`` draws z ~ p_Z and returns f⁻¹(z). Inputs x are
    (B, *event_shape); latents z have the base's event shape.

    Args:
        transform: the bijection f from data to latent space.
        base: the latent distribution p_Z (e.g. ``StandardNormal``), any
            GenerativeModel with an exact ``log_prob`` and ``sample(n, generator=)``.
        event_shape: shape of one data example; default the base's (f keeps shapes).

    Reference: Papamakarios, Nalisnick, Rezende, Mohamed & Lakshminarayanan
    (2021), "Normalizing Flows for Probabilistic Modeling and Inference";
    Rezende & Mohamed (2015), "Variational Inference with Normalizing Flows".
    """

    likelihood = Likelihood.EXACT

    def __init__(
        self,
        transform: Transform,
        base: GenerativeModel,
        event_shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(base.event_shape if event_shape is None else event_shape)
        self.transform = transform
        self.base = base

    def log_prob(self, x: Tensor) -> Tensor:
        z, logdet = self.transform(self._check(x))
        return self.base.log_prob(z) + logdet

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x, _ = self.transform.inverse(self.base.sample(n, generator=generator))
        return x

    def sample_and_log_prob(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Samples (n, *event_shape) and their log p_θ(x) (n,) in one inverse pass.

        log p_θ(x) = log p_Z(z) - log|det ∂f⁻¹(z)/∂z| at x = f⁻¹(z); used
        when the flow is a variational posterior (e.g. IAF in a VAE).
        """
        z = self.base.sample(n, generator=generator)
        x, logdet = self.transform.inverse(z)
        return x, self.base.log_prob(z) - logdet
