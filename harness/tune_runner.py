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

from harness.checkpoint import newest_first
from harness.expand import TrialConfig, config_hash, trial_from_dict
from harness.parallel import workers_per_trial
from harness.results import read_json, result_path, write_json_atomic
from harness.progress import ProgressCallback
from harness.wandb_adapter import TrialTracker, process_rank

__all__ = ["run_tune", "experiment_path", "init_ray", "finished_result", "finalize_results"]

log = logging.getLogger("freezebench.sweep")


def _flat_metrics(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool)) and v is not None}


def finished_result(trial: TrialConfig) -> dict | None:
    """The stored result of this exact trial if it already finished (ok / diverged), else None.

    Tune snapshots its experiment state every few seconds; a trial that finished after the last snapshot
    would be started again on ``--resume``. This check makes sure a finished trial is never rerun."""
    path = result_path(trial.output.dir, trial.sweep, trial.trial_id)
    try:
        stored = read_json(path)
    except (OSError, ValueError):
        return None
    if stored.get("status") in ("ok", "diverged") and stored.get("config_hash") == config_hash(trial):
        return stored
    return None


def _restore_candidates(trial: TrialConfig) -> list[str]:
    """Checkpoints to resume from, newest first: the one Tune hands back plus every checkpoint persisted in
    the trial's storage folder (Tune's own record can lag behind a killed driver by a few seconds; older
    ones are the fallback when the newest is corrupt)."""
    found = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None and Path(checkpoint.path).is_dir():
        found.append(checkpoint.path)
    found += [str(p) for p in (experiment_path(trial) / trial.trial_id).glob("checkpoint_*") if p.is_dir()]
    return newest_first(found)


def _final_report(trial: TrialConfig, result: dict) -> None:
    final = result.get("final") or {}
    tune.report(_flat_metrics({"trial_id": trial.trial_id, "status": result["status"], "done": True,
                               "step": final.get("step", 0), "eval_accuracy": final.get("eval_accuracy"),
                               "final_eval_accuracy": final.get("eval_accuracy")}))


def _trainable(config: dict) -> None:
    """Runs inside a Ray worker. Thin: rebuild the TrialConfig, restore, run, report."""
    from harness.trial import run_trial

    logging.basicConfig(level=config.get("log_level", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    trial = trial_from_dict(config["trial"])
    done = finished_result(trial)
    if done is not None:
        logging.getLogger("freezebench.sweep").info("%s already finished; not rerun", trial.trial_id)
        _final_report(trial, done)
        return
    if workers_per_trial(trial.resources) > 1:   # data parallel: Ray Train workers inside this trial
        from harness.distributed import run_data_parallel

        _final_report(trial, run_data_parallel(trial, tokenized_path=config.get("tokenized_path"),
                                               log_level=config.get("log_level", "INFO")))
        return
    restore = _restore_candidates(trial)
    scratch = tempfile.mkdtemp(prefix=f"fb-{trial.trial_id[:40]}-")

    def report(metrics: dict, ckpt_dir: str | None) -> None:
        ckpt = tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
        tune.report(_flat_metrics({**metrics, "trial_id": trial.trial_id, "done": False}), checkpoint=ckpt)
        if ckpt_dir:
            shutil.rmtree(ckpt_dir, ignore_errors=True)

    try:
        with TrialTracker(trial, rank=process_rank()) as tracker:  # this trial's W&B run (rank 0; no-op if disabled)
            result = run_trial(trial, tracker.wrap(report), tokenized_path=config.get("tokenized_path"),
                               restore_from=restore, scratch_dir=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _final_report(trial, result)


def finalize_results(trials: list[TrialConfig], grid) -> dict[str, int]:
    """After ``fit``: a result still marked ``running`` was stopped early (ASHA) or its worker died; a trial
    without any result file failed before its first evaluation. Nothing is dropped silently."""
    errors = {}
    for res in grid:
        tid = (res.config or {}).get("trial", {}).get("trial_id") if res.config else None
        if tid and res.error is not None:
            errors[tid] = f"{type(res.error).__name__}: {str(res.error).strip().splitlines()[-1][:500]}"
    counts: dict[str, int] = {}
    for trial in trials:
        path = result_path(trial.output.dir, trial.sweep, trial.trial_id)
        try:
            stored = read_json(path)
        except (OSError, ValueError):
            stored = None
        if stored is None:
            stored = {"schema": "freezebench.trial/1", "sweep": trial.sweep, "trial_id": trial.trial_id,
                      "index": trial.index, "config_hash": config_hash(trial), "strategy": trial.strategy_label,
                      "strategy_name": trial.strategy.name, "config": trial.to_dict(), "history": [],
                      "status": "failed", "reason": errors.get(trial.trial_id, "trial did not start or produced no result")}
            write_json_atomic(path, stored)
        elif stored.get("status") == "running":
            last = stored["history"][-1]["step"] if stored.get("history") else 0
            if trial.trial_id in errors:
                stored.update(status="failed", reason=errors[trial.trial_id])
            else:
                stored.update(status="stopped", reason=f"stopped early by ASHA at step {last}")
            stored["stopped_at_step"] = last
            write_json_atomic(path, stored)
        counts[stored["status"]] = counts.get(stored["status"], 0) + 1
    return counts


def experiment_path(trial: TrialConfig) -> Path:
    """Tune's experiment folder: ``results/<sweep>/_tune/<sweep>`` (so Tune's banner names the sweep)."""
    return Path(trial.output.dir).resolve() / trial.sweep / "_tune" / trial.sweep


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
        # Ray turns 127.0.0.1 into the machine's reachable IP and then listens on every interface unless its
        # "cluster mode" is off; off, the node keeps the loopback address and its servers bind to it.
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
        # address="local": a new Ray of our own, never one found through /tmp/ray/ray_current_cluster (written by
        # any `ray start` on this machine, e.g. another user's) or RAY_ADDRESS - that is what --address is for
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), num_gpus=num_gpus,
                 _node_ip_address="127.0.0.1", **kwargs)


def run_tune(trials: list[TrialConfig], *, tokenized_path: str | None, resume: bool, console=print,
             scheduler=None, extra_callbacks=(), early_stopping: dict | None = None) -> tune.ResultGrid:
    first = trials[0]
    res = first.resources
    exp = experiment_path(first)
    from harness.distributed import max_concurrent, trial_resources

    trainable = tune.with_resources(_trainable, trial_resources(res))   # multi-worker: workers ask for their own
    finished = {t.trial_id: r for t in trials if (r := finished_result(t)) is not None} if resume else {}
    callbacks = [ProgressCallback(trials, console=console, finished=finished), *extra_callbacks]
    if scheduler is None and early_stopping and early_stopping.get("enabled"):
        from ray.tune.schedulers import ASHAScheduler

        scheduler = ASHAScheduler(time_attr="step", metric="eval_accuracy", mode="max",
                                  max_t=max(t.train.max_steps for t in trials), grace_period=early_stopping["grace_period"],
                                  reduction_factor=early_stopping["reduction_factor"])
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
                max_concurrent_trials=max_concurrent(res), scheduler=scheduler,
                trial_name_creator=lambda t: t.config["trial"]["trial_id"],
                trial_dirname_creator=lambda t: t.config["trial"]["trial_id"]),
            run_config=tune.RunConfig(
                name=exp.name, storage_path=str(exp.parent), verbose=0, callbacks=callbacks,
                failure_config=tune.FailureConfig(max_failures=res.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
        )
    return tuner.fit()
