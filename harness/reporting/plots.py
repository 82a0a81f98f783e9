"""PNG figures of a sweep (matplotlib, Agg backend) under ``results/<sweep>/plots/``.

Every figure shows each strategy's *selected configuration* (chosen on validation, see
:func:`harness.reporting.summary.select`): the validation curve and train loss against step (mean over ok seeds,
min–max band), the Pareto view (test score against the report's cost, front marked, colour = verdict, labels
placed so that none overlaps another label or a marker: :mod:`harness.reporting.labels`) and stability.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import harness.reporting.fields as f  # noqa: E402
from harness.reporting.columns import COSTS  # noqa: E402
from harness.reporting.labels import place_labels, segment_boxes  # noqa: E402

__all__ = ["write_plots", "pareto_figure", "PLOT_FILES", "VERDICT_COLORS", "DPI"]

PLOT_FILES = {"pareto": "score_vs_cost.png", "val_curve": "val_score_vs_step.png",
              "train_loss": "train_loss_vs_step.png", "stability": "stability.png"}
VERDICT_COLORS = {"superior": "#1a9850", "non-inferior": "#4575b4", "inconclusive": "#999999",
                  "inferior": "#d73027", "baseline": "#000000", None: "#cccccc"}
_AXIS = {"params": "trainable parameters", "time": "wall-clock seconds per trial", "memory": "peak memory (MiB)",
         "flops": "training TFLOPs"}
_META = {"Software": None}  # no matplotlib version in the PNG: identical results give identical bytes
DPI = 110
_MARKER = 70.0               # scatter area, points²


def _colors(strategies: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(strategies) <= 10 else "tab20")
    return {s: cmap(i % cmap.N) for i, s in enumerate(strategies)}


def _band(trials: Sequence[dict], field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps and mean/min/max of ``field`` over ok seeds, at the steps every seed evaluated."""
    curves = [dict(f.curve(t) if field == f.CURVE_FIELD else f.series(t.get("history"), field)) for t in trials]
    curves = [c for c in curves if c]
    if not curves:
        return (np.zeros(0),) * 4
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    y = np.array([[c[s] for s in steps] for c in curves], dtype=float).reshape(len(curves), len(steps))
    return np.asarray(steps), y.mean(0), y.min(0), y.max(0)


def _save(fig: plt.Figure, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata=_META)
    plt.close(fig)
    return path


