"""Trial tier: one CPU trial end to end on real IMDB text with a tiny BERT, no Ray (report is a list)."""
from __future__ import annotations

import json

import pytest
import torch

from harness.config import build_config
from harness.config.expand import expand
from harness.train.trial import run_trial
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
        for key in ("train_loss", "val_loss", "val_score", "val_accuracy", "val_f1", "val_mcc", "lr", "grad_norm",
                    "samples_per_s", "tokens_per_s", "peak_mem_mb"):
            assert m[key] is not None and m[key] == m[key], key
        assert 0 <= m["val_score"] <= 1 and m["val_score"] == m["val_accuracy"]     # accuracy is the default metric
        assert not any(k.startswith("test") for k in m)                            # no test number during training
    assert reports[1][0]["tokens_per_s"] > reports[1][0]["samples_per_s"]
    assert result["test"]["size"] == 64 and result["test"]["step"] == 12 and result["val"]["size"] == 64
    assert result["metric"] == {"name": "accuracy", "mode": "max", "task": "classification"}
    assert result["selected_on"] == "validation" and result["predictions"] == "predictions.parquet"
    assert set(result["test"]["metrics"]) == {"accuracy", "f1", "macro_f1", "mcc"}
    p = result["params"]
    assert 0 < p["trainable"] < p["total"] and p["ratio"] == p["trainable"] / p["total"]
    on_disk = json.loads((tmp_path / "results/tiny/trials" / trial.trial_id / "result.json").read_text())
    assert on_disk["status"] == "ok" and on_disk["config"]["train"]["max_steps"] == 12
    for key in ("env", "history", "train_losses", "throughput", "timing", "memory"):
        assert on_disk[key], key
    assert on_disk["env"]["packages"]["torch"] == torch.__version__      # the wheel's own version, e.g. 2.13.0+cpu
    assert len(on_disk["train_losses"]) == 12


def test_same_seed_same_metrics_bit_for_bit(tmp_path, cache_dir):
    a = run_trial(_trial(tmp_path / "a"))
    b = run_trial(_trial(tmp_path / "b"))
    assert a["train_losses"] == b["train_losses"]
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]
    c = run_trial(_trial(tmp_path / "c", train={"seed": 1}))
    assert c["train_losses"] != a["train_losses"]


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant_with_warmup", "constant"])
def test_lr_warmup_and_schedule_reported(tmp_path, cache_dir, scheduler):
    """The reported lr at every evaluation is transformers.get_scheduler's for the same settings (12 steps, 3 of
    them warm-up; HF's ``constant`` has no warm-up), so a run compares with a Hugging Face baseline."""
    from transformers import get_scheduler

    result = run_trial(_trial(tmp_path, train={"scheduler": scheduler, "warmup_ratio": 0.25}))
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    ref = get_scheduler(scheduler, opt, num_warmup_steps=0 if scheduler == "constant" else 3, num_training_steps=12)
    expected = {0: 1e-3 * ref.lr_lambdas[0](0)}
    for step in range(1, 13):
        opt.step()
        ref.step()
        expected[step] = opt.param_groups[0]["lr"]
    got = {h["step"]: h["lr"] for h in result["history"]}
    assert got == pytest.approx({s: expected[s] for s in got}, rel=1e-12, abs=1e-15)
    if scheduler != "constant":
        assert got[0] == 0.0 and expected[3] == pytest.approx(1e-3)    # warm-up from 0 to the peak at step 3
    if scheduler in ("linear", "cosine"):
        assert got[12] == pytest.approx(0.0, abs=1e-12)                 # decays to 0 at max_steps


def test_frozen_weights_bit_identical_after_a_torch_trial(tmp_path, cache_dir, monkeypatch):
    """The torch backend (AdamW, weight decay, bf16 autocast, clipping) leaves every frozen parameter bit for bit
    as it was loaded and moves every trainable one."""
    import harness.train.trial as trial_mod

    seen = {}
    real = trial_mod.make_engine

    def make(model, train, device, **kw):
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen["engine"] = real(model, train, device, **kw)
        return seen["engine"]

    monkeypatch.setattr(trial_mod, "make_engine", make)
    result = run_trial(_trial(tmp_path, train={"weight_decay": 0.1}))
    assert result["status"] == "ok"
    after = dict(seen["engine"].model.named_parameters())
    frozen = [n for n, p in after.items() if not p.requires_grad]
    trainable = [n for n, p in after.items() if p.requires_grad]
    assert frozen and trainable
    for n in frozen:
        assert torch.equal(after[n].detach(), seen["before"][n]), n
    assert all(not torch.equal(after[n].detach(), seen["before"][n]) for n in trainable)


def test_divergence_is_a_status_not_a_crash(tmp_path, cache_dir):
    result = run_trial(_trial(tmp_path, train={"lr": 50.0, "diverge_loss": 5.0, "grad_clip": None,
                                               "max_steps": 12}))
    assert result["status"] == "diverged" and "loss" in result["reason"]


def test_exception_is_recorded_as_failed(tmp_path, cache_dir, monkeypatch):
    import harness.train.trial as trial_mod

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
    assert resumed["test"]["score"] == full["test"]["score"]
    assert first.endswith("step_0000004")


def test_corrupt_checkpoint_falls_back_to_scratch(tmp_path, cache_dir):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "done").write_text("ok")
    (bad / "trainable.safetensors").write_bytes(b"garbage")
    result = run_trial(_trial(tmp_path), restore_from=str(bad))
    assert result["status"] == "ok" and result["resumed_from_step"] is None


def test_last_curve_point_is_read_off_the_final_validation_pass(tmp_path, cache_dir, monkeypatch):
    """With a curve subset of the validation set, the last step evaluates the whole set once (not the subset, then
    the set again); the curve point and the selected validation score are what two separate passes give."""
    import numpy as np

    import harness.train.trial as trial_mod

    calls = []
    real = trial_mod.evaluate
    monkeypatch.setattr(trial_mod, "evaluate", lambda engine, split, name, idx, *a, **k: (
        calls.append((name, len(idx))), real(engine, split, name, idx, *a, **k))[1])
    data = {"curve_eval_size": 16}
    new = run_trial(_trial(tmp_path / "new", data=data))
    assert calls == [("val", 16)] * 3 + [("val", 64), ("test", 64)]       # steps 0, 4, 8; step 12 + final; test

    calls.clear()
    monkeypatch.setattr(trial_mod, "_record_eval", lambda run, s, last=False, _f=trial_mod._record_eval: _f(run, s))
    old = run_trial(_trial(tmp_path / "old", data=data))                  # the two-pass path, for reference
    assert calls == [("val", 16)] * 4 + [("val", 64), ("test", 64)]
    a, b = new["history"][-1], old["history"][-1]
    assert a["step"] == b["step"] == 12 and a["val_score"] == b["val_score"] and a["val_f1"] == b["val_f1"]
    np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-5)
    assert new["val"]["score"] == old["val"]["score"] and new["val"]["size"] == 64
    np.testing.assert_allclose(new["val"]["loss"], old["val"]["loss"], rtol=1e-6)
    assert new["test"] == old["test"]
    assert [h["val_loss"] for h in new["history"][:-1]] == [h["val_loss"] for h in old["history"][:-1]]
