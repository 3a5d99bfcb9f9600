"""Couplings of flow matching: which noise ε is paired with which data point x_0 in a batch.

A coupling π(x_0, ε) with marginals p_data and N(0, I) defines the path
x_t = α_t x_0 + σ_t ε and the regression target of flow matching; any such π
gives a velocity field whose ODE carries N(0, I) to the data (the marginals
at t = 0 and t = 1 are unchanged). A coupling here re-indexes the batch's
noise, ε_i ← ε_{j(i)}, and keeps the data rows (so their conditions stay with
them); it returns j (B,).

    IndependentCoupling   j(i) = i: π = p_data ⊗ N(0, I)                    (Lipman et al. 2023)
    OTCoupling            the minibatch optimal assignment of ‖x_0 − ε‖²    (Tong et al. 2024;
                          Pooladian et al. 2023): exact (POT's ``ot.emd``) up to
                          ``max_exact`` rows, Sinkhorn beyond
    EntropicOTCoupling    j(i) ~ π_ε(i, ·) of the entropic plan (Sinkhorn), the
                          Schrödinger-bridge coupling at reg = 2 s² (Tong et al. 2024)

For a conditional model (a denoiser with ``features``) the pairing is made
within each group of rows with the same condition features, so the noise of
every condition is still N(0, I): coupling across conditions would move
p_1(x | c) away from the prior. A continuous condition, whose rows all
differ, leaves the pairing independent.

With a coupling other than the independent one, the learned velocity is the
marginal velocity of the coupled path: its ODE (``probability_flow``, DDIM with
η = 0, ``ode_log_likelihood``) is valid, but the score and the posterior read
through the Gaussian-path identities are not those of p_t, so stochastic
samplers (ancestral, Euler–Maruyama) assume the independent coupling.

References: Tong, Fatras, Malkin, Huguet, Zhang, Rector-Brooks, Wolf & Bengio
(2024), "Improving and generalizing flow-based generative models with
minibatch optimal transport"; Pooladian, Ben-Hamu, Domingo-Enrich, Amos,
Lipman & Chen (2023), "Multisample flow matching: straightening flows with
minibatch couplings"; Cuturi (2013), "Sinkhorn distances"; Flamary et al.
(2021), "POT: Python optimal transport".
"""

from __future__ import annotations

import abc

import ot
import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.tensors import flatten_events

__all__ = [
    "LOG_DOMAIN_ABOVE",
    "Coupling",
    "EntropicOTCoupling",
    "IndependentCoupling",
    "OTCoupling",
]


def _check_pair(x0: Tensor, noise: Tensor) -> None:
    if x0.shape != noise.shape:
        raise InvalidInput(
            f"coupling: expected data and noise of one shape, got {tuple(x0.shape)} "
            f"and {tuple(noise.shape)}"
        )


