"""A real SLURM cluster on this machine for tests: its own munged, one slurmctld and two slurmd ("fb1", "fb2",
both on this host, each on its own port), everything (key, config, state, spool, logs) under one temp dir.

Two slurmd make a two-node allocation possible on one machine, so the batch script's multi-node path (Ray
head on the first node, ``srun -w fb2`` for a Ray worker on the second) runs for real. Needs root and the
Debian packages ``slurm-wlm munge``. :func:`slurm_cluster` is a session fixture: started once, reused when it
is already up, torn down (jobs cancelled, daemons stopped by pid, temp dir removed) at the end.
With ``CI`` set, a missing SLURM fails the tests instead of skipping them.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

__all__ = ["SlurmCluster", "slurm_missing", "slurm_cluster", "NODES"]

NODES = ("fb1", "fb2")
_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "srun")


def slurm_missing() -> str | None:
    """Why a local SLURM cluster cannot run here, or None."""
    missing = [b for b in _BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM not installed (missing {', '.join(missing)}; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (SlurmUser=root)"
    return None


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    """Start/stop and small helpers; every command runs with this cluster's ``SLURM_CONF``."""

    def __init__(self, base: Path):
        self.base = Path(base)
        self.conf = self.base / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for key in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k != "SLURM_CONF"]:
            del self.env[key]          # tests may themselves run inside a SLURM job
        self.started: list[Path] = []  # pid files of the daemons this object started

    # -- commands ------------------------------------------------------------------------------------
    def run(self, *cmd, check=True, timeout=60, env=None) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})})
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    def job(self, job_id: str) -> dict:
        """``scontrol show job`` as a dict (JobState, Restarts, ExitCode, ...); {} once the job is forgotten."""
        proc = self.run("scontrol", "-o", "show", "job", job_id, check=False)
        out = {}
        for item in proc.stdout.split():
            key, _, value = item.partition("=")
            out.setdefault(key, value)
        return out

    def wait_job(self, job_id: str, until, timeout: float, what: str = "", poll: float = 0.5) -> dict:
        """Poll the job until ``until(job_dict)`` is true; TimeoutError with the job's state otherwise."""
        deadline = time.time() + timeout
        info = {}
        while time.time() < deadline:
            info = self.job(job_id)
            if until(info):
                return info
            time.sleep(poll)
        raise TimeoutError(f"job {job_id}: {what or 'condition'} not reached in {timeout:.0f}s; "
                           f"state {info.get('JobState')} reason {info.get('Reason')}")

    def start_now(self, job_id: str, settle: float = 60) -> None:
        """A requeued job waits ~2 minutes (SLURM's fixed requeue delay); let it start at once.

        First wait (up to ``settle`` s) until no node is still COMPLETING the job's previous run, then two
        seconds more: a launch onto a node whose slurmd is still cleaning up, or within the second its old
        credential was revoked, fails the job outright (FAILED 1:0, no output)."""
        deadline = time.time() + settle
        while time.time() < deadline:
            states = self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=20).stdout.split()
            if states and not any("comp" in s.lower() for s in states):
                break
            time.sleep(0.5)
        # slurmd revokes the killed run's credential and refuses any credential of that job created in the same
        # second ("Job credential revoked", FAILED 1:0); SLURM's own requeue delay never hits this, a test does
        time.sleep(2)
        self.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")

    def daemon_logs(self, chars: int = 1500) -> str:
        """The end of every SLURM daemon log of this cluster (for failure messages)."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}"
                         for p in sorted((self.base / "log").glob("slurm*.log")))

    # -- life cycle ----------------------------------------------------------------------------------
    def _alive(self, pidfile: Path) -> bool:
        try:
            os.kill(int(pidfile.read_text().split()[0]), 0)
            return True
        except (OSError, ValueError):
            return False

    def is_up(self) -> bool:
        if not self.conf.exists():
            return False
        ping = self.run("scontrol", "ping", check=False, timeout=20)
        if "UP" not in ping.stdout:
            return False
        info = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False, timeout=20).stdout.split("\n")
        return sum(1 for line in info if line.split()[1:2] and line.split()[1].startswith(("idle", "mix", "alloc"))) \
            == len(NODES)

    def _write_config(self) -> None:
        b = self.base
        for sub in ("munge", "state", "log", *(f"spool/{n}" for n in NODES)):
            (b / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(b / "munge", 0o755)                       # munged wants an accessible socket folder
        key = b / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            os.chmod(key, 0o400)
        host = socket.gethostname().split(".")[0]
        ctld, *slurmd = _free_ports(1 + len(NODES))
        nodes = "\n".join(f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={p} CPUs=2 RealMemory=4000 "
                          f"State=UNKNOWN" for n, p in zip(NODES, slurmd))
        self.conf.write_text(f"""\
