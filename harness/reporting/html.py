"""One self-contained ``report.html``: inline CSS, figures as base64 ``data:`` URIs, no external assets.

Read top to bottom on a laptop: the recommendation and the verdict table come first and fit the screen (the
verdict next to the strategy); the wide tables follow, each scrolling inside its own box with the strategy
column pinned; then the trials that did not finish ok and "how to read this".
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.reporting.columns import verdict_columns
from harness.reporting.chance import chance_line
from harness.reporting.format import OPTIMISTIC, fmt, headline, settings_line

__all__ = ["render_html", "CAPTIONS", "HOW_TO_READ"]

CAPTIONS = {
    "val_curve": "Validation score on the fixed curve subset against step: selected configuration of each strategy, "
                 "mean over ok seeds, band = min–max.",
    "train_loss": "Training loss (mean over the steps since the previous evaluation) against step.",
    "pareto": "Test score against the report's cost; colour = verdict against full, black ring and dashed line = "
              "Pareto front (no other strategy is at least as good and at most as costly), bar = ±1 std over seeds.",
    "stability": "Seed-to-seed spread of the test score (test_score_std) and late-training oscillation of the "
                 "validation curve.",
}
HOW_TO_READ = [
    "<b>Selection on validation.</b> Each configuration (strategy × every hyper-parameter except the seed) is "
    "trained once per seed. Each strategy's configuration with the highest mean <code>val_score</code> (validation "
    "split) is selected; the tables then report its <i>test</i> numbers, so the choice and the report do not use "
    "the same data. When a sweep has no validation split the selection reads the test split and the report says "
    "<i>selected on test: optimistic</i>.",
    "<b>The margin.</b> The verdict answers “can I use this instead of full and lose at most <i>margin</i> "
    "(report.margin, in metric units; 0.01 = one point)?”. From the one-sided 95% interval of the difference to "
    "full: <i>superior</i> if its lower bound is above 0, <i>non-inferior</i> if above −margin, <i>inferior</i> if "
    "the upper bound is below −margin, else <i>inconclusive</i>. The difference is paired over seeds when both "
    "sides ran the same seeds with the same batch size (same data order and head init), Welch otherwise "
    "(<code>test_method</code>).",
    "<b>Adjusted p-values.</b> Every strategy is compared with full, so some comparisons come out small by chance. "
    "<code>p_adj</code> and <code>ni_p_adj</code> are the Benjamini–Hochberg adjustments (false discovery rate) "
    "across the strategies of the sweep of the two-sided difference test and the one-sided non-inferiority test; "
    "a note marks a non-inferior verdict whose adjusted p is 0.05 or more.",
    "<b>The bootstrap.</b> <code>boot_ci_low/high</code> resample the test examples (the same examples for both "
    "strategies) and the seeds, recomputing the metric from <code>predictions.parquet</code>: an interval that also "
    "carries the test set's own sampling noise. Empty when the trials saved no predictions.",
    "<b>Inconclusive</b> means the seeds do not yet tell: the interval straddles −margin. <code>seeds_needed</code> "
    "is how many seeds per side would decide it with 80% power if the observed difference and spread are the truth "
    "— compare it with <code>n_ok</code> and run that many, or accept a wider margin. An empty cell (–) means not "
    "available, e.g. a standard deviation from a single seed.",
]
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1400px;
padding:0 1em;color:#222;box-sizing:border-box}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
.muted{color:#666}.rec{font-size:1.08em;background:#eef5ff;border-left:4px solid #4575b4;padding:.6em .9em;margin:.8em 0}
.warn{background:#fff3cd;border-left:4px solid #d39e00;padding:.5em .9em;margin:.8em 0}
.scroll{overflow-x:auto;max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.t,th.t{text-align:left}td.note{white-space:normal;min-width:16em;max-width:32em}
.scroll th:first-child,.scroll td:first-child{position:sticky;left:0;background:#fff;z-index:1;
box-shadow:1px 0 0 #ddd}.scroll th:first-child{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}
.superior{background:#d9f2d9!important;font-weight:600}.non-inferior{background:#dde8f7!important;font-weight:600}
.inferior{background:#f7d4d4!important;font-weight:600}.inconclusive{background:#eee!important}
.baseline{background:#e4e4e4!important;font-weight:600}
figure{display:inline-block;margin:.5em 1em .5em 0;max-width:100%}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#555;max-width:880px}dt{font-family:monospace;font-weight:600}dd{margin:0 0 .4em 1.5em}
td.reason{white-space:normal;text-align:left;max-width:700px;font-family:monospace;font-size:11.5px}
"""
_TEXT = {"strategy", "scheduler", "verdict", "note", "trial_id", "status", "reason", "metric", "test_method"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


_SCORE = {"test_score_mean", "diff_vs_full", "diff_ci95", "val_score_mean", "test_score_std", "test_score_ci95"}


def _table(rows: Sequence[dict], columns: Sequence[str], scroll: bool = True, kind: str = "",
           docs: Mapping[str, str] | None = None, metric: str | None = None) -> str:
    def head_cell(c: str) -> str:
        unit = f"<br><small>{_e(metric)}</small>" if metric and c in _SCORE else ""
        tip = f' title="{_e(docs[c])}"' if docs and c in docs else ""
        return f'<th class="{"t" if c in _TEXT else ""}"{tip}>{_e(c)}{unit}</th>'

    head = "".join(head_cell(c) for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            cls = ["t"] if c in _TEXT else []
            if c == "verdict" and r.get(c):
                cls.append(str(r[c]))
            if c in ("reason", "note"):
                cls.append(c)
            cells.append(f'<td class="{" ".join(cls)}">{_e(fmt(c, r))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = f'<table class="{kind}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return f'<div class="scroll">{table}</div>' if scroll else table


def _figure(name: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(CAPTIONS.get(name, name))}</figcaption></figure>")


MAX_HTML_ROWS = 300   # a page stays readable at 10,000 trials: the best configurations per strategy, all in the CSV


def _best_rows(rows: Sequence[dict], limit: int = MAX_HTML_ROWS) -> tuple[list[dict], str]:
    """At most ``limit`` configuration rows: the best per strategy by validation score (sweep order kept), and the
    note saying how many are left out (comparison.csv holds every one)."""
    if len(rows) <= limit:
        return list(rows), ""
    by_strategy: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_strategy.setdefault(str(r.get("strategy")), []).append(i)
    per = max(1, limit // max(1, len(by_strategy)))
    keep = set()
    for idx in by_strategy.values():
        ranked = sorted(idx, key=lambda i: -(rows[i].get("val_score_mean") if rows[i].get("val_score_mean")
                                               is not None else float("-inf")))
        keep.update(ranked[:per])
    shown = [r for i, r in enumerate(rows) if i in keep]
    return shown, (f"<p class=\"muted\">Showing {len(shown):,} of {len(rows):,} configurations: the best {per} per "
                   "strategy by validation score. comparison.csv holds every one.</p>")


def render_html(t: Mapping[str, Any], figures: Mapping[str, Path] | None = None) -> str:
    """The whole page as a string, from :func:`harness.reporting.build_tables` output and {name: png path}."""
    counts = ", ".join(f"{n} {s}" for s, n in t["status_counts"].items() if n)
    rows, note = _best_rows(t["rows"])
    parts = [f"<h1>freezebench: {_e(t['sweep'])}</h1>"]
    if t["selected_on_test"]:
        parts.append(f'<p class="warn"><b>Warning: {_e(OPTIMISTIC)}</b> ({t["n_selected_on_test"]} ok trials).</p>')
    parts += [f'<p class="rec" id="recommendation"><b>Recommendation.</b> {_e(headline(t))}</p>',
              f'<p class="muted">{t["n_trials"]} trials ({_e(counts)}). '
              f"{_e(settings_line(t).replace('`', ''))}"
              f"{' ' + _e(chance_line(t)) if chance_line(t) else ''}"
              "</p>",
              '<h2 id="verdicts">Verdicts against full</h2>',
              _table(t["summary"], verdict_columns(t["cost"]), scroll=False, kind="verdicts",
                     docs=t["column_definitions"], metric=t["metric"])]
    if figures:
        parts += ["<h2>Figures</h2>", *(_figure(k, p) for k, p in figures.items())]
    parts += ['<h2 id="details">Selected configuration per strategy (details)</h2>',
              _table(t["summary"], t["summary_columns"], kind="details", docs=t["column_definitions"],
                     metric=t["metric"]),
              "<h2>All configurations (one row per configuration, aggregated over seeds; val_ = validation, test_ = "
              "test split)</h2>", note, _table(rows, t["columns"], kind="rows", docs=t["column_definitions"])]
    parts.append("<h2>Trials that did not finish ok</h2>")
    if t["problems"]:
        problems = t["problems"][:MAX_HTML_ROWS]
        if len(t["problems"]) > len(problems):
            parts.append(f'<p class="muted">The first {len(problems):,} of {len(t["problems"]):,} (all in '
                         "comparison.json).</p>")
        parts.append(_table(problems, ["trial_id", "strategy", "status", "step", "reason"]))
    else:
        parts.append("<p>None: every trial finished ok.</p>")
    parts += ['<h2 id="how-to-read">How to read this</h2>', *(f"<p>{p}</p>" for p in HOW_TO_READ), "<dl>",
              *(f"<dt>{_e(c)}</dt><dd>{_e(d)}</dd>" for c, d in t["column_definitions"].items()), "</dl>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>freezebench: {_e(t['sweep'])}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
