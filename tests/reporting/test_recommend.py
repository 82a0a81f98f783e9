"""The recommendation sentence and the Pareto front on a hand-made sweep whose right answers are known."""
from __future__ import annotations

import json

import pytest

from harness import reporting as report
from harness.config.schema import ReportConfig
from harness.reporting.recommend import recommendation
from harness.reporting.stats import build_groups
from harness.reporting.summary import pareto_front, summarise
from tests.reporting.synth import make_result, write_sweep

SEED_NOISE = (0.0, 0.001, -0.001, 0.0005)   # the same 4 seeds everywhere: paired, tight
# strategy: (test level, trainable ratio, wall s, peak MiB). bitfit has the fewest parameters, freeze_attention
# the shortest time, lora the least memory — all three non-inferior; head_only is cheapest on every count but
# inferior; lora (0.8975) is dominated by bitfit (cheaper, 0.898) on parameters.
DESIGN = {"full": (0.900, 1.0, 60.0, 1000.0), "freeze_attention": (0.899, 0.52, 30.0, 900.0),
          "bitfit": (0.898, 0.001, 50.0, 950.0), "lora(r=8)": (0.8975, 0.013, 40.0, 500.0),
          "head_only": (0.700, 0.0005, 10.0, 300.0)}


def _results(design=DESIGN) -> list[dict]:
    out, i = [], 0
    for j, (name, (level, ratio, wall, mem)) in enumerate(design.items()):
        for seed in range(len(SEED_NOISE)):
            d = SEED_NOISE[(seed + j) % len(SEED_NOISE)]
            out.append(make_result(i, name, seed, test=level + d, val=level + d, ratio=ratio, wall=wall, mem=mem))
            i += 1
    return out


def _summary(cost: str, results=None) -> list[dict]:
    cfg = ReportConfig(cost=cost, bootstrap_resamples=0)
    return summarise(build_groups(results or _results(), "accuracy"), [], cfg, "accuracy")


def test_design_verdicts():
    verdicts = {s["strategy"]: s["verdict"] for s in _summary("params")}
    assert verdicts == {"full": "baseline", "freeze_attention": "non-inferior", "bitfit": "non-inferior",
                        "lora(r=8)": "non-inferior", "head_only": "inferior"}


@pytest.mark.parametrize("cost,expected,numbers", [
    ("params", "bitfit", "0.1% of the parameters, 22,700 trainable"),
    ("time", "freeze_attention", "31.5 s per trial against 61.5 for full"),
    ("memory", "lora(r=8)", "500 MiB peak against 1,000 for full"),
])
def test_recommendation_names_the_cheapest_non_inferior_strategy(cost, expected, numbers):
    summary = _summary(cost)
    sentence = recommendation(summary, 0.01, cost, "accuracy")
    assert sentence.startswith(f"Use {expected}: the cheapest strategy by ") and numbers in sentence
    line = next(s for s in summary if s["strategy"] == expected)
    assert f"test accuracy {line['test_score_mean']:.4f}" in sentence and f"{line['diff_vs_full']:+.4f}" in sentence
    assert f"95% CI {line['diff_ci_low']:+.4f} to {line['diff_ci_high']:+.4f}" in sentence
    assert "paired t-test over 4 seeds" in sentence and sentence.count(".") >= 1 and "head_only" not in sentence


def test_pareto_front_marks_exactly_the_non_dominated_points():
    on = {s["strategy"]: s["pareto"] for s in _summary("params")}
    assert on == {"full": True, "freeze_attention": True, "bitfit": True, "lora(r=8)": False, "head_only": True}
    on = {s["strategy"]: s["pareto"] for s in _summary("memory")}
    assert on == {"full": True, "freeze_attention": True, "bitfit": False, "lora(r=8)": True, "head_only": True}
    pts = [(1, 0.5), (2, 0.7), (2, 0.6), (3, 0.7), (0.5, 0.4), (2, 0.7), (4, 0.9)]
    assert pareto_front(pts) == [True, True, False, False, True, True, True]   # twins both stay; ties dominated


def test_none_non_inferior_says_what_to_run_next():
    design = {"full": (0.900, 1.0, 60.0, 1000.0), "head_only": (0.700, 0.0005, 10.0, 300.0)}
    results = _results(design)
    results += [make_result(100 + s, "top_k(k=2)", s, test=0.893 + d, val=0.893 + d, ratio=0.35)
                for s, d in enumerate((0.0, 0.012, -0.012, 0.006))]
    summary = _summary("params", results)
    line = next(s for s in summary if s["strategy"] == "top_k(k=2)")
    assert line["verdict"] == "inconclusive" and line["seeds_needed"] > 4
    sentence = recommendation(summary, 0.01, "params", "accuracy")
    assert sentence.startswith("No strategy is shown non-inferior to full at a margin of 0.01 accuracy")
    assert f"top_k(k=2) needs {line['seeds_needed']} seeds per side (has 4)" in sentence
    only_worse = recommendation(_summary("params", _results(design)), 0.01, "params", "accuracy")
    assert only_worse == "No strategy is non-inferior to full at a margin of 0.01 accuracy: keep full (head_only inferior)."


def test_keep_full_when_it_is_already_the_cheapest():
    design = {"full": (0.900, 1.0, 20.0, 1000.0), "freeze_attention": (0.899, 0.52, 30.0, 900.0)}
    sentence = recommendation(_summary("time", _results(design)), 0.01, "time", "accuracy")
    assert sentence.startswith("Keep full: it is already the cheapest by wall-clock time")


def test_no_baseline_and_optimistic():
    results = [make_result(i, "bitfit", i) for i in range(2)]
    assert recommendation(_summary("params", results), 0.01, "params", "accuracy").startswith("No recommendation")
    sentence = recommendation(_summary("params"), 0.01, "params", "accuracy", optimistic=True)
    assert sentence.endswith("; selected on test: optimistic.")


def test_same_sentence_in_every_output(tmp_path):
    folder = write_sweep(tmp_path / "rec", _results(), config={"report": {"cost": "memory"}})
    printed: list[str] = []
    report.write_report(folder, console=printed.append, plots=False)
    data = json.loads((folder / "comparison.json").read_text())
    sentence = data["recommendation"]
    assert sentence.startswith("Use lora(r=8):") and data["metadata"]["recommendation"] == sentence
    assert " ".join(printed[0].split()).endswith(" ".join(("Recommendation: " + sentence).split()))
    assert sentence in (folder / "comparison.md").read_text()
    assert sentence in (folder / "report.html").read_text()
    assert report.headline({**data["metadata"], "summary": data["summary"]}) == sentence   # as the W&B side reads it
    rebuilt = {**data["metadata"], "summary": data["summary"]}
    del rebuilt["recommendation"]
    assert report.headline(rebuilt) == sentence
