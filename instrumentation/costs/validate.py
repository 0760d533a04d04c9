"""Does the rewritten query return what the original returns? Run both and compare.

The proposal's view is created under a throw-away name (``<view>_bastion_check_<id>``)
so that no existing view is touched, both queries run with the query cache off, their
rows are compared as multisets (floats to 9 significant digits: a re-aggregated AVG
may differ in the last bits), and the view is dropped. Against the local server this
is free; against a real project the view's creation and both queries are billed.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from typing import Any

from bastion.instrumentation.bigquery._labels import ADVISOR_KEY
from bastion.instrumentation.costs.views import TableInfo, Verdict


@dataclass
class Validation:
    same_rows: bool | None  # None: could not run
    error: str = ""
    original_rows: int = 0
    rewritten_rows: int = 0
    original_bytes_billed: int = 0
    rewritten_bytes_billed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _cell(value: Any) -> Hashable:
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, list | tuple):
        return tuple(_cell(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _cell(v)) for k, v in value.items()))
    return value  # type: ignore[no-any-return]


def _run(client: Any, sql: str, timeout: float) -> tuple[Counter[tuple[Hashable, ...]], int]:
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(use_query_cache=False, labels={ADVISOR_KEY: "validation"})
    bounded = {"retry": bigquery.DEFAULT_RETRY.with_timeout(timeout), "timeout": timeout}
    job = client.query(sql, job_config=config, job_retry=None, **bounded)
    rows = Counter(tuple(_cell(v) for v in row.values()) for row in job.result(**bounded))
    return rows, int(job.total_bytes_billed or 0)


def validate(client: Any, original: str, verdict: Verdict, timeout: float = 60.0) -> Validation:
    """Create the view (temporarily), run ``original`` and the rewritten query, compare."""
    from google.cloud import bigquery

    from bastion.cli.audit import _api_errors, _first_line
    from bastion.instrumentation.costs.shapes import parameterised

    if parameterised(original):
        return Validation(None, "query parameters: their values are not observed, not run")
    checked = f"{verdict.view}_bastion_check_{uuid.uuid4().hex[:8]}"
    ddl = verdict.ddl.replace(f"`{verdict.view}`", f"`{checked}`", 1)
    rewritten = verdict.rewritten.replace(f"`{verdict.view}`", f"`{checked}`")
    try:
        labelled = bigquery.QueryJobConfig(labels={ADVISOR_KEY: "validation"})
        client.query(ddl, job_config=labelled, timeout=timeout).result(timeout=timeout)
    except _api_errors() as error:
        return Validation(None, f"view refused: {_first_line(error)}")
    try:
        first, first_bytes = _run(client, original, timeout)
        second, second_bytes = _run(client, rewritten, timeout)
    except _api_errors() as error:
        return Validation(None, f"query failed: {_first_line(error)}")
    finally:
        try:
            drop = f"DROP MATERIALIZED VIEW IF EXISTS `{checked}`"
            client.query(drop, job_config=labelled, timeout=timeout).result(timeout=timeout)
        except _api_errors():
            pass
    return Validation(
        first == second,
        "" if first == second else "different rows",
        sum(first.values()),
        sum(second.values()),
        first_bytes,
        second_bytes,
    )


def table_info(client: Any, name: str, timeout: float = 30.0) -> TableInfo:
    """The partitioning of a base table, for the view's PARTITION BY."""
    table = client.get_table(name, timeout=timeout)
    partitioning = table.time_partitioning
    if partitioning is not None:
        column = partitioning.field
        if column is None:
            return TableInfo()  # ingestion time: a view cannot mirror _PARTITIONTIME
        kind = next((f.field_type for f in table.schema if f.name == column), "DATE")
        return TableInfo(column, "DATE" if kind == "DATE" else str(kind))
    if table.range_partitioning is not None:
        return TableInfo(table.range_partitioning.field, "RANGE")
    return TableInfo()
