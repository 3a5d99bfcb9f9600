"""probgen.tensors: the shared helpers agree with their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from probgen.tensors import (
    FUSED_SOFTMAX_MIN_WIDTH,
    constant,
    log_softmax_last,
    logmeanexp,
    softmax_last,
)

WIDTHS = [2, 8, FUSED_SOFTMAX_MIN_WIDTH - 1, FUSED_SOFTMAX_MIN_WIDTH, 40]  # both code paths


@pytest.mark.parametrize("k", WIDTHS)
@pytest.mark.parametrize(
    ("ours", "theirs"), [(softmax_last, torch.softmax), (log_softmax_last, torch.log_softmax)]
)
def test_softmax_helpers_equal_torch_in_value_and_gradient(ours, theirs, k: int) -> None:
    t = (30 * torch.randn(3, 4, k)).requires_grad_()  # large logits: must stay finite
    w = torch.randn(3, 4, k)
    torch.testing.assert_close(ours(t), theirs(t, dim=-1))
    (g_ours,) = torch.autograd.grad((ours(t) * w).sum(), t)
    (g_torch,) = torch.autograd.grad((theirs(t, dim=-1) * w).sum(), t)
    torch.testing.assert_close(g_ours, g_torch)


def test_logmeanexp_is_log_of_mean_of_exp() -> None:
    t = torch.randn(7, 3)
    torch.testing.assert_close(logmeanexp(t, dim=0), t.exp().mean(dim=0).log())
    assert logmeanexp(torch.full((4,), 1000.0)).item() == pytest.approx(1000.0)
    assert logmeanexp(torch.zeros(5)).item() == pytest.approx(0.0, abs=1e-12)
    assert math.isfinite(logmeanexp(torch.tensor([-1e4, 0.0])).item())


def test_constant_is_cached_per_dtype_and_usable_by_autograd_after_inference_mode() -> None:
    like32 = torch.zeros(3, dtype=torch.float32)
    with torch.inference_mode():
        two = constant(2, like32)
    assert two.dtype == torch.float32 and two.dim() == 0 and two.item() == 2.0
    assert constant(2.0, like32) is two
    assert constant(2.0, like32.double()).dtype == torch.float64
    ramp = constant((0, 1), torch.zeros(1, dtype=torch.int64))
    assert ramp.tolist() == [0, 1] and ramp.dtype == torch.int64
    x = torch.ones(3, requires_grad=True)
    (x.float() * two).sum().backward()  # saved for backward: not an inference tensor
    assert x.grad is not None and torch.equal(x.grad, torch.full((3,), 2.0, dtype=x.dtype))
