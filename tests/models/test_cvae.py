"""The conditional VAE (CVAE): bounds on an exact linear-Gaussian log p(x | c), the protocol.

Ground truth: z ~ p(z | c) = N(μ_c, diag s_c²), x = W z + A e_c + b + σ ε, with W's
columns orthogonal so the exact posterior p(z | x, c) is a diagonal Gaussian, and

    log p(x | c) = log N(x; W μ_c + A e_c + b, W diag(s_c²) Wᵀ + σ² I).

An encoder that outputs this posterior with its standard deviations multiplied
by ``inflate`` is q; inflate = 1 makes every importance weight equal p(x | c).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, InvalidInput
from probgen.models.build import build_model
from probgen.models.vae import VAE, GaussianDecoder, GaussianEncoder
from probgen.models.vae.conditional import ConditionalGaussianPrior, concat_features

D, Z, K, SIGMA = 3, 2, 3, 0.5


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Truth:
    """The linear-Gaussian conditional model above, with its exact log p(x|c) and posterior."""

    def __init__(self, conditional_prior: bool) -> None:
        g, f64 = _gen(7), {"dtype": torch.float64}
        q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, **f64))
        self.w = q[:, :Z] * torch.tensor([1.5, 0.7], **f64)  # (D, Z), WᵀW diagonal
        self.a = torch.randn(D, K, generator=g, **f64)
        self.b = torch.randn(D, generator=g, **f64)
        self.mu = torch.randn(K, Z, generator=g, **f64) * conditional_prior
        self.s = torch.rand(K, Z, generator=g, **f64) * conditional_prior + 1.0

    def log_prob(self, x: Tensor, c: Tensor) -> Tensor:
        mean = self.mu[c] @ self.w.T + self.a[:, c].T + self.b
        eye = torch.eye(D, dtype=torch.float64)
        cov = self.w @ torch.diag_embed(self.s[c].square()) @ self.w.T + SIGMA**2 * eye
        return torch.distributions.MultivariateNormal(mean, cov).log_prob(x)

    def posterior(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of p(z | x, c), each (B, Z)."""
        precision = self.s[c].pow(-2) + (self.w.square().sum(0) / SIGMA**2)  # (B, Z)
        r = x - self.a[:, c].T - self.b
        mean = (self.mu[c] * self.s[c].pow(-2) + r @ self.w / SIGMA**2) / precision
        return mean, precision.rsqrt()


class _PosteriorNet(nn.Module):
    """Reads [x, one-hot c] and outputs the exact posterior's [μ, log(inflate · std)]."""

    def __init__(self, truth: _Truth, inflate: float) -> None:
        super().__init__()
        self.truth, self.inflate = truth, inflate
        self.scale = nn.Parameter(torch.ones(()))  # so the encoder has a parameter

    def forward(self, xh: Tensor) -> Tensor:
        x, c = xh[:, :D].double(), xh[:, D:].argmax(1)
        mean, std = self.truth.posterior(x, c)  # in float64, then in the model's dtype
        out = torch.cat([mean, (self.inflate * std).log()], dim=1).to(xh.dtype)
        return out * torch.cat([self.scale.expand(Z), torch.ones(Z, dtype=xh.dtype)])


def _cvae(truth: _Truth, conditional_prior: bool, inflate: float = 1.0) -> VAE:
    spec = ConditionSpec(classes=K)
    encoder = GaussianEncoder(_PosteriorNet(truth, inflate), Z, join=concat_features)
    linear = nn.Linear(Z + K, D)
    with torch.no_grad():
        linear.weight.copy_(torch.cat([truth.w, truth.a], dim=1))
        linear.bias.copy_(truth.b)
    decoder = GaussianDecoder(linear, (D,), std=SIGMA)
    prior = None
    if conditional_prior:
        prior = ConditionalGaussianPrior(K, Z)
        with torch.no_grad():
            prior.net[0].weight.copy_(torch.cat([truth.mu, truth.s.log()], dim=1).T)
    return VAE(encoder, decoder, prior, condition=spec)


