"""Learned VAE priors: exact mixture densities, the VampPrior's definition, plugging into a VAE."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from probgen.core import DataSpec, InvalidInput
from probgen.distributions import StandardNormal
from probgen.models.vae import (
    IWAE,
    VAE,
    BernoulliDecoder,
    GaussianEncoder,
    MixturePrior,
    VampPrior,
    build_prior,
)
from probgen.models.vae.priors import diagonal_mixture_log_prob
from probgen.nn.mlp import MLP


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reference_log_prob(z, log_weights, means, stds):
    """log Σ_k π_k Π_j N(z_j; μ_kj, σ_kj) by broadcasting torch.distributions.Normal."""
    per_component = torch.distributions.Normal(means, stds).log_prob(z[:, None, :]).sum(dim=-1)
    return torch.logsumexp(log_weights + per_component, dim=-1)


def test_mixture_log_prob_matches_the_broadcast_definition(monkeypatch) -> None:
    """The matrix-product expansion equals the per-component sum, in one chunk or many."""
    z = 3.0 * torch.randn(300, 5)
    log_weights = torch.log_softmax(torch.randn(7), dim=0)
    means, stds = torch.randn(7, 5), 0.1 + torch.rand(7, 5)
    expected = _reference_log_prob(z, log_weights, means, stds)
    torch.testing.assert_close(diagonal_mixture_log_prob(z, log_weights, means, stds), expected)
    monkeypatch.setattr("probgen.models.vae.priors._ROWS", 17)
    torch.testing.assert_close(diagonal_mixture_log_prob(z, log_weights, means, stds), expected)


def test_mixture_prior_integrates_to_one_and_samples_its_weights() -> None:
    """∫ p(z) dz = 1 on a 2-D grid; component frequencies of samples match π."""
    prior = MixturePrior(2, components=3)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        prior.means.copy_(torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.0, -2.0]]))
        prior.log_stds.copy_(torch.log(torch.tensor([[0.5, 0.8], [0.7, 0.4], [0.6, 0.6]])))
    axis = torch.linspace(-7.0, 7.0, 561)
    grid = torch.cartesian_prod(axis, axis)
    mass = prior.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(mass.item() - 1.0) < 1e-6

    z = prior.sample(60_000, generator=_gen(0))
    weights = torch.softmax(prior.logits.detach(), dim=0)
    nearest = torch.cdist(z, prior.means.detach()).argmin(dim=1)  # well separated components
    freq = torch.bincount(nearest, minlength=3) / len(z)
    # misassignment between these components is < 0.3 %; sampling error ~ 0.2 %
    torch.testing.assert_close(freq, weights, atol=0.01, rtol=0.0)
    torch.testing.assert_close(z.mean(dim=0), weights @ prior.means.detach(), atol=0.02, rtol=0.0)


def test_vamp_prior_is_the_mean_of_the_encoder_posteriors() -> None:
    """p(z) = (1/K) Σ_k q_φ(z | u_k), with q the encoder at the pseudo-inputs."""
    encoder = GaussianEncoder(MLP(4, 6, (8,)), latent_dim=3)
    pseudo_inputs = torch.randn(5, 4)
    prior = VampPrior(encoder, pseudo_inputs)
    z = torch.randn(11, 3)
    q = encoder(pseudo_inputs)
    per_component = torch.stack([q.log_prob(zi.expand(5, 3)) for zi in z])  # (11, K)
    expected = torch.logsumexp(per_component, dim=1) - math.log(5)
    torch.testing.assert_close(prior.log_prob(z), expected)
    assert prior.sample(9, generator=_gen(1)).shape == (9, 3)
    torch.testing.assert_close(
        prior.sample(9, generator=_gen(2)), prior.sample(9, generator=_gen(2))
    )


def test_vamp_prior_samples_come_from_the_pseudo_posteriors() -> None:
    """With two pseudo-inputs whose posteriors are far apart, half the samples sit at each."""
    encoder = GaussianEncoder(nn.Linear(1, 2), latent_dim=1)
    with torch.no_grad():
        encoder.net.weight.copy_(torch.tensor([[10.0], [0.0]]))  # μ = 10 u, log σ = -1
        encoder.net.bias.copy_(torch.tensor([0.0, -1.0]))
    prior = VampPrior(encoder, torch.tensor([[-1.0], [1.0]]))
    z = prior.sample(20_000, generator=_gen(3)).squeeze(1)
    right = z > 0
    assert abs(right.double().mean().item() - 0.5) < 0.015
    assert abs(z[right].mean().item() - 10.0) < 0.02
    assert abs(z[right].std().item() - math.exp(-1.0)) < 0.02


def _bernoulli_vae(prior_of) -> VAE:
    encoder = GaussianEncoder(nn.Sequential(nn.Flatten(), MLP(6, 4, (8,))), latent_dim=2)
    decoder = BernoulliDecoder(MLP(2, 6, (8,)), (6,))
    return VAE(encoder, decoder, prior_of(encoder), objective=IWAE(k=3))


X = [[1.0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 1, 1], [1, 1, 1, 0, 0, 0]]  # tensors in the test's dtype


@pytest.mark.parametrize(
    "prior_of",
    [lambda enc: MixturePrior(2, components=4), lambda enc: VampPrior(enc, torch.rand(4, 6))],
    ids=["mixture", "vamp"],
)
def test_learned_priors_train_with_the_vae(prior_of) -> None:
    """Every prior parameter (and the shared encoder) gets a gradient; bounds are ordered."""
    vae, x = _bernoulli_vae(prior_of), torch.tensor(X)
    vae.loss(x).backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    with torch.no_grad():
        elbo = torch.stack([vae.elbo(x, generator=_gen(s)) for s in range(400)]).mean(0)
        iwae = torch.stack([vae.iwae_bound(x, 50, generator=_gen(s)) for s in range(400)]).mean(0)
    assert (elbo < iwae).all()  # L_1 < L_50 (strictly, for a non-exact posterior)
    assert vae.sample(5, generator=_gen(4)).shape == (5, 6)


def test_vamp_prior_shares_the_encoder_parameters() -> None:
    vae = _bernoulli_vae(lambda enc: VampPrior(enc, torch.rand(4, 6)))
    names = [name for name, _ in vae.named_parameters()]
    assert "prior.pseudo_inputs" in names
    assert not any(name.startswith("prior.encoder") for name in names)  # counted once
    n_params = sum(p.numel() for p in vae.parameters())
    assert (
        n_params
        == sum(p.numel() for p in vae.encoder.parameters())
        + sum(p.numel() for p in vae.decoder.parameters())
        + 4 * 6
    )


def test_build_prior_by_name_and_for_data() -> None:
    spec = DataSpec(event_shape=(6,), levels=2)
    vae = VAE.for_data(spec, latent_dim=3, hidden=(8,), prior="vamp", prior_components=7)
    assert isinstance(vae.prior, VampPrior) and vae.prior.pseudo_inputs.shape == (7, 6)
    assert 0.0 < vae.prior.pseudo_inputs.mean().item() < 1.0  # around the middle of {0, 1}
    vae = VAE.for_data(spec, latent_dim=3, hidden=(8,), prior="mixture", prior_components=5)
    assert isinstance(vae.prior, MixturePrior) and vae.prior.means.shape == (5, 3)
    assert isinstance(VAE.for_data(spec, latent_dim=3).prior, StandardNormal)
    vae = VAE.for_data(spec, latent_dim=3, iwae_k=4, dreg=True)
    assert vae.objective == IWAE(k=4, doubly_reparameterized=True)
    with pytest.raises(InvalidInput, match="dreg applies to the IWAE objective"):
        VAE.for_data(spec, dreg=True)
    with pytest.raises(InvalidInput, match="unknown prior 'flow'"):
        build_prior("flow", vae.encoder, spec)


def test_priors_reject_bad_arguments() -> None:
    with pytest.raises(InvalidInput, match="components >= 1"):
        MixturePrior(2, components=0)
    encoder = GaussianEncoder(MLP(4, 6, (8,)), latent_dim=3)
    with pytest.raises(InvalidInput, match=r"shape \(K, \*event_shape\)"):
        VampPrior(encoder, torch.randn(4))
    with pytest.raises(InvalidInput, match="floating-point"):
        VampPrior(encoder, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 3\), got \(5, 2\)"):
        MixturePrior(3, components=2).log_prob(torch.zeros(5, 2))


def _encoder_and_decoder_grads(vae: VAE, x, k: int, seed: int, dreg: bool):
    vae.zero_grad()
    vae.iwae_bound(x, k, _gen(seed), doubly_reparameterized=dreg).sum().backward()
    enc = torch.cat([p.grad.flatten() for p in vae.encoder.parameters()])
    dec = torch.cat([p.grad.flatten() for p in vae.decoder.parameters()])
    return enc, dec


def test_dreg_gradient_is_unbiased_with_lower_encoder_variance() -> None:
    """DReG: same value and decoder gradient per draw; encoder gradient unbiased, less noisy."""
    torch.manual_seed(3)
    vae, x, k = _bernoulli_vae(lambda enc: MixturePrior(2, components=3)), torch.tensor(X), 8
    torch.testing.assert_close(
        vae.iwae_bound(x, k, _gen(0), doubly_reparameterized=True), vae.iwae_bound(x, k, _gen(0))
    )
    plain = [_encoder_and_decoder_grads(vae, x, k, seed, dreg=False) for seed in range(800)]
    dreg = [_encoder_and_decoder_grads(vae, x, k, seed, dreg=True) for seed in range(800)]
    for (_, dec_plain), (_, dec_dreg) in zip(plain[:20], dreg[:20], strict=True):
        torch.testing.assert_close(dec_dreg, dec_plain)  # the decoder's estimator is unchanged
    enc_plain = torch.stack([e for e, _ in plain])
    enc_dreg = torch.stack([e for e, _ in dreg])
    diff = enc_dreg.mean(0) - enc_plain.mean(0)
    stderr = (enc_dreg.var(0) / len(dreg) + enc_plain.var(0) / len(plain)).sqrt()
    assert (diff.abs() < 4.5 * stderr + 1e-12).all()  # 4.5σ over ~100 coordinates
    assert enc_dreg.var(0).sum() < 0.5 * enc_plain.var(0).sum()


def test_dreg_objective_trains_and_k1_is_sticking_the_landing() -> None:
    """IWAE(k, doubly_reparameterized=True) as the loss; with k = 1 the encoder gradient is
    the path derivative of log p(x, z) - log q(z|x) with q's parameters held fixed."""
    vae, x = _bernoulli_vae(lambda enc: None), torch.tensor(X)
    vae.objective = IWAE(k=1, doubly_reparameterized=True)
    torch.manual_seed(5)
    vae.loss(x).backward()
    got = [p.grad.clone() for p in vae.encoder.parameters()]
    vae.zero_grad()
    torch.manual_seed(5)
    q = vae.encoder(x)
    z = q.rsample(1)
    frozen = type(q)(q.mean.detach(), q.std.detach())
    log_w = vae._decoder_log_prob(x, z) + vae._prior_log_prob(z) - frozen.log_prob(z)
    (-log_w.mean()).backward()
    for g, p in zip(got, vae.encoder.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)
