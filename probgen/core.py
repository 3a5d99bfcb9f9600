"""The one protocol every probgen model implements, and the errors it raises.

Every model is a learned (or analytic) distribution p_θ(x) over events of a
fixed ``event_shape``. Batches carry one leading batch dimension:
``x`` has shape ``(B, *event_shape)``.

    class GenerativeModel(torch.nn.Module):
        likelihood: Likelihood            # what log_prob means
        condition_spec: ConditionSpec | None   # what c of p(x | c) is; None: p(x)
        def players(self) -> dict[str, list[Parameter]]
        def loss(self, x, player="model", condition=None) -> Tensor   # that player's objective
        def sample(self, n, condition=None, **options) -> Tensor       # (n, *event_shape)
        def log_prob(self, x, condition=None, *, generator=None) -> Tensor  # (B,), nats

A family whose draws are x = g_θ(ε) with ε free of θ also defines
``rsample(n, condition=None, generator=None)``, the same draw kept
differentiable in θ (``probgen.distribution``); ``save_pretrained``,
``from_pretrained`` and ``as_distribution`` delegate to ``probgen.pretrained``
and ``probgen.distribution``. A family whose starting point depends on the
data (a flow over a mixture base fitted by EM) is ``DataInitialized``:
``build_model`` calls its ``initialize_from_data(x, condition=None)`` once,
with the training split in the units the family sees.

The condition is one optional keyword with the same meaning in every family
(``probgen.conditions``). A family that does not declare ``condition`` in a
call is unconditional: the base class gives that call the keyword and raises
``InvalidInput`` when a condition is passed to it, so every model takes the
same five calls.

A ``log_prob`` that draws noise (a dequantization, a VAE's posterior draws, a
Hutchinson probe, posterior weight draws) takes the optional keyword-only
``generator`` and draws from it; ``call_log_prob(model, x, generator)`` passes
it to a model that takes it, so wrappers and evaluators are reproducible.

The training engine, the evaluators and the CLI use models only through these
calls, so a new family is one new class.
"""

from __future__ import annotations

import abc
import enum
import functools
import inspect
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec

if TYPE_CHECKING:  # for annotations only: these modules load when the methods are called
    import os
    from pathlib import Path

    from probgen.distribution import ModelDistribution

__all__ = [
    "ConditionSpec",
    "DataInitialized",
    "DataSpec",
    "Estimate",
    "GenerativeModel",
    "IntractableLikelihood",
    "InvalidInput",
    "Likelihood",
    "OutOfRangeWarning",
    "ProbgenError",
    "UnknownPlayer",
    "call_log_prob",
    "check_input",
]


class ProbgenError(Exception):
    """Base class of every error probgen raises on purpose."""


class InvalidInput(ProbgenError, ValueError):
    """An argument has the wrong shape, dtype or values; the message says which."""


