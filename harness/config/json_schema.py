"""The sweep file as a JSON Schema (draft 2020-12), generated from :class:`~harness.config.schema.SweepConfig`.

Editors with a YAML language server complete and check keys with it: each shipped config starts with
``# yaml-language-server: $schema=./sweep.schema.json``. ``configs/sweep.schema.json`` is this schema written
out (``python -m harness.sweep --schema > configs/sweep.schema.json``); a test keeps it from going stale.
The schema describes shapes and bounds; cross-field rules (exactly one of model.name / model.arch, ...) are
checked only when the file is loaded.
"""
from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from harness.config.schema import SweepConfig

__all__ = ["sweep_schema", "JSON_SCHEMA_DIALECT"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def sweep_schema() -> dict[str, Any]:
    """The JSON Schema of a sweep file: every section and key, its type, bounds, allowed values and default."""
    schema = TypeAdapter(SweepConfig).json_schema()
    schema.pop("title", None)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": "freezebench sweep file",
            "description": "A freezebench sweep: a base experiment (model, data, train, strategy) plus search axes "
                           "(python -m harness.sweep CONFIG). Unknown keys are errors.",
            **schema}
