"""``DeadlineMiddleware``: a deadline for every WSGI request (Flask, Django, any WSGI app).

Per request it works out the budget (:mod:`.inbound`: the default, a per-route
override, or a shorter one the caller announced) and registers the request with the
process's :mod:`watchdog <.watchdog>`, where :func:`~bastion.middleware.deadline.remaining`
reads it, so the outbound guards cap every call by it.

What the client gets, in enforce mode:

* the app answers in time: its answer, untouched;
* the app answers after the deadline (a blocking call returned late, a CPU loop the
  watchdog could not interrupt in time): the 504 problem document instead. The app's
  status is held until its first body chunk (:mod:`._response`), so this is always
  clean, whichever of the request thread and the watchdog noticed first;
* the watchdog interrupts the app at a safe point (:mod:`.safepoints`), or the app,
  :func:`~bastion.middleware.deadline.check` or an outbound guard raises
  :class:`~bastion.middleware.deadline.DeadlineExceeded`: 504. A Flask app answers it itself
  (:mod:`._flask`), so Flask neither logs a 500 nor sends ``got_request_exception``,
  wherever in Flask's handling (hooks and teardown included) it landed;
* a streamed body past its first chunk: aborted (the server closes the connection).

Any other exception the app raises goes on to the server as before. In observe mode
the watchdog reports the overrun (log line with the stack, span event, counter) and
nothing else changes; a ``DeadlineExceeded`` that escapes the app is still answered
with the 504 rather than left to the server.

Nothing survives a request: whatever is raised and wherever, the registration ends
and the thread's state is restored before the middleware returns or raises (or, for a
body, when the server exhausts or closes it).

Parameters: ``app``, the WSGI app; the keyword arguments of
:class:`~bastion.middleware.deadline._layer.DeadlineLayer` (``mode``, ``seconds``,
``max_seconds``, ``fanout``, ``trusted_proxies``, ``routes``; or
``DeadlineMiddleware.from_settings(app, settings=None, routes=..., flask_app=...)``);
``app_packages`` (``BASTION_DEADLINE_APP_PACKAGES``): installed top-level packages whose
code the watchdog may interrupt; and ``flask_app``: the Flask app whose ``wsgi_app`` is
wrapped, when ``app`` is not that app or its own ``wsgi_app`` (another wrapper sits in
between), so that Flask answers deadlines itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Unpack

from bastion.middleware.deadline import _flask, problem
from bastion.middleware.deadline._context import DeadlineExceeded
from bastion.middleware.deadline._layer import DeadlineLayer, DeadlineOptions
from bastion.middleware.deadline._response import (
    GuardedBody,
    ServedRequest,
    StreamAborted,
    close_quietly,
)
from bastion.middleware.deadline.report import (
    Overrun,
    annotate_current_span,
    get_reporter,
    quick_stack_text,
    record_outcome,
)
from bastion.middleware.deadline.watchdog import get_watchdog
from bastion.middleware.settings import MiddlewareSettings

__all__ = ["DeadlineMiddleware"]

logger = logging.getLogger("bastion.deadline")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_monotonic = time.monotonic


class DeadlineMiddleware(DeadlineLayer):
    """Wrap a WSGI app so every request runs under a deadline (see the module doc)."""

    app: WSGIApp

    def __init__(
        self,
        app: WSGIApp,
        *,
        app_packages: Iterable[str] = (),
        flask_app: Any = None,
        **options: Unpack[DeadlineOptions],
    ) -> None:
        super().__init__(app, **options)
        self.enforce = self.mode.enforcing
        self._active = self.mode.active
        self._default = (self.policy.default_budget, "default")
        self._plain = not self.policy.has_routes  # the budget depends on headers only
        self._watchdog = get_watchdog(tuple(app_packages))
        if self._active:
            _flask.answer_deadlines_in_flask(flask_app if flask_app is not None else app)

    @classmethod
    def _from_settings_extra(cls, settings: MiddlewareSettings) -> dict[str, Any]:
        return {"app_packages": settings.deadline_app_packages}

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._active:
            return self.app(environ, start_response)
        if self._plain and not (
            "HTTP_X_BASTION_TIMEOUT_MS" in environ
            or "HTTP_GRPC_TIMEOUT" in environ
            or "HTTP_X_ENVOY_EXPECTED_RQ_TIMEOUT_MS" in environ
        ):
            budget, source = self._default  # the usual request: no routes, no headers
        else:
            found = self._budget(environ)
            if found is None:  # an exempt route
                return self.app(environ, start_response)
            budget, source = found
        request = ServedRequest(
            self, _monotonic() + budget, budget, source, environ, start_response
        )
        result: Iterable[bytes] | None = None
        try:
            self._watchdog.begin(request)
            request.serving = True
            result = self.app(environ, request.start_response)
            kind = type(result)
            if kind is list or kind is tuple:
                return self._complete(request, result)
            return self._first_chunk(request, result)
        except BaseException as error:
            return self.app_raised(request, error, result)
        finally:
            request.serving = False

    def _budget(self, environ: Environ) -> tuple[float, str] | None:
        try:
            return self.policy.for_wsgi(environ)
        except Exception:  # never fail a request for its headers
            logger.exception("working out a request's deadline failed; using the default")
            return self._default

    def _first_chunk(self, request: ServedRequest, result: Iterable[bytes]) -> Iterable[bytes]:
        """Take the body's first chunk before anything goes to the server."""
        iterator = iter(result)
        first = next(iterator, None)  # chunks are bytes, never None
        if first is None:  # an empty body
            _close(result)
            return self._complete(request, [])
        length = request.content_length()
        if length is not None and len(first) >= length:  # a buffered body, complete
            _close(result)
            return self._complete(request, [first])
        if self.enforce and self.is_late(request):
            close_quietly(result)
            return self._answer_504(request)
        request.commit()
        return GuardedBody(request, result, iterator, first)

    def _complete(self, request: ServedRequest, body: Iterable[bytes]) -> Iterable[bytes]:
        """The whole answer is in hand: it, or the 504 if it came too late."""
        self._watchdog.end(request)  # self.end(), for the usual request: one call less
        if _monotonic() >= request.expires_at:
            self._record_overrun(request)
            if self.enforce:
                return self._answer_504(request)
        request.commit()
        return body

    def _answer_504(self, request: ServedRequest) -> list[bytes]:
        self.end(request)
        self._outcome(request, "504")
        return request.start_504()

    # --- the ways a request ends (also called by GuardedResponse) --------------------
    def is_late(self, request: ServedRequest) -> bool:
        return _monotonic() >= request.expires_at

    def end(self, request: ServedRequest) -> bool:
        """End the request's registration (idempotent); True if it overran. The
        overrun is recorded once: the report, unless the watchdog already made one,
        and the span event, unless Flask's handlers already added it."""
        if request.finished:
            return _monotonic() >= request.expires_at
        self._watchdog.end(request)
        late = _monotonic() >= request.expires_at
        if late:
            self._record_overrun(request)
        return late

    def _record_overrun(self, request: ServedRequest) -> None:
        if not request.reported:  # it ended before the watchdog looked
            request.reported = True
            get_reporter().submit(Overrun.of(request, []))
        self.annotate_span(request)

    def annotate_span(self, request: ServedRequest) -> None:
        """The overrun's event on the span current in this thread, once per request."""
        if not request.annotated:
            request.annotated = True
            annotate_current_span(
                mode=self.mode,
                budget=request.budget,
                source=request.source,
                stack_text=quick_stack_text(request.stack or []),
            )

    def _outcome(self, request: ServedRequest, outcome: str) -> None:
        record_outcome(self.route_label(request.path), self.mode, outcome)

    def app_raised(
        self, request: ServedRequest, error: BaseException, result: Iterable[bytes] | None
    ) -> Iterable[bytes]:
        """The app raised, or its body did before its first chunk (or the server's
        ``start_response`` refused its status)."""
        late = self.end(request)
        if result is not None:
            close_quietly(result)
        if not (isinstance(error, DeadlineExceeded) or (late and self.enforce)):
            raise error
        if request.answered:  # write() found it late and started the 504
            self._outcome(request, "504")
            return [problem.BODY]
        if request.sent:
            self._outcome(request, "aborted")
            raise StreamAborted("the response was cut at its deadline") from error
        return self._answer_504(request)

    def stream_raised(self, request: ServedRequest, error: BaseException) -> None:
        """A streamed body raised after its status went out: always raises."""
        late = self.end(request)
        if isinstance(error, DeadlineExceeded) or (late and self.enforce):
            self._outcome(request, "aborted")
            raise StreamAborted("the response was cut at its deadline") from error
        raise error

    def stream_cut(self, request: ServedRequest) -> None:
        """A streamed chunk came after the deadline (enforce mode): abort."""
        self.end(request)
        self._outcome(request, "aborted")
        raise StreamAborted("the response was cut at its deadline")

    def route_label(self, path: str) -> str:
        return self.policy.route_label(path)


def _close(result: object) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()
