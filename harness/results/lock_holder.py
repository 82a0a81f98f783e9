"""Who holds a results folder's lock, and whether that holder is gone (see harness/results/lock.py).

A lock record names its holder: host, pid and the pid's start time (so a reused pid is told apart), the boot it
ran in, when it started and last renewed, its lease, its SLURM job. :func:`is_stale` applies the rules: on this
host a holder is judged by its process (dead, reused or from an earlier boot: stale; alive: never stale), on
another host by its lease.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

__all__ = ["DEFAULT_LEASE_S", "boot_id", "start_ticks", "read_holder", "is_stale", "describe"]

DEFAULT_LEASE_S = 60.0      # a holder renews every lease/4; FREEZEBENCH_LOCK_LEASE overrides (tests use seconds)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> Optional[int]:
    """The process's start time (clock ticks since boot, /proc/<pid>/stat field 22): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(path: Path) -> Optional[dict]:
    """The lock file's record; None when there is none. A damaged record is a holder we cannot identify: it
    counts as renewed when the file was last modified (so it turns stale a lease later)."""
    try:
        text = path.read_text(encoding="utf-8")
        st = path.stat()
    except FileNotFoundError:
        return None
    try:
        rec = json.loads(text)
        if not isinstance(rec, dict):
            raise ValueError("not an object")
    except ValueError:
        rec = {"host": "?", "pid": -1, "damaged": True}
    rec.setdefault("renewed_at", st.st_mtime)
    return rec


def is_stale(rec: dict, now: Optional[float] = None) -> tuple[bool, str]:
    """(stale?, why) for a lock record, by the rules in the module docstring (clock-based part only)."""
    now = time.time() if now is None else now
    lease = float(rec.get("lease_s") or DEFAULT_LEASE_S)
    age = now - float(rec.get("renewed_at") or 0)
    here = rec.get("host") == socket.gethostname() and not rec.get("damaged")
    if here and rec.get("boot_id") and rec.get("boot_id") != boot_id():
        return True, "this host has rebooted since"
    if here:
        pid = int(rec.get("pid", -1))
        if not _alive(pid):
            return True, f"its process {pid} is no longer running"
        if rec.get("pid_start") is not None and start_ticks(pid) != rec.get("pid_start"):
            return True, f"pid {pid} now belongs to another process"
        return False, "its process is running on this host"
    if age > lease:
        return True, f"not renewed for {age:.0f} s (lease {lease:.0f} s)"
    return False, f"renewed {max(0.0, age):.0f} s ago (lease {lease:.0f} s)"


def describe(rec: dict) -> str:
    started = rec.get("started_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    job = f", SLURM job {rec['slurm_job']}" if rec.get("slurm_job") else ""
    return f"host {rec.get('host')} pid {rec.get('pid')}{job}, started {when}"
