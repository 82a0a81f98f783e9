"""The per-strategy summary: each strategy's configuration selected on validation, its test numbers against
``full``'s selected configuration (difference, intervals, non-inferiority verdict, BH-adjusted p-values,
bootstrap), and the Pareto front of test score against cost.

Selection never looks at the test split (unless the sweep had no validation set, which the report flags as
optimistic): a strategy's best configuration is its group with the highest mean ``val.score`` over ok seeds
(ties: more ok seeds, then sweep order), and the summary reports that group's ``test.score``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

import harness.reporting.fields as f
from harness.config.schema import ReportConfig
from harness.reporting.bootstrap import Loaded, has_predictions, paired_bootstrap, stack
from harness.reporting.columns import ALPHA, BASELINE, COSTS, summary_columns
from harness.reporting.compare import EMPTY, bh_adjust, difference
from harness.reporting.stats import Group

__all__ = ["select", "pairing", "summarise", "pareto_front"]


def select(groups: Sequence[Group]) -> dict[str, Group | None]:
    """Per strategy (sweep order): its group with the highest mean selection score (val.score) among groups
    with an ok trial; ties: more ok seeds, then sweep order. ``None`` when no group of it has an ok trial."""
    best: dict[str, Group | None] = {}
    for g in groups:
        cur = best.setdefault(g.strategy, None)
        if g.ok and (cur is None or (g.selection, len(g.ok)) > (cur.selection, len(cur.ok))):
            best[g.strategy] = g
    return best


def _seed(r: dict) -> Any:
    return f.hparams_of(r).get("seed")


def pairing(a: Sequence[dict], b: Sequence[dict]) -> tuple[list[dict], list[dict], bool]:
    """The ok trials of both sides, in seed order when their seeds pair: the same seed values (each once) and
    the same batch size on both sides mean the same data order and classifier-head init."""
    sa, sb = [_seed(r) for r in a], [_seed(r) for r in b]
    bs = {f.hparams_of(r).get("batch_size") for r in [*a, *b]}
    if len(bs) == 1 and None not in sa and len(set(sa)) == len(sa) and sorted(sa, key=str) == sorted(sb, key=str):
        return sorted(a, key=lambda r: str(_seed(r))), sorted(b, key=lambda r: str(_seed(r))), True
    return list(a), list(b), False


def _bootstrap(metric: str, a: list[dict], b: list[dict], paired: bool, predictions: Callable[[dict], Loaded | None],
               resamples: int) -> tuple[dict[str, Any], str]:
    if resamples <= 0 or not any(has_predictions(r) for r in [*a, *b]):
        return {}, ""
    sa, sb = stack([predictions(r) for r in a]), stack([predictions(r) for r in b])
    why = sa if isinstance(sa, str) else sb if isinstance(sb, str) else ""
    if not why and not np.array_equal(sa[0], sb[0]):
        why = "example ids differ between trials"
    if why:
        return {}, f"bootstrap skipped: {why}"
    ci = paired_bootstrap(metric, sa[1], sa[2], sb[2], paired, resamples)
    return ({"boot_ci_low": ci[0], "boot_ci_high": ci[1]} if ci else {}), ""


def _compare(g: Group | None, base: Group | None, has_baseline: bool, cfg: ReportConfig, metric: str,
             predictions: Callable[[dict], Loaded | None]) -> dict[str, Any]:
    if g is None:
        return {**EMPTY, "note": "no ok trial"}
    if g.strategy == BASELINE:
        return {**EMPTY, "diff_vs_full": 0.0, "verdict": "baseline"}
    if base is None:
        return {**EMPTY, "note": "baseline has no ok trial" if has_baseline else f"no '{BASELINE}' baseline in sweep"}
    a, b, paired = pairing(g.ok, base.ok)
    out = difference([f.test_score(r) for r in a], [f.test_score(r) for r in b], paired, cfg.margin)
    boot, why = _bootstrap(metric, a, b, paired, predictions, cfg.bootstrap_resamples)
    out.update(boot)
    out["note"] = "; ".join(n for n in (out["note"], why) if n)
    return out


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (cost, score) points (lower cost and higher score are better): True where no other point is at
    least as good on both and strictly better on one. Sort by cost, sweep the best score: O(n log n)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best, last = [False] * len(points), -math.inf, None
    for i in order:
        if points[i][1] > best or points[i] == last:    # an identical point does not dominate its twin
            front[i], best, last = True, points[i][1], points[i]
    return front


def _rank(s: dict) -> float:
    return -s["test_score_mean"] if s["test_score_mean"] is not None else math.inf


def summarise(groups: Sequence[Group], varied: Sequence[str], cfg: ReportConfig, metric: str,
              predictions: Callable[[dict], Loaded | None] = lambda r: None) -> list[dict[str, Any]]:
    """One line per strategy (sorted by test score, strategies without an ok trial last) with the columns of
    :func:`harness.reporting.columns.summary_columns`."""
    best, per_strategy = select(groups), {}
    for g in groups:
        per_strategy.setdefault(g.strategy, []).append(g)
    base = best.get(BASELINE)
    lines = []
    for strategy, g in best.items():
        mine = per_strategy[strategy]
        src = g.row if g else {"strategy": strategy, "metric": metric, "trainable_ratio": mine[0].row["trainable_ratio"],
                               "n_ok": 0, "n_seeds": sum(x.row["n_seeds"] for x in mine)}
        line = {c: src.get(c) for c in summary_columns(varied)}
        line.update(_compare(g, base, BASELINE in best, cfg, metric, predictions),
                    trials=sum(x.row["n_seeds"] for x in mine),
                    trials_diverged=sum(x.row["n_diverged"] for x in mine),
                    trials_failed=sum(x.row["n_failed"] for x in mine))
        lines.append(line)
    for key in ("p_value", "ni_p_value"):
        adjusted = bh_adjust([s[key] for s in lines])
        for s, p in zip(lines, adjusted):
            s[key.replace("_value", "_adj")] = p
    n_tests = sum(1 for s in lines if s["ni_p_value"] is not None)
    for s in lines:
        if s["verdict"] in ("superior", "non-inferior") and s["ni_p_adj"] is not None and s["ni_p_adj"] >= ALPHA:
            s["note"] = "; ".join(n for n in (s["note"], f"ni_p_adj {s['ni_p_adj']:.3f} >= {ALPHA} after the BH "
                                              f"adjustment over {n_tests} comparisons") if n)
    col = COSTS[cfg.cost][0]
    placed = [s for s in lines if s["test_score_mean"] is not None and s[col] is not None]
    for s, on in zip(placed, pareto_front([(float(s[col]), s["test_score_mean"]) for s in placed])):
        s["pareto"] = on
    return sorted(lines, key=_rank)
