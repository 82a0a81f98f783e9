"""``python -m harness.report results/<sweep> [--no-plots]``: the comparison table of a sweep, from stored results.

Writes ``comparison.{csv,json,md}``, ``summary.csv``, ``plots/*.png`` and ``report.html`` into the sweep folder.
CSV and Markdown depend only on the result files (no timestamps), so re-rendering reproduces them byte for byte.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from harness import stats
from harness.results import load_results, read_json, write_json_atomic
from harness.stats import COLUMN_DOCS

__all__ = ["NoResults", "build_tables", "write_report", "fmt", "headline", "markdown", "summary_text", "main"]

_ACC = {"acc_mean", "acc_min", "acc_max", "acc_std", "acc_ci95", "oscillation", "loss_roughness", "trainable_ratio"}
_ONE = {"samples_per_s", "tokens_per_s", "wall_s"}


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


def _tables(sweep_dir: Path, results: Sequence[dict]) -> dict[str, Any]:
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


def _load(sweep_dir: str | Path) -> tuple[Path, list[dict]]:
    sweep_dir = Path(sweep_dir)
    results = load_results(sweep_dir) if sweep_dir.is_dir() else []
    if not results:
        raise NoResults(f"{sweep_dir}: no result files (expected {sweep_dir}/trials/<trial_id>/result.json)")
    return sweep_dir, results


def build_tables(sweep_dir: str | Path) -> dict[str, Any]:
    """Comparison rows, per-strategy summary with verdicts, problem trials and column definitions."""
    return _tables(*_load(sweep_dir))


def fmt(col: str, row: dict, empty: str = "–") -> str:
    """One cell for humans (Markdown, console, HTML): fixed decimals per column, ``empty`` for None."""
    v = row.get(col)
    if col == "grad_clip" and v is None:
        return "off" if row.get("lr") is not None else empty
    if v is None:
        return empty
    if isinstance(v, bool) or isinstance(v, str):
        return str(v)
    if col == "diff_vs_full":
        return f"{v:+.4f}"
    if col in _ACC:
        return f"{v:.4f}"
    if col in _ONE:
        return f"{v:.1f}"
    if col == "peak_mem_mb":
        return f"{v:.0f}"
    if col in ("trainable_params", "total_params"):
        return f"{int(v):,}"
    if col == "p_value":
        return "<0.001" if v < 0.001 else f"{v:.3f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _md_table(rows: Sequence[dict], columns: Sequence[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(" ".join(fmt(c, r).split()).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return out


def _counts(t: dict) -> str:
    return ", ".join(f"{n} {s}" for s, n in t["status_counts"].items() if n) or "none"


def headline(t: dict) -> str:
    """One sentence: the most accurate strategy and which strategies beat, match or trail the baseline."""
    ranked = [s for s in t["summary"] if s["acc_mean"] is not None]
    if not ranked:
        return "No strategy has an ok trial yet."
    top = ranked[0]
    ci = f" ±{fmt('acc_ci95', top)} (95% CI)" if top["acc_ci95"] is not None else ""
    out = [f"Highest mean accuracy: {top['strategy']} {fmt('acc_mean', top)}{ci}, "
           f"trainable ratio {fmt('trainable_ratio', top)}."]
    for verdict in ("better", "indistinguishable", "worse"):
        names = [s["strategy"] for s in t["summary"] if s["verdict"] == verdict]
        if names:
            out.append(f"{verdict.capitalize()} than {t['baseline']}: {', '.join(names)}."
                       .replace("Indistinguishable than", "Indistinguishable from"))
    return " ".join(out)


def markdown(t: dict) -> str:
    """comparison.md: summary with verdicts, the full table, problem trials, column definitions."""
    lines = [f"# freezebench comparison: {t['sweep']}", "",
             f"{t['n_trials']} trials ({_counts(t)}). Baseline: `{t['baseline']}`; verdicts from Welch's t-test "
             f"over seeds at alpha = {t['alpha']} (see docs/metrics.md).", "", headline(t), "",
             "## Best configuration per strategy", "", *_md_table(t["summary"], t["summary_columns"]), "",
             "## All configurations", "", *_md_table(t["rows"], t["columns"]), ""]
    if t["problems"]:
        lines += ["## Trials that did not finish ok", "",
                  *_md_table(t["problems"], ["trial_id", "strategy", "status", "step", "reason"]), ""]
    lines += ["## Columns", "", *(f"- `{c}`: {d}" for c, d in t["column_definitions"].items()), ""]
    return "\n".join(lines)


def _console_cell(col: str, s: dict, width: int) -> str:
    if col == "ok/n":
        text = f"{s['n_ok']}/{s['n_seeds']}"
    elif col == "verdict":
        text = (s["verdict"] or "–") + ("*" if s["note"] else "")
    else:
        text = fmt(col, s)
    return text if not width or len(text) <= width else text[:width - 1] + "…"


def summary_text(t: dict) -> str:
    """The per-strategy summary as a compact table for a 120-column terminal (notes as footnotes)."""
    varied = [c for c in t["summary_columns"] if c not in stats.SUMMARY_COLUMNS]
    spec = [("strategy", "strategy", 18, "<"), ("ratio", "trainable_ratio", 6, ">"), ("lr", "lr", 7, ">"),
            ("bs", "batch_size", 4, ">"), ("sched", "scheduler", 8, "<"), ("clip", "grad_clip", 4, ">"),
            *((c, c, max(len(c), 6), ">") for c in varied), ("ok/n", "ok/n", 5, ">"), ("acc", "acc_mean", 6, ">"),
            ("±std", "acc_std", 6, ">"), ("±ci95", "acc_ci95", 6, ">"), ("Δ full", "diff_vs_full", 7, ">"),
            ("p", "p_value", 6, ">"), ("verdict", "verdict", 0, "<")]
    head = " ".join(f"{h:{a}{w}}" for h, _, w, a in spec)
    lines = [f"freezebench report: {t['sweep']} - {t['n_trials']} trials ({_counts(t)})",
             f"best configuration per strategy vs {t['baseline']} (Welch t-test over seeds, alpha={t['alpha']}):",
             head, "-" * len(head)]
    lines += [" ".join(f"{_console_cell(c, s, w):{a}{w}}" for _, c, w, a in spec) for s in t["summary"]]
    notes = [f"{s['strategy']}: {s['note']}" for s in t["summary"] if s["note"]]
    if notes:
        lines += textwrap.wrap("* " + "; ".join(notes), width=118, subsequent_indent="  ")
    return "\n".join([*lines, "", *textwrap.wrap(headline(t), width=118)])


def _csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buf.getvalue()


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(sweep_dir: str | Path, console: Callable[[str], Any] = print, plots: bool = True) -> dict[str, Path]:
    """Write every report file into ``sweep_dir``, print the summary and the paths; returns {name: path}."""
    sweep_dir, results = _load(sweep_dir)
    t = _tables(sweep_dir, results)
    paths = {
        "comparison_csv": _write_text(sweep_dir / "comparison.csv", _csv(t["rows"], t["columns"])),
        "summary_csv": _write_text(sweep_dir / "summary.csv", _csv(t["summary"], t["summary_columns"])),
        "comparison_md": _write_text(sweep_dir / "comparison.md", markdown(t)),
    }
    meta = {k: t[k] for k in ("sweep", "n_trials", "status_counts", "baseline", "alpha", "columns",
                              "summary_columns", "column_definitions")}
    meta["generated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    paths["comparison_json"] = write_json_atomic(sweep_dir / "comparison.json", {
        "metadata": meta, "rows": t["rows"], "summary": t["summary"], "problems": t["problems"]})
    figures: dict[str, Path] = {}
    if plots:
        from harness.plots import write_plots

        figures = write_plots(results, t["summary"], sweep_dir / "plots")
        paths.update({f"plot_{k}": v for k, v in figures.items()})
    from harness.html_report import render_html

    paths["report_html"] = _write_text(sweep_dir / "report.html", render_html(t, figures))
    console(summary_text(t))
    console("wrote:\n" + "\n".join(f"  {p}" for p in paths.values()))
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__.split("\n")[0])
    p.add_argument("sweep_dir", help="a sweep folder, e.g. results/quickstart (holds trials/*/result.json)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures (report.html has no plots)")
    p.add_argument("--wandb-report", nargs="?", const="auto", choices=["auto", "online", "offline"], metavar="MODE",
                   help="also build a W&B Report: saved when online (auto: when an API key is configured), else "
                        "its specification is written to <sweep>/wandb_report.json (see docs/wandb.md)")
    args = p.parse_args(argv)
    try:
        write_report(args.sweep_dir, plots=not args.no_plots)
    except NoResults as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # an unreadable result file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.wandb_report:
        from harness.wandb_adapter import publish_report

        try:
            publish_report(args.sweep_dir, args.wandb_report)
        except Exception as exc:  # noqa: BLE001 - the local report is written; say why W&B's is not
            print(f"error: W&B report not built: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
