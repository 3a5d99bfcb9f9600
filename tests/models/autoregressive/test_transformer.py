"""Causal transformer: normalisation over all sequences, causality, exact and filtered sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from probgen.core import DataSpec, InvalidInput, Likelihood
from probgen.models.autoregressive import LogitFilter, Transformer, TransformerConfig
from probgen.registry import MODELS


def small(tie_weights: bool = True, length: int | None = None) -> Transformer:
    config = TransformerConfig(
        vocab_size=3, block_size=3, n_layer=2, n_head=2, n_embd=16, tie_weights=tie_weights
    )
    model = Transformer(config, length)
    with torch.no_grad():  # GPT-2's 0.02 init is near uniform; spread it so tests can see order
        for p in model.parameters():
            p.mul_(20 if p.dim() > 1 else 1)
    return model


ALL = torch.tensor(list(itertools.product(range(3), repeat=3)))  # the 27 sequences


@pytest.mark.parametrize("tie_weights", [True, False])
def test_probabilities_of_all_27_sequences_sum_to_one(tie_weights):
    model = small(tie_weights)
    assert model.likelihood is Likelihood.EXACT
    torch.testing.assert_close(model.log_prob(ALL).logsumexp(0), torch.tensor(0.0))


def test_shorter_event_length_is_also_normalised():
    model = small(length=2)
    x = torch.tensor(list(itertools.product(range(3), repeat=2)))
    torch.testing.assert_close(model.log_prob(x).logsumexp(0), torch.tensor(0.0))


def test_logits_at_t_have_zero_gradient_wrt_inputs_t_onwards():
    model = small()
    captured = {}
    model.transformer.wte.register_forward_hook(lambda m, i, out: captured.update(emb=out))
    x = torch.tensor([[2, 0, 1]])
    logits = model(model._with_start(x))  # input slot j holds x_{j-1}; logits[t] predict x_t
    for t in range(3):
        (g,) = torch.autograd.grad(logits[0, t].sum(), captured["emb"], retain_graph=True)
        reached = g[0].abs().sum(-1) > 0  # (T,) which input slots influence logits[t]
        assert reached.tolist() == [j <= t for j in range(3)]


def test_token_nll_is_the_chain_rule_of_log_prob():
    model = small()
    nll = model.token_nll(ALL)
    assert nll.shape == (27, 3)
    torch.testing.assert_close(-nll.sum(1), model.log_prob(ALL))
    # marginal of the first token = exp(-nll[:, 0]), the same for every continuation
    p0 = torch.stack([model.log_prob(ALL[ALL[:, 0] == v]).logsumexp(0) for v in range(3)])
    torch.testing.assert_close(p0, -nll[::9, 0])


def chain_law(model: Transformer, filt: LogitFilter) -> np.ndarray:
    """Probability of each of the 27 sequences when every step is drawn after ``filt``."""
    with torch.no_grad():
        logp = filt(model(model._with_start(ALL))).log_softmax(-1)  # (27, 3, V)
    return logp.gather(-1, ALL[..., None]).sum((1, 2)).exp().numpy()


@pytest.mark.parametrize(
    "filt",
    [LogitFilter(), LogitFilter(temperature=0.6), LogitFilter(top_k=2), LogitFilter(top_p=0.7)],
)
def test_samples_follow_the_exact_or_filtered_chain(filt):
    model = small()
    law = chain_law(model, filt)
    if filt.exact:
        np.testing.assert_allclose(law, model.log_prob(ALL).exp().detach().numpy())
    draws = model.sample(
        20000,
        temperature=filt.temperature,
        top_k=filt.top_k,
        top_p=filt.top_p,
        generator=torch.Generator().manual_seed(0),
    )
    assert draws.shape == (20000, 3) and draws.dtype == torch.long
    counts = np.bincount((draws * torch.tensor([9, 3, 1])).sum(1).numpy(), minlength=27)
    assert counts[law == 0].sum() == 0
    assert stats.chisquare(counts[law > 0], 20000 * law[law > 0]).pvalue > 1e-3


def test_training_by_exact_kl_recovers_a_known_law():
    target = torch.softmax(torch.randn(27) * 2, 0)
    model = Transformer(TransformerConfig(vocab_size=3, block_size=3, n_layer=1, n_embd=16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(250):
        opt.zero_grad()
        (-(target * model.log_prob(ALL)).sum()).backward()
        opt.step()
    kl = (target * (target.log() - model.log_prob(ALL))).sum()
    assert kl.item() < 1e-2


def test_accepts_float_tokens_and_for_data_builds_from_spec():
    model = Transformer.for_data(DataSpec((5,), 7), n_layer=1, n_embd=8, n_head=2)
    assert MODELS.get("transformer") is Transformer
    assert model.event_shape == (5,) and model.config.vocab_size == 7
    x = torch.randint(0, 7, (4, 5))
    torch.testing.assert_close(model.log_prob(x.double()), model.log_prob(x))
    assert model.num_parameters(embeddings=False) == model.num_parameters() - 5 * 8


def test_bad_inputs_raise_invalid_input():
    model = small()
    with pytest.raises(InvalidInput, match="0…2, got values in 0…3"):
        model.log_prob(torch.tensor([[0, 1, 3]]))
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 3\)"):
        model.log_prob(torch.tensor([[0, 1]]))
    with pytest.raises(InvalidInput, match="block_size"):
        model(torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(InvalidInput, match="length"):
        Transformer(TransformerConfig(vocab_size=3, block_size=3), length=4)
    with pytest.raises(InvalidInput, match="token sequences"):
        Transformer.for_data(DataSpec((1, 4, 4), 2))
