"""The deadline middlewares in-process: modes, routes, how each kind of overrun is
answered, the counters, and the race between a finishing request and the watchdog.
(The real-server behaviour is in test_deadline_servers.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from bastion.middleware.deadline import DeadlineExceeded, problem, remaining, report
from bastion.middleware.deadline.asgi import DeadlineASGIMiddleware
from bastion.middleware.deadline.watchdog import get_watchdog
from bastion.middleware.deadline.wsgi import DeadlineMiddleware
from bastion.middleware.routes import Route
from bastion.settings import Mode, Settings

ENFORCE = Settings(deadline=Mode.ENFORCE, deadline_seconds=0.1)
OBSERVE = Settings(deadline=Mode.OBSERVE, deadline_seconds=0.1)


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[dict[str, Any]]]:
    """The real SDK counter, on a provider of this test's own (the global one may
    already belong to another test module in this process)."""
    reader = InMemoryMetricReader()
    counter = (
        MeterProvider(metric_readers=[reader])
        .get_meter("bastion")
        .create_counter("bastion.deadline.exceeded")
    )
    monkeypatch.setattr(report, "exceeded_counter", counter)

    def read() -> list[dict[str, Any]]:
        data = reader.get_metrics_data()
        found = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        found.append({**point.attributes, "value": point.value})
        return found

    return read


# --- WSGI ------------------------------------------------------------------------------
def call(app: Any, path: str = "/") -> tuple[str, list[tuple[str, str]], bytes]:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
    }
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            started.clear()  # a compliant server replaces what was not sent
        started.append((status, headers))
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    (status, headers), *_ = started
    return status, headers, body


def ok_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    left = remaining()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"none" if left is None else f"{left:.3f}".encode()]


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_off_mode_returns_the_app_untouched() -> None:
    app = DeadlineMiddleware.from_settings(ok_app, Settings(deadline=Mode.OFF))
    assert call(app)[2] == b"none"


def test_budget_is_visible_and_routes_override_or_exempt() -> None:
    routes = {"/long": Route(deadline_seconds=5.0), "/free": Route(exempt_deadline=True)}
    app = DeadlineMiddleware.from_settings(ok_app, ENFORCE, routes=routes)
    assert 0.05 < float(call(app)[2]) <= 0.1
    assert 4.9 < float(call(app, "/long")[2]) <= 5.0
    assert call(app, "/free")[2] == b"none"


def test_python_work_that_overruns_gets_the_problem_document(
    outcomes: Callable[[], list[dict[str, Any]]],
) -> None:
    def cpu(environ: Any, start_response: Any) -> Iterable[bytes]:
        busy(2.0)
        start_response("200 OK", [("X-App", "1")])
        return [b"done"]

    started = time.monotonic()
    status, headers, body = call(DeadlineMiddleware.from_settings(cpu, ENFORCE), "/cpu")
    assert time.monotonic() - started < 0.3
    assert status == problem.STATUS
    assert headers == list(problem.WSGI_HEADERS)
    assert json.loads(body)["status"] == 504
    assert outcomes() == [
        {"http.route": "/cpu", "bastion.mode": "enforce", "bastion.outcome": "504", "value": 1}
    ]


def test_an_app_that_swallows_the_exception_still_answers_504() -> None:
    def stubborn(environ: Any, start_response: Any) -> Iterable[bytes]:
        with contextlib.suppress(DeadlineExceeded):
            busy(2.0)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"made it anyway"]

    status, headers, body = call(DeadlineMiddleware.from_settings(stubborn, ENFORCE))
    assert (status, body) == (problem.STATUS, problem.BODY)
    assert ("Content-Type", "text/plain") not in headers


def test_a_late_answer_from_a_blocking_call_is_replaced() -> None:
    def blocked(environ: Any, start_response: Any) -> Iterable[bytes]:
        time.sleep(0.25)  # in C: the exception lands only afterwards
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"late"]

    status, _, body = call(DeadlineMiddleware.from_settings(blocked, ENFORCE))
    assert (status, body) == (problem.STATUS, problem.BODY)


def test_observe_mode_changes_nothing(outcomes: Callable[[], list[dict[str, Any]]]) -> None:
    def slow(environ: Any, start_response: Any) -> Iterable[bytes]:
        busy(0.2)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow but fine"]

    assert call(DeadlineMiddleware.from_settings(slow, OBSERVE), "/slow") == (
        "200 OK",
        [("Content-Type", "text/plain")],
        b"slow but fine",
    )
    assert outcomes() == [
        {
            "http.route": "/slow",
            "bastion.mode": "observe",
            "bastion.outcome": "observed",
            "value": 1,
        }
    ]


def test_a_stream_cut_after_its_first_chunk_is_aborted(
    outcomes: Callable[[], list[dict[str, Any]]],
) -> None:
    closed = threading.Event()

    def stream(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            yield b"first"
            while True:
                busy(0.01)
                yield b"."
        finally:
            closed.set()

    with pytest.raises(DeadlineExceeded):
        call(DeadlineMiddleware.from_settings(stream, ENFORCE), "/stream")
    assert closed.is_set()  # the app's generator was closed
    assert outcomes()[0]["bastion.outcome"] == "aborted"


def test_a_stream_late_to_start_gets_the_504() -> None:
    def late(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        busy(0.3)
        yield b"too late"

    status, headers, body = call(DeadlineMiddleware.from_settings(late, ENFORCE))
    assert (status, headers, body) == (problem.STATUS, list(problem.WSGI_HEADERS), problem.BODY)


def test_a_late_stream_504_is_clean_even_behind_a_start_response_that_appends() -> None:
    """gunicorn appends the headers of a second start_response (exc_info) to the first
    ones, and a wrapper in between hides that it is gunicorn: the stream's headers
    must never reach it before its first chunk."""
    calls: list[tuple[str, list[tuple[str, str]]]] = []

    def appending(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if calls and exc_info is None:
            raise AssertionError("Response headers already set!")
        calls.append((status, [*(calls[-1][1] if calls else []), *headers]))
        return lambda data: None

    def late(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        busy(0.3)
        yield b"too late"

    app = DeadlineMiddleware.from_settings(late, ENFORCE)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()}
    result = app(environ, lambda s, h, e=None: appending(s, h, e))
    body = b"".join(result)
    getattr(result, "close", lambda: None)()
    assert calls == [(problem.STATUS, list(problem.WSGI_HEADERS))]
    assert body == problem.BODY


def test_write_callable_apps_that_started_are_aborted() -> None:
    def legacy(environ: Any, start_response: Any) -> Iterable[bytes]:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        busy(2.0)
        return []

    with pytest.raises(DeadlineExceeded):
        call(DeadlineMiddleware.from_settings(legacy, ENFORCE))


@pytest.mark.slow
def test_no_exception_lands_after_requests_that_end_at_the_deadline() -> None:
    """Four threads run requests that end within a few ms either side of a 50 ms
    deadline; after each one the thread keeps running Python for 10 ms. An injected
    exception that outlived its request would surface there."""
    budget = 0.05
    app = DeadlineMiddleware.from_settings(
        lambda environ, start_response: (busy(environ["work"]), ok_app(environ, start_response))[1],
        Settings(deadline=Mode.ENFORCE, deadline_seconds=budget),
    )
    statuses: list[str] = []
    strays: list[BaseException] = []

    def client(offset: int) -> None:
        for i in range(40):
            environ = {"PATH_INFO": "/", "REQUEST_METHOD": "GET"}
            environ["work"] = budget - 0.004 + ((i + offset) % 9) * 0.001  # type: ignore[assignment]
            holder: list[str] = []
            try:
                result = app(environ, lambda s, h, e=None, seen=holder: seen.append(s))
                b"".join(result)
                getattr(result, "close", lambda: None)()
                statuses.append(holder[-1])
            except DeadlineExceeded as error:  # escaped the middleware
                strays.append(error)
            try:
                busy(0.01)
            except DeadlineExceeded as error:
                strays.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert strays == []
    assert set(statuses) <= {"200 OK", problem.STATUS}
    assert problem.STATUS in statuses and "200 OK" in statuses  # both sides of the line
    assert get_watchdog().in_flight() == 0


# --- ASGI ------------------------------------------------------------------------------
async def asgi_call(app: Any, path: str = "/", type_: str = "http") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": type_, "path": path, "method": "GET", "headers": [], "client": None}
    await app(scope, receive, send)
    return sent


def asgi_app(handler: Callable[[Any], Any]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await handler(send)

    return app


async def sleeper(send: Any) -> None:
    await asyncio.sleep(5)


async def answer(send: Any, body: bytes = b"ok") -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def test_asgi_cancels_and_answers_504(outcomes: Callable[[], list[dict[str, Any]]]) -> None:
    app = DeadlineASGIMiddleware.from_settings(asgi_app(sleeper), ENFORCE)
    started = time.monotonic()
    sent = asyncio.run(asgi_call(app, "/slow"))
    assert time.monotonic() - started < 0.3
    assert sent[0] == {
        "type": "http.response.start",
        "status": 504,
        "headers": list(problem.ASGI_HEADERS),
    }
    assert sent[1]["body"] == problem.BODY and sent[1]["more_body"] is False
    assert outcomes()[0]["bastion.outcome"] == "504"


def test_asgi_observe_mode_changes_nothing() -> None:
    async def slow(send: Any) -> None:
        await asyncio.sleep(0.2)
        await answer(send, b"fine")

    sent = asyncio.run(asgi_call(DeadlineASGIMiddleware.from_settings(asgi_app(slow), OBSERVE)))
    assert [m.get("status") for m in sent] == [200, None] and sent[1]["body"] == b"fine"


def test_asgi_started_response_is_left_unfinished(
    outcomes: Callable[[], list[dict[str, Any]]],
) -> None:
    async def stream(send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            await send({"type": "http.response.body", "body": b".", "more_body": True})
            await asyncio.sleep(0.01)

    sent = asyncio.run(asgi_call(DeadlineASGIMiddleware.from_settings(asgi_app(stream), ENFORCE)))
    assert sent[0]["status"] == 200
    assert all(m.get("more_body") for m in sent[1:])  # never finished: the server aborts it
    assert outcomes()[0]["bastion.outcome"] == "aborted"


def test_asgi_passes_other_scopes_and_exempt_routes_through() -> None:
    async def check_budget(send: Any) -> None:
        await answer(send, b"none" if remaining() is None else b"set")

    app = DeadlineASGIMiddleware.from_settings(
        asgi_app(check_budget), ENFORCE, routes={"/free": Route(exempt_deadline=True)}
    )
    assert asyncio.run(asgi_call(app))[1]["body"] == b"set"
    assert asyncio.run(asgi_call(app, "/free"))[1]["body"] == b"none"
    assert asyncio.run(asgi_call(app, type_="websocket"))[1]["body"] == b"none"


def test_asgi_outside_cancellation_is_not_swallowed() -> None:
    app = DeadlineASGIMiddleware.from_settings(asgi_app(sleeper), Settings(deadline=Mode.ENFORCE))

    async def main() -> None:
        task = asyncio.create_task(asgi_call(app))
        await asyncio.sleep(0.05)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


# --- span events ------------------------------------------------------------------------
@pytest.fixture
def spans() -> Any:
    """A real SDK tracer of this test's own; its spans are made current around the
    middleware the way an outer OpenTelemetry middleware does."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test"), exporter


