"""Resume tier: a sweep killed with SIGKILL (driver and all) continues with --resume; nothing runs twice."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.sweep_kill import sigkill_when
from tests.support.tune_state import as_killed_before_first_snapshot, as_rotated_after_last_snapshot

pytestmark = pytest.mark.slow

OVERRIDES = ["--set", "train.max_steps=80", "--set", "train.eval_every=5", "--set", "train.checkpoint_every=10",
             "--set", "resources.cpus_per_trial=2", "--set", "search.seed=[0]"]


def _start(out: Path, *extra: str, env: dict, log: str | None = None) -> subprocess.Popen:
    log = open(out.parent / (log or f"sweep{'-resume' if extra else ''}.log"), "w")
    return subprocess.Popen([sys.executable, "-m", "harness.sweep", "configs/smoke.yaml",
                             "--set", f"output.dir={out}", *OVERRIDES, *extra],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _results(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / "smoke" / "trials").glob("*/result.json"):
        try:
            found[path.parent.name] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    return found


def test_sigkill_mid_sweep_then_resume(tmp_path, cache_dir):
    out = tmp_path / "results"
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir)}

    def one_done_and_one_past_a_checkpoint() -> bool:
        res = _results(out).values()
        return any(r["status"] == "ok" for r in res) and any(
            r["status"] == "running" and r["history"] and r["history"][-1]["step"] >= 15 for r in res)

    sigkill_when(_start(out, env=env), one_done_and_one_past_a_checkpoint, out.parent / "sweep.log")
    before = _results(out)
    finished_before = {k: r["started_at"] for k, r in before.items() if r["status"] == "ok"}
    interrupted = [k for k, r in before.items() if r["status"] == "running"]
    assert finished_before and interrupted

    resumed = _start(out, "--resume", env=env)
    assert resumed.wait(timeout=600) == 0, (out.parent / "sweep-resume.log").read_text()[-4000:]
    after = _results(out)
    assert len(after) == 2 and all(r["status"] == "ok" for r in after.values())
    for key, started in finished_before.items():  # finished trials were not run again
        assert after[key]["started_at"] == started
    for key in interrupted:  # interrupted ones continued from their last checkpoint, not from scratch
        assert after[key]["resumed_from_step"] and after[key]["resumed_from_step"] >= 10
        assert [h["step"] for h in after[key]["history"]] == list(range(0, 81, 5))
        assert len(after[key]["train_losses"]) == 80
    assert (out / "smoke" / "comparison.csv").exists()
    progress = [ln for ln in (out.parent / "sweep-resume.log").read_text().splitlines()
                if re.match(r"^\[\s*\d+s\]", ln)]
    assert progress and " 1/2 done" in progress[0], progress   # the trial finished before the kill counts
    assert " 2/2 done" in progress[-1], progress
    # the same sweep, never interrupted: the resumed one reaches the same verdicts with the same numbers
    reference = tmp_path / "reference"
    clean = _start(reference, env=env)
    assert clean.wait(timeout=600) == 0, (reference.parent / "sweep.log").read_text()[-4000:]
    assert _verdicts(out) == _verdicts(reference)


def test_resume_after_tune_rotated_away_the_checkpoint_its_snapshot_names(tmp_path, cache_dir):
    """Tune keeps two checkpoints per trial and snapshots the experiment every few seconds: a driver killed
    between a rotation and the next snapshot leaves a snapshot naming a deleted checkpoint with newer ones beside
    it. Tune's own restore would fail that trial ("does not exist on storage anymore"); ``--resume`` continues it
    from its newest checkpoint instead, and nothing else is run twice."""
    out = tmp_path / "results"
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir)}

    def one_past_its_second_checkpoint() -> bool:
        return any(r["status"] == "running" and r["history"] and r["history"][-1]["step"] >= 25
                   for r in _results(out).values())

    sigkill_when(_start(out, env=env), one_past_its_second_checkpoint, out.parent / "sweep.log")
    interrupted = [k for k, r in _results(out).items() if r["status"] == "running"]
    rotated = {}
    for key in interrupted:
        trial_dir = next((out / "smoke" / "_tune").glob(f"*/{key}"))
        if any(trial_dir.glob("checkpoint_*")):
            rotated[key] = as_rotated_after_last_snapshot(trial_dir)
    assert rotated, "no interrupted trial had a checkpoint"

    resumed = _start(out, "--resume", env=env)
    assert resumed.wait(timeout=600) == 0, (out.parent / "sweep-resume.log").read_text()[-4000:]
    after = _results(out)
    assert len(after) == 2 and all(r["status"] == "ok" for r in after.values())
    for key in rotated:   # continued from the checkpoint that was left, not from scratch
        assert after[key]["resumed_from_step"] and after[key]["resumed_from_step"] >= 20
        assert [h["step"] for h in after[key]["history"]] == list(range(0, 81, 5))
        assert len(after[key]["train_losses"]) == 80


def _verdicts(out: Path) -> list[dict]:
    import csv

    keep = ("strategy", "verdict", "metric", "test_score_mean", "diff_vs_full", "diff_ci_low", "diff_ci_high",
            "val_score_mean", "n_ok", "seeds_needed", "trainable_ratio")
    with open(out / "smoke" / "summary.csv") as fh:
        return [{k: row[k] for k in keep} for row in csv.DictReader(fh)]


def test_sweep_killed_before_tunes_first_snapshot_resumes_every_trial(tmp_path, cache_dir):
    """Tune writes ``tuner.pkl`` when the Tuner is built, before any experiment state; a driver killed there
    (a SLURM preemption seconds after start) leaves an experiment ``Tuner.can_restore`` accepts but
    ``Tuner.restore`` cannot rebuild: Tune does not pickle the grid. ``--resume`` starts it again from the config
    and runs every trial."""
    out = tmp_path / "results"
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir)}
    fast = ["--set", "train.max_steps=4", "--set", "train.eval_every=2", "--set", "train.checkpoint_every=2"]
    assert _start(out, *fast, env=env, log="sweep.log").wait(timeout=600) == 0, \
        (out.parent / "sweep.log").read_text()[-4000:]
    (exp,) = (out / "smoke" / "_tune").iterdir()
    as_killed_before_first_snapshot(exp)
    shutil.rmtree(out / "smoke" / "trials")
    resumed = _start(out, *fast, "--resume", env=env)
    assert resumed.wait(timeout=600) == 0, (out.parent / "sweep-resume.log").read_text()[-4000:]
    after = _results(out)
    assert len(after) == 2 and all(r["status"] == "ok" for r in after.values()), after.keys()
