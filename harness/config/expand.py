"""Sweep file = base experiment + axes. Expansion into trials is a pure function, tested without Ray."""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from typing import Any, Optional

from pydantic.dataclasses import dataclass

from harness.config.build import build, strategy_train, to_dict
from harness.config.schema import (SECTION, SHORT_NAMES, ConfigError, DataConfig, Distribution, LoggingConfig, ModelConfig,
                                   OutputConfig, ResourcesConfig, StrategyConfig, SweepConfig, TrainConfig)

__all__ = ["TrialConfig", "expand", "strategy_label", "strategy_path", "normalise_strategies", "trial_from_dict",
           "config_hash"]

# Train-level axes, in the order they appear in trial ids. "strategy" and "seed" are handled separately.
_TRAIN_AXES = ("lr", "batch_size", "scheduler", "grad_clip", "weight_decay", "dropout", "attention_dropout",
               "label_smoothing", "word_dropout", "max_steps")
_SHORT = SHORT_NAMES


@dataclass(frozen=True, config=SECTION)
class TrialConfig:
    """Everything one trial needs; plain data so it can cross process boundaries (Ray param space)."""

    sweep: str
    trial_id: str
    index: int
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    strategy: StrategyConfig
    resources: ResourcesConfig
    logging: LoggingConfig
    output: OutputConfig
    # a sampled trial (search.algorithm random / optuna / bohb): {algorithm, study, n, values}; None on a grid
    sample: Optional[dict] = None

    @property
    def strategy_label(self) -> str:
        return strategy_label(self.strategy)

    def to_dict(self) -> dict:
        return to_dict(self)


def trial_from_dict(data: dict) -> TrialConfig:
    """Rebuild (and re-validate) a TrialConfig from its ``to_dict`` form."""
    return build(TrialConfig, data)


def strategy_label(s: StrategyConfig) -> str:
    """Human-readable, stable label: ``top_k(k=2)``; ``full`` without params; ``full(lr_decay=0.95)``."""
    items = sorted(s.params.items()) + ([("lr_decay", s.lr_decay)] if s.lr_decay is not None else [])
    if not items:
        return s.name
    inner = ",".join(f"{k}={_fmt(v)}" for k, v in items)
    return f"{s.name}({inner})"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(_fmt(x) for x in v)
    return str(v)


def normalise_strategies(cfg: SweepConfig) -> list[StrategyConfig]:
    """The strategy axis as StrategyConfigs (a bare name or a {name, params} mapping per entry)."""
    if cfg.search.strategy is None:
        return [cfg.strategy]
    out: list[StrategyConfig] = []
    for i, entry in enumerate(cfg.search.strategy):
        path = f"search.strategy[{i}]"
        if isinstance(entry, str):
            out.append(build(StrategyConfig, {"name": entry}, path))
        elif isinstance(entry, dict):
            out.append(build(StrategyConfig, entry, path))
        else:
            raise ConfigError(path, f"expected a strategy name or a {{name:, params:}} mapping, got {entry!r}")
    labels = [strategy_label(s) for s in out]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise ConfigError(f"search.strategy[{i}]", f"duplicate strategy {label!r} (to compare train settings "
                                                       "of one strategy, use a search axis such as search.lr)")
    return out


def strategy_path(cfg: SweepConfig, i: int) -> str:
    """Where the i-th strategy of the sweep is written in the config."""
    return "strategy" if cfg.search.strategy is None else f"search.strategy[{i}]"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-")


def placeholder(dist: Distribution, axis: str) -> Any:
    """The value a distribution axis takes in the plan's template trials (what pre-flight checks run on): the
    first choice, or the low end of the range."""
    if dist.choice is not None:
        return dist.choice[0]
    lo = (dist.loguniform or dist.uniform or dist.randint)[0]
    return int(lo) if axis in ("batch_size", "max_steps") else lo


def _axis_values(cfg: SweepConfig, axis: str) -> list:
    values = getattr(cfg.search, axis)
    if values is None:
        return [getattr(cfg.train, axis)]
    if isinstance(values, Distribution):   # sampled later, by the searcher of each strategy
        return [placeholder(values, axis)]
    for i, v in enumerate(values):
        if v in values[:i]:
            raise ConfigError(f"search.{axis}[{i}]", f"duplicate value {v!r}")
    return list(values)


def expand(cfg: SweepConfig) -> list[TrialConfig]:
    """The cartesian product of the axes, seeds outermost (so every strategy gets seed 0 early). With a sampled
    search (``search.algorithm`` other than grid) these are the plan's templates: one per grid cell and seed,
    each distribution axis at :func:`placeholder` (see :mod:`harness.config.search`)."""
    strategies = normalise_strategies(cfg)
    seeds = _axis_values(cfg, "seed")
    axes = {a: _axis_values(cfg, a) for a in _TRAIN_AXES}
    varied = [a for a in _TRAIN_AXES if len(axes[a]) > 1 or a in ("lr", "batch_size", "scheduler", "grad_clip")]
    trials: list[TrialConfig] = []
    where = {id(s): f"{strategy_path(cfg, i)}.train" for i, s in enumerate(strategies)}
    for seed, strat, combo in itertools.product(seeds, strategies, itertools.product(*axes.values())):
        values = dict(zip(axes, combo))
        train = dataclasses.replace(cfg.train, seed=seed, **values)
        train = strategy_train(train, strat.train, where[id(strat)])   # the strategy's own train settings
        if train.checkpoint_every and train.checkpoint_every > train.max_steps:
            raise ConfigError("train.checkpoint_every", f"exceeds max_steps {train.max_steps}")
        parts = [_slug(strategy_label(strat))]
        parts += [f"{_SHORT[a]}{_fmt(getattr(train, a)) if getattr(train, a) is not None else 'none'}"
                  for a in varied]
        parts.append(f"s{seed}")
        trial_id = "_".join(p for p in parts if p)
        trials.append(TrialConfig(sweep=cfg.name, trial_id=trial_id, index=len(trials), model=cfg.model,
                                  data=cfg.data, train=train, strategy=strat, resources=cfg.resources,
                                  logging=cfg.logging, output=cfg.output))
    ids = [t.trial_id for t in trials]
    if len(set(ids)) != len(ids):  # pragma: no cover - ids encode every varied axis
        raise ConfigError("search", "two trials would share an id")
    return trials


def _str_keys(obj: Any) -> Any:
    """Mapping keys as strings: a label_map may mix int and str keys (hub ids and TSV names), which json cannot
    sort."""
    if isinstance(obj, dict):
        return {str(k): _str_keys(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_str_keys(v) for v in obj]
    return obj


def config_hash(trial: TrialConfig) -> str:
    """Stable hash of a trial's resolved configuration (used to check resumes against the same plan)."""
    canonical = trial_from_dict(trial.to_dict()).to_dict()   # re-validated: 0 and 0.0 hash alike wherever it was built
    if canonical.get("sample") is None:
        canonical.pop("sample", None)   # a grid trial hashes as before sampled searches existed (resumable)
    blob = json.dumps(_str_keys(canonical), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
