"""Reporting layer: pure functions over trial results (never imports harness.train or harness.adapters).

``fields`` reads one result, ``stats`` makes one row per configuration, ``summary`` selects each strategy's
configuration on validation and compares its test numbers with ``full`` (``compare``: t intervals,
non-inferiority, power, BH; ``bootstrap``: examples x seeds), ``recommend`` writes the one-sentence answer,
``columns`` defines every column, ``format`` turns cells and tables into text, ``plots`` (with ``labels``) and
``html`` draw them, ``tables`` assembles it all and ``write`` puts every file in the sweep folder.
"""
from __future__ import annotations

from harness.reporting.format import fmt, headline, markdown, summary_text
from harness.reporting.tables import NoResults, build_tables, report_settings
from harness.reporting.write import write_report

__all__ = ["NoResults", "build_tables", "report_settings", "write_report", "fmt", "headline", "markdown",
           "summary_text"]
