"""The variational autoencoder: p_θ(x, z) = p_θ(x|z) p(z) with an amortised q_φ(z|x)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from probgen.conditions import ConditionSpec
from probgen.core import DataInitialized, DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.distributions import DiagonalGaussian, StandardNormal
from probgen.divergences import kl_diagonal_gaussian
from probgen.models.vae.build import build_networks
from probgen.models.vae.conditional import ConditionalGaussianPrior
from probgen.models.vae.decoders import Decoder
from probgen.models.vae.encoders import GaussianEncoder, GaussianPosterior
from probgen.models.vae.objectives import ELBO, IWAE
from probgen.models.vae.priors import build_prior
from probgen.models.vae.start import IdentityStart
from probgen.tensors import logmeanexp

__all__ = ["VAE"]

_MAX_ROWS = 1 << 16  # decoder rows per chunk of importance samples, to bound memory


class VAE(GenerativeModel):
    """Variational autoencoder with any prior, any decoder and a Gaussian encoder.

    Generative model p_θ(x, z) = p_θ(x|z) p(z); inference model
    q_φ(z|x) = N(μ_φ(x), diag σ_φ(x)²). The evidence lower bound

        ELBO(x) = E_q[log p_θ(x|z)] - KL(q_φ(z|x) || p(z)) ≤ log p_θ(x),

    with log p_θ(x) - ELBO(x) = KL(q_φ(z|x) || p_θ(z|x)). The KL term is
    analytic when the prior is a diagonal Gaussian (``analytic_kl``), else
    the Monte Carlo average of log q_φ(z|x) - log p(z) over the same draws. The
    importance-weighted bound

        L_K(x) = E[log (1/K) Σ_k w_k],  w_k = p_θ(x|z_k) p(z_k) / q_φ(z_k|x),

    satisfies ELBO = L_1 ≤ L_K ≤ L_{K+1} ≤ log p_θ(x) and L_K → log p_θ(x).

    Conditional (a CVAE, Sohn, Lee & Yan 2015): with ``condition`` set, the
    model is p_θ(x | c) = ∫ p_θ(x|z, c) p(z|c) dz with q_φ(z|x, c); every
    formula above holds with c added to each factor, e.g.
    ELBO(x, c) = E_q[log p_θ(x|z, c)] − KL(q_φ(z|x, c) || p(z|c)) ≤ log p_θ(x|c).
    The encoder and decoder read the condition's features (their ``join``;
    ``probgen.models.vae.conditional``); the prior is either c-independent
    or a ``ConditionalGaussianPrior`` N(μ_λ(c), σ_λ(c)²) (its KL analytic).
    Every call then takes ``condition=`` (InvalidInput without one).

    ``log_prob(x)`` is a bound (``likelihood`` BOUND): the ELBO with one
    sample and analytic KL when ``log_prob_k`` = 1 (the default), else L_K
    with K = ``log_prob_k``. ``loss`` is minus the mean of ``objective``
    (default ``ELBO()``; ``ELBO(beta=4.0)`` for a β-VAE, ``IWAE(k)`` to train
    on the importance-weighted bound).

    References: Kingma & Welling (2014), "Auto-encoding variational Bayes";
    Rezende, Mohamed & Wierstra (2014), "Stochastic backpropagation and
    approximate inference in deep generative models"; Burda, Grosse &
    Salakhutdinov (2016), "Importance weighted autoencoders"; Higgins et al.
    (2017), "β-VAE"; Sohn, Lee & Yan (2015), "Learning structured output
    representation using deep conditional generative models" (the CVAE).

    Args:
        encoder: q_φ(z|x), a ``GaussianEncoder`` with latent size Z.
        decoder: p_θ(x|z), a ``Decoder``; its ``event_shape`` is the model's.
        prior: p(z), any GenerativeModel over (Z,) with ``log_prob`` and
            ``sample(n, generator=...)`` (a Gaussian, a mixture, a flow);
            default ``StandardNormal((Z,))``. Its parameters, if any, train
            with the model. A conditional model may take a
            ``ConditionalGaussianPrior``, p(z | c).
        objective: the per-example training objective (``ELBO`` or ``IWAE``).
        log_prob_k: K of the bound ``log_prob`` returns (1: the ELBO).
        analytic_kl: use the closed-form KL when the prior is a diagonal Gaussian.
        condition: what c is (``ConditionSpec``) for a CVAE; its features must
            match the encoder's and decoder's networks. ``None``: p(x).
        start: ``IdentityStart`` to start, once ``initialize_from_data`` has
            seen the training data, at the Gaussian mixture EM fits to it
            (``probgen.models.vae.start``); ``None``: as the networks were
            initialised (a ``MixtureNormal`` prior is then fitted by EM to the
            encoder's means of the data).
    """

    likelihood = Likelihood.BOUND

    def __init__(
        self,
        encoder: GaussianEncoder,
        decoder: Decoder,
        prior: GenerativeModel | ConditionalGaussianPrior | None = None,
        *,
        objective: ELBO | IWAE | None = None,
        log_prob_k: int = 1,
        analytic_kl: bool = True,
        condition: ConditionSpec | None = None,
        start: IdentityStart | None = None,
    ) -> None:
        super().__init__(event_shape=decoder.event_shape)
        if encoder.conditional != (condition is not None):
            raise InvalidInput(
                "VAE: a conditional model (condition given) needs a conditional encoder "
                "(with a join), an unconditional one an unconditional encoder"
            )
        if condition is None and isinstance(prior, ConditionalGaussianPrior):
            raise InvalidInput("VAE: a conditional prior p(z | c) needs condition=")
        self.condition_spec = condition
        latent_shape = (encoder.latent_dim,)
        prior = StandardNormal(latent_shape) if prior is None else prior
        if tuple(prior.event_shape) != latent_shape:
            raise InvalidInput(
                f"VAE: expected a prior over events of shape {latent_shape} (the encoder's "
                f"latent size), got {tuple(prior.event_shape)}"
            )
        if log_prob_k < 1:
            raise InvalidInput(f"VAE: expected log_prob_k >= 1, got {log_prob_k}")
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.objective = ELBO() if objective is None else objective
        self.log_prob_k = int(log_prob_k)
        self.analytic_kl = analytic_kl
        self.start = start
        if start is not None:
            start.check(encoder, decoder, prior)
            start.reset(self)

    @classmethod
    def small_data_options(cls, spec: DataSpec, options: Mapping[str, Any]) -> dict[str, Any]:
        """``prior: gmm, start: identity`` (the VAE starts at the EM/BIC mixture's density)
        where the identity start can apply: no prior, start or decoder chosen, and
        ``latent_dim`` at least the data's size (``IdentityStart``)."""
        chosen = {"prior", "start", "decoder"} & set(options)
        default = inspect.signature(cls.for_data).parameters["latent_dim"].default
        latent_dim = options.get("latent_dim", default)
        if chosen or int(latent_dim) < math.prod(spec.event_shape):
            return {}
        return {"prior": "gmm", "start": "identity"}

    @classmethod
    def for_data(
        cls,
        spec: DataSpec,
        latent_dim: int = 16,
        decoder: str | None = None,
        hidden: Sequence[int] = (256, 256),
        channels: Sequence[int] = (32, 64),
        beta: float = 1.0,
        iwae_k: int | None = None,
        log_prob_k: int = 1,
        prior: str = "standard",
        prior_components: int | None = None,
        dreg: bool = False,
        conditional: bool | None = None,
        start: str = "random",
        start_noise: float = 0.1,
    ) -> VAE:
        """A VAE for data described by ``spec`` (used by configs and the CLI).

        Networks and decoder as in ``build_networks`` (decoder by the data's
        levels unless named: "gaussian", "bernoulli", "categorical",
        "logistic"); prior by ``build_prior`` ("standard" normal, a learned
        "mixture" or a "vamp" prior with ``prior_components`` components,
        default 50, or "gmm", the full-covariance ``MixtureNormal`` started by
        EM with at most ``prior_components`` components, default 5, chosen by BIC);
        trained on ``IWAE(iwae_k)`` (with DReG encoder gradients when ``dreg``)
        when ``iwae_k`` is given, else on ``ELBO(beta)``.

        ``conditional`` (None: exactly when ``spec.condition`` is set) builds
        the CVAE of p(x | c) for the data's condition; ``prior="conditional"``
        then learns p(z | c) (``ConditionalGaussianPrior``). The "vamp" prior
        is unconditional only (its pseudo-inputs have no condition).

        ``start="identity"`` (with ``prior="gmm"``, continuous vector data and
        ``latent_dim`` ≥ D) builds networks with a linear skip and starts the
        model at the mixture EM fits to the training data, with decoder noise
        σ² = ``start_noise`` · λ_min (``IdentityStart``); "random": as initialised.
        """
        conditional = spec.condition is not None if conditional is None else conditional
        if conditional and spec.condition is None:
            raise InvalidInput("VAE: conditional=True needs data with a condition (spec.condition)")
        condition = spec.condition if conditional else None
        if prior == "conditional" and condition is None:
            raise InvalidInput("VAE: prior='conditional' (p(z | c)) needs a conditional model")
        if prior == "vamp" and condition is not None:
            raise InvalidInput("VAE: the vamp prior is unconditional; use another prior for a CVAE")
        if start not in ("random", "identity"):
            raise InvalidInput(f"VAE: unknown start {start!r}; choose 'random' or 'identity'")
        encoder, dec = build_networks(
            spec, latent_dim, decoder, hidden, channels, condition=condition,
            skip=start == "identity",
        )  # fmt: skip
        if dreg and iwae_k is None:
            raise InvalidInput("VAE: dreg applies to the IWAE objective; give iwae_k too")
        objective = (
            ELBO(beta=beta) if iwae_k is None else IWAE(k=iwae_k, doubly_reparameterized=dreg)
        )
        p_z = (
            ConditionalGaussianPrior(condition.width, latent_dim)
            if prior == "conditional" and condition is not None
            else build_prior(prior, encoder, spec, prior_components)
        )
        return cls(
            encoder, dec, p_z, objective=objective, log_prob_k=log_prob_k, condition=condition,
            start=IdentityStart(start_noise) if start == "identity" else None,
        )  # fmt: skip

    @torch.no_grad()
    def initialize_from_data(self, x: Tensor, condition: Tensor | None = None) -> None:
        """Start a data-initialised prior (``MixtureNormal``) from training data x (N, *event).

        ``DataInitialized``: with ``start`` (``IdentityStart``) the whole model
        starts at the mixture EM fits to x; otherwise the prior is fitted by
        EM to the encoder's means μ_φ(x[, c]). A prior without
        ``initialize_from_data`` is left as it is (then this does nothing).
        """
        if not isinstance(self.prior, DataInitialized):
            return
        x = self._checked(x).to(self._dtype())
        if self.start is not None:
            self.start.fit(self, x)
        else:
            self.prior.initialize_from_data(self.encode(x, condition).mean)

    @property
    def handles_levels(self) -> bool:
        """A probability mass over levels when the decoder is discrete (has ``levels``)."""
        return self.decoder.levels is not None

    @property
    def latent_dim(self) -> int:
        """Z, the size of the latent vector."""
        return self.encoder.latent_dim

    def encode(self, x: Tensor, condition: Tensor | None = None) -> GaussianPosterior:
        """q_φ(z|x[, c]) for x (B, *event_shape): mean and std, each (B, Z)."""
        x = self._check(x)
        return self.encoder(x, self._features(condition, len(x), x.dtype))

    def decode(self, z: Tensor, condition: Tensor | None = None) -> Tensor:
        """The decoder mean E_θ[x|z[, c]]: z (B, Z) -> (B, *event_shape)."""
        return self.decoder.mean(z, self._features(condition, len(z), z.dtype))

    def kl(self, q: GaussianPosterior, z: Tensor, h: Tensor | None = None) -> Tensor:
        """KL(q_φ(z|x[, c]) || p(z[|c])) per example, (B,); h (B, W) the condition's features.

        Closed form when the prior is a diagonal Gaussian (or the conditional
        Gaussian prior) and ``analytic_kl``; otherwise the Monte Carlo mean of
        log q_φ(z_k|x) - log p(z_k) over the draws ``z`` (k, B, Z) from q.
        """
        if self.analytic_kl and isinstance(self.prior, ConditionalGaussianPrior):
            return kl_diagonal_gaussian(q.mean, q.std, *self.prior(h.to(q.mean)))
        if self.analytic_kl and isinstance(self.prior, DiagonalGaussian):
            return kl_diagonal_gaussian(
                q.mean, q.std, self.prior.mean.expand_as(q.mean), self.prior.std.expand_as(q.std)
            )
        return (q.log_prob(z) - self._prior_log_prob(z, h)).mean(dim=0)

    def elbo(
        self,
        x: Tensor,
        k: int = 1,
        *,
        condition: Tensor | None = None,
        beta: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Monte Carlo ELBO with k reparameterised draws per example: (B, *event_shape) -> (B,).

        (1/k) Σ_k log p_θ(x|z_k) - β KL(q_φ(z|x) || p(z)), z_k ~ q_φ(z|x), with the
        KL as in ``kl``; β = 1 gives the ELBO itself, unbiased for every k. A
        CVAE takes ``condition`` c (B,) labels or (B, *shape) and every factor
        is conditioned on it: a bound on log p_θ(x|c).
        """
        x = self._checked(x)
        h = self._features(condition, len(x), x.dtype)
        q = self.encoder(x, h)
        z = q.rsample(k, generator)  # (k, B, Z)
        reconstruction = self._decoder_log_prob(x, z, h).mean(dim=0)  # (B,)
        return reconstruction - beta * self.kl(q, z, h)

    def iwae_bound(
        self,
        x: Tensor,
        k: int,
        generator: torch.Generator | None = None,
        *,
        condition: Tensor | None = None,
        doubly_reparameterized: bool = False,
    ) -> Tensor:
        """One draw of the importance-weighted estimate of L_K: (B, *event_shape) -> (B,).

        log (1/K) Σ_k p_θ(x|z_k) p(z_k) / q_φ(z_k|x) with z_k ~ q_φ(z|x); its
        expectation is the bound L_K (Burda et al., 2016), for a CVAE with
        every factor conditioned on ``condition`` (a bound on log p_θ(x|c)).
        The decoder sees the draws in chunks, so K = 5000 fits in memory. With
        ``doubly_reparameterized`` the value is unchanged and gradients reach
        the encoder only through z, each draw's scaled by its normalised
        weight w̃_k: the DReG estimator (see ``IWAE``).
        """
        if k < 1:
            raise InvalidInput(f"iwae_bound: expected k >= 1, got {k}")
        x = self._checked(x)
        h = self._features(condition, len(x), x.dtype)
        q = self.encoder(x, h)
        z = q.rsample(k, generator)  # (K, B, Z)
        q_weight = (
            GaussianPosterior(q.mean.detach(), q.std.detach()) if doubly_reparameterized else q
        )
        log_w = torch.cat(
            [
                self._decoder_log_prob(x, zc, h)
                + self._prior_log_prob(zc, h)
                - q_weight.log_prob(zc)
                for zc in z.split(max(1, _MAX_ROWS // x.shape[0]))
            ]
        )  # (K, B)
        if doubly_reparameterized and z.requires_grad:
            # d L_K / d log w_k = w̃_k; scaling the gradient at z_k by w̃_k again gives w̃_k².
            w = torch.softmax(log_w.detach(), dim=0).unsqueeze(-1)
            z.register_hook(lambda grad: grad * w)
        return logmeanexp(log_w, dim=0)

    def log_prob(
        self,
        x: Tensor,
        condition: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A lower bound on log p_θ(x) (log p_θ(x|c) for a CVAE): the ELBO, or L_K when
        ``log_prob_k`` = K > 1; (B,). One draw of z ~ q_φ per example (K draws
        for L_K), from ``generator``.
        """
        if self.log_prob_k == 1:
            return self.elbo(x, condition=condition, generator=generator)
        return self.iwae_bound(x, self.log_prob_k, generator, condition=condition)

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        """Minus the batch mean of ``objective`` (e.g. -mean ELBO_β, or -mean L_K)."""
        self._check_player(player)
        return -self.objective(self, x, condition).mean()

    def sample(
        self,
        n: int,
        condition: Tensor | None = None,
        generator: torch.Generator | None = None,
        mean: bool = False,
    ) -> Tensor:
        """x ~ p_θ(x[|c]) by ancestral sampling: z ~ p(z[|c]), x ~ p_θ(x|z[, c]); (n, *event_shape).

        A CVAE takes ``condition``: one condition for all n draws, or n of them.
        With ``mean``, return E_θ[x|z] instead of a draw from the decoder.
        """
        c = self._condition(condition, n, expand=True)
        h = None if c is None else self._spec_features(c, self._dtype())
        if isinstance(self.prior, ConditionalGaussianPrior):
            z = self.prior.sample(h, generator=generator)
        else:
            z = self.prior.sample(n, generator=generator)
        if mean:
            return self.decoder.mean(z, h)
        return self.decoder.sample(z, generator, h=h)

    @property
    def rsample(self) -> Callable[..., Tensor]:
        """``sample`` as a draw differentiable in θ, when both of its steps are reparameterised.

        z = μ_p + σ_p ε₁ from a Gaussian prior, then x = μ_θ(z) + σ_θ(z) ε₂ from a
        Gaussian decoder. A discrete decoder or a mixture prior (a discrete component
        draw) has no pathwise gradient: then this raises ``AttributeError``.
        """
        if not (self.decoder.reparameterized and getattr(self.prior, "reparameterized", True)):
            raise AttributeError(
                f"VAE.rsample: a {type(self.decoder).__name__} with a {type(self.prior).__name__} "
                "prior is not reparameterised"
            )
        return self.sample

    def _checked(self, x: Tensor) -> Tensor:
        """x after the shape check and the decoder's value check (each done once per batch)."""
        return self.decoder.check(self._check(x))

    def _features(self, condition: Tensor | None, rows: int, dtype: torch.dtype) -> Tensor | None:
        """The checked condition's network features (rows, W), or None for p(x)."""
        c = self._condition(condition, rows)
        return None if c is None else self._spec_features(c, dtype)

    def _spec_features(self, c: Tensor, dtype: torch.dtype) -> Tensor:
        assert self.condition_spec is not None
        return self.condition_spec.features(c, dtype)

    def _dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype

    def _decoder_log_prob(self, x: Tensor, z: Tensor, h: Tensor | None = None) -> Tensor:
        """log p_θ(x|z_k[, c]) for checked x (B, *event_shape), draws z (k, B, Z): (k, B)."""
        k, b = z.shape[:2]
        xs = x.expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        hs = None if h is None else h.expand(k, *h.shape).reshape(k * b, -1)
        params = self.decoder(z.reshape(k * b, -1), hs)
        return self.decoder.log_prob_params(xs, params).reshape(k, b)

    def _prior_log_prob(self, z: Tensor, h: Tensor | None = None) -> Tensor:
        """log p(z_k[|c]) for draws z (k, B, Z): (k, B)."""
        if isinstance(self.prior, ConditionalGaussianPrior):
            return self.prior.log_prob(z, h)
        return self.prior.log_prob(z.reshape(-1, z.shape[-1])).reshape(z.shape[:2])
