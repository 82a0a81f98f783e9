"""Load review data into validated, balanced, seeded train/eval splits.

Formats: a hub id (``datasets.load_dataset``), a folder of parquet shards in the hub layout
(``train-00000-of-00001.parquet``), the original ``aclImdb`` folder (``{train,test}/{pos,neg}/<id>_<rating>.txt``)
and single csv/jsonl/parquet files. Every problem raises :class:`DataError` naming the file (and the 1-based
data row) or the hub id. Row numbers count data records: the csv header is not a row, blank lines are not
rows, and the physical line is shown beside the row where the format has lines.

Subsets are balanced per class and drawn with ``numpy.random.default_rng(cfg.seed)`` (train) and a separate
stream (eval), so every trial of a sweep sees the same reviews. The eval subset is ordered so that any
prefix (``curve_eval_size``) is a random, class-balanced sample.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.config import DataConfig

__all__ = ["DataError", "Splits", "MAX_TEXT_CHARS", "HOLDOUT_FRACTION", "resolve_format", "check_source",
           "source_files", "fingerprint", "load_splits", "clean_html"]

MAX_TEXT_CHARS = 1_000_000          # one review longer than this is refused (a broken quote, not a review)
HOLDOUT_FRACTION = 0.2              # eval share of a single file without data.eval_source
FILE_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
_PATH_SUFFIXES = {*FILE_FORMATS, ".json", ".tsv", ".txt", ".gz", ".zip", ".tar", ".arrow"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_ACL_LABELS = {"neg": 0, "pos": 1}


class DataError(ValueError):
    """The data cannot be used; the message names the file (and 1-based data row) or the hub id."""


@dataclass(frozen=True)
class Splits:
    """Validated, subset and shuffled reviews; ``info`` describes where they came from."""

    train_texts: list[str]
    train_labels: list[int]
    eval_texts: list[str]
    eval_labels: list[int]
    fingerprint: str
    info: dict = field(default_factory=dict)


def clean_html(text: str) -> str:
    """Replace ``<br />``, ``<br/>`` and ``<br>`` (any case) with a space."""
    return _BR.sub(" ", text)


# ------------------------------------------------------------------------------------------ locating
def _parquet_folder(root: Path) -> Path | None:
    for folder in (root, root / "plain_text", root / "data"):
        if folder.is_dir() and any(folder.glob("*.parquet")):
            return folder
    return None


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
        raise DataError(f"data.source: {path} is a folder but neither an aclImdb folder (train/pos/) "
                        "nor a folder of .parquet files (also looked in plain_text/ and data/)")
    suffix = path.suffix.lower()
    if path.exists():
        if suffix in FILE_FORMATS:
            return FILE_FORMATS[suffix]
        raise DataError(f"data.source: cannot tell the format of {path} from its suffix {suffix!r}; "
                        "use .csv, .jsonl or .parquet, or set data.format")
    if cfg.source.startswith((".", "/", "~")) or suffix in _PATH_SUFFIXES:
        raise DataError(f"data.source: path not found: {path}")
    if _HUB_ID.match(cfg.source):
        return "hub"
    raise DataError(f"data.source: {cfg.source!r} is neither an existing path nor a hub id (owner/name)")


def _split_files(folder: Path, split: str, key: str) -> list[Path]:
    pattern = re.compile(rf"^{re.escape(split)}(-.*)?\.parquet$")
    files = sorted(p for p in folder.glob("*.parquet") if pattern.match(p.name))
    if not files:
        found = ", ".join(sorted(p.name for p in folder.glob("*.parquet")))
        raise DataError(f"{folder}: no parquet files for split {split!r} ({key}); found: {found}")
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


def source_files(cfg: DataConfig, fmt: str | None = None) -> dict[str, list[Path]]:
    """The local files each split reads, by listing only (``{}`` for the hub; ``eval`` empty: held out)."""
    fmt = fmt or resolve_format(cfg)
    if fmt == "hub":
        return {}
    root = Path(cfg.source).expanduser()
    if fmt in ("aclimdb", "parquet_dir"):
        if not root.is_dir():
            raise DataError(f"data.source: path not found: {root}" if not root.exists() else
                            f"data.source: format {fmt} needs a folder, {root} is not one")
        if fmt == "aclimdb":
            return {"train": _acl_files(root, cfg.train_split, "data.train_split"),
                    "eval": _acl_files(root, cfg.eval_split, "data.eval_split")}
        folder = _parquet_folder(root)
        if folder is None:
            raise DataError(f"data.source: no .parquet files in {root} (also looked in plain_text/ and data/)")
        return {"train": _split_files(folder, cfg.train_split, "data.train_split"),
                "eval": _split_files(folder, cfg.eval_split, "data.eval_split")}
    evals = [] if cfg.eval_source is None else [_existing_file(cfg.eval_source, "data.eval_source")]
    return {"train": [_existing_file(cfg.source, "data.source")], "eval": evals}


def check_source(cfg: DataConfig) -> str:
    """Cheap pre-flight before any model load: format, existence, readability. Returns the format."""
    fmt = resolve_format(cfg)
    if cfg.eval_source is not None and fmt not in ("csv", "jsonl", "parquet"):
        raise DataError(f"data.eval_source: only applies to csv/jsonl/parquet files; format {fmt} "
                        "has its own evaluation split (data.eval_split)")
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
        return _hub_fingerprint(_load_hub(cfg))
    digest = hashlib.sha256(f"{fmt}\n".encode())
    folders = {Path(cfg.source).expanduser().resolve()} if fmt in ("aclimdb", "parquet_dir") else set()
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


def _verify_sums(files: list[Path]) -> None:
    """Check every file listed in a ``SHA256SUMS`` beside it (a cheap guard against a truncated copy)."""
    sums: dict[Path, dict[str, str]] = {}
    for path in files:
        table = sums.get(path.parent)
        if table is None:
            listing = path.parent / "SHA256SUMS"
            lines = listing.read_text().splitlines() if listing.is_file() else []
            table = sums[path.parent] = {ln.split()[-1].lstrip("*"): ln.split()[0] for ln in lines if ln.strip()}
        if path.name in table:
            actual = _sha256(path)
            if actual != table[path.name]:
                raise DataError(f"{path}: SHA256 {actual} does not match SHA256SUMS ({table[path.name]}); "
                                "the file is corrupt or was changed")


# ------------------------------------------------------------------------------------------ reading
@dataclass
class _Part:
    """Raw rows of one file (or hub split); ``where(i)`` names the file and row for messages."""

    origin: str
    texts: list
    labels: list
    lines: list[int] | None = None      # physical line of each row (csv, jsonl)
    names: list[str] | None = None      # one file per row (aclImdb)

    def where(self, i: int) -> str:
        if self.names is not None:
            return self.names[i]
        line = f" (line {self.lines[i]})" if self.lines is not None else ""
        return f"{self.origin}: row {i + 1}{line}"


def _read_text_file(path: Path, header_lines: int) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        row = f"row {line - header_lines}, " if line > header_lines else ""
        raise DataError(f"{path}: not valid UTF-8 at byte {exc.start} ({row}line {line}): "
                        f"{raw[exc.start:exc.start + 8]!r}; re-save the file as UTF-8") from None


def _missing_column(origin: str, cfg: DataConfig, present: list) -> None:
    for key, name in (("data.text_column", cfg.text_column), ("data.label_column", cfg.label_column)):
        if name not in present:
            raise DataError(f"{origin}: missing column {name!r} ({key}); columns present: "
                            f"{', '.join(map(str, present)) or '(none)'}")
        if list(present).count(name) > 1:   # which one would be read is an accident of the file
            raise DataError(f"{origin}: column {name!r} ({key}) appears {list(present).count(name)} times")


def _read_csv(path: Path, cfg: DataConfig) -> _Part:
    text = _read_text_file(path, header_lines=1)
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)     # long reviews get a clear MAX_TEXT_CHARS message, not a csv.Error
    texts, labels, lines = [], [], []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        _missing_column(str(path), cfg, header)
        ti, li = header.index(cfg.text_column), header.index(cfg.label_column)
        start = reader.line_num + 1
        for row in reader:
            if row:
                if len(row) != len(header):
                    raise DataError(f"{path}: row {len(texts) + 1} (line {start}): {len(row)} fields, "
                                    f"the header has {len(header)}")
                texts.append(row[ti])
                labels.append(row[li])
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}: row {len(texts) + 1} (line {reader.line_num}): malformed csv: {exc}") from None
    finally:
        csv.field_size_limit(limit)
    if not texts:
        raise DataError(f"{path}: no data rows (only a header)")
    return _Part(str(path), texts, labels, lines=lines)


def _read_jsonl(path: Path, cfg: DataConfig) -> _Part:
    texts, labels, lines = [], [], []
    for lineno, line in enumerate(_read_text_file(path, header_lines=0).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}: row {len(texts) + 1} (line {lineno})"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: invalid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        _missing_column(where, cfg, list(obj))
        texts.append(obj[cfg.text_column])
        labels.append(obj[cfg.label_column])
        lines.append(lineno)
    return _Part(str(path), texts, labels, lines=lines)


def _column_texts(column: Any, path: Path) -> list:
    import pyarrow as pa
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        try:
            return column.to_pylist()
        except UnicodeDecodeError:
            column = column.cast(pa.large_binary())
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return column.to_pylist()
    texts = []
    for i, value in enumerate(column.to_pylist()):
        try:
            texts.append(None if value is None else value.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: row {i + 1}: text is not valid UTF-8 at byte {exc.start} of the text") from None
    return texts


def _read_parquet(path: Path, cfg: DataConfig) -> _Part:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: file is empty")
        pfile = pq.ParquetFile(path)
        _missing_column(str(path), cfg, pfile.schema_arrow.names)
        table = pfile.read(columns=list(dict.fromkeys([cfg.text_column, cfg.label_column])))
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read parquet (corrupt, truncated or not parquet): {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")
    return _Part(str(path), _column_texts(table.column(cfg.text_column), path),
                 table.column(cfg.label_column).to_pylist())


def _read_aclimdb(files: list[Path], cfg: DataConfig) -> _Part:
    texts, labels, names = [], [], []
    for path in files:
        try:
            raw = path.read_bytes()
            texts.append(raw.decode("utf-8"))
        except OSError as exc:
            raise DataError(f"{path}: cannot read file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid UTF-8 at byte {exc.start}: {raw[exc.start:exc.start + 8]!r}") from None
        cls = path.parent.name
        labels.append(cls if cfg.label_map is not None else _ACL_LABELS[cls])
        names.append(str(path))
    return _Part(str(Path(cfg.source).expanduser()), texts, labels, names=names)


def _load_hub(cfg: DataConfig) -> list:
    import datasets
    out = []
    for split in (cfg.train_split, cfg.eval_split):
        try:
            out.append(datasets.load_dataset(cfg.source, split=split))
        except Exception as exc:  # noqa: BLE001 - the hub raises many types; all mean "cannot load"
            raise DataError(f"{cfg.source} (hub): cannot load split {split!r}: {type(exc).__name__}: {exc}") from None
    return out


def _hub_fingerprint(dsets: list) -> str:
    return hashlib.sha256("hub\n".join(ds._fingerprint for ds in dsets).encode()).hexdigest()[:16]


def _hub_part(ds: Any, cfg: DataConfig, split: str) -> _Part:
    origin = f"{cfg.source} (hub, split {split})"
    _missing_column(origin, cfg, list(ds.column_names))
    return _Part(origin, list(ds[cfg.text_column]), list(ds[cfg.label_column]))


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}


def _read_files(files: list[Path], fmt: str, cfg: DataConfig) -> list[_Part]:
    if fmt == "aclimdb":
        return [_read_aclimdb(files, cfg)]
    reader = _READERS["parquet" if fmt == "parquet_dir" else fmt]
    return [_READERS.get(FILE_FORMATS.get(p.suffix.lower(), ""), reader)(p, cfg) for p in files]


# ------------------------------------------------------------------------------------------ validation
def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (isinstance(value, str) and not value.strip())


def _text(value: Any, part: _Part, i: int, clean: bool) -> str:
    if not isinstance(value, str):
        if _is_missing(value):
            raise DataError(f"{part.where(i)}: text is missing")
        raise DataError(f"{part.where(i)}: text must be a string, got {type(value).__name__} {str(value)[:40]!r}")
    if len(value) > MAX_TEXT_CHARS:
        raise DataError(f"{part.where(i)}: text has {len(value):,} characters, over the limit of "
                        f"{MAX_TEXT_CHARS:,}; refusing it (a broken quote or delimiter?)")
    if clean and "<" in value:
        value = clean_html(value)
    if not value.strip():
        raise DataError(f"{part.where(i)}: text is empty or whitespace-only")
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


def _label(raw: Any, part: _Part, i: int, label_map: dict | None, num_labels: int) -> int:
    if _is_missing(raw):
        raise DataError(f"{part.where(i)}: label is missing ({'empty' if isinstance(raw, str) else 'NaN or null'})")
    if label_map is not None:
        number = _as_number(raw)
        candidates = [raw, str(raw).strip()] + ([int(number)] if number is not None and number.is_integer() else [])
        for key in candidates:
            if isinstance(key, (str, int, float)) and key in label_map:
                return label_map[key]
        str_keys = {str(k): v for k, v in label_map.items()}
        if str(raw).strip() in str_keys:
            return str_keys[str(raw).strip()]
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


def _validate(parts: list[_Part], cfg: DataConfig, num_labels: int) -> tuple[list[str], np.ndarray]:
    texts: list[str] = []
    labels: list[int] = []
    for part in parts:
        texts += [_text(t, part, i, cfg.clean_html) for i, t in enumerate(part.texts)]
        labels += [_label(x, part, i, cfg.label_map, num_labels) for i, x in enumerate(part.labels)]
    return texts, np.asarray(labels, dtype=np.int64)


def _counts(labels: np.ndarray, num_labels: int) -> list[int]:
    return np.bincount(labels, minlength=num_labels).tolist()


def _check_classes(labels: np.ndarray, num_labels: int, origin: str, what: str) -> None:
    counts = _counts(labels, num_labels)
    absent = [c for c, n in enumerate(counts) if n == 0]
    if absent:
        raise DataError(f"{origin}: the {what} has only {num_labels - len(absent)} of {num_labels} classes "
                        f"(no reviews of class {', '.join(map(str, absent))}; counts per class: {counts})")


# ------------------------------------------------------------------------------------------ subsets
def _holdout(labels: np.ndarray, seed: int, origin: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng((seed, 2))
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            raise DataError(f"{origin}: class {c} has {len(idx)} review; holding out an eval split needs "
                            "at least 2 per class (or set data.eval_source)")
        held.append(rng.permutation(idx)[:max(1, round(HOLDOUT_FRACTION * len(idx)))])
    mask = np.zeros(len(labels), dtype=bool)
    mask[np.concatenate(held)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _balanced(labels: np.ndarray, size: int | None, num_labels: int, rng: np.random.Generator,
              key: str, origin: str) -> np.ndarray:
    if size is None:
        return np.arange(len(labels))
    per = size // num_labels
    if per == 0:
        raise DataError(f"{origin}: {key} {size} is smaller than the number of classes ({num_labels})")
    picks = []
    for c in range(num_labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per:
            raise DataError(f"{origin}: {key} {size} needs {per} reviews of class {c}, but there are only "
                            f"{len(idx)} (counts per class: {_counts(labels, num_labels)})")
        picks.append(rng.permutation(idx)[:per])
    return np.concatenate(picks)


def _stratified_order(idx: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random order in which every prefix keeps the class proportions (to within one review per class)."""
    keys = np.empty(len(idx))
    sub = labels[idx]
    for c in np.unique(sub):
        members = rng.permutation(np.flatnonzero(sub == c))
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return idx[np.argsort(keys, kind="stable")]


