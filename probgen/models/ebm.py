"""Energy-based model trained by contrastive divergence with persistent Langevin chains."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.distributions import DiagonalGaussian
from probgen.nn.mlp import MLP
from probgen.sampling import Energy, Kernel, Langevin, SampleResult
from probgen.tensors import append_dims

__all__ = ["EBM", "contrastive_loss"]


def contrastive_loss(e_data: Tensor, e_negative: Tensor, alpha: float = 0.0) -> Tensor:
    """The contrastive-divergence objective with an energy-magnitude regulariser.

        L(θ) = mean_b E_θ(x⁺_b) − mean_b E_θ(x⁻_b) + α · mean_b (E_θ(x⁺_b)² + E_θ(x⁻_b)²).

    With x⁺ ~ p_data and x⁻ ~ p_θ held fixed (detached), ∇_θ L (α = 0) is an
    unbiased estimate of E_pdata[∇_θ E_θ] − E_pθ[∇_θ E_θ] = ∇_θ E_pdata[−log p_θ(x)],
    the gradient of the negative log-likelihood, because ∇_θ log Z_θ = −E_pθ[∇_θ E_θ].

    Args:
        e_data: E_θ(x⁺), shape (B,).
        e_negative: E_θ(x⁻), shape (M,).
        alpha: α ≥ 0, weight of the regulariser that keeps energies near 0.

    Reference: Hinton (2002), "Training products of experts by minimizing
    contrastive divergence"; Du & Mordatch (2019), "Implicit generation and
    generalization in energy-based models", Eq. (4) and §3.3.
    """
    regulariser = e_data.square().mean() + e_negative.square().mean()
    return e_data.mean() - e_negative.mean() + alpha * regulariser


class EBM(GenerativeModel):
    """p_θ(x) = exp(−E_θ(x)) / Z_θ with a neural energy E_θ: (B, *event_shape) -> (B,).

    ``log_prob(x)`` returns −E_θ(x) (``likelihood = UNNORMALIZED``: off by
    log Z_θ). ``loss`` is ``contrastive_loss`` on a data batch and as many
    negatives, drawn from a replay buffer of persistent chains: each negative
    starts from a buffer entry (or, with probability ``reinit_prob``, from a
    fresh draw of ``init``), takes ``train_steps`` Langevin steps

        x ← x − (ε²/2) ∇_x E_θ(x) + ε η,   η ~ N(0, I),

    and is written back. Negatives are detached: no gradient flows through
    the chains. A chain that blows up makes the loss non-finite, which the
    training engine reports as ``TrainingDiverged``; nothing is clamped.
    ``sample`` runs ``sample_steps`` steps of the same kernel from ``init``
    (or from the buffer).

    Args:
        event_shape: shape of one example.
        energy: the energy network, (B, *event_shape) -> (B,) or (B, 1);
            default an ``MLP`` with ``hidden`` widths and SiLU on the flattened event.
        hidden: hidden widths of the default network.
        init: distribution of fresh chains (a ``GenerativeModel`` with
            ``sample(n, generator=...)``); default N(0, 2² I).
        step_size: ε of the Langevin kernel.
        train_steps: Langevin steps per negative and training step.
        sample_steps: Langevin steps of ``sample`` from fresh starts.
        buffer_size: number of persistent chains in the replay buffer.
        reinit_prob: probability of restarting a chain from ``init``.
        alpha: weight α of the energy regulariser.

    Reference: Du & Mordatch (2019), "Implicit generation and generalization
    in energy-based models"; Tieleman (2008), "Training restricted Boltzmann
    machines using approximations to the likelihood gradient" (persistent chains).
    """

    likelihood = Likelihood.UNNORMALIZED

    def __init__(
        self,
        event_shape: tuple[int, ...],
        energy: nn.Module | None = None,
        hidden: Sequence[int] = (128, 128),
        init: GenerativeModel | None = None,
        step_size: float = 0.1,
        train_steps: int = 20,
        sample_steps: int = 200,
        buffer_size: int = 10_000,
        reinit_prob: float = 0.05,
        alpha: float = 0.01,
    ) -> None:
        super().__init__(event_shape)
        for name, value in (("train_steps", train_steps), ("sample_steps", sample_steps)):
            if not (isinstance(value, int) and value >= 0):
                raise InvalidInput(f"EBM: {name} must be an integer ≥ 0, got {value!r}")
        if not (isinstance(buffer_size, int) and buffer_size >= 1):
            raise InvalidInput(f"EBM: buffer_size must be an integer ≥ 1, got {buffer_size!r}")
        if not 0.0 <= reinit_prob <= 1.0:
            raise InvalidInput(f"EBM: reinit_prob must lie in [0, 1], got {reinit_prob!r}")
        if not (math.isfinite(alpha) and alpha >= 0):
            raise InvalidInput(f"EBM: alpha must be a finite number ≥ 0, got {alpha!r}")
        dim = math.prod(self.event_shape)
        self.net = (
            energy
            if energy is not None
            else nn.Sequential(nn.Flatten(), MLP(dim, 1, hidden=hidden))
        )
        default_dtype = torch.get_default_dtype()
        self.init = (
            init
            if init is not None
            else DiagonalGaussian(
                torch.zeros(self.event_shape, dtype=default_dtype), torch.tensor(2.0)
            )
        )
        if tuple(self.init.event_shape) != self.event_shape:
            raise InvalidInput(
                f"EBM: init has event shape {tuple(self.init.event_shape)}, "
                f"expected {self.event_shape}"
            )
        self.kernel = Langevin(step_size)
        self.train_steps = train_steps
        self.sample_steps = sample_steps
        self.reinit_prob = float(reinit_prob)
        self.alpha = float(alpha)
        with torch.no_grad():
            self.register_buffer("chains", self.init.sample(buffer_size).to(default_dtype))

    @classmethod
    def for_data(cls, spec: DataSpec, **options: Any) -> EBM:
        """An EBM over the event shape of ``spec``: a density on ℝ^D.

        On discrete data ``probgen.models.build_model`` wraps it in
        ``Dequantized``, so it models y = (x + u)/K ∈ [0, 1)^D like a flow.
        """
        return cls(event_shape=spec.event_shape, **options)

    @property
    def target(self) -> Energy:
        """The sampling target p_θ ∝ exp(−E_θ) seen by the kernels."""
        return Energy(self.energy)

    def energy(self, x: Tensor) -> Tensor:
        """E_θ(x), shape (B,), for x of shape (B, *event_shape)."""
        e = self.net(x)
        return e[:, 0] if e.dim() == 2 and e.shape[1] == 1 else e

    def log_prob(self, x: Tensor) -> Tensor:
        """−E_θ(x), shape (B,): log p_θ(x) + log Z_θ (unnormalised)."""
        return -self.energy(self._check(x))

    def loss(self, x: Tensor, player: str = "model") -> Tensor:
        """``contrastive_loss`` of a data batch (B, *event_shape) and B persistent negatives."""
        self._check_player(player)
        x = self._check(x)
        negatives = self.negatives(x.shape[0])
        return contrastive_loss(self.energy(x), self.energy(negatives), self.alpha)

    def negatives(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Advance n chains drawn from the replay buffer and write them back, (n, *event_shape).

        Each chain restarts from ``init`` with probability ``reinit_prob``.
        """
        buffer = self.chains
        idx = torch.randint(len(buffer), (n,), generator=generator, device=buffer.device)
        restart = torch.rand(n, generator=generator, device=buffer.device) < self.reinit_prob
        fresh = self.init.sample(n, generator=generator).to(buffer)
        starts = torch.where(append_dims(restart, buffer.dim()), fresh, buffer[idx])
        x = self.kernel.run(self.target, starts, self.train_steps, generator=generator).samples
        buffer[idx] = x
        return x

    def sample_chains(
        self,
        n: int,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        sampler: Kernel | None = None,
        persistent: bool = False,
    ) -> SampleResult:
        """``sample`` with the sampler's report (acceptance rate, energy evaluations)."""
        if not (isinstance(n, int) and n >= 1):
            raise InvalidInput(f"EBM.sample: n must be a positive integer, got {n!r}")
        buffer = self.chains
        if persistent:
            starts = buffer[
                torch.randint(len(buffer), (n,), generator=generator, device=buffer.device)
            ]
        else:
            starts = self.init.sample(n, generator=generator).to(buffer)
        kernel = self.kernel if sampler is None else sampler
        steps = self.sample_steps if steps is None else steps
        return kernel.run(self.target, starts, steps, generator=generator)

    def sample(
        self,
        n: int,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        sampler: Kernel | None = None,
        persistent: bool = False,
    ) -> Tensor:
        """n samples (n, *event_shape) by ``steps`` steps of ``sampler`` on p_θ.

        Chains start from ``init`` (or, with ``persistent=True``, from random
        replay-buffer entries); ``steps`` defaults to ``sample_steps`` and
        ``sampler`` to the model's Langevin kernel (e.g. pass ``MALA(ε)`` to
        remove the discretisation bias).
        """
        return self.sample_chains(n, steps, generator, sampler, persistent).samples
