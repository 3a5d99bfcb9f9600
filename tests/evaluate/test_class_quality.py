"""Class-conditional sample quality against models whose samples are known real images."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from probgen.conditions import ConditionSpec
from probgen.core import DataSpec, GenerativeModel, InvalidInput, Likelihood
from probgen.data import Digits
from probgen.data.base import ArrayDataset
from probgen.evaluate.class_quality import class_conditional_quality
from probgen.evaluate.features import ClassifierFeatures, default_features
from probgen.evaluate.suite import ClassConditionalQuality, evaluate_model

EPS = torch.finfo(torch.float64).eps


class HeldOutImages(GenerativeModel):
    """p(x | k) returning the held-out images of class k + ``shift`` (mod K), shuffled.

    ``sample(n, condition=k)`` needs n ≤ the rows of that class; ``shift`` is a
    sampling option (as ``guidance`` is for diffusion), so the suite's
    ``sample_options`` reach it.
    """

    likelihood = Likelihood.NONE

    def __init__(self, images: Tensor, labels: Tensor, classes: int = 10) -> None:
        super().__init__(tuple(images.shape[1:]))
        self.condition_spec = ConditionSpec(classes=classes)
        self.images, self.labels, self.classes = images, labels, classes

    def sample(
        self,
        n: int,
        condition: Tensor | None = None,
        generator: torch.Generator | None = None,
        shift: int = 0,
    ) -> Tensor:
        c = self._condition(condition, n, expand=True)
        rows = self.images[self.labels == (int(c[0]) + shift) % self.classes]
        return rows[torch.randperm(len(rows), generator=generator)[:n]].double()


@pytest.fixture(scope="module")
def digits() -> tuple[Digits, Tensor, Tensor, ClassifierFeatures]:
    data = Digits(conditional=True)
    net = default_features((1, 8, 8), levels=17, name="digits")
    return data, data.split("test"), data.conditions("test"), net


def _predictions(net: ClassifierFeatures, x: Tensor) -> Tensor:
    with torch.no_grad():
        return net.logits(x.double()).argmax(dim=1)


def test_held_out_images_score_the_classifiers_test_accuracy_and_zero_fid(digits) -> None:
    _, test, labels, net = digits
    quality = class_conditional_quality(
        HeldOutImages(test, labels), test, labels, net, generator=torch.Generator().manual_seed(0)
    )
    # ground truth: the shipped classifier's accuracy on the test split (0.906 in its metadata)
    expected = (_predictions(net, test) == labels).double().mean().item()
    accuracy = quality.sample_class_accuracy
    assert accuracy.value == pytest.approx(expected, abs=10 * EPS)
    assert accuracy.stderr == pytest.approx(math.sqrt(expected * (1 - expected) / len(test)))
    for k in range(10):
        own = (_predictions(net, test[labels == k]) == k).double().mean().item()
        assert quality.accuracy[k].item() == pytest.approx(own, abs=10 * EPS)
    # each class's samples are its reference rows reordered: FD = 0 up to rounding. The
    # F = 64 features have rank ≤ |X_k| − 1 < F covariances, whose zero eigenvalues come
    # out of eigvals(Σ Σ) as ±O(ε‖Σ‖²) and enter tr((Σ Σ)^½) as O(√ε ‖Σ‖) each
    for k in range(10):
        with torch.no_grad():
            f = net(test[labels == k].double())  # (|X_k|, 64)
        scale = torch.cov(f.T).trace().item()
        tolerance = 64 * math.sqrt(EPS) * scale
        assert abs(quality.fid[k].item()) <= tolerance, (k, quality.fid[k].item(), tolerance)
    assert quality.counts.tolist() == torch.bincount(labels, minlength=10).double().tolist()


def test_samples_of_the_next_class_score_near_zero_accuracy(digits) -> None:
    data, test, labels, net = digits
    results = evaluate_model(
        HeldOutImages(test, labels),
        data,
        generator=torch.Generator().manual_seed(0),
        metrics=[ClassConditionalQuality(shift=1)],
    )
    # ground truth: how often the classifier calls an image of class k + 1 "k"
    predicted = _predictions(net, test)
    wrong_way = sum(int((predicted[labels == (k + 1) % 10] == k).sum()) for k in range(10))
    accuracy = results["sample_class_accuracy"]
    assert accuracy.value == pytest.approx(wrong_way / len(test), abs=10 * EPS)
    assert accuracy.value < 0.02
    # the wrong class's images are far from the class's own: the mean FD is far from 0
    note = results.notes["per_class_fid"]
    assert "digits classifier" in note and "per class (accuracy, FD)" in note
    exact = evaluate_model(
        HeldOutImages(test, labels),
        data,
        generator=torch.Generator().manual_seed(0),
        metrics=[ClassConditionalQuality()],
    )
    assert exact["per_class_fid"].value < 1e-3 < results["per_class_fid"].value
    assert results["per_class_fid"].value > 10 * exact["per_class_fid"].value + 1


def test_classes_without_two_held_out_rows_get_no_fid(digits) -> None:
    data, test, labels, net = digits
    results = evaluate_model(
        HeldOutImages(test, labels),
        data,
        generator=torch.Generator().manual_seed(0),
        metrics=[ClassConditionalQuality(per_class=3)],
        max_examples=12,
    )
    first = labels[:12]
    quality = class_conditional_quality(
        HeldOutImages(test, labels), test[:12], first, net, per_class=3
    )
    few = torch.bincount(first, minlength=10) < 2
    assert few.any() and not few.all()
    assert quality.fid[few].isnan().all() and not quality.fid[~few].isnan().any()
    assert math.isfinite(results["per_class_fid"].value)
    assert quality.counts.tolist() == [3.0] * 10


def test_the_metric_says_where_it_does_not_apply(digits) -> None:
    data, test, labels, _ = digits

    class Unconditional(GenerativeModel):
        def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
            return test[:n].double()

    metric = ClassConditionalQuality()
    reason = metric.why_not(Unconditional((1, 8, 8)), data)
    assert reason == "Unconditional is not conditioned on classes"
    # data without labels: not asked at all, so no skip reason
    unlabelled = evaluate_model(Unconditional((1, 8, 8)), Digits(), n_samples=50, metrics=[metric])
    assert "per_class_fid" not in unlabelled.skipped and "per_class_fid" not in unlabelled
    # labelled data without a classifier trained on its labels
    spec = DataSpec((1, 8, 8), levels=17, condition=ConditionSpec(classes=10))
    arrays = ArrayDataset(test, test, test, spec, conditions=(labels, labels, labels))
    reason = metric.why_not(HeldOutImages(test, labels), arrays)
    assert reason is not None and "no classifier trained" in reason


def test_bad_arguments_are_refused(digits) -> None:
    _, test, labels, net = digits
    with pytest.raises(InvalidInput, match="per_class"):
        class_conditional_quality(HeldOutImages(test, labels), test, labels, net, per_class=1)
    with pytest.raises(InvalidInput, match="the classifier has 10 classes, the model 9"):
        class_conditional_quality(HeldOutImages(test, labels, classes=9), test, labels, net)
