"""Time embeddings, and an MLP conditioned on time, for networks f(x, t[, h]) of diffusion models.

A network built with ``condition=F`` also reads condition features h (B, F)
(``probgen.models.diffusion.guidance.condition_features``: one-hot classes or
a vector, plus a null flag) through a learned linear embedding W h added to
the time embedding, the class embedding of Dhariwal & Nichol (2021),
"Diffusion models beat GANs on image synthesis", Section 3, used by Ho &
Salimans (2022) for classifier-free guidance. For one-hot h, W h is a table
of one embedding per class plus one for the null condition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from probgen.nn.mlp import MLP
from probgen.tensors import flatten_events

__all__ = ["ConditionEmbedding", "SinusoidalEmbedding", "TimeMLP"]


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


class ConditionEmbedding(nn.Module):
    """e(t) + W h: a time embedding (B, E) plus the linear embedding of features h (B, F).

    With ``features = 0`` the module is unconditional and takes no h; otherwise
    h is required (the null condition is an explicit feature row, not None).
    """

    def __init__(self, features: int, embedding: int) -> None:
        super().__init__()
        if features < 0:
            raise ValueError(f"ConditionEmbedding: features must be >= 0, got {features}")
        self.features = int(features)
        self.linear = nn.Linear(features, embedding, bias=False) if features else None

    def forward(self, emb: Tensor, h: Tensor | None) -> Tensor:  # (B, E), (B, F) -> (B, E)
        if self.linear is None:
            if h is not None:
                raise ValueError("this network is unconditional (condition=0) and takes no h")
            return emb
        if h is None or h.shape != (emb.shape[0], self.features):
            got = None if h is None else tuple(h.shape)
            raise ValueError(
                f"condition features: expected shape ({emb.shape[0]}, {self.features}), got {got}"
            )
        return emb + self.linear(h.to(emb.dtype))


class TimeMLP(nn.Module):
    """f(x, t[, h]) = MLP([vec x, e(t) + W h]) reshaped to x's shape: (B, *event) -> (B, *event).

    e(t) is a ``SinusoidalEmbedding`` followed by a linear layer and the
    activation; W h is the condition's embedding (``ConditionEmbedding``,
    only with ``condition`` > 0); the output layer starts at zero, so ε̂ = 0
    at initialisation. t is (B,), h is (B, condition).

    Args:
        features: D, entries per example (events of any shape are flattened).
        hidden: widths of the hidden layers.
        embedding: width of the time embedding.
        activation: module factory for the non-linearity.
        condition: F, the width of the condition features h (0: unconditional).
    """

    def __init__(
        self,
        features: int,
        hidden: Sequence[int] = (128, 128, 128),
        embedding: int = 64,
        activation: Callable[[], nn.Module] = nn.SiLU,
        condition: int = 0,
    ) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            SinusoidalEmbedding(embedding), nn.Linear(embedding, embedding), activation()
        )
        self.condition = ConditionEmbedding(condition, embedding)
        self.net = MLP(features + embedding, features, hidden, activation, zero_last=True)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        emb = self.condition(self.embed(t.to(x.dtype)), condition)  # (B, E)
        h = torch.cat([flatten_events(x), emb], dim=-1)  # (B, D + E)
        return self.net(h).reshape(x.shape)
