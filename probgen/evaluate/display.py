"""How a divergence estimate is shown: never as a negative number.

A KL divergence is ≥ 0, but its estimates are not: a mean of per-example
log-ratios falls below zero by noise when the divergence is near 0, and a
biased estimator (an EBM's KL with log Z from AIS, biased low) can fall below
zero by more. Printing "−0.004" invites reading it as a divergence. So tables
show an estimate v ± s below zero as its one-sided upper confidence bound:

    "≤ v + 2s"          when v + 2s ≥ 0: consistent with 0 (97.7% one-sided bound)
    "biased (< 0)"      when v + 2s < 0, or s is unknown: the estimator's own bias

JSON outputs keep the raw value and its standard error, so an average over runs
stays unbiased.
"""

from __future__ import annotations

import math

from probgen.core import Estimate

__all__ = ["DIVERGENCES", "divergence_text"]

DIVERGENCES = ("kl_data_model", "kl_model_data", "kl_model_data_smoothed")
"""Results that are divergences (≥ 0 by definition), shown with ``divergence_text``."""

_Z = 2.0  # one-sided 97.7% upper bound


def divergence_text(estimate: Estimate, digits: int = 4) -> str:
    """A divergence estimate's value as text (``digits`` significant); see the module docstring."""
    value, stderr = estimate.value, estimate.stderr
    if not value < 0:  # non-negative, or NaN / inf: as it is
        return f"{value:.{digits}g}"
    upper = value + _Z * stderr
    if math.isfinite(stderr) and upper >= 0:
        return f"≤ {upper:.2g}"
    return "biased (< 0)"
