"""A streamed WSGI body, sent under its request's deadline.

When the app returns something other than a buffered body, the request is not over:
the server iterates the body, and every chunk runs app code. :class:`Stream` keeps the
registration until the server closes it. The watchdog's exception may only land
while app code runs (``in_app``), never in the server's own code between chunks.
Before the first chunk nothing is sent, so an overrun is still a clean 504; after it
the response is aborted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from middleware.deadline._context import DeadlineExceeded
from middleware.deadline.report import record_outcome

if TYPE_CHECKING:
    from middleware.deadline._registration import ThreadRequest
    from middleware.deadline.wsgi import DeadlineMiddleware

__all__ = ["Stream", "close_quietly"]

logger = logging.getLogger("bastion.deadline")

_monotonic = time.monotonic


class _LateStart(DeadlineExceeded):
    """A streamed body's first chunk came after the deadline."""


class _FiredBetweenChunks(DeadlineExceeded):
    """The watchdog fired while the server, not the app, was running (between two
    chunks), so it raised nothing: the stream stops at the next chunk instead."""


class Stream:
    """The body the server iterates and closes, under the deadline."""

    __slots__ = (
        "environ",
        "expires_at",
        "iterator",
        "on_close",
        "owner",
        "request",
        "result",
        "start_response",
        "started",
    )

    def __init__(
        self,
        owner: DeadlineMiddleware,
        request: ThreadRequest,
        expires_at: float,
        result: Iterable[bytes],
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> None:
        self.owner = owner
        self.request = request
        self.expires_at = expires_at
        self.result = result
        self.environ = environ
        self.start_response = start_response  # the server's
        self.iterator: Iterator[bytes] | None = None
        self.started = False  # a chunk went to the server: the headers are out
        self.on_close: Callable[[], None] | None = None
        request.in_app = False  # server code until the server asks for a chunk
        request.stream = self  # where the watchdog finds the environ

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        request = self.request
        expires_at = self.expires_at
        if request.expires_at is not expires_at:
            raise StopIteration  # over: exhausted, or the 504 was sent
        if request.fired_at is expires_at and not request.injected and self.owner.enforce:
            return self._expired(_FiredBetweenChunks())
        try:
            request.in_app = True
            if self.iterator is None:
                self.iterator = iter(self.result)
            chunk = next(self.iterator)
            request.in_app = False
            if not self.started:
                self._start()
            return chunk
        except StopIteration:
            request.in_app = False
            if not self.started:
                try:
                    self._start()  # an empty body: its headers go out now
                except _LateStart as late:
                    return self._expired(late)
            # Exhausted: the deadline ends here, not at close(), so a server that
            # never closes the body (not PEP 3333's) leaves no request running.
            self._end()
            raise
        except DeadlineExceeded as error:
            request.in_app = False
            return self._expired(error)

    def _start(self) -> None:
        """Just before the first chunk (and with it the headers) goes to the server."""
        if self.owner.enforce and (self.request.injected or _monotonic() >= self.expires_at):
            raise _LateStart
        self.request.commit_status()
        self.started = True

    def _expired(self, error: DeadlineExceeded) -> bytes:
        request, owner = self.request, self.owner
        if not request.injected and not isinstance(error, _LateStart | _FiredBetweenChunks):
            raise error  # the app's own check(): its error
        if self.started:
            record_outcome(owner.route(self.environ), owner.mode, "aborted")
            raise error  # the server closes the connection: no clean end to a cut body
        # Nothing sent yet, so the headers are not out: still a clean 504.
        self._end()
        close_quietly(self.result)
        self.iterator = iter(())
        (body,) = owner.answer_504(request, self.environ, self.start_response)
        self.started = True
        return body

    def close(self) -> None:
        try:
            close_quietly(self.result, raising=True)
        except DeadlineExceeded:
            if not self.request.injected:
                raise  # landed in the app's own close code, after the body was sent
        finally:
            self.result = ()
            self.iterator = None
            self._end()
            self.request.release()

    def _end(self) -> None:
        """End the registration, once: the span event here if it was fired, and
        the registration as the next request expects it."""
        request, expires_at = self.request, self.expires_at
        if request.expires_at is not expires_at:
            return
        try:
            self.owner.end(request, expires_at)
        except DeadlineExceeded:  # landed on the way in
            self.owner.end(request, expires_at)
        request.in_app = True
        self.owner.annotate_here(request, expires_at, self.environ)
        if self.on_close is not None:
            on_close, self.on_close = self.on_close, None
            on_close()


def close_quietly(result: object, *, raising: bool = False) -> None:
    """Close the app's response; a failure is logged (or, ``raising``, raised)."""
    close = getattr(result, "close", None)
    if close is None:
        return
    try:
        close()
    except DeadlineExceeded:
        raise
    except Exception:
        if raising:
            raise
        logger.exception("closing the app's response after its deadline failed")
