"""The VAE's identity start and EM-fitted prior, against closed forms.

Ground truth: the mixture scikit-learn's EM fits (``fit_bic``, reproduced
with the same torch seed), whose density is known in closed form. At the
identity start p_θ(x) = ∫ N(x; z_{1:D}, σ²I) p(z) dz must equal that
mixture's density exactly (the prior's covariances are Σ_k − σ²I); the
integral is computed from the model's own densities by Gauss–Hermite
quadrature, whose error here is far below float64's eps, so the comparison
is to a few ulp of the terms. The IWAE estimate must agree with it within its
own Monte Carlo standard error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probgen.core import DataSpec, InvalidInput
from probgen.models import build_model
from probgen.models.flows.prior import MixtureNormal, fit_bic
from probgen.models.vae import VAE, IdentityStart
from probgen.nn import MLP, LinearSkip
from probgen.tensors import logmeanexp


def _two_clusters(n: int = 300, seed: int = 3) -> torch.Tensor:
    """(n, 2): two elongated, correlated Gaussian clusters (Old Faithful's shape)."""
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(n, generator=g) < 0.35
    base = torch.randn(n, 2, generator=g) @ torch.tensor([[0.3, 0.1], [0.0, 0.5]])
    return base + torch.where(k[:, None], torch.tensor([-1.2, -1.0]), torch.tensor([0.7, 0.6]))


def _started(x: torch.Tensor, seed: int = 5, **options) -> tuple[VAE, object]:
    """A VAE with the identity start on x, and the EM fit it started from (same seed)."""
    vae = VAE.for_data(
        DataSpec(tuple(x.shape[1:])), hidden=(16,), prior="gmm", start="identity", **options
    ).to(x.dtype)
    torch.manual_seed(seed)
    vae.initialize_from_data(x)
    torch.manual_seed(seed)
    return vae, fit_bic(x, len(vae.prior.logits))


def _gmm_log_prob(fit, x: np.ndarray) -> np.ndarray:
    return fit.score_samples(x)


def test_linear_skip_is_its_affine_map_when_the_network_is_zero() -> None:
    skip = LinearSkip(MLP(3, 4, (8,), zero_last=True), 3, 4)
    x = torch.randn(5, 3)
    assert torch.equal(skip(x), skip.linear(x))
    skip(x).square().sum().backward()
    assert skip.net[-1].weight.grad.abs().sum() > 0  # the network learns from zero


def test_identity_start_networks_are_exactly_the_identity(dtype: torch.dtype) -> None:
    x = _two_clusters().to(dtype)
    vae, fit = _started(x, latent_dim=4)
    sigma2 = 0.1 * np.linalg.eigvalsh(fit.covariances_).min()  # σ² = η λ_min, η = 0.1
    q = vae.encode(x)
    assert torch.equal(q.mean, torch.cat([x, torch.zeros(len(x), 2, dtype=dtype)], 1))
    std = torch.tensor([math.sqrt(sigma2)] * 2 + [1.0, 1.0], dtype=dtype)
    torch.testing.assert_close(q.std, std.expand_as(q.std), rtol=4 * torch.finfo(dtype).eps, atol=0)
    z = torch.randn(7, 4, dtype=dtype)
    assert torch.equal(vae.decode(z), z[:, :2])
    params = vae.decoder(z)
    torch.testing.assert_close(
        params[:, 1].exp(), torch.full((7, 2), math.sqrt(sigma2), dtype=dtype),
        rtol=4 * torch.finfo(dtype).eps, atol=0,
    )  # fmt: skip


def test_identity_start_prior_is_the_deflated_mixture_padded_with_normals(
    dtype: torch.dtype,
) -> None:
    """log p(z) = log Σ_k π_k N(z_{1:2}; μ_k, Σ_k − σ²I) + log N(z_{3:4}; 0, I).

    The right side by torch.distributions from the EM fit.
    """
    x = _two_clusters().to(dtype)
    vae, fit = _started(x, latent_dim=4)
    assert fit.n_components == 2  # BIC finds the two clusters
    sigma2 = 0.1 * np.linalg.eigvalsh(fit.covariances_).min()
    cov = torch.as_tensor(fit.covariances_) - sigma2 * torch.eye(2)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(torch.as_tensor(fit.weights_)),
        torch.distributions.MultivariateNormal(torch.as_tensor(fit.means_), cov),
    )
    z = 1.5 * torch.randn(50, 4, dtype=torch.float64)
    expected = mixture.log_prob(z[:, :2]) + torch.distributions.Normal(0.0, 1.0).log_prob(
        z[:, 2:]
    ).sum(1)
    got = vae.prior.log_prob(z.to(dtype)).double()
    # the Mahalanobis terms reach ~50 nats here; float rounding of them dominates
    tolerance = 64 * torch.finfo(dtype).eps * (1 + expected.abs().max().item())
    torch.testing.assert_close(got, expected, rtol=0, atol=tolerance)


