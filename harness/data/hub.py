"""Hub data sets (``datasets.load_dataset``): loading the named splits and their fingerprint."""
from __future__ import annotations

import hashlib

from harness.config import DataConfig
from harness.data.errors import DataError

__all__ = ["load_hub", "hub_fingerprint", "hub_splits"]


def hub_splits(cfg: DataConfig) -> dict[str, str]:
    """Our split role -> the hub's split name (no ``val`` when it is carved from the training split)."""
    out = {"train": cfg.train_split, "test": cfg.test_split}
    if cfg.val_split:
        out["val"] = cfg.val_split
    return out


def load_hub(cfg: DataConfig) -> dict:
    """{role: datasets.Dataset} for every split of :func:`hub_splits` (``data.config_name`` selects e.g. GLUE's
    task)."""
    import datasets

    out = {}
    name = f"{cfg.source}/{cfg.config_name}" if cfg.config_name else cfg.source
    for role, split in hub_splits(cfg).items():
        try:
            out[role] = datasets.load_dataset(cfg.source, cfg.config_name, split=split)
        except Exception as exc:  # noqa: BLE001 - the hub raises many types; all mean "cannot load"
            raise DataError(f"{name} (hub): cannot load split {split!r}: {type(exc).__name__}: {exc}") from None
    return out


def hub_fingerprint(dsets: dict) -> str:
    # datasets keeps a content fingerprint of every Dataset (the key of its own cache) only as ``_fingerprint``;
    # there is no public accessor, and hashing the rows would read the whole data set
    return hashlib.sha256("hub\n".join(f"{k}:{ds._fingerprint}" for k, ds in sorted(dsets.items())).encode()).hexdigest()[:16]
