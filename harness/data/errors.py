"""The data layer's one error type."""
from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """The data cannot be used; the message names the file (and 1-based data row) or the hub id."""
