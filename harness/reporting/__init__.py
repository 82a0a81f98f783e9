"""Reporting layer: pure functions over trial results (never imports harness.train or harness.adapters).

``tables`` builds the comparison as data, ``stats`` holds the statistics, ``format`` turns cells and tables
into text, ``plots`` and ``html`` draw them, ``write`` puts every file in the sweep folder.
"""
from __future__ import annotations

from harness.reporting.format import fmt, headline, markdown, summary_text
from harness.reporting.tables import NoResults, build_tables
from harness.reporting.write import write_report

__all__ = ["NoResults", "build_tables", "write_report", "fmt", "headline", "markdown", "summary_text"]
