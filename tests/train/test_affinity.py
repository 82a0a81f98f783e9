"""Core claims for CPU trials (harness.train.affinity): real flock, real sched_setaffinity, in child processes
(a claim pins the whole process, so none is ever made in the pytest process itself)."""
from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from harness.adapters.ray.common import pin_trial
from harness.config import ResourcesConfig
from tests.support.core_claims import holder

CPUS = sorted(os.sched_getaffinity(0))
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="claims need at least 2 allowed cores to narrow anything")
CTX = mp.get_context("spawn")


def _start(folder, n):
    ready, done, out = CTX.Event(), CTX.Event(), CTX.Queue()
    proc = CTX.Process(target=holder, args=(folder, n, ready, done, out), daemon=True)
    proc.start()
    assert ready.wait(60), "the child did not claim in time"
    return proc, done, out.get(timeout=10)


@needs_two
def test_two_trials_claim_different_cores_and_pin_every_thread(tmp_path):
    first, stop1, a = _start(tmp_path, 1)
    second, stop2, b = _start(tmp_path, 1)
    try:
        assert a["cpus"] is not None and b["cpus"] is not None and len(a["cpus"]) == len(b["cpus"]) == 1
        assert set(a["cpus"]).isdisjoint(b["cpus"])
        assert a["again"] == a["cpus"]                      # a reused actor keeps its claim
        for got in (a, b):
            assert all(v == got["cpus"] for v in got["threads"].values())   # every thread of the process
            assert got["threads"][got["early"]] == got["cpus"]   # a thread started before the claim
    finally:
        stop1.set(), stop2.set()
        first.join(30), second.join(30)


@needs_two
def test_a_killed_trials_cores_are_free_again(tmp_path):
    holders = [_start(tmp_path, 1) for _ in CPUS]           # every allowed core held
    try:
        late, stop_late, got = _start(tmp_path, 1)
        assert got["cpus"] is None                          # none free: not pinned
        assert all(v == CPUS for v in got["threads"].values())   # affinity untouched
        stop_late.set(), late.join(30)
        victim, _, held = holders.pop(0)
        victim.kill()                                        # SIGKILL: the kernel drops its flock
        victim.join(30)
        after, stop_after, freed = _start(tmp_path, 1)
        assert freed["cpus"] == held["cpus"]
        stop_after.set(), after.join(30)
    finally:
        for proc, stop, _ in holders:
            stop.set(), proc.join(30)


def test_a_claim_of_every_allowed_core_changes_nothing(tmp_path):
    proc, stop, got = _start(tmp_path, len(CPUS))
    stop.set(), proc.join(30)
    assert got["cpus"] is None and all(v == CPUS for v in got["threads"].values())


@pytest.mark.parametrize("resources", [
    ResourcesConfig(cpus_per_trial=0.5, pin_cpus=True),      # trials share a core: left to the OS
    ResourcesConfig(cpus_per_trial=1),                       # the default: off
    ResourcesConfig(cpus_per_trial=1, gpus_per_trial=1, pin_cpus=True),  # GPU trials: not pinned
    ResourcesConfig(cpus_per_trial=3, workers_per_trial=2, pin_cpus=True),  # 3 cores do not split over 2 workers
])
def test_trials_that_are_not_pinned(resources, monkeypatch):
    monkeypatch.setattr("harness.adapters.ray.common.claim_cpus", lambda n: pytest.fail("claimed"))
    assert pin_trial(resources, resources.workers_per_trial) is None


def test_each_data_parallel_worker_claims_its_share(monkeypatch):
    asked = []
    monkeypatch.setattr("harness.adapters.ray.common.claim_cpus", lambda n: asked.append(n) or list(range(n)))
    assert pin_trial(ResourcesConfig(cpus_per_trial=4, workers_per_trial=2, pin_cpus=True), 2) == [0, 1]
    assert asked == [2]
