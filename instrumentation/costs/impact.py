"""What breaks if ``require_partition_filter`` is set: observed shapes per table.

Once a table requires a partition filter, BigQuery refuses every query that reads it
without one. A shape is judged breaking for a table when

* the instrumentor already saw one of its runs read the table unfiltered
  (``bastion.bq.unfiltered_tables``), or
* its SQL, analysed as the instrumentor analyses it
  (:func:`bastion.instrumentation.bigquery.analyze` with the table's partition column), reads
  the table without a filter on that column in the reading scope.

Shapes known only by a summary (no SQL captured, no instrumentor verdict) cannot be
judged: they are counted apart as ``unjudged`` so nobody mistakes silence for safety.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bastion.instrumentation.costs.shapes import Report, Shape


@dataclass
class TableImpact:
    table: str
    column: str
    breaking: list[Shape] = field(default_factory=list)
    unjudged: list[Shape] = field(default_factory=list)

    def as_dict(self, report: Report) -> dict[str, Any]:
        return {
            "table": self.table,
            "partition_column": self.column,
            "breaking_shapes": [_shape(report, s) for s in self.breaking],
            "unjudged_shapes": [_shape(report, s) for s in self.unjudged],
            "unfiltered_usd_per_month": round(
                sum(report.usd_per_month(s) for s in self.breaking), 4
            ),
        }


def _shape(report: Report, shape: Shape) -> dict[str, Any]:
    return {
        "fingerprint": shape.key,
        "statement_type": shape.statement_type,
        "sql": shape.sql or shape.label,
        "example": shape.example,
        "runs": shape.count,
        "call_sites": [site for site, _ in shape.call_sites.most_common(10)],
        "services": [name for name, _ in shape.services.most_common(10)],
        "usd_per_month": round(report.usd_per_month(shape), 4),
    }


def _reads(shape: Shape, table: str) -> bool:
    if table in shape.tables or table in shape.unfiltered:
        return True
    return not shape.example and table in shape.summary.split()


def impact(tables: Mapping[str, str], report: Report, project: str | None) -> list[TableImpact]:
    """``tables``: ``{project.dataset.table: partition column}`` of the tables that
    would get ``require_partition_filter``; ``project`` resolves ``dataset.table``."""
    from bastion.instrumentation.bigquery import analyze

    out = {name: TableImpact(name, column) for name, column in tables.items()}
    for shape in report.shapes:
        judged: set[str] = set(shape.unfiltered) & tables.keys()
        if shape.example:
            analysis = analyze(shape.example, project, dict(tables))
            judged |= set(analysis.unfiltered_tables)
        for name, entry in out.items():
            if name in judged:
                entry.breaking.append(shape)
            elif not shape.example and not shape.unfiltered and _reads(shape, name):
                entry.unjudged.append(shape)
    for entry in out.values():
        entry.breaking.sort(key=report.usd_per_month, reverse=True)
    return sorted(out.values(), key=lambda e: e.table)


def refusals(impacts: Iterable[TableImpact]) -> dict[str, str]:
    """``{table: why --apply must not set the option}`` for tables observed queries break."""
    out = {}
    for entry in impacts:
        if entry.breaking:
            sites = sorted({site for s in entry.breaking for site in s.call_sites})
            where = f" at {', '.join(sites[:3])}" if sites else ""
            out[entry.table] = (
                f"refused: {len(entry.breaking)} observed query shape(s) read it without a "
                f"filter on {entry.column}{where} and would fail; fix them or use --force"
            )
    return out
