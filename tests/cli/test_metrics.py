"""The run metrics: which are chosen, their values against the true data distribution, the file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from probgen.cli.metrics import KL_TO_DATA, default_metrics, evaluate, write_metrics
from probgen.core import (
    DataSpec,
    Estimate,
    GenerativeModel,
    IntractableLikelihood,
    Likelihood,
)
from probgen.data.base import ArrayDataset
from probgen.data.toy import ToyDataset
from probgen.distributions import DiagonalGaussian


class SamplerOnly(GenerativeModel):
    """Samples of ``source`` without a density (likelihood NONE), like a GAN generator."""

    def __init__(self, source: GenerativeModel, shift: float = 0.0) -> None:
        super().__init__(source.event_shape)
        self.source = source
        self.shift = shift

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.source.sample(n, generator=generator) + self.shift


@pytest.fixture(scope="module")
def toy() -> ToyDataset:
    return ToyDataset("8gaussians", n_validation=10, n_test=1000)


def test_default_metrics_follow_likelihood_and_data(toy: ToyDataset) -> None:
    density = toy.truth
    assert default_metrics(density, toy) == ["nll", "bpd", "mmd", "energy_distance"]
    assert default_metrics(SamplerOnly(density), toy) == ["mmd", "energy_distance"]
    digits_like = ArrayDataset(*(torch.zeros(4, 1, 2, 2),) * 3, spec=DataSpec((1, 2, 2), 17))
    assert default_metrics(DiagonalGaussian(torch.zeros(1, 2, 2), torch.ones(1, 2, 2)),
                           digits_like) == ["nll", "bpd"]  # fmt: skip


def test_the_true_distribution_scores_zero_kl_and_its_entropy(toy: ToyDataset) -> None:
    """With p_θ = p_data: KL(p_data‖p_θ) is exactly 0 and NLL estimates H[p_data]."""
    results = evaluate(toy.truth, toy, ["nll", "bpd", "mmd"], n_samples=500)
    assert results[KL_TO_DATA].value == 0.0 and results[KL_TO_DATA].stderr == 0.0
    entropy = toy.truth.entropy(n=100_000, generator=torch.Generator().manual_seed(5))
    nll = results["nll"]
    assert abs(nll.value - entropy.value) < 4.5 * math.hypot(nll.stderr, entropy.stderr)
    assert results["bpd"].value == pytest.approx(nll.value / (2 * math.log(2)))


def test_sample_metrics_tell_a_shifted_sampler_from_the_truth(toy: ToyDataset) -> None:
    """Unbiased MMD² and energy distance: ≈ 0 for exact samples, clearly > 0 for a shift."""
    exact = evaluate(SamplerOnly(toy.truth), toy, ["mmd", "energy_distance"], n_samples=500)
    shifted = evaluate(SamplerOnly(toy.truth, shift=1.0), toy, ["mmd", "energy_distance"],
                       n_samples=500)  # fmt: skip
    for name in ("mmd", "energy_distance"):
        assert math.isnan(exact[name].stderr) and exact[name].kind == "estimate"
        assert shifted[name].value > 20 * abs(exact[name].value), name


def test_no_kl_for_an_unnormalized_density(toy: ToyDataset) -> None:
    """-E(x) is off by log Z, so the KL to the data would be too: only the energy is reported."""
    energy = DiagonalGaussian(torch.zeros(2), torch.ones(2))
    energy.likelihood = Likelihood.UNNORMALIZED
    results = evaluate(energy, toy, ["nll"])
    assert set(results) == {"nll"} and results["nll"].kind == "unnormalized"


def test_likelihood_metric_of_a_sampler_is_refused(toy: ToyDataset) -> None:
    with pytest.raises(IntractableLikelihood, match="no likelihood"):
        evaluate(SamplerOnly(toy.truth), toy, ["nll"])


def test_metrics_file_merges_splits_and_writes_unknown_stderr_as_null(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_metrics(path, "test", {"nll": Estimate(1.5, 0.1, "bound")})
    write_metrics(path, "validation", {"mmd": Estimate(0.01, math.nan, "estimate")})
    write_metrics(path, "test", {"nll": Estimate(1.25, 0.05, "bound")})
    assert json.loads(path.read_text()) == {
        "test": {"nll": {"value": 1.25, "stderr": 0.05, "kind": "bound", "unit": "nats"}},
        "validation": {"mmd": {"value": 0.01, "stderr": None, "kind": "estimate", "unit": ""}},
    }


def test_evaluate_is_reproducible_given_the_seed(toy: ToyDataset) -> None:
    model = SamplerOnly(toy.truth, shift=0.3)
    a = evaluate(model, toy, ["mmd"], n_samples=300, seed=4)
    b = evaluate(model, toy, ["mmd"], n_samples=300, seed=4)
    c = evaluate(model, toy, ["mmd"], n_samples=300, seed=5)
    assert a["mmd"].value == b["mmd"].value != c["mmd"].value
