"""SLURM tier: ``harness.submit`` and ``slurm/sweep.sbatch`` under real SLURM (a two-node cluster on this machine,
tests/support/slurm_cluster.py), plus fast checks of rendering, validation and the driver's signal handling.

* two nodes: submit the smoke sweep on 2 nodes x 1 CPU; the job completes, the comparison table appears and
  the two trials ran on different SLURM nodes / Ray nodes (``env.slurm_node``, ``env.raylet_pid``).
* requeue: a 1-CPU job runs the 4 smoke trials one after another; after the first finishes an external
  ``scontrol requeue`` (SIGTERM path), after the second ``scancel --batch --signal=USR1`` (the time-limit
  path: the script saves, then requeues itself). Every trial finishes exactly once: finished trials keep
  their ``started_at``/``finished_at``, and no later run starts them again.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import submit
from harness.adapters.slurm.script import parse_time
from harness.adapters.slurm.signals import graceful_stop
from tests.conftest import ROOT
from tests.support.slurm_cluster import NODES, slurm_cluster  # noqa: F401 - session fixture

pytestmark = pytest.mark.slurm

SMOKE = "configs/smoke.yaml"


# ---- fast: no SLURM needed ------------------------------------------------------------------------------
def test_parse_time_formats():
    assert parse_time("90") == 90 * 60
    assert parse_time("10:30") == 10 * 60 + 30
    assert parse_time("04:00:00") == 4 * 3600
    assert parse_time("1-12") == 36 * 3600
    assert parse_time("2-01:30:05") == ((2 * 24 + 1) * 60 + 30) * 60 + 5
    for bad in ("", "0", "four hours", "1:2:3:4", "-5"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_dry_run_renders_the_allocation(tmp_path, capsys):
    rc = submit.main([SMOKE, "--nodes", "3", "--gpus-per-node", "4", "--cpus-per-node", "16", "--time", "02:00:00",
                      "--partition", "gpu", "--account", "proj1", "--results", str(tmp_path / "res"),
                      "--signal-before", "120", "--set", "train.lr=3e-4", "--dry-run"])
    script = capsys.readouterr().out
    assert rc == 0
    for line in ("#SBATCH --nodes=3", "#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=16",
                 "#SBATCH --time=02:00:00", "#SBATCH --partition=gpu", "#SBATCH --account=proj1",
                 "#SBATCH --signal=B:USR1@120", "#SBATCH --requeue", "#SBATCH --job-name=fb-smoke",
                 f"#SBATCH --output={tmp_path / 'res'}/slurm/%x-%j.out", f"RESULTS={tmp_path / 'res'}",
                 f"CONFIG={ROOT / SMOKE}", f"PYTHON={sys.executable}", "SWEEP_ARGS=(--set train.lr=3e-4)"):
        assert re.search(rf"^{re.escape(line)}(\s|$)", script, re.M), line
    assert "--resume" in script and 'WANDB_MODE="${WANDB_MODE:-offline}"' in script
    assert not (tmp_path / "res").exists()                     # a dry run writes nothing
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0


def test_dry_run_cpu_only_comments_out_gpus(tmp_path, capsys):
    assert submit.main([SMOKE, "--nodes", "1", "--gpus-per-node", "0", "--cpus-per-node", "2", "--dry-run",
                        "--results", str(tmp_path)]) == 0
    script = capsys.readouterr().out
    assert not re.search(r"^#SBATCH --gpus", script, re.M) and "##SBATCH --gpus-per-node=0" in script
    assert not re.search(r"^#SBATCH --(partition|account)", script, re.M)   # cluster defaults


@pytest.mark.parametrize("args, key", [
    (["--set", "train.lrr=1e-4"], "train.lrr"),
    (["--set", "data.source=./no/such/folder"], "data.source"),
    (["--set", "resources.cpus_per_trial=4"], "resources.cpus_per_trial"),
    (["--set", "resources.gpus_per_trial=1"], "resources.gpus_per_trial"),
    (["--time", "soon"], "--time"),
    (["--time", "4", "--signal-before", "300"], "--signal-before"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_exits_2_naming_the_problem(args, key, tmp_path, capsys, monkeypatch):
    def no_sbatch(*a, **k):
        raise AssertionError("sbatch was called")

    monkeypatch.setattr(subprocess, "run", no_sbatch)
    rc = submit.main([SMOKE, "--nodes", "1", "--gpus-per-node", "0", "--cpus-per-node", "2",
                      "--results", str(tmp_path / "res"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and key in err, err
    assert not (tmp_path / "res").exists()


def test_graceful_stop_routes_sigterm_to_tunes_handler():
    calls = []
    with graceful_stop(console=lambda msg: None) as stop:
        old = signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))   # what Tune installs in fit()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        signal.signal(signal.SIGUSR1, old)
    assert calls == [signal.SIGUSR1] and stop.signal == "SIGTERM"
    with graceful_stop(console=lambda msg: None) as stop:     # before Tune runs: leave the block at once
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(5)
        raise AssertionError("the signal did not interrupt the block")
    assert stop.signal == "SIGUSR1"
    assert signal.getsignal(signal.SIGTERM) is not None                 # handlers restored


# ---- real SLURM ------------------------------------------------------------------------------------------
def _submit(cluster, results: Path, cache_dir: Path, *args) -> tuple[str, str]:
    # Ray binds to loopback in tests: every "node" of the test cluster is this machine
    env = {"FREEZEBENCH_CACHE": str(cache_dir), "WANDB_MODE": "disabled", "FB_HEAD_IP": "127.0.0.1",
           "FB_NODE_IP": "127.0.0.1"}
    proc = cluster.run(sys.executable, "-m", "harness.submit", SMOKE, "--gpus-per-node", "0", "--time", "15",
                       "--results", results, *args, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = re.search(r"^submitted job (\d+)", proc.stdout, re.M).group(1)
    return job, proc.stdout


def _log(results: Path, job: str) -> str:
    path = results / "slurm" / f"fb-smoke-{job}.out"
    return path.read_text(errors="replace") if path.exists() else ""


def _results(results: Path) -> dict[str, dict]:
    out = {}
    for path in (results / "smoke" / "trials").glob("*/result.json"):
        try:
            r = json.loads(path.read_text())
        except ValueError:         # written atomically, but be safe
            continue
        out[r["trial_id"]] = r
    return out


def _ok(results: Path) -> dict[str, dict]:
    return {k: r for k, r in _results(results).items() if r.get("status") == "ok"}


def _wait(cond, timeout: float, what: str, results: Path, job: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; job log:\n{_log(results, job)[-4000:]}")


def _finished(cluster, job: str, results: Path, timeout: float = 300) -> dict:
    try:
        info = cluster.wait_job(job, lambda i: i.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                                     "NODE_FAIL", "OUT_OF_MEMORY"), timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\njob log:\n{_log(results, job)[-4000:]}") from None
    assert info["JobState"] == "COMPLETED" and info.get("ExitCode") == "0:0", \
        f"{info.get('JobState')} {info.get('ExitCode')} reason {info.get('Reason')}\n" \
        f"job log:\n{_log(results, job)[-4000:]}\nSLURM logs:\n{cluster.daemon_logs()}"
    return info


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_submit_two_nodes_runs_the_sweep_on_both(slurm_cluster, tmp_path, cache_dir):  # noqa: F811
    results = tmp_path / "results"
    job, out = _submit(slurm_cluster, results, cache_dir, "--nodes", "2", "--cpus-per-node", "1",
                       "--set", "search.seed=[0]")
    log = results / "slurm" / f"fb-smoke-{job}.out"
    assert str(results / "smoke") in out and str(log) in out and f"scancel {job}" in out
    _finished(slurm_cluster, job, results)
    text = _log(results, job)
    assert "ray: 2 nodes alive" in text
    done = _results(results)
    assert {r["strategy"] for r in done.values()} == {"full", "freeze_attention"}
    assert all(r["status"] == "ok" and r["test"]["step"] == 20 for r in done.values()), done
    assert {r["env"]["slurm_node"] for r in done.values()} == set(NODES), [r["env"] for r in done.values()]
    assert len({r["env"]["raylet_pid"] for r in done.values()}) == 2          # two Ray nodes
    assert {r["env"]["slurm_job_id"] for r in done.values()} == {job}
    comparison = results / "smoke" / "comparison.csv"
    assert comparison.exists(), text[-3000:]
    assert {"full", "freeze_attention"} <= set(re.findall(r"freeze_attention|full", comparison.read_text()))
    assert (results / "slurm" / f"fb-smoke-{job}.sbatch").exists()


def _requeued(cluster, job: str, restarts: int, results: Path) -> None:
    """Wait until the job is pending again after its ``restarts``-th requeue, then let it start at once."""
    try:
        cluster.wait_job(job, lambda i: i.get("JobState") == "PENDING" and i.get("Restarts") == str(restarts), 120,
                         f"requeue #{restarts}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\njob log:\n{_log(results, job)[-4000:]}") from None
    cluster.start_now(job)


@pytest.mark.slow
@pytest.mark.timeout(540)
def test_requeue_resumes_and_runs_every_trial_once(slurm_cluster, tmp_path, cache_dir):  # noqa: F811
    results = tmp_path / "results"
    # 1 CPU: the 4 smoke trials run one after another
    job, _ = _submit(slurm_cluster, results, cache_dir, "--nodes", "1", "--cpus-per-node", "1")

    first = _wait(lambda: _ok(results), 240, "a first finished trial", results, job)
    slurm_cluster.run("scontrol", "requeue", job)                        # SIGTERM to the whole job
    _requeued(slurm_cluster, job, 1, results)
    _wait(lambda: "(restart 1)" in _log(results, job), 60, "the restart", results, job)
    second = _wait(lambda: _ok(results) if len(_ok(results)) >= len(first) + 1 else None, 240,
                   "a trial finished after the first requeue", results, job)
    slurm_cluster.run("scancel", "--batch", "--signal=USR1", job)        # what --signal=B:USR1@N sends
    _requeued(slurm_cluster, job, 2, results)
    info = _finished(slurm_cluster, job, results)
    assert info["Restarts"] == "2"

    text = _log(results, job)
    done = _results(results)
    assert len(done) == 4 and all(r["status"] == "ok" for r in done.values()), {k: r["status"] for k, r in done.items()}
    for snapshot in (first, second):                                    # finished trials untouched
        for tid, before in snapshot.items():
            for key in ("started_at", "finished_at", "history"):
                assert done[tid][key] == before[key], (tid, key)
            assert done[tid]["env"]["slurm_restart_count"] == before["env"]["slurm_restart_count"]
    for r in done.values():
        assert [h["step"] for h in r["history"]] == [0, 5, 10, 15, 20], r["trial_id"]
    assert {r["env"]["slurm_restart_count"] or "0" for r in done.values()} == {"0", "1", "2"}

    # the log: three runs; a trial finished in one run is never started by a later one; each finishes once
    runs = re.split(r"^\[freezebench [\d:]+\] job \d+ \(restart \d+\)", text, flags=re.M)[1:]
    assert len(runs) == 3, text[-4000:]
    assert "TERM (cancelled, requeued or preempted)" in runs[0]
    assert "USR1 (time limit or preemption warning)" in runs[1] and "exited with 3" in runs[1]
    assert f"requeueing job {job}" in runs[1]
    assert "resuming sweep from" in runs[1] and "resuming sweep from" in runs[2]
    finished_before: set[str] = set()
    for run in runs:
        started = set(re.findall(r"\| started (\S+)", run))
        assert not started & finished_before, (started & finished_before, text[-4000:])
        finished_before |= set(re.findall(r"\| finished (\S+): ok", run))
    # a trial whose result was written just before a signal, but whose end the driver had not yet seen, is
    # handed back by the next run from its result ("had already finished; not rerun"), not run again
    finished = re.findall(r"\| finished (\S+): ok", text)
    handed_back = set(re.findall(r"\| (\S+) had already finished; not rerun", text))
    assert len(finished) == len(set(finished)), finished                  # none ran to its end twice
    assert set(finished) | handed_back == set(done), (finished, handed_back)
    assert (results / "smoke" / "comparison.csv").exists()
