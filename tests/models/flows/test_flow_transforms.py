"""Conformance of every flow transform: shapes, inverse round trip, log|det J|, triangularity.

Adding a transform is one line in CASES; it is then checked for everything
the contract (probgen.models.flows.base) promises. Conditional layers (a
``context`` width w > 0) are checked at a fixed context c (B, w): f(·; c) is a
bijection with the promised log-determinant for each c, and c reaches z.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch.autograd.functional import jacobian

from probgen.core import InvalidInput
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
    context: int = 0  # width w of the context the layer reads


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
    Case("cond. coupling", lambda: Coupling(half_mask(5), Affine(), mlp, 3), (5,), (5,), context=3),
    Case(
        "cond. spline coupling",
        lambda: Coupling(half_mask(4), SPLINE, mlp, 2),
        (4,),
        (4,),
        context=2,
    ),
    Case(
        "cond. conv coupling",
        lambda: Coupling(half_mask(4), Affine(), conv, 3),
        (4, 2, 2),
        (4, 2, 2),
        context=3,
    ),
    Case(
        "cond. MAF",
        lambda: MaskedAutoregressive(4, Affine(), (16, 16), context=3),
        (4,),
        (4,),
        True,
        3,
    ),
    Case(
        "cond. IAF",
        lambda: Inverse(MaskedAutoregressive(4, Affine(), (16, 16), context=2)),
        (4,),
        (4,),
        True,
        2,
    ),
    Case(
        "cond. spline AR",
        lambda: MaskedAutoregressive(4, SPLINE, (16, 16), context=3),
        (4,),
        (4,),
        True,
        3,
    ),
    Case(
        "cond. stack",
        lambda: stack(3, lambda k: MaskedAutoregressive(3, SPLINE, (8,), context=2), 3),
        (3,),
        (3,),
        context=2,
    ),
    Case(
        "cond. glow levels",
        lambda: Compose([Reshape((16,), (1, 4, 4)), glow_level(1, 2, 1, conv, context=3)]),
        (16,),
        (1, 4, 4),
        context=3,
    ),
]
BATCH = 3

Checked = tuple[Case, Transform, torch.Tensor, torch.Tensor | None]


def _context(c: Case, rows: int) -> torch.Tensor | None:
    return torch.randn(rows, c.context) if c.context else None


OPS = 16  # roundings allowed per quantity
F64_ATOL = 1e-10  # the float64 round-trip tolerance from before: never loosened


@pytest.fixture(params=CASES, ids=[c.name for c in CASES])
def case(request: pytest.FixtureRequest, dtype: torch.dtype) -> Checked:
    """A randomised transform, a batch and a context (conditional layers) in ``dtype``."""
    c = request.param
    t = randomized(c.make())
    x = 1.5 * torch.randn(BATCH, *c.in_shape)
    return c, t, x, _context(c, BATCH)


def test_shapes(case: Checked) -> None:
    c, t, x, ctx = case
    z, logdet = t(x, ctx)
    assert z.shape == (BATCH, *c.out_shape) and z.dtype == x.dtype
    assert logdet.shape == (BATCH,) and logdet.dtype == x.dtype
    back, inv_logdet = t.inverse(z, ctx)
    assert back.shape == (BATCH, *c.in_shape)
    assert inv_logdet.shape == (BATCH,)


def _jacobian(
    t: Transform, x: torch.Tensor, in_shape: tuple[int, ...], ctx: torch.Tensor | None = None
) -> torch.Tensor:
    """∂f(x; c)/∂x of one example x (D,) at a fixed context c (1, w), shape (D, D)."""
    return jacobian(lambda v: t(v.reshape(1, *in_shape), ctx)[0].flatten(), x.flatten())


def _row(ctx: torch.Tensor | None, b: int) -> torch.Tensor | None:
    return None if ctx is None else ctx[b : b + 1].double()


def _float64_jacobians(
    t: Transform, x: torch.Tensor, in_shape: tuple[int, ...], ctx: torch.Tensor | None
) -> torch.Tensor:
    """Jacobians (B, D, D) of a float64 copy of t at x (its data-dependent init already done)."""
    t64 = copy.deepcopy(t).double()
    return torch.stack(
        [_jacobian(t64, row.double(), in_shape, _row(ctx, b)) for b, row in enumerate(x)]
    )


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


def test_inverse_round_trip(case: Checked) -> None:
    c, t, x, ctx = case
    z, logdet = t(x, ctx)
    back, inv_logdet = t.inverse(z, ctx)
    size = _round_trip_size(x, z, _float64_jacobians(t, x, c.in_shape, ctx))
    err = (back - x).flatten(1).abs().amax(1).double()
    _assert_within(err, size, x.dtype, F64_ATOL * (1 + x.flatten(1).abs().amax(1).double()))
    ld_err = (inv_logdet + logdet).abs().double()
    # the inverse's log-det is evaluated at values off by up to eps·size (the round trip)
    weighted, gradient = _log_det_sensitivity(copy.deepcopy(t).double(), x, ctx)
    ld_size = 1 + logdet.abs().double() + weighted + gradient * size
    _assert_within(ld_err, ld_size, x.dtype, F64_ATOL * (1 + logdet.abs().double()))
    w = 1.5 * torch.randn(BATCH, *c.out_shape)
    v = t.inverse(w, ctx)[0]
    jac = _float64_jacobians(t, v, c.in_shape, ctx)
    # rounding v = f⁻¹(w) by eps |v| moves f(v) by ‖J‖ eps |v|
    w_size = w.flatten(1).abs().amax(1).double() + torch.linalg.matrix_norm(jac, ord=2) * (
        v.flatten(1).abs().amax(1).double()
    )
    err = (t(v, ctx)[0] - w).flatten(1).abs().amax(1).double()
    _assert_within(err, w_size, x.dtype, F64_ATOL * (1 + w.flatten(1).abs().amax(1).double()))


def _log_det_sensitivity(
    t: Transform, x: torch.Tensor, ctx: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example (float64), over h_0 = x and every intermediate h_k of a Compose:
    Σ_k Σ_i |∂ log|det J| / ∂h_k,i| |h_k,i| (rounding every h_k by eps moves log|det J| by
    this times eps) and Σ_k ‖∂ log|det J| / ∂h_k‖₁ (its change per unit error in the h_k).
    """
    layers = list(t.transforms) if isinstance(t, Compose) else [t]
    h, total, leaves = x.double(), torch.zeros(len(x), dtype=torch.float64), []
    for layer in layers:
        h = h.detach().requires_grad_(True)
        leaves.append(h)
        h, logdet = layer(h, None if ctx is None else ctx.double())
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


