"""Conformance of every sampler: one signature, one step, no hidden state.

Adding a kernel is one line in KERNELS; it is then checked for shapes, dtype,
determinism under a generator, recorded trajectories, evaluation counts and
acceptance reporting. Exactness against known stationary laws lives in
tests/theory/test_langevin_ebm.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from probgen.core import InvalidInput
from probgen.registry import SAMPLERS
from probgen.sampling import HMC, MALA, Energy, Kernel, Langevin, LogDensity, Transition

# (kernel, energy-and-score evaluations per step, Metropolis-adjusted)
KERNELS = [
    pytest.param(Langevin(0.3), 1, False, id="langevin"),
    pytest.param(MALA(0.3), 2, True, id="mala"),
    pytest.param(HMC(0.2, n_leapfrog=4), 5, True, id="hmc"),
]


class _Counted:
    """E(x) = ½‖x‖² over every entry, counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 0.5 * x.square().flatten(1).sum(1)


@pytest.mark.parametrize(("kernel", "evals", "adjusted"), KERNELS)
def test_step_and_run_keep_shape_dtype_and_count_evaluations(
    kernel: Kernel, evals: int, adjusted: bool
) -> None:
    energy = _Counted()
    x0 = torch.randn(6, 1, 3, 3, dtype=torch.float32)  # image-shaped states, float32
    t = kernel.step(x0, Energy(energy))
    assert isinstance(t, Transition)
    assert t.x.shape == x0.shape and t.x.dtype == torch.float32
    assert t.n_evaluations == evals == energy.calls
    assert (t.accepted is not None) == adjusted == (t.accept_prob is not None)
    if adjusted:
        assert t.accepted.shape == (6,) and t.accepted.dtype == torch.bool
        assert ((t.accept_prob >= 0) & (t.accept_prob <= 1)).all()
    result = kernel.run(Energy(energy), x0, 10, record_every=5)
    assert result.samples.shape == x0.shape and result.samples.dtype == torch.float32
    assert result.n_evaluations == 10 * evals and energy.calls == 11 * evals
    assert result.trajectory is not None and result.trajectory.shape == (2, *x0.shape)
    torch.testing.assert_close(result.trajectory[-1], result.samples)
    if adjusted:
        assert 0.0 < result.acceptance_rate <= 1.0
    else:
        assert result.acceptance_rate is None


@pytest.mark.parametrize(("kernel", "evals", "adjusted"), KERNELS)
def test_runs_are_reproducible_with_a_generator(kernel: Kernel, evals: int, adjusted: bool) -> None:
    target = Energy(_Counted())
    x0 = torch.randn(5, 2)

    def draw(seed: int) -> torch.Tensor:
        return kernel.run(target, x0, 7, generator=torch.Generator().manual_seed(seed)).samples

    torch.testing.assert_close(draw(3), draw(3), rtol=0, atol=0)
    assert not torch.equal(draw(3), draw(4))
    assert kernel.run(target, x0, 0).samples.equal(x0)


@pytest.mark.parametrize(("kernel", "evals", "adjusted"), KERNELS)
def test_bad_arguments_are_rejected(kernel: Kernel, evals: int, adjusted: bool) -> None:
    target = Energy(_Counted())
    with pytest.raises(InvalidInput, match="wrap an energy in Energy"):
        kernel.run(lambda x: x.sum(1), torch.zeros(2, 2), 1)
    with pytest.raises(InvalidInput, match="x0: expected a floating-point"):
        kernel.run(target, torch.zeros(2, 2, dtype=torch.long), 1)
    with pytest.raises(InvalidInput, match="n_steps"):
        kernel.run(target, torch.zeros(2, 2), -1)
    with pytest.raises(InvalidInput, match="record_every"):
        kernel.run(target, torch.zeros(2, 2), 3, record_every=0)


@pytest.mark.parametrize("make", [Langevin, MALA, HMC])
@pytest.mark.parametrize("step", [0.0, -1.0, math.inf, math.nan])
def test_step_sizes_must_be_positive_and_finite(make: type, step: float) -> None:
    with pytest.raises(InvalidInput, match="step_size"):
        make(step)


def test_hmc_needs_at_least_one_leapfrog_step() -> None:
    with pytest.raises(InvalidInput, match="n_leapfrog"):
        HMC(0.1, n_leapfrog=0)


@pytest.mark.parametrize("kernel", [MALA(0.02), HMC(0.02, n_leapfrog=20)], ids=["mala", "hmc"])
def test_small_steps_are_almost_always_accepted(kernel: Kernel) -> None:
    """The Metropolis ratio → 1 as ε → 0 (MALA: O(ε³) error; leapfrog: O(ε²) energy error)."""
    target = LogDensity(lambda x: -0.5 * x.square().sum(1))
    result = kernel.run(target, torch.randn(200, 3), 20)
    assert result.acceptance_rate > 0.99


@pytest.mark.parametrize("kernel", [MALA(1.0), HMC(0.5, n_leapfrog=5)], ids=["mala", "hmc"])
def test_metropolis_kernels_reject_moves_outside_the_support(kernel: Kernel) -> None:
    """E = NaN outside the unit box (undefined there): every accepted state stays inside."""

    def energy(x: torch.Tensor) -> torch.Tensor:
        outside = (x.abs() > 1).any(1)
        return 0.5 * x.square().sum(1) + torch.where(outside, math.nan, 0.0)

    result = kernel.run(Energy(energy), torch.zeros(500, 2), 30)
    assert (result.samples.abs() <= 1).all()
    assert 0.0 < result.acceptance_rate < 1.0


def test_every_registered_sampler_is_a_sampler_class() -> None:
    from probgen.sampling import AnnealedLangevin, Sampler

    classes = {
        name: SAMPLERS.get(name) for name in ("langevin", "mala", "hmc", "annealed_langevin")
    }
    assert classes == {
        "langevin": Langevin,
        "mala": MALA,
        "hmc": HMC,
        "annealed_langevin": AnnealedLangevin,
    }
    assert all(issubclass(c, Sampler) for c in classes.values())
