"""A total-time limit on reading a response body, which requests and urllib3 do not have.

Their read timeout applies to each socket read: a server sending one byte every half
second never trips ``timeout=1.0``, nor urllib3's ``Timeout(total=1.0)`` (its total is
spent by the time the body is read). So the limit has to be in the reads themselves.

:func:`bound_body` puts a thin proxy in front of the response's socket, below
http.client's buffer: before each ``recv_into`` it lowers the socket timeout to the
time left (never raising it above the caller's read timeout), and refuses to wait at
all once the deadline has passed. urllib3 turns that socket timeout into its
``ReadTimeoutError`` and throws the connection away (it is mid-body, so it cannot go
back to the pool). The response's ``read`` and ``read_chunked`` (what ``stream``,
``iter_content``, ``.content`` and file-like use of ``raw`` go through) are shadowed
on the instance to turn that error into :class:`DeadlineTimeout` before requests'
``iter_content`` would make a ``ConnectionError`` of it; ``raw.read1`` is bounded too
but raises urllib3's ``ReadTimeoutError``. Bytes already buffered are still served
after the deadline: only waiting on the network is refused. The shadows hold the
response weakly: a response referring to itself would be freed only by the cyclic
garbage collector, which costs more than everything else here together.

:func:`watch_body` is the observe-mode twin: it changes nothing and reports once if the
body was still being read when the deadline passed.
"""

from __future__ import annotations

import socket
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from urllib3.exceptions import ReadTimeoutError

from instrumentation.http._errors import DeadlineTimeout
from middleware.deadline import Deadline

__all__ = ["bound_body", "watch_body"]

T = TypeVar("T")
_monotonic = time.monotonic
# A socket timeout fires at, not after, the time asked; allow for clock granularity.
_TOLERANCE = 0.005


class _DeadlineSocket:
    """Forwards everything to the real socket; ``recv_into`` waits no later than the deadline."""

    __slots__ = ("_expires_at", "_per_read", "_sock")

    def __init__(self, sock: Any, expires_at: float, per_read: float | None) -> None:
        self._sock = sock
        self._expires_at = expires_at
        self._per_read = per_read

    def recv_into(self, *args: Any) -> int:
        left = self._expires_at - _monotonic()
        if left <= 0.0:
            raise TimeoutError("Bastion: request deadline reached while reading the body")
        # Time left only shrinks, so once below the read timeout it stays below.
        if self._per_read is None or left < self._per_read:
            self._sock.settimeout(left)
        return int(self._sock.recv_into(*args))

    def _decref_socketios(self) -> None:
        # What SocketIO.close() calls; spelled out, because reaching it through
        # __getattr__ costs a failed lookup and an AttributeError on every response.
        self._sock._decref_socketios()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _socket_io(raw: Any) -> Any:
    """The ``socket.SocketIO`` under a urllib3 response, or None (closed, or not a socket)."""
    try:
        # urllib3 response -> http.client response -> io.BufferedReader (None once the
        # body is read) -> socket.SocketIO
        socket_io = raw._fp.fp.raw
        # A plain (or TLS) socket; not one of ours already, not a test double.
        return socket_io if isinstance(socket_io._sock, socket.socket) else None
    except AttributeError:
        return None


def bound_body(
    raw: Any,
    deadline: Deadline,
    request: object,
    on_cut: Callable[[T], None],
    context: T,
) -> bool:
    """Make every network wait while reading ``raw`` end at ``deadline``; False if not possible.

    ``on_cut(context)`` is called when the deadline cuts the body.
    """
    socket_io = _socket_io(raw)
    if socket_io is None:
        return False
    sock = socket_io._sock
    socket_io._sock = _DeadlineSocket(sock, deadline.expires_at, sock.gettimeout())
    cls, ref = type(raw), weakref.ref(raw)
    read, read_chunked = cls.read, cls.read_chunked

    def convert(error: ReadTimeoutError) -> DeadlineTimeout | None:
        if _monotonic() < deadline.expires_at - _TOLERANCE:
            return None  # the caller's own read timeout fired first: requests' error stands
        on_cut(context)
        return DeadlineTimeout(
            f"response body still arriving at the request deadline "
            f"({deadline.budget:.3f}s, {deadline.source}); cut by Bastion",
            phase="body",
            deadline=deadline,
            request=request,
        )

    def bounded_read(*args: Any, **kwargs: Any) -> bytes:
        try:
            return read(ref(), *args, **kwargs)  # type: ignore[no-any-return]
        except ReadTimeoutError as error:
            cut = convert(error)
            if cut is None:
                raise
            raise cut from error

    def bounded_chunks(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        try:
            yield from read_chunked(ref(), *args, **kwargs)
        except ReadTimeoutError as error:
            cut = convert(error)
            if cut is None:
                raise
            raise cut from error

    raw.read = bounded_read
    if raw.chunked:  # read_chunked refuses other bodies: nothing to bound there
        raw.read_chunked = bounded_chunks
    return True


def watch_body(raw: Any, deadline: Deadline, on_overrun: Callable[[T], None], context: T) -> bool:
    """Call ``on_overrun(context)`` once if a read of ``raw`` ends after ``deadline``; change
    nothing."""
    if _socket_io(raw) is None:
        return False
    cls, ref = type(raw), weakref.ref(raw)
    read, read_chunked = cls.read, cls.read_chunked
    expires_at = deadline.expires_at
    reported = False

    def check() -> None:
        nonlocal reported
        if not reported and _monotonic() >= expires_at:
            reported = True
            on_overrun(context)

    def watched_read(*args: Any, **kwargs: Any) -> bytes:
        try:
            return read(ref(), *args, **kwargs)  # type: ignore[no-any-return]
        finally:
            check()

    def watched_chunks(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        try:
            for chunk in read_chunked(ref(), *args, **kwargs):
                check()
                yield chunk
        finally:
            check()

    raw.read = watched_read
    if raw.chunked:
        raw.read_chunked = watched_chunks
    return True
