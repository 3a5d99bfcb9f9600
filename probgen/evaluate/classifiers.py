"""Generative classification by Bayes' rule: p(c | x) from any class-conditional model.

A model of p_θ(x | c) over K classes, with class prior π, is a classifier:

    log p_θ(c | x) = log p_θ(x | c) + log π_c − log Σ_k p_θ(x | k) π_k.

With exact class-conditional densities this is the Bayes classifier of the
model's joint law. With a bound (an ELBO, a dequantised bound) in place of
log p_θ(x | c) the result is a classifier, but not the Bayes classifier of
any model: the gaps of the bounds differ between classes. The report says
which it is (``kind``). Every class of one example is scored with the same
random draws (common random numbers: the generator is reset to the same
state for each class), so stochastic estimates are compared like for like.

Calibration is the expected calibration error of the most probable class,

    ECE = Σ_b (|B_b| / N) · |accuracy(B_b) − confidence(B_b)|,

over ``bins`` equal-width bins of the confidence max_c p(c | x).

References: Ng & Jordan (2002), "On discriminative vs. generative
classifiers"; Guo, Pleiss, Sun & Weinberger (2017), "On calibration of
modern neural networks" (ECE).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probgen.core import Estimate, GenerativeModel, InvalidInput, Likelihood
from probgen.evaluate.likelihood import log_probs

__all__ = ["class_log_posterior", "expected_calibration_error", "generative_classifier"]


def class_log_posterior(
    model: GenerativeModel,
    x: Tensor,
    prior: Tensor | None = None,
    *,
    batch_size: int = 1024,
    generator: torch.Generator | None = None,
) -> Tensor:
    """log p_θ(c | x) for every class: x (N, *event_shape) -> (N, K), rows summing to 1 in p.

    Args:
        model: a model of p(x | c) with ``condition_spec.classes`` = K and a likelihood.
        x: the examples.
        prior: π (K,), the class probabilities; uniform when None.
        batch_size: rows per ``log_prob`` call.
        generator: the draws of a stochastic ``log_prob``, the same for every class.
    """
    spec = model.condition_spec
    if spec is None or not spec.is_classes:
        raise InvalidInput(
            f"class_log_posterior: {type(model).__name__} is not conditioned on classes "
            f"(its condition is {None if spec is None else spec.describe()})"
        )
    if model.likelihood is Likelihood.NONE:
        raise InvalidInput(f"class_log_posterior: {type(model).__name__} has no likelihood")
    k = spec.classes
    log_prior = _log_prior(prior, k, x.dtype if x.is_floating_point() else torch.float64)
    state = None if generator is None else generator.get_state()
    columns = []
    for c in range(k):
        if generator is not None:
            generator.set_state(state)
        labels = torch.full((len(x),), c, dtype=torch.long)
        columns.append(
            log_probs(model, x, batch_size, generator=generator, condition=labels).double().cpu()
        )
    joint = torch.stack(columns, dim=1) + log_prior.double()
    return joint - torch.logsumexp(joint, dim=1, keepdim=True)


def expected_calibration_error(probabilities: Tensor, labels: Tensor, bins: int = 15) -> float:
    """ECE of the most probable class: probabilities (N, K), labels (N,) -> a number in [0, 1]."""
    if bins < 1:
        raise InvalidInput(f"expected_calibration_error: bins must be >= 1, got {bins}")
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).double()
    # bin b holds (b/B, (b+1)/B], as in Guo et al.; a confidence of 0 goes to bin 0
    which = (torch.ceil(confidence.double() * bins).long() - 1).clamp(0, bins - 1)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap = (correct[members].mean() - confidence[members].double().mean()).abs()
            total += members.double().mean().item() * gap.item()
    return total


def generative_classifier(
    model: GenerativeModel,
    x: Tensor,
    labels: Tensor,
    prior: Tensor | None = None,
    *,
    bins: int = 15,
    generator: torch.Generator | None = None,
) -> dict[str, Estimate]:
    """Accuracy, ECE and the NLL of the true labels of the Bayes-rule classifier of ``model``.

    ``classifier_accuracy`` (with its binomial standard error),
    ``classifier_ece`` and ``classifier_nll`` = −mean log p_θ(c_n | x_n) (nats,
    with its standard error); each labelled ``exact`` when ``model``'s
    log-densities are exact, else with the model's likelihood kind (a
    classifier from bounds is not the Bayes classifier).
    """
    log_post = class_log_posterior(model, x, prior, generator=generator)
    labels = model.condition_spec.check(labels, len(x), name="labels")
    kind = model.likelihood.value
    correct = (log_post.argmax(dim=1) == labels.cpu()).double()
    accuracy = correct.mean().item()
    nll = -log_post.gather(1, labels.cpu().long()[:, None]).squeeze(1)
    return {
        "classifier_accuracy": Estimate(
            accuracy, math.sqrt(accuracy * (1 - accuracy) / len(x)), kind
        ),
        "classifier_ece": Estimate(
            expected_calibration_error(log_post.exp(), labels.cpu(), bins), math.nan, kind
        ),
        "classifier_nll": Estimate.from_samples(nll, kind=kind),
    }


def _log_prior(prior: Tensor | None, k: int, dtype: torch.dtype) -> Tensor:
    if prior is None:
        return torch.full((k,), -math.log(k), dtype=dtype)
    prior = torch.as_tensor(prior, dtype=torch.float64)
    if prior.shape != (k,) or (prior < 0).any() or not math.isclose(prior.sum().item(), 1.0):
        raise InvalidInput(f"prior: expected {k} probabilities summing to 1, got {prior.tolist()}")
    return prior.log()
