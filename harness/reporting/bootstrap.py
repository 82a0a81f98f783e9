"""A second interval of the difference to the baseline: the paired bootstrap over test examples x seeds.

The t interval of :mod:`harness.reporting.compare` sees only seed-to-seed spread; the test set is a sample too.
Resampling the examples (the same examples for both strategies: paired over examples) and the seeds (jointly
when the seeds pair, else each side on its own) and recomputing the metric on each resample with
:func:`harness.results.metrics.score` gives an interval that carries both. It needs ``predictions.parquet``
beside each result.json (the same ``example_id`` set in every trial); without them the columns stay empty.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from harness.reporting.fields import get
from harness.results.metrics import score

__all__ = ["Predictions", "paired_bootstrap", "stack", "has_predictions", "RESAMPLES", "Loaded"]

RESAMPLES = 2000
_CHUNK = 2_000_000        # example indices drawn per chunk (bounded memory on a 25k-example test set)
Loaded = tuple[np.ndarray, np.ndarray, np.ndarray]   # example ids (sorted), labels, predictions


class Predictions:
    """Reads ``<sweep>/trials/<trial_id>/<result.predictions>`` once per trial (the baseline's are reused by
    every comparison). ``None`` for a trial without predictions; an unreadable file is recorded in ``problems``."""

    def __init__(self, sweep_dir: str | Path | None):
        self.sweep_dir = Path(sweep_dir) if sweep_dir is not None else None
        self.cache: dict[str, Loaded | None] = {}
        self.problems: list[str] = []

    def __call__(self, result: dict) -> Loaded | None:
        tid, name = str(result.get("trial_id")), result.get("predictions")
        if tid not in self.cache:
            self.cache[tid] = self._read(self.sweep_dir / "trials" / tid / name) \
                if self.sweep_dir is not None and isinstance(name, str) and name else None
        return self.cache[tid]

    def _read(self, path: Path) -> Loaded | None:
        if not path.is_file():
            self.problems.append(f"{path}: missing")
            return None
        import pyarrow.parquet as pq      # heavy optional package: only when predictions exist
        try:
            table = pq.read_table(path, columns=["example_id", "label", "prediction"])
            ids, labels, preds = (table.column(c).to_numpy() for c in ("example_id", "label", "prediction"))
        except (OSError, ValueError, KeyError) as exc:
            self.problems.append(f"{path}: unreadable ({type(exc).__name__}: {exc})")
            return None
        order = np.argsort(ids, kind="stable")
        return ids[order], labels[order], preds[order]


def _scores(metric: str, labels: np.ndarray, preds: np.ndarray, idx: np.ndarray, vectorised: bool) -> np.ndarray:
    """(seeds, resamples) metric of each seed's predictions on each resample of examples ``idx`` (rows)."""
    if vectorised and metric == "accuracy":   # accuracy is the mean of a 0/1 column: one gather, no loop
        return (preds == labels)[:, idx].mean(-1)
    return np.array([[score(metric, labels[i], p[i]) for i in idx] for p in preds], dtype=float)


def paired_bootstrap(metric: str, labels: np.ndarray, a: np.ndarray, b: np.ndarray, paired: bool,
                     resamples: int = RESAMPLES, seed: int = 0, confidence: float = 0.95,
                     vectorised: bool = True) -> tuple[float, float] | None:
    """Percentile interval of mean_seeds(metric(a)) - mean_seeds(metric(b)) over two-level resamples.

    ``a`` (seeds x examples) and ``b`` are the two strategies' predictions on the same examples (``labels``);
    ``paired``: rows are in the same seed order and are resampled together. scipy.stats.bootstrap resamples
    one axis of its samples (``paired=True`` shares the indices across samples) but not two nested axes at
    once, here examples and seeds, with a metric that is not a mean over examples (F1, MCC, Pearson); hence the
    resampling is written out with numpy. Seeded: the same inputs give the same interval."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    sa, sb = np.empty((len(a), resamples)), np.empty((len(b), resamples))
    step = max(1, _CHUNK // max(n, 1))
    for start in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - start), n))    # the same examples for a and b
        sa[:, start:start + len(idx)] = _scores(metric, labels, a, idx, vectorised)
        sb[:, start:start + len(idx)] = _scores(metric, labels, b, idx, vectorised)
    seeds_a = rng.integers(0, len(a), size=(resamples, len(a)))
    seeds_b = seeds_a if paired else rng.integers(0, len(b), size=(resamples, len(b)))
    rows = np.arange(resamples)[:, None]
    diff = sa.T[rows, seeds_a].mean(1) - sb.T[rows, seeds_b].mean(1)
    if not np.isfinite(diff).any():
        return None
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(diff, [tail, 100 - tail])
    return float(low), float(high)


def stack(loaded: Sequence[Loaded | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """(ids, labels, seeds x examples predictions) of several trials, or why they cannot be stacked."""
    if not loaded or any(x is None for x in loaded):
        return "predictions missing"
    ids, labels = loaded[0][0], loaded[0][1]
    if any(len(x[0]) != len(ids) or not np.array_equal(x[0], ids) for x in loaded):
        return "example ids differ between trials"
    return ids, labels, np.stack([x[2] for x in loaded])


def has_predictions(result: dict) -> bool:
    return isinstance(get(result, "predictions"), str)