def test_identity_start_marginal_is_the_em_mixture_by_quadrature() -> None:
    """∫ p_θ(x | z) p(z) dz from the model's densities = the EM mixture's density, to ~1e-12.

    With z = x + σ t, ∫ f(z) dz = σ^D ∫ f(x + σ t) dt, and Gauss–Hermite nodes
    t_i, weights w_i for e^{-t²/2} give ∫ g(t) dt = Σ_i w_i e^{t_i²/2} g(t_i);
    the integrand is N(t; 0, I) times a Gaussian mixture that varies on scales
    ≥ σ/√η, so 40 nodes per dimension integrate it to far below float64's eps.
    """
    x = _two_clusters()
    vae, fit = _started(x, latent_dim=2)
    sigma = math.sqrt(0.1 * np.linalg.eigvalsh(fit.covariances_).min())
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    t = torch.cartesian_prod(*[torch.as_tensor(nodes)] * 2)  # (1600, 2)
    log_w = torch.as_tensor(np.log(weights)).repeat_interleave(40) + torch.as_tensor(
        np.log(weights)
    ).repeat(40)
    points = x[:40]
    got = []
    for xi in points:
        z = xi + sigma * t
        joint = vae.decoder.log_prob(xi.expand(len(z), 2), z) + vae.prior.log_prob(z)
        got.append(
            torch.logsumexp(log_w + 0.5 * t.square().sum(1) + joint, 0) + 2 * math.log(sigma)
        )
    expected = torch.as_tensor(_gmm_log_prob(fit, points.numpy()))
    torch.testing.assert_close(torch.stack(got), expected, rtol=0, atol=1e-12)


def test_identity_start_iwae_estimate_agrees_within_its_standard_error(dtype: torch.dtype) -> None:
    """logmeanexp of M log-weights log w = log p(x, z) − log q(z | x), z ~ q, vs the EM mixture.

    Two-sided: |estimate − log p| ≤ 5 se + bias, se = sd(w) / (√M mean(w)) by
    the delta method and the bias ≈ −se²/2; the elbo of one draw per row is
    one log-weight (the KL is Monte Carlo for a mixture prior).
    """
    x = _two_clusters().to(dtype)[:20]
    vae, fit = _started(x, latent_dim=3)
    m = 4000
    g = torch.Generator().manual_seed(7)
    log_w = vae.elbo(x.repeat(m, 1), generator=g).reshape(m, len(x)).double()
    estimate = logmeanexp(log_w, dim=0)
    w = (log_w - log_w.max(0).values).exp()
    se = w.std(0) / (math.sqrt(m) * w.mean(0))
    expected = torch.as_tensor(_gmm_log_prob(fit, x.double().numpy()))
    assert ((estimate - expected).abs() <= 5 * se + se.square()).all()
    assert se.max() < 0.01  # the start's posterior is close to q: a tight bound


