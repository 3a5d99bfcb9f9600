"""Transformer decoding: the KV cache against the full forward, sliding windows, prompts,
greedy decoding and the class-token condition, each against an exact reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.evaluate.suite import count_network_calls
from probgen.models.autoregressive import LogitFilter, Transformer, TransformerConfig
from probgen.nn.attention import KVCache

WIDTH = 16


def spread(model: Transformer) -> Transformer:
    """GPT-2's 0.02 init is near uniform; spread it so tests can see order."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20 if p.dim() > 1 else 1)
    return model


def model_of(
    dtype: torch.dtype = torch.float64,
    vocab: int = 5,
    block: int = 8,
    condition: ConditionSpec | None = None,
) -> Transformer:
    torch.manual_seed(0)
    config = TransformerConfig(
        vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=WIDTH
    )
    return spread(Transformer(config, condition=condition)).to(dtype).eval()


def tolerance(logits: torch.Tensor) -> float:
    """Rounding bound for two groupings of the same sums: a few ulps per √C accumulated
    terms, relative to the logits' scale (measured gaps: 4-5 ulps of the largest logit)."""
    return 8 * WIDTH**0.5 * torch.finfo(logits.dtype).eps * logits.abs().max().item()


def teacher_forced(model: Transformer, y: torch.Tensor, **options) -> torch.Tensor:
    """The logits (steps, n, V) ``decode`` predicts each y[:, t] from, feeding y itself."""
    seen = []

    def choose(logits: torch.Tensor, step: int) -> torch.Tensor:
        seen.append(logits.clone())
        return y[:, step]

    out = model.decode(y[:, :0], y.shape[1], choose, **options)
    assert torch.equal(out, y)
    return torch.stack(seen)


def windows(length: int, room: int, keep: int) -> list[int]:
    """First token of the window predicting token t, t = 0…length-1, by the sliding rule."""
    first, starts = 0, []
    for end in range(length):
        if end - first > room:
            first = end - keep
        starts.append(first)
    return starts


