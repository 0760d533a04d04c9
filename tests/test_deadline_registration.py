"""How a WSGI request's deadline lives with its thread: one registration per thread,
reused request after request; visible to remaining() in the request, to threads it
starts through propagate()/DeadlineExecutor, and to nested requests; what the
watchdog reads from the request's frame; starting the 504 through a server that
already has the app's status; and a forked child (gunicorn's workers)."""

from __future__ import annotations

import contextlib
import functools
import gc
import io
import logging
import multiprocessing
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flask import Flask, Response

from middleware.deadline import (
    DeadlineExecutor,
    current,
    problem,
    propagate,
    remaining,
    scope,
)
from middleware.deadline._context import _thread
from middleware.deadline._restart import start_504
from middleware.deadline.watchdog import get_watchdog
from middleware.deadline.wsgi import DeadlineMiddleware
from middleware.settings import Settings
from tests.test_deadline_middleware import busy, call, outcomes  # noqa: F401 (a fixture)

LONG = Settings(deadline="enforce", deadline_seconds=5.0)
SHORT = Settings(deadline="enforce", deadline_seconds=0.1)


def test_a_thread_reuses_its_registration_and_it_is_idle_between_requests() -> None:
    seen: list[tuple[object, float | None]] = []

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        seen.append((_thread.request, remaining()))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    wrapped = DeadlineMiddleware(app, LONG)
    for _ in range(3):
        assert call(wrapped)[0] == "200 OK"
        assert remaining() is None and current() is None
    registrations = {id(registration) for registration, _ in seen}
    assert len(registrations) == 1
    assert all(left is not None and 4.9 < left <= 5.0 for _, left in seen)
    assert get_watchdog().in_flight() == 0


def test_a_threads_registration_goes_with_the_thread() -> None:
    """A server with a thread per request (Werkzeug's) must not leave a registration
    per request behind in the watchdog."""
    registrations: list[weakref.ref[Any]] = []

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        registrations.append(weakref.ref(_thread.request))  # type: ignore[arg-type]
        start_response("200 OK", [])
        return [b""]

    wrapped = DeadlineMiddleware(app, LONG)
    before = len(get_watchdog()._live)
    for _ in range(20):
        thread = threading.Thread(target=call, args=(wrapped,))
        thread.start()
        thread.join()
    gc.collect()
    assert len(registrations) == 20
    assert all(ref() is None for ref in registrations)
    assert len(get_watchdog()._live) <= before


