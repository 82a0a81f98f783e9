"""DeepSpeed backend, for real, on CPU (DS_ACCELERATOR=cpu, gloo): config merge rules, frozen parameters,
parity with the torch backend, bf16, checkpoints, skipped steps, bad configs, concurrent trials in one sweep."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from datetime import datetime

import pytest
import torch
import yaml

os.environ["DS_ACCELERATOR"] = "cpu"   # before anything imports deepspeed

import deepspeed  # noqa: E402 - installed by `make test`; a missing install must fail, not skip

from harness.train.engines import deepspeed_config as ds_config

from harness.train import distributed as parallel

from harness import sweep  # noqa: E402
from harness.config import ConfigError, TrainConfig, build_config  # noqa: E402
from harness.config.expand import expand  # noqa: E402
from harness.train.trial import run_trial  # noqa: E402
from tests.conftest import ROOT, tiny_sweep_dict  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def _trial(tmp_path, **train):
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, train=train)))
    return trial


# ------------------------------------------------------------------------------------------ config rules
def test_config_from_trial_values():
    train = TrainConfig(batch_size=16, grad_accum=2, precision="bf16", zero_stage=2, grad_clip=None,
                        backend="deepspeed")
    cfg = ds_config.build_ds_config(train, world_size=2)
    assert cfg["train_micro_batch_size_per_gpu"] == 16 and cfg["gradient_accumulation_steps"] == 2
    assert cfg["train_batch_size"] == 64
    assert cfg["gradient_clipping"] == 0.0          # explicit: DeepSpeed's default became 1.0 in 0.19.3
    assert cfg["bf16"] == {"enabled": True} and cfg["fp16"] == {"enabled": False}
    assert cfg["zero_optimization"] == {"stage": 2}
    assert "optimizer" not in cfg and "scheduler" not in cfg
    fp16 = ds_config.build_ds_config(TrainConfig(precision="fp16", grad_clip=0.5, backend="deepspeed"))
    assert fp16["fp16"] == {"enabled": True, "loss_scale": 0} and fp16["gradient_clipping"] == 0.5


def test_user_config_merged_and_checked():
    train = TrainConfig(batch_size=16, precision="bf16", zero_stage=1, backend="deepspeed")
    user = {"train_micro_batch_size_per_gpu": 16, "zero_optimization": {"stage": 1, "reduce_bucket_size": 5e7},
            "bf16": {"enabled": True}, "steps_per_print": 50}
    cfg = ds_config.build_ds_config(train, 1, user)
    assert cfg["zero_optimization"] == {"stage": 1, "reduce_bucket_size": 5e7} and cfg["steps_per_print"] == 50
    assert user["zero_optimization"] == {"stage": 1, "reduce_bucket_size": 5e7}   # the user's dict is untouched
    bad = [
        ({"train_micro_batch_size_per_gpu": 32}, "train.deepspeed_config.train_micro_batch_size_per_gpu"),
        ({"train_batch_size": 32}, "train.deepspeed_config.train_batch_size"),
        ({"zero_optimization": {"stage": 3}}, "train.deepspeed_config.zero_optimization.stage"),
        ({"gradient_clipping": 0.0}, "train.deepspeed_config.gradient_clipping"),
        ({"fp16": {"enabled": True}}, "train.deepspeed_config.fp16.enabled"),
        ({"train_micro_batch_size_per_gpu": "auto"}, "train.deepspeed_config.train_micro_batch_size_per_gpu"),
        ({"zero_optimization": {"reduce_bucket_size": "auto"}},
         "train.deepspeed_config.zero_optimization.reduce_bucket_size"),
        ({"zero_optimisation": {"stage": 1}}, "train.deepspeed_config.zero_optimisation"),
        ({"optimizer": {"type": "Adam"}}, "train.deepspeed_config.optimizer"),
        ({"scheduler": {"type": "WarmupLR"}}, "train.deepspeed_config.scheduler"),
        ({"managed_gradient_accumulation": False}, "train.deepspeed_config.managed_gradient_accumulation"),
    ]
    for user, key in bad:
        with pytest.raises(ConfigError) as info:
            ds_config.build_ds_config(train, 1, user)
        assert info.value.path == key, (user, str(info.value))
    with pytest.raises(ConfigError, match="did you mean 'zero_optimization'"):
        ds_config.build_ds_config(train, 1, {"zero_optimisation": {}})
    with pytest.raises(ConfigError) as info:
        ds_config.build_ds_config(TrainConfig(precision="fp16", backend="deepspeed"), 1, None, on_cpu=True)
    assert info.value.path == "train.precision"


# ------------------------------------------------------------------------------------ engine on a trial
class _Capture:
    """Wraps make_engine: records the weights the engine starts from and the engine itself."""

    def __init__(self, monkeypatch):
        import harness.train.trial as trial_mod

        self.engines, self.initial = [], []
        real = trial_mod.make_engine

        def make(model, train, device, **kw):
            self.initial.append({n: p.detach().clone() for n, p in model.named_parameters()})
            engine = real(model, train, device, **kw)
            self.engines.append(engine)
            return engine

        monkeypatch.setattr(trial_mod, "make_engine", make)


def _optimizer_params(opt) -> list:
    for attr in ("bit16_groups", "bf16_groups", "fp16_groups"):   # DeepSpeed's wrappers: the model's tensors
        if hasattr(opt, attr):
            return [p for group in getattr(opt, attr) for p in group]
    return [p for group in opt.param_groups for p in group["params"]]


@pytest.mark.parametrize("stage, precision", [(0, "bf16"), (1, "bf16"), (2, "bf16"), (1, "fp32"), (2, "fp32")])
def test_frozen_parameters_bit_identical(stage, precision, tmp_path, cache_dir, monkeypatch):
    import strategies

    cap = _Capture(monkeypatch)
    env_before = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    trial = _trial(tmp_path, backend="deepspeed", zero_stage=stage, precision=precision, max_steps=8)
    result = run_trial(trial)
    assert result["status"] == "ok", result["reason"]
    (engine,), (initial,) = cap.engines, cap.initial
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    frozen = moved = 0
    for name, p in engine.model.named_parameters():
        start = initial[name].to(dtype)
        if p.requires_grad:
            moved += not torch.equal(p.detach(), start)
        else:
            assert p.dtype == dtype and torch.equal(p.detach(), start), f"frozen {name} changed"
            assert p.grad is None
            frozen += 1
    assert frozen > 0 and moved > 0
    trainable = {id(p) for p in engine.model.parameters() if p.requires_grad}
    in_optimizer = [id(p) for p in _optimizer_params(engine.optimizer)]
    assert set(in_optimizer) == trainable and len(in_optimizer) == len(trainable)
    decay = {g["weight_decay"] for g in engine.optimizer.param_groups}
    assert decay == {trial.train.weight_decay, 0.0}
    assert strategies.count_params(engine.model) == (result["params"]["trainable"], result["params"]["total"])
    assert not torch.distributed.is_initialized()      # the trial's process group is gone
    assert {k: os.environ.get(k) for k in env_before} == env_before   # rendezvous variables restored
    assert result["hparams"]["backend"] == "deepspeed"


def test_parity_torch_vs_deepspeed_fp32(tmp_path, cache_dir):
    common = dict(precision="fp32", max_steps=20, eval_every=10)
    torch_run = run_trial(_trial(tmp_path / "torch", **common))
    ds_run = run_trial(_trial(tmp_path / "ds", backend="deepspeed", zero_stage=0, **common))
    assert len(torch_run["train_losses"]) == len(ds_run["train_losses"]) == 20
    assert torch_run["train_losses"] == pytest.approx(ds_run["train_losses"], abs=1e-5)
    norms = [h["grad_norm"] for h in torch_run["history"][1:]], [h["grad_norm"] for h in ds_run["history"][1:]]
    assert norms[0] == pytest.approx(norms[1], rel=1e-4)
    lrs = [h["lr"] for h in torch_run["history"]], [h["lr"] for h in ds_run["history"]]
    assert lrs[0] == pytest.approx(lrs[1], rel=1e-9)


def test_parity_with_gradient_accumulation(tmp_path, cache_dir):
    """Batch 4 × accumulation 2 is batch 8 (same examples per step without length grouping, no dropout), in the
    torch engine and in DeepSpeed's; and the two engines agree."""
    common = dict(precision="fp32", max_steps=6, eval_every=6, length_grouping=False, dropout=0.0,
                  attention_dropout=0.0)
    accum = dict(grad_accum=2, batch_size=4)
    torch_run = run_trial(_trial(tmp_path / "torch", **common, **accum))
    ds_run = run_trial(_trial(tmp_path / "ds", backend="deepspeed", zero_stage=0, **common, **accum))
    batch8 = run_trial(_trial(tmp_path / "b8", **common, grad_accum=1, batch_size=8))
    assert torch_run["train_losses"] == pytest.approx(batch8["train_losses"], abs=1e-5)
    assert [h["val_loss"] for h in torch_run["history"]] == pytest.approx([h["val_loss"] for h in batch8["history"]],
                                                                            abs=1e-5)
    assert torch_run["train_losses"] == pytest.approx(ds_run["train_losses"], abs=1e-5)


