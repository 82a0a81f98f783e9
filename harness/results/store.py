"""Where results live and how they are written: atomic JSON (readers never see half a file), strict JSON
(NaN/inf as strings), ``results/<sweep>/trials/<trial id>/result.json``."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_json_atomic", "read_json", "trial_dir", "result_path", "sanitize"]


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
