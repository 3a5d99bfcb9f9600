"""probgen compare: train several models on one data set, score them alike, write a report.

    config = load_compare_config()                     # the embedded default, or a YAML path
    comparison = run_comparison(config, "runs/compare", evaluator=default_evaluator)
    write_reports(comparison)                          # results.json, report.md, report.html

See docs/compare.md.
"""

from probgen.compare.config import (
    CompareConfig,
    EvaluationConfig,
    LoadedEntry,
    ModelEntry,
    Trained,
    TrainedEntry,
    applicable_models,
    load_compare_config,
)
from probgen.compare.evaluation import default_evaluator
from probgen.compare.report import write_reports
from probgen.compare.run import (
    Comparison,
    ComparisonExists,
    Evaluation,
    Evaluator,
    ModelResult,
    run_comparison,
)

__all__ = [
    "CompareConfig",
    "Comparison",
    "ComparisonExists",
    "Evaluation",
    "EvaluationConfig",
    "Evaluator",
    "LoadedEntry",
    "ModelEntry",
    "ModelResult",
    "Trained",
    "TrainedEntry",
    "applicable_models",
    "default_evaluator",
    "load_compare_config",
    "run_comparison",
    "write_reports",
]
