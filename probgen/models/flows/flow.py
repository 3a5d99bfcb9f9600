"""The normalizing flow model: a base distribution pushed through an invertible transform."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from probgen.conditions import ConditionSpec
from probgen.core import DataInitialized, DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.models.conditioning import condition_for
from probgen.models.flows.base import Transform

__all__ = ["Flow"]


class Flow(GenerativeModel):
    """p_θ(x | c) for x = f⁻¹(z; c), z ~ p_Z(· | c), with f = ``transform`` (data -> latent).

    Change of variables gives the exact density

        log p_θ(x | c) = log p_Z(f(x; c) | c) + log|det ∂f(x; c)/∂x|,

    and ``sample`` draws z ~ p_Z(· | c) and returns f⁻¹(z; c). Inputs x are
    (B, *event_shape); latents z have the base's event shape. An
    unconditional flow (``condition=None``) is the case without c. A
    conditional flow passes the condition's features φ(c) (B, w)
    (``ConditionSpec.features``) to every layer as ``context``, and c itself
    to a conditional base (e.g. ``ConditionalNormal``); an unconditional base
    is shared by every c.

    Args:
        transform: the bijection f from data to latent space.
        base: the latent distribution p_Z (e.g. ``StandardNormal``), any
            GenerativeModel with an exact ``log_prob`` and ``sample(n, generator=)``;
            a conditional base must have the flow's condition.
        event_shape: shape of one data example; default the base's (f keeps shapes).
        condition: what c is (``ConditionSpec``); None for p(x).

    Reference: Papamakarios, Nalisnick, Rezende, Mohamed & Lakshminarayanan
    (2021), "Normalizing Flows for Probabilistic Modeling and Inference"
    (conditional flows among its generalisations); Rezende & Mohamed (2015), "Variational
    Inference with Normalizing Flows".
    """

    likelihood = Likelihood.EXACT

    def __init__(
        self,
        transform: Transform,
        base: GenerativeModel,
        event_shape: tuple[int, ...] | None = None,
        condition: ConditionSpec | None = None,
    ) -> None:
        super().__init__(base.event_shape if event_shape is None else event_shape)
        if base.condition_spec is not None and base.condition_spec != condition:
            raise InvalidInput(
                f"Flow: the base models p(z | c) with c {base.condition_spec.describe()}, "
                f"but the flow's condition is {condition}"
            )
        self.condition_spec = condition
        self.transform = transform
        self.base = base

    @classmethod
    def for_data(cls, spec: DataSpec, conditional: bool | None = None, **options: Any) -> Flow:
        """This family for ``spec``, modelling p(x | c) when ``spec.condition`` is set.

        ``conditional``: None (conditional exactly when the data have a condition),
        True (demand one) or False (p(x) even on data with conditions).
        """
        condition = condition_for(spec, conditional, cls.__name__)
        return cls(event_shape=spec.event_shape, condition=condition, **options)

    def _context(self, c: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        """φ(c) (B, w) for the layers, or None without a condition."""
        if c is None or self.condition_spec is None:
            return None
        return self.condition_spec.features(c, dtype)

    def _base_condition(self, c: Tensor | None) -> Tensor | None:
        return c if self.base.condition_spec is not None else None

    @torch.no_grad()
    def initialize_from_data(self, x: Tensor, condition: Tensor | None = None) -> None:
        """Start a data-initialised base (e.g. ``MixtureNormal``) on the latents z = f(x; c).

        x (N, *event_shape) are training examples (in the units the flow
        sees), c their conditions; a base without ``initialize_from_data``
        (N(0, I)) is left as it is.
        """
        if not isinstance(self.base, DataInitialized):
            return
        reference = next(iter(self.parameters()), None)
        x = self._check(x)
        x = x if reference is None else x.to(reference)
        c = self._condition(condition, len(x))
        z, _ = self.transform(x, self._context(c, x.dtype))
        self.base.initialize_from_data(z, condition=self._base_condition(c))

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p_θ(x | c) per example: x (B, *event_shape), c (B,) or (B, *shape) -> (B,)."""
        x = self._check(x)
        c = self._condition(condition, len(x))
        z, logdet = self.transform(x, self._context(c, x.dtype))
        return self.base.log_prob(z, condition=self._base_condition(c)) + logdet

    def _draw(
        self, n: int, condition: Tensor | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """z ~ p_Z(· | c) (n, …), x = f⁻¹(z; c), log|det ∂f⁻¹/∂z| (n,) and the checked c."""
        c = self._condition(condition, n, expand=True)
        z = self.base.sample(n, condition=self._base_condition(c), generator=generator)
        x, logdet = self.transform.inverse(z, self._context(c, z.dtype))
        return z, x, logdet, c

    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """n draws x = f⁻¹(z; c), (n, *event_shape); one condition for all n, or n of them."""
        return self._draw(n, condition, generator)[1]

    def rsample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """The draws of ``sample``, x = f⁻¹(z; c), kept differentiable in θ (reparameterised):
        the noise z ~ p_Z does not depend on the transform's parameters."""
        return self._draw(n, condition, generator)[1]

    def sample_and_log_prob(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Samples (n, *event_shape) and their log p_θ(x | c) (n,) in one inverse pass.

        log p_θ(x | c) = log p_Z(z | c) - log|det ∂f⁻¹(z; c)/∂z| at x = f⁻¹(z; c);
        used when the flow is a variational posterior (e.g. IAF in a VAE).
        """
        z, x, logdet, c = self._draw(n, condition, generator)
        return x, self.base.log_prob(z, condition=self._base_condition(c)) - logdet
