"""Estimates of the log density ratio d(x) = ln p_data(x)/p_g(x) between the data and a generator.

A critic trained to optimality knows this ratio: the logistic loss is minimised
by the Bayes logit d(x) (the optimal discriminator D* = p_data/(p_data + p_g) =
σ(d)), and an f-GAN critic by T*(x) = f'(p_data(x)/p_g(x)). The objects here
turn such a critic into d(x), shape (B, *event_shape) -> (B,), for the
samplers of ``probgen.models.gan.refine``; ``calibrate`` trains one against a
frozen generator so that its logit approaches the Bayes log-ratio.

References: Goodfellow et al. 2014, "Generative Adversarial Nets", Prop. 1;
Nowozin, Cseke & Tomioka 2016, "f-GAN", Eq. (5); Azadi et al. 2019,
"Discriminator rejection sampling", Section 3.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probgen.core import InvalidInput, check_input
from probgen.distributions import Distribution
from probgen.divergences import (
    FDivergence,
    GANJensenShannon,
    JensenShannon,
    KullbackLeibler,
    PearsonChiSquared,
    ReverseKullbackLeibler,
    SquaredHellinger,
)
from probgen.models.gan.game import AdversarialGame
from probgen.models.gan.networks import Critic

__all__ = [
    "LOG_RATIO_OF_CRITIC",
    "Calibration",
    "ClassifierLogRatio",
    "CriticLogRatio",
    "ExactLogRatio",
    "calibrate",
    "critic_log_ratio",
]


def _pearson_log_ratio(v: Tensor) -> Tensor:
    # T = v = 2(r − 1), so r = 1 + v/2; a critic can make it negative, where the
    # ratio estimate is truncated at the smallest positive number (rejected).
    return torch.log((1.0 + 0.5 * v).clamp_min(torch.finfo(v.dtype).tiny))


LOG_RATIO_OF_CRITIC: dict[type[FDivergence], Callable[[Tensor], Tensor]] = {
    # ln r from the raw critic output v, solving g_f(v) = f'(r) for r = p/q.
    GANJensenShannon: lambda v: v,  # ln σ(v) = ln(r/(r + 1))
    JensenShannon: lambda v: v,  # ½ ln(2σ(v)) = ½ ln(2r/(r + 1))
    KullbackLeibler: lambda v: v - 1.0,  # v = 1 + ln r
    ReverseKullbackLeibler: lambda v: v,  # −e^{−v} = −1/r
    SquaredHellinger: lambda v: 2.0 * v,  # 1 − e^{−v} = 1 − r^{−1/2}
    PearsonChiSquared: _pearson_log_ratio,
}
"""ln r(x) from an f-GAN critic's raw output v, r = (f')^{-1}(g_f(v)), per divergence.

