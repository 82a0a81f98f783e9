"""Tokenize the three splits once and cache them as one ``.npz`` shared by every trial of a sweep.

The cache key hashes the source fingerprint (stat info, no reading) with every option that changes the
token ids, so ``prepare`` answers a repeated call without reading the data or calling the tokenizer.
The file holds, per split (train, val, test), the flat int32 ids, int64 offsets, the labels (int64 class ids,
or float64 values for regression) and, for sentence pairs on a model that has them, the flat int8 token type
ids; plus a JSON ``meta`` string (info, fingerprint, tokenizer id, pad and special token ids). Pairs are
tokenized together (``tokenizer(text, text_pair)``, truncating the longer one first). The file is written to a
temporary file and moved into place with ``os.replace``, so a reader never sees a partial file.
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

__all__ = ["CACHE_VERSION", "SPLITS", "TokenizedSplit", "TokenizedData", "cache_key", "default_cache_dir", "prepare",
           "load", "uses_token_types"]

CACHE_VERSION = 2          # bump when the subset draw or the file layout changes (2: val/test, pairs, regression)
_BATCH = 1000              # texts per tokenizer call
_ARRAYS = ("ids", "offsets", "labels")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TokenizedSplit:
    """Token ids (one int32 array per example, special tokens included, unpadded), labels (int64 class ids or
    float64 values) and, for pairs on a model with segment embeddings, token type ids (one int8 array each)."""

    input_ids: list[np.ndarray]
    labels: np.ndarray
    token_type_ids: list[np.ndarray] | None = None

    @cached_property
    def lengths(self) -> np.ndarray:
        """Number of tokens of each review (int64)."""
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass(frozen=True)
class TokenizedData:
    """The tokenized train, validation (possibly empty) and test splits, the cache key and the meta record."""

    train: TokenizedSplit
    val: TokenizedSplit
    test: TokenizedSplit
    key: str
    meta: dict

    def split(self, name: str) -> TokenizedSplit:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def cache_key(cfg: DataConfig, fingerprint: str, tokenizer_id: str, num_labels: int = 2) -> str:
    """Short hex digest of everything that decides the cached token ids (not curve_eval_size)."""
    label_map = None if cfg.label_map is None else sorted((repr(k), v) for k, v in cfg.label_map.items())
    payload = {
        "version": CACHE_VERSION, "fingerprint": fingerprint, "tokenizer": tokenizer_id,
        "max_length": cfg.max_length, "sizes": [cfg.train_size, cfg.val_size, cfg.test_size],
        "seed": cfg.seed, "clean_html": cfg.clean_html,
        "columns": [cfg.text_column, cfg.text_pair_column, cfg.label_column], "label_map": label_map,
        "splits": [cfg.train_split, cfg.val_split, cfg.test_split], "config_name": cfg.config_name,
        "sources": [cfg.val_source, cfg.test_source], "num_labels": num_labels,
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
        missing = ({f"{s}_{a}.npy" for s in SPLITS for a in _ARRAYS} | {"meta.npy"}) - names
        bad = f"checksum of {bad} does not match" if bad else (f"missing {sorted(missing)}" if missing else None)
    if bad:
        log(f"tokenized cache {path} is damaged ({bad}); rebuilding it")
    return bad is None


def uses_token_types(tokenizer: Any) -> bool:
    """Whether the model reads segment ids (BERT, ELECTRA, DeBERTa do; RoBERTa, DistilBERT, ModernBERT do not)."""
    return "token_type_ids" in getattr(tokenizer, "model_input_names", ())


def _tokenize(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(flat int32 ids, int64 offsets, flat int8 token types or None)."""
    ids: list[list[int]] = []
    types: list[list[int]] | None = [] if pairs is not None and uses_token_types(tokenizer) else None
    for start in range(0, len(texts), _BATCH):
        second = None if pairs is None else pairs[start:start + _BATCH]
        enc = tokenizer(texts[start:start + _BATCH], second, truncation=True, max_length=max_length,
                        padding=False, add_special_tokens=True, return_attention_mask=False,
                        return_token_type_ids=types is not None)
        ids += enc["input_ids"]
        if types is not None:
            types += enc["token_type_ids"]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
    flat_types = None if types is None else \
        np.fromiter(itertools.chain.from_iterable(types), dtype=np.int8, count=int(lengths.sum()))
    return flat, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), flat_types


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
    for name in SPLITS:
        subset = getattr(splits, name)
        flat, offsets, types = _tokenize(tokenizer, subset.texts, subset.pairs, cfg.max_length)
        arrays.update({f"{name}_ids": flat, f"{name}_offsets": offsets, f"{name}_labels": subset.labels})
        if types is not None:
            arrays[f"{name}_types"] = types
        at_max[name] = float(np.mean(np.diff(offsets) >= cfg.max_length)) if len(subset) else 0.0
    t2 = time.perf_counter()
    meta = {
        "version": CACHE_VERSION, "key": key, "fingerprint": splits.fingerprint, "tokenizer_id": tokenizer_id,
        "pad_token_id": tokenizer.pad_token_id, "special_ids": sorted(set(tokenizer.all_special_ids)),
        "max_length": cfg.max_length, "num_labels": num_labels, "info": splits.info,
        "fraction_at_max_length": at_max, "load_s": round(t1 - t0, 3), "tokenize_s": round(t2 - t1, 3),
    }
    arrays["meta"] = np.array(json.dumps(meta))
    _save(path, arrays)
    what = "pairs" if cfg.text_pair_column else "examples"
    log(f"tokenized {len(splits.train):,} train + {len(splits.val):,} validation + {len(splits.test):,} test {what} "
        f"(max_length {cfg.max_length}; {at_max['train']:.0%} of train reach it) in {t2 - t0:.1f}s -> {path}")
    return path