def test_bf16_within_noise_of_fp32(tmp_path, cache_dir):
    common = dict(max_steps=20, eval_every=10, backend="deepspeed", zero_stage=1)
    fp32 = run_trial(_trial(tmp_path / "fp32", precision="fp32", **common))
    bf16 = run_trial(_trial(tmp_path / "bf16", precision="bf16", **common))
    n = fp32["test"]["size"]
    noise = 2 * (0.25 / n) ** 0.5                       # two binomial standard errors at p = 0.5
    assert abs(bf16["test"]["score"] - fp32["test"]["score"]) <= noise
    assert bf16["test"]["loss"] == pytest.approx(fp32["test"]["loss"], abs=0.05)
    assert bf16["train_losses"] == pytest.approx(fp32["train_losses"], abs=0.05)
    assert bf16["train_losses"] != fp32["train_losses"]   # bf16 really ran in bf16


@pytest.mark.parametrize("stage, precision", [(0, "fp32"), (0, "bf16"), (2, "bf16")])
def test_checkpoint_resume_matches_uninterrupted(stage, precision, tmp_path, cache_dir):
    kw = dict(backend="deepspeed", zero_stage=stage, precision=precision, checkpoint_every=4)
    full = run_trial(_trial(tmp_path / "full", **kw))
    saved = tmp_path / "saved"
    run_trial(_trial(tmp_path / "part", **kw),
              lambda m, c=None: shutil.copytree(c, saved) if c and not saved.exists() else None,
              scratch_dir=str(tmp_path / "scratch"))
    state = torch.load(saved / "state.pt", weights_only=True)      # weights_only-safe
    assert len(state["engine"]["optimizer_per_rank"]) == 1
    resumed = run_trial(_trial(tmp_path / "resumed", **kw), restore_from=str(saved))
    assert resumed["resumed_from_step"] == 4
    assert resumed["train_losses"] == full["train_losses"]
    assert resumed["test"]["loss"] == full["test"]["loss"]


