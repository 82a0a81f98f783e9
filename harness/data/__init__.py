"""Data layer: locate, read, validate and subset the reviews; tokenize them once; batch them.

``load_splits`` (splits.py) is the entry point; ``tokenize_cache.prepare`` caches the token ids every trial
of a sweep shares; ``batching`` turns them into seeded, resumable, length-grouped batches.
"""
from __future__ import annotations

from harness.data.errors import DataError
from harness.data.sources import check_source, fingerprint, resolve_format, source_files
from harness.data.splits import HOLDOUT_FRACTION, Splits, Subset, load_splits
from harness.data.validate import MAX_TEXT_CHARS, clean_html

__all__ = ["DataError", "Splits", "Subset", "MAX_TEXT_CHARS", "HOLDOUT_FRACTION", "resolve_format", "check_source",
           "source_files", "fingerprint", "load_splits", "clean_html"]
