"""The columns of the comparison tables and what each one means (``COLUMN_DOCS``, copied into
``comparison.md``, ``comparison.json`` and ``report.html``; ``docs/metrics.md`` says the same at length).

``val_*`` columns are the validation split (what the selection reads), ``test_*`` the test split (what is
reported). Scores are in the sweep's selection metric (``metric`` column: accuracy, f1, macro_f1, mcc, pearson
or spearman), as fractions.
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["AXES", "COLUMNS", "EXTRA_COLUMNS", "SUMMARY_COLUMNS", "VERDICT_COLUMNS", "COLUMN_DOCS", "BASELINE",
           "ALPHA", "POWER", "VERDICTS", "COSTS", "verdict_columns", "row_columns", "summary_columns", "describe"]

BASELINE, ALPHA, POWER = "full", 0.05, 0.8
VERDICTS = ("superior", "non-inferior", "inconclusive", "inferior", "baseline")
# report.cost -> (summary column, how it reads in a sentence); lower is cheaper for each
COSTS = {"params": ("trainable_params", "trainable parameters"), "time": ("wall_s", "wall-clock time"),
         "memory": ("peak_mem_mb", "peak memory"), "flops": ("train_tflops", "training compute")}

AXES = ("lr", "batch_size", "scheduler", "grad_clip")
COLUMNS = ("strategy", *AXES, "metric", "n_seeds", "n_ok", "val_score_mean", "val_score_std", "test_score_mean",
           "test_score_std", "test_score_ci95", "test_score_min", "test_score_max", "test_accuracy_mean",
           "oscillation", "loss_roughness", "trainable_params", "total_params", "trainable_ratio", "samples_per_s",
           "tokens_per_s", "peak_mem_mb", "wall_s", "steps_to_80", "steps_to_90",
           "trainable_ratio_mean", "train_tflops")   # the cost a schedule really paid (appended: CSV readers keep their columns)
EXTRA_COLUMNS = ("n_diverged", "n_failed", "n_stopped", "n_running", "max_step_reached", "final_step")
# the per-strategy summary: the verdict and the numbers it rests on first, then the configuration and the rest
SUMMARY_COLUMNS = ("strategy", "verdict", "metric", "test_score_mean", "diff_vs_full", "diff_ci_low", "diff_ci_high",
                   "seeds_needed", "trainable_ratio", "pareto", "note", "test_method", "n_ok", "n_seeds",
                   "p_value", "p_adj", "ni_p_value", "ni_p_adj", "boot_ci_low", "boot_ci_high",
                   "test_accuracy_mean", "test_score_std", "test_score_ci95", "val_score_mean", *AXES,
                   "trainable_params", "trainable_ratio_mean", "samples_per_s", "train_tflops", "wall_s", "peak_mem_mb",
                   "oscillation",
                   "trials", "trials_diverged", "trials_failed")
# the short table people read first (report.html, comparison.md): fits a laptop screen; diff_ci95 is
# diff_ci_low..diff_ci_high in one cell
VERDICT_COLUMNS = ("strategy", "verdict", "test_score_mean", "diff_vs_full", "diff_ci95", "n_ok", "seeds_needed",
                   "trainable_ratio", "note")


def verdict_columns(cost: str) -> list[str]:
    """The short table, with the column of the report's cost and the Pareto flag before the note."""
    return [*VERDICT_COLUMNS[:-1], COSTS[cost][0], "pareto", VERDICT_COLUMNS[-1]]


def row_columns(varied: Sequence[str] = ()) -> list[str]:
    return [*COLUMNS, *EXTRA_COLUMNS, *varied]


def summary_columns(varied: Sequence[str] = ()) -> list[str]:
    i = SUMMARY_COLUMNS.index("grad_clip") + 1
    return [*SUMMARY_COLUMNS[:i], *varied, *SUMMARY_COLUMNS[i:]]


