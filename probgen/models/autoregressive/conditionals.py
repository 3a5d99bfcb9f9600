"""One-dimensional conditionals p(x_i | x_{<i}) parametrized by a network's outputs.

A conditional turns k parameters per dimension, ``params`` (B, D, k), into a
log-density of x (B, D) and a way to draw x_i given the parameters of
dimension i. MADE (and any autoregressive network) is then combined with
whichever conditional the data needs:

    Bernoulli         p(x=1) = σ(l)                                   k = 1
    Categorical(K)    p(x=j) = softmax(l)_j, j = 0…K-1                 k = K
    MixtureOfGaussians(m)  p(x) = Σ_c π_c N(x; μ_c, s_c²)              k = 3m
    MixtureOfLogistics(m)  p(x) = Σ_c π_c Logistic(x; μ_c, s_c)        k = 3m

with π = softmax(mixture logits), s_c = exp(log-scale). The logit filters
(temperature, top-k, top-p) act on the discrete choice: the value for
Bernoulli / Categorical, the mixture component for the mixtures.

``marginal_params(x)`` fits the family to one dimension's values alone (the
unconditional density): level frequencies for the discrete ones, a Gaussian
mixture by EM for the mixtures. A network whose output biases are these and
whose output weights are zero starts as that fit (Bishop 1994: start a
mixture density network from the unconditional density of the targets).

References: Bishop, 1994, "Mixture Density Networks"; Salimans, Karpathy,
Chen & Kingma, 2017, "PixelCNN++" (mixtures of logistics); Dempster, Laird &
Rubin, 1977 (EM, through scikit-learn's ``GaussianMixture``).
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from probgen.core import InvalidInput, check_input
from probgen.models.autoregressive.sampling import LogitFilter, as_levels, sample_logits
from probgen.tensors import log_softmax_last

__all__ = [
    "Bernoulli",
    "Categorical",
    "Conditional",
    "Mixture",
    "MixtureOfGaussians",
    "MixtureOfLogistics",
]


class Conditional(abc.ABC):
    """A family of 1-D distributions with ``params_per_dim`` parameters per dimension."""

    params_per_dim: int
    levels: int | None = None
    """K for discrete values {0, …, K-1}; ``None`` for real values."""

    @abc.abstractmethod
    def validate(self, x: object, event_shape: tuple[int, ...]) -> Tensor:
        """Check a batch (B, *event_shape) and return it in this family's value type."""

    @abc.abstractmethod
    def features(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """The network's view of validated values, same shape, in ``dtype``."""

    @abc.abstractmethod
    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x_i | params_i) elementwise: params (B, D, k), x (B, D) -> (B, D)."""

    @abc.abstractmethod
    def sample(
        self, params: Tensor, filt: LogitFilter, generator: torch.Generator | None
    ) -> Tensor:
        """One draw per row of params (B, k) -> (B,), in the network's dtype."""

    @abc.abstractmethod
    def marginal_params(self, x: Tensor) -> Tensor:
        """Parameters (k,), float64, of this family fitted to validated 1-D values x (N,)."""


