"""Any probgen model as a ``torch.distributions.Distribution``: ``model.as_distribution(c)``.

zuko's flows are ``Distribution`` objects, which is why sbi and lampe build on
them; this view gives every probgen model with a density the same standing:

    p = flow.as_distribution()                     # p_θ(x), batch_shape ()
    q = flow.as_distribution(condition=c)          # p_θ(x | c_b) for B conditions: (B,)
    TransformedDistribution(p, [ExpTransform()])   # a prior of another model
    Independent(q, 1)                              # Π_b p_θ(x_b | c_b)

Members, with S a sample shape and B the batch shape:

    event_shape    the model's ``event_shape``
    log_prob(x)    (*S, *B, *event_shape) -> (*S, *B): the model's ``log_prob``
    sample(S)      (*S, *B, *event_shape), without gradients
    rsample(S)     the same draw differentiable in θ, x = g_θ(ε), for families
                   whose sampler is reparameterised (``rsample``: flows, the
                   Gaussian, GAN generators, VAEs with a Gaussian decoder and a
                   non-mixture prior; a data map keeps it)
    support        ℝ^D for densities, {0, …, K−1}^D for data with K levels
    entropy()      the model's own, for analytic laws that have one

Which likelihood can back a Distribution: ``log_prob`` of a Distribution is a
normalised log-density, so the default view needs an EXACT or ESTIMATE
likelihood (an ESTIMATE view's ``log_prob`` is an unbiased estimate of log p,
e.g. a Hutchinson trace). A BOUND (an ELBO, a dequantised or diffusion bound)
or an UNNORMALIZED energy would give wrong numbers inside ``kl_divergence`` or
a change of variables, and a GAN has no density at all, so for these
``as_distribution`` raises ``IntractableLikelihood`` naming the kind. With
``implicit=True`` any model gives its implicit view: a sampler (``sample``,
``rsample`` where reparameterised, ``event_shape``, ``support``) whose
``log_prob`` raises ``IntractableLikelihood`` (a ``NotImplementedError``, as
torch's own distributions without a density do). That is the view of a GAN
generator.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from probgen.core import (
    GenerativeModel,
    IntractableLikelihood,
    InvalidInput,
    Likelihood,
    call_log_prob,
)
from probgen.models.wrapper import DataWrapper

__all__ = ["DENSITY_LIKELIHOODS", "ModelDistribution", "as_distribution"]

DENSITY_LIKELIHOODS = (Likelihood.EXACT, Likelihood.ESTIMATE)
"""The likelihood kinds whose ``log_prob`` is (an unbiased estimate of) a normalised log p."""

_SCALAR = torch.Size()  # the default sample shape: one draw


def as_distribution(
    model: GenerativeModel,
    condition: Any = None,
    *,
    implicit: bool = False,
    validate_args: bool | None = None,
    **sample_options: Any,
) -> ModelDistribution:
    """``model`` (at ``condition``) as a ``torch.distributions.Distribution``; see the module.

    Args:
        model: any ``GenerativeModel``.
        condition: None (p(x)), one condition (batch_shape ()), or B of them
            (batch_shape (B,)): labels ``3`` / ``(B,)``, vectors ``(d,)`` / ``(B, d)``.
        implicit: the sampler-only view, whose ``log_prob`` raises.
        validate_args: torch's argument validation (its default when None).
        sample_options: passed to every ``model.sample`` (e.g. ``guidance=2.0``).

    Raises ``IntractableLikelihood`` when ``implicit`` is False and the model's
    likelihood is not EXACT or ESTIMATE, and ``InvalidInput`` for a bad condition.
    """
    return ModelDistribution(
        model, condition, implicit=implicit, validate_args=validate_args, **sample_options
    )


class ModelDistribution(Distribution):
    """p_θ(x | c) of a ``GenerativeModel`` seen as a ``torch.distributions.Distribution``.

    batch_shape is () without a condition or with one, (B,) with B; the
    rows of a batch broadcast as torch's do (``log_prob`` of (*S, *B, *event)).
    Build it with ``as_distribution`` (its arguments are documented there).
    """

    arg_constraints: dict[str, constraints.Constraint] = {}  # noqa: RUF012 (torch's protocol)

    def __init__(
        self,
        model: GenerativeModel,
        condition: Any = None,
        *,
        implicit: bool = False,
        validate_args: bool | None = None,
        **sample_options: Any,
    ) -> None:
        if not implicit and model.likelihood not in DENSITY_LIKELIHOODS:
            raise IntractableLikelihood(
                f"{_family(model)}'s likelihood is {model.likelihood.value}"
                f"{_WHY[model.likelihood]}, so it cannot back a Distribution's log_prob "
                "(exact or estimate needed); as_distribution(implicit=True) gives its sampler"
            )
        self.model = model
        self.implicit = implicit
        self.sample_options = sample_options
        self.has_rsample = callable(getattr(model, "rsample", None))
        self._condition, batch_shape = _conditions(model, condition)
        super().__init__(batch_shape, torch.Size(model.event_shape), validate_args=validate_args)

    @property
    def likelihood(self) -> Likelihood:
        """What ``log_prob`` returns (the model's ``likelihood``)."""
        return self.model.likelihood

    @property
    def support(self) -> constraints.Constraint:  # type: ignore[override]
        """ℝ^D for a density model, {0, …, K−1}^D for K levels; NotImplementedError if unknown."""
        levels = _levels(self.model)
        if levels is not None:
            base = constraints.integer_interval(0, levels - 1)
        elif not self.model.handles_levels:
            base = constraints.real
        else:
            raise NotImplementedError(
                f"{_family(self.model)} models levels but does not say how many"
            )
        return constraints.independent(base, len(self.event_shape))

    def log_prob(self, value: Tensor) -> Tensor:
        """log p_θ(x | c): (*S, *batch_shape, *event_shape) -> (*S, *batch_shape), nats."""
        if self.implicit:
            raise IntractableLikelihood(
                f"the implicit view of {_family(self.model)} has no log_prob (it is a "
                "sampler); as_distribution() without implicit needs an exact or estimated density"
            )
        if self._validate_args:
            self._validate_sample(value)
        rank = len(self.event_shape)
        outer = torch.broadcast_shapes(value.shape[: value.dim() - rank], self.batch_shape)
        x = value.expand(*outer, *self.event_shape).reshape(-1, *self.event_shape)
        lp = call_log_prob(self.model, x, None, self._rows(len(x)))
        return lp.reshape(outer)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = _SCALAR) -> Tensor:
        """(*sample_shape, *batch_shape, *event_shape) draws of ``model.sample``, no gradients."""
        with torch.no_grad():
            return self._draw(self.model.sample, torch.Size(sample_shape))

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = _SCALAR) -> Tensor:
        """Draws x = g_θ(ε) of ``model.rsample``, differentiable in θ; same shape as ``sample``.

        Raises ``NotImplementedError`` for a model without a reparameterised sampler.
        """
        if not self.has_rsample:
            raise NotImplementedError(
                f"{_family(self.model)} has no reparameterised sampler (rsample): its "
                "draws are discrete, iterative or rejected; use sample()"
            )
        return self._draw(self.model.rsample, torch.Size(sample_shape))

    def entropy(self) -> Tensor:
        """H[p_θ] in nats, in closed form: the model's ``closed_form_entropy()``, or its
        ``entropy()`` when that is a tensor (the Gaussian); unconditional views only."""
        closed = getattr(self.model, "closed_form_entropy", None)
        if callable(closed):
            value = closed()
        else:
            entropy = getattr(self.model, "entropy", None)
            value = entropy() if callable(entropy) else None
        if not isinstance(value, Tensor) or self._condition is not None:
            raise NotImplementedError(f"{_family(self.model)} has no closed-form entropy")
        return value

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({_family(self.model)}, batch_shape="
            f"{tuple(self.batch_shape)}, event_shape={tuple(self.event_shape)}"
            + (", implicit" if self.implicit else "")
            + ")"
        )

    def _draw(self, sampler: Any, sample_shape: torch.Size) -> Tensor:
        n = math.prod(sample_shape) * math.prod(self.batch_shape)
        c = self._rows(n)
        given = {} if c is None else {"condition": c}
        x = sampler(n, **given, **self.sample_options)
        return x.reshape(self._extended_shape(sample_shape))

    def _rows(self, n: int) -> Tensor | None:
        """The condition of each of n flattened rows (*S, *B): c_b repeated S times, or c."""
        c = self._condition
        if c is None:
            return None
        if self.batch_shape:
            return c.repeat(n // len(c), *(1,) * (c.dim() - 1))
        return c.expand(n, *c.shape[1:])


_WHY = {
    Likelihood.BOUND: " (log_prob is a lower bound on log p)",
    Likelihood.UNNORMALIZED: " (log_prob is off by the unknown log Z)",
    Likelihood.NONE: " (it has no density)",
}


def _conditions(model: GenerativeModel, condition: Any) -> tuple[Tensor | None, torch.Size]:
    """The checked condition, (1, ...) for one or (B, ...) for B, and the batch shape."""
    spec = model.condition_spec
    name = _family(model)
    if condition is None:
        if spec is not None and not model.unconditional_mode:
            raise InvalidInput(
                f"{name} models p(x | c) with c {spec.describe()} and has no unconditional "
                "mode: pass condition="
            )
        return None, torch.Size()
    if spec is None:
        raise InvalidInput(f"{name} is unconditional: it models p(x) and takes no condition")
    if spec.is_classes:
        single = (isinstance(condition, int) and not isinstance(condition, bool)) or (
            isinstance(condition, Tensor) and condition.dim() == 0
        )
    else:
        single = tuple(torch.as_tensor(condition).shape) == spec.shape
    if single:
        return spec.expand(condition, 1).to(model.device), torch.Size()
    c = spec.check(condition if isinstance(condition, Tensor) else torch.as_tensor(condition))
    return c.to(model.device), torch.Size([len(c)])


def _family(model: GenerativeModel) -> str:
    """The family's class name, seen through the data wrappers ("RealNVP", not "Standardized")."""
    while isinstance(model, DataWrapper):
        model = model.model
    return type(model).__name__


def _levels(model: GenerativeModel) -> int | None:
    """K of a model of data with K levels: from its build record, else its ``levels``."""
    record = getattr(model, "build_record", None)
    if record is not None:
        return record.spec.levels
    levels = getattr(model, "levels", None)
    return levels if isinstance(levels, int) and not isinstance(levels, bool) else None
