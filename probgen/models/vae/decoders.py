"""Decoders p_θ(x|z): a network from latents to the parameters of an observation model.

Every decoder owns a network ``net`` mapping z (B, Z) to P raw parameters per
entry of the event, read as (B, P, *event_shape) (an MLP emitting (B, P·D), or
a convolutional decoder emitting (B, P·C, H, W), both reshape to it), and
gives log p_θ(x|z) summed over the event, shape (B,). Discrete observation
models (Bernoulli, categorical, discretised logistic) give true probabilities
of data held as floats with integer values 0 … K-1 (the library's convention,
see ``probgen.data.quantized``).
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.vae.conditional import concat_features
from probgen.tensors import log1mexp, sum_events

__all__ = [
    "BernoulliDecoder",
    "CategoricalDecoder",
    "Decoder",
    "DiscretizedLogisticDecoder",
    "GaussianDecoder",
]

_LOG_2PI = math.log(2.0 * math.pi)


class Decoder(nn.Module, abc.ABC):
    """An observation model p_θ(x|z) whose parameters a network computes from z.

    Subclasses set ``n_params`` (P, raw parameters per event entry) and
    implement ``log_prob_params``, ``sample_params`` and ``mean_params`` on
    params of shape (B, P, *event_shape); discrete ones override ``check``,
    which ``log_prob`` applies to x first (``log_prob_params`` takes checked x,
    so a caller scoring one x against many z checks it once).

    A conditional decoder p_θ(x|z, c) (a CVAE) reads [z, h], h (B, W) the
    condition's features (``concat_features``); its ``net`` then takes Z + W inputs.

    Args:
        net: module mapping z (B, Z) to (B, P·prod(event_shape)) or any shape
            with that many entries per example.
        event_shape: shape of one observation x.
    """

    n_params: int = 1
    levels: int | None = None
    """K for a probability mass over {0, …, K-1}; ``None`` for a density."""
    reparameterized: bool = False
    """Whether ``sample`` is x = g(params, ε) with ε free of the parameters (pathwise gradients)."""

    def __init__(self, net: nn.Module, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net = net
        self.event_shape = tuple(int(s) for s in event_shape)

    def forward(self, z: Tensor, h: Tensor | None = None) -> Tensor:
        """Raw parameters of p_θ(x|z[, c]): z (B, Z), h (B, W) or None -> (B, P, *event_shape)."""
        inputs = z if h is None else concat_features(z, h)
        return self.net(inputs).reshape(z.shape[0], self.n_params, *self.event_shape)

    def check(self, x: Tensor) -> Tensor:
        """x, after checking its values are observations of this model (any real, here)."""
        return x

    def log_prob(self, x: Tensor, z: Tensor, h: Tensor | None = None) -> Tensor:
        """log p_θ(x|z[, c]) summed over the event: x (B, *event_shape), z (B, Z) -> (B,)."""
        return self.log_prob_params(self.check(x), self(z, h))

    def sample(
        self, z: Tensor, generator: torch.Generator | None = None, *, h: Tensor | None = None
    ) -> Tensor:
        """One draw x ~ p_θ(x|z[, c]) per latent: z (B, Z) -> (B, *event_shape)."""
        return self.sample_params(self(z, h), generator)

    def mean(self, z: Tensor, h: Tensor | None = None) -> Tensor:
        """E[x|z[, c]]: z (B, Z) -> (B, *event_shape)."""
        return self.mean_params(self(z, h))

    @abc.abstractmethod
    def log_prob_params(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x | params): checked x (B, *event_shape), params (B, P, *event_shape) -> (B,)."""

    @abc.abstractmethod
    def sample_params(self, params: Tensor, generator: torch.Generator | None) -> Tensor:
        """x ~ p(x | params): (B, P, *event_shape) -> (B, *event_shape)."""

    @abc.abstractmethod
    def mean_params(self, params: Tensor) -> Tensor:
        """E[x | params]: (B, P, *event_shape) -> (B, *event_shape)."""


def _check_levels(x: Tensor, levels: int, name: str) -> Tensor:
    """x, after checking every entry is an integer in {0, …, K-1}."""
    index = x.round()
    if not (torch.equal(index, x) and (index >= 0).all() and (index <= levels - 1).all()):
        raise InvalidInput(
            f"{name}: expected integer values in {{0, …, {levels - 1}}}, "
            f"got values in [{x.min().item():g}, {x.max().item():g}]"
            + ("" if torch.equal(index, x) else " with non-integers")
        )
    return x


class _DiscreteDecoder(Decoder):
    """A decoder whose observations are the integers {0, …, ``levels`` - 1}."""

    def check(self, x: Tensor) -> Tensor:
        """x, after checking every entry is an integer in {0, …, K-1} (InvalidInput if not)."""
        return _check_levels(x, self.levels, f"{type(self).__name__} x")


