"""One watchdog thread per process for the WSGI deadlines.

Python cannot stop a running thread, and ``signal.setitimer`` works only in the main
thread, so a WSGI deadline is watched from the side. Each server thread owns one
:class:`WatchedRequest`, registered here once and reused by every request the thread
runs: a request writes its expiry into it when it starts and ``None`` when it ends,
and takes no lock. One daemon thread looks at the registrations, heaps the running
deadlines and sleeps until the earliest (a second at most).

At expiry the watchdog:

1. under its lock, marks the request *fired*, takes the request thread's Python stack
   (``sys._current_frames()``, without reading source files) and asks the owner
   (the middleware) what it needs to know about the request, from that stack;
2. calls the owner's ``annotate`` (the span event it can add at once);
3. in enforce mode, under the lock again, raises :class:`DeadlineExceeded` in the
   request's thread through ``PyThreadState_SetAsyncExc`` (an *asynchronous
   exception*), but only while that same request is still running inside the app;
4. calls the owner's ``report`` (the log record with the full stack).

The honest limit: an asynchronous exception lands when the thread next runs Python
bytecode. A thread blocked in C (``time.sleep``, ``socket.recv``, a C driver) sees it
only when that call returns, which is why every outbound call must carry a timeout
taken from :func:`middleware.deadline.remaining`.

The race that matters is an exception landing after its request has finished (in the
server, or in the thread's next request). It cannot: a request is identified by its
registration *and* its expiry, the watchdog marks ``fired_at`` before it looks at the
expiry again, and the request clears its expiry before it looks at ``fired_at``; so
under the GIL one of them always sees the other. A request that sees it was fired
ends under the lock the watchdog injects under and clears any exception still
pending on its thread (``SetAsyncExc(tid, NULL)``): once :meth:`Watchdog.settle`
returns, no exception of that request exists.
"""

from __future__ import annotations

import ctypes
import heapq
import logging
import os
import sys
import threading
import time
import traceback
import weakref
from types import FrameType
from typing import Any, Final, NamedTuple, Protocol

from middleware.deadline._context import DeadlineExceeded, _thread
from middleware.deadline.report import capture_stack

__all__ = [
    "Expiry",
    "ExpiryHandler",
    "InjectedDeadlineExceeded",
    "RequestInfo",
    "Watchdog",
    "WatchedRequest",
    "get_watchdog",
]

logger = logging.getLogger("bastion.deadline")


class InjectedDeadlineExceeded(DeadlineExceeded):
    """The request deadline passed; raised into the request thread by the watchdog."""

    def __init__(self, message: str = "request deadline exceeded (raised by the watchdog)"):
        super().__init__(message)


def _async_exc_functions() -> tuple[Any, Any]:
    """``PyThreadState_SetAsyncExc`` typed to raise, and typed to pass NULL (which
    clears a pending asynchronous exception); ``(None, None)`` off CPython, where
    enforce mode then records like observe and only replaces late answers."""
    try:
        raise_in = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except (AttributeError, ValueError):
        logger.warning("no PyThreadState_SetAsyncExc here: deadlines cannot interrupt threads")
        return None, None
    raise_in.argtypes = (ctypes.c_ulong, ctypes.py_object)
    raise_in.restype = ctypes.c_int
    clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
        ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
    )
    return raise_in, clear


_set_async_exc, _clear_async_exc = _async_exc_functions()


class ExpiryHandler(Protocol):
    """The owner of a request: the middleware that registered it."""

    #: Raise the exception in the request's thread (enforce mode), or only record.
    enforce: bool

    def inspect(self, request: WatchedRequest, frame: FrameType | None) -> Any:
        """Under the watchdog's lock, with the request thread's innermost frame:
        whatever :meth:`annotate` and :meth:`report` will need (kept in
        :attr:`Expiry.details`). Must be quick and must not block."""

    def annotate(self, expiry: Expiry) -> None:
        """Before any exception is raised: the span event, where it can be added now."""

    def report(self, expiry: Expiry) -> None:
        """After: the log record with the full stack."""


class RequestInfo(NamedTuple):
    """Who registered the running request, and its budget. A middleware builds the
    one for its default budget once, so a request stores one reference."""

    owner: ExpiryHandler
    budget: float
    source: str


