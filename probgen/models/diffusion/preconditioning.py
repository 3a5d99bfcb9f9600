"""EDM's preconditioning of the denoiser network (Karras et al. 2022, Table 1), on any path.

With the noise ratio σ̃ = σ_t / α_t and y = x_t / α_t = x_0 + σ̃ ε (EDM's
variables), the network F_θ is wrapped as

    x̂_0 = D(y; σ̃) = c_skip(σ̃) y + c_out(σ̃) F_θ(c_in(σ̃) y, c_noise(σ̃)),

    c_skip = σ_d² / (σ̃² + σ_d²),   c_out = σ̃ σ_d / √(σ̃² + σ_d²),
    c_in = 1 / √(σ̃² + σ_d²),       c_noise = ¼ ln σ̃,

where σ_d is the data's standard deviation. For data of variance σ_d² the
network's input c_in y and its effective target (x_0 − c_skip y) / c_out both
have unit variance at every noise level (Karras et al. 2022, Appendix B.6).
It is a reparametrisation: any denoiser can be written this way, and the
wrapper is a ``Denoiser`` like the others, so every sampler, objective and
likelihood reads it through the same ``Prediction``.

Reference: Karras, Aittala, Aila & Laine (2022), "Elucidating the design space of
diffusion-based generative models", Table 1 and Appendix B.6.
"""

from __future__ import annotations

from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.models.diffusion.parametrizations import NetworkDenoiser, Prediction
from probgen.models.diffusion.processes import ForwardProcess
from probgen.tensors import append_dims

__all__ = ["EDMPreconditioning"]


class EDMPreconditioning(NetworkDenoiser):
    """x̂_0 = c_skip y + c_out F(c_in y, c_noise), y = x_t / α_t (module docstring).

    Args:
        net: F, called as ``net(c_in y (B, *event), c_noise (B,)[, h])``.
        process: the forward process (any path with α_t > 0 where the network runs).
        sigma_data: σ_d, the standard deviation of the data (0.5 in Karras et al.).
    """

    kind = "data"

    def __init__(self, net: nn.Module, process: ForwardProcess, sigma_data: float = 0.5) -> None:
        if not sigma_data > 0:
            raise InvalidInput(f"sigma_data: expected a positive number, got {sigma_data}")
        super().__init__(net, process)
        self.sigma_data = float(sigma_data)

    def coefficients(self, ratio: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) at noise ratios σ̃ of any shape."""
        var = ratio.square() + self.sigma_data**2
        c_skip = self.sigma_data**2 / var
        c_out = ratio * self.sigma_data / var.sqrt()
        return c_skip, c_out, var.rsqrt(), 0.25 * ratio.log()

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Prediction:
        alpha, sigma = self.process.alpha_sigma(t.to(x.dtype).expand(x.shape[0]))  # (B,)
        if not bool((alpha > 0).all()):
            raise InvalidInput("EDMPreconditioning: needs α_t > 0 (y = x / α_t)")
        c_skip, c_out, c_in, c_noise = self.coefficients(sigma / alpha)
        n = x.dim()
        y = x / append_dims(alpha, n)
        inputs = append_dims(c_in, n) * y
        out = (
            self.net(inputs, c_noise) if condition is None else self.net(inputs, c_noise, condition)
        )
        data = append_dims(c_skip, n) * y + append_dims(c_out, n) * out
        return self.from_data(x, t, data)
