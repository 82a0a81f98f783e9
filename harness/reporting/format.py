"""Formatting the tables for people and files: one cell (:func:`fmt`), the headline sentence, Markdown,
CSV and the console summary. Shared by the Markdown, console and HTML writers."""
from __future__ import annotations

import csv
import io
import textwrap
from typing import Sequence

import harness.reporting.stats as stats

__all__ = ["fmt", "headline", "markdown", "summary_text", "md_table", "to_csv"]

_ACC = {"acc_mean", "acc_min", "acc_max", "acc_std", "acc_ci95", "oscillation", "loss_roughness", "trainable_ratio"}
_ONE = {"samples_per_s", "tokens_per_s", "wall_s"}



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


def md_table(rows: Sequence[dict], columns: Sequence[str]) -> list[str]:
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
             "## Best configuration per strategy", "", *md_table(t["summary"], t["summary_columns"]), "",
             "## All configurations", "", *md_table(t["rows"], t["columns"]), ""]
    if t["problems"]:
        lines += ["## Trials that did not finish ok", "",
                  *md_table(t["problems"], ["trial_id", "strategy", "status", "step", "reason"]), ""]
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


def to_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buf.getvalue()
