"""A causal transformer (GPT-style) over token sequences, with exact likelihood.

    log p(x) = Σ_{t=0}^{T-1} log p(x_t | x_{<t}),  p(x_t | x_{<t}) = softmax(W h_t)_{x_t}

h_t is the output at position t of a stack of pre-LayerNorm causal blocks
run on [s, x_0, …, x_{T-2}], where s is a learned start token, so the first
token is modelled unconditionally and p sums to 1 over all V^T sequences.

References: Vaswani et al., 2017, "Attention Is All You Need"; Radford, Wu,
Child, Luan, Amodei & Sutskever, 2019, "Language Models are Unsupervised
Multitask Learners" (GPT-2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.models.autoregressive.sampling import LogitFilter, as_levels, sample_logits
from probgen.nn.attention import Block

__all__ = ["Transformer", "TransformerConfig"]


@dataclass(frozen=True)
class TransformerConfig:
    """Hyperparameters of a ``Transformer`` (nanoGPT naming).

    Attributes:
        vocab_size: V, number of token values 0…V-1.
        block_size: longest sequence (number of learned positions).
        n_layer: number of blocks.
        n_head: attention heads per block.
        n_embd: width C of the residual stream.
        dropout: dropout rate during training.
        bias: biases in linear layers and LayerNorms.
        tie_weights: share the output head with the token embedding.
    """

    vocab_size: int
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True


class Transformer(GenerativeModel):
    """GPT-style distribution over sequences x ∈ {0…V-1}^T (exact log_prob, chain rule).

    Args:
        config: the hyperparameters.
        length: T, the event length (default ``config.block_size``; at most it).

    Input x (B, T) of token ids (long, or floats holding whole numbers);
    ``log_prob`` returns (B,) nats, ``sample`` returns (n, T) long.
    """

    likelihood = Likelihood.EXACT

    def __init__(self, config: TransformerConfig, length: int | None = None) -> None:
        length = config.block_size if length is None else length
        if not 1 <= length <= config.block_size:
            raise InvalidInput(f"length: expected 1…{config.block_size}, got {length}")
        super().__init__((length,))
        self.config = config
        self.start = config.vocab_size  # id of the learned start token
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size + 1, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(
                    Block(config.n_embd, config.n_head, config.dropout, config.bias)
                    for _ in range(config.n_layer)
                ),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = (
            None if config.tie_weights else nn.Linear(config.n_embd, config.vocab_size, bias=False)
        )
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/√(2 n_layer), one per sublayer
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @classmethod
    def for_data(
        cls,
        spec: DataSpec,
        n_layer: int = TransformerConfig.n_layer,
        n_head: int = TransformerConfig.n_head,
        n_embd: int = TransformerConfig.n_embd,
        dropout: float = TransformerConfig.dropout,
        bias: bool = TransformerConfig.bias,
        tie_weights: bool = TransformerConfig.tie_weights,
        block_size: int | None = None,
    ) -> Transformer:
        """A transformer for token windows ``spec`` (event (T,), V = ``spec.levels``).

        The options are ``TransformerConfig``'s (named here so that run configs
        are checked against them); ``block_size`` defaults to T.
        """
        if len(spec.event_shape) != 1 or spec.levels is None:
            raise InvalidInput(
                f"Transformer: expected token sequences (event shape (T,), discrete levels), "
                f"got event shape {spec.event_shape} with levels {spec.levels}"
            )
        length = spec.event_shape[0]
        config = TransformerConfig(
            vocab_size=spec.levels,
            block_size=length if block_size is None else block_size,
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            dropout=dropout,
            bias=bias,
            tie_weights=tie_weights,
        )
        return cls(config, length)

    @property
    def handles_levels(self) -> bool:
        """Always: a categorical distribution over the vocabulary at every position."""
        return True

    def num_parameters(self, embeddings: bool = True) -> int:
        """Parameter count; without the position embeddings when ``embeddings`` is False."""
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.transformer.wpe.weight.numel()

    def forward(self, idx: Tensor) -> Tensor:
        """Logits (B, L, V) of the next token after each prefix of ``idx`` (B, L) long.

        ``idx`` may hold the start token id V; L ≤ block_size.
        """
        L = idx.shape[1]
        if L > self.config.block_size:
            raise InvalidInput(f"sequence of length {L} > block_size {self.config.block_size}")
        pos = torch.arange(L, device=idx.device)
        x = self.transformer.drop(
            self.transformer.wte(idx) + self.transformer.wpe(pos)
        )  # (B, L, C)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if self.lm_head is not None:
            return self.lm_head(x)
        return x @ self.transformer.wte.weight[: self.config.vocab_size].T  # (B, L, V)

    def _with_start(self, x: Tensor) -> Tensor:
        """[s, x_0, …, x_{T-2}]: the inputs that predict x_0 … x_{T-1}; (B, T)."""
        start = torch.full((x.shape[0], 1), self.start, dtype=torch.long, device=x.device)
        return torch.cat([start, x[:, :-1]], dim=1)

    def token_nll(self, x: Tensor) -> Tensor:
        """-log p(x_t | x_{<t}) per position, (B, T) -> (B, T) nats (nats/char for text)."""
        x = as_levels(x, self.event_shape, self.config.vocab_size)
        logits = self(self._with_start(x))  # (B, T, V)
        return F.cross_entropy(logits.transpose(1, 2), x, reduction="none")

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) = Σ_t log p(x_t | x_{<t}): (B, T) -> (B,)."""
        return -self.token_nll(x).sum(dim=1)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw x_t ~ p(x_t | x_{<t}) after the filters, t = 0…T-1: (n, T) long."""
        filt = LogitFilter(temperature, top_k, top_p)
        idx = torch.full((n, 1), self.start, dtype=torch.long, device=self.device)
        for _ in range(self.event_shape[0]):
            logits = self(idx)[:, -1]  # (n, V)
            idx = torch.cat([idx, sample_logits(logits, filt, generator)[:, None]], dim=1)
        return idx[:, 1:]
