"""The generative classifier of exact class-conditional densities is the exact posterior p(c | x).

Ground truth is computed independently with SciPy in float64: for
x | c = k ~ N(μ_k, Σ) with prior π, p(c = k | x) = π_k N(x; μ_k, Σ) / Σ_j π_j N(x; μ_j, Σ).
For two classes at ±m in 1-D with unit variance and equal priors the Bayes
accuracy is Φ(m), and the expected calibration error of the exact posterior
is 0 up to its sampling error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm
from torch import Tensor, nn

from probgen.core import ConditionSpec, GenerativeModel, Likelihood
from probgen.evaluate.classifiers import (
    class_log_posterior,
    expected_calibration_error,
    generative_classifier,
)


class _ClassGaussians(GenerativeModel):
    """p(x | c = k) = N(x; μ_k, σ² I), exact."""

    likelihood = Likelihood.EXACT

    def __init__(self, means: Tensor, std: float) -> None:
        super().__init__((means.shape[1],))
        self.means = nn.Parameter(means.clone(), requires_grad=False)
        self.std = std
        self.condition_spec = ConditionSpec(classes=len(means))

    def log_prob(self, x: Tensor, condition: Tensor | None = None) -> Tensor:
        c = self._condition(condition, len(x))
        z = (self._check(x) - self.means[c]) / self.std
        d = self.event_shape[0]
        return -0.5 * z.square().sum(-1) - d * math.log(self.std) - 0.5 * d * math.log(2 * math.pi)

    def sample(self, n: int, condition: Tensor | None = None, generator=None) -> Tensor:
        c = self._condition(condition, n, expand=True)
        noise = torch.randn(n, self.event_shape[0], generator=generator, dtype=self.means.dtype)
        return self.means[c] + self.std * noise


def test_bayes_rule_equals_the_exact_posterior(theory_dtype, tol) -> None:
    means = np.array([[0.0, 0.0], [2.0, 1.0], [-1.0, 3.0]])
    prior = np.array([0.5, 0.3, 0.2])
    std = 1.3
    model = _ClassGaussians(torch.tensor(means, dtype=theory_dtype), std)
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=theory_dtype) * 3
    got = class_log_posterior(model, x, torch.tensor(prior))
    xs = x.double().numpy()
    joint = np.stack(
        [
            np.log(p) + multivariate_normal(m, std**2 * np.eye(2)).logpdf(xs)
            for m, p in zip(means, prior, strict=True)
        ],
        axis=1,
    )
    expected = joint - logsumexp(joint, axis=1, keepdims=True)
    # log-posteriors of size up to ~|joint|: rounding of the class log-densities in the dtype
    atol = tol(theory_dtype, np.abs(joint).max(), 64)
    np.testing.assert_allclose(got.numpy(), expected, atol=atol, rtol=0)


def test_accuracy_is_the_bayes_accuracy_and_calibration_is_zero() -> None:
    m, n = 1.0, 40_000
    model = _ClassGaussians(torch.tensor([[-m], [m]]), 1.0)
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(2, (n,), generator=g)
    x = model.sample(n, condition=labels, generator=g)
    report = generative_classifier(model, x, labels)
    accuracy = report["classifier_accuracy"]
    bayes = norm.cdf(m)
    assert abs(accuracy.value - bayes) < 4 * math.sqrt(bayes * (1 - bayes) / n)
    assert accuracy.kind == "exact"
    # the exact posterior is calibrated: ECE is sampling noise, O(1/sqrt(n per bin))
    assert report["classifier_ece"].value < 4 * math.sqrt(15 / n)
    # E[-log p(c | x)] in closed form: E_x log(1 + e^{-2 m x}) over x ~ N(m, 1), by quadrature
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    expected_nll = np.sum(weights * np.logaddexp(0.0, -2 * m * (nodes + m))) / math.sqrt(
        2 * math.pi
    )
    nll = report["classifier_nll"]
    assert abs(nll.value - expected_nll) < 4 * nll.stderr


def test_expected_calibration_error_by_hand() -> None:
    # confidences 0.9 (bin 13 of 15) right twice and wrong once; 0.6 (bin 9) right once
    p = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.6, 0.4]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0, 0])
    # bin of 0.9: accuracy 2/3, confidence 0.9 -> 3/4 · |2/3 − 0.9|; bin of 0.6: 1/4 · 0.4
    expected = 0.75 * abs(2 / 3 - 0.9) + 0.25 * 0.4
    assert expected_calibration_error(p, labels) == pytest.approx(expected, abs=1e-12)


def test_expected_calibration_error_bins_are_closed_on_the_right() -> None:
    # Guo et al.'s bins ((b-1)/B, b/B]: with B = 2 a confidence of exactly 0.5 is in the
    # first bin, apart from a wrong answer at 0.9, not pooled with it in [0.5, 1]
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    expected = 0.5 * abs(1 - 0.5) + 0.5 * abs(0 - 0.9)  # pooled it would be |1/2 - 0.7| = 0.2
    assert expected_calibration_error(p, labels, bins=2) == pytest.approx(expected, abs=1e-12)