def deadline_events(exporter: Any) -> list[Any]:
    (span,) = exporter.get_finished_spans()
    return [e for e in span.events if e.name == "bastion.deadline.exceeded"]


def test_wsgi_overrun_adds_an_event_to_the_current_span(spans: Any) -> None:
    from opentelemetry import trace

    tracer, exporter = spans

    def cpu(environ: Any, start_response: Any) -> Iterable[bytes]:
        busy(0.3)
        start_response("200 OK", [])
        return [b"x"]

    middleware = DeadlineMiddleware.from_settings(cpu, OBSERVE)

    def traced(environ: Any, start_response: Any) -> Iterable[bytes]:
        with tracer.start_as_current_span("GET /cpu"):
            return middleware(environ, start_response)

    call(traced)
    (event,) = deadline_events(exporter)
    assert event.attributes["bastion.mode"] == "observe"
    assert "in cpu" in event.attributes["exception.stacktrace"]
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_asgi_overrun_adds_an_event_to_the_current_span(spans: Any) -> None:
    tracer, exporter = spans
    middleware = DeadlineASGIMiddleware.from_settings(asgi_app(sleeper), ENFORCE)

    async def traced(scope: Any, receive: Any, send: Any) -> None:
        with tracer.start_as_current_span("GET /slow"):
            await middleware(scope, receive, send)

    asyncio.run(asgi_call(traced))
    (event,) = deadline_events(exporter)
    assert event.attributes["bastion.mode"] == "enforce"
    assert "in sleeper" in event.attributes["exception.stacktrace"]
