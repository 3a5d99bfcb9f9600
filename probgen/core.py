"""The one protocol every probgen model implements, and the errors it raises.

Every model is a learned (or analytic) distribution p_θ(x) over events of a
fixed ``event_shape``. Batches carry one leading batch dimension:
``x`` has shape ``(B, *event_shape)``.

    class GenerativeModel(torch.nn.Module):
        likelihood: Likelihood            # what log_prob means
        def players(self) -> dict[str, list[Parameter]]
        def loss(self, x, player="model") -> Tensor   # that player's objective
        def sample(self, n, **options) -> Tensor       # (n, *event_shape)
        def log_prob(self, x, *, generator=None) -> Tensor  # (B,), in nats

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
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
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
    """

    event_shape: tuple[int, ...]
    levels: int | None = None

    @property
    def dim(self) -> int:
        """Number of scalar entries in one example."""
        return math.prod(self.event_shape)


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
    bad = (~torch.isfinite(x)).sum().item()
    if bad:
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

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)

    @classmethod
    def for_data(cls, spec: DataSpec, **options: Any) -> GenerativeModel:
        """Build this model for data described by ``spec`` (used by the CLI)."""
        return cls(event_shape=spec.event_shape, **options)

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

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        """The scalar objective of ``player`` on a batch ``x`` of shape (B, *event_shape)."""
        self._check_player(player)
        return -self.log_prob(x).mean()

    @abc.abstractmethod
    def sample(self, n: int, **options: Any) -> Tensor:
        """Draw ``n`` independent samples, shape ``(n, *event_shape)``."""

    def log_prob(self, x: Tensor) -> Tensor:
        """log p_θ(x) per example, shape (B,), in nats; see ``likelihood``.

        Models whose ``log_prob`` draws noise add the keyword-only argument
        ``generator: torch.Generator | None = None`` and draw from it (see
        ``call_log_prob``); deterministic ones need not.
        """
        raise IntractableLikelihood(
            f"{type(self).__name__} has no tractable density (likelihood = "
            f"{self.likelihood.value}); use a sample-based metric instead"
        )

    def _check_player(self, player: str) -> None:
        if player not in self.players():
            raise UnknownPlayer(
                f"{type(self).__name__} has no player {player!r}; "
                f"its players are {sorted(self.players())}"
            )

    def _check(self, x: Any, *, name: str = "x", integer: bool = False) -> Tensor:
        """Validate a batch against this model's ``event_shape`` (see ``check_input``)."""
        return check_input(x, self.event_shape, name=name, integer=integer)

    @property
    def device(self) -> torch.device:
        """Device of the first parameter or buffer (CPU for a model with neither)."""
        for t in (*self.parameters(), *self.buffers()):
            return t.device
        return torch.device("cpu")


def call_log_prob(
    model: GenerativeModel, x: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """``model.log_prob(x, generator=generator)`` if its ``log_prob`` takes a ``generator``.

    Else ``model.log_prob(x)``: a deterministic ``log_prob`` draws nothing, and
    models written with the one-argument protocol keep working. x (B,
    *event_shape) -> (B,). Wrappers (``Dequantized``, a Bayesian posterior
    predictive) score their inner model through this, so one generator reaches
    every draw of an evaluation.
    """
    if generator is not None and _takes_generator(type(model).log_prob):
        return model.log_prob(x, generator=generator)
    return model.log_prob(x)


@functools.cache
def _takes_generator(log_prob: Any) -> bool:
    return "generator" in inspect.signature(log_prob).parameters
