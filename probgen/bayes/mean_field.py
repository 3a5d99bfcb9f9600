"""Mean-field Gaussian weights (Bayes by Backprop) with the local reparameterisation trick.

q(θ) = Π_i N(θ_i; μ_i, σ_i²), σ_i = softplus(ρ_i), trained by maximising the
ELBO per example

    ELBO/N = 1/N Σ_n E_q[log p_θ(x_n)] - KL(q(θ) ‖ p(θ)) / N,

with the closed-form KL of diagonal Gaussians. A weight matrix W of an
``nn.Linear`` acting on a batch of rows x (B, in) is not sampled: its
pre-activations are (Kingma, Salimans & Welling 2015)

    b = x μ_Wᵀ + μ_b + √(x² σ_W²ᵀ + σ_b²) ⊙ ε,   ε ~ N(0, I) per row,

exactly their law under W ~ q, with one independent weight draw per example,
so the gradient variance falls as 1/B. Every other weight (and a Linear fed
inputs of more than two dimensions, where rows are not examples) is sampled
θ = μ + σ ⊙ ε once per loss evaluation.

References: Blundell, Cornebise, Kavukcuoglu & Wierstra (2015), "Weight
Uncertainty in Neural Networks"; Kingma, Salimans & Welling (2015),
"Variational Dropout and the Local Reparameterization Trick".
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probgen.bayes.posterior import WeightPosterior
from probgen.core import InvalidInput
from probgen.divergences import kl_diagonal_gaussian

__all__ = ["MeanField"]


class MeanField(WeightPosterior):
    """q(θ) = Π_i N(μ_i, softplus(ρ_i)²), μ initialised at the model's current weights.

    Binding switches ``requires_grad`` off on the model's own copies of the
    chosen weights: from then on they are stand-ins that q replaces.

    Args:
        prior_std: prior standard deviation s, p(θ_i) = N(0, s²).
        init_std: initial σ_i of every weight.
        local_reparameterization: sample pre-activations of plain ``nn.Linear``
            layers (see module docstring) instead of their weights.
    """

    def __init__(
        self,
        prior_std: float = 1.0,
        init_std: float = 1e-2,
        local_reparameterization: bool = True,
    ) -> None:
        super().__init__(prior_std)
        if not init_std > 0:
            raise InvalidInput(f"init_std: expected a positive number, got {init_std}")
        self.init_std = float(init_std)
        self.local_reparameterization = local_reparameterization
        self.loc = nn.ParameterList()
        self.rho = nn.ParameterList()
        self._index: dict[str, int] = {}
        self._local: set[str] = set()
        self._sampling = False

    def _bind(self, model: nn.Module, params: dict[str, nn.Parameter]) -> None:
        rho0 = math.log(math.expm1(self.init_std))  # softplus(ρ0) = init_std
        for i, (name, p) in enumerate(params.items()):
            self._index[name] = i
            self.loc.append(nn.Parameter(p.detach().clone()))
            self.rho.append(nn.Parameter(torch.full_like(p.detach(), rho0)))
            p.requires_grad_(False)
        if self.local_reparameterization:
            for prefix, module in model.named_modules():
                if type(module) is nn.Linear and f"{prefix}.weight" in self._index:
                    bias = f"{prefix}.bias" if f"{prefix}.bias" in self._index else None
                    module.register_forward_hook(_LocalReparameterization(self, prefix, bias))
                    self._local.update(n for n in (f"{prefix}.weight", bias) if n)

    def mean(self, name: str) -> Tensor:
        """μ of weight ``name``, shaped like the weight."""
        return self.loc[self._index[name]]

    def std(self, name: str) -> Tensor:
        """σ = softplus(ρ) of weight ``name``, shaped like the weight."""
        return F.softplus(self.rho[self._index[name]])

    def trainable(self, name: str) -> list[nn.Parameter]:
        i = self._index[name]
        return [self.loc[i], self.rho[i]]

    def penalty(self, names: Sequence[str]) -> Tensor:
        """KL(q ‖ p) = Σ_i [log(s/σ_i) + (σ_i² + μ_i²)/(2s²) - ½] over ``names``."""
        terms = [
            kl_diagonal_gaussian(
                self.mean(n), self.std(n), 0.0, self.prior_std, event_dims=self.mean(n).dim()
            )
            for n in names
        ]
        return torch.stack(terms).sum() if terms else self.loc[0].new_zeros(())

    def draw(self, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """θ = μ + σ ⊙ ε, ε ~ N(0, I), for every weight."""
        return {n: self._perturb(n, generator) for n in self.names}

    @contextlib.contextmanager
    def training_weights(self) -> Iterator[dict[str, Tensor]]:
        """μ for locally reparameterised weights (their hooks add the noise), μ + σε for others."""
        weights = {n: self.mean(n) if n in self._local else self._perturb(n) for n in self.names}
        self._sampling = True
        try:
            yield weights
        finally:
            self._sampling = False

    def _perturb(self, name: str, generator: torch.Generator | None = None) -> Tensor:
        loc = self.mean(name)
        eps = torch.randn(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
        return loc + self.std(name) * eps


class _LocalReparameterization:
    """Forward hook on an ``nn.Linear`` run with mean weights: adds the pre-activation noise.

    For 2-D inputs (B, in) it adds √(x² σ_Wᵀ² + σ_b²) ⊙ ε with ε per row; for
    inputs (B, …, in) it adds x (σ_W ⊙ ε_W)ᵀ + σ_b ⊙ ε_b with one ε_W for the
    whole call, i.e. one weight draw shared by the batch.
    """

    def __init__(self, posterior: MeanField, prefix: str, bias: str | None) -> None:
        self.posterior = posterior
        self.weight = f"{prefix}.weight"
        self.bias = bias

    def __call__(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        q = self.posterior
        if not q._sampling:
            return output
        x = inputs[0]
        std_w = q.std(self.weight)  # (out, in)
        std_b = q.std(self.bias) if self.bias else None  # (out,)
        if x.dim() == 2:
            var = F.linear(x.square(), std_w.square())  # (B, out)
            if std_b is not None:
                var = var + std_b.square()
            # tiny keeps the gradient of √· finite on all-zero rows without a bias
            return output + (var + torch.finfo(var.dtype).tiny).sqrt() * torch.randn_like(output)
        noise_b = std_b * torch.randn_like(std_b) if std_b is not None else None
        return output + F.linear(x, std_w * torch.randn_like(std_w), noise_b)
