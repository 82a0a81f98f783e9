"""Trainability schedules in the real trial loop (tiny BERT, real IMDB text, CPU, bf16 autocast): the contract.

At every step exactly the scheduled set trains: parameters outside it are bit-identical across the step,
parameters inside it move over their training window; the optimizer holds state only for parameters that have
trained; layer-wise lr decay gives each layer lr·ξ^(L−ℓ); a run resumed at a step where the set just changed
equals the uninterrupted one bit for bit.
"""
from __future__ import annotations

import shutil

import pytest
import torch

import strategies
from harness.config import build_config
from harness.config.expand import expand
from harness.train.trial import run_trial
from tests.conftest import tiny_sweep_dict

SCHEDULES = [
    ("gradual_unfreeze", {"every": 3}),
    ("progressive_freeze", {"start": 0.25}),
    ("lp_ft", {"probe_steps": 4, "then": "freeze_attention"}),
    ("auto_freeze", {"check_every": 2, "threshold": 0.5}),
    ("full", {}),
    ("top_k", {"k": 1}),
]


def _trial(tmp_path, name, params, lr_decay=None, **sections):
    strategy = {"name": name, "params": params, **({"lr_decay": lr_decay} if lr_decay is not None else {})}
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, strategy=strategy, **sections)))
    return trial


def _watch(monkeypatch):
    """Record, for every step, the parameters before and after it and the set that had requires_grad."""
    import harness.train.trial as trial_mod

    seen = {"steps": []}
    real_engine, real_step = trial_mod.make_engine, trial_mod._train_step

    def make(model, train, device, **kw):
        seen["engine"] = real_engine(model, train, device, **kw)
        return seen["engine"]

    def step(run, engine, *args, **kwargs):
        model = engine.model
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        hot = frozenset(n for n, p in model.named_parameters() if p.requires_grad)
        expected = run.trainability.schedule.trainable(run.step, run.trainability.state)
        real_step(run, engine, *args, **kwargs)
        seen["steps"].append({"before": before, "hot": hot, "expected": expected,
                              "after": {n: p.detach().clone() for n, p in model.named_parameters()}})

    monkeypatch.setattr(trial_mod, "make_engine", make)
    monkeypatch.setattr(trial_mod, "_train_step", step)
    return seen


