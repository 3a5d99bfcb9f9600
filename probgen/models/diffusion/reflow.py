"""Rectified-flow reflow and few-step distillation, and the straightness they improve.

**Straightness** of a flow dZ_t/dt = v(Z_t, t) (Z_1 ~ N(0, I) the noise, Z_0 the sample):

    S(v) = ∫_0^1 E‖(Z_1 − Z_0) − v(Z_t, t)‖² dt,

zero exactly when every trajectory is a straight line travelled at constant
speed, which one Euler step then integrates exactly (Liu et al. 2023, eq. (5)).

**Reflow** trains a new flow by flow matching on the old one's own pairs
(Z_0, Z_1) = (ODE(ε), ε): the coupling it induces is deterministic, so the
new flow's trajectories cross less and S decreases (Liu et al. 2023,
Theorem 3.6); the marginals are unchanged, since Z_0 follows the old model.

**Distillation** trains a student whose k Euler steps (DDIM with η = 0, which
on ``LinearPath`` is Euler) from ε reproduce the teacher's ODE sample Z_0:

    min_θ E‖Φ_θ^k(ε) − Z_0(ε)‖²,   Φ_θ^1(ε) = ε − v_θ(ε, 1)   (Liu et al. 2023, eq. (6)),

with the gradient through the k steps. The student is a sampler of its k-step
map, not a density: its ``log_prob`` raises ``IntractableLikelihood``
(``NoLikelihood``), as a GAN's does.

Both return a new ``Diffusion`` (a copy of the model, trained from its weights,
as Liu et al. do); the old model is not changed. They take the inner
``Diffusion`` of a data wrapper (``Standardized(...).model``), in its own
scale. Unconditional models only.

Reference: Liu, Gong & Liu (2023), "Flow straight and fast: learning to
generate and transfer data with rectified flow", Sections 2.2-2.3.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from probgen.core import IntractableLikelihood, InvalidInput, Likelihood
from probgen.models.diffusion.model import Diffusion, LikelihoodMethod
from probgen.models.diffusion.objectives import FlowMatching
from probgen.models.diffusion.parametrizations import Denoiser
from probgen.models.diffusion.samplers import (
    DDIM,
    DiffusionSampler,
    ProbabilityFlow,
    probability_flow_velocity,
)
from probgen.tensors import sum_events

__all__ = ["NoLikelihood", "distil", "flow_pairs", "reflow", "straightness"]


class NoLikelihood(LikelihoodMethod):
    """No density (a few-step generator): ``log_prob`` raises ``IntractableLikelihood``."""

    kind = Likelihood.NONE

    def __call__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        levels: int | None,
        generator: torch.Generator | None,
    ) -> Tensor:
        raise IntractableLikelihood(
            "a distilled few-step flow is a sampler: its k-step map has no tractable density"
        )


def straightness(denoiser: Denoiser, noise: Tensor, steps: int = 100) -> Tensor:
    """S per trajectory (B,) from ``noise`` (B, *event) at t = 1, on ``steps`` DDIM steps.

    The trajectory Z_{t_k} is the deterministic DDIM solve (Euler on
    ``LinearPath``); S is the Riemann sum Σ_k (t_k − t_{k+1}) ‖(Z_1 − Z_0) − v(Z_{t_k}, t_k)‖².
    """
    with torch.no_grad():
        run = DDIM().run(denoiser, noise, steps, record_every=1)
        states = torch.cat([noise[None], run.trajectory[:-1]])  # Z at t_0 … t_{K-1}
        displacement = noise - run.samples
        grid = denoiser.process.grid(steps, like=noise)
        total = torch.zeros(noise.shape[0], dtype=noise.dtype, device=noise.device)
        for (t, s), z in zip(itertools.pairwise(grid), states, strict=True):
            v = probability_flow_velocity(denoiser, z, t)
            total = total + (t - s) * sum_events((displacement - v).square())
    return total


def flow_pairs(
    model: Diffusion,
    n: int,
    sampler: DiffusionSampler | None = None,
    steps: int = 1,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """(Z_0, Z_1) (n, *event) each: n prior draws Z_1 = ε and the model's ODE samples Z_0.

    ``sampler`` (default ``ProbabilityFlow()``, adaptive RK45) must be deterministic.
    """
    if model.condition_spec is not None:
        raise InvalidInput("reflow: expected an unconditional model")
    if n < 1:
        raise InvalidInput(f"pairs: expected a positive integer, got {n}")
    like = model._like()
    noise = model.process.prior_sample((n, *model.event_shape), generator, like=like)
    sampler = sampler if sampler is not None else ProbabilityFlow()
    with torch.no_grad():
        x0 = sampler.run(model.denoiser, noise, steps, generator=generator).samples
    return x0, noise


def _fit(
    model: Diffusion,
    loss: Callable[[Tensor], Tensor],
    n: int,
    train_steps: int,
    batch_size: int,
    lr: float,
    generator: torch.Generator | None,
) -> None:
    """Adam with cosine decay on ``loss(rows)`` (B,) over random minibatches of n pairs."""
    if train_steps < 1 or batch_size < 1:
        raise InvalidInput(
            f"expected train_steps >= 1 and batch_size >= 1, got {train_steps}, {batch_size}"
        )
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(train_steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / train_steps))
        rows = torch.randint(0, n, (min(batch_size, n),), generator=generator)
        value = loss(rows).mean()
        opt.zero_grad()
        value.backward()
        opt.step()
    model.eval()


def reflow(
    model: Diffusion,
    pairs: int = 10_000,
    train_steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    sampler: DiffusionSampler | None = None,
    sample_steps: int = 1,
    generator: torch.Generator | None = None,
) -> Diffusion:
    """A new flow trained by flow matching on ``pairs`` (ODE(ε), ε) pairs of ``model``.

    The copy keeps ``model``'s objective, sampler and likelihood; only its
    weights are retrained (``FlowMatching.on_pairs``, uniform times and no bridge
    noise as in Liu et al. 2023, whatever time law ``model`` was trained with).
    """
    x0, noise = flow_pairs(model, pairs, sampler, sample_steps, generator)
    new = copy.deepcopy(model)
    objective = FlowMatching()

    def loss(rows: Tensor) -> Tensor:
        return objective.on_pairs(new.denoiser, x0[rows], noise[rows], generator)

    _fit(new, loss, pairs, train_steps, batch_size, lr, generator)
    return new


def distil(
    model: Diffusion,
    steps: int = 1,
    pairs: int = 10_000,
    train_steps: int = 2000,
    batch_size: int = 256,
    lr: float = 1e-3,
    sampler: DiffusionSampler | None = None,
    sample_steps: int = 1,
    generator: torch.Generator | None = None,
) -> Diffusion:
    """A ``steps``-step student of ``model``: its ``sample`` runs ``steps`` DDIM (Euler) steps.

    Trained on ``pairs`` teacher pairs (ODE(ε), ε) by ‖Φ_θ^k(ε) − Z_0‖², the
    gradient through the k steps. Its likelihood is ``NoLikelihood``.
    """
    if steps < 1:
        raise InvalidInput(f"steps: expected a positive integer, got {steps}")
    x0, noise = flow_pairs(model, pairs, sampler, sample_steps, generator)
    student = copy.deepcopy(model)
    student.sampler, student.steps = DDIM(), int(steps)
    student.likelihood_method = NoLikelihood()
    student.likelihood = Likelihood.NONE
    rollout = DDIM()

    def loss(rows: Tensor) -> Tensor:
        out = rollout.run(student.denoiser, noise[rows], steps).samples
        return sum_events((out - x0[rows]).square())

    _fit(student, loss, pairs, train_steps, batch_size, lr, generator)
    return student
