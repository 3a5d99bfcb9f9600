"""Causal self-attention and transformer blocks: explicit formula and causality by gradients."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.core import InvalidInput
from probgen.nn.attention import Block, CausalSelfAttention


def reference_attention(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(Q Kᵀ/√d + M) V per head, written out with an explicit -∞ mask."""
    B, T, C = x.shape
    h = attn.n_head
    q, k, v = (
        x @ w.T + b
        for w, b in zip(attn.c_attn.weight.chunk(3), attn.c_attn.bias.chunk(3), strict=True)
    )
    q, k, v = (t.reshape(B, T, h, C // h).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(C // h)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    y = scores.masked_fill(future, -torch.inf).softmax(-1) @ v
    return attn.c_proj(y.transpose(1, 2).reshape(B, T, C))


def test_attention_matches_the_written_out_formula():
    attn = CausalSelfAttention(12, 3)
    x = torch.randn(2, 5, 12)
    torch.testing.assert_close(attn(x), reference_attention(attn, x))


@pytest.mark.parametrize("make", [CausalSelfAttention, Block])
def test_output_t_has_zero_gradient_wrt_later_positions(make):
    module = make(8, 2)
    x = torch.randn(1, 6, 8)
    jac = torch.autograd.functional.jacobian(lambda v: module(v)[0], x)[..., 0, :, :]  # (T,C,T,C)
    depends = jac.abs().sum(dim=(1, 3)) > 0
    assert torch.equal(depends, torch.ones(6, 6, dtype=torch.bool).tril())


def test_width_must_split_into_heads():
    with pytest.raises(InvalidInput, match="divisible"):
        CausalSelfAttention(10, 3)
