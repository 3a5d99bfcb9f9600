"""Text metrics: bits/char against the token NLL and a uniform model's ln V, n-gram statistics
against brute-force counts and closed forms."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.data.text import TextCorpus
from probgen.evaluate.metric import DataKind, data_kind
from probgen.evaluate.suite import evaluate_model
from probgen.evaluate.text import CharacterNLL, NgramStatistics, distinct_n, ngram_js, ngrams
from probgen.models import build_model


@pytest.fixture
def corpus(tmp_path: Path) -> TextCorpus:
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat; a rat ate the hat. " * 30)
    return TextCorpus(path, context=8)


def counter(tokens: torch.Tensor, n: int) -> Counter:
    return Counter(
        tuple(row[t : t + n].tolist()) for row in tokens for t in range(len(row) - n + 1)
    )


def brute_js(a: torch.Tensor, b: torch.Tensor, n: int) -> float:
    p, q = counter(a, n), counter(b, n)
    sp, sq = sum(p.values()), sum(q.values())
    js = 0.0
    for g in set(p) | set(q):
        pg, qg = p[g] / sp, q[g] / sq
        m = (pg + qg) / 2
        js += 0.5 * (pg * math.log(pg / m) if pg else 0) + 0.5 * (
            qg * math.log(qg / m) if qg else 0
        )
    return js


def test_ngram_ids_distinct_and_js_match_brute_force_counts():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, 4, (30, 9), generator=gen), torch.randint(0, 3, (20, 7), generator=gen)
    for n in (1, 2, 3):
        ids = ngrams(a, n, 4)
        grams = [tuple(r[t : t + n].tolist()) for r in a for t in range(9 - n + 1)]
        assert ids.tolist() == [sum(x * 4 ** (n - 1 - i) for i, x in enumerate(g)) for g in grams]
        assert distinct_n(a, n, 4) == len(set(grams)) / len(grams)
        assert ngram_js(a, b, n, 4) == pytest.approx(brute_js(a, b, n), rel=1e-12, abs=1e-15)


def test_js_reaches_its_bounds_zero_and_ln2():
    a = torch.tensor([[0, 1, 2, 0], [2, 1, 0, 1]])
    assert ngram_js(a, a.flip(0), 2, 3) == 0.0  # the same n-grams, in another order
    assert ngram_js(torch.zeros(3, 5), torch.ones(2, 5), 1, 2) == pytest.approx(
        math.log(2), abs=1e-15
    )
    with pytest.raises(InvalidInput, match="order"):
        ngrams(a, 5, 3)


def test_bits_per_char_is_the_mean_token_nll_over_ln2(corpus: TextCorpus):
    model = build_model("transformer", corpus.spec, n_layer=1, n_head=1, n_embd=8)
    results = evaluate_model(model, corpus, n_samples=40, generator=torch.Generator())
    with torch.no_grad():
        token_nll = model.token_nll(corpus.split("test")).double()  # (N, T)
    nats, bits = results["nats_per_char"], results["bits_per_char"]
    assert nats.kind == bits.kind == "exact"
    tol = 16 * torch.finfo(torch.get_default_dtype()).eps * nats.value
    assert abs(nats.value - token_nll.mean().item()) <= tol
    assert bits.value == nats.value / math.log(2) and bits.stderr == nats.stderr / math.log(2)
    assert abs(bits.value - results["bpd"].value) <= tol
    assert abs(nats.value - results["nll"].value / corpus.context) <= tol


def test_a_uniform_model_scores_ln_v_nats_per_char(corpus: TextCorpus):
    model = build_model("transformer", corpus.spec, n_layer=1, n_head=1, n_embd=8)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()  # every logit 0: p(x_t | x_<t) = 1 / V
    results = evaluate_model(model, corpus, n_samples=10, metrics=[CharacterNLL()])
    V = corpus.vocab_size
    assert results["nats_per_char"].value == pytest.approx(math.log(V), rel=1e-14)
    assert results["bits_per_char"].value == pytest.approx(math.log2(V), rel=1e-14)
    assert results["nats_per_char"].stderr == pytest.approx(0.0, abs=1e-14)


class Repeats(GenerativeModel):
    """A sampler writing one character again and again: the most repetitive text there is."""

    likelihood = Likelihood.NONE

    def __init__(self, token: int, length: int) -> None:
        super().__init__((length,))
        self.token = token

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.full((n, self.event_shape[0]), self.token, dtype=torch.long)


def test_ngram_statistics_of_a_one_character_sampler_in_closed_form(corpus: TextCorpus):
    space = corpus.encode(" ").item()
    results = evaluate_model(
        Repeats(space, 8), corpus, n_samples=25, metrics=[CharacterNLL(), NgramStatistics((1, 2))]
    )
    assert "nats_per_char" in results.skipped and "no density" in results.skipped["nats_per_char"]
    assert results["distinct_1"].value == 1 / (25 * 8) and results["distinct_2"].value == 1 / (
        25 * 7
    )
    # JS(δ_space ‖ q) = ½ log(2 / (1 + q_s)) + ½ [q_s log(2 q_s / (1 + q_s)) + (1 − q_s) log 2]
    test = corpus.split("test")
    q_s = (test == space).double().mean().item()
    js = 0.5 * math.log(2 / (1 + q_s)) + 0.5 * (
        q_s * math.log(2 * q_s / (1 + q_s)) + (1 - q_s) * math.log(2)
    )
    assert results["ngram_js_1"].value == pytest.approx(js, rel=1e-12)
    assert "floor" in results.notes["ngram_js_1"] and "training text" in results.notes["distinct_2"]


def test_text_metrics_are_not_asked_of_other_data():
    from probgen.data.toy import ToyDataset

    toy = ToyDataset("8gaussians", n_train=64, n_validation=16, n_test=64)
    results = evaluate_model(
        toy.truth, toy, n_samples=16, metrics=[CharacterNLL(), NgramStatistics()]
    )
    names = {"nats_per_char", "bits_per_char", "distinct_1", "ngram_js_1"}
    assert not names & (results.keys() | results.skipped.keys())


def test_data_kinds(corpus: TextCorpus) -> None:
    """Text windows, integer levels, points; a text metric is asked of text only."""
    from probgen.data.base import ArrayDataset
    from probgen.data.toy import ToyDataset

    x = torch.randint(0, 4, (6, 3)).double()
    levels = ArrayDataset(x, x, x, spec=DataSpec((3,), 4))
    toy = ToyDataset("8gaussians", n_train=8, n_validation=8, n_test=8)
    assert [data_kind(d) for d in (corpus, levels, toy)] == [
        DataKind.TEXT, DataKind.DISCRETE, DataKind.CONTINUOUS
    ]  # fmt: skip
    levels.categorical = True  # ids without a decoder: tokens, not text
    assert data_kind(levels) is DataKind.TOKENS
    assert [CharacterNLL().asked_of(d) for d in (corpus, levels, toy)] == [True, False, False]


def test_order_names_follow_the_orders():
    assert NgramStatistics((2, 4)).names == ("distinct_2", "distinct_4", "ngram_js_2", "ngram_js_4")
    assert list(itertools.chain(CharacterNLL.names)) == ["nats_per_char", "bits_per_char"]
