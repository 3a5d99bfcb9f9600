"""Forward noising processes: one abstraction t -> (α_t, σ_t) from which everything follows.

A process perturbs data x_0 by q(x_t | x_0) = N(α_t x_0, σ_t² I) for t ∈ [0, 1].
Every such marginal is that of the linear SDE

    dx = f(t) x dt + g(t) dW,   f(t) = d log α_t / dt,   g(t)² = dσ_t²/dt − 2 f(t) σ_t²,

so a process only states its schedule (α_t, σ_t); the rates (α̇_t, σ̇_t) (the
velocity v = α̇_t x_0 + σ̇_t ε of the path) and the drift and diffusion come
from its derivative by autograd (or a closed form), and the transitions
q(x_t | x_s), the posteriors q(x_s | x_t, x_0), the prior and the time grids
of the samplers are generic. A new process is a new schedule, nothing else:
the linear path of flow matching and rectified flow, α_t = 1 − t, σ_t = t
(``LinearPath``), is one more instance beside VP, sub-VP, VE and the DDPM chain.

Convention: t = 0 is data and t = 1 is noise (the diffusion convention; flow
matching papers often run time the other way).

Per-example times t are tensors (B,); coefficients come back as (B,) and are
broadcast over events of any shape with ``append_dims``.

References: Song, Sohl-Dickstein, Kingma, Kumar, Ermon & Poole (2021),
"Score-based generative modeling through stochastic differential equations";
Kingma, Salimans, Poole & Ho (2021), "Variational diffusion models", eq. (1)-(4);
Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic models";
Lipman, Chen, Ben-Hamu, Nickel & Le (2023), "Flow matching for generative modeling";
Liu, Gong & Liu (2023), "Flow straight and fast: learning to generate and transfer
data with rectified flow".
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.tensors import append_dims, sum_events

__all__ = [
    "DDPMChain",
    "ForwardProcess",
    "LinearPath",
    "SubVariancePreserving",
    "VarianceExploding",
    "VariancePreserving",
]


class ForwardProcess(nn.Module, abc.ABC):
    """A Gaussian forward process q(x_t | x_0) = N(α_t x_0, σ_t² I), t ∈ [0, 1].

    Subclasses implement ``alpha_sigma``; the rest is derived. ``t_min`` is
    the smallest time at which a network is trained and evaluated (scores
    blow up as σ_t → 0); samplers stop the network there.
    """

    def __init__(self, t_min: float) -> None:
        super().__init__()
        if not 0.0 < t_min < 1.0:
            raise InvalidInput(f"t_min: expected a number in (0, 1), got {t_min}")
        self.t_min = float(t_min)

    @abc.abstractmethod
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(α_t, σ_t) for times t of any shape, differentiable in t."""

    def rates(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(α̇_t, σ̇_t) = (dα/dt, dσ/dt) for times t of any shape, shaped as t.

        By autograd (the schedule is elementwise in t, so the gradient of the
        sum is the derivative); processes with a closed form override it.
        """
        with torch.enable_grad():
            t = t.detach().requires_grad_(True)
            alpha, sigma = self.alpha_sigma(t)
            return _derivative(alpha, t).detach(), _derivative(sigma, t).detach()

    def rates_at(self, t: float) -> tuple[float, float]:
        """(α̇_t, σ̇_t) at one time as Python floats, in float64 from ``rates``."""
        d_alpha, d_sigma = self.rates(torch.tensor(t, dtype=torch.float64))
        return d_alpha.item(), d_sigma.item()

    def drift_diffusion(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(f(t), g(t)²) of the SDE dx = f(t) x dt + g(t) dW with the same marginals, shaped as t.

        f = α̇/α and g² = 2 σ σ̇ − 2 f σ², with (α̇, σ̇) from ``rates``.
        """
        alpha, sigma = (v.detach() for v in self.alpha_sigma(t.detach()))
        d_alpha, d_sigma = self.rates(t)
        f = d_alpha / alpha
        return f, 2.0 * sigma * d_sigma - 2.0 * f * sigma.square()

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        """(α_t, σ_t) at one time as Python floats: the per-step coefficients of the samplers.

        Computed in float64 from ``alpha_sigma``; processes with a closed form override it.
        """
        alpha, sigma = self.alpha_sigma(torch.tensor(t, dtype=torch.float64))
        return alpha.item(), sigma.item()

    def drift_diffusion_at(self, t: float) -> tuple[float, float]:
        """(f(t), g(t)²) at one time as Python floats; see ``drift_diffusion``."""
        f, g2 = self.drift_diffusion(torch.tensor(t, dtype=torch.float64))
        return f.item(), g2.item()

    def posterior_coefficients(self, t: float, s: float) -> tuple[float, float, float]:
        """(c_t, c_0, σ̃) of q(x_s | x_t, x_0) = N(c_t x_t + c_0 x_0, σ̃² I) at one pair s < t.

        The float form of ``posterior``: c_t = α_{t|s} σ_s² / σ_t²,
        c_0 = α_s σ_{t|s}² / σ_t², σ̃ = σ_{t|s} σ_s / σ_t.
        """
        alpha_t, sigma_t = self.alpha_sigma_at(t)
        alpha_s, sigma_s = self.alpha_sigma_at(s)
        ratio = alpha_t / alpha_s
        var_ts = max(sigma_t**2 - ratio**2 * sigma_s**2, 0.0)
        var_t = sigma_t**2
        return (
            ratio * sigma_s**2 / var_t,
            alpha_s * var_ts / var_t,
            math.sqrt(var_ts) * sigma_s / sigma_t,
        )

    def marginal(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = α_t x_0 + σ_t ε for x_0, ε (B, *event) and t (B,)."""
        alpha, sigma = self.alpha_sigma(t)
        return append_dims(alpha, x0.dim()) * x0 + append_dims(sigma, x0.dim()) * noise

    def marginal_and_velocity(self, x0: Tensor, t: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """(x_t, u_t) = (α_t x_0 + σ_t ε, α̇_t x_0 + σ̇_t ε) for x_0, ε (B, *event), t (B,).

        The point of the conditional path and its velocity, what flow matching
        regresses on, from one evaluation of (α_t, σ_t) and (α̇_t, σ̇_t).
        """
        n = x0.dim()
        alpha, sigma = (append_dims(c, n) for c in self.alpha_sigma(t))
        d_alpha, d_sigma = (append_dims(c, n) for c in self.rates(t))
        return alpha * x0 + sigma * noise, d_alpha * x0 + d_sigma * noise

    def transition(self, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """(α_{t|s}, σ_{t|s}) of q(x_t | x_s) = N(α_{t|s} x_s, σ_{t|s}² I) for s < t.

        α_{t|s} = α_t / α_s and σ_{t|s}² = σ_t² − α_{t|s}² σ_s².
        """
        return _transition(*self.alpha_sigma(t), *self.alpha_sigma(s))

    def posterior(self, x_t: Tensor, x0: Tensor, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (B, *event) and std (B,) of q(x_s | x_t, x_0) for s < t.

            μ̃ = α_{t|s} σ_s² / σ_t² · x_t + α_s σ_{t|s}² / σ_t² · x_0,
            σ̃² = σ_{t|s}² σ_s² / σ_t²;

        on the DDPM grid this is Ho et al. (2020) eq. (6)-(7).
        """
        alpha_t, sigma_t = self.alpha_sigma(t)
        alpha_s, sigma_s = self.alpha_sigma(s)
        ratio, sigma_ts = _transition(alpha_t, sigma_t, alpha_s, sigma_s)
        var_t = sigma_t.square()
        c_t = ratio * sigma_s.square() / var_t
        c_0 = alpha_s * sigma_ts.square() / var_t
        n = x_t.dim()
        mean = append_dims(c_t, n) * x_t + append_dims(c_0, n) * x0
        return mean, sigma_ts * sigma_s / sigma_t

    def prior_std(self) -> float:
        """Std of the prior p_1 = N(0, (α_1² + σ_1²) I), p_1 for unit-variance data."""
        alpha, sigma = self.alpha_sigma(torch.ones((), dtype=torch.float64))
        return math.sqrt(alpha.item() ** 2 + sigma.item() ** 2)

    def prior_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        *,
        like: Tensor,
    ) -> Tensor:
        """x_1 ~ N(0, prior_std² I) of ``shape`` (B, *event), on ``like``'s device and dtype."""
        z = torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)
        return self.prior_std() * z

    def prior_log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, prior_std² I) summed over events: (B, *event) -> (B,)."""
        std = self.prior_std()
        d = x[0].numel()
        return -0.5 * sum_events(x.square()) / std**2 - d * (
            math.log(std) + 0.5 * math.log(2 * math.pi)
        )

    def sample_times(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        like: Tensor,
        power: float = 1.0,
    ) -> Tensor:
        """Training times t = t_min + (1 − t_min) u^k, u ~ U[0, 1], k = ``power``; shape (n,).

        k = 1 is uniform on [t_min, 1]. For k > 1, (t − t_min)/(1 − t_min) ~ Beta(1/k, 1),
        density (1/k) s^{1/k − 1}: more training times near t_min (the data end), where
        the marginal velocity of a multimodal law changes fastest, and fewer near the
        noise end; P(t − t_min ≤ s (1 − t_min)) = s^{1/k}. Any k > 0 keeps a positive
        density on (t_min, 1], so the minimiser of a time-weighted regression is unchanged.
        """
        u = torch.rand(n, generator=generator, dtype=like.dtype, device=like.device)
        if power != 1.0:
            u = u.pow(power)
        return self.t_min + (1.0 - self.t_min) * u

    def grid(self, steps: int, *, like: Tensor) -> Tensor:
        """Sampler times 1 = t_0 > t_1 > … > t_steps = 0, shape (steps + 1,)."""
        if steps < 1:
            raise InvalidInput(f"steps: expected a positive integer, got {steps}")
        return torch.linspace(1.0, 0.0, steps + 1, dtype=like.dtype, device=like.device)


def _transition(
    alpha_t: Tensor, sigma_t: Tensor, alpha_s: Tensor, sigma_s: Tensor
) -> tuple[Tensor, Tensor]:
    """(α_{t|s}, σ_{t|s}) from the marginal coefficients at t and s."""
    ratio = alpha_t / alpha_s
    return ratio, (sigma_t.square() - ratio.square() * sigma_s.square()).clamp_min(0.0).sqrt()


def _derivative(y: Tensor, t: Tensor) -> Tensor:
    """dy/dt of an elementwise function y(t); zero where y does not depend on t."""
    if not y.requires_grad:
        return torch.zeros_like(t)
    (grad,) = torch.autograd.grad(y.sum(), t, retain_graph=True)
    return grad


class VariancePreserving(ForwardProcess):
    """VP SDE, the continuous limit of DDPM: dx = −½ β(t) x dt + √β(t) dW.

    β(t) = β_min + t (β_max − β_min), α_t = exp(−½ ∫_0^t β), σ_t² = 1 − α_t².

    Reference: Song et al. (2021), "Score-based generative modeling through SDEs", eq. (11).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, t_min: float = 1e-3) -> None:
        super().__init__(t_min)
        if not 0.0 < beta_min <= beta_max:
            raise InvalidInput(f"expected 0 < beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def integral(self, t: Tensor | float) -> Tensor | float:
        """∫_0^t β(u) du = β_min t + ½ t² (β_max − β_min), for a tensor or a float t."""
        return self.beta_min * t + 0.5 * t * t * (self.beta_max - self.beta_min)

    def beta(self, t: Tensor | float) -> Tensor | float:
        """β(t) = β_min + t (β_max − β_min), for a tensor or a float t."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        b = self.integral(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        b = self.integral(t)
        return math.exp(-0.5 * b), math.sqrt(-math.expm1(-b))

    def rates(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """α̇ = −½ β α and σ̇ = ½ β α² / σ (σ² = 1 − α²)."""
        alpha, sigma = self.alpha_sigma(t)
        beta = self.beta(t)
        return -0.5 * beta * alpha, 0.5 * beta * alpha.square() / sigma

    def rates_at(self, t: float) -> tuple[float, float]:
        alpha, sigma = self.alpha_sigma_at(t)
        beta = self.beta(t)
        return -0.5 * beta * alpha, 0.5 * beta * alpha * alpha / sigma

    def drift_diffusion_at(self, t: float) -> tuple[float, float]:
        """f = −½ β(t), g² = β(t)."""
        beta = self.beta(t)
        return -0.5 * beta, beta


class SubVariancePreserving(VariancePreserving):
    """sub-VP SDE: dx = −½ β x dt + √(β (1 − e^{−2∫β})) dW; σ_t = 1 − α_t² ≤ the VP's.

    Reference: Song et al. (2021), "Score-based generative modeling through SDEs", eq. (13).
    """

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        b = self.integral(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        b = self.integral(t)
        return math.exp(-0.5 * b), -math.expm1(-b)

    def rates(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """α̇ = −½ β α and σ̇ = β α² (σ = 1 − α²)."""
        alpha = self.alpha_sigma(t)[0]
        beta = self.beta(t)
        return -0.5 * beta * alpha, beta * alpha.square()

    def rates_at(self, t: float) -> tuple[float, float]:
        alpha = self.alpha_sigma_at(t)[0]
        beta = self.beta(t)
        return -0.5 * beta * alpha, beta * alpha * alpha

    def drift_diffusion_at(self, t: float) -> tuple[float, float]:
        """f = −½ β(t), g² = β(t) (1 − e^{−2∫β})."""
        beta = self.beta(t)
        return -0.5 * beta, beta * -math.expm1(-2.0 * self.integral(t))


class VarianceExploding(ForwardProcess):
    """VE SDE (NCSN's continuous limit): α_t = 1, σ_t = σ_min (σ_max / σ_min)^t.

    dx = σ_t √(2 log(σ_max/σ_min)) dW. σ_max should exceed the largest distance between
    data points (Song & Ermon 2020, "Improved techniques for training score-based
    generative models"), else the N(0, σ_max² I) prior misses the data's offset.

    Reference: Song et al. (2021), "Score-based generative modeling through SDEs", eq. (9);
    Song & Ermon (2019), "Generative modeling by estimating gradients of the data distribution".
    """

    def __init__(
        self, sigma_min: float = 0.01, sigma_max: float = 50.0, t_min: float = 1e-5
    ) -> None:
        super().__init__(t_min)
        if not 0.0 < sigma_min < sigma_max:
            raise InvalidInput(f"expected 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        sigma = self.sigma_min * torch.exp(t * math.log(self.sigma_max / self.sigma_min))
        return torch.ones_like(t), sigma

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        return 1.0, self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def rates(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """α̇ = 0 and σ̇ = σ_t log(σ_max / σ_min)."""
        sigma = self.alpha_sigma(t)[1]
        return torch.zeros_like(t), sigma * math.log(self.sigma_max / self.sigma_min)

    def rates_at(self, t: float) -> tuple[float, float]:
        return 0.0, self.alpha_sigma_at(t)[1] * math.log(self.sigma_max / self.sigma_min)

    def drift_diffusion_at(self, t: float) -> tuple[float, float]:
        """f = 0, g² = dσ²/dt = 2 σ_t² log(σ_max / σ_min)."""
        sigma = self.alpha_sigma_at(t)[1]
        return 0.0, 2.0 * sigma**2 * math.log(self.sigma_max / self.sigma_min)


class DDPMChain(ForwardProcess):
    """The discrete DDPM chain q(x_n | x_{n-1}) = N(√(1 − β_n) x_{n-1}, β_n I), n = 1…N.

    Closed form q(x_n | x_0) = N(√ᾱ_n x_0, (1 − ᾱ_n) I) with ᾱ_n = Π_{i≤n} (1 − β_i).
    Step n sits at time t = n / N; between grid times log ᾱ is a cubic Hermite
    interpolant (knot slopes: the mean of the neighbouring differences), so
    the drift f(t) is continuous and adaptive ODE solvers do not stall at
    1000 kinks; at grid times it is the chain exactly. The tables ``betas``
    (N,), ``log_alpha_bar`` (N + 1,) and ``slopes`` (N + 1,) are computed in
    float64 and stored as buffers.

    Reference: Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic
    models", eq. (2)-(4); Nichol & Dhariwal (2021), "Improved denoising
    diffusion probabilistic models", eq. (17) for the cosine schedule.
    """

    def __init__(self, betas: Tensor) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.dim() != 1 or len(betas) < 1 or not ((betas > 0) & (betas < 1)).all():
            raise InvalidInput("betas: expected a 1-D tensor of values in (0, 1)")
        super().__init__(t_min=1.0 / len(betas))
        log_alpha_bar = torch.cat([betas.new_zeros(1), torch.cumsum(torch.log1p(-betas), 0)])
        steps = torch.log1p(-betas)  # log ᾱ_n − log ᾱ_{n-1}, per unit of n
        slopes = torch.cat([steps[:1], 0.5 * (steps[:-1] + steps[1:]), steps[-1:]])
        dtype = torch.get_default_dtype()
        self.register_buffer("betas", betas.to(dtype))
        self.register_buffer("log_alpha_bar", log_alpha_bar.to(dtype))
        self.register_buffer("slopes", slopes.to(dtype))
        self._tables_as_floats()
        self.register_load_state_dict_post_hook(lambda module, keys: module._tables_as_floats())

    def _tables_as_floats(self) -> None:
        """Python copies of log ᾱ and the knot slopes, for the per-step float coefficients."""
        self._table: list[float] = self.log_alpha_bar.tolist()
        self._slopes: list[float] = self.slopes.tolist()

    @property
    def steps(self) -> int:
        """N, the number of steps of the chain."""
        return len(self._table) - 1

    @classmethod
    def linear(cls, steps: int = 1000, beta_1: float = 1e-4, beta_n: float = 0.02) -> DDPMChain:
        """β_n linear from β_1 to β_N (Ho et al. 2020's 1e-4 … 0.02 for N = 1000)."""
        return cls(torch.linspace(beta_1, beta_n, steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> DDPMChain:
        """ᾱ_n = h(n/N) / h(0), h(u) = cos²(π/2 (u + s)/(1 + s)); β_n = 1 − ᾱ_n/ᾱ_{n-1} ≤ 0.999."""
        u = torch.arange(steps + 1, dtype=torch.float64) / steps
        h = torch.cos(0.5 * math.pi * (u + offset) / (1 + offset)).square()
        betas = (1.0 - h[1:] / h[:-1]).clamp(max=max_beta)
        return cls(betas)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        table, slopes = self.log_alpha_bar.to(t.dtype), self.slopes.to(t.dtype)
        pos = t * self.steps
        index = pos.detach().floor().clamp(0, self.steps - 1).long()
        w = pos - index.to(t.dtype)
        w2, w3 = w.square(), w.pow(3)
        log_ab = (  # cubic Hermite basis h00, h10, h01, h11 on [n, n + 1]
            (2 * w3 - 3 * w2 + 1) * table[index]
            + (w3 - 2 * w2 + w) * slopes[index]
            + (3 * w2 - 2 * w3) * table[index + 1]
            + (w3 - w2) * slopes[index + 1]
        )
        return torch.exp(0.5 * log_ab), torch.sqrt(-torch.expm1(log_ab))

    def _log_alpha_bar_at(self, t: float) -> tuple[float, float]:
        """(log ᾱ(t), d log ᾱ/dt) of the same interpolant at one time, in Python floats."""
        table, slopes = self._table, self._slopes
        n = len(table) - 1
        pos = t * n
        i = min(max(math.floor(pos), 0), n - 1)
        w = pos - i
        w2, w3 = w * w, w * w * w
        y0, y1, m0, m1 = table[i], table[i + 1], slopes[i], slopes[i + 1]
        value = (2 * w3 - 3 * w2 + 1) * y0 + (w3 - 2 * w2 + w) * m0
        value += (3 * w2 - 2 * w3) * y1 + (w3 - w2) * m1
        slope = (6 * w2 - 6 * w) * (y0 - y1) + (3 * w2 - 4 * w + 1) * m0 + (3 * w2 - 2 * w) * m1
        return value, n * slope

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        log_ab = self._log_alpha_bar_at(t)[0]
        return math.exp(0.5 * log_ab), math.sqrt(-math.expm1(log_ab))

    def drift_diffusion_at(self, t: float) -> tuple[float, float]:
        """f = ½ d log ᾱ/dt and g² = −d log ᾱ/dt (σ² = 1 − ᾱ)."""
        slope = self._log_alpha_bar_at(t)[1]
        return 0.5 * slope, -slope

    def rates_at(self, t: float) -> tuple[float, float]:
        """α̇ = ½ (log ᾱ)' α and σ̇ = −½ (log ᾱ)' ᾱ / σ."""
        log_ab, slope = self._log_alpha_bar_at(t)
        alpha, sigma = math.exp(0.5 * log_ab), math.sqrt(-math.expm1(log_ab))
        return 0.5 * slope * alpha, -0.5 * slope * alpha * alpha / sigma

    def sample_times(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        like: Tensor,
        power: float = 1.0,
    ) -> Tensor:
        """Training times t = n/N with n ~ U{1, …, N}, shape (n,); the chain has no other law."""
        if power != 1.0:
            raise InvalidInput(
                f"time power: the DDPM chain samples its N grid times uniformly, got {power}"
            )
        k = torch.randint(1, self.steps + 1, (n,), generator=generator, device=like.device)
        return k.to(like.dtype) / self.steps

    def grid(self, steps: int, *, like: Tensor) -> Tensor:
        """``steps`` + 1 distinct grid times n/N from 1 to 0 (evenly spaced n); steps ≤ N."""
        if not 1 <= steps <= self.steps:
            raise InvalidInput(f"steps: expected an integer in [1, {self.steps}], got {steps}")
        n = torch.linspace(self.steps, 0, steps + 1, dtype=torch.float64).round()
        return (n / self.steps).to(dtype=like.dtype, device=like.device)


class LinearPath(ForwardProcess):
    """The linear (rectified-flow) path x_t = (1 − t) x_0 + t ε: α_t = 1 − t, σ_t = t.

    Its conditional velocity is constant along each path, v = α̇ x_0 + σ̇ ε = ε − x_0,
    and p_1 = N(0, I) exactly (α_1 = 0), so the ODE likelihood has no prior
    mismatch. ``alpha_end`` = a > 0 gives α_t = 1 − (1 − a) t instead (the path
    ends at a x_0 + ε): the SDE with these marginals has f = α̇/α and
    g² = 2 σ σ̇ − 2 f σ², which for a = 0 diverge at t = 1 (the reverse-SDE
    samplers then need a > 0, as VP's α_1 ≈ 0.007 > 0; ODE samplers and the
    ODE likelihood do not). Noise and score predictions are singular where
    α_t = 0 (x̂_0 = (x − σ ε̂)/α); velocity and data predictions are not.

    Reference: Lipman et al. (2023), "Flow matching for generative modeling",
    eq. (20)-(23) (σ_min = 0); Liu, Gong & Liu (2023), "Flow straight and fast";
    Albergo & Vanden-Eijnden (2023), "Building normalizing flows with stochastic
    interpolants".
    """

    def __init__(self, alpha_end: float = 0.0, t_min: float = 1e-4) -> None:
        super().__init__(t_min)
        if not 0.0 <= alpha_end < 1.0:
            raise InvalidInput(f"alpha_end: expected a number in [0, 1), got {alpha_end}")
        self.alpha_end = float(alpha_end)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return 1.0 - (1.0 - self.alpha_end) * t, t.clone()

    def alpha_sigma_at(self, t: float) -> tuple[float, float]:
        return 1.0 - (1.0 - self.alpha_end) * t, t

    def rates(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """α̇ = −(1 − a), σ̇ = 1."""
        return torch.full_like(t, self.alpha_end - 1.0), torch.ones_like(t)

    def rates_at(self, t: float) -> tuple[float, float]:
        return self.alpha_end - 1.0, 1.0

    def marginal_and_velocity(self, x0: Tensor, t: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """u_t = ε − (1 − a) x_0 is constant in t and x_t = x_0 + t u_t (the path is
        affine in t from x_0): two fused kernels instead of the generic six."""
        velocity = torch.add(noise, x0, alpha=self.alpha_end - 1.0)
        return torch.addcmul(x0, append_dims(t, x0.dim()), velocity), velocity

    def drift_diffusion_at(self, t: float) -> tuple[float, float]:
        """f = α̇/α, g² = 2 σ σ̇ − 2 f σ²; an error where α_t = 0 (t = 1 with a = 0)."""
        alpha, sigma = self.alpha_sigma_at(t)
        if alpha <= 0.0:
            raise InvalidInput(
                "LinearPath: the SDE of the path is singular at t = 1 (α_1 = 0); sample with an "
                "ODE sampler (probability_flow, ddim) or use LinearPath(alpha_end > 0)"
            )
        f = (self.alpha_end - 1.0) / alpha
        return f, 2.0 * sigma - 2.0 * f * sigma * sigma
