"""``configure()``: OpenTelemetry for a Bastion-wrapped service in one call at startup.

    from bastion.instrumentation.telemetry import configure
    configure()  # before protect(app) and the instrumentors

It installs a TracerProvider, a MeterProvider and a LoggerProvider (so log records carry
the trace and span ids of the request that wrote them) and picks exporters from the
standard variables:

``OTEL_SERVICE_NAME``
    Service name; falls back to ``K_SERVICE`` (Cloud Run, through the Bastion settings).
``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` / ``OTEL_LOGS_EXPORTER``
    Comma lists of ``console``, ``otlp`` (OTLP/HTTP; ``OTEL_EXPORTER_OTLP_*`` are read by
    the exporter itself), ``gcp`` (Cloud Trace and Cloud Monitoring, extra ``gcp``; for logs
    ``gcp`` means "stdout is Cloud Logging": nothing is added) or ``none``. Unset, they are
    ``otlp`` when an OTLP endpoint variable is set and ``none`` otherwise: unlike the bare
    SDK, a service without a collector does not log an export error every few seconds.
``OTEL_METRIC_EXPORT_INTERVAL``, ``OTEL_BSP_*``, ``OTEL_TRACES_SAMPLER``...
    Read by the SDK's own processors and readers.
``BASTION_TELEMETRY_JSONL``
    A path: spans, metrics and logs are also appended there as JSON lines
    (:mod:`bastion.instrumentation.jsonl`); the demo's default.

With ``gcp`` it also detects the Cloud Run (or GKE, GCE...) resource from the metadata
server and reads and writes ``X-Cloud-Trace-Context`` besides ``traceparent``, unless
``OTEL_PROPAGATORS`` says otherwise. The GCP packages are imported only then.

Histograms get bucket boundaries that suit their units (seconds up to BigQuery's 600 s
class, bytes from BigQuery's 10 MB minimum bill to 10 TB); the SDK's default buckets are
milliseconds-shaped and would put every query in the first two.

Everything is flushed at interpreter exit (the SDK's atexit hooks) and by
:meth:`Telemetry.shutdown`; gunicorn workers also flush on exit and abort through the
``worker_exit`` / ``worker_abort`` hooks of :mod:`bastion.instrumentation.gunicorn_hooks`
(installed by :mod:`bastion.instrumentation.gunicorn_conf`), which reach these providers
through the global API.
``configure()`` is idempotent: later calls return the first handle.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from bastion.instrumentation import _exporters
from bastion.instrumentation._exporters import TelemetrySettings, exporter_names, optional
from bastion.instrumentation.jsonl import JsonLinesFile
from bastion.settings import Settings, get_settings

__all__ = [
    "HISTOGRAM_BUCKETS",
    "Telemetry",
    "TelemetrySettings",
    "configure",
    "current",
    "flush",
    "instrument_all",
]

log = logging.getLogger("bastion.telemetry")
_P = TypeVar("_P")


#: Bucket boundaries of Bastion's histograms, by instrument name.
HISTOGRAM_BUCKETS: Mapping[str, tuple[float, ...]] = {
    "bastion.bigquery.duration": (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200),
    "bastion.bigquery.bytes_billed": (0, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13),
}


@dataclass(frozen=True)
class Telemetry:
    """What :func:`configure` installed."""

    resource: Resource
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    traces_exporters: tuple[str, ...]
    metrics_exporters: tuple[str, ...]
    logs_exporters: tuple[str, ...]
    jsonl_path: str
    #: The exporter objects, JSON-lines ones first (for inspection and tests).
    span_exporters: tuple[SpanExporter, ...] = ()
    metric_exporters: tuple[MetricExporter, ...] = ()
    log_exporters: tuple[LogRecordExporter, ...] = ()

    @property
    def service_name(self) -> str:
        return str(self.resource.attributes.get("service.name", ""))

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export everything buffered now (spans, metrics, logs); True if all succeeded."""
        results = [
            self.tracer_provider.force_flush(timeout_millis),
            self.meter_provider.force_flush(timeout_millis),
            self.logger_provider.force_flush(timeout_millis),
        ]
        return all(results)

    def shutdown(self) -> None:
        """Flush and stop every exporter. Safe to call more than once."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


_lock = threading.Lock()
_current: Telemetry | None = None


def current() -> Telemetry | None:
    """The handle of the first :func:`configure` call in this process, if any."""
    return _current


def flush(timeout_millis: int = 10_000) -> bool:
    """Flush whatever providers are installed globally (ours or another configurator's)."""
    ok = True
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        force = getattr(provider, "force_flush", None)
        if callable(force):
            ok = bool(force(timeout_millis)) and ok
    if _current is not None:
        ok = _current.logger_provider.force_flush(timeout_millis) and ok
    return ok


def configure(
    service_name: str | None = None,
    settings: TelemetrySettings | None = None,
    *,
    traces_exporter: str | None = None,
    metrics_exporter: str | None = None,
    logs_exporter: str | None = None,
    jsonl_path: str | None = None,
    resource_attributes: Mapping[str, str] | None = None,
) -> Telemetry:
    """Install tracing, metrics and log correlation for this process (idempotent).

    Keyword arguments win over the variables they name: ``traces_exporter`` over
    ``OTEL_TRACES_EXPORTER`` (same comma-list form), ``jsonl_path`` over
    ``BASTION_TELEMETRY_JSONL``. An unknown exporter name raises :class:`SettingsError`
    at startup, naming the variable.
    """
    global _current
    with _lock:
        if _current is not None:
            return _current
        settings = settings if settings is not None else get_settings()
        env = os.environ
        traces = exporter_names("OTEL_TRACES_EXPORTER", traces_exporter, env, "TRACES")
        metric_names = exporter_names("OTEL_METRICS_EXPORTER", metrics_exporter, env, "METRICS")
        logs = exporter_names("OTEL_LOGS_EXPORTER", logs_exporter, env, "LOGS")
        path = settings.telemetry_jsonl_path if jsonl_path is None else jsonl_path
        on_gcp = "gcp" in traces or "gcp" in metric_names

        resource = _resource(service_name, settings, resource_attributes, on_gcp)
        sink = JsonLinesFile(path) if path else None

        # Another configurator (opentelemetry-instrument, the app itself) may have been
        # first: the API accepts one provider per process, so keep its providers and add
        # our exporters where the SDK allows it (span and log processors; a MeterProvider's
        # readers are fixed at creation).
        adopted_tracer = _installed(trace.get_tracer_provider(), TracerProvider)
        adopted_meter = _installed(metrics.get_meter_provider(), MeterProvider)
        adopted_logger = _installed(_get_logger_provider(), LoggerProvider)
        if adopted_tracer is not None:
            resource = adopted_tracer.resource
            log.warning(
                "an OpenTelemetry SDK was configured before configure(): keeping its "
                "providers and adding Bastion's exporters to them"
            )

        tracer_provider = adopted_tracer or TracerProvider(resource=resource)
        span_exporters = _exporters.span_exporters(traces, resource, sink)
        for span_exporter in span_exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))

        metric_exporters = _exporters.metric_exporters(metric_names, sink)
        if adopted_meter is not None:
            if metric_exporters:
                log.warning("metrics keep the existing MeterProvider's exporters only")
            metric_exporters = []
        readers: list[MetricReader] = [
            PeriodicExportingMetricReader(exporter) for exporter in metric_exporters
        ]
        meter_provider = adopted_meter or MeterProvider(
            resource=resource, metric_readers=readers, views=_views()
        )

        logger_provider = adopted_logger or LoggerProvider(resource=resource)
        log_exporters = _exporters.log_exporters(logs, sink)
        for log_exporter in log_exporters:
            logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))

        if adopted_tracer is None:
            trace.set_tracer_provider(tracer_provider)
        if adopted_meter is None:
            metrics.set_meter_provider(meter_provider)
        if adopted_logger is None:
            set_logger_provider(logger_provider)
        if on_gcp and "OTEL_PROPAGATORS" not in env:
            _install_gcp_propagator()
        _correlate_logs(tracer_provider, export=bool(log_exporters))

        _current = Telemetry(
            resource=resource,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            logger_provider=logger_provider,
            traces_exporters=traces,
            metrics_exporters=metric_names,
            logs_exporters=logs,
            jsonl_path=path,
            span_exporters=tuple(span_exporters),
            metric_exporters=tuple(metric_exporters),
            log_exporters=tuple(log_exporters),
        )
        log.info(
            "telemetry for %s: traces=%s metrics=%s logs=%s jsonl=%s",
            _current.service_name,
            ",".join(traces) or "none",
            ",".join(metric_names) or "none",
            ",".join(logs) or "none",
            path or "-",
        )
        return _current


