"""The identity start: a VAE that starts as the Gaussian mixture EM fits to its data.

With latent size Z ≥ D (the data's size), an encoder and a decoder whose
MLPs start at zero beside a linear map (``LinearSkip``) and a full-covariance
mixture prior (``MixtureNormal``), the VAE can start at

    p(z) = Σ_k π_k N(z; [μ_k, 0], blockdiag(Σ_k − σ² I_D, I_{Z−D})),
    p_θ(x | z) = N(x; z_{1:D}, σ² I_D),
    q_φ(z | x) = N(z; [x, 0], diag(σ² 1_D, 1_{Z−D})),

where (π_k, μ_k, Σ_k) are the mixture EM fits to the training data with its
number of components chosen by BIC (``fit_bic``) and σ² = η λ_min, λ_min
the smallest eigenvalue of all Σ_k, η ∈ (0, 1) (``noise``). Then the model's
marginal is exactly the fitted mixture,

    p_θ(x) = ∫ p_θ(x | z) p(z) dz = Σ_k π_k N(x; μ_k, (Σ_k − σ² I) + σ² I)
           = Σ_k π_k N(x; μ_k, Σ_k),

the last Z − D latents are independent N(0, 1) under p and q alike (the
decoder ignores them), and the posterior p(z | x) of the first D is a
mixture of Gaussians of covariance (Σ'_k⁻¹ + σ⁻² I)⁻¹, between
(1 − η) σ² I and σ² I, centred within O(η) posterior widths (in the
Mahalanobis distance of x) of x: q_φ is close to it, so the bound is tight
from the first step. Training then learns, from the mixture, what a warp
g_θ(z) and a noise σ_θ(z) add, and early stopping on a validation split keeps
only what helps there (the fitted mixture itself when nothing does).

This is the VAE's counterpart of a flow over a mixture base started by EM
(``probgen.models.flows.prior``): a latent-variable model with a learned
mixture prior (Dilokthanakul et al. 2016, "Deep unsupervised clustering with
Gaussian mixture variational autoencoders"; Tomczak & Welling 2018, "VAE
with a VampPrior", whose mixture-of-Gaussians prior is the baseline), started
at the maximum-likelihood mixture instead of at random.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.models.flows.prior import MixtureNormal, fit_bic
from probgen.models.vae.decoders import Decoder, GaussianDecoder
from probgen.models.vae.encoders import GaussianEncoder
from probgen.nn.skip import LinearSkip

if TYPE_CHECKING:
    from probgen.models.vae.model import VAE

__all__ = ["IdentityStart"]


@dataclass(frozen=True)
class IdentityStart:
    """Start a VAE at the EM-fitted Gaussian mixture of its data (module docstring).

    ``check`` validates the parts at construction; ``reset`` sets the
    networks to the identity maps with σ = 1 (the start before data);
    ``fit`` (from ``VAE.initialize_from_data``) fits the mixture to the data,
    sets the prior and σ² = η λ_min.

    Args:
        noise: η ∈ (0, 1), the decoder's variance σ² as a fraction of the
            smallest eigenvalue of the fitted covariances.
    """

    noise: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.noise < 1.0:
            raise InvalidInput(f"IdentityStart: expected 0 < noise < 1, got {self.noise}")

    def check(self, encoder: GaussianEncoder, decoder: Decoder, prior: object) -> None:
        """InvalidInput unless the parts can start at the identity (see the module docstring)."""
        dim = _dim(decoder)
        problems = []
        if not isinstance(encoder.net, LinearSkip) or not isinstance(decoder.net, LinearSkip):
            problems.append("networks with a linear skip (build_networks(skip=True))")
        if not isinstance(decoder, GaussianDecoder) or decoder.n_params != 2:
            problems.append("a Gaussian decoder with a learned σ(z)")
        if encoder.levels is not None:
            problems.append("continuous data (no levels)")
        if encoder.latent_dim < dim:
            problems.append(f"latent_dim >= the data's size {dim} (got {encoder.latent_dim})")
        if not isinstance(prior, MixtureNormal):
            problems.append("the Gaussian-mixture prior (prior='gmm', MixtureNormal)")
        if problems:
            raise InvalidInput("the identity start needs " + "; ".join(problems))

    @torch.no_grad()
    def reset(self, vae: VAE, log_sigma: float | Tensor = 0.0) -> None:
        """Encoder mean [x, 0] and decoder mean z_{1:D}, both log-stds ``log_sigma`` on
        the first D entries (0 on the other Z − D latents); the MLPs' output layers zero.
        """
        encoder, decoder = vae.encoder, vae.decoder
        d, z = _dim(decoder), encoder.latent_dim
        for net in (encoder.net, decoder.net):
            last = [m for m in net.net.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.zero_()
            net.linear.weight.zero_()
            net.linear.bias.zero_()
            net.linear.weight[:d, :d] = torch.eye(d)  # the mean block: x -> z_{1:D}, z -> x
        encoder.net.linear.bias[z : z + d] = log_sigma
        decoder.net.linear.bias[d:] = log_sigma

    @torch.no_grad()
    def fit(self, vae: VAE, x: Tensor) -> None:
        """Start ``vae`` (with a ``MixtureNormal`` prior) at the mixture fitted to x (N, *event)."""
        prior = vae.prior
        assert isinstance(prior, MixtureNormal)
        data = x.flatten(1).to(prior.means)
        d, z = data.shape[1], vae.latent_dim
        fitted = fit_bic(data, len(prior.logits), prior.select)
        covariances = torch.as_tensor(fitted.covariances_, dtype=torch.float64)
        variance = self.noise * torch.linalg.eigvalsh(covariances).min()  # σ² = η λ_min
        k = len(covariances)
        padded = torch.eye(z, dtype=torch.float64).repeat(k, 1, 1)
        padded[:, :d, :d] = covariances - variance * torch.eye(d, dtype=torch.float64)
        means = torch.zeros(k, z, dtype=torch.float64)
        means[:, :d] = torch.as_tensor(fitted.means_)
        prior.set_components(torch.as_tensor(fitted.weights_), means, padded)
        self.reset(vae, 0.5 * variance.log().item())


def _dim(decoder: Decoder) -> int:
    """D, the number of entries of one observation."""
    return math.prod(decoder.event_shape)
