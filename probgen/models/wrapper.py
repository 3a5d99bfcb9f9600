"""The base of the data wrappers ``build_model`` applies: one inner model, seen through a map.

``Dequantized`` (integer data) and ``Standardized`` (continuous data) change
what the inner model sees, not who plays or what it is conditioned on: the
players, their parameters, the condition and the unconditional mode are the
inner model's. Each wrapper then says how x and c are mapped in its calls.
"""

from __future__ import annotations

from torch import nn

from probgen.core import ConditionSpec, GenerativeModel

__all__ = ["DataWrapper"]


class DataWrapper(GenerativeModel):
    """A ``GenerativeModel`` holding ``model``, whose players and condition it passes through."""

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__(model.event_shape)
        self.model = model

    def players(self) -> dict[str, list[nn.Parameter]]:
        """The inner model's players and their parameters."""
        return self.model.players()

    def _check_player(self, player: str) -> None:
        """The inner model's check (its players are the wrapper's)."""
        self.model._check_player(player)

    @property  # type: ignore[override]
    def condition_spec(self) -> ConditionSpec | None:
        """The inner model's condition (the wrapper passes it through)."""
        return self.model.condition_spec

    @property  # type: ignore[override]
    def unconditional_mode(self) -> bool:
        """The inner model's."""
        return self.model.unconditional_mode