def test_threads_coming_and_going_never_trip_the_watchdog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A soak: registrations made and dropped by short-lived threads while the
    watchdog (woken by every budget under a second) walks them. It must never fail
    and nothing may stay running. (The narrow race of a registration landing while
    the watchdog copies them is closed by construction, see Watchdog._registrations;
    this run does not reliably hit it.)"""
    wrapped = DeadlineMiddleware(
        lambda environ, start_response: (busy(0.002), start_response("200 OK", []), [b""])[2],
        Settings(deadline="enforce", deadline_seconds=0.05),
    )
    statuses: list[str] = []

    def spawner() -> None:
        for _ in range(40):
            thread = threading.Thread(target=lambda: statuses.append(call(wrapped)[0]))
            thread.start()
            thread.join()

    with caplog.at_level(logging.ERROR, logger="bastion.deadline"):
        spawners = [threading.Thread(target=spawner) for _ in range(6)]
        for spawner_thread in spawners:
            spawner_thread.start()
        for spawner_thread in spawners:
            spawner_thread.join()
    assert statuses == ["200 OK"] * 240
    assert [r.getMessage() for r in caplog.records] == []
    assert get_watchdog().in_flight() == 0


def test_threads_see_the_request_deadline_only_when_handed_it() -> None:
    found: dict[str, float | None] = {}

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        plain = threading.Thread(target=lambda: found.__setitem__("plain", remaining()))
        plain.start()
        plain.join()
        handed = threading.Thread(
            target=propagate(lambda: found.__setitem__("propagate", remaining()))
        )
        handed.start()
        handed.join()
        with DeadlineExecutor(1) as pool:
            found["executor"] = pool.submit(remaining).result()
        start_response("200 OK", [])
        return [b""]

    call(DeadlineMiddleware(app, LONG))
    assert found["plain"] is None  # a thread of its own: no request of its own
    for how in ("propagate", "executor"):
        left = found[how]
        assert left is not None and 4.5 < left <= 5.0, how


def test_a_scope_inside_a_request_keeps_the_earliest() -> None:
    found: dict[str, Any] = {}

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        with scope(1.0):
            found["shorter"] = remaining()
        with scope(60.0) as longer:
            found["longer"] = remaining()
            found["longer source"] = longer.source
        found["after"] = remaining()
        start_response("200 OK", [])
        return [b""]

    call(DeadlineMiddleware(app, LONG))
    assert 0.9 < found["shorter"] <= 1.0
    assert 4.9 < found["longer"] <= 5.0 and found["longer source"] == "default"
    assert 4.9 < found["after"] <= 5.0


def test_a_nested_request_expires_no_later_than_the_outer_one_and_then_restores_it() -> None:
    found: dict[str, Any] = {}

    def inner(environ: Any, start_response: Any) -> Iterable[bytes]:
        found["inner"] = remaining()
        start_response("200 OK", [])
        return [b"inner"]

    inner_app = DeadlineMiddleware(inner, Settings(deadline="enforce", deadline_seconds=30.0))

    def outer(environ: Any, start_response: Any) -> Iterable[bytes]:
        found["before"] = remaining()
        status, _, body = call(inner_app)
        found["after"] = remaining()
        start_response("200 OK", [])
        return [status.encode(), b" ", body]

    assert call(DeadlineMiddleware(outer, Settings(deadline="enforce", deadline_seconds=2.0)))[
        2
    ] == (b"200 OK inner")
    assert 1.9 < found["before"] <= 2.0
    assert found["inner"] <= found["before"]  # capped by the outer request, not 30 s
    assert 1.8 < found["after"] <= found["inner"]
    assert remaining() is None
    assert get_watchdog().in_flight() == 0


def test_a_nested_request_that_overruns_answers_504_to_the_outer_one() -> None:
    def slow(environ: Any, start_response: Any) -> Iterable[bytes]:
        busy(2.0)
        start_response("200 OK", [])
        return [b"never"]

    inner_app = DeadlineMiddleware(slow, SHORT)

    def outer(environ: Any, start_response: Any) -> Iterable[bytes]:
        status, _, _ = call(inner_app)
        start_response("200 OK", [])
        return [status.encode()]

    started = time.monotonic()
    assert call(DeadlineMiddleware(outer, LONG)) == ("200 OK", [], problem.STATUS.encode())
    assert time.monotonic() - started < 0.5
    assert get_watchdog().in_flight() == 0


def test_the_overrun_log_names_the_request(caplog: pytest.LogCaptureFixture) -> None:
    """The watchdog found the environ in the request's own frame."""

    def slow(environ: Any, start_response: Any) -> Iterable[bytes]:
        busy(0.25)
        start_response("200 OK", [])
        return [b"slow"]

    with caplog.at_level(logging.WARNING, logger="bastion.deadline"):
        call(DeadlineMiddleware(slow, Settings(deadline="observe", deadline_seconds=0.1)), "/slow")
        found: list[str] = []
        for _ in range(200):  # the watchdog logs from its own thread: wait for it
            found = [r.getMessage() for r in caplog.records if "GET /slow" in r.getMessage()]
            if found:
                break
            time.sleep(0.01)
    (message,) = found
    assert "GET /slow ran past its 0.100s budget (default)" in message
    assert "in slow" in message and "in busy" in message


def test_a_stream_the_watchdog_fired_for_between_chunks_stops_at_the_next_one() -> None:
    """The server, not the app, runs between two chunks, so the watchdog raises
    nothing there; the stream must stop by itself at the next chunk (an endless stream
    read by a slow server would otherwise never end)."""

    def endless(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        while True:
            yield b"."

    result = DeadlineMiddleware(endless, SHORT)(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()},
        lambda status, headers, exc_info=None: None,
    )
    started = time.monotonic()
    chunks = 0
    with pytest.raises(TimeoutError):
        for _ in result:
            chunks += 1
            time.sleep(0.02)  # the slow "server": the app is idle almost all the time
            assert time.monotonic() - started < 5.0
    result.close()  # type: ignore[attr-defined]
    assert chunks > 1  # it was cut after it started: aborted
    assert time.monotonic() - started < 1.5
    assert get_watchdog().in_flight() == 0


def test_a_stream_read_to_its_end_but_never_closed_leaves_nothing_running() -> None:
    """PEP 3333 servers close the body; one that does not must not leave the thread's
    registration running (every later request would look nested, and its deadline
    would be reported as an overrun)."""

    def stream(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one"
        yield b"two"

    result = DeadlineMiddleware(stream, SHORT)(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()},
        lambda status, headers, exc_info=None: None,
    )
    assert b"".join(result) == b"onetwo"  # and no close()
    assert get_watchdog().in_flight() == 0 and remaining() is None

    def slow(environ: Any, start_response: Any) -> Iterable[bytes]:
        busy(2.0)
        start_response("200 OK", [])
        return [b"never"]

    started = time.monotonic()
    assert call(DeadlineMiddleware(slow, SHORT))[0] == problem.STATUS
    assert time.monotonic() - started < 0.5  # the next request is still interruptible


# --- Flask: the server's start_response, untouched ---------------------------------------
def flask_app() -> Flask:
    app = Flask("deadline-registration")

    @app.get("/cpu")
    def cpu() -> str:
        busy(2.0)
        return "never"

    @app.get("/late-stream")
    def late_stream() -> Response:
        def chunks() -> Iterator[str]:
            busy(0.3)
            yield "too late"

        return Response(chunks(), mimetype="text/plain")

    return app


