"""Statistics over seeds: one row per configuration, one verdict per freeze strategy against ``full``.

Pure functions over the ``result.json`` dicts of a sweep (see ``docs/metrics.md`` for every definition).
Trials that differ only by seed form a *group*; a group gets one row of :data:`COLUMNS` + :data:`EXTRA_COLUMNS`
(+ the hyper-parameters that vary in the sweep). No trial is silently dropped: diverged, failed, stopped and
running trials are counted in their own columns and a group with no ``ok`` trial still gets a row.
Missing values are ``None`` (never NaN), so rows serialise to strict JSON and to empty CSV cells.
"""
from __future__ import annotations

import json
import math
import warnings
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import stats as sps

from harness.results import HPARAM_KEYS, STATUSES

__all__ = ["COLUMNS", "EXTRA_COLUMNS", "SUMMARY_COLUMNS", "COLUMN_DOCS", "STATUSES", "BASELINE", "ALPHA",
           "HPARAM_KEYS", "num", "series", "second_half_mad", "roughness", "steps_to", "last_step", "seed_stats",
           "median_if_half", "welch", "hparams_of", "group_key", "group_results", "varied_hparams", "row_columns",
           "summary_columns", "comparison_rows", "best_configs", "strategy_summary"]

AXES = ("lr", "batch_size", "scheduler", "grad_clip")
COLUMNS = ("strategy", *AXES, "n_seeds", "n_ok", "acc_mean", "acc_std", "acc_ci95", "acc_min", "acc_max",
           "oscillation", "loss_roughness", "trainable_params", "total_params", "trainable_ratio",
           "samples_per_s", "tokens_per_s", "peak_mem_mb", "wall_s", "steps_to_80", "steps_to_90")
EXTRA_COLUMNS = ("n_diverged", "n_failed", "n_stopped", "n_running", "max_step_reached", "final_step")
SUMMARY_COLUMNS = ("strategy", *AXES, "n_seeds", "n_ok", "acc_mean", "acc_std", "acc_ci95", "trainable_ratio",
                   "oscillation", "samples_per_s", "diff_vs_full", "p_value", "verdict", "note",
                   "trials", "trials_diverged", "trials_failed")
BASELINE, ALPHA = "full", 0.05


