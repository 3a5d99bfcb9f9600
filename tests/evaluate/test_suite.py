"""``evaluate_model``: what applies to which family, ideal scores for the truth, call counting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from probgen.core import Estimate, GenerativeModel, InvalidInput, Likelihood
from probgen.data.digits import Digits
from probgen.data.text import TextCorpus
from probgen.data.toy import ToyDataset
from probgen.evaluate.ais import AIS, sigmoid_schedule
from probgen.evaluate.features import FlatFeatures
from probgen.evaluate.suite import (
    IWAENLL,
    NLL,
    FeatureDistances,
    KLDataModel,
    PrecisionRecall,
    count_network_calls,
    evaluate_model,
)
from probgen.models import build_model
from probgen.models.ebm import EBM
from probgen.models.gan import GAN
from probgen.models.gaussian import GaussianModel
from probgen.models.vae import VAE
from probgen.sampling import MALA

SAMPLE_KEYS = {"mmd", "energy_distance", "sliced_wasserstein", "fid", "kid"}
PRDC_KEYS = {"precision", "recall", "density", "coverage"}


def toy() -> ToyDataset:
    return ToyDataset("8gaussians", n_test=1000)


def test_the_truth_scores_zero_kl_and_covers_every_mode() -> None:
    data = toy()
    results = evaluate_model(data.truth, data, n_samples=1000, generator=torch.Generator())
    assert results["kl_data_model"] == Estimate(0.0, 0.0, "exact")
    assert results["kl_model_data"] == Estimate(0.0, 0.0, "exact")
    assert results["nll"].kind == "exact"
    entropy = data.truth.entropy(20_000, generator=torch.Generator().manual_seed(1))
    assert abs(results["nll"].value - entropy.value) < 4 * math.hypot(
        results["nll"].stderr, entropy.stderr
    )
    assert results["modes"] == 8.0 and results["reverse_kl"].value < 0.02
    assert results["network_evaluations"] == 0.0 and results["sampling_seconds"] >= 0
    for name in PRDC_KEYS:  # independent samples of the same law
        assert results[name].value > 0.85, name
    assert abs(results["mmd"].value) < 0.01
    assert SAMPLE_KEYS <= results.keys()
    assert "bpd" not in results  # continuous data


class _NoisyLogProb(GaussianModel):
    """A Gaussian whose ``log_prob`` adds fresh noise (a stochastic estimate) and counts calls."""

    likelihood = Likelihood.ESTIMATE

    def __init__(self) -> None:
        super().__init__((2,))
        self.rows_scored = 0

    def log_prob(self, x: Tensor) -> Tensor:
        self.rows_scored += len(x)
        return super().log_prob(x) + torch.randn(len(x))


def test_nll_and_kl_share_one_pass_of_log_prob_over_the_data() -> None:
    data = toy()
    model = _NoisyLogProb()
    results = evaluate_model(model, data, n_samples=100, generator=torch.Generator())
    assert model.rows_scored == len(data.split("test"))
    # KL(p ‖ p_θ) = mean log p − mean log p_θ on the same values: NLL − (true NLL), exactly
    true_nll = -data.truth.log_prob(data.split("test")).mean().item()
    assert results["kl_data_model"].value == pytest.approx(
        results["nll"].value - true_nll, rel=0, abs=1e-12
    )
    assert results["nll"].kind == results["kl_data_model"].kind == "estimate"


def test_max_examples_scores_the_first_rows_only() -> None:
    data = toy()
    first = data.split("test")[:40]
    results = evaluate_model(data.truth, data, n_samples=50, metrics=[NLL()], max_examples=40)
    assert results["held_out_examples"] == 40.0
    assert results["nll"].value == pytest.approx(-data.truth.log_prob(first).mean().item())
    with pytest.raises(InvalidInput, match="max_examples"):
        evaluate_model(data.truth, data, n_samples=50, metrics=[NLL()], max_examples=0)


def test_a_vae_gets_an_iwae_bound_tighter_than_its_elbo() -> None:
    data = toy()
    vae = VAE.for_data(data.spec, latent_dim=2, hidden=(16,))
    results = evaluate_model(vae, data, n_samples=200, generator=torch.Generator())
    assert results["nll"].kind == results["nll_iwae"].kind == "bound"
    assert results["nll_iwae"].value < results["nll"].value
    assert "nll_iwae" not in evaluate_model(data.truth, data, n_samples=50, metrics=[IWAENLL()])


def test_a_gan_is_scored_by_its_samples_and_a_smoothed_kl_and_told_why_not_more() -> None:
    data = toy()
    gan = GAN((2,), latent_dim=2, hidden=(16,))
    results = evaluate_model(gan, data, n_samples=400, generator=torch.Generator())
    assert not {"nll", "kl_data_model", "kl_model_data"} & results.keys()
    assert results["kl_model_data_smoothed"].kind == "estimate"
    assert results["network_evaluations"] == 1.0
    assert SAMPLE_KEYS | PRDC_KEYS <= results.keys()
    assert set(results.skipped) == {"nll", "nll_iwae", "kl_data_model", "kl_model_data"}
    assert results.skipped["nll"] == "GAN has no density (likelihood none)"
    assert "not an exact density" in results.skipped["kl_model_data"]
    assert not set(results.skipped) & results.keys()


def test_token_windows_get_no_distances_between_raw_ids(tmp_path: Path) -> None:
    """On text only what is defined on labels is reported; the rest is skipped, with why."""
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat. " * 40)
    corpus = TextCorpus(path, context=8)
    model = build_model("transformer", corpus.spec, n_layer=1, n_head=1, n_embd=8)
    results = evaluate_model(model, corpus, n_samples=50, generator=torch.Generator())
    assert results["nll"].kind == "exact" and "bpd" in results
    raw = SAMPLE_KEYS | PRDC_KEYS
    assert not raw & results.keys()
    assert raw <= results.skipped.keys()
    assert all("categorical" in results.skipped[k] for k in raw)
    assert "unknown" in results.skipped["kl_model_data_smoothed"]
    # a feature net given for tokens is used: the skip is for the missing net, not the metric
    given = evaluate_model(
        model, corpus, n_samples=50, metrics=[PrecisionRecall(features=FlatFeatures((8,)))]
    )
    assert PRDC_KEYS <= given.keys() and not given.skipped


class Quadratic(nn.Module):
    """E(x) = ½ s ‖x‖² with s = 1, so the EBM is N(0, I) with log Z = log 2π."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * self.s * x.square().sum(dim=1)


