"""Energy-based model trained by contrastive divergence with persistent Langevin chains."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from probgen.conditions import ConditionSpec
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

    Conditional (``condition`` set): p_θ(x | c) = exp(−E_θ(x, c)) / Z_θ(c),
    the energy network reading x and the condition's features h (the default
    MLP reads [flatten(x), h]; a given ``energy`` is called as ``energy(x, h)``).
    Each persistent chain carries the condition features it last ran at: a
    negative for condition c continues the chain whose stored features are
    nearest h(c) (for classes, a chain of the same class, chosen at random
    among them; ties broken at random), runs the Langevin kernel on
    exp(−E_θ(·, c)) and is written back with h(c), so the buffer holds
    persistent chains per condition (Tieleman 2008, per condition) and the
    negatives' conditions are the data batch's, the law p_data(c) of the
    likelihood gradient's second term. ``log_prob(x, c)`` is −E_θ(x, c),
    unnormalised (off by log Z_θ(c), which depends on c: comparing classes
    by it is not Bayes' rule).

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

    Args (continued):
        condition: what c is (``ConditionSpec``) for p(x | c); ``None``: p(x).
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
        condition: ConditionSpec | None = None,
    ) -> None:
        super().__init__(event_shape)
        self.condition_spec = condition
        width = 0 if condition is None else condition.width
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
            if condition is None
            else _ConcatEnergy(MLP(dim + width, 1, hidden=hidden))
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
        if condition is not None:  # classes spread evenly over the chains; vectors at 0
            features = (
                condition.features(torch.arange(buffer_size) % condition.width, default_dtype)
                if condition.is_classes
                else torch.zeros(buffer_size, width, dtype=default_dtype)
            )
            self.register_buffer("chain_features", features)

    @classmethod
    def for_data(cls, spec: DataSpec, conditional: bool | None = None, **options: Any) -> EBM:
        """An EBM over the event shape of ``spec``: a density on ℝ^D.

        On discrete data ``probgen.models.build_model`` wraps it in
        ``Dequantized``, so it models y = (x + u)/K ∈ [0, 1)^D like a flow.
        ``conditional`` (None: exactly when ``spec.condition`` is set) builds
        E_θ(x, c) for the data's condition.
        """
        conditional = spec.condition is not None if conditional is None else conditional
        if conditional and spec.condition is None:
            raise InvalidInput("EBM: conditional=True needs data with a condition (spec.condition)")
        condition = spec.condition if conditional else None
        return cls(event_shape=spec.event_shape, condition=condition, **options)

    @property
    def target(self) -> Energy:
        """The sampling target p_θ ∝ exp(−E_θ) seen by the kernels (unconditional models)."""
        return self.target_at(None)

    def target_at(self, h: Tensor | None) -> Energy:
        """The sampling target exp(−E_θ(·, c)) for condition features h (B, W) of B chains."""
        return Energy(lambda x: self.energy(x, h))

    def energy(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """E_θ(x) (E_θ(x, c), h (B, W) the features of c), shape (B,), for x (B, *event_shape)."""
        if (h is not None) != (self.condition_spec is not None):
            raise InvalidInput(
                "EBM.energy: "
                + ("a conditional energy needs" if h is None else "takes no")
                + " condition features h"
            )
        e = self.net(x) if h is None else self.net(x, h.to(x.dtype))
        return e[:, 0] if e.dim() == 2 and e.shape[1] == 1 else e

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        """−E_θ(x[, c]), shape (B,): log p_θ(x[|c]) + log Z_θ[(c)] (unnormalised)."""
        x = self._check(x)
        return -self.energy(x, self._features(condition, len(x)))

    def loss(self, x: Tensor, player: str = "model", condition: Tensor | None = None) -> Tensor:
        """``contrastive_loss`` of a data batch (B, *event_shape) and B persistent negatives
        (at the batch's conditions for a conditional model)."""
        self._check_player(player)
        x = self._check(x)
        h = self._features(condition, len(x))
        negatives = self.negatives(x.shape[0], h=h)
        return contrastive_loss(self.energy(x, h), self.energy(negatives, h), self.alpha)

    def negatives(
        self, n: int, generator: torch.Generator | None = None, h: Tensor | None = None
    ) -> Tensor:
        """Advance n chains drawn from the replay buffer and write them back, (n, *event_shape).

        Each chain restarts from ``init`` with probability ``reinit_prob``. A
        conditional model runs them at condition features h (n, W), each from
        the chain whose stored features are nearest (see the class docstring).
        """
        buffer = self.chains
        idx = self._chain_index(n, h, generator)
        restart = torch.rand(n, generator=generator, device=buffer.device) < self.reinit_prob
        fresh = self.init.sample(n, generator=generator).to(buffer)
        starts = torch.where(append_dims(restart, buffer.dim()), fresh, buffer[idx])
        target = self.target_at(h)
        x = self.kernel.run(target, starts, self.train_steps, generator=generator).samples
        buffer[idx] = x
        if h is not None:
            self.chain_features[idx] = h.to(self.chain_features)
        return x

    def sample_chains(
        self,
        n: int,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        sampler: Kernel | None = None,
        persistent: bool = False,
        *,
        condition: Tensor | None = None,
    ) -> SampleResult:
        """``sample`` with the sampler's report (acceptance rate, energy evaluations)."""
        if not (isinstance(n, int) and n >= 1):
            raise InvalidInput(f"EBM.sample: n must be a positive integer, got {n!r}")
        h = self._features(condition, n, expand=True)
        buffer = self.chains
        if persistent:
            starts = buffer[self._chain_index(n, h, generator)]
        else:
            starts = self.init.sample(n, generator=generator).to(buffer)
        kernel = self.kernel if sampler is None else sampler
        steps = self.sample_steps if steps is None else steps
        return kernel.run(self.target_at(h), starts, steps, generator=generator)

    def sample(
        self,
        n: int,
        condition: Tensor | None = None,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        sampler: Kernel | None = None,
        persistent: bool = False,
    ) -> Tensor:
        """n samples (n, *event_shape) by ``steps`` steps of ``sampler`` on p_θ (p_θ(·|c)).

        Chains start from ``init`` (or, with ``persistent=True``, from
        replay-buffer entries, of the nearest stored condition for a
        conditional model); ``steps`` defaults to ``sample_steps`` and
        ``sampler`` to the model's Langevin kernel (e.g. pass ``MALA(ε)`` to
        remove the discretisation bias). A conditional model takes
        ``condition``: one for all n chains, or n.
        """
        return self.sample_chains(
            n, steps, generator, sampler, persistent, condition=condition
        ).samples

    def _features(self, condition: Any, rows: int, *, expand: bool = False) -> Tensor | None:
        """The checked condition's features (rows, W), or None for p(x)."""
        c = self._condition(condition, rows, expand=expand)
        if c is None or self.condition_spec is None:
            return None
        return self.condition_spec.features(c, self.chains.dtype)

    def _chain_index(self, n: int, h: Tensor | None, generator: torch.Generator | None) -> Tensor:
        """n buffer rows: uniform, or for each row of h (n, W) the chain with the nearest
        stored condition features, ties broken uniformly at random."""
        buffer = self.chains
        if h is None:
            return torch.randint(len(buffer), (n,), generator=generator, device=buffer.device)
        distance = torch.cdist(h.to(buffer.dtype), self.chain_features)  # (n, N)
        # a jitter far below any distance between distinct conditions breaks ties at random
        jitter = torch.rand(distance.shape, generator=generator, dtype=distance.dtype)
        return (distance + 1e-6 * jitter.to(distance.device)).argmin(dim=1)


class _ConcatEnergy(nn.Module):
    """The default conditional energy: an MLP on [flatten(x), h]; (B, …), (B, W) -> (B, 1)."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return self.mlp(torch.cat([x.reshape(len(x), -1), h], dim=1))
