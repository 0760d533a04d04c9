"""Flask answers a deadline itself, wherever in its request handling it lands.

Without this, a :class:`~middleware.deadline.DeadlineExceeded` raised in a view or a
``before_request`` hook goes through Flask's 500 path (an "Exception on ..." error
log, ``got_request_exception``, a 500 page) before the middleware turns the answer
into the 504. So the WSGI deadline middleware gives a Flask app:

* an error handler for ``DeadlineExceeded`` (views and ``before_request`` hooks),
  unless the app registered its own;
* a ``handle_exception`` that answers ``DeadlineExceeded`` directly (raised where
  Flask's error handlers do not reach: ``after_request`` hooks), and hands every
  other exception to Flask's own, unchanged. Flask documents ``handle_exception`` as
  the method to override for this; it is set on the app instance, once.

* an ``after_request`` hook that, in enforce mode, turns an answer made after the
  deadline into the 504 (the middleware would replace it anyway, but Flask would not
  know).

All of them answer with the 504 problem document and add the overrun's event to the
span current in Flask, so what instrumentation inside Flask records (the
OpenTelemetry Flask span) is the 504 the client gets, with the stack the watchdog
saw. A deadline landing in a ``teardown_request`` hook leaves Flask after its answer
was made; the middleware replaces that answer.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

from opentelemetry import trace

from middleware.deadline import problem
from middleware.deadline._context import DeadlineExceeded, running_here
from middleware.deadline.report import add_span_event, quick_stack_text

__all__ = ["answer_deadlines_in_flask"]


def _flask_app(app: object) -> Any:
    """The Flask app behind ``app`` (a Flask app, or its ``wsgi_app`` method as
    :func:`~middleware.protect` wraps it), or None."""
    for candidate in (app, getattr(app, "__self__", None)):
        if callable(getattr(candidate, "register_error_handler", None)) and callable(
            getattr(candidate, "handle_exception", None)
        ):
            return candidate
    return None


def _problem_response() -> Any:
    from flask import Response

    _annotate_span()
    return Response(problem.BODY, 504, headers=list(problem.WSGI_HEADERS))


def _annotate_span() -> None:
    """The overrun's event on the span current in Flask, once per request."""
    registration: Any = running_here()
    if registration is None or registration.annotated:
        return
    registration.annotated = True
    span = trace.get_current_span()
    if span.is_recording():
        add_span_event(
            span,
            mode=registration.owner.mode,
            budget=registration.budget,
            source=registration.source,
            stack_text=quick_stack_text(registration.stack or traceback.StackSummary()),
        )


def _answer(error: BaseException) -> Any:
    return _problem_response()


def _after_request(response: Any) -> Any:
    registration: Any = running_here()
    if registration is None or time.monotonic() < registration.expires_at:
        return response
    if registration.owner.enforce:
        return _problem_response()
    _annotate_span()
    return response


class _HandleException:
    """Flask's ``handle_exception``, answering a deadline with the 504 first."""

    def __init__(self, original: Any) -> None:
        self.original = original

    def __call__(self, error: Exception) -> Any:
        if isinstance(error, DeadlineExceeded):
            return _problem_response()
        return self.original(error)


def answer_deadlines_in_flask(app: object) -> bool:
    """Set up a Flask app as the module doc says; False if ``app`` is not Flask."""
    flask_app = _flask_app(app)
    if flask_app is None:
        return False
    handlers = flask_app.error_handler_spec.get(None, {}).get(None, {})
    if DeadlineExceeded not in handlers:
        flask_app.register_error_handler(DeadlineExceeded, _answer)
    if not isinstance(flask_app.handle_exception, _HandleException):
        flask_app.handle_exception = _HandleException(flask_app.handle_exception)
        flask_app.after_request(_after_request)
    return True
