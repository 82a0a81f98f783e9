"""How a set of predictions is scored: the task metrics, computed by scikit-learn and scipy.

One table, :data:`METRICS`, names every metric a sweep can select on (``train.metric``), the task it applies to
and its direction. The trial scores its evaluations with :func:`score_all`; the report re-scores resampled
predictions (the paired bootstrap) with :func:`score` — the same functions, so a number in the table and a
number recomputed from ``predictions.parquet`` agree.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import stats as sps
from sklearn import metrics as skm

__all__ = ["Metric", "METRICS", "CLASSIFICATION", "REGRESSION", "task_of", "default_metric", "metrics_for",
           "score", "score_all", "predictions_from_outputs"]

CLASSIFICATION, REGRESSION = "classification", "regression"


def _accuracy(y, p):
    return skm.accuracy_score(y, p)


def _f1(y, p):
    return skm.f1_score(y, p, average="binary", pos_label=1, zero_division=0.0)


def _macro_f1(y, p):
    return skm.f1_score(y, p, average="macro", zero_division=0.0)


def _mcc(y, p):
    return skm.matthews_corrcoef(y, p)


def _correlation(fn) -> Callable:
    def corr(y, p):
        y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
        if len(y) < 2 or np.ptp(y) == 0 or np.ptp(p) == 0:
            return float("nan")          # undefined for a constant series (scipy would warn and give nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn(y, p).statistic)
    return corr


@dataclass(frozen=True)
class Metric:
    name: str
    task: str                   # classification | regression
    fn: Callable                # fn(labels, predictions) -> float (predicted class ids, or predicted values)
    binary_only: bool = False
    doc: str = ""

    @property
    def mode(self) -> str:
        return "max"            # every metric here is better when larger


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", CLASSIFICATION, _accuracy, doc="fraction of correct labels (sklearn accuracy_score)"),
    Metric("f1", CLASSIFICATION, _f1, binary_only=True,
           doc="F1 of the positive class 1 (sklearn f1_score, average='binary'), as GLUE reports for MRPC/QQP"),
    Metric("macro_f1", CLASSIFICATION, _macro_f1, doc="unweighted mean of per-class F1 (sklearn, average='macro')"),
    Metric("mcc", CLASSIFICATION, _mcc, doc="Matthews correlation (sklearn matthews_corrcoef), as GLUE for CoLA"),
    Metric("pearson", REGRESSION, _correlation(sps.pearsonr), doc="Pearson r (scipy.stats.pearsonr), as GLUE for STS-B"),
    Metric("spearman", REGRESSION, _correlation(sps.spearmanr), doc="Spearman rho (scipy.stats.spearmanr)"),
)}


def task_of(num_labels: int) -> str:
    """``model.num_labels: 1`` is regression (MSE on float labels); 2 or more is classification."""
    return REGRESSION if num_labels == 1 else CLASSIFICATION


def default_metric(num_labels: int) -> str:
    return "pearson" if num_labels == 1 else "accuracy"


def metrics_for(num_labels: int) -> list[str]:
    """Every metric recorded for a task (accuracy is always recorded for classification)."""
    task = task_of(num_labels)
    return [m.name for m in METRICS.values() if m.task == task and not (m.binary_only and num_labels != 2)]


def score(name: str, labels, predictions) -> float:
    value = float(METRICS[name].fn(np.asarray(labels), np.asarray(predictions)))
    return value if math.isfinite(value) else float("nan")


def score_all(num_labels: int, labels, predictions) -> dict[str, float]:
    return {name: score(name, labels, predictions) for name in metrics_for(num_labels)}


def predictions_from_outputs(outputs: np.ndarray, num_labels: int) -> np.ndarray:
    """Predicted class ids (argmax of logits) or predicted values (regression: the single output)."""
    outputs = np.asarray(outputs)
    return outputs.reshape(-1).astype(np.float64) if num_labels == 1 else outputs.argmax(-1)
