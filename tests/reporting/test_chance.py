"""The chance level: the test split's majority class, and which strategies beat it (scipy's binomial test)."""
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


def _sweep(tmp_path, full_acc: float, metric: str = "accuracy", fa_acc: float | None = None):
    rng = np.random.default_rng(0)
    fa_acc = full_acc if fa_acc is None else fa_acc
    results = [make_result(i, "full", seed=i, test=full_acc, val=full_acc, metric=metric) for i in range(2)]
    results += [make_result(10 + i, "freeze_attention", seed=i, test=fa_acc, val=fa_acc, ratio=0.3,
                            metric=metric) for i in range(2)]
    folder = write_sweep(tmp_path / f"s{full_acc}_{fa_acc}", results)
    for r in results:
        acc = full_acc if r["strategy"] == "full" else fa_acc
        wrong = rng.choice(len(LABELS), size=round((1 - acc) * len(LABELS)), replace=False)
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
    assert "Not above it" not in lines[0]


def test_every_strategy_is_tested_and_those_at_chance_are_named(tmp_path):
    folder = _sweep(tmp_path, 0.5899, fa_acc=0.5612)      # 82/139 and 78/139 against 70/139
    c = report.build_tables(folder)["chance"]
    p = {k: binomtest(k, 139, 70 / 139, alternative="greater").pvalue for k in (82, 78)}
    assert c["strategies"]["full"] == {"score": pytest.approx(0.5899), "p_value": pytest.approx(p[82]), "above": True}
    assert c["strategies"]["freeze_attention"]["p_value"] == pytest.approx(p[78]) and p[82] < 0.05 < p[78]
    assert c["strategies"]["freeze_attention"]["above"] is False and (c["above"], c["p_value"]) == (True, p[82])
    report.write_report(folder, console=lambda *_: None, plots=False)
    assert (f"full 0.5899 is above it, binomial p {p[82]:.3g}. Not above it: freeze_attention 0.5612 (p {p[78]:.3g})."
            in (folder / "comparison.md").read_text())
    at_chance = report.build_tables(_sweep(tmp_path, 0.5036, fa_acc=0.5036))["recommendation"]
    p70 = binomtest(70, 139, 70 / 139, alternative="greater").pvalue
    assert at_chance.startswith("Chance:") and f"Not above it either: freeze_attention 0.5036 (p {p70:.3g})." in at_chance


def test_strategies_above_chance_besides_full_are_named_with_their_p(tmp_path):
    folder = _sweep(tmp_path, 0.6043, fa_acc=0.5827)      # 84/139 and 81/139 against 70/139
    p = {k: binomtest(k, 139, 70 / 139, alternative="greater").pvalue for k in (84, 81)}
    assert p[84] < p[81] < 0.05
    report.write_report(folder, console=lambda *_: None, plots=False)
    assert (f"full 0.6043 is above it, binomial p {p[84]:.3g}. Also above it: freeze_attention 0.5827 (p {p[81]:.3g})."
            in (folder / "comparison.md").read_text())


def test_other_classification_metrics_use_the_constant_predictor_and_regression_has_none():
    loaded = (np.arange(len(LABELS)), LABELS, LABELS)
    mcc = chance_level([make_result(0, metric="mcc")], "mcc", lambda r: loaded,
                       [{"strategy": "full", "test_score_mean": 0.2}, {"strategy": "head_only", "test_score_mean": 0.0}])
    assert mcc["score"] == pytest.approx(matthews_corrcoef(LABELS, np.zeros_like(LABELS)))   # 0: no information
    assert mcc["above"] is True and mcc["p_value"] is None
    assert mcc["strategies"]["head_only"] == {"score": 0.0, "p_value": None, "above": False}   # not above MCC 0
    assert chance_level([make_result(0, metric="pearson")], "pearson", lambda r: loaded, []) is None
    assert chance_level([make_result(0)], "accuracy", lambda r: None, []) is None   # no predictions written
