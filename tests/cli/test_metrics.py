"""The run metrics: computed by the evaluation suite, chosen by registry name, the file."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from torch import Tensor

from probgen.cli.metrics import (
    PROVIDERS,
    MetricNotApplicable,
    evaluate,
    kinds_of,
    metrics_table,
    write_metrics,
)
from probgen.core import DataSpec, Estimate, GenerativeModel, Likelihood
from probgen.data.base import ArrayDataset
from probgen.data.toy import ToyDataset
from probgen.distributions import DiagonalGaussian
from probgen.evaluate.metric import DataKind
from probgen.evaluate.suite import Results
from probgen.registry import METRICS, UnknownName


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


def test_every_registered_metric_has_a_provider() -> None:
    assert set(PROVIDERS) == set(METRICS.names())


def test_default_metrics_are_the_suites_and_exact_for_the_truth(toy: ToyDataset) -> None:
    """With p_θ = p_data both KLs are exactly 0, every mode is covered; counts come last."""
    results = evaluate(toy.truth, toy, n_samples=500)
    assert list(results) == [
        "nll", "kl_data_model", "kl_model_data", "kl_model_data_smoothed", "mmd",
        "energy_distance", "sliced_wasserstein",
        "fid", "kid", "precision", "recall", "density", "coverage", "high_quality",
        "reverse_kl", "sampling_seconds", "network_evaluations", "held_out_examples", "modes",
    ]  # fmt: skip
    for kl in ("kl_data_model", "kl_model_data"):
        assert results[kl] == Estimate(0.0, 0.0, "exact"), kl
    assert results["modes"].value == len(toy.truth.means)
    assert results["modes"].kind == "measured" and math.isnan(results["modes"].stderr)
    sampler = evaluate(SamplerOnly(toy.truth), toy, n_samples=500)
    assert not {"nll", "kl_data_model", "kl_model_data"} & set(sampler)
    assert sampler["kl_model_data_smoothed"].kind == "estimate"  # both laws smoothed alike
    assert "no density" in sampler.skipped["nll"]


def test_chosen_metrics_cover_the_registry_with_their_companions(toy: ToyDataset) -> None:
    """Every registry name defined on continuous data, in the order asked, then what the
    suite adds."""
    names = [name for name in METRICS.names() if DataKind.CONTINUOUS in kinds_of(name)]
    assert {"bpd", "bits_per_char", "distinct_2", "ngram_js_3"}.isdisjoint(names)
    results = evaluate(toy.truth, toy, names, n_samples=300)
    assert list(results) == [
        *names, "kl_data_model", "sampling_seconds", "network_evaluations", "held_out_examples"
    ]  # fmt: skip


def test_the_true_distribution_scores_zero_kl_and_its_entropy(toy: ToyDataset) -> None:
    """With p_θ = p_data: KL(p_data‖p_θ) is exactly 0 and NLL estimates H[p_data]."""
    results = evaluate(toy.truth, toy, ["nll", "mmd"], n_samples=500)
    assert results["kl_data_model"].value == 0.0 and results["kl_data_model"].stderr == 0.0
    entropy = toy.truth.entropy(n=100_000, generator=torch.Generator().manual_seed(5))
    nll = results["nll"]
    assert abs(nll.value - entropy.value) < 4.5 * math.hypot(nll.stderr, entropy.stderr)


def test_bits_per_dim_on_discrete_data_only(toy: ToyDataset) -> None:
    """bpd = NLL / (D ln 2) with D = 4 on data with levels; refused on continuous data."""
    x = torch.randint(0, 17, (50, 1, 2, 2)).double()
    digits_like = ArrayDataset(x, x, x, spec=DataSpec((1, 2, 2), 17))
    model = DiagonalGaussian(torch.full((1, 2, 2), 8.0), torch.full((1, 2, 2), 5.0))
    results = evaluate(model, digits_like, ["bpd", "nll"], n_samples=50)
    assert results["bpd"].value == pytest.approx(results["nll"].value / (4 * math.log(2)))
    assert results["bpd"].kind == results["nll"].kind == "exact"
    with pytest.raises(MetricNotApplicable, match="'bpd'"):
        evaluate(toy.truth, toy, ["bpd"], n_samples=50)


def test_a_metric_asked_of_another_kind_of_data_names_both(toy: ToyDataset) -> None:
    """Text metrics on images (data with levels) or on points: one error naming the metric
    and the kind, before anything is computed."""
    x = torch.randint(0, 17, (20, 1, 2, 2)).double()
    images = ArrayDataset(x, x, x, spec=DataSpec((1, 2, 2), 17))
    model = DiagonalGaussian(torch.full((1, 2, 2), 8.0), torch.full((1, 2, 2), 5.0))
    message = "'bits_per_char' is defined on text data, not on discrete data (ArrayDataset)"
    with pytest.raises(MetricNotApplicable, match=re.escape(message)):
        evaluate(model, images, ["nll", "bits_per_char"], n_samples=20)
    with pytest.raises(MetricNotApplicable, match="'distinct_2' is defined on text data, not on "
                       "continuous data"):  # fmt: skip
        evaluate(toy.truth, toy, ["distinct_2"], n_samples=20)
    message = "'bpd' is defined on discrete, text and tokens data, not on continuous data"
    with pytest.raises(MetricNotApplicable, match=re.escape(message)):
        evaluate(toy.truth, toy, ["bpd"], n_samples=20)


def test_sample_metrics_tell_a_shifted_sampler_from_the_truth(toy: ToyDataset) -> None:
    """Unbiased MMD² and energy distance: ≈ 0 for exact samples, clearly > 0 for a shift."""
    exact = evaluate(SamplerOnly(toy.truth), toy, ["mmd", "energy_distance"], n_samples=500)
    shifted = evaluate(SamplerOnly(toy.truth, shift=1.0), toy, ["mmd", "energy_distance"],
                       n_samples=500)  # fmt: skip
    for name in ("mmd", "energy_distance"):
        assert math.isnan(exact[name].stderr) and exact[name].kind == "estimate"
        assert shifted[name].value > 20 * abs(exact[name].value), name


def test_nll_of_an_energy_without_log_partition_is_refused(toy: ToyDataset) -> None:
    """-E(x) is off by log Z; without an ``init`` and ``energy`` for AIS there is no NLL."""
    energy = DiagonalGaussian(torch.zeros(2), torch.ones(2))
    energy.likelihood = Likelihood.UNNORMALIZED
    with pytest.raises(MetricNotApplicable, match=r"'nll'.*unnormalized"):
        evaluate(energy, toy, ["nll"], n_samples=50)


def test_likelihood_metric_of_a_sampler_is_refused(toy: ToyDataset) -> None:
    with pytest.raises(MetricNotApplicable, match=r"'nll'.*likelihood none.*mmd"):
        evaluate(SamplerOnly(toy.truth), toy, ["nll", "mmd"], n_samples=50)


def test_unknown_metric_lists_the_registered_ones(toy: ToyDataset) -> None:
    with pytest.raises(UnknownName, match=r"'nope'.*energy_distance"):
        evaluate(toy.truth, toy, ["nll", "nope"])


def test_metrics_file_merges_splits_and_writes_unknown_stderr_as_null(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_metrics(path, "test", {"nll": Estimate(1.5, 0.1, "bound")})
    write_metrics(path, "validation", {"mmd": Estimate(0.01, math.nan, "estimate")})
    write_metrics(path, "test", {"nll": Estimate(1.25, 0.05, "bound")})
    expected = {
        "test": {"nll": {"value": 1.25, "stderr": 0.05, "kind": "bound", "unit": "nats"}},
        "validation": {"mmd": {"value": 0.01, "stderr": None, "kind": "estimate", "unit": ""}},
    }
    assert json.loads(path.read_text()) == expected
    # the reasons for left-out results are kept per split, beside the numbers
    write_metrics(path, "validation", Results(skipped={"nll": "no density"}))
    assert json.loads(path.read_text()) == {
        "test": expected["test"],
        "validation": {},
        "skipped": {"validation": {"nll": "no density"}},
    }
    # and so are the notes on computed results, which a later write of the split replaces
    note = {"fid": "features: the raw values"}
    write_metrics(path, "test", Results(notes=note))
    assert json.loads(path.read_text())["notes"] == {"test": note}
    write_metrics(path, "test", Results())
    assert "notes" not in json.loads(path.read_text())


def test_evaluate_is_reproducible_given_the_seed(toy: ToyDataset) -> None:
    model = SamplerOnly(toy.truth, shift=0.3)
    a = evaluate(model, toy, ["mmd"], n_samples=300, seed=4)
    b = evaluate(model, toy, ["mmd"], n_samples=300, seed=4)
    c = evaluate(model, toy, ["mmd"], n_samples=300, seed=5)
    assert a["mmd"].value == b["mmd"].value != c["mmd"].value


def test_the_table_never_prints_a_negative_kl_and_says_what_was_left_out() -> None:
    from rich.console import Console

    results = Results(
        {"kl_data_model": Estimate(-0.003, 0.004, "exact"), "nll": Estimate(-1.5, 0.1, "exact")},
        skipped={"precision": "token ids are categorical"},
        notes={"fid": "features: the raw values", "kid": "features: the raw values"},
    )
    console = Console(width=200, record=True)
    console.print(metrics_table(results, "test"))
    text = console.export_text()
    assert "≤ 0.005" in text and "-0.003" not in text
    assert "-1.5" in text  # a log-likelihood may be negative
    assert "not computed: precision: token ids are categorical" in text
    assert "note: fid, kid: features: the raw values" in text
