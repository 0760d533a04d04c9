"""The WSGI deadline in-process: nothing of a request survives it, the watchdog's
exception lands only in application code and never outlives its request, reports go
through the reporter thread, nested requests, Flask's own answers, and forks.
(Real servers: test_deadline_safety.py and test_deadline_servers.py.)"""

from __future__ import annotations

import contextlib
import io
import logging
import multiprocessing
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from flask import Flask, Response

import bastion.middleware
from bastion.middleware.deadline import current, problem, remaining, scope
from bastion.middleware.deadline._context import running_here
from bastion.middleware.deadline.report import QUEUE_LIMIT, Reporter
from bastion.middleware.deadline.safepoints import AppCode, library_roots
from bastion.middleware.deadline.watchdog import (
    InjectedDeadlineExceeded,
    Registration,
    _set_async_exc,
    can_interrupt,
    get_watchdog,
)
from bastion.middleware.deadline.wsgi import DeadlineMiddleware
from bastion.settings import Mode, Settings
from tests.middleware.test_deadline_middleware import busy, call

LONG = Settings(deadline=Mode.ENFORCE, deadline_seconds=5.0)
SHORT = Settings(deadline=Mode.ENFORCE, deadline_seconds=0.1)


def assert_nothing_left() -> None:
    assert running_here() is None
    assert remaining() is None and current() is None
    assert get_watchdog().in_flight() == 0


