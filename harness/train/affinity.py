"""Pin a CPU trial's threads to cores that no other freezebench trial on this node holds.

Why by hand: Ray schedules trials by CPU *count* and never hands a worker CPU ids (it only sets
``OMP_NUM_THREADS``), and torch has no cross-process core allocator. Left to the kernel, two one-thread trials on
a 2-core node migrate between the cores; pinned, each keeps its core's caches. Measured side by side on 2 cores
(MiniLM, batch 16 x 256, fp32, one thread each, two processes at once), unpinned against
pinned; ``python -m benchmarks.pin_threads`` (this code, 2 rounds alternating): 3.89 against 3.62 s/step, 1.07x.
In whole Ray sweeps, where the driver, raylet and W&B need the same cores, pinned trials were slower (1.09x the
wall time over three test-suite sweeps), so ``resources.pin_cpus`` is off by default.

A core is claimed with an exclusive ``flock`` on ``<tmp>/freezebench-cpus-<uid>/<cpu>.lock``: the kernel drops
the lock when the process ends, however it ends (SIGKILL, OOM, a preempted SLURM job), so a claim never goes
stale and nothing needs cleaning up. Only the CPUs this process may already run on are candidates
(``os.sched_getaffinity``: a SLURM job's cgroup, ``taskset``), so pinning only narrows what the scheduler allowed.
Where fewer cores are free than the trial has threads (more concurrent trials than cores), it is not pinned.
"""
from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import IO

__all__ = ["claim_cpus", "lock_dir", "release"]

log = logging.getLogger(__name__)
_held: dict[int, IO] = {}   # cpu -> its open, locked file (this process's claim; at most one claim per process)


def lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"freezebench-cpus-{os.getuid()}"


def _try_lock(folder: Path, cpu: int) -> IO | None:
    handle = open(folder / f"{cpu}.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def release() -> None:
    """Give this process's cores back (the kernel also does it when the process ends)."""
    for handle in _held.values():
        handle.close()   # closing the only descriptor drops the flock
    _held.clear()


def _pin_all_threads(cpus: set[int]) -> None:
    """``sched_setaffinity`` is per thread on Linux: set it on every thread this process has now (Ray's,
    W&B's, torch's); threads started later inherit it from the thread that starts them."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):   # a thread that ended meanwhile
            pass


def claim_cpus(n: int, folder: Path | None = None) -> list[int] | None:
    """Claim ``n`` cores and pin every thread of this process to them. Returns the cores, or None where
    pinning does not apply (not Linux, ``n`` covers every allowed core, or fewer than ``n`` are free).
    Calling it again with the same ``n`` keeps the claim (Ray reuses an actor for several trials)."""
    if not hasattr(os, "sched_setaffinity") or n < 1:
        return None
    if len(_held) == n:
        return sorted(_held)
    release()
    allowed = sorted(os.sched_getaffinity(0))
    if n >= len(allowed):
        return None
    folder = folder or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for cpu in allowed:
        handle = _try_lock(folder, cpu)
        if handle is not None:
            _held[cpu] = handle
            if len(_held) == n:
                break
    if len(_held) < n:
        log.debug("only %d of the %d cores asked for are free: this trial is not pinned", len(_held), n)
        release()
        return None
    cpus = sorted(_held)
    _pin_all_threads(set(cpus))
    log.debug("threads pinned to cores %s", cpus)
    return cpus