def test_flask_keeps_the_servers_start_response_and_other_apps_are_held() -> None:
    app = flask_app()
    assert DeadlineMiddleware(app.wsgi_app, SHORT).holds_status is False
    assert DeadlineMiddleware(lambda e, s: [b""], SHORT).holds_status is True
    assert (
        DeadlineMiddleware(lambda e, s: [b""], SHORT.replace(deadline="observe")).holds_status
        is False
    )


@pytest.mark.parametrize("path", ["/cpu", "/late-stream"])
def test_flask_overruns_are_504_problem_documents(path: str) -> None:
    app = flask_app()
    app.wsgi_app = DeadlineMiddleware(app.wsgi_app, SHORT)  # type: ignore[method-assign]
    response = app.test_client().get(path)
    assert response.status_code == 504
    assert response.content_type == "application/problem+json"
    assert response.data == problem.BODY


def swallowing_flask_app() -> Flask:
    app = Flask("swallowing")

    @app.get("/")
    def fallback() -> str:
        with contextlib.suppress(TimeoutError):
            busy(2.0)
        return "fallback"

    return app


def test_a_flask_answer_made_after_the_exception_is_replaced_by_the_504() -> None:
    app = swallowing_flask_app()
    app.wsgi_app = DeadlineMiddleware(app.wsgi_app, SHORT)  # type: ignore[method-assign]
    response = app.test_client().get("/")
    assert (response.status_code, response.data) == (504, problem.BODY)


def test_a_complete_flask_answer_goes_out_late_when_gunicorn_cannot_be_reached(
    outcomes: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """gunicorn (by SERVER_SOFTWARE) behind a wrapper that hides it, and no gunicorn
    frame on the stack: replacing the status would double the headers, so the app's
    complete answer goes out, counted ``late``."""
    server = GunicornLikeResponse()

    def opaque(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        return server.start_response(status, headers, *args)

    wrapped = DeadlineMiddleware(swallowing_flask_app().wsgi_app, SHORT)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "test",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        **GUNICORN,
    }
    result = wrapped(environ, opaque)
    body = b"".join(result)
    result.close()  # type: ignore[attr-defined]
    assert (server.status, body) == ("200 OK", b"fallback")
    assert [h for h in server.headers if h[0] == "Content-Length"] == [("Content-Length", "8")]
    assert [o["bastion.outcome"] for o in outcomes()] == ["late"]


# --- starting the 504 through a server that has the app's status --------------------------
class GunicornLikeResponse:
    """What start_504 relies on in gunicorn's Response: ``headers`` (appended to by
    each start_response), ``headers_sent``, and an AssertionError on a second call
    without exc_info."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.headers_sent = False

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        if exc_info is None and self.status is not None:
            raise AssertionError("Response headers already set!")
        if exc_info is not None and self.headers_sent:
            raise exc_info[1]
        self.status = status
        self.headers.extend(headers)
        return lambda data: None


GUNICORN = {"SERVER_SOFTWARE": "gunicorn/23.0.0"}


def test_start_504_when_the_app_had_not_started() -> None:
    response = GunicornLikeResponse()
    assert start_504(response.start_response, GUNICORN)
    assert (response.status, response.headers) == (problem.STATUS, list(problem.WSGI_HEADERS))


def test_start_504_replaces_gunicorns_headers_behind_a_wraps_wrapper() -> None:
    response = GunicornLikeResponse()

    @functools.wraps(response.start_response)
    def instrumented(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        return response.start_response(status, headers, *args)

    instrumented("200 OK", [("Content-Type", "text/plain")])
    assert start_504(instrumented, GUNICORN)
    assert (response.status, response.headers) == (problem.STATUS, list(problem.WSGI_HEADERS))


def test_start_504_refuses_what_it_cannot_replace_cleanly() -> None:
    response = GunicornLikeResponse()

    def opaque(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        return response.start_response(status, headers, *args)

    opaque("200 OK", [("Content-Type", "text/plain")])
    assert not start_504(opaque, GUNICORN)  # no gunicorn frame on this stack either
    assert response.headers == [("Content-Type", "text/plain")]  # untouched, not doubled
    sent = GunicornLikeResponse()
    sent.start_response("200 OK", [("Content-Type", "text/plain")])
    sent.headers_sent = True
    assert not start_504(sent.start_response, GUNICORN)


# --- a forked child (gunicorn's workers are forked) ------------------------------------------
def _serve_in_child(connection: Any) -> None:
    def slow(environ: Any, start_response: Any) -> Iterable[bytes]:
        busy(2.0)
        start_response("200 OK", [])
        return [b"never"]

    started = time.monotonic()
    status = call(DeadlineMiddleware(slow, SHORT))[0]
    connection.send((status, time.monotonic() - started))


def test_a_forked_child_enforces_deadlines_on_the_thread_that_forked() -> None:
    call(DeadlineMiddleware(lambda e, s: (s("200 OK", []), [b""])[1], LONG))  # registers
    parent, child = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve_in_child, args=(child,))
    process.start()
    try:
        assert parent.poll(10), "the child never answered"
        status, elapsed = parent.recv()
    finally:
        process.join(10)
    assert status == problem.STATUS
    assert elapsed < 0.6
