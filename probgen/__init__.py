"""probgen: every family of generative model on one probabilistic footing.

``probgen.from_pretrained``, ``probgen.load`` and ``probgen.save_pretrained``
(``probgen.pretrained``) are imported on first use, so ``import probgen`` stays light.
"""

import importlib
from typing import Any

from probgen.core import (
    DataSpec,
    Estimate,
    GenerativeModel,
    IntractableLikelihood,
    InvalidInput,
    Likelihood,
    ProbgenError,
    UnknownPlayer,
    check_input,
)

__all__ = [
    "DataSpec",
    "Estimate",
    "GenerativeModel",
    "IntractableLikelihood",
    "InvalidInput",
    "Likelihood",
    "ProbgenError",
    "UnknownPlayer",
    "check_input",
    "from_pretrained",
    "load",
    "save_pretrained",
]

__version__ = "0.1.0"

_LAZY = {name: "probgen.pretrained" for name in ("from_pretrained", "load", "save_pretrained")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'probgen' has no attribute {name!r}")