def test_skipped_steps_counted(tmp_path, cache_dir, monkeypatch):
    """A loss-scale overflow (fp16 needs a GPU; simulated here) skips the step and is counted everywhere."""
    import harness.train.engines.deepspeed_engine as ds_engine_mod

    real_init = ds_engine_mod.DeepSpeedEngine.__init__
    overflow_at = {3, 5}

    def init(self, *a, **k):
        real_init(self, *a, **k)
        opt, real_step, calls = self.optimizer, self.optimizer.step, [0]

        def step(*sa, **sk):
            calls[0] += 1
            if calls[0] in overflow_at:          # what DeepSpeed's fp16 optimizers do on inf/nan gradients
                opt.overflow = True
                return None
            opt.overflow = False
            return real_step(*sa, **sk)

        opt.step = step

    monkeypatch.setattr(ds_engine_mod.DeepSpeedEngine, "__init__", init)
    result = run_trial(_trial(tmp_path, backend="deepspeed", zero_stage=1, precision="bf16", max_steps=8))
    assert result["status"] == "ok" and result["skipped_steps"] == 2
    assert [h["skipped_steps"] for h in result["history"]] == [0, 1, 2]
    saved = json.loads((tmp_path / "results/tiny/trials" / result["trial_id"] / "result.json").read_text())
    assert saved["skipped_steps"] == 2


