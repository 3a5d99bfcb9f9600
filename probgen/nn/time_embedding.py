"""Time embeddings, and an MLP conditioned on time, for networks f(x, t) of diffusion models."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from probgen.nn.mlp import MLP
from probgen.tensors import flatten_events

__all__ = ["SinusoidalEmbedding", "TimeMLP"]


class SinusoidalEmbedding(nn.Module):
    """Transformer-style features of a time t ∈ [0, 1]: (B,) -> (B, dim).

        e(t) = [sin(s t ω_0), …, sin(s t ω_{k-1}), cos(s t ω_0), …, cos(s t ω_{k-1})],
        ω_i = exp(−log(10000) · i / k),  k = dim / 2,  s = ``scale``,

    so low and high frequencies of t are both visible to the network.

    Reference: Vaswani et al. (2017), "Attention is all you need", Section 3.5;
    Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic models", Appendix B.
    """

    def __init__(self, dim: int, scale: float = 1000.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"SinusoidalEmbedding: dim must be even and >= 2, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", (scale * freqs).to(torch.get_default_dtype()))
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:  # (B,) -> (B, dim)
        angles = t[:, None].to(self.freqs.dtype) * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimeMLP(nn.Module):
    """f(x, t) = MLP([vec x, e(t)]) reshaped to x's shape: (B, *event), (B,) -> (B, *event).

    e(t) is a ``SinusoidalEmbedding`` followed by a linear layer and the
    activation; the output layer starts at zero, so ε̂ = 0 at initialisation.

    Args:
        features: D, entries per example (events of any shape are flattened).
        hidden: widths of the hidden layers.
        embedding: width of the time embedding.
        activation: module factory for the non-linearity.
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (128, 128, 128),
        embedding: int = 64,
        activation: Callable[[], nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            SinusoidalEmbedding(embedding), nn.Linear(embedding, embedding), activation()
        )
        self.net = MLP(features + embedding, features, hidden, activation, zero_last=True)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = torch.cat([flatten_events(x), self.embed(t.to(x.dtype))], dim=-1)  # (B, D + E)
        return self.net(h).reshape(x.shape)
