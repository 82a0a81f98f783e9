"""Fault tier: a tiny random BERT on real IMDB text under real Ray, with faults injected at fixed points.

Faults are injected by a test-only ``sitecustomize`` (written by :func:`fault_env`) that every Python process of
a test sweep loads through ``PYTHONPATH`` - the driver and the Ray workers alike. It patches a few harness
functions when they are imported, keyed by trial id, so a fault hits one chosen trial at one chosen step:

* ``pause_at``: after that optimizer step the worker writes its pid to ``pidfile`` and waits; the test finds the
  process (a ``ray::`` worker under the driver) and SIGKILLs it.
* ``hold_at``: after that step the worker creates ``held`` and waits until the test creates ``release``.
* ``node`` (not per trial): the first trial to reach ``pause_at`` on the Ray node whose ``FB_NODE`` is ``on``
  writes its pid and trial id to ``pidfile`` and waits; the test kills that node (tests/adapters/test_ray_nodes.py).
* ``oom_at``: a real allocation failure before that step (8 GiB asked for under a ``RLIMIT_AS`` allowance).
* ``killpg_in_checkpoint``: at that step's checkpoint, write the weights file, then SIGKILL the whole sweep
  (driver, Ray, workers) before ``state.pt`` and the ``done`` marker exist.
* driver ``killpg_in_report``: SIGKILL the whole sweep while the comparison table is being written.
* driver ``record_ray``: after ``init_ray``, record the cluster's address, node IP and listening sockets.

The non-slow tests at the end need no Ray: corrupt checkpoints and a full disk, in process.
"""
from __future__ import annotations

import atexit
import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from harness.config import build_config
from harness.config.expand import expand
from harness.results.lock import LOCK_FILE
from tests.conftest import ROOT, tiny_sweep_dict
from tests.support.guards import forbid_model_loads, forbid_ray

