"""Reading raw rows: csv, jsonl, parquet, the aclImdb folder and hub splits, each into a :class:`Part`.

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


def _read_csv(path: Path, cfg: DataConfig) -> Part:
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
    return Part(str(path), texts, labels, lines=lines)


def _read_jsonl(path: Path, cfg: DataConfig) -> Part:
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
    return Part(str(path), texts, labels, lines=lines)


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
        table = pfile.read(columns=list(dict.fromkeys([cfg.text_column, cfg.label_column])))
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot read parquet (corrupt, truncated or not parquet): {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{path}: no rows")
    return Part(str(path), _column_texts(table.column(cfg.text_column), path),
                 table.column(cfg.label_column).to_pylist())


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
    origin = f"{cfg.source} (hub, split {split})"
    _missing_column(origin, cfg, list(ds.column_names))
    return Part(origin, list(ds[cfg.text_column]), list(ds[cfg.label_column]))


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}


def read_files(files: list[Path], fmt: str, cfg: DataConfig) -> list[Part]:
    if fmt == "aclimdb":
        return [_read_aclimdb(files, cfg)]
    reader = _READERS["parquet" if fmt == "parquet_dir" else fmt]
    return [_READERS.get(FILE_FORMATS.get(p.suffix.lower(), ""), reader)(p, cfg) for p in files]
