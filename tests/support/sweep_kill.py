"""Kill a running sweep at a chosen moment, as a preemption or an OOM killer would."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

__all__ = ["sigkill_when"]


def sigkill_when(proc: subprocess.Popen, ready: Callable[[], bool], log: Path, timeout: float = 300,
                 settle: float = 0.0) -> None:
    """Wait until ``ready()`` holds, wait ``settle`` seconds more, then SIGKILL the sweep's whole process group
    (driver, Ray and its workers: ``proc`` was started with ``start_new_session``). Fails the test with the tail
    of ``log`` if the sweep exits first, and if it never reaches that point within ``timeout`` seconds."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if ready():
                time.sleep(settle)
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        else:
            pytest.fail("the sweep never reached the kill point")
    finally:
        with contextlib.suppress(ProcessLookupError):   # already gone: the assertion above says why
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
