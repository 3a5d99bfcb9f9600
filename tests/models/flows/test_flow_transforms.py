"""Conformance of every flow transform: shapes, inverse round trip, log|det J|, triangularity.

Adding a transform is one line in CASES; it is then checked for everything
the contract (probgen.models.flows.base) promises.
"""

from __future__ import annotations

import copy
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


OPS = 16  # roundings allowed per quantity
F64_ATOL = 1e-10  # the float64 round-trip tolerance from before: never loosened


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(
    request: pytest.FixtureRequest, dtype: torch.dtype
) -> tuple[Case, Transform, torch.Tensor]:
    """A randomised transform and a batch in ``dtype`` (float32 and float64)."""
    c = request.param
    t = randomized(c.make())
    x = 1.5 * torch.randn(BATCH, *c.in_shape)
    return c, t, x


def test_shapes(case: tuple[Case, Transform, torch.Tensor]) -> None:
    c, t, x = case
    z, logdet = t(x)
    assert z.shape == (BATCH, *c.out_shape) and z.dtype == x.dtype
    assert logdet.shape == (BATCH,) and logdet.dtype == x.dtype
    back, inv_logdet = t.inverse(z)
    assert back.shape == (BATCH, *c.in_shape)
    assert inv_logdet.shape == (BATCH,)


def _jacobian(t: Transform, x: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """∂f(x)/∂x of one example x (D,) on flattened inputs and outputs, shape (D, D)."""
    return jacobian(lambda v: t(v.reshape(1, *in_shape))[0].flatten(), x.flatten())


def _float64_jacobians(t: Transform, x: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Jacobians (B, D, D) of a float64 copy of t at x (its data-dependent init already done)."""
    t64 = copy.deepcopy(t).double()
    return torch.stack([_jacobian(t64, row.double(), in_shape) for row in x])


def _round_trip_size(x: torch.Tensor, z: torch.Tensor, jac: torch.Tensor) -> torch.Tensor:
    """|x|∞ + ‖J⁻¹‖₂ |z|∞ per example: rounding z by eps |z| moves f⁻¹(z) by ‖J⁻¹‖ eps |z|."""
    inverse_norm = torch.linalg.matrix_norm(torch.linalg.inv(jac), ord=2)
    return x.flatten(1).abs().amax(1).double() + inverse_norm * z.flatten(1).abs().amax(1).double()


def _assert_within(
    err: torch.Tensor, size: torch.Tensor, dtype: torch.dtype, cap: torch.Tensor
) -> None:
    """err ≤ OPS eps(dtype) size per example, and in float64 also ≤ cap (the old tolerance)."""
    tol = OPS * torch.finfo(dtype).eps * size
    if dtype == torch.float64:
        tol = torch.minimum(tol, cap)
    assert (err <= tol).all(), (err / (torch.finfo(dtype).eps * size)).max().item()


def test_inverse_round_trip(case: tuple[Case, Transform, torch.Tensor]) -> None:
    c, t, x = case
    z, logdet = t(x)
    back, inv_logdet = t.inverse(z)
    size = _round_trip_size(x, z, _float64_jacobians(t, x, c.in_shape))
    err = (back - x).flatten(1).abs().amax(1).double()
    _assert_within(err, size, x.dtype, F64_ATOL * (1 + x.flatten(1).abs().amax(1).double()))
    ld_err = (inv_logdet + logdet).abs().double()
    # the inverse's log-det is evaluated at values off by up to eps·size (the round trip)
    weighted, gradient = _log_det_sensitivity(copy.deepcopy(t).double(), x)
    ld_size = 1 + logdet.abs().double() + weighted + gradient * size
    _assert_within(ld_err, ld_size, x.dtype, F64_ATOL * (1 + logdet.abs().double()))
    w = 1.5 * torch.randn(BATCH, *c.out_shape)
    v = t.inverse(w)[0]
    jac = _float64_jacobians(t, v, c.in_shape)
    # rounding v = f⁻¹(w) by eps |v| moves f(v) by ‖J‖ eps |v|
    w_size = w.flatten(1).abs().amax(1).double() + torch.linalg.matrix_norm(jac, ord=2) * (
        v.flatten(1).abs().amax(1).double()
    )
    err = (t(v)[0] - w).flatten(1).abs().amax(1).double()
    _assert_within(err, w_size, x.dtype, F64_ATOL * (1 + w.flatten(1).abs().amax(1).double()))


def _log_det_sensitivity(t: Transform, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example (float64), over h_0 = x and every intermediate h_k of a Compose:
    Σ_k Σ_i |∂ log|det J| / ∂h_k,i| |h_k,i| (rounding every h_k by eps moves log|det J| by
    this times eps) and Σ_k ‖∂ log|det J| / ∂h_k‖₁ (its change per unit error in the h_k).
    """
    layers = list(t.transforms) if isinstance(t, Compose) else [t]
    h, total, leaves = x.double(), torch.zeros(len(x), dtype=torch.float64), []
    for layer in layers:
        h = h.detach().requires_grad_(True)
        leaves.append(h)
        h, logdet = layer(h)
        total = total + logdet
    weighted, gradient = (
        torch.zeros(len(x), dtype=torch.float64),
        torch.zeros(len(x), dtype=torch.float64),
    )
    if not total.requires_grad:  # log|det J| is constant (permutations, reshapes)
        return weighted, gradient
    for g, v in zip(
        torch.autograd.grad(total.sum(), leaves, allow_unused=True), leaves, strict=True
    ):
        if g is not None:
            weighted = weighted + (g * v.detach()).flatten(1).abs().sum(1)
            gradient = gradient + g.flatten(1).abs().sum(1)
    return weighted, gradient


def test_log_det_matches_autograd_jacobian(case: tuple[Case, Transform, torch.Tensor]) -> None:
    """log|det J| in the dtype against slogdet of the float64 Jacobian at the same point.

    size = 1 + |log|det J|| + the sensitivity of log|det J| to rounding its input and
    every intermediate value (``_log_det_sensitivity``).
    """
    c, t, x = case
    _, logdet = t(x)
    t64 = copy.deepcopy(t).double()
    sensitivity, _ = _log_det_sensitivity(t64, x)
    for b in range(BATCH):
        sign, expected = torch.linalg.slogdet(_jacobian(t64, x[b].double(), c.in_shape))
        assert sign != 0
        size = 1 + expected.abs() + sensitivity[b]
        err = (logdet[b].double() - expected).abs()
        cap = 1e-9 * (1 + expected.abs())  # the float64 tolerance from before
        _assert_within(err[None], size[None], x.dtype, cap[None])


@pytest.mark.parametrize("c", [c for c in CASES if c.triangular], ids=lambda c: c.name)
def test_autoregressive_jacobian_is_triangular(c: Case, dtype: torch.dtype) -> None:
    t = randomized(c.make())
    x = 2 * torch.rand(*c.in_shape) - 1  # inside the spline's interval: no identity tails
    jac = _jacobian(t, x, c.in_shape)
    assert jac.dtype == dtype
    assert torch.all(jac.triu(1) == 0)
    assert torch.all(jac.tril(-1).abs().sum(dim=1)[1:] > 0)  # each z_i, i > 0, sees x_{<i}
