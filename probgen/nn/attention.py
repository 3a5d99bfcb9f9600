"""Causal self-attention and pre-LayerNorm transformer blocks (GPT-style).

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_head + M) V,  M_ts = -∞ for s > t

so position t attends only to positions s ≤ t. A block is

    x ← x + Attn(LN(x)),   x ← x + FFN(LN(x)),   FFN = W₂ GELU(W₁ ·)

**Key-value cache.** Causality makes the keys k_s = W_k h_s and values
v_s = W_v h_s of position s independent of every later position, so a
decoder that has already run positions 0…L−1 keeps them (a ``KVCache``, one
per layer) and runs only the T new positions: their queries attend to the L
cached keys and to each other under the causal mask. The outputs are those
of the full forward on all L + T positions (the same sums, in another
grouping: equal up to rounding); one new token costs O(L) instead of O(L²).

References: Vaswani et al., 2017, "Attention Is All You Need"; Radford, Wu,
Child, Luan, Amodei & Sutskever, 2019, "Language Models are Unsupervised
Multitask Learners" (GPT-2: pre-LayerNorm blocks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probgen.core import InvalidInput

__all__ = ["Block", "CausalSelfAttention", "FeedForward", "KVCache"]


class KVCache:
    """Keys and values of one attention layer for the positions decoded so far.

    Storage is allocated once for ``size`` positions: ``k``, ``v`` (B, nh,
    size, hs), of which the first ``length`` are filled.

    Args:
        batch: B, the rows decoded together.
        n_head: nh, heads of the layer.
        size: the most positions it holds (the model's block size).
        head_size: hs = C / nh.
        dtype, device: those of the layer's activations.
    """

    def __init__(
        self,
        batch: int,
        n_head: int,
        size: int,
        head_size: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (batch, n_head, size, head_size)
        self.k = torch.empty(shape, dtype=dtype, device=device)  # (B, nh, size, hs)
        self.v = torch.empty(shape, dtype=dtype, device=device)  # (B, nh, size, hs)
        self.length = 0

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store the new positions' k, v (B, nh, T, hs); return all L + T of each."""
        end = self.length + k.shape[2]
        if end > self.k.shape[2]:
            raise InvalidInput(
                f"KVCache: {end} positions exceed its size {self.k.shape[2]} (the block size)"
            )
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]  # 2 × (B, nh, L + T, hs)


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

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """Attention outputs (B, T, C) of the T positions ``x`` (B, T, C).

        With ``cache`` holding L earlier positions, ``x`` holds positions
        L…L+T−1: their keys and values are appended, and their queries attend
        to all L + T (causally among the new ones).
        """
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 × (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        past = 0 if cache is None else cache.length
        if cache is not None:
            k, v = cache.append(k, v)  # (B, nh, L + T, hs)
        mask = None  # one query (T = 1) sees every cached key: no mask
        if past and T > 1:  # query i (position L + i) sees keys 0…L + i
            mask = torch.ones(T, past + T, dtype=torch.bool, device=x.device).tril(past)
        y = F.scaled_dot_product_attention(  # (B, nh, T, hs)
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=past == 0 and T > 1,
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

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        """(B, T, C) -> (B, T, C); ``cache``: this block's keys and values (see attention)."""
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))