def test_log_det_matches_autograd_jacobian(case: Checked) -> None:
    """log|det J| in the dtype against slogdet of the float64 Jacobian at the same point.

    size = 1 + |log|det J|| + the sensitivity of log|det J| to rounding its input and
    every intermediate value (``_log_det_sensitivity``).
    """
    c, t, x, ctx = case
    _, logdet = t(x, ctx)
    t64 = copy.deepcopy(t).double()
    sensitivity, _ = _log_det_sensitivity(t64, x, ctx)
    for b in range(BATCH):
        jac = _jacobian(t64, x[b].double(), c.in_shape, _row(ctx, b))
        sign, expected = torch.linalg.slogdet(jac)
        assert sign != 0
        size = 1 + expected.abs() + sensitivity[b]
        err = (logdet[b].double() - expected).abs()
        cap = 1e-9 * (1 + expected.abs())  # the float64 tolerance from before
        _assert_within(err[None], size[None], x.dtype, cap[None])


@pytest.mark.parametrize("c", [c for c in CASES if c.triangular], ids=lambda c: c.name)
def test_autoregressive_jacobian_is_triangular(c: Case, dtype: torch.dtype) -> None:
    t = randomized(c.make())
    # inside the spline's interval (no identity tails); at several points, since at any one
    # point every ReLU path from x_{<i} to z_i can be inactive
    seen = torch.zeros(c.in_shape[0], dtype=torch.bool)
    for _ in range(8):
        x = 2 * torch.rand(*c.in_shape) - 1
        jac = _jacobian(t, x, c.in_shape, _context(c, 1))
        assert jac.dtype == dtype
        assert torch.all(jac.triu(1) == 0)
        seen |= jac.tril(-1).abs().sum(dim=1) > 0
    assert torch.all(seen[1:])  # each z_i, i > 0, sees x_{<i}


CONDITIONAL = [c for c in CASES if c.context]


@pytest.mark.parametrize("c", CONDITIONAL, ids=lambda c: c.name)
def test_every_output_depends_on_the_context_and_gradients_reach_it(c: Case) -> None:
    """∂z/∂c ≠ 0 in both directions (every entry of an autoregressive layer, the first too).

    Inputs stay inside the splines' interval, where they are not the identity.
    """
    t = randomized(c.make()).eval()  # eval: no ActNorm data initialisation on one example
    x = 0.5 * torch.randn(1, *c.in_shape)
    ctx = torch.randn(1, c.context)
    for direction, v in ((t, x), (t.inverse, 0.5 * torch.randn(1, *c.out_shape))):
        jac = jacobian(lambda u, v=v, f=direction: f(v, u)[0].flatten(), ctx)  # (D, w)
        changed = jac.abs().sum(dim=1) > 0
        assert bool(changed.all()) if c.triangular else bool(changed.any())
    ctx.requires_grad_(True)
    z, logdet = t(x, ctx)
    (z.square().sum() + logdet.sum()).backward()
    assert ctx.grad is not None and bool(ctx.grad.abs().sum() > 0)


@pytest.mark.parametrize("c", CONDITIONAL, ids=lambda c: c.name)
def test_conditional_layers_reject_a_missing_or_misshapen_context(c: Case) -> None:
    t = c.make()
    x = torch.randn(2, *c.in_shape)
    with pytest.raises(InvalidInput, match="context"):
        t(x)
    with pytest.raises(InvalidInput, match="context"):
        t(x, torch.randn(2, c.context + 1))


def test_unconditional_layers_reject_a_context() -> None:
    for t in (Coupling(half_mask(4), Affine(), mlp), MaskedAutoregressive(4, Affine(), (8,))):
        with pytest.raises(InvalidInput, match="context=0"):
            t(torch.randn(2, 4), torch.randn(2, 3))
