"""PNG figures of a sweep (matplotlib, Agg backend) under ``results/<sweep>/plots/``.

Every figure shows each strategy's *best configuration* (see :func:`harness.reporting.stats.best_configs`):
accuracy and train loss against step (mean over ok seeds, min–max band), accuracy against throughput
(Pareto view, marker area ∝ trainable ratio) and stability (acc_std and oscillation, grouped bars).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.reporting.stats import best_configs, series  # noqa: E402

__all__ = ["write_plots", "PLOT_FILES"]

PLOT_FILES = {"accuracy": "accuracy_vs_step.png", "train_loss": "train_loss_vs_step.png",
              "pareto": "accuracy_vs_throughput.png", "stability": "stability.png"}
_META = {"Software": None}  # no matplotlib version in the PNG: identical results give identical bytes


def _colors(strategies: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(strategies) <= 10 else "tab20")
    return {s: cmap(i % cmap.N) for i, s in enumerate(strategies)}


def _band(trials: Sequence[dict], field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps and mean/min/max of ``field`` over ok seeds, at the steps every seed evaluated."""
    curves = [dict(series(t.get("history"), field)) for t in trials if t.get("status") == "ok"]
    curves = [c for c in curves if c]
    if not curves:
        return (np.zeros(0),) * 4
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    y = np.array([[c[s] for s in steps] for c in curves], dtype=float).reshape(len(curves), len(steps))
    return np.asarray(steps), y.mean(0), y.min(0), y.max(0)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata=_META)
    plt.close(fig)
    return path


def _curves(best: dict, colors: dict, field: str, ylabel: str, title: str, path: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    drawn = False
    for strategy, (row, trials) in best.items():
        steps, mean, lo, hi = _band(trials, field)
        if not len(steps):
            continue
        ax.plot(steps, mean, color=colors[strategy], lw=1.8, label=f"{strategy} (n={row['n_ok']})")
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


def _pareto(summary: Sequence[dict], colors: dict, path: Path) -> Path | None:
    pts = [s for s in summary if s["acc_mean"] is not None and s["samples_per_s"] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    for s in pts:
        size = 40 + 600 * (s["trainable_ratio"] or 0.0)
        ax.errorbar(s["samples_per_s"], s["acc_mean"], yerr=s["acc_std"] or 0.0, fmt="none",
                    ecolor=colors[s["strategy"]], alpha=0.6, capsize=3)
        ax.scatter(s["samples_per_s"], s["acc_mean"], s=size, color=colors[s["strategy"]], alpha=0.75,
                   edgecolors="black", linewidths=0.5)
        ratio = f"{s['trainable_ratio']:.1%}" if s["trainable_ratio"] is not None else "?"
        ax.annotate(f"{s['strategy']}\n{ratio} trainable", (s["samples_per_s"], s["acc_mean"]),
                    textcoords="offset points", xytext=(size ** 0.5 / 2 + 4, 2), fontsize=7, va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})
    front, best_acc = [], -np.inf  # non-dominated: no other point is both faster and more accurate
    for s in sorted(pts, key=lambda s: (-s["samples_per_s"], -s["acc_mean"])):
        if s["acc_mean"] > best_acc:
            front.append(s)
            best_acc = s["acc_mean"]
    ax.plot([s["samples_per_s"] for s in front], [s["acc_mean"] for s in front], "k--", lw=1, alpha=0.6,
            label="Pareto front")
    ax.set(xlabel="training throughput (samples/s, mean over ok seeds)", ylabel="final accuracy (mean over seeds)",
           title="Accuracy vs speed, best config per strategy (marker area ∝ trainable ratio, bar = ±1 std)")
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.margins(x=0.15, y=0.12)
    return _save(fig, path)


def _stability(summary: Sequence[dict], path: Path) -> Path | None:
    pts = [s for s in summary if s["acc_mean"] is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(pts) + 2), 4.5))
    x, w = np.arange(len(pts)), 0.38
    std = [s["acc_std"] if s["acc_std"] is not None else np.nan for s in pts]
    osc = [s["oscillation"] if s["oscillation"] is not None else np.nan for s in pts]
    ax.bar(x - w / 2, std, w, label="acc_std across seeds (final accuracy)", color="tab:blue")
    ax.bar(x + w / 2, osc, w, label="oscillation (mean |Δ eval acc|, 2nd half)", color="tab:orange")
    for i in np.flatnonzero(np.isnan(std)):
        ax.annotate("n<2", (x[i] - w / 2, 0), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)
    top = np.nanmax([*std, *osc, 0.0])
    ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)
    ax.set_xticks(x, [s["strategy"] for s in pts], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="accuracy points (fraction)", title="Stability of each strategy's best config (lower is steadier)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2)
    return _save(fig, path)


def write_plots(results: Sequence[dict], summary: Sequence[dict], out_dir: str | Path) -> dict[str, Path]:
    """Write the four figures (those with any data) into ``out_dir``; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    best = {k: v for k, v in best_configs(results).items() if v[0] is not None}
    colors = _colors([s["strategy"] for s in summary])
    made = {
        "accuracy": _curves(best, colors, "val_score", "validation score (curve subset)",
                            "Eval accuracy vs step, best config per strategy (mean, band = min–max over seeds)",
                            out / PLOT_FILES["accuracy"]),
        "train_loss": _curves(best, colors, "train_loss", "train loss (mean since previous eval)",
                              "Train loss vs step, best config per strategy (mean, band = min–max over seeds)",
                              out / PLOT_FILES["train_loss"]),
        "pareto": _pareto(summary, colors, out / PLOT_FILES["pareto"]),
        "stability": _stability(summary, out / PLOT_FILES["stability"]),
    }
    return {k: v for k, v in made.items() if v is not None}
