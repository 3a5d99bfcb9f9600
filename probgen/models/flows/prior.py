"""Learned base distributions for flows: N(μ(c), diag σ(c)²) and a Gaussian mixture.

Glow's class-conditional prior (Kingma & Dhariwal 2018) makes the latent
mean and log-scale a learned linear function of the one-hot class: per class
a learned mean and log-scale of every latent entry.
The same linear map of a continuous condition's features gives a Gaussian
base whose location and scale move with c.

``MixtureNormal`` is an unconditional base Σ_k π_k N(μ_k, Σ_k) started by EM
on the data's latents (MAF's mixture base, Papamakarios et al. 2017): on
small multimodal data a flow then starts from the best Gaussian mixture
instead of learning the modes from N(0, I).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import GenerativeModel, InvalidInput, Likelihood

__all__ = ["ConditionalNormal", "MixtureNormal", "fit_bic"]

_LOG_2PI = math.log(2.0 * math.pi)


class ConditionalNormal(GenerativeModel):
    """p(z | c) = N(z; μ(c), diag σ(c)²) with (μ(c), log σ(c)) = W φ(c) + b.

    φ(c) (B, w) are the condition's features (``ConditionSpec.features``: the
    one-hot class, so W holds one mean and one log-scale per class and entry,
    or the flattened vector). W and b start at zero, so the base starts as
    N(0, I) for every c. With D = prod(event_shape),

        log p(z | c) = -½ Σ_d ((z_d − μ_d(c)) / σ_d(c))² − Σ_d log σ_d(c) − (D/2) log 2π.

    Args:
        event_shape: shape of one latent z.
        condition: what c is.

    Inputs z (B, *event_shape) and c (B,) labels or (B, *shape) vectors.

    Reference: Kingma & Dhariwal (2018), "Glow: Generative Flow with
    Invertible 1×1 Convolutions".
    """

    likelihood = Likelihood.EXACT

    def __init__(self, event_shape: tuple[int, ...], condition: ConditionSpec) -> None:
        super().__init__(event_shape)
        self.condition_spec = condition
        self.dim = math.prod(self.event_shape)
        self.linear = nn.Linear(condition.width, 2 * self.dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def loc_log_scale(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """μ(c) and log σ(c), each (B, *event_shape), for checked conditions c."""
        h = self.linear(self.condition_spec.features(c, self.linear.weight.dtype))  # (B, 2D)
        loc, log_scale = h.reshape(len(c), 2, *self.event_shape).unbind(1)
        return loc, log_scale

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """log p(z | c) per example: z (B, *event_shape) -> (B,)."""
        x = self._check(x)
        loc, log_scale = self.loc_log_scale(self._condition(condition, len(x)))
        z = (x - loc) * torch.exp(-log_scale)
        return (-0.5 * z.square() - log_scale).flatten(1).sum(1) - 0.5 * self.dim * _LOG_2PI

    def sample(
        self, n: int, condition: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """z = μ(c) + σ(c) ⊙ ε, ε ~ N(0, I): (n, *event_shape); one c for all n, or n of them."""
        loc, log_scale = self.loc_log_scale(self._condition(condition, n, expand=True))
        eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        return loc + log_scale.exp() * eps


class MixtureNormal(GenerativeModel):
    """A learned Gaussian-mixture base, p(z) = Σ_k π_k N(z; μ_k, L_k L_kᵀ), z of shape (D,).

    With π = softmax(a) over the active components, L_k lower triangular with
    a positive diagonal exp(ℓ_k) and u_k = L_k⁻¹(z − μ_k),

        log p(z) = logsumexp_k [log π_k − ½‖u_k‖² − Σ_d ℓ_kd] − (D/2) log 2π.

    a, μ, ℓ and the strictly lower part of L are parameters trained with the
    flow. ``initialize_from_data`` sets them by EM on the data's latents (the
    flow's transform at initialisation) with the number of components, 1 to
    ``components``, chosen by BIC: the flow then starts as the best Gaussian
    mixture of its latents and only learns what a mixture cannot represent.
    The inactive slots (beyond the chosen number) have weight exactly zero;
    which are active is a buffer, saved with the weights, so a saved model is
    rebuilt from its options alone. Before initialisation every slot is
    N(0, I) with equal weight, i.e. the base is N(0, I).

    Args:
        features: D.
        components: the most components (and the number when ``select`` is False).
        select: choose the number of components by BIC (else use ``components``).

    References: Papamakarios, Pavlakou & Murray (2017), "Masked Autoregressive
    Flow for Density Estimation" (MAF with a mixture base, "MAF MoG");
    Izmailov, Kirichenko, Finzi & Wilson (2020), "Semi-Supervised Learning with
    Normalizing Flows" (FlowGMM); Dempster, Laird & Rubin (1977) for EM and
    Schwarz (1978) for BIC (both through scikit-learn's ``GaussianMixture``).
    """

    likelihood = Likelihood.EXACT

    def __init__(self, features: int, components: int = 5, select: bool = True) -> None:
        super().__init__((features,))
        if components < 1:
            raise InvalidInput(f"MixtureNormal: components must be >= 1, got {components}")
        self.select = bool(select)
        self.logits = nn.Parameter(torch.zeros(components))
        self.means = nn.Parameter(torch.zeros(components, features))
        self.log_diagonal = nn.Parameter(torch.zeros(components, features))
        self.lower = nn.Parameter(torch.zeros(components, features, features))
        self.register_buffer("active", torch.ones(components, dtype=torch.bool))

    def scale_tril(self) -> Tensor:
        """L_k (K, D, D): the strictly lower part of ``lower`` plus diag exp(ℓ_k)."""
        return torch.tril(self.lower, -1) + torch.diag_embed(self.log_diagonal.exp())

    def log_weights(self) -> Tensor:
        """log π (K,): log-softmax over the active components, −inf for the others."""
        return self.logits.masked_fill(~self.active, -math.inf).log_softmax(0)

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) per example: z (B, D) -> (B,)."""
        z = self._check(z)
        tril = self.scale_tril()  # (K, D, D)
        diff = (z[:, None, :] - self.means).unsqueeze(-1)  # (B, K, D, 1)
        u = torch.linalg.solve_triangular(tril, diff, upper=False).squeeze(-1)  # (B, K, D)
        per_component = -0.5 * u.square().sum(-1) - self.log_diagonal.sum(-1)  # (B, K)
        weighted = per_component + self.log_weights()
        return torch.logsumexp(weighted, dim=1) - 0.5 * self.event_shape[0] * _LOG_2PI

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z = μ_k + L_k ε with k ~ Cat(π), ε ~ N(0, I): (n, D)."""
        weights = self.log_weights().exp().detach()
        k = torch.multinomial(weights, n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn(
            (n, self.event_shape[0], 1), generator=generator, dtype=weights.dtype,
            device=weights.device,
        )  # fmt: skip
        return self.means[k] + (self.scale_tril()[k] @ eps).squeeze(-1)

    @torch.no_grad()
    def initialize_from_data(self, z: Tensor, condition: Tensor | None = None) -> None:
        """Set π, μ, L by EM on latents z (N, D), the number of components by BIC.

        ``fit_bic`` on z with this base's most components (and ``select``),
        then ``set_components`` to its weights, means and covariances.
        """
        data = self._check(z, name="initialisation data")
        fit = fit_bic(data, len(self.logits), self.select)
        self.set_components(
            *(torch.as_tensor(a) for a in (fit.weights_, fit.means_, fit.covariances_))
        )

    @torch.no_grad()
    def set_components(self, weights: Tensor, means: Tensor, covariances: Tensor) -> None:
        """Make the first k slots the mixture Σ_k π_k N(μ_k, Σ_k), the others inactive.

        weights (k,) positive, summing to 1; means (k, D); covariances (k, D, D)
        symmetric positive definite (L_k is their Cholesky factor); k at most
        the number of slots.
        """
        k = len(weights)
        if not 1 <= k <= len(self.logits):
            raise InvalidInput(
                f"MixtureNormal.set_components: expected 1 to {len(self.logits)} "
                f"components, got {k}"
            )
        as_param = lambda a: torch.as_tensor(a).to(self.means)  # noqa: E731
        tril = torch.linalg.cholesky(as_param(covariances))
        self.active.fill_(False)
        self.active[:k] = True
        self.logits.zero_()
        self.logits[:k] = as_param(weights).log()
        self.means.zero_()
        self.means[:k] = as_param(means)
        self.log_diagonal.zero_()
        self.log_diagonal[:k] = torch.diagonal(tril, dim1=-2, dim2=-1).log()
        self.lower.zero_()
        self.lower[:k] = torch.tril(tril, -1)


def fit_bic(data: Tensor, most: int, select: bool = True) -> Any:
    """The Gaussian mixture EM fits to data (N, D), its number of components chosen by BIC.

    scikit-learn's ``GaussianMixture`` (full covariances, k-means start, its
    default covariance regularisation 1e-6) is fitted for every k in
    1..min(most, N) (only k = min(most, N) unless ``select``), in float64; the
    fit with the least BIC is returned (its ``weights_``, ``means_``,
    ``covariances_`` are NumPy arrays). Its random state is drawn from
    torch's global generator, so a seeded build is reproducible.
    """
    from sklearn.mixture import GaussianMixture  # EM runs once, at build time

    array = data.detach().double().cpu().numpy()
    seed = int(torch.randint(2**31 - 1, ()).item())
    most = min(most, len(array))
    counts = range(1, most + 1) if select else (most,)
    fits = [GaussianMixture(k, random_state=seed).fit(array) for k in counts]
    return min(fits, key=lambda m: m.bic(array))
