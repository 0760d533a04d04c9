"""Bastion's own refusals answered as RFC 9457 problem documents.

A guard that stops a call in enforce mode raises an exception that is also a
:class:`BastionRefusal`: the class says which status and problem type the client gets.
:func:`problem_for` renders it (the same bytes for every instance of a class: no SQL,
host, path or exception text reaches the client; the guard's log line and span carry
those). ``protect()`` answers a refusal the app leaves unhandled:

* Flask: :func:`answer_refusals_in_flask` wraps the app's ``handle_user_exception``
  (views, ``before_request`` hooks) and ``handle_exception`` (``after_request``
  hooks). Flask looks up the app's own error handlers first, so a handler the app
  registered for the refusal's class or any base class (``ValueError``,
  ``TimeoutError``, ``requests.RequestException``, ``Exception``...) wins.
* ASGI: :class:`RefusalASGIMiddleware` answers a refusal escaping the app before the
  response started. A Starlette (or FastAPI) app gets it through ``add_middleware``,
  inside Starlette's 500 handling and outside its ``ExceptionMiddleware``, so the
  app's handlers by class win, and an app with its own 500/``Exception`` handler keeps
  answering everything itself.

This module imports nothing of Bastion: :mod:`instrumentation` classes inherit
:class:`BastionRefusal` without the middleware knowing them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, ClassVar, NamedTuple

__all__ = [
    "BastionRefusal",
    "Problem",
    "RefusalASGIMiddleware",
    "answer_refusals_in_flask",
    "problem_for",
]

logger = logging.getLogger("bastion")

#: The base of the problem type URIs of Bastion's own refusals (RFC 9457 §3.1.1: a
#: type URI identifies the problem; it need not be dereferenceable).
PROBLEM_TYPE_BASE = "tag:bastion,2026:problem/"


class BastionRefusal(Exception):
    """Base of every exception a Bastion guard raises to refuse or cut a call.

    Subclasses keep their own hierarchy (``class X(ValueError, BastionRefusal)``) and
    set the class attributes below; ``problem_for`` turns them into the answer.
    ``problem_detail`` is public text: it must not name a query, table or host.
    """

    problem_status: ClassVar[int] = 500
    problem_type: ClassVar[str] = "about:blank"
    problem_title: ClassVar[str] = ""  # "" = the status phrase (RFC 9457 §4.2.1)
    problem_detail: ClassVar[str] = "The request was refused by the service's policy."


class Problem(NamedTuple):
    """A rendered problem document, ready for WSGI and ASGI."""

    status: int
    status_line: str  # "504 Gateway Timeout"
    body: bytes
    wsgi_headers: tuple[tuple[str, str], ...]
    asgi_headers: tuple[tuple[bytes, bytes], ...]


def problem_for(refusal: BastionRefusal | type[BastionRefusal]) -> Problem:
    """The answer for ``refusal`` (an instance or a class); computed once per class."""
    cls = refusal if isinstance(refusal, type) else type(refusal)
    problem = _RENDERED.get(cls)
    if problem is None:  # a race renders the same bytes twice: harmless
        problem = _RENDERED[cls] = _render(cls)
    return problem


#: Per refusal class (a handful): constant bytes, nothing of any request.
_RENDERED: dict[type[BastionRefusal], Problem] = {}


def _render(cls: type[BastionRefusal]) -> Problem:
    status = HTTPStatus(cls.problem_status)
    body = json.dumps(
        {
            "type": cls.problem_type,
            "title": cls.problem_title or status.phrase,
            "status": status.value,
            "detail": cls.problem_detail,
        },
        separators=(",", ":"),
    ).encode()
    headers = (
        ("Content-Type", "application/problem+json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    )
    return Problem(
        status.value,
        f"{status.value} {status.phrase}",
        body,
        headers,
        tuple((k.lower().encode(), v.encode()) for k, v in headers),
    )


# --- Flask ------------------------------------------------------------------------------


def _flask_response(refusal: BastionRefusal) -> Any:
    from flask import Response

    problem = problem_for(refusal)
    return Response(problem.body, problem.status, headers=list(problem.wsgi_headers))


class _HandleUserException:
    """Flask's ``handle_user_exception``: the app's handlers first; an unhandled
    refusal (Flask re-raises it) is answered with its problem document."""

    def __init__(self, original: Callable[[Exception], Any]) -> None:
        self.original = original

    def __call__(self, error: Exception) -> Any:
        try:
            return self.original(error)
        except BastionRefusal as unhandled:
            if unhandled is not error:  # raised by the app's own handler: not ours
                raise
            return _flask_response(unhandled)


class _HandleException:
    """Flask's ``handle_exception`` (reached by errors outside the view's error
    handling, e.g. ``after_request`` hooks): a refusal gets its problem document."""

    def __init__(self, original: Callable[[Exception], Any]) -> None:
        self.original = original

    def __call__(self, error: Exception) -> Any:
        if isinstance(error, BastionRefusal):
            return _flask_response(error)
        return self.original(error)


def answer_refusals_in_flask(app: Any) -> None:
    """Set up a Flask app as the module doc says (once; Flask documents both methods
    as the ones to override)."""
    if not isinstance(app.handle_user_exception, _HandleUserException):
        app.handle_user_exception = _HandleUserException(app.handle_user_exception)
    if not isinstance(app.handle_exception, _HandleException):
        app.handle_exception = _HandleException(app.handle_exception)


# --- ASGI -------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RefusalASGIMiddleware:
    """Answers a :class:`BastionRefusal` escaping ``app`` before its response started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except BastionRefusal as refusal:
            if started:
                raise
            problem = problem_for(refusal)
            await send(
                {
                    "type": "http.response.start",
                    "status": problem.status,
                    "headers": list(problem.asgi_headers),
                }
            )
            await send({"type": "http.response.body", "body": problem.body, "more_body": False})


def add_to_starlette(app: Any) -> bool:
    """Put :class:`RefusalASGIMiddleware` inside a Starlette app's 500 handling. True
    when the app's refusals are taken care of: the layer was added, or the app has its
    own 500/``Exception`` handler (which answers them); False when ``app`` is not
    Starlette-like or already serves requests (then wrap it instead)."""
    handlers = getattr(app, "exception_handlers", None)
    add = getattr(app, "add_middleware", None)
    if not isinstance(handlers, dict) or not callable(add):
        return False
    if 500 in handlers or Exception in handlers:
        return True  # the app's own 500 handler answers every unhandled exception
    try:
        add(RefusalASGIMiddleware)
    except RuntimeError:  # "Cannot add middleware after an application has started"
        logger.warning(
            "Starlette app already serving: Bastion's refusals are answered only if they "
            "escape its 500 handling; protect() the app at startup"
        )
        return False
    return True
