"""A causal transformer (GPT-style) over token sequences, with exact likelihood.

    log p(x | c) = Σ_{t=0}^{T-1} log p(x_t | x_{<t}, c),  p(x_t | x_{<t}, c) = softmax(W h_t)_{x_t}

h_t is the output at position t of a stack of pre-LayerNorm causal blocks
run on [s, x_0, …, x_{T-2}], where s is a learned start token, so the first
token is modelled given no text and p sums to 1 over all V^T sequences. A
conditional model (a ``ConditionSpec``: K classes or a vector) replaces the
start token by a **condition token**, the learned embedding E φ(c) of the
condition's features (a class embedding for labels): the condition is a
one-token prefix every position attends to.

Decoding (``decode``, used by ``sample`` and ``generate``) keeps each layer's
keys and values (``probgen.nn.attention.KVCache``), so a new token costs one
position's forward instead of the whole window's; the logits are those of the
uncached forward on the same window (``use_cache=False``). A **prompt** is a
prefix of the text: sampling continues it, x_{P:} ~ p(· | x_{<P} = prompt),
the exact conditional of the chain rule.

Beyond the block size (``generate``) the model sees a sliding window: the
input is always [s, last m tokens] with m ≤ block_size − 1; when the window is
full it drops all but its last ``keep`` tokens (default half the window) and
is re-read in one forward, so every token is predicted from between ``keep``
and block_size − 1 tokens of context (nanoGPT's crop, m = block_size − 1
always, is ``keep = block_size − 1``, at one full forward per token). The start
token stays in front, as in training, where it begins windows cut at random
offsets of the corpus.

References: Vaswani et al., 2017, "Attention Is All You Need"; Radford, Wu,
Child, Luan, Amodei & Sutskever, 2019, "Language Models are Unsupervised
Multitask Learners" (GPT-2); Pope et al., 2023, "Efficiently Scaling
Transformer Inference" (key-value caching).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.models.autoregressive.sampling import LogitFilter, as_levels, sample_logits
from probgen.models.conditioning import condition_for
from probgen.nn.attention import Block, KVCache

__all__ = ["Chooser", "Transformer", "TransformerConfig"]

Chooser = Callable[[Tensor, int], Tensor]
"""Picks the next token of every row: (logits (n, V), step) -> token ids (n,) long."""


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
        condition: what c is for p(x | c) (None: p(x)); its features φ(c)
            (one-hot classes or the flattened vector) are embedded as the
            first token.

    Input x (B, T) of token ids (long, or floats holding whole numbers);
    ``log_prob`` returns (B,) nats, ``sample`` returns (n, T) long.
    """

    likelihood = Likelihood.EXACT

    def __init__(
        self,
        config: TransformerConfig,
        length: int | None = None,
        condition: ConditionSpec | None = None,
    ) -> None:
        length = config.block_size if length is None else length
        if not 1 <= length <= config.block_size:
            raise InvalidInput(f"length: expected 1…{config.block_size}, got {length}")
        super().__init__((length,))
        self.config = config
        self.condition_spec = condition
        self.start = config.vocab_size  # id of the start slot (the start or condition token)
        self.transformer = nn.ModuleDict(
            dict(
                # a learned start token, row V, unless the condition token takes its place
                wte=nn.Embedding(config.vocab_size + (condition is None), config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList(
                    Block(config.n_embd, config.n_head, config.dropout, config.bias)
                    for _ in range(config.n_layer)
                ),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        if condition is not None:  # condition token embedding E: φ(c) (B, width) -> (B, C)
            self.transformer["wce"] = nn.Linear(condition.width, config.n_embd, bias=False)
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
        conditional: bool | None = None,
    ) -> Transformer:
        """A transformer for token windows ``spec`` (event (T,), V = ``spec.levels``).

        The options are ``TransformerConfig``'s (named here so that run configs
        are checked against them); ``block_size`` defaults to T. ``conditional``
        as in every family: None models p(x | c) exactly when ``spec.condition``
        is set, True demands it, False builds p(x).
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
        return cls(config, length, condition_for(spec, conditional, cls.__name__))

    @property
    def handles_levels(self) -> bool:
        """Always: a categorical distribution over the vocabulary at every position."""
        return True

    def num_parameters(self, embeddings: bool = True) -> int:
        """Parameter count; without the position embeddings when ``embeddings`` is False."""
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.transformer.wpe.weight.numel()

    def new_cache(self, batch: int) -> list[KVCache]:
        """Empty key-value caches of every layer for ``batch`` rows, block_size positions each."""
        c = self.config
        weight = self.transformer.wpe.weight
        return [
            KVCache(
                batch, c.n_head, c.block_size, c.n_embd // c.n_head, weight.dtype, weight.device
            )
            for _ in range(c.n_layer)
        ]

    def forward(
        self,
        idx: Tensor,
        cache: list[KVCache] | None = None,
        condition: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, L, V) of the next token after each prefix of ``idx`` (B, L) long.

        ``idx`` may hold the start slot id V (the start token, or the condition
        token of the checked ``condition`` (B,…) of a conditional model). With
        ``cache`` (``new_cache``) holding L₀ earlier positions, ``idx`` holds
        positions L₀…L₀+L−1 and the caches grow by L; L₀ + L ≤ block_size.
        """
        past = 0 if cache is None else cache[0].length
        L = idx.shape[1]
        if past + L > self.config.block_size:
            raise InvalidInput(
                f"sequence of length {past + L} > block_size {self.config.block_size}"
            )
        pos = torch.arange(past, past + L, device=idx.device)
        slot = idx == self.start  # (B, L) where the start / condition token goes
        if self.condition_spec is None:
            tok = self.transformer.wte(idx)  # (B, L, C)
        else:
            tok = self.transformer.wte(idx.masked_fill(slot, 0))  # (B, L, C)
            if bool(slot.any()):
                if condition is None:
                    raise InvalidInput("Transformer: the condition token needs condition=")
                phi = self.condition_spec.features(condition, tok.dtype)  # (B, width)
                tok = torch.where(slot[..., None], self.transformer.wce(phi)[:, None], tok)
        x = self.transformer.drop(tok + self.transformer.wpe(pos))  # (B, L, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if cache is None else cache[i])
        x = self.transformer.ln_f(x)
        if self.lm_head is not None:
            return self.lm_head(x)
        return x @ self.transformer.wte.weight[: self.config.vocab_size].T  # (B, L, V)

    def _with_start(self, x: Tensor) -> Tensor:
        """[s, x_0, …, x_{T-2}]: the inputs that predict x_0 … x_{T-1}; (B, T)."""
        start = torch.full((x.shape[0], 1), self.start, dtype=torch.long, device=x.device)
        return torch.cat([start, x[:, :-1]], dim=1)

    def token_nll(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """-log p(x_t | x_{<t}, c) per position, (B, T) -> (B, T) nats (nats/char for text)."""
        x = as_levels(x, self.event_shape, self.config.vocab_size)
        c = self._condition(condition, len(x))
        logits = self(self._with_start(x), condition=c)  # (B, T, V)
        return F.cross_entropy(logits.transpose(1, 2), x, reduction="none")

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(x | c) = Σ_t log p(x_t | x_{<t}, c): (B, T) -> (B,)."""
        return -self.token_nll(x, condition).sum(dim=1)

    @torch.no_grad()
    def decode(
        self,
        prefix: Tensor,
        steps: int,
        choose: Chooser,
        condition: Tensor | None = None,
        *,
        use_cache: bool = True,
        keep: int | None = None,
    ) -> Tensor:
        """Extend ``prefix`` (n, P) long by ``steps`` tokens picked by ``choose``: (n, P + steps).

        At every step the model reads [s, window] (the window: the last tokens
        so far, at most block_size − 1; see the module docstring for how it
        slides, ``keep`` tokens kept, default (block_size − 1) // 2) and
        ``choose(logits, step)`` picks the next tokens from the logits (n, V)
        of the last position. ``use_cache`` runs only the new position
        (``KVCache``); False runs the whole window every step: the same logits,
        up to rounding, at O(window) times the cost. ``condition``: checked,
        (n,…).
        """
        n, P = prefix.shape
        room = self.config.block_size - 1  # tokens beside the start slot
        if room == 0 and P + steps > 1:
            raise InvalidInput("block_size 1: the model reads no text, so it cannot continue any")
        keep = max(1, room // 2) if keep is None else keep
        if room and not 1 <= keep <= room:
            raise InvalidInput(f"keep: expected 1…{room} (block_size - 1), got {keep}")
        tokens = torch.empty(n, P + steps, dtype=torch.long, device=self.device)
        tokens[:, :P] = prefix
        start = torch.full((n, 1), self.start, dtype=torch.long, device=self.device)
        first, cache = 0, None  # window = tokens[first:end]
        for step in range(steps):
            end = P + step
            if end - first > room:  # the window is full: slide it, re-read it
                first, cache = end - keep, None
            if cache is None or not use_cache:
                cache = self.new_cache(n) if use_cache else None
                window = torch.cat([start, tokens[:, first:end]], dim=1)  # (n, 1 + m)
                logits = self(window, cache, condition)[:, -1]  # (n, V)
            else:  # the cache holds [s, tokens[first:end-1]]: run only the newest token
                logits = self(tokens[:, end - 1 : end], cache, condition)[:, -1]  # (n, V)
            tokens[:, end] = choose(logits, step)
        return tokens

    def generate(
        self,
        n: int,
        max_new_tokens: int,
        condition: Tensor | int | None = None,
        prompt: Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        *,
        use_cache: bool = True,
        keep: int | None = None,
    ) -> Tensor:
        """n continuations of ``prompt`` by ``max_new_tokens`` tokens: (n, P + max_new_tokens).

        Any length: beyond the block size the window slides (``decode``).
        ``prompt``: token ids (P,) shared by all rows or (n, P) (None: no
        text, P = 0); each token is drawn from p(x_t | window, c) after the
        ``LogitFilter`` (temperature, top-k, top-p).
        """
        if max_new_tokens < 0:
            raise InvalidInput(f"max_new_tokens: expected >= 0, got {max_new_tokens}")
        filt = LogitFilter(temperature, top_k, top_p)
        c = self._condition(condition, n, expand=True)
        prefix = self._prompt(prompt, n)

        def draw(logits: Tensor, step: int) -> Tensor:
            return sample_logits(logits, filt, generator)

        return self.decode(prefix, max_new_tokens, draw, c, use_cache=use_cache, keep=keep)

    def sample(
        self,
        n: int,
        condition: Tensor | int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        prompt: Tensor | None = None,
        **options: Any,
    ) -> Tensor:
        """Draw x_t ~ p(x_t | x_{<t}, c) after the filters, t = P…T-1: (n, T) long.

        With a ``prompt`` of P ≤ T tokens ((P,) or (n, P)), x_{<P} is the
        prompt: a draw of p(x | x_{<P} = prompt, c). ``options``: ``use_cache``
        and ``keep`` of ``decode``.
        """
        T, P = self.event_shape[0], self._prompt(prompt, n).shape[1]
        if P > T:
            raise InvalidInput(f"prompt: {P} tokens, more than the event length T = {T}")
        return self.generate(
            n, T - P, condition, prompt, temperature, top_k, top_p, generator, **options
        )

    def _prompt(self, prompt: Tensor | None, n: int) -> Tensor:
        """The checked prompt as (n, P) long on the model's device (P = 0 for None)."""
        if prompt is None:
            return torch.empty(n, 0, dtype=torch.long, device=self.device)
        if not isinstance(prompt, Tensor):
            raise InvalidInput(
                f"prompt: expected a tensor of token ids, got {type(prompt).__name__}"
            )
        if prompt.dim() == 1:
            prompt = prompt.unsqueeze(0).expand(n, -1)
        if prompt.dim() != 2 or len(prompt) != n:
            raise InvalidInput(
                f"prompt: expected shape (P,) or ({n}, P), got {tuple(prompt.shape)}"
            )
        tokens = as_levels(prompt, (prompt.shape[1],), self.config.vocab_size, name="prompt")
        return tokens.to(self.device)
