"""The trial result: the product of the benchmark, defined once.

Every writer builds a result with :func:`new_result` (a trial that starts) or :func:`failed_result` (a trial
that produced nothing of its own), and every reader goes through :func:`load_result` / :func:`load_results`,
which check the schema version and upgrade older files. The field list below is the whole record; the
meaning of each number is in ``docs/metrics.md``.

Versions:

* ``freezebench.trial/1`` (0.1): curves and the final number on the test split, accuracy only; loads, upgraded in
  memory (nothing is rewritten): its test numbers become ``test``, its curve the ``val_*`` curve, and
  ``selected_on`` says ``test`` (a report over it says its selection is optimistic).
* ``freezebench.trial/2`` (0.2): this module. Curves, early stopping and selection read the validation split
  (``history`` ``val_*``, ``val``); the test split is evaluated once, at the end (``test``, with per-example
  predictions in ``predictions.parquet`` beside ``result.json``).
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional, TypedDict

from harness.config import TrialConfig, config_hash
from harness.results.env import environment
from harness.results.store import read_json

__all__ = ["RESULT_SCHEMA", "SCHEMAS", "HPARAM_KEYS", "STATUSES", "TrialResult", "HistoryRow", "ParamCounts",
           "EvalRecord", "MetricInfo", "Timing", "TIMING_KEYS", "new_result", "failed_result", "upgrade", "load_result", "load_results",
           "now", "ResultSchemaError", "PREDICTIONS_FILE"]

RESULT_SCHEMA = "freezebench.trial/2"
SCHEMAS = ("freezebench.trial/1", RESULT_SCHEMA)     # what load_result reads
STATUSES = ("ok", "diverged", "failed", "stopped", "running")
PREDICTIONS_FILE = "predictions.parquet"            # beside result.json: the test split's per-example outputs
# the train settings a result records under ``hparams`` (the grouping key of the comparison table, seed aside)
HPARAM_KEYS = ("lr", "batch_size", "scheduler", "grad_clip", "seed", "weight_decay", "dropout", "attention_dropout",
               "label_smoothing", "word_dropout", "max_steps", "grad_accum", "precision", "backend")


class ResultSchemaError(ValueError):
    """A ``result.json`` that is not a freezebench trial result this version can read."""


class HistoryRow(TypedDict, total=False):
    """One evaluation during training (``history``), on the validation curve subset. Besides these keys a row has
    ``val_<metric>`` for every metric of the task (``val_accuracy``, ``val_f1``, ...)."""

    step: int
    epoch: float
    train_loss: Optional[float]       # mean training loss since the previous evaluation
    val_loss: float
    val_score: float                  # the selection metric (``metric.name``) on the curve subset
    lr: float
    grad_norm: Optional[float]
    samples_per_s: Optional[float]
    tokens_per_s: Optional[float]
    peak_mem_mb: float
    elapsed_s: float
    skipped_steps: int


class ParamCounts(TypedDict):
    trainable: int
    total: int
    ratio: float


class MetricInfo(TypedDict):
    name: str                          # accuracy | f1 | macro_f1 | mcc | pearson | spearman
    mode: str                          # max
    task: str                          # classification | regression


class EvalRecord(TypedDict, total=False):
    """One whole-split evaluation after the last step (``val``: the selection's number; ``test``: reported)."""

    split: str                         # val | test
    step: int
    loss: float
    score: float                       # metric.name on the split
    metrics: dict                      # every metric of the task (accuracy always, for classification)
    size: int


class Timing(TypedDict, total=False):
    """Where a trial's wall time went (``timing``), seconds. ``wall_s`` is the whole trial; ``setup_s`` its set-up,
    of which ``data_load_s`` (tokenizer and tokenized cache), ``model_load_s`` (weights, strategy, engine) and
    ``prefix_s`` (the shared frozen-prefix features: computed, or waited for and memory-mapped); then
    ``train_s`` (optimizer steps), ``eval_s`` (the validation curve and the whole validation set), ``test_s``
    (the test split, once), ``checkpoint_s`` and ``write_s`` (result.json, predictions, weights)."""

    wall_s: float
    setup_s: float
    data_load_s: float
    model_load_s: float
    prefix_s: float
    train_s: float
    eval_s: float
    test_s: float
    checkpoint_s: float
    write_s: float


TIMING_KEYS = tuple(Timing.__annotations__)


class TrialResult(TypedDict, total=False):
    """``results/<sweep>/trials/<trial id>/result.json``."""

    schema: str
    sweep: str
    trial_id: str
    index: int
    config_hash: str
    status: str                        # one of STATUSES
    reason: Optional[str]
    strategy: str                      # label, e.g. top_k(k=2)
    strategy_name: str
    strategy_params: dict
    hparams: dict                      # HPARAM_KEYS of the resolved train section (sampled values too)
    # a sampled search's trial: {algorithm, study, n (sample number in its study), values (what was sampled)};
    # None on a grid. Its seeds share n; the table groups by strategy and hparams as for a grid
    sample: Optional[dict]
    config: dict                       # the whole resolved TrialConfig
    params: Optional[ParamCounts]
    metric: MetricInfo
    selected_on: str                   # validation | test (no validation set: the selection is optimistic)
    history: list[HistoryRow]
    train_losses: list[float]          # one per optimizer step
    val: Optional[EvalRecord]          # the whole validation set after the last step (or at loaded_best.step)
    test: Optional[EvalRecord]         # the test split, evaluated once, after the last step (or at loaded_best.step)
    predictions: Optional[str]         # PREDICTIONS_FILE when the test predictions were written
    best: Optional[dict]               # {"score", "step"}: the best evaluation of the validation curve
    loaded_best: Optional[dict]        # train.load_best: {"step", "score"} of the curve point val/test were taken at
    model_dir: Optional[str]           # the saved Hugging Face folder (output.save_model)
    throughput: Optional[dict]
    # what the training cost: trainable_ratio_mean (trainable/total averaged over the steps), train_flops (model
    # FLOPs of the training steps, harness/train/cost.py), steps, changes ([{step, trainable, state}] each time
    # the trainable set changed: one entry for a static strategy), final_state (auto_freeze's frozen depth)
    cost: Optional[dict]
    timing: Optional[Timing]
    memory: Optional[dict]
    skipped_steps: int
    resumed_from_step: Optional[int]
    stopped_at_step: int
    workers: int
    warnings: list[str]
    traceback: str
    started_at: Optional[str]
    finished_at: Optional[str]
    env: dict


def now() -> str:
    """UTC timestamp with sub-second precision (results order and overlap checks need more than seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _identity(trial: TrialConfig) -> TrialResult:
    return TrialResult(schema=RESULT_SCHEMA, sweep=trial.sweep, trial_id=trial.trial_id, index=trial.index,
                       config_hash=config_hash(trial), strategy=trial.strategy_label,
                       strategy_name=trial.strategy.name, strategy_params=dict(trial.strategy.params),
                       hparams={k: getattr(trial.train, k) for k in HPARAM_KEYS}, config=trial.to_dict(),
                       sample=trial.sample)


def new_result(trial: TrialConfig) -> TrialResult:
    """The record of a trial that starts now (status ``running``, nothing measured yet)."""
    return TrialResult(**_identity(trial), status="running", reason=None, params=None, history=[], train_losses=[],
                       val=None, test=None, predictions=None, best=None, throughput=None, cost=None, timing=None,
                       memory=None, skipped_steps=0, resumed_from_step=None, model_dir=None, started_at=now(), finished_at=None,
                       env=environment())


def failed_result(trial: TrialConfig, reason: str) -> TrialResult:
    """The record of a trial that failed without writing one itself (it never started, or its worker died)."""
    return TrialResult(**_identity(trial), status="failed", reason=reason, params=None, history=[], train_losses=[],
                       val=None, test=None, predictions=None, best=None, throughput=None, cost=None, timing=None,
                       memory=None, skipped_steps=0, resumed_from_step=None, model_dir=None, started_at=None, finished_at=now(),
                       env={})


def upgrade(data: Any, where: str = "result") -> TrialResult:
    """A result of any readable schema as the current one; ResultSchemaError naming ``where`` otherwise."""
    if not isinstance(data, dict):
        raise ResultSchemaError(f"{where}: not a freezebench trial result (a JSON object expected)")
    schema = data.get("schema")
    if schema not in SCHEMAS:
        raise ResultSchemaError(f"{where}: schema {schema!r} cannot be read by this freezebench (it reads "
                                f"{', '.join(SCHEMAS)}); re-run the trial or use the freezebench that wrote it")
    out = _from_schema_1(data) if schema == "freezebench.trial/1" else dict(data)
    for key in ("trial_id", "status"):
        if key not in out:
            raise ResultSchemaError(f"{where}: missing {key!r}")
    return TrialResult(**out)


def _from_schema_1(data: dict) -> dict:
    """0.1 evaluated its curve and its final number on the test split, accuracy only: that number becomes
    ``test``, the curve the ``val_*`` curve, and ``selected_on: test`` says the selection read the test split."""
    out = {k: v for k, v in data.items() if k != "final"}
    out.update(schema=RESULT_SCHEMA, upgraded_from=data["schema"], selected_on="test", val=None,
               metric={"name": "accuracy", "mode": "max", "task": "classification"})
    final = data.get("final")
    out["test"] = None if not isinstance(final, dict) else {
        "split": "test", "step": final.get("step"), "loss": final.get("eval_loss"),
        "score": final.get("eval_accuracy"), "metrics": {"accuracy": final.get("eval_accuracy")},
        "size": final.get("eval_size")}
    history = []
    for row in data.get("history") or []:
        row = dict(row)
        if "eval_accuracy" in row:
            row["val_score"] = row["val_accuracy"] = row.pop("eval_accuracy")
        if "eval_loss" in row:
            row["val_loss"] = row.pop("eval_loss")
        history.append(row)
    out["history"] = history
    best = data.get("best")
    if isinstance(best, dict) and "eval_accuracy" in best:
        out["best"] = {"score": best["eval_accuracy"], "step": best.get("step")}
    return out


def load_result(path: str | Path) -> TrialResult:
    """Read and upgrade one ``result.json`` (OSError / ValueError when unreadable)."""
    try:
        data = read_json(path)
    except ValueError as exc:
        raise ResultSchemaError(f"{path}: unreadable result file: {exc}") from None
    return upgrade(data, str(path))


def load_results(sweep_dir: str | Path) -> list[TrialResult]:
    """Every ``trials/*/result.json`` under a sweep folder, sorted by trial index."""
    out = []
    for path in sorted(Path(sweep_dir).glob("trials/*/result.json")):
        try:
            out.append(load_result(path))
        except OSError as exc:
            raise ResultSchemaError(f"{path}: unreadable result file: {exc}") from None
    return sorted(out, key=lambda r: (r.get("index", 0), r.get("trial_id", "")))
