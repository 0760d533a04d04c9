"""``DeadlineMiddleware``: a deadline for every WSGI request (Flask, Django, any WSGI app).

Per request it works out the budget (:mod:`.inbound`) and writes the expiry into the
thread's registration with the process's :mod:`watchdog <.watchdog>`, where
:func:`~middleware.deadline.remaining` reads it (so the outbound instrumentors cap
their timeouts by it). At expiry, in ``observe`` and ``enforce`` alike, the watchdog
logs the request's stack and adds a span event. In ``enforce`` it raises
:class:`DeadlineExceeded` in the request's thread, and the client gets a 504
``application/problem+json`` instead of whatever the app was doing:

* the exception propagates out of the app: 504;
* a Flask app (wrapped through ``app.wsgi_app``, as :func:`~middleware.protect`
  does) answers it through an error handler registered here, so Flask skips its 500
  path and its request span records the 504;
* any other app made a response of its own (a 500), or finished just too late: its
  status and headers were held back, so the 504 replaces them;
* a streamed body (:mod:`._stream`): before its first chunk, still a 504; after it,
  the response is aborted (the exception goes on to the server, which closes the
  connection rather than end a cut body cleanly), counted ``aborted``;
* the exception escaped a Flask app after it called the server's ``start_response``:
  the 504 replaces the app's status where the server allows it cleanly
  (:mod:`._restart`).

The registration lasts until the body is exhausted or closed, so a streamed body is
under the deadline too.

Cost. A thread runs one request at a time, so each thread has one registration
(:class:`~._registration.ThreadRequest`), made on its first request and reused: a request
writes its expiry and who it belongs to, and clears the expiry when it ends; no lock,
no allocation, no context switch. Everything the watchdog needs to *report* an
overrun (the environ, for the method and path) it reads from the request's own frame,
and only when a deadline has passed. A Flask app gets the server's ``start_response``
untouched (it answers the 504 itself); only other apps in enforce mode get one that
holds the status back. (``python -m benchmarks deadline`` measures it.)

Parameters: ``app``, the WSGI app; ``settings`` (default
:func:`~middleware.settings.get_settings`): ``BASTION_DEADLINE`` (off/observe/enforce),
``BASTION_DEADLINE_SECONDS``, ``BASTION_DEADLINE_MAX_SECONDS`` and
``BASTION_TRUSTED_PROXIES``; ``routes``: per-path :class:`~middleware.routes.Route`
overrides (``deadline_seconds``, ``exempt_deadline``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import Any, cast

from werkzeug.wsgi import ClosingIterator

from middleware.deadline import problem
from middleware.deadline._context import DeadlineExceeded, _thread
from middleware.deadline._registration import ThreadRequest
from middleware.deadline._restart import start_504
from middleware.deadline._stream import Stream, close_quietly
from middleware.deadline._werkzeug import ANSWERED as _ANSWERED
from middleware.deadline._werkzeug import buffered as _buffered
from middleware.deadline._werkzeug import hand_back_from_flask as _hand_back_from_flask
from middleware.deadline.inbound import BudgetPolicy
from middleware.deadline.report import (
    add_span_event,
    annotate_current_span,
    format_stack,
    log_expiry,
    quick_stack_text,
    record_outcome,
    request_span,
)
from middleware.deadline.watchdog import TICK, Expiry, RequestInfo, WatchedRequest, get_watchdog
from middleware.routes import Route, RouteTable
from middleware.settings import Settings, get_settings

__all__ = ["DeadlineMiddleware"]

logger = logging.getLogger("bastion.deadline")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_monotonic = time.monotonic


class DeadlineMiddleware:
    """Wrap a WSGI app so every request runs under a deadline (see the module doc)."""

    def __init__(
        self,
        app: WSGIApp,
        settings: Settings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        settings = settings if settings is not None else get_settings()
        self.app = app
        self.mode = settings.deadline
        self.policy = BudgetPolicy(settings, routes)
        self.enforce = self.mode.enforcing
        self._active = self.mode.active
        self._has_routes = self.policy.has_routes
        self._default = RequestInfo(self, self.policy.default_budget, "default")
        self._default_budget = self.policy.default_budget
        # Under a second, a deadline may come before the watchdog next looks.
        self._default_is_short = self.policy.default_budget < TICK
        self._watchdog = get_watchdog()
        # Flask answers the watchdog's exception itself, so it gets the server's
        # start_response untouched; any other app's status is held back in enforce
        # mode until its body starts, so that a late answer can still become the 504.
        self.holds_status = self.enforce and not _hand_back_from_flask(app)
        self._serve = self._serve_holding if self.holds_status else self._serve_passing
        self._long_way = (
            not self._active or self._has_routes or self._default_is_short or self.holds_status
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if (
            self._long_way
            or "HTTP_X_BASTION_TIMEOUT_MS" in environ
            or "HTTP_GRPC_TIMEOUT" in environ
            or "HTTP_X_ENVOY_EXPECTED_RQ_TIMEOUT_MS" in environ
        ):
            return self._serve_long_way(environ, start_response)
        request: ThreadRequest | None = _thread.request  # type: ignore[assignment]
        if request is None or request.expires_at is not None:
            return self._serve_long_way(environ, start_response)
        # The short way, every ordinary request's: the thread's idle registration, the
        # default budget, the server's start_response. It is _begin() and
        # _serve_passing() written out, since a call costs as much as a check here.
        request.info = self._default
        expires_at = request.expires_at = _monotonic() + self._default_budget
        try:
            result = self.app(environ, start_response)
        except DeadlineExceeded as error:
            return self._after_raise(request, expires_at, error, environ, start_response)
        try:
            if type(result) is ClosingIterator:  # a Flask response: _buffered(), inlined
                try:
                    streamed = type(result._callbacks[-1].__self__.response) is not list  # type: ignore[attr-defined]
                except (AttributeError, IndexError):
                    streamed = True
            else:
                streamed = not _buffered(result)
            if streamed:
                return Stream(self, request, expires_at, result, environ, start_response)
            request.expires_at = None
            if request.fired_at is expires_at:
                return self._finish(request, expires_at, result, environ, start_response)
            return result
        except DeadlineExceeded:
            return self._finish(request, expires_at, result, environ, start_response, True)

    def _serve_long_way(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """Everything the short way leaves out: off mode, per-route settings, inbound
        deadline headers, a default budget under a second, held statuses, and a
        thread's first request or one nested in another."""
        if not self._active:
            return self.app(environ, start_response)
        if self._has_routes or self._default_is_short or self._inbound_headers(environ):
            found = self.policy.for_wsgi(environ)
            if found is None:  # exempt route
                return self.app(environ, start_response)
            info = RequestInfo(self, *found)
        else:
            info = self._default
        request: ThreadRequest | None = _thread.request  # type: ignore[assignment]
        if request is None or request.expires_at is not None:
            return self._serve_registering(info, environ, start_response)
        return self._serve(request, self._begin(request, info), environ, start_response)

    @staticmethod
    def _inbound_headers(environ: Environ) -> bool:
        return (
            "HTTP_X_BASTION_TIMEOUT_MS" in environ
            or "HTTP_GRPC_TIMEOUT" in environ
            or "HTTP_X_ENVOY_EXPECTED_RQ_TIMEOUT_MS" in environ
        )

    def _begin(self, request: ThreadRequest, info: RequestInfo) -> float:
        """Start the request's deadline: what it is, then when it expires (the
        watchdog reads them in the opposite order)."""
        request.info = info
        expires_at = request.expires_at = _monotonic() + info.budget
        self._watchdog.notice(expires_at)
        return expires_at

    def _serve_passing(
        self,
        request: ThreadRequest,
        expires_at: float,
        environ: Environ,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """Run the app under the started deadline, with the server's start_response."""
        try:
            result = self.app(environ, start_response)
        except DeadlineExceeded as error:
            return self._after_raise(request, expires_at, error, environ, start_response)
        # From here to the end of the registration the watchdog's exception may still
        # land on any call: it is caught, and the request finishes as an overrun.
        try:
            if not _buffered(result):  # iterating it runs app code
                return Stream(self, request, expires_at, result, environ, start_response)
            request.expires_at = None
            if request.fired_at is expires_at:
                return self._finish(request, expires_at, result, environ, start_response)
            return result
        except DeadlineExceeded:
            return self._finish(request, expires_at, result, environ, start_response, True)

    def _serve_holding(
        self,
        request: ThreadRequest,
        expires_at: float,
        environ: Environ,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        """The same, for an app whose status is held back (enforce mode, not Flask):
        a buffered answer that comes too late is replaced by the 504."""
        result = self._serve_passing(
            request, expires_at, environ, request.hold_status(start_response)
        )
        if not request.committed and type(result) is not Stream:
            if _monotonic() >= expires_at:
                close_quietly(result)
                return self.answer_504(request, environ, start_response)
            request.commit_status()
            request.release()
        return result

    def _serve_registering(
        self, info: RequestInfo, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        """The thread's first request, or one inside a request already running in
        this thread (a WSGI app calling another): register, then serve."""
        outer: ThreadRequest | None = _thread.request  # type: ignore[assignment]
        request = ThreadRequest()
        self._watchdog.watch(request, nested=outer is not None)
        _thread.request = request
        if outer is None:  # the thread's registration from now on
            return self._serve(request, self._begin(request, info), environ, start_response)
        # Nested: a second registration for as long as this request runs, expiring
        # no later than the outer one.
        left = cast(float, outer.expires_at) - _monotonic()
        if left < info.budget:
            info = RequestInfo(self, max(left, 0.0), outer.source)
        restore = functools.partial(self._unregister, request, outer)
        try:
            result = self._serve(request, self._begin(request, info), environ, start_response)
        except BaseException:
            restore()
            raise
        if type(result) is Stream:
            result.on_close = restore
        else:
            restore()
        return result

    def _unregister(self, request: ThreadRequest, outer: ThreadRequest) -> None:
        _thread.request = outer
        self._watchdog.unwatch(request)

    # --- ending a request ------------------------------------------------------------
    def end(self, request: ThreadRequest, expires_at: float) -> bool:
        """End the registration; True if the watchdog raised its exception in this
        request. Once it returns, no exception of this request can land any more."""
        request.expires_at = None
        request.stream = None
        if request.fired_at is not expires_at:
            return False
        try:
            return self._watchdog.settle(request)
        except DeadlineExceeded:  # it landed on the way in: it was raised
            self._watchdog.settle(request)
            return True

    def _after_raise(
        self,
        request: ThreadRequest,
        expires_at: float,
        error: DeadlineExceeded,
        environ: Environ,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        try:
            injected = self.end(request, expires_at)
        except DeadlineExceeded:
            injected = self.end(request, expires_at) or True
        self.annotate_here(request, expires_at, environ)
        if not injected:
            request.release()
            raise error  # the app's own check(): its error to handle
        return self.answer_504(request, environ, start_response)

    def _finish(
        self,
        request: ThreadRequest,
        expires_at: float,
        result: Iterable[bytes],
        environ: Environ,
        start_response: StartResponse,
        landed: bool = False,
    ) -> Iterable[bytes]:
        """A buffered answer, from a request the watchdog fired for (or whose status
        was held back): 504 or the app's answer."""
        try:
            injected = self.end(request, expires_at) or landed
        except DeadlineExceeded:
            injected = self.end(request, expires_at) or True
        self.annotate_here(request, expires_at, environ)
        late = injected or (self.holds_status and _monotonic() >= expires_at)
        if self.enforce and late:
            route = self.route(environ)
            if _ANSWERED in environ:  # Flask sent the problem document itself
                request.commit_status()
                record_outcome(route, self.mode, "504")
            elif self.holds_status or start_504(start_response, environ):
                close_quietly(result)
                result = self.answer_504(request, environ, start_response, started=True)
            else:
                # Behind a wrapper that hides gunicorn, the app's status could not be
                # replaced cleanly: its complete answer goes out, late.
                record_outcome(route, self.mode, "late")
        request.commit_status()
        request.release()
        return result

    def answer_504(
        self,
        request: ThreadRequest,
        environ: Environ,
        start_response: StartResponse,
        *,
        started: bool = False,
    ) -> list[bytes]:
        """Start the 504 (unless already ``started``) and return its body; if the
        app's answer is already out, abort the response instead."""
        if self.holds_status:
            started = request.start_504()
        elif not started:
            started = start_504(start_response, environ)
        request.release()
        route = self.route(environ)
        if not started:
            record_outcome(route, self.mode, "aborted")
            raise DeadlineExceeded("request deadline exceeded after the response started")
        record_outcome(route, self.mode, "504")
        return [problem.BODY]

    def route(self, environ: Environ) -> str:
        return self.policy.route_label(str(environ.get("PATH_INFO", "")))

    def annotate_here(self, request: ThreadRequest, expires_at: float, environ: Environ) -> None:
        """In the request's thread, once it has ended: the span event on the span
        current here (an outer OpenTelemetry middleware's), which the watchdog could
        not reach from its thread."""
        expiry = request.expiry
        if request.fired_at is expires_at and expiry is not None:
            annotate_current_span(
                environ,
                mode=self.mode,
                budget=expiry.info.budget,
                source=expiry.info.source,
                stack_text=quick_stack_text(expiry.stack),
            )

    # --- called by the watchdog thread at expiry ------------------------------------
    def inspect(self, request: WatchedRequest, frame: FrameType | None) -> Any:
        """The request's environ: its stream's, or the one in the frame serving it."""
        stream = getattr(request, "stream", None)
        if stream is not None:
            return stream.environ
        while frame is not None:
            if frame.f_code in _SERVE_CODES:
                local = frame.f_locals
                if local.get("request") is request:
                    return local.get("environ")
            frame = frame.f_back
        return None

    def annotate(self, expiry: Expiry) -> None:
        """The span event on the Flask request span (kept in the environ), before
        any exception is raised in the request."""
        environ = expiry.details
        if environ is None:
            return
        add_span_event(
            request_span(None, environ),
            mode=self.mode,
            budget=expiry.info.budget,
            source=expiry.info.source,
            stack_text=quick_stack_text(expiry.stack),
        )

    def report(self, expiry: Expiry) -> None:
        """The log record with the full stack."""
        environ = expiry.details if isinstance(expiry.details, dict) else {}
        path = str(environ.get("PATH_INFO", ""))
        log_expiry(
            mode=self.mode,
            method=str(environ.get("REQUEST_METHOD", "")),
            path=path,
            route=self.policy.route_label(path),
            budget=expiry.info.budget,
            source=expiry.info.source,
            stack_text=format_stack(expiry.stack),
            where=f"thread {_thread_name(expiry.request.thread_id)}",
        )


#: The frames a request's environ is found in (both have ``request`` and ``environ``).
_SERVE_CODES = (DeadlineMiddleware.__call__.__code__, DeadlineMiddleware._serve_passing.__code__)


def _thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return str(ident)
