"""A child process that claims cores (harness.train.affinity) and holds them: light imports only, so a
``spawn`` child starts in well under a second."""
from __future__ import annotations

import os
import threading

from harness.train import affinity


def holder(folder, n, ready, done, out):
    """Claim n cores, report them and every thread's affinity, hold the claim until ``done`` is set."""
    early = threading.Thread(target=done.wait, daemon=True)   # started before the claim: must be pinned too
    early.start()
    cpus = affinity.claim_cpus(n, folder)
    again = affinity.claim_cpus(n, folder)
    threads = {int(t): sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
    out.put({"cpus": cpus, "again": again, "threads": threads, "early": early.native_id})
    ready.set()
    done.wait()
