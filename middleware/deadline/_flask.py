"""Flask answers a deadline itself, wherever in its request handling it lands.

Without this, a :class:`~bastion.middleware.deadline.DeadlineExceeded` raised in a view or a
``before_request`` hook goes through Flask's 500 path (an "Exception on ..." error
log, ``got_request_exception``, a 500 page) before the middleware turns the answer
into the 504. So the WSGI deadline middleware gives a Flask app:

* an error handler for ``DeadlineExceeded`` (views and ``before_request`` hooks),
  unless the app registered its own;
* a ``handle_exception`` that answers ``DeadlineExceeded`` directly (raised where
  Flask's error handlers do not reach: ``after_request`` hooks), and hands every
  other exception to Flask's own, unchanged. Flask documents ``handle_exception`` as
  the method to override for this; it is set on the app instance, once.

Both answer with the 504 problem document and add the overrun's event to the span
current in Flask, so what instrumentation inside Flask records (the OpenTelemetry
Flask span) is the 504 the client gets, with the stack the watchdog saw. An answer
Flask made after the deadline without being interrupted (a blocking call that
returned late) is replaced by the middleware after Flask is done with it: Flask's
span keeps the app's status, and gets the overrun's event as the answer starts
(:meth:`~._response.ServedRequest.start_response`). A deadline landing in a
``teardown_request`` hook leaves Flask after its answer was made; the middleware
replaces that answer too.
"""

from __future__ import annotations

import logging
from typing import Any

from bastion.middleware.deadline import problem
from bastion.middleware.deadline._context import DeadlineExceeded, running_here

__all__ = ["answer_deadlines_in_flask"]

logger = logging.getLogger("bastion.deadline")


def _flask_app(app: object) -> Any:
    """The Flask app behind ``app`` (a Flask app, or its ``wsgi_app`` method as
    :func:`~bastion.middleware.protect` wraps it), or None."""
    for candidate in (app, getattr(app, "__self__", None)):
        if callable(getattr(candidate, "register_error_handler", None)) and callable(
            getattr(candidate, "handle_exception", None)
        ):
            return candidate
    return None


def _problem_response() -> Any:
    from flask import Response

    registration: Any = running_here()
    if registration is not None:
        registration.owner.annotate_span(registration)
    return Response(problem.BODY, 504, headers=list(problem.WSGI_HEADERS))


def _answer(error: BaseException) -> Any:
    return _problem_response()


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
        try:
            flask_app.register_error_handler(DeadlineExceeded, _answer)
        except AssertionError:  # Flask refuses setup once the app has served requests
            logger.warning(
                "Flask app already serving: deadlines in views are answered by the "
                "middleware, after Flask's 500 path; protect() the app at startup"
            )
    if not isinstance(flask_app.handle_exception, _HandleException):
        flask_app.handle_exception = _HandleException(flask_app.handle_exception)
    return True
