"""The classifier two-sample test (C2ST): can a classifier tell samples from reference samples?

Label the model's samples 1 and the reference samples 0, train a classifier
on part of the pooled set and measure its accuracy on the rest (k-fold
cross-validation). An accuracy of 0.5 means the classifier cannot tell the
two sets apart; 1 means they are disjoint. For equal sample sizes the best
possible accuracy is that of the Bayes classifier,

    acc* = ½ + ½ TV(p, q),

so the C2ST accuracy estimates a lower bound on ½ + ½ TV, tight when the
classifier is good. The classifier is scikit-learn's multilayer perceptron
on z-scored inputs (z-scored with the reference's mean and standard
deviation), two hidden layers of 10·D ReLU units, Adam: the recipe of the
sbibm benchmark, so figures are comparable with its tables.

References: Lopez-Paz & Oquab (2017), "Revisiting classifier two-sample
tests"; Lueckmann, Boelts, Greenberg, Gonçalves & Macke (2021),
"Benchmarking simulation-based inference" (sbibm's C2ST).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from torch import Tensor

from probgen.core import Estimate, InvalidInput

__all__ = ["c2st"]


def c2st(
    samples: Tensor,
    reference: Tensor,
    *,
    folds: int = 5,
    seed: int = 0,
    max_iter: int = 1000,
) -> Estimate:
    """Cross-validated accuracy of an MLP telling ``samples`` (n, *shape) from ``reference``.

    Both sets are flattened to (n, D); the reported standard error is the
    binomial one of the pooled held-out predictions, √(a(1 − a)/N). Raises
    ``InvalidInput`` for mismatched shapes, too few rows or non-finite values.
    """
    x = _flat(samples, "samples")
    y = _flat(reference, "reference")
    if x.shape[1] != y.shape[1]:
        raise InvalidInput(
            f"c2st: samples have {x.shape[1]} features per row, reference {y.shape[1]}"
        )
    if min(len(x), len(y)) < folds:
        raise InvalidInput(f"c2st: needs at least {folds} rows in each set")
    mean, std = y.mean(0), y.std(0)
    std = np.where(std > 0, std, 1.0)
    data = (np.concatenate([x, y]) - mean) / std
    labels = np.concatenate([np.ones(len(x)), np.zeros(len(y))])
    width = 10 * data.shape[1]
    correct = 0
    split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(data, labels)
    for train, test in split:
        classifier = MLPClassifier(
            hidden_layer_sizes=(width, width),
            activation="relu",
            solver="adam",
            max_iter=max_iter,
            random_state=seed,
        )
        classifier.fit(data[train], labels[train])
        correct += int((classifier.predict(data[test]) == labels[test]).sum())
    accuracy = correct / len(data)
    return Estimate(accuracy, math.sqrt(accuracy * (1 - accuracy) / len(data)), "estimate")


def _flat(t: Tensor, name: str) -> np.ndarray:
    if not isinstance(t, Tensor) or t.dim() < 2:
        raise InvalidInput(f"c2st: {name} must be a tensor (n, *shape)")
    a = t.detach().double().reshape(len(t), -1).cpu().numpy()
    if not np.isfinite(a).all():
        raise InvalidInput(f"c2st: {name} contains non-finite values")
    return a