@pytest.mark.parametrize("name,params", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_exactly_the_scheduled_set_trains_at_every_step(tmp_path, cache_dir, monkeypatch, name, params):
    seen = _watch(monkeypatch)
    result = run_trial(_trial(tmp_path, name, params, train={"weight_decay": 0.1}))
    assert result["status"] == "ok", result.get("reason")
    steps = seen["steps"]
    assert len(steps) == 12
    trained: set[str] = set()
    for i, s in enumerate(steps):
        assert s["hot"] == s["expected"], f"step {i}: requires_grad differs from the schedule"
        for n in s["before"]:
            if n not in s["hot"]:   # frozen for this step: no update, no weight decay, no momentum
                assert torch.equal(s["before"][n], s["after"][n]), f"step {i}: frozen {n} moved"
        trained |= s["hot"]
    # every parameter moves over the steps it trains (first step of its window to the last)
    for n in trained:
        window = [s for s in steps if n in s["hot"]]
        assert not torch.equal(window[0]["before"][n], window[-1]["after"][n]), f"{n} never moved"
    # the optimizer holds state only for parameters that have trained, and for each of those
    engine = seen["engine"]
    names = {id(p): n for n, p in engine.model.named_parameters()}
    with_state = {names[id(p)] for p, st in engine.optimizer.state.items() if st}
    assert with_state == trained
    changes = result["cost"]["changes"]
    assert changes[0]["step"] == 0
    assert (len(changes) > 1) == strategies.resolve(name).schedule      # every schedule here changes in 12 steps
    ratios = [sum(s["after"][n].numel() for n in s["hot"]) / result["params"]["total"] for s in steps]
    assert result["cost"]["trainable_ratio_mean"] == pytest.approx(sum(ratios) / len(ratios), rel=1e-12)
    assert result["cost"]["train_flops"] > 0


def test_never_trained_parameters_get_no_optimizer_state(tmp_path, cache_dir, monkeypatch):
    """gradual_unfreeze every 6 of 12 steps: the optimizer covers layer 0 (the schedule's set at step 12 has it)
    but no step trains it, so it has no state and stays bit-identical; the embeddings are not even covered."""
    seen = _watch(monkeypatch)
    run_trial(_trial(tmp_path, "gradual_unfreeze", {"every": 6}))
    engine = seen["engine"]
    params = dict(engine.model.named_parameters())
    covered = {n for g in engine.optimizer.param_groups for p in g["params"] for n, q in params.items() if q is p}
    untouched = {n for n in covered if not any(n in s["hot"] for s in seen["steps"])}
    assert untouched and all(".layer.0." in n for n in untouched)
    assert not any(n.startswith("bert.embeddings.") for n in covered)
    assert all(not engine.optimizer.state.get(params[n]) for n in untouched)
    first = seen["steps"][0]["before"]
    assert all(torch.equal(params[n].detach(), first[n]) for n in untouched)


def test_frozen_bottom_runs_without_autograd(tmp_path, cache_dir, monkeypatch):
    """Once auto_freeze froze the embeddings and layer 0, their outputs carry no graph: no backward is spent."""
    import harness.train.trial as trial_mod

    grads = []
    real = trial_mod._train_step

    def step(run, engine, *args, **kwargs):
        layer0 = engine.model.bert.encoder.layer[0]
        h = layer0.register_forward_hook(lambda m, a, out: grads.append((run.trainability.state,
                                                                          (out[0] if isinstance(out, tuple) else out).requires_grad)))
        try:
            real(run, engine, *args, **kwargs)
        finally:
            h.remove()

    monkeypatch.setattr(trial_mod, "_train_step", step)
    result = run_trial(_trial(tmp_path, "auto_freeze", {"check_every": 2, "threshold": 5.0}))
    assert result["cost"]["final_state"] >= 2
    assert {rg for state, rg in grads if state >= 2} == {False}
    assert {rg for state, rg in grads if state < 2} == {True}
    full = run_trial(_trial(tmp_path / "full", "full", {}))
    assert result["cost"]["train_flops"] < full["cost"]["train_flops"]


def test_layerwise_lr_decay_follows_the_formula(tmp_path, cache_dir, monkeypatch):
    seen = _watch(monkeypatch)
    xi, lr, depth = 0.8, 1e-3, 2
    result = run_trial(_trial(tmp_path, "full", {}, lr_decay=xi))
    assert result["strategy"] == "full(lr_decay=0.8)"
    engine = seen["engine"]
    group_of = {id(p): g for g in engine.optimizer.param_groups for p in g["params"]}
    for n, p in engine.model.named_parameters():
        if n.startswith("bert.embeddings."):
            level = 0
        elif ".layer." in n:
            level = int(n.split(".layer.")[1].split(".")[0]) + 1
        else:
            level = depth          # pooler and classifier: the peak lr
        assert group_of[id(p)]["initial_lr"] == pytest.approx(lr * xi ** (depth - level), rel=1e-12), n
        # the transformers schedule (LambdaLR) scaled every group alike: linear decay to 0 at max_steps
        assert group_of[id(p)]["lr"] == pytest.approx(0.0, abs=1e-15)
    # the curve reports group 0 (the top level: the peak lr): step 4 of 12, one warm-up step, linear decay
    assert result["history"][1]["lr"] == pytest.approx(lr * 8 / 11, rel=1e-12)


@pytest.mark.parametrize("name,params,at", [
    ("gradual_unfreeze", {"every": 4}, 4),          # the set changes exactly at the checkpoint step
    ("auto_freeze", {"check_every": 2, "threshold": 0.5}, 4),
    ("progressive_freeze", {"start": 0.25}, 4),
])
def test_resume_mid_schedule_equals_uninterrupted(tmp_path, cache_dir, name, params, at):
    train = {"checkpoint_every": 4}
    full = run_trial(_trial(tmp_path / "full", name, params, train=train))
    changes = [c["step"] for c in full["cost"]["changes"]]
    assert len(changes) > 1, changes
    saved = tmp_path / "saved"
    run_trial(_trial(tmp_path / "part", name, params, train=train),
              lambda m, c=None: shutil.copytree(c, saved) if c and c.endswith(f"{at:07d}") else None,
              scratch_dir=str(tmp_path / "scratch"))
    resumed = run_trial(_trial(tmp_path / "resumed", name, params, train=train), restore_from=str(saved))
    assert resumed["resumed_from_step"] == at
    assert resumed["train_losses"] == full["train_losses"]
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in full["history"]]
    assert resumed["test"]["score"] == full["test"]["score"] and resumed["test"]["loss"] == full["test"]["loss"]
    for key in ("changes", "final_state", "trainable_ratio_mean", "train_flops"):
        assert resumed["cost"][key] == full["cost"][key], key
