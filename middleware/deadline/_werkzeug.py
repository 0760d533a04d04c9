"""What the WSGI deadline knows about Werkzeug and Flask, kept apart from the middleware:
a buffered Werkzeug body needs no wrapper, and a Flask app can answer the 504 itself.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wsgi import ClosingIterator

from middleware.deadline import problem
from middleware.deadline.watchdog import InjectedDeadlineExceeded

__all__ = ["ANSWERED", "answer_in_flask", "buffered", "hand_back_from_flask"]

#: Set in the environ when Flask itself answered the 504 (see answer_in_flask).
ANSWERED = "bastion.deadline.answered"


def buffered(result: object) -> bool:
    """True if iterating ``result`` runs no app code: a list or tuple, or what a
    Werkzeug (Flask) response with a buffered body returns (a ``ClosingIterator``
    whose last callback is ``Response.close``). Those need no wrapper: the deadline
    ends when the app returns. A stream does. (The middleware's per-request path
    inlines this check for a Flask response.)"""
    kind = type(result)
    if kind is list or kind is tuple:
        return True
    if kind is ClosingIterator:
        callbacks = result._callbacks  # type: ignore[attr-defined]
        response = getattr(callbacks[-1], "__self__", None) if callbacks else None
        body = getattr(response, "response", None)
        return type(body) is list or type(body) is tuple
    return False


def hand_back_from_flask(app: object) -> bool:
    """If ``app`` is a Flask app's ``wsgi_app`` (what :func:`~middleware.protect`
    wraps), give Flask a handler for the watchdog's exception that answers the 504
    problem document itself. Flask then skips its 500 path (traceback log,
    ``got_request_exception``), and instrumentation inside Flask's request context
    (the OpenTelemetry Flask span) records the 504 the client really gets. Any other
    WSGI app is left alone: the middleware replaces its answer instead. True if
    ``app`` was Flask's."""
    register = getattr(getattr(app, "__self__", None), "register_error_handler", None)
    if not callable(register):
        return False
    register(InjectedDeadlineExceeded, answer_in_flask)
    return True


def answer_in_flask(error: BaseException) -> Any:
    from flask import Response, request

    request.environ[ANSWERED] = True
    return Response(problem.BODY, 504, headers=list(problem.WSGI_HEADERS))
