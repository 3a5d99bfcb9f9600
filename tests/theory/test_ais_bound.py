"""AIS is unbiased for Z and a lower bound for log Z in expectation (Neal 2001), on a known Z.

The target is f(z) = exp(−½ (z − m)ᵀ A (z − m)) in 2-D with A = diag(1/s²), so
Z = 2π s_1 s_2 exactly; p_0 = N(0, I). Each of B targets in one ``AIS.run`` is an
independent repeat (one chain each, so Ẑ = w). The kernel's step size is fixed
(``target_acceptance=None``): AIS's E[w] = Z holds for transitions fixed in
advance, and the adaptive default lets the step size depend on past states.
Monte Carlo comparisons allow four standard errors plus the dtype's rounding.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from probgen.distributions import StandardNormal
from probgen.evaluate.ais import AIS, linear_schedule
from probgen.sampling import HMC

MEAN = (1.0, -0.5)
STD = (0.7, 1.2)
LOG_Z = math.log(2 * math.pi * STD[0] * STD[1])


def log_target(z: torch.Tensor) -> torch.Tensor:
    u = (z - torch.tensor(MEAN, dtype=z.dtype)) / torch.tensor(STD, dtype=z.dtype)
    return -0.5 * u.square().sum(-1)


def run(levels: int, repeats: int, seed: int) -> np.ndarray:
    """log Ẑ of ``repeats`` independent one-chain AIS runs with ``levels`` linear levels."""
    ais = AIS(
        linear_schedule(levels),
        functools.partial(HMC, n_leapfrog=3),
        step_size=0.3,
        target_acceptance=None,
        n_chains=1,
    )
    result = ais.run(
        StandardNormal((2,)),
        log_target,
        batch=repeats,
        generator=torch.Generator().manual_seed(seed),
    )
    assert result.log_normalizer.dtype == torch.get_default_dtype()
    return result.log_normalizer.double().numpy()


def test_ais_is_unbiased_for_z_and_a_lower_bound_for_log_z(theory_dtype, tol):
    """Neal (2001): E[w] = Z, hence E[log Ẑ] ≤ log Z (Jensen), with equality as T → ∞.

    With T = 4 levels (8,000 repeats): the mean of Ẑ/Z is 1 within 4 s.e. (two-sided); the
    mean of log Ẑ is below log Z by more than 4 s.e. (a real Jensen gap). With T = 400
    levels (2,000 repeats) the gap is within 4 s.e. of zero and that s.e. is below 0.01 nats.
    """
    rounding = tol(theory_dtype, LOG_Z)
    log_w = run(4, 8000, seed=1)
    ratio = np.exp(log_w - LOG_Z)
    se_ratio = ratio.std() / math.sqrt(len(ratio))
    assert abs(ratio.mean() - 1) < 4 * se_ratio + rounding, (ratio.mean(), se_ratio)
    gap = log_w.mean() - LOG_Z
    se_gap = log_w.std() / math.sqrt(len(log_w))
    assert gap < -4 * se_gap, (gap, se_gap)

    log_w = run(400, 2000, seed=2)
    gap = log_w.mean() - LOG_Z
    se_gap = log_w.std() / math.sqrt(len(log_w))
    assert se_gap < 0.01
    assert abs(gap) < 4 * se_gap + rounding, (gap, se_gap)
