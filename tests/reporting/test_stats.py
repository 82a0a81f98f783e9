"""harness.reporting.stats on hand-made trials with answers worked out by hand."""
from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from harness.reporting import stats
from harness.results import upgrade
T_975_2 = 4.302652729911275   # t quantile 0.975 with 2 degrees of freedom
T_975_1 = 12.706204736174698  # ... with 1 degree of freedom


def trial(seed: int = 0, strategy: str = "full", status: str = "ok", acc: float | None = 0.9,
          curve: list[float] | None = None, losses: list | None = None, every: int = 10, max_steps: int = 100,
          **hp) -> dict:
    """A minimal result.json: ``curve`` / ``losses`` are the history values at steps 0, every, 2*every, ..."""
    curve = curve if curve is not None else [0.5, acc if acc is not None else 0.5]
    steps = [i * every for i in range(len(curve))] if len(curve) > 2 else [0, max_steps]
    losses = losses if losses is not None else [None] * len(curve)
    return upgrade({"schema": "freezebench.trial/1", "trial_id": f"{strategy}-{seed}-{hp}", "status": status, "reason": None if status == "ok" else "boom",
            "strategy": strategy,
            "hparams": {"lr": 5e-5, "batch_size": 16, "scheduler": "linear", "grad_clip": 1.0, "seed": seed,
                        "weight_decay": 0.01, "max_steps": max_steps, **hp},
            "params": {"trainable": 50, "total": 100, "ratio": 0.5},
            "history": [{"step": s, "eval_accuracy": a, "train_loss": l} for s, a, l in zip(steps, curve, losses)],
            "final": {"step": max_steps, "eval_accuracy": acc} if acc is not None else None,
            "throughput": {"samples_per_s": 10.0 + seed, "tokens_per_s": 1000.0},
            "timing": {"wall_s": 60.0}, "memory": {"peak_mem_mb": 500.0}})


def only_row(results: list[dict]) -> dict:
    rows = stats.comparison_rows(results)
    assert len(rows) == 1
    return rows[0]


def test_num_reads_stored_values():
    assert stats.num("nan") is None and stats.num("inf") is None and stats.num(None) is None
    assert stats.num("0.5") == 0.5 and stats.num(3) == 3.0 and stats.num(True) is None


def test_mean_std_ci_over_seeds():
    row = only_row([trial(0, acc=0.80), trial(1, acc=0.90), trial(2, acc=1.00)])
    assert (row["n_seeds"], row["n_ok"]) == (3, 3)
    assert row["acc_mean"] == pytest.approx(0.9) and row["acc_std"] == pytest.approx(0.1)  # ddof=1
    assert row["acc_ci95"] == pytest.approx(T_975_2 * 0.1 / math.sqrt(3))
    assert (row["acc_min"], row["acc_max"]) == (0.8, 1.0)
    assert row["samples_per_s"] == pytest.approx(11.0) and row["wall_s"] == 60.0
    assert (row["trainable_params"], row["total_params"], row["trainable_ratio"]) == (50, 100, 0.5)
    two = stats.seed_stats([0.7, 0.9])
    assert two["acc_ci95"] == pytest.approx(T_975_1 * math.sqrt(0.02) / math.sqrt(2))


def test_single_seed_has_no_std_or_ci():
    row = only_row([trial(0, acc=0.85)])
    assert row["acc_mean"] == 0.85 and row["acc_std"] is None and row["acc_ci95"] is None


def test_oscillation_uses_second_half_only():
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


def test_steps_to_thresholds():
    c1 = [0.5, 0.7, 0.81, 0.85, 0.9, 0.92, 0.9, 0.9, 0.9, 0.9, 0.9]  # 80 at step 20, 90 at step 40
    c2 = [0.5, 0.6, 0.7, 0.75, 0.82, 0.85, 0.86, 0.86, 0.86, 0.86, 0.86]  # 80 at step 40, 90 never
    c3 = [0.5] * 11                                                       # never
    assert stats.steps_to([{"step": s * 10, "val_score": a} for s, a in enumerate(c1)], 0.8) == 20
    row = only_row([trial(0, curve=c1), trial(1, curve=c2), trial(2, curve=c3)])
    assert row["steps_to_80"] == 30.0  # 2 of 3 reached: median of 20 and 40
    assert row["steps_to_90"] is None  # 1 of 3 reached: fewer than half
    row = only_row([trial(0, curve=c1), trial(1, curve=c2)])
    assert row["steps_to_90"] == 40.0  # exactly half reached: reported
    assert stats.median_if_half([]) is None


def test_diverged_failed_stopped_running_are_counted_not_dropped():
    failed = trial(3, status="failed", acc=None)
    failed.update(params=None, history=[], final=None, throughput=None, timing=None, memory=None)
    stopped = trial(4, status="stopped", acc=None, curve=[0.5, 0.6, 0.7, 0.75])
    running = trial(5, status="running", acc=None, curve=[0.5, 0.6, 0.65])
    diverged = trial(2, status="diverged", acc=0.5)
    row = only_row([trial(0, acc=0.9), trial(1, acc=0.8), diverged, failed, stopped, running])
    assert (row["n_seeds"], row["n_ok"], row["n_diverged"], row["n_failed"], row["n_stopped"], row["n_running"]) \
        == (6, 2, 1, 1, 1, 1)
    assert row["acc_mean"] == pytest.approx(0.85)  # the diverged trial's final accuracy is not averaged in
    assert row["max_step_reached"] == 100 and row["final_step"] == 100
    odd = trial(0, acc="nan")  # status ok but no usable final accuracy: counted as failed
    assert only_row([odd])["n_failed"] == 1 and only_row([odd])["n_ok"] == 0


