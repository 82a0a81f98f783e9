"""Self-describing trial results: atomic JSON writes and the environment a number was measured in."""
from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["RESULT_SCHEMA", "write_json_atomic", "read_json", "environment", "trial_dir", "result_path",
           "load_results", "sanitize"]

RESULT_SCHEMA = "freezebench.trial/1"
_PACKAGES = ("torch", "transformers", "datasets", "peft", "ray", "deepspeed", "wandb", "numpy", "freezebench")


def sanitize(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become strings (strict JSON has no NaN), paths become strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON to a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(sanitize(obj), fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def trial_dir(output_dir: str | Path, sweep: str, trial_id: str) -> Path:
    return Path(output_dir) / sweep / "trials" / trial_id


def result_path(output_dir: str | Path, sweep: str, trial_id: str) -> Path:
    return trial_dir(output_dir, sweep, trial_id) / "result.json"


def load_results(sweep_dir: str | Path) -> list[dict]:
    """Every ``trials/*/result.json`` under a sweep folder, sorted by trial index."""
    out = []
    for path in sorted(Path(sweep_dir).glob("trials/*/result.json")):
        try:
            out.append(read_json(path))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable result file: {exc}") from None
    return sorted(out, key=lambda r: (r.get("index", 0), r.get("trial_id", "")))


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict:
    """Where and with what a result was produced (no secrets, no environment dump)."""
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
               "cuda": torch.version.cuda}
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "packages": {p: _version(p) for p in _PACKAGES},
        "git_commit": _git_commit(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT"),
        "slurm_node": os.environ.get("SLURMD_NODENAME"), "raylet_pid": os.environ.get("RAY_RAYLET_PID"),  # Ray node
    }
