"""Ray Tune adapter: one Tune trial per TrialConfig, checkpoints through ``tune.Checkpoint``, resume through
``Tuner.restore``. A finished trial is never run twice (its stored result is checked by config hash)."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import ray
from ray import tune

from harness.adapters.ray.common import (ALREADY_FINISHED, flat_metrics, pin_trial, reporter, restore_candidates,
                                        restored_tuner, resumable)
from harness.adapters.ray.progress import ProgressCallback
from harness.adapters.ray.train import max_concurrent, run_data_parallel, trial_resources
from harness.adapters.wandb import TrialTracker, process_rank
from harness.config import TrialConfig, config_hash, trial_from_dict
from harness.config.search import sampled_trial
from harness.results import failed_result, result_path, write_json_atomic
from harness.results.recover import TUNE_KEY, encode_result, load_or_recover, tune_experiment_dir, tune_record
from harness.train.distributed import workers_per_trial
from harness.train.trial import run_trial

__all__ = ["run_tune", "experiment_path", "finished_result", "stored_result", "finalize_results", "SEARCH_METRIC",
           "trial_of", "SAMPLE_KEY", "tune_config", "run_config"]

log = logging.getLogger("freezebench.sweep")
SEARCH_METRIC = "val_score"     # schedulers and searchers read the validation curve, never the test split
SAMPLE_KEY = "__sample__"       # a sampled trial's sample number within its study (set by the search's Repeater)
TRIAL_INDEX = "__trial_index__"   # ray.tune.search.repeater.TRIAL_INDEX: the repeat, i.e. which seed


def trial_of(config: dict) -> TrialConfig:
    """The TrialConfig of a Tune trial's config: a grid trial carries it whole (``trial``); a sampled one is its
    study's template with the searcher's values, its sample number and the seed of its repeat."""
    if "trial" in config:
        return trial_from_dict(config["trial"])
    study, n, repeat = config["study"], int(config[SAMPLE_KEY]), int(config[TRIAL_INDEX])
    seeds = study["seeds"]
    return sampled_trial(study["template"], study["label"], study["algorithm"], n, dict(config.get("values") or {}),
                         seeds[repeat], index=study["index_base"] + n * len(seeds) + repeat)


def stored_result(trial: TrialConfig, log=log.warning, reported: str | None = None) -> dict | None:
    """The trial's ``result.json``; when it is damaged or gone, the copy its final report left in Tune's record
    or in ``reported`` (written back, see harness/results/recover.py); None when there is none."""
    return load_or_recover(result_path(trial.output.dir, trial.sweep, trial.trial_id),
                           tune_record(trial.output.dir, trial.sweep, trial.trial_id), log=log, reported=reported,
                           config_hash=config_hash(trial))


def finished_result(trial: TrialConfig, log=log.warning) -> dict | None:
    """The stored result of this exact trial if it already finished (ok / diverged), else None.

    Tune snapshots its experiment state every few seconds; a trial that finished after the last snapshot
    would be started again on ``--resume``. This check makes sure a finished trial is never rerun - not even
    when its ``result.json`` was damaged since (it is rebuilt from Tune's copy)."""
    stored = stored_result(trial, log)
    if stored and stored.get("status") in ("ok", "diverged") and stored.get("config_hash") == config_hash(trial):
        return stored
    return None


_SAMPLED_IDS: dict[tuple, str] = {}


def trial_id_of(config: dict) -> str:
    """The trial id alone (Tune asks for it several times per trial, on the driver: a sampled trial's id is built
    and validated once)."""
    grid = config.get("trial")
    if grid:
        return grid["trial_id"]
    key = (config["study"]["label"], config[SAMPLE_KEY], config[TRIAL_INDEX], repr(sorted(config["values"].items())))
    if key not in _SAMPLED_IDS:
        _SAMPLED_IDS[key] = trial_of(config).trial_id
    return _SAMPLED_IDS[key]


def _final_report(trial: TrialConfig, result: dict, rerun: bool = False) -> None:
    """The trial's last report: what the progress line shows (validation numbers: what schedulers and searchers
    may read; the test score is shown, never used), plus the whole result (:data:`TUNE_KEY`), which Tune keeps
    in its own record of the trial - the second copy a damaged ``result.json`` is rebuilt from. ``rerun``: Tune
    scheduled a trial that had already finished (it finished after Tune's last snapshot of the experiment) and
    the stored result was handed back without running anything; the progress line says so."""
    val, test = result.get("val") or {}, result.get("test") or {}
    last = (result.get("history") or [{}])[-1]
    tune.report({**flat_metrics({"trial_id": trial.trial_id, "status": result["status"], "done": True,
                                 "step": test.get("step", last.get("step", 0)),
                                 "val_score": val.get("score", last.get("val_score")),
                                 "val_loss": val.get("loss", last.get("val_loss")),
                                 "final_val_score": val.get("score"), "final_test_score": test.get("score"),
                                 ALREADY_FINISHED: rerun}),
                 TUNE_KEY: encode_result(result)})


def _trainable(config: dict) -> None:
    """Runs inside a Ray worker. Thin: rebuild the TrialConfig, restore, run, report."""
    logging.basicConfig(level=config.get("log_level", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    trial = trial_of(config)
    done = finished_result(trial)
    if done is not None:
        logging.getLogger("freezebench.sweep").info("%s already finished; not rerun", trial.trial_id)
        _final_report(trial, done, rerun=True)
        return
    if workers_per_trial(trial.resources) > 1:   # data parallel: Ray Train workers inside this trial
        _final_report(trial, run_data_parallel(trial, tokenized_path=config.get("tokenized_path"),
                                               log_level=config.get("log_level", "INFO")))
        return
    pin_trial(trial.resources)
    storage = Path(config.get("experiment_dir") or experiment_path(trial)) / trial.trial_id
    restore = restore_candidates(tune.get_checkpoint(), storage)
    scratch = tempfile.mkdtemp(prefix=f"fb-{trial.trial_id[:40]}-")
    report = reporter(lambda row, ckpt_dir: tune.report(
        row, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None), trial.trial_id)

    try:
        with TrialTracker(trial, rank=process_rank()) as tracker:  # this trial's W&B run (rank 0; no-op if disabled)
            result = run_trial(trial, tracker.wrap(report), tokenized_path=config.get("tokenized_path"),
                               restore_from=restore, scratch_dir=scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _final_report(trial, result)


def finalize_results(trials: list[TrialConfig], grid, console=print) -> dict[str, int]:
    """After ``fit``: a result still marked ``running`` was stopped early (ASHA) or its worker died; a trial
    without any result file failed before its first evaluation; a damaged result file of a finished trial is
    rebuilt from Tune's copy first. Nothing is dropped silently."""
    errors, reported = {}, {}
    for res in grid:
        try:
            tid = trial_of(res.config).trial_id if res.config else None
        except (KeyError, ValueError, TypeError):   # not one of ours (or a config Tune could not restore)
            tid = None
        if tid and res.error is not None:
            errors[tid] = f"{type(res.error).__name__}: {str(res.error).strip().splitlines()[-1][:500]}"
        if tid and isinstance(getattr(res, "metrics", None), dict):
            reported[tid] = res.metrics.get(TUNE_KEY)
    counts: dict[str, int] = {}
    for trial in trials:
        path = result_path(trial.output.dir, trial.sweep, trial.trial_id)
        stored = stored_result(trial, console, reported.get(trial.trial_id))
        if stored is None:
            stored = failed_result(trial, errors.get(trial.trial_id, "trial did not start or produced no result"))
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
    return tune_experiment_dir(trial.output.dir, trial.sweep)


def single_node() -> bool:
    """Whether the Ray cluster has one live node. Grid sweeps reuse actors only then: on one node a fresh actor
    per trial buys nothing but its start-up and imports (a 6-trial tiny sweep on 2 slots: 60-62 s fresh,
    30-37 s reused; docs/performance.md). On several nodes a reused actor keeps its node, so a short trial's
    successor would stay where it is while a fresh actor, still starting on another node, is dropped (the
    two-node SLURM test saw every trial on one node); fresh actors let Ray place each trial."""
    return sum(1 for n in ray.nodes() if n.get("Alive")) <= 1


def tune_config(res, **kwargs) -> tune.TuneConfig:
    """Trials named by their freezebench id (readable; also the folder name in Tune's storage). Actors are reused
    between trials by default (sampled studies): a new trial then skips the worker's start-up and imports (seconds
    per trial; see docs/performance.md, sweep_scale). Grid sweeps reuse them on a one-node cluster only
    (``single_node``)."""
    kwargs.setdefault("max_concurrent_trials", max_concurrent(res))
    kwargs.setdefault("reuse_actors", True)
    return tune.TuneConfig(trial_name_creator=lambda t: trial_id_of(t.config),
                           trial_dirname_creator=lambda t: trial_id_of(t.config), **kwargs)


def run_config(res, exp: Path, callbacks) -> tune.RunConfig:
    return tune.RunConfig(name=exp.name, storage_path=str(exp.parent), verbose=0, callbacks=callbacks,
                          failure_config=tune.FailureConfig(max_failures=res.max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=2))


def asha(early_stopping: dict | None, max_t: int, metric: str = SEARCH_METRIC, mode: str = "max"):
    if not (early_stopping and early_stopping.get("enabled")):
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="step", metric=metric, mode=mode, max_t=max_t,
                         grace_period=early_stopping["grace_period"],
                         reduction_factor=early_stopping["reduction_factor"])


def run_tune(trials: list[TrialConfig], *, tokenized_path: str | None, resume: bool, console=print,
             scheduler=None, extra_callbacks=(), early_stopping: dict | None = None, metric: str = SEARCH_METRIC,
             mode: str = "max") -> tune.ResultGrid:
    first = trials[0]
    res = first.resources
    exp = experiment_path(first)
    trainable = tune.with_resources(_trainable, trial_resources(res))   # multi-worker: workers ask for their own
    finished = {t.trial_id: r for t in trials if (r := finished_result(t, console)) is not None} if resume else {}
    progress = ProgressCallback(len(trials), labels={t.trial_id: t.strategy_label for t in trials}, console=console,
                                finished=finished, max_steps={t.trial_id: t.train.max_steps for t in trials},
                                debug=first.logging.level == "debug", mode=mode)
    callbacks = [progress, *extra_callbacks]
    if scheduler is None:
        scheduler = asha(early_stopping, max(t.train.max_steps for t in trials), metric, mode)
    if resume and resumable(exp):
        console(f"resuming sweep from {exp}")
        tuner = restored_tuner(exp, trainable, callbacks)
    else:
        param_space = {"trial": tune.grid_search([t.to_dict() for t in trials]),
                       "tokenized_path": tokenized_path, "log_level": first.logging.level.upper()}
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config(res, scheduler=scheduler, reuse_actors=single_node()),
                           run_config=run_config(res, exp, callbacks))
    return tuner.fit()
