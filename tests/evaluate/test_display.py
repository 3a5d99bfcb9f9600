"""A divergence estimate below zero is shown as its upper confidence bound, never as a number."""

from __future__ import annotations

import math

import pytest

from probgen.core import Estimate
from probgen.evaluate.display import divergence_text


@pytest.mark.parametrize(
    ("estimate", "text"),
    [
        (Estimate(0.1234567, 0.01), "0.1235"),  # non-negative: the value
        (Estimate(0.0, 0.0), "0"),
        (Estimate(-0.003, 0.004), "≤ 0.005"),  # within noise of 0: v + 2 s
        (Estimate(-0.003, 0.0015), "≤ 0"),  # v + 2 s = 0 exactly: still consistent with 0
        (Estimate(-0.3, 0.01), "biased (< 0)"),  # below zero by far more than noise
        (Estimate(-0.3, math.nan), "biased (< 0)"),  # no error to judge noise by
        (Estimate(math.nan, math.nan), "nan"),
    ],
)
def test_divergence_text(estimate: Estimate, text: str) -> None:
    assert divergence_text(estimate) == text
