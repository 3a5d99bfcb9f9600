"""MaskedLinear and MADE: the autoregressive property, checked by gradients and by paths."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from probgen.core import InvalidInput
from probgen.nn import MADE, MaskedLinear


def jacobian(net: MADE, x: Tensor, context: Tensor | None = None) -> Tensor:
    """d out[i, a] / d x[j] for one example: shape (D, k, D)."""
    return torch.autograd.functional.jacobian(lambda v: net(v[None], context)[0], x)


def allowed(order: Tensor) -> Tensor:
    """[i, j] True iff π(j) < π(i): the inputs output i may depend on."""
    return order[None, :] < order[:, None]


@st.composite
def made_setups(draw):
    d = draw(st.integers(1, 6))
    hidden = tuple(draw(st.lists(st.integers(d, 12), min_size=0, max_size=3)))
    k = draw(st.integers(1, 3))
    order = torch.tensor(draw(st.permutations(list(range(d)))))
    context = draw(st.integers(0, 2))
    return d, hidden, k, order, context


@settings(max_examples=25, deadline=None)
@given(made_setups())
def test_made_jacobian_is_exactly_the_autoregressive_pattern(setup):
    d, hidden, k, order, c = setup
    # tanh keeps every allowed path alive, so allowed entries are nonzero too
    net = MADE(d, hidden, k, context=c, order=order, activation=nn.Tanh)
    x = torch.randn(d)
    ctx = torch.randn(1, c) if c else None
    jac = jacobian(net, x, ctx)
    assert jac.shape == (d, k, d)
    depends = jac.abs().amax(dim=1) > 0
    assert torch.equal(depends, allowed(order))
    assert torch.equal(net.connectivity(), allowed(order))


def test_narrow_hidden_layers_never_break_the_property():
    # width 2 < D-1 leaves some degrees out: fewer paths, never forbidden ones
    d = 6
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    net = MADE(d, (2, 2), 2, order=order)
    conn = net.connectivity()
    assert not (conn & ~allowed(order)).any()
    jac = jacobian(net, torch.randn(d))
    assert not ((jac.abs().amax(dim=1) > 0) & ~allowed(order)).any()


def test_context_reaches_every_output_and_first_output_depends_only_on_it():
    net = MADE(3, (8,), 2, context=2, activation=nn.Tanh)
    x = torch.randn(4, 3)
    ctx = torch.randn(4, 2, requires_grad=True)
    out = net(x, ctx)
    for i in range(3):
        (g,) = torch.autograd.grad(out[:, i].sum(), ctx, retain_graph=True)
        assert (g.abs() > 0).all()
    other = net(x + torch.randn(4, 3), ctx)
    torch.testing.assert_close(other[:, 0], out[:, 0])


def test_masked_linear_applies_its_mask():
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    layer = MaskedLinear(mask)
    x = torch.randn(5, 3)
    expected = x @ (layer.weight * mask).T + layer.bias
    torch.testing.assert_close(layer(x), expected)
    layer(x).sum().backward()
    assert (layer.weight.grad[mask == 0] == 0).all()


def test_zero_last_starts_at_zero():
    net = MADE(4, (16,), 3, zero_last=True)
    assert torch.equal(net(torch.randn(7, 4)), torch.zeros(7, 4, 3))


def test_bad_arguments_raise_invalid_input():
    with pytest.raises(InvalidInput, match="permutation"):
        MADE(3, order=[0, 0, 1])
    net = MADE(3, (8,), context=2)
    with pytest.raises(InvalidInput, match=r"\(B, 3\)"):
        net(torch.randn(4, 2), torch.randn(4, 2))
    with pytest.raises(InvalidInput, match="context"):
        net(torch.randn(4, 3))
    with pytest.raises(InvalidInput, match="context=0"):
        MADE(3)(torch.randn(4, 3), torch.randn(4, 1))
