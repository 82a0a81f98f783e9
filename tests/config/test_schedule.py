"""Trials start longest first (harness.train.cost + harness.config.schedule), so a sweep does not end with one
long trial running alone while the other slots idle."""
from __future__ import annotations

import heapq

import pytest

from harness.config import build_config, expand
from harness.config.schedule import longest_first
from harness.train import cost
from tests.conftest import tiny_sweep_dict


def _makespan(durations: list[float], slots: int) -> float:
    """Greedy list scheduling (what Ray Tune does with max_concurrent_trials): each trial to the first free slot."""
    free = [0.0] * slots
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def test_longest_first_is_stable_and_checks_lengths():
    assert longest_first(["a", "b", "c", "d"], [1, 3, 1, 3]) == ["b", "d", "a", "c"]
    with pytest.raises(ValueError, match="2 trials but 1 costs"):
        longest_first(["a", "b"], [1])


def test_step_units_rank_the_strategies():
    depth = 6
    full = cost.step_units(depth, -1, False)
    assert full == cost.step_units(depth, 0, False) == 3 * depth + 1          # freeze_attention: same work
    top2 = cost.step_units(depth, depth - 2, False)
    assert cost.step_units(depth, depth - 2, True) < top2 < full
    head = cost.step_units(depth, depth, False)
    assert cost.step_units(depth, depth, True) == 1 < head < top2


def test_sweep_trials_start_longest_first(tmp_path):
    """A quickstart-shaped plan (head_only with the cache first in the plan, then the fine-tuning strategies):
    the schedule puts the cheap cached head_only trials last, and on 2 slots that never ends later than the
    plan's order (here it ends sooner)."""
    d = tiny_sweep_dict(tmp_path, search={"strategy": [{"name": "head_only", "train": {"cache_frozen_prefix": True}},
                                                       {"name": "top_k", "params": {"k": 1}},
                                                       {"name": "full"}],
                                          "seed": [0, 1, 2]})
    trials = expand(build_config(d))
    costs = cost.estimate(trials)
    ordered = cost.schedule(trials)
    assert [t.strategy.name for t in ordered] == ["full"] * 3 + ["top_k"] * 3 + ["head_only"] * 3
    assert sorted(t.trial_id for t in ordered) == sorted(t.trial_id for t in trials)
    by_id = dict(zip((t.trial_id for t in trials), costs))
    assert _makespan([by_id[t.trial_id] for t in ordered], 2) <= _makespan(costs, 2)
    assert _makespan([by_id[t.trial_id] for t in ordered], 2) < _makespan(sorted(costs), 2)   # shortest first: worse


def test_schedule_falls_back_to_the_plan_order():
    class Broken:
        model = None
    trials = [Broken(), Broken()]
    assert cost.schedule(trials) == trials
