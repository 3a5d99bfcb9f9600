"""The change-of-variables formula behind every normalizing flow, checked numerically.

For a bijection f (data -> latent) and x = f⁻¹(z), z ~ p_Z,

    log p_X(x) = log p_Z(f(x)) + log |det ∂f(x)/∂x|                (change of variables)

(Rezende & Mohamed 2015, eq. 1; Papamakarios et al. 2021, eq. 2). Equivalently,
with the generative map g = f⁻¹: log p_X(x) = log p_Z(g⁻¹(x)) + log|det ∂g⁻¹(x)/∂x|.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats
from torch.autograd.functional import jacobian

from probgen.distributions import StandardNormal
from probgen.models.flows import MAF, NSF, ActNorm, Compose, Flow, Glow, LULinear, RealNVP

FLOWS = {
    "realnvp": lambda: RealNVP((3,), transforms=3, hidden=(16,)),
    "maf": lambda: MAF((3,), transforms=3, hidden=(16,)),
    "nsf": lambda: NSF((3,), transforms=2, hidden=(16,), bins=4, bound=2.0),
    "glow": lambda: Glow((1, 2, 2), levels=1, steps=2, hidden=4),
}


@pytest.mark.parametrize("name", list(FLOWS))
def test_log_prob_is_base_density_of_inverse_plus_autograd_log_det(
    name: str, theory_dtype: torch.dtype, tol
) -> None:
    """Change of variables: log p_X(x) = log p_Z(f(x)) + log|det ∂f/∂x|, with ∂f/∂x by autograd.

    The flow runs in ``theory_dtype``; the right side is computed by a float64 copy at the
    same (rounded) x, and they agree within 64 eps · (1 + |log p| + Σ_i |∂log p/∂x_i| |x_i|),
    in float64 also within the 1e-9 (1 + |log p|) of before.
    """
    flow = FLOWS[name]()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    flow.eval()  # no data-dependent initialisation: f is fixed
    x = torch.randn(4, *flow.event_shape)
    log_p = flow.log_prob(x)
    flow64 = copy.deepcopy(flow).double()
    x64 = x.double().requires_grad_(True)
    (grad,) = torch.autograd.grad(flow64.log_prob(x64).sum(), x64)
    sensitivity = (grad * x64.detach()).flatten(1).abs().sum(1)
    for b in range(len(x)):

        def f(v: torch.Tensor) -> torch.Tensor:
            return flow64.transform(v.reshape(1, *flow.event_shape))[0].flatten()

        _, log_det = torch.linalg.slogdet(jacobian(f, x64[b].detach().flatten()))
        z = f(x64[b].detach().flatten()).reshape(1, *flow.base.event_shape)
        expected = (flow64.base.log_prob(z)[0] + log_det).item()
        bound = tol(theory_dtype, 1 + abs(expected) + sensitivity[b].item(), ops=64)
        if theory_dtype == torch.float64:
            bound = min(bound, 1e-9 * (1 + abs(expected)))
        assert abs(log_p[b].item() - expected) <= bound, (log_p[b].item(), expected, bound)


def test_linear_flow_is_the_gaussian_it_pushes_forward(theory_dtype: torch.dtype, tol) -> None:
    """z = A x + c with z ~ N(0, I) means x ~ N(-A⁻¹c, A⁻¹A⁻ᵀ): the flow's density is that law's.

    The flow runs in ``theory_dtype``; A and c come from a float64 copy of it and the
    Gaussian's log-density from SciPy. They agree within 64 eps · (1 + |log p| +
    Σ_i |∂log p/∂x_i| |x_i|), in float64 also within the 1e-10 (1 + |log p|) of before.
    """
    transform = Compose([ActNorm(3, data_init=False), LULinear(3)])
    with torch.no_grad():
        for p in transform.parameters():
            p.add_(0.5 * torch.randn_like(p))
    flow = Flow(transform, StandardNormal((3,)))
    x = 2 * torch.randn(6, 3)
    log_p = flow.log_prob(x)

    transform64 = copy.deepcopy(transform).double()
    c = transform64(torch.zeros(1, 3, dtype=torch.float64))[0].flatten()  # f(0)
    a = jacobian(
        lambda v: transform64(v.reshape(1, 3))[0].flatten(), torch.zeros(3, dtype=torch.float64)
    )
    a_inv = np.linalg.inv(a.numpy())
    x64 = x.double().numpy()
    truth = stats.multivariate_normal(-a_inv @ c.detach().numpy(), a_inv @ a_inv.T).logpdf(x64)
    grad = -np.linalg.solve(a_inv @ a_inv.T, (x64 + a_inv @ c.detach().numpy()).T).T  # ∇ log p
    sensitivity = np.abs(grad * x64).sum(1)
    for b in range(len(x)):
        bound = tol(theory_dtype, 1 + abs(truth[b]) + sensitivity[b], ops=64)
        if theory_dtype == torch.float64:
            bound = min(bound, 1e-10 * (1 + abs(truth[b])))
        assert abs(log_p[b].item() - truth[b]) <= bound, (log_p[b].item(), truth[b], bound)
