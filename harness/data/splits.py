"""Validated, seeded train / validation / test splits: the entry point of the data layer (:func:`load_splits`).

Three splits, each with one job: the model trains on ``train``; every choice (learning curves, early stopping,
searchers, each strategy's best configuration) reads ``val``; ``test`` is evaluated once per trial, at the end.

* ``val`` is ``data.val_split`` / ``data.val_source`` when given, else ``data.val_size`` examples carved from the
  training split before the training subset is drawn (so the two never overlap); ``val_size: null`` carves
  min(1000, 10% of the training split), ``0`` means no validation set.
* ``test`` is ``data.test_split`` / ``data.test_source``, else a held-out 20% of a single file.

Classification subsets are balanced per class; regression subsets (``model.num_labels: 1``) are plain random
draws. Every draw has its own seeded stream of ``numpy.random.default_rng`` keyed on ``data.seed``, so every
trial of a sweep sees the same examples. Validation and test are ordered so that any prefix (``curve_eval_size``)
is a random, class-balanced sample.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.config import DataConfig
from harness.data.errors import DataError
from harness.data.hub import hub_fingerprint, hub_splits, load_hub
from harness.data.readers import Part, hub_part, read_files
from harness.data.sources import check_source, fingerprint, source_files, verify_sums
from harness.data.validate import check_classes, class_counts, validate_parts

__all__ = ["Subset", "Splits", "HOLDOUT_FRACTION", "AUTO_VAL_MAX", "AUTO_VAL_FRACTION", "load_splits",
           "auto_val_size"]

HOLDOUT_FRACTION = 0.2              # test share of a single file without data.test_source
AUTO_VAL_MAX, AUTO_VAL_FRACTION = 1000, 0.1     # data.val_size null: min(1000, 10% of the training split)
# independent streams of data.seed, one per draw (the same across trials and across runs)
_STREAM = {"train": 0, "test": 1, "holdout": 2, "val": 3}


@dataclass(frozen=True)
class Subset:
    """Texts (and second texts of a pair), labels: int64 class ids or float64 values (regression)."""

    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, idx: np.ndarray) -> "Subset":
        return Subset([self.texts[i] for i in idx], None if self.pairs is None else [self.pairs[i] for i in idx],
                      self.labels[idx])


@dataclass(frozen=True)
class Splits:
    """The three subsets and where they came from (``info``: formats, files, sizes, class counts)."""

    train: Subset
    val: Subset
    test: Subset
    fingerprint: str
    info: dict = field(default_factory=dict)


def auto_val_size(n_train: int) -> int:
    return min(AUTO_VAL_MAX, int(round(AUTO_VAL_FRACTION * n_train)))


def _rng(cfg: DataConfig, stream: str) -> np.random.Generator:
    return np.random.default_rng((cfg.seed, _STREAM[stream]))


def _pick(labels: np.ndarray, size: int | None, num_labels: int, rng: np.random.Generator, key: str,
          origin: str) -> np.ndarray:
    """``size`` indices: balanced per class (classification), uniformly at random (regression); all for None."""
    if size is None:
        return np.arange(len(labels))
    if num_labels == 1:
        if size > len(labels):
            raise DataError(f"{origin}: {key} {size} exceeds the {len(labels)} examples there are")
        return np.sort(rng.permutation(len(labels))[:size])
    per = size // num_labels
    if per == 0:
        raise DataError(f"{origin}: {key} {size} is smaller than the number of classes ({num_labels})")
    picks = []
    for c in range(num_labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per:
            raise DataError(f"{origin}: {key} {size} needs {per} examples of class {c}, but there are only "
                            f"{len(idx)} (counts per class: {class_counts(labels, num_labels)})")
        picks.append(rng.permutation(idx)[:per])
    return np.concatenate(picks)


def _stratified_order(idx: np.ndarray, labels: np.ndarray, num_labels: int, rng: np.random.Generator) -> np.ndarray:
    """Random order in which every prefix keeps the class proportions (to within one example per class)."""
    if num_labels == 1:
        return idx[rng.permutation(len(idx))]
    keys = np.empty(len(idx))
    sub = labels[idx]
    for c in np.unique(sub):
        members = rng.permutation(np.flatnonzero(sub == c))
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return idx[np.argsort(keys, kind="stable")]


def _holdout(labels: np.ndarray, num_labels: int, rng: np.random.Generator, origin: str) -> np.ndarray:
    """Indices of a stratified HOLDOUT_FRACTION of a single file (the test split when none is given)."""
    if num_labels == 1:
        return np.sort(rng.permutation(len(labels))[:max(1, round(HOLDOUT_FRACTION * len(labels)))])
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise DataError(f"{origin}: class {c} has {len(idx)} example; holding out a test split needs "
                            "at least 2 per class (or set data.test_source)")
        held.append(rng.permutation(idx)[:max(1, round(HOLDOUT_FRACTION * len(idx)))])
    return np.sort(np.concatenate(held))


def _without(n: int, taken: np.ndarray) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[taken] = False
    return np.flatnonzero(mask)


def _read(cfg: DataConfig, fmt: str) -> tuple[dict[str, list[Part]], str, dict]:
    if fmt == "hub":
        dsets = load_hub(cfg)
        names = hub_splits(cfg)
        parts = {role: [hub_part(ds, cfg, names[role])] for role, ds in dsets.items()}
        return parts, hub_fingerprint(dsets), {role: [cfg.source] for role in parts}
    paths = source_files(cfg, fmt)
    verify_sums([p for ps in paths.values() for p in ps])
    parts = {role: read_files(ps, fmt, cfg) for role, ps in paths.items() if ps}
    files = {s: [str(p) for p in ps] for s, ps in paths.items() if ps}
    if fmt == "aclimdb":
        files = {s: sorted({f"{Path(p).parent}/*.txt" for p in ps}) for s, ps in files.items()}
    return parts, fingerprint(cfg, fmt), files


def load_splits(cfg: DataConfig, num_labels: int = 2) -> Splits:
    """Read, validate, subset and order the train, validation and test examples described by ``cfg``."""
    fmt = check_source(cfg)
    parts, fp, files = _read(cfg, fmt)
    origin = {role: ", ".join(p.origin for p in ps) for role, ps in parts.items()}
    raw = {role: Subset(*validate_parts(ps, cfg, num_labels)) for role, ps in parts.items()}
    train = raw["train"]
    if num_labels > 1:
        check_classes(train.labels, num_labels, origin["train"], "train split" if "test" in raw else "file")
    where: dict[str, str] = {}
    if "test" in raw:
        test = raw["test"]
        where["test"] = "data.test_source" if cfg.test_source else f"split {cfg.test_split!r}"
    else:
        held = _holdout(train.labels, num_labels, _rng(cfg, "holdout"), origin["train"])
        test, train = train.take(held), train.take(_without(len(train), held))
        origin["test"] = f"{origin['train']} (held-out {HOLDOUT_FRACTION:.0%})"
        where["test"] = f"held-out {HOLDOUT_FRACTION:.0%} of data.source (seed {cfg.seed})"
    if num_labels > 1:
        check_classes(test.labels, num_labels, origin["test"], "test split")
    val_rng = _rng(cfg, "val")
    if "val" in raw:
        val = raw["val"]
        val = val.take(_pick(val.labels, cfg.val_size, num_labels, val_rng, "data.val_size", origin["val"]))
        where["val"] = f"split {cfg.val_split!r}" if cfg.val_split else "data.val_source"
    elif cfg.val_size == 0:
        val = Subset([], None if train.pairs is None else [], train.labels[:0])
        where["val"] = "none (data.val_size: 0): choices read the test split"
    else:
        size = cfg.val_size if cfg.val_size is not None else auto_val_size(len(train))
        carved = _pick(train.labels, size, num_labels, val_rng, "data.val_size", origin["train"])
        val, train = train.take(carved), train.take(_without(len(train), carved))
        origin["val"] = f"{origin['train']} (carved)"
        where["val"] = f"{len(carved):,} examples carved from the training split (seed {cfg.seed}), never trained on"
    if num_labels > 1 and len(val):
        check_classes(val.labels, num_labels, origin["val"], "validation split")
    train_idx = _rng(cfg, "train").permutation(
        _pick(train.labels, cfg.train_size, num_labels, _rng(cfg, "train"), "data.train_size", origin["train"]))
    test_rng = _rng(cfg, "test")
    test_idx = _pick(test.labels, cfg.test_size, num_labels, test_rng, "data.test_size", origin["test"])
    out = {"train": train.take(train_idx),
           "val": val.take(_stratified_order(np.arange(len(val)), val.labels, num_labels, val_rng)),
           "test": test.take(_stratified_order(test_idx, test.labels, num_labels, test_rng))}
    info = {"format": fmt, "source": cfg.source, "config_name": cfg.config_name, "files": files, "from": where,
            "sizes": {k: len(v) for k, v in out.items()}, "pairs": cfg.text_pair_column is not None,
            "task": "regression" if num_labels == 1 else "classification"}
    if num_labels > 1:
        info["class_counts"] = {k: class_counts(v.labels, num_labels) for k, v in out.items()}
    return Splits(out["train"], out["val"], out["test"], fp, info)
