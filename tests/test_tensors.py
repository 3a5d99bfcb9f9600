"""probgen.tensors: the shared helpers agree with their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.tensors import logmeanexp, softmax_last


@pytest.mark.parametrize("shape", [(5,), (3, 8), (2, 4, 7)])
def test_softmax_last_equals_torch_softmax(shape: tuple[int, ...]) -> None:
    t = 30 * torch.randn(shape)  # large logits: the max shift must keep it finite
    torch.testing.assert_close(softmax_last(t), torch.softmax(t, dim=-1))


def test_softmax_last_gradient_equals_torch_softmax() -> None:
    t = torch.randn(6, 8, requires_grad=True)
    w = torch.randn(6, 8)
    (g_ours,) = torch.autograd.grad((softmax_last(t) * w).sum(), t)
    (g_torch,) = torch.autograd.grad((torch.softmax(t, dim=-1) * w).sum(), t)
    torch.testing.assert_close(g_ours, g_torch)


def test_logmeanexp_is_log_of_mean_of_exp() -> None:
    t = torch.randn(7, 3)
    torch.testing.assert_close(logmeanexp(t, dim=0), t.exp().mean(dim=0).log())
    assert logmeanexp(torch.full((4,), 1000.0)).item() == pytest.approx(1000.0)
    assert logmeanexp(torch.zeros(5)).item() == pytest.approx(0.0, abs=1e-12)
    assert math.isfinite(logmeanexp(torch.tensor([-1e4, 0.0])).item())
