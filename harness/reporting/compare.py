"""One strategy against the baseline over seeds: the difference with its confidence interval, the
non-inferiority verdict at a margin, how many seeds would decide it, and the Benjamini-Hochberg adjustment.

Every distribution comes from scipy: ``ttest_rel`` (paired) / ``ttest_ind(equal_var=False)`` (Welch) and their
``confidence_interval()``, the noncentral t (``scipy.stats.nct``) for the power, ``false_discovery_control`` for
the adjustment. The question is the user's: "can I use this instead of full and lose at most ``margin``?" —
non-inferiority, decided on the one-sided 95% interval of ``mean(candidate) - mean(full)``.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

from harness.reporting.columns import ALPHA, POWER

__all__ = ["difference", "power", "seeds_needed", "bh_adjust", "verdict_of", "MAX_SEEDS", "EMPTY"]

MAX_SEEDS = 1000          # seeds_needed searches 2..MAX_SEEDS per side; beyond that it says so in the note
EMPTY = {"diff_vs_full": None, "diff_ci_low": None, "diff_ci_high": None, "test_method": None, "p_value": None,
         "ni_p_value": None, "verdict": None, "seeds_needed": None, "note": ""}


def _ttest(a: np.ndarray, b: np.ndarray, paired: bool, alternative: str, alpha: float) -> tuple[float, float, float]:
    """(p-value, interval low, interval high) of the paired or Welch t-test at confidence 1 - alpha."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")        # scipy warns on zero variance; the caller notes it
        res = sps.ttest_rel(a, b, alternative=alternative) if paired else \
            sps.ttest_ind(a, b, equal_var=False, alternative=alternative)
        ci = res.confidence_interval(1 - alpha)
    return float(res.pvalue), float(ci.low), float(ci.high)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def verdict_of(lower: float, upper: float, margin: float) -> str:
    """Non-inferiority from the one-sided 95% bounds of the difference (candidate minus baseline)."""
    if lower > 0:
        return "superior"
    if lower > -margin:
        return "non-inferior"
    if upper < -margin:
        return "inferior"
    return "inconclusive"


def power(effect: float, n: Any, sd_a: float, sd_b: float = 0.0, paired: bool = False,
          alpha: float = ALPHA) -> np.ndarray:
    """Power of the one-sided t-test at level ``alpha`` to detect a true ``effect`` (> 0, in metric units, from
    the margin) with ``n`` seeds per side. Paired: ``sd_a`` is the sd of the per-seed differences, df = n - 1.
    Welch: sd_a, sd_b are the two sides' sds, df by Welch-Satterthwaite for n per side. Noncentral t (scipy)."""
    n = np.asarray(n, dtype=float)
    if paired:
        se, df = sd_a / np.sqrt(n), n - 1
    else:
        va, vb = sd_a ** 2, sd_b ** 2
        se, df = np.sqrt((va + vb) / n), (n - 1) * (va + vb) ** 2 / (va ** 2 + vb ** 2)
    return sps.nct.sf(sps.t.ppf(1 - alpha, df), df, effect / se)


def seeds_needed(diff: float, margin: float, sd_a: float, sd_b: float = 0.0, paired: bool = False,
                 alpha: float = ALPHA, target: float = POWER) -> int | None:
    """Smallest seeds per side (2..MAX_SEEDS) at which the one-sided test on the side of ``-margin`` where the
    observed ``diff`` lies (non-inferiority above it, inferiority below) has ``target`` power, taking the observed
    diff and spread as the truth. 2 with zero spread; None when diff sits on -margin or beyond MAX_SEEDS."""
    effect = abs(diff + margin)
    if effect == 0:
        return None
    if sd_a == 0 and sd_b == 0:
        return 2
    n = np.arange(2, MAX_SEEDS + 1)
    hit = np.flatnonzero(power(effect, n, sd_a, sd_b, paired, alpha) >= target)
    return int(n[hit[0]]) if hit.size else None


def difference(a: Sequence[float], b: Sequence[float], paired: bool, margin: float,
               alpha: float = ALPHA) -> dict[str, Any]:
    """Candidate seeds ``a`` against baseline seeds ``b`` (in seed order when ``paired``): diff of means, the
    two-sided (1 - alpha) interval and p-value, the non-inferiority p-value (H0: diff <= -margin), the verdict
    and seeds_needed. Fewer than 2 seeds on a side: inconclusive, with a note."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = {**EMPTY, "diff_vs_full": float(a.mean() - b.mean()), "test_method": "paired" if paired else "welch"}
    if len(a) < 2 or len(b) < 2:
        return {**out, "test_method": None, "verdict": "inconclusive",
                "note": "too few seeds (fewer than 2 ok on a side): run at least 2, better 3+, of each"}
    p, low, high = _ttest(a, b, paired, "two-sided", alpha)
    lower = _ttest(a, b, paired, "greater", alpha)[1]
    upper = _ttest(a, b, paired, "less", alpha)[2]
    ni = _ttest(a + margin, b, paired, "greater", alpha)[0]
    sd_a, sd_b = (float(np.std(a - b, ddof=1)), 0.0) if paired else (float(a.std(ddof=1)), float(b.std(ddof=1)))
    zero = sd_a == 0 and sd_b == 0
    return {**out, "diff_ci_low": _finite(low), "diff_ci_high": _finite(high), "p_value": _finite(p),
            "ni_p_value": _finite(ni), "verdict": verdict_of(lower, upper, margin),
            "seeds_needed": seeds_needed(out["diff_vs_full"], margin, sd_a, sd_b, paired, alpha),
            "note": "zero variance: every seed scored the same, the interval is a point" if zero else ""}


def bh_adjust(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (scipy ``false_discovery_control``) over the non-None entries."""
    idx = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if idx:
        adj = sps.false_discovery_control([p_values[i] for i in idx], method="bh")
        for i, p in zip(idx, adj):
            out[i] = float(p)
    return out
