"""A WSGI request as the deadline middleware serves it: its status held until its
first body chunk, and its streamed body under the deadline.

Nothing reaches the server before the app's first body chunk, as Go's
``http.TimeoutHandler`` and Starlette's GZip middleware do it: the app's
``start_response`` is held (:class:`ServedRequest`), and the middleware takes the
first chunk of the body itself before it hands anything on. So an answer that comes
after the deadline, a body whose first chunk is late, or the watchdog's exception
before the first chunk, are all replaced cleanly by the 504 problem document.

A body that is complete with its first chunk (a list, an empty body, or a first chunk
as long as the ``Content-Length`` the app declared, which is what a buffered Flask
response is) ends the request there and goes to the server as a list. A longer body
is a stream (:class:`GuardedBody`): the request stays registered until the server
exhausts or closes it, every chunk is checked against the deadline, and an overrun
after the status went out aborts the response (the exception goes on to the server,
which closes the connection rather than end a cut body as if whole).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from bastion.middleware.deadline import problem
from bastion.middleware.deadline._context import DeadlineExceeded
from bastion.middleware.deadline.watchdog import Registration

if TYPE_CHECKING:
    from bastion.middleware.deadline.wsgi import DeadlineMiddleware

__all__ = ["GuardedBody", "ServedRequest", "StreamAborted", "close_quietly"]

logger = logging.getLogger("bastion.deadline")

StartResponse = Callable[..., Any]
Write = Callable[[bytes], object]

_monotonic = time.monotonic


class StreamAborted(DeadlineExceeded):
    """A response whose status had gone out was cut at its deadline; raised to the
    server so that it closes the connection instead of ending the body as if whole."""


class ServedRequest(Registration):
    """One WSGI request: its registration with the watchdog, and its held status."""

    owner: DeadlineMiddleware
    status: str | None = None
    headers: list[tuple[str, str]] | None = None
    server_write: Write | None = None
    sent = False  # the server has a status (the app's or the 504's)
    answered = False  # ... and it is the 504's

    def __init__(  # Registration's fields, set here: no second call per request
        self,
        owner: DeadlineMiddleware,
        expires_at: float,
        budget: float,
        source: str,
        environ: Mapping[str, Any],
        server_start_response: StartResponse,
    ) -> None:
        self.owner = owner
        self.expires_at = expires_at
        self.budget = budget
        self.source = source
        self.method = environ.get("REQUEST_METHOD", "")
        self.path = environ.get("PATH_INFO", "")
        self.server_start_response = server_start_response

    # --- what the app calls ----------------------------------------------------------
    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Write:
        if self.sent:  # PEP 3333: only an error page, and the server decides
            return self.server_start_response(status, headers, exc_info)  # type: ignore[no-any-return]
        self.status, self.headers = status, headers
        if _monotonic() >= self.expires_at:
            # A late answer: the event goes on the span of whatever runs inside (the
            # Flask instrumentation's), which ends before the middleware replaces it.
            self.owner.annotate_span(self)
        return self.write

    def write(self, data: bytes) -> object:
        """The legacy ``write()``: the status goes out now (the 504's if it is late)."""
        if not self.sent:
            if self.owner.enforce and self.owner.is_late(self):
                self.start_504()
                raise DeadlineExceeded("the app wrote its answer after its deadline")
            self.commit()
        return self.server_write(data)  # type: ignore[misc]

    # --- what the middleware calls ---------------------------------------------------
    def content_length(self) -> int | None:
        """The ``Content-Length`` the app declared, if any (Werkzeug puts it last)."""
        for name, value in reversed(self.headers or ()):
            if name == "Content-Length" or name.lower() == "content-length":
                return int(value) if value.isascii() and value.isdigit() else None
        return None

    def commit(self) -> None:
        """Hand the app's status and headers to the server."""
        if self.status is None:
            raise RuntimeError("the WSGI app returned its body without calling start_response")
        self.server_write = self.server_start_response(self.status, self.headers or [])
        self.sent = True

    def start_504(self) -> list[bytes]:
        """Hand the 504's status to the server instead; its body to return."""
        self.sent = self.answered = True
        self.server_write = self.server_start_response(problem.STATUS, list(problem.WSGI_HEADERS))
        return [problem.BODY]


class GuardedBody:
    """The rest of a streamed body, after its first chunk, under the deadline."""

    __slots__ = ("body", "first", "iterator", "request")

    def __init__(
        self, request: ServedRequest, body: Iterable[bytes], iterator: Iterator[bytes], first: bytes
    ) -> None:
        self.request = request
        self.body: Iterable[bytes] | None = body
        self.iterator = iterator
        self.first: bytes | None = first

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        first = self.first
        if first is not None:
            self.first = None
            return first
        request = self.request
        if request.ended:
            raise StopIteration  # exhausted, or cut
        owner = request.owner
        request.serving = True  # the app's code runs to make the chunk
        try:
            chunk = next(self.iterator)
        except StopIteration:
            request.serving = False
            owner.end(request)
            raise
        except BaseException as error:
            request.serving = False
            self.drop()
            owner.stream_raised(request, error)
            raise  # stream_raised always raises; this keeps the type checker informed
        request.serving = False
        if owner.enforce and owner.is_late(request):
            self.drop()
            owner.stream_cut(request)
        return chunk

    def drop(self) -> None:
        """Close the app's body early (the response is being cut)."""
        body, self.body = self.body, None
        close_quietly(body)

    def close(self) -> None:
        body, self.body = self.body, None
        try:
            if body is not None:
                close = getattr(body, "close", None)
                if close is not None:
                    close()  # may run app code: still under the deadline
        except DeadlineExceeded:
            pass  # the body is over either way; end() records the overrun
        finally:
            self.request.owner.end(self.request)


def close_quietly(result: object) -> None:
    """``result.close()`` if it has one (PEP 3333); its errors logged."""
    close = getattr(result, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        logger.exception("closing the app's response failed")
