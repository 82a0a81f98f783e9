"""harness.reporting.stats (one row per configuration) and the selection on validation, on hand-made
freezebench.trial/2 results with answers worked out by hand."""
from __future__ import annotations

import math

import pytest

from harness.config.schema import ReportConfig
from harness.reporting import fields, stats
from harness.reporting.columns import COLUMNS, row_columns, summary_columns
from harness.reporting.stats import build_groups
from harness.reporting.summary import select, summarise

T_975_2 = 4.302652729911275   # t quantile 0.975 with 2 degrees of freedom
T_975_1 = 12.706204736174698  # ... with 1 degree of freedom


def trial(seed: int = 0, strategy: str = "full", status: str = "ok", score: float | None = 0.9,
          val: float | None = None, curve: list[float] | None = None, losses: list | None = None, every: int = 10,
          max_steps: int = 100, **hp) -> dict:
    """A minimal result: ``curve`` / ``losses`` are the history values at steps 0, every, 2*every, ...;
    ``score`` the test score, ``val`` the validation score (default: the test score)."""
    curve = curve if curve is not None else [0.5, score if score is not None else 0.5]
    steps = [i * every for i in range(len(curve))] if len(curve) > 2 else [0, max_steps]
    losses = losses if losses is not None else [None] * len(curve)
    done = status == "ok" and score is not None
    val = score if val is None else val
    return {"schema": "freezebench.trial/2", "trial_id": f"{strategy}-{seed}-{hp}", "status": status,
            "reason": None if status == "ok" else "boom", "strategy": strategy,
            "metric": {"name": "accuracy", "mode": "max", "task": "classification"}, "selected_on": "validation",
            "hparams": {"lr": 5e-5, "batch_size": 16, "scheduler": "linear", "grad_clip": 1.0, "seed": seed,
                        "weight_decay": 0.01, "max_steps": max_steps, **hp},
            "params": {"trainable": 50, "total": 100, "ratio": 0.5},
            "history": [{"step": s, "val_score": a, "train_loss": l} for s, a, l in zip(steps, curve, losses)],
            "val": {"split": "val", "step": max_steps, "score": val, "metrics": {"accuracy": val}} if done else None,
            "test": {"split": "test", "step": max_steps, "score": score, "metrics": {"accuracy": score}}
            if done else None,
            "throughput": {"samples_per_s": 10.0 + seed, "tokens_per_s": 1000.0},
            "timing": {"wall_s": 60.0}, "memory": {"peak_mem_mb": 500.0}}


def only_row(results: list[dict]) -> dict:
    groups = build_groups(results, "accuracy")
    assert len(groups) == 1
    return groups[0].row


def summary_of(results: list[dict]) -> list[dict]:
    return summarise(build_groups(results, "accuracy"), stats.varied_hparams(results),
                     ReportConfig(bootstrap_resamples=0), "accuracy")


def test_num_reads_stored_values():
    assert fields.num("nan") is None and fields.num("inf") is None and fields.num(None) is None
    assert fields.num("0.5") == 0.5 and fields.num(3) == 3.0 and fields.num(True) is None


def test_mean_std_ci_over_seeds_on_test_and_val():
    row = only_row([trial(0, score=0.80, val=0.70), trial(1, score=0.90, val=0.72), trial(2, score=1.00, val=0.74)])
    assert (row["n_seeds"], row["n_ok"], row["metric"]) == (3, 3, "accuracy")
    assert row["test_score_mean"] == pytest.approx(0.9) and row["test_score_std"] == pytest.approx(0.1)  # ddof=1
    assert row["test_score_ci95"] == pytest.approx(T_975_2 * 0.1 / math.sqrt(3))
    assert (row["test_score_min"], row["test_score_max"]) == (0.8, 1.0)
    assert row["val_score_mean"] == pytest.approx(0.72) and row["val_score_std"] == pytest.approx(0.02)
    assert row["test_accuracy_mean"] == pytest.approx(0.9)
    assert row["samples_per_s"] == pytest.approx(11.0) and row["wall_s"] == 60.0
    assert (row["trainable_params"], row["total_params"], row["trainable_ratio"]) == (50, 100, 0.5)
    two = stats.seed_stats([0.7, 0.9])
    assert two["test_score_ci95"] == pytest.approx(T_975_1 * math.sqrt(0.02) / math.sqrt(2))


def test_single_seed_has_no_std_or_ci():
    row = only_row([trial(0, score=0.85)])
    assert row["test_score_mean"] == 0.85 and row["test_score_std"] is None and row["test_score_ci95"] is None


