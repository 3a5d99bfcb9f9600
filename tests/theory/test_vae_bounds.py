"""The VAE's bounds against exact answers.

On a linear-Gaussian latent model, p(z) = N(0, I), p(x|z) = N(W z + b, σ² I),
everything is known in closed form (Bishop 2006, §12.2; Tipping & Bishop 1999):

    p(x)   = N(x; b, W Wᵀ + σ² I),
    p(z|x) = N(m(x), S),  S = (I + Wᵀ W / σ²)⁻¹,  m(x) = S Wᵀ (x - b) / σ².

The VAE classes are plugged with a linear encoder and the linear Gaussian
decoder, and their Monte Carlo bounds are compared with these exact values.
The data-level identity is checked on a small binary data set by quadrature.

Every test runs in float64 and float32 (``theory_dtype``): the exact model's W, b
and the test points are float64 (and exactly representable or rounded once into
the VAE), the closed forms are evaluated in float64, and a rounding allowance
``tol(dtype, size)`` = 64 eps · size, with size the magnitude of the terms that
cancel, is added to each Monte Carlo tolerance (or replaces an exact equality).
"""

from __future__ import annotations

import math

import torch
from scipy import stats
from torch import nn

from probgen.core import Estimate
from probgen.divergences import kl_gaussian
from probgen.models.vae import VAE, BernoulliDecoder, GaussianDecoder, GaussianEncoder
from probgen.nn.mlp import MLP

D, Z, SIGMA = 3, 2, 0.5


