"""VAE: decoders give true probabilities, KL paths agree, bounds and objectives behave."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from probgen.core import DataSpec, Estimate, InvalidInput, Likelihood
from probgen.distributions import DiagonalGaussian, GaussianMixture, StandardNormal
from probgen.models.vae import (
    ELBO,
    IWAE,
    VAE,
    BernoulliDecoder,
    CategoricalDecoder,
    DiscretizedLogisticDecoder,
    GaussianDecoder,
    GaussianEncoder,
)
from probgen.nn.conv import ConvDecoder, ConvEncoder
from probgen.nn.mlp import MLP
from probgen.registry import MODELS

Z = 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Scaled(nn.Module):
    """A network whose outputs are multiplied by ``scale``, to reach extreme parameters."""

    def __init__(self, net: nn.Module, scale: float) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.scale * self.net(z)


# (decoder factory from (net, event_shape), levels, parameters per entry)
DISCRETE = {
    "bernoulli": (lambda net, shape: BernoulliDecoder(net, shape), 2, 1),
    "categorical-5": (lambda net, shape: CategoricalDecoder(net, shape, levels=5), 5, 5),
    "logistic-5": (lambda net, shape: DiscretizedLogisticDecoder(net, shape, levels=5), 5, 2),
    "logistic-17": (lambda net, shape: DiscretizedLogisticDecoder(net, shape, levels=17), 17, 2),
}


def _discrete_decoder(name: str, scale: float = 1.0, event_shape=(2,)):
    make, levels, p = DISCRETE[name]
    d = math.prod(event_shape)
    return make(_Scaled(MLP(Z, p * d, (16,)), scale), event_shape), levels


def _all_values(levels: int, event_shape) -> torch.Tensor:
    """Every x in {0, …, K-1}^event_shape, shape (K^D, *event_shape)."""
    d = math.prod(event_shape)
    rows = list(itertools.product(range(levels), repeat=d))
    return torch.tensor(rows, dtype=torch.float64).reshape(len(rows), *event_shape)


@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("name", list(DISCRETE))
def test_discrete_decoders_are_normalised(name: str, scale: float) -> None:
    """Σ_x p(x|z) = 1 over all K^D values, also for extreme (scaled) parameters."""
    decoder, levels = _discrete_decoder(name, scale)
    xs = _all_values(levels, (2,))
    for z in torch.randn(4, Z):
        log_p = decoder.log_prob(xs, z.expand(len(xs), Z))
        assert torch.isfinite(log_p).all()
        assert torch.logsumexp(log_p, 0).item() == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize("name", list(DISCRETE))
def test_discrete_decoder_mean_and_samples_match_probabilities(name: str) -> None:
    """mean(z) = Σ_x x p(x|z) exactly; sample frequencies match p(x|z) (chi-square)."""
    decoder, levels = _discrete_decoder(name)
    xs = _all_values(levels, (2,))
    z = torch.randn(1, Z)
    probs = decoder.log_prob(xs, z.expand(len(xs), Z)).exp()  # (K^2,)
    expected_mean = (probs[:, None] * xs).sum(0)
    torch.testing.assert_close(decoder.mean(z)[0], expected_mean, rtol=0, atol=1e-10)

    n = 20_000
    draws = decoder.sample(z.expand(n, Z), generator=_gen(1))  # (n, 2)
    index = (draws[:, 0] * levels + draws[:, 1]).long()
    counts = torch.bincount(index, minlength=levels**2).double()
    keep = probs * n >= 5  # the chi-square approximation needs expected counts >= 5
    chi2 = ((counts[keep] - n * probs[keep]).square() / (n * probs[keep])).sum().item()
    dof = int(keep.sum()) - 1
    # 99.9% quantile of chi-square(dof) by the Wilson-Hilferty approximation.
    q = dof * (1 - 2 / (9 * dof) + 3.09 * math.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < q
    assert counts[~keep].sum().item() <= max(20.0, 5 * n * probs[~keep].sum().item())


def test_discretized_logistic_is_the_logistic_cdf_on_bins() -> None:
    """P(x = k) = σ((k+½-μ)/s) - σ((k-½-μ)/s) inside, end bins open, against the CDF."""
    levels = 9
    loc, log_scale = torch.tensor(0.3), torch.tensor(-0.7)  # network units
    decoder = DiscretizedLogisticDecoder(nn.Identity(), (1,), levels)
    params = torch.stack([loc, log_scale]).reshape(1, 2, 1).expand(levels, 2, 1)
    ks = torch.arange(levels, dtype=torch.float64).reshape(levels, 1)
    log_p = decoder.log_prob_params(ks, params)
    mu, s = 4.0 * (loc + 1.0), 4.0 * log_scale.exp()
    cdf = torch.sigmoid((torch.arange(levels + 1) - 0.5 - mu) / s)
    cdf[0], cdf[-1] = 0.0, 1.0
    torch.testing.assert_close(log_p.exp(), cdf.diff(), rtol=1e-12, atol=1e-14)


@settings(max_examples=30, deadline=None)
@given(
    loc=st.floats(-20.0, 20.0),
    log_scale=st.floats(-12.0, 6.0),
    levels=st.integers(2, 300),
)
def test_discretized_logistic_sums_to_one(loc: float, log_scale: float, levels: int) -> None:
    """Σ_k P(x = k) = 1 with every log P finite, from sharp to flat laws, in and off range."""
    decoder = DiscretizedLogisticDecoder(nn.Identity(), (1,), levels)
    params = torch.tensor([loc, log_scale]).reshape(1, 2, 1).expand(levels, 2, 1)
    log_p = decoder.log_prob_params(torch.arange(levels).double().reshape(levels, 1), params)
    assert torch.isfinite(log_p).all()
    assert torch.logsumexp(log_p, 0).item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("mode", ["fixed", "learned-shared", "per-entry"])
def test_gaussian_decoder_matches_torch_normal(mode: str) -> None:
    """log p(x|z) = Σ_d log N(x_d; μ_d(z), σ_d²) for fixed, learned and predicted σ."""
    shape = (2, 3)
    if mode == "per-entry":
        decoder = GaussianDecoder(MLP(Z, 2 * 6, (8,)), shape, std=None)
    else:
        decoder = GaussianDecoder(MLP(Z, 6, (8,)), shape, std=0.7, learn_std=mode != "fixed")
    z, x = torch.randn(5, Z), torch.randn(5, *shape)
    params = decoder(z)
    std = params[:, 1].exp() if mode == "per-entry" else torch.full_like(x, 0.7)
    expected = torch.distributions.Normal(params[:, 0], std).log_prob(x).sum((1, 2))
    torch.testing.assert_close(decoder.log_prob(x, z), expected)
    trainable = [n for n, _ in decoder.named_parameters() if n == "log_std"]
    assert trainable == (["log_std"] if mode == "learned-shared" else [])
    samples = decoder.sample(z[:1].expand(20_000, Z), generator=_gen(2))
    torch.testing.assert_close(
        samples.mean(0), params[0, 0], atol=5 * std.max().item() / 140, rtol=0
    )


def test_decoders_reject_values_outside_their_levels() -> None:
    decoder, _ = _discrete_decoder("bernoulli")
    with pytest.raises(InvalidInput, match=r"\{0, …, 1\}"):
        decoder.log_prob(torch.tensor([[0.0, 0.5]]), torch.zeros(1, Z))
    decoder, _ = _discrete_decoder("categorical-5")
    with pytest.raises(InvalidInput, match=r"\{0, …, 4\}"):
        decoder.log_prob(torch.tensor([[0.0, 5.0]]), torch.zeros(1, Z))


def _vae(prior=None, analytic_kl: bool = True, **options) -> VAE:
    encoder = GaussianEncoder(nn.Sequential(nn.Flatten(), MLP(4, 2 * Z, (16,))), Z)
    decoder = BernoulliDecoder(MLP(Z, 4, (16,)), (4,))
    return VAE(encoder, decoder, prior, analytic_kl=analytic_kl, **options)


X4 = torch.tensor([[0, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1]], dtype=torch.float64)


def _per_example(values_fn, x: torch.Tensor, n: int) -> list[Estimate]:
    """Mean and stderr of a per-example estimator over n independent draws, per row of x."""
    rows = x.repeat_interleave(n, 0)
    values = values_fn(rows).detach().reshape(len(x), n)
    return [Estimate.from_samples(v) for v in values]


def test_analytic_and_monte_carlo_kl_agree_in_expectation() -> None:
    """KL(q||N(0,I)) closed form = E_q[log q(z|x) - log p(z)], and so do the two ELBOs."""
    analytic = _vae()
    mc = _vae(analytic_kl=False)
    mc.load_state_dict(analytic.state_dict())
    q = analytic.encode(X4)
    z = q.rsample(50_000, generator=_gen(3))
    per_draw = q.log_prob(z) - analytic.prior.log_prob(z.reshape(-1, Z)).reshape(z.shape[:2])
    exact = analytic.kl(q, z)
    assert (exact > 0).all()
    for b in range(len(X4)):
        est = Estimate.from_samples(per_draw[:, b])
        assert abs(est.value - exact[b].item()) < 4 * est.stderr
    torch.testing.assert_close(mc.kl(q, z), per_draw.mean(0))
    elbo_analytic = _per_example(analytic.elbo, X4, 20_000)
    elbo_mc = _per_example(mc.elbo, X4, 20_000)
    for a, m in zip(elbo_analytic, elbo_mc, strict=True):
        assert abs(a.value - m.value) < 4 * math.hypot(a.stderr, m.stderr)
        assert a.stderr < m.stderr  # the closed form removes the KL's sampling noise


def test_mixture_prior_plugs_in_with_monte_carlo_kl() -> None:
    """A mixture whose components all equal N(0, I) is N(0, I): same ELBO in expectation."""
    mixture = GaussianMixture.isotropic(torch.tensor([0.3, 0.7]), torch.zeros(2, Z), 1.0)
    with_mixture = _vae(prior=mixture)
    standard = _vae()
    standard.load_state_dict(with_mixture.state_dict(), strict=False)
    a = _per_example(standard.elbo, X4, 20_000)
    m = _per_example(with_mixture.elbo, X4, 20_000)
    for ea, em in zip(a, m, strict=True):
        assert abs(ea.value - em.value) < 4 * math.hypot(ea.stderr, em.stderr)
    assert with_mixture.sample(7, generator=_gen(0)).shape == (7, 4)


def test_beta_weights_only_the_kl_term() -> None:
    """ELBO_β(x) = E_q[log p(x|z)] - β KL with the same draws; loss = -mean ELBO_β."""
    vae = _vae(objective=ELBO(beta=4.0))
    kl = vae.kl(vae.encode(X4), torch.empty(0))
    recon = vae.elbo(X4, beta=0.0, generator=_gen(5))
    torch.testing.assert_close(vae.elbo(X4, beta=4.0, generator=_gen(5)), recon - 4.0 * kl)
    torch.manual_seed(9)
    loss = vae.loss(X4)
    torch.manual_seed(9)
    torch.testing.assert_close(loss, -vae.elbo(X4, beta=4.0).mean())


def test_iwae_with_one_sample_is_the_elbo_on_the_same_draw() -> None:
    """L_1 = log p(x,z) - log q(z|x) = the Monte Carlo-KL ELBO with the same z."""
    vae = _vae(analytic_kl=False)
    torch.testing.assert_close(
        vae.iwae_bound(X4, 1, generator=_gen(4)), vae.elbo(X4, 1, generator=_gen(4))
    )


def test_iwae_chunks_are_one_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Computing the K importance weights in chunks changes nothing."""
    vae = _vae()
    whole = vae.iwae_bound(X4, 50, generator=_gen(6))
    monkeypatch.setattr("probgen.models.vae.model._MAX_ROWS", 7)
    torch.testing.assert_close(vae.iwae_bound(X4, 50, generator=_gen(6)), whole)


