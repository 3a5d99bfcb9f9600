"""Metrics of conditional models: the generative classifier, class-conditional sample
quality, and the classifier two-sample test (which every model gets when asked)."""

from __future__ import annotations

import torch

from probgen.core import GenerativeModel, Likelihood
from probgen.data.base import Dataset
from probgen.evaluate.class_quality import class_conditional_quality
from probgen.evaluate.classifiers import generative_classifier
from probgen.evaluate.features import (
    WEIGHTS,
    default_features,
    describe_features,
)
from probgen.evaluate.metric import Context, Metric, Result, _name
from probgen.evaluate.two_sample import c2st

__all__ = ["ClassConditionalQuality", "GenerativeClassifier", "TwoSampleClassifier"]


class TwoSampleClassifier(Metric):
    """``c2st``: the cross-validated accuracy of an MLP telling samples from reference rows.

    ½ when they cannot be told apart, at most ½ + ½ TV (``probgen.evaluate.two_sample``).
    Not in ``DEFAULT_METRICS`` (it trains five classifiers); ask for it by name. Token
    windows are categorical: a Euclidean classifier on ids means nothing there.
    """

    names = ("c2st",)

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if dataset.categorical:
            return "token ids are categorical: a classifier on raw ids means nothing"
        return None

    def __call__(self, ctx: Context) -> Result:
        seed = 0 if ctx.generator is None else int(ctx.generator.initial_seed() % 2**31)
        return {"c2st": c2st(ctx.samples, ctx.reference.to(ctx.samples.dtype), seed=seed)}


def _class_labelled(dataset: Dataset) -> bool:
    condition = dataset.spec.condition
    return condition is not None and condition.is_classes


class GenerativeClassifier(Metric):
    """``classifier_accuracy``, ``classifier_ece``, ``classifier_nll``: p(c | x) by Bayes' rule.

    For data with class conditions and a model of p(x | c) with a likelihood
    (``probgen.evaluate.classifiers``); the class prior is the training
    split's label frequencies (uniform for data drawn afresh).
    """

    names = ("classifier_accuracy", "classifier_ece", "classifier_nll")

    def asked_of(self, dataset: Dataset) -> bool:
        return _class_labelled(dataset)

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if not self.asked_of(dataset):
            return "the data have no class labels"
        if model.condition_spec is None:
            return f"{_name(model)} is unconditional"
        if model.likelihood is Likelihood.NONE:
            return f"{_name(model)} has no density (likelihood none)"
        return None

    def __call__(self, ctx: Context) -> Result:
        k = ctx.dataset.spec.condition.classes
        train = ctx.dataset.conditions("train") if ctx.dataset.train_size is not None else None
        prior = None if train is None else torch.bincount(train.long(), minlength=k).double()
        prior = None if prior is None else prior / prior.sum()
        return dict(
            generative_classifier(
                ctx.model, ctx.data, ctx.conditions, prior, generator=ctx.generator
            )
        )


class ClassConditionalQuality(Metric):
    """``sample_class_accuracy`` and ``per_class_fid`` of a class-conditional model.

    Draws samples of each class k (``per_class``, or as many as the held-out
    rows of class k) and scores them with the classifier trained on the data
    set's labels that ships with probgen (its ``feature_net``: digits, MNIST):
    its accuracy at recovering k, and the mean over classes of the Fréchet
    distance to the held-out rows of the class on its features
    (``probgen.evaluate.class_quality``). The per-class values are in the note.
    ``sample_options`` go to ``model.sample`` (e.g. ``guidance=w``).
    """

    names = ("sample_class_accuracy", "per_class_fid")

    def __init__(self, per_class: int | None = None, **sample_options: object) -> None:
        self.per_class = per_class
        self.sample_options = sample_options

    def asked_of(self, dataset: Dataset) -> bool:
        return _class_labelled(dataset)

    def why_not(self, model: GenerativeModel, dataset: Dataset) -> str | None:
        if not self.asked_of(dataset):
            return "the data have no class labels"
        if model.condition_spec is None or not model.condition_spec.is_classes:
            return f"{_name(model)} is not conditioned on classes"
        name = dataset.feature_net
        if name is None:
            return "no classifier trained on this data set's labels ships (digits and MNIST only)"
        if not (WEIGHTS / f"{name}.safetensors").is_file():
            return f"the {name} classifier's weights are missing ({WEIGHTS / name}.safetensors)"
        return None

    def __call__(self, ctx: Context) -> Result:
        spec = ctx.dataset.spec
        net = default_features(spec.event_shape, levels=spec.levels, name=ctx.dataset.feature_net)
        quality = class_conditional_quality(
            ctx.model,
            ctx.data,
            ctx.conditions,
            net,
            per_class=self.per_class,
            generator=ctx.generator,
            **self.sample_options,
        )
        note = f"{describe_features(net)}; {quality.describe()}"
        ctx.notes.update(dict.fromkeys(self.names, note))
        return {
            "sample_class_accuracy": quality.sample_class_accuracy,
            "per_class_fid": quality.per_class_fid,
        }
