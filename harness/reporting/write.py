"""Writing a sweep's report: ``comparison.{csv,json,md}``, ``summary.csv``, ``plots/*.png`` and ``report.html``.

CSV and Markdown depend only on the result files (no timestamps), so re-rendering reproduces them byte for byte.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from harness.reporting.format import markdown, summary_text, to_csv
from harness.reporting.html import render_html
from harness.reporting.plots import write_plots
from harness.reporting.tables import load_sweep, tables_from_results
from harness.results import write_json_atomic

__all__ = ["write_report"]


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(sweep_dir: str | Path, console: Callable[[str], Any] = print, plots: bool = True) -> dict[str, Path]:
    """Write every report file into ``sweep_dir``, print the summary and the paths; returns {name: path}."""
    sweep_dir, results = load_sweep(sweep_dir)
    t = tables_from_results(sweep_dir, results)
    paths = {
        "comparison_csv": _write_text(sweep_dir / "comparison.csv", to_csv(t["rows"], t["columns"])),
        "summary_csv": _write_text(sweep_dir / "summary.csv", to_csv(t["summary"], t["summary_columns"])),
        "comparison_md": _write_text(sweep_dir / "comparison.md", markdown(t)),
    }
    meta = {k: t[k] for k in ("sweep", "n_trials", "status_counts", "baseline", "alpha", "columns",
                              "summary_columns", "column_definitions")}
    meta["generated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    paths["comparison_json"] = write_json_atomic(sweep_dir / "comparison.json", {
        "metadata": meta, "rows": t["rows"], "summary": t["summary"], "problems": t["problems"]})
    figures: dict[str, Path] = {}
    if plots:
        figures = write_plots(results, t["summary"], sweep_dir / "plots")
        paths.update({f"plot_{k}": v for k, v in figures.items()})
    paths["report_html"] = _write_text(sweep_dir / "report.html", render_html(t, figures))
    console(summary_text(t))
    console("wrote:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return paths
