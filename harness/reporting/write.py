"""Writing a sweep's report: ``comparison.{csv,json,md}``, ``summary.csv``, ``plots/*.png`` and ``report.html``.

CSV and Markdown depend only on the result files and the report settings (no timestamps), so re-rendering
reproduces them byte for byte.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from harness.reporting.format import markdown, summary_text, to_csv
from harness.reporting.html import render_html
from harness.reporting.plots import write_plots
from harness.reporting.tables import load_sweep, report_settings, tables_from_results
from harness.results import write_json_atomic

__all__ = ["write_report", "META_KEYS"]

# comparison.json "metadata" (the W&B adapter reads columns, summary_columns and rebuilds the headline from it)
META_KEYS = ("sweep", "n_trials", "status_counts", "baseline", "alpha", "metric", "margin", "cost", "cost_column",
             "bootstrap_resamples", "selected_on_test", "n_selected_on_test", "recommendation", "columns",
             "summary_columns", "column_definitions", "warnings", "chance")


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(sweep_dir: str | Path, console: Callable[[str], Any] = print, plots: bool = True,
                 overrides: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write every report file into ``sweep_dir``, print the summary and the paths; returns {name: path}.

    ``overrides``: report settings over the sweep's ``report:`` section (``margin``, ``cost``,
    ``bootstrap_resamples``); checked before anything is written."""
    sweep_dir, results = load_sweep(sweep_dir)
    t = tables_from_results(sweep_dir, results, report_settings(sweep_dir, overrides))
    paths = {
        "comparison_csv": _write_text(sweep_dir / "comparison.csv", to_csv(t["rows"], t["columns"])),
        "summary_csv": _write_text(sweep_dir / "summary.csv", to_csv(t["summary"], t["summary_columns"])),
        "comparison_md": _write_text(sweep_dir / "comparison.md", markdown(t)),
    }
    meta = {k: t[k] for k in META_KEYS}
    meta["generated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    paths["comparison_json"] = write_json_atomic(sweep_dir / "comparison.json", {
        "metadata": meta, "recommendation": t["recommendation"], "rows": t["rows"], "summary": t["summary"],
        "problems": t["problems"]})
    figures: dict[str, Path] = {}
    if plots:
        figures = write_plots(t, sweep_dir / "plots")
        paths.update({f"plot_{k}": v for k, v in figures.items()})
    paths["report_html"] = _write_text(sweep_dir / "report.html", render_html(t, figures))
    console(summary_text(t))
    console("wrote:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return paths
