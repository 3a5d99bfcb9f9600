"""``--data`` of the commands: a registered data set or a user's file, as config overrides."""

from __future__ import annotations

from typing import Any

from probgen.core import DataSpec, InvalidInput
from probgen.data.base import Dataset
from probgen.data.userfiles import data_config, data_file
from probgen.registry import DATASETS
from probgen.train import RunConfig

__all__ = ["data_flags", "data_name", "other_data"]


def data_flags(text: str) -> dict[str, Any]:
    """``--data``'s overrides: ``data.name``, and ``data.options.path`` for a file."""
    section = data_config(text)
    flags = {"data.name": section["name"]}
    flags.update({f"data.options.{k}": v for k, v in section.get("options", {}).items()})
    return flags


def data_name(config: RunConfig) -> str:
    """The run's data set name, or its file's name for the ``file`` data set."""
    path = data_file(config.data.name, config.data.options)
    return config.data.name if path is None else path.name


def other_data(config: RunConfig, spec: DataSpec, text: str) -> Dataset:
    """The data ``--data TEXT`` names, for a model trained by ``config`` on data of ``spec``.

    A file is read with the run's own file options (columns, label, levels,
    split) when the run trained on a file, so a model trained on train.csv is
    scored on test.csv column for column. The data must match the model's:
    the same event shape, levels and condition, else ``InvalidInput``.
    """
    section = data_config(text)
    options = section.get("options", {})
    if section["name"] == "file" and config.data.name == "file":
        options = {**config.data.options, **options}
    dataset = DATASETS.get(section["name"])(**options)
    if dataset.spec != spec:
        raise InvalidInput(
            f"--data {text}: the run was trained on {_spec_text(spec)}, this data has "
            f"{_spec_text(dataset.spec)}"
        )
    return dataset


def _spec_text(spec: DataSpec) -> str:
    levels = "continuous" if spec.levels is None else f"{spec.levels} levels"
    condition = "no condition" if spec.condition is None else spec.condition.describe()
    return f"events of shape {spec.event_shape}, {levels}, {condition}"
