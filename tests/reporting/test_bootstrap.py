"""The paired bootstrap over test examples x seeds, from predictions.parquet files."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from harness import reporting as report
from harness.reporting.bootstrap import paired_bootstrap
from tests.reporting.synth import make_result, write_predictions, write_sweep

N = 2000


def _flip(labels: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """Predictions that are wrong on a seeded ``rate`` of the examples (binary labels)."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(labels)) < rate
    return np.where(wrong, 1 - labels, labels)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 2, N)


def test_one_seed_per_side_matches_scipys_paired_bootstrap(labels):
    a, b = _flip(labels, 0.10, 1), _flip(labels, 0.12, 2)
    low, high = paired_bootstrap("accuracy", labels, a[None], b[None], paired=True, resamples=4000)
    diff = (a == labels).astype(float) - (b == labels).astype(float)   # per example: one level, scipy can do it
    ref = sps.bootstrap((diff,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(3))
    ci = ref.confidence_interval
    width = ci.high - ci.low
    assert low == pytest.approx(ci.low, abs=0.1 * width) and high == pytest.approx(ci.high, abs=0.1 * width)
    assert low < diff.mean() < high


def test_vectorised_accuracy_equals_the_metric_function(labels):
    a = np.stack([_flip(labels, r, s) for s, r in enumerate((0.1, 0.12, 0.09))])
    b = np.stack([_flip(labels, r, 10 + s) for s, r in enumerate((0.11, 0.1))])
    for paired, bb in ((False, b), (True, a[::-1])):
        fast = paired_bootstrap("accuracy", labels, a, bb, paired, resamples=60, seed=5)
        slow = paired_bootstrap("accuracy", labels, a, bb, paired, resamples=60, seed=5, vectorised=False)
        assert fast == pytest.approx(slow, abs=1e-12)
    again = paired_bootstrap("accuracy", labels, a, b, False, resamples=60, seed=5)
    assert again == paired_bootstrap("accuracy", labels, a, b, False, resamples=60, seed=5)    # seeded


def test_seeds_are_resampled_too(labels):
    """Two candidate seeds far apart (0.6 and 1.0 accuracy) against a steady 0.8: an examples-only bootstrap
    would be narrow around 0; resampling the seeds spreads it over the seed mixture."""
    rng = np.random.default_rng(0)
    bad = np.where(rng.random(N) < 0.4, 1 - labels, labels)
    a = np.stack([bad, labels])
    b = _flip(labels, 0.2, 4)[None]
    low, high = paired_bootstrap("accuracy", labels, a, b, paired=False, resamples=2000)
    assert low < -0.15 and high > 0.15


def test_f1_goes_through_the_metric_function(labels):
    small = labels[:300]
    a, b = _flip(small, 0.1, 1)[None], _flip(small, 0.3, 2)[None]
    low, high = paired_bootstrap("f1", small, a, b, paired=True, resamples=200)
    assert 0.05 < low < high < 0.35


def _sweep(tmp_path, labels, *, skip=(), ids_shift=None):
    results = [make_result(i, "full", seed=i, test=0.9, val=0.9) for i in range(3)]
    results += [make_result(10 + i, "bitfit", seed=i, test=0.88, val=0.88, ratio=0.001) for i in range(3)]
    folder = write_sweep(tmp_path / "boot", results)
    for r in results:
        if r["trial_id"] in skip:
            continue
        rate = 0.10 if r["strategy"] == "full" else 0.12
        ids = np.arange(N) + (1 if r["trial_id"] == ids_shift else 0)
        preds = _flip(labels, rate, r["index"])
        r["test"]["score"] = r["test"]["metrics"]["accuracy"] = float((preds == labels).mean())  # what they say
        write_predictions(folder, r, labels, preds, ids=ids)
    return folder


def test_report_fills_boot_columns_from_predictions(tmp_path, labels):
    folder = _sweep(tmp_path, labels)
    by = {s["strategy"]: s for s in report.build_tables(folder)["summary"]}
    line = by["bitfit"]
    assert line["test_method"] == "paired" and line["note"] == ""
    assert line["boot_ci_low"] < line["diff_vs_full"] < line["boot_ci_high"]
    assert 0.005 < line["boot_ci_high"] - line["boot_ci_low"] < 0.05     # examples x seeds noise of ~2,000 reviews
    assert by["full"]["boot_ci_low"] is None


def test_missing_or_mismatched_predictions_skip_the_bootstrap_cleanly(tmp_path, labels):
    none = report.build_tables(write_sweep(tmp_path / "none", [make_result(i, s, seed=i % 3)
                                                               for i, s in enumerate(["full"] * 3 + ["bitfit"] * 3)]))
    line = {s["strategy"]: s for s in none["summary"]}["bitfit"]
    assert line["boot_ci_low"] is None and line["boot_ci_high"] is None and "bootstrap" not in line["note"]
    part = {s["strategy"]: s for s in report.build_tables(_sweep(tmp_path / "p", labels, skip={"t0011"}))["summary"]}
    assert part["bitfit"]["boot_ci_low"] is None and "bootstrap skipped: predictions missing" in part["bitfit"]["note"]
    shifted = report.build_tables(_sweep(tmp_path / "s", labels, ids_shift="t0010"))
    line = {s["strategy"]: s for s in shifted["summary"]}["bitfit"]
    assert line["boot_ci_low"] is None and "example ids differ" in line["note"]
    off = report.build_tables(_sweep(tmp_path / "o", labels), overrides={"bootstrap_resamples": 0})
    assert {s["strategy"]: s for s in off["summary"]}["bitfit"]["boot_ci_low"] is None
