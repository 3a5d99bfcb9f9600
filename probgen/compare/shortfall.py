"""Flags for rows whose training fell far short of plan, each with its reason.

Three checks, run on every trained row:

- **Starved of CPU** (a wall-clock budget): the training process's share of
  its cores, s = CPU seconds / (wall seconds · threads), measured over the
  whole training call. A run that holds its cores has s ≈ 1; with s <
  ``MIN_CPU_SHARE`` the budget bought about a fraction s of the steps it
  should have (steps / s on a free core). A CPU-second budget or a fixed
  step count is not shortened by load, so it is not checked.
- **Still falling steeply** (single-player models with a likelihood or a
  bound, whose loss is that objective): with m(a, b) the mean logged loss
  over the rounds in (a·S, b·S] of the S rounds taken,

      r = [m(0.8, 0.9) − m(0.9, 1)] / [m(0, 0.1) − m(0.9, 1)]

  is the share of the whole drop made in the last tenth of training. A loss
  that has levelled off gives r ≈ 0, a straight descent r = 1/9 ≈ 0.11; the
  row is flagged when r > ``FALLING_FRACTION`` (more training would change its
  numbers) and the last drop is real, not minibatch noise: m(0.8, 0.9) −
  m(0.9, 1) > ``NOISE_Z`` standard errors, √(s²_a/n_a + s²_b/n_b) from the
  two windows' sample variances. Needs ``MIN_RECORDS`` logged losses and a
  positive total drop.
- **Stalled** (every model, every player): a player's logged loss is exactly
  the same number for the last ``STALLED_RECORDS`` or more logged rounds. A
  minibatch loss that depends on its batch never repeats to the last bit,
  so the loss no longer depends on the data and every gradient is zero: the
  model stopped learning there. The cause seen here: a WGAN critic under
  weight clipping whose ReLU units all switched off, so V is its output bias
  and the generator gets no gradient (its loss is exactly −b thereafter).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from probgen.train import TrainConfig

if TYPE_CHECKING:  # run.py imports this module
    from probgen.compare.run import ModelResult

__all__ = [
    "FALLING_FRACTION",
    "MIN_CPU_SHARE",
    "MIN_RECORDS",
    "NOISE_Z",
    "STALLED_RECORDS",
    "drop_share_at_end",
    "stalled_since",
    "training_flags",
]

MIN_CPU_SHARE = 0.5
"""Below this share of its cores, a wall-clock-budget run is flagged as starved."""

FALLING_FRACTION = 0.05
"""Above this share of the whole loss drop in the last tenth, a run is flagged as unconverged."""

MIN_RECORDS = 20
"""Logged losses needed before the end of a curve is judged."""

NOISE_Z = 3.0
"""Standard errors by which the last tenth's drop must exceed zero (one-sided, p ≈ 0.001)."""

STALLED_RECORDS = 10
"""Identical logged losses at the end of training after which a player is flagged as stalled."""

_JUDGED = ("exact", "bound", "estimate")
"""Likelihood kinds whose training loss is the (bound on the) NLL, so its drop means progress."""


_WINDOWS = ((0.0, 0.1), (0.8, 0.9), (0.9, 1.0))
"""The first, the second-last and the last tenth of training, as fractions of the rounds."""


def _window(records: Sequence[tuple[int, float]], low: float, high: float) -> list[float]:
    return [v for s, v in records if low < s <= high]


def _mean_and_variance(values: list[float]) -> tuple[float, float]:
    """The mean and the variance of the mean (sample variance / n; inf for one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.inf
    return mean, sum((v - mean) ** 2 for v in values) / (n - 1) / n


def drop_share_at_end(history: Sequence[dict[str, Any]], key: str) -> float | None:
    """r, the share of the loss drop made in the last tenth of training.

    None when the curve is not judged: fewer than ``MIN_RECORDS`` values,
    an empty window, no drop overall, or a last drop within ``NOISE_Z``
    standard errors of zero (then it may be minibatch noise, and r is moot).
    """
    records = [(r["step"], r[key]) for r in history if key in r and math.isfinite(r[key])]
    if len(records) < MIN_RECORDS:
        return None
    last = records[-1][0]
    windows = [_window(records, a * last, b * last) for a, b in _WINDOWS]
    if not all(windows):
        return None
    (first, _), (late, var_late), (end, var_end) = (_mean_and_variance(w) for w in windows)
    total = first - end
    if not total > 0 or not late - end > NOISE_Z * math.sqrt(var_late + var_end):
        return None
    return (late - end) / total


def stalled_since(history: Sequence[dict[str, Any]], key: str) -> tuple[int, int] | None:
    """(round, n): the loss ``key`` was exactly one value from that round to the end, n records.

    None unless the last ``STALLED_RECORDS`` or more logged values are identical.
    """
    records = [(r["step"], r[key]) for r in history if key in r]
    if len(records) < STALLED_RECORDS:
        return None
    last = records[-1][1]
    n = 0
    for _, value in reversed(records):
        if value != last:
            break
        n += 1
    return (records[-n][0], n) if n >= STALLED_RECORDS else None


def training_flags(row: ModelResult, train: TrainConfig, players: Sequence[str]) -> list[str]:
    """The reasons ``row``'s training fell far short of plan (empty when it did not)."""
    flags = []
    share = row.cpu_share
    if (
        train.time_budget is not None
        and train.budget_clock == "wall"
        and row.stop_reason == "time_budget"
        and share < MIN_CPU_SHARE
    ):
        flags.append(
            f"starved: {share:.0%} of a core per thread in its {train.time_budget:g} s "
            f"wall-clock budget, so {row.steps} steps where a free core gives about "
            f"{row.steps / max(share, 1e-3):.0f}; use budget_clock: cpu or fixed steps"
        )
    if list(players) == ["model"] and row.likelihood in _JUDGED:
        r = drop_share_at_end(row.history, "loss/model")
        if r is not None and r > FALLING_FRACTION:
            flags.append(
                f"unconverged: the loss fell {r:.0%} of its whole drop in the last tenth "
                f"of training (flagged above {FALLING_FRACTION:.0%}); train longer"
            )
    stalls = {p: stalled_since(row.history, f"loss/{p}") for p in players}
    stalls = {p: stall for p, stall in stalls.items() if stall is not None}
    if stalls:
        frozen = " and ".join(f"{p} (exactly {row.history[-1][f'loss/{p}']:.6g})" for p in stalls)
        start = min(start for start, _ in stalls.values())
        n = max(n for _, n in stalls.values())
        flags.append(
            f"stalled from round {start}: the loss of {frozen} did not change for {n} logged "
            "rounds, so it no longer depends on the data and its gradients are zero: nothing "
            "was learned after that (e.g. every ReLU unit switched off)"
        )
    return flags