# freezebench test cluster (tests/support/slurm_cluster.py): {len(NODES)} slurmd on this host
ClusterName=fbtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={b}/munge/munge.sock
StateSaveLocation={b}/state
SlurmdSpoolDir={b}/spool/%n
SlurmctldPidFile={b}/slurmctld.pid
SlurmdPidFile={b}/slurmd-%n.pid
SlurmctldLogFile={b}/log/slurmctld.log
SlurmdLogFile={b}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobRequeue=1
KillWait=10
MinJobAge=600
{nodes}
PartitionName=debug Nodes={','.join(NODES)} Default=YES MaxTime=INFINITE State=UP
""")

    def _daemon(self, pidfile: Path, *cmd) -> None:
        self.run(*cmd, timeout=60)
        deadline = time.time() + 20
        while not self._alive(pidfile):
            if time.time() > deadline:
                raise RuntimeError(f"{cmd[0]} did not start; see {self.base / 'log'}")
            time.sleep(0.2)
        self.started.append(pidfile)

    def start(self, timeout: float = 60) -> "SlurmCluster":
        """Idempotent: a cluster already up under ``base`` is reused."""
        if self.is_up():
            return self
        self._write_config()
        b = self.base
        if not self._alive(b / "munge" / "munged.pid"):
            self._daemon(b / "munge" / "munged.pid", "munged", f"--socket={b}/munge/munge.sock",
                         f"--key-file={b}/munge.key", f"--pid-file={b}/munge/munged.pid",
                         f"--log-file={b}/log/munged.log", f"--seed-file={b}/munge/munged.seed")
        if not self._alive(b / "slurmctld.pid"):
            self._daemon(b / "slurmctld.pid", "slurmctld", "-f", self.conf)
        for n in NODES:
            if not self._alive(b / f"slurmd-{n}.pid"):
                self._daemon(b / f"slurmd-{n}.pid", "slurmd", "-f", self.conf, "-N", n)
        deadline = time.time() + timeout
        while not self.is_up():
            if time.time() > deadline:
                logs = "\n".join(p.read_text()[-1500:] for p in sorted((b / "log").glob("*.log")))
                raise RuntimeError(f"SLURM test cluster did not come up in {timeout:.0f}s:\n{logs}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        """Cancel every job (their steps kill what the jobs started), then stop our daemons by pid."""
        if self.conf.exists() and self.started:
            self.run("scancel", "--full", "--partition=debug", check=False)
            deadline = time.time() + 60
            while time.time() < deadline and self.run("squeue", "-h", "-t", "R,CG,PD", check=False).stdout.strip():
                time.sleep(0.5)
        for pidfile in reversed(self.started):
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue
            deadline = time.time() + 15
            while time.time() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
        self.started = []


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running two-node SLURM cluster (skipped without SLURM; a failure when ``CI`` is set)."""
    reason = slurm_missing()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {reason}")
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="fbslurm-", dir="/tmp"))   # short path, world-executable (munge)
    os.chmod(base, 0o755)
    cluster = SlurmCluster(base)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        if not os.environ.get("FREEZEBENCH_KEEP_SLURM"):
            shutil.rmtree(base, ignore_errors=True)
