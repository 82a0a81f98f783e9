"""One self-contained ``report.html``: inline CSS, figures as base64 ``data:`` URIs, no external assets.

Sections: headline and per-strategy summary with verdicts, figures, the full comparison table, trials that
did not finish ok (with reasons), and "how to read this" (the column definitions).
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.reporting.format import fmt, headline

__all__ = ["render_html", "CAPTIONS"]

CAPTIONS = {
    "accuracy": "Evaluation accuracy on the fixed curve subset against step: best configuration of each strategy, "
                "mean over ok seeds, band = min–max.",
    "train_loss": "Training loss (mean over the steps since the previous evaluation) against step.",
    "pareto": "Final accuracy against training throughput; marker area ∝ trainable ratio; dashed: Pareto front "
              "(no other strategy is both faster and more accurate).",
    "stability": "Seed-to-seed spread of the final accuracy (acc_std) and late-training oscillation of the curve.",
}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1400px;
padding:0 1em;color:#222}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
.muted{color:#666}.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;position:sticky;top:0}td.t,th.t{text-align:left}
tr:nth-child(even) td{background:#fafafa}
.better{background:#d9f2d9!important;font-weight:600}.worse{background:#f7d4d4!important;font-weight:600}
.indistinguishable{background:#eee!important}.baseline{background:#dbe8f7!important;font-weight:600}
figure{display:inline-block;margin:.5em 1em .5em 0;max-width:100%}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:12px;color:#555;max-width:880px}dt{font-family:monospace;font-weight:600}dd{margin:0 0 .4em 1.5em}
td.reason{white-space:normal;text-align:left;max-width:700px;font-family:monospace;font-size:11.5px}
"""
_TEXT = {"strategy", "scheduler", "verdict", "note", "trial_id", "status", "reason"}


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    head = "".join(f'<th class="{"t" if c in _TEXT else ""}">{_e(c)}</th>' for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            cls = ["t"] if c in _TEXT else []
            if c == "verdict" and r.get(c):
                cls.append(str(r[c]))
            if c == "reason":
                cls.append("reason")
            cells.append(f'<td class="{" ".join(cls)}">{_e(fmt(c, r))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _figure(name: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(CAPTIONS.get(name, name))}</figcaption></figure>")


def render_html(t: Mapping[str, Any], figures: Mapping[str, Path] | None = None) -> str:
    """The whole page as a string, from :func:`harness.reporting.build_tables` output and {name: png path}."""
    counts = ", ".join(f"{n} {s}" for s, n in t["status_counts"].items() if n)
    parts = [f"<h1>freezebench: {_e(t['sweep'])}</h1>",
             f'<p class="muted">{t["n_trials"]} trials ({_e(counts)}). Baseline <code>{_e(t["baseline"])}</code>; '
             f"verdicts from Welch's t-test on final accuracy over seeds at α = {t['alpha']}.</p>",
             f"<p><b>{_e(headline(t))}</b></p>",
             "<h2>Best configuration per strategy</h2>", _table(t["summary"], t["summary_columns"])]
    if figures:
        parts += ["<h2>Figures</h2>", *(_figure(k, p) for k, p in figures.items())]
    parts += ["<h2>All configurations (one row per configuration, aggregated over seeds)</h2>",
              _table(t["rows"], t["columns"])]
    parts.append("<h2>Trials that did not finish ok</h2>")
    if t["problems"]:
        parts.append(_table(t["problems"], ["trial_id", "strategy", "status", "step", "reason"]))
    else:
        parts.append("<p>None: every trial finished ok.</p>")
    parts += ["<h2>How to read this</h2>",
              "<p>Each configuration (strategy × every hyper-parameter except the seed) is trained once per seed. "
              "The summary keeps each strategy's configuration with the highest mean final accuracy and compares "
              "its seeds with those of <code>full</code>'s best configuration. Pick a strategy that is "
              "<i>better</i> or <i>indistinguishable</i> while training fewer parameters or running faster; "
              "a small acc_std and oscillation mean a steadier strategy. An empty cell (–) means not "
              "available, e.g. a standard deviation from a single seed.</p><dl>",
              *(f"<dt>{_e(c)}</dt><dd>{_e(d)}</dd>" for c, d in t["column_definitions"].items()), "</dl>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>freezebench: {_e(t['sweep'])}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
