"""``DeadlineMiddleware``: a deadline for every WSGI request (Flask, Django, any WSGI app).

Per request it works out the budget (:mod:`.inbound`), makes it the current deadline
(so :func:`~middleware.deadline.remaining` works in the handler and the outbound
instrumentors cap their timeouts by it), and registers the request with the
process's :mod:`watchdog <.watchdog>`. At expiry, in ``observe`` and ``enforce``
alike, the watchdog logs the request's stack and adds a span event; in ``enforce``
it raises :class:`DeadlineExceeded` in the request's thread, and this middleware
makes sure the client gets a 504 ``application/problem+json``:

* the exception propagates out of the app: 504;
* the app turned it into a response of its own (Flask answers any unhandled
  exception with a 500): that response has not been sent yet, so it is closed and
  replaced by the 504 (``start_response`` again with ``exc_info``, as PEP 3333 allows
  before the headers are out);
* it lands while a streamed body is being produced: before the first chunk, still a
  504; after it, the response is aborted (the exception goes on to the server, which
  closes the connection rather than end a truncated body cleanly) and counted
  ``aborted``.

The registration lasts until the server closes the response, so a streamed body is
under the deadline too. Parameters: ``app``, the WSGI app; ``settings`` (default
:func:`~middleware.settings.get_settings`): ``BASTION_DEADLINE`` (off/observe/enforce),
``BASTION_DEADLINE_SECONDS``, ``BASTION_DEADLINE_MAX_SECONDS`` and
``BASTION_TRUSTED_PROXIES``; ``routes``: per-path :class:`~middleware.routes.Route`
overrides (``deadline_seconds``, ``exempt_deadline``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from middleware.deadline import problem
from middleware.deadline._context import Deadline, DeadlineExceeded, _current
from middleware.deadline.inbound import BudgetPolicy
from middleware.deadline.report import (
    add_span_event,
    format_stack,
    log_expiry,
    quick_stack_text,
    record_outcome,
    request_span,
)
from middleware.deadline.watchdog import InjectedDeadlineExceeded, WatchedRequest, get_watchdog
from middleware.routes import Route, RouteTable
from middleware.settings import Settings, get_settings

__all__ = ["DeadlineMiddleware"]

logger = logging.getLogger("bastion.deadline")

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_monotonic = time.monotonic
_get_ident = threading.get_ident
_copy_context = contextvars.copy_context
_new_deadline = tuple.__new__


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
        self._active = self.mode.active
        self._enforce = self.mode.enforcing
        self._watchdog = get_watchdog()
        if self._enforce:
            _hand_back_from_flask(app)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._active:
            return self.app(environ, start_response)
        found = self.policy.for_wsgi(environ)
        if found is None:  # exempt route
            return self.app(environ, start_response)
        budget, source = found
        deadline: Deadline = _new_deadline(Deadline, (_monotonic() + budget, budget, source))
        token = _current.set(deadline)
        request = WatchedRequest(
            deadline.expires_at,
            _get_ident(),
            self._enforce,
            self,
            (environ, _copy_context(), deadline),
        )
        response = _HeldResponse(start_response, request, environ)
        watchdog = self._watchdog
        watchdog.watch(request)
        result: Iterable[bytes] | None = None
        body: _Body | None = None
        try:
            result = self.app(environ, response)
            request.in_app = False
            if not request.injected and type(result) is not list and type(result) is not tuple:
                body = _Body(result, request, self, response, token, environ)
                return body
        except DeadlineExceeded:
            request.in_app = False
            body = None
            if not request.injected:
                raise  # the app's own check(): its error to handle
        finally:
            if body is None:
                # An exception injected a moment ago may still land on any bytecode
                # until finish() has cleared it: catch it there and finish again.
                try:
                    watchdog.finish(request)
                except DeadlineExceeded:
                    watchdog.finish(request)
                _reset(token)
        if request.injected or (self._enforce and _monotonic() >= request.expires_at):
            # Flask made a 500 of the exception, or the answer is simply late: in
            # enforce mode no response starts after the deadline (as with Go's
            # TimeoutHandler and Envoy), which also settles any race with the watchdog.
            if response.answered:
                record_outcome(self.policy.route_label(environ["PATH_INFO"]), self.mode, "504")
                return result  # type: ignore[return-value]
            _close(result)
            return self._answer_504(response, environ)
        response.commit()
        return result  # type: ignore[return-value]  # a list or tuple from the app

    def _answer_504(self, response: _HeldResponse, environ: Environ) -> Iterable[bytes]:
        route = self.policy.route_label(str(environ.get("PATH_INFO", "")))
        if not response.replace():
            # The app wrote through write(): its headers are out. Abort.
            record_outcome(route, self.mode, "aborted")
            raise DeadlineExceeded("request deadline exceeded after the response started")
        record_outcome(route, self.mode, "504")
        return [problem.BODY]

    # --- called by the watchdog thread at expiry ------------------------------------
    def annotate(self, request: WatchedRequest, info: Any) -> None:
        """The span event, before any exception is raised in the request."""
        if info is None or request.stack is None:
            return
        environ, context, deadline = info
        add_span_event(
            request_span(context, environ),
            mode=self.mode,
            budget=deadline.budget,
            source=deadline.source,
            stack_text=quick_stack_text(request.stack),
        )

    def report(self, request: WatchedRequest, info: Any) -> None:
        """The log record with the full stack."""
        if info is None:
            return
        environ, _, deadline = info
        path = str(environ.get("PATH_INFO", ""))
        log_expiry(
            mode=self.mode,
            method=str(environ.get("REQUEST_METHOD", "")),
            path=path,
            route=self.policy.route_label(path),
            budget=deadline.budget,
            source=deadline.source,
            stack_text=format_stack(request.stack) if request.stack is not None else "",
            where=f"thread {_thread_name(request.thread_id)}",
        )


def _hand_back_from_flask(app: object) -> None:
    """If ``app`` is a Flask app's ``wsgi_app`` (what :func:`~middleware.protect`
    wraps), give Flask a handler for the watchdog's exception that answers the 504
    problem document itself. Flask then skips its 500 path (traceback log,
    ``got_request_exception``), and instrumentation inside Flask's request context
    (the OpenTelemetry Flask span) records the 504 the client really gets. Any other
    WSGI app is left alone: the middleware replaces its answer instead."""
    register = getattr(getattr(app, "__self__", None), "register_error_handler", None)
    if callable(register):
        register(InjectedDeadlineExceeded, _answer_in_flask)


def _answer_in_flask(error: BaseException) -> Any:
    from flask import Response, request

    request.environ[_ANSWERED] = True
    return Response(problem.BODY, 504, headers=list(problem.WSGI_HEADERS))


def _thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return str(ident)


#: Set in the environ when Flask itself answered the 504 (see _answer_in_flask).
_ANSWERED = "bastion.deadline.answered"


class _HeldResponse:
    """The ``start_response`` the app gets.

    In time, it calls the server's at once: instrumentation around the app (the
    OpenTelemetry Flask wrapper reads the status while Flask's request context is
    still up) sees the real status. Once the deadline has passed (enforce mode), it
    holds the app's status and headers back, since the 504 will replace them.
    """

    __slots__ = (
        "_environ",
        "_held",
        "_request",
        "_start_response",
        "_write",
        "answered",
        "committed",
        "sent",
    )

    def __init__(
        self, start_response: StartResponse, request: WatchedRequest, environ: Environ
    ) -> None:
        self._start_response = start_response
        self._request = request
        self._environ = environ
        self.answered = False
        self._held: tuple[str, list[tuple[str, str]]] | None = None
        self._write: Callable[[bytes], object] | None = None
        self.committed = False
        self.sent = False  # a body chunk went to the server: the headers are out

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        request = self._request
        if not self.committed and (
            request.injected or (request.enforce and _monotonic() >= request.expires_at)
        ):
            if _ANSWERED not in self._environ:
                self._held = (status, headers)
                return self.write
            self.answered = True  # Flask sends the problem document itself
        self.committed = True
        self._write = self._start_response(status, headers, exc_info)
        return self._write

    def write(self, data: bytes) -> object:
        """The legacy ``write()``: the headers go out now."""
        self.commit()
        self.sent = True
        assert self._write is not None, "write() called before start_response()"
        return self._write(data)

    def commit(self) -> None:
        if not self.committed and self._held is not None:
            self.committed = True
            self._write = self._start_response(*self._held)

    def replace(self) -> bool:
        """Send the 504's status and headers instead; False if it is too late."""
        if self.sent:
            return False
        headers = list(problem.WSGI_HEADERS)
        if not self.committed:
            self.committed = True
            self._write = self._start_response(problem.STATUS, headers)
            return True
        # The server has the app's status but has sent nothing: PEP 3333 lets
        # start_response replace it when given exc_info. gunicorn appends the new
        # headers to the old ones instead, so empty its list first.
        server_response = getattr(self._start_response, "__self__", None)
        held_headers = getattr(server_response, "headers", None)
        if getattr(server_response, "headers_sent", True) is False and isinstance(
            held_headers, list
        ):
            held_headers.clear()
        try:
            error = DeadlineExceeded("request deadline exceeded")
            self._write = self._start_response(
                problem.STATUS, headers, (DeadlineExceeded, error, None)
            )
        except Exception:
            return False
        return True


