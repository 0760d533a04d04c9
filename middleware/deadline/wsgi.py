"""``DeadlineMiddleware``: a deadline for every WSGI request (Flask, Django, any WSGI app).

Per request it works out the budget (:mod:`.inbound`), makes it the current deadline
(so :func:`~middleware.deadline.remaining` works in the handler and the outbound
instrumentors cap their timeouts by it), and registers the request with the
process's :mod:`watchdog <.watchdog>`. At expiry, in ``observe`` and ``enforce``
alike, the watchdog logs the request's stack and adds a span event. In ``enforce``
it raises :class:`DeadlineExceeded` in the request's thread, and no response starts
after the deadline (as with Go's ``TimeoutHandler`` and Envoy): the client gets a
504 ``application/problem+json`` instead, whichever way the app reacted:

* the exception propagates out of the app: 504;
* a Flask app (wrapped through ``app.wsgi_app``, as :func:`~middleware.protect`
  does) answers it through an error handler registered here, so Flask skips its 500
  path and its request span records the 504;
* any other app made a response of its own (a 500), or finished just too late: its
  status and headers were held back, so the 504 replaces them;
* a streamed body: before its first chunk, still a 504; after it, the response is
  aborted (the exception goes on to the server, which closes the connection rather
  than end a cut body cleanly), counted ``aborted``.

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
from middleware.deadline._werkzeug import ANSWERED as _ANSWERED
from middleware.deadline._werkzeug import buffered as _buffered
from middleware.deadline._werkzeug import hand_back_from_flask as _hand_back_from_flask
from middleware.deadline.inbound import BudgetPolicy
from middleware.deadline.report import (
    add_span_event,
    format_stack,
    log_expiry,
    quick_stack_text,
    record_outcome,
    request_span,
)
from middleware.deadline.watchdog import Watchdog, WatchedRequest, get_watchdog
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
        self._default = self.policy.default_budget
        self._has_routes = self.policy.has_routes
        self._watchdog = get_watchdog()
        if self._enforce:
            _hand_back_from_flask(app)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._active:
            return self.app(environ, start_response)
        if (
            self._has_routes
            or "HTTP_X_BASTION_TIMEOUT_MS" in environ
            or "HTTP_GRPC_TIMEOUT" in environ
            or "HTTP_X_ENVOY_EXPECTED_RQ_TIMEOUT_MS" in environ
        ):
            found = self.policy.for_wsgi(environ)
            if found is None:  # exempt route
                return self.app(environ, start_response)
            budget, source = found
        else:
            budget, source = self._default, "default"
        deadline: Deadline = _new_deadline(Deadline, (_monotonic() + budget, budget, source))
        exchange = _Exchange(deadline, self, start_response, environ, _current.set(deadline))
        watchdog = self._watchdog
        watchdog.watch(exchange)
        result: Iterable[bytes] | None = None
        streaming = False
        try:
            # Only enforce mode may hold the status back; a bound method calls fastest.
            result = self.app(environ, exchange.__call__ if self._enforce else start_response)
            exchange.in_app = False
            if not exchange.injected and not _buffered(result):
                exchange.result = result
                exchange.iterator = None
                streaming = True
                return exchange  # iterated, then closed, by the server under the deadline
        except DeadlineExceeded:
            exchange.in_app = False
            streaming = False
            if not exchange.injected:
                raise  # the app's own check(): its error to handle
        finally:
            if not streaming:
                try:
                    exchange.end(watchdog)
                except DeadlineExceeded:  # landed on end()'s first bytecode
                    exchange.end(watchdog)
        if exchange.injected or (self._enforce and _monotonic() >= exchange.expires_at):
            if exchange.answered:  # by Flask, through _answer_in_flask
                record_outcome(self._route(environ), self.mode, "504")
                return result  # type: ignore[return-value]
            _close(result)
            return self._answer_504(exchange, environ)
        if self._enforce and not exchange.committed:
            exchange.commit()
        return result  # type: ignore[return-value]  # a list or tuple from the app

    def _answer_504(self, exchange: _Exchange, environ: Environ) -> list[bytes]:
        route = self._route(environ)
        if not exchange.replace():
            # The app wrote through write(): its headers are out. Abort.
            record_outcome(route, self.mode, "aborted")
            raise DeadlineExceeded("request deadline exceeded after the response started")
        record_outcome(route, self.mode, "504")
        return [problem.BODY]

    def _route(self, environ: Environ) -> str:
        return self.policy.route_label(str(environ.get("PATH_INFO", "")))

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


class _Exchange(WatchedRequest):
    """One request, as three things at once (one object, so one allocation):

    * its registration with the watchdog;
    * in enforce mode, the ``start_response`` the app gets (observe mode passes the
      server's straight through). For a response with a Content-Length, in time, it
      calls the server's at once: instrumentation around the app (the OpenTelemetry
      Flask wrapper reads the status while Flask's request context is still up) sees
      the real status. Once the deadline has passed, or for a stream (no length),
      it holds status and headers back until the first chunk, since a 504 may
      still have to replace them;
    * the body the server iterates and closes, under the deadline.
    """

    __slots__ = (
        "_start_response",
        "_token",
        "_write",
        "answered",
        "committed",
        "environ",
        "held",
        "iterator",
        "result",
        "sent",
    )
    _write: Callable[[bytes], object]
    result: Iterable[bytes]
    iterator: Iterator[bytes] | None

    def __init__(
        self,
        deadline: Deadline,
        owner: DeadlineMiddleware,
        start_response: StartResponse,
        environ: Environ,
        token: contextvars.Token[Deadline | None],
    ) -> None:
        # WatchedRequest's fields, set here rather than through super().__init__()
        # (this runs for every request).
        self.expires_at = deadline.expires_at
        self.thread_id = _get_ident()
        self.enforce = owner._enforce
        self.owner = owner
        self.info = (environ, _copy_context(), deadline)
        self.in_app = True
        self.done = False
        self.fired = False
        self.injected = False
        self._start_response = start_response
        self.environ = environ
        self._token = token
        self.committed = False
        self.sent = False  # a chunk went to the server: the headers are out
        self.answered = False
        self.held: tuple[str, list[tuple[str, str]]] | None = None
        # stack (set by the watchdog), result and iterator (set for a streamed body)
        # are left unset: every field costs, on every request.

    # --- start_response --------------------------------------------------------------
    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        if not self.committed:
            if self.injected or _monotonic() >= self.expires_at:
                if _ANSWERED not in self.environ:
                    self.held = (status, headers)
                    return self.write
                self.answered = True  # Flask sends the problem document itself
            else:
                for name, _ in headers:
                    if len(name) == 14 and name.lower() == "content-length":
                        break
                else:
                    # No length: a stream, whose first chunk may still come late.
                    # Hold its headers until then, since a second start_response
                    # cannot be trusted to replace them (gunicorn appends).
                    self.held = (status, headers)
                    return self.write
        self.committed = True
        self._write = self._start_response(status, headers, exc_info)
        return self.write  # to know when the headers went out

    def write(self, data: bytes) -> object:
        """The legacy ``write()``: the headers go out now."""
        self.commit()
        self.sent = True
        return self._write(data)

    def commit(self) -> None:
        if not self.committed and self.held is not None:
            self.committed = True
            self._write = self._start_response(*self.held)

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

    # --- the body ----------------------------------------------------------------------
    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            self.in_app = True
            if self.iterator is None:
                self.iterator = iter(self.result)
            chunk = next(self.iterator)
            self.in_app = False
            if not self.sent:
                self._first_chunk()
            return chunk
        except StopIteration:
            self.in_app = False
            if not self.sent:
                try:
                    self._first_chunk()
                except _LateStart as late:
                    return self._expired(late)
            raise
        except DeadlineExceeded as error:
            self.in_app = False
            return self._expired(error)

    def _first_chunk(self) -> None:
        """Just before the first chunk (and with it the headers) goes to the server."""
        if self.enforce and _monotonic() >= self.expires_at:
            raise _LateStart
        self.commit()
        self.sent = True

    def _expired(self, error: DeadlineExceeded) -> bytes:
        if not self.injected and not isinstance(error, _LateStart):
            raise error  # the app's own check(): its error
        owner: DeadlineMiddleware = self.owner  # type: ignore[assignment]
        if self.sent:
            record_outcome(owner._route(self.environ), owner.mode, "aborted")
            raise error  # the server closes the connection: no clean end to a cut body
        # Nothing sent yet, so the headers are not out: still a clean 504.
        self.end(owner._watchdog)
        _close(self.result)
        self.iterator = iter(())
        (body,) = owner._answer_504(self, self.environ)
        self.sent = True
        return body

    def close(self) -> None:
        try:
            _close(self.result)
        except DeadlineExceeded:
            if not self.injected:
                raise  # landed in the app's own close code, after the body was sent
        finally:
            self.result = ()  # the thread's next request replaces this object: until
            self.iterator = None  # then, hold on to nothing of this one
            if not self.done:
                try:
                    self.end(self.owner._watchdog)  # type: ignore[attr-defined]
                except DeadlineExceeded:
                    self.end(self.owner._watchdog)  # type: ignore[attr-defined]

    def end(self, watchdog: Watchdog) -> None:
        """Finish the registration and restore the context. An exception injected a
        moment ago may still land on any bytecode until finish() has cleared it:
        catch it there and finish again."""
        try:
            watchdog.finish(self)
        except DeadlineExceeded:
            watchdog.finish(self)
        try:
            _current.reset(self._token)
        except ValueError:  # closed from another thread or context than it started in
            _current.set(None)


class _LateStart(DeadlineExceeded):
    """A streamed body's first chunk came after the deadline."""


def _thread_name(ident: int) -> str:
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return str(ident)


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            logger.exception("closing the app's response after its deadline failed")
