"""Build a run's data set and model from its config: the one construction path.

``build`` is what ``fit``, ``load_run``, the CLI and ``probgen compare`` call, so a
run is rebuilt from its config.yaml exactly as it was trained: the data set, the
family's small-data defaults (``probgen.train.small_data``), the data map fitted
on the training split (``Standardized``; its record written back into the
config) and the Bayesian wrapper when the config asks for one.
"""

from __future__ import annotations

from typing import Any

import torch

from probgen.core import GenerativeModel
from probgen.data.base import Dataset
from probgen.models import Standardized, build_model
from probgen.registry import DATASETS
from probgen.train.config import RunConfig
from probgen.train.small_data import with_small_data_defaults

__all__ = ["build", "standardization_record"]


def build(config: RunConfig, dataset: Dataset | None = None) -> tuple[GenerativeModel, Dataset]:
    """Build the data set (unless given), then the model for it, seeding torch first.

    ``DATASETS.get(data.name)(**data.options)``, then
    ``probgen.models.build_model(model.name, dataset.spec, **model.options)``
    (``for_data``; a density model dequantized on discrete data; on
    continuous data a ``Standardized`` map fitted on the training split by
    ``train.standardize``), wrapped by ``probgen.bayes.make_bayesian`` when
    the config has a ``bayes`` section. A fitted map is written back into
    ``config.train.standardize`` as ``{method, shift, scale}``, so the
    resolved config.yaml records it and ``load_run`` rebuilds the same map.
    On continuous data the training split is also what a ``DataInitialized``
    family starts from (a flow's mixture base, fitted by EM); on a small one the
    family's ``small_data_options`` go beneath ``model.options`` and are
    written back into them (``probgen.train.small_data``).
    """
    torch.manual_seed(config.seed)
    if dataset is None:
        dataset = DATASETS.get(config.data.name)(**config.data.options)
    # on small data, the family's EM-fitted start beneath the config's options; recorded
    config.model.options = with_small_data_defaults(
        config.model.name, config.model.options, dataset
    )
    method = config.train.standardize
    continuous = dataset.spec.levels is None
    train_data, train_conditions = (
        dataset.fitting_sample(seed=config.seed) if continuous else (None, None)
    )
    model = build_model(
        config.model.name,
        dataset.spec,
        train_data=train_data,
        train_conditions=train_conditions,
        standardize=method,
        **config.model.options,
    )
    if isinstance(model, Standardized) and not isinstance(method, dict):
        config.train.standardize = standardization_record(model)
    if config.bayes is not None:
        from probgen.bayes import make_bayesian  # only Bayesian runs pay the import

        # inside the data map, so ``bayes.layers`` name the family's own parameters
        if isinstance(model, Standardized):
            model.model = make_bayesian(model.model, config.bayes, dataset, config.train)
        else:
            model = make_bayesian(model, config.bayes, dataset, config.train)
    return model, dataset


def standardization_record(model: GenerativeModel) -> dict[str, Any] | None:
    """``{method, shift, scale}`` of a ``Standardized`` model (lists of floats); else None."""
    if not isinstance(model, Standardized):
        return None
    record = {"method": model.method, "shift": model.shift.tolist(), "scale": model.scale.tolist()}
    if model.condition_shift is not None and model.condition_scale is not None:
        record["condition_shift"] = model.condition_shift.tolist()
        record["condition_scale"] = model.condition_scale.tolist()
    return record
