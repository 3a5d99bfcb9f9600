"""Metrics for character-level text: per-character likelihood and n-gram statistics of samples.

For a model of windows x = (x_1 … x_T) of characters:

    nats_per_char = −(1/N) Σ_n log p_θ(x_n) / T          (the mean token NLL)
    bits_per_char = nats_per_char / ln 2                  (= bpd for text)

Samples are compared with held-out text through their n-grams, the
contiguous runs of n characters inside each window (none across windows,
which are independent draws). With the n-gram frequencies P of the samples
and Q of the held-out split:

    distinct_n   = |{distinct n-grams}| / |n-grams| of the samples          ∈ (0, 1]
    ngram_js_n   = JS(P ‖ Q) = ½ KL(P ‖ M) + ½ KL(Q ‖ M),  M = (P + Q)/2   ∈ [0, ln 2]

distinct-n (Li, Galley, Brockett, Gao & Dolan, 2016, "A Diversity-Promoting
Objective Function for Neural Conversation Models") is low for repetitive
text (a loop of one line) and depends on the amount of text, so its note
gives the value of as many windows of training text. The n-gram Jensen-Shannon
divergence (Lin, 1991, "Divergence Measures Based on the Shannon Entropy") is
finite whatever the supports, unlike KL(Q ‖ P), which is +∞ as soon as the
samples miss one held-out n-gram; it is biased upwards by the finite number
of samples, so its note gives the floor: the JS of as many training windows
(real text, independent of the held-out split) against the same Q.

Raw-token distances (MMD, PRDC, FID on ids) stay left out (``suite``): ids
are labels, not magnitudes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probgen.core import Estimate, GenerativeModel, InvalidInput, Likelihood
from probgen.data.base import Dataset
from probgen.evaluate.likelihood import ModelLogProb
from probgen.evaluate.metric import (
    Context,
    DataKind,
    Metric,
    Result,
    _cpu,
    _name,
    _unknown_error,
    is_text,
)

__all__ = ["CharacterNLL", "NgramStatistics", "distinct_n", "is_text", "ngram_js", "ngrams"]


def ngrams(tokens: Tensor, n: int, vocab: int) -> Tensor:
    """Every n-gram inside the windows ``tokens`` (N, T), as ids Σ_i x_{t+i} V^{n−1−i}.

    Returns (N · (T − n + 1),) long: one id per window and start t ≤ T − n.
    """
    if not 1 <= n <= tokens.shape[1]:
        raise InvalidInput(f"n-gram order: expected 1…{tokens.shape[1]} (the window), got {n}")
    if vocab**n >= 2**63:
        raise InvalidInput(f"n-gram order {n}: V^n = {vocab}^{n} overflows int64 ids")
    x = tokens.long()
    ids = torch.zeros(x.shape[0], x.shape[1] - n + 1, dtype=torch.long)  # (N, T − n + 1)
    for i in range(n):
        ids = ids * vocab + x[:, i : x.shape[1] - n + 1 + i]
    return ids.flatten()


def distinct_n(tokens: Tensor, n: int, vocab: int) -> float:
    """distinct-n of windows (N, T): distinct n-grams / all n-grams (Li et al. 2016)."""
    ids = ngrams(tokens, n, vocab)
    return len(ids.unique()) / len(ids)


def ngram_js(a: Tensor, b: Tensor, n: int, vocab: int) -> float:
    """JS divergence (nats) of the n-gram frequencies of windows a (N, T) and b (M, T')."""
    ids_a, ids_b = ngrams(a, n, vocab), ngrams(b, n, vocab)
    support = torch.cat([ids_a, ids_b]).unique()  # sorted
    p = _frequencies(ids_a, support)
    q = _frequencies(ids_b, support)
    m = 0.5 * (p + q)
    return 0.5 * (_kl(p, m) + _kl(q, m))


def _frequencies(ids: Tensor, support: Tensor) -> Tensor:
    """Relative frequency of each id of ``support`` (sorted) among ``ids``: float64 (S,)."""
    counts = torch.zeros(len(support), dtype=torch.float64)
    counts.index_add_(
        0, torch.searchsorted(support, ids), torch.ones(len(ids), dtype=torch.float64)
    )
    return counts / len(ids)


def _kl(p: Tensor, m: Tensor) -> float:
    """KL(p ‖ m) = Σ p log(p / m) over p > 0 (m > 0 wherever p > 0)."""
    keep = p > 0
    return float((p[keep] * (p[keep] / m[keep]).log()).sum())


class CharacterNLL(Metric):
    """``nats_per_char`` and ``bits_per_char`` of held-out text (exact for autoregressive models).

    The per-window log-likelihoods are the ones ``NLL`` uses (one cache), so
    nats_per_char = nll / T and bits_per_char = bpd up to rounding.
    """

    names = ("nats_per_char", "bits_per_char")
    kinds = frozenset({DataKind.TEXT})

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if model.likelihood is Likelihood.NONE:
            return f"{_name(model)} has no density (likelihood none)"
        if model.likelihood is Likelihood.UNNORMALIZED:
            return f"{_name(model)} is unnormalized: log p is off by log Z"
        return None

    def __call__(self, ctx: Context) -> Result:
        length = ctx.dataset.spec.event_shape[0]
        per_char = -ctx.log_likelihoods(None) / length  # (N,) nats per character of each window
        kind = ModelLogProb().kind(ctx.model)
        nats = Estimate.from_samples(per_char, kind=kind)
        bits = Estimate(nats.value / math.log(2), nats.stderr / math.log(2), kind)
        return {"nats_per_char": nats, "bits_per_char": bits}


class NgramStatistics(Metric):
    """``distinct_n`` and ``ngram_js_n`` of the samples for n in ``orders`` (module docstring)."""

    kinds = frozenset({DataKind.TEXT})

    def __init__(self, orders: tuple[int, ...] = (1, 2, 3)) -> None:
        self.orders = tuple(orders)
        self.names = tuple(f"distinct_{n}" for n in self.orders) + tuple(
            f"ngram_js_{n}" for n in self.orders
        )

    def __call__(self, ctx: Context) -> Result:
        vocab = ctx.dataset.spec.levels
        samples, held_out = ctx.samples.long(), ctx.data.long().cpu()
        train = ctx.dataset.split("train")
        rows = torch.randperm(len(train), generator=_cpu(ctx.generator))[: len(samples)]
        real = train[rows].long()  # as many windows of real text, independent of the split
        out: Result = {}
        for n in self.orders:
            out[f"distinct_{n}"] = _unknown_error(distinct_n(samples, n, vocab))
        for n in self.orders:
            out[f"ngram_js_{n}"] = _unknown_error(ngram_js(samples, held_out, n, vocab))
        distinct = ", ".join(f"{distinct_n(real, n, vocab):.4g}" for n in self.orders)
        floors = ", ".join(f"{ngram_js(real, held_out, n, vocab):.4g}" for n in self.orders)
        orders = ", ".join(map(str, self.orders))
        windows = f"{len(real)} windows of training text"
        ctx.notes.update(
            dict.fromkeys(
                (f"distinct_{n}" for n in self.orders),
                f"n = {orders} on {len(samples)} samples; {windows} score {distinct}",
            )
        )
        ctx.notes.update(
            dict.fromkeys(
                (f"ngram_js_{n}" for n in self.orders),
                f"vs the split's n-grams; floor ({windows}): {floors}",
            )
        )
        return out
