"""Character corpora: tiny Shakespeare's vocabulary and splits, windows, round trips, errors."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probgen.core import InvalidInput
from probgen.data.files import CorruptDataFile, MissingDataFile
from probgen.data.text import TextCorpus, TinyShakespeare

# From ../shared/data/README.md.
SHAKESPEARE_CHARS, SHAKESPEARE_VOCAB = 1_115_394, 65


@functools.cache
def _shakespeare(root: Path) -> TinyShakespeare:
    return TinyShakespeare(root=root)


@pytest.fixture
def shakespeare(data_dir) -> TinyShakespeare:
    return _shakespeare(data_dir)


def test_tiny_shakespeare_vocabulary_and_splits(shakespeare, data_dir):
    text = (data_dir / "tinyshakespeare" / "input.txt").read_text()
    assert shakespeare.vocab_size == SHAKESPEARE_VOCAB == shakespeare.spec.levels
    assert shakespeare.vocab == sorted(set(text))
    assert shakespeare.spec.event_shape == (64,)
    train, validation = shakespeare.tokens("train"), shakespeare.tokens("validation")
    assert len(train) + len(validation) == SHAKESPEARE_CHARS
    assert len(train) == int(0.9 * SHAKESPEARE_CHARS)
    assert torch.equal(shakespeare.tokens("test"), validation)
    assert shakespeare.decode(torch.cat([train, validation])) == text
    assert shakespeare.decode(train[:14]) == "First Citizen:"


def test_windows(shakespeare):
    train_text = shakespeare.decode(shakespeare.tokens("train"))
    batch = shakespeare.batch("train", 8, torch.Generator().manual_seed(0))
    assert batch.shape == (8, 64) and batch.dtype == torch.long
    for row in batch:
        assert shakespeare.decode(row) in train_text
    windows = shakespeare.split("validation")
    n = len(shakespeare.tokens("validation")) // 64
    assert windows.shape == (n, 64) and windows.dtype == torch.long
    assert torch.equal(windows.flatten(), shakespeare.tokens("validation")[: n * 64])


def test_root_lookup(data_dir, monkeypatch):
    assert TinyShakespeare(root=data_dir / "tinyshakespeare", context=8).spec.event_shape == (8,)
    monkeypatch.setenv("PROBGEN_DATA", str(data_dir))
    assert TinyShakespeare().vocab_size == SHAKESPEARE_VOCAB


@settings(max_examples=25, deadline=None)
@given(st.text(alphabet="abc xyz\n", min_size=1, max_size=40))
def test_encode_decode_round_trip(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("corpus") / "t.txt"
    path.write_text("abc xyz\n" * 4)
    corpus = TextCorpus(path, context=2)
    assert corpus.vocab == ["\n", " ", "a", "b", "c", "x", "y", "z"]
    ids = corpus.encode(text)
    assert ids.dtype == torch.long and ids.shape == (len(text),)
    assert corpus.decode(ids) == text


def test_small_corpus_split_and_windows(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("0123456789", encoding="utf-8")
    corpus = TextCorpus(path, context=1, train_fraction=0.8)
    assert corpus.decode(corpus.tokens("train")) == "01234567"
    assert corpus.decode(corpus.tokens("validation")) == "89"
    windows = TextCorpus(path, context=3, train_fraction=0.7).split("train")
    assert [corpus.decode(w) for w in windows] == ["012", "345"]
    # Random windows of a split of exactly one window length are that window.
    single = TextCorpus(path, context=3, train_fraction=0.7)
    batch = single.batch("validation", 5, torch.Generator().manual_seed(0))
    assert all(single.decode(w) == "789" for w in batch)


def test_unicode_text(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("héllo wörld ∑ " * 3, encoding="utf-8")
    corpus = TextCorpus(path, context=4)
    assert "∑" in corpus.vocab
    assert corpus.decode(corpus.encode("wö∑")) == "wö∑"


def test_errors(tmp_path):
    with pytest.raises(MissingDataFile, match=r"missing\.txt"):
        TextCorpus(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(CorruptDataFile, match="empty"):
        TextCorpus(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"abc\xff\xfedef")
    with pytest.raises(
        CorruptDataFile, match=r"bin\.txt: not UTF-8 text \(byte 0xff at offset 3\)"
    ):
        TextCorpus(tmp_path / "bin.txt")
    (tmp_path / "short.txt").write_text("abcdefghij")
    with pytest.raises(InvalidInput, match="validation split has 1 characters"):
        TextCorpus(tmp_path / "short.txt", context=2)
    corpus = TextCorpus(tmp_path / "short.txt", context=1)
    with pytest.raises(
        InvalidInput,
        match=r"'Q' \(position 1\) is not in the vocabulary of 10 characters of short\.txt",
    ):
        corpus.encode("aQ")
    with pytest.raises(InvalidInput, match="outside 0…9"):
        corpus.decode([3, 10])
    with pytest.raises(InvalidInput, match="unknown split"):
        corpus.split("holdout")
    with pytest.raises(InvalidInput, match="train_fraction"):
        TextCorpus(tmp_path / "short.txt", train_fraction=1.0)
    with pytest.raises(MissingDataFile, match=r"tinyshakespeare.*input\.txt.*char-rnn"):
        TinyShakespeare(root=tmp_path)