@pytest.mark.parametrize(("scale", "shift"), [(1e-3, 0.0), (1e3, 1e3), (1.0, -50.0)])
def test_identity_start_through_build_model_in_any_units(scale: float, shift: float) -> None:
    """log p in units a x + b = log p(x) − D log a: the standardised start is unit-free."""
    x = _two_clusters()
    spec = DataSpec((2,))

    def start(data: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(11)
        model = build_model(
            "vae", spec, train_data=data, hidden=(16,), prior="gmm", start="identity"
        )
        g = torch.Generator().manual_seed(2)
        return model.log_prob(data[:30], generator=g)

    reference = start(x)
    moved = start(scale * x + shift)
    torch.testing.assert_close(moved + 2 * math.log(scale), reference, rtol=0, atol=1e-9)


def test_gmm_prior_alone_is_fitted_to_the_encoder_means() -> None:
    x = _two_clusters()
    vae = VAE.for_data(DataSpec((2,)), latent_dim=3, hidden=(16,), prior="gmm")
    assert isinstance(vae.prior, MixtureNormal) and len(vae.prior.logits) == 5
    torch.manual_seed(5)
    vae.initialize_from_data(x)
    torch.manual_seed(5)
    means = vae.encode(x).mean.detach()
    fit = fit_bic(means, 5)
    z = means[:25] + 0.1 * torch.randn(25, 3)
    expected = torch.as_tensor(fit.score_samples(z.numpy()))
    # the encoder's means at initialisation are close together, so the fitted
    # covariances are ill-conditioned (κ up to ~5e3) and log p reaches ~1e4 nats:
    # two factorisations of one quadratic form agree to about κ · eps relative
    eps = torch.finfo(torch.float64).eps
    kappa = max(float(np.linalg.cond(c)) for c in fit.covariances_)
    torch.testing.assert_close(
        vae.prior.log_prob(z).detach(), expected, rtol=8 * kappa * eps, atol=eps
    )


def test_other_priors_ignore_the_data() -> None:
    vae = VAE.for_data(DataSpec((2,)), latent_dim=3, hidden=(16,), prior="mixture")
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    vae.initialize_from_data(_two_clusters())
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())


@pytest.mark.parametrize(
    ("spec", "options", "needs"),
    [
        (DataSpec((1, 4, 4)), {}, "vector data"),
        (DataSpec((6,), levels=5), {"decoder": "gaussian"}, "continuous data"),
        (DataSpec((6,)), {"latent_dim": 4}, "latent_dim >= the data's size 6"),
        (DataSpec((2,)), {"prior": "mixture"}, "prior='gmm'"),
    ],
)
def test_identity_start_says_what_it_needs(spec: DataSpec, options: dict, needs: str) -> None:
    options = {"prior": "gmm", "hidden": (8,), **options}
    with pytest.raises(InvalidInput, match=needs.replace("(", r"\(").replace(")", r"\)")):
        VAE.for_data(spec, start="identity", **options)


def test_identity_start_rejects_bad_noise_and_unknown_starts() -> None:
    with pytest.raises(InvalidInput, match="0 < noise < 1"):
        IdentityStart(1.0)
    with pytest.raises(InvalidInput, match="unknown start"):
        VAE.for_data(DataSpec((2,)), start="zero")


def test_mixture_normal_set_components_is_that_mixture() -> None:
    base = MixtureNormal(2, components=3)
    cov = torch.tensor([[[1.0, 0.3], [0.3, 0.5]], [[0.2, 0.0], [0.0, 2.0]]])
    means, weights = torch.tensor([[0.0, 1.0], [2.0, -1.0]]), torch.tensor([0.3, 0.7])
    base.set_components(weights, means, cov)
    mixture = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(weights),
        torch.distributions.MultivariateNormal(means, cov),
    )
    z = torch.randn(20, 2)
    torch.testing.assert_close(base.log_prob(z), mixture.log_prob(z), rtol=0, atol=1e-13)
    with pytest.raises(InvalidInput, match="1 to 3 components"):
        base.set_components(torch.ones(4) / 4, torch.zeros(4, 2), torch.eye(2).repeat(4, 1, 1))
