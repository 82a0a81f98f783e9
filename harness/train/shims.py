"""The one place the training layer reads a library's private state (transformers). Each shim names what it
reads and why no public API does it; ``tests/train/test_shims.py`` fails loudly when the library changes."""
from __future__ import annotations

from typing import Any

__all__ = ["attn_implementation"]


def attn_implementation(config: Any) -> str | None:
    """The attention implementation a transformers model runs (``sdpa``, ``eager``, ...).

    transformers 5 sets it with the public ``model.set_attn_implementation()`` but exposes it for reading
    only as ``config._attn_implementation``."""
    return getattr(config, "_attn_implementation", None)
