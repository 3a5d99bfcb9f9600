"""GAN theory on known 1-D laws: optimal D, the JSD identity, equilibrium, f-GAN bounds, W1 dual.

The data law P and the generator's law Q are Gaussians with exact densities;
the generator is an affine map of z ~ N(0, 1), so Q is known exactly while the
critic only ever sees samples. Exact values come by quadrature (Simpson's rule
on [−14, 14] with 40,001 nodes, error far below 1e-8 for these integrands) or
in closed form. Monte Carlo estimates are compared with a tolerance of four
standard errors plus, for trained critics, a stated optimisation allowance.

Every test runs in float64 and in float32 (``theory_dtype``): the critics, the
generators and the samples are in that dtype, the exact values (quadrature,
closed forms) in float64, and the rounding allowance ``tol(dtype, size, ops)``
of tests/theory/conftest.py is added to the statistical one.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from scipy.integrate import simpson
from torch import Tensor, nn

from probgen.distributions import DiagonalGaussian, StandardNormal
from probgen.divergences import (
    GANJensenShannon,
    JensenShannon,
    KullbackLeibler,
    PearsonChiSquared,
    ReverseKullbackLeibler,
    SquaredHellinger,
    TotalVariation,
    wasserstein1_cdf,
)
from probgen.divergences.f_divergences import FDivergence
from probgen.models.gan import (
    FGAN,
    GAN,
    WGANGP,
    Critic,
    ExactLogRatio,
    Generator,
    calibrate,
    critic_log_ratio,
    minimax_value,
)
from probgen.nn.mlp import MLP

LN2 = math.log(2.0)
GRID = torch.linspace(-14.0, 14.0, 40_001, dtype=torch.float64)
N_EVAL = 40_000  # fresh samples per side for every Monte Carlo estimate


def gaussian(mean: float, std: float) -> DiagonalGaussian:
    """N(mean, std²) in float64 (built at import, before the float64 fixture runs)."""
    f64 = torch.float64
    return DiagonalGaussian(torch.tensor([mean], dtype=f64), torch.tensor([std], dtype=f64))


def in_dtype(law: DiagonalGaussian, dtype: torch.dtype) -> DiagonalGaussian:
    """A copy of ``law`` in ``dtype`` (the float64 original stays the ground truth)."""
    return copy.deepcopy(law).to(dtype)


def affine_generator(mean: float, std: float) -> Generator:
    """G(z) = mean + std·z with z ~ N(0, 1), so Q = N(mean, std²) exactly."""
    net = nn.Linear(1, 1)
    with torch.no_grad():
        net.weight.fill_(std)
        net.bias.fill_(mean)
    return Generator(net, StandardNormal((1,)), (1,))


def small_critic() -> Critic:
    """A 2×32 SiLU MLP critic starting at V ≡ 0 (as ``build_networks`` does)."""
    return Critic(MLP(1, 1, (32, 32), activation=nn.SiLU, zero_last=True), (1,))


def quad(values: Tensor) -> float:
    """∫ values(x) dx over GRID by Simpson's rule."""
    return float(simpson(values.numpy(), x=GRID.numpy()))


def exact_f_divergence(div: FDivergence, p: DiagonalGaussian, q: DiagonalGaussian) -> float:
    """D_f(P ‖ Q) = ∫ q f(p/q) by quadrature."""
    x = GRID[:, None]
    log_p, log_q = p.log_prob(x), q.log_prob(x)
    return quad(log_q.exp() * div.f((log_p - log_q).exp()))


def exact_jsd(p: DiagonalGaussian, q: DiagonalGaussian) -> float:
    """JSD = ½ ∫ p ln(p/m) + ½ ∫ q ln(q/m), m = (p + q)/2, by quadrature (independent of f)."""
    x = GRID[:, None]
    log_p, log_q = p.log_prob(x), q.log_prob(x)
    log_m = torch.logaddexp(log_p, log_q) - LN2
    return quad(0.5 * log_p.exp() * (log_p - log_m) + 0.5 * log_q.exp() * (log_q - log_m))


