"""probgen compare: train several models on one data set, score them alike, write a report."""

from probgen.compare.config import (
    CompareConfig,
    EvaluationConfig,
    LoadedEntry,
    ModelEntry,
    TrainedEntry,
    applicable_models,
    load_compare_config,
)

__all__ = [
    "CompareConfig",
    "EvaluationConfig",
    "LoadedEntry",
    "ModelEntry",
    "TrainedEntry",
    "applicable_models",
    "load_compare_config",
]
