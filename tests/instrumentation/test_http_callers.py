"""What callers of ``requests`` and urllib3 see of the HTTP guard beyond its decisions: no
other instrumentor switched on, requests' own errors, every socket type urllib3 can hand
back, and observe-mode attributes that never read as applied."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
import urllib3
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bastion.instrumentation.http import HttpInstrumentor
from bastion.middleware import deadline
from bastion.settings import Mode, Settings
from tests.apps.http_harness import guarded
from tests.apps.http_servers import AppServer

OBSERVE = Settings.from_env({}, http=Mode.OBSERVE, tls=Mode.OBSERVE)
ENFORCE = Settings.from_env({}, http=Mode.ENFORCE, tls=Mode.ENFORCE)


@pytest.fixture
def server() -> Iterator[AppServer]:
    with AppServer() as running:
        yield running


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


# --- the guard stands alone -------------------------------------------------------------


@pytest.mark.parametrize("settings", [OBSERVE, ENFORCE], ids=["observe", "enforce"])
def test_no_other_instrumentor_is_switched_on(
    settings: Settings, server: AppServer, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, _ = spans
    assert not RequestsInstrumentor().is_instrumented_by_opentelemetry
    HttpInstrumentor().instrument(settings=settings, tracer_provider=provider)
    try:
        assert not RequestsInstrumentor().is_instrumented_by_opentelemetry
        # requests' own error for an unprepared Request (the OTel requests instrumentor
        # would raise AttributeError instead).
        with pytest.raises(ValueError, match="PreparedRequest"):
            requests.Session().send(requests.Request("GET", f"{server.url}/ok"))  # type: ignore[arg-type]
    finally:
        HttpInstrumentor().uninstrument()


def test_requests_spans_on_explicit_request_only(
    server: AppServer, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    HttpInstrumentor().instrument(settings=ENFORCE, tracer_provider=provider, requests_spans=True)
    try:
        assert RequestsInstrumentor().is_instrumented_by_opentelemetry
        requests.get(f"{server.url}/ok")
    finally:
        HttpInstrumentor().uninstrument()
    assert not RequestsInstrumentor().is_instrumented_by_opentelemetry
    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["bastion.http.timeout_source"] == "default"


def test_an_enclosing_span_gets_none_of_the_calls_attributes(
    server: AppServer, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("the-app")
    with guarded(ENFORCE), tracer.start_as_current_span("handler", kind=SpanKind.SERVER):
        requests.get(f"{server.url}/ok")
    (handler,) = exporter.get_finished_spans()
    assert not [k for k in (handler.attributes or {}) if k.startswith("bastion.")]


# --- observe names what it would do as would_* ---------------------------------------------


@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_observe_attributes_never_read_as_applied(
    mode: str, server: AppServer, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    RequestsInstrumentor().instrument(tracer_provider=provider)  # the user's choice
    try:
        with guarded(OBSERVE if mode == "observe" else ENFORCE), deadline.scope(2.0):
            requests.get(f"{server.url}/ok")
    finally:
        RequestsInstrumentor().uninstrument()
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    applied = {"bastion.http.timeout_connect", "bastion.http.timeout_read"}
    would = {"bastion.http.would_timeout_connect", "bastion.http.would_timeout_read"}
    if mode == "observe":
        assert would <= attributes.keys() and not applied & attributes.keys()
        assert attributes["bastion.http.would_timeout_source"] == "deadline"
    else:
        assert applied <= attributes.keys() and not would & attributes.keys()
        assert attributes["bastion.http.timeout_source"] == "deadline"


# --- every socket type urllib3 can hand back ------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_path(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def https(ca: trustme.CA) -> Iterator[AppServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with AppServer(tls=context) as running:
        yield running


@pytest.fixture
def pyopenssl() -> Iterator[None]:
    from urllib3.contrib import pyopenssl

    pyopenssl.inject_into_urllib3()
    try:
        yield
    finally:
        pyopenssl.extract_from_urllib3()


@pytest.mark.usefixtures("pyopenssl")
@pytest.mark.parametrize("client", ["requests", "urllib3"])
def test_pyopenssl_https_inside_a_deadline_is_never_broken(
    client: str, https: AppServer, ca_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bastion.instrumentation.http")
    with guarded(ENFORCE) as counters, deadline.scope(5.0):
        for _ in range(2):
            if client == "requests":
                assert requests.get(f"{https.url}/ok", verify=str(ca_path)).text == "ok"
            else:
                pool = urllib3.PoolManager(ca_certs=str(ca_path))
                assert pool.request("GET", f"{https.url}/ok").data == b"ok"
        counted = counters.value(
            "bastion.http.client.deadline_uncuttable",
            bastion__http__socket_type="urllib3.contrib.pyopenssl.WrappedSocket",
        )
    # Only requests goes through the guard's adapter, which counts and logs; a plain
    # PoolManager response is simply not cut, and never raises.
    if client == "requests":
        assert counted == 2
        lines = [r for r in caplog.records if "WrappedSocket" in r.getMessage()]
        assert len(lines) == 1
