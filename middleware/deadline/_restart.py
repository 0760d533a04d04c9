"""Starting the 504 through a ``start_response`` the app may already have called.

When the middleware passes the server's ``start_response`` straight to the app (a
Flask app, which answers the watchdog's exception itself, and observe mode), an
exception that escapes the app after it called ``start_response`` leaves the server
holding the app's status and headers, not yet sent. PEP 3333 lets a second call
carrying ``exc_info`` replace them. Servers differ in how:

* Werkzeug's, waitress and most others replace them;
* gunicorn keeps the new status but *appends* the new headers to the old ones (two
  Content-Types, two Content-Lengths), so its header list is emptied first. Its
  response object is found from its bound ``start_response``, through wrappers that
  follow the ``__wrapped__`` convention (``functools.wraps``, as OpenTelemetry's WSGI
  middleware does), or else in gunicorn's own ``handle_request`` frame further up
  this thread's stack (its local ``resp``), which any wrapper leaves in place. If it
  cannot be found under gunicorn, the replacement is refused: better a closed
  connection than a corrupt response.

This runs only for a request that has run out of time, never on the per-request path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from middleware.deadline import problem
from middleware.deadline._context import DeadlineExceeded

__all__ = ["start_504"]

#: How many ``__wrapped__`` links to follow looking for the server's own callable.
_MAX_WRAPPERS = 8


def start_504(start_response: Callable[..., Any], environ: Mapping[str, object]) -> bool:
    """Give the server the 504's status and headers; False if it is too late (the
    app's headers are out, or could not be replaced cleanly)."""
    headers = list(problem.WSGI_HEADERS)
    try:
        start_response(problem.STATUS, headers)
        return True  # the app had not called it (or the server lets a call replace it)
    except Exception:
        pass
    gunicorn = str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn")
    response = _server_response(start_response)
    if response is None and gunicorn:
        response = _gunicorn_response_in_stack()
    if response is not None:
        if response.headers_sent:
            return False
        response.headers.clear()
    elif gunicorn:
        return False
    error = DeadlineExceeded("request deadline exceeded")
    try:
        start_response(problem.STATUS, headers, (DeadlineExceeded, error, None))
    except Exception:
        return False
    return True


def _server_response(start_response: Callable[..., Any]) -> Any:
    """gunicorn's response object behind ``start_response``, or None."""
    found: Any = start_response
    for _ in range(_MAX_WRAPPERS):
        response = getattr(found, "__self__", None)
        if _is_gunicorn_response(response):
            return response
        found = getattr(found, "__wrapped__", None)
        if found is None:
            return None
    return None


def _gunicorn_response_in_stack() -> Any:
    """The response of the request this thread is serving, from gunicorn's worker
    frame (``handle_request``'s local ``resp``, in the sync and gthread workers)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "handle_request" and str(
            frame.f_globals.get("__name__", "")
        ).startswith("gunicorn."):
            response = frame.f_locals.get("resp")
            return response if _is_gunicorn_response(response) else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


def _is_gunicorn_response(response: object) -> bool:
    return isinstance(getattr(response, "headers", None), list) and isinstance(
        getattr(response, "headers_sent", None), bool
    )
