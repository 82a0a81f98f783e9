"""The results-folder lock (harness/results/lock.py) with real processes: a live holder refuses, a dead one, a
reused pid, a rebooted host and a foreign host that stopped renewing are stale; take-over is atomic."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.results.lock import LOCK_FILE, LockHeld, SweepLock, is_stale, read_holder


def _write(folder: Path, **rec) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    path.write_text(json.dumps(rec))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _ours(**extra) -> dict:
    me = SweepLock(".")._record()
    return {**me, **extra}


def test_lock_names_its_holder_and_a_second_one_is_refused(tmp_path):
    first = SweepLock(tmp_path, console=lambda m: None).acquire(takeover=False)
    rec = read_holder(tmp_path / LOCK_FILE)
    assert rec["host"] == socket.gethostname() and rec["pid"] == os.getpid() and rec["token"] == first.token
    for takeover in (False, True):                         # a live holder is never taken over, not even by --resume
        with pytest.raises(LockHeld) as info:
            SweepLock(tmp_path).acquire(takeover=takeover)
        assert f"pid {os.getpid()}" in str(info.value) and socket.gethostname() in str(info.value)
        assert "another sweep is writing" in str(info.value)
    first.release()
    assert not (tmp_path / LOCK_FILE).exists()
    SweepLock(tmp_path).acquire(takeover=False).release()  # free again


def test_a_live_process_on_this_host_holds_even_without_renewing(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        from harness.results.lock_holder import start_ticks
        _write(tmp_path, **_ours(pid=sleeper.pid, pid_start=start_ticks(sleeper.pid), renewed_at=time.time() - 1e6,
                                 token="x"))
        assert is_stale(read_holder(tmp_path / LOCK_FILE)) == (False, "its process is running on this host")
        with pytest.raises(LockHeld):
            SweepLock(tmp_path).acquire(takeover=True)
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("case", ["dead_pid", "reused_pid", "rebooted", "foreign_host_expired", "damaged_old"])
def test_stale_lock_is_taken_over_only_with_takeover(case, tmp_path):
    if case == "dead_pid":
        _write(tmp_path, **_ours(pid=_dead_pid(), token="old"))
    elif case == "reused_pid":                              # the pid is alive, but it is another process now
        _write(tmp_path, **_ours(pid_start=12345, token="old"))
    elif case == "rebooted":
        _write(tmp_path, **_ours(boot_id="another-boot", token="old"))
    elif case == "foreign_host_expired":
        _write(tmp_path, host="node-gone", pid=4242, renewed_at=time.time() - 600, lease_s=60, token="old")
    else:                                                   # unreadable record: counts from its mtime
        path = _write(tmp_path)
        path.write_text("{trunc")
        os.utime(path, (time.time() - 600, time.time() - 600))
    stale, why = is_stale(read_holder(tmp_path / LOCK_FILE))
    assert stale, why
    with pytest.raises(LockHeld) as info:
        SweepLock(tmp_path).acquire(takeover=False)
    assert "stale lock" in str(info.value) and "--resume" in str(info.value)
    said = []
    lock = SweepLock(tmp_path, console=said.append).acquire(takeover=True)
    assert read_holder(tmp_path / LOCK_FILE)["token"] == lock.token
    assert len(said) == 1 and "taking over the stale lock" in said[0], said
    lock.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left beside it


def test_foreign_holder_that_renews_is_held_and_one_that_stops_goes_stale_while_waiting(tmp_path):
    """Another host's holder is judged by its lease. While we wait, a file that does not change for a whole
    lease is stale by our own clock, whatever the holder's clock says (renewed_at far in the future)."""
    path = _write(tmp_path, host="node-b", pid=7, renewed_at=time.time(), lease_s=1.0, token="b")
    stop = threading.Event()

    def renew():
        while not stop.wait(0.2):
            path.write_text(json.dumps({"host": "node-b", "pid": 7, "renewed_at": time.time(), "lease_s": 1.0,
                                        "token": "b", "n": time.monotonic()}))

    t = threading.Thread(target=renew)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(LockHeld) as info:
            SweepLock(tmp_path, lease_s=1.0).acquire(takeover=True, wait_s=2.5)
        assert time.monotonic() - t0 >= 2.4 and "node-b" in str(info.value)
    finally:
        stop.set()
        t.join()
    _write(tmp_path, host="node-b", pid=7, renewed_at=time.time() + 3600, lease_s=1.0, token="b")  # clock skew
    said = []
    t0 = time.monotonic()
    lock = SweepLock(tmp_path, lease_s=1.0, console=said.append).acquire(takeover=True, wait_s=10)
    assert 0.9 <= time.monotonic() - t0 < 5 and "unchanged for a whole lease" in said[0], said
    lock.release()


def test_lock_is_renewed_and_a_lost_lock_is_reported(tmp_path):
    said = []
    lock = SweepLock(tmp_path, lease_s=0.4, console=said.append).acquire(takeover=False)
    first = read_holder(tmp_path / LOCK_FILE)["renewed_at"]
    time.sleep(0.5)
    assert read_holder(tmp_path / LOCK_FILE)["renewed_at"] > first
    _write(tmp_path, host="node-c", pid=9, renewed_at=time.time(), lease_s=60, token="c")   # taken over
    time.sleep(0.4)
    assert any("lost the lock" in m and "node-c" in m for m in said), said
    lock.release()
    assert read_holder(tmp_path / LOCK_FILE)["token"] == "c"   # never removes a lock that is not its own


def test_two_takeovers_at_once_one_wins(tmp_path):
    """Four processes take over the same stale lock at the same moment (released together once all have
    imported): exactly one holds it."""
    _write(tmp_path / "lock", **_ours(pid=_dead_pid(), token="old"))
    code = ("import os, sys, time; from harness.results.lock import SweepLock, LockHeld\n"
            "open(os.path.join(sys.argv[2], str(os.getpid())), 'w').close()\n"
            "while not os.path.exists(os.path.join(sys.argv[2], 'go')): time.sleep(0.001)\n"
            "try:\n    SweepLock(sys.argv[1], console=lambda m: None).acquire(takeover=True)\n"
            "    print('won', flush=True)\n"
            "    t = time.time()\n"   # hold it until every other process has answered (a late one could
            "    while not os.path.exists(os.path.join(sys.argv[2], 'end')) and time.time() - t < 120:\n"
            "        time.sleep(0.01)\n"   # otherwise take over, rightly, the lock of a winner that exited)
            "except LockHeld:\n    print('held', flush=True)\n")
    ready = tmp_path / "ready"
    ready.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "lock"), str(ready)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
             for _ in range(4)]
    deadline = time.time() + 120
    while len(os.listdir(ready)) < len(procs):
        assert time.time() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.05)
    (ready / "go").touch()
    deadline = time.time() + 120
    while sum(p.poll() is not None for p in procs) < len(procs) - 1 and time.time() < deadline:
        time.sleep(0.05)                                   # the three that lost have answered and exited
    (ready / "end").touch()
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["held"] * 3 + ["won"], outs