def plain(environ: Any, start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


# --- nothing survives a request -----------------------------------------------------
@pytest.mark.parametrize(
    "app",
    [
        plain,
        lambda environ, start_response: 1 / 0,
        lambda environ, start_response: (start_response("200 OK", []), iter([b"a", b"b"]))[1],
    ],
    ids=["answers", "raises", "streams"],
)
def test_nothing_of_a_request_is_left_on_its_thread(app: Any) -> None:
    wrapped = DeadlineMiddleware.from_settings(app, LONG)
    for _ in range(3):
        with contextlib.suppress(ZeroDivisionError):
            call(wrapped)
        assert_nothing_left()


def test_a_stream_closed_early_or_exhausted_without_close_leaves_nothing() -> None:
    def stream(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield from (b"a", b"b", b"c")

    wrapped = DeadlineMiddleware.from_settings(stream, LONG)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()}
    body = wrapped(environ, lambda *a: None)
    assert next(iter(body)) == b"a"
    body.close()  # type: ignore[attr-defined]  # the client left
    assert_nothing_left()
    body = wrapped(dict(environ), lambda *a: None)
    assert list(body) == [b"a", b"b", b"c"]  # a server that never closes it
    assert_nothing_left()


def test_a_body_its_server_drops_unclosed_does_not_cap_the_threads_next_request() -> None:
    def stream(environ: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield from (b"a", b"b")

    short = DeadlineMiddleware.from_settings(
        stream, Settings(deadline=Mode.ENFORCE, deadline_seconds=0.05)
    )
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()}
    dropped = short(environ, lambda *a: None)
    assert next(iter(dropped)) == b"a"  # and never closed nor exhausted
    time.sleep(0.1)
    seen: list[float | None] = []

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        seen.append(remaining())
        return plain(environ, start_response)

    assert call(DeadlineMiddleware.from_settings(app, LONG))[0] == "200 OK"
    assert seen[0] is not None and seen[0] > 4.5
    assert_nothing_left()


def test_the_servers_refusal_of_a_status_ends_the_request() -> None:
    def refusing(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        raise ValueError("invalid header value")  # as gunicorn refuses '\x01'

    wrapped = DeadlineMiddleware.from_settings(plain, LONG)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.input": io.BytesIO()}
    with pytest.raises(ValueError):
        wrapped(environ, refusing)
    assert_nothing_left()


@pytest.mark.skipif(not can_interrupt(), reason="no asynchronous exceptions on this build")
def test_the_watchdogs_exception_landing_while_a_request_ends_is_absorbed() -> None:
    """The exception may land anywhere in Watchdog.end(): it is caught there, the
    steps are done again, and nothing is pending once it returns. Here the watchdog
    is caught in the act (``busy``) and raises while the request waits for it."""
    watchdog = get_watchdog()
    owner = DeadlineMiddleware.from_settings(plain, LONG)
    registration = Registration(owner, time.monotonic() + 5, 5, "t", {})
    watchdog.begin(registration)
    registration.busy = True
    request_thread = threading.get_ident()

    def act() -> None:
        time.sleep(0.05)
        _set_async_exc(request_thread, InjectedDeadlineExceeded)
        registration.injected = True
        time.sleep(0.05)
        registration.busy = False

    watchdog_like = threading.Thread(target=act)
    watchdog_like.start()
    assert watchdog.end(registration) is True
    watchdog_like.join()
    busy(0.02)  # Python keeps running here: nothing was left pending
    assert_nothing_left()


def test_a_nested_request_is_capped_by_the_outer_one_and_restores_it() -> None:
    seen: list[float | None] = []

    def inner(environ: Any, start_response: Any) -> Iterable[bytes]:
        seen.append(remaining())
        return plain(environ, start_response)

    inner_app = DeadlineMiddleware.from_settings(
        inner, Settings(deadline=Mode.ENFORCE, deadline_seconds=60.0)
    )

    def outer(environ: Any, start_response: Any) -> Iterable[bytes]:
        seen.append(remaining())
        call(inner_app)
        seen.append(remaining())
        return plain(environ, start_response)

    assert call(DeadlineMiddleware.from_settings(outer, LONG))[0] == "200 OK"
    assert all(left is not None and 4.5 < left <= 5.0 for left in seen), seen
    assert_nothing_left()


def test_a_scope_inside_a_request_keeps_the_earliest() -> None:
    seen: list[float | None] = []

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        with scope(1.0):
            seen.append(remaining())
        with scope(60.0):
            seen.append(remaining())
        return plain(environ, start_response)

    call(DeadlineMiddleware.from_settings(app, LONG))
    assert seen[0] is not None and 0.9 < seen[0] <= 1.0
    assert seen[1] is not None and 4.5 < seen[1] <= 5.0


# --- safe points --------------------------------------------------------------------
def test_application_code_is_neither_library_nor_bastion(tmp_path: Path) -> None:
    code = AppCode()
    assert not code.contains(logging.__file__)
    assert not code.contains(pytest.__file__)
    assert not code.contains(str(bastion.middleware.__file__))
    assert not code.contains("<frozen importlib._bootstrap>")
    assert code.contains(__file__)
    assert code.contains(str(tmp_path / "service.py"))
    assert library_roots()


def test_an_installed_app_package_can_be_named_as_application_code() -> None:
    assert not AppCode().contains(str(flask.__file__))
    assert AppCode(["flask"]).contains(str(flask.__file__))
    with pytest.raises(ValueError, match="BASTION_DEADLINE_APP_PACKAGES"):
        AppCode(["no_such_package_anywhere"])


@pytest.mark.skipif(not can_interrupt(), reason="no asynchronous exceptions on this build")
def test_the_watchdog_waits_for_library_code_to_return_to_the_app() -> None:
    """textwrap (standard library, pure Python) runs well past the deadline: the
    exception is raised only once control is back in the app's own loop."""
    events: list[str] = []
    text = "word " * 400_000

    def app(environ: Any, start_response: Any) -> Iterable[bytes]:
        started = time.monotonic()
        textwrap.wrap(text, 30)
        events.append(f"library returned after {time.monotonic() - started:.2f}s")
        try:
            busy(2.0)
        except InjectedDeadlineExceeded:
            events.append("interrupted in the app")
            raise
        return plain(environ, start_response)

    status, _, body = call(DeadlineMiddleware.from_settings(app, SHORT))
    assert status == problem.STATUS and body == problem.BODY
    assert events[0].startswith("library returned") and events[1] == "interrupted in the app"
    assert float(events[0].split()[-1][:-1]) > 0.1  # it did run past the deadline


def test_an_answer_made_after_the_deadline_is_replaced() -> None:
    def late(environ: Any, start_response: Any) -> Iterable[bytes]:
        time.sleep(0.2)  # one blocking call: nothing can interrupt it
        return plain(environ, start_response)

    assert call(DeadlineMiddleware.from_settings(late, SHORT))[0] == problem.STATUS
    observe = Settings(deadline=Mode.OBSERVE, deadline_seconds=0.1)
    assert call(DeadlineMiddleware.from_settings(late, observe))[0] == "200 OK"


# --- reports ------------------------------------------------------------------------
def test_a_full_report_queue_drops_and_counts_and_never_blocks() -> None:
    reporter = Reporter()
    release = threading.Event()
    reporter.submit(lambda: release.wait(10))
    started = time.monotonic()
    for _ in range(QUEUE_LIMIT + 5):
        reporter.submit(lambda: None)
    assert time.monotonic() - started < 1.0
    assert reporter._dropped >= 5
    release.set()
    assert reporter.flush()


@pytest.mark.skipif(not can_interrupt(), reason="no asynchronous exceptions on this build")
def test_a_stuck_log_handler_does_not_stop_the_watchdog() -> None:
    """A handler whose lock is held forever (a thread hit at the wrong moment, say):
    the reporter blocks on it, the watchdog goes on interrupting overruns."""
    handler = logging.Handler()
    handler.emit = lambda record: None  # type: ignore[method-assign]
    logger = logging.getLogger("bastion.deadline")
    logger.addHandler(handler)
    handler.acquire()
    try:

        def cpu(environ: Any, start_response: Any) -> Iterable[bytes]:
            busy(3.0)
            return plain(environ, start_response)

        started = time.monotonic()
        statuses = [call(DeadlineMiddleware.from_settings(cpu, SHORT))[0] for _ in range(3)]
        assert statuses == [problem.STATUS] * 3
        assert time.monotonic() - started < 3.0
    finally:
        handler.release()
        logger.removeHandler(handler)


def test_the_overrun_log_names_the_request_and_its_stack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def cpu(environ: Any, start_response: Any) -> Iterable[bytes]:
        busy(1.0)
        return plain(environ, start_response)

    with caplog.at_level(logging.WARNING, logger="bastion.deadline"):
        call(DeadlineMiddleware.from_settings(cpu, SHORT), "/reports/7")
        from bastion.middleware.deadline.report import get_reporter

        assert get_reporter().flush()
    (record,) = [r for r in caplog.records if "GET /reports/7" in r.getMessage()]
    message = record.getMessage()
    assert "GET /reports/7" in message
    assert "in cpu" in message  # the stack the watchdog took while the request ran


# --- Flask ------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["view", "before", "after", "teardown"])
def test_flask_answers_a_deadline_anywhere_without_a_500_log(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask(__name__)

    @app.get("/")
    def view() -> str:
        if where == "view":
            busy(2.0)
        return "ok"

    @app.before_request
    def before() -> None:
        if where == "before":
            busy(2.0)

    @app.after_request
    def after(response: Response) -> Response:
        if where == "after":
            busy(2.0)
        return response

    @app.teardown_request
    def teardown(error: BaseException | None) -> None:
        if where == "teardown":
            busy(2.0)

    app.wsgi_app = DeadlineMiddleware.from_settings(app.wsgi_app, SHORT)  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR):
        status, headers, body = call(app)
    assert status == problem.STATUS and body == problem.BODY
    assert ("Content-Type", "application/problem+json") in headers
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.records


# --- forks ------------------------------------------------------------------------------
def _child(queue: Any) -> None:
    wrapped = DeadlineMiddleware.from_settings(
        lambda environ, start_response: (busy(2.0), plain(environ, start_response))[1], SHORT
    )
    queue.put(call(wrapped)[0])


def test_a_forked_child_enforces_deadlines_with_a_watchdog_of_its_own() -> None:
    call(DeadlineMiddleware.from_settings(plain, LONG))  # the parent's watchdog is running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue,))
    process.start()
    try:
        assert queue.get(timeout=10) == problem.STATUS
    finally:
        process.join(10)
