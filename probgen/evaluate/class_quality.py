"""Class-conditional sample quality: does p_θ(x | k) draw images of class k, and how real are they?

For a model of p_θ(x | c) over K classes and a classifier trained on the
data's labels (the shipped digits / MNIST classifiers,
``probgen.evaluate.features``), draw m_k samples of each class k,
Y_k = {y_kj ~ p_θ(· | k)}, and compare them with the held-out rows X_k of
class k:

    accuracy_k       = 1/m_k Σ_j 1[argmax_c f(y_kj)_c = k]       f: the classifier's logits
    sample_class_accuracy = Σ_k m_k accuracy_k / Σ_k m_k,  stderr √(a(1 − a)/Σ_k m_k)
    fid_k            = FD(φ(Y_k), φ(X_k))                       φ: the classifier's features
    per_class_fid    = 1/K Σ_k fid_k

FD is the Fréchet distance of Gaussian fits (``samples.frechet_distance``).
The classifier's own accuracy on X_k is the ceiling of accuracy_k: a model
that draws exactly the held-out images of class k scores that accuracy and
fid_k = 0. Each fid_k is biased upward for small sets (the bias of FD falls
as 1/m); compare models at one m, and with m_k equal to |X_k| (the default)
each class is compared on sets of one size. Guidance (``sample_options``,
e.g. ``guidance=w`` for a diffusion model) trades the two: larger w raises
accuracy_k and eventually fid_k (Ho & Salimans 2022, Figure 4).

References: Ho & Salimans (2022), "Classifier-free diffusion guidance";
Heusel et al. (2017), FID; Salimans et al. (2016), "Improved techniques for
training GANs" (scoring samples with a pretrained classifier).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from probgen.core import Estimate, GenerativeModel, InvalidInput
from probgen.evaluate.features import ClassifierFeatures
from probgen.evaluate.samples import embed, frechet_distance

__all__ = ["ClassQuality", "class_conditional_quality", "draw_class"]


@dataclass(frozen=True)
class ClassQuality:
    """Per-class figures of ``class_conditional_quality``, each (K,) float64.

    Attributes:
        accuracy: accuracy_k, the fraction of class-k samples classified k
            (NaN when none were drawn).
        fid: fid_k, Fréchet distance of class k's samples to its held-out rows
            (NaN when either set has fewer than 2 rows).
        counts: m_k, the samples drawn of class k.
        reference_counts: |X_k|, the held-out rows of class k.
        samples: Y_k for each k, (m_k, *event_shape) on the CPU.
    """

    accuracy: Tensor
    fid: Tensor
    counts: Tensor
    reference_counts: Tensor
    samples: tuple[Tensor, ...] = field(default=(), repr=False)

    @property
    def sample_class_accuracy(self) -> Estimate:
        """The pooled accuracy Σ m_k a_k / Σ m_k with its binomial standard error."""
        total = self.counts.sum().item()
        a = (self.accuracy.nan_to_num() * self.counts).sum().item() / total
        return Estimate(a, math.sqrt(a * (1 - a) / total), "estimate")

    @property
    def per_class_fid(self) -> Estimate:
        """The mean of fid_k over the classes that have one (no standard error is known: NaN)."""
        return Estimate(self.fid.nanmean().item(), math.nan, "estimate")

    def describe(self) -> str:
        """One line: accuracy and FD of every class."""
        return "per class (accuracy, FD): " + ", ".join(
            f"{k}: {a:.3f}, {f:.3g}"
            for k, (a, f) in enumerate(zip(self.accuracy.tolist(), self.fid.tolist(), strict=True))
        )


def draw_class(
    model: GenerativeModel,
    k: int,
    m: int,
    generator: torch.Generator | None = None,
    **sample_options: Any,
) -> Tensor:
    """m samples of p_θ(· | k) in eval mode, on the CPU, floating point: (m, *event_shape)."""
    was_training = model.training
    model.eval()
    try:
        labels = torch.full((m,), k, dtype=torch.long, device=model.device)
        samples = model.sample(m, condition=labels, generator=generator, **sample_options)
    finally:
        model.train(was_training)
    samples = samples.detach().cpu()
    return samples if samples.is_floating_point() else samples.to(torch.get_default_dtype())


def class_conditional_quality(
    model: GenerativeModel,
    data: Tensor,
    labels: Tensor,
    classifier: ClassifierFeatures,
    *,
    per_class: int | None = None,
    generator: torch.Generator | None = None,
    **sample_options: Any,
) -> ClassQuality:
    """Accuracy of ``classifier`` on samples of each class and per-class FD (module docstring).

    Args:
        model: a model of p(x | c) over K classes (``condition_spec.classes`` = K).
        data: held-out rows X (N, *event_shape), in data units.
        labels: their classes (N,); a class with fewer than 2 rows has no fid_k.
        classifier: a classifier of K classes for these events; its features are φ.
        per_class: m, the samples drawn of each class; None draws |X_k| for class k.
        generator: the samples' randomness.
        sample_options: passed to ``model.sample`` (``guidance=w``, ``steps=``, …).
    """
    spec = model.condition_spec
    if spec is None or not spec.is_classes:
        raise InvalidInput(
            f"class_conditional_quality: {type(model).__name__} is not conditioned on classes"
        )
    k_classes = spec.classes
    if classifier.head.out_features != k_classes:
        raise InvalidInput(
            f"class_conditional_quality: the classifier has {classifier.head.out_features} "
            f"classes, the model {k_classes}"
        )
    labels = spec.check(labels, len(data), name="labels").cpu()
    if per_class is not None and (isinstance(per_class, bool) or per_class < 2):
        raise InvalidInput(f"per_class: expected an integer >= 2, got {per_class!r}")
    reference_counts = torch.bincount(labels, minlength=k_classes)
    accuracy, fid, counts, drawn = [], [], [], []
    for k in range(k_classes):
        reference = data[labels == k].cpu()
        m = len(reference) if per_class is None else per_class
        samples = draw_class(model, k, m, generator, **sample_options) if m else data[:0].float()
        with torch.no_grad():
            predicted = torch.cat([classifier.logits(x).argmax(dim=1) for x in samples.split(1000)])
        accuracy.append((predicted == k).double().mean().item() if m else math.nan)
        fid.append(math.nan)
        if m >= 2 and len(reference) >= 2:
            features = embed(samples, classifier).double(), embed(reference, classifier).double()
            fid[-1] = frechet_distance(*features, torch.nn.Flatten()).item()
        counts.append(m)
        drawn.append(samples)
    f64 = torch.float64
    return ClassQuality(
        torch.tensor(accuracy, dtype=f64),
        torch.tensor(fid, dtype=f64),
        torch.tensor(counts, dtype=f64),
        reference_counts.to(f64),
        tuple(drawn),
    )
