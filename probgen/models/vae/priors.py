"""Learned priors p_λ(z) for a VAE: a mixture of diagonal Gaussians and the VampPrior.

Both are mixtures p(z) = Σ_k π_k N(z; μ_k, diag σ_k²) and plug into ``VAE``
like any other prior (the KL term is then the Monte Carlo estimate
log q_φ(z|x) - log p(z)); they differ in where the components come from:
free parameters (``MixturePrior``) or the encoder at learned pseudo-inputs
(``VampPrior``). The full-covariance mixture started by EM (prior "gmm") is
the flows' ``MixtureNormal``, not a copy of it.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from probgen.core import DataSpec, GenerativeModel, InvalidInput
from probgen.distributions.base import Distribution
from probgen.models.flows.prior import MixtureNormal
from probgen.models.vae.encoders import GaussianEncoder
from probgen.tensors import log_softmax_last

__all__ = ["PRIORS", "MixturePrior", "VampPrior", "build_prior", "diagonal_mixture_log_prob"]

_LOG_2PI = math.log(2.0 * math.pi)
_ROWS = 4096  # z rows per chunk of the (rows, K) component table, to bound memory


def diagonal_mixture_log_prob(
    z: Tensor, log_weights: Tensor, means: Tensor, stds: Tensor
) -> Tensor:
    """log Σ_k π_k N(z; μ_k, diag σ_k²) for z (N, Z), log π (K,), μ and σ (K, Z) -> (N,).

    Each component's log-density is expanded into matrix products,

        log N(z; μ_k, σ_k) = -½ Σ_j z_j²/σ_kj² + Σ_j z_j μ_kj/σ_kj²
                             - ½ Σ_j μ_kj²/σ_kj² - Σ_j log σ_kj - (Z/2) log 2π,

    so the (N, K) table costs two (N, Z) × (Z, K) products rather than an
    (N, K, Z) broadcast; rows are taken in chunks. The expansion cancels terms
    of size (z/σ)², so in float32 its error is about 1e-7 · Σ_j (z_j/σ_kj)²
    nats (1e-3 at z/σ ≈ 20 in 50 dimensions); use float64 where that matters.
    """
    precision = stds.pow(-2)  # (K, Z)
    constant = (
        log_weights
        - 0.5 * (means.square() * precision).sum(dim=-1)
        - stds.log().sum(dim=-1)
        - 0.5 * means.shape[-1] * _LOG_2PI
    )  # (K,)
    scaled_means = (means * precision).mT  # (Z, K)
    half_precision = 0.5 * precision.mT  # (Z, K)
    return torch.cat(
        [
            torch.logsumexp(zc @ scaled_means - zc.square() @ half_precision + constant, dim=-1)
            for zc in z.split(_ROWS)
        ]
    )


class _DiagonalMixture(Distribution):
    """A mixture of diagonal Gaussians whose components ``components()`` computes."""

    reparameterized = False  # the component k ~ Cat(π) is a discrete draw

    @abc.abstractmethod
    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log π (K,), μ (K, Z), σ (K, Z)) of the current parameters."""

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(z) for z (N, Z) -> (N,), exact."""
        z = self._check(x)
        return diagonal_mixture_log_prob(z, *self.components())

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """k ~ Cat(π), then z = μ_k + σ_k ⊙ ε with ε ~ N(0, I); (n, Z)."""
        log_weights, means, stds = self.components()
        k = torch.multinomial(log_weights.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(
            (n, means.shape[-1]), generator=generator, dtype=means.dtype, device=means.device
        )
        return means[k] + stds[k] * eps


class MixturePrior(_DiagonalMixture):
    """A learned mixture of K diagonal Gaussians, p_λ(z) = Σ_k π_k N(z; μ_k, diag σ_k²).

    The weights are a softmax of free logits, σ = exp(log σ); every component
    starts as N(μ_k, I) with μ_k ~ N(0, ``init_spread``² I), so K components
    start close to the standard normal prior and learn to place mass where the
    aggregate posterior q(z) = E_pdata[q_φ(z|x)] has it (the prior that
    maximises the ELBO is that aggregate posterior).

    Reference: Tomczak & Welling (2018), "VAE with a VampPrior" (the mixture
    of Gaussians prior is their baseline); Dilokthanakul et al. (2016),
    "Deep unsupervised clustering with Gaussian mixture variational autoencoders".

    Args:
        latent_dim: Z.
        components: K ≥ 1.
        init_spread: standard deviation of the initial means.
    """

    def __init__(self, latent_dim: int, components: int = 10, init_spread: float = 1.0) -> None:
        if latent_dim < 1 or components < 1:
            raise InvalidInput(
                f"MixturePrior: expected latent_dim >= 1 and components >= 1, "
                f"got {latent_dim} and {components}"
            )
        super().__init__(event_shape=(latent_dim,))
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(init_spread * torch.randn(components, latent_dim))
        self.log_stds = nn.Parameter(torch.zeros(components, latent_dim))

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        """(log softmax of the logits, μ, exp(log σ))."""
        return log_softmax_last(self.logits), self.means, self.log_stds.exp()


class VampPrior(_DiagonalMixture):
    """The variational mixture of posteriors, p_λ(z) = (1/K) Σ_k q_φ(z | u_k).

    The components are the encoder's own posteriors at K learned
    pseudo-inputs u_k (shaped like data), an approximation of the optimal
    prior, the aggregate posterior (1/N) Σ_n q_φ(z | x_n). The encoder is
    shared with the VAE (its parameters are trained once, by both terms);
    each evaluation of the prior encodes the K pseudo-inputs, so K adds K
    encoder rows to every training step.

    Reference: Tomczak & Welling (2018), "VAE with a VampPrior".

    Args:
        encoder: the VAE's q_φ(z|x).
        pseudo_inputs: initial u, shape (K, *event_shape) (e.g. K training
            examples, or noise of the data's scale); trained as parameters.
    """

    def __init__(self, encoder: GaussianEncoder, pseudo_inputs: Tensor) -> None:
        if not isinstance(pseudo_inputs, Tensor) or not pseudo_inputs.is_floating_point():
            raise InvalidInput("VampPrior: expected floating-point pseudo-inputs (K, *event_shape)")
        if pseudo_inputs.dim() < 2 or pseudo_inputs.shape[0] < 1:
            raise InvalidInput(
                f"VampPrior: expected pseudo-inputs of shape (K, *event_shape) with K >= 1, "
                f"got {tuple(pseudo_inputs.shape)}"
            )
        super().__init__(event_shape=(encoder.latent_dim,))
        self.encoder = encoder
        self.pseudo_inputs = nn.Parameter(pseudo_inputs.detach().clone())

    def components(self) -> tuple[Tensor, Tensor, Tensor]:
        """(-log K for every k, μ_φ(u), σ_φ(u))."""
        q = self.encoder(self.pseudo_inputs)
        k = self.pseudo_inputs.shape[0]
        return q.mean.new_full((k,), -math.log(k)), q.mean, q.std


def _standard(encoder: GaussianEncoder, spec: DataSpec, components: int) -> Distribution | None:
    return None  # the VAE's default, StandardNormal((Z,))


def _mixture(encoder: GaussianEncoder, spec: DataSpec, components: int) -> Distribution:
    return MixturePrior(encoder.latent_dim, components)


def _gmm(encoder: GaussianEncoder, spec: DataSpec, components: int) -> Distribution:
    return MixtureNormal(encoder.latent_dim, components)


def _vamp(encoder: GaussianEncoder, spec: DataSpec, components: int) -> Distribution:
    levels = spec.levels
    middle, scale = (0.0, 1.0) if levels is None else ((levels - 1) / 2, levels - 1)
    return VampPrior(encoder, middle + 0.1 * scale * torch.randn(components, *spec.event_shape))


PRIORS: dict[str, Callable[[GaussianEncoder, DataSpec, int], GenerativeModel | None]] = {
    "standard": _standard,
    "mixture": _mixture,
    "vamp": _vamp,
    "gmm": _gmm,
}
"""Prior names (configs, CLI) -> builder from the encoder, the data's spec and K."""


def build_prior(
    name: str, encoder: GaussianEncoder, spec: DataSpec, components: int | None = None
) -> GenerativeModel | None:
    """The prior ``name`` for a VAE with ``encoder`` on data ``spec`` (None: standard normal).

    "mixture": ``MixturePrior`` with K = ``components`` (default 50); "vamp":
    ``VampPrior`` with K pseudo-inputs (default 50) drawn around the middle of
    the data's range; "gmm": the full-covariance ``MixtureNormal`` of the
    flows (``probgen.models.flows.prior``) with at most K components (default
    5), which ``VAE.initialize_from_data`` fits by EM with K chosen by BIC.
    """
    if name not in PRIORS:
        raise InvalidInput(f"unknown prior {name!r}; choose one of: {', '.join(PRIORS)}")
    default = 5 if name == "gmm" else 50
    return PRIORS[name](encoder, spec, default if components is None else components)
