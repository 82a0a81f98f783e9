"""Where the data comes from: the format of ``data.source``, the files each split reads, and a fingerprint.

Formats: a hub id (``datasets.load_dataset``), a folder of parquet shards in the hub layout
(``train-00000-of-00001.parquet``), the original ``aclImdb`` folder (``{train,test}/{pos,neg}/<id>_<rating>.txt``)
and single csv/jsonl/parquet files. Nothing here reads a file's content (except ``SHA256SUMS``), so it is
cheap enough for pre-flight. Every problem raises :class:`DataError` naming the file or the key.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from harness.config import DataConfig
from harness.data.errors import DataError
from harness.data.hub import hub_fingerprint, load_hub

__all__ = ["FILE_FORMATS", "FOLDER_FORMATS", "SPLITS", "resolve_format", "check_source", "source_files", "fingerprint",
           "verify_sums"]

FILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}
_PATH_SUFFIXES = {*FILE_FORMATS, ".json", ".txt", ".gz", ".zip", ".tar", ".arrow"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
FOLDER_FORMATS = ("aclimdb", "parquet_dir", "split_dir")     # formats whose splits are named (like the hub's)
SPLITS = ("train", "val", "test")


def _parquet_folder(root: Path) -> Path | None:
    for folder in (root, root / "plain_text", root / "data"):
        if folder.is_dir() and any(folder.glob("*.parquet")):
            return folder
    return None


def _split_dir(root: Path) -> bool:
    """A folder of split files named by split: train.tsv / dev.tsv (GLUE), train.csv / test.jsonl, ..."""
    return any(root.glob(f"*{suffix}") for suffix in (".csv", ".tsv", ".jsonl"))


def resolve_format(cfg: DataConfig) -> str:
    """The concrete format of ``cfg.source`` (``format: auto`` looks at the path; nothing is read)."""
    if cfg.format != "auto":
        return cfg.format
    path = Path(cfg.source).expanduser()
    if path.is_dir():
        if (path / "train" / "pos").is_dir():
            return "aclimdb"
        if _parquet_folder(path) is not None:
            return "parquet_dir"
        if _split_dir(path):
            return "split_dir"
        raise DataError(f"data.source: {path} is a folder but neither an aclImdb folder (train/pos/), a folder of "
                        ".parquet files (also looked in plain_text/ and data/) nor one of .csv/.tsv/.jsonl split files")
    suffix = path.suffix.lower()
    if path.exists():
        if suffix in FILE_FORMATS:
            return FILE_FORMATS[suffix]
        raise DataError(f"data.source: cannot tell the format of {path} from its suffix {suffix!r}; "
                        "use .csv, .tsv, .jsonl or .parquet, or set data.format")
    if cfg.source.startswith((".", "/", "~")) or suffix in _PATH_SUFFIXES:
        raise DataError(f"data.source: path not found: {path}")
    if _HUB_ID.match(cfg.source):
        return "hub"
    raise DataError(f"data.source: {cfg.source!r} is neither an existing path nor a hub id (owner/name)")


def _split_files(folder: Path, split: str, key: str, suffixes: tuple[str, ...]) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(split)}(-.*)?({'|'.join(map(re.escape, suffixes))})$")
    files = sorted(p for p in folder.iterdir() if p.is_file() and pattern.match(p.name))
    if not files:
        found = ", ".join(sorted(p.name for p in folder.iterdir() if p.suffix in suffixes))
        raise DataError(f"{folder}: no {'/'.join(suffixes)} files for split {split!r} ({key}); found: {found}")
    return files


def _acl_files(root: Path, split: str, key: str) -> list[Path]:
    files = []
    for cls in ("neg", "pos"):
        folder = root / split / cls
        if not folder.is_dir():
            raise DataError(f"{root}: missing folder {split}/{cls}/ for split {split!r} ({key})")
        files += sorted(folder.glob("*.txt"))
    return files


def _existing_file(value: str, key: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise DataError(f"{key}: path not found: {path}")
    if not path.is_file():
        raise DataError(f"{key}: {path} is not a file")
    return path


def _named_split(cfg: DataConfig, fmt: str, root: Path, split: str, key: str) -> list[Path]:
    if fmt == "aclimdb":
        return _acl_files(root, split, key)
    if fmt == "parquet_dir":
        folder = _parquet_folder(root)
        if folder is None:
            raise DataError(f"data.source: no .parquet files in {root} (also looked in plain_text/ and data/)")
        return _split_files(folder, split, key, (".parquet",))
    return _split_files(root, split, key, (".csv", ".tsv", ".jsonl", ".parquet"))


def source_files(cfg: DataConfig, fmt: str | None = None) -> dict[str, list[Path]]:
    """The local files each split reads, by listing only. ``{}`` for the hub. An empty ``val``: carved from the
    training split; an empty ``test``: held out of a single file."""
    fmt = fmt or resolve_format(cfg)
    if fmt == "hub":
        return {}
    root = Path(cfg.source).expanduser()
    files: dict[str, list[Path]] = {}
    if fmt in FOLDER_FORMATS:
        if not root.is_dir():
            raise DataError(f"data.source: path not found: {root}" if not root.exists() else
                            f"data.source: format {fmt} needs a folder, {root} is not one")
        files["train"] = _named_split(cfg, fmt, root, cfg.train_split, "data.train_split")
        files["test"] = ([] if cfg.test_source else
                         _named_split(cfg, fmt, root, cfg.test_split, "data.test_split"))
        files["val"] = _named_split(cfg, fmt, root, cfg.val_split, "data.val_split") if cfg.val_split else []
    else:
        files = {"train": [_existing_file(cfg.source, "data.source")], "val": [], "test": []}
    if cfg.test_source:
        files["test"] = [_existing_file(cfg.test_source, "data.test_source")]
    if cfg.val_source:
        files["val"] = [_existing_file(cfg.val_source, "data.val_source")]
    return files


def check_source(cfg: DataConfig) -> str:
    """Cheap pre-flight before any model load: format, existence, readability. Returns the format."""
    fmt = resolve_format(cfg)
    if cfg.val_split is not None and fmt not in (*FOLDER_FORMATS, "hub"):
        raise DataError(f"data.val_split: format {fmt} has no named splits; give a file as data.val_source, "
                        "or leave both unset to carve data.val_size examples from the training split")
    if cfg.config_name is not None and fmt != "hub":
        raise DataError(f"data.config_name: only applies to hub data sets; {cfg.source} is format {fmt}")
    for files in source_files(cfg, fmt).values():
        for path in files:
            if not os.access(path, os.R_OK):
                raise DataError(f"{path}: file is not readable (permission denied)")
    return fmt


def fingerprint(cfg: DataConfig, fmt: str | None = None) -> str:
    """Identity of the source from stat info (path, size, mtime_ns) and any ``SHA256SUMS`` beside it.

    Local sources are never read here, so a cache can be checked cheaply. For the hub it is the
    ``_fingerprint`` of the loaded splits.
    """
    fmt = fmt or resolve_format(cfg)
    if fmt == "hub":
        return hub_fingerprint(load_hub(cfg))
    digest = hashlib.sha256(f"{fmt}\n".encode())
    folders = {Path(cfg.source).expanduser().resolve()} if fmt in FOLDER_FORMATS else set()
    resolved: dict[Path, Path] = {}     # resolve each folder once (an aclImdb copy has 50,000 files)
    for split, files in source_files(cfg, fmt).items():
        for path in files:
            folder = resolved.setdefault(path.parent, path.parent.resolve())
            st = path.stat()
            digest.update(f"{split}\0{folder / path.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            folders.add(folder)
    for folder in sorted(folders):
        if (folder / "SHA256SUMS").is_file():
            digest.update(f"SHA256SUMS {folder}\n".encode() + (folder / "SHA256SUMS").read_bytes())
    return digest.hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sums(folder: Path, cache: dict[Path, dict[str, str]]) -> dict[str, str]:
    if folder not in cache:
        listing = folder / "SHA256SUMS"
        lines = listing.read_text().splitlines() if listing.is_file() else []
        cache[folder] = {ln.split()[-1].lstrip("*"): ln.split()[0] for ln in lines if ln.strip()}
    return cache[folder]


def verify_sums(files: list[Path]) -> None:
    """Check every file listed in a ``SHA256SUMS`` beside it or one folder up (``RTE/train.tsv`` in
    ``glue/SHA256SUMS``): a cheap guard against a truncated or changed copy."""
    cache: dict[Path, dict[str, str]] = {}
    for path in files:
        for folder, name in ((path.parent, path.name), (path.parent.parent, f"{path.parent.name}/{path.name}")):
            expected = _sums(folder, cache).get(name)
            if expected is None:
                continue
            actual = _sha256(path)
            if actual != expected:
                raise DataError(f"{path}: SHA256 {actual} does not match SHA256SUMS ({expected}, in {folder}); "
                                "the file is corrupt or was changed")
            break
