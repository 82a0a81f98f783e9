"""Building a :class:`~harness.config.schema.SweepConfig` from YAML: validation (pydantic, errors translated to
dotted-path messages by :func:`strategies.validation.describe`), the cross-field checks, ``--set`` overrides and
the YAML loader (``safe_load`` only, alias bombs refused)."""
from __future__ import annotations

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from harness.config.schema import (DISTRIBUTIONS, SAMPLED_AXES, SEARCH_AXES, ConfigError, Distribution,
                                   SearchConfig, StrategyConfig, SweepConfig, TrainConfig)
from strategies.validation import describe

__all__ = ["build", "build_config", "check_train", "strategy_train", "apply_overrides", "load_config",
           "to_dict", "MAX_CONFIG_VALUES"]


# --------------------------------------------------------------------------------------------- builder
@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def build(cls: type, data: Any, path: str = "") -> Any:
    """Validate ``data`` (a mapping; None is the defaults) into dataclass ``cls``; errors name ``path.<key>``."""
    try:
        return _adapter(cls).validate_python({} if data is None else data)
    except ValidationError as exc:
        where, message = describe(exc, cls, path)
        raise ConfigError(_without_union_tags(where) or "<root>", message) from None


_UNION_TAG = re.compile(r"\.(function-[a-z]+|list|tuple|nullable|union|constrained-[a-z]+)\[")


def _without_union_tags(where: str) -> str:
    """A search axis is a list or a distribution (a pydantic union): drop the union member's tag from the error's
    path (``search.lr.function-after[...][1]`` -> ``search.lr[1]``). Config keys never hold brackets."""
    while (m := _UNION_TAG.search(where)) is not None:
        j, depth = m.end() - 1, 0
        while j < len(where):          # skip the tag's balanced brackets
            depth += (where[j] == "[") - (where[j] == "]")
            j += 1
            if depth == 0:
                break
        where = where[:m.start()] + where[j:]
    return where.replace(".Distribution", "")


# keys of 0.1 with their 0.2 names: the test split is evaluated once; choices read the validation split
RENAMED = {"data.eval_size": "data.test_size", "data.eval_split": "data.test_split",
           "data.eval_source": "data.test_source"}


def _check_renamed(data: Any) -> None:
    for old, new in RENAMED.items():
        section, key = old.split(".")
        if isinstance(data, dict) and isinstance(data.get(section), dict) and key in data[section]:
            raise ConfigError(old, f"renamed to {new} in freezebench 0.2 (the test split is evaluated once, at the "
                                   "end; curves, early stopping and selection read the validation split, see "
                                   "data.val_size)")


def _check_data(cfg: SweepConfig) -> None:
    d, m, t = cfg.data, cfg.model, cfg.train
    regression = m.num_labels == 1
    if sum(x is not None for x in (d.val_split, d.val_source)) > 1:
        raise ConfigError("data.val_source", "set one of data.val_split or data.val_source")
    if d.val_size == 0 and (d.val_split or d.val_source):
        raise ConfigError("data.val_size", "0 (no validation set) contradicts data.val_split / data.val_source")
    if d.val_size == 0 and t.load_best:
        raise ConfigError("train.load_best", "needs a validation set to pick the best point on (data.val_size is "
                                             "0): picking it on the test split would tune on the test")
    if d.curve_eval_size and d.val_size and d.curve_eval_size > d.val_size:
        raise ConfigError("data.curve_eval_size", f"{d.curve_eval_size} exceeds data.val_size {d.val_size}")
    if d.train_size is not None and d.train_size < 2:
        raise ConfigError("data.train_size", "must be at least 2 (one example per class)")
    if regression and d.label_map is not None:
        raise ConfigError("data.label_map", "does not apply to regression (model.num_labels: 1): labels are numbers")
    if t.metric is not None and (t.metric in ("pearson", "spearman")) != regression:
        kind = "regression (model.num_labels: 1)" if regression else f"classification ({m.num_labels} labels)"
        allowed = "pearson, spearman" if regression else "accuracy, f1 (2 labels), macro_f1, mcc"
        raise ConfigError("train.metric", f"{t.metric} does not fit {kind}; use one of {allowed}")
    if t.metric == "f1" and m.num_labels != 2:
        raise ConfigError("train.metric", f"f1 is the binary F1 of class 1; with {m.num_labels} labels use macro_f1")
    if regression and t.label_smoothing:
        raise ConfigError("train.label_smoothing", "does not apply to regression (model.num_labels: 1)")
    if d.label_map is not None:
        ids = list(d.label_map.values())
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ConfigError("data.label_map", f"values must be integer class ids, got {ids}")
        if sorted(set(ids)) != list(range(m.num_labels)):
            raise ConfigError("data.label_map", f"class ids {sorted(set(ids))} must be exactly 0..{m.num_labels - 1}")


