"""A lost node: a real two-node Ray cluster on this machine (two ``ray start``, each with its own temp dir, ports
and one CPU), the sweep joins it with ``--address``, and the worker node is SIGKILLed - raylet, agents and the
trial running on it - while a trial there is half-way (step 15 of 30, last checkpoint at 10).

Its trial must be rescheduled on the surviving node and resume from its step-10 checkpoint (losses bit-identical
to an uninterrupted run); every trial must finish exactly once (one start, one finish each in the driver's log,
except the killed one: started twice, finished once) and the sweep must exit 0.

The cluster uses token authentication (what ``slurm/sweep.sbatch`` does) and fast node-death detection
(GCS health checks every 0.5 s), so the test stays near a minute and a half.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.cli.test_faults import (fault_env, finish, results_of, start_sweep, tail, trial_ids, uninterrupted,
                                   write_config)
from tests.conftest import tiny_sweep_dict

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", *args, "--block"], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_started(proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while "Ray runtime started" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.time() < deadline, tail(log)
        time.sleep(0.3)


def _kill_node(proc: subprocess.Popen) -> list[int]:
    """SIGKILL a node: its ``ray start`` and everything it started (raylet, agents, workers), at once."""
    victims = [proc.pid]
    try:
        victims += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        pass
    victims += [p.pid for p in psutil.process_iter() if _pgid(p.pid) == proc.pid]
    for pid in dict.fromkeys(victims):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return victims


def _pgid(pid: int):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


@pytest.fixture(scope="module")
def lost_node(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("nodes")
    ray_tmp = Path(tempfile.mkdtemp(prefix="fbn-", dir="/tmp"))   # unix socket paths must stay short
    data = tiny_sweep_dict(tmp, name="nodes", train={"max_steps": 30, "eval_every": 5, "checkpoint_every": 10},
                           search={"seed": [0, 1, 2]}, resources={"cpus_per_trial": 1, "max_failures": 2},
                           output={"plots": False})
    pidfile = tmp / "doomed.json"
    env = fault_env(tmp, ray_tmp, {"node": {"on": "doomed", "pause_at": 15, "pidfile": str(pidfile)}},
                    RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                    RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="1000",
                    RAY_health_check_failure_threshold="4", RAY_health_check_initial_delay_ms="0")
    port = _free_port()
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=100000000",
              "--disable-usage-stats", "--min-worker-port=0", "--max-worker-port=0"]
    head = _ray_start(["--head", f"--port={port}", "--include-dashboard=false", f"--dashboard-port={_free_port()}",
                       f"--temp-dir={ray_tmp}/head",
                       f"--dashboard-agent-listen-port={_free_port()}", *common],
                      {**env, "FB_NODE": "head"}, tmp / "head.log")
    worker = sweep = None
    try:
        _wait_started(head, tmp / "head.log")
        worker = _ray_start([f"--address=127.0.0.1:{port}", f"--temp-dir={ray_tmp}/worker",
                             f"--dashboard-agent-listen-port={_free_port()}", *common],
                            {**env, "FB_NODE": "doomed"}, tmp / "worker.log")
        _wait_started(worker, tmp / "worker.log")
        log = tmp / "sweep.log"
        t0 = time.time()
        sweep = start_sweep(write_config(tmp / "nodes.yaml", data), env, log, "--address", f"127.0.0.1:{port}",
                            "--set", "logging.level=debug")   # the per-start lines count the restarts
        deadline = time.time() + 300
        while not pidfile.exists():
            assert sweep.poll() is None and time.time() < deadline, tail(log) + tail(tmp / "worker.log")
            time.sleep(0.2)
        doomed = json.loads(pidfile.read_text())
        victims = _kill_node(worker)
        killed_at = time.time() - t0
        rc = finish(sweep, timeout=400)
        return {"rc": rc, "log": log, "doomed": doomed, "victims": victims, "killed_at": killed_at,
                "seconds": time.time() - t0, "results": results_of(tmp / "results" / "nodes"), "data": data,
                "tmp": tmp, "ids": trial_ids(data), "head_pids": [head.pid] + [
                    p.pid for p in psutil.Process(head.pid).children(recursive=True)]}
    finally:
        if sweep is not None and sweep.poll() is None:
            finish(sweep, timeout=1)
        for proc in (worker, head):
            if proc is not None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_killed_worker_node_trial_resumes_on_the_surviving_node_from_its_checkpoint(lost_node):
    assert lost_node["rc"] == 0, tail(lost_node["log"])
    tid = lost_node["doomed"]["trial_id"]
    r = lost_node["results"][tid]
    assert r["status"] == "ok", (r.get("reason"), tail(lost_node["log"]))
    assert r["resumed_from_step"] == 10                     # the last checkpoint before the node died at 15
    assert r["env"]["raylet_pid"] != lost_node["doomed"]["raylet_pid"]        # ran again elsewhere:
    assert int(r["env"]["raylet_pid"]) in lost_node["head_pids"]               # on the surviving head node
    ref = uninterrupted(lost_node["data"], tid, lost_node["tmp"] / "reference")
    assert r["train_losses"] == ref["train_losses"] and len(r["train_losses"]) == 30


def test_every_trial_finishes_exactly_once_after_a_node_is_lost(lost_node):
    assert sorted(lost_node["results"]) == sorted(lost_node["ids"])
    log = lost_node["log"].read_text()
    tid = lost_node["doomed"]["trial_id"]
    for t, r in lost_node["results"].items():
        assert r["status"] == "ok" and [h["step"] for h in r["history"]] == list(range(0, 31, 5)), t
        assert len(re.findall(rf"\| finished {re.escape(t)}: ok", log)) == 1, t
        starts = len(re.findall(rf"\| started {re.escape(t)}$", log, re.M))
        assert starts == (2 if t == tid else 1), (t, starts)
    assert "trials: 3 ok" in log