def test_an_ebm_gets_a_normalized_likelihood_and_counts_its_sampler_steps() -> None:
    data = toy()
    ebm = EBM((2,), energy=Quadratic(), sample_steps=7, buffer_size=1)
    ais = AIS(sigmoid_schedule(100), MALA, step_size=0.5, n_chains=256)
    metrics = [NLL(ais=ais), KLDataModel(ais=ais)]
    results = evaluate_model(ebm, data, n_samples=50, generator=torch.Generator(), metrics=metrics)
    assert abs(results["log_partition"].value - math.log(2 * math.pi)) < 0.05
    exact_nll = -torch.distributions.Normal(0.0, 1.0).log_prob(data.split("test")).sum(1).mean()
    assert abs(results["nll"].value - exact_nll.item()) < 0.05
    assert results["kl_data_model"].kind == "estimate"
    assert results["network_evaluations"] == 7.0  # one energy gradient per Langevin step


class Resampler(GenerativeModel):
    """Returns rows of a fixed image set, optionally with added noise (a sampler-only model)."""

    def __init__(self, images: Tensor, noise: float) -> None:
        super().__init__(tuple(images.shape[1:]))
        self.images, self.noise = images, noise
        self.net = nn.Identity()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        rows = torch.randint(len(self.images), (n,), generator=generator)
        x = self.images[rows]
        return x + self.noise * torch.randn(x.shape, generator=generator)


def test_digits_use_the_shipped_features_and_noise_worsens_them() -> None:
    data = Digits()
    metrics = [FeatureDistances(), PrecisionRecall()]
    scores = [
        evaluate_model(
            Resampler(data.split("train"), noise),
            data,
            n_samples=300,
            generator=torch.Generator().manual_seed(0),
            metrics=metrics,
        )
        for noise in (0.0, 2.0, 5.0)
    ]
    fid = [s["fid"].value for s in scores]
    precision = [s["precision"].value for s in scores]
    assert fid[0] < fid[1] < fid[2]
    assert precision[0] > precision[1] > precision[2]


def test_bits_per_dim_on_discrete_data() -> None:
    data = Digits()

    class UniformPixels(GenerativeModel):
        likelihood = Likelihood.EXACT

        def __init__(self) -> None:
            super().__init__((1, 8, 8))
            self.anchor = nn.Parameter(torch.zeros(()))

        def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
            return torch.randint(17, (n, 1, 8, 8), generator=generator).double()

        def log_prob(self, x: Tensor) -> Tensor:
            return torch.full((len(x),), -64 * math.log(17)) + 0 * self.anchor

    results = evaluate_model(
        UniformPixels(), data, n_samples=100, generator=torch.Generator(), metrics=[NLL()]
    )
    assert results["bpd"].value == pytest.approx(math.log2(17), rel=1e-12)


def test_count_network_calls_counts_outermost_calls_only() -> None:
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(2, 2)
            self.other = nn.Linear(2, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.other(self.inner(x))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = Outer()

    model = Model()
    handles, counter = count_network_calls(model)
    for _ in range(3):
        model.net(torch.zeros(1, 2))
    model.net.inner(torch.zeros(1, 2))
    assert counter[0] == 4
    for h in handles:
        h.remove()
    model.net(torch.zeros(1, 2))
    assert counter[0] == 4
