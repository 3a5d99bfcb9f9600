"""The f-divergence family: generator f, conjugate f*, optimal critic f', f-GAN activation.

D_f(P ‖ Q) = E_Q[ f(p(x)/q(x)) ] for a convex f with f(1) = 0. Its variational
(Fenchel) lower bound over critics T: X -> dom(f*) is

    D_f(P ‖ Q) ≥ E_P[T(x)] − E_Q[f*(T(x))],   f*(u) = sup_t { u t − f(t) },

tight at T*(x) = f'(p(x)/q(x)) (Nguyen, Wainwright & Jordan 2010, "Estimating
divergence functionals and the likelihood ratio by convex risk minimization").
An f-GAN critic outputs an unconstrained V(x) and sets T(x) = g_f(V(x)) with an
output activation g_f mapping ℝ into dom(f*) (Nowozin, Cseke & Tomioka 2016,
"f-GAN: Training generative neural samplers using variational divergence
minimization", Tables 1 and 2).

Jensen–Shannon convention: ``JensenShannon`` is the true JSD = ½ KL(P‖M) + ½ KL(Q‖M),
M = (P + Q)/2, in [0, ln 2]; ``GANJensenShannon`` is the original GAN's divergence,
equal to 2·JSD, in [0, ln 4].
"""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "F_DIVERGENCES",
    "FDivergence",
    "GANJensenShannon",
    "JensenShannon",
    "KullbackLeibler",
    "PearsonChiSquared",
    "ReverseKullbackLeibler",
    "SquaredHellinger",
    "TotalVariation",
    "variational_bound",
]

_LN2 = math.log(2.0)


class FDivergence(abc.ABC):
    """One member of the f-divergence family, D_f(P ‖ Q) = E_Q[f(p/q)].

    Subclasses give the generator ``f`` on t = p/q ≥ 0, its derivative ``f_prime``
    (the optimal critic is T* = f'(p/q)), the conjugate ``_conjugate`` on dom(f*),
    the set ``in_domain`` = dom(f*) and the f-GAN output ``activation`` ℝ -> dom(f*).
    All methods act elementwise on tensors of any shape.
    """

    name: str

    @abc.abstractmethod
    def f(self, t: Tensor) -> Tensor:
        """The convex generator f(t), t = p/q ≥ 0, with f(1) = 0."""

    @abc.abstractmethod
    def f_prime(self, t: Tensor) -> Tensor:
        """f'(t); T*(x) = f'(p(x)/q(x)) is the optimal variational critic."""

    @abc.abstractmethod
    def _conjugate(self, u: Tensor) -> Tensor:
        """The closed form of f*(u), valid on dom(f*)."""

    @abc.abstractmethod
    def activation(self, v: Tensor) -> Tensor:
        """g_f(v): maps an unconstrained critic output v ∈ ℝ into dom(f*)."""

    def in_domain(self, u: Tensor) -> Tensor:
        """Boolean mask of u ∈ dom(f*) = {u : f*(u) < ∞}; all of ℝ unless overridden."""
        return torch.ones_like(u, dtype=torch.bool)

    def f_star(self, u: Tensor) -> Tensor:
        """The convex conjugate f*(u) = sup_{t ≥ 0} { u t − f(t) }, +∞ outside dom(f*)."""
        return torch.where(self.in_domain(u), self._conjugate(u), torch.inf)

    def f_star_of_activation(self, v: Tensor) -> Tensor:
        """f*(g_f(v)), written to stay finite where g_f(v) rounds onto the edge of dom(f*)."""
        return self.f_star(self.activation(v))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class KullbackLeibler(FDivergence):
    """KL(P ‖ Q) = ∫ p ln(p/q): f(t) = t ln t, f'(t) = 1 + ln t, f*(u) = e^{u−1}, g(v) = v.

    Reference: Kullback & Leibler 1951; Nowozin et al. 2016, Table 2.
    """

    name = "kl"

    def f(self, t: Tensor) -> Tensor:
        return torch.xlogy(t, t)

    def f_prime(self, t: Tensor) -> Tensor:
        return 1.0 + t.log()

    def _conjugate(self, u: Tensor) -> Tensor:
        return torch.exp(u - 1.0)

    def activation(self, v: Tensor) -> Tensor:
        return v


