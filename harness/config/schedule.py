"""The order trials start in: the most expensive first (longest-processing-time first), so the last trials to
finish are short ones and no slot idles while one long trial runs alone at the end of a sweep."""
from __future__ import annotations

from typing import Sequence, TypeVar

__all__ = ["longest_first"]

T = TypeVar("T")


def longest_first(trials: Sequence[T], costs: Sequence[float]) -> list[T]:
    """``trials`` sorted by ``costs`` (same order), most expensive first; ties keep the plan's order."""
    if len(trials) != len(costs):
        raise ValueError(f"{len(trials)} trials but {len(costs)} costs")
    order = sorted(range(len(trials)), key=lambda i: (-costs[i], i))
    return [trials[i] for i in order]