def _cross_check(cfg: SweepConfig) -> None:
    m = cfg.model
    if (m.name is None) == (m.arch is None):
        raise ConfigError("model", "set exactly one of model.name (pretrained) or model.arch (random init)")
    if m.overrides and m.arch is None:
        raise ConfigError("model.overrides", "only applies with model.arch (random initialisation)")
    check_train(cfg.train)
    _check_search(cfg.search)
    if cfg.search.strategy is None:
        _check_strategy_train(cfg.strategy, cfg.search, "strategy.train")
    es = cfg.search.early_stopping
    t = cfg.train
    if es.enabled and es.grace_period > t.max_steps:
        raise ConfigError("search.early_stopping.grace_period", f"{es.grace_period} exceeds train.max_steps {t.max_steps}")
    _check_data(cfg)
    r = cfg.resources
    if r.num_cpus is not None and r.cpus_per_trial > r.num_cpus:
        raise ConfigError("resources.cpus_per_trial", f"{r.cpus_per_trial} exceeds resources.num_cpus {r.num_cpus}")
    if r.gpus_per_trial > 1 and r.gpus_per_trial != int(r.gpus_per_trial):
        raise ConfigError("resources.gpus_per_trial", f"more than one GPU per trial means one worker per GPU: "
                          f"give a whole number, got {r.gpus_per_trial}")
    if r.workers_per_trial > 1 and r.gpus_per_trial > 1 and r.workers_per_trial != r.gpus_per_trial:
        raise ConfigError("resources.workers_per_trial", f"{r.workers_per_trial} disagrees with "
                          f"resources.gpus_per_trial {r.gpus_per_trial:g} (one worker per GPU)")
    if r.workers_per_trial > 1 and 0 < r.gpus_per_trial <= 1:
        raise ConfigError("resources.workers_per_trial", f"on GPUs each worker needs its own GPU: set "
                          f"resources.gpus_per_trial: {r.workers_per_trial} (it is {r.gpus_per_trial:g})")


def check_train(t: TrainConfig, where: str = "train") -> None:
    """Cross-field checks of one train section (``where``: its dotted path, e.g. a strategy's overrides)."""
    if t.precision == "fp16" and t.device == "cpu":
        raise ConfigError(f"{where}.precision", "fp16 needs a GPU (train.device is cpu); use bf16 or fp32")
    if t.deepspeed_config is not None and t.backend != "deepspeed":
        raise ConfigError(f"{where}.deepspeed_config", "only applies with train.backend: deepspeed")
    if t.zero_stage and t.backend != "deepspeed":
        raise ConfigError(f"{where}.zero_stage", "only applies with train.backend: deepspeed")
    if t.checkpoint_every and t.checkpoint_every % t.eval_every:
        raise ConfigError(f"{where}.checkpoint_every", f"{t.checkpoint_every} must be a multiple of train.eval_every "
                          f"({t.eval_every}): checkpoints are taken at evaluations")


def strategy_train(base: TrainConfig, overrides: dict, where: str) -> TrainConfig:
    """``base`` with a strategy's ``train:`` overrides applied and validated (errors name ``where.<key>``)."""
    if not overrides:
        return base
    if not isinstance(overrides, dict):
        raise ConfigError(where, f"expected a mapping of train settings, got {overrides!r}")
    if "seed" in overrides:
        raise ConfigError(f"{where}.seed", "seeds come from search.seed (or train.seed), not from a strategy")
    if "metric" in overrides:
        raise ConfigError(f"{where}.metric", "every strategy is compared on one metric: set train.metric")
    build(TrainConfig, overrides, where)   # unknown keys, types and ranges, named at the override
    merged = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)}
    merged.update(overrides)
    train = build(TrainConfig, merged, where)
    check_train(train, where)
    return train