Total variation is absent: f'(t) = ½ sign(t − 1) does not determine t.
"""


class ExactLogRatio(nn.Module):
    """d(x) = ln p(x) − ln q(x) of two distributions with exact densities, (B, …) -> (B,).

    The ground truth the learned ratios are measured against (and, for analytic
    p and q, the ratio with which the samplers of ``refine`` are exact).
    """

    def __init__(self, p: Distribution, q: Distribution) -> None:
        super().__init__()
        if tuple(p.event_shape) != tuple(q.event_shape):
            raise InvalidInput(
                f"q: expected event_shape {tuple(p.event_shape)}, got {tuple(q.event_shape)}"
            )
        self.p, self.q = p, q
        self.event_shape = tuple(p.event_shape)

    def forward(self, x: Tensor) -> Tensor:
        x = check_input(x, self.event_shape)
        return self.p.log_prob(x) - self.q.log_prob(x)


class ClassifierLogRatio(nn.Module):
    """A per-example classifier of data against generated samples whose logit estimates d(x).

    d_ψ(x) is the network's output on the flattened example. ``loss`` is the
    logistic loss with equal class sizes,

        L(ψ) = E_{p_data}[softplus(−d_ψ(x))] + E_{p_g}[softplus(d_ψ(x̃))],

    minimised pointwise by the Bayes logit d*(x) = ln p_data(x)/p_g(x)
    (Goodfellow et al. 2014, Prop. 1, with D = σ(d)). It works for any
    generator, packed or not, whatever game trained it.

    Args:
        network: module (B, D) -> (B, 1), D = prod(event_shape).
        event_shape: shape of one example.
    """

    def __init__(self, network: nn.Module, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.critic = Critic(network, event_shape)
        self.event_shape = tuple(int(s) for s in event_shape)

    def forward(self, x: Tensor) -> Tensor:
        """d_ψ(x): (B, *event_shape) -> (B,)."""
        return self.critic(check_input(x, self.event_shape))

    def loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """L(ψ) on data ``real`` (B, …) and generated ``fake`` (B', …): 0-dim tensor."""
        return F.softplus(-self(real)).mean() + F.softplus(self(fake)).mean()


class CriticLogRatio(nn.Module):
    """An f-GAN critic read as a log-ratio: d(x) = ln (f')^{-1}(g_f(V(x))), (B, …) -> (B,).

    At the critic's optimum T*(x) = g_f(V(x)) = f'(p_data/p_g) (Nowozin et al.
    2016, Eq. (5)), so d(x) = ln p_data(x)/p_g(x); for the GAN this is the
    discriminator's logit, D* = σ(d). ``loss`` is the critic's own objective,
    −(E_P[g_f(V)] − E_Q[f*(g_f(V))]), so calibrating continues the critic's
    training against the frozen generator. Build it with ``critic_log_ratio``.

    Args:
        critic: the critic V (events of shape ``event_shape``, no packing).
        divergence: the f-divergence it was trained for; one of
            ``LOG_RATIO_OF_CRITIC``'s keys.
    """

    def __init__(self, critic: Critic, divergence: FDivergence) -> None:
        super().__init__()
        if type(divergence) not in LOG_RATIO_OF_CRITIC:
            raise InvalidInput(
                f"divergence: the critic of {type(divergence).__name__} does not determine "
                f"p_data/p_g; expected one of "
                f"{', '.join(t.__name__ for t in LOG_RATIO_OF_CRITIC)}, or train a "
                f"ClassifierLogRatio against the generator instead"
            )
        self.critic = critic
        self.divergence = divergence
        self.event_shape = tuple(critic.event_shape)

    def forward(self, x: Tensor) -> Tensor:
        x = check_input(x, self.event_shape)
        return LOG_RATIO_OF_CRITIC[type(self.divergence)](self.critic(x))

    def loss(self, real: Tensor, fake: Tensor) -> Tensor:
        """The critic's objective on ``real`` and ``fake`` (B, …): 0-dim tensor."""
        v_real, v_fake = self.critic(real), self.critic(fake)
        return -(
            self.divergence.activation(v_real).mean()
            - self.divergence.f_star_of_activation(v_fake).mean()
        )


def critic_log_ratio(game: AdversarialGame) -> CriticLogRatio:
    """The log-ratio d(x) held by ``game``'s own critic (shares its parameters).

    Raises ``InvalidInput`` for a packed critic (it judges m examples jointly:
    its logit estimates ln p_data^m/p_g^m of a pack, not d(x) of one example),
    for Wasserstein critics (a potential, not a ratio), for total variation
    and for a conditional game (its critic's ratio is ln p_data(x|c)/p_g(x|c),
    and refinement here is unconditional).
    """
    if game.condition_spec is not None:
        raise InvalidInput(
            f"{type(game).__name__}: the critic of a conditional game holds a log-ratio per "
            "condition; conditional refinement is not supported"
        )
    if game.pack != 1:
        raise InvalidInput(
            f"{type(game).__name__}: the critic judges packs of {game.pack} examples, so its "
            f"logit is not a per-example log-ratio; train a ClassifierLogRatio instead"
        )
    if not isinstance(game.objective, FDivergence):
        raise InvalidInput(
            f"{type(game).__name__}: a {type(game.objective).__name__} critic is a potential, "
            f"not a density ratio; train a ClassifierLogRatio instead"
        )
    return CriticLogRatio(game.critic, game.objective)


@dataclass(frozen=True)
class Calibration:
    """What ``calibrate`` did: optimizer steps, the mean loss of its last tenth, CPU seconds."""

    steps: int
    final_loss: float
    cpu_seconds: float


def calibrate(
    ratio: ClassifierLogRatio | CriticLogRatio,
    data: Callable[[int], Tensor],
    proposal: Callable[..., Tensor],
    *,
    steps: int = 3000,
    batch: int = 512,
    lr: float = 1e-3,
    generator: torch.Generator | None = None,
) -> Calibration:
    """Train ``ratio`` alone against a frozen generator so that d(x) approaches ln p_data/p_g.

    Each of ``steps`` Adam steps draws ``batch`` data examples ``data(batch)``
    and ``batch`` generated ones ``proposal(batch, generator=generator)``
    (without gradients, so the generator is untouched), and descends
    ``ratio.loss``; the learning rate decays linearly to zero. This is the
    calibration step of discriminator rejection sampling and MH-GAN: the
    critic of a finished game lags its generator, while a critic trained on
    a fixed p_g solves a plain classification problem. The default (3,000
    steps of 512 per side) is about 3 × 10⁶ examples per class.

    Reference: Azadi et al. 2019, "Discriminator rejection sampling",
    Section 3.2; Turner et al. 2019, "Metropolis-Hastings generative
    adversarial networks", Section 3.3.
    """
    if steps < 1 or batch < 1:
        raise InvalidInput(f"steps, batch: expected >= 1, got {steps}, {batch}")
    optimizer = torch.optim.Adam(ratio.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 - k / steps)
    start = time.process_time()
    tail: list[float] = []
    for k in range(steps):
        real = data(batch)
        with torch.no_grad():
            fake = proposal(batch, generator=generator).to(real)
        loss = ratio.loss(real, fake)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if k >= steps - max(steps // 10, 1):
            tail.append(loss.item())
    return Calibration(steps, sum(tail) / len(tail), time.process_time() - start)
