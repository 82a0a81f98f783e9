"""Hub data sets (``datasets.load_dataset``): loading both splits and their fingerprint."""
from __future__ import annotations

import hashlib

from harness.config import DataConfig
from harness.data.errors import DataError

__all__ = ["load_hub", "hub_fingerprint"]


def load_hub(cfg: DataConfig) -> list:
    import datasets
    out = []
    for split in (cfg.train_split, cfg.eval_split):
        try:
            out.append(datasets.load_dataset(cfg.source, split=split))
        except Exception as exc:  # noqa: BLE001 - the hub raises many types; all mean "cannot load"
            raise DataError(f"{cfg.source} (hub): cannot load split {split!r}: {type(exc).__name__}: {exc}") from None
    return out


def hub_fingerprint(dsets: list) -> str:
    return hashlib.sha256("hub\n".join(ds._fingerprint for ds in dsets).encode()).hexdigest()[:16]