def _unflatten(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, offsets[1:-1]) if len(offsets) > 1 else []


def _mapped(path: Path) -> dict[str, np.ndarray]:
    """Memory-map each array stored (uncompressed, as ``np.savez`` writes them) in the ``.npz`` at ``path``:
    every trial process then shares the page cache's one copy instead of reading its own. numpy maps ``.npy``
    files but not members of an ``.npz``, so the member's data offset is found here from the zip's local header
    (30 bytes + name + extra field) and numpy's own ``.npy`` header reader. Copy-on-write pages: the arrays are
    writable views (torch asks for that) that never change the file."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                continue
            fh.seek(info.header_offset)
            local = fh.read(30)
            if local[:4] != b"PK\x03\x04":
                continue
            fh.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                    + int.from_bytes(local[28:30], "little"))
            version = np.lib.format.read_magic(fh)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(fh))
            if dtype.hasobject or not shape or 0 in shape:
                continue
            out[info.filename[:-4]] = np.memmap(path, dtype=dtype, mode="c", offset=fh.tell(), shape=shape,
                                                order="F" if fortran else "C")
    return out


def load(path: str | Path, mmap: bool = True) -> TokenizedData:
    """Read a cache file written by :func:`prepare` (no pickle); ``mmap``: map its arrays instead of copying
    them (see :func:`_mapped`; members it cannot map are read)."""
    mapped = _mapped(Path(path)) if mmap else {}
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: mapped[name] if name in mapped else z[name] for name in z.files}
    meta = json.loads(str(arrays["meta"]))
    splits = [TokenizedSplit(_unflatten(arrays[f"{s}_ids"], arrays[f"{s}_offsets"]), arrays[f"{s}_labels"],
                             _unflatten(arrays[f"{s}_types"], arrays[f"{s}_offsets"]) if f"{s}_types" in arrays else None)
              for s in SPLITS]
    return TokenizedData(*splits, meta["key"], meta)