def train_critic(
    model: FGAN | WGANGP, truth: DiagonalGaussian, steps: int, lr: float, batch: int = 256
) -> None:
    """Maximise the critic's objective on samples of ``truth`` against the fixed generator."""
    data = torch.Generator().manual_seed(1)
    optimizer = torch.optim.Adam(model.critic.parameters(), lr=lr, betas=(0.5, 0.9))
    for _ in range(steps):
        loss = model.loss(truth.sample(batch, generator=data), "critic")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def held_out(p: DiagonalGaussian, q: DiagonalGaussian) -> tuple[Tensor, Tensor]:
    """40,000 fresh samples of each law, in the test's default dtype."""
    g = torch.Generator().manual_seed(2)
    dtype = torch.get_default_dtype()
    return in_dtype(p, dtype).sample(N_EVAL, generator=g), in_dtype(q, dtype).sample(
        N_EVAL, generator=g
    )


def estimate_with_stderr(t_p: Tensor, f_star_q: Tensor) -> tuple[float, float]:
    """E_P[T] − E_Q[f*(T)] from independent samples, with its standard error."""
    value = t_p.mean() - f_star_q.mean()
    stderr = math.sqrt(t_p.var() / len(t_p) + f_star_q.var() / len(f_star_q))
    return float(value), stderr


P = gaussian(0.0, 1.0)
Q_MEAN, Q_STD = 1.5, 0.8
Q = gaussian(Q_MEAN, Q_STD)


def test_optimal_discriminator_value_is_minus_ln4_plus_twice_jsd(theory_dtype, tol) -> None:
    """Goodfellow et al. 2014, Prop. 1 and Thm. 1: D* = p/(p + q), V(D*, G) = −ln 4 + 2 JSD(P ‖ Q).

    V(D*, G) by quadrature equals −ln 4 + 2 JSD with the JSD computed separately
    (to 1e-9); the Monte Carlo V on 40,000 samples per side with the analytic
    logit V* = ln p − ln q agrees within four standard errors; D* = σ(V*).
    """
    x = GRID[:, None]
    log_p, log_q = P.log_prob(x), Q.log_prob(x)
    log_d_star = log_p - torch.logaddexp(log_p, log_q)  # ln D* = ln p − ln(p + q)
    log_1m_d_star = log_q - torch.logaddexp(log_p, log_q)
    value = quad(log_p.exp() * log_d_star + log_q.exp() * log_1m_d_star)
    jsd = exact_jsd(P, Q)
    assert value == pytest.approx(-2 * LN2 + 2 * jsd, abs=1e-9)
    assert 0 < jsd < LN2

    real, fake = held_out(P, Q)
    p, q = in_dtype(P, theory_dtype), in_dtype(Q, theory_dtype)
    logit_real = p.log_prob(real) - q.log_prob(real)
    logit_fake = p.log_prob(fake) - q.log_prob(fake)
    torch.testing.assert_close(  # default tolerances: the dtype's
        torch.sigmoid(logit_real),
        p.log_prob(real).exp() / (p.log_prob(real).exp() + q.log_prob(real).exp()),
    )
    mc = minimax_value(logit_real, logit_fake)
    per_real, per_fake = (
        -torch.nn.functional.softplus(-logit_real),
        -torch.nn.functional.softplus(logit_fake),
    )
    stderr = math.sqrt(per_real.var() / N_EVAL + per_fake.var() / N_EVAL)
    assert abs(float(mc) - value) < 4 * stderr + tol(theory_dtype, abs(value), 64)


