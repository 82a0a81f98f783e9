"""The chance level: the test split's majority class, and whether full beats it (scipy's binomial test)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import matthews_corrcoef

from harness import reporting as report
from harness.report import main as report_main
from harness.reporting.chance import chance_level
from tests.reporting.synth import make_result, write_predictions, write_sweep

LABELS = np.array([0] * 70 + [1] * 69)      # RTE's shared dev split: 70 / 69


def _sweep(tmp_path, full_acc: float, metric: str = "accuracy"):
    rng = np.random.default_rng(0)
    results = [make_result(i, "full", seed=i, test=full_acc, val=full_acc, metric=metric) for i in range(2)]
    results += [make_result(10 + i, "freeze_attention", seed=i, test=full_acc, val=full_acc, ratio=0.3,
                            metric=metric) for i in range(2)]
    folder = write_sweep(tmp_path / f"s{full_acc}", results)
    for r in results:
        wrong = rng.choice(len(LABELS), size=round((1 - full_acc) * len(LABELS)), replace=False)
        preds = LABELS.copy()
        preds[wrong] = 1 - preds[wrong]
        write_predictions(folder, r, LABELS, preds)
    return folder


def test_a_baseline_at_chance_is_flagged_in_the_recommendation(tmp_path, capsys):
    folder = _sweep(tmp_path, 0.5036)
    t = report.build_tables(folder)
    c = t["chance"]
    assert c["label"] == 0 and c["n"] == 139 and c["score"] == pytest.approx(70 / 139)
    assert c["p_value"] == pytest.approx(binomtest(round(0.5036 * 139), 139, 70 / 139, alternative="greater").pvalue)
    assert c["above"] is False
    assert t["recommendation"].startswith("Chance: always predicting class 0")
    assert "full 0.5036 is NOT above it" in t["recommendation"]
    assert report_main([str(folder), "--no-plots"]) == 0
    assert "NOT above it" in capsys.readouterr().out
    assert "NOT above it" in (folder / "comparison.md").read_text()


def test_a_baseline_above_chance_gets_one_line_and_an_unchanged_recommendation(tmp_path):
    folder = _sweep(tmp_path, 0.75)
    t = report.build_tables(folder)
    assert t["chance"]["above"] is True and t["chance"]["p_value"] < 1e-6
    assert not t["recommendation"].startswith("Chance")
    lines = []
    report.write_report(folder, console=lines.append, plots=False)
    assert "full 0.7500 is above it" in (folder / "comparison.md").read_text()
    assert "full 0.7500 is above it" in lines[0]
    assert "full 0.7500 is above it" in (folder / "report.html").read_text()


def test_other_classification_metrics_use_the_constant_predictor_and_regression_has_none():
    loaded = (np.arange(len(LABELS)), LABELS, LABELS)
    mcc = chance_level([make_result(0, metric="mcc")], "mcc", lambda r: loaded, {"test_score_mean": 0.2})
    assert mcc["score"] == pytest.approx(matthews_corrcoef(LABELS, np.zeros_like(LABELS)))   # 0: no information
    assert mcc["above"] is True and mcc["p_value"] is None
    assert chance_level([make_result(0, metric="pearson")], "pearson", lambda r: loaded, None) is None
    assert chance_level([make_result(0)], "accuracy", lambda r: None, None) is None   # no predictions written
