"""``bastion.instrumentation.telemetry.configure()``: exporters, flush at exit, log
correlation, GCP.

``configure()`` installs global OpenTelemetry providers, which a process can set only once,
so every test that calls it runs in its own process (a gunicorn server or ``python -c``):
the pytest process itself never gets Bastion's providers, and other test modules keep
theirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from bastion.instrumentation._exporters import exporter_names
from bastion.instrumentation.jsonl import (
    log_records,
    metric_records,
    read_records,
    span_records,
)
from bastion.instrumentation.telemetry import HISTOGRAM_BUCKETS
from bastion.settings import SettingsError
from tests.servers import ROOT, gunicorn


def run_python(
    code: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BASTION_"))}
    full_env.update({"PYTHONPATH": str(ROOT), **env})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- exporter choice (pure) ------------------------------------------------------------


def test_exporters_default_to_none_without_an_otlp_endpoint() -> None:
    assert exporter_names("OTEL_TRACES_EXPORTER", None, {}, "TRACES") == ()


def test_exporters_default_to_otlp_when_an_endpoint_is_set() -> None:
    env = {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://collector:4318/v1/metrics"}
    assert exporter_names("OTEL_METRICS_EXPORTER", None, env, "METRICS") == ("otlp",)
    assert exporter_names("OTEL_TRACES_EXPORTER", None, env, "TRACES") == ()


def test_exporter_lists_are_parsed_deduplicated_and_none_is_dropped() -> None:
    env = {"OTEL_TRACES_EXPORTER": " Console,gcp , console,none"}
    assert exporter_names("OTEL_TRACES_EXPORTER", None, env, "TRACES") == ("console", "gcp")
    # a keyword argument wins over the variable
    assert exporter_names("OTEL_TRACES_EXPORTER", "otlp", env, "TRACES") == ("otlp",)


def test_an_unknown_exporter_fails_at_startup_naming_the_variable() -> None:
    with pytest.raises(SettingsError) as caught:
        exporter_names("OTEL_TRACES_EXPORTER", None, {"OTEL_TRACES_EXPORTER": "zipkin"}, "T")
    message = str(caught.value)
    assert "OTEL_TRACES_EXPORTER" in message and "'zipkin'" in message and "gcp" in message


def test_histogram_buckets_cover_the_bigquery_timeout_classes() -> None:
    seconds = HISTOGRAM_BUCKETS["bastion.bigquery.duration"]
    assert list(seconds) == sorted(seconds)
    assert {60, 120, 300, 600} <= set(seconds)  # one boundary per class timeout
    assert 1e7 in HISTOGRAM_BUCKETS["bastion.bigquery.bytes_billed"]  # BigQuery's minimum bill


# --- a real service: gunicorn, flush at worker exit, log correlation -------------------


def test_spans_metrics_and_correlated_logs_are_flushed_when_the_gunicorn_worker_exits(
    tmp_path: Path,
) -> None:
    out = tmp_path / "telemetry.jsonl"
    env = {
        "BASTION_TELEMETRY_JSONL": str(out),
        "OTEL_SERVICE_NAME": "prediction-worker",
        # Nothing is exported by the timers during the test: whatever is in the file
        # afterwards was written by the flush at worker exit.
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",
        "OTEL_BLRP_SCHEDULE_DELAY": "600000",
    }
    with gunicorn("tests.apps.telemetry_app:app", tmp_path, env=env) as server:
        trace_id = requests.get(f"{server.url}/work", timeout=10).json()["trace_id"]
        assert not out.exists() or "working" not in out.read_text()
    records = list(read_records(out))
    spans = list(span_records(records))
    logs = list(log_records(records))
    metric_lines = list(metric_records(records))

    work = next(s for s in spans if s["name"] == "work")
    assert work["context"]["trace_id"] == f"0x{trace_id}"
    assert work["resource"]["attributes"]["service.name"] == "prediction-worker"
    working = next(r for r in logs if r["body"] == "working")
    assert working["trace_id"] == f"0x{trace_id}"  # the log record carries the request's trace
    assert working["attributes"]["otelTraceID"] == trace_id
    counted = next(m for m in metric_lines if m["name"] == "bastion.csp.reports")
    assert counted["service"] == "prediction-worker" and counted["temporality"] == "delta"
    assert counted["data"]["data_points"][0]["value"] == 1


def test_several_workers_append_whole_lines_to_one_file(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    out = tmp_path / "telemetry.jsonl"
    env = {"BASTION_TELEMETRY_JSONL": str(out), "OTEL_BSP_SCHEDULE_DELAY": "50"}
    with (
        gunicorn("tests.apps.telemetry_app:app", tmp_path, env=env, workers=2) as server,
        ThreadPoolExecutor(8) as pool,  # concurrent clients keep both sync workers busy
    ):
        ids = set(
            pool.map(
                lambda _: requests.get(f"{server.url}/work?sleep=0.05", timeout=10).json()[
                    "trace_id"
                ],
                range(60),
            )
        )
    records = list(read_records(out, strict=True))  # whole lines only
    spans = {r["context"]["trace_id"] for r in span_records(records) if r["name"] == "work"}
    assert len(ids) == 60 and spans == {f"0x{i}" for i in ids}
    assert len({r["pid"] for r in metric_records(records)}) == 2  # both wrote


def test_spans_are_flushed_when_gunicorn_aborts_a_hung_worker(tmp_path: Path) -> None:
    out = tmp_path / "telemetry.jsonl"
    env = {"BASTION_TELEMETRY_JSONL": str(out), "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    with gunicorn("tests.apps.telemetry_app:app", tmp_path, env=env, timeout=2) as server:
        trace_id = requests.get(f"{server.url}/work", timeout=10).json()["trace_id"]
        # The arbiter aborts the worker after 2 s; gunicorn 27 still answers 500 (older
        # versions drop the connection). Either way the request never finishes its sleep.
        try:
            status = requests.get(f"{server.url}/hang", timeout=15).status_code
        except requests.RequestException:
            status = 0
        assert status in (0, 500)
        assert "WORKER TIMEOUT" in server.log()
    spans = [r for r in span_records(out) if r["name"] == "work"]
    assert [s["context"]["trace_id"] for s in spans] == [f"0x{trace_id}"]


# --- configure() in its own process ----------------------------------------------------


def test_configure_is_idempotent_and_names_the_service_from_k_service(tmp_path: Path) -> None:
    result = run_python(
        """
        import json
        from opentelemetry import trace
        from bastion.instrumentation.telemetry import configure, current
        first = configure()
        second = configure(service_name="ignored", traces_exporter="console")
        print(json.dumps({
            "same": first is second is current(),
            "global": trace.get_tracer_provider() is first.tracer_provider,
            "service": first.service_name,
            "traces": first.traces_exporters,
        }))
        """,
        {"K_SERVICE": "raw-processor"},
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen == {"same": True, "global": True, "service": "raw-processor", "traces": []}


def test_otel_service_name_wins_over_k_service_and_console_exporter_prints_spans() -> None:
    result = run_python(
        """
        from opentelemetry import trace
        from bastion.instrumentation.telemetry import configure
        handle = configure()
        with trace.get_tracer("t").start_as_current_span("hello"):
            pass
        handle.shutdown()
        """,
        {
            "K_SERVICE": "raw-processor",
            "OTEL_SERVICE_NAME": "scrapers",
            "OTEL_TRACES_EXPORTER": "console",
        },
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "hello"' in result.stdout
    assert '"service.name": "scrapers"' in result.stdout


def test_an_invalid_exporter_variable_stops_the_process_with_a_clear_message() -> None:
    result = run_python(
        "from bastion.instrumentation.telemetry import configure; configure()",
        {"OTEL_METRICS_EXPORTER": "prometheus"},
    )
    assert result.returncode != 0
    assert "OTEL_METRICS_EXPORTER='prometheus' is invalid" in result.stderr


class _Collector(BaseHTTPRequestHandler):
    """A loopback OTLP/HTTP receiver: keeps the path and body of every POST."""

    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Handler", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_otlp_endpoint_alone_sends_spans_and_metrics_over_otlp_http(
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    endpoint, received = collector
    result = run_python(
        """
        from opentelemetry import metrics, trace
        from bastion.instrumentation.telemetry import configure
        configure()
        with trace.get_tracer("t").start_as_current_span("BigQuery query"):
            metrics.get_meter("bastion").create_counter("bastion.bigquery.timeouts").add(
                1, {"bastion.bq.timeout_class": "read"})
        """,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "analytics-processor"},
    )
    assert result.returncode == 0, result.stderr
    paths = {path for path, _ in received}
    assert {"/v1/traces", "/v1/metrics"} <= paths
    traces = ExportTraceServiceRequest.FromString(
        next(body for path, body in received if path == "/v1/traces")
    )
    assert traces.resource_spans[0].scope_spans[0].spans[0].name == "BigQuery query"
    metrics_request = ExportMetricsServiceRequest.FromString(
        next(body for path, body in received if path == "/v1/metrics")
    )
    names = {
        m.name
        for rm in metrics_request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert "bastion.bigquery.timeouts" in names


# --- GCP: Cloud Trace, Cloud Monitoring, Cloud Run resource, X-Cloud-Trace-Context ------


class _MetadataServer(BaseHTTPRequestHandler):
    """The parts of the GCE/Cloud Run metadata server the resource detector reads."""

    def do_GET(self) -> None:
        if self.headers.get("Metadata-Flavor") != "Google":
            self.send_error(403)
            return
        body = b""
        if self.path.startswith("/computeMetadata/v1/instance/"):
            body = b"ok"
        elif self.path.startswith("/computeMetadata/v1/?recursive=true"):
            body = json.dumps(
                {
                    "instance": {
                        "id": "0069c7a9f7f0",
                        "region": "projects/123456/regions/us-west2",
                        "zone": "projects/123456/zones/us-west2-1",
                        "attributes": {},
                        "machineType": "",
                        "name": "",
                    },
                    "project": {"projectId": "nba-props-prod"},
                }
            ).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _service_account_file(tmp_path: Path) -> Path:
    """A syntactically real service-account key (generated here, valid nowhere)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "nba-props-prod",
                "private_key_id": "0" * 40,
                "private_key": pem,
                "client_email": "bastion@nba-props-prod.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": "https://oauth2.googleapis.com/token",
            }
        )
    )
    return path


