"""Reading one trial result for the report: every field the tables use, defensively (a missing or non-finite
value is ``None``, never NaN), in one place so the rest of the reporting layer never digs into a result dict.

The report reads ``freezebench.trial/2`` (``docs/metrics.md``): the selection reads ``val.score``, the tables
report ``test.score``. A result without a ``val`` record (or with ``selected_on: "test"``, as the loader marks
upgraded schema-1 files) was selected on the test split; :func:`selected_on_test` says so, and the report warns
that its numbers are optimistic.
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

from harness.results import HPARAM_KEYS, STATUSES

__all__ = ["num", "get", "status", "strategy", "hparams_of", "metric_name", "val_score", "test_score",
           "test_metric", "selection_score", "selected_on_test", "is_ok", "series", "curve", "last_step",
           "group_key", "CURVE_FIELD"]

CURVE_FIELD = "val_score"        # the history field of the validation curve (the selection metric)


def num(value: Any) -> float | None:
    """A finite float from a stored value (``"nan"`` strings, ints, None); None when missing or non-finite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def get(result: Any, *path: str) -> Any:
    for key in path:
        result = result.get(key) if isinstance(result, dict) else None
    return result


def status(result: dict) -> str:
    s = result.get("status")
    return s if s in STATUSES else "failed"


def strategy(result: dict) -> str:
    return str(result.get("strategy") or result.get("strategy_name") or "?")


def hparams_of(result: dict) -> dict[str, Any]:
    """The trial's ``hparams``; for a placeholder result written without them (a trial that never started),
    the same keys taken from its resolved ``config.train``, so it lands in its configuration's group."""
    hp = result.get("hparams")
    if isinstance(hp, dict) and hp:
        return hp
    train = get(result, "config", "train")
    return {k: train[k] for k in HPARAM_KEYS if k in train} if isinstance(train, dict) else {}


def group_key(result: dict) -> tuple[str, str]:
    """(strategy label, every hyper-parameter except the seed) as a hashable key."""
    hp = {k: v for k, v in hparams_of(result).items() if k != "seed"}
    return strategy(result), json.dumps(hp, sort_keys=True, default=str)


def metric_name(result: dict) -> str | None:
    name = get(result, "metric", "name")
    return str(name) if name else None


def val_score(result: dict) -> float | None:
    return num(get(result, "val", "score"))


def test_score(result: dict) -> float | None:
    """``test.score`` (schema-1 files arrive upgraded by harness.results.load_results)."""
    return num(get(result, "test", "score"))


def test_metric(result: dict, name: str) -> float | None:
    """One named metric of the test split (``test.metrics[name]``), e.g. accuracy beside an F1 selection."""
    return num(get(result, "test", "metrics", name))


def selected_on_test(result: dict) -> bool:
    """True when this trial's selection number came from the test split (no validation set)."""
    return result.get("selected_on") == "test" or not isinstance(result.get("val"), dict) \
        or val_score(result) is None


def selection_score(result: dict) -> float | None:
    """The number the best configuration is chosen on: ``val.score``, else (no validation set) the test score."""
    return test_score(result) if selected_on_test(result) else val_score(result)


def is_ok(result: dict) -> bool:
    """Finished ok with a finite test score: the trials whose numbers the tables use."""
    return status(result) == "ok" and test_score(result) is not None


def series(history: Any, field: str) -> list[tuple[int, float]]:
    """``(step, value)`` pairs of one history field, sorted by step; rows with a missing/non-finite value skipped."""
    pts = [(int(s), v) for row in (history or []) if isinstance(row, dict)
           for s, v in [(num(row.get("step")), num(row.get(field)))] if s is not None and v is not None]
    return sorted(pts, key=lambda p: p[0])


def curve(result: dict) -> list[tuple[int, float]]:
    """The validation curve (``val_score`` per evaluation)."""
    return series(result.get("history"), CURVE_FIELD)


def last_step(result: dict) -> int:
    """Highest step a trial reached: the last evaluation's step, the number of optimizer steps, or its curve."""
    steps: Sequence[Any] = [num(get(result, "test", "step")), num(result.get("stopped_at_step")),
                            len(result.get("train_losses") or [])]
    steps = [*steps, *(s for s, _ in curve(result))]
    return int(max((s for s in steps if s is not None), default=0))
