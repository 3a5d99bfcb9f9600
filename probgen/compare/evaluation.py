"""The evaluator every comparison uses by default: ``probgen.evaluate.evaluate_model``.

``evaluate_model`` draws the model's samples once (timing them and counting
network evaluations) and runs every metric of ``DEFAULT_METRICS`` that applies
to the model's likelihood kind and the data; one more metric keeps those
samples, so the report's pictures show exactly the samples that were scored.
The reasons for the results it leaves out go to the report's footnotes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probgen.compare.run import Evaluation
from probgen.core import Estimate, GenerativeModel
from probgen.data.base import Dataset
from probgen.evaluate.suite import DEFAULT_METRICS, Context, Metric, evaluate_model

__all__ = ["default_evaluator"]


class _KeepSamples(Metric):
    """Returns no result; keeps the evaluation's samples for the pictures."""

    samples: Tensor  # set by the call, which every evaluation makes

    def __call__(self, ctx: Context) -> dict[str, Estimate | float]:
        self.samples = ctx.samples
        return {}


def default_evaluator(
    model: GenerativeModel, dataset: Dataset, *, split: str, n_samples: int, seed: int
) -> Evaluation:
    """``evaluate_model`` and the default metrics, sampling with a generator seeded by ``seed``."""
    keep = _KeepSamples()
    generator = torch.Generator(device=model.device).manual_seed(seed)
    results = evaluate_model(
        model,
        dataset,
        n_samples=n_samples,
        generator=generator,
        metrics=(*DEFAULT_METRICS, keep),
        split=split,
    )
    return Evaluation(results, keep.samples, results.skipped, results.notes)
