"""Tokenize the splits once and cache them as one ``.npz`` shared by every trial of a sweep.

The cache key hashes the source fingerprint (stat info, no reading) with every option that changes the
token ids, so ``prepare`` answers a repeated call without reading the data or calling the tokenizer.
The file holds, per split, the flat int32 ids, int64 offsets and int64 labels, plus a JSON ``meta`` string
(info, fingerprint, tokenizer id, pad and special token ids). It is written to a temporary file and moved
into place with ``os.replace``, so a reader never sees a partial file.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
import uuid
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.config import DataConfig
from harness.data import check_source, fingerprint, load_splits

__all__ = ["CACHE_VERSION", "TokenizedSplit", "TokenizedData", "cache_key", "default_cache_dir", "prepare", "load"]

CACHE_VERSION = 1          # bump when the subset draw or the file layout changes
_BATCH = 1000              # texts per tokenizer call
_ARRAYS = ("ids", "offsets", "labels")


@dataclass(frozen=True)
class TokenizedSplit:
    """Token ids (one int32 array per review, special tokens included, unpadded) and int64 labels."""

    input_ids: list[np.ndarray]
    labels: np.ndarray

    @cached_property
    def lengths(self) -> np.ndarray:
        """Number of tokens of each review (int64)."""
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class TokenizedData:
    """Both tokenized splits, the cache key and the meta record written with them."""

    train: TokenizedSplit
    eval: TokenizedSplit
    key: str
    meta: dict


def cache_key(cfg: DataConfig, fingerprint: str, tokenizer_id: str, num_labels: int = 2) -> str:
    """Short hex digest of everything that decides the cached token ids (not curve_eval_size)."""
    label_map = None if cfg.label_map is None else sorted((repr(k), v) for k, v in cfg.label_map.items())
    payload = {
        "version": CACHE_VERSION, "fingerprint": fingerprint, "tokenizer": tokenizer_id,
        "max_length": cfg.max_length, "train_size": cfg.train_size, "eval_size": cfg.eval_size,
        "seed": cfg.seed, "clean_html": cfg.clean_html, "columns": [cfg.text_column, cfg.label_column],
        "label_map": label_map, "splits": [cfg.train_split, cfg.eval_split], "eval_source": cfg.eval_source,
        "num_labels": num_labels,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def default_cache_dir(cfg: DataConfig) -> Path:
    """``cfg.cache_dir``, else ``$FREEZEBENCH_CACHE``, else ``~/.cache/freezebench`` (made absolute)."""
    return Path(cfg.cache_dir or os.environ.get("FREEZEBENCH_CACHE") or "~/.cache/freezebench").expanduser().absolute()


def _usable(path: Path, log: Callable[[str], Any] = print) -> bool:
    """A cache file is trusted only when whole: every member present and every CRC-32 right (``testzip`` reads
    the whole file: 1 ms for a 92 KB cache here). A damaged one is reported and rebuilt, never read."""
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            bad = zf.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        bad = f"{type(exc).__name__}: {exc}"
    else:
        missing = ({f"{s}_{a}.npy" for s in ("train", "eval") for a in _ARRAYS} | {"meta.npy"}) - names
        bad = f"checksum of {bad} does not match" if bad else (f"missing {sorted(missing)}" if missing else None)
    if bad:
        log(f"tokenized cache {path} is damaged ({bad}); rebuilding it")
    return bad is None


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    ids: list[list[int]] = []
    for start in range(0, len(texts), _BATCH):
        enc = tokenizer(texts[start:start + _BATCH], truncation=True, max_length=max_length, padding=False,
                        add_special_tokens=True, return_attention_mask=False, return_token_type_ids=False)
        ids += enc["input_ids"]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    return flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prepare(cfg: DataConfig, tokenizer: Any, tokenizer_id: str, num_labels: int = 2,
            log: Callable[[str], Any] = print) -> Path:
    """Path of the tokenized cache for ``cfg``; loads, validates and tokenizes only on a miss.

    ``tokenizer_id`` must identify the tokenizer's vocabulary (hub id + revision, or a folder path).
    """
    fmt = check_source(cfg)
    cache = default_cache_dir(cfg) / "tokenized"
    path = cache / f"{cache_key(cfg, fingerprint(cfg, fmt), tokenizer_id, num_labels)}.npz"
    if _usable(path, log):
        log(f"tokenized cache hit: {path}")
        return path
    t0 = time.perf_counter()
    splits = load_splits(cfg, num_labels)
    key = cache_key(cfg, splits.fingerprint, tokenizer_id, num_labels)
    path = cache / f"{key}.npz"
    t1 = time.perf_counter()
    arrays: dict[str, np.ndarray] = {}
    at_max = {}
    for name, texts, labels in (("train", splits.train_texts, splits.train_labels),
                                ("eval", splits.eval_texts, splits.eval_labels)):
        flat, offsets = _tokenize(tokenizer, texts, cfg.max_length)
        arrays.update({f"{name}_ids": flat, f"{name}_offsets": offsets,
                       f"{name}_labels": np.asarray(labels, dtype=np.int64)})
        at_max[name] = float(np.mean(np.diff(offsets) >= cfg.max_length)) if len(texts) else 0.0
    t2 = time.perf_counter()
    meta = {
        "version": CACHE_VERSION, "key": key, "fingerprint": splits.fingerprint, "tokenizer_id": tokenizer_id,
        "pad_token_id": tokenizer.pad_token_id, "special_ids": sorted(set(tokenizer.all_special_ids)),
        "max_length": cfg.max_length, "num_labels": num_labels, "info": splits.info,
        "fraction_at_max_length": at_max, "load_s": round(t1 - t0, 3), "tokenize_s": round(t2 - t1, 3),
    }
    arrays["meta"] = np.array(json.dumps(meta))
    _save(path, arrays)
    log(f"tokenized {len(splits.train_texts):,} train + {len(splits.eval_texts):,} eval reviews "
        f"(max_length {cfg.max_length}; {at_max['train']:.0%} of train reach it) in {t2 - t0:.1f}s -> {path}")
    return path


def _unflatten(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, offsets[1:-1]) if len(offsets) > 1 else []


def load(path: str | Path) -> TokenizedData:
    """Read a cache file written by :func:`prepare` (no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        splits = [TokenizedSplit(_unflatten(z[f"{s}_ids"], z[f"{s}_offsets"]), z[f"{s}_labels"])
                  for s in ("train", "eval")]
    return TokenizedData(splits[0], splits[1], meta["key"], meta)
