"""Validated, balanced, seeded splits: the entry point of the data layer (:func:`load_splits`).

Subsets are balanced per class and drawn with ``numpy.random.default_rng(cfg.seed)`` (train) and a separate
stream (eval), so every trial of a sweep sees the same reviews. The eval subset is ordered so that any
prefix (``curve_eval_size``) is a random, class-balanced sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.config import DataConfig
from harness.data.errors import DataError
from harness.data.hub import hub_fingerprint, load_hub
from harness.data.readers import hub_part, read_files
from harness.data.sources import check_source, fingerprint, source_files, verify_sums
from harness.data.validate import check_classes, class_counts, validate_parts

__all__ = ["Splits", "HOLDOUT_FRACTION", "load_splits"]

HOLDOUT_FRACTION = 0.2              # eval share of a single file without data.eval_source


@dataclass(frozen=True)
class Splits:
    """Validated, subset and shuffled reviews; ``info`` describes where they came from."""

    train_texts: list[str]
    train_labels: list[int]
    eval_texts: list[str]
    eval_labels: list[int]
    fingerprint: str
    info: dict = field(default_factory=dict)


def holdout(labels: np.ndarray, seed: int, origin: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng((seed, 2))
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise DataError(f"{origin}: class {c} has {len(idx)} review; holding out an eval split needs "
                            "at least 2 per class (or set data.eval_source)")
        held.append(rng.permutation(idx)[:max(1, round(HOLDOUT_FRACTION * len(idx)))])
    mask = np.zeros(len(labels), dtype=bool)
    mask[np.concatenate(held)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def balanced(labels: np.ndarray, size: int | None, num_labels: int, rng: np.random.Generator,
              key: str, origin: str) -> np.ndarray:
    if size is None:
        return np.arange(len(labels))
    per = size // num_labels
    if per == 0:
        raise DataError(f"{origin}: {key} {size} is smaller than the number of classes ({num_labels})")
    picks = []
    for c in range(num_labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per:
            raise DataError(f"{origin}: {key} {size} needs {per} reviews of class {c}, but there are only "
                            f"{len(idx)} (counts per class: {class_counts(labels, num_labels)})")
        picks.append(rng.permutation(idx)[:per])
    return np.concatenate(picks)


def stratified_order(idx: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random order in which every prefix keeps the class proportions (to within one review per class)."""
    keys = np.empty(len(idx))
    sub = labels[idx]
    for c in np.unique(sub):
        members = rng.permutation(np.flatnonzero(sub == c))
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return idx[np.argsort(keys, kind="stable")]


def load_splits(cfg: DataConfig, num_labels: int = 2) -> Splits:
    """Read, validate, subset and shuffle the train and eval reviews described by ``cfg``."""
    fmt = check_source(cfg)
    if fmt == "hub":
        dsets = load_hub(cfg)
        fp = hub_fingerprint(dsets)
        train_parts = [hub_part(dsets[0], cfg, cfg.train_split)]
        eval_parts = [hub_part(dsets[1], cfg, cfg.eval_split)]
        files = {"train": [cfg.source], "eval": [cfg.source]}
    else:
        paths = source_files(cfg, fmt)
        fp = fingerprint(cfg, fmt)
        verify_sums(paths["train"] + paths["eval"])
        train_parts = read_files(paths["train"], fmt, cfg)
        eval_parts = read_files(paths["eval"], fmt, cfg) if paths["eval"] else []
        files = {s: [str(p) for p in ps] for s, ps in paths.items()}
        if fmt == "aclimdb":
            files = {s: sorted({f"{Path(p).parent}/*.txt" for p in ps}) for s, ps in files.items()}
    train_origin = ", ".join(p.origin for p in train_parts)
    texts, labels = validate_parts(train_parts, cfg, num_labels)
    check_classes(labels, num_labels, train_origin, "train split" if eval_parts else "file")
    if eval_parts:
        eval_origin = ", ".join(p.origin for p in eval_parts)
        eval_texts, eval_labels = validate_parts(eval_parts, cfg, num_labels)
        eval_from = f"split {cfg.eval_split!r}" if fmt in ("hub", "parquet_dir", "aclimdb") else "data.eval_source"
    else:
        eval_origin = f"{train_origin} (held-out {HOLDOUT_FRACTION:.0%})"
        keep, held = holdout(labels, cfg.seed, train_origin)
        eval_texts, eval_labels = [texts[i] for i in held], labels[held]
        texts, labels = [texts[i] for i in keep], labels[keep]
        eval_from = f"held-out {HOLDOUT_FRACTION:.0%} of data.source (stratified, seed {cfg.seed})"
    check_classes(eval_labels, num_labels, eval_origin, "eval split")

    rng = np.random.default_rng(cfg.seed)
    train_idx = rng.permutation(balanced(labels, cfg.train_size, num_labels, rng, "data.train_size", train_origin))
    eval_rng = np.random.default_rng((cfg.seed, 1))
    eval_idx = balanced(eval_labels, cfg.eval_size, num_labels, eval_rng, "data.eval_size", eval_origin)
    eval_idx = stratified_order(eval_idx, eval_labels, eval_rng)
    info = {
        "format": fmt, "source": cfg.source, "eval_source": cfg.eval_source, "eval_from": eval_from,
        "files": files, "raw_sizes": {"train": len(texts), "eval": len(eval_texts)},
        "raw_class_counts": {"train": class_counts(labels, num_labels), "eval": class_counts(eval_labels, num_labels)},
        "subset_sizes": {"train": len(train_idx), "eval": len(eval_idx)},
        "class_counts": {"train": class_counts(labels[train_idx], num_labels),
                         "eval": class_counts(eval_labels[eval_idx], num_labels)},
    }
    return Splits([texts[i] for i in train_idx], labels[train_idx].tolist(),
                  [eval_texts[i] for i in eval_idx], eval_labels[eval_idx].tolist(), fp, info)
