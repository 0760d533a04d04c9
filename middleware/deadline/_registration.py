"""A server thread's registration with the watchdog, as the WSGI middleware uses it.

One per thread, reused by every request the thread runs (see
:mod:`middleware.deadline.wsgi`). Besides what the watchdog reads, it carries what
enforce mode needs to hold a non-Flask app's status back until its body starts: the
server's ``start_response``, the held status and headers, and whether they went out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from middleware.deadline import problem
from middleware.deadline.watchdog import WatchedRequest

if TYPE_CHECKING:
    from middleware.deadline._stream import Stream

__all__ = ["ThreadRequest"]

StartResponse = Callable[..., Any]


class ThreadRequest(WatchedRequest):
    """A server thread's registration, with what enforce mode needs to hold a
    non-Flask app's status back: the server's ``start_response``, the held status
    and headers, and whether they went out."""

    __slots__ = (
        "committed",
        "held",
        "server_start_response",
        "server_write",
        "stream",
    )

    def __init__(self) -> None:
        super().__init__()
        self.stream: Stream | None = None  # the streamed body being sent, if any
        self.server_start_response: StartResponse | None = None
        self.server_write: Callable[[bytes], object] | None = None
        self.held: tuple[str, list[tuple[str, str]]] | None = None
        self.committed = False

    def hold_status(self, start_response: StartResponse) -> StartResponse:
        """Start holding the status for this request; the start_response for the app."""
        self.server_start_response = start_response
        self.held = None
        self.committed = False
        return self._held_start_response

    def _held_start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        if self.committed:  # the app's error page after it wrote: the server decides
            start = cast(StartResponse, self.server_start_response)
            return cast(Callable[[bytes], object], start(status, headers, exc_info))
        self.held = (status, headers)
        return self._write

    def _write(self, data: bytes) -> object:
        """The legacy ``write()``: the status and headers go out now."""
        self.commit_status()
        return cast(Callable[[bytes], object], self.server_write)(data)

    def commit_status(self) -> None:
        """Hand the held status and headers to the server."""
        held = self.held
        if held is not None and not self.committed:
            self.committed = True
            self.held = None
            self.server_write = cast(StartResponse, self.server_start_response)(*held)

    def start_504(self) -> bool:
        """The 504's status instead of the held one; False if the app's went out."""
        if self.committed:
            return False
        self.committed = True
        self.held = None
        start = cast(StartResponse, self.server_start_response)
        self.server_write = start(problem.STATUS, list(problem.WSGI_HEADERS))
        return True

    def release(self) -> None:
        """Hold on to nothing of the request once it ended."""
        if self.server_start_response is not None:
            self.server_start_response = self.server_write = self.held = None
