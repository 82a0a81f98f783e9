"""Formatting the tables for people and files: one cell (:func:`fmt`), the headline (the recommendation
sentence), Markdown, CSV and the console summary. Shared by the Markdown, console and HTML writers."""
from __future__ import annotations

import csv
import io
import textwrap
from typing import Sequence

from harness.reporting.chance import chance_line
from harness.reporting.columns import SUMMARY_COLUMNS, verdict_columns
from harness.reporting.recommend import recommendation

__all__ = ["fmt", "headline", "markdown", "summary_text", "md_table", "to_csv", "settings_line", "OPTIMISTIC"]

_FOUR = {"val_score_mean", "val_score_std", "test_score_mean", "test_score_std", "test_score_ci95", "test_score_min",
         "test_score_max", "test_accuracy_mean", "oscillation", "loss_roughness", "trainable_ratio",
         "trainable_ratio_mean"}
_SIGNED = {"diff_vs_full", "diff_ci_low", "diff_ci_high", "boot_ci_low", "boot_ci_high"}
_P = {"p_value", "p_adj", "ni_p_value", "ni_p_adj"}
_ONE = {"samples_per_s", "tokens_per_s", "wall_s", "train_tflops"}
OPTIMISTIC = ("selected on test: optimistic — these results have no validation split, so the best configuration "
              "of each strategy was chosen on the same test split that reports it; expect the numbers to be "
              "a little high, more so for strategies with more configurations")


def fmt(col: str, row: dict, empty: str = "–") -> str:
    """One cell for humans (Markdown, console, HTML): fixed decimals per column, ``empty`` for None."""
    v = row.get(col)
    if col == "diff_ci95":
        lo, hi = row.get("diff_ci_low"), row.get("diff_ci_high")
        return empty if lo is None or hi is None else f"{lo:+.4f} … {hi:+.4f}"
    if col == "grad_clip" and v is None:
        return "off" if row.get("lr") is not None else empty
    if v is None:
        return empty
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if col in _SIGNED:
        return f"{v:+.4f}"
    if col in _FOUR:
        return f"{v:.4f}"
    if col in _ONE:
        return f"{v:.1f}"
    if col == "peak_mem_mb":
        return f"{v:.0f}"
    if col in ("trainable_params", "total_params"):
        return f"{int(v):,}"
    if col in _P:
        return "<0.001" if v < 0.001 else f"{v:.3f}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def md_table(rows: Sequence[dict], columns: Sequence[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(" ".join(fmt(c, r).split()).replace("|", "\\|") for c in columns) + " |" for r in rows]
    return out


def _counts(t: dict) -> str:
    return ", ".join(f"{n} {s}" for s, n in t["status_counts"].items() if n) or "none"


def headline(t: dict) -> str:
    """The recommendation sentence (stored by :func:`harness.reporting.tables.tables_from_results`; rebuilt from
    the summary and the settings for a table that lacks it, e.g. ``comparison.json``'s metadata + summary)."""
    if t.get("recommendation"):
        return t["recommendation"]
    return recommendation(t["summary"], t.get("margin", 0.01), t.get("cost", "params"), t.get("metric"),
                          bool(t.get("selected_on_test")))


def settings_line(t: dict) -> str:
    return (f"Baseline `{t['baseline']}`; metric `{t['metric']}`; non-inferiority margin {t['margin']:g}; cost "
            f"`{t['cost']}`. Each strategy's configuration is selected on validation, its numbers are test numbers; "
            f"intervals are 95%, p-values BH-adjusted across strategies (see docs/metrics.md).")


def markdown(t: dict) -> str:
    """comparison.md: the recommendation, the verdicts, the details, every configuration, problem trials, columns."""
    lines = [f"# freezebench comparison: {t['sweep']}", "",
             f"{t['n_trials']} trials ({_counts(t)}). {settings_line(t)}", ""]
    if t["selected_on_test"]:
        lines += [f"> **Warning: {OPTIMISTIC}** ({t['n_selected_on_test']} ok trials).", ""]
    lines += [f"**Recommendation:** {headline(t)}", ""]
    if chance_line(t):
        lines += [chance_line(t), ""]
    lines += ["## Verdicts against full", "",
              *md_table(t["summary"], verdict_columns(t["cost"])), "",
              "## Selected configuration per strategy (details)", "", *md_table(t["summary"], t["summary_columns"]),
              "", "## All configurations (val_ = validation split, test_ = test split)", "",
              *md_table(t["rows"], t["columns"]), ""]
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
    elif col == "diff_ci95":
        text = fmt(col, s).replace(" … ", "..")
    else:
        text = fmt(col, s)
    return text if not width or len(text) <= width else text[:width - 1] + "…"


def summary_text(t: dict) -> str:
    """The per-strategy summary as a compact table for a 120-column terminal (notes as footnotes), ending with
    the recommendation sentence."""
    varied = [c for c in t["summary_columns"] if c not in SUMMARY_COLUMNS]
    spec = [("strategy", "strategy", 18, "<"), ("verdict", "verdict", 13, "<"), ("test", "test_score_mean", 6, ">"),
            ("Δ full", "diff_vs_full", 7, ">"), ("95% CI of Δ", "diff_ci95", 16, ">"), ("method", "test_method", 6, "<"),
            ("ok/n", "ok/n", 5, ">"), ("need", "seeds_needed", 4, ">"), ("p_adj", "p_adj", 6, ">"),
            ("ni_adj", "ni_p_adj", 6, ">"), ("ratio", "trainable_ratio", 6, ">"), ("lr", "lr", 7, ">"),
            ("bs", "batch_size", 4, ">")]
    extra = [(c, c, max(len(c), 6), ">") for c in varied]
    if sum(w + 1 for *_, w, _ in [*spec, *extra]) <= 120:
        spec += extra
    head = " ".join(f"{h:{a}{w}}" for h, _, w, a in spec)
    lines = [f"freezebench report: {t['sweep']} - {t['n_trials']} trials ({_counts(t)})",
             *textwrap.wrap(f"{t['metric']} on test, selected configuration per strategy vs {t['baseline']}; verdict "
                            f"= non-inferiority at margin {t['margin']:g} (one-sided 95%); p BH-adjusted:", width=118)]
    if t["selected_on_test"]:
        lines += textwrap.wrap(f"WARNING: {OPTIMISTIC}.", width=118, subsequent_indent="  ")
    lines += [head, "-" * len(head)]
    lines += [" ".join(f"{_console_cell(c, s, w):{a}{w}}" for _, c, w, a in spec).rstrip() for s in t["summary"]]
    notes = [f"{s['strategy']}: {s['note']}" for s in t["summary"] if s["note"]]
    if notes:
        lines += textwrap.wrap("* " + "; ".join(notes), width=118, subsequent_indent="  ")
    lines += textwrap.wrap(chance_line(t), width=118, break_on_hyphens=False)
    return "\n".join([*lines, "", *textwrap.wrap("Recommendation: " + headline(t), width=118,
                                             break_on_hyphens=False, break_long_words=False)])


def to_csv(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buf.getvalue()
