"""Trial tier: one CPU trial end to end on real IMDB text with a tiny BERT, no Ray (report is a list)."""
from __future__ import annotations

import json

import pytest
import torch

from harness.config import build_config
from harness.expand import expand
from harness.trial import run_trial
from tests.conftest import tiny_sweep_dict


def _trial(tmp_path, **sections):
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, **sections)))
    return trial


def test_trial_end_to_end(tmp_path, cache_dir):
    trial = _trial(tmp_path)
    reports = []
    result = run_trial(trial, lambda m, c=None: reports.append((m, c)))
    assert result["status"] == "ok"
    assert [m["step"] for m, _ in reports] == [0, 4, 8, 12]  # step 0, every eval_every, the end
    for m, _ in reports[1:]:
        for key in ("train_loss", "eval_loss", "eval_accuracy", "lr", "grad_norm", "samples_per_s",
                    "tokens_per_s", "peak_mem_mb"):
            assert m[key] is not None and m[key] == m[key], key
        assert 0 <= m["eval_accuracy"] <= 1
    assert reports[1][0]["tokens_per_s"] > reports[1][0]["samples_per_s"]
    assert result["final"]["eval_size"] == 64 and result["final"]["step"] == 12
    p = result["params"]
    assert 0 < p["trainable"] < p["total"] and p["ratio"] == p["trainable"] / p["total"]
    on_disk = json.loads((tmp_path / "results/tiny/trials" / trial.trial_id / "result.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["config"]["train"]["max_steps"] == 12
    for key in ("env", "history", "train_losses", "throughput", "timing", "memory"):
        assert on_disk[key], key
    assert on_disk["env"]["packages"]["torch"] == torch.__version__.split("+")[0] or on_disk["env"]["packages"]["torch"]
    assert len(on_disk["train_losses"]) == 12


def test_same_seed_same_metrics_bit_for_bit(tmp_path, cache_dir):
    a = run_trial(_trial(tmp_path / "a"))
    b = run_trial(_trial(tmp_path / "b"))
    assert a["train_losses"] == b["train_losses"]
    assert [h["eval_loss"] for h in a["history"]] == [h["eval_loss"] for h in b["history"]]
    c = run_trial(_trial(tmp_path / "c", train={"seed": 1}))
    assert c["train_losses"] != a["train_losses"]


def test_lr_warmup_and_schedule_reported(tmp_path, cache_dir):
    result = run_trial(_trial(tmp_path, train={"scheduler": "linear", "warmup_ratio": 0.25}))
    lrs = [h["lr"] for h in result["history"]]
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)  # linear decay reaches 0 at max_steps
    assert max(lrs) <= 1e-3


def test_divergence_is_a_status_not_a_crash(tmp_path, cache_dir):
    result = run_trial(_trial(tmp_path, train={"lr": 50.0, "diverge_loss": 5.0, "grad_clip": None,
                                               "max_steps": 12}))
    assert result["status"] == "diverged" and "loss" in result["reason"]


def test_exception_is_recorded_as_failed(tmp_path, cache_dir, monkeypatch):
    import harness.trial as trial_mod

    def boom(*a, **k):
        raise RuntimeError("synthetic failure inside the trial")

    monkeypatch.setattr(trial_mod, "_train_step", boom)
    trial = _trial(tmp_path)
    with pytest.raises(RuntimeError):
        run_trial(trial)
    saved = json.loads((tmp_path / "results/tiny/trials" / trial.trial_id / "result.json").read_text())
    assert saved["status"] == "failed" and "synthetic failure" in saved["reason"]


def test_checkpoint_resume_matches_uninterrupted(tmp_path, cache_dir):
    full = run_trial(_trial(tmp_path / "full", train={"checkpoint_every": 4}))
    trial = _trial(tmp_path / "part", train={"checkpoint_every": 4})
    ckpts = []
    run_trial(trial, lambda m, c=None: ckpts.append(c) if c else None, scratch_dir=str(tmp_path / "scratch"))
    assert ckpts, "no checkpoint was reported"
    first = ckpts[0]  # step 4
    assert (tmp_path / "scratch").exists() is False  # scratch removed at the end of a finished trial
    # resume a fresh run from a copy of the step-4 checkpoint
    import shutil
    saved = tmp_path / "saved_ckpt"
    run_trial(trial, lambda m, c=None: shutil.copytree(c, saved) if c and not saved.exists() else None,
              scratch_dir=str(tmp_path / "scratch2"))
    resumed = run_trial(_trial(tmp_path / "resumed", train={"checkpoint_every": 4}), restore_from=str(saved))
    assert resumed["resumed_from_step"] == 4
    assert resumed["train_losses"] == full["train_losses"]
    assert resumed["final"]["eval_accuracy"] == full["final"]["eval_accuracy"]
    assert first.endswith("step_0000004")


def test_corrupt_checkpoint_falls_back_to_scratch(tmp_path, cache_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "done").write_text("ok")
    (bad / "trainable.safetensors").write_bytes(b"garbage")
    result = run_trial(_trial(tmp_path), restore_from=str(bad))
    assert result["status"] == "ok" and result["resumed_from_step"] is None
