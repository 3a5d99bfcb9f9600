"""Scale-free density models: an elementwise affine map fitted on the training data, done once.

A network initialised for data of unit scale meets data in their own units:
minutes, kilograms, 1e-3 or 1e3. ``Standardized`` puts every continuous
family on the same footing without any family knowing it. It models

    x = μ + s ⊙ z,    z ~ p_inner,

so by the change of variables, with D entries and s > 0,

    log p(x) = log p_inner((x − μ) / s) − Σ_i log s_i        (exact),

``sample`` returns μ + s ⊙ z and every player's ``loss`` is the inner loss on
z = (x − μ)/s (for a likelihood model it differs from −mean log p(x) by the
constant Σ log s, so the gradients are the same). μ and s are buffers: they
are saved with the weights, and they are fitted once, on the training split,
by ``fit_standardization``:

    "mean_std"   μ = mean, s = standard deviation (the default)
    "robust"     μ = median, s = IQR / 1.349 (the standard deviation of a
                 normal law with that interquartile range; falls back to the
                 standard deviation where the IQR is 0)
    "none"       no map (``build_model`` then returns the family unwrapped)
    {"shift": [...], "scale": [...]}   given by the user (broadcast to the event)

A model evaluated far outside its training range returns densities that no
data constrained; ``log_prob`` in eval mode warns (``OutOfRangeWarning``) with
the fraction of such points: any entry of z beyond the training range of z by
more than half that range's width.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from probgen.core import (
    GenerativeModel,
    InvalidInput,
    Likelihood,
    OutOfRangeWarning,
    call_log_prob,
)
from probgen.models.wrapper import DataWrapper

__all__ = [
    "STANDARDIZATIONS",
    "Standardized",
    "fit_standardization",
]

STANDARDIZATIONS = ("mean_std", "robust", "none")
"""Names of the fitted maps; a mapping ``{"shift": ..., "scale": ...}`` gives one by hand."""

_IQR_OF_NORMAL = 1.3489795003921634  # Φ⁻¹(0.75) − Φ⁻¹(0.25)


def fit_standardization(
    x: Tensor, method: str | Mapping[str, Any] = "mean_std"
) -> tuple[Tensor, Tensor] | None:
    """(μ, s), each of shape ``x.shape[1:]``, for the map z = (x − μ)/s; None for ``"none"``.

    Args:
        x: training examples (N, *event_shape), floating point, finite.
        method: one of ``STANDARDIZATIONS`` or ``{"shift": μ, "scale": s}``
            (numbers or nested lists broadcastable to the event shape; s > 0).

    An entry that is constant in the training data (s = 0) gets s = 1, so it
    is shifted but not scaled. Computed in float64, returned in ``x.dtype``.
    Raises ``InvalidInput`` for an unknown method, too few examples, or a
    non-positive given scale.
    """
    event_shape = tuple(x.shape[1:])
    if isinstance(method, Mapping):
        return _given(method, event_shape, x.dtype)
    if method not in STANDARDIZATIONS:
        raise InvalidInput(
            f"standardize: unknown method {method!r}; choose one of: "
            f"{', '.join(STANDARDIZATIONS)}, or give {{shift: ..., scale: ...}}"
        )
    if method == "none":
        return None
    if len(x) < 2:
        raise InvalidInput(f"standardize: needs at least 2 training examples, got {len(x)}")
    v = x.detach().double()
    if method == "mean_std":
        shift, scale = v.mean(0), v.std(0)
    else:
        probs = torch.tensor([0.25, 0.5, 0.75], dtype=v.dtype)
        q = torch.quantile(v.flatten(1), probs, dim=0).reshape(3, *event_shape)
        shift, scale = q[1], (q[2] - q[0]) / _IQR_OF_NORMAL
        scale = torch.where(scale > 0, scale, v.std(0))
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return shift.to(x.dtype), scale.to(x.dtype)


def _given(
    method: Mapping[str, Any], event_shape: tuple[int, ...], dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    unknown = sorted(set(method) - {"shift", "scale"})
    if unknown:
        raise InvalidInput(f"standardize: unknown key {unknown[0]!r}; give shift and scale")
    try:
        shift = torch.as_tensor(method.get("shift", 0.0), dtype=torch.float64)
        scale = torch.as_tensor(method.get("scale", 1.0), dtype=torch.float64)
        shift, scale = (t.expand(event_shape).clone() for t in (shift, scale))
    except (RuntimeError, TypeError, ValueError) as e:
        raise InvalidInput(
            f"standardize: shift and scale must be numbers or lists broadcastable to the "
            f"event shape {event_shape}: {e}"
        ) from e
    if not (torch.isfinite(shift).all() and torch.isfinite(scale).all() and (scale > 0).all()):
        raise InvalidInput("standardize: shift must be finite and scale finite and > 0")
    return shift.to(dtype), scale.to(dtype)


class Standardized(DataWrapper):
    """x = μ + s ⊙ z with z ~ ``model``: the inner model seen in the data's own units.

        log_prob(x) = model.log_prob((x − μ)/s) − Σ log s     (same ``likelihood``)
        loss(x, player) = model.loss((x − μ)/s, player)
        sample(n) = μ + s ⊙ model.sample(n)

    The players and their parameters are the inner model's; μ, s and the
    training range of z are buffers (saved with the weights). Bounds on
    log p of the inner model (``elbo``, ``iwae_bound``) are offered with the
    same log-determinant when the inner model has them; ``partition_model``
    is the model whose normaliser Z this one shares (the affine map's
    Jacobian is in ``log_prob``, so an EBM's log Z is the inner one's).

    Args:
        model: the inner model of z, over the same event shape.
        shift: μ, shape ``event_shape``.
        scale: s > 0, shape ``event_shape``.
        low: the per-entry minimum of z over the training data (optional;
            with ``high``, ``log_prob`` warns about points far outside the range).
        high: the per-entry maximum of z over the training data (optional).
        method: how μ and s were chosen (``"mean_std"``, ``"robust"``,
            ``"given"``), recorded with them.
        condition_shift: μ_c of the same map for a continuous condition c of a
            conditional inner model, which then sees (c − μ_c)/s_c (no Jacobian:
            c is conditioned on, not modelled).
        condition_scale: s_c of that map.
    """

    def __init__(
        self,
        model: GenerativeModel,
        shift: Tensor,
        scale: Tensor,
        low: Tensor | None = None,
        high: Tensor | None = None,
        method: str = "given",
        condition_shift: Tensor | None = None,
        condition_scale: Tensor | None = None,
    ) -> None:
        super().__init__(model)
        if model.handles_levels:
            raise InvalidInput(
                f"Standardized: {type(model).__name__} models integer levels; an affine map "
                "applies to continuous data only"
            )
        for name, t in (("shift", shift), ("scale", scale), ("low", low), ("high", high)):
            if t is not None and tuple(t.shape) != self.event_shape:
                raise InvalidInput(
                    f"Standardized: expected {name} of shape {self.event_shape}, "
                    f"got {tuple(t.shape)}"
                )
        if not bool((scale > 0).all()):
            raise InvalidInput("Standardized: every scale must be > 0")
        self.method = method
        self.register_buffer("shift", shift.detach().clone())
        self.register_buffer("scale", scale.detach().clone())
        known = low is not None and high is not None
        self.register_buffer("low", (low if known else torch.full_like(shift, -math.inf)).clone())
        self.register_buffer("high", (high if known else torch.full_like(shift, math.inf)).clone())
        spec = model.condition_spec
        mapped = condition_shift is not None and condition_scale is not None
        if mapped and (spec is None or spec.is_classes or condition_shift.shape != spec.shape):
            raise InvalidInput(
                "Standardized: a condition map needs a model with a continuous condition of "
                f"shape {tuple(condition_shift.shape)}"
            )
        self.condition_shift: Tensor | None
        self.condition_scale: Tensor | None
        self.register_buffer("condition_shift", condition_shift if mapped else None)
        self.register_buffer("condition_scale", condition_scale if mapped else None)

    def condition_to_inner(self, condition: Tensor | None) -> Tensor | None:
        """(c − μ_c)/s_c for a continuous condition with a map; c itself otherwise."""
        if condition is None or self.condition_shift is None:
            return condition
        return (condition - self.condition_shift) / self.condition_scale

    @property  # type: ignore[override]
    def likelihood(self) -> Likelihood:
        """The inner model's: an affine change of variables keeps exactness and bounds."""
        return self.model.likelihood

    @property
    def log_det(self) -> Tensor:
        """Σ_i log s_i = log |det ∂x/∂z|, a scalar."""
        return self.scale.log().sum()

    def to_inner(self, x: Tensor) -> Tensor:
        """z = (x − μ)/s for x (B, *event_shape); same shape."""
        return (self._check(x) - self.shift) / self.scale

    def from_inner(self, z: Tensor) -> Tensor:
        """x = μ + s ⊙ z for z (B, *event_shape); same shape."""
        return self.shift + self.scale * z

    def log_prob(
        self,
        x: Tensor,
        condition: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log p_inner(z | c) − Σ log s with z = (x − μ)/s: (B, *event_shape) -> (B,), nats.

        ``generator`` reaches the inner model's draws (``call_log_prob``).
        """
        z = self.to_inner(x)
        if not self.training:
            self._warn_out_of_range(z)
        inner = call_log_prob(self.model, z, generator, self.condition_to_inner(condition))
        return inner - self.log_det

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        """The inner model's loss for ``player`` on z = (x − μ)/s, x (B, *event_shape)."""
        self._check_player(player)
        return self.model.loss(
            self.to_inner(x), player, condition=self.condition_to_inner(condition)
        )

    def sample(self, n: int, condition: Tensor | None = None, **options: Any) -> Tensor:
        """μ + s ⊙ z, z = inner ``sample(n, condition=c, **options)``: (n, *event_shape)."""
        return self._mapped(self.model.sample, n, condition, options)

    @property
    def rsample(self) -> Callable[..., Tensor]:
        """μ + s ⊙ z with z from the inner ``rsample``, differentiable in θ; AttributeError
        when the inner model has no reparameterised sampler."""
        inner = self.model.rsample

        def rsample(n: int, condition: Tensor | None = None, **options: Any) -> Tensor:
            return self._mapped(inner, n, condition, options)

        return rsample

    def _mapped(
        self,
        sampler: Callable[..., Tensor],
        n: int,
        condition: Tensor | None,
        options: dict[str, Any],
    ) -> Tensor:
        if condition is not None and self.condition_shift is not None:
            condition = self.condition_to_inner(self.model.condition_spec.expand(condition, n))
        return self.from_inner(sampler(n, condition=condition, **options))

    @property
    def elbo(self) -> Callable[..., Tensor]:
        """The inner ELBO on z minus Σ log s, when the inner model has one (else AttributeError)."""
        return self._bound(self.model.elbo)

    @property
    def iwae_bound(self) -> Callable[..., Tensor]:
        """The inner IWAE bound on z minus Σ log s, when the inner model has one."""
        return self._bound(self.model.iwae_bound)

    @property
    def partition_model(self) -> GenerativeModel:
        """The model whose ``init`` and ``energy`` define this model's log Z (the inner one's)."""
        return getattr(self.model, "partition_model", self.model)

    def _bound(self, inner: Callable[..., Tensor]) -> Callable[..., Tensor]:
        def bound(x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
            if kwargs.get("condition") is not None:
                kwargs["condition"] = self.condition_to_inner(kwargs["condition"])
            return inner(self.to_inner(x), *args, **kwargs) - self.log_det

        return bound

    def _warn_out_of_range(self, z: Tensor) -> None:
        margin = (self.high - self.low) / 2
        far = ((z < self.low - margin) | (z > self.high + margin)).flatten(1).any(1)
        fraction = far.double().mean().item()
        if fraction > 0:
            warnings.warn(
                f"{type(self.model).__name__}: {fraction:.1%} of the {len(z)} points lie far "
                "outside the training range (beyond it by more than half its width in some "
                "entry); their densities are extrapolated, not learned",
                OutOfRangeWarning,
                stacklevel=3,
            )
