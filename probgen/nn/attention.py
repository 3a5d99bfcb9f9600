"""Causal self-attention and pre-LayerNorm transformer blocks (GPT-style).

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V,  M_ts = -∞ for s > t

so position t attends only to positions s ≤ t. A block is

    x ← x + Attn(LN(x)),   x ← x + FFN(LN(x)),   FFN = W₂ GELU(W₁ ·)

References: Vaswani et al., 2017, "Attention Is All You Need"; Radford, Wu,
Child, Luan, Amodei & Sutskever, 2019, "Language Models are Unsupervised
Multitask Learners" (GPT-2: pre-LayerNorm blocks).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from probgen.core import InvalidInput

__all__ = ["Block", "CausalSelfAttention", "FeedForward"]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: (B, T, C) -> (B, T, C).

    Args:
        n_embd: width C, split into ``n_head`` heads of C / n_head each.
        n_head: number of heads.
        dropout: dropout on the attention weights and on the output (training only).
        bias: whether the projections have biases.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if n_embd % n_head:
            raise InvalidInput(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # q, k, v for all heads
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 × (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(  # (B, nh, T, hs)
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class FeedForward(nn.Module):
    """Position-wise MLP C -> 4C -> C with GELU: (B, T, C) -> (B, T, C)."""

    def __init__(self, n_embd: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + Attn(LN(x)), then + FFN(LN(x)); (B, T, C)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = FeedForward(n_embd, dropout, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))
