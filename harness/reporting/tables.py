"""The comparison of a sweep as plain data: rows per configuration, the per-strategy summary with verdicts, the
recommendation, the trials that did not finish ok and the column definitions. Results in, dicts out.

The report settings (``report.margin``, ``report.cost``, ``report.bootstrap_resamples``) come from the sweep's
``sweep.json`` (the resolved config), with overrides from the command line; a bad value is a ``ConfigError``
naming the key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import harness.reporting.fields as f
from harness.config.build import build
from harness.config.schema import ReportConfig
from harness.reporting.bootstrap import Predictions
from harness.reporting.chance import chance_level, chance_sentence
from harness.reporting.columns import ALPHA, BASELINE, COSTS, describe, row_columns, summary_columns
from harness.reporting.recommend import recommendation
from harness.reporting.stats import build_groups, varied_hparams
from harness.reporting.summary import select, summarise
from harness.results import STATUSES, load_results, read_json

__all__ = ["NoResults", "build_tables", "tables_from_results", "load_sweep", "report_settings", "sweep_metric"]


class NoResults(FileNotFoundError):
    """The sweep folder holds no ``trials/*/result.json``."""


def _sweep_json(sweep_dir: Path) -> dict:
    try:
        data = read_json(sweep_dir / "sweep.json")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def report_settings(sweep_dir: Path, overrides: Mapping[str, Any] | None = None) -> ReportConfig:
    """``report:`` of the sweep's resolved config (defaults without one), updated by ``overrides``."""
    stored = (_sweep_json(sweep_dir).get("config") or {}).get("report") or {}
    return build(ReportConfig, {**stored, **{k: v for k, v in (overrides or {}).items() if v is not None}},
                 "report")


def sweep_metric(results: Sequence[dict]) -> str:
    """The one selection metric of the sweep (``metric.name``; accuracy for results that name none)."""
    seen: dict[str, str] = {}
    for r in results:
        seen.setdefault(f.metric_name(r) or "", str(r.get("trial_id")))
    named = {k: v for k, v in seen.items() if k}
    if len(named) > 1:
        raise ValueError("results use different metrics (metric.name): " +
                         ", ".join(f"{k} (e.g. trial {v})" for k, v in named.items()) + "; report them separately")
    return next(iter(named), "accuracy")


def tables_from_results(sweep_dir: Path, results: Sequence[dict], settings: ReportConfig | None = None) -> dict[str, Any]:
    cfg = settings or report_settings(sweep_dir)
    metric, varied = sweep_metric(results), varied_hparams(results)
    groups = build_groups(results, metric)
    rows = []
    for g in groups:
        rows.append({**g.row, "trial_ids": [t.get("trial_id") for t in g.trials],
                     "seeds": [f.hparams_of(t).get("seed") for t in g.trials]})
    predictions = Predictions(sweep_dir)
    summary = summarise(groups, varied, cfg, metric, predictions)
    ok = [r for r in results if f.is_ok(r)]
    on_test = sum(1 for r in ok if f.selected_on_test(r))
    problems = [{"trial_id": r.get("trial_id"), "strategy": r.get("strategy"), "status": r.get("status"),
                 "reason": r.get("reason"), "step": f.last_step(r)} for r in results if r.get("status") != "ok"]
    counts = {s: sum(1 for r in results if r.get("status") == s) for s in STATUSES}
    columns, scols = row_columns(varied), summary_columns(varied)
    name = _sweep_json(sweep_dir).get("name") or results[0].get("sweep") or sweep_dir.name
    chance = chance_level(results, metric, predictions, summary)
    advice = recommendation(summary, cfg.margin, cfg.cost, metric, on_test > 0)
    if chance and chance["above"] is False:   # a verdict against a baseline at chance says nothing
        advice = f"{chance_sentence(chance, metric)} {advice}"
    return {"sweep": str(name), "n_trials": len(results), "status_counts": counts, "baseline": BASELINE,
            "alpha": ALPHA, "metric": metric, "margin": cfg.margin, "cost": cfg.cost, "cost_column": COSTS[cfg.cost][0],
            "bootstrap_resamples": cfg.bootstrap_resamples, "selected_on_test": on_test > 0,
            "n_selected_on_test": on_test, "columns": columns, "summary_columns": scols,
            "column_definitions": describe([*columns, *scols, "diff_ci95"]),
            "recommendation": advice, "chance": chance,
            "rows": rows, "summary": summary, "problems": problems, "warnings": predictions.problems,
            "selected": {s: g.ok for s, g in select(groups).items() if g is not None}}


def load_sweep(sweep_dir: str | Path) -> tuple[Path, list[dict]]:
    sweep_dir = Path(sweep_dir)
    results = load_results(sweep_dir) if sweep_dir.is_dir() else []
    if not results:
        raise NoResults(f"{sweep_dir}: no result files (expected {sweep_dir}/trials/<trial_id>/result.json)")
    return sweep_dir, results


def build_tables(sweep_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Comparison rows, per-strategy summary with verdicts and the recommendation, problem trials and column
    definitions (``overrides``: report settings, e.g. ``{"margin": 0.02}``)."""
    sweep_dir, results = load_sweep(sweep_dir)
    return tables_from_results(sweep_dir, results, report_settings(sweep_dir, overrides))
