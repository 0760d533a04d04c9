"""A total-time limit on reading a response body, which requests and urllib3 do not have.

Their read timeout applies to each socket read: a server sending one byte every half
second never trips ``timeout=1.0``, nor urllib3's ``Timeout(total=1.0)`` (its total is
spent by the time the body is read). So the limit has to be in the reads themselves.

:func:`bound_body` switches the ``socket.SocketIO`` below http.client's buffer to a
subclass that, before each socket read, lowers the socket timeout to the time left
(never above the caller's read timeout) and refuses to wait at all once the deadline
has passed. urllib3 turns that socket timeout into its ``ReadTimeoutError`` and throws
the connection away (it is mid-body, so it cannot go back to the pool). To turn that
error into :class:`DeadlineTimeout` before requests' ``iter_content`` makes a
``ConnectionError`` of it, :func:`converting_reads` replaces
urllib3's ``HTTPResponse.read`` and ``read_chunked`` (what ``stream``, ``iter_content``,
``.content`` and file-like use of ``raw`` go through), once, at instrument time; the
deadline rides on the response as one attribute, which they read only when a read
timed out (the response's class is never switched). ``raw.read1`` is bounded too but
raises urllib3's ``ReadTimeoutError``. Bytes already buffered are still served after
the deadline: only waiting on the network is refused.

:func:`watch_body` is the observe-mode twin: it changes nothing and reports once if the
body was still being read when the deadline passed.
"""

from __future__ import annotations

import functools
import http.client
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from urllib3.exceptions import ReadTimeoutError

from bastion.instrumentation.http._errors import DeadlineTimeout
from bastion.middleware.deadline import Deadline, current

__all__ = [
    "DeadlineHTTPResponse",
    "bound_body",
    "converting_reads",
    "unsupported_socket",
    "watch_body",
    "watching_reads",
]

T = TypeVar("T")
_monotonic = time.monotonic
# A socket timeout fires at, not after, the time asked; allow for clock granularity.
_TOLERANCE = 0.005
# The most a socket wait may outlast the deadline before its timeout is lowered.
_SLACK = 0.01


class _DeadlineSocketIO(socket.SocketIO):
    """``socket.SocketIO`` whose every wait on the socket ends by the deadline.

    An existing SocketIO is switched to this class (no new object, nothing to forward);
    ``_bastion_expires_at`` and ``_bastion_timeout`` (the socket's current timeout) ride
    on the instance. The timeout is lowered only when it would overrun the deadline by
    more than ``_SLACK``: ``settimeout`` costs system calls, and a socket timeout of
    19.99 s instead of 20 s changes nothing worth them.
    """

    _bastion_expires_at: float
    _bastion_timeout: float | None
    _sock: socket.socket

    def readinto(self, buffer: Any) -> int | None:
        # The usual case (well within the deadline): one clock read, two comparisons, no
        # system call; SocketIO.readinto called directly rather than through super().
        left = self._bastion_expires_at - _monotonic()
        if left <= 0.0:
            raise TimeoutError("Bastion: request deadline reached while reading")
        timeout = self._bastion_timeout
        if timeout is None or left < timeout - _SLACK:
            self._sock.settimeout(left)
            self._bastion_timeout = left
        return _socket_io_readinto(self, buffer)


_socket_io_readinto = socket.SocketIO.readinto


_SOCKET_IOS = (socket.SocketIO, _DeadlineSocketIO)


def _bound_socket_io(socket_io: Any, expires_at: float) -> None:
    """Switch a plain ``SocketIO`` to :class:`_DeadlineSocketIO` (its read timeout kept as
    the longest single wait)."""
    socket_io._bastion_expires_at = expires_at
    socket_io._bastion_timeout = socket_io._sock.gettimeout()
    socket_io.__class__ = _DeadlineSocketIO


class DeadlineHTTPResponse(http.client.HTTPResponse):
    """http.client's response whose socket waits end by the current deadline, from the
    status line on.

    Installed as urllib3's ``HTTPConnection.response_class`` under ``BASTION_HTTP=enforce``,
    so a server dripping its status line and headers is cut at the deadline as well as
    one dripping the body. Without a deadline it is http.client's response, plus one
    context-variable read.
    """

    def __init__(
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: None = None
    ) -> None:
        _http_response_init(self, sock, debuglevel, method, url)
        deadline = current()
        if deadline is not None:
            try:
                socket_io = getattr(self.fp, "raw", None)
                # Only a standard-library socket (plain or ssl) has the interface the
                # cut uses; pyOpenSSL's WrappedSocket and unknown ones are left alone
                # here, and reported by the guard when it meets them (bound_body).
                if type(socket_io) is socket.SocketIO and isinstance(
                    getattr(socket_io, "_sock", None), socket.socket
                ):
                    _bound_socket_io(socket_io, deadline.expires_at)
            except Exception:  # never an exception of Bastion's in the caller's response
                pass


_http_response_init = http.client.HTTPResponse.__init__


def _below_buffer(raw: Any) -> Any:
    """What sits under http.client's read buffer of a urllib3 response (normally a
    ``socket.SocketIO``), or None once the body is read or when the chain is another."""
    try:
        # urllib3 response -> http.client response -> io.BufferedReader (None once the
        # body is read) -> its raw stream
        return raw._fp.fp.raw
    except AttributeError:
        return None


