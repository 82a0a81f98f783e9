"""The sweep's status line: its ETA counts the steps running trials reported, so it falls while they run."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from harness.adapters.ray import progress
from harness.adapters.ray.progress import ProgressCallback


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress.time, "time", c)
    return c


def _trial(tid: str, max_steps: int = 100):
    return SimpleNamespace(config={"trial": {"trial_id": tid, "train": {"max_steps": max_steps}}}, last_result={})


def test_eta_falls_while_long_trials_run_and_none_has_finished(clock):
    cb = ProgressCallback(total=4, console=lambda line: None, live=False)
    a, b = _trial("a"), _trial("b")
    cb.on_trial_start(0, [], a)
    cb.on_trial_start(0, [], b)
    assert cb.eta() is None                                  # nothing done yet: no estimate
    etas = []
    for step in (25, 50, 75):                                # both trials at the same pace: 100 s per 25 steps
        clock.now += 100
        cb.on_trial_result(0, [], a, {"step": step})
        cb.on_trial_result(0, [], b, {"step": step})
        etas.append(cb.eta())
    # 2 slots, 400 s per trial: 4 trials take 800 s; at t = 100, 200, 300 the rest is 700, 600, 500 s
    assert etas == pytest.approx([700, 600, 500])


def test_eta_after_a_finish_counts_the_finished_trial_whole(clock):
    cb = ProgressCallback(total=3, console=lambda line: None, live=False)
    a, b = _trial("a"), _trial("b")
    cb.on_trial_start(0, [], a)
    cb.on_trial_start(0, [], b)
    clock.now += 100
    cb.on_trial_result(0, [], b, {"step": 50})
    a.last_result = {"status": "ok", "done": True, "val_score": 0.5}
    cb.on_trial_complete(0, [], a)
    # done: 1 trial + half of b = 1.5 trials in 100 s; left: 3 - 1 - 0.5 = 1.5 trials -> 100 s
    assert cb.eta() == pytest.approx(100)
    assert "ETA 1m40s" in cb.status() and "1/3 done, 1 running, 1 pending" in cb.status()


def test_a_trial_handed_back_as_already_finished_is_counted_once_and_not_said_to_finish(clock):
    """Tune reschedules a trial that finished after its last snapshot; the trainable hands the stored result
    back without running it. The log must not claim a second finish, and the trial counts as done, once."""
    lines: list[str] = []
    cb = ProgressCallback(total=2, console=lines.append, live=False)
    a = _trial("a")
    cb.on_trial_start(0, [], a)
    a.last_result = {"status": "ok", "done": True, "final_val_score": 0.75, "already_finished": True}
    cb.on_trial_complete(0, [], a)
    assert not any("| finished a" in line for line in lines), lines
    assert any("a had already finished; not rerun" in line for line in lines), lines
    assert "1/2 done, 0 running, 1 pending" in cb.status()
    assert cb.durations == []                                # its (zero) run time does not feed the ETA
