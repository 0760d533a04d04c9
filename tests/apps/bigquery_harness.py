"""Test harness for the BigQuery instrumentor: real OTel SDK providers with in-memory
exporters, and instrument/uninstrument around a test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bastion.instrumentation.bigquery import BigQueryInstrumentor
from bastion.settings import Settings


class Telemetry:
    """An SDK tracer and meter provider whose output the test can read."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def client_spans(self) -> list[ReadableSpan]:
        """The guard's CLIENT spans, oldest first."""
        return [
            s
            for s in self.spans.get_finished_spans()
            if s.kind is SpanKind.CLIENT
            and s.instrumentation_scope is not None
            and s.instrumentation_scope.name == "bastion"
        ]

    def only_span(self) -> ReadableSpan:
        spans = self.client_spans()
        assert len(spans) == 1, [(s.name, dict(s.attributes or {})) for s in spans]
        return spans[0]

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        if data is None:
            return points
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def counter(self, name: str, **attributes: Any) -> int:
        """Sum of a counter over points whose attributes include ``attributes``."""
        total = 0
        for point in self.metric_points(name):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += int(point.value)
        return total

    def clear(self) -> None:
        self.spans.clear()


@contextlib.contextmanager
def instrumented(telemetry: Telemetry, settings: Settings) -> Iterator[BigQueryInstrumentor]:
    instrumentor = BigQueryInstrumentor()
    instrumentor.instrument(
        settings=settings,
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
    )
    try:
        yield instrumentor
    finally:
        instrumentor.uninstrument()
