"""Telemetry settings (:class:`TelemetrySettings`) and exporter choice for
:func:`bastion.instrumentation.telemetry.configure`: names from the ``OTEL_*_EXPORTER``
variables to exporter objects, optional packages imported lazily."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

from bastion.instrumentation.jsonl import (
    JsonLinesFile,
    JsonLinesLogExporter,
    JsonLinesMetricExporter,
    JsonLinesSpanExporter,
)
from bastion.middleware import _flags
from bastion.middleware._flags import FlagError
from bastion.middleware._settings_group import SettingsError, SettingsGroup, flag

EXPORTERS = ("console", "otlp", "gcp", "none")


@dataclass(frozen=True)
class TelemetrySettings(SettingsGroup):
    """The service's name and Bastion's own telemetry file (the ``OTEL_*`` variables
    are read by :func:`~bastion.instrumentation.telemetry.configure` itself)."""

    title = "Telemetry"

    service_name: str = flag(
        "K_SERVICE", _flags.text, "unknown_service", "Service name (set by Cloud Run)."
    )

    telemetry_jsonl_path: str = flag(
        "BASTION_TELEMETRY_JSONL",
        _flags.text,
        "",
        "Write spans, metrics and logs as JSON lines to this file (the demo's exporter).",
    )


# --- exporter choice -------------------------------------------------------------------


def exporter_names(
    variable: str, override: str | None, env: Mapping[str, str], signal: str
) -> tuple[str, ...]:
    raw = override if override is not None else env.get(variable)
    if raw is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"
        )
        return ("otlp",) if endpoint else ()
    names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown:
        raise SettingsError([FlagError(variable, raw, " | ".join(EXPORTERS))])
    return tuple(n for n in names if n != "none")


def span_exporters(
    names: tuple[str, ...], resource: Resource, sink: JsonLinesFile | None
) -> list[SpanExporter]:
    found: list[SpanExporter] = [JsonLinesSpanExporter(sink)] if sink else []
    for name in names:
        if name == "console":
            found.append(ConsoleSpanExporter())
        elif name == "otlp":
            otlp = optional("opentelemetry.exporter.otlp.proto.http.trace_exporter", "otlp")
            found.append(otlp.OTLPSpanExporter())
        elif name == "gcp":
            cloud_trace = optional("opentelemetry.exporter.cloud_trace", "gcp")
            found.append(cloud_trace.CloudTraceSpanExporter(project_id=gcp_project(resource)))
    return found


def metric_exporters(names: tuple[str, ...], sink: JsonLinesFile | None) -> list[MetricExporter]:
    found: list[MetricExporter] = [JsonLinesMetricExporter(sink)] if sink else []
    for name in names:
        if name == "console":
            found.append(ConsoleMetricExporter())
        elif name == "otlp":
            otlp = optional("opentelemetry.exporter.otlp.proto.http.metric_exporter", "otlp")
            found.append(otlp.OTLPMetricExporter())
        elif name == "gcp":
            monitoring = optional("opentelemetry.exporter.cloud_monitoring", "gcp")
            # Several Cloud Run instances write the same series: the unique label keeps
            # Cloud Monitoring from refusing points written less than 5 s apart.
            found.append(monitoring.CloudMonitoringMetricsExporter(add_unique_identifier=True))
    return found


def log_exporters(names: tuple[str, ...], sink: JsonLinesFile | None) -> list[LogRecordExporter]:
    found: list[LogRecordExporter] = [JsonLinesLogExporter(sink)] if sink else []
    for name in names:
        if name == "console":
            found.append(ConsoleLogRecordExporter())
        elif name == "otlp":
            otlp = optional("opentelemetry.exporter.otlp.proto.http._log_exporter", "otlp")
            found.append(otlp.OTLPLogExporter())
        # "gcp": Cloud Run sends stdout/stderr to Cloud Logging; nothing to add.
    return found


def optional(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{module} is missing: install Bastion's extra (pip install 'bastion[{extra}]')"
        ) from error


def gcp_project(resource: Resource) -> str | None:
    project = resource.attributes.get("cloud.account.id") or os.environ.get("GOOGLE_CLOUD_PROJECT")
    return str(project) if project else None
