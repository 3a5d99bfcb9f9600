"""Likelihoods of a diffusion model: the probability-flow ODE (exact or Hutchinson) and the VLB.

**Probability-flow ODE.** Along dx/dt = v(x, t) = f x − ½ g² ŝ(x, t) the
instantaneous change of variables gives d log p_t(x_t)/dt = −∇·v(x_t, t), so

    log p_{t_min}(x) = log p_1(x_1) + ∫_{t_min}^1 ∇·v(x_t, t) dt,

solved jointly with x_t by torchdiffeq (adaptive RK45). The divergence is
exact (D autograd passes: ``ExactDivergence``, likelihood EXACT) or the
Hutchinson estimate εᵀ (∂v/∂x) ε with one probe ε per solve
(``HutchinsonDivergence``, unbiased: likelihood ESTIMATE).

**Variational bound.** On the grid 0 = t_0 < t_1 < … < t_K = 1 the reverse
chain p(x_{t_{k-1}} | x_{t_k}) = N(μ̃(x_{t_k}, x̂_0), σ̃² I) bounds

    −log p(x_0) ≤ L_VLB = KL(q(x_1|x_0) ‖ p_1)
                          + Σ_{k≥2} E_q KL(q(x_{t_{k-1}}|x_{t_k},x_0) ‖ p(x_{t_{k-1}}|x_{t_k}))
                          − E_q log p(x_0 | x_{t_1}),

each KL in closed form (``probgen.divergences.kl_diagonal_gaussian``) and each
expectation over x_{t_k} ~ q(x_{t_k} | x_0) by one draw.

References: Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural ordinary
differential equations"; Grathwohl, Chen, Bettencourt, Sutskever & Duvenaud
(2019), "FFJORD"; Hutchinson (1989), "A stochastic estimator of the trace of
the influence matrix for Laplacian smoothing splines"; Song et al. (2021),
"Score-based generative modeling through SDEs", Appendix D.2; Ho, Jain &
Abbeel (2020), "Denoising diffusion probabilistic models", eq. (5) and (13).
"""

from __future__ import annotations

import abc
import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from probgen.core import InvalidInput, Likelihood
from probgen.divergences import kl_diagonal_gaussian
from probgen.models.diffusion.parametrizations import Denoiser
from probgen.models.diffusion.samplers import probability_flow_velocity
from probgen.tensors import append_dims, flatten_events, log1mexp, sum_events

__all__ = [
    "DiscretizedGaussianDecoder",
    "Divergence",
    "ExactDivergence",
    "GaussianDecoder",
    "HutchinsonDivergence",
    "log_bin_mass",
    "ode_log_likelihood",
    "prior_term",
    "variational_bound",
    "vlb_term",
]


class Divergence(abc.ABC):
    """∇·v of a vector field v: (B, *event) -> (B, *event), per example (B,)."""

    kind: Likelihood

    def probe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor | None:
        """Random probe vectors drawn once per ODE solve (None when not needed)."""
        return None

    @abc.abstractmethod
    def __call__(
        self, v: Tensor, x: Tensor, probe: Tensor | None, create_graph: bool = False
    ) -> Tensor:
        """The divergence at ``x`` (which requires grad) of ``v`` = v(x), shape (B,);
        differentiable itself with ``create_graph``."""


class ExactDivergence(Divergence):
    """∇·v = Σ_d ∂v_d/∂x_d by D reverse-mode passes; exact, for low dimension."""

    kind = Likelihood.EXACT

    def __call__(
        self, v: Tensor, x: Tensor, probe: Tensor | None, create_graph: bool = False
    ) -> Tensor:
        flat = flatten_events(v)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for d in range(flat.shape[1]):
            (grad,) = torch.autograd.grad(
                flat[:, d].sum(), x, retain_graph=True, create_graph=create_graph
            )
            div = div + flatten_events(grad)[:, d]
        return div


class HutchinsonDivergence(Divergence):
    """∇·v ≈ εᵀ (∂v/∂x) ε with E[ε εᵀ] = I, one vector-Jacobian product; unbiased.

    Probes are Rademacher (±1, the lower-variance choice) or, with
    ``gaussian=True``, standard normal.
    """

    kind = Likelihood.ESTIMATE

    def __init__(self, gaussian: bool = False) -> None:
        self.gaussian = gaussian

    def probe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return z if self.gaussian else torch.sign(z)

    def __call__(
        self, v: Tensor, x: Tensor, probe: Tensor | None, create_graph: bool = False
    ) -> Tensor:
        if probe is None:
            raise InvalidInput("HutchinsonDivergence: a probe is required")
        (vjp,) = torch.autograd.grad(v, x, grad_outputs=probe, create_graph=create_graph)
        return sum_events(vjp * probe)


