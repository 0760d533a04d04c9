"""Observed BigQuery jobs, one :class:`JobRecord` each, from any of three sources.

* Bastion's JSON-lines telemetry file (``BASTION_TELEMETRY_JSONL``, format and line
  parser in :mod:`bastion.instrumentation.jsonl`): its spans; metric and log lines skipped;
* OTLP JSON files, as the OpenTelemetry Collector's ``file`` exporter writes them: one
  ``ExportTraceServiceRequest`` (``{"resourceSpans": [...]}``) per line; the two kinds
  of line may be mixed in one file;
* BigQuery's own job history, ``region-<loc>.INFORMATION_SCHEMA.JOBS``, read with the
  real client (:func:`read_jobs`).

A BigQuery span is one with ``db.system.name = "gcp.bigquery"`` (the instrumentor's
CLIENT span); other spans are skipped. Readers stream: memory does not grow with the
input, only with what the caller keeps.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.instrumentation import jsonl
from bastion.instrumentation.bigquery import _labels as job_labels

SYSTEM = "gcp.bigquery"
Progress = Callable[[int], object]


class SourceError(ValueError):
    """A source that cannot be read: the message names the file and line."""


@dataclass(slots=True)
class JobRecord:
    """One BigQuery job (or instrumented call) as the cost analysis needs it."""

    shape: str  # query fingerprint; "" when unknown (the analysis computes it)
    sql: str
    summary: str
    statement_type: str
    service: str
    route: str
    call_site: str
    tables: tuple[str, ...]
    unfiltered: tuple[str, ...]
    bytes_billed: int
    bytes_processed: int
    slot_ms: int
    cache_hit: bool
    error: str
    start: float  # seconds since the epoch
    duration: float  # seconds
    query_hash: str = ""


def _int(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    return ()


def _call_site(attributes: Mapping[str, Any]) -> str:
    path = attributes.get("code.file.path") or attributes.get("code.filepath")
    line = attributes.get("code.line.number") or attributes.get("code.lineno")
    if not path:
        return ""
    return f"{path}:{line}" if line else str(path)


def from_attributes(
    attributes: Mapping[str, Any], service: str, start: float, duration: float, error: bool
) -> JobRecord:
    """The record of one instrumentor span (attribute names of the instrumentor)."""
    return JobRecord(
        shape=str(attributes.get("bastion.bq.query_fingerprint") or ""),
        sql=str(attributes.get("db.query.text") or ""),
        summary=str(attributes.get("db.query.summary") or ""),
        statement_type=str(attributes.get("bastion.bq.statement_type") or ""),
        service=service,
        route=str(attributes.get(job_labels.ROUTE_ATTRIBUTE) or ""),
        call_site=_call_site(attributes),
        tables=_strings(attributes.get("bastion.bq.tables")),
        unfiltered=_strings(attributes.get("bastion.bq.unfiltered_tables")),
        bytes_billed=_int(attributes.get("bastion.bq.bytes_billed")),
        bytes_processed=_int(attributes.get("bastion.bq.bytes_processed")),
        slot_ms=_int(attributes.get("bastion.bq.slot_ms")),
        cache_hit=bool(attributes.get("bastion.bq.cache_hit")),
        error=str(attributes.get("error.type") or ("error" if error else "")),
        start=start,
        duration=duration,
        query_hash=str(attributes.get("bastion.bq.query_hash") or ""),
    )


# --- files ---------------------------------------------------------------------------
def read_file(
    path: Path,
    progress: Progress | None = None,
    *,
    start: int = 0,
    end: int | None = None,
) -> Iterator[JobRecord]:
    """Every BigQuery span of a JSON-lines or OTLP JSON file; raises :class:`SourceError`.
    ``progress`` is called with the byte count of each line read. ``start``/``end``: the
    lines that begin in that byte range (``start`` a line start; line numbers in errors
    then count from it)."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise SourceError(f"{path}: {error.strerror or error}") from None
    with handle:
        handle.seek(start)
        position = start
        for number, raw in enumerate(handle, 1):
            if end is not None and position >= end:
                break
            position += len(raw)
            if progress is not None:
                progress(len(raw))
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = jsonl.parse_line(raw)
            except jsonl.MalformedLine as error:
                raise SourceError(f"{where}: {error.reason}") from None
            if "resourceSpans" in record:
                yield from _otlp_records(record, where)
            elif jsonl.record_kind(record) != "span":  # a metric or log line
                continue
            else:
                found = _sdk_record(record, where)
                if found is not None:
                    yield found


def _sdk_record(span: dict[str, Any], where: str) -> JobRecord | None:
    attributes = span.get("attributes")
    if not isinstance(attributes, dict) or "context" not in span:
        raise SourceError(
            f"{where}: neither an OpenTelemetry span (no context/attributes) nor OTLP JSON "
            "(no resourceSpans)"
        )
    if attributes.get("db.system.name") != SYSTEM:
        return None
    try:
        start = dt.datetime.fromisoformat(str(span["start_time"]))
        end = dt.datetime.fromisoformat(str(span["end_time"]))
    except (KeyError, ValueError):
        raise SourceError(f"{where}: span without valid start_time/end_time") from None
    resource = span.get("resource")
    resource_attributes = resource.get("attributes", {}) if isinstance(resource, dict) else {}
    status = span.get("status")
    failed = isinstance(status, dict) and status.get("status_code") == "ERROR"
    return from_attributes(
        attributes,
        str(resource_attributes.get("service.name") or ""),
        start.timestamp(),
        max((end - start).total_seconds(), 0.0),
        failed,
    )


