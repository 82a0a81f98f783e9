"""One writer per results folder: the sweep's lock on ``results/<sweep>``, held as a renewed lease.

``results/<sweep>/sweep.lock`` names its holder (host, pid, start time, SLURM job) and when it last renewed it.
A second sweep on the same folder - a double submit, a requeued SLURM job overlapping one still running - finds
it and stops (:class:`LockHeld`, exit 2 naming the holder) before it writes anything. A lock whose holder is
gone is *stale* and may be taken over:

* on this host (same boot): its pid is dead, or is now another process (pid reused; start times differ);
* on another host (shared storage): it has not been renewed for longer than its lease - by the holder's clock
  (``renewed_at``), or, while waiting, by ours (the file did not change for a whole lease), which no clock skew
  between nodes can fool.

A live holder on this host is never declared stale, however long since it renewed (a suspended laptop wakes up
and keeps writing); stop it first. Why not ``fcntl.flock``? On NFS and Lustre it is local to a node or not
supported, and it would not name the holder. Creation is ``link()`` of a complete temp file (atomic on NFS too);
take-over renames the stale file away first, so of two sweeps taking over at once exactly one wins.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

from harness.results.lock_holder import DEFAULT_LEASE_S, boot_id, describe, is_stale, read_holder, start_ticks

__all__ = ["LOCK_FILE", "LockHeld", "SweepLock", "read_holder", "describe", "is_stale"]

LOCK_FILE = "sweep.lock"


class LockHeld(RuntimeError):
    """Another sweep holds the folder (or a stale lock was found where taking over is not allowed)."""


class SweepLock:
    """``with SweepLock(folder).acquire(takeover=...):`` - holds ``folder/sweep.lock`` and renews it."""

    def __init__(self, folder: str | Path, lease_s: Optional[float] = None, console: Callable[[str], Any] = print):
        self.path = Path(folder) / LOCK_FILE
        self.lease_s = float(lease_s or os.environ.get("FREEZEBENCH_LOCK_LEASE") or DEFAULT_LEASE_S)
        self.console = console
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.lost: Optional[str] = None
        self._started = time.time()

    def _record(self) -> dict:
        now = time.time()
        return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": start_ticks(os.getpid()),
                "boot_id": boot_id(), "started_at": self._started, "renewed_at": now,
                "lease_s": self.lease_s, "slurm_job": os.environ.get("SLURM_JOB_ID"), "token": self.token}

    def _temp(self) -> Path:
        fd, tmp = tempfile.mkstemp(prefix=".sweep.lock.", suffix=".tmp", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self._record(), fh)
        return Path(tmp)

    def _try_create(self) -> bool:
        tmp = self._temp()
        try:
            os.link(tmp, self.path)          # fails if a lock exists; the new file is whole from the start
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def acquire(self, *, takeover: bool, wait_s: float = 0.0) -> "SweepLock":
        """Take the lock. A stale one is taken over (with a message) when ``takeover``; a live holder is waited
        for up to ``wait_s`` seconds (a requeued job whose predecessor is still shutting down). Raises LockHeld."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + wait_s
        seen: tuple[Optional[str], float] = (None, time.monotonic())   # (file content, when we first saw it)
        while True:
            if self._try_create():
                break
            rec = read_holder(self.path)
            if rec is None:
                continue                     # released between our two looks
            content = json.dumps(rec, sort_keys=True)
            if content != seen[0]:
                seen = (content, time.monotonic())
            stale, why = is_stale(rec)
            if not stale and time.monotonic() - seen[1] > float(rec.get("lease_s") or self.lease_s):
                stale, why = True, f"unchanged for a whole lease ({self.lease_s:.0f} s) while we waited"
            if stale and takeover:
                if self._take_over(rec, why):
                    break
                continue
            if stale:
                raise LockHeld(f"{self.path}: a stale lock of an earlier sweep ({describe(rec)}; {why}); that sweep "
                               f"was interrupted: continue it with --resume (or start over with --overwrite)")
            if time.monotonic() >= deadline:
                raise LockHeld(f"{self.path}: another sweep is writing to this folder ({describe(rec)}; {why}); "
                               f"wait for it to finish, stop it, or use another name (--set name=...)")
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        self._thread = threading.Thread(target=self._renew_loop, name="freezebench-lock", daemon=True)
        self._thread.start()
        return self

    def _take_over(self, rec: dict, why: str) -> bool:
        aside = self.path.with_name(f".{LOCK_FILE}.stale-{self.token}")
        try:
            os.rename(self.path, aside)      # atomic: of two sweeps taking over, one rename finds no file
        except FileNotFoundError:
            return False
        moved = read_holder(aside)
        if moved is None or moved.get("token") != rec.get("token") or moved.get("pid") != rec.get("pid"):
            try:                             # we moved a lock taken meanwhile by someone else: put it back
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return False
        aside.unlink(missing_ok=True)
        if not self._try_create():
            return False
        self.console(f"taking over the stale lock {self.path} ({describe(rec)}; {why})")
        return True

    def owned(self) -> bool:
        rec = read_holder(self.path)
        return bool(rec and rec.get("token") == self.token)

    def _renew_loop(self) -> None:
        """Renew every lease/4 (ownership checked first); a lock found taken over is reported, never retaken."""
        while not self._stop.wait(self.lease_s / 4):
            if not self.owned():
                rec = read_holder(self.path)
                self.lost = describe(rec) if rec else "nobody (the lock file was removed)"
                self.console(f"warning: lost the lock {self.path} to {self.lost}; another sweep may now write here")
                return
            tmp = self._temp()
            try:
                os.replace(tmp, self.path)
            except OSError as exc:           # e.g. a full disk: the lease runs out, say so once
                tmp.unlink(missing_ok=True)
                self.console(f"warning: cannot renew the lock {self.path}: {exc}")

    def folder_renamed(self, renamed_to: str | Path) -> None:
        """The locked folder was renamed to ``renamed_to`` (``--overwrite`` keeps the old results there), so our
        lock went with it: lock the (new, empty) folder at the old path again, and drop the moved lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._try_create():
            rec = read_holder(self.path) or {}
            raise LockHeld(f"{self.path}: another sweep started in this folder meanwhile ({describe(rec)})")
        (Path(renamed_to) / LOCK_FILE).unlink(missing_ok=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.owned():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "SweepLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
