"""What the Ray Tune and Ray Train adapters share: flat metrics, the checkpoints a trial may resume from, and
the ``report`` callable a trial is handed."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from harness.train.affinity import claim_cpus
from harness.train.checkpoint import newest_first

__all__ = ["ALREADY_FINISHED", "flat_metrics", "resumable", "restore_candidates", "reporter", "pin_trial"]

ALREADY_FINISHED = "already_finished"   # final-report key: the trial had finished in an earlier run, nothing ran


def flat_metrics(row: dict) -> dict:
    """The scalar, non-None values of a row (what Ray's result dicts and loggers accept)."""
    return {k: v for k, v in row.items() if isinstance(v, (int, float, str, bool)) and v is not None}


def resumable(experiment_dir: Path | str) -> bool:
    """Whether Tune saved anything of this experiment to resume from. ``Tuner.can_restore`` only looks for
    ``tuner.pkl``, which Tune writes when the Tuner is built; the experiment state (trials, searcher) comes with the
    first snapshot. A driver killed in between leaves an experiment that ``Tuner.restore`` cannot rebuild: Tune
    does not pickle the ``param_space`` or ``num_samples``, so it restarts it with no grid (or a searcher without
    a space and a budget of one). Such an experiment is started again from its config instead; trials that had
    finished are still handed back from their stored results."""
    from ray import tune
    from ray.tune.execution.tune_controller import TuneController

    pattern = TuneController.CKPT_FILE_TMPL.format("*")
    return tune.Tuner.can_restore(str(experiment_dir)) and any(Path(experiment_dir).glob(pattern))


def pin_trial(resources, world: int = 1) -> list[int] | None:
    """In a Ray worker of a CPU trial: pin its threads to cores of its own (``resources.pin_cpus``; see
    :mod:`harness.train.affinity`). Only for a whole number of CPUs per trial: trials that share a core
    (``cpus_per_trial: 0.5``) are left to the OS scheduler. Returns the cores, or None where it did not pin."""
    cpus = resources.cpus_per_trial
    if not resources.pin_cpus or resources.gpus_per_trial > 0 or cpus != int(cpus) or int(cpus) % world:
        return None
    return claim_cpus(int(cpus) // world)


def restore_candidates(handed_back: Any, storage: Path) -> list[str]:
    """Checkpoints to resume from, newest first: the one Ray hands back (``tune.get_checkpoint()`` /
    ``ray.train.get_checkpoint()``) plus every ``checkpoint_*`` persisted in the trial's storage folder. Ray's
    own record can lag a killed driver by a few seconds; older ones are the fallback when the newest is corrupt."""
    found: list[str] = []
    if handed_back is not None:
        path = handed_back.path
        found.append(path if Path(path).is_dir() else handed_back.to_directory())
    found += [str(p) for p in Path(storage).glob("checkpoint_*") if p.is_dir()]
    return newest_first(found)


def reporter(send: Callable[[dict, str | None], None], trial_id: str,
             rows: Callable[[dict], dict] = lambda m: m) -> Callable[[dict, str | None], None]:
    """The trial's ``report(metrics, checkpoint_dir)``: ``rows(metrics)`` tagged with the trial id, flattened,
    handed to ``send`` with the checkpoint folder, which is deleted afterwards (Ray copied it into its storage)."""
    def report(metrics: dict, ckpt_dir: str | None) -> None:
        try:
            send(flat_metrics({**rows(metrics), "trial_id": trial_id, "done": False}), ckpt_dir)
        finally:
            if ckpt_dir:
                shutil.rmtree(ckpt_dir, ignore_errors=True)
    return report


