"""Statement type and unfiltered partition scans: ``bastion.instrumentation.bigquery.analyze``.

The server reports BigQuery's ``statementType`` and enforces ``require_partition_filter``
with the project's statement analysis, so both sides of the tests speak one vocabulary.
When that module cannot be imported (it is optional for users who only want the
server), a small sqlglot classifier stands in: statement types by node class, and a
partition filter is any top-level ``AND`` term of the scan's own WHERE that names the
partition column.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Analysis:
    statement_type: str
    tables: frozenset[str]
    unfiltered_tables: frozenset[str]


@functools.cache
def _project_analyze() -> Callable[..., Any] | None:
    try:
        from bastion.instrumentation.bigquery import analyze
    except Exception:  # not built yet, or an optional dependency missing
        log.info(
            "bastion.instrumentation.bigquery.analyze unavailable; using the fallback classifier"
        )
        return None
    return analyze  # type: ignore[no-any-return]


def analyze(
    sql: str,
    statements: list[exp.Expr],
    default_project: str,
    partition_columns: Mapping[str, str],
    fallback_unfiltered: Callable[[], frozenset[str]],
    default_dataset: str | None = None,
) -> Analysis:
    project_analyze = _project_analyze()
    if project_analyze is not None:
        extra = {"default_dataset": default_dataset} if default_dataset else {}
        result = project_analyze(
            sql,
            default_project=default_project,
            partition_columns=dict(partition_columns),
            **extra,
        )
        return Analysis(
            str(result.statement_type),
            frozenset(result.tables),
            frozenset(result.unfiltered_tables),
        )
    return Analysis(_statement_type(statements), frozenset(), fallback_unfiltered())


_SIMPLE = {
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Merge: "MERGE",
    exp.TruncateTable: "TRUNCATE_TABLE",
    exp.Alter: "ALTER_TABLE",
    exp.Export: "EXPORT_DATA",
}


def _statement_type(statements: list[exp.Expr]) -> str:
    if len(statements) != 1:
        return "SCRIPT"
    node = statements[0]
    if isinstance(node, exp.Query):
        return "SELECT"
    for node_class, name in _SIMPLE.items():
        if isinstance(node, node_class):
            return name
    if isinstance(node, exp.Create):
        kind = str(node.args.get("kind", "TABLE")).upper()
        if kind == "VIEW":
            materialized = any(
                isinstance(p, exp.MaterializedProperty) for p in node.find_all(exp.Property)
            )
            return "CREATE_MATERIALIZED_VIEW" if materialized else "CREATE_VIEW"
        if kind == "TABLE":
            return "CREATE_TABLE_AS_SELECT" if node.expression else "CREATE_TABLE"
        return f"CREATE_{kind}"
    if isinstance(node, exp.Drop):
        return f"DROP_{str(node.args.get('kind', 'TABLE')).upper()}"
    if isinstance(node, exp.Command) and node.name.upper() == "CALL":
        return "CALL"
    return "UNKNOWN"
