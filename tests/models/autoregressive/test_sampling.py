"""Logit filters, categorical draws and discrete-input validation shared by the AR models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from probgen.core import InvalidInput
from probgen.models.autoregressive import LogitFilter, as_levels, sample_logits

# distinct logits (steps of 0.1), so "the k largest" and "the most probable" have no ties
logit_vectors = st.lists(st.integers(-50, 50), min_size=2, max_size=8, unique=True).map(
    lambda v: torch.tensor(v) / 10
)


def kept(filt: LogitFilter, logits: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(filt(logits))


@settings(max_examples=40, deadline=None)
@given(logit_vectors, st.floats(0.2, 5.0))
def test_temperature_is_softmax_of_scaled_logits(logits, t):
    probs = LogitFilter(temperature=t)(logits).softmax(-1)
    torch.testing.assert_close(probs, torch.softmax(logits / t, -1))


@settings(max_examples=40, deadline=None)
@given(logit_vectors, st.integers(1, 8))
def test_top_k_keeps_the_k_largest_and_renormalises(logits, k):
    filt = LogitFilter(top_k=k)
    keep = kept(filt, logits)
    kth = logits.sort(descending=True).values[min(k, len(logits)) - 1]
    assert torch.equal(keep, logits >= kth)
    assert keep.sum() == min(k, len(logits))  # exactly k (the logits have no ties)
    p = logits.softmax(-1)
    torch.testing.assert_close(filt(logits).softmax(-1), torch.where(keep, p, 0) / p[keep].sum())


@settings(max_examples=40, deadline=None)
@given(logit_vectors, st.floats(0.01, 0.99))
def test_top_p_keeps_the_smallest_most_probable_set_reaching_p(logits, p_mass):
    keep = kept(LogitFilter(top_p=p_mass), logits)
    p = logits.softmax(-1)
    # brute force: add values in decreasing probability until the mass reaches p
    order = p.argsort(descending=True).tolist()
    expected = torch.zeros_like(keep)
    mass = 0.0
    for i in order:
        expected[i] = True
        mass += p[i].item()
        if mass >= p_mass:
            break
    assert torch.equal(keep, expected)
    # the kept mass reaches p, and the set is minimal: without its least likely member it does not
    kept_p = p[keep].sort(descending=True).values
    tol = 8 * len(p) * torch.finfo(p.dtype).eps  # the filter's cumsum, summed in another order
    assert kept_p.sum() >= p_mass - tol
    assert kept_p[:-1].sum() < p_mass + tol


def test_filters_compose_in_order_temperature_top_k_top_p():
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, -3.0])
    filt = LogitFilter(temperature=0.5, top_k=3, top_p=0.9)
    scaled = logits / 0.5
    p3 = torch.softmax(scaled[:3], -1)  # after top-3, renormalised
    n_keep = int((torch.cumsum(p3, 0) - p3 < 0.9).sum())
    assert kept(filt, logits).tolist() == [i < n_keep for i in range(5)]


def test_draws_follow_the_filtered_probabilities():
    gen = torch.Generator().manual_seed(1)
    logits = torch.tensor([0.3, -1.0, 1.2, 0.0, -0.4])
    filt = LogitFilter(temperature=1.5, top_k=4)
    draws = sample_logits(logits.expand(40000, 5), filt, gen)
    p = filt(logits).softmax(-1).numpy()
    counts = np.bincount(draws.numpy(), minlength=5)
    assert counts[p == 0].sum() == 0
    chi2 = stats.chisquare(counts[p > 0], 40000 * p[p > 0])
    assert chi2.pvalue > 1e-3


def test_same_generator_seed_gives_same_draws():
    logits = torch.randn(100, 7)
    a = sample_logits(logits, None, torch.Generator().manual_seed(3))
    b = sample_logits(logits, None, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert a.shape == (100,) and a.dtype == torch.long


@pytest.mark.parametrize(
    "kwargs", [{"temperature": -0.1}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}]
)
def test_bad_filter_settings_raise(kwargs):
    with pytest.raises(InvalidInput):
        LogitFilter(**kwargs)


@pytest.mark.parametrize(
    "x",
    [
        torch.tensor([[0.0, 2.0], [1.0, 1.0]]),
        torch.tensor([[0, 2], [1, 1]]),
        np.array([[0, 2], [1, 1]], dtype=np.uint8),
    ],
)
def test_as_levels_accepts_every_storage_of_whole_levels(x):
    out = as_levels(x, (2,), 3)
    assert out.dtype == torch.long
    assert out.tolist() == [[0, 2], [1, 1]]


def test_as_levels_accepts_booleans():
    assert as_levels(torch.tensor([[True, False]]), (2,), 2).tolist() == [[1, 0]]


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (torch.tensor([[0.5, 1.0]]), "fractions"),
        (torch.tensor([[0, 3]]), r"0…2, got values in 0…3"),
        (torch.tensor([[-1.0, 1.0]]), "got values in -1…1"),
        (torch.tensor([[0, 1, 2]]), r"expected shape \(B, 2\)"),
        (torch.tensor([[float("nan"), 1.0]]), "non-finite"),
    ],
)
def test_as_levels_rejects_bad_values(x, match):
    with pytest.raises(InvalidInput, match=match):
        as_levels(x, (2,), 3)
