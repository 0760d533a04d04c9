"""A total-time limit on reading a response body, which requests and urllib3 do not have.

Their read timeout applies to each socket read: a server sending one byte every half
second never trips ``timeout=1.0``, nor urllib3's ``Timeout(total=1.0)`` (its total is
spent by the time the body is read). So the limit has to be in the reads themselves.

:func:`bound_body` puts a thin proxy in front of the response's socket, below
http.client's buffer: before each ``recv_into`` it lowers the socket timeout to the
time left (never raising it above the caller's read timeout), and refuses to wait at
all once the deadline has passed. urllib3 turns that socket timeout into its
``ReadTimeoutError`` and throws the connection away (it is mid-body, so it cannot go
back to the pool). The response's ``read``/``read1``/``read_chunked`` are shadowed on
the instance to turn that error into :class:`DeadlineTimeout`, before requests'
``iter_content`` would turn it into a ``ConnectionError``. Bytes already buffered are
still served after the deadline: only waiting on the network is refused. The shadows
hold the response weakly: a response referring to itself would be freed only by the
cyclic garbage collector, which costs more than everything else here together.

:func:`watch_body` is the observe-mode twin: it changes nothing and reports once if the
body was still being read when the deadline passed.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from urllib3.exceptions import ReadTimeoutError

from instrumentation.http._errors import DeadlineTimeout
from middleware.deadline import Deadline

__all__ = ["bound_body", "watch_body"]

_monotonic = time.monotonic
# A socket timeout fires at, not after, the time asked; allow for clock granularity.
_TOLERANCE = 0.005
_READERS = ("read", "read1")


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

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _socket_io(raw: object) -> Any:
    """The ``socket.SocketIO`` under a urllib3 response, or None (closed, or not a socket)."""
    original = getattr(raw, "_fp", None)  # http.client.HTTPResponse
    buffered = getattr(original, "fp", None)  # io.BufferedReader, None once fully read
    socket_io = getattr(buffered, "raw", None)
    sock = getattr(socket_io, "_sock", None)
    if sock is None or not hasattr(sock, "recv_into") or not hasattr(sock, "settimeout"):
        return None
    return socket_io


def bound_body(
    raw: object,
    deadline: Deadline,
    request: object,
    on_cut: Callable[[], None],
) -> bool:
    """Make every network wait while reading ``raw`` end at ``deadline``; False if not possible."""
    socket_io = _socket_io(raw)
    if socket_io is None:
        return False
    sock = socket_io._sock
    socket_io._sock = _DeadlineSocket(sock, deadline.expires_at, sock.gettimeout())

    def convert(error: ReadTimeoutError) -> DeadlineTimeout | None:
        if _monotonic() < deadline.expires_at - _TOLERANCE:
            return None  # the caller's own read timeout fired first: requests' error stands
        on_cut()
        return DeadlineTimeout(
            f"response body still arriving at the request deadline "
            f"({deadline.budget:.3f}s, {deadline.source}); cut by Bastion",
            phase="body",
            deadline=deadline,
            request=request,
        )

    for name in _READERS:
        _shadow(raw, name, convert)
    _shadow_chunked(raw, convert)
    return True


def _unbound(raw: object, name: str) -> tuple[Callable[..., Any], weakref.ref[Any]] | None:
    """The class's own method and a weak reference to ``raw`` (no reference cycle)."""
    function = getattr(type(raw), name, None)
    if function is None or name in vars(raw):
        return None
    return function, weakref.ref(raw)


def _shadow(
    raw: object, name: str, convert: Callable[[ReadTimeoutError], DeadlineTimeout | None]
) -> None:
    found = _unbound(raw, name)
    if found is None:
        return
    original, ref = found

    def bounded(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(ref(), *args, **kwargs)
        except ReadTimeoutError as error:
            cut = convert(error)
            if cut is None:
                raise
            raise cut from error

    setattr(raw, name, bounded)


def _shadow_chunked(
    raw: object, convert: Callable[[ReadTimeoutError], DeadlineTimeout | None]
) -> None:
    found = _unbound(raw, "read_chunked")
    if found is None:
        return
    original, ref = found

    def bounded(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        try:
            yield from original(ref(), *args, **kwargs)
        except ReadTimeoutError as error:
            cut = convert(error)
            if cut is None:
                raise
            raise cut from error

    raw.read_chunked = bounded  # type: ignore[attr-defined]


def watch_body(raw: object, deadline: Deadline, on_overrun: Callable[[], None]) -> bool:
    """Call ``on_overrun`` once if a read of ``raw`` ends after ``deadline``; change nothing."""
    if _socket_io(raw) is None:
        return False
    reported = False

    def check() -> None:
        nonlocal reported
        if not reported and _monotonic() >= deadline.expires_at:
            reported = True
            on_overrun()

    for name in (*_READERS, "read_chunked"):
        found = _unbound(raw, name)
        if found is None:
            continue
        if name == "read_chunked":
            setattr(raw, name, _watched_chunks(*found, check))
        else:
            setattr(raw, name, _watched(*found, check))
    return True


def _watched(
    original: Callable[..., Any], ref: weakref.ref[Any], check: Callable[[], None]
) -> Callable[..., Any]:
    def watched(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(ref(), *args, **kwargs)
        finally:
            check()

    return watched


def _watched_chunks(
    original: Callable[..., Iterator[bytes]], ref: weakref.ref[Any], check: Callable[[], None]
) -> Callable[..., Iterator[bytes]]:
    def watched(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        try:
            for chunk in original(ref(), *args, **kwargs):
                check()
                yield chunk
        finally:
            check()

    return watched