def test_trained_discriminator_approaches_d_star_and_the_jsd_identity(theory_dtype, tol) -> None:
    """Goodfellow et al. 2014, Prop. 1 and Thm. 1, with D learned from samples.

    A 2×32 MLP discriminator trained for 600 Adam steps (batch 256) against a
    fixed generator Q = N(1.5, 0.8²) must give (i) D within 0.05 of D* = p/(p+q)
    where both laws have mass (x ∈ [−2, 3]); (ii) a held-out value V(D, G)
    (40,000 samples per side) not above V(D*, G) = −ln 4 + 2 JSD by more than
    four standard errors (D* maximises the population value) and within
    4 stderr + 0.01 below it (the allowance for a finite-sample critic).
    """
    model = GAN((1,), generator=affine_generator(Q_MEAN, Q_STD), critic=small_critic())
    train_critic(model, in_dtype(P, theory_dtype), steps=600, lr=3e-3)

    x = torch.linspace(-2.0, 3.0, 101, dtype=torch.float64)[:, None]
    p, q = P.log_prob(x).exp(), Q.log_prob(x).exp()
    with torch.no_grad():
        d = model.discriminator(x.to(theory_dtype)).double()
        assert (d - p / (p + q)).abs().max() < 0.05
        real, fake = held_out(P, Q)
        value = model.minimax_value(real, fake)
        v_real, v_fake = model.critic_output(real), model.critic_output(fake)
    per = torch.nn.functional.softplus
    stderr = math.sqrt(per(-v_real).var() / N_EVAL + per(v_fake).var() / N_EVAL)
    optimum = -2 * LN2 + 2 * exact_jsd(P, Q)
    rounding = tol(theory_dtype, abs(optimum), 64)
    assert float(value) <= optimum + 4 * stderr + rounding
    assert float(value) >= optimum - 4 * stderr - 0.01 - rounding


DIVERGENCES = [
    KullbackLeibler(),
    ReverseKullbackLeibler(),
    JensenShannon(),
    GANJensenShannon(),
    PearsonChiSquared(),
    SquaredHellinger(),
    TotalVariation(),
]
F_P, F_Q = gaussian(0.0, 1.0), gaussian(1.0, 1.0)


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: d.name)
def test_optimal_f_critic_attains_the_divergence(
    divergence: FDivergence, theory_dtype: torch.dtype, tol
) -> None:
    """Nguyen et al. 2010; Nowozin et al. 2016, Eq. (4): E_P[T*] − E_Q[f*(T*)] = D_f, T* = f'(p/q).

    The Monte Carlo value with the analytic T* on 40,000 samples per side is
    within four standard errors of D_f(P ‖ Q) by quadrature.
    """
    exact = exact_f_divergence(divergence, F_P, F_Q)
    real, fake = held_out(F_P, F_Q)
    p, q = in_dtype(F_P, theory_dtype), in_dtype(F_Q, theory_dtype)
    t_real = divergence.f_prime((p.log_prob(real) - q.log_prob(real)).exp())
    t_fake = divergence.f_prime((p.log_prob(fake) - q.log_prob(fake)).exp())
    value, stderr = estimate_with_stderr(t_real, divergence.f_star(t_fake))
    assert abs(value - exact) < 4 * stderr + tol(theory_dtype, abs(exact) + 1.0, 64)


@pytest.mark.parametrize("divergence", DIVERGENCES, ids=lambda d: d.name)
def test_trained_f_critic_estimates_the_divergence_from_below(
    divergence: FDivergence, theory_dtype: torch.dtype, tol
) -> None:
    """Nowozin et al. 2016, Eq. (4): any critic gives E_P[T] − E_Q[f*(T)] ≤ D_f(P ‖ Q).

    An f-GAN critic (2×32 MLP, output activation g_f) is trained for 300 Adam
    steps on samples of P = N(0, 1) and Q = N(1, 1). On 40,000 fresh samples per
    side its bound must not exceed the exact D_f (quadrature) by more than four
    standard errors, and must reach it to within four standard errors plus
    5% of D_f (the allowance for a finite critic trained on finite samples).
    """
    model = FGAN((1,), divergence, generator=affine_generator(1.0, 1.0), critic=small_critic())
    train_critic(model, in_dtype(F_P, theory_dtype), steps=300, lr=5e-3)
    exact = exact_f_divergence(divergence, F_P, F_Q)
    real, fake = held_out(F_P, F_Q)
    with torch.no_grad():
        t_real = divergence.activation(model.critic_output(real))
        f_star_fake = divergence.f_star_of_activation(model.critic_output(fake))
        assert torch.allclose(
            model.variational_value(real, fake), t_real.mean() - f_star_fake.mean()
        )
    value, stderr = estimate_with_stderr(t_real, f_star_fake)
    rounding = tol(theory_dtype, abs(exact) + 1.0, 64)
    assert value <= exact + 4 * stderr + rounding
    assert value >= exact - 4 * stderr - 0.05 * exact - rounding


