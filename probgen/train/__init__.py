"""The training engine (Lightning Fabric), checkpoints and run configurations."""

from probgen.train.build import build, standardization_record
from probgen.train.checkpoint import CheckpointError
from probgen.train.config import (
    ComponentConfig,
    ConfigError,
    RunConfig,
    TrainConfig,
    config_to_dict,
    load_config,
    parse_overrides,
    save_config,
)
from probgen.train.engine import (
    Callback,
    TrainingDiverged,
    TrainResult,
    TrainState,
    fit,
    load_run,
)

__all__ = [
    "Callback",
    "CheckpointError",
    "ComponentConfig",
    "ConfigError",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "TrainingDiverged",
    "build",
    "config_to_dict",
    "fit",
    "load_config",
    "load_run",
    "parse_overrides",
    "save_config",
    "standardization_record",
]
