"""Multi-worker (data-parallel) trials: Ray Train V2's ``TorchTrainer`` launched inside the Tune trial.

Ray 2.60 runs Train V2 by default (``RAY_TRAIN_V2_ENABLED`` unset = on). Its documented way to nest Train in
Tune: the Tune trial is a light *driver* that builds a ``TorchTrainer`` and calls ``fit()``; the trainer's
workers request their own resources; ``TuneReportCallback`` forwards rank 0's ``ray.train.report`` metrics
to the Tune trial, so Tune sees one report per evaluation.

Each worker runs the ordinary :func:`harness.train.trial.run_trial` inside the process group Ray Train made
(gloo on CPU, NCCL on GPUs): the trial takes its rank's share of every batch
(:class:`harness.train.distributed.ShardedStream`) and the engine all-reduces gradients (DeepSpeed, or
``DistributedDataParallel`` for the torch backend). Rank 0 writes ``result.json``; the other ranks write
theirs to a scratch folder that is thrown away. Throughput in the result is the sum over workers.

Checkpoints go to Ray Train's storage (``results/<sweep>/_train/<trial id>``); when the trial is run again
(``--resume``, or a Tune retry) the same Train run name makes ``ray.train.get_checkpoint()`` return the
latest one, and every worker restores from it.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from pathlib import Path

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from harness.adapters.ray.common import pin_trial, reporter, restore_candidates
from harness.adapters.shims import in_tune_session
from harness.adapters.wandb import TrialTracker
from harness.config import TrialConfig, trial_from_dict
from harness.results import load_result, result_path, write_json_atomic
from harness.train.distributed import workers_per_trial
from harness.train.trial import run_trial

__all__ = ["trial_resources", "scaling_config", "max_concurrent", "run_data_parallel", "train_storage"]

log = logging.getLogger("freezebench.distributed")
_RATES = ("samples_per_s", "tokens_per_s")
DRIVER_CPU = 0.01   # the Tune trial of a multi-worker trial only waits on fit(); Tune refuses an empty request


def trial_resources(resources) -> dict:
    """What the Tune trial itself requests: everything for one worker; a sliver for a multi-worker driver
    (its workers request the rest of ``cpus_per_trial`` through the ScalingConfig)."""
    if workers_per_trial(resources) == 1:
        return {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}
    return {"cpu": DRIVER_CPU, "gpu": 0}


def scaling_config(resources) -> ray.train.ScalingConfig:
    """N workers; ``cpus_per_trial`` (less the driver's sliver) is shared among them; on GPUs one GPU each."""
    n = workers_per_trial(resources)
    use_gpu = resources.gpus_per_trial > 0
    per_worker = {"CPU": round((resources.cpus_per_trial - DRIVER_CPU) / n, 4)}
    if use_gpu:
        per_worker["GPU"] = 1
    return ray.train.ScalingConfig(num_workers=n, use_gpu=use_gpu, resources_per_worker=per_worker)


def train_storage(trial: TrialConfig) -> Path:
    return Path(trial.output.dir).resolve() / trial.sweep / "_train"


def _sum_over_ranks(values: list, device: torch.device) -> list:
    """Element-wise sum of per-rank numbers (None stays None: then every rank has None)."""
    if any(v is None for v in values):
        return values
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=on)
    dist.all_reduce(t)
    return t.tolist()


def _worker(config: dict) -> None:
    """One rank of a data-parallel trial (runs in a Ray Train worker)."""
    logging.basicConfig(level=config.get("log_level", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    trial = trial_from_dict(config["trial"])
    if not (dist.is_initialized() and dist.get_world_size() == world):
        raise RuntimeError(f"Ray Train did not set up a process group of {world} ranks")
    device = ray.train.torch.get_device() if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        pin_trial(trial.resources, world)
    own = trial
    if rank != 0:   # only rank 0 writes result.json
        other = tempfile.mkdtemp(prefix=f"fb-rank{rank}-")
        own = dataclasses.replace(trial, output=dataclasses.replace(trial.output, dir=other))
    restore = restore_candidates(ray.train.get_checkpoint(), train_storage(trial) / trial.trial_id)
    scratch = tempfile.mkdtemp(prefix=f"fb-{trial.trial_id[:40]}-r{rank}-")
    rates: dict[int, list] = {}

    def with_totals(metrics: dict) -> dict:
        # every rank reaches each evaluation (same step schedule): sum the throughput, then report together
        summed = _sum_over_ranks([metrics.get(k) for k in _RATES], device)
        rates[metrics["step"]] = summed
        return {**metrics, **dict(zip(_RATES, summed)), "workers": world}

    def send(row: dict, ckpt_dir: str | None) -> None:
        ckpt = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir and rank == 0 else None  # rank 0's holds all
        name = f"checkpoint_{row['step']:07d}" if ckpt_dir else None
        ray.train.report(row, checkpoint=ckpt, checkpoint_dir_name=name)

    report = reporter(send, trial.trial_id, with_totals)

    try:
        with TrialTracker(trial, rank=rank) as tracker:
            result = run_trial(own, tracker.wrap(report),
                               tokenized_path=config.get("tokenized_path"), restore_from=restore,
                               scratch_dir=scratch)
        total = _sum_over_ranks([(result.get("throughput") or {}).get(k) for k in _RATES], device)
        if rank == 0:
            _write_totals(trial, result, rates, total, world)
    finally:
        for folder in [scratch] + ([own.output.dir] if rank != 0 else []):
            shutil.rmtree(folder, ignore_errors=True)


def _write_totals(trial: TrialConfig, result: dict, rates: dict, total: list, world: int) -> None:
    """result.json with the whole trial's throughput (sum over workers) and the worker count."""
    for row in result["history"]:
        if row["step"] in rates:
            row.update(zip(_RATES, rates[row["step"]]))
    if result.get("throughput"):
        result["throughput"].update(zip(_RATES, total))
    result["workers"] = world
    write_json_atomic(result_path(trial.output.dir, trial.sweep, trial.trial_id), result)


def run_data_parallel(trial: TrialConfig, *, tokenized_path: str | None, log_level: str = "INFO") -> dict:
    """Run ``trial`` on ``workers_per_trial`` workers and return rank 0's result (the driver side)."""
    callbacks = []
    if in_tune_session():
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    gpu = trial.resources.gpus_per_trial > 0
    trainer = ray.train.torch.TorchTrainer(
        _worker,
        train_loop_config={"trial": trial.to_dict(), "tokenized_path": tokenized_path, "log_level": log_level},
        scaling_config=scaling_config(trial.resources),
        torch_config=ray.train.torch.TorchConfig(backend="nccl" if gpu else "gloo"),
        run_config=ray.train.RunConfig(
            name=trial.trial_id, storage_path=str(train_storage(trial)), callbacks=callbacks,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=0)),   # retries are Tune's (max_failures)
    )
    trainer.fit()
    return load_result(result_path(trial.output.dir, trial.sweep, trial.trial_id))


def max_concurrent(resources) -> int | None:
    """Concurrency limit for multi-worker trials when none is configured: a driver requests only a sliver, so
    Tune would start every trial at once and leave most of them waiting for workers; cap it at what fits."""
    if resources.max_concurrent_trials or workers_per_trial(resources) == 1:
        return resources.max_concurrent_trials
    have = ray.cluster_resources()
    fits = have.get("CPU", 0) // resources.cpus_per_trial
    if resources.gpus_per_trial > 0:
        fits = min(fits, have.get("GPU", 0) // resources.gpus_per_trial)
    return max(1, int(fits))