def test_oscillation_uses_the_second_half_of_the_validation_curve():
    # steps 0..100; second half = steps 60..100 (50 is not > 100/2). First half is wild and must not count.
    curve = [0.5, 0.9, 0.1, 0.9, 0.1, 0.9, 0.80, 0.90, 0.80, 0.90, 0.85]
    row = only_row([trial(0, curve=curve)])
    assert row["oscillation"] == pytest.approx((0.1 + 0.1 + 0.1 + 0.05) / 4)
    flat = [0.5, 0.9, 0.1, 0.9, 0.1, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8]
    row = only_row([trial(0, curve=curve), trial(1, curve=flat)])
    assert row["oscillation"] == pytest.approx(0.0875 / 2)  # averaged over seeds


def test_loss_roughness_on_train_loss_second_half():
    losses = [None, 9.0, 0.0, 9.0, 0.0, 9.0, 0.5, 0.3, 0.4, "nan", 0.2]  # a non-finite point is skipped
    row = only_row([trial(0, curve=[0.5] * 11, losses=losses)])
    assert row["loss_roughness"] == pytest.approx((0.2 + 0.1 + 0.2) / 3)
    assert stats.second_half_mad([(60, 1.0)], 100) is None  # one point: no difference


def test_steps_to_thresholds_on_the_validation_curve():
    c1 = [0.5, 0.7, 0.81, 0.85, 0.9, 0.92, 0.9, 0.9, 0.9, 0.9, 0.9]  # 80 at step 20, 90 at step 40
    c2 = [0.5, 0.6, 0.7, 0.75, 0.82, 0.85, 0.86, 0.86, 0.86, 0.86, 0.86]  # 80 at step 40, 90 never
    c3 = [0.5] * 11                                                       # never
    assert stats.steps_to([(s * 10, a) for s, a in enumerate(c1)], 0.8) == 20
    row = only_row([trial(0, curve=c1), trial(1, curve=c2), trial(2, curve=c3)])
    assert row["steps_to_80"] == 30.0  # 2 of 3 reached: median of 20 and 40
    assert row["steps_to_90"] is None  # 1 of 3 reached: fewer than half
    row = only_row([trial(0, curve=c1), trial(1, curve=c2)])
    assert row["steps_to_90"] == 40.0  # exactly half reached: reported
    assert stats.median_if_half([]) is None


def test_diverged_failed_stopped_running_are_counted_not_dropped():
    failed = trial(3, status="failed", score=None)
    failed.update(params=None, history=[], throughput=None, timing=None, memory=None)
    stopped = trial(4, status="stopped", score=None, curve=[0.5, 0.6, 0.7, 0.75])
    running = trial(5, status="running", score=None, curve=[0.5, 0.6, 0.65])
    diverged = trial(2, status="diverged", score=0.5)
    row = only_row([trial(0, score=0.9), trial(1, score=0.8), diverged, failed, stopped, running])
    assert (row["n_seeds"], row["n_ok"], row["n_diverged"], row["n_failed"], row["n_stopped"], row["n_running"]) \
        == (6, 2, 1, 1, 1, 1)
    assert row["test_score_mean"] == pytest.approx(0.85)  # the diverged trial's score is not averaged in
    assert row["max_step_reached"] == 100 and row["final_step"] == 100
    odd = trial(0, score=0.9)
    odd["test"]["score"] = "nan"   # status ok but no usable test score: counted as failed
    assert only_row([odd])["n_failed"] == 1 and only_row([odd])["n_ok"] == 0