# ------------------------------------------------------------------------------------- process groups
def test_process_group_retries_a_taken_port(monkeypatch):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1], parallel.free_port()])
    monkeypatch.setattr(parallel, "free_port", lambda: next(ports))
    before = os.environ.get("MASTER_PORT")
    try:
        with parallel.process_group(torch.device("cpu")) as owned:
            assert owned and torch.distributed.get_world_size() == 1
            assert os.environ["MASTER_PORT"] != str(taken.getsockname()[1])
    finally:
        taken.close()
    assert not torch.distributed.is_initialized() and os.environ.get("MASTER_PORT") == before


# --------------------------------------------------------------------------------------------- the CLI
BAD = [
    ({"train_micro_batch_size_per_gpu": 32}, {}, "train.deepspeed_config.train_micro_batch_size_per_gpu"),
    ({"zero_optimization": {"stage": 1}, "zero_optimisaton": {}}, {}, "train.deepspeed_config.zero_optimisaton"),
    ({"fp16": {"enabled": True}}, {}, "train.deepspeed_config.fp16.enabled"),
    ({}, {"precision": "fp16", "device": "auto"}, "train.precision"),
    ({"gradient_accumulation_steps": "auto"}, {}, "train.deepspeed_config.gradient_accumulation_steps"),
]


@pytest.mark.parametrize("user, train, key", BAD, ids=[k for *_, k in BAD])
def test_bad_deepspeed_config_exits_2_before_training(user, train, key, tmp_path, monkeypatch, capsys):
    import transformers

    def no_load(*a, **k):
        raise AssertionError("a model load started")

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_config", no_load)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "ds.json").write_text(json.dumps(user))
    cfg = tiny_sweep_dict(tmp_path, train={"backend": "deepspeed", "batch_size": 16,
                                           "deepspeed_config": str(tmp_path / "ds.json"), **train})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc = sweep.main([str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert key in err, err
    assert not (tmp_path / "results").exists()


def test_search_axis_contradiction_names_the_key(tmp_path, monkeypatch, capsys):
    (tmp_path / "ds.json").write_text(json.dumps({"train_micro_batch_size_per_gpu": 8}))
    cfg = tiny_sweep_dict(tmp_path, train={"backend": "deepspeed", "deepspeed_config": str(tmp_path / "ds.json")},
                          search={"batch_size": [8, 16]})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert sweep.main([str(tmp_path / "c.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "train.deepspeed_config.train_micro_batch_size_per_gpu" in err and "16" in err


@pytest.mark.slow
def test_two_deepspeed_trials_run_concurrently_in_one_sweep(tmp_path, cache_dir):
    # long enough (80 steps) that the second trial starts while the first still trains, even on a busy machine
    cfg = tiny_sweep_dict(tmp_path, train={"backend": "deepspeed", "zero_stage": 1, "max_steps": 80, "eval_every": 20},
                          search={"seed": [0, 1]}, resources={"cpus_per_trial": 1, "num_cpus": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir), "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "harness.sweep", str(tmp_path / "c.yaml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "results/tiny/trials").glob("*/result.json"))]
    assert len(results) == 2 and all(r["status"] == "ok" and r["test"]["step"] == 80 for r in results)
    spans = [(datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"])) for r in results]
    # microsecond timestamps: one trial started strictly before the other finished (not the same second)
    assert all(s.microsecond or e.microsecond for s, e in spans)
    assert max(s for s, _ in spans) < min(e for _, e in spans), f"trials did not overlap: {spans}"


def test_checkpoint_of_another_engine_setup_is_refused(tmp_path, cache_dir):
    """A ZeRO 0 fp32 checkpoint offered to a ZeRO 2 bf16 trial: skipped with a warning, the trial starts over."""
    saved = tmp_path / "saved"
    run_trial(_trial(tmp_path / "fp32", backend="deepspeed", precision="fp32", checkpoint_every=4),
              lambda m, c=None: shutil.copytree(c, saved) if c and not saved.exists() else None,
              scratch_dir=str(tmp_path / "scratch"))
    kw = dict(backend="deepspeed", zero_stage=2, precision="bf16", max_steps=8)
    fresh = run_trial(_trial(tmp_path / "fresh", **kw))
    offered = run_trial(_trial(tmp_path / "offered", **kw), restore_from=str(saved))
    assert offered["status"] == "ok" and offered["resumed_from_step"] is None
    assert offered["train_losses"] == fresh["train_losses"]
