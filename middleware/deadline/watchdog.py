"""One watchdog thread per process for the WSGI deadlines.

Python cannot stop a running thread, and ``signal.setitimer`` works only in the main
thread, so a WSGI deadline is watched from the side: every request registers a
:class:`WatchedRequest` in one heap ordered by expiry, and one daemon thread sleeps
until the earliest one. No thread per request, no timer object per request.

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
import itertools
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


_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int
# The same function typed to pass NULL, which clears a pending asynchronous exception.
_clear_async_exc = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
)


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


_Item = tuple[float, int, WatchedRequest]
_FOREVER: Final = float("inf")
#: Rebuild the heap without finished requests once they outnumber the live ones.
_COMPACT_AT: Final = 1024


class Watchdog:
    """The process's in-flight deadlines and the thread that watches them."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: threads do not survive fork (gunicorn's workers
        # are forked, with --preload after the app and its middleware exist).
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[_Item] = []
        self._seq = itertools.count()
        self._wake_at = _FOREVER
        self._finished_in_heap = 0
        self._thread: threading.Thread | None = None
        self.injections = 0

    # --- request threads -----------------------------------------------------------
    def watch(self, request: WatchedRequest) -> None:
        if self._thread is None:
            self._start()
        with self._lock:
            heapq.heappush(self._heap, (request.expires_at, next(self._seq), request))
            if request.expires_at < self._wake_at:  # rare under load: budgets are alike
                self._wake_at = request.expires_at
                self._wake.notify()
            if self._finished_in_heap > _COMPACT_AT and self._finished_in_heap * 2 > len(
                self._heap
            ):
                self._compact()

    def finish(self, request: WatchedRequest) -> None:
        """End the registration. Call from the request's own thread; afterwards no
        exception of this request can be raised in it."""
        with self._lock:
            if request.done:
                return
            request.done = True
            request.info = None
            if not request.fired:
                self._finished_in_heap += 1
            if request.injected:
                _clear_async_exc(request.thread_id, None)

    def in_flight(self) -> int:
        with self._lock:
            return sum(1 for _, _, r in self._heap if not r.done)

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

    def _wait_for_expiries(self) -> list[tuple[WatchedRequest, Any]]:
        heap = self._heap
        with self._lock:
            while True:
                now = time.monotonic()
                while heap and heap[0][2].done:
                    heapq.heappop(heap)
                    self._finished_in_heap -= 1
                if heap and heap[0][0] <= now:
                    break
                self._wake_at = heap[0][0] if heap else _FOREVER
                self._wake.wait(heap[0][0] - now if heap else None)
            frames = sys._current_frames()
            expired = []
            while heap and heap[0][0] <= now:
                request = heapq.heappop(heap)[2]
                if request.done:
                    self._finished_in_heap -= 1
                    continue
                request.fired = True
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
                    and _set_async_exc(request.thread_id, InjectedDeadlineExceeded) == 1
                ):
                    request.injected = True
                    self.injections += 1

    def _compact(self) -> None:
        self._heap[:] = [item for item in self._heap if not item[2].done]
        heapq.heapify(self._heap)
        self._finished_in_heap = 0


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