class Expiry(NamedTuple):
    """What the watchdog saw when a request's deadline passed."""

    request: WatchedRequest
    expires_at: float
    info: RequestInfo
    stack: traceback.StackSummary
    details: Any


class WatchedRequest:
    """A thread's registration: the request it is running, reused from one request
    to the next (see the module doc).

    ``expires_at`` is the running request's expiry, None between requests; ``info``
    says who runs it and with which budget. The request writes both; the watchdog
    writes ``fired_at`` (the expiry it fired for), ``injected`` and ``expiry``.
    ``in_app`` is False while the request runs server code (between the chunks of a
    streamed body), where no exception may be raised.
    """

    __slots__ = (
        "__weakref__",
        "expires_at",
        "expiry",
        "fired_at",
        "in_app",
        "info",
        "injected",
        "outer",
        "thread_id",
    )

    def __init__(self, thread_id: int | None = None) -> None:
        self.thread_id = threading.get_ident() if thread_id is None else thread_id
        self.expires_at: float | None = None
        self.fired_at: float | None = None
        self.info: RequestInfo | None = None
        self.injected = False
        self.in_app = True
        self.expiry: Expiry | None = None
        self.outer: WatchedRequest | None = None  # the registration a nested one hides

    # What the deadline context reads (middleware.deadline.current()).
    @property
    def budget(self) -> float:
        return self.info.budget if self.info is not None else 0.0

    @property
    def source(self) -> str:
        return self.info.source if self.info is not None else "request"


#: The longest the watchdog sleeps: it looks at the registrations at least this often.
TICK: Final = 1.0


