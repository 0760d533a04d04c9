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
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

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
