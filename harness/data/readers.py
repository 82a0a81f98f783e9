"""Reading raw rows: csv, tsv, jsonl, parquet, the aclImdb folder and hub splits, each into a :class:`Part`.

TSV is read as GLUE ships it: tab-separated, one header line, no quoting (GLUE's text has bare ``"``).

Every problem raises :class:`DataError` naming the file and the 1-based data row. Row numbers count data
records: the csv header is not a row, blank lines are not rows, and the physical line is shown beside the row
where the format has lines.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import DataConfig
from harness.data.errors import DataError
from harness.data.sources import FILE_FORMATS

__all__ = ["Part", "read_files", "hub_part", "ACL_LABELS"]

ACL_LABELS = {"neg": 0, "pos": 1}


@dataclass
class Part:
    """Raw rows of one file (or hub split); ``where(i)`` names the file and row for messages."""

    origin: str
    texts: list
    labels: list
    lines: list[int] | None = None      # physical line of each row (csv, jsonl)
    names: list[str] | None = None      # one file per row (aclImdb)
    pairs: list | None = None           # second text of each row (data.text_pair_column)

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


def _columns(cfg: DataConfig) -> list[tuple[str, str]]:
    """(config key, column name) of every column a row needs."""
    cols = [("data.text_column", cfg.text_column), ("data.label_column", cfg.label_column)]
    if cfg.text_pair_column is not None:
        cols.insert(1, ("data.text_pair_column", cfg.text_pair_column))
    return cols


def _missing_column(origin: str, cfg: DataConfig, present: list) -> None:
    for key, name in _columns(cfg):
        if name not in present:
            raise DataError(f"{origin}: missing column {name!r} ({key}); columns present: "
                            f"{', '.join(map(str, present)) or '(none)'}")
        if list(present).count(name) > 1:   # which one would be read is an accident of the file
            raise DataError(f"{origin}: column {name!r} ({key}) appears {list(present).count(name)} times")


def _read_delimited(path: Path, cfg: DataConfig, tsv: bool = False) -> Part:
    text = _read_text_file(path, header_lines=1)
    limit = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)     # long reviews get a clear MAX_TEXT_CHARS message, not a csv.Error
    texts, pairs, labels, lines = [], [], [], []
    kind = "tsv" if tsv else "csv"
    dialect = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else {}
    reader = csv.reader(io.StringIO(text, newline=""), **dialect)
    try:
        header = next(reader)
        _missing_column(str(path), cfg, header)
        ti, li = header.index(cfg.text_column), header.index(cfg.label_column)
        pi = header.index(cfg.text_pair_column) if cfg.text_pair_column is not None else None
        start = reader.line_num + 1
        for row in reader:
            if row:
                if len(row) != len(header):
                    raise DataError(f"{path}: row {len(texts) + 1} (line {start}): {len(row)} fields, "
                                    f"the header has {len(header)}")
                texts.append(row[ti])
                labels.append(row[li])
                if pi is not None:
                    pairs.append(row[pi])
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}: row {len(texts) + 1} (line {reader.line_num}): malformed {kind}: {exc}") from None
    finally:
        csv.field_size_limit(limit)
    if not texts:
        raise DataError(f"{path}: no data rows (only a header)")
    return Part(str(path), texts, labels, lines=lines, pairs=pairs if pi is not None else None)


def _read_csv(path: Path, cfg: DataConfig) -> Part:
    return _read_delimited(path, cfg)


def _read_tsv(path: Path, cfg: DataConfig) -> Part:
    return _read_delimited(path, cfg, tsv=True)


def _read_jsonl(path: Path, cfg: DataConfig) -> Part:
    texts, pairs, labels, lines = [], [], [], []
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
        if cfg.text_pair_column is not None:
            pairs.append(obj[cfg.text_pair_column])
        lines.append(lineno)
    return Part(str(path), texts, labels, lines=lines, pairs=pairs if cfg.text_pair_column is not None else None)


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


def _read_parquet(path: Path, cfg: DataConfig) -> Part:
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: file is empty")
        pfile = pq.ParquetFile(path)
        _missing_column(str(path), cfg, pfile.schema_arrow.names)
        table = pfile.read(columns=list(dict.fromkeys(name for _, name in _columns(cfg))))
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read parquet (corrupt, truncated or not parquet): {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")
    pairs = None if cfg.text_pair_column is None else _column_texts(table.column(cfg.text_pair_column), path)
    return Part(str(path), _column_texts(table.column(cfg.text_column), path),
                table.column(cfg.label_column).to_pylist(), pairs=pairs)


def _read_aclimdb(files: list[Path], cfg: DataConfig) -> Part:
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
        labels.append(cls if cfg.label_map is not None else ACL_LABELS[cls])
        names.append(str(path))
    return Part(str(Path(cfg.source).expanduser()), texts, labels, names=names)


def hub_part(ds: Any, cfg: DataConfig, split: str) -> Part:
    name = f"{cfg.source}/{cfg.config_name}" if cfg.config_name else cfg.source
    origin = f"{name} (hub, split {split})"
    _missing_column(origin, cfg, list(ds.column_names))
    pairs = None if cfg.text_pair_column is None else list(ds[cfg.text_pair_column])
    return Part(origin, list(ds[cfg.text_column]), list(ds[cfg.label_column]), pairs=pairs)


_READERS = {"csv": _read_csv, "tsv": _read_tsv, "jsonl": _read_jsonl, "parquet": _read_parquet}


def read_files(files: list[Path], fmt: str, cfg: DataConfig) -> list[Part]:
    """One Part per file, each read by the reader of its own suffix (aclImdb: one Part for the folder)."""
    if fmt == "aclimdb":
        if cfg.text_pair_column is not None:
            raise DataError("data.text_pair_column: the aclImdb layout has one text per review")
        return [_read_aclimdb(files, cfg)]
    fallback = _READERS.get(fmt, _read_parquet)
    return [_READERS.get(FILE_FORMATS.get(p.suffix.lower(), ""), fallback)(p, cfg) for p in files]
