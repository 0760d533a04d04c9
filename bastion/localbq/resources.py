"""REST bodies for jobs: the Job resource, jobs.query and getQueryResults answers."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from . import _types
from .errors import integer
from .jobs import Job, billed_bytes

DEFAULT_PAGE_ROWS = 100_000


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def reference(job: Job) -> dict[str, str]:
    return {"projectId": job.project, "jobId": job.job_id, "location": job.location}


def query_statistics(job: Job) -> dict[str, Any]:
    """``statistics.query`` of a finished query job."""
    processed = 0 if job.cache_hit else job.scan.bytes_processed
    billed = 0 if job.cache_hit else billed_bytes(processed, job.scan.tables)
    stats: dict[str, Any] = {
        "totalBytesProcessed": str(processed),
        "totalBytesBilled": str(billed),
        "totalSlotMs": str(slot_ms(job)),
        "cacheHit": job.cache_hit,
        "billingTier": 1,
        "estimatedBytesProcessed": str(job.scan.bytes_processed),
        "totalPartitionsProcessed": str(0 if job.cache_hit else job.scan.partitions),
    }
    if job.plan is not None:
        stats["statementType"] = job.plan.statement_type
        stats["referencedTables"] = [
            dict(zip(("projectId", "datasetId", "tableId"), name.split(".", 2), strict=True))
            for name in sorted(job.plan.tables)
            if name not in job.plan.created
        ]
    outcome = job.outcome
    if outcome.dml is not None:
        stats["numDmlAffectedRows"] = str(outcome.affected_rows)
        stats["dmlStats"] = {k: str(v) for k, v in outcome.dml.items()}
    if outcome.ddl_operation is not None:
        stats["ddlOperationPerformed"] = outcome.ddl_operation
        if outcome.ddl_target is not None:
            target = outcome.ddl_target
            stats["ddlTargetTable"] = {
                "projectId": target.project,
                "datasetId": target.dataset,
                "tableId": target.table_id,
            }
    if outcome.schema is not None:
        stats["schema"] = {"fields": outcome.schema}
    return stats


def slot_ms(job: Job) -> int:
    if job.cache_hit:
        return 0
    if job.rule is not None and job.rule.slot_ms is not None:
        return job.rule.slot_ms
    ended = job.ended if job.ended is not None else time.time()
    running = max(0.0, ended - job.started)
    # A modest slot count for the run time, plus one slot-ms per 100 kB read.
    return max(1, int(running * 1000 * 2) + job.scan.bytes_processed // 100_000)


def job_resource(job: Job) -> dict[str, Any]:
    now = time.time()
    state = job.state(now)
    statistics: dict[str, Any] = {"creationTime": _ms(job.created)}
    if state != "PENDING":
        statistics["startTime"] = _ms(job.started)
    status: dict[str, Any] = {"state": state}
    configuration = dict(job.configuration)
    configuration.setdefault("jobType", job.kind.upper())
    if job.kind == "query" and job.plan is not None and job.plan.is_query:
        query = dict(configuration["query"])
        query.setdefault(
            "destinationTable",
            {
                "projectId": job.project,
                "datasetId": "_bqserver_anon",
                "tableId": f"anon_{job.job_id}",
            },
        )
        configuration["query"] = query
    if job.done:
        assert job.ended is not None
        statistics["endTime"] = _ms(job.ended)
        if job.error is not None:
            status["errorResult"] = job.error.error_proto()
            status["errors"] = [job.error.error_proto()]
        if job.kind == "query":
            query_stats = query_statistics(job)
            statistics["query"] = query_stats
            statistics["totalBytesProcessed"] = query_stats["totalBytesProcessed"]
            statistics["totalSlotMs"] = query_stats["totalSlotMs"]
        elif job.kind == "load":
            statistics["load"] = dict(job.load_stats)
    return {
        "kind": "bigquery#job",
        "etag": f"{job.job_id}-{state}",
        "id": f"{job.project}:{job.location}.{job.job_id}",
        "selfLink": f"/bigquery/v2/projects/{job.project}/jobs/{job.job_id}",
        "user_email": "bqserver@localhost",
        "jobReference": reference(job),
        "configuration": configuration,
        "status": status,
        "statistics": statistics,
        "principal_subject": "user:bqserver@localhost",
        "jobCreationReason": {"code": "REQUESTED"},
    }


def rows_page(
    job: Job, start: int, max_results: int | None, int64_micros: bool
) -> tuple[list[dict[str, Any]], str | None]:
    outcome = job.outcome
    schema = outcome.schema or []
    count = DEFAULT_PAGE_ROWS if max_results is None else max(0, max_results)
    chunk = outcome.rows[start : start + count]
    rows = [
        {
            "f": [
                {"v": _types.to_cell(v, f, int64_micros)} for v, f in zip(row, schema, strict=False)
            ]
        }
        for row in chunk
    ]
    end = start + len(chunk)
    token = str(end) if end < len(outcome.rows) and count > 0 else None
    return rows, token


def query_response(
    job: Job,
    *,
    kind: str,
    start: int = 0,
    max_results: int | None = None,
    int64_micros: bool = True,
) -> dict[str, Any]:
    """The jobs.query / getQueryResults body of a job (complete or not)."""
    body: dict[str, Any] = {
        "kind": kind,
        "etag": f"{job.job_id}-{start}",
        "jobReference": reference(job),
        "jobComplete": job.done,
        "queryId": job.job_id,
    }
    if not job.done:
        return body
    stats = query_statistics(job)
    outcome = job.outcome
    body.update(
        totalBytesProcessed=stats["totalBytesProcessed"],
        totalBytesBilled=stats["totalBytesBilled"],
        totalSlotMs=stats["totalSlotMs"],
        cacheHit=stats["cacheHit"],
        creationTime=_ms(job.created),
        startTime=_ms(job.started),
        endTime=_ms(job.ended or time.time()),
        location=job.location,
    )
    if outcome.schema is not None:
        rows, token = rows_page(job, start, max_results, int64_micros)
        body["schema"] = {"fields": outcome.schema}
        body["totalRows"] = str(len(outcome.rows))
        if rows:  # BigQuery leaves "rows" out of an empty page
            body["rows"] = rows
        if token is not None:
            body["pageToken"] = token
    else:
        body["totalRows"] = "0"
        body["schema"] = {"fields": []}
    if outcome.dml is not None:
        body["numDmlAffectedRows"] = stats["numDmlAffectedRows"]
        body["dmlStats"] = stats["dmlStats"]
    return body


def page_start(params: Mapping[str, str]) -> int:
    token = params.get("pageToken")
    if token:
        return integer(token, "pageToken", 0) or 0
    return integer(params.get("startIndex"), "startIndex", 0) or 0
