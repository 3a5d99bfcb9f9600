"""Theory checks in float64 and float32: the ``theory_dtype`` and ``tol`` fixtures.

``theory_dtype`` runs a test once per dtype with that dtype as torch's default
(so every model, buffer and tensor the test builds is in it) and restores the
previous default afterwards. ``tol`` returns ``rounding_tolerance(dtype, size,
ops)``, the rounding allowance of a quantity of magnitude ``size`` computed in
``dtype``: ``ops`` roundings of relative size ε = ``torch.finfo(dtype).eps``,
i.e. ops · ε · |size|. Ground truths are computed in float64 (NumPy, SciPy), so
only the library's side carries the rounding of ``dtype``; statistical
tolerances (standard errors) are added to it, never replaced by it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

DTYPES = (torch.float64, torch.float32)


@pytest.fixture(params=DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def theory_dtype(request: pytest.FixtureRequest) -> Iterator[torch.dtype]:
    """The test's dtype, set as torch's default for its duration."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(old)


def rounding_tolerance(dtype: torch.dtype, size: float, ops: float = 64.0) -> float:
    """``ops`` roundings of relative size eps(dtype) on a quantity of magnitude ``size``."""
    return ops * torch.finfo(dtype).eps * abs(float(size))


@pytest.fixture
def tol() -> Callable[..., float]:
    """``rounding_tolerance`` as a fixture (tests import nothing from conftest)."""
    return rounding_tolerance