F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class LinearGaussian:
    """The exact model: W (D, Z), b (D,), noise σ; marginal and posterior in closed form."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, sigma: float = SIGMA) -> None:
        dtype = torch.get_default_dtype()  # the model the VAE holds: W, b rounded to its dtype
        self.w, self.b, self.sigma = w.to(dtype).double(), b.to(dtype).double(), sigma
        w = self.w
        self.post_cov = torch.linalg.inv(torch.eye(Z, dtype=F64) + w.T @ w / sigma**2)  # S, (Z, Z)
        self.gain = self.post_cov @ w.T / sigma**2  # m(x) = gain (x - b), (Z, D)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B,), in float64
        cov = self.w @ self.w.T + self.sigma**2 * torch.eye(D, dtype=F64)
        return torch.from_numpy(stats.multivariate_normal(self.b.numpy(), cov.numpy()).logpdf(x))

    def post_mean(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, Z)
        return (x.double() - self.b) @ self.gain.T

    def joint_terms(self, x: torch.Tensor, z: torch.Tensor, q_mean, q_std) -> torch.Tensor:
        """|log p(x|z)| + |log p(z)| + |log q(z|x)| in float64, (B,): the terms that cancel."""
        x, z, q_mean, q_std = (t.detach().double() for t in (x, z, q_mean, q_std))
        log_lik = stats.norm(((z @ self.w.T) + self.b).numpy(), self.sigma).logpdf(x.numpy())
        log_prior = stats.norm().logpdf(z.numpy())
        log_q = stats.norm(q_mean.numpy(), q_std.numpy()).logpdf(z.numpy())
        parts = [log_lik.sum(-1), log_prior.sum(-1), log_q.sum(-1)]
        return torch.from_numpy(sum(abs(part) for part in parts))

    def vae(self, gain: torch.Tensor, offset: torch.Tensor, std: torch.Tensor, **options) -> VAE:
        """This decoder in a VAE with the linear encoder q(z|x) = N(gain x + offset, diag std²)."""
        enc = nn.Linear(D, 2 * Z)
        dec = nn.Linear(Z, D)
        with torch.no_grad():
            enc.weight.copy_(torch.cat([gain, torch.zeros(Z, D)]))
            enc.bias.copy_(torch.cat([offset, std.log()]))
            dec.weight.copy_(self.w)
            dec.bias.copy_(self.b)
        return VAE(GaussianEncoder(enc, Z), GaussianDecoder(dec, (D,), std=self.sigma), **options)

    def exact_encoder(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gain, offset, std) of q = p(z|x); needs a diagonal S (orthogonal columns of W)."""
        return self.gain, -self.gain @ self.b, self.post_cov.diagonal().sqrt()

    def rough_encoder(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A deliberately imperfect encoder: perturbed gain and offset, widened std."""
        noise = torch.randn(Z, D, generator=_gen(11), dtype=F64)
        std = 1.3 * self.post_cov.diagonal().sqrt()
        return self.gain + 0.3 * noise, -self.gain @ self.b + 0.2, std


def _general_model() -> LinearGaussian:
    g = _gen(1)
    return LinearGaussian(
        torch.randn(D, Z, generator=g, dtype=F64), torch.randn(D, generator=g, dtype=F64)
    )


def _orthogonal_model() -> LinearGaussian:
    """W = Q diag(d) with orthonormal Q: Wᵀ W is diagonal, so is the exact posterior."""
    g = _gen(2)
    q, _ = torch.linalg.qr(torch.randn(D, Z, generator=g, dtype=F64))
    return LinearGaussian(
        q * torch.tensor([1.5, 0.7], dtype=F64), torch.randn(D, generator=g, dtype=F64)
    )


def _estimates(values_fn, x: torch.Tensor, n: int) -> list[Estimate]:
    """Mean and stderr of n independent draws of a per-example estimator, per row of x."""
    values = values_fn(x.repeat_interleave(n, 0)).detach().reshape(len(x), n)
    return [Estimate.from_samples(v) for v in values]


X = torch.tensor(
    [[0.3, -1.0, 0.5], [2.0, 0.1, -0.7], [-1.2, 1.4, 0.9], [0.0, 0.0, 0.0]], dtype=torch.float64
)


def test_elbo_gap_is_the_kl_to_the_exact_posterior(theory_dtype: torch.dtype, tol) -> None:
    """Eq.: log p(x) - ELBO(x) = KL(q(z|x) || p(z|x)) > 0, hence ELBO(x) ≤ log p(x).

    The VAE's Monte Carlo ELBO (analytic KL to the prior, 20 000 draws per x)
    matches log p(x) - KL(q || p(z|x)) (both closed form) within 4 standard
    errors, and lies below log p(x) by many standard errors.
    """
    model = _general_model()
    vae = model.vae(*model.rough_encoder())
    x = X.to(theory_dtype)
    q = vae.encode(x)
    q_mean, q_var = q.mean.detach().double(), torch.diag_embed(q.std.detach().double() ** 2)
    gap = kl_gaussian(q_mean, q_var, model.post_mean(x), model.post_cov)
    log_px = model.log_px(x)
    size = 1 + model.joint_terms(x, q.mean, q.mean, q.std)  # the terms at z = E_q z
    assert (gap > 0.05).all()
    for est, lp, kl, s in zip(_estimates(vae.elbo, x, 20_000), log_px, gap, size, strict=True):
        assert abs(est.value - (lp - kl).item()) < 4 * est.stderr + tol(theory_dtype, s)
        assert est.value + 10 * est.stderr < lp.item()


def test_gap_vanishes_with_the_exact_posterior_as_encoder(theory_dtype: torch.dtype, tol) -> None:
    """Eq.: q(z|x) = p(z|x) ⇒ log p(x,z) - log q(z|x) = log p(x) for every z, so
    ELBO = L_K = log p(x) exactly, with zero variance.

    Exact up to rounding: 64 eps · (1 + |log p(x|z)| + |log p(z)| + |log q(z|x)|), the
    terms that cancel (at z = E_q z for L_K, whose draws are not returned), and in
    float64 also within the 1e-10 of before. The encoder's rounded q differs from
    p(z|x) by O(eps) in its parameters, which enters log q at that same order.
    """
    model = _orthogonal_model()
    off_diagonal = tol(theory_dtype, model.w.square().sum(), ops=4)  # W rounded to the dtype
    off_diagonal = min(off_diagonal, 1e-12) if theory_dtype == torch.float64 else off_diagonal
    assert (model.post_cov - torch.diag(model.post_cov.diagonal())).abs().max() <= off_diagonal
    vae = model.vae(*model.exact_encoder(), analytic_kl=False)
    x = X.to(theory_dtype)
    rows = x.repeat_interleave(500, 0)
    log_px = model.log_px(rows)
    q = vae.encode(rows)
    z = q.rsample(1, _gen(3))[0]  # the draws the ELBO below makes
    elbo = vae.elbo(rows, generator=_gen(3)).detach()

    def bound(size: torch.Tensor) -> torch.Tensor:
        allowance = 64 * torch.finfo(theory_dtype).eps * (1 + size)
        return allowance.clamp_max(1e-10) if theory_dtype == torch.float64 else allowance

    assert ((elbo - log_px).abs() <= bound(model.joint_terms(rows, z, q.mean, q.std))).all()
    q = vae.encode(x)
    at_mean = bound(model.joint_terms(x, q.mean, q.mean, q.std))
    for k in (1, 7, 64):
        assert ((vae.iwae_bound(x, k).detach() - model.log_px(x)).abs() <= at_mean).all()
    # With the closed-form KL only the reconstruction term is sampled: unbiased for log p(x).
    vae.analytic_kl = True
    for est, lp, a in zip(_estimates(vae.elbo, x, 20_000), model.log_px(x), at_mean, strict=True):
        assert abs(est.value - lp.item()) < 4 * est.stderr + a.item()


def test_iwae_increases_with_k_towards_log_px(theory_dtype: torch.dtype, tol) -> None:
    """Eq. (Burda et al. 2016, Thm. 1): ELBO = L_1 ≤ L_K ≤ L_{K'} ≤ log p(x) for K ≤ K',
    and L_K → log p(x) as K → ∞; checked on E[L_K] estimated from independent draws."""
    model = _general_model()
    vae = model.vae(*model.rough_encoder())
    x = X[:2].to(theory_dtype)
    log_px = model.log_px(x)
    q = vae.encode(x)
    rounding = [tol(theory_dtype, 1 + s) for s in model.joint_terms(x, q.mean, q.mean, q.std)]
    ks = (1, 4, 16, 64, 256, 1024)
    reps = {1: 20_000, 4: 20_000, 16: 10_000, 64: 4_000, 256: 2_000, 1024: 1_000}
    bounds = {k: _estimates(lambda r, k=k: vae.iwae_bound(r, k), x, reps[k]) for k in ks}
    for b in range(len(x)):
        lp, r = log_px[b].item(), rounding[b]
        gaps = [lp - bounds[k][b].value for k in ks]
        errs = [bounds[k][b].stderr for k in ks]
        for k, g, e in zip(ks, gaps, errs, strict=True):
            assert g > -4 * e - r, f"L_{k} above log p(x)"
        for i in range(len(ks) - 1):
            assert gaps[i + 1] < gaps[i] + 3 * math.hypot(errs[i], errs[i + 1]) + 2 * r
        for i in range(3):  # strictly increasing where the steps are large
            assert gaps[i] - gaps[i + 1] > 4 * math.hypot(errs[i], errs[i + 1]) + 2 * r
        assert gaps[-1] < 0.02 * gaps[0] + r


def test_vae_objective_is_the_joint_kl(theory_dtype: torch.dtype, tol) -> None:
    """Eq.: D_KL(q_φ(x,z) || p_θ(x,z)) = -H(p_data) - E_pdata[ELBO(x)], with
    q_φ(x,z) = p_data(x) q_φ(z|x), on a small binary data set.

    The left side is integrated over the 1-D latent by quadrature from log q,
    log p(x|z) and log p(z) directly; the right side uses the VAE's Monte Carlo
    ELBO (closed-form KL to the prior). Also Σ_x p_θ(x) = 1 over {0,1}³ and
    D_KL(q(x,z) || p(x,z)) ≥ KL(p_data || p_θ) ≥ 0.
    """
    data = torch.tensor([[0, 0, 0], [0, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1], [0, 1, 1]])
    xs, counts = data.to(theory_dtype).unique(dim=0, return_counts=True)
    p_data = counts.double() / len(data)
    entropy = -(p_data * p_data.log()).sum()
    encoder = GaussianEncoder(MLP(3, 2, (8,), nn.Tanh), latent_dim=1)
    decoder = BernoulliDecoder(MLP(1, 3, (8,), nn.Tanh), (3,))
    vae = VAE(encoder, decoder)

    t = torch.linspace(-12.0, 12.0, 4001, dtype=F64)  # z = μ + σ t; quadrature in float64
    simpson = torch.ones_like(t)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    simpson *= (t[1] - t[0]) / 3

    def integrate_over_z(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, fn):
        z = (mean.double() + std.double() * t).reshape(-1, 1)  # (T, 1)
        return (simpson * fn(x.expand(len(t), 3), z)).sum()

    def log_joint_of(xr: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p_θ(x|z) + log p(z) by the VAE in its dtype, then in float64 for the quadrature."""
        z = z.to(theory_dtype)
        return (vae.decoder.log_prob(xr, z) + vae.prior.log_prob(z)).double()

    with torch.no_grad():
        q = vae.encode(xs)
        joint_kl = torch.zeros((), dtype=F64)
        log_p_theta, magnitude = [], []
        for i, x in enumerate(xs):
            mean, std = q.mean[i].double(), q.std[i].double()

            def integrand(xr, z, mean=mean, std=std):
                log_q = -0.5 * ((z - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
                log_q = log_q.squeeze(1)
                log_joint = log_joint_of(xr, z)
                return log_q.exp() * (log_q - log_joint) * std  # dz = σ dt

            joint_kl += p_data[i] * (p_data[i].log() + integrate_over_z(x, mean, std, integrand))
        for x in _all_binary(3).to(theory_dtype):
            p_x = integrate_over_z(
                x, torch.zeros(()), torch.ones(()), lambda xr, z: log_joint_of(xr, z).exp()
            )
            log_p_theta.append(p_x.log())
            magnitude.append(  # ∫ p_θ(x, z) |log p_θ(x, z)| dz, the size of its rounding
                integrate_over_z(
                    x,
                    torch.zeros(()),
                    torch.ones(()),
                    lambda xr, z: log_joint_of(xr, z).exp() * log_joint_of(xr, z).abs(),
                )
            )
        log_p_theta = torch.stack(log_p_theta)
        # relative rounding of each p_θ(x): eps · E_{p_θ(z|x)} |log p_θ(x, z)|
        relative = (torch.stack(magnitude) / log_p_theta.exp()).max().item()

        elbos = _estimates(vae.elbo, xs, 40_000)
    expected = -entropy - sum(p * e.value for p, e in zip(p_data, elbos, strict=True))
    stderr = math.sqrt(sum((p * e.stderr) ** 2 for p, e in zip(p_data, elbos, strict=True)))
    size = 1 + entropy.item() + sum(p * abs(e.value) for p, e in zip(p_data, elbos, strict=True))
    assert abs(joint_kl.item() - expected.item()) < 4 * stderr + tol(theory_dtype, size)
    assert stderr < 0.01

    bound = tol(theory_dtype, relative)
    bound = min(bound, 1e-9) if theory_dtype == torch.float64 else bound
    assert abs(torch.logsumexp(log_p_theta, 0).item()) < bound  # Σ_x p_θ(x) = 1
    index = (xs.double() * torch.tensor([4.0, 2.0, 1.0], dtype=F64)).sum(1).long()
    kl_marginal = (p_data * (p_data.log() - log_p_theta[index])).sum()
    assert 0 < kl_marginal < joint_kl


def _all_binary(d: int) -> torch.Tensor:
    """Every x in {0, 1}^d in binary order, shape (2^d, d)."""
    bits = (torch.arange(2**d)[:, None] >> torch.arange(d - 1, -1, -1)) & 1
    return bits.double()
