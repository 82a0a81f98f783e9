"""Per-example test predictions of a trial (``predictions.parquet`` beside its ``result.json``), so any number
in the report can be audited and re-computed (the paired bootstrap reads them).

Columns: ``example_id`` (int64: the index into the sweep's test split, the same for every trial of a sweep),
``label`` (int64 class id, or float64 value for regression), ``prediction`` (same type) and, for classification,
``logits`` (list<float32>). Written to a temporary file and renamed: a reader never sees half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["write_predictions", "read_predictions"]


def write_predictions(path: str | Path, example_ids: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                      outputs: np.ndarray | None = None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    order = np.argsort(example_ids, kind="stable")        # by example id: trials line up row for row
    columns = {"example_id": pa.array(np.asarray(example_ids, dtype=np.int64)[order]),
               "label": pa.array(np.asarray(labels)[order]), "prediction": pa.array(np.asarray(predictions)[order])}
    if outputs is not None and outputs.ndim == 2 and outputs.shape[1] > 1:
        columns["logits"] = pa.array(list(np.asarray(outputs, dtype=np.float32)[order]), type=pa.list_(pa.float32()))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(pa.table(columns), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """{column: numpy array} (``logits`` as a 2-d float32 array when present)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    out = {name: table.column(name).to_numpy() for name in ("example_id", "label", "prediction")}
    if "logits" in table.column_names:
        out["logits"] = np.stack(table.column("logits").to_pylist()).astype(np.float32)
    return out
