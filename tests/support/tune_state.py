"""Put a Ray Tune experiment folder into the states a killed driver leaves behind."""
from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["as_killed_before_first_snapshot"]


def as_killed_before_first_snapshot(experiment_dir: Path) -> None:
    """The folder as a driver killed after the Tuner was built and before Tune's first snapshot leaves it:
    ``tuner.pkl`` (written when the Tuner is built) and nothing else."""
    for path in Path(experiment_dir).iterdir():
        if path.name != "tuner.pkl":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
