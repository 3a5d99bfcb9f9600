"""Which condition a family builds for a data set: ``spec.condition``, or none on request."""

from __future__ import annotations

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput

__all__ = ["condition_for"]


def condition_for(spec: DataSpec, conditional: bool | None, family: str) -> ConditionSpec | None:
    """The condition a ``family`` built by ``for_data`` models: p(x | c) or p(x).

    ``conditional`` None means "conditional exactly when the data have a
    condition" (``spec.condition``); True demands one (``InvalidInput`` when
    the data have none); False builds the unconditional model p(x).
    """
    if conditional is False:
        return None
    if conditional and spec.condition is None:
        raise InvalidInput(
            f"{family}: conditional=True needs data with a condition (DataSpec.condition), "
            "and these data have none"
        )
    return spec.condition
