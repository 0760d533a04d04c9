"""One watchdog thread per process for the WSGI deadlines.

Python cannot stop a running thread, and ``signal.setitimer`` works only in the main
thread, so a WSGI deadline is watched from the side: every request registers a
:class:`WatchedRequest` (a dict store, no lock), and one daemon thread keeps the
in-flight deadlines in a heap and sleeps until the earliest. No thread per request,
no timer object per request.

At expiry the watchdog:

1. under the heap's lock, takes the request thread's Python stack
   (``sys._current_frames()``, without reading source files);
2. calls the owner's ``annotate`` (the span event: it must be on the span before the
   request can end it);
3. in enforce mode, under the lock again, raises :class:`DeadlineExceeded` in the
   request's thread through ``PyThreadState_SetAsyncExc`` (an *asynchronous
   exception*), but only while the request is still registered and inside the app;
4. calls the owner's ``report`` (the log record with the full stack).

The honest limit: an asynchronous exception lands when the thread next runs Python
bytecode. A thread blocked in C (``time.sleep``, ``socket.recv``, a C driver) sees it
only when that call returns, which is why every outbound call must carry a timeout
taken from :func:`middleware.deadline.remaining`.

The race that matters is an exception landing after its request has finished (in the
server, or in the next request on the same thread). It cannot: the request thread
ends its registration under the same lock the watchdog injects under, and clears any
exception still pending on its thread state while holding it (``SetAsyncExc(tid,
NULL)``), so once :meth:`Watchdog.finish` returns no exception of that request exists.
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
from typing import Any, Final, Protocol

from middleware.deadline._context import DeadlineExceeded
from middleware.deadline.report import capture_stack

__all__ = [
    "ExpiryHandler",
    "InjectedDeadlineExceeded",
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
    def annotate(self, request: WatchedRequest, info: Any) -> None: ...

    def report(self, request: WatchedRequest, info: Any) -> None: ...


class WatchedRequest:
    """One in-flight request as the watchdog sees it.

    ``owner.annotate(request, info)`` and ``owner.report(request, info)`` are called
    from the watchdog thread, outside its lock, once the deadline has passed
    (observe and enforce alike), before and after any exception is raised.
    """

    __slots__ = (
        "done",
        "enforce",
        "expires_at",
        "fired",
        "in_app",
        "info",
        "injected",
        "outer",
        "owner",
        "stack",
        "thread_id",
    )

    def __init__(
        self,
        expires_at: float,
        thread_id: int,
        enforce: bool,
        owner: ExpiryHandler,
        info: Any,
    ) -> None:
        self.expires_at = expires_at
        self.thread_id = thread_id
        self.enforce = enforce
        self.owner = owner
        self.info = info  # whatever the owner needs at expiry; dropped at finish
        self.in_app = True  # inside app code, where an injected exception belongs
        self.done = False
        self.fired = False
        self.injected = False
        self.stack: traceback.StackSummary | None = None
        self.outer: WatchedRequest | None = None


#: The longest the watchdog sleeps: it looks at the in-flight requests at least this often.
_TICK: Final = 1.0


class Watchdog:
    """The process's in-flight deadlines and the thread that watches them.

    A WSGI request runs in one thread from start to end, so the in-flight requests are
    a dict ``thread id -> request`` (a nested registration keeps the outer one in
    ``outer``). Registering is a dict store; finishing flips a flag (the entry is
    overwritten by the thread's next request). The watchdog heaps the live deadlines
    each time it wakes (at most one per thread, so this is cheap), handles the expired
    ones and sleeps until the earliest of the rest, or a second at most; a request
    wakes it only if its deadline comes before that (a budget under a second).

    The request path takes no lock. :meth:`finish` takes it only if the watchdog
    already fired for the request: the watchdog marks a request ``fired`` *before*
    it checks ``done``, and a request sets ``done`` before it checks ``fired``, so
    under the GIL one of them always sees the other (the injection and the clearing
    of a pending exception both happen under the lock).
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: threads do not survive fork (gunicorn's workers
        # are forked, with --preload after the app and its middleware exist).
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._live: dict[int, WatchedRequest] = {}
        self._wake_at = 0.0
        self._thread: threading.Thread | None = None
        self.injections = 0

    # --- request threads -----------------------------------------------------------
    def watch(self, request: WatchedRequest) -> None:
        """Register ``request`` (its ``thread_id`` must be the calling thread's)."""
        if self._thread is None:
            self._start()
        live = self._live
        outer = live.get(request.thread_id)
        request.outer = None if outer is None or outer.done else outer
        live[request.thread_id] = request
        if request.expires_at < self._wake_at:  # a budget under a second, at most
            with self._lock:
                self._wake.notify()

    def finish(self, request: WatchedRequest) -> None:
        """End the registration. Call from the request's own thread; afterwards no
        exception of this request can be raised in it."""
        request.done = True
        if request.fired:
            with self._lock:
                if request.injected:
                    _clear_async_exc(request.thread_id, None)
        request.info = None
        if request.outer is not None:
            self._live[request.thread_id] = request.outer
            request.outer = None

    def in_flight(self) -> int:
        """Registered requests not yet finished (for tests and benchmarks)."""
        count = 0
        for first in list(self._live.values()):
            request: WatchedRequest | None = first
            while request is not None:
                count += not request.done
                request = request.outer
        return count

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
                for request, info in expired:
                    _safely(request.owner.annotate, request, info)
                self._enforce(expired)
                for request, info in expired:
                    _safely(request.owner.report, request, info)
            except Exception:  # never let the watchdog die
                logger.exception("deadline watchdog failed; going on")
                time.sleep(0.1)

    def _heap_of_live(self) -> list[tuple[float, int, WatchedRequest]]:
        """The live, not yet fired deadlines as a heap (earliest first)."""
        heap = []
        for first in list(self._live.values()):  # a copy: request threads write to it
            request: WatchedRequest | None = first
            while request is not None:
                if not request.done and not request.fired:
                    heap.append((request.expires_at, id(request), request))
                request = request.outer
        heapq.heapify(heap)
        return heap

    def _wait_for_expiries(self) -> list[tuple[WatchedRequest, Any]]:
        with self._lock:
            while True:
                now = time.monotonic()
                heap = self._heap_of_live()
                if heap and heap[0][0] <= now:
                    break
                wake_at = min(heap[0][0], now + _TICK) if heap else now + _TICK
                self._wake_at = wake_at
                # Whoever registered before this second look is seen by it; whoever
                # registers after it reads the new wake-up time and notifies if sooner.
                again = self._heap_of_live()
                if again and again[0][0] < wake_at:
                    continue
                self._wake.wait(wake_at - now)
            frames = sys._current_frames()
            expired = []
            while heap and heap[0][0] <= now:
                request = heapq.heappop(heap)[2]
                if request.done:
                    continue
                request.fired = True  # before done is read again (see the class doc)
                request.stack = capture_stack(frames.get(request.thread_id))
                expired.append((request, request.info))
            del frames
            return expired

    def _enforce(self, expired: list[tuple[WatchedRequest, Any]]) -> None:
        with self._lock:
            for request, _ in expired:
                if (
                    request.enforce
                    and request.in_app
                    and not request.done
                    and _set_async_exc is not None
                    and _set_async_exc(request.thread_id, InjectedDeadlineExceeded) == 1
                ):
                    request.injected = True
                    self.injections += 1


def _safely(step: Any, request: WatchedRequest, info: Any) -> None:
    try:
        step(request, info)
    except Exception:
        logger.exception("recording a deadline overrun failed")


_watchdog = Watchdog()


def get_watchdog() -> Watchdog:
    """The process's watchdog; its thread starts with the first request."""
    return _watchdog


os.register_at_fork(after_in_child=_watchdog._reset)