def instrument_all(app: Any = None, settings: Settings | None = None) -> list[Any]:
    """Turn on the instrumentors whose library is installed, with ``settings`` (default: the
    process settings), and return them: Bastion's BigQuery and ``requests`` guards and, for
    a Flask ``app``, OpenTelemetry's Flask instrumentation (server spans, so that log
    records, CSP events and deadline overruns belong to the request's trace). The third of
    the three lines that wrap a service::

        configure()
        app = protect(app)
        instrument_all(app)

    Idempotent, like each ``BaseInstrumentor``.
    """
    import importlib.util

    settings = settings if settings is not None else get_settings()
    found: list[Any] = []
    if importlib.util.find_spec("google.cloud.bigquery") is not None:
        from bastion.instrumentation.bigquery import BigQueryInstrumentor

        found.append(BigQueryInstrumentor())
    if importlib.util.find_spec("requests") is not None:
        from bastion.instrumentation.http import HttpInstrumentor

        found.append(HttpInstrumentor())
    for instrumentor in found:
        instrumentor.instrument(settings=settings)
    if app is not None and hasattr(app, "wsgi_app") and hasattr(app, "url_map"):
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        if not getattr(app, "_is_instrumented_by_opentelemetry", False):
            from bastion.middleware.protect import wrap_flask_inner

            instrument = FlaskInstrumentor().instrument_app
            # Under Bastion's layers when protect() ran first: see wrap_flask_inner.
            if not wrap_flask_inner(app, instrument):
                instrument(app)  # type: ignore[no-untyped-call]
        found.append(FlaskInstrumentor())
    return found


