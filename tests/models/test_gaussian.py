"""GaussianModel: exact density, sampling, entropy, and convergence to the closed-form MLE."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import MultivariateNormal

from probgen.core import DataSpec, InvalidInput, Likelihood
from probgen.data.base import ArrayDataset
from probgen.models.gaussian import GaussianModel
from probgen.train import ComponentConfig, RunConfig, TrainConfig, fit


def _randomised(event_shape: tuple[int, ...], seed: int) -> GaussianModel:
    g = torch.Generator().manual_seed(seed)
    model = GaussianModel(event_shape)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
    return model


@settings(max_examples=10, deadline=None)
@given(d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_log_prob_and_entropy_match_torch_multivariate_normal(d: int, seed: int) -> None:
    model = _randomised((d,), seed)
    reference = MultivariateNormal(model.loc, scale_tril=model.scale_tril)
    x = torch.randn(7, d, generator=torch.Generator().manual_seed(seed + 1))
    torch.testing.assert_close(model.log_prob(x), reference.log_prob(x))
    torch.testing.assert_close(model.entropy(), reference.entropy())
    assert model.likelihood is Likelihood.EXACT


def test_multi_dimensional_events_are_flattened() -> None:
    model = _randomised((2, 3), seed=3)
    x = torch.randn(4, 2, 3)
    reference = MultivariateNormal(model.loc, scale_tril=model.scale_tril)
    torch.testing.assert_close(model.log_prob(x), reference.log_prob(x.reshape(4, 6)))
    assert model.sample(5).shape == (5, 2, 3)


def test_sample_moments_match_parameters() -> None:
    model = _randomised((3,), seed=4)
    n = 200_000
    x = model.sample(n, generator=torch.Generator().manual_seed(5)).detach()
    # Monte Carlo error of a mean is sd/√n; 5 standard errors.
    sd = model.covariance.diagonal().sqrt().detach()
    assert ((x.mean(0) - model.loc.detach()).abs() < 5 * sd / math.sqrt(n)).all()
    torch.testing.assert_close(
        torch.cov(x.T),
        model.covariance.detach(),
        atol=5 * sd.max().item() ** 2 / math.sqrt(n),
        rtol=0,
    )


def test_sample_is_reproducible_with_a_generator() -> None:
    model = _randomised((2,), seed=6)
    a = model.sample(4, generator=torch.Generator().manual_seed(1))
    b = model.sample(4, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)


def test_bad_input_names_expected_and_got() -> None:
    model = GaussianModel((2,))
    with pytest.raises(InvalidInput, match=r"expected shape \(B, 2\), got \(4, 3\)"):
        model.log_prob(torch.zeros(4, 3))
    with pytest.raises(InvalidInput, match="unknown options"):
        model.sample(2, temperature=0.5)


class _FullBatch(ArrayDataset):
    """Every training batch is the whole training set, so Adam minimises the exact NLL."""

    def batch(self, split: str, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return self.split(split)


def test_fit_converges_to_closed_form_mle(tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    mix = torch.tensor([[2.0, 0.0, 0.0], [1.0, 0.5, 0.0], [-0.3, 0.2, 0.7]])
    x = torch.randn(300, 3, generator=g) @ mix.T + torch.tensor([1.0, -2.0, 0.5])
    data = _FullBatch(x, x[:50], x[:50], DataSpec((3,)))
    config = RunConfig(
        model=ComponentConfig("gaussian"),
        data=ComponentConfig("array"),
        train=TrainConfig(
            steps=600,
            lr=0.1,
            lr_schedule="cosine",
            log_every=500,
            device="cpu",
            early_stopping=False,  # the training-data MLE, not the best validation fit
        ),
    )
    result = fit(config, tmp_path, model=GaussianModel((3,)), dataset=data, progress=False)
    model = result.model
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)  # the biased MLE, 1/N
    torch.testing.assert_close(model.loc.detach(), mean, atol=1e-9, rtol=0)
    torch.testing.assert_close(model.covariance.detach(), cov, atol=1e-9, rtol=0)
