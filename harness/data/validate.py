"""Row validation: every text a non-empty string under the size limit, every label a class id."""
from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from harness.config import DataConfig
from harness.data.errors import DataError
from harness.data.readers import Part

__all__ = ["MAX_TEXT_CHARS", "clean_html", "validate_parts", "class_counts", "check_classes"]

MAX_TEXT_CHARS = 1_000_000          # one review longer than this is refused (a broken quote, not a review)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


def clean_html(text: str) -> str:
    """Replace ``<br />``, ``<br/>`` and ``<br>`` (any case) with a space."""
    return _BR.sub(" ", text)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (isinstance(value, str) and not value.strip())


def _text(value: Any, part: Part, i: int, clean: bool, what: str = "text") -> str:
    if not isinstance(value, str):
        if _is_missing(value):
            raise DataError(f"{part.where(i)}: {what} is missing")
        raise DataError(f"{part.where(i)}: {what} must be a string, got {type(value).__name__} {str(value)[:40]!r}")
    if len(value) > MAX_TEXT_CHARS:
        raise DataError(f"{part.where(i)}: {what} has {len(value):,} characters, over the limit of "
                        f"{MAX_TEXT_CHARS:,}; refusing it (a broken quote or delimiter?)")
    if clean and "<" in value:
        value = clean_html(value)
    if not value.strip():
        raise DataError(f"{part.where(i)}: {what} is empty or whitespace-only")
    return value


def _score(raw: Any, part: Part, i: int) -> float:
    """A regression label (``model.num_labels: 1``): any finite number."""
    if _is_missing(raw):
        raise DataError(f"{part.where(i)}: label is missing ({'empty' if isinstance(raw, str) else 'NaN or null'})")
    value = _as_number(raw)
    if value is None or not math.isfinite(value):
        raise DataError(f"{part.where(i)}: label {raw!r} is not a finite number (regression: model.num_labels 1)")
    return value


def _as_number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float, np.integer, np.floating)):
        return float(raw)
    try:
        return float(str(raw).strip())
    except ValueError:
        return None


def _label(raw: Any, part: Part, i: int, label_map: dict | None, num_labels: int) -> int:
    if _is_missing(raw):
        raise DataError(f"{part.where(i)}: label is missing ({'empty' if isinstance(raw, str) else 'NaN or null'})")
    if label_map is not None:
        number = _as_number(raw)
        keys = [str(raw).strip()]
        if number is not None and number.is_integer():
            keys.append(str(int(number)))                        # 1, "1", 1.0 and "1.0" find the key "1"
        for key in keys:
            if key in label_map:
                return label_map[key]
        raise DataError(f"{part.where(i)}: label {raw!r} is not in data.label_map; allowed: "
                        f"{', '.join(map(repr, label_map))}")
    value = raw
    if isinstance(raw, str) and _as_number(raw) is not None:
        value = _as_number(raw)
        if math.isnan(value):
            raise DataError(f"{part.where(i)}: label is missing ({raw!r})")
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= value < num_labels:
            return int(value)
        raise DataError(f"{part.where(i)}: label {raw!r} is outside the class ids 0..{num_labels - 1}")
    raise DataError(f"{part.where(i)}: label {raw!r} is not an integer class id (allowed: 0..{num_labels - 1}); "
                    "set data.label_map to map raw labels")


def validate_parts(parts: list[Part], cfg: DataConfig, num_labels: int
                   ) -> tuple[list[str], list[str] | None, np.ndarray]:
    """(texts, second texts or None, labels): int64 class ids, or float64 values for regression."""
    texts: list[str] = []
    pairs: list[str] | None = [] if cfg.text_pair_column is not None else None
    labels: list = []
    for part in parts:
        texts += [_text(t, part, i, cfg.clean_html) for i, t in enumerate(part.texts)]
        if pairs is not None:
            pairs += [_text(t, part, i, cfg.clean_html, "text pair") for i, t in enumerate(part.pairs)]
        if num_labels == 1:
            labels += [_score(x, part, i) for i, x in enumerate(part.labels)]
        else:
            labels += [_label(x, part, i, cfg.label_map, num_labels) for i, x in enumerate(part.labels)]
    return texts, pairs, np.asarray(labels, dtype=np.float64 if num_labels == 1 else np.int64)


def class_counts(labels: np.ndarray, num_labels: int) -> list[int]:
    return np.bincount(labels, minlength=num_labels).tolist()


def check_classes(labels: np.ndarray, num_labels: int, origin: str, what: str) -> None:
    counts = class_counts(labels, num_labels)
    absent = [c for c, n in enumerate(counts) if n == 0]
    if absent:
        raise DataError(f"{origin}: the {what} has only {num_labels - len(absent)} of {num_labels} classes "
                        f"(no reviews of class {', '.join(map(str, absent))}; counts per class: {counts})")
