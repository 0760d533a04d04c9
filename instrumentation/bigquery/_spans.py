"""Span names, attributes, and the final job statistics read off REST responses.

The client library's own spans (``BigQuery.job.begin``, ``BigQuery.getJob``...) are
INTERNAL, use the old ``db.system`` key and compute their attributes when they start,
so they never hold a job's final statistics. The guard's CLIENT span covers the whole
logical operation and copies the statistics from every job resource or query response
that passes through ``Client._call_api``; the last one (the job when DONE, or the
jobs.query answer when complete) is what the span ends with.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["Statistics", "query_hash", "summary"]

SYSTEM = "gcp.bigquery"
MAX_SUMMARY = 255


def query_hash(sql: str) -> str:
    """sha256 of the exact SQL text, first 16 hex characters."""
    return hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def summary(operation: str, targets: tuple[str, ...] | list[str]) -> str:
    """``db.query.summary``: ``{operation} {target...}``, at most 255 characters."""
    text = " ".join((operation, *targets)) if targets else operation
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def _int(value: Any) -> int | None:
    # REST int64 fields arrive as strings; absent (None) is the common case.
    if value is None or value is True or value is False:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _dml_rows(dml_stats: Any, affected: Any) -> int | None:
    rows = _int(affected)
    if rows is None and isinstance(dml_stats, dict):
        counts = [
            _int(dml_stats.get(k))
            for k in ("insertedRowCount", "updatedRowCount", "deletedRowCount")
        ]
        known = [c for c in counts if c is not None]
        rows = sum(known) if known else None
    return rows


class Statistics:
    """What the responses of one operation said about its job, latest value wins."""

    __slots__ = (
        "bytes_billed",
        "bytes_processed",
        "cache_hit",
        "complete",
        "dml_rows",
        "error_reason",
        "job_id",
        "location",
        "partitions",
        "slot_ms",
        "statement_type",
    )

    def __init__(self) -> None:
        self.job_id: str | None = None
        self.location: str | None = None
        self.statement_type: str | None = None
        self.bytes_processed: int | None = None
        self.bytes_billed: int | None = None
        self.slot_ms: int | None = None
        self.cache_hit: bool | None = None
        self.partitions: int | None = None
        self.dml_rows: int | None = None
        self.complete = False
        self.error_reason: str | None = None

    def read(self, response: Any) -> None:
        """Copy what ``response`` holds: a job resource (jobs.insert/get), a
        ``{"job": ...}`` (jobs.cancel) or a jobs.query / getQueryResults answer."""
        if type(response) is not dict:
            return
        job = response.get("job")
        if type(job) is dict:
            response = job
        ref = response.get("jobReference")
        if type(ref) is dict:
            self.job_id = ref.get("jobId") or self.job_id
            self.location = ref.get("location") or self.location
        stats = response.get("statistics")
        if type(stats) is dict:  # a job resource
            self._read_job(response, stats)
        elif "jobComplete" in response:  # jobs.query / jobs.getQueryResults
            self._read_query_response(response)

    def _read_job(self, job: dict[str, Any], stats: dict[str, Any]) -> None:
        status = job.get("status")
        if type(status) is dict:
            self.complete = status.get("state") == "DONE"
            error = status.get("errorResult")
            if type(error) is dict:
                self.error_reason = error.get("reason")
        slot_ms = _int(stats.get("totalSlotMs"))
        if slot_ms is not None:
            self.slot_ms = slot_ms
        query = stats.get("query")
        if type(query) is dict:
            self.statement_type = query.get("statementType") or self.statement_type
            self._read_query_numbers(query)
            partitions = _int(query.get("totalPartitionsProcessed"))
            if partitions is not None:
                self.partitions = partitions
            rows = _dml_rows(query.get("dmlStats"), query.get("numDmlAffectedRows"))
            self.dml_rows = rows if rows is not None else self.dml_rows
        load = stats.get("load")
        if type(load) is dict:
            rows = _int(load.get("outputRows"))
            self.dml_rows = rows if rows is not None else self.dml_rows

    def _read_query_response(self, response: dict[str, Any]) -> None:
        self.complete = bool(response.get("jobComplete"))
        self._read_query_numbers(response)
        slot_ms = _int(response.get("totalSlotMs"))
        self.slot_ms = slot_ms if slot_ms is not None else self.slot_ms
        rows = _dml_rows(response.get("dmlStats"), response.get("numDmlAffectedRows"))
        self.dml_rows = rows if rows is not None else self.dml_rows

    def _read_query_numbers(self, source: dict[str, Any]) -> None:
        processed = _int(source.get("totalBytesProcessed"))
        if processed is not None:
            self.bytes_processed = processed
        billed = _int(source.get("totalBytesBilled"))
        if billed is not None:
            self.bytes_billed = billed
        cache_hit = source.get("cacheHit")
        if cache_hit is True or cache_hit is False:
            self.cache_hit = cache_hit

    def attributes(self) -> dict[str, Any]:
        """The ``bastion.bq.*`` attributes known so far (None values left out)."""
        found: dict[str, Any] = {}
        if self.job_id is not None:
            found["bastion.bq.job_id"] = self.job_id
        if self.location is not None:
            found["bastion.bq.location"] = self.location
        if self.bytes_processed is not None:
            found["bastion.bq.bytes_processed"] = self.bytes_processed
        if self.bytes_billed is not None:
            found["bastion.bq.bytes_billed"] = self.bytes_billed
        if self.slot_ms is not None:
            found["bastion.bq.slot_ms"] = self.slot_ms
        if self.cache_hit is not None:
            found["bastion.bq.cache_hit"] = self.cache_hit
        if self.partitions is not None:
            found["bastion.bq.partitions_processed"] = self.partitions
        if self.dml_rows is not None:
            found["bastion.bq.dml_rows"] = self.dml_rows
        if self.statement_type:
            found["bastion.bq.statement_type"] = self.statement_type
        return found