def test_gcp_exporters_cloud_run_resource_and_cloud_trace_propagation(tmp_path: Path) -> None:
    """Wiring only: nothing is exported (no network here). Two stand-ins, both for Google's
    servers: the metadata server is a loopback server at the detector's URL, and the
    credentials are a service-account key generated for the test. The process exits with
    os._exit so that the exporters' shutdown never tries to reach Google."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetadataServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_python(
            f"""
            import json, os
            from opentelemetry.resourcedetector.gcp_resource_detector import _metadata
            _metadata._GCP_METADATA_URL = "http://127.0.0.1:{server.server_address[1]}/computeMetadata/v1/"
            from opentelemetry import propagate, trace
            from bastion.instrumentation.telemetry import configure
            handle = configure()
            carrier = {{}}
            with trace.get_tracer("t").start_as_current_span("outbound") as span:
                propagate.inject(carrier)
                trace_id = format(span.get_span_context().trace_id, "032x")
            header = "105445aa7843bc8bf206b12000100000/1;o=1"
            inbound = propagate.extract({{"X-Cloud-Trace-Context": header}})
            inbound_ctx = trace.get_current_span(inbound).get_span_context()
            print(json.dumps({{
                "span_exporters": [type(e).__name__ for e in handle.span_exporters],
                "metric_exporters": [type(e).__name__ for e in handle.metric_exporters],
                "resource": dict(handle.resource.attributes),
                "carrier": carrier,
                "trace_id": trace_id,
                "inbound_trace_id": format(inbound_ctx.trace_id, "032x"),
            }}), flush=True)
            os._exit(0)
            """,
            {
                "OTEL_TRACES_EXPORTER": "gcp",
                "OTEL_METRICS_EXPORTER": "gcp",
                "K_SERVICE": "prediction-worker",
                "K_REVISION": "prediction-worker-00042-abc",
                "K_CONFIGURATION": "prediction-worker",
                "GOOGLE_APPLICATION_CREDENTIALS": str(_service_account_file(tmp_path)),
            },
        )
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["span_exporters"] == ["CloudTraceSpanExporter"]
    assert seen["metric_exporters"] == ["CloudMonitoringMetricsExporter"]
    resource = seen["resource"]
    assert resource["cloud.platform"] == "gcp_cloud_run"
    assert resource["cloud.region"] == "us-west2"
    assert resource["cloud.account.id"] == "nba-props-prod"
    assert resource["faas.name"] == "prediction-worker"
    assert resource["service.name"] == "prediction-worker"
    carrier = {k.lower(): v for k, v in seen["carrier"].items()}
    assert carrier["x-cloud-trace-context"].startswith(seen["trace_id"] + "/")
    assert seen["trace_id"] in carrier["traceparent"]
    assert seen["inbound_trace_id"] == "105445aa7843bc8bf206b12000100000"


def test_instrument_all_turns_on_the_guards_and_flask_server_spans_once(tmp_path: Path) -> None:
    out = tmp_path / "telemetry.jsonl"
    result = run_python(
        """
        import json
        import requests
        from flask import Flask
        from google.cloud.bigquery.client import Client
        from bastion.instrumentation.telemetry import configure, instrument_all
        from bastion.middleware import protect

        configure()
        app = protect(Flask(__name__))
        app.add_url_rule("/", "index", lambda: "ok")
        first = instrument_all(app)
        second = instrument_all(app)  # idempotent: nothing wrapped twice
        client = app.test_client()
        client.get("/")
        from opentelemetry import trace
        trace.get_tracer_provider().force_flush()
        print(json.dumps({
            "names": [type(i).__name__ for i in first],
            "same": [type(i).__name__ for i in second],
            "send_wrapped": hasattr(requests.adapters.HTTPAdapter.send, "__wrapped__"),
            "double": hasattr(requests.adapters.HTTPAdapter.send.__wrapped__, "__wrapped__"),
            "bq_wrapped": hasattr(Client.query, "__wrapped__"),
        }))
        """,
        {"BASTION_TELEMETRY_JSONL": str(out)},
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    server = [r for r in span_records(out) if r["kind"] == "SpanKind.SERVER"]
    assert [s["name"] for s in server] == ["GET /"]
    assert seen["names"] == ["BigQueryInstrumentor", "HttpInstrumentor", "FlaskInstrumentor"]
    assert seen["same"] == seen["names"]
    assert seen["send_wrapped"] and seen["bq_wrapped"] and not seen["double"]


def test_a_provider_installed_before_configure_is_kept_and_gets_the_jsonl_exporter(
    tmp_path: Path,
) -> None:
    out = tmp_path / "telemetry.jsonl"
    result = run_python(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        first = TracerProvider()  # e.g. opentelemetry-instrument configured the SDK
        trace.set_tracer_provider(first)
        from bastion.instrumentation.telemetry import configure
        handle = configure()
        assert handle.tracer_provider is first is trace.get_tracer_provider()
        with trace.get_tracer("t").start_as_current_span("kept"):
            pass
        handle.shutdown()
        """,
        {"BASTION_TELEMETRY_JSONL": str(out)},
    )
    assert result.returncode == 0, result.stderr
    assert "keeping its providers" in result.stderr
    assert [r["name"] for r in span_records(out)] == ["kept"]