def window_logits(model: Transformer, y: torch.Tensor, starts: list[int]) -> torch.Tensor:
    """Logits of the full uncached forward on [s, y[first:t]] for every t: (steps, n, V)."""
    s = torch.full((len(y), 1), model.start, dtype=torch.long)
    with torch.no_grad():
        return torch.stack(
            [model(torch.cat([s, y[:, a:t]], 1))[:, -1] for t, a in enumerate(starts)]
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cached_logits_equal_the_full_forward_at_every_position(dtype):
    model = model_of(dtype)
    y = torch.randint(0, 5, (3, 8), generator=torch.Generator().manual_seed(1))
    cached = teacher_forced(model, y)  # within the block: no slide
    with torch.no_grad():
        full = model(model._with_start(y)).transpose(0, 1)  # (T, n, V)
    torch.testing.assert_close(cached, full, rtol=0, atol=tolerance(full))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("keep", [None, 3, 7])
def test_beyond_the_block_cached_and_uncached_see_the_same_sliding_window(dtype, keep):
    model = model_of(dtype)
    y = torch.randint(0, 5, (3, 30), generator=torch.Generator().manual_seed(2))
    reference = window_logits(model, y, windows(30, 7, 3 if keep is None else keep))
    for use_cache in (True, False):
        logits = teacher_forced(model, y, use_cache=use_cache, keep=keep)
        torch.testing.assert_close(logits, reference, rtol=0, atol=tolerance(reference))


def test_keep_the_whole_window_is_nanogpts_crop_and_a_slide_is_visible():
    model = model_of()
    y = torch.randint(0, 5, (2, 20), generator=torch.Generator().manual_seed(3))
    crop = window_logits(model, y, [max(0, t - 7) for t in range(20)])
    torch.testing.assert_close(teacher_forced(model, y, keep=7), crop, rtol=0, atol=tolerance(crop))
    # with the default keep (3), a token after a slide sees less context: different logits
    slid = teacher_forced(model, y)
    assert (slid[9] - crop[9]).abs().max() > 1e3 * tolerance(crop)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cached_and_uncached_sampling_draw_identical_tokens(dtype):
    model = model_of(dtype)

    def draw(**options):
        return model.generate(
            16, 40, top_p=0.95, generator=torch.Generator().manual_seed(4), **options
        )

    cached = draw()
    assert cached.shape == (16, 40) and torch.equal(cached, draw(use_cache=False))
    sampled = model.sample(16, generator=torch.Generator().manual_seed(4))
    assert torch.equal(
        sampled, model.sample(16, generator=torch.Generator().manual_seed(4), use_cache=False)
    )


@pytest.mark.parametrize("use_cache", [True, False])
def test_one_network_evaluation_per_decode_step(use_cache):
    """A forward pass is one evaluation, not one per part (2 blocks, the two embeddings and
    the final norm would count 5): T = 8 for a sample, and 20 for 20 new tokens beyond
    the block of 8, whose window slides (a re-read is still one pass)."""
    model = model_of()
    handles, counter = count_network_calls(model)
    try:
        model.sample(4, generator=torch.Generator().manual_seed(0), use_cache=use_cache)
        assert counter[0] == 8
        model.generate(4, 20, generator=torch.Generator().manual_seed(0), use_cache=use_cache)
        assert counter[0] == 8 + 20
    finally:
        for handle in handles:
            handle.remove()


ALL = torch.tensor(list(itertools.product(range(3), repeat=3)))  # the 27 sequences


def tiny(condition: ConditionSpec | None = None) -> Transformer:
    return model_of(torch.float64, vocab=3, block=3, condition=condition)


def counts_of(draws: torch.Tensor) -> np.ndarray:
    return np.bincount((draws * torch.tensor([9, 3, 1])).sum(1).numpy(), minlength=27)


def test_a_prompt_draws_from_the_exact_conditional_of_the_chain_rule():
    model = tiny()
    prompt = torch.tensor([2])
    draws = model.sample(20000, prompt=prompt, generator=torch.Generator().manual_seed(5))
    assert (draws[:, 0] == 2).all()
    with torch.no_grad():
        joint = model.log_prob(ALL).exp()
    law = torch.where(ALL[:, 0] == 2, joint, 0)
    law = (law / law.sum()).numpy()  # p(x | x_0 = 2) from the 27 exact probabilities
    counts = counts_of(draws)
    assert counts[law == 0].sum() == 0
    assert stats.chisquare(counts[law > 0], 20000 * law[law > 0]).pvalue > 1e-3


def test_a_full_length_prompt_is_returned_and_prompts_are_checked():
    model = tiny()
    p = torch.tensor([[0, 1, 2], [2, 2, 2]])
    assert torch.equal(model.sample(2, prompt=p), p)
    with pytest.raises(InvalidInput, match="more than the event length"):
        model.sample(2, prompt=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(InvalidInput, match="prompt: expected levels in 0…2, got values in 3…3"):
        model.generate(1, 2, prompt=torch.tensor([3]))
    with pytest.raises(InvalidInput, match=r"expected shape \(P,\) or \(2, P\)"):
        model.generate(2, 2, prompt=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(InvalidInput, match="keep"):
        model.generate(1, 2, keep=3)
    one = Transformer(TransformerConfig(vocab_size=3, block_size=1, n_layer=1, n_embd=8))
    assert one.sample(5).shape == (5, 1)
    with pytest.raises(InvalidInput, match="block_size 1"):
        one.generate(1, 2)
    with pytest.raises(InvalidInput, match="exceed its size"):
        KVCache(1, 1, 2, 4, torch.float64, torch.device("cpu")).append(
            *[torch.zeros(1, 1, 3, 4)] * 2
        )


def test_temperature_zero_is_greedy_decoding():
    model = model_of()
    prompt = torch.tensor([1, 4, 0])
    greedy = model.decode(prompt[None], 25, lambda logits, step: logits.argmax(-1))
    # at T = 1e-4 a runner-up is drawn with probability < V e^{-gap / T}: negligible here
    top2 = teacher_forced(model, greedy)[3:].topk(2, dim=-1).values
    assert (top2[..., 0] - top2[..., 1]).min() > 1e-4 * 60
    for t in (0.0, 1e-4):  # the limit and a temperature near it
        out = model.generate(1, 25, prompt=prompt, temperature=t, generator=torch.Generator())
        assert torch.equal(out, greedy)


def test_temperature_zero_keeps_exactly_the_argmax_set():
    logits = torch.tensor([[0.5, 2.0, 2.0, -1.0], [3.0, 0.0, 1.0, 2.9]])
    probs = LogitFilter(temperature=0.0)(logits).softmax(-1)
    torch.testing.assert_close(probs, torch.tensor([[0, 0.5, 0.5, 0], [1.0, 0, 0, 0]]))


def test_class_token_model_is_normalised_per_class_and_samples_its_own_law():
    spec = ConditionSpec(classes=2)
    model = tiny(spec)
    assert "wce" in model.transformer and model.transformer.wte.num_embeddings == 3
    with torch.no_grad():
        logp = torch.stack([model.log_prob(ALL, condition=torch.full((27,), c)) for c in (0, 1)])
    torch.testing.assert_close(logp.logsumexp(1), torch.zeros(2, dtype=torch.float64))
    assert (logp[0] - logp[1]).abs().max() > 0.5  # the class changes the law
    for c in (0, 1):
        draws = model.sample(20000, condition=c, generator=torch.Generator().manual_seed(c))
        law = logp[c].exp().numpy()
        assert stats.chisquare(counts_of(draws), 20000 * law).pvalue > 1e-3


def test_class_token_decoding_matches_the_full_forward_and_needs_its_condition():
    model = model_of(condition=ConditionSpec(classes=3))
    y = torch.randint(0, 5, (3, 8), generator=torch.Generator().manual_seed(6))
    c = torch.tensor([0, 2, 1])
    with torch.no_grad():
        full = model(model._with_start(y), condition=c).transpose(0, 1)
    cached = teacher_forced(model, y, condition=c)
    torch.testing.assert_close(cached, full, rtol=0, atol=tolerance(full))
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        model.sample(2)
    with pytest.raises(InvalidInput, match=r"class labels must lie in 0\.\.2"):
        model.log_prob(y, condition=torch.tensor([0, 1, 3]))


def test_for_data_follows_the_data_condition():
    spec = DataSpec((6,), levels=4, condition=ConditionSpec(classes=3))
    model = Transformer.for_data(spec, n_layer=1, n_head=1, n_embd=8)
    assert model.condition_spec == spec.condition
    assert Transformer.for_data(spec, n_layer=1, n_embd=8, conditional=False).condition_spec is None
    with pytest.raises(InvalidInput, match="conditional=True needs data with a condition"):
        Transformer.for_data(DataSpec((6,), levels=4), conditional=True)