class UnknownPlayer(ProbgenError, KeyError):
    """``loss`` was asked for a player the model does not have."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class IntractableLikelihood(ProbgenError, NotImplementedError):
    """The model defines no density that can be evaluated (e.g. a GAN generator)."""


class OutOfRangeWarning(UserWarning):
    """A model was evaluated on points it cannot represent well; the message gives the fraction."""


class Likelihood(enum.Enum):
    """What a model's ``log_prob`` returns, so no number is mistaken for another.

    EXACT         log p_θ(x) itself (flows, autoregressive models, analytic laws,
                  the probability-flow ODE with an exact divergence).
    ESTIMATE      an unbiased estimate of log p_θ(x), reported with a standard
                  error (e.g. a Hutchinson trace).
    BOUND         a lower bound on log p_θ(x) (a VAE's ELBO, a diffusion VLB).
    UNNORMALIZED  log p_θ(x) + log Z_θ = -E_θ(x), off by an unknown constant.
    NONE          no density: ``log_prob`` raises ``IntractableLikelihood``.
    """

    EXACT = "exact"
    ESTIMATE = "estimate"
    BOUND = "bound"
    UNNORMALIZED = "unnormalized"
    NONE = "none"


@dataclass(frozen=True)
class Estimate:
    """A number with its standard error and a label saying what it is.

    ``kind`` is ``"exact"`` (``stderr`` 0 or the Monte Carlo error of an exact
    per-example quantity averaged over data), ``"estimate"`` (unbiased
    stochastic estimate), ``"bound"`` (a lower bound on a log-likelihood, or
    the matching upper bound on an NLL) or ``"unnormalized"``.
    """

    value: float
    stderr: float = 0.0
    kind: str = "exact"

    def __str__(self) -> str:
        return f"{self.value:.4f} ± {self.stderr:.4f} ({self.kind})"

    @classmethod
    def from_samples(cls, values: Tensor, kind: str = "estimate") -> Estimate:
        """Mean of i.i.d. per-sample values with its standard error s/√n."""
        v = values.detach().double().flatten()
        stderr = v.std(unbiased=True).item() / math.sqrt(len(v)) if len(v) > 1 else 0.0
        return cls(value=v.mean().item(), stderr=stderr, kind=kind)


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data to be built for it.

    Attributes:
        event_shape: shape of one example, e.g. ``(2,)``, ``(1, 28, 28)``, ``(64,)``.
        levels: ``None`` for continuous data; ``K`` when every entry is an integer
            in ``{0, …, K-1}`` (pixels with K intensities, tokens of a
            vocabulary of size K, binary data with K = 2).
        condition: what each example is paired with (``ConditionSpec``: K class
            labels or a continuous vector), or ``None`` for unconditional data.
    """

    event_shape: tuple[int, ...]
    levels: int | None = None
    condition: ConditionSpec | None = None

    @property
    def dim(self) -> int:
        """Number of scalar entries in one example."""
        return math.prod(self.event_shape)


def _all_finite(x: Tensor) -> bool:
    """Whether every entry of the floating-point x is finite, in two kernels.

    x − x is exactly +0 for every finite x (IEEE 754) and NaN for ±inf and NaN,
    so Σ (x − x) is 0 exactly when all entries are finite (no overflow: the terms
    are 0); a third of the cost of ``torch.isfinite(x).all()`` on a small batch,
    which ``loss`` pays on every training step.
    """
    x = x.detach()
    return (x - x).sum().item() == 0


def check_input(
    x: Any,
    event_shape: tuple[int, ...],
    *,
    name: str = "x",
    integer: bool = False,
) -> Tensor:
    """Validate a batch ``(B, *event_shape)`` and return it as a tensor.

    Raises ``InvalidInput`` naming what was expected and what came: a
    non-tensor, a wrong shape, a wrong dtype (floating point expected unless
    ``integer``), or non-finite values. NumPy arrays are accepted and converted.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise InvalidInput(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    expected = "(B, " + ", ".join(str(s) for s in event_shape) + ")" if event_shape else "(B,)"
    if x.dim() != len(event_shape) + 1 or tuple(x.shape[1:]) != tuple(event_shape):
        raise InvalidInput(f"{name}: expected shape {expected}, got {tuple(x.shape)}")
    if integer:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise InvalidInput(f"{name}: expected an integer tensor, got {x.dtype}")
        return x
    if not x.is_floating_point():
        raise InvalidInput(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if not _all_finite(x):  # counted only for the message
        bad = (~torch.isfinite(x)).sum().item()
        raise InvalidInput(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")
    return x


class GenerativeModel(nn.Module, abc.ABC):
    """A distribution p_θ(x) over events of shape ``event_shape``.

    Subclasses set ``likelihood`` and implement ``sample`` and, unless the
    likelihood is NONE, ``log_prob``. Single-player models are trained by
    the default ``loss``, the negative mean log-likelihood (or bound)
    ``-1/B Σ_b log p_θ(x_b)``; multi-player models override ``players`` and
    ``loss``.
    """

    likelihood: Likelihood = Likelihood.NONE
    condition_spec: ConditionSpec | None = None
    """What c is for p(x | c) (``ConditionSpec``); None for an unconditional model."""
    unconditional_mode: bool = False
    """Whether a conditional model also defines p(x) when given no condition."""

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give ``condition`` to the calls a family defines without it (it is unconditional)."""
        super().__init_subclass__(**kwargs)
        for name in _CONDITIONED_CALLS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__isabstractmethod__", False):
                if "condition" not in inspect.signature(method).parameters:
                    setattr(cls, name, _without_condition(method))

    @classmethod
    def for_data(cls, spec: DataSpec, **options: Any) -> GenerativeModel:
        """Build this model for data described by ``spec`` (used by the CLI)."""
        return cls(event_shape=spec.event_shape, **options)

    @classmethod
    def small_data_options(cls, spec: DataSpec, options: Mapping[str, Any]) -> dict[str, Any]:
        """Options for a small training split of continuous vectors, beneath ``options``.

        The engine builds the family with ``small_data_options(spec, options) |
        options`` when its training split is small (``probgen.train.small_data``):
        typically a start fitted to the data by EM (a mixture base, prior or
        reference). None by default.
        """
        return {}

    @property
    def handles_levels(self) -> bool:
        """Whether ``log_prob`` is (a bound on) a probability mass over integer data.

        True for models that define P(x) on {0, …, K-1}^D themselves (discrete
        decoders and conditionals, autoregressive models over levels, diffusion
        with a discretised decoder). False (the default) for densities, which
        ``probgen.models.build_model`` wraps in ``Dequantized`` on data with levels.
        """
        return False

    def players(self) -> dict[str, list[nn.Parameter]]:
        """Each player's parameters; one player, ``"model"``, by default."""
        return {"model": list(self.parameters())}

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        """The scalar objective of ``player`` on a batch ``x`` of shape (B, *event_shape)."""
        self._check_player(player)
        return -self.log_prob(x, condition=condition).mean()

    @abc.abstractmethod
    def sample(self, n: int, condition: Tensor | None = None, **options: Any) -> Tensor:
        """Draw ``n`` independent samples, shape ``(n, *event_shape)``, of p(· | c) when
        a condition is given (one for all n, or one per sample)."""

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p_θ(x) per example, shape (B,), in nats; see ``likelihood``.

        Models whose ``log_prob`` draws noise add the keyword-only argument
        ``generator: torch.Generator | None = None`` and draw from it (see
        ``call_log_prob``); deterministic ones need not.
        """
        raise IntractableLikelihood(
            f"{type(self).__name__} has no tractable density (likelihood = "
            f"{self.likelihood.value}); use a sample-based metric instead"
        )

    def player_names(self) -> tuple[str, ...]:
        """The names of ``players()``, without collecting their parameters.

        ``("model",)`` unless a subclass overrides ``players``. ``loss`` checks its
        ``player`` against these on every call, where listing the parameters would
        walk the whole module tree (about 0.1 ms a step for a 3-layer MLP).
        """
        if type(self).players is GenerativeModel.players:
            return ("model",)
        return tuple(self.players())

    def _check_player(self, player: str) -> None:
        names = self.player_names()
        if player not in names:
            raise UnknownPlayer(
                f"{type(self).__name__} has no player {player!r}; its players are {sorted(names)}"
            )

    def _check(self, x: Any, *, name: str = "x", integer: bool = False) -> Tensor:
        """Validate a batch against this model's ``event_shape`` (see ``check_input``)."""
        return check_input(x, self.event_shape, name=name, integer=integer)

    def _condition(self, condition: Any, rows: int, *, expand: bool = False) -> Tensor | None:
        """The checked condition of a call on ``rows`` examples (None: no condition).

        With ``expand`` (``sample``), one condition is repeated ``rows`` times.
        Raises ``InvalidInput`` for a condition given to an unconditional model,
        none given to a model without an unconditional mode, or a bad batch.
        """
        spec = self.condition_spec
        if spec is None:
            if condition is not None:
                raise InvalidInput(_unconditional_message(self))
            return None
        if condition is None:
            if self.unconditional_mode:
                return None
            raise InvalidInput(
                f"{type(self).__name__} models p(x | c) with c {spec.describe()} and has "
                "no unconditional mode: pass condition="
            )
        return spec.expand(condition, rows) if expand else spec.check(condition, rows)

    def save_pretrained(self, directory: str | os.PathLike[str], **options: Any) -> Path:
        """Write this model as a shareable folder (``probgen.pretrained.save_pretrained``)."""
        from probgen.pretrained import save_pretrained  # saving's imports load on use

        return save_pretrained(self, directory, **options)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], **options: Any) -> GenerativeModel:
        """The model a ``save_pretrained`` folder holds (``probgen.pretrained.from_pretrained``)."""
        from probgen.pretrained import from_pretrained

        return from_pretrained(directory, **options)

    def as_distribution(self, condition: Any = None, **options: Any) -> ModelDistribution:
        """This model as a ``torch.distributions.Distribution`` (``probgen.distribution``)."""
        from probgen.distribution import as_distribution

        return as_distribution(self, condition, **options)

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (CPU for a model with neither)."""
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if first is None else first.device


_CONDITIONED_CALLS = ("log_prob", "sample", "rsample", "loss")


def _unconditional_message(model: nn.Module) -> str:
    return (
        f"{type(model).__name__} is unconditional: it models p(x) and takes no condition; "
        "build a conditional model for data with conditions"
    )


def _without_condition(method: Any) -> Any:
    """``method`` with a ``condition`` keyword that must be None (an unconditional call)."""

    @functools.wraps(method)
    def call(self: GenerativeModel, *args: Any, condition: Any = None, **kwargs: Any) -> Any:
        if condition is not None:
            raise InvalidInput(_unconditional_message(self))
        return method(self, *args, **kwargs)

    return call


@runtime_checkable
class DataInitialized(Protocol):
    """A model (or a part of one) that sets its starting parameters from training data.

    ``initialize_from_data(x, condition=None)`` takes examples x (N, *event_shape)
    and their conditions, and is called once before training (by
    ``probgen.models.build_model``); loading saved weights afterwards
    overwrites what it set, so a saved model never needs the data again.
    """

    def initialize_from_data(self, x: Tensor, condition: Tensor | None = None) -> None:
        """Set the starting parameters from x (N, *event_shape) and c."""


def call_log_prob(
    model: GenerativeModel,
    x: Tensor,
    generator: torch.Generator | None = None,
    condition: Tensor | None = None,
) -> Tensor:
    """``model.log_prob(x, condition=...)``, with ``generator=`` if its ``log_prob`` takes one.

    A deterministic ``log_prob`` draws nothing, and models written with the
    one-argument protocol keep working. x (B, *event_shape) -> (B,). Wrappers
    (``Dequantized``, ``Standardized``, a Bayesian posterior predictive) score
    their inner model through this, so one generator reaches every draw of an
    evaluation and the condition reaches the family.
    """
    if generator is not None and _takes_generator(type(model).log_prob):
        return model.log_prob(x, condition=condition, generator=generator)
    return model.log_prob(x, condition=condition)


@functools.cache
def _takes_generator(log_prob: Any) -> bool:
    return "generator" in inspect.signature(log_prob).parameters