class ReverseKullbackLeibler(FDivergence):
    """KL(Q ‖ P) = ∫ q ln(q/p): f(t) = −ln t, f'(t) = −1/t, f*(u) = −1 − ln(−u) on u < 0.

    Activation g(v) = −e^{−v}. Reference: Nowozin et al. 2016, Table 2.
    """

    name = "reverse_kl"

    def f(self, t: Tensor) -> Tensor:
        return -t.log()

    def f_prime(self, t: Tensor) -> Tensor:
        return -1.0 / t

    def _conjugate(self, u: Tensor) -> Tensor:
        return -1.0 - torch.log(-u)

    def in_domain(self, u: Tensor) -> Tensor:
        return u < 0

    def activation(self, v: Tensor) -> Tensor:
        return -torch.exp(-v)

    def f_star_of_activation(self, v: Tensor) -> Tensor:
        return v - 1.0


class JensenShannon(FDivergence):
    """The Jensen–Shannon divergence JSD = ½ KL(P ‖ M) + ½ KL(Q ‖ M), M = (P+Q)/2, in [0, ln 2].

    f(t) = ½ [t ln t − (t+1) ln((t+1)/2)], f'(t) = ½ ln(2t/(t+1)),
    f*(u) = −½ ln(2 − e^{2u}) on u < ½ ln 2, g(v) = ½ (ln 2 − ln(1 + e^{−v})).
    This is ½ of the generator listed as "Jensen-Shannon" by Nowozin et al. 2016
    (Table 1), whose divergence is 2·JSD.

    Reference: Lin 1991, "Divergence measures based on the Shannon entropy".
    """

    name = "js"

    def f(self, t: Tensor) -> Tensor:
        return 0.5 * (torch.xlogy(t, t) - (t + 1.0) * torch.log((t + 1.0) / 2.0))

    def f_prime(self, t: Tensor) -> Tensor:
        return 0.5 * torch.log(2.0 * t / (t + 1.0))

    def _conjugate(self, u: Tensor) -> Tensor:
        return -0.5 * torch.log(2.0 - torch.exp(2.0 * u))

    def in_domain(self, u: Tensor) -> Tensor:
        return u < 0.5 * _LN2

    def activation(self, v: Tensor) -> Tensor:
        return 0.5 * (_LN2 - F.softplus(-v))

    def f_star_of_activation(self, v: Tensor) -> Tensor:
        # e^{2g(v)} = 2σ(v), so f*(g(v)) = −½ ln(2σ(−v)) = ½ (softplus(v) − ln 2).
        return 0.5 * (F.softplus(v) - _LN2)


class GANJensenShannon(FDivergence):
    """The original GAN's divergence, 2·JSD(P ‖ Q) ∈ [0, ln 4].

    f(t) = t ln t − (t+1) ln(t+1) + ln 4 (Nowozin et al.'s "GAN" generator shifted by
    ln 4 so that f(1) = 0), f'(t) = ln(t/(t+1)), f*(u) = −ln(1 − e^u) − ln 4 on u < 0,
    g(v) = −ln(1 + e^{−v}) = ln σ(v). With T = ln D the bound is the GAN value
    E_P[ln D] + E_Q[ln(1 − D)] + ln 4.

    Reference: Goodfellow et al. 2014, "Generative Adversarial Nets";
    Nowozin et al. 2016, Tables 1 and 2.
    """

    name = "gan"

    def f(self, t: Tensor) -> Tensor:
        return torch.xlogy(t, t) - (t + 1.0) * torch.log1p(t) + 2.0 * _LN2

    def f_prime(self, t: Tensor) -> Tensor:
        return torch.log(t / (t + 1.0))

    def _conjugate(self, u: Tensor) -> Tensor:
        return -torch.log(-torch.expm1(u)) - 2.0 * _LN2

    def in_domain(self, u: Tensor) -> Tensor:
        return u < 0

    def activation(self, v: Tensor) -> Tensor:
        return -F.softplus(-v)

    def f_star_of_activation(self, v: Tensor) -> Tensor:
        # 1 − e^{g(v)} = σ(−v), so f*(g(v)) = softplus(v) − ln 4.
        return F.softplus(v) - 2.0 * _LN2