def _curves(selected: Mapping[str, list[dict]], colors: dict, field: str, ylabel: str, title: str,
            path: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=DPI)
    drawn = False
    for strategy, trials in selected.items():
        steps, mean, lo, hi = _band(trials, field)
        if not len(steps):
            continue
        ax.plot(steps, mean, color=colors[strategy], lw=1.8, label=f"{strategy} (n={len(trials)})")
        ax.fill_between(steps, lo, hi, color=colors[strategy], alpha=0.18, lw=0)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(xlabel="optimizer step", ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", title="strategy (ok seeds)", title_fontsize=8)
    return _save(fig, path)


def _limits(values: Sequence[float], log: bool, pad: float) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:
        k = (hi / lo) ** pad if hi > lo else 2.0
        return lo / k, hi * k
    span = (hi - lo) or max(abs(hi) * 0.1, 0.01)
    return lo - pad * span, hi + pad * span


def _step_points(front: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The corners of ``ax.step(where="post")`` through the front points."""
    out = [front[0]]
    for (x0, y0), (x1, y1) in zip(front[:-1], front[1:]):
        out += [(x1, y0), (x1, y1)]
    return out


def pareto_figure(summary: Sequence[dict], cost: str, metric: str) -> plt.Figure | None:
    """Test score against cost, one point per strategy; colour = verdict, black ring + dashed line = Pareto
    front, bar = ±1 std over seeds. Labels are placed last, on the final layout."""
    col = COSTS[cost][0]
    pts = [s for s in summary if s.get("test_score_mean") is not None and s.get(col) is not None]
    if not pts:
        return None
    xs, ys = [float(s[col]) for s in pts], [s["test_score_mean"] for s in pts]
    log = min(xs) > 0 and max(xs) / min(xs) > 20
    fig, ax = plt.subplots(figsize=(9, 5.2), dpi=DPI)
    for s, x, y in zip(pts, xs, ys):
        on = bool(s.get("pareto"))
        ax.errorbar(x, y, yerr=s.get("test_score_std") or 0.0, fmt="none", ecolor="0.6", lw=0.8, capsize=2, zorder=1)
        ax.scatter(x, y, s=_MARKER, color=VERDICT_COLORS.get(s.get("verdict"), "#cccccc"), zorder=3,
                   marker="s" if s.get("verdict") == "baseline" else "o",
                   edgecolors="black" if on else "white", linewidths=1.6 if on else 0.8)
    front = sorted((x, y) for s, x, y in zip(pts, xs, ys) if s.get("pareto"))
    if front:
        ax.step(*zip(*front), where="post", color="black", ls="--", lw=0.9, alpha=0.6, zorder=2)
    if log:
        ax.set_xscale("log")
    ax.set_xlim(*_limits(xs, log, 0.15))
    ax.set_ylim(*_limits(ys, False, 0.25))
    ax.set(xlabel=f"{_AXIS[cost]}{' (log scale)' if log else ''}: lower is cheaper",
           ylabel=f"test {metric} (mean over seeds)")
    ax.set_title(f"Test {metric} vs {COSTS[cost][1]}, selected configuration per strategy", fontsize=10)
    ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], ls="none", marker="o", color=c, label=v) for v, c in VERDICT_COLORS.items()
               if v and any(s.get("verdict") == v for s in pts)]
    handles += [plt.Line2D([], [], ls="none", marker="o", mfc="white", mec="black", mew=1.6, label="Pareto front"),
                plt.Line2D([], [], color="0.6", lw=0.8, label="±1 std over seeds")]
    legend = ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    order = sorted(range(len(pts)), key=lambda i: not pts[i].get("pareto"))  # the front gets the best spots
    fig.canvas.draw()
    lines = segment_boxes(ax, *zip(*_step_points(front))) if len(front) > 1 else []
    for s, x, y in zip(pts, xs, ys):
        sd = s.get("test_score_std") or 0.0
        lines += segment_boxes(ax, [x, x], [y - sd, y + sd]) if sd else []
    place_labels(ax, [(xs[i], ys[i], pts[i]["strategy"], _MARKER) for i in order],
                 obstacles=[legend.get_window_extent(fig.canvas.get_renderer())], soft=lines)
    return fig


def _stability(summary: Sequence[dict], path: Path) -> Path | None:
    pts = [s for s in summary if s["test_score_mean"] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(pts) + 2), 4.5), dpi=DPI)
    x, w = np.arange(len(pts)), 0.38
    std = [s["test_score_std"] if s["test_score_std"] is not None else np.nan for s in pts]
    osc = [s["oscillation"] if s["oscillation"] is not None else np.nan for s in pts]
    ax.bar(x - w / 2, std, w, label="test_score_std across seeds", color="tab:blue")
    ax.bar(x + w / 2, osc, w, label="oscillation (mean |Δ val score|, 2nd half)", color="tab:orange")
    for i in np.flatnonzero(np.isnan(std)):
        ax.annotate("n<2", (x[i] - w / 2, 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    top = np.nanmax([*std, *osc, 0.0])
    ax.set_ylim(0, top * 1.3 if top > 0 and math.isfinite(top) else 1.0)
    ax.set_xticks(x, [s["strategy"] for s in pts], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="metric units (fraction)", title="Stability of each strategy's selected config (lower is steadier)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return _save(fig, path)


def write_plots(t: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write the four figures (those with any data) of tables ``t`` into ``out_dir``; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    selected, summary, metric = t["selected"], t["summary"], t["metric"]
    colors = _colors([s["strategy"] for s in summary])
    pareto = pareto_figure(summary, t["cost"], metric)
    made = {   # the Pareto view first: it is the one that answers the question
        "pareto": _save(pareto, out / PLOT_FILES["pareto"], tight=False) if pareto is not None else None,
        "val_curve": _curves(selected, colors, f.CURVE_FIELD, f"validation {metric} (curve subset)",
                             f"Validation {metric} vs step, selected config per strategy (mean, band = min–max over "
                             "seeds)", out / PLOT_FILES["val_curve"]),
        "train_loss": _curves(selected, colors, "train_loss", "train loss (mean since previous eval)",
                              "Train loss vs step, selected config per strategy (mean, band = min–max over seeds)",
                              out / PLOT_FILES["train_loss"]),
        "stability": _stability(summary, out / PLOT_FILES["stability"]),
    }
    return {k: v for k, v in made.items() if v is not None}
