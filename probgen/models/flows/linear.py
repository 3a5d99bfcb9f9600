"""Linear layers acting on dimension 1 at every position: ActNorm, LU linear, permutations.

On vectors (B, D) they act on the features; on images (B, C, H, W) they act
on the channels at every pixel, so ``LULinear`` is Glow's invertible 1×1
convolution and the log-determinants carry the factor H·W (in general, the
number of positions S = numel of one event / C).

Reference: Kingma & Dhariwal (2018), "Glow: Generative Flow with Invertible
1×1 Convolutions"; Durkan et al. (2019), "Neural Spline Flows" (LU linear).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.flows.base import Transform

__all__ = ["ActNorm", "LULinear", "Permutation"]


def _positions(x: Tensor) -> int:
    """S, the number of positions sharing one channel: numel of x[0, 0]."""
    return x[0, 0].numel() if x.dim() > 2 else 1


def _per_channel(v: Tensor, x: Tensor) -> Tensor:
    """View a per-channel vector (C,) as (C, 1, …, 1) to broadcast against x (B, C, …)."""
    return v.reshape(-1, *([1] * (x.dim() - 2)))


class ActNorm(Transform):
    """Per-channel affine normalisation z = (x - μ_c) · exp(-log σ_c).

    log|det ∂z/∂x| = -S Σ_c log σ_c. With ``data_init`` the first batch seen
    in training mode sets μ_c and σ_c to that batch's per-channel mean and
    standard deviation, so z starts standardised (Kingma & Dhariwal 2018);
    afterwards they are ordinary parameters.

    Args:
        channels: C, the size of dimension 1.
        data_init: initialise from the first training batch (else μ = 0, σ = 1).
    """

    initialized: Tensor

    def __init__(self, channels: int, data_init: bool = True) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(not data_init))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        flat = x.movedim(1, -1).reshape(-1, x.shape[1])  # (B·S, C)
        self.shift.copy_(flat.mean(dim=0))
        self.log_scale.copy_(flat.std(dim=0).clamp_min(1e-6).log())
        self.initialized.fill_(True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialized:
            self._initialize(x)
        z = (x - _per_channel(self.shift, x)) * _per_channel(torch.exp(-self.log_scale), x)
        return z, (-_positions(x) * self.log_scale.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = z * _per_channel(torch.exp(self.log_scale), z) + _per_channel(self.shift, z)
        return x, (_positions(z) * self.log_scale.sum()).expand(z.shape[0])


class LULinear(Transform):
    """Invertible linear map z = W x + b on dimension 1, with W = P L (U + diag(s)).

    P is a fixed permutation, L unit lower triangular, U strictly upper
    triangular and s = sign · exp(log|s|) a non-zero diagonal, so

        log|det ∂z/∂x| = S Σ_c log|s_c|

    in O(C) and the inverse is two triangular solves. W starts as a random
    rotation (Kingma & Dhariwal 2018), drawn from ``generator``.

    Args:
        channels: C, the size of dimension 1.
        generator: random source of the initial rotation (global RNG if ``None``).
    """

    perm: Tensor
    sign: Tensor

    def __init__(self, channels: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        dtype = torch.get_default_dtype()
        rotation, _ = torch.linalg.qr(
            torch.randn(channels, channels, generator=generator, dtype=torch.float64)
        )
        p, lower, upper = torch.linalg.lu(rotation)
        diag = upper.diagonal()
        self.register_buffer("perm", p.argmax(dim=1))  # (P M)[i] = M[perm[i]]
        self.register_buffer("sign", diag.sign().to(dtype))
        self.lower = nn.Parameter(lower.tril(-1).to(dtype))
        self.upper = nn.Parameter(upper.triu(1).to(dtype))
        self.log_diag = nn.Parameter(diag.abs().log().to(dtype))
        self.bias = nn.Parameter(torch.zeros(channels, dtype=dtype))

    def _factors(self) -> tuple[Tensor, Tensor]:
        """L (unit lower) and U + diag(s) (upper), both (C, C)."""
        eye = torch.eye(len(self.bias), dtype=self.bias.dtype, device=self.bias.device)
        lower = self.lower.tril(-1) + eye
        upper = self.upper.triu(1) + torch.diag(self.sign * torch.exp(self.log_diag))
        return lower, upper

    def weight(self) -> Tensor:
        """W = P L (U + diag(s)), shape (C, C)."""
        lower, upper = self._factors()
        return (lower @ upper)[self.perm]

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = (x.movedim(1, -1) @ self.weight().mT + self.bias).movedim(-1, 1)
        return z, (_positions(x) * self.log_diag.sum()).expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        lower, upper = self._factors()
        rows = (z.movedim(1, -1) - self.bias).reshape(-1, z.shape[1])  # (N, C)
        v = torch.empty_like(rows).index_copy_(1, self.perm, rows)  # Pᵀ applied to each row
        v = torch.linalg.solve_triangular(lower, v.mT, upper=False, unitriangular=True)
        v = torch.linalg.solve_triangular(upper, v, upper=True)  # (C, N)
        x = v.mT.reshape(z.movedim(1, -1).shape).movedim(-1, 1)
        return x, (-_positions(z) * self.log_diag.sum()).expand(z.shape[0])


class Permutation(Transform):
    """z = x[:, π]: reorders dimension 1; log|det ∂z/∂x| = 0.

    Between coupling or autoregressive layers it lets every entry be
    transformed and condition the others.
    """

    perm: Tensor
    restore: Tensor

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        perm = torch.as_tensor(perm, dtype=torch.long)
        if sorted(perm.tolist()) != list(range(len(perm))):
            raise InvalidInput(
                f"Permutation: expected a permutation of 0…{len(perm) - 1}, got {perm.tolist()}"
            )
        self.register_buffer("perm", perm)
        self.register_buffer("restore", torch.argsort(perm))

    @classmethod
    def reverse(cls, channels: int) -> Permutation:
        """The order reversal π = (C-1, …, 0)."""
        return cls(torch.arange(channels - 1, -1, -1))

    @classmethod
    def random(cls, channels: int, generator: torch.Generator | None = None) -> Permutation:
        """A uniformly random permutation drawn with ``generator``."""
        return cls(torch.randperm(channels, generator=generator))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x.index_select(1, self.perm), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return z.index_select(1, self.restore), z.new_zeros(z.shape[0])