def test_placeholder_without_hparams_joins_its_group():
    # tune_runner writes a bare "failed" result (no hparams, no params) for a trial that never started
    ok = trial(0)
    placeholder = {"trial_id": "x", "status": "failed", "reason": "never started", "strategy": "full", "history": [],
                   "config": {"train": {**ok["hparams"], "seed": 1, "eval_every": 10}}}
    stopped = {**trial(2, status="stopped", acc=None, curve=[0.5, 0.6, 0.7]), "stopped_at_step": 20}
    row = only_row([ok, placeholder, stopped])
    assert (row["n_seeds"], row["n_ok"], row["n_failed"], row["n_stopped"]) == (3, 1, 1, 1)
    assert stats.hparams_of({"status": "failed"}) == {}


def test_group_without_ok_trial_still_gets_a_row():
    stopped = trial(0, status="stopped", acc=None, curve=[0.5, 0.6, 0.7, 0.75])
    failed = {**trial(1, status="failed", acc=None), "history": [], "params": None}
    row = only_row([stopped, failed])
    assert row["n_ok"] == 0 and row["acc_mean"] is None and row["acc_std"] is None and row["oscillation"] is None
    assert row["max_step_reached"] == 30 and row["final_step"] is None and row["trainable_ratio"] == 0.5


def test_grouping_by_everything_but_seed():
    results = [trial(0), trial(1), trial(0, lr=1e-4), trial(0, weight_decay=0.1), trial(0, strategy="bitfit")]
    rows = stats.comparison_rows(results)
    assert [(r["strategy"], r["lr"], r["n_seeds"]) for r in rows] == \
        [("full", 5e-5, 2), ("full", 1e-4, 1), ("full", 5e-5, 1), ("bitfit", 5e-5, 1)]
    assert stats.varied_hparams(results) == ["weight_decay"]
    assert list(rows[0]) == stats.row_columns(["weight_decay"]) and rows[2]["weight_decay"] == 0.1
    assert list(rows[0])[:23] == list(stats.COLUMNS)


def _summary(full: list[float], cand: list[float]) -> dict:
    results = [trial(i, acc=a) for i, a in enumerate(full)] + \
              [trial(i, strategy="top_k(k=2)", acc=a) for i, a in enumerate(cand)]
    return {s["strategy"]: s for s in stats.strategy_summary(results)}


def test_welch_verdicts():
    full = [0.80, 0.81, 0.79]
    better = _summary(full, [0.90, 0.91, 0.89])["top_k(k=2)"]
    assert better["verdict"] == "better" and better["diff_vs_full"] == pytest.approx(0.10)
    assert better["p_value"] == pytest.approx(sps.ttest_ind([0.90, 0.91, 0.89], full, equal_var=False).pvalue)
    assert better["p_value"] < 0.05
    assert _summary(full, [0.70, 0.71, 0.69])["top_k(k=2)"]["verdict"] == "worse"
    same = _summary([0.85, 0.86, 0.84], [0.851, 0.859, 0.845])["top_k(k=2)"]
    assert same["verdict"] == "indistinguishable" and same["p_value"] > 0.05 and same["note"] == ""
    few = _summary(full, [0.99])["top_k(k=2)"]
    assert (few["verdict"], few["note"], few["p_value"]) == ("indistinguishable", "too few seeds", None)
    assert few["diff_vs_full"] == pytest.approx(0.19)
    assert _summary([0.8], [0.7, 0.71])["top_k(k=2)"]["note"] == "too few seeds"
    assert stats.welch([0.9, 0.9], [0.9, 0.9])["note"] == "zero variance, equal means"
    assert stats.welch([0.9, 0.9], [0.8, 0.8])["verdict"] == "better"  # identical seeds on both sides
    base = _summary(full, [0.9, 0.9])["full"]
    assert (base["verdict"], base["diff_vs_full"], base["p_value"]) == ("baseline", 0.0, None)


def test_summary_picks_best_config_and_sorts():
    results = [trial(i, acc=a) for i, a in enumerate([0.80, 0.82])]
    results += [trial(i, strategy="bitfit", acc=a, lr=1e-3) for i, a in enumerate([0.70, 0.72])]
    results += [trial(i, strategy="bitfit", acc=a, lr=1e-2) for i, a in enumerate([0.85, 0.87])]
    results += [trial(0, strategy="lora(r=8)", status="diverged", acc=0.5)]
    summary = stats.strategy_summary(results)
    assert [s["strategy"] for s in summary] == ["bitfit", "full", "lora(r=8)"]
    assert summary[0]["lr"] == 1e-2 and summary[0]["acc_mean"] == pytest.approx(0.86) and summary[0]["trials"] == 4
    lora = summary[-1]
    assert (lora["verdict"], lora["note"], lora["acc_mean"], lora["trials_diverged"], lora["n_seeds"]) == \
        (None, "no ok trial", None, 1, 1)
    assert list(summary[0]) == stats.summary_columns([])


def test_no_baseline_in_sweep():
    summary = stats.strategy_summary([trial(0, strategy="bitfit"), trial(1, strategy="bitfit")])
    assert summary[0]["verdict"] is None and summary[0]["note"] == "no 'full' baseline in sweep"