class Watchdog:
    """The process's registrations and the thread that watches them.

    ``thread id -> registration``; a nested registration (a WSGI app calling another
    one in the same thread) keeps the one it hides in ``outer``. The watchdog heaps
    the running deadlines each time it wakes (at most a few per thread, so this is
    cheap), handles the expired ones and sleeps until the earliest of the rest, or
    :data:`TICK` at most; a request whose budget is under :data:`TICK` wakes it
    through :meth:`notice`.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: threads do not survive fork (gunicorn's workers
        # are forked, with --preload after the app and its middleware exist).
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        # Weak: a thread's registration belongs to the thread (its thread-local), and
        # goes when the thread ends; a server with a thread per request leaves none.
        self._live: weakref.WeakValueDictionary[int, WatchedRequest] = weakref.WeakValueDictionary()
        self._wake_at = 0.0
        self._thread: threading.Thread | None = None
        self.injections = 0

    # --- request threads -----------------------------------------------------------
    def watch(self, request: WatchedRequest, *, nested: bool = False) -> None:
        """Register ``request`` for its thread (call from that thread, and keep it
        referenced: the watchdog holds it weakly). A ``nested`` registration keeps
        the running one it hides as ``outer``; otherwise whatever is registered under
        the thread's id is left over from an ended thread, and is dropped."""
        if self._thread is None:
            self._start()
        live = self._live
        outer = live.get(request.thread_id) if nested else None
        request.outer = outer if outer is not None and outer.expires_at is not None else None
        live[request.thread_id] = request

    def unwatch(self, request: WatchedRequest) -> None:
        """Remove a nested registration, putting back the one it hid."""
        if self._live.get(request.thread_id) is request:
            if request.outer is not None:
                self._live[request.thread_id] = request.outer
            else:
                del self._live[request.thread_id]
        request.outer = None

    def registered(self, request: WatchedRequest) -> bool:
        """Whether ``request`` is the registration the watchdog sees for its thread."""
        return self._live.get(request.thread_id) is request

    def notice(self, expires_at: float) -> None:
        """A request started whose deadline may come before the watchdog next wakes."""
        if expires_at < self._wake_at:
            with self._lock:
                self._wake.notify()

    def settle(self, request: WatchedRequest) -> bool:
        """For a request that has cleared its expiry and found it was fired: take the
        lock, clear any exception still pending for it, and say whether one was
        raised (``injected``). Call from the request's own thread."""
        with self._lock:
            injected = request.injected
            if injected:
                request.injected = False
                if _clear_async_exc is not None:
                    _clear_async_exc(request.thread_id, None)
            return injected

    def in_flight(self) -> int:
        """Requests running now (for tests and benchmarks)."""
        count = 0
        for first in self._registrations():
            request: WatchedRequest | None = first
            while request is not None:
                count += request.expires_at is not None
                request = request.outer
        return count

    def _registrations(self) -> list[WatchedRequest]:
        """The registrations now, copied in one step (``valuerefs()`` is a C-level
        copy of the dict, which request threads write to meanwhile; iterating the
        weak dictionary itself would run Python code between items)."""
        found = []
        for ref in self._live.valuerefs():
            request = ref()
            if request is not None:
                found.append(request)
        return found

    # --- the watchdog thread -------------------------------------------------------
    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="bastion-deadline-watchdog", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                expired = self._wait_for_expiries()
                for expiry in expired:
                    _safely(expiry.info.owner.annotate, expiry)
                self._enforce(expired)
                for expiry in expired:
                    _safely(expiry.info.owner.report, expiry)
            except Exception:  # never let the watchdog die
                logger.exception("deadline watchdog failed; going on")
                time.sleep(0.1)

    def _heap_of_live(self) -> list[tuple[float, int, WatchedRequest]]:
        """The running deadlines not yet fired, as a heap (earliest first)."""
        heap = []
        for first in self._registrations():
            request: WatchedRequest | None = first
            while request is not None:
                expires_at = request.expires_at  # read once: the request may end meanwhile
                if expires_at is not None and expires_at is not request.fired_at:
                    heap.append((expires_at, id(request), request))
                request = request.outer
        heapq.heapify(heap)
        return heap

    def _wait_for_expiries(self) -> list[Expiry]:
        with self._lock:
            while True:
                now = time.monotonic()
                heap = self._heap_of_live()
                if heap and heap[0][0] <= now:
                    break
                wake_at = min(heap[0][0], now + TICK) if heap else now + TICK
                self._wake_at = wake_at
                # Whoever started before this second look is seen by it; whoever starts
                # after it reads the new wake-up time and calls notice() if sooner.
                again = self._heap_of_live()
                if again and again[0][0] < wake_at:
                    continue
                self._wake.wait(wake_at - now)
            frames = sys._current_frames()
            expired = []
            while heap and heap[0][0] <= now:
                expires_at, _, request = heapq.heappop(heap)
                if request.expires_at is not expires_at:
                    continue  # it ended (or it is the thread's next request)
                request.fired_at = expires_at  # before the expiry is read again (module doc)
                info = request.info
                if request.expires_at is not expires_at or info is None:
                    continue
                frame = frames.get(request.thread_id)
                expiry = Expiry(
                    request,
                    expires_at,
                    info,
                    capture_stack(frame),
                    _safely_inspect(info.owner, request, frame),
                )
                request.expiry = expiry
                expired.append(expiry)
            del frames
            return expired

    def _enforce(self, expired: list[Expiry]) -> None:
        with self._lock:
            for expiry in expired:
                request = expiry.request
                if (
                    expiry.info.owner.enforce
                    and request.in_app
                    and request.expires_at is expiry.expires_at
                    and _set_async_exc is not None
                    and _set_async_exc(request.thread_id, InjectedDeadlineExceeded) == 1
                ):
                    request.injected = True
                    self.injections += 1


def _safely(step: Any, expiry: Expiry) -> None:
    try:
        step(expiry)
    except Exception:
        logger.exception("recording a deadline overrun failed")


def _safely_inspect(owner: ExpiryHandler, request: WatchedRequest, frame: FrameType | None) -> Any:
    try:
        return owner.inspect(request, frame)
    except Exception:
        logger.exception("inspecting a request past its deadline failed")
        return None


_watchdog = Watchdog()


def get_watchdog() -> Watchdog:
    """The process's watchdog; its thread starts with the first registration."""
    return _watchdog


def _after_fork_in_child() -> None:
    # Only the forking thread lives on in the child, and without the watchdog's
    # thread. It forgets its registration too: its next request registers afresh,
    # which starts a watchdog of the child's own.
    _watchdog._reset()
    _thread.request = None


os.register_at_fork(after_in_child=_after_fork_in_child)