class BernoulliDecoder(_DiscreteDecoder):
    """Independent Bernoulli pixels for binary data, x ∈ {0, 1}^D.

    log p(x|z) = Σ_d x_d log π_d + (1 - x_d) log(1 - π_d), π = sigmoid(logits(z)),
    computed from the logits without forming π. P = 1.
    """

    n_params = 1
    levels = 2

    def log_prob_params(self, x: Tensor, params: Tensor) -> Tensor:
        logits = params[:, 0]
        return -sum_events(F.binary_cross_entropy_with_logits(logits, x, reduction="none"))

    def sample_params(self, params: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(params[:, 0]), generator=generator)

    def mean_params(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params[:, 0])


class GaussianDecoder(Decoder):
    """Independent Gaussian entries, p(x|z) = N(x; μ(z), diag σ²), for continuous data.

    log p(x|z) = -½ Σ_d ((x_d - μ_d)/σ_d)² - Σ_d log σ_d - (D/2) log 2π.

    Args:
        net: the network (see ``Decoder``).
        event_shape: shape of one observation.
        std: ``None``: the network also outputs log σ(z) per entry (P = 2);
            a float: one σ shared by all entries (P = 1), fixed unless
            ``learn_std``.
        learn_std: learn the shared σ (stored as log σ) from its initial ``std``.
    """

    reparameterized = True  # x = μ + σ ε

    def __init__(
        self,
        net: nn.Module,
        event_shape: tuple[int, ...],
        std: float | None = 1.0,
        learn_std: bool = False,
    ) -> None:
        super().__init__(net, event_shape)
        if std is None and learn_std:
            raise InvalidInput("GaussianDecoder: learn_std needs an initial std (got None)")
        if std is not None and not std > 0:
            raise InvalidInput(f"GaussianDecoder: expected std > 0, got {std}")
        self.n_params = 1 if std is not None else 2
        if std is not None:
            log_std = torch.tensor(math.log(std))
            if learn_std:
                self.log_std = nn.Parameter(log_std)
            else:
                self.register_buffer("log_std", log_std)

    def _log_std(self, params: Tensor) -> Tensor:
        return (
            params[:, 1] if self.n_params == 2 else self.log_std.to(params).expand_as(params[:, 0])
        )

    def log_prob_params(self, x: Tensor, params: Tensor) -> Tensor:
        log_std = self._log_std(params)
        u = (x - params[:, 0]) * torch.exp(-log_std)
        return sum_events(-0.5 * u.square() - log_std - 0.5 * _LOG_2PI)

    def sample_params(self, params: Tensor, generator: torch.Generator | None) -> Tensor:
        mean = params[:, 0]
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + self._log_std(params).exp() * eps

    def mean_params(self, params: Tensor) -> Tensor:
        return params[:, 0]


class CategoricalDecoder(_DiscreteDecoder):
    """Independent categorical entries over K levels, x_d ∈ {0, …, K-1}.

    log p(x|z) = Σ_d log softmax(logits_d(z))[x_d]; P = K.

    Args:
        net: the network (see ``Decoder``).
        event_shape: shape of one observation.
        levels: K, the number of values each entry takes.
    """

    def __init__(self, net: nn.Module, event_shape: tuple[int, ...], levels: int) -> None:
        super().__init__(net, event_shape)
        if levels < 2:
            raise InvalidInput(f"CategoricalDecoder: expected levels >= 2, got {levels}")
        self.levels = self.n_params = int(levels)

    def log_prob_params(self, x: Tensor, params: Tensor) -> Tensor:
        index = x.long()
        log_p = torch.log_softmax(params, dim=1)  # (B, K, *event)
        return sum_events(log_p.gather(1, index.unsqueeze(1)).squeeze(1))

    def sample_params(self, params: Tensor, generator: torch.Generator | None) -> Tensor:
        probs = torch.softmax(params.movedim(1, -1), dim=-1)  # (B, *event, K)
        flat = torch.multinomial(probs.reshape(-1, self.levels), 1, generator=generator)
        return flat.reshape(probs.shape[:-1]).to(params.dtype)

    def mean_params(self, params: Tensor) -> Tensor:
        values = torch.arange(self.levels, dtype=params.dtype, device=params.device)
        return torch.einsum("bk...,k->b...", torch.softmax(params, dim=1), values)


