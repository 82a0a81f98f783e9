"""Every reach of the adapters into a library's private state, each behind one named function.

Each shim says what it touches and why no public API does the job; ``tests/adapters/test_shims.py`` checks
that every touched attribute still exists in the installed version, so an upgrade that moves one fails
loudly there instead of silently changing behaviour in a sweep.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

__all__ = ["set_restored_tuner_callbacks", "keep_ray_on_loopback", "in_tune_session", "skip_wandb_launch_probe",
           "wandb_report_spec"]


def set_restored_tuner_callbacks(tuner: Any, callbacks: Sequence[Any]) -> None:
    """Attach callbacks to a ``Tuner.restore``-d tuner.

    Ray 2.60's ``Tuner.restore`` takes no ``run_config`` and does not restore callbacks (they are not
    serialised), so the progress callback of a resumed sweep must be put back on the run config it keeps."""
    tuner._local_tuner._run_config.callbacks = list(callbacks)   # noqa: SLF001


def keep_ray_on_loopback() -> None:
    """Make a local ``ray.init`` keep 127.0.0.1 as the node address.

    Ray turns 127.0.0.1 into the machine's reachable IP and then listens on every interface unless its
    "cluster mode" constant is off; there is no ``ray.init`` argument for it."""
    import ray._private.ray_constants as ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def in_tune_session() -> bool:
    """True inside a Ray Tune trial (Ray Train's ``TuneReportCallback`` only works there).

    Ray 2.60 has no public "am I in a Tune trial" query; this is the function Ray Train itself uses."""
    from ray.tune.trainable.trainable_fn_utils import _in_tune_session

    return bool(_in_tune_session())


def skip_wandb_launch_probe() -> None:
    """Save about 0.7 CPU-seconds per trial process: at the end of ``wandb.init`` wandb imports its whole Launch
    package only to apply Launch job inputs staged by ``wandb.sdk.launch.inputs``. Nothing can be staged
    unless that module was imported, so the probe is skipped exactly then; behaviour is otherwise unchanged."""
    from wandb.sdk import wandb_run

    probe = getattr(wandb_run.Run, "_detect_and_apply_job_inputs", None)
    if probe is None or getattr(probe, "_freezebench", False):
        return

    def detect_and_apply_job_inputs(self):
        if "wandb.sdk.launch.inputs.internal" in sys.modules:
            return probe(self)
        return None

    detect_and_apply_job_inputs._freezebench = True
    wandb_run.Run._detect_and_apply_job_inputs = detect_and_apply_job_inputs


def wandb_report_spec(report: Any) -> Any:
    """The document a wandb-workspaces ``Report.save()`` would upload, for writing it to disk offline.

    wandb-workspaces builds it in ``Report._to_model()``; there is no public way to get it without saving."""
    return report._to_model()   # noqa: SLF001
