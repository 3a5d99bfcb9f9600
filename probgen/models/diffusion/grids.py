"""Time grids of the samplers: objects mapping (process, K) to times 1 = t_0 > … > t_K = 0.

A grid is chosen by passing an object (``grid=KarrasGrid()``), never by a
string. Every grid works on every path t ↦ (α_t, σ_t): a schedule stated in
the noise-to-signal ratio σ̃ = σ_t / α_t (the noise level of EDM's
"VE-equivalent" variable y = x / α_t) is mapped back to times by inverting
σ̃(t), which is increasing in t on every forward process, by bisection
(``time_at_noise_ratio``).

    UniformGrid     t uniform in [0, 1] (the process's own ``grid``)
    KarrasGrid      σ̃_i = (σ̃_max^{1/ρ} + i/(K−1) (σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ, then σ̃_K = 0
    LogSNRGrid      λ = −log σ̃ uniform between λ(1) and λ(t_min), then t_K = 0

References: Karras, Aittala, Aila & Laine (2022), "Elucidating the design
space of diffusion-based generative models", eq. (5) and Table 1; Lu, Zhou,
Bao, Chen, Li & Zhu (2022), "DPM-Solver", Section 3.3 (uniform λ).
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

from probgen.core import InvalidInput
from probgen.models.diffusion.processes import ForwardProcess

__all__ = [
    "KarrasGrid",
    "LogSNRGrid",
    "TimeGrid",
    "UniformGrid",
    "noise_ratio",
    "time_at_noise_ratio",
]


def noise_ratio(process: ForwardProcess, t: float) -> float:
    """σ̃_t = σ_t / α_t at one time (∞ where α_t = 0)."""
    alpha, sigma = process.alpha_sigma_at(t)
    return sigma / alpha if alpha > 0 else math.inf


def time_at_noise_ratio(process: ForwardProcess, ratio: float) -> float:
    """The time t ∈ [0, 1] with σ_t / α_t = ``ratio``, by bisection (σ̃ increases in t).

    Bisection to the resolution of a float on [0, 1] (about 55 halvings), so the
    returned time is exact up to the rounding of ``alpha_sigma_at``.
    """
    low, high = noise_ratio(process, 0.0), noise_ratio(process, 1.0)
    if not low <= ratio <= high:
        raise InvalidInput(
            f"noise ratio σ/α: expected a value in [{low:.6g}, {high:.6g}] of the process, "
            f"got {ratio:.6g}"
        )
    a, b = 0.0, 1.0  # σ̃(a) < ratio <= σ̃(b)
    while (mid := 0.5 * (a + b)) not in (a, b):
        if noise_ratio(process, mid) < ratio:
            a = mid
        else:
            b = mid
    return b  # the end at or above the ratio: a grid never steps below t_min


class TimeGrid(abc.ABC):
    """Times 1 = t_0 > t_1 > … > t_K = 0 of a K-step sampler on a forward process."""

    @abc.abstractmethod
    def __call__(self, process: ForwardProcess, steps: int, *, like: Tensor) -> Tensor:
        """The (steps + 1,) decreasing times, in ``like``'s dtype and device."""


def _check_steps(steps: int) -> None:
    if steps < 1:
        raise InvalidInput(f"steps: expected a positive integer, got {steps}")


class UniformGrid(TimeGrid):
    """t uniform from 1 to 0: ``process.grid`` (the DDPM chain's rounds to its own steps)."""

    def __call__(self, process: ForwardProcess, steps: int, *, like: Tensor) -> Tensor:
        return process.grid(steps, like=like)


def _times_of_ratios(process: ForwardProcess, ratios: list[float], like: Tensor) -> Tensor:
    """t_i with σ̃(t_i) = ratios[i], then t_K = 0; t_0 = 1 exactly when ratios[0] = σ̃(1)."""
    times = [1.0] + [time_at_noise_ratio(process, r) for r in ratios[1:]] + [0.0]
    return torch.tensor(times, dtype=like.dtype, device=like.device)


def _ratio_range(process: ForwardProcess, sigma_min: float | None) -> tuple[float, float]:
    """(σ̃_min, σ̃_max): ``sigma_min`` (default σ̃(t_min)) and σ̃(1), which must be finite."""
    low = sigma_min if sigma_min is not None else noise_ratio(process, process.t_min)
    high = noise_ratio(process, 1.0)
    if not 0 < low < high < math.inf:
        raise InvalidInput(
            f"noise ratios: expected 0 < sigma_min < σ(1)/α(1) < inf, got {low:.6g}, {high:.6g}"
            " (a path with α_1 = 0 has no finite σ schedule: use UniformGrid)"
        )
    return low, high


class KarrasGrid(TimeGrid):
    """The σ schedule of Karras et al. (2022), eq. (5), in the noise ratio σ̃ = σ/α:

        σ̃_i = (σ̃_max^{1/ρ} + i/(K−1) · (σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ,  i < K,   σ̃_K = 0,

    with σ̃_max = σ̃(1) and σ̃_min = ``sigma_min`` (default σ̃(t_min)); ρ = 7
    spends the steps near the data, where the ODE curves most. Times t_i solve
    σ̃(t_i) = σ̃_i; t_K = 0.
    """

    def __init__(self, rho: float = 7.0, sigma_min: float | None = None) -> None:
        if not rho > 0:
            raise InvalidInput(f"rho: expected a positive number, got {rho}")
        self.rho = float(rho)
        self.sigma_min = None if sigma_min is None else float(sigma_min)

    def __call__(self, process: ForwardProcess, steps: int, *, like: Tensor) -> Tensor:
        _check_steps(steps)
        low, high = _ratio_range(process, self.sigma_min)
        if steps == 1:
            return _times_of_ratios(process, [high], like)
        a, b = high ** (1 / self.rho), low ** (1 / self.rho)
        ratios = [(a + i / (steps - 1) * (b - a)) ** self.rho for i in range(steps)]
        ratios[0] = high  # t_0 = 1 exactly, not its rounding through the power
        return _times_of_ratios(process, ratios, like)


class LogSNRGrid(TimeGrid):
    """Half the log-SNR, λ = log(α/σ) = −log σ̃, uniform from λ(1) to λ(t_min); then t_K = 0.

    The limit ρ → ∞ of ``KarrasGrid``; the grid DPM-Solver recommends for
    few-step sampling (Lu et al. 2022, Section 3.3).
    """

    def __init__(self, sigma_min: float | None = None) -> None:
        self.sigma_min = None if sigma_min is None else float(sigma_min)

    def __call__(self, process: ForwardProcess, steps: int, *, like: Tensor) -> Tensor:
        _check_steps(steps)
        low, high = _ratio_range(process, self.sigma_min)
        if steps == 1:
            return _times_of_ratios(process, [high], like)
        a, b = math.log(high), math.log(low)
        ratios = [high] + [math.exp(a + i / (steps - 1) * (b - a)) for i in range(1, steps)]
        return _times_of_ratios(process, ratios, like)