def _installed(provider: object, sdk_type: type[_P]) -> _P | None:
    return provider if isinstance(provider, sdk_type) else None


def _get_logger_provider() -> object:
    from opentelemetry._logs import get_logger_provider

    return get_logger_provider()


# --- resource, views, propagation, logs ------------------------------------------------


def _resource(
    service_name: str | None,
    settings: TelemetrySettings,
    extra: Mapping[str, str] | None,
    on_gcp: bool,
) -> Resource:
    name = service_name or os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
    attributes: dict[str, str] = {
        "service.name": name,
        # One series per process: Prometheus and Cloud Monitoring need it to tell
        # gunicorn workers and Cloud Run instances apart.
        "service.instance.id": str(uuid.uuid4()),
        **(extra or {}),
    }
    resource = Resource.create(attributes)
    if on_gcp:
        detector = optional("opentelemetry.resourcedetector.gcp_resource_detector", "gcp")
        detected = detector.GoogleCloudResourceDetector(raise_on_error=False).detect()
        resource = detected.merge(resource)
    return resource


def _views() -> list[View]:
    return [
        View(
            instrument_name=name,
            aggregation=ExplicitBucketHistogramAggregation(boundaries=buckets),
        )
        for name, buckets in HISTOGRAM_BUCKETS.items()
    ]


def _install_gcp_propagator() -> None:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagate import set_global_textmap
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    cloud_trace = optional("opentelemetry.propagators.cloud_trace_propagator", "gcp")
    set_global_textmap(
        CompositePropagator(
            [
                cloud_trace.CloudTraceFormatPropagator(),
                TraceContextTextMapPropagator(),  # later wins: traceparent when both arrive
                W3CBaggagePropagator(),
            ]
        )
    )


def _correlate_logs(tracer_provider: TracerProvider, *, export: bool) -> None:
    """Trace and span ids on every log record (``%(otelTraceID)s``, ``%(otelSpanID)s``),
    and, when a log exporter is configured, a handler on the root logger sending records
    to it. opentelemetry-instrumentation-logging does both."""
    from opentelemetry.instrumentation.logging import LoggingInstrumentor

    LoggingInstrumentor().instrument(
        tracer_provider=tracer_provider,
        inject_trace_context=True,
        enable_log_auto_instrumentation=export,
    )
