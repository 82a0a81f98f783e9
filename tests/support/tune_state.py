"""Put a Ray Tune experiment folder into the states a killed driver leaves behind."""
from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["as_killed_before_first_snapshot", "as_rotated_after_last_snapshot"]


def as_killed_before_first_snapshot(experiment_dir: Path) -> None:
    """The folder as a driver killed after the Tuner was built and before Tune's first snapshot leaves it:
    ``tuner.pkl`` (written when the Tuner is built) and nothing else."""
    for path in Path(experiment_dir).iterdir():
        if path.name != "tuner.pkl":
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def as_rotated_after_last_snapshot(trial_dir: Path, ahead: int = 5) -> Path:
    """A trial's Tune folder as a driver killed after Tune rotated checkpoints away (``num_to_keep``) and before
    its next snapshot leaves it: the checkpoint the snapshot names is gone, a newer one is there. Whatever index
    the snapshot names, moving the newest checkpoint ``ahead`` indices further and deleting the others gives that
    state. Returns the one checkpoint left."""
    checkpoints = sorted(Path(trial_dir).glob("checkpoint_*"))
    assert checkpoints, f"{trial_dir}: no checkpoint to rotate"
    newest = checkpoints[-1]
    moved = newest.with_name(f"checkpoint_{int(newest.name.split('_')[1]) + ahead:06d}")
    newest.rename(moved)
    for old in checkpoints[:-1]:
        shutil.rmtree(old)
    return moved