class Coupling(abc.ABC):
    """A pairing of data x_0 (B, *event) with noise ε (B, *event): the noise index j (B,)."""

    def __call__(
        self,
        x0: Tensor,
        noise: Tensor,
        features: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """j (B,) such that (x0[i], noise[j[i]]) are the pairs; within groups of equal
        ``features`` (B, F) rows when given."""
        _check_pair(x0, noise)
        if features is None:
            return self.pair(flatten_events(x0), flatten_events(noise), generator)
        index = torch.arange(x0.shape[0], device=x0.device)
        groups = torch.unique(features, dim=0, return_inverse=True)[1]  # (B,)
        for g in range(int(groups.max()) + 1 if len(groups) else 0):
            rows = (groups == g).nonzero().squeeze(1)
            if len(rows) > 1:
                j = self.pair(flatten_events(x0[rows]), flatten_events(noise[rows]), generator)
                index[rows] = rows[j]
        return index

    def paired_noise(
        self,
        x0: Tensor,
        noise: Tensor,
        features: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The noise re-indexed to its partners, ε_{j(i)} (B, *event)."""
        return noise[self(x0, noise, features, generator)]

    @abc.abstractmethod
    def pair(self, x0: Tensor, noise: Tensor, generator: torch.Generator | None) -> Tensor:
        """j (n,) pairing flat data x0 (n, D) with flat noise (n, D)."""


class IndependentCoupling(Coupling):
    """π = p_data ⊗ N(0, I): the batch as drawn, j(i) = i (Lipman et al. 2023)."""

    def pair(self, x0: Tensor, noise: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.arange(x0.shape[0], device=x0.device)

    def paired_noise(
        self,
        x0: Tensor,
        noise: Tensor,
        features: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The noise as drawn (no index, no copy: j is the identity)."""
        _check_pair(x0, noise)
        return noise


def _cost(x0: Tensor, noise: Tensor) -> Tensor:
    """C_ij = ‖x0_i − ε_j‖² (n, n), in float64 on the CPU (what POT's solvers take)."""
    return torch.cdist(x0.detach().double().cpu(), noise.detach().double().cpu()).square()


def _sample_rows(plan: Tensor, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """j(i) ~ π(i, ·) / π(i, ·).sum() per row of a plan (n, n): keeps every data row once."""
    rows = plan.clamp_min(0.0)
    rows = rows / rows.sum(1, keepdim=True)
    gen = generator if generator is not None and generator.device.type == "cpu" else None
    return torch.multinomial(rows, 1, generator=gen).squeeze(1).to(device)


LOG_DOMAIN_ABOVE = 500.0
"""max C / ε above which Sinkhorn runs in the log domain (e^{−500} ≈ 7e-218 is still normal)."""


class EntropicOTCoupling(Coupling):
    """j(i) ~ π_ε(i, ·), π_ε = argmin ⟨π, C⟩ − ε H(π) over plans with uniform marginals.

    C_ij = ‖x0_i − ε_j‖² in the data's units; Sinkhorn's scaling iterations
    (POT's ``ot.sinkhorn``), in the log domain (``method="sinkhorn_log"``,
    about 20× slower) only when the kernel e^{−C/ε} would underflow
    (max C / ε > ``LOG_DOMAIN_ABOVE``). With reg = 2 s² and
    Brownian-bridge noise s √(t(1 − t)) on the path (``FlowMatching(bridge_noise=s)``)
    this is the Schrödinger-bridge flow matching of Tong et al. (2024), Section 3.3.

    Args:
        reg: ε > 0, the entropic regularisation (in squared data units).
        max_iter: Sinkhorn iterations.
    """

    def __init__(self, reg: float = 0.1, max_iter: int = 1000) -> None:
        if not reg > 0:
            raise InvalidInput(f"reg: expected a positive number, got {reg}")
        self.reg, self.max_iter = float(reg), int(max_iter)

    def plan(self, x0: Tensor, noise: Tensor) -> Tensor:
        """The entropic plan π_ε (n, n), rows summing to 1/n."""
        n = x0.shape[0]
        uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
        cost = _cost(x0, noise)
        method = "sinkhorn_log" if cost.max().item() > LOG_DOMAIN_ABOVE * self.reg else "sinkhorn"
        return ot.sinkhorn(
            uniform, uniform, cost, self.reg, method=method, numItermax=self.max_iter
        )

    def pair(self, x0: Tensor, noise: Tensor, generator: torch.Generator | None) -> Tensor:
        return _sample_rows(self.plan(x0, noise), generator, x0.device)


class OTCoupling(Coupling):
    """The minibatch optimal-transport pairing: j = argmin_σ Σ_i ‖x0_i − ε_σ(i)‖² over permutations.

    Exact by the network simplex (POT's ``ot.emd``, whose optimal vertex for
    uniform weights is a permutation) up to ``max_exact`` rows (about 0.1 s
    at 1024 rows on one core); above, rows are drawn from the entropic plan
    with reg = ``reg`` × the mean cost (``EntropicOTCoupling``), an
    approximation of the same assignment.

    Reference: Tong et al. (2024), "Improving and generalizing flow-based
    generative models with minibatch optimal transport", Section 3.2.
    """

    def __init__(self, max_exact: int = 1024, reg: float = 0.05) -> None:
        if max_exact < 1 or not reg > 0:
            raise InvalidInput(f"expected max_exact >= 1 and reg > 0, got {max_exact}, {reg}")
        self.max_exact, self.reg = int(max_exact), float(reg)

    def pair(self, x0: Tensor, noise: Tensor, generator: torch.Generator | None) -> Tensor:
        n = x0.shape[0]
        if n > self.max_exact:
            scale = _cost(x0, noise).mean().item()
            return EntropicOTCoupling(self.reg * scale).pair(x0, noise, generator)
        uniform = torch.full((n,), 1.0 / n, dtype=torch.float64)
        plan = ot.emd(uniform, uniform, _cost(x0, noise))
        return plan.argmax(1).to(x0.device)