def _data(truth: _Truth, n: int, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = _gen(seed)
    c = torch.randint(K, (n,), generator=g)
    z = truth.mu[c] + truth.s[c] * torch.randn(n, Z, generator=g, dtype=torch.float64)
    noise = SIGMA * torch.randn(n, D, generator=g, dtype=torch.float64)
    return z @ truth.w.T + truth.a[:, c].T + truth.b + noise, c


@pytest.mark.parametrize("conditional_prior", [False, True], ids=["prior-N01", "prior-p(z|c)"])
def test_with_the_exact_posterior_every_importance_weight_is_log_p_x_given_c(
    conditional_prior: bool, dtype: torch.dtype
) -> None:
    truth = _Truth(conditional_prior)
    vae = _cvae(truth, conditional_prior).to(dtype)
    x, c = _data(truth, 64)
    exact = truth.log_prob(x, c)
    bound = vae.iwae_bound(x.to(dtype), 8, _gen(2), condition=c)  # every log w_k = log p(x|c)
    assert bound.dtype == dtype
    # rounding of a sum of terms of size ≈ |log p| + D + Z, a few ulps each
    tol = 20 * torch.finfo(dtype).eps * (exact.abs().max().item() + D + Z)
    err = (bound.double() - exact).abs().max().item()
    assert err <= tol, (err, tol)


@pytest.mark.parametrize("conditional_prior", [False, True], ids=["prior-N01", "prior-p(z|c)"])
def test_elbo_falls_short_of_log_p_x_given_c_by_the_exact_kl(conditional_prior: bool) -> None:
    truth = _Truth(conditional_prior)
    inflate = 1.5
    vae = _cvae(truth, conditional_prior, inflate)
    x, c = _data(truth, 4096)
    exact = truth.log_prob(x, c)
    # log p − ELBO = KL(q ‖ p(z|x,c)) = Z · ½(inflate² − 1 − ln inflate²), the same for every x
    gap = Z * 0.5 * (inflate**2 - 1 - math.log(inflate**2))
    diff = vae.elbo(x, 4, condition=c, generator=_gen(3)) - (exact - gap)
    se = diff.std().item() / math.sqrt(len(diff))
    assert abs(diff.mean().item()) <= 4 * se, (diff.mean().item(), se)
    assert (vae.elbo(x, condition=c, generator=_gen(4)) - exact).mean() < -gap / 2


@pytest.mark.parametrize("conditional_prior", [False, True], ids=["prior-N01", "prior-p(z|c)"])
def test_iwae_increases_towards_log_p_x_given_c_and_reaches_it(conditional_prior: bool) -> None:
    truth = _Truth(conditional_prior)
    vae = _cvae(truth, conditional_prior, inflate=1.5)
    x, c = _data(truth, 4096)
    exact = truth.log_prob(x, c)
    gaps = [vae.iwae_bound(x, k, _gen(k), condition=c) - exact for k in (1, 10, 100)]
    for lo, hi in itertools.pairwise(gaps):
        step = hi - lo  # paired on the same x
        se = step.std().item() / math.sqrt(len(step))
        assert step.mean().item() > 4 * se, (step.mean().item(), se)
    for gap in gaps[:2]:
        se = gap.std().item() / math.sqrt(len(gap))
        assert gap.mean().item() < -4 * se  # strictly below log p(x|c)
    # Two-sided at K = 4096: the bias ≈ Var(w/p)/(2K) ≈ 6e-5 is far below the MC error.
    far = vae.iwae_bound(x[:512], 4096, _gen(5), condition=c[:512]) - exact[:512]
    se = far.std().item() / math.sqrt(len(far))
    assert abs(far.mean().item()) <= 4 * se, (far.mean().item(), se)
    assert se < 2e-3  # the check is tight: within a few thousandths of a nat


SPECS = {
    "points-classes": DataSpec((2,), condition=ConditionSpec(classes=3)),
    "points-vector": DataSpec((2,), condition=ConditionSpec(shape=(2,))),
    "images-classes": DataSpec((1, 8, 8), levels=2, condition=ConditionSpec(classes=4)),
}


def _conditions(spec: DataSpec, n: int) -> Tensor:
    cs = spec.condition
    assert cs is not None
    return torch.randint(cs.classes, (n,)) if cs.is_classes else torch.randn(n, *cs.shape)


def _examples(spec: DataSpec, n: int) -> Tensor:
    if spec.levels is None:
        return torch.randn(n, *spec.event_shape)
    return torch.randint(spec.levels, (n, *spec.event_shape)).double()


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("prior", ["standard", "mixture", "conditional"])
def test_for_data_builds_a_cvae_whose_calls_take_the_condition(name: str, prior: str) -> None:
    spec = SPECS[name]
    vae = VAE.for_data(spec, latent_dim=3, hidden=(16,), channels=(4, 8), prior=prior)
    assert vae.condition_spec == spec.condition
    x, c = _examples(spec, 6), _conditions(spec, 6)
    assert vae.log_prob(x, condition=c).shape == (6,)
    assert vae.iwae_bound(x, 3, condition=c).shape == (6,)
    assert vae.sample(5, condition=c[0]).shape == (5, *spec.event_shape)
    assert vae.sample(6, condition=c, mean=True).shape == (6, *spec.event_shape)
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        vae.log_prob(x)
    with pytest.raises(InvalidInput, match="no unconditional mode"):
        vae.sample(3)
    with pytest.raises(InvalidInput, match="condition"):
        vae.loss(x, condition=c[:5])
    # gradients reach every network through the condition path
    vae.loss(x, condition=c).backward()
    enc_first = next(p for p in vae.encoder.parameters() if p.dim() > 1)
    dec_grads = [p.grad for p in vae.decoder.parameters()]
    assert enc_first.grad is not None and enc_first.grad.abs().sum() > 0
    assert all(g is not None and torch.isfinite(g).all() for g in dec_grads)
    if prior == "conditional":
        assert vae.prior.net[0].weight.grad.abs().sum() > 0


def test_the_condition_changes_the_likelihood_and_the_mlp_reads_it_concatenated() -> None:
    spec = SPECS["points-classes"]
    vae = VAE.for_data(spec, latent_dim=2, hidden=(8,))
    first = vae.encoder.net[1][0]  # Flatten, then the MLP's first Linear
    assert first.in_features == 2 + 3
    with torch.no_grad():
        first.weight[:, 2:] += 3.0  # the condition's columns matter
    x = torch.randn(4, 2)
    a = vae.encode(x, condition=torch.zeros(4, dtype=torch.long)).mean
    b = vae.encode(x, condition=torch.ones(4, dtype=torch.long)).mean
    assert not torch.allclose(a, b)


def test_an_unconditional_vae_is_unchanged_and_refuses_a_condition() -> None:
    spec = DataSpec((2,), condition=ConditionSpec(classes=3))
    vae = VAE.for_data(spec, latent_dim=2, hidden=(8,), conditional=False)
    assert vae.condition_spec is None
    x = torch.randn(4, 2)
    assert vae.log_prob(x).shape == (4,)
    with pytest.raises(InvalidInput, match="unconditional"):
        vae.log_prob(x, condition=torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize(
    ("spec", "options", "match"),
    [
        (DataSpec((2,)), {"conditional": True}, "needs data with a condition"),
        (DataSpec((2,)), {"prior": "conditional"}, "needs a conditional model"),
        (SPECS["points-classes"], {"prior": "vamp"}, "vamp prior is unconditional"),
    ],
)
def test_for_data_refuses_impossible_conditional_options(spec, options, match) -> None:
    with pytest.raises(InvalidInput, match=match):
        VAE.for_data(spec, latent_dim=2, hidden=(8,), **options)


def test_a_cvae_on_binary_images_gets_the_dequantizer_free_path_and_trains() -> None:
    spec = SPECS["images-classes"]
    model = build_model("vae", spec, latent_dim=3, hidden=(16,), channels=(4, 8))
    assert model.condition_spec == spec.condition  # Bernoulli decoder: no wrapper needed
    x, c = _examples(spec, 8), _conditions(spec, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.loss(x, condition=c).item()
    for _ in range(20):
        opt.zero_grad()
        model.loss(x, condition=c).backward()
        opt.step()
    assert model.loss(x, condition=c).item() < before
