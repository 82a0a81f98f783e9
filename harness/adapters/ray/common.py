"""What the Ray Tune and Ray Train adapters share: flat metrics, the checkpoints a trial may resume from, and
the ``report`` callable a trial is handed."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Callable

from harness.adapters.shims import set_restored_tuner_callbacks
from harness.train.affinity import claim_cpus
from harness.train.checkpoint import newest_first

__all__ = ["ALREADY_FINISHED", "flat_metrics", "resumable", "refill_rotated_checkpoints", "restored_tuner",
           "restore_candidates", "reporter", "pin_trial"]

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


_TUNE_CHECKPOINT = re.compile(r"checkpoint_(\d{6})")     # Ray's name for a trial's persisted checkpoint


def refill_rotated_checkpoints(experiment_dir: Path | str) -> list[Path]:
    """Before ``Tuner.restore``: an empty folder wherever Tune's snapshot may name a checkpoint it has since
    rotated away, so that the restore reaches the trial and the trial resumes from its newest checkpoint.

    Why: with ``CheckpointConfig(num_to_keep=2)`` Tune deletes a trial's older checkpoints as new ones arrive, but
    writes its experiment snapshot only every few seconds. A driver killed between the two leaves a snapshot that
    names ``checkpoint_00000k`` while ``k`` is gone and ``k+1``, ``k+2`` sit beside it; Tune's restore then fails
    the trial ("does not exist on storage anymore") before any of its code runs, and no Tune option restores from
    another checkpoint. Tune only checks that the folder exists before handing it to the trial, whose
    :func:`restore_candidates` also lists every ``checkpoint_*`` in its folder and takes the newest complete one
    (an empty folder has no ``done`` marker and is tried last). Rotation only deletes older checkpoints, so only
    indices below a trial's newest are filled. Returns the folders made."""
    made: list[Path] = []
    for trial_dir in sorted(p for p in Path(experiment_dir).iterdir() if p.is_dir()):
        indices = {int(m.group(1)) for c in trial_dir.iterdir() if (m := _TUNE_CHECKPOINT.fullmatch(c.name))}
        for index in range(max(indices, default=0)):
            if index not in indices:
                (folder := trial_dir / f"checkpoint_{index:06d}").mkdir()
                made.append(folder)
    return made


def restored_tuner(experiment_dir: Path | str, trainable: Any, callbacks: list) -> Any:
    """``Tuner.restore`` of a grid sweep or a search study, unfinished and errored trials included, after
    :func:`refill_rotated_checkpoints`, with ``callbacks`` put back (Tune does not restore them)."""
    from ray import tune

    refill_rotated_checkpoints(experiment_dir)
    tuner = tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    set_restored_tuner_callbacks(tuner, callbacks)
    return tuner


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


