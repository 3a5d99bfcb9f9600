"""The contract of a posterior approximation q(θ) over chosen weights of a model.

A ``WeightPosterior`` stands for q(θ) ≈ p(θ | x_1..N) ∝ p(θ) Π_n p_θ(x_n) over a
subset θ of a model's parameters (the "Bayesian" ones; the rest stay point
estimates). It is bound once to those parameters by ``bind`` and then answers
four questions for ``BayesianModel``:

    trainable(name)     the tensors an optimizer updates in place of weight ``name``
    training_weights()  the weights one training-loss evaluation runs with (a context)
    penalty(names)      the θ-term of the per-dataset objective, e.g. KL(q ‖ p)
    draw(generator)     one posterior sample θ ~ q, as ``{name: tensor}``

The prior is p(θ) = Π_i N(θ_i; 0, s²) with s = ``prior_std``.

Reference: Blundell, Cornebise, Kavukcuoglu & Wierstra (2015), "Weight
Uncertainty in Neural Networks".
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput

__all__ = ["WeightPosterior", "select_parameters"]


def select_parameters(model: nn.Module, layers: Sequence[str] | None) -> dict[str, nn.Parameter]:
    """The parameters named by ``layers``: each entry is a module or parameter path.

    ``"decoder"`` selects every parameter under the submodule ``decoder``;
    ``"net.0.weight"`` selects one tensor; ``None`` selects all parameters.
    Raises ``InvalidInput`` for an entry that matches nothing, listing the
    valid module paths.
    """
    named = dict(model.named_parameters())
    if layers is None:
        return named
    chosen: dict[str, nn.Parameter] = {}
    for layer in layers:
        hits = {n: p for n, p in named.items() if n == layer or n.startswith(layer + ".")}
        if not hits:
            modules = sorted({n.rpartition(".")[0] or n for n in named})
            raise InvalidInput(
                f"layers: {layer!r} names no parameters of {type(model).__name__}; "
                f"valid paths include: {', '.join(modules)}"
            )
        chosen.update(hits)
    return chosen


class WeightPosterior(nn.Module, abc.ABC):
    """An approximation q(θ) of the posterior over chosen weights θ (see module docstring).

    Args:
        prior_std: the prior's standard deviation s, p(θ_i) = N(0, s²).
    """

    def __init__(self, prior_std: float = 1.0) -> None:
        super().__init__()
        if not prior_std > 0:
            raise InvalidInput(f"prior_std: expected a positive number, got {prior_std}")
        self.prior_std = float(prior_std)
        self.names: list[str] = []
        self.num_data = 1

    def bind(self, model: nn.Module, params: dict[str, nn.Parameter], num_data: int) -> None:
        """Attach q to the weights ``params`` of ``model`` (N = ``num_data`` examples)."""
        if self.names:
            raise InvalidInput(f"{type(self).__name__} is already bound to a model")
        if not params:
            raise InvalidInput("a posterior needs at least one weight; none were selected")
        if num_data < 1:
            raise InvalidInput(f"num_data: expected a positive integer, got {num_data}")
        self.names = list(params)
        self.num_data = int(num_data)
        self._bind(model, params)

    @classmethod
    def from_training(cls, options: dict[str, Any], train: Any) -> WeightPosterior:
        """Build from config ``options``, checking the run's ``TrainConfig`` suits this method.

        Raises ``InvalidInput`` when the training settings cannot realise this
        posterior; methods without requirements build ``cls(**options)``.
        """
        return cls(**options)

    @abc.abstractmethod
    def _bind(self, model: nn.Module, params: dict[str, nn.Parameter]) -> None:
        """Create this approximation's own state for the weights ``params``."""

    @abc.abstractmethod
    def trainable(self, name: str) -> list[nn.Parameter]:
        """The tensors an optimizer updates in place of the model's weight ``name``."""

    @abc.abstractmethod
    def penalty(self, names: Sequence[str]) -> Tensor:
        """The θ-part of the dataset objective over ``names`` (divided by N by the caller)."""

    @abc.abstractmethod
    def draw(self, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One posterior draw θ ~ q(θ): ``{name: tensor shaped like the weight}``."""

    def training_weights(self) -> contextlib.AbstractContextManager[dict[str, Tensor]]:
        """The weights one training-loss evaluation uses (none: the model's own)."""
        return contextlib.nullcontext({})

    def log_prior(self, weights: Sequence[Tensor]) -> Tensor:
        """log p(θ) = Σ_i log N(θ_i; 0, s²) = Σ_i [-θ_i²/(2s²) - log s - ½ log 2π], a scalar."""
        s = self.prior_std
        const = math.log(s) + 0.5 * math.log(2 * math.pi)
        return torch.stack([(-0.5 * (w / s).square() - const).sum() for w in weights]).sum()

    def extra_repr(self) -> str:
        return f"prior_std={self.prior_std}, weights={len(self.names)}"