_SEL = "over ok seeds"
COLUMN_DOCS = {
    "strategy": "freeze strategy label (name and parameters, e.g. top_k(k=4)); `full` is the baseline",
    "lr": "peak learning rate", "batch_size": "training batch size (per optimizer step, before grad_accum)",
    "scheduler": "learning-rate schedule (transformers.get_scheduler name: linear, cosine, constant (no warm-up), "
                 "constant_with_warmup, ...)",
    "grad_clip": "max gradient norm; empty / off = no clipping",
    "metric": "the selection metric of the sweep (train.metric): accuracy, f1, macro_f1, mcc, pearson or spearman; "
              "every val_score / test_score / diff column is in its units",
    "n_seeds": "trials in the group (one per seed) = n_ok + n_diverged + n_failed + n_stopped + n_running",
    "n_ok": "trials that finished all steps and have a test score",
    "val_score_mean": f"mean validation score (val.score, whole validation set after the last step, or at "
                      f"train.load_best's point) {_SEL}; the best configuration of each strategy is the one with "
                      "the highest val_score_mean",
    "val_score_std": f"sample std (ddof=1) of val.score {_SEL}; empty with fewer than 2",
    "test_score_mean": f"mean test score (test.score, the test split evaluated once after the last step, or at "
                       f"train.load_best's point) {_SEL}",
    "test_score_std": f"sample std (ddof=1) of test.score {_SEL}; empty with fewer than 2",
    "test_score_ci95": "95% CI half-width of test_score_mean: t(0.975, n-1) * test_score_std / sqrt(n); empty with "
                       "fewer than 2",
    "test_score_min": f"lowest test score {_SEL}", "test_score_max": f"highest test score {_SEL}",
    "test_accuracy_mean": f"mean test accuracy {_SEL} (classification; recorded whatever the metric)",
    "oscillation": "mean |difference| between consecutive validation-curve evaluations (history val_score) at steps "
                   "> max_steps/2, averaged over ok seeds",
    "loss_roughness": "the same on the per-evaluation train_loss (mean training loss since the previous evaluation)",
    "trainable_params": "parameters the strategy trains", "total_params": "all parameters of the model",
    "trainable_ratio": "trainable_params / total_params (at step 0 for a schedule: its trainable set changes)",
    "trainable_ratio_mean": f"trainable/total averaged over the training steps (cost.trainable_ratio_mean), mean {_SEL}; "
                            "equals trainable_ratio for a static strategy",
    "train_tflops": "model TFLOPs the training steps actually spent (forward, and backward where autograd ran: a "
                    f"frozen bottom costs its forward only; harness/train/cost.py), mean {_SEL}",
    "samples_per_s": f"training samples per second of training time, mean {_SEL}",
    "tokens_per_s": f"non-padding training tokens per second, mean {_SEL}",
    "peak_mem_mb": f"peak memory (GPU allocated, or process max RSS on CPU) in MiB, mean {_SEL}",
    "wall_s": f"wall-clock seconds per trial (set-up, training, evaluation), mean {_SEL}",
    "steps_to_80": "median over ok seeds of the first evaluation step with validation-curve score >= 0.80; empty "
                   "when fewer than half of the ok seeds reached it",
    "steps_to_90": "as steps_to_80 with 0.90",
    "n_diverged": "trials stopped by a NaN/inf or exploding training loss",
    "n_failed": "trials that raised an error (or finished without a test score)",
    "n_stopped": "trials early-stopped by the scheduler (ASHA)", "n_running": "trials not finished yet",
    "max_step_reached": "highest step any trial of the group reached (shows how far early-stopped trials got)",
    "final_step": "last training step of the ok trials (max_steps)",
    "verdict": "non-inferiority against full at report.margin, from the one-sided 95% interval of diff_vs_full: "
               "superior (lower bound > 0), non-inferior (lower bound > -margin), inferior (upper bound < -margin), "
               "else inconclusive; baseline = full",
    "diff_vs_full": "test_score_mean minus the test_score_mean of full's selected configuration",
    "diff_ci_low": "lower end of the two-sided 95% confidence interval of diff_vs_full (t interval over seeds, "
                   "test_method)",
    "diff_ci_high": "upper end of the same interval",
    "diff_ci95": "diff_ci_low to diff_ci_high",
    "seeds_needed": "seeds per side (this strategy and full) at which the one-sided test on the side of -margin "
                    "where diff_vs_full lies would decide with 80% power at the observed spread (noncentral t); "
                    "compare with n_ok: more seeds than that are needed to leave 'inconclusive'",
    "pareto": "on the Pareto front of test_score_mean against the report's cost (no other strategy is both at "
              "least as good and at most as costly, and better on one)",
    "note": "why a verdict is weak or missing (too few seeds, no ok trial, no baseline, zero variance, not "
            "significant after the BH adjustment, bootstrap skipped)",
    "test_method": "how the seeds were compared: paired (same seeds and batch size on both sides: same data order "
                   "and head init; scipy ttest_rel) or welch (scipy ttest_ind, equal_var=False)",
    "p_value": "two-sided p-value of the difference to full (test_method)",
    "p_adj": "p_value adjusted across the strategies of the sweep (Benjamini-Hochberg, scipy "
             "false_discovery_control)",
    "ni_p_value": "one-sided p-value of the non-inferiority test (H0: diff_vs_full <= -margin)",
    "ni_p_adj": "ni_p_value adjusted across the strategies (Benjamini-Hochberg)",
    "boot_ci_low": "lower end of the 95% paired-bootstrap interval of diff_vs_full over test examples x seeds "
                   "(percentile, predictions.parquet); empty without predictions",
    "boot_ci_high": "upper end of the same bootstrap interval",
    "trials": "all trials of the strategy (every configuration and seed)",
    "trials_diverged": "diverged trials of the strategy, all configurations",
    "trials_failed": "failed trials of the strategy, all configurations",
}


def describe(columns: Sequence[str]) -> dict[str, str]:
    """Definitions of ``columns`` in order (a varied hyper-parameter gets a generic line)."""
    return {c: COLUMN_DOCS.get(c, f"hyper-parameter `{c}` (varies in this sweep)") for c in dict.fromkeys(columns)}