def _check_strategy_train(strategy: StrategyConfig, search: SearchConfig, where: str) -> None:
    overrides = strategy.train if isinstance(strategy.train, dict) else {}
    clash = [k for k in overrides if k in SEARCH_AXES and getattr(search, k) is not None]
    if clash:
        raise ConfigError(f"{where}.{clash[0]}", f"is also a search axis (search.{clash[0]}): set it in one place")
    strategy_train(TrainConfig(), strategy.train, where)


INT_AXES = ("batch_size", "max_steps")
RANGE_AXES = ("lr", "weight_decay", "dropout", "attention_dropout", "label_smoothing", "word_dropout", *INT_AXES)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_number(v: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a range bound that reads as a number is one."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def _check_values(axis: str, values: list, where: str) -> None:
    """``values`` as the axis's own type and range (what a list of the axis would accept); errors name
    ``where[i]``."""
    try:
        build(SearchConfig, {axis: values}, "search")
    except ConfigError as exc:
        text = str(exc)
        message = text[len(exc.path) + 2:] if text.startswith(exc.path + ": ") else text
        index = re.search(r"\[\d+\]$", exc.path)   # the union's member names sit between axis and index
        raise ConfigError(where + (index.group(0) if index else ""), message) from None


def check_distributions(data: Any) -> None:
    """The sampled axes of a raw sweep mapping (``search.lr: {loguniform: [1e-5, 1e-3]}``), with messages that
    name the key - before pydantic, whose union errors (list or distribution) would not say which is meant."""
    search = data.get("search") if isinstance(data, dict) else None
    if not isinstance(search, dict):
        return
    for axis, spec in search.items():
        if axis not in SEARCH_AXES or not isinstance(spec, dict):
            continue
        path = f"search.{axis}"
        example = f"e.g. {axis}: {{loguniform: [1e-5, 1e-3]}}" if axis == "lr" else f"e.g. {axis}: {{choice: [...]}}"
        if axis not in SAMPLED_AXES:
            raise ConfigError(path, f"takes a list: {axis} is a grid axis (every sampled configuration runs with "
                                    "every seed, for every strategy), not a distribution")
        if len(spec) != 1:
            raise ConfigError(path, f"a distribution has exactly one key of {', '.join(DISTRIBUTIONS)} ({example}); "
                                    f"got {', '.join(map(str, spec)) or 'none'}")
        (name, args), = spec.items()
        where = f"{path}.{name}"
        if name not in DISTRIBUTIONS:
            raise ConfigError(where, f"unknown distribution {name!r}; use one of {', '.join(DISTRIBUTIONS)}")
        if name == "choice":
            if not isinstance(args, list) or not args:
                raise ConfigError(where, f"needs a non-empty list of values, got {args!r}")
            _check_values(axis, args, where)
            for i, v in enumerate(args):
                if v in args[:i]:
                    raise ConfigError(f"{where}[{i}]", f"duplicate value {v!r}")
            continue
        if axis not in RANGE_AXES:
            raise ConfigError(where, f"{axis} takes a list or {{choice: [...]}}, not a numeric range")
        args = [_as_number(v) for v in args] if isinstance(args, list) else args
        if not isinstance(args, list) or len(args) != 2 or not all(map(_number, args)):
            raise ConfigError(where, f"needs [low, high] (two numbers), got {args!r}")
        lo, hi = args
        if (name == "randint" or axis in INT_AXES) and not all(float(v).is_integer() for v in args):
            raise ConfigError(where, f"{axis} is an integer axis: give whole numbers, got {args!r}")
        if name == "randint" and axis not in INT_AXES:
            raise ConfigError(where, f"randint is for the integer axes ({', '.join(INT_AXES)}); use uniform or "
                                     f"loguniform for {axis}")
        if lo >= hi:
            raise ConfigError(where, f"low {lo!r} must be below high {hi!r}")
        if name == "loguniform" and lo <= 0:
            raise ConfigError(f"{where}[0]", f"a log scale needs low > 0, got {lo!r}")
        _check_values(axis, [int(v) for v in args] if axis in INT_AXES else args, where)


def _check_algorithm(search: SearchConfig) -> None:
    sampled = search.sampled
    if search.algorithm == "grid":
        if sampled:
            axis = next(iter(sampled))
            raise ConfigError(f"search.{axis}", "is a distribution, which search.algorithm: grid cannot enumerate; "
                                                "give a list, or set search.algorithm: random, optuna or bohb with "
                                                "search.num_samples (the budget per strategy)")
        if search.num_samples is not None:
            raise ConfigError("search.num_samples", "only applies to a sampled search (search.algorithm: random, "
                                                    "optuna or bohb); a grid runs every combination")
        return
    if search.num_samples is None:
        raise ConfigError("search.num_samples", f"required with search.algorithm: {search.algorithm} (the number "
                                                "of configurations every strategy gets)")
    if not sampled:
        raise ConfigError("search.algorithm", f"{search.algorithm} samples distribution axes, but the search has "
                                              "none; give one, e.g. search.lr: {loguniform: [1e-5, 1e-3]}")
    if search.algorithm == "bohb" and search.early_stopping.enabled:
        raise ConfigError("search.early_stopping.enabled", "bohb brings its own early stopping (HyperBand); "
                                                           "leave search.early_stopping off")


def _check_search(search: SearchConfig) -> None:
    _check_algorithm(search)
    for axis in SEARCH_AXES:
        values = getattr(search, axis)
        if values is None or isinstance(values, Distribution):
            continue
        seen = []
        for i, v in enumerate(values):
            path = f"search.{axis}[{i}]"
            if axis == "strategy":
                if isinstance(v, str):
                    v = build(StrategyConfig, {"name": v}, path)
                elif isinstance(v, dict):
                    v = build(StrategyConfig, v, path)
                else:
                    raise ConfigError(path, f"expected a strategy name or a {{name:, params:}} mapping, got {v!r}")
                _check_strategy_train(v, search, f"{path}.train")
                v = (v.name, json.dumps(v.params, sort_keys=True, default=str), v.lr_decay)
            if v in seen:
                raise ConfigError(path, f"duplicate value {values[i]!r}")
            seen.append(v)


def _check_flow_typos(node: Any, path: str = "") -> None:
    """``{negative:0,positive:1}``: YAML needs a space after ':' in a flow mapping; without one it reads a key
    ``negative:0`` with no value. No config key looks like that, so say what YAML saw and how to write it."""
    if isinstance(node, dict):
        glued = [k for k, v in node.items() if v is None and isinstance(k, str) and re.fullmatch(r"[^:\s]+:[^:\s]+", k)]
        if glued:
            fixed = ", ".join(": ".join(k.split(":", 1)) for k in glued)
            raise ConfigError(path or "<root>", f"YAML read {glued[0]!r} as one key with no value: put a space "
                                                f"after ':' in a flow mapping, e.g. {{{fixed}}}")
        for k, v in node.items():
            _check_flow_typos(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_flow_typos(v, f"{path}[{i}]")


def build_config(data: Any) -> SweepConfig:
    """Validate a plain mapping (as parsed from YAML) into a :class:`SweepConfig`."""
    _check_renamed(data)
    _check_flow_typos(data)
    check_distributions(data)
    cfg = build(SweepConfig, data)
    _cross_check(cfg)
    return cfg


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.path=value`` overrides (values parsed as YAML scalars/flow lists) to a raw mapping."""
    data = dict(data or {})
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "override must look like key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(key, "override key must be a dotted path such as train.lr")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(".".join(parts[: i + 1]), "is not a section; cannot set a key below it")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = _parse_scalar(raw)
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """Read a YAML file (safe_load only), apply ``--set`` overrides and validate."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("", f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError("<root>", f"{path} must hold a mapping of sections, got {type(data).__name__}")
    _check_size(data, path)
    merged = apply_overrides(data or {}, overrides or [])
    if overrides:
        _check_size(merged, "the config with its --set overrides")   # `--set k='&a [*a]'` refers to itself too
    return build_config(merged)


MAX_CONFIG_VALUES = 100_000


def _check_size(data: Any, path: Path | str) -> None:
    """YAML aliases can make a small file expand exponentially ("billion laughs") or refer to themselves;
    validation would hang on either. Count values as an expansion would, and stop at a budget."""
    stack, seen = [data], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise ConfigError("<root>", f"{path} expands to more than {MAX_CONFIG_VALUES:,} values "
                                        "(self-referencing or nested YAML aliases?)")
        if isinstance(node, dict):
            stack += [*node.keys(), *node.values()]
        elif isinstance(node, list):
            stack += node


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config dataclass (for JSON, Ray's param space and result files)."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
