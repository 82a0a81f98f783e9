"""Multi-worker (data-parallel) trials on CPU: 2 gloo ranks.

Without Ray (two spawned processes, one process group): a 2-rank trial with batch b per rank trains exactly
like a 1-rank trial with batch 2b (torch DDP and DeepSpeed ZeRO 2), and a partitioned ZeRO checkpoint
resumes exactly. With Ray: the real sweep runs a 2-worker trial through Ray Train inside Tune and reports
once per evaluation.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

os.environ["DS_ACCELERATOR"] = "cpu"

from harness.data.batching import BatchStream  # noqa: E402
from harness.config import ConfigError, build_config  # noqa: E402
from harness.config.expand import expand, trial_from_dict  # noqa: E402
from harness.train.distributed import ShardedStream, free_port, workers_per_trial  # noqa: E402
from harness.train.trial import run_trial  # noqa: E402
from tests.conftest import ROOT, tiny_sweep_dict  # noqa: E402

pytestmark = pytest.mark.timeout(600)
NO_DROPOUT = {"dropout": 0.0, "attention_dropout": 0.0}   # ranks draw different dropout masks than one process


def _trial(tmp_path, resources=None, **train):
    (trial,) = expand(build_config(tiny_sweep_dict(tmp_path, train=train, resources=resources or {})))
    return trial


# ------------------------------------------------------------------------------------------ pure parts
def test_sharded_stream_is_disjoint_and_covers_every_batch():
    lengths = np.random.default_rng(0).integers(5, 60, size=101)
    ref = BatchStream(lengths, 8, seed=3)
    shards = [ShardedStream(BatchStream(lengths, 8, seed=3), r, 2) for r in range(2)]
    for _ in range(12):          # crosses an epoch (13 batches of 8 from 101, the last one of 5)
        batch = next(ref)
        a, b = next(shards[0]), next(shards[1])
        assert not set(a) & set(b) and sorted([*a, *b]) == sorted(batch)
    assert shards[0].state_dict() == ref.state_dict()


def test_workers_per_trial_and_resource_checks(tmp_path):
    base = tiny_sweep_dict(tmp_path)
    res = lambda **r: build_config({**base, "resources": {**base["resources"], **r}}).resources  # noqa: E731
    assert workers_per_trial(res()) == 1
    assert workers_per_trial(res(workers_per_trial=2)) == 2
    assert workers_per_trial(res(gpus_per_trial=4)) == 4
    assert workers_per_trial(res(gpus_per_trial=0.5)) == 1
    for bad, key in [({"gpus_per_trial": 2, "workers_per_trial": 3}, "resources.workers_per_trial"),
                     ({"gpus_per_trial": 1, "workers_per_trial": 2}, "resources.workers_per_trial"),
                     ({"gpus_per_trial": 1.5}, "resources.gpus_per_trial"),
                     ({"workers_per_trial": 0}, "resources.workers_per_trial")]:
        with pytest.raises(ConfigError) as info:
            res(**bad)
        assert info.value.path == key


def test_ray_resources_for_a_two_worker_trial(tmp_path):
    from harness.adapters.ray.train import DRIVER_CPU, scaling_config, trial_resources

    r = _trial(tmp_path, resources={"cpus_per_trial": 2, "workers_per_trial": 2}).resources
    assert trial_resources(r) == {"cpu": DRIVER_CPU, "gpu": 0}
    sc = scaling_config(r)
    assert sc.num_workers == 2 and not sc.use_gpu
    assert sc.resources_per_worker["CPU"] * 2 + DRIVER_CPU <= 2


# --------------------------------------------------------------------------------- two ranks, no Ray
def _rank_main(rank: int, world: int, port: int, trial_dict: dict, out: str, restore: str | None, keep: str | None):
    os.environ.update(DS_ACCELERATOR="cpu", LOCAL_RANK=str(rank))   # what a launcher (Ray Train, torchrun) sets
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    trial = trial_from_dict(trial_dict)
    trial = dataclasses.replace(trial, output=dataclasses.replace(trial.output, dir=f"{out}/rank{rank}"))

    def report(metrics, ckpt=None):
        if ckpt and keep and rank == 0 and metrics["step"] == 4:
            shutil.copytree(ckpt, keep)

    try:
        result = run_trial(trial, report, restore_from=restore, scratch_dir=f"{out}/scratch{rank}")
        with open(f"{out}/result{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        torch.distributed.destroy_process_group()


def _two_ranks(trial, out, restore=None, keep=None) -> list[dict]:
    torch.multiprocessing.spawn(_rank_main, args=(2, free_port(), trial.to_dict(), str(out), restore,
                                                  str(keep) if keep else None), nprocs=2, join=True)
    return [json.loads((out / f"result{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
def test_ddp_two_ranks_equal_one_rank_with_double_batch(tmp_path, cache_dir):
    common = dict(precision="fp32", max_steps=8, eval_every=4, length_grouping=False, **NO_DROPOUT)
    one = run_trial(_trial(tmp_path / "one", batch_size=16, **common))
    r0, r1 = _two_ranks(_trial(tmp_path / "two", batch_size=8, **common), tmp_path / "two")
    assert r0["status"] == r1["status"] == "ok"
    assert r0["train_losses"] == r1["train_losses"]                 # ranks agree on the (global) loss
    assert r0["train_losses"] == pytest.approx(one["train_losses"], abs=2e-5)
    assert r0["test"]["loss"] == pytest.approx(one["test"]["loss"], abs=2e-5)


@pytest.mark.slow
def test_deepspeed_zero2_two_ranks_parity_and_partitioned_checkpoint(tmp_path, cache_dir):
    common = dict(backend="deepspeed", zero_stage=2, precision="fp32", max_steps=8, eval_every=4,
                  checkpoint_every=4, length_grouping=False, **NO_DROPOUT)
    one = run_trial(_trial(tmp_path / "one", batch_size=16, **common))
    two = _trial(tmp_path / "two", batch_size=8, **common)
    keep = tmp_path / "step4"
    r0, _ = _two_ranks(two, tmp_path / "two", keep=keep)
    assert r0["train_losses"] == pytest.approx(one["train_losses"], abs=2e-5)
    state = torch.load(keep / "state.pt", weights_only=True)
    assert state["engine"]["world_size"] == 2 and len(state["engine"]["optimizer_per_rank"]) == 2
    resumed, _ = _two_ranks(two, tmp_path / "resumed", restore=str(keep))
    assert resumed["resumed_from_step"] == 4
    assert resumed["train_losses"] == r0["train_losses"]
    assert resumed["test"]["loss"] == r0["test"]["loss"]


# ------------------------------------------------------------------------------------- Ray, the real CLI
@pytest.mark.slow
def test_two_worker_trial_through_ray_reports_once_per_evaluation(tmp_path, cache_dir):
    cfg = tiny_sweep_dict(tmp_path, train={"backend": "deepspeed", "zero_stage": 1, "checkpoint_every": 4},
                          resources={"cpus_per_trial": 2, "num_cpus": 2, "workers_per_trial": 2})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "FREEZEBENCH_CACHE": str(cache_dir), "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "harness.sweep", str(tmp_path / "c.yaml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sweep = tmp_path / "results" / "tiny"
    (path,) = sweep.glob("trials/*/result.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok" and result["workers"] == 2 and result["test"]["step"] == 12
    assert [h["step"] for h in result["history"]] == [0, 4, 8, 12]
    assert len(result["train_losses"]) == 12
    (tune_log,) = sweep.glob("_tune/*/*/result.json")            # what Tune received from the trial
    rows = [json.loads(line) for line in tune_log.read_text().splitlines() if line.strip()]
    progress = [r for r in rows if not r.get("done")]
    assert [r["step"] for r in progress] == [0, 4, 8, 12]        # rank 0 only, once per evaluation
    assert all(r["workers"] == 2 for r in progress)
    assert rows[-1]["done"] and rows[-1]["status"] == "ok"
    assert len(list(sweep.glob("_train/*/checkpoint_0000004"))) == 1   # Ray Train kept the step-4 checkpoint
