"""Every task metric against scikit-learn / scipy on known predictions, and the per-task defaults."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn import metrics as skm

from harness.results.metrics import (METRICS, default_metric, metrics_for, predictions_from_outputs, score,
                                     score_all, task_of)

Y = np.array([0, 1, 1, 0, 1, 1, 0, 0, 1, 1])
P = np.array([0, 1, 0, 0, 1, 1, 1, 0, 1, 0])


def test_classification_metrics_equal_sklearn():
    assert score("accuracy", Y, P) == pytest.approx(0.7)                       # 7 of 10 by hand
    assert score("accuracy", Y, P) == skm.accuracy_score(Y, P)
    assert score("f1", Y, P) == skm.f1_score(Y, P) == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))   # tp 4, fp 1, fn 2
    assert score("macro_f1", Y, P) == skm.f1_score(Y, P, average="macro")
    assert score("mcc", Y, P) == skm.matthews_corrcoef(Y, P)
    y3, p3 = np.array([0, 1, 2, 2, 1, 0]), np.array([0, 2, 2, 2, 1, 1])
    assert score_all(3, y3, p3) == {"accuracy": skm.accuracy_score(y3, p3),
                                    "macro_f1": skm.f1_score(y3, p3, average="macro"),
                                    "mcc": skm.matthews_corrcoef(y3, p3)}                 # no binary f1 for 3 classes


def test_regression_metrics_equal_scipy():
    y = np.array([0.0, 1.2, 2.5, 3.1, 4.8, 5.0])
    p = np.array([0.3, 1.0, 2.9, 2.7, 4.1, 4.9])
    assert score("pearson", y, p) == pytest.approx(sps.pearsonr(y, p).statistic, abs=1e-15)
    assert score("spearman", y, p) == pytest.approx(sps.spearmanr(y, p).statistic, abs=1e-15)
    assert math.isnan(score("pearson", y, np.full(6, 2.0)))          # undefined for a constant prediction


def test_defaults_and_predictions():
    assert (task_of(1), task_of(2), default_metric(1), default_metric(5)) == \
        ("regression", "classification", "pearson", "accuracy")
    assert metrics_for(2) == ["accuracy", "f1", "macro_f1", "mcc"] and metrics_for(1) == ["pearson", "spearman"]
    assert predictions_from_outputs(np.array([[0.1, 2.0], [3.0, -1.0]]), 2).tolist() == [1, 0]
    assert predictions_from_outputs(np.array([[0.5], [1.5]]), 1).tolist() == [0.5, 1.5]
    assert all(m.mode == "max" for m in METRICS.values())