def test_wgan_gp_critic_recovers_w1(theory_dtype: torch.dtype, tol) -> None:
    """Kantorovich–Rubinstein (Villani 2009, Thm. 5.10): W_1 = sup_{‖V‖_L ≤ 1} E_P[V] − E_Q[V].

    P = N(0, 1), Q = N(1, 1): W_1 = 1 (a translation; ∫|F − G| by quadrature agrees).
    The gradient penalty enforces ‖∇V‖ = 1 only softly: among critics V = −s x
    the penalised dual s − λ(s − 1)² peaks at s* = 1 + W_1/(2λ), so a WGAN-GP
    critic's dual estimates W_1 + W_1²/(2λ) = 1.05 for λ = 10 (Gulrajani et al.
    2017, Eq. (3)). A critic trained for 600 Adam steps must give (i) a held-out
    dual (40,000 samples per side) within 4 stderr + 0.02 of that value, and
    (ii) after division by its Lipschitz constant L = max |V'| on [−6, 7] (so
    V/L is 1-Lipschitz there, where all but ~1e-9 of the mass lies), a dual not
    above W_1 + 4 stderr (the KR bound) and above 0.85 W_1.
    """
    w1 = 1.0
    by_cdf = wasserstein1_cdf(
        lambda t: torch.special.ndtr(t), lambda t: torch.special.ndtr(t - 1.0), GRID
    )
    assert float(by_cdf) == pytest.approx(w1, abs=1e-7)

    q = gaussian(1.0, 1.0)
    model = WGANGP((1,), penalty=10.0, generator=affine_generator(1.0, 1.0), critic=small_critic())
    train_critic(model, in_dtype(P, theory_dtype), steps=600, lr=1e-3)
    real, fake = held_out(P, q)
    with torch.no_grad():
        v_real, v_fake = model.critic_output(real), model.critic_output(fake)
    value, stderr = estimate_with_stderr(v_real, v_fake)
    rounding = tol(theory_dtype, 2.0, 64)
    assert abs(value - (w1 + w1**2 / 20.0)) < 4 * stderr + 0.02 + rounding

    x = torch.linspace(-6.0, 7.0, 2001)[:, None].requires_grad_(True)
    (slope,) = torch.autograd.grad(model.critic_output(x).sum(), x)
    lipschitz = float(slope.abs().max())
    assert value / lipschitz <= w1 + (4 * stderr + rounding) / lipschitz
    assert value / lipschitz >= 0.85 * w1


@pytest.mark.parametrize(
    "divergence",
    [GANJensenShannon(), KullbackLeibler(), ReverseKullbackLeibler(), SquaredHellinger()],
)
def test_a_calibrated_f_gan_critic_is_the_log_ratio(
    divergence: FDivergence, theory_dtype: torch.dtype
) -> None:
    """Nowozin et al. 2016, Eq. (5): T* = f'(p/q), so ln (f')^{-1}(T) of a trained critic ≈ ln p/q.

    p_data = N(0, 1), p_g = N(0.5, 1.2²) (d is quadratic); the game's own
    critic (2×32 SiLU) is calibrated for 600 steps by its own objective; on
    x ∈ [−1.5, 1.5] its log-ratio is within 0.15 of the exact one (float32's rounding,
    ~1e-6 on a log-ratio of size 1, is far inside that allowance).
    """
    p = DiagonalGaussian(torch.zeros(1), torch.ones(1))
    q = DiagonalGaussian(torch.tensor([0.5]), torch.tensor([1.2]))
    game = FGAN(
        (1,),
        divergence,
        generator=affine_generator(0.5, 1.2),
        critic=small_critic(),
    )
    ratio = critic_log_ratio(game)
    g = torch.Generator().manual_seed(8)
    calibrate(
        ratio,
        lambda b: p.sample(b, generator=g),
        game.sample,
        steps=600,
        batch=256,
        lr=3e-3,
        generator=g,
    )
    x = torch.linspace(-1.5, 1.5, 61)[:, None]
    with torch.no_grad():
        err = ratio(x) - ExactLogRatio(p, q)(x)
    assert err.abs().max() < 0.15
