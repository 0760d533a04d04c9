"""Bastion's attributes and events land on the requests client span, in either install order."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Callable, Iterator

import pytest
import requests
import trustme
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from urllib3.exceptions import InsecureRequestWarning

from bastion.instrumentation.http import DeadlineTimeout, HttpInstrumentor
from bastion.middleware import deadline
from bastion.settings import Mode, Settings
from tests.apps.http_harness import guarded
from tests.apps.http_servers import AppServer, DripServer

ENFORCE = Settings.from_env({}, http=Mode.ENFORCE, tls=Mode.OBSERVE)


@pytest.fixture(params=["bastion-first", "otel-first"])
def both_instrumented(request: pytest.FixtureRequest) -> Iterator[Callable[[], list[ReadableSpan]]]:
    """Both instrumentors, in either order; yields a getter of the finished client spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel = RequestsInstrumentor()
    if request.param == "otel-first":
        otel.instrument(tracer_provider=provider)
    with guarded(ENFORCE):
        if request.param == "bastion-first":
            otel.instrument(tracer_provider=provider)
        try:
            yield lambda: [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
        finally:
            if request.param == "bastion-first":
                otel.uninstrument()
    if request.param == "otel-first":
        otel.uninstrument()
    provider.shutdown()


def test_timeouts_are_attributes_of_the_one_client_span(
    both_instrumented: Callable[[], list[ReadableSpan]],
) -> None:
    with AppServer() as server, deadline.scope(2.0):
        assert requests.get(f"{server.url}/redirect?to=/ok").text == "ok"
    spans = both_instrumented()
    assert len(spans) == 1  # one span for the call (redirect hops are suppressed by OTel)
    attributes = spans[0].attributes or {}
    assert attributes["bastion.http.timeout_source"] == "deadline"
    assert 0 < attributes["bastion.http.timeout_read"] <= 2.0  # type: ignore[operator]
    assert attributes["bastion.mode"] == "enforce"


def test_a_deadline_cut_is_an_event_on_the_span(
    both_instrumented: Callable[[], list[ReadableSpan]],
) -> None:
    with (
        DripServer(interval=0.2) as drip,
        deadline.scope(0.5),
        pytest.raises(DeadlineTimeout),
    ):
        requests.get(drip.url, timeout=5)
    (span,) = both_instrumented()
    assert (span.attributes or {})["bastion.http.deadline_cut"] is True
    events = [e for e in span.events if e.name == "bastion.http.deadline_cut"]
    assert len(events) == 1 and (events[0].attributes or {})["bastion.http.phase"] == "body"


def test_tls_decision_is_an_attribute_and_event(
    both_instrumented: Callable[[], list[ReadableSpan]],
) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with AppServer(tls=context) as server, warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        assert requests.get(f"{server.url}/ok", verify=False, timeout=5).text == "ok"
    (span,) = both_instrumented()
    assert (span.attributes or {})["bastion.tls.decision"] == "observed"
    (event,) = [e for e in span.events if e.name == "bastion.tls.insecure"]
    assert str((event.attributes or {})["code.location"]).startswith(f"{__file__}:")


def test_the_instrumentor_turns_on_requests_spans_when_asked_and_off_again() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert not RequestsInstrumentor().is_instrumented_by_opentelemetry
    HttpInstrumentor().instrument(
        settings=ENFORCE, tracer_provider=provider, skip_dep_check=True, requests_spans=True
    )
    try:
        assert RequestsInstrumentor().is_instrumented_by_opentelemetry
        with AppServer() as server:
            requests.get(f"{server.url}/ok")
    finally:
        HttpInstrumentor().uninstrument()
    assert not RequestsInstrumentor().is_instrumented_by_opentelemetry
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.CLIENT
    assert (span.attributes or {})["bastion.http.timeout_source"] == "default"
    provider.shutdown()


def test_timeouts_applied_tally_counts_exactly_across_threads_and_reads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from opentelemetry.metrics import CallbackOptions

    from bastion.instrumentation.http._guard import _Tally

    tally = _Tally()
    bump = tally.bumper("enforce", "default")
    with ThreadPoolExecutor(4) as pool:
        for _ in pool.map(lambda _: [bump() for _ in range(5000)], range(4)):
            pass
    first = [o.value for o in tally.observe(CallbackOptions())]
    bump()
    second = [o.value for o in tally.observe(CallbackOptions())]
    assert first == [20000]
    assert second == [20001]  # reads are not counted