@pytest.mark.parametrize("objective", [ELBO(), ELBO(beta=0.5, samples=3), IWAE(k=4)])
def test_loss_gives_gradients_to_every_parameter(objective) -> None:
    prior = DiagonalGaussian(torch.zeros(Z), torch.ones(Z), learnable=True)
    vae = _vae(prior=prior, objective=objective)
    vae.loss(X4).backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_protocol_shapes_and_errors() -> None:
    vae = _vae(log_prob_k=8)
    assert vae.likelihood is Likelihood.BOUND
    assert vae.log_prob(X4).shape == (3,)
    assert vae.sample(5, generator=_gen(0)).shape == (5, 4)
    torch.testing.assert_close(vae.sample(5, generator=_gen(1)), vae.sample(5, generator=_gen(1)))
    means = vae.sample(5, mean=True)
    assert ((means > 0) & (means < 1)).all()
    assert vae.decode(torch.zeros(2, Z)).shape == (2, 4)
    q = vae.encode(X4)
    assert q.mean.shape == q.std.shape == (3, Z)
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 4\), got \(3, 5\)"):
        vae.log_prob(torch.zeros(3, 5))
    with pytest.raises(InvalidInput, match="prior over events of shape"):
        _vae(prior=StandardNormal((Z + 1,)))
    with pytest.raises(InvalidInput, match="k >= 1"):
        IWAE(k=0)
    half = torch.full((3, 4), 0.5)
    for bound in (vae.elbo, vae.log_prob, lambda x: vae.iwae_bound(x, 3)):
        with pytest.raises(InvalidInput, match=r"BernoulliDecoder x: .*\{0, …, 1\}"):
            bound(half)


