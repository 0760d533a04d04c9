"""JSON-lines exporters for spans, metrics and logs: the demo's default telemetry sink.

One file holds all three signals, one JSON object per line, so that ``bastion queries``,
the demo's summary and a human with ``jq`` can read a run without a collector:

* a span is the SDK's own ``ReadableSpan.to_json(indent=None)`` (it has no ``type``
  key; it has ``context``, ``kind``, ``attributes``, ``events``...);
* a metric is ``{"type": "metric", "name", "unit", "description", "scope", "service",
  "pid", "temporality": "delta", "data": {...}}`` where ``data`` is the SDK's
  ``Metric.to_json()`` data. Temporality is *delta*: each line counts what happened since
  the previous export of the same process, so totals are plain sums over lines, across
  gunicorn workers and across runs appended to the same file;
* a log record is ``{"type": "log", ...}`` with the SDK's ``ReadableLogRecord.to_json()``
  fields (``body``, ``severity_text``, ``trace_id``, ``span_id``, ``attributes``...).

Several processes (gunicorn workers) append to one file: each export is one
``os.write`` on a descriptor opened with ``O_APPEND``, so lines never interleave.

This module is the format's one home: the exporters write it and every reader (``bastion
queries``, the demo's summary, the tests) goes through :func:`read_records`,
:func:`parse_line` and :func:`record_kind` and the typed filters built on them
(:func:`span_records`, :func:`metric_records`, :func:`log_records`,
:func:`metric_points`).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypedDict, cast

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = [
    "JsonLinesFile",
    "JsonLinesLogExporter",
    "JsonLinesMetricExporter",
    "JsonLinesSpanExporter",
    "LogRecord",
    "MalformedLine",
    "MetricPoint",
    "MetricRecord",
    "RecordKind",
    "log_records",
    "metric_points",
    "metric_records",
    "parse_line",
    "read_records",
    "record_kind",
    "span_records",
]

_DELTA = {
    kind: AggregationTemporality.DELTA
    for kind in (
        Counter,
        UpDownCounter,
        Histogram,
        ObservableCounter,
        ObservableUpDownCounter,
        ObservableGauge,
    )
}


class JsonLinesFile:
    """An append-only file shared by the three exporters (and by several processes)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def write_lines(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode()
        with self._lock:
            if self._fd is None:
                directory = os.path.dirname(self.path)
                if directory:
                    os.makedirs(directory, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(self._fd, data)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class JsonLinesSpanExporter(SpanExporter):
    """Spans as the SDK's own JSON, one per line."""

    def __init__(self, sink: JsonLinesFile) -> None:
        self._sink = sink

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            self._sink.write_lines([span.to_json(indent=None) for span in spans])
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._sink.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class JsonLinesMetricExporter(MetricExporter):
    """One line per metric per export, delta temporality (see the module docstring)."""

    def __init__(self, sink: JsonLinesFile) -> None:
        super().__init__(preferred_temporality=_DELTA)  # type: ignore[arg-type]
        self._sink = sink

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        lines = []
        for resource_metrics in metrics_data.resource_metrics:
            service = resource_metrics.resource.attributes.get("service.name", "")
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    data = json.loads(metric.data.to_json(indent=None))
                    if not data.get("data_points"):
                        continue
                    record = {
                        "type": "metric",
                        "name": metric.name,
                        "unit": metric.unit or "",
                        "description": metric.description or "",
                        "scope": scope_metrics.scope.name,
                        "service": service,
                        "pid": os.getpid(),
                        "temporality": "delta",
                        "data": data,
                    }
                    lines.append(json.dumps(record, separators=(",", ":")))
        try:
            self._sink.write_lines(lines)
        except OSError:
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._sink.close()


class JsonLinesLogExporter(LogRecordExporter):
    """Log records as ``{"type": "log", ...}`` lines, trace and span ids included."""

    def __init__(self, sink: JsonLinesFile) -> None:
        self._sink = sink

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        lines = []
        for record in batch:
            fields = json.loads(record.to_json(indent=None))
            lines.append(json.dumps({"type": "log", **fields}, separators=(",", ":")))
        try:
            self._sink.write_lines(lines)
        except OSError:
            return LogRecordExportResult.FAILURE
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self._sink.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# --- reading ---------------------------------------------------------------------------

RecordKind = Literal["span", "metric", "log"]
#: A file, or records already read from one.
RecordSource = str | os.PathLike[str] | Iterable[Mapping[str, Any]]


class MetricRecord(TypedDict):
    """A metric line: the SDK's ``Metric.to_json()`` data in Bastion's envelope."""

    type: Literal["metric"]
    name: str
    unit: str
    description: str
    scope: str
    service: str
    pid: int
    temporality: Literal["delta"]
    data: dict[str, Any]


class LogRecord(TypedDict):
    """A log line: the SDK's ``ReadableLogRecord.to_json()`` fields and ``type``."""

    type: Literal["log"]
    body: Any
    severity_number: int | None
    severity_text: str | None
    attributes: dict[str, Any] | None
    dropped_attributes: int
    timestamp: str | None
    observed_timestamp: str
    trace_id: str  # "0x" and 32 hex digits, all zeros outside a span
    span_id: str
    trace_flags: int | None
    resource: dict[str, Any]
    event_name: str


class MetricPoint(NamedTuple):
    """One data point of a metric line. ``value`` is a counter's or gauge's value, or a
    histogram's observation count; lines are deltas, so a counter's or histogram's total
    is the plain sum of ``value`` over its points."""

    name: str
    attributes: dict[str, Any]
    value: float


class MalformedLine(ValueError):
    """A line that is not one JSON object. ``reason`` says why; ``where`` is
    ``path:line`` when the reader knows it (the message then starts with it)."""

    def __init__(self, reason: str, where: str = "") -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.reason = reason
        self.where = where


def _json_loads() -> Callable[[bytes | str], Any]:
    """orjson's parser when installed (``bastion[costs]``, the faster one on span lines),
    else the standard library's."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return cast(Callable[[bytes | str], Any], orjson.loads)


_loads = _json_loads()


def parse_line(line: bytes | str) -> dict[str, Any]:
    """One line of the file as its record; raises :class:`MalformedLine` when the line
    is not UTF-8 text, not JSON, or JSON but not an object."""
    try:
        record = _loads(line)
    except (UnicodeDecodeError, ValueError) as error:
        if isinstance(line, bytes):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedLine("not UTF-8 text") from None
        message = getattr(error, "msg", None) or str(error)
        raise MalformedLine(f"not JSON ({message})") from None
    if not isinstance(record, dict):
        raise MalformedLine("not a JSON object")
    return record


def record_kind(record: Mapping[str, Any]) -> RecordKind | None:
    """``"span"`` (a span has no ``type`` key), ``"metric"`` or ``"log"``; None for a
    ``type`` this module does not write."""
    kind = record.get("type")
    if kind is None:
        return "span"
    if kind == "metric" or kind == "log":
        return cast(RecordKind, kind)
    return None


def read_records(path: str | os.PathLike[str], *, strict: bool = False) -> Iterator[dict[str, Any]]:
    """Every record of the file at ``path``, in file order, read as it streams.

    Blank lines are skipped. A line that is not a JSON object is skipped, or with
    ``strict`` raises :class:`MalformedLine` naming ``path:line``. A last line without
    its newline is skipped in both modes unless it is a whole record: the writer ends
    every export with a newline, so such a line is an export still being appended (a
    reader racing a writer) or one torn by a process killed mid-write. A missing file
    raises :class:`FileNotFoundError`.
    """
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                yield parse_line(raw)
            except MalformedLine as error:
                if strict and raw.endswith(b"\n"):
                    raise MalformedLine(error.reason, f"{path}:{number}") from None


def _records(source: RecordSource) -> Iterable[Mapping[str, Any]]:
    if isinstance(source, str | os.PathLike):
        return read_records(source)
    return source


def span_records(source: RecordSource) -> Iterator[dict[str, Any]]:
    """The spans (``ReadableSpan.to_json()`` objects) of a file, or of records already
    read."""
    for record in _records(source):
        if record_kind(record) == "span":
            yield cast(dict[str, Any], record)


def metric_records(source: RecordSource, name: str | None = None) -> Iterator[MetricRecord]:
    """The metric lines of a file or of records already read (only ``name``'s if given)."""
    for record in _records(source):
        if record_kind(record) == "metric" and (name is None or record.get("name") == name):
            yield cast(MetricRecord, record)


def log_records(source: RecordSource) -> Iterator[LogRecord]:
    """The log lines of a file, or of records already read."""
    for record in _records(source):
        if record_kind(record) == "log":
            yield cast(LogRecord, record)


def metric_points(source: RecordSource, name: str | None = None) -> Iterator[MetricPoint]:
    """Every data point of the metric lines (only ``name``'s if given); see
    :class:`MetricPoint` for what ``value`` counts."""
    for record in metric_records(source, name):
        for point in record["data"].get("data_points", []):
            value = point.get("count", point.get("value", 0))
            yield MetricPoint(record["name"], dict(point.get("attributes") or {}), value)