#: The span attributes a record is built from (others are skipped unconverted).
WANTED = frozenset(
    {
        "db.system.name",
        "db.query.text",
        "db.query.summary",
        "error.type",
        "code.file.path",
        "code.filepath",
        "code.line.number",
        "code.lineno",
        job_labels.ROUTE_ATTRIBUTE,
        "bastion.bq.query_fingerprint",
        "bastion.bq.query_hash",
        "bastion.bq.statement_type",
        "bastion.bq.tables",
        "bastion.bq.unfiltered_tables",
        "bastion.bq.bytes_billed",
        "bastion.bq.bytes_processed",
        "bastion.bq.slot_ms",
        "bastion.bq.cache_hit",
        "service.name",
    }
)


def _otlp_value(value: Any) -> Any:
    """An OTLP JSON ``AnyValue`` as a Python value."""
    if not isinstance(value, dict) or not value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return _int(value["intValue"])
    if "arrayValue" in value:
        return [_otlp_value(v) for v in (value["arrayValue"] or {}).get("values", [])]
    return next(iter(value.values()))  # boolValue, doubleValue, bytesValue


def _otlp_attributes(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    out: dict[str, Any] = {}
    for kv in items:  # the hot loop of OTLP files: the common value kinds inlined
        key = kv.get("key") if isinstance(kv, dict) else None
        if key not in WANTED:
            continue
        value = kv.get("value")
        if isinstance(value, dict) and "stringValue" in value:
            out[key] = value["stringValue"]
        elif isinstance(value, dict) and "intValue" in value:
            out[key] = _int(value["intValue"])
        else:
            out[key] = _otlp_value(value)
    return out


def _otlp_records(request: dict[str, Any], where: str) -> Iterator[JobRecord]:
    resource_spans = request.get("resourceSpans")
    if not isinstance(resource_spans, list):
        raise SourceError(f"{where}: resourceSpans is not a list")
    for resource_span in resource_spans:
        resource = _otlp_attributes((resource_span.get("resource") or {}).get("attributes"))
        service = str(resource.get("service.name") or "")
        for scope_span in resource_span.get("scopeSpans") or []:
            for span in scope_span.get("spans") or []:
                attributes = _otlp_attributes(span.get("attributes"))
                if attributes.get("db.system.name") != SYSTEM:
                    continue
                try:
                    start_ns = int(span["startTimeUnixNano"])
                    end_ns = int(span["endTimeUnixNano"])
                except (KeyError, TypeError, ValueError):
                    raise SourceError(
                        f"{where}: OTLP span without valid startTimeUnixNano/endTimeUnixNano"
                    ) from None
                status = span.get("status") or {}
                failed = status.get("code") in (2, "STATUS_CODE_ERROR")
                yield from_attributes(
                    attributes, service, start_ns / 1e9, max(end_ns - start_ns, 0) / 1e9, failed
                )


# --- BigQuery's job history ------------------------------------------------------------
JOBS_QUERY = """
SELECT creation_time, end_time, job_id, statement_type, query, total_bytes_processed,
  total_bytes_billed, total_slot_ms, cache_hit, labels, referenced_tables, error_result
FROM `{project}.region-{region}.INFORMATION_SCHEMA.JOBS`
WHERE creation_time >= @since AND creation_time < @until AND job_type = 'QUERY'
"""


def read_jobs(
    client: Any,
    region: str,
    since: dt.datetime,
    until: dt.datetime,
    *,
    project: str | None = None,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Iterator[JobRecord]:
    """The query jobs of ``INFORMATION_SCHEMA.JOBS`` created in [since, until), streamed
    page by page. Needs ``bigquery.jobs.listAll`` (or ``jobs.list`` for one's own)."""
    from google.cloud import bigquery

    sql = JOBS_QUERY.format(project=project or client.project, region=region.lower())
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
            bigquery.ScalarQueryParameter("until", "TIMESTAMP", until),
        ],
        labels={job_labels.ADVISOR_KEY: "jobs-history"},
    )
    bounded = {
        "retry": bigquery.DEFAULT_RETRY.with_timeout(timeout),
        "timeout": timeout,
        "job_retry": None,
    }
    job = client.query(sql, job_config=config, **bounded)
    for row in job.result(page_size=10_000, **bounded):
        if progress is not None:
            progress(1)
        if any(item["key"] == job_labels.ADVISOR_KEY for item in row["labels"] or []):
            continue  # the advisor's own history reads and validation runs
        yield _job_record(row)


def _job_record(row: Any) -> JobRecord:
    labels = {str(item["key"]): str(item["value"]) for item in row["labels"] or []}
    tables = tuple(
        f"{t['project_id']}.{t['dataset_id']}.{t['table_id']}"
        for t in row["referenced_tables"] or []
    )
    created: dt.datetime = row["creation_time"]
    ended: dt.datetime | None = row["end_time"]
    error = row["error_result"]
    return JobRecord(
        shape=labels.get(job_labels.SHAPE_KEY, ""),
        sql=str(row["query"] or ""),
        summary="",
        statement_type=str(row["statement_type"] or ""),
        service=labels.get(job_labels.SERVICE_KEY, ""),
        route=labels.get(job_labels.ROUTE_KEY, ""),
        call_site="",
        tables=tables,
        unfiltered=(),
        bytes_billed=_int(row["total_bytes_billed"]),
        bytes_processed=_int(row["total_bytes_processed"]),
        slot_ms=_int(row["total_slot_ms"]),
        cache_hit=bool(row["cache_hit"]),
        error=str(error["reason"]) if error else "",
        start=created.timestamp(),
        duration=max((ended - created).total_seconds(), 0.0) if ended else 0.0,
    )