def test_final_step_is_the_last_step_trained_even_when_load_best_restored_an_earlier_one():
    seeds = [trial(0, curve=[0.5, 0.7, 0.6, 0.55], max_steps=30), trial(1, curve=[0.5, 0.6, 0.65, 0.6], max_steps=30)]
    for r, step in zip(seeds, (10, 20)):                    # train.load_best went back to steps 10 and 20 of 30
        r["test"]["step"] = r["val"]["step"] = step
        r["loaded_best"] = {"step": step, "score": r["history"][step // 10]["val_score"]}
    assert only_row(seeds)["final_step"] == 30


def test_placeholder_without_hparams_joins_its_group():
    # the Tune adapter writes a bare "failed" result (no hparams, no params) for a trial that never started
    ok = trial(0)
    placeholder = {"trial_id": "x", "status": "failed", "reason": "never started", "strategy": "full", "history": [],
                   "config": {"train": {**ok["hparams"], "seed": 1, "eval_every": 10}}}
    stopped = {**trial(2, status="stopped", score=None, curve=[0.5, 0.6, 0.7]), "stopped_at_step": 20}
    row = only_row([ok, placeholder, stopped])
    assert (row["n_seeds"], row["n_ok"], row["n_failed"], row["n_stopped"]) == (3, 1, 1, 1)
    assert fields.hparams_of({"status": "failed"}) == {}


def test_group_without_ok_trial_still_gets_a_row():
    stopped = trial(0, status="stopped", score=None, curve=[0.5, 0.6, 0.7, 0.75])
    failed = {**trial(1, status="failed", score=None), "history": [], "params": None}
    row = only_row([stopped, failed])
    assert row["n_ok"] == 0 and row["test_score_mean"] is None and row["val_score_mean"] is None
    assert row["oscillation"] is None and row["max_step_reached"] == 30 and row["final_step"] is None
    assert row["trainable_ratio"] == 0.5


def test_grouping_by_everything_but_seed():
    results = [trial(0), trial(1), trial(0, lr=1e-4), trial(0, weight_decay=0.1), trial(0, strategy="bitfit")]
    rows = [g.row for g in build_groups(results, "accuracy")]
    assert [(r["strategy"], r["lr"], r["n_seeds"]) for r in rows] == \
        [("full", 5e-5, 2), ("full", 1e-4, 1), ("full", 5e-5, 1), ("bitfit", 5e-5, 1)]
    assert stats.varied_hparams(results) == ["weight_decay"]
    assert list(rows[0]) == row_columns(["weight_decay"]) and rows[2]["weight_decay"] == 0.1
    assert list(rows[0])[:len(COLUMNS)] == list(COLUMNS)


def test_selection_reads_validation_and_reports_test():
    """top_k's lr 1e-4 config wins on validation (0.92) but is worse on test (0.85) than its lr 5e-5 config
    (val 0.90, test 0.91): the summary reports the selected config with its test number."""
    results = [trial(i, score=0.88) for i in range(3)]
    results += [trial(i, strategy="top_k(k=2)", score=0.85 + d, val=0.92 + d, lr=1e-4)
                for i, d in enumerate((0.0, 0.004, -0.004))]
    results += [trial(i, strategy="top_k(k=2)", score=0.91 + d, val=0.90 + d) for i, d in enumerate((0, .002, -.002))]
    line = {s["strategy"]: s for s in summary_of(results)}["top_k(k=2)"]
    assert line["lr"] == 1e-4 and line["val_score_mean"] == pytest.approx(0.92)
    assert line["test_score_mean"] == pytest.approx(0.85) and line["diff_vs_full"] == pytest.approx(-0.03)
    assert line["verdict"] == "inferior"


def test_selection_ties_prefer_more_ok_seeds_then_sweep_order():
    a = [trial(i, strategy="bitfit", score=0.8, val=0.9, lr=1e-3) for i in range(2)]
    b = [trial(i, strategy="bitfit", score=0.7, val=0.9, lr=1e-2) for i in range(3)]
    c = [trial(i, strategy="bitfit", score=0.6, val=0.9, lr=1e-1) for i in range(3)]
    best = select(build_groups([*a, *b, *c], "accuracy"))["bitfit"]
    assert best.row["lr"] == 1e-2           # 3 ok seeds beat 2; of the two with 3, the first in sweep order


def test_summary_sorts_by_test_score_and_keeps_strategies_without_ok_trials():
    results = [trial(i, score=a) for i, a in enumerate([0.80, 0.82])]
    results += [trial(i, strategy="bitfit", score=a, lr=1e-3) for i, a in enumerate([0.70, 0.72])]
    results += [trial(i, strategy="bitfit", score=a, lr=1e-2) for i, a in enumerate([0.85, 0.87])]
    results += [trial(0, strategy="lora(r=8)", status="diverged", score=0.5)]
    summary = summary_of(results)
    assert [s["strategy"] for s in summary] == ["bitfit", "full", "lora(r=8)"]
    assert summary[0]["lr"] == 1e-2 and summary[0]["test_score_mean"] == pytest.approx(0.86)
    assert summary[0]["trials"] == 4
    lora = summary[-1]
    assert (lora["verdict"], lora["note"], lora["test_score_mean"], lora["trials_diverged"], lora["n_seeds"]) == \
        (None, "no ok trial", None, 1, 1)
    assert list(summary[0]) == summary_columns([])
    base = summary[1]
    assert (base["verdict"], base["diff_vs_full"], base["p_value"]) == ("baseline", 0.0, None)


def test_no_baseline_in_sweep():
    summary = summary_of([trial(0, strategy="bitfit"), trial(1, strategy="bitfit")])
    assert summary[0]["verdict"] is None and summary[0]["note"] == "no 'full' baseline in sweep"


def test_no_validation_set_selects_on_test():
    results = [trial(i, score=0.8 + i / 100) for i in range(2)]
    for r in results:
        r["val"], r["selected_on"] = None, "test"
    assert all(fields.selected_on_test(r) for r in results)
    assert only_row(results)["val_score_mean"] is None
    assert build_groups(results, "accuracy")[0].selection == pytest.approx(0.805)