class DiscretizedLogisticDecoder(_DiscreteDecoder):
    """A logistic law on the real line, discretised to the K integers 0 … K-1.

    With μ(z), s(z) = exp(log s(z)) per entry and the logistic CDF σ((t - μ)/s),
    value k owns the bin [k - ½, k + ½), the end bins stretched to ±∞:
        P(x = k | z) = σ(a) - σ(b),   a = (k + ½ - μ)/s,  b = (k - ½ - μ)/s,
    with a = +∞ for k = K-1 and b = -∞ for k = 0, so the K probabilities sum to
    exactly 1. P = 2: the network emits μ and log s on the scale of [-1, 1]
    (output 0 means the middle level and a scale of half the range), mapped to
    the units of the levels by μ = (K-1)/2 · (out₀ + 1), s = (K-1)/2 · e^{out₁},
    and s is floored at ``MIN_SCALE`` (a fraction of one bin; a hard clamp, so
    the law is exactly the one above wherever s is larger).

    Numerics (float32 as well as float64). Since σ(a) - σ(b) =
    σ(a) σ(-b) (1 - e^{b-a}) exactly, with b - a = -1/s inside,

        log P = log σ(a) + log σ(-b) + log(1 - e^{-1/s}),

    a sum of three terms each computed without cancellation: ``logsigmoid``
    is accurate for any argument, and log(1 - e^{-1/s}) is ``log1mexp(1/s)``,
    which tends to -log s (error below eps·|log s|) once 1/s < eps, so a huge
    s never underflows to log 0. Unlike σ(a) - σ(b) evaluated as probabilities
    (PixelCNN++, which falls back to the mid-bin density when the difference
    underflows), this form needs no fallback: far in either tail the
    log-probability is about -|a| or -|b|, finite. The floor on s keeps 1/s
    finite, so log P ≥ -(|k - μ| + ½)/``MIN_SCALE`` - O(1) for any finite
    network output. End bins keep only the factor on their finite side
    (log σ(a) for k = 0, log σ(-b) for k = K-1).

    Reference: Salimans, Karpathy, Chen & Kingma (2017), "PixelCNN++: Improving
    the PixelCNN with discretized logistic mixture likelihood and other
    modifications"; Kingma et al. (2016), "Improved variational inference with
    inverse autoregressive flow".

    Args:
        net: the network (see ``Decoder``).
        event_shape: shape of one observation.
        levels: K, the number of integer values.
    """

    n_params = 2
    MIN_SCALE = 1.0 / 16.0
    """Smallest logistic scale s, in bins: the likeliest bin can still hold
    P = tanh(1/(4 s)) = 1 − 6.7·10⁻⁴ of the mass."""

    def __init__(self, net: nn.Module, event_shape: tuple[int, ...], levels: int) -> None:
        super().__init__(net, event_shape)
        if levels < 2:
            raise InvalidInput(f"DiscretizedLogisticDecoder: expected levels >= 2, got {levels}")
        self.levels = int(levels)

    def _loc_log_scale(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """μ and log s in units of the levels, each (B, *event_shape), log s ≥ log MIN_SCALE."""
        # The network works on the scale of [-1, 1]; map its location to the levels.
        half = 0.5 * (self.levels - 1)
        log_scale = (params[:, 1] + math.log(half)).clamp_min(math.log(self.MIN_SCALE))
        return half * (params[:, 0] + 1.0), log_scale

    def log_prob_params(self, x: Tensor, params: Tensor) -> Tensor:
        loc, log_scale = self._loc_log_scale(params)
        inv_scale = torch.exp(-log_scale)  # ≤ 1/MIN_SCALE, may underflow to 0 for huge s
        first, last = x <= 0, x >= self.levels - 1
        upper = (x + 0.5 - loc) * inv_scale
        lower = (x - 0.5 - loc) * inv_scale
        log_upper = torch.where(last, 0.0, F.logsigmoid(upper))  # log σ(+∞) = 0
        log_lower = torch.where(first, 0.0, F.logsigmoid(-lower))
        log_width = torch.where(first | last, 0.0, _log1mexp_inv_scale(log_scale))
        return sum_events(log_upper + log_lower + log_width)

    def sample_params(self, params: Tensor, generator: torch.Generator | None) -> Tensor:
        loc, log_scale = self._loc_log_scale(params)
        u = torch.rand(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        u = u.clamp_min(torch.finfo(loc.dtype).tiny)  # u ∈ (0, 1): a finite logit
        t = loc + log_scale.exp() * (torch.log(u) - torch.log1p(-u))
        return t.round().clamp(0, self.levels - 1)

    def mean_params(self, params: Tensor) -> Tensor:
        loc, log_scale = self._loc_log_scale(params)
        # E[x] = Σ_{k≥1} P(x ≥ k) = Σ_{k=1}^{K-1} σ((μ - k + ½)/s).
        k = torch.arange(1, self.levels, dtype=loc.dtype, device=loc.device)
        k = k.reshape(-1, *([1] * loc.dim()))
        return torch.sigmoid((loc - k + 0.5) * torch.exp(-log_scale)).sum(dim=0)


def _log1mexp_inv_scale(log_scale: Tensor) -> Tensor:
    """log(1 − e^{−1/s}) from log s, finite for every finite log s (same shape).

    ``log1mexp(e^{−log s})``; once 1/s < eps of the dtype, 1 − e^{−1/s} =
    (1/s)(1 − 1/(2s) + …) rounds to 1/s, so the value is −log s, used there
    because e^{−log s} may underflow to 0 (and log 0 = −∞).
    """
    big = -math.log(torch.finfo(log_scale.dtype).eps)
    safe = log_scale.clamp_max(big)
    return torch.where(log_scale > big, -log_scale, log1mexp(torch.exp(-safe)))
