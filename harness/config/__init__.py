"""Configuration layer: the sweep file's schema (and its JSON Schema), building it from YAML, and expanding it
into trials.

Pure (no model, no data, no Ray): everything here is validated before any expensive work starts.
"""
from __future__ import annotations

from harness.config.build import (apply_overrides, build, build_config, check_train, load_config, strategy_train,
                                  to_dict)
from harness.config.expand import (TrialConfig, config_hash, expand, normalise_strategies, strategy_label,
                                   strategy_path, trial_from_dict)
from harness.config.json_schema import sweep_schema
from harness.config.schema import (SEARCH_AXES, ConfigError, DataConfig, EarlyStoppingConfig, LoggingConfig,
                                   ModelConfig, OutputConfig, ResourcesConfig, SearchConfig, StrategyConfig,
                                   SweepConfig, TrainConfig, WandbConfig)

__all__ = [
    "ConfigError", "EarlyStoppingConfig", "ModelConfig", "DataConfig", "TrainConfig", "StrategyConfig",
    "SearchConfig", "ResourcesConfig", "WandbConfig", "LoggingConfig", "OutputConfig", "SweepConfig", "SEARCH_AXES",
    "build", "build_config", "check_train", "strategy_train", "apply_overrides", "load_config", "to_dict",
    "TrialConfig", "expand", "config_hash", "normalise_strategies", "strategy_label", "strategy_path",
    "trial_from_dict", "sweep_schema",
]
