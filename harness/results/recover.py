"""A finished trial's result, rebuilt when its ``result.json`` is damaged.

Every trial ends with one last report to Ray Tune that carries its whole result (:data:`TUNE_KEY`, the JSON
text of the :class:`~harness.results.schema.TrialResult`). Tune appends each report as one JSON line to the
trial's own record, ``results/<sweep>/_tune/<sweep>/<trial id>/result.json``, in a folder of its own beside
ours. So a ``trials/<trial id>/result.json`` that is truncated, emptied or overwritten with garbage (a full disk,
a crash of the file system, a careless editor) can be rebuilt byte-for-byte in content from that second copy:
:func:`recover_result`. Nothing here imports Ray: it reads a file Ray wrote.

Why not only keep the first copy safe? Ours is already written atomically (temp file, fsync, rename); what it
cannot survive is damage after the fact, and a second copy in another file is the plain remedy.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from harness.results.schema import TrialResult, load_result, upgrade
from harness.results.store import sanitize, write_json_atomic

__all__ = ["TUNE_KEY", "tune_experiment_dir", "tune_record", "encode_result", "from_tune_record",
           "load_or_recover", "recover_sweep"]

TUNE_KEY = "freezebench_result"      # the key of the final Tune report that carries the whole result
_TAIL = 8 << 20                      # read at most the last 8 MiB of Tune's record (the final report is last)


def tune_experiment_dir(output_dir: str | Path, sweep: str) -> Path:
    """Ray Tune's experiment folder of a sweep: ``results/<sweep>/_tune/<sweep>`` (Tune's banner names it)."""
    return Path(output_dir).resolve() / sweep / "_tune" / sweep


def tune_record(output_dir: str | Path, sweep: str, trial_id: str) -> Path:
    """Tune's JSON-lines record of one trial's reports (one line per ``tune.report``). A sampled search keeps one
    Tune experiment per study (``_tune/<sweep>.<study>/``): its trials are found there."""
    path = tune_experiment_dir(output_dir, sweep) / trial_id / "result.json"
    if path.exists():
        return path
    return next(iter(sorted(path.parent.parent.glob(f"{sweep}.*/{trial_id}/result.json"))), path)


def encode_result(result: dict) -> str:
    """The value of :data:`TUNE_KEY`: the result as compact strict JSON (NaN/inf as strings)."""
    return json.dumps(sanitize(result), separators=(",", ":"))


def from_tune_record(path: str | Path) -> Optional[TrialResult]:
    """The newest whole result carried by a Tune record, or None (no record, or no final report in it)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL))
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            found = _decode(json.loads(line).get(TUNE_KEY), f"{path} ({TUNE_KEY})")
        except (ValueError, AttributeError):
            continue      # a torn last line (Tune killed mid-write) or a row of another shape
        if found is not None:
            return found
    return None


def _decode(text: Optional[str], where: str) -> Optional[TrialResult]:
    try:
        return upgrade(json.loads(text), where) if isinstance(text, str) else None
    except ValueError:
        return None


def load_or_recover(path: str | Path, record: str | Path, log=None, reported: Optional[str] = None,
                    config_hash: Optional[str] = None) -> Optional[TrialResult]:
    """The result at ``path`` if readable, else the copy in Tune's ``record`` (or ``reported``: the
    :data:`TUNE_KEY` value of the trial's last result as Tune handed it back), written back to ``path`` with a
    warning in the result and through ``log``; else None. A missing file with no copy is simply None. With
    ``config_hash``, a copy of another configuration of the trial (an older plan) is not used."""
    path = Path(path)
    try:
        return load_result(path)
    except (OSError, ValueError) as exc:
        damage = None if isinstance(exc, FileNotFoundError) else exc
    rebuilt = from_tune_record(record) or _decode(reported, f"Ray Tune's last result of {path.parent.name}")
    if rebuilt is None or rebuilt.get("trial_id") != path.parent.name or \
            (config_hash is not None and rebuilt.get("config_hash") != config_hash):
        return None
    what = f"{path} was unreadable ({damage})" if damage else f"{path} was missing"
    note = f"{what}; rebuilt from Ray Tune's copy of the trial's final report"
    rebuilt["warnings"] = [*rebuilt.get("warnings", []), note]
    write_json_atomic(path, rebuilt)
    if log is not None:
        log(f"recovered {path.parent.name}: {note}")
    return rebuilt


def recover_sweep(sweep_dir: str | Path, log=None) -> list[str]:
    """Rebuild every damaged or missing ``trials/*/result.json`` of a sweep folder that Tune holds a copy of
    (``python -m harness.report`` runs this first). Returns the trial ids rebuilt."""
    sweep_dir = Path(sweep_dir)
    rebuilt = []
    for record in sorted(sweep_dir.glob("_tune/*/*/result.json")):
        path = sweep_dir / "trials" / record.parent.name / "result.json"
        try:
            load_result(path)
            continue
        except (OSError, ValueError):
            pass
        if load_or_recover(path, record, log=log) is not None:
            rebuilt.append(record.parent.name)
    return rebuilt
