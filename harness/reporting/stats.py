"""Statistics over the seeds of one configuration: one row of the comparison table per group.

Trials that differ only by seed form a *group* (:func:`harness.reporting.fields.group_key`). A group's row has
the validation number the selection reads (``val_score_*``) and the test numbers the report shows
(``test_score_*``, plus ``test_accuracy_mean`` for classification), stability on the validation curve, cost and
status counts. No trial is silently dropped: diverged, failed, stopped and running trials are counted in their own
columns and a group with no ok trial still gets a row. Missing values are ``None`` (never NaN), so rows serialise
to strict JSON and to empty CSV cells. Definitions: ``docs/metrics.md``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import stats as sps

import harness.reporting.fields as f
from harness.reporting.columns import AXES, row_columns
from harness.results import STATUSES

__all__ = ["Group", "build_groups", "seed_stats", "second_half_mad", "roughness", "steps_to", "median_if_half",
           "varied_hparams", "mean_of"]


def seed_stats(values: Sequence[float], prefix: str = "test_score") -> dict[str, float | None]:
    """mean, sample std (ddof=1), t-based 95% half-width, min, max; std/ci95 None with fewer than 2 values."""
    keys = [f"{prefix}_{k}" for k in ("mean", "std", "ci95", "min", "max")]
    n = len(values)
    if n == 0:
        return dict.fromkeys(keys)
    a = np.asarray(values, dtype=float)
    std = float(a.std(ddof=1)) if n >= 2 else None
    ci = float(sps.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if std is not None else None
    return dict(zip(keys, (float(a.mean()), std, ci, float(a.min()), float(a.max()))))


def second_half_mad(points: Sequence[tuple[int, float]], max_step: float) -> float | None:
    """Mean |difference| of consecutive values at steps > max_step/2; None with fewer than two such points."""
    vals = [v for s, v in points if s > max_step / 2]
    return float(np.mean(np.abs(np.diff(vals)))) if len(vals) >= 2 else None


def roughness(result: dict, points: Sequence[tuple[int, float]]) -> float | None:
    """:func:`second_half_mad` of one trial's points, the half taken of max_steps (else its last step)."""
    max_step = f.num(f.hparams_of(result).get("max_steps")) or f.last_step(result)
    return second_half_mad(points, max_step)


def steps_to(points: Sequence[tuple[int, float]], threshold: float) -> int | None:
    """First evaluation step whose curve value is >= threshold; None if never reached."""
    return next((s for s, v in points if v >= threshold), None)


def median_if_half(values: Sequence[float | None]) -> float | None:
    """Median of the non-None values; None when fewer than half of all values are non-None (or none given)."""
    got = [v for v in values if v is not None]
    return float(np.median(got)) if got and 2 * len(got) >= len(values) else None


def mean_of(values: Iterable[Any]) -> float | None:
    got = [x for x in map(f.num, values) if x is not None]
    return float(np.mean(got)) if got else None


def varied_hparams(results: Sequence[dict]) -> list[str]:
    """Hyper-parameters other than seed and the four fixed axes that take more than one value in the sweep."""
    seen: dict[str, set[str]] = {}
    for hp in map(f.hparams_of, results):
        for k, v in hp.items():
            seen.setdefault(k, set()).add(json.dumps(v, default=str))
    return [k for k, vals in seen.items() if k not in ("seed", *AXES) and len(vals) > 1]


@dataclass
class Group:
    """One configuration: its trials in sweep order, the ok ones, and its table row."""

    key: tuple[str, str]
    trials: list[dict]
    ok: list[dict] = field(default_factory=list)
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def strategy(self) -> str:
        return self.key[0]

    @property
    def selection(self) -> float | None:
        """Mean selection score (val.score; test.score without a validation set) over ok seeds."""
        return mean_of(f.selection_score(r) for r in self.ok)


def _tera(flops: float | None) -> float | None:
    return None if flops is None else flops / 1e12


def _row(trials: Sequence[dict], ok: Sequence[dict], varied: Sequence[str], metric: str | None) -> dict[str, Any]:
    first, hp = trials[0], f.hparams_of(trials[0])
    params = next((r["params"] for r in trials if isinstance(r.get("params"), dict)), {})

    def over_ok(fn: Callable[[dict], Any]) -> list[Any]:
        return [fn(r) for r in ok]

    curves = {id(r): f.curve(r) for r in ok}
    vals = [v for v in over_ok(f.val_score) if v is not None]
    val = seed_stats(vals, "val_score")
    row = {"strategy": f.strategy(first), **{k: hp.get(k) for k in AXES}, "metric": metric,
           "n_seeds": len(trials), "n_ok": len(ok), "val_score_mean": val["val_score_mean"],
           "val_score_std": val["val_score_std"], **seed_stats(over_ok(f.test_score)),
           "test_accuracy_mean": mean_of(over_ok(lambda r: f.test_metric(r, "accuracy"))),
           "oscillation": mean_of(over_ok(lambda r: roughness(r, curves[id(r)]))),
           "loss_roughness": mean_of(over_ok(lambda r: roughness(r, f.series(r.get("history"), "train_loss")))),
           "trainable_params": params.get("trainable"), "total_params": params.get("total"),
           "trainable_ratio": f.num(params.get("ratio")),
           "trainable_ratio_mean": mean_of(over_ok(lambda r: f.num(f.get(r, "cost", "trainable_ratio_mean")))),
           "train_tflops": mean_of(over_ok(lambda r: _tera(f.num(f.get(r, "cost", "train_flops"))))),
           "samples_per_s": mean_of(over_ok(lambda r: f.get(r, "throughput", "samples_per_s"))),
           "tokens_per_s": mean_of(over_ok(lambda r: f.get(r, "throughput", "tokens_per_s"))),
           "peak_mem_mb": mean_of(over_ok(lambda r: f.get(r, "memory", "peak_mem_mb"))),
           "wall_s": mean_of(over_ok(lambda r: f.get(r, "timing", "wall_s"))),
           "steps_to_80": median_if_half(over_ok(lambda r: steps_to(curves[id(r)], 0.80))),
           "steps_to_90": median_if_half(over_ok(lambda r: steps_to(curves[id(r)], 0.90)))}
    counts = {s: 0 for s in STATUSES}
    for r in trials:
        counts[f.status(r)] += 1
    row.update({f"n_{s}": counts[s] for s in STATUSES[1:]})
    row["n_failed"] += counts["ok"] - len(ok)   # an "ok" trial without a finite test score is malformed
    row["max_step_reached"] = max(f.last_step(r) for r in trials)
    finals = over_ok(f.last_step)   # not test.step: with train.load_best that is the restored step, not the last
    row["final_step"] = int(max(finals)) if finals else None
    row.update({k: hp.get(k) for k in varied})
    return {c: row.get(c) for c in row_columns(varied)}


def build_groups(results: Sequence[dict], metric: str | None = None) -> list[Group]:
    """Every configuration of the sweep with its row, in order of first appearance (the sweep's trial order).

    One pass over the results, then one row per group: linear in the number of trials."""
    by_key: dict[tuple[str, str], Group] = {}
    for r in results:
        key = f.group_key(r)
        if key not in by_key:
            by_key[key] = Group(key, [])
        by_key[key].trials.append(r)
    varied = varied_hparams(results)
    for g in by_key.values():
        g.ok = [r for r in g.trials if f.is_ok(r)]
        g.row = _row(g.trials, g.ok, varied, metric)
    return list(by_key.values())