def ode_log_likelihood(
    denoiser: Denoiser,
    x: Tensor,
    divergence: Divergence | None = None,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    generator: torch.Generator | None = None,
    prior_log_prob: Callable[[Tensor], Tensor] | None = None,
    grad: bool = False,
) -> Tensor:
    """log p_{t_min}(x) through the probability-flow ODE, (B, *event) -> (B,).

    ``divergence`` defaults to ``ExactDivergence()``; with
    ``HutchinsonDivergence`` the result is an unbiased estimate (one probe per
    example, fixed along the solve). ``prior_log_prob`` is log p_1, by default
    the process's N(0, prior_std² I) (the true p_1 only up to α_1 x_0 ≈ 0;
    exact on ``LinearPath``). The result is detached unless ``grad``: then it
    is differentiated through the solver's steps (direct backpropagation through
    torchdiffeq, with the divergence's own graph), in x and in the network's
    parameters, at the memory of every step's graph.
    """
    divergence = divergence if divergence is not None else ExactDivergence()
    process = denoiser.process
    probe = divergence.probe(x, generator)

    def dynamics(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            y = state[0] if grad and state[0].requires_grad else state[0].detach()
            y = y if y.requires_grad else y.requires_grad_(True)
            # with grad, per-example times keep the path through t: the solver's step times
            # depend on x, and cutting them off in v but not in the update biases the gradient
            time = t.to(y.dtype).expand(y.shape[0]) if grad else t.to(y.dtype)
            v = probability_flow_velocity(denoiser, y, time)
            div = divergence(v, y, probe, create_graph=grad)
        return (v, div) if grad else (v.detach(), div.detach())

    start = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    times = torch.tensor([process.t_min, 1.0], dtype=x.dtype, device=x.device)
    state = (x if grad else x.detach(), start)
    x1, integral = odeint(dynamics, state, times, rtol=rtol, atol=atol, method=method)
    prior_log_prob = prior_log_prob if prior_log_prob is not None else process.prior_log_prob
    return prior_log_prob(x1[-1]) + integral[-1]


class GaussianDecoder:
    """−log N(x_0; μ, σ² I) summed over events: the decoder term for continuous data."""

    def __call__(self, x0: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """x0, mean (B, *event); std (B,) -> (B,)."""
        z = (x0 - mean) / append_dims(std, x0.dim())
        d = x0[0].numel()
        return 0.5 * sum_events(z.square()) + d * (std.log() + 0.5 * math.log(2 * math.pi))


class DiscretizedGaussianDecoder:
    """−log P(x_0) of a Gaussian integrated over the bin of each of K levels (Ho et al. eq. 13).

    Data in levels {0, …, K-1} are represented by bin centres c = (2x + 1)/K − 1
    in [-1, 1]; the bin is [c − 1/K, c + 1/K], with the outermost edges at ±∞
    so the K probabilities sum to one: P = Φ(b) − Φ(a), a = (c − 1/K − μ)/σ,
    b = (c + 1/K − μ)/σ.

    Computed in log space, finite in float32 as in float64 (``log_bin_mass``):
    no probability is formed and floored (a floor of 1e-300 is 0 in float32).

    Reference: Ho, Jain & Abbeel (2020), "Denoising diffusion probabilistic models".
    """

    def __init__(self, levels: int) -> None:
        if levels < 2:
            raise InvalidInput(f"levels: expected >= 2, got {levels}")
        self.levels = int(levels)

    def __call__(self, x0: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """x0 (bin centres), mean (B, *event); std (B,) -> (B,)."""
        half = 1.0 / self.levels
        s = append_dims(std, x0.dim())
        upper = torch.where(x0 > 1 - 2 * half, math.inf, (x0 + half - mean) / s)
        lower = torch.where(x0 < -1 + 2 * half, -math.inf, (x0 - half - mean) / s)
        return -sum_events(log_bin_mass(lower, upper))


def log_bin_mass(a: Tensor, b: Tensor) -> Tensor:
    """log(Φ(b) − Φ(a)) for a ≤ b (either may be infinite), accurate in any float dtype.

    Φ(b) − Φ(a) = Φ(−a) − Φ(−b), so a bin right of 0 is first mirrored to the
    left (lo, hi) = (−b, −a); then lo ≤ 0, where log Φ (``log_ndtr``) keeps
    full relative precision, and

        direct:    log P = log Φ(hi) + log(1 − e^{−d}),  d = log Φ(hi) − log Φ(lo) ≥ 0,

    with ``log1mexp`` for the second term. Its one weakness is a narrow bin,
    where d is the small difference of two larger numbers: the rounding of
    log Φ, about eps·(|log Φ(lo)| + |log Φ(hi)|), becomes a relative error of
    that over d in P. There the midpoint rule with its first correction is better:

        midpoint:  log P = log φ(m) + log w + log(1 + w²(m² − 1)/24),
                   m = (lo + hi)/2,  w = hi − lo

    (φ's Taylor series about m integrated over the bin, φ'' = (m² − 1)φ),
    whose relative error is the next term, w⁴(m⁴ − 6m² + 3)/1920, at most
    w⁴(m⁴ + 6m² + 3)/1920. Each bin takes the form with the
    smaller of the two error bounds; this is the fallback of PixelCNN++ when
    the CDF difference underflows, chosen by error instead of by a threshold.
    Both forms are evaluated on safe arguments, so gradients stay finite.
    Shapes: a, b any (same) shape; the result has it too.
    """
    flip = a > 0
    lo, hi = torch.where(flip, -b, a), torch.where(flip, -a, b)
    log_lo, log_hi = torch.special.log_ndtr(lo), torch.special.log_ndtr(hi)
    d = log_hi - log_lo
    finite = torch.isfinite(lo) & torch.isfinite(hi)
    eps = torch.finfo(lo.dtype).eps
    width = torch.where(finite, hi - lo, torch.ones_like(lo))
    mid = torch.where(finite, 0.5 * (lo + hi), torch.zeros_like(lo))
    w2, m2 = width.square(), mid.square()
    mid_error = w2.square() * (3 + 6 * m2 + m2.square()) / 1920
    direct_error = (
        eps
        * (1 + log_lo.abs().nan_to_num(posinf=0.0) + log_hi.abs())
        / d.clamp_min(torch.finfo(lo.dtype).tiny)
    )
    use_mid = finite & (mid_error < direct_error)
    direct = log_hi + log1mexp(torch.where(use_mid, torch.ones_like(d), d))
    midpoint = (
        -0.5 * m2 - 0.5 * math.log(2 * math.pi) + width.log() + torch.log1p(w2 * (m2 - 1) / 24)
    )
    return torch.where(use_mid, midpoint, direct)


def vlb_term(
    denoiser: Denoiser,
    x0: Tensor,
    t: Tensor,
    s: Tensor,
    decoder: GaussianDecoder | DiscretizedGaussianDecoder,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One term of L_VLB per example for transitions t → s < t (B,): a KL, or the decoder at s = 0.

    Draws x_t ~ q(x_t | x_0) once; the reverse step is N(μ̃(x_t, x̂_0), σ̃² I)
    and, into s = 0 where σ̃ = 0, the decoder with the forward std σ_{t|0}.
    """
    process = denoiser.process
    noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x_t = process.marginal(x0, t, noise)
    pred = denoiser(x_t, t)
    mean_q, std = process.posterior(x_t, x0, t, s)
    mean_p, _ = process.posterior(x_t, pred.data, t, s)
    first = s <= 0
    safe_std = torch.where(first, torch.ones_like(std), std)
    kl = kl_diagonal_gaussian(
        mean_q, append_dims(safe_std, x0.dim()), mean_p, append_dims(safe_std, x0.dim())
    )
    decoder_std = process.transition(t, s)[1]
    nll = decoder(x0, mean_p, torch.where(first, decoder_std, torch.ones_like(std)))
    return torch.where(first, nll, kl)


def variational_bound(
    denoiser: Denoiser,
    x0: Tensor,
    steps: int,
    decoder: GaussianDecoder | DiscretizedGaussianDecoder | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L_VLB ≥ −log p(x_0) per example (B,) in nats, on the process's grid of ``steps`` intervals.

    The prior term KL(q(x_1 | x_0) ‖ N(0, prior_std² I)) plus every ``vlb_term``.
    """
    process = denoiser.process
    decoder = decoder if decoder is not None else GaussianDecoder()
    total = prior_term(denoiser, x0)
    grid = process.grid(steps, like=x0)
    for t, s in itertools.pairwise(grid):
        b = x0.shape[0]
        total = total + vlb_term(denoiser, x0, t.expand(b), s.expand(b), decoder, generator)
    return total


def prior_term(denoiser: Denoiser, x0: Tensor) -> Tensor:
    """KL(q(x_1 | x_0) ‖ N(0, prior_std² I)) per example (B,)."""
    process = denoiser.process
    one = torch.ones(x0.shape[0], dtype=x0.dtype, device=x0.device)
    alpha, sigma = process.alpha_sigma(one)
    n = x0.dim()
    return kl_diagonal_gaussian(
        append_dims(alpha, n) * x0, append_dims(sigma, n).expand_as(x0), 0.0, process.prior_std()
    )
