"""Ray Tune adapter: one Tune trial per TrialConfig, checkpoints through ``tune.Checkpoint``, resume through
``Tuner.restore``. The only module besides :mod:`harness.sweep` that imports ray."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import ray
from ray import tune

from harness.expand import TrialConfig, trial_from_dict
from harness.progress import ProgressCallback

__all__ = ["run_tune", "experiment_path", "init_ray"]

log = logging.getLogger("freezebench.sweep")


def _flat_metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool)) and v is not None}


def _trainable(config: dict) -> None:
    """Runs inside a Ray worker. Thin: rebuild the TrialConfig, restore, run, report."""
    from harness.trial import run_trial

    logging.basicConfig(level=config.get("log_level", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    trial = trial_from_dict(config["trial"])
    restore = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        restore.append(checkpoint.to_directory(tempfile.mkdtemp(prefix="fb-restore-")))
    scratch = tempfile.mkdtemp(prefix=f"fb-{trial.trial_id[:40]}-")

    def report(metrics: dict, ckpt_dir: str | None) -> None:
        ckpt = tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        tune.report(_flat_metrics({**metrics, "trial_id": trial.trial_id, "done": False}), checkpoint=ckpt)
        if ckpt_dir:
            shutil.rmtree(ckpt_dir, ignore_errors=True)

    try:
        result = run_trial(trial, report, tokenized_path=config.get("tokenized_path"), restore_from=restore,
                           scratch_dir=scratch)
    finally:
        for folder in restore + [scratch]:
            shutil.rmtree(folder, ignore_errors=True)
    final = result.get("final") or {}
    tune.report(_flat_metrics({"trial_id": trial.trial_id, "status": result["status"], "done": True,
                               "step": final.get("step", 0), "eval_accuracy": final.get("eval_accuracy"),
                               "final_eval_accuracy": final.get("eval_accuracy")}))


def experiment_path(trial: TrialConfig) -> Path:
    return Path(trial.output.dir).resolve() / trial.sweep / "_tune"


def init_ray(address: str | None, num_cpus: int | None, num_gpus: int | None = None) -> None:
    """Local Ray by default (bound to 127.0.0.1, no dashboard); ``address`` joins an existing cluster."""
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                  configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        os.environ.setdefault("RAY_NODE_IP_ADDRESS", "127.0.0.1")
        ray.init(num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus, _node_ip_address="127.0.0.1", **kwargs)


def run_tune(trials: list[TrialConfig], *, tokenized_path: str | None, resume: bool, console=print,
             scheduler=None, extra_callbacks=()) -> tune.ResultGrid:
    first = trials[0]
    res = first.resources
    exp = experiment_path(first)
    trainable = tune.with_resources(_trainable, {"cpu": res.cpus_per_trial, "gpu": res.gpus_per_trial})
    callbacks = [ProgressCallback(trials, console=console), *extra_callbacks]
    if resume and tune.Tuner.can_restore(str(exp)):
        console(f"resuming sweep from {exp}")
        tuner = tune.Tuner.restore(str(exp), trainable=trainable, resume_unfinished=True, resume_errored=True)
        # callbacks are not restored by Tune; attach ours again
        tuner._local_tuner._run_config.callbacks = callbacks  # noqa: SLF001 - Tune offers no public hook
    else:
        param_space = {"trial": tune.grid_search([t.to_dict() for t in trials]),
                       "tokenized_path": tokenized_path, "log_level": first.logging.level.upper()}
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=res.max_concurrent_trials, scheduler=scheduler,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"]),
            run_config=tune.RunConfig(
                name=exp.name, storage_path=str(exp.parent), verbose=0, callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=res.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
        )
    return tuner.fit()