def num(value: Any) -> float | None:
    """A finite float from a stored value (``"nan"`` strings, ints, None); None when missing or non-finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _get(result: dict, *path: str) -> Any:
    for key in path:
        result = result.get(key) if isinstance(result, dict) else None
    return result


def series(history: Any, field: str) -> list[tuple[int, float]]:
    """``(step, value)`` pairs of one history field, sorted by step; rows with a missing/non-finite value skipped."""
    pts = [(int(s), v) for row in (history or []) if isinstance(row, dict)
           for s, v in [(num(row.get("step")), num(row.get(field)))] if s is not None and v is not None]
    return sorted(pts, key=lambda p: p[0])


def second_half_mad(points: Sequence[tuple[int, float]], max_step: float) -> float | None:
    """Mean |difference| of consecutive values at steps > max_step/2; None with fewer than two such points."""
    vals = [v for s, v in points if s > max_step / 2]
    return float(np.mean(np.abs(np.diff(vals)))) if len(vals) >= 2 else None


def steps_to(history: Any, threshold: float) -> int | None:
    """First evaluation step whose eval_accuracy >= threshold; None if never reached."""
    return next((s for s, v in series(history, "val_score") if v >= threshold), None)


def seed_stats(values: Sequence[float]) -> dict[str, float | None]:
    """mean, sample std (ddof=1), t-based 95% half-width, min, max; std/ci95 None with fewer than 2 values."""
    n = len(values)
    if n == 0:
        return dict.fromkeys(("acc_mean", "acc_std", "acc_ci95", "acc_min", "acc_max"))
    a = np.asarray(values, dtype=float)
    std = float(a.std(ddof=1)) if n >= 2 else None
    ci = float(sps.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if std is not None else None
    return {"acc_mean": float(a.mean()), "acc_std": std, "acc_ci95": ci, "acc_min": float(a.min()),
            "acc_max": float(a.max())}


def median_if_half(values: Sequence[float | None]) -> float | None:
    """Median of the non-None values; None when fewer than half of all values are non-None (or none given)."""
    got = [v for v in values if v is not None]
    return float(np.median(got)) if got and 2 * len(got) >= len(values) else None


def _mean(values: Iterable[Any]) -> float | None:
    got = [x for x in map(num, values) if x is not None]
    return float(np.mean(got)) if got else None


def welch(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> dict[str, Any]:
    """Compare seeds ``a`` (candidate) with ``b`` (baseline): diff of means, Welch p-value, verdict, note."""
    if not a or not b:
        return {"diff_vs_full": None, "p_value": None, "verdict": None,
                "note": "no ok trial" if not a else "baseline has no ok trial"}
    out = {"diff_vs_full": float(np.mean(a) - np.mean(b)), "p_value": None, "verdict": "indistinguishable", "note": ""}
    if len(a) < 2 or len(b) < 2:
        return {**out, "note": "too few seeds"}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    if not math.isfinite(p):
        return {**out, "note": "zero variance, equal means"}
    note = "zero variance" if np.std(a) == 0 and np.std(b) == 0 else ""
    verdict = ("better" if out["diff_vs_full"] > 0 else "worse") if p < alpha else "indistinguishable"
    return {**out, "p_value": p, "verdict": verdict, "note": note}


def hparams_of(result: dict) -> dict[str, Any]:
    """The trial's ``hparams``; for a placeholder result written without them (a trial that never started),
    the same keys taken from its resolved ``config.train``, so it lands in its configuration's group."""
    hp = result.get("hparams")
    if isinstance(hp, dict) and hp:
        return hp
    train = _get(result, "config", "train")
    return {k: train[k] for k in HPARAM_KEYS if k in train} if isinstance(train, dict) else {}


def _status(result: dict) -> str:
    s = result.get("status")
    return s if s in STATUSES else "failed"


def _strategy(result: dict) -> str:
    return str(result.get("strategy") or result.get("strategy_name") or "?")


def group_key(result: dict) -> tuple[str, str]:
    """(strategy label, every hyper-parameter except the seed) as a hashable key."""
    hp = {k: v for k, v in hparams_of(result).items() if k != "seed"}
    return _strategy(result), json.dumps(hp, sort_keys=True, default=str)


