"""Results layer: the trial result schema, where results live, and the environment they were measured in."""
from __future__ import annotations

from harness.results.env import cpu_model, environment, git_commit
from harness.results.schema import (HPARAM_KEYS, PREDICTIONS_FILE, RESULT_SCHEMA, STATUSES, ResultSchemaError, TrialResult,
                                    failed_result, load_result, load_results, new_result, now, upgrade)
from harness.results.store import read_json, result_path, sanitize, trial_dir, write_json_atomic

__all__ = ["RESULT_SCHEMA", "PREDICTIONS_FILE", "HPARAM_KEYS", "STATUSES", "TrialResult", "ResultSchemaError", "new_result",
           "failed_result", "upgrade", "load_result", "load_results", "now", "environment", "git_commit",
           "cpu_model", "read_json", "write_json_atomic", "result_path", "trial_dir", "sanitize"]
