"""What a condition c of p(x | c) is, and how a batch of conditions is checked and encoded.

A conditional model and a conditional data set describe their condition by
one ``ConditionSpec``:

    ConditionSpec(classes=K)       integer labels c ∈ {0, …, K−1}, a batch (B,)
    ConditionSpec(shape=(d, …))    a continuous vector, a batch (B, d, …)

Every model call takes the condition as one keyword, with the same meaning
in every family (DESIGN.md, "Conditions"):

    log_prob(x, condition=c)    sample(n, condition=c)    loss(x, player, condition=c)

``check`` validates a batch with the same one-line errors as ``check_input``
(shape, dtype, a class out of range, NaN); ``expand`` turns one condition
into n rows, so ``sample(n, condition=3)`` draws n times from p(· | c = 3);
``features`` is what a network reads: one-hot rows for classes, the
flattened vector for continuous conditions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["ConditionSpec"]


@dataclass(frozen=True)
class ConditionSpec:
    """The condition of p(x | c): ``classes`` K labels, or a continuous vector of ``shape``.

    Exactly one of the two is given. ``features`` (``width`` columns) is the
    network input: K one-hot columns, or prod(shape) values.
    """

    classes: int | None = None
    shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        from probgen.core import InvalidInput  # core imports this module

        if (self.classes is None) == (self.shape is None):
            raise InvalidInput("ConditionSpec: give exactly one of classes=K or shape=(d, …)")
        if self.classes is not None and (
            isinstance(self.classes, bool) or not isinstance(self.classes, int) or self.classes < 2
        ):
            raise InvalidInput(
                f"ConditionSpec: expected classes an integer >= 2, got {self.classes!r}"
            )
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
            if not self.shape or any(s < 1 for s in self.shape):
                raise InvalidInput(f"ConditionSpec: expected a non-empty shape, got {self.shape}")

    @property
    def is_classes(self) -> bool:
        """Whether the condition is a class label."""
        return self.classes is not None

    @property
    def width(self) -> int:
        """Columns of ``features``: K for classes, prod(shape) for a vector."""
        return self.classes if self.classes is not None else math.prod(self.shape or ())

    def describe(self) -> str:
        """``"K classes"`` or ``"a vector of shape (d,)"``, for messages."""
        if self.classes is not None:
            return f"{self.classes} classes"
        return f"a vector of shape {self.shape}"

    def check(self, c: Any, batch: int | None = None, *, name: str = "condition") -> Tensor:
        """Validate conditions c, (B,) labels or (B, *shape) vectors, and return a tensor.

        ``batch`` (when given) is the number of rows c must have. Raises
        ``InvalidInput`` naming what was expected and what came.
        """
        from probgen.core import InvalidInput

        if isinstance(c, np.ndarray):
            c = torch.from_numpy(c)
        if not isinstance(c, Tensor):
            raise InvalidInput(f"{name}: expected a torch.Tensor, got {type(c).__name__}")
        rows = "B" if batch is None else str(batch)
        if self.classes is not None:
            if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
                raise InvalidInput(f"{name}: expected integer class labels, got {c.dtype}")
            if c.dim() != 1 or (batch is not None and len(c) != batch):
                raise InvalidInput(
                    f"{name}: expected labels of shape ({rows},), got {tuple(c.shape)}"
                )
            if len(c) and (c.min() < 0 or c.max() >= self.classes):
                raise InvalidInput(
                    f"{name}: class labels must lie in 0..{self.classes - 1}, got values in "
                    f"[{c.min().item()}, {c.max().item()}]"
                )
            return c
        shape = (rows, *(str(s) for s in self.shape or ()))
        if (
            c.dim() != 1 + len(self.shape or ())
            or tuple(c.shape[1:]) != self.shape
            or (batch is not None and len(c) != batch)
        ):
            raise InvalidInput(f"{name}: expected shape ({', '.join(shape)}), got {tuple(c.shape)}")
        if not c.is_floating_point():
            raise InvalidInput(f"{name}: expected a floating-point tensor, got {c.dtype}")
        bad = (~torch.isfinite(c)).sum().item()
        if bad:
            raise InvalidInput(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")
        return c

    def expand(self, c: Any, n: int, *, name: str = "condition") -> Tensor:
        """n rows of conditions: one condition (an int, a label tensor of shape (), or one
        vector of ``shape``) repeated n times, or a batch of n checked as it is."""
        if self.classes is not None and isinstance(c, int) and not isinstance(c, bool):
            c = torch.tensor(c)
        if isinstance(c, Tensor):
            single = c.dim() == 0 if self.classes is not None else tuple(c.shape) == self.shape
            if single:
                c = c.unsqueeze(0).expand(n, *c.shape)
        elif isinstance(c, float | list | tuple) and self.shape is not None:
            c = torch.as_tensor(c, dtype=torch.get_default_dtype())
            return self.expand(c, n, name=name)
        return self.check(c, n, name=name)

    def features(self, c: Tensor, dtype: torch.dtype) -> Tensor:
        """(B, width) network input: one-hot labels, or the flattened vectors."""
        if self.classes is not None:
            return torch.nn.functional.one_hot(c.long(), self.classes).to(dtype)
        return c.reshape(len(c), -1).to(dtype)
