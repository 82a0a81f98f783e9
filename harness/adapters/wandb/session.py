"""Starting and finishing a W&B run: quiet, never prompting, falling back to offline when online fails."""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from harness.adapters.shims import skip_wandb_launch_probe
from harness.adapters.wandb.mode import entity_of, project_of

__all__ = ["quiet_env", "init_run", "finish_run", "finite"]

log = logging.getLogger("freezebench.wandb")


def quiet_env() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")


def init_run(mode: str, *, wandb_cfg, sweep_dir: Path, **kwargs):
    """``wandb.init`` without prompts; an online failure falls back to an offline run in the same folder."""
    quiet_env()
    import wandb

    try:
        skip_wandb_launch_probe()
    except Exception:  # noqa: BLE001 - an optimisation only
        pass

    settings = wandb.Settings(silent=True, console="off", save_code=False, init_timeout=60,
                              x_disable_stats=True, x_save_requirements=False)
    (sweep_dir / "wandb").mkdir(parents=True, exist_ok=True)
    common = dict(project=project_of(wandb_cfg), entity=entity_of(wandb_cfg), tags=list(wandb_cfg.tags) or None,
                  dir=str(sweep_dir), resume="allow", reinit="create_new", settings=settings, **kwargs)
    try:
        return wandb.init(mode=mode, **common)
    except Exception as exc:  # noqa: BLE001 - W&B must never stop a sweep
        if mode != "online":
            raise
        log.warning("W&B online init failed (%s); logging this run offline instead", type(exc).__name__)
        # the failed online run still holds its id in this process's W&B service ("run ID ... is in use"):
        # tear the service down first so the offline run keeps the same id (and `wandb sync` the same run)
        wandb.teardown()
        return wandb.init(mode="offline", **common)


def finish_run(run, exit_code: int = 0) -> None:
    """``run.finish``: W&B flushes the run's transaction log in its own service process."""
    run.finish(exit_code=exit_code)


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