HOOK = textwrap.dedent('''
    """freezebench fault injection for tests (see tests/cli/test_faults.py). Inert without FREEZEBENCH_FAULTS."""
    import importlib.machinery
    import json
    import os
    import signal
    import sys
    import time

    PLAN = json.loads(os.environ.get("FREEZEBENCH_FAULTS") or "{}")
    os.environ.setdefault("FREEZEBENCH_FAULT_PGID", str(os.getpgrp()))  # the driver's group; workers inherit it


    def _killpg():
        os.killpg(int(os.environ["FREEZEBENCH_FAULT_PGID"]), signal.SIGKILL)
        time.sleep(60)


    def _wait_ok(path, timeout=180):
        deadline = time.time() + timeout
        while path and time.time() < deadline:
            try:
                with open(path) as fh:
                    if json.load(fh).get("status") == "ok":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.2)


    def _oom():
        import resource
        import torch
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as fh:
            vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), hard))
        try:
            torch.ones(8 << 30, dtype=torch.uint8)    # 8 GiB against a 256 MiB allowance
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


    def _patch_trial(mod):
        train_step, checkpoint = mod._train_step, mod._checkpoint

        def _train_step(run, *args, **kwargs):
            fault = PLAN.get(run.cfg.trial_id, {})
            if fault.get("oom_at") == run.step:
                _oom()
            train_step(run, *args, **kwargs)
            node = PLAN.get("node", {})                 # the first trial to reach the step on that Ray node
            if node and os.environ.get("FB_NODE") == node["on"] and node["pause_at"] == run.step \
                    and not os.path.exists(node["pidfile"]):
                with open(node["pidfile"] + ".tmp", "w") as fh:
                    json.dump({"pid": os.getpid(), "trial_id": run.cfg.trial_id,
                               "raylet_pid": os.environ.get("RAY_RAYLET_PID")}, fh)
                os.replace(node["pidfile"] + ".tmp", node["pidfile"])
                time.sleep(600)                         # the test kills the whole node
            held = fault.get("held")
            if fault.get("hold_at") == run.step and held and not os.path.exists(held):
                open(held, "w").close()                 # then wait (at most 5 min) until the test releases it
                deadline = time.time() + 300
                while not os.path.exists(fault["release"]) and time.time() < deadline:
                    time.sleep(0.1)
            pidfile = fault.get("pidfile")
            if fault.get("pause_at") == run.step and pidfile and not os.path.exists(pidfile):
                with open(pidfile + ".tmp", "w") as fh:
                    fh.write(str(os.getpid()))
                os.replace(pidfile + ".tmp", pidfile)
                time.sleep(600)                         # the test SIGKILLs this process

        def _checkpoint(run, engine, stream):
            fault = PLAN.get(run.cfg.trial_id, {})
            if fault.get("killpg_in_checkpoint") == run.step:
                from safetensors.torch import save_file
                tmp = run.scratch / f"step_{run.step:07d}.tmp"
                tmp.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in engine.trainable_state().items()},
                          str(tmp / "trainable.safetensors"))
                _wait_ok(fault.get("wait_for"))
                _killpg()
            return checkpoint(run, engine, stream)

        mod._train_step, mod._checkpoint = _train_step, _checkpoint


    def _patch_report(mod):
        write = mod.write_json_atomic

        def write_json_atomic(path, obj):
            if PLAN.get("driver", {}).get("killpg_in_report") and str(path).endswith("comparison.json"):
                _killpg()
            return write(path, obj)

        mod.write_json_atomic = write_json_atomic


    def _patch_tune_runner(mod):
        init_ray = mod.init_ray

        def recorded(*args, **kwargs):
            init_ray(*args, **kwargs)
            path = PLAN.get("driver", {}).get("record_ray")
            if path:
                import psutil
                import ray
                node = ray._private.worker.global_worker.node
                listening = []
                me = psutil.Process()
                for proc in [me, *me.children(recursive=True)]:
                    try:
                        listening += [[proc.name(), c.laddr.ip, c.laddr.port] for c in proc.net_connections("inet")
                                      if c.status == psutil.CONN_LISTEN]
                    except psutil.Error:
                        pass
                info = {"gcs_address": ray.get_runtime_context().gcs_address,
                        "node_ip": node.node_ip_address, "session_dir": node.get_session_dir_path(),
                        "webui_url": node.address_info.get("webui_url"), "listening": listening,
                        "secrets_in_env": sorted(k for k in ("WANDB_API_KEY", "HF_TOKEN") if os.environ.get(k))}
                with open(path, "w") as fh:
                    json.dump(info, fh)

        mod.init_ray = recorded


    PATCHES = {"harness.train.trial": _patch_trial, "harness.reporting.write": _patch_report,
               "harness.adapters.ray.cluster": _patch_tune_runner}


    class _Injector:
        """Finds the real module, then patches it right after it has executed."""

        def find_spec(self, name, path=None, target=None):
            if name not in PATCHES:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is not None and spec.loader is not None:
                execute = spec.loader.exec_module

                def exec_module(module, _execute=execute, _patch=PATCHES[name]):
                    _execute(module)
                    _patch(module)

                spec.loader.exec_module = exec_module
            return spec


    if PLAN:
        sys.meta_path.insert(0, _Injector())
''')


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def ray_tmp():
    """A private, short Ray temp dir (unix socket paths are limited to 107 bytes): its logs are ours alone."""
    path = Path(tempfile.mkdtemp(prefix="fbray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fault_env(tmp: Path, ray_tmp: Path, plan: dict, **extra: str) -> dict:
    hook = tmp / "fault_hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    scratch = tmp / "tmpdir"          # trial scratch folders a SIGKILL leaves behind stay in the test's tmp
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]), "RAY_TMPDIR": str(ray_tmp),
            "TMPDIR": str(scratch), "FREEZEBENCH_FAULTS": json.dumps(plan), "WANDB_MODE": "disabled", **extra}


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def start_sweep(config: Path, env: dict, log: Path, *extra: str) -> subprocess.Popen:
    """The real CLI in its own session, so the test (or a fault) can SIGKILL the whole sweep at once."""
    return subprocess.Popen([sys.executable, "-m", "harness.sweep", str(config), *extra], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float) -> int:
    """Wait for the sweep; whatever happens, leave no process of its session behind."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return -999
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def results_of(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("trials/*/result.json"))}


def trial_ids(data: dict) -> list[str]:
    return [t.trial_id for t in expand(build_config(data))]


def uninterrupted(data: dict, trial_id: str, out: Path) -> dict:
    """The same trial run straight through in this process (no Ray): the reference for a resumed one."""
    from harness.train.trial import run_trial

    data = {**data, "output": {**data["output"], "dir": str(out)}}
    (trial,) = [t for t in expand(build_config(data)) if t.trial_id == trial_id]
    return run_trial(trial)


def tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


# -------------------------------------------------------------- one sweep, three trials, three kinds of fault
MIXED = dict(name="faults",
             train={"max_steps": 30, "eval_every": 5, "checkpoint_every": 10, "grad_clip": None, "diverge_loss": 5.0},
             search={"lr": [1e-3, 2e-3, 50.0]},
             resources={"cpus_per_trial": 1, "num_cpus": 2, "max_failures": 1})


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, cache_dir, ray_tmp):
    """lr 1e-3: its worker is SIGKILLed after step 15 (retried from the step-10 checkpoint);
    lr 2e-3: runs out of memory before step 8 (and again on its retry); lr 50: diverges."""
    tmp = tmp_path_factory.mktemp("mixed")
    data = tiny_sweep_dict(tmp, **MIXED, output={"plots": False})
    killed, oom, diverged = trial_ids(data)
    assert ("lr0.001_", "lr0.002_", "lr50_") == tuple(t[t.index("_lr") + 1:t.index("_bs") + 1]
                                                        for t in (killed, oom, diverged))
    pidfile = tmp / "killed.pid"
    plan = {killed: {"pause_at": 15, "pidfile": str(pidfile)}, oom: {"oom_at": 7}}
    log = tmp / "sweep.log"
    t0 = time.time()
    proc = start_sweep(write_config(tmp / "faults.yaml", data), fault_env(tmp, ray_tmp, plan), log)
    victim = None
    try:
        deadline = time.time() + 300
        while not pidfile.exists():
            assert proc.poll() is None and time.time() < deadline, tail(log)
            time.sleep(0.2)
        pid = int(pidfile.read_text())
        descendants = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        victim = {"pid": pid, "under_driver": pid in descendants, "cmdline": " ".join(psutil.Process(pid).cmdline())}
        os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=400)
    finally:
        rc = finish(proc, timeout=1)
    sweep_dir = tmp / "results" / "faults"
    return {"rc": rc, "log": log, "dir": sweep_dir, "data": data, "tmp": tmp, "victim": victim,
            "ids": {"killed": killed, "oom": oom, "diverged": diverged},
            "results": results_of(sweep_dir), "seconds": time.time() - t0}


@pytest.mark.slow
def test_worker_sigkill_mid_training_is_retried_from_last_checkpoint(mixed):
    victim = mixed["victim"]
    assert victim and victim["under_driver"] and victim["cmdline"].startswith("ray::"), victim
    r = mixed["results"][mixed["ids"]["killed"]]
    assert r["status"] == "ok", (r.get("reason"), tail(mixed["log"]))
    assert r["resumed_from_step"] == 10                     # the last checkpoint before the kill at step 15
    assert [h["step"] for h in r["history"]] == list(range(0, 31, 5))
    assert len(r["train_losses"]) == 30 and r["test"]["step"] == 30
    ref = uninterrupted(mixed["data"], mixed["ids"]["killed"], mixed["tmp"] / "reference")
    assert [h["step"] for h in r["history"]] == [h["step"] for h in ref["history"]]
    assert r["train_losses"] == ref["train_losses"]         # bit for bit: resumed exactly where it stopped
    assert r["test"]["score"] == ref["test"]["score"]


@pytest.mark.slow
def test_diverging_trial_is_diverged_and_counted_others_unaffected(mixed):
    r = mixed["results"][mixed["ids"]["diverged"]]
    assert r["status"] == "diverged" and "training loss" in r["reason"], r.get("reason")
    assert mixed["results"][mixed["ids"]["killed"]]["status"] == "ok"
    rows = json.loads((mixed["dir"] / "comparison.json").read_text())["rows"]
    lr50 = [row for row in rows if row["lr"] == 50.0]
    assert len(lr50) == 1 and lr50[0]["n_diverged"] == 1 and lr50[0]["n_ok"] == 0 and lr50[0]["n_failed"] == 0
    assert "n_diverged" in (mixed["dir"] / "comparison.csv").read_text().splitlines()[0]


@pytest.mark.slow
def test_out_of_memory_in_one_trial_is_failed_with_reason(mixed):
    r = mixed["results"][mixed["ids"]["oom"]]
    assert r["status"] == "failed", r.get("reason")
    assert "can't allocate memory" in r["reason"] and "8589934592" in r["reason"], r["reason"]  # the allocator's words
    assert "Traceback" in r.get("traceback", "")
    assert [h["step"] for h in r["history"]] == [0, 5]      # as far as it got; nothing invented


@pytest.mark.slow
def test_failed_trial_gives_exit_1_and_is_counted_in_the_table(mixed):
    assert mixed["rc"] == 1, tail(mixed["log"])
    assert sorted(r["status"] for r in mixed["results"].values()) == ["diverged", "failed", "ok"]
    table = json.loads((mixed["dir"] / "comparison.json").read_text())
    assert table["metadata"]["status_counts"]["failed"] == 1 and table["metadata"]["status_counts"]["diverged"] == 1
    (row,) = [row for row in table["rows"] if row["lr"] == 2e-3]
    assert row["n_failed"] == 1 and row["n_ok"] == 0
    assert [p["trial_id"] for p in table["problems"] if p["status"] == "failed"] == [mixed["ids"]["oom"]]
    assert "trials: 1 diverged, 1 failed, 1 ok" in mixed["log"].read_text()


# ------------------------------------------- driver killed during a checkpoint, then during the final report
CHAIN = dict(name="chain", train={"max_steps": 40, "eval_every": 5, "checkpoint_every": 10},
             search={"seed": [0, 1]}, resources={"cpus_per_trial": 1, "num_cpus": 2})


def _persisted(sweep_dir: Path, trial_id: str) -> dict[int, Path]:
    """Checkpoints Tune persisted for a trial, by the step in their ``done`` marker."""
    folders = (sweep_dir / "_tune" / sweep_dir.name / trial_id).glob("checkpoint_*")
    return {int((f / "done").read_text()): f for f in folders if (f / "done").exists()}


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (Tune's own bookkeeping aside) with a hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "_tune" not in p.parts and p.name != LOCK_FILE}


@pytest.fixture(scope="module")
def chain(tmp_path_factory, cache_dir, ray_tmp):
    """Run 1: trial s1 SIGKILLs the whole sweep half-way through writing its step-30 checkpoint (after s0 has
    finished); the test then truncates s1's newest persisted checkpoint (step 20). Run 2 (--resume): SIGKILLed
    while writing the comparison table. Run 3 (--resume): finishes."""
    tmp = tmp_path_factory.mktemp("chain")
    data = tiny_sweep_dict(tmp, **CHAIN, output={"plots": False})
    first, second = trial_ids(data)
    sweep_dir = tmp / "results" / "chain"
    config = write_config(tmp / "chain.yaml", data)
    runs = []

    def run(plan: dict, *extra: str) -> dict:
        log = tmp / f"run{len(runs) + 1}.log"
        t0 = time.time()
        rc = finish(start_sweep(config, fault_env(tmp, ray_tmp, plan), log, *extra), timeout=400)
        state = {"rc": rc, "log": log, "results": results_of(sweep_dir), "files": _snapshot(sweep_dir),
                 "seconds": round(time.time() - t0, 1)}
        runs.append(state)
        return state

    run({second: {"killpg_in_checkpoint": 30, "wait_for": str(sweep_dir / "trials" / first / "result.json")}})
    persisted = _persisted(sweep_dir, second)
    corrupted = persisted.get(20)
    if corrupted is not None:
        state = corrupted / "state.pt"
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    run({"driver": {"killpg_in_report": True}}, "--resume")
    run({}, "--resume")
    return {"runs": runs, "dir": sweep_dir, "ids": (first, second), "persisted": sorted(persisted),
            "corrupted": corrupted, "data": data, "tmp": tmp}


@pytest.mark.slow
def test_driver_killed_during_a_checkpoint_then_resume_finishes(chain):
    one, two, three = chain["runs"]
    first, second = chain["ids"]
    assert one["rc"] == -signal.SIGKILL, tail(one["log"])
    assert one["results"][first]["status"] == "ok"
    assert one["results"][second]["status"] == "running" and one["results"][second]["history"][-1]["step"] == 25
    assert chain["persisted"] == [10, 20]                   # step 30 never got past its weights file
    for run in (two, three):                                # the SIGKILLed sweep's lock: dead pid, taken over
        assert "taking over the stale lock" in run["log"].read_text() and "is no longer running" in \
            run["log"].read_text(), tail(run["log"])
    assert three["rc"] == 0, tail(three["log"])
    final = three["results"][second]
    assert final["status"] == "ok" and [h["step"] for h in final["history"]] == list(range(0, 41, 5))
    ref = uninterrupted(chain["data"], second, chain["tmp"] / "reference")
    assert final["train_losses"] == ref["train_losses"] and len(final["train_losses"]) == 40
    # nothing in results/ was lost or rewritten: every file of run 1 is still there, byte for byte, except the
    # interrupted trial's own result
    kept = {k: v for k, v in one["files"].items() if second not in k}
    assert kept and all(three["files"].get(k) == v for k, v in kept.items())


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back_to_previous_with_warning(chain):
    first, second = chain["ids"]
    assert chain["corrupted"] is not None
    final = chain["runs"][-1]["results"][second]
    assert final["resumed_from_step"] == 10                 # step 20 is unreadable: the step-10 one is used
    assert any(str(chain["corrupted"]) in w and "unreadable" in w for w in final.get("warnings", [])), final.get("warnings")


@pytest.mark.slow
def test_driver_killed_during_final_report_then_resume_finishes_without_rerun(chain):
    one, two, three = chain["runs"]
    first, second = chain["ids"]
    assert two["rc"] == -signal.SIGKILL, tail(two["log"])
    assert {r["status"] for r in two["results"].values()} == {"ok"}
    assert "comparison.csv" in two["files"] and "comparison.json" not in two["files"]   # killed mid-report
    assert three["rc"] == 0, tail(three["log"])
    for name in ("comparison.csv", "comparison.md", "comparison.json", "summary.csv", "report.html"):
        assert name in three["files"], name
    for tid in (first, second):                             # finished trials are never rerun
        assert three["files"][f"trials/{tid}/result.json"] == two["files"][f"trials/{tid}/result.json"]
    assert three["results"][first]["started_at"] == one["results"][first]["started_at"]
    rows = json.loads((chain["dir"] / "comparison.json").read_text())["rows"]
    assert sum(r["n_ok"] for r in rows) == 2


# --------------------------------------------- damaged files of a finished sweep: rebuilt, never a lost trial
RECOVER = dict(name="recover", train={"max_steps": 20, "eval_every": 5, "checkpoint_every": 10},
               search={"seed": [0, 1]}, resources={"cpus_per_trial": 1, "num_cpus": 2}, output={"plots": False})


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00{not json" + os.urandom(64))
    elif how == "empty":
        path.write_bytes(b"")
    else:
        raise AssertionError(how)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, ray_tmp):
    """Run 1 finishes. Then: one trial's result.json truncated (the drill), the other's garbage, sweep.json
    truncated, comparison.json garbage, comparison.csv empty, the tokenization cache flipped in one byte.
    Run 2 (--resume) must lose nothing. Then one result truncated again and the other trial's folder deleted:
    ``python -m harness.report`` rebuilds both."""
    tmp = tmp_path_factory.mktemp("damaged")
    data = tiny_sweep_dict(tmp, **RECOVER)
    a, b = trial_ids(data)
    sweep_dir = tmp / "results" / "recover"
    config = write_config(tmp / "recover.yaml", data)
    env = fault_env(tmp, ray_tmp, {}, FREEZEBENCH_CACHE=str(tmp / "cache"))
    logs = [tmp / "run1.log", tmp / "run2.log"]
    rc1 = finish(start_sweep(config, env, logs[0]), timeout=400)
    before = results_of(sweep_dir)
    _damage(sweep_dir / "trials" / a / "result.json", "truncate")
    _damage(sweep_dir / "trials" / b / "result.json", "garbage")
    _damage(sweep_dir / "sweep.json", "truncate")
    _damage(sweep_dir / "comparison.json", "garbage")
    _damage(sweep_dir / "comparison.csv", "empty")
    (npz,) = (tmp / "cache" / "tokenized").glob("*.npz")
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))
    t0 = time.time()
    rc2 = finish(start_sweep(config, env, logs[1], "--resume"), timeout=400)
    resumed_s = time.time() - t0
    after = results_of(sweep_dir)
    tables = {n: (sweep_dir / n).read_bytes() for n in ("sweep.json", "comparison.json", "comparison.csv")}
    _damage(sweep_dir / "trials" / a / "result.json", "truncate")
    shutil.rmtree(sweep_dir / "trials" / b)
    report = subprocess.run([sys.executable, "-m", "harness.report", str(sweep_dir), "--no-plots"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    return {"rcs": (rc1, rc2), "logs": logs, "ids": (a, b), "before": before, "after": after, "tables": tables,
            "report": report, "reported": results_of(sweep_dir), "dir": sweep_dir, "npz": npz,
            "resumed_s": resumed_s}


def _same_but_warnings(rebuilt: dict, original: dict) -> bool:
    strip = lambda r: {k: v for k, v in r.items() if k != "warnings"}   # noqa: E731
    return strip(rebuilt) == strip(original)


@pytest.mark.slow
def test_corrupt_result_json_of_finished_trial_is_recovered_on_resume(damaged):
    a, b = damaged["ids"]
    rc1, rc2 = damaged["rcs"]
    assert rc1 == 0, tail(damaged["logs"][0])
    assert rc2 == 0, tail(damaged["logs"][1])               # was exit 1 with "trial did not start or produced no result"
    log = damaged["logs"][1].read_text()
    for tid in (a, b):
        r, orig = damaged["after"][tid], damaged["before"][tid]
        assert r["status"] == "ok" and [h["step"] for h in r["history"]] == list(range(0, 21, 5))
        assert len(r["train_losses"]) == 20
        assert _same_but_warnings(r, orig)                  # the whole result, not a placeholder
        assert r["started_at"] == orig["started_at"]        # not rerun
        assert any("rebuilt from Ray Tune's copy" in w for w in r["warnings"]), r.get("warnings")
        assert f"recovered {tid}" in log
    assert "trials: 2 ok" in log, tail(damaged["logs"][1])


@pytest.mark.slow
def test_damaged_sweep_json_comparison_and_token_cache_are_regenerated(damaged):
    tables = damaged["tables"]
    sweep = json.loads(tables["sweep.json"])
    assert sweep["name"] == "recover" and sorted(sweep["trials"]) == sorted(damaged["ids"])
    table = json.loads(tables["comparison.json"])
    assert table["metadata"]["status_counts"]["ok"] == 2 and sum(r["n_ok"] for r in table["rows"]) == 2
    assert tables["comparison.csv"].decode().startswith("strategy,")
    log = damaged["logs"][1].read_text()
    assert f"tokenized cache {damaged['npz']} is damaged" in log and "rebuilding it" in log, tail(damaged["logs"][1])
    import zipfile
    with zipfile.ZipFile(damaged["npz"]) as zf:
        assert zf.testzip() is None                         # rebuilt whole


@pytest.mark.slow
def test_report_rebuilds_a_damaged_or_deleted_result_from_tunes_record(damaged):
    a, b = damaged["ids"]
    rep = damaged["report"]
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert f"recovered {a}" in rep.stdout and f"recovered {b}" in rep.stdout and "was missing" in rep.stdout
    for tid in (a, b):
        assert _same_but_warnings(damaged["reported"][tid], damaged["before"][tid])
    table = json.loads((damaged["dir"] / "comparison.json").read_text())
    counts = table["metadata"]["status_counts"]
    assert counts["ok"] == 2 and not counts.get("failed"), counts


# ------------------------------------------------ two sweeps at once on the same results folder: one writer
@pytest.fixture(scope="module")
def double(tmp_path_factory, cache_dir, ray_tmp, monkeypatch_module):
    """Sweep A runs; while its first trial is held at step 5, the same sweep is started again three ways (the
    real CLI as is, --resume and --overwrite in process). Then A is released and finishes."""
    tmp = tmp_path_factory.mktemp("double")
    data = tiny_sweep_dict(tmp, name="double", train={"max_steps": 10, "eval_every": 5},
                           search={"seed": [0, 1]}, resources={"cpus_per_trial": 1, "num_cpus": 2},
                           output={"plots": False})
    first, _ = trial_ids(data)
    held, release = tmp / "held", tmp / "release"
    config = write_config(tmp / "double.yaml", data)
    sweep_dir = tmp / "results" / "double"
    proc = start_sweep(config, fault_env(tmp, ray_tmp, {first: {"hold_at": 5, "held": str(held),
                                                                "release": str(release)}}), tmp / "a.log")
    second = {}
    try:
        deadline = time.time() + 300
        while not held.exists():
            assert proc.poll() is None and time.time() < deadline, tail(tmp / "a.log")
            time.sleep(0.2)
        holder_before = json.loads((sweep_dir / LOCK_FILE).read_text())["token"]   # renewals rewrite the file
        sweep_json = (sweep_dir / "sweep.json").stat().st_mtime_ns
        t0 = time.time()
        b = subprocess.run([sys.executable, "-m", "harness.sweep", str(config)], cwd=ROOT, capture_output=True,
                           text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        second["cli"] = (b.returncode, b.stdout + b.stderr, time.time() - t0)
        import harness.adapters.ray as tune_runner
        from harness import sweep

        monkeypatch_module.setattr(tune_runner, "init_ray", lambda *a, **k: (_ for _ in ()).throw(
            AssertionError("Ray was started")))
        for flag in ("--resume", "--overwrite"):
            second[flag] = sweep.main([str(config), flag])
        second["untouched"] = (json.loads((sweep_dir / LOCK_FILE).read_text())["token"] == holder_before
                               and (sweep_dir / "sweep.json").stat().st_mtime_ns == sweep_json
                               and not list(sweep_dir.parent.glob("double.bak-*")))
        release.touch()
        proc.wait(timeout=300)
    finally:
        rc = finish(proc, timeout=1)
    return {"rc": rc, "pid": proc.pid, "second": second, "log": tmp / "a.log", "results": results_of(sweep_dir),
            "dir": sweep_dir}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.slow
def test_second_sweep_on_the_same_folder_exits_2_naming_the_holder(double):
    rc, out, seconds = double["second"]["cli"]
    assert rc == 2, out
    assert "another sweep is writing to this folder" in out and f"pid {double['pid']}" in out, out
    assert "Traceback" not in out and "trials ->" not in out     # refused before it wrote anything
    assert double["second"]["--resume"] == 2 and double["second"]["--overwrite"] == 2
    assert double["second"]["untouched"]                        # same lock, sweep.json not rewritten, no .bak


@pytest.mark.slow
def test_first_sweep_finishes_untouched_while_a_second_is_refused(double):
    assert double["rc"] == 0, tail(double["log"])
    assert sorted(r["status"] for r in double["results"].values()) == ["ok", "ok"]
    for r in double["results"].values():
        assert [h["step"] for h in r["history"]] == [0, 5, 10] and len(r["train_losses"]) == 10
    assert "taking over" not in double["log"].read_text()
    assert not (double["dir"] / LOCK_FILE).exists()              # released at the end


# ------------------------------------------------------------------ corrupt checkpoints (no Ray, in process)
def _tiny_trial(tmp: Path, **train):
    (trial,) = expand(build_config(tiny_sweep_dict(tmp, train={"max_steps": 6, "eval_every": 2, **train})))
    return trial


@pytest.fixture(scope="module")
def saved(tmp_path_factory, cache_dir):
    """An uninterrupted 6-step trial and copies of its checkpoints at steps 2 and 4."""
    from harness.train.trial import run_trial

    tmp = tmp_path_factory.mktemp("saved")
    copies = {}

    def keep(metrics, ckpt=None):
        if ckpt:
            copies[metrics["step"]] = Path(shutil.copytree(ckpt, tmp / f"good_{metrics['step']}"))

    result = run_trial(_tiny_trial(tmp / "run", checkpoint_every=2), keep, scratch_dir=str(tmp / "scratch"))
    assert sorted(copies) == [2, 4]
    return {"result": result, "ckpt": copies, "tmp": tmp}


def _corrupt(kind: str, folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    weights, state = folder / "trainable.safetensors", folder / "state.pt"
    if kind == "truncated_state":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif kind == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    elif kind == "garbage_weights":
        weights.write_bytes(os.urandom(4096))
    elif kind == "no_done_marker":
        (folder / "done").unlink()
    elif kind == "empty_folder":
        for p in folder.iterdir():
            p.unlink()
    elif kind in ("wrong_shape", "missing_tensor", "extra_tensor"):
        tensors = load_file(str(weights))
        names = sorted(tensors)
        if kind == "wrong_shape":
            tensors[names[-1]] = torch.zeros(3, 3)
        elif kind == "missing_tensor":
            del tensors[names[-1]]
        else:
            tensors["zzz.not_a_parameter"] = torch.zeros(2)
        save_file(tensors, str(weights))
    elif kind == "state_missing_keys":
        s = torch.load(state, weights_only=True)
        del s["stream"], s["rng"]
        torch.save(s, state)
    elif kind == "optimizer_state_mismatch":
        s = torch.load(state, weights_only=True)
        s["engine"]["optimizer"]["param_groups"] = []
        torch.save(s, state)
    elif kind == "state_wrong_types":
        s = torch.load(state, weights_only=True)
        s["step"], s["result"] = "four", None
        torch.save(s, state)
    else:
        raise AssertionError(kind)


CORRUPTIONS = ["truncated_state", "truncated_weights", "garbage_weights", "no_done_marker", "empty_folder",
               "wrong_shape", "missing_tensor", "extra_tensor", "state_missing_keys", "state_wrong_types",
               "optimizer_state_mismatch"]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_corrupt_checkpoint_restarts_from_previous_good_one_or_scratch(kind, saved, tmp_path, caplog):
    """A corrupt newest checkpoint is skipped with a warning: the trial resumes from the older good one; with no
    good one it starts from scratch - and "scratch" really is the untouched initial state (same losses)."""
    from harness.train.trial import run_trial

    bad = Path(shutil.copytree(saved["ckpt"][4], tmp_path / "bad_4"))
    _corrupt(kind, bad)
    reference = saved["result"]["train_losses"]
    with caplog.at_level(logging.WARNING, logger="freezebench.trial"):
        older = run_trial(_tiny_trial(tmp_path / "a", checkpoint_every=2),
                          restore_from=[str(bad), str(saved["ckpt"][2])])
        scratch = run_trial(_tiny_trial(tmp_path / "b", checkpoint_every=2), restore_from=[str(bad)])
    assert older["status"] == "ok" and older["resumed_from_step"] == 2
    assert older["train_losses"] == reference
    assert scratch["status"] == "ok" and scratch["resumed_from_step"] is None
    assert scratch["train_losses"] == reference             # nothing of the bad checkpoint leaked into the model
    assert str(bad) in caplog.text and "skipping checkpoint" in caplog.text
    for result in (older, scratch):
        assert any(str(bad) in w for w in result.get("warnings", [])), result.get("warnings")


# --------------------------------------------------------- a full disk, an unwritable results folder (no Ray)
class _FullDisk:
    """Stands in for ``os`` inside harness.results: ``fsync`` (the last step of every atomic write before the
    rename) fails with ENOSPC once ``free`` writes have succeeded - the file system filled up."""

    def __init__(self, free: int):
        self.free, self.failed = free, 0

    def fsync(self, fd):
        if self.free <= 0:
            self.failed += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.free -= 1
        os.fsync(fd)

    def __getattr__(self, name):
        return getattr(os, name)


def test_disk_full_while_writing_a_result_keeps_the_last_good_one(tmp_path, cache_dir, monkeypatch):
    import harness.results
    from harness.train.trial import run_trial

    trial = _tiny_trial(tmp_path, max_steps=8)
    disk = _FullDisk(free=1)                                 # the step-2 write succeeds, the step-4 one does not
    monkeypatch.setattr(harness.results.store, "os", disk)
    with pytest.raises(OSError) as info:
        run_trial(trial)
    assert info.value.errno == errno.ENOSPC and disk.failed >= 1
    folder = tmp_path / "results" / "tiny" / "trials" / trial.trial_id
    kept = json.loads((folder / "result.json").read_text())  # still whole, valid JSON: the step-2 write
    assert kept["status"] == "running" and [h["step"] for h in kept["history"]] == [0, 2]
    assert sorted(p.name for p in folder.iterdir()) == ["result.json"]   # no half-written temp file left


def test_disk_full_at_sweep_start_is_a_clear_error_and_keeps_earlier_results(tmp_path, cache_dir, monkeypatch,
                                                                              capsys):
    import harness.results
    from harness import sweep
    data = tiny_sweep_dict(tmp_path)
    config = write_config(tmp_path / "tiny.yaml", data)
    earlier = tmp_path / "results" / "tiny" / "trials" / "earlier" / "result.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"status": "ok"}\n')
    forbid_ray(monkeypatch)
    monkeypatch.setattr(harness.results.store, "os", _FullDisk(free=0))
    rc = sweep.main([str(config), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "No space left on device" in err and str(tmp_path / "results" / "tiny") in err, err
    assert "Traceback" not in err
    assert earlier.read_text() == '{"status": "ok"}\n'


def test_unwritable_results_folder_is_a_clear_error_before_training(tmp_path, cache_dir, monkeypatch, capsys):
    """Root ignores permission bits, so the folder is made unwritable another way: its parent is a file."""
    from harness import sweep
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the results folder should be")
    data = tiny_sweep_dict(tmp_path, output={"dir": str(blocker / "results")})
    config = write_config(tmp_path / "tiny.yaml", data)
    forbid_model_loads(monkeypatch)
    forbid_ray(monkeypatch)
    rc = sweep.main([str(config)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert str(blocker / "results") in err and "Not a directory" in err, err
    assert blocker.read_text().startswith("a file")


class _Grid(list):
    """An empty ``tune.ResultGrid`` look-alike: every trial ended (in error: nothing could be written)."""
    num_terminated = num_errors = 0


@pytest.mark.parametrize("free, what", [(1, "the trial results"), (2, "the comparison table")])
def test_disk_full_after_training_is_a_clear_error(free, what, tmp_path, cache_dir, monkeypatch, capsys):
    """The disk fills while the trials run: the driver cannot write a placeholder result for the trial that
    left none (free=1: only sweep.json got written), or then the comparison table (free=2)."""
    import harness.results
    import harness.adapters.ray as tune_runner
    from harness import sweep
    config = write_config(tmp_path / "tiny.yaml", tiny_sweep_dict(tmp_path))
    disk = _FullDisk(free=free)
    monkeypatch.setattr(harness.results.store, "os", disk)
    monkeypatch.setattr(tune_runner, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(tune_runner, "run_tune", lambda *a, **k: _Grid())   # the trials ran; none could write
    rc = sweep.main([str(config)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"cannot write {what}" in err and "No space left on device" in err and "Traceback" not in err, err
    assert disk.failed >= 1
    assert json.loads((tmp_path / "results" / "tiny" / "sweep.json").read_text())["name"] == "tiny"


# ------------------------------------------------------------------- two sweeps at once on one machine
SECRETS = {"WANDB_API_KEY": "fbtest0wandb0secret0" + "7" * 20, "HF_TOKEN": "hf_fbtestSECRETtoken0123456789"}
_TWO: dict = {}


def two_sweeps(tmp_path_factory) -> dict:
    """Two sweeps with different names, started at the same time in two processes, each with its own local
    Ray, sharing the results root and the tokenization cache (cold: both tokenize at once). Planted secrets in
    the environment; a stale ``ray_current_cluster`` (as another user's ``ray start`` leaves) in Ray's temp dir.
    Run once per session; tests/cli/test_security.py reads the same run."""
    if _TWO:
        return _TWO
    tmp = tmp_path_factory.mktemp("two")
    ray_tmp = Path(tempfile.mkdtemp(prefix="fbray2-", dir="/tmp"))
    atexit.register(shutil.rmtree, ray_tmp, True)
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:9")   # nothing listens there
    procs, logs, records = {}, {}, {}
    cache = tmp / "cache"
    t0 = time.time()
    for name in ("alpha", "beta"):
        data = tiny_sweep_dict(tmp, name=name, train={"max_steps": 6, "eval_every": 3},
                               resources={"cpus_per_trial": 1, "num_cpus": 1}, output={"plots": False})
        if name == "beta":   # W&B offline writes run files too: they must hold no secret either
            data["logging"] = {"wandb": {"mode": "offline"}}
        records[name] = tmp / f"{name}.ray.json"
        logs[name] = tmp / f"{name}.log"
        env = fault_env(tmp, ray_tmp, {"driver": {"record_ray": str(records[name])}},
                        FREEZEBENCH_CACHE=str(cache), **SECRETS)
        procs[name] = start_sweep(write_config(tmp / f"{name}.yaml", data), env, logs[name])
    rcs = {name: finish(proc, timeout=400) for name, proc in procs.items()}
    _TWO.update(tmp=tmp, ray_tmp=ray_tmp, rcs=rcs, logs=logs, seconds=round(time.time() - t0, 1),
                records={n: json.loads(p.read_text()) if p.exists() else None for n, p in records.items()},
                dirs={n: tmp / "results" / n for n in procs})
    return _TWO


@pytest.mark.slow
def test_two_sweeps_at_once_share_nothing_and_both_finish(tmp_path_factory):
    two = two_sweeps(tmp_path_factory)
    for name in ("alpha", "beta"):
        assert two["rcs"][name] == 0, tail(two["logs"][name])
        (result,) = results_of(two["dirs"][name]).values()
        assert result["status"] == "ok" and result["sweep"] == name and result["test"]["step"] == 6
        assert (two["dirs"][name] / "comparison.csv").exists()
    a, b = two["records"]["alpha"], two["records"]["beta"]
    assert a and b
    assert a["gcs_address"] != b["gcs_address"] and a["session_dir"] != b["session_dir"]   # two clusters
    assert a["gcs_address"] != "127.0.0.1:9"                # the stale ray_current_cluster was not joined
    ports = lambda rec: {port for _, _, port in rec["listening"]}   # noqa: E731
    assert not ports(a) & ports(b)
