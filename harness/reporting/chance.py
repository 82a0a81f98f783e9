"""What a model that learned nothing scores: the majority class of the test split, and which strategies beat it.

A verdict against ``full`` means little when ``full`` itself is at chance (every strategy is then "non-inferior"
to a coin): the report states the constant predictor's score on the test labels (read from a trial's
``predictions.parquet``) and tests the baseline against it, and every other strategy's selected configuration
too (a strategy that learned nothing is no cheaper way to the same model). Classification only: a constant
prediction has no Pearson or Spearman correlation.

The test: scipy's exact binomial test (one-sided, ``greater``) of a strategy's mean test accuracy over its seeds,
as k = round(mean × n) of n examples, against the majority-class rate. The seeds share the examples, so pooling
them as independent draws would overstate the evidence; the mean over seeds on n examples does not. For the
other classification metrics (f1, macro_f1, mcc) no such test is standard, and a strategy counts as above chance
when its mean test score exceeds the constant predictor's.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import binomtest

import harness.reporting.fields as f
from harness.reporting.bootstrap import Loaded
from harness.reporting.columns import ALPHA, BASELINE
from harness.results.metrics import METRICS, score

__all__ = ["chance_level", "chance_sentence", "chance_line"]


def chance_level(results: Sequence[dict], metric: str, predictions: Callable[[dict], Loaded | None],
                 summary: Sequence[dict]) -> dict[str, Any] | None:
    """``{"label", "score", "n", "baseline_score", "p_value", "above", "strategies"}`` for a classification metric
    when some ok trial wrote its test predictions; ``None`` otherwise. ``summary``: the report's line per strategy
    (its selected configuration); ``strategies`` maps each one with a test score to ``{"score", "p_value",
    "above"}``, and the ``baseline_*``, ``p_value`` and ``above`` keys repeat full's (None without it)."""
    if metric not in METRICS or METRICS[metric].task != "classification":
        return None
    loaded = next((p for p in (predictions(r) for r in results if f.is_ok(r)) if p is not None), None)
    if loaded is None or not len(loaded[1]):
        return None
    labels = np.asarray(loaded[1])
    values, counts = np.unique(labels, return_counts=True)
    majority = values[int(np.argmax(counts))]
    chance = score(metric, labels, np.full_like(labels, majority))
    strategies = {}
    for line in summary:
        mean = line.get("test_score_mean")
        if mean is None or mean != mean:
            continue
        test: dict[str, Any] = {"score": float(mean), "p_value": None}
        if metric == "accuracy":
            k = int(round(mean * len(labels)))   # the majority rate is the constant predictor's accuracy
            test["p_value"] = float(binomtest(k, len(labels), chance, alternative="greater").pvalue)
            test["above"] = test["p_value"] < ALPHA
        else:
            test["above"] = bool(mean > chance)
        strategies[line["strategy"]] = test
    base = strategies.get(BASELINE, {})
    return {"label": majority.item(), "score": chance, "n": int(len(labels)), "baseline_score": base.get("score"),
            "p_value": base.get("p_value"), "above": base.get("above"), "strategies": strategies}


def chance_sentence(chance: dict | None, metric: str) -> str:
    """One line for the console and comparison.md; empty without a chance level."""
    if not chance:
        return ""
    text = (f"Chance: always predicting class {chance['label']!r} (the test split's majority, n={chance['n']:,}) "
            f"scores {metric} {chance['score']:.4f}")
    def named(above: bool) -> str:
        return ", ".join(f"{name} {t['score']:.4f}" + (f" (p {t['p_value']:.3g})" if t["p_value"] is not None else "")
                         for name, t in chance.get("strategies", {}).items()
                         if name != BASELINE and bool(t["above"]) is above)
    others, also = named(False), named(True)
    either = " either" if chance["above"] is False else ""
    below = (f" Also above it: {also}." if also and chance["above"] else "") + \
        (f" Not above it{either}: {others}." if others else "")
    if chance["baseline_score"] is None:
        return text + "." + below
    test = f", binomial p {chance['p_value']:.3g}" if chance["p_value"] is not None else ""
    if chance["above"]:
        return text + f"; {BASELINE} {chance['baseline_score']:.4f} is above it{test}.{below}"
    return (text + f"; {BASELINE} {chance['baseline_score']:.4f} is NOT above it{test}: the model has not learned "
            f"the task, so the verdicts against it say nothing about freezing.{below}")


def chance_line(t: dict) -> str:
    """The chance sentence as an extra line under the verdicts; empty where there is none or where the
    recommendation already leads with it (full not above chance)."""
    chance = t.get("chance")
    return chance_sentence(chance, t["metric"]) if chance and chance["above"] is not False else ""
