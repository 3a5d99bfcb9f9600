"""Shared test settings: float64 by default, fixed seeds, the data folder, a ``dtype`` fixture."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

DATA_DIR = Path(
    os.environ.get("PROBGEN_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(autouse=True)
def _float64_and_seed():
    """Every test starts in float64 with seed 0 and restores the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def data_dir() -> Path:
    """The real data sets (``../shared/data`` unless PROBGEN_DATA says otherwise)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"data folder {DATA_DIR} not found (set PROBGEN_DATA)")
    return DATA_DIR


FLOAT_DTYPES = (torch.float32, torch.float64)


@pytest.fixture(params=FLOAT_DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def dtype(request: pytest.FixtureRequest, _float64_and_seed: None) -> torch.dtype:
    """Run the test once in float32 and once in float64, as the default dtype.

    The dtype is set after the autouse float64 fixture (which restores the old default
    afterwards); tolerances in such a test should be derived from
    ``torch.finfo(dtype).eps`` and the size of the quantity compared.
    """
    torch.set_default_dtype(request.param)
    return request.param
