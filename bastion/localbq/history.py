"""``region-<loc>.INFORMATION_SCHEMA.JOBS``: the jobs this server ran, as BigQuery shows them.

BigQuery keeps 180 days of job history in the ``JOBS`` view (alias ``JOBS_BY_PROJECT``)
of each region. This server answers queries on either name from the jobs it holds in
memory for the querying job's project: the view is rebuilt into its sqlite table just
before a query that reads it is planned, so it always shows every earlier job (the
querying job itself excepted). Columns are a subset of BigQuery's, same names and types.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import _types
from .catalog import Catalog, Table

if TYPE_CHECKING:
    from .jobs import Job

VIEWS = ("INFORMATION_SCHEMA.JOBS", "INFORMATION_SCHEMA.JOBS_BY_PROJECT")

_PAIR = [{"name": "key", "type": "STRING"}, {"name": "value", "type": "STRING"}]
_TABLE_REF = [
    {"name": "project_id", "type": "STRING"},
    {"name": "dataset_id", "type": "STRING"},
    {"name": "table_id", "type": "STRING"},
]
SCHEMA: list[dict[str, Any]] = [
    {"name": "creation_time", "type": "TIMESTAMP"},
    {"name": "project_id", "type": "STRING"},
    {"name": "user_email", "type": "STRING"},
    {"name": "job_id", "type": "STRING"},
    {"name": "job_type", "type": "STRING"},
    {"name": "statement_type", "type": "STRING"},
    {"name": "start_time", "type": "TIMESTAMP"},
    {"name": "end_time", "type": "TIMESTAMP"},
    {"name": "query", "type": "STRING"},
    {"name": "state", "type": "STRING"},
    {"name": "total_bytes_processed", "type": "INT64"},
    {"name": "total_bytes_billed", "type": "INT64"},
    {"name": "total_slot_ms", "type": "INT64"},
    {"name": "cache_hit", "type": "BOOL"},
    {"name": "labels", "type": "RECORD", "mode": "REPEATED", "fields": _PAIR},
    {"name": "referenced_tables", "type": "RECORD", "mode": "REPEATED", "fields": _TABLE_REF},
    {
        "name": "error_result",
        "type": "RECORD",
        "fields": [
            {"name": "reason", "type": "STRING"},
            {"name": "location", "type": "STRING"},
            {"name": "message", "type": "STRING"},
        ],
    },
]


def is_jobs_view(full_name: str) -> bool:
    """``project.region-xx.INFORMATION_SCHEMA.JOBS`` (or ``…JOBS_BY_PROJECT``)."""
    rest = full_name.partition(".")[2]
    region, _, view = rest.partition(".")
    return region.lower().startswith("region-") and view.upper() in VIEWS


def refresh(catalog: Catalog, full_name: str, jobs: Iterable[Job], current: Job) -> None:
    """Rebuild the view ``full_name`` from ``jobs`` of its project and region."""
    project, _, rest = full_name.partition(".")
    region, _, view = rest.partition(".")
    location = region[len("region-") :].lower()
    rows = [
        _row(job)
        for job in sorted(jobs, key=lambda j: j.created)
        if job is not current and job.project == project and job.location.lower() == location
    ]
    table = Table(project, region, view, schema=[dict(f) for f in SCHEMA])
    with catalog.lock:
        if catalog.find_table(full_name) is not None:
            catalog.drop_table(full_name)
        # Not catalog.create_table: the region is no dataset (tables.list never shows it).
        catalog.datasets.setdefault((project, region), {})
        try:
            catalog.create_table(table)
        finally:
            del catalog.datasets[(project, region)]
        catalog.insert_rows(table, rows)


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return _types.format_timestamp(dt.datetime.fromtimestamp(seconds, dt.UTC))


def _row(job: Job) -> dict[str, Any]:
    from .resources import query_statistics

    stats = query_statistics(job) if job.kind == "query" and job.done else {}
    labels = job.configuration.get("labels") or {}
    referenced = [
        {"project_id": r["projectId"], "dataset_id": r["datasetId"], "table_id": r["tableId"]}
        for r in stats.get("referencedTables", [])
        if not is_jobs_view(f"{r['projectId']}.{r['datasetId']}.{r['tableId']}")
    ]
    error = job.error
    return {
        "creation_time": _time(job.created),
        "project_id": job.project,
        "user_email": "local@bqserver",
        "job_id": job.job_id,
        "job_type": job.kind.upper(),
        "statement_type": stats.get("statementType"),
        "start_time": _time(job.started),
        "end_time": _time(job.ended),
        "query": job.sql,
        "state": "DONE" if job.done else "RUNNING",
        "total_bytes_processed": int(stats.get("totalBytesProcessed", 0)),
        "total_bytes_billed": int(stats.get("totalBytesBilled", 0)),
        "total_slot_ms": int(stats.get("totalSlotMs", 0)),
        "cache_hit": bool(stats.get("cacheHit", False)),
        "labels": [{"key": str(k), "value": str(v)} for k, v in sorted(labels.items())],
        "referenced_tables": referenced,
        "error_result": None
        if error is None
        else {"reason": error.reason, "location": "", "message": error.message},
    }
