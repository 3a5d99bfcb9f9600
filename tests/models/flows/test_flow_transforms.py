"""Conformance of every flow transform: shapes, inverse round trip, log|det J|, triangularity.

Adding a transform is one line in CASES; it is then checked for everything
the contract (probgen.models.flows.base) promises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.autograd.functional import jacobian

from probgen.models.flows import (
    ActNorm,
    Affine,
    Compose,
    Coupling,
    CouplingConvNet,
    FactorOut,
    Inverse,
    LULinear,
    MaskedAutoregressive,
    Permutation,
    RationalQuadraticSpline,
    Reshape,
    Squeeze,
    Transform,
    glow_level,
    half_mask,
    stack,
)
from probgen.nn.mlp import MLP

SPLINE = RationalQuadraticSpline(bins=6, bound=2.5)  # small bound: inputs hit both tails too


def randomized(t: Transform, scale: float = 0.3) -> Transform:
    """Perturb every parameter so no layer is the identity it is initialised to."""
    with torch.no_grad():
        for p in t.parameters():
            p.add_(scale * torch.randn_like(p))
    return t


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], Transform]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    triangular: bool = False  # ∂z_i/∂x_j = 0 for j > i (autoregressive layers)


mlp = functools.partial(MLP, hidden=(16, 16))
conv = functools.partial(CouplingConvNet, hidden=8)

CASES = [
    Case("affine coupling", lambda: Coupling(half_mask(5), Affine(), mlp), (5,), (5,)),
    Case("spline coupling", lambda: Coupling(half_mask(4), SPLINE, mlp), (4,), (4,)),
    Case("conv coupling", lambda: Coupling(half_mask(4), Affine(), conv), (4, 2, 2), (4, 2, 2)),
    Case("MAF", lambda: MaskedAutoregressive(4, Affine(), (16, 16)), (4,), (4,), True),
    Case("IAF", lambda: Inverse(MaskedAutoregressive(4, Affine(), (16, 16))), (4,), (4,), True),
    Case("spline AR", lambda: MaskedAutoregressive(4, SPLINE, (16, 16)), (4,), (4,), True),
    Case("ActNorm", lambda: ActNorm(3, data_init=False), (3,), (3,)),
    Case("ActNorm image", lambda: ActNorm(2, data_init=False), (2, 3, 2), (2, 3, 2)),
    Case("LU linear", lambda: LULinear(4), (4,), (4,)),
    Case("1x1 convolution", lambda: LULinear(3), (3, 2, 2), (3, 2, 2)),
    Case("permutation", lambda: Permutation.random(5), (5,), (5,)),
    Case("reverse", lambda: Permutation.reverse(4), (4,), (4,)),
    Case("reshape", lambda: Reshape((2, 3), (6,)), (2, 3), (6,)),
    Case("squeeze", lambda: Squeeze(2), (2, 4, 2), (8, 2, 1)),
    Case("unsqueeze", lambda: Inverse(Squeeze(2)), (8, 2, 1), (2, 4, 2)),
    Case("factor out", lambda: FactorOut(LULinear(2), keep=3), (5,), (5,)),
    Case("stack", lambda: stack(3, lambda k: Coupling(half_mask(3), SPLINE, mlp), 3), (3,), (3,)),
    Case(
        "compose",
        lambda: Compose(
            [ActNorm(3, data_init=False), LULinear(3), Coupling(half_mask(3), Affine(), mlp)]
        ),
        (3,),
        (3,),
    ),
    Case("glow levels", lambda: glow_level(1, 2, 1, conv), (1, 4, 4), (1, 4, 4)),
]
BATCH = 3


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest) -> tuple[Case, Transform, torch.Tensor]:
    c = request.param
    t = randomized(c.make())
    x = 1.5 * torch.randn(BATCH, *c.in_shape)
    return c, t, x


def test_shapes(case: tuple[Case, Transform, torch.Tensor]) -> None:
    c, t, x = case
    z, logdet = t(x)
    assert z.shape == (BATCH, *c.out_shape)
    assert logdet.shape == (BATCH,)
    back, inv_logdet = t.inverse(z)
    assert back.shape == (BATCH, *c.in_shape)
    assert inv_logdet.shape == (BATCH,)


def test_inverse_round_trip(case: tuple[Case, Transform, torch.Tensor]) -> None:
    c, t, x = case
    z, logdet = t(x)
    back, inv_logdet = t.inverse(z)
    torch.testing.assert_close(back, x, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(inv_logdet, -logdet, atol=1e-10, rtol=1e-10)
    w = 1.5 * torch.randn(BATCH, *c.out_shape)
    torch.testing.assert_close(t(t.inverse(w)[0])[0], w, atol=1e-10, rtol=1e-10)


def _jacobian(t: Transform, x: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """∂f(x)/∂x of one example x (D,) on flattened inputs and outputs, shape (D, D)."""
    return jacobian(lambda v: t(v.reshape(1, *in_shape))[0].flatten(), x.flatten())


def test_log_det_matches_autograd_jacobian(case: tuple[Case, Transform, torch.Tensor]) -> None:
    c, t, x = case
    _, logdet = t(x)
    for b in range(BATCH):
        sign, expected = torch.linalg.slogdet(_jacobian(t, x[b], c.in_shape))
        assert sign != 0
        torch.testing.assert_close(logdet[b], expected, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("c", [c for c in CASES if c.triangular], ids=lambda c: c.name)
def test_autoregressive_jacobian_is_triangular(c: Case) -> None:
    t = randomized(c.make())
    x = 1.5 * torch.randn(*c.in_shape)
    jac = _jacobian(t, x, c.in_shape)
    assert torch.all(jac.triu(1) == 0)
    assert torch.all(jac.tril(-1).abs().sum(dim=1)[1:] > 0)  # each z_i, i > 0, sees x_{<i}