class PearsonChiSquared(FDivergence):
    """Pearson χ²(P ‖ Q) = ∫ (p − q)²/q: f(t) = (t−1)², f'(t) = 2(t−1).

    f*(u) = sup_{t ≥ 0} {u t − (t−1)²} = u²/4 + u for u ≥ −2 (at t = 1 + u/2) and
    −1 for u < −2 (at t = 0). Nowozin et al.'s u²/4 + u is the conjugate over all
    t ∈ ℝ, larger for u < −2, which loosens the bound there. Activation g(v) = v.
    Reference: Pearson 1900; Nowozin et al. 2016, Table 2.
    """

    name = "pearson"

    def f(self, t: Tensor) -> Tensor:
        return (t - 1.0).square()

    def f_prime(self, t: Tensor) -> Tensor:
        return 2.0 * (t - 1.0)

    def _conjugate(self, u: Tensor) -> Tensor:
        return torch.where(u >= -2.0, 0.25 * u.square() + u, -torch.ones_like(u))

    def activation(self, v: Tensor) -> Tensor:
        return v


class SquaredHellinger(FDivergence):
    """Squared Hellinger H²(P, Q) = ∫ (√p − √q)² ∈ [0, 2] (no ½ factor).

    f(t) = (√t − 1)², f'(t) = 1 − 1/√t, f*(u) = u/(1 − u) on u < 1, g(v) = 1 − e^{−v}.

    Reference: Hellinger 1909; Nowozin et al. 2016, Table 2.
    """

    name = "hellinger"

    def f(self, t: Tensor) -> Tensor:
        return (t.sqrt() - 1.0).square()

    def f_prime(self, t: Tensor) -> Tensor:
        return 1.0 - t.rsqrt()

    def _conjugate(self, u: Tensor) -> Tensor:
        return u / (1.0 - u)

    def in_domain(self, u: Tensor) -> Tensor:
        return u < 1.0

    def activation(self, v: Tensor) -> Tensor:
        return -torch.expm1(-v)

    def f_star_of_activation(self, v: Tensor) -> Tensor:
        return torch.expm1(v)


class TotalVariation(FDivergence):
    """Total variation TV(P, Q) = ½ ∫ |p − q| ∈ [0, 1].

    f(t) = ½ |t − 1|, f'(t) = ½ sign(t − 1) (a subgradient), f*(u) = u on |u| ≤ ½,
    g(v) = ½ tanh(v). Reference: Nowozin et al. 2016, Table 2.
    """

    name = "total_variation"

    def f(self, t: Tensor) -> Tensor:
        return 0.5 * (t - 1.0).abs()

    def f_prime(self, t: Tensor) -> Tensor:
        return 0.5 * torch.sign(t - 1.0)

    def _conjugate(self, u: Tensor) -> Tensor:
        return u

    def in_domain(self, u: Tensor) -> Tensor:
        return u.abs() <= 0.5

    def activation(self, v: Tensor) -> Tensor:
        return 0.5 * torch.tanh(v)


F_DIVERGENCES: dict[str, FDivergence] = {
    d.name: d
    for d in (
        KullbackLeibler(),
        ReverseKullbackLeibler(),
        JensenShannon(),
        GANJensenShannon(),
        PearsonChiSquared(),
        SquaredHellinger(),
        TotalVariation(),
    )
}
"""Name -> instance, for the CLI and configs (``kl``, ``reverse_kl``, ``js``, ``gan``, …)."""


def variational_bound(divergence: FDivergence, t_p: Tensor, t_q: Tensor) -> Tensor:
    """The Fenchel lower bound mean(T(x_P)) − mean(f*(T(x_Q))) ≤ D_f(P ‖ Q).

    Args:
        divergence: the f-divergence.
        t_p: critic values T(x) ∈ dom(f*) on samples of P, shape (N,) (or any shape).
        t_q: critic values on samples of Q, shape (M,).

    Returns:
        A differentiable 0-dim tensor; its expectation equals D_f exactly when
        T = f'(p/q). An f-GAN critic maximises it; its generator minimises it.

    Reference: Nguyen, Wainwright & Jordan 2010; Nowozin et al. 2016, Eq. (4).
    """
    return t_p.mean() - divergence.f_star(t_q).mean()
