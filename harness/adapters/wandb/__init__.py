"""Weights & Biases adapter: the only package that imports ``wandb`` (and ``wandb_workspaces``), always lazily.

* ``mode`` - ``logging.wandb.mode``; ``null`` means online when an API key is configured (``WANDB_API_KEY`` or
  a netrc entry for the W&B host), else offline. Nothing here ever prompts or logs in.
* ``tracker`` - :class:`TrialTracker`, one run per trial (group = sweep, job_type = strategy, a run id derived
  from sweep + trial id so a resumed trial resumes its run), wrapping the trial's ``report`` callable.
* ``summary`` - the per-sweep console lines and ``summary`` run (tables, plots, ``report.html`` artifact).
* ``report`` - a W&B Report (wandb-workspaces): saved online, written as JSON offline.

Runs live in ``results/<sweep>/wandb/``; see docs/wandb.md.
"""
from __future__ import annotations

from harness.adapters.wandb.mode import MODES, Mode, api_key_configured, process_rank, resolve_mode, run_id
from harness.adapters.wandb.report import build_report, publish_report
from harness.adapters.wandb.summary import log_sweep_summary, offline_runs, prepare_sweep, sync_command
from harness.adapters.wandb.tracker import EVAL_METRICS, TrialTracker

__all__ = ["MODES", "Mode", "api_key_configured", "resolve_mode", "run_id", "process_rank", "TrialTracker",
           "EVAL_METRICS", "prepare_sweep", "log_sweep_summary", "sync_command", "offline_runs", "build_report",
           "publish_report"]