def test_conv_vae_on_images() -> None:
    """Conv encoder/decoder on (1, 8, 8) with 17 levels: shapes and a normalised decoder."""
    shape, levels = (1, 8, 8), 17
    encoder = GaussianEncoder(ConvEncoder(shape, 2 * Z, (8, 16)), Z)
    decoder = DiscretizedLogisticDecoder(ConvDecoder(Z, (2, 8, 8), (16, 8)), shape, levels)
    vae = VAE(encoder, decoder)
    x = torch.randint(0, levels, (3, *shape)).double()
    assert vae.log_prob(x).shape == (3,)
    assert vae.iwae_bound(x, 4).shape == (3,)
    s = vae.sample(2)
    assert s.shape == (2, *shape) and torch.equal(s, s.round()) and s.min() >= 0 and s.max() <= 16


@pytest.mark.parametrize(
    ("spec", "options", "decoder_cls", "conv"),
    [
        (DataSpec((2,)), {}, GaussianDecoder, False),
        (DataSpec((1, 28, 28), levels=2), {}, BernoulliDecoder, True),
        (DataSpec((1, 8, 8), levels=17), {}, DiscretizedLogisticDecoder, True),
        (DataSpec((64,), levels=17), {"decoder": "categorical"}, CategoricalDecoder, False),
    ],
)
def test_for_data_picks_decoder_and_networks(spec, options, decoder_cls, conv) -> None:
    vae = MODELS.get("vae").for_data(spec, latent_dim=4, hidden=(8,), channels=(4, 8), **options)
    assert isinstance(vae, VAE) and isinstance(vae.decoder, decoder_cls)
    assert isinstance(vae.encoder.net, ConvEncoder) is conv
    x = vae.sample(2)
    assert x.shape == (2, *spec.event_shape)
    assert torch.isfinite(vae.loss(x))