# ------------------------------------------------------------------------------------------ entry point
def load_splits(cfg: DataConfig, num_labels: int = 2) -> Splits:
    """Read, validate, subset and shuffle the train and eval reviews described by ``cfg``."""
    fmt = check_source(cfg)
    if fmt == "hub":
        dsets = _load_hub(cfg)
        fp = _hub_fingerprint(dsets)
        train_parts = [_hub_part(dsets[0], cfg, cfg.train_split)]
        eval_parts = [_hub_part(dsets[1], cfg, cfg.eval_split)]
        files = {"train": [cfg.source], "eval": [cfg.source]}
    else:
        paths = source_files(cfg, fmt)
        fp = fingerprint(cfg, fmt)
        _verify_sums(paths["train"] + paths["eval"])
        train_parts = _read_files(paths["train"], fmt, cfg)
        eval_parts = _read_files(paths["eval"], fmt, cfg) if paths["eval"] else []
        files = {s: [str(p) for p in ps] for s, ps in paths.items()}
        if fmt == "aclimdb":
            files = {s: sorted({f"{Path(p).parent}/*.txt" for p in ps}) for s, ps in files.items()}
    train_origin = ", ".join(p.origin for p in train_parts)
    texts, labels = _validate(train_parts, cfg, num_labels)
    _check_classes(labels, num_labels, train_origin, "train split" if eval_parts else "file")
    if eval_parts:
        eval_origin = ", ".join(p.origin for p in eval_parts)
        eval_texts, eval_labels = _validate(eval_parts, cfg, num_labels)
        eval_from = f"split {cfg.eval_split!r}" if fmt in ("hub", "parquet_dir", "aclimdb") else "data.eval_source"
    else:
        eval_origin = f"{train_origin} (held-out {HOLDOUT_FRACTION:.0%})"
        keep, held = _holdout(labels, cfg.seed, train_origin)
        eval_texts, eval_labels = [texts[i] for i in held], labels[held]
        texts, labels = [texts[i] for i in keep], labels[keep]
        eval_from = f"held-out {HOLDOUT_FRACTION:.0%} of data.source (stratified, seed {cfg.seed})"
    _check_classes(eval_labels, num_labels, eval_origin, "eval split")

    rng = np.random.default_rng(cfg.seed)
    train_idx = rng.permutation(_balanced(labels, cfg.train_size, num_labels, rng, "data.train_size", train_origin))
    eval_rng = np.random.default_rng((cfg.seed, 1))
    eval_idx = _balanced(eval_labels, cfg.eval_size, num_labels, eval_rng, "data.eval_size", eval_origin)
    eval_idx = _stratified_order(eval_idx, eval_labels, eval_rng)
    info = {
        "format": fmt, "source": cfg.source, "eval_source": cfg.eval_source, "eval_from": eval_from,
        "files": files, "raw_sizes": {"train": len(texts), "eval": len(eval_texts)},
        "raw_class_counts": {"train": _counts(labels, num_labels), "eval": _counts(eval_labels, num_labels)},
        "subset_sizes": {"train": len(train_idx), "eval": len(eval_idx)},
        "class_counts": {"train": _counts(labels[train_idx], num_labels),
                         "eval": _counts(eval_labels[eval_idx], num_labels)},
    }
    return Splits([texts[i] for i in train_idx], labels[train_idx].tolist(),
                  [eval_texts[i] for i in eval_idx], eval_labels[eval_idx].tolist(), fp, info)
