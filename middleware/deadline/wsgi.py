"""``DeadlineMiddleware``: a deadline for every WSGI request (Flask, Django, any WSGI app).

Per request it works out the budget (:mod:`.inbound`: the default, a per-route
override, or a shorter one the caller announced) and registers the request with the
process's :mod:`watchdog <.watchdog>`, where :func:`~middleware.deadline.remaining`
reads it, so the outbound guards cap every call by it.

What the client gets, in enforce mode:

* the app answers in time: its answer, untouched;
* the app answers after the deadline (a blocking call returned late, a CPU loop the
  watchdog could not interrupt in time): the 504 problem document instead. The app's
  status is held until its first body chunk (:mod:`._response`), so this is always
  clean, whichever of the request thread and the watchdog noticed first;
* the watchdog interrupts the app at a safe point (:mod:`.safepoints`), or the app,
  :func:`~middleware.deadline.check` or an outbound guard raises
  :class:`~middleware.deadline.DeadlineExceeded`: 504. A Flask app answers it itself
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

Parameters: ``app``, the WSGI app; ``settings`` (default
:func:`~middleware.settings.get_settings`): ``BASTION_DEADLINE`` (off/observe/enforce),
``BASTION_DEADLINE_SECONDS``, ``BASTION_DEADLINE_MAX_SECONDS``,
``BASTION_DEADLINE_APP_PACKAGES``, ``BASTION_DEADLINE_FANOUT`` and
``BASTION_TRUSTED_PROXIES``; ``routes``: per-path :class:`~middleware.routes.Route`
overrides (``deadline_seconds``, ``exempt_deadline``); ``flask_app``: the Flask app
whose ``wsgi_app`` is wrapped, when ``app`` is not that app or its own ``wsgi_app``
(another wrapper sits in between), so that Flask answers deadlines itself.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from middleware.deadline import _flask, fanout, problem
from middleware.deadline._context import DeadlineExceeded
from middleware.deadline._response import GuardedResponse, StreamAborted
from middleware.deadline.inbound import ASGI_HEADER_NAMES, BudgetPolicy
from middleware.deadline.report import (
    Overrun,
    annotate_current_span,
    get_reporter,
    quick_stack_text,
    record_outcome,
)
from middleware.deadline.watchdog import Registration, get_watchdog
from middleware.routes import Route, RouteTable
from middleware.settings import Settings, get_settings

__all__ = ["DeadlineMiddleware"]

logger = logging.getLogger("bastion.deadline")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_monotonic = time.monotonic
#: The inbound deadline headers as a WSGI environ spells them.
_INBOUND_KEYS = tuple(
    "HTTP_" + name.decode().upper().replace("-", "_") for name in sorted(ASGI_HEADER_NAMES)
)


class DeadlineMiddleware:
    """Wrap a WSGI app so every request runs under a deadline (see the module doc)."""

    def __init__(
        self,
        app: WSGIApp,
        settings: Settings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
        flask_app: Any = None,
    ) -> None:
        settings = settings if settings is not None else get_settings()
        self.app = app
        self.mode = settings.deadline
        self.enforce = self.mode.enforcing
        self.policy = BudgetPolicy(settings, routes)
        self._active = self.mode.active
        self._default = (self.policy.default_budget, "default")
        self._plain = not self.policy.has_routes  # the budget depends on headers only
        self._watchdog = get_watchdog(settings.deadline_app_packages)
        if self._active:
            _flask.answer_deadlines_in_flask(flask_app if flask_app is not None else app)
            if settings.deadline_fanout:
                fanout.install()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._active:
            return self.app(environ, start_response)
        found = self._budget(environ)
        if found is None:  # an exempt route
            return self.app(environ, start_response)
        budget, source = found
        registration = Registration(self, _monotonic() + budget, budget, source, environ)
        response = GuardedResponse(self, registration, start_response)
        try:
            self._watchdog.begin(registration)
            result = self.app(environ, response.start_response)
            kind = type(result)
            if (kind is list or kind is tuple) and response.status is not None:
                return self._buffered(response, result)  # iterating it runs no app code
            response.body = result
            return response
        except BaseException as error:
            return self.app_raised(response, error)

    def _budget(self, environ: Environ) -> tuple[float, str] | None:
        if self._plain:
            for key in _INBOUND_KEYS:
                if key in environ:
                    break
            else:
                return self._default
        try:
            return self.policy.for_wsgi(environ)
        except Exception:  # never fail a request for its headers
            logger.exception("working out a request's deadline failed; using the default")
            return self._default

    def _buffered(self, response: GuardedResponse, result: Iterable[bytes]) -> Iterable[bytes]:
        if self.end(response) and self.enforce:
            self._outcome(response, "504")
            return response.start_504()
        response.commit()
        return result

    # --- the ways a request ends (also called by GuardedResponse) --------------------
    def end(self, response: GuardedResponse) -> bool:
        """End the request's registration (idempotent); True if it overran. The
        overrun is recorded once: the outcome counter in enforce mode, and the report
        unless the watchdog already made one."""
        registration = response.registration
        if registration.finished:
            return _monotonic() >= registration.expires_at
        self._watchdog.end(registration)
        late = _monotonic() >= registration.expires_at
        if late:
            self._record_overrun(response)
        return late

    def _record_overrun(self, response: GuardedResponse) -> None:
        registration = response.registration
        if not registration.reported:  # it ended before the watchdog looked
            registration.reported = True
            get_reporter().submit(Overrun.of(registration, traceback.StackSummary()))
        if not registration.annotated:  # by Flask's handlers, in Flask's span
            registration.annotated = True
            annotate_current_span(
                mode=self.mode,
                budget=registration.budget,
                source=registration.source,
                stack_text=quick_stack_text(registration.stack or traceback.StackSummary()),
            )

    def _outcome(self, response: GuardedResponse, outcome: str) -> None:
        record_outcome(self.route_label(response.registration.path), self.mode, outcome)

    def app_raised(self, response: GuardedResponse, error: BaseException) -> Iterable[bytes]:
        """The app raised (or the server's ``start_response`` refused its status)."""
        late = self.end(response)
        deadline_error = isinstance(error, DeadlineExceeded)
        if not (deadline_error or (late and self.enforce)):
            raise error
        if response.answered:  # write() found it late and started the 504
            self._outcome(response, "504")
            return [problem.BODY]
        if response.sent:
            self._outcome(response, "aborted")
            raise StreamAborted("the response was cut at its deadline") from error
        self._outcome(response, "504")
        return response.start_504()

    def body_raised(self, response: GuardedResponse, error: BaseException) -> bytes:
        """Iterating the app's body raised."""
        late = self.end(response)
        if not (isinstance(error, DeadlineExceeded) or (late and self.enforce)):
            response.drop_body()
            raise error
        if response.sent:
            self._outcome(response, "aborted")
            response.drop_body()
            raise StreamAborted("the response was cut at its deadline") from error
        self._outcome(response, "504")
        response.drop_body()
        return response.start_504()[0]

    def body_late(self, response: GuardedResponse) -> bytes:
        """A chunk came after the deadline (enforce mode)."""
        self.end(response)
        response.drop_body()
        if response.sent:
            self._outcome(response, "aborted")
            raise StreamAborted("the response was cut at its deadline")
        self._outcome(response, "504")
        return response.start_504()[0]

    def route_label(self, path: str) -> str:
        return self.policy.route_label(path)
