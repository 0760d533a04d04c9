"""A WSGI response as the deadline middleware hands it to the server.

Nothing reaches the server before the app's first body chunk, as Go's
``http.TimeoutHandler`` and Starlette's GZip middleware do it: the app's
``start_response`` is held (:meth:`GuardedResponse.start_response`), and its body is
iterated through :class:`GuardedResponse` itself. So an answer that comes after the
deadline, a body whose first chunk is late, or the watchdog's exception before the
first chunk, are all replaced cleanly by the 504 problem document. After the first
chunk the status is out: an overrun then aborts the response (the exception goes on
to the server, which closes the connection rather than end a cut body as if whole).

The request's registration ends when the body is exhausted or closed, whichever
comes first, so a streamed body is under the deadline too and a server that never
closes it leaves nothing running.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from middleware.deadline import problem
from middleware.deadline._context import DeadlineExceeded

if TYPE_CHECKING:
    from middleware.deadline.watchdog import Registration
    from middleware.deadline.wsgi import DeadlineMiddleware

__all__ = ["GuardedResponse", "StreamAborted", "close_quietly"]

logger = logging.getLogger("bastion.deadline")

StartResponse = Callable[..., Any]
Write = Callable[[bytes], object]

_monotonic = time.monotonic


class StreamAborted(DeadlineExceeded):
    """A response whose status had gone out was cut at its deadline; raised to the
    server so that it closes the connection instead of ending the body as if whole."""


class GuardedResponse:
    """The held status and the guarded body of one WSGI request (see the module doc)."""

    __slots__ = (
        "answered",
        "body",
        "headers",
        "iterator",
        "owner",
        "registration",
        "sent",
        "server_start_response",
        "server_write",
        "status",
    )

    def __init__(
        self,
        owner: DeadlineMiddleware,
        registration: Registration,
        server_start_response: StartResponse,
    ) -> None:
        self.owner = owner
        self.registration = registration
        self.server_start_response = server_start_response
        self.server_write: Write | None = None
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False  # the server has a status (the app's or the 504's)
        self.answered = False  # ... and it is the 504's
        self.body: Iterable[bytes] | None = None
        self.iterator: Iterator[bytes] | None = None

    # --- what the app calls ----------------------------------------------------------
    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Write:
        if self.sent:  # PEP 3333: only an error page, and the server decides
            return self.server_start_response(status, headers, exc_info)  # type: ignore[no-any-return]
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> object:
        """The legacy ``write()``: the status goes out now (the 504's if it is late)."""
        if not self.sent:
            if self.owner.enforce and _monotonic() >= self.registration.expires_at:
                self.start_504()
                raise DeadlineExceeded("the app wrote its answer after its deadline")
            self.commit()
        return self.server_write(data)  # type: ignore[misc]

    # --- what the middleware calls ---------------------------------------------------
    def commit(self) -> None:
        """Hand the app's status and headers to the server."""
        if self.status is None:
            raise RuntimeError("the WSGI app returned its body without calling start_response")
        self.sent = True
        self.server_write = self.server_start_response(self.status, self.headers)

    def start_504(self) -> list[bytes]:
        """Hand the 504's status to the server instead; its body to return."""
        self.sent = self.answered = True
        self.server_write = self.server_start_response(problem.STATUS, list(problem.WSGI_HEADERS))
        return [problem.BODY]

    def drop_body(self) -> None:
        """Close the app's body early (it is being replaced by the 504)."""
        body, self.body = self.body, None
        close_quietly(body)

    # --- the body the server iterates ------------------------------------------------
    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        registration = self.registration
        if registration.ended:
            raise StopIteration  # exhausted, answered, or aborted
        try:
            if self.iterator is None:
                self.iterator = iter(self.body)  # type: ignore[arg-type]
            chunk = next(self.iterator)
        except StopIteration:
            return self._exhausted()
        except BaseException as error:
            return self.owner.body_raised(self, error)
        if _monotonic() >= registration.expires_at and self.owner.enforce:
            return self.owner.body_late(self)
        if not self.sent:
            self.commit()
        return chunk

    def _exhausted(self) -> bytes:
        late = self.owner.end(self)
        if not self.sent:
            if late and self.owner.enforce:
                self.drop_body()
                return self.start_504()[0]
            self.commit()
        raise StopIteration

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
            self.owner.end(self)


def close_quietly(result: object, raising: bool = False) -> None:
    """``result.close()`` if it has one (PEP 3333); its errors logged, or raised."""
    close = getattr(result, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        if raising:
            raise
        logger.exception("closing the app's response failed")
