"""Defaults for small data: start where a Gaussian mixture fitted by EM already is.

A flow over N(0, I), a VAE with a standard-normal prior or a diffusion model
that learns its whole denoiser must find the clusters of a data set from its
points; with a few hundred of them it stops early (or overfits) well before,
and on Old Faithful in raw units (272 points, two clusters) those defaults
end 0.3–0.5 nats per point below SciPy's KDE (benchmarks/README.md, "Old
Faithful in raw units"). Started at the Gaussian mixture that EM fits with
BIC's number of components, the same families start at the mixture's density
and end level with or above scikit-learn's ``GaussianMixture``. So on small
data the engine builds them that way unless the run's config says otherwise:

    options = family.small_data_options(spec, options) | options

where ``small_data_options`` is the family's answer (``GenerativeModel``;
e.g. ``{"base": "mixture"}`` for a vector flow) and the config's own options
win. "Small" is the same notion as early stopping's ``auto``: a finite
training split of at most ``SMALL_DATA`` examples, here of continuous vectors
(no levels, one event dimension) without a condition (the mixture is a model
of p(x)), with at least ``POINTS_PER_PARAMETER`` examples per parameter of one
full-covariance component, 1 + D + D(D+1)/2, so that EM's fit is determined
by the data (60 for D = 2; Old Faithful's folds have 174–218). The resolved
options are written back into the config, so config.yaml and the checkpoint
rebuild the same model.
"""

from __future__ import annotations

from typing import Any

from probgen.data.base import Dataset
from probgen.registry import MODELS
from probgen.train.config import SMALL_DATA

__all__ = ["POINTS_PER_PARAMETER", "is_small_vector_data", "with_small_data_defaults"]

POINTS_PER_PARAMETER = 10
"""Training examples per parameter of one full-covariance Gaussian component, at least."""


def is_small_vector_data(dataset: Dataset) -> bool:
    """Whether ``dataset`` is small, finite, unconditional continuous vectors (module docstring)."""
    spec, n = dataset.spec, dataset.train_size
    if n is None or n > SMALL_DATA or spec.levels is not None or spec.condition is not None:
        return False
    if len(spec.event_shape) != 1:
        return False
    d = spec.event_shape[0]
    return n >= POINTS_PER_PARAMETER * (1 + d + d * (d + 1) // 2)


def with_small_data_defaults(
    name: str, options: dict[str, Any], dataset: Dataset
) -> dict[str, Any]:
    """``options`` of family ``name`` with its small-data defaults beneath, where they apply."""
    if not is_small_vector_data(dataset):
        return dict(options)
    return MODELS.get(name).small_data_options(dataset.spec, options) | options