def group_results(results: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    """Trials grouped by :func:`group_key`, groups in order of first appearance (the sweep's trial order)."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault(group_key(r), []).append(r)
    return groups


def varied_hparams(results: Sequence[dict]) -> list[str]:
    """Hyper-parameters other than seed and the four fixed axes that take more than one value in the sweep."""
    hps = [hp for hp in map(hparams_of, results) if hp]
    keys = list(dict.fromkeys(k for hp in hps for k in hp))
    return [k for k in keys if k not in ("seed", *AXES)
            and len({json.dumps(hp.get(k), default=str) for hp in hps}) > 1]


def row_columns(varied: Sequence[str] = ()) -> list[str]:
    return [*COLUMNS, *EXTRA_COLUMNS, *varied]


def summary_columns(varied: Sequence[str] = ()) -> list[str]:
    i = SUMMARY_COLUMNS.index("grad_clip") + 1
    return [*SUMMARY_COLUMNS[:i], *varied, *SUMMARY_COLUMNS[i:]]


def last_step(r: dict) -> int:
    """Highest step a trial reached: final.step, the number of optimizer steps, or its last evaluation."""
    steps = [num(_get(r, "test", "step")), num(r.get("stopped_at_step")), len(r.get("train_losses") or [])]
    steps += [s for s, _ in series(r.get("history"), "val_score")]
    return int(max((s for s in steps if s is not None), default=0))


def _ok_accs(trials: Sequence[dict]) -> list[float]:
    accs = [num(_get(r, "test", "score")) for r in trials if _status(r) == "ok"]
    return [a for a in accs if a is not None]


def roughness(result: dict, field: str) -> float | None:
    """:func:`second_half_mad` of one history field, the half taken of max_steps (else the last step)."""
    max_step = num(hparams_of(result).get("max_steps")) or last_step(result)
    return second_half_mad(series(result.get("history"), field), max_step)


def _group_row(trials: Sequence[dict], varied: Sequence[str]) -> dict[str, Any]:
    ok = [r for r in trials if _status(r) == "ok" and num(_get(r, "test", "score")) is not None]
    first, hp = trials[0], hparams_of(trials[0])
    params = next((r["params"] for r in trials if isinstance(r.get("params"), dict)), {})

    def per_trial(fn) -> list[Any]:
        return [fn(r) for r in ok]

    row = {"strategy": _strategy(first), **{k: hp.get(k) for k in AXES}, "n_seeds": len(trials), "n_ok": len(ok),
           **seed_stats(_ok_accs(ok)),
           "oscillation": _mean(per_trial(lambda r: roughness(r, "val_score"))),
           "loss_roughness": _mean(per_trial(lambda r: roughness(r, "train_loss"))),
           "trainable_params": params.get("trainable"), "total_params": params.get("total"),
           "trainable_ratio": num(params.get("ratio")),
           "samples_per_s": _mean(per_trial(lambda r: _get(r, "throughput", "samples_per_s"))),
           "tokens_per_s": _mean(per_trial(lambda r: _get(r, "throughput", "tokens_per_s"))),
           "peak_mem_mb": _mean(per_trial(lambda r: _get(r, "memory", "peak_mem_mb"))),
           "wall_s": _mean(per_trial(lambda r: _get(r, "timing", "wall_s"))),
           "steps_to_80": median_if_half(per_trial(lambda r: steps_to(r.get("history"), 0.80))),
           "steps_to_90": median_if_half(per_trial(lambda r: steps_to(r.get("history"), 0.90)))}
    for status in STATUSES[1:]:
        row[f"n_{status}"] = sum(1 for r in trials if _status(r) == status)
    ok_ids = {id(r) for r in ok}  # an "ok" trial without a final accuracy is malformed: counted as failed
    row["n_failed"] += sum(1 for r in trials if _status(r) == "ok" and id(r) not in ok_ids)
    row["max_step_reached"] = max(last_step(r) for r in trials)
    finals = [num(_get(r, "test", "step")) for r in ok]
    row["final_step"] = int(max(f for f in finals if f is not None)) if any(f is not None for f in finals) else None
    row.update({k: hp.get(k) for k in varied})
    return row


def comparison_rows(results: Sequence[dict]) -> list[dict[str, Any]]:
    """One row per (strategy, hyper-parameters except seed), in the sweep's trial order."""
    varied = varied_hparams(results)
    return [_group_row(trials, varied) for trials in group_results(results).values()]


def best_configs(results: Sequence[dict]) -> dict[str, tuple[dict[str, Any] | None, list[dict]]]:
    """Per strategy (sweep order): the row and trials of its best group (highest acc_mean among groups with
    n_ok >= 1; ties: more ok seeds, then sweep order), or ``(None, [])`` when no group has an ok trial."""
    varied = varied_hparams(results)
    best: dict[str, tuple[dict[str, Any] | None, list[dict]]] = {}
    for trials in group_results(results).values():
        row = _group_row(trials, varied)
        cur = best.setdefault(row["strategy"], (None, []))[0]
        if row["n_ok"] and (cur is None or (row["acc_mean"], row["n_ok"]) > (cur["acc_mean"], cur["n_ok"])):
            best[row["strategy"]] = (row, trials)
    return best


def strategy_summary(results: Sequence[dict], alpha: float = ALPHA, baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Best configuration per strategy and its Welch verdict against ``baseline``'s best configuration.

    Sorted by acc_mean descending (strategies without an ok trial last, in sweep order)."""
    varied, rows = varied_hparams(results), comparison_rows(results)
    best = best_configs(results)
    base_accs = _ok_accs(best.get(baseline, (None, []))[1])
    out = []
    for strategy, (row, trials) in best.items():
        mine, accs = [r for r in rows if r["strategy"] == strategy], _ok_accs(trials)
        src = row or {"strategy": strategy, "trainable_ratio": mine[0]["trainable_ratio"], "n_ok": 0,
                      "n_seeds": sum(r["n_seeds"] for r in mine)}
        line = {c: src.get(c) for c in summary_columns(varied)}
        line.update(trials=sum(r["n_seeds"] for r in mine), trials_diverged=sum(r["n_diverged"] for r in mine),
                    trials_failed=sum(r["n_failed"] for r in mine))
        if strategy == baseline and accs:
            line.update(diff_vs_full=0.0, p_value=None, verdict="baseline", note="")
        elif accs and baseline not in best:
            line.update(diff_vs_full=None, p_value=None, verdict=None, note=f"no '{baseline}' baseline in sweep")
        else:
            line.update(welch(accs, base_accs, alpha))
        out.append(line)
    return sorted(out, key=lambda s: -s["acc_mean"] if s["acc_mean"] is not None else math.inf)


COLUMN_DOCS = {
    "strategy": "freeze strategy label (name and parameters, e.g. top_k(k=4)); `full` is the baseline",
    "lr": "peak learning rate", "batch_size": "training batch size (per optimizer step, before grad_accum)",
    "scheduler": "learning-rate schedule (transformers.get_scheduler name: linear, cosine, constant (no warm-up), constant_with_warmup, ...)",
    "grad_clip": "max gradient norm; empty / off = no clipping",
    "n_seeds": "trials in the group (one per seed) = n_ok + n_diverged + n_failed + n_stopped + n_running",
    "n_ok": "trials that finished all steps and have a final accuracy",
    "acc_mean": "mean final accuracy (final.eval_accuracy, whole eval set) over ok seeds",
    "acc_std": "sample std (ddof=1) of the final accuracy over ok seeds; empty with fewer than 2",
    "acc_ci95": "95% CI half-width of acc_mean: t(0.975, n-1) * acc_std / sqrt(n); empty with fewer than 2",
    "acc_min": "lowest final accuracy over ok seeds", "acc_max": "highest final accuracy over ok seeds",
    "oscillation": "mean |difference| between consecutive curve evaluations (eval_accuracy) at steps > max_steps/2,"
                   " averaged over ok seeds",
    "loss_roughness": "the same on the per-evaluation train_loss (mean training loss since the previous evaluation)",
    "trainable_params": "parameters the strategy trains", "total_params": "all parameters of the model",
    "trainable_ratio": "trainable_params / total_params",
    "samples_per_s": "training samples per second of training time, mean over ok seeds",
    "tokens_per_s": "non-padding training tokens per second, mean over ok seeds",
    "peak_mem_mb": "peak memory (GPU allocated, or process max RSS on CPU) in MiB, mean over ok seeds",
    "wall_s": "wall-clock seconds per trial (set-up, training, evaluation), mean over ok seeds",
    "steps_to_80": "median over ok seeds of the first evaluation step with curve accuracy >= 0.80; empty when "
                   "fewer than half of the ok seeds reached it",
    "steps_to_90": "as steps_to_80 with 0.90",
    "n_diverged": "trials stopped by a NaN/inf or exploding training loss",
    "n_failed": "trials that raised an error (or have no final accuracy)",
    "n_stopped": "trials early-stopped by the scheduler (ASHA)", "n_running": "trials not finished yet",
    "max_step_reached": "highest step any trial of the group reached (shows how far early-stopped trials got)",
    "final_step": "last training step of the ok trials (max_steps)",
    "diff_vs_full": "acc_mean minus the acc_mean of full's best configuration",
    "p_value": "Welch's t-test (unequal variances) of the final accuracies over seeds vs full's best configuration",
    "verdict": "better / worse at p < 0.05 (by the sign of diff_vs_full), else indistinguishable; baseline = full",
    "note": "why a verdict is weak or missing: too few seeds (< 2 on either side), no ok trial, no baseline",
    "trials": "all trials of the strategy (every configuration and seed)",
    "trials_diverged": "diverged trials of the strategy, all configurations",
    "trials_failed": "failed trials of the strategy, all configurations",
}
