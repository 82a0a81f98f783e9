"""train.load_best (Hugging Face's load_best_model_at_end): the validation and test numbers, and the saved
weights, are those of the validation curve's best point, never of a point picked on the test split."""
from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from harness.config import ConfigError, build_config
from harness.config.expand import expand
from harness.train.checkpoint import load_checkpoint
from harness.train.trial import run_trial
from tests.conftest import tiny_sweep_dict

# a noisy curve on purpose (high constant lr): its best point is not its last
TRAIN = {"max_steps": 16, "eval_every": 2, "lr": 5e-3, "scheduler": "constant", "checkpoint_every": 2}


def _trial(tmp_path, **train):
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, train={**TRAIN, **train},
                                                   output={"save_model": "all"})))
    return trial


def _keep_checkpoints(into):
    def report(metrics, checkpoint=None):
        if checkpoint:
            shutil.copytree(checkpoint, into / f"{metrics['step']}")
    return report


def _best_point(history):
    """The earliest highest validation score after step 0 (what load_best must go back to)."""
    best = None
    for row in history[1:]:
        if best is None or row["val_score"] > best["val_score"]:
            best = row
    return best


def test_val_test_and_saved_weights_are_the_best_points(tmp_path, cache_dir):
    saved = tmp_path / "ckpts"
    plain = run_trial(_trial(tmp_path / "plain"), _keep_checkpoints(saved))
    best = _best_point(plain["history"])
    assert best["step"] < 16, "precondition: the curve's best point is not its last"
    assert plain["val"]["step"] == plain["test"]["step"] == 16 and "loaded_best" not in plain

    trial = _trial(tmp_path / "best", load_best=True)
    result = run_trial(trial)
    assert result["status"] == "ok"
    assert result["loaded_best"] == {"step": best["step"], "score": best["val_score"]}
    curve = lambda r: [(h["step"], h["val_loss"], h["val_score"]) for h in r["history"]]   # noqa: E731
    assert curve(result) == curve(plain)           # the same run; only what is kept at the end differs
    assert result["val"]["step"] == result["test"]["step"] == best["step"]
    assert result["val"]["score"] == best["val_score"]            # the whole validation set, at the best weights
    assert result["val"]["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    assert result["test"]["score"] != plain["test"]["score"] or result["test"]["loss"] != plain["test"]["loss"]

    kept = load_file(str(tmp_path / "best/results/tiny/trials" / trial.trial_id / "trainable.safetensors"))
    at_best, _ = load_checkpoint(saved / str(best["step"]))
    assert kept.keys() == at_best.keys()
    assert all(torch.equal(kept[n], at_best[n]) for n in kept)


def test_a_resumed_trial_keeps_its_best_point(tmp_path, cache_dir):
    saved = tmp_path / "ckpts"
    whole = run_trial(_trial(tmp_path / "whole", load_best=True), _keep_checkpoints(saved))
    step = 14                                             # the last checkpoint, after the best point
    assert whole["loaded_best"]["step"] < step, "precondition: the best point is before the checkpoint"
    resumed = run_trial(_trial(tmp_path / "resumed", load_best=True), restore_from=str(saved / str(step)))
    assert resumed["resumed_from_step"] == step
    assert resumed["loaded_best"] == whole["loaded_best"] and resumed["test"] == whole["test"]


def test_load_best_without_a_validation_set_is_refused(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_config(tiny_sweep_dict(tmp_path, train={"load_best": True}, data={"val_size": 0}))
    assert "train.load_best" in str(err.value) and "validation" in str(err.value)
