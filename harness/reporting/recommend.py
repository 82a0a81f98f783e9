"""The one sentence that answers the user: which strategy to use instead of ``full``.

The cheapest strategy (by ``report.cost``: trainable parameters, wall-clock time, peak memory or training
FLOPs) whose verdict is ``non-inferior`` or ``superior`` at the margin, with its numbers; or, when none is, what to run next
(``seeds_needed`` of the inconclusive strategies). It reads only the summary lines and the settings that
``comparison.json`` stores in its metadata, so the W&B adapter can rebuild it from that file.
"""
from __future__ import annotations

from typing import Any, Sequence

from harness.reporting.columns import BASELINE, COSTS
from harness.reporting.compare import MAX_SEEDS

__all__ = ["recommendation", "cheapest"]

_OK = ("superior", "non-inferior")


def _p(value: Any) -> str:
    return "–" if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"


def _cost_text(s: dict, base: dict, cost: str) -> str:
    col = COSTS[cost][0]
    if cost == "params":
        ratio = f"{s['trainable_ratio']:.1%} of the parameters, " if s.get("trainable_ratio") is not None else ""
        return f"{ratio}{int(s[col]):,} trainable"
    unit, digits = ("s per trial", 1) if cost == "time" else ("MiB peak", 0)
    against = f" against {base[col]:,.{digits}f} for {BASELINE}" if base.get(col) is not None else ""
    return f"{s[col]:,.{digits}f} {unit}{against}"


def cheapest(summary: Sequence[dict], cost: str) -> dict | None:
    """The non-inferior-or-superior strategy with the lowest cost (ties: higher test score, then table order)."""
    col = COSTS[cost][0]
    ok = [s for s in summary if s.get("verdict") in _OK and s.get(col) is not None]
    return min(ok, key=lambda s: (s[col], -(s.get("test_score_mean") or 0.0)), default=None)


def _needs(s: dict) -> str:
    has = f"(has {s.get('n_ok') or 0})"
    if s.get("seeds_needed") is not None:
        return f"{s['strategy']} needs {s['seeds_needed']} seeds per side {has}"
    if (s.get("n_ok") or 0) < 2:
        return f"{s['strategy']} needs at least 2 seeds per side {has}"
    return f"{s['strategy']} needs more than {MAX_SEEDS} seeds per side, or a different margin {has}"


def _names(rows: Sequence[dict], cap: int = 4) -> str:
    names = [s["strategy"] for s in rows]
    return ", ".join(names[:cap]) + (f" and {len(names) - cap} more" if len(names) > cap else "")


def recommendation(summary: Sequence[dict], margin: float, cost: str, metric: str | None,
                   optimistic: bool = False) -> str:
    """One sentence, the same in the console, comparison.md, comparison.json and report.html."""
    metric = metric or "score"
    tail = "; selected on test: optimistic." if optimistic else "."
    at = f"at a margin of {margin:g} {metric}"
    base = next((s for s in summary if s.get("verdict") == "baseline"), None)
    others = [s for s in summary if s.get("strategy") != BASELINE]
    if base is None:
        return f"No recommendation: the sweep has no '{BASELINE}' baseline with an ok trial to compare against{tail}"
    if not others:
        return f"Nothing to recommend: the sweep has no strategy besides '{BASELINE}'{tail}"
    col, words = COSTS[cost]
    pick = cheapest(summary, cost)
    if pick is not None and base.get(col) is not None and pick[col] >= base[col]:
        ok = [s for s in summary if s.get("verdict") in _OK]
        return (f"Keep {BASELINE}: it is already the cheapest by {words} ({_cost_text(base, base, cost)}) among the "
                f"strategies that are non-inferior to it {at} ({_names(ok)}){tail}")
    if pick is not None:
        ci = (f"95% CI {pick['diff_ci_low']:+.4f} to {pick['diff_ci_high']:+.4f}, "
              if pick.get("diff_ci_low") is not None else "")
        return (f"Use {pick['strategy']}: the cheapest strategy by {words} ({_cost_text(pick, base, cost)}) that is "
                f"{pick['verdict']} to {BASELINE} {at}: test {metric} {pick['test_score_mean']:.4f}, "
                f"{pick['diff_vs_full']:+.4f} against {BASELINE} ({ci}{pick.get('test_method')} t-test over "
                f"{pick.get('n_ok')} seeds; non-inferiority p {_p(pick.get('ni_p_value'))}, BH-adjusted "
                f"{_p(pick.get('ni_p_adj'))}){tail}")
    open_ = sorted((s for s in others if s.get("verdict") == "inconclusive"),
                   key=lambda s: (s.get(col) is None, s.get(col) or 0))
    if open_:
        return (f"No strategy is shown non-inferior to {BASELINE} {at}: keep {BASELINE} for now; to decide, run more "
                f"seeds: {'; '.join(_needs(s) for s in open_[:3])}{tail}")
    worse = [s for s in others if s.get("verdict") == "inferior"]
    why = f" ({_names(worse)} inferior)" if worse else " (no other strategy has an ok trial)"
    return f"No strategy is non-inferior to {BASELINE} {at}: keep {BASELINE}{why}{tail}"