def test_for_data_rejects_unknown_decoder_and_iwae_objective() -> None:
    with pytest.raises(InvalidInput, match="unknown decoder 'poisson'"):
        VAE.for_data(DataSpec((4,), levels=2), decoder="poisson")
    assert VAE.for_data(DataSpec((4,), levels=2), iwae_k=5).objective == IWAE(k=5)


def test_training_reaches_the_data_entropy() -> None:
    """On p_data = ½ δ_{0000} + ½ δ_{1111}, E_pdata[log p_θ(x)] ≤ -H = -log 2 (Gibbs) and a
    VAE trained on L_8 for 500 steps comes within 0.08 nats of it (it reaches a gap of about
    0.03): the Bernoulli likelihood is a true probability."""
    data = torch.tensor([[0.0] * 4, [1.0] * 4])
    vae = _vae(objective=IWAE(k=8))
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    for _ in range(500):
        opt.zero_grad()
        vae.loss(data[torch.randint(2, (32,))]).backward()
        opt.step()
    with torch.no_grad():
        bound = vae.iwae_bound(data.repeat(50, 1), 256, generator=_gen(7))
    est = Estimate.from_samples(bound)
    assert est.value > -math.log(2) - 0.08
    assert est.value < -math.log(2) + 4 * est.stderr