def _socket_io(raw: Any) -> Any:
    """The ``socket.SocketIO`` under a urllib3 response, or None (closed, or not a socket)."""
    socket_io = _below_buffer(raw)
    # A SocketIO (switched already by DeadlineHTTPResponse, or not) over a plain or TLS
    # socket.
    if type(socket_io) in _SOCKET_IOS and isinstance(
        getattr(socket_io, "_sock", None), socket.socket
    ):
        return socket_io
    return None


# (deadline, request, on_cut, context): a plain tuple, as cheap as a record gets.
_CutInfo = tuple[Deadline, object, Callable[[Any], None], object]


_Read = Callable[..., bytes]
_ReadChunked = Callable[..., Iterator[bytes]]


def converting_reads(read: _Read, read_chunked: _ReadChunked) -> tuple[_Read, _ReadChunked]:
    """urllib3's ``HTTPResponse.read`` and ``read_chunked``, a deadline cut of a bounded
    body coming out of them as :class:`DeadlineTimeout` (enforce).

    Plain functions, set on the class once at instrument time.
    """

    @functools.wraps(read)
    def read_converting(
        self: Any,
        amt: int | None = None,
        decode_content: bool | None = None,
        cache_content: bool = False,
    ) -> bytes:
        # urllib3's parameters spelled out (1.26 and 2.x alike): no argument repacking.
        try:
            return read(self, amt, decode_content, cache_content)
        except ReadTimeoutError as error:
            cut = _cut_for(self, error)
            if cut is None:
                raise
            raise cut from error

    @functools.wraps(read_chunked)
    def read_chunked_converting(self: Any, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        try:
            yield from read_chunked(self, *args, **kwargs)
        except ReadTimeoutError as error:
            cut = _cut_for(self, error)
            if cut is None:
                raise
            raise cut from error

    return read_converting, read_chunked_converting


def _cut_for(raw: Any, error: ReadTimeoutError) -> DeadlineTimeout | None:
    info = getattr(raw, "_bastion_cut", None)
    return None if info is None else _convert(info, error)


def _convert(info: _CutInfo, error: ReadTimeoutError) -> DeadlineTimeout | None:
    deadline, request, on_cut, context = info
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


def _check_watch(raw: Any) -> None:
    watch = raw.__dict__.get("_bastion_watch")  # [expires_at, on_overrun, context, reported]
    if watch is not None and not watch[3] and _monotonic() >= watch[0]:
        watch[3] = True
        watch[1](watch[2])


def watching_reads(read: _Read, read_chunked: _ReadChunked) -> tuple[_Read, _ReadChunked]:
    """urllib3's ``HTTPResponse.read`` and ``read_chunked``, reporting a read of a watched
    body that ended after the deadline (observe); as :func:`converting_reads`."""

    @functools.wraps(read)
    def read_watching(
        self: Any,
        amt: int | None = None,
        decode_content: bool | None = None,
        cache_content: bool = False,
    ) -> bytes:
        try:
            return read(self, amt, decode_content, cache_content)
        finally:
            _check_watch(self)

    @functools.wraps(read_chunked)
    def read_chunked_watching(self: Any, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        try:
            for chunk in read_chunked(self, *args, **kwargs):
                _check_watch(self)
                yield chunk
        finally:
            _check_watch(self)

    return read_watching, read_chunked_watching


def unsupported_socket(raw: Any) -> str | None:
    """The type of the socket under a urllib3 response when the deadline cannot be put
    on it (anything but a standard-library socket: pyOpenSSL's ``WrappedSocket``, a
    test double, an unknown transport), else None."""
    socket_io = _below_buffer(raw)
    if type(socket_io) is not socket.SocketIO:
        return None
    sock = getattr(socket_io, "_sock", None)
    if sock is None or isinstance(sock, socket.socket):
        return None
    kind = type(sock)
    return f"{kind.__module__}.{kind.__qualname__}"


def bound_body(
    raw: Any,
    deadline: Deadline,
    request: object,
    on_cut: Callable[[T], None],
    context: T,
) -> bool:
    """Make every network wait while reading ``raw`` end at ``deadline``; False if not possible
    (no socket under the body, a socket other than the standard library's: see
    :func:`unsupported_socket`).

    ``on_cut(context)`` is called when the deadline cuts the body. The response itself is
    not changed beyond one attribute: the reads from :func:`converting_reads`,
    installed once on urllib3's ``HTTPResponse`` under enforce, find it there.
    """
    socket_io = _below_buffer(raw)
    if type(socket_io) is _DeadlineSocketIO:  # switched by DeadlineHTTPResponse already
        switch_socket_io = False
    elif type(socket_io) is socket.SocketIO:
        if not isinstance(getattr(socket_io, "_sock", None), socket.socket):
            return False
        switch_socket_io = True
    else:
        return False
    if "_bastion_cut" in raw.__dict__:  # bounded already
        return False
    raw._bastion_cut = (deadline, request, on_cut, context)
    if switch_socket_io:
        _bound_socket_io(socket_io, deadline.expires_at)
    return True


def watch_body(raw: Any, deadline: Deadline, on_overrun: Callable[[T], None], context: T) -> bool:
    """Call ``on_overrun(context)`` once if a read of ``raw`` ends after ``deadline``; change
    nothing but one attribute, which the reads from :func:`watching_reads` (installed
    once on urllib3's ``HTTPResponse`` under observe) look at."""
    if _socket_io(raw) is None or "_bastion_watch" in raw.__dict__:
        return False
    raw._bastion_watch = [deadline.expires_at, on_overrun, context, False]
    return True
