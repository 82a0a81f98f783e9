"""Reading W&B offline runs back (tests only): the ``run-<id>.wandb`` transaction log, decoded with wandb's own
protobuf records. wandb 0.31 no longer ships its Python reader (``wandb.sdk.internal.datastore``)."""
from __future__ import annotations

import json
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

__all__ = ["iter_records", "read_offline_run", "wait_for_exit"]


_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path: str | Path) -> Iterator[Any]:
    """The ``wandb.proto`` ``Record`` messages of a ``run-<id>.wandb`` file.

    The file is wandb's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0) then LevelDB-log
    framed records (32 KiB blocks; 7-byte record headers: CRC32 seeded with the type byte, length, type
    FULL/FIRST/MIDDLE/LAST). wandb 0.31 no longer ships its Python reader (``wandb.sdk.internal.datastore``);
    this follows the same format and decodes with wandb's own protobuf classes."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"{path}: not a W&B transaction log")
    seeds = {t: zlib.crc32(bytes([t])) for t in (_FULL, _FIRST, _MIDDLE, _LAST)}
    pos, parts = _HEADER, None
    while pos + _HEADER <= len(data):
        if _BLOCK - pos % _BLOCK < _HEADER:      # block trailer padding
            pos += _BLOCK - pos % _BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        if kind not in seeds or len(chunk) < length or zlib.crc32(chunk, seeds[kind]) & 0xFFFFFFFF != crc:
            break                                  # zero padding or a torn tail write: stop here
        if kind == _FULL:
            parts = [chunk]
        elif kind == _FIRST:
            parts = [chunk]
            continue
        elif parts is None:
            continue
        else:
            parts.append(chunk)
            if kind == _MIDDLE:
                continue
        record = pb.Record()
        record.ParseFromString(b"".join(parts))
        parts = None
        yield record


def _put(target: dict, item) -> None:
    """Set a config/summary/history item; nested keys (``["comparison", "path"]``) become nested dicts."""
    keys = [item.key] if item.key else list(item.nested_key)
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = json.loads(item.value_json)


def read_offline_run(path: str | Path) -> dict:
    """A plain view of an offline run (a ``offline-run-*`` folder or its ``.wandb`` file): identity, config,
    history rows (with ``_step``), merged summary and exit code."""
    path = Path(path)
    wait_for_exit(path)
    if path.is_dir():
        (path,) = sorted(path.glob("run-*.wandb"))
    out: dict = {"file": path, "files_dir": path.parent / "files", "config": {}, "history": [], "summary": {},
                 "exit_code": None}
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(id=r.run_id, name=r.display_name, group=r.run_group, job_type=r.job_type,
                       project=r.project, entity=r.entity, tags=list(r.tags))
            for item in r.config.update:
                _put(out["config"], item)
        elif kind == "config":
            for item in rec.config.update:
                _put(out["config"], item)
        elif kind == "history":
            row: dict = {}
            for item in rec.history.item:
                _put(row, item)
            row.setdefault("_step", rec.history.step.num)
            out["history"].append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _put(out["summary"], item)
        elif kind == "exit":
            out["exit_code"] = rec.exit.exit_code
    return out


def wait_for_exit(path: str | Path, timeout: float = 30.0) -> bool:
    """Wait until an offline run's transaction log holds its exit record (W&B's service writes it after
    ``finish`` returns); True when it does within ``timeout`` seconds."""
    path = Path(path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(path.glob("run-*.wandb")) if path.is_dir() else [path]
        try:
            if files and any(r.WhichOneof("record_type") == "exit" for r in iter_records(files[0])):
                return True
        except (OSError, ValueError, struct.error):
            pass
        time.sleep(0.05)
    return False