class _Body:
    """The app's response body, iterated under the deadline and closed with it."""

    __slots__ = ("_environ", "_iterable", "_owner", "_request", "_response", "_token")

    def __init__(
        self,
        iterable: Iterable[bytes],
        request: WatchedRequest,
        owner: DeadlineMiddleware,
        response: _HeldResponse,
        token: contextvars.Token[Deadline | None],
        environ: Environ,
    ) -> None:
        self._iterable = iterable
        self._request = request
        self._owner = owner
        self._response = response
        self._token = token
        self._environ = environ

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        request = self._request
        response = self._response
        try:
            iterator = iter(self._iterable)
            while True:
                request.in_app = True
                try:
                    chunk = next(iterator)
                except StopIteration:
                    request.in_app = False
                    if not response.sent:
                        self._start(request, response)
                    return
                request.in_app = False
                if not response.sent:
                    self._start(request, response)
                yield chunk
        except DeadlineExceeded as error:
            request.in_app = False
            if not request.injected and not isinstance(error, _LateStart):
                raise
            owner = self._owner
            if response.sent:
                route = owner.policy.route_label(str(self._environ.get("PATH_INFO", "")))
                record_outcome(route, owner.mode, "aborted")
                raise  # the server closes the connection: no clean end to a cut body
            # Nothing sent yet, so the headers are not out: still a clean 504.
            self._finish()
            _close(self._iterable)
            self._iterable = ()
            yield from owner._answer_504(response, self._environ)

    @staticmethod
    def _start(request: WatchedRequest, response: _HeldResponse) -> None:
        """Just before the first chunk goes to the server (with the headers)."""
        if request.enforce and _monotonic() >= request.expires_at:
            raise _LateStart  # the headers would go out after the deadline
        response.commit()
        response.sent = True

    def close(self) -> None:
        try:
            _close(self._iterable)
        except DeadlineExceeded:
            if not self._request.injected:
                raise  # landed in the app's own close code, after the body was sent
        finally:
            if not self._request.done:
                self._finish()

    def _finish(self) -> None:
        watchdog = self._owner._watchdog
        try:
            watchdog.finish(self._request)
        except DeadlineExceeded:
            watchdog.finish(self._request)
        _reset(self._token)


class _LateStart(DeadlineExceeded):
    """A streamed body's first chunk came after the deadline."""


def _reset(token: contextvars.Token[Deadline | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:  # closed from another thread or context than it started in
        _current.set(None)


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception("closing the app's response after its deadline failed")