class Categorical(Conditional):
    """Categorical over {0, …, K-1} with logits l ∈ R^K: p(x = j) = softmax(l)_j."""

    def __init__(self, levels: int) -> None:
        if levels < 2:
            raise InvalidInput(f"Categorical: expected levels ≥ 2, got {levels}")
        self.levels = levels
        self.params_per_dim = levels

    def logits(self, params: Tensor) -> Tensor:
        """The K logits (…, K) of each dimension from its parameters (…, k)."""
        return params

    def validate(self, x: object, event_shape: tuple[int, ...]) -> Tensor:
        return as_levels(x, event_shape, self.levels)

    def features(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        # centred to [-1, 1] so every K gives inputs of the same scale
        return x.to(dtype) * (2 / (self.levels - 1)) - 1

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        logp = log_softmax_last(self.logits(params))
        return logp.gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def sample(
        self, params: Tensor, filt: LogitFilter, generator: torch.Generator | None
    ) -> Tensor:
        return sample_logits(self.logits(params), filt, generator).to(params.dtype)

    def marginal_params(self, x: Tensor) -> Tensor:
        """Logits log p̂_j of the add-one frequencies p̂_j = (n_j + 1) / (N + K)."""
        counts = torch.bincount(x.long(), minlength=self.levels).to(torch.float64)
        return ((counts + 1) / (len(x) + self.levels)).log()


class Bernoulli(Categorical):
    """Bernoulli over {0, 1} with one logit l: p(x = 1) = σ(l), i.e. logits (0, l)."""

    def __init__(self) -> None:
        super().__init__(2)
        self.params_per_dim = 1

    def logits(self, params: Tensor) -> Tensor:
        return torch.cat([torch.zeros_like(params), params], dim=-1)

    def marginal_params(self, x: Tensor) -> Tensor:
        """The one logit l = log p̂_1 - log p̂_0 of the add-one frequencies."""
        log_p = super().marginal_params(x)
        return log_p[1:] - log_p[:1]


class Mixture(Conditional):
    """Location-scale mixture p(x) = Σ_c π_c (1/s_c) f((x - μ_c)/s_c) with m components.

    Parameters per dimension (3m): mixture logits, means μ, log-scales log s,
    with log s = max(output, ``min_log_scale``). Subclasses give the standard
    density f (as ``standard_log_prob``), a standard sampler and f's standard
    deviation ``standard_sd`` (a component of scale s has standard deviation
    s · standard_sd).

    The floor bounds the density: the likelihood of a mixture is unbounded
    when a component's mean sits on a data value and its scale goes to 0,
    and on data with repeated values (rounded measurements) gradient ascent
    finds that singularity, its log-scale falling without end until the
    loss is NaN. PixelCNN++ bounds the log-scales at -7 the same way; on
    the standardised data the engine gives a model that is e^-7 ≈ 0.001 of
    the data's standard deviation, far below any real scale.
    """

    standard_sd: float

    def __init__(self, components: int, min_log_scale: float = -7.0) -> None:
        if components < 1:
            raise InvalidInput(f"{type(self).__name__}: expected components ≥ 1, got {components}")
        if not math.isfinite(min_log_scale):
            raise InvalidInput(
                f"{type(self).__name__}: expected a finite min_log_scale, got {min_log_scale}"
            )
        self.components = components
        self.min_log_scale = float(min_log_scale)
        self.params_per_dim = 3 * components

    @staticmethod
    @abc.abstractmethod
    def standard_log_prob(z: Tensor) -> Tensor:
        """log f(z) of the standard component, elementwise."""

    @staticmethod
    @abc.abstractmethod
    def standard_sample(like: Tensor, generator: torch.Generator | None) -> Tensor:
        """Standard draws with the shape, dtype and device of ``like``."""

    def split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logits, means, log-scales ≥ min_log_scale), each (…, m), from params (…, 3m)."""
        logits, mu, log_s = params.chunk(3, dim=-1)
        return logits, mu, log_s.clamp(min=self.min_log_scale)

    def validate(self, x: object, event_shape: tuple[int, ...]) -> Tensor:
        return check_input(x, event_shape)

    def features(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        return x.to(dtype)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        logits, mu, log_s = self.split(params)
        z = (x.unsqueeze(-1) - mu) * torch.exp(-log_s)
        comp = self.standard_log_prob(z) - log_s
        return torch.logsumexp(log_softmax_last(logits) + comp, dim=-1)

    def sample(
        self, params: Tensor, filt: LogitFilter, generator: torch.Generator | None
    ) -> Tensor:
        logits, mu, log_s = self.split(params)
        c = sample_logits(logits, filt, generator).unsqueeze(-1)
        mu, log_s = mu.gather(-1, c).squeeze(-1), log_s.gather(-1, c).squeeze(-1)
        return mu + torch.exp(log_s) * self.standard_sample(mu, generator)

    def marginal_params(self, x: Tensor) -> Tensor:
        """(log π, μ, log s) of m components from a Gaussian mixture fitted to x (N,) by EM.

        scikit-learn's ``GaussianMixture`` (k-means start, its covariance
        regularisation 1e-6) with k = min(m, N) components, its random state
        drawn from torch's global generator (a seeded build is reproducible).
        A component of standard deviation σ gets the scale s = σ / standard_sd:
        the same mean and variance, and exactly the fitted density for
        Gaussians (when every σ is above the floor e^min_log_scale). When
        N < m, slot c copies fitted component c mod k with its weight shared
        among the copies, so the density is still the fit.
        """
        from sklearn.mixture import GaussianMixture  # EM runs once, at build time

        data = x.detach().double().cpu().numpy().reshape(-1, 1)
        k = min(self.components, len(data))
        seed = int(torch.randint(2**31 - 1, ()).item())
        fit = GaussianMixture(k, random_state=seed).fit(data)
        slot = torch.arange(self.components) % k
        copies = torch.bincount(slot, minlength=k).double()
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float64).reshape(k)  # noqa: E731
        log_w = (as_tensor(fit.weights_) / copies).log()[slot]
        mu = as_tensor(fit.means_)[slot]
        log_s = (0.5 * as_tensor(fit.covariances_).log() - math.log(self.standard_sd))[slot]
        return torch.cat([log_w, mu, log_s])


class MixtureOfGaussians(Mixture):
    """Mixture of m Gaussians: f(z) = exp(-z²/2) / √(2π)."""

    standard_sd = 1.0

    @staticmethod
    def standard_log_prob(z: Tensor) -> Tensor:
        return -0.5 * z**2 - 0.5 * math.log(2 * math.pi)

    @staticmethod
    def standard_sample(like: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)


class MixtureOfLogistics(Mixture):
    """Mixture of m logistics: f(z) = e^{-z} / (1 + e^{-z})², sampled as log u - log(1-u)."""

    standard_sd = math.pi / math.sqrt(3)

    @staticmethod
    def standard_log_prob(z: Tensor) -> Tensor:
        return -z - 2 * F.softplus(-z)

    @staticmethod
    def standard_sample(like: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(like.shape, dtype=like.dtype, device=like.device, generator=generator)
        u = u.clamp(torch.finfo(like.dtype).tiny, 1 - torch.finfo(like.dtype).eps)
        return torch.log(u) - torch.log1p(-u)
