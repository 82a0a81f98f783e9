"""The comparison tables of a sweep as plain data: rows per configuration, the per-strategy summary with
verdicts, the trials that did not finish ok and the column definitions. Pure: results in, dicts out."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import harness.reporting.stats as stats
from harness.reporting.stats import COLUMN_DOCS
from harness.results import load_results, read_json

__all__ = ["NoResults", "build_tables", "tables_from_results", "load_sweep"]


class NoResults(FileNotFoundError):
    """The sweep folder holds no ``trials/*/result.json``."""


def _sweep_name(sweep_dir: Path, results: Sequence[dict]) -> str:
    meta = sweep_dir / "sweep.json"
    if meta.is_file():
        try:
            return str(read_json(meta)["name"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return str(results[0].get("sweep") or sweep_dir.name)


def tables_from_results(sweep_dir: Path, results: Sequence[dict]) -> dict[str, Any]:
    varied = stats.varied_hparams(results)
    rows = stats.comparison_rows(results)
    for row, trials in zip(rows, stats.group_results(results).values()):
        row["trial_ids"] = [t.get("trial_id") for t in trials]
        row["seeds"] = [stats.hparams_of(t).get("seed") for t in trials]
    problems = [{"trial_id": r.get("trial_id"), "strategy": r.get("strategy"), "status": r.get("status"),
                 "reason": r.get("reason"), "step": stats.last_step(r)}
                for r in results if r.get("status") != "ok"]
    counts = {s: sum(1 for r in results if r.get("status") == s) for s in stats.STATUSES}
    columns = stats.row_columns(varied)
    return {"sweep": _sweep_name(sweep_dir, results), "n_trials": len(results), "status_counts": counts,
            "baseline": stats.BASELINE, "alpha": stats.ALPHA, "columns": columns,
            "summary_columns": stats.summary_columns(varied),
            "column_definitions": {c: COLUMN_DOCS.get(c, f"hyper-parameter `{c}` (varies in this sweep)")
                                   for c in dict.fromkeys([*columns, *stats.summary_columns(varied)])},
            "rows": rows, "summary": stats.strategy_summary(results), "problems": problems}


def load_sweep(sweep_dir: str | Path) -> tuple[Path, list[dict]]:
    sweep_dir = Path(sweep_dir)
    results = load_results(sweep_dir) if sweep_dir.is_dir() else []
    if not results:
        raise NoResults(f"{sweep_dir}: no result files (expected {sweep_dir}/trials/<trial_id>/result.json)")
    return sweep_dir, results


def build_tables(sweep_dir: str | Path) -> dict[str, Any]:
    """Comparison rows, per-strategy summary with verdicts, problem trials and column definitions."""
    return tables_from_results(*load_sweep(sweep_dir))
