"""The WSGI deadline's watchdog: one thread per process that notices overruns.

A WSGI request runs in one server thread from start to end. The middleware gives it a
:class:`Registration` (its expiry, budget, method and path) and the watchdog keeps the
registrations in a plain ``thread id -> registration`` dict. When a deadline passes it:

1. hands a report (the request's stack, taken without reading source files) to the
   :mod:`reporter <.report>` thread, which logs it and adds the span event. The
   watchdog itself never logs, never touches a span or a metric, and takes no lock a
   request thread could hold: the hang it exists to prevent cannot reach it;
2. in enforce mode, raises :class:`InjectedDeadlineExceeded` in the request's thread
   (``PyThreadState_SetAsyncExc``), but only at a *safe point*: while the thread's
   innermost frame is application code (:mod:`.safepoints`). Anywhere else it tries
   again every :data:`RETRY` seconds; a request stuck inside a library call is
   reported and left to that call's own timeout. It never interrupts on a
   free-threaded build (``sys._is_gil_enabled()`` false) or off CPython: there the
   deadline is cooperative only (outbound timeouts, :func:`~bastion.middleware.deadline.check`,
   the 504 for a late answer).

An exception must never land outside its request: not in Bastion's bookkeeping, not
in the server, not in the thread's next request. Two flags make that so without a
lock. The watchdog reports and raises only between setting ``busy`` and clearing it,
and only if ``ended`` is not set; a request ending sets ``ended``, then waits while
``busy`` is set, then clears whatever may still be pending on its thread
(``SetAsyncExc(tid, NULL)``): under the GIL one of the two always sees the other.
After :meth:`Watchdog.end` returns, no exception of that request exists. Once one
has been raised, the watchdog leaves the request alone: an app that swallows it is
answered 504 when it ends (its answer is late), and stays reported.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Mapping
from queue import Empty, SimpleQueue
from typing import Any, Final, Protocol

from bastion.middleware.deadline._context import DeadlineExceeded, running
from bastion.middleware.deadline.fanout import detached
from bastion.middleware.deadline.report import Overrun, Stack, capture_stack, get_reporter
from bastion.middleware.deadline.safepoints import AppCode

__all__ = [
    "InjectedDeadlineExceeded",
    "Registration",
    "Watchdog",
    "can_interrupt",
    "get_watchdog",
]

#: The longest the watchdog sleeps: it looks at the registrations at least this often.
TICK: Final = 1.0
#: How soon it tries again to interrupt a request that was not at a safe point.
RETRY: Final = 0.02
#: The interpreter's switch interval while an interrupted request has yet to see its
#: exception (the default is 5 ms): see Watchdog._hasten.
HASTENED_INTERVAL: Final = 0.0005


class InjectedDeadlineExceeded(DeadlineExceeded):
    """The request deadline passed; raised into the request thread by the watchdog."""

    def __init__(self, message: str = "request deadline exceeded (raised by the watchdog)"):
        super().__init__(message)


def _async_exc_functions() -> tuple[Any, Any]:
    """``PyThreadState_SetAsyncExc`` typed to raise, and typed to pass NULL (which
    clears a pending asynchronous exception); ``(None, None)`` where interrupting is
    not possible or not safe (off CPython, free-threaded builds)."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if is_gil_enabled is not None and not is_gil_enabled():
        return None, None
    try:
        raise_in = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except (AttributeError, ValueError):
        return None, None
    raise_in.argtypes = (ctypes.c_ulong, ctypes.py_object)
    raise_in.restype = ctypes.c_int
    clear = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
        ("PyThreadState_SetAsyncExc", ctypes.pythonapi)
    )
    return raise_in, clear


_set_async_exc, _clear_async_exc = _async_exc_functions()


def can_interrupt() -> bool:
    """Whether enforce mode can interrupt a running request here (CPython with a GIL)."""
    return _set_async_exc is not None


class Owner(Protocol):
    """The middleware that registered a request."""

    #: Interrupt the request at its deadline (enforce mode), or only report it.
    enforce: bool
    mode: Any

    def route_label(self, path: str) -> str: ...


class Registration:
    """One WSGI request running in one thread, as the watchdog sees it.

    The request writes ``ended`` and ``finished``; the watchdog writes ``busy``,
    ``injected``, ``reported`` and ``stack`` (and the request writes ``reported`` once
    it has ended). ``outer`` is the registration of a request this one runs inside (a
    WSGI app calling another in the same thread), put back when this one ends.

    The flags are class attributes until first written, so a request sets only what
    it knows at its start (this object is built for every request).
    """

    thread_id = 0
    outer: Registration | None = None
    serving = False  # the app's code is being run for it (a request inside is nested)
    ended = False  # the watchdog must leave it alone from now on
    finished = False  # ... and the thread's state is restored
    busy = False  # the watchdog is reporting or interrupting it right now
    injected = False
    reported = False
    annotated = False  # the request's span has its event
    stack: Stack | None = None  # where the watchdog found it

    def __init__(
        self,
        owner: Owner,
        expires_at: float,
        budget: float,
        source: str,
        environ: Mapping[str, Any],
    ) -> None:
        self.owner = owner
        self.expires_at = expires_at
        self.budget = budget
        self.source = source
        self.method = environ.get("REQUEST_METHOD", "")
        self.path = environ.get("PATH_INFO", "")


class Watchdog:
    """The process's registrations and the thread that watches them."""

    def __init__(self, app_code: AppCode | None = None) -> None:
        self.app_code = app_code if app_code is not None else AppCode()
        self._reset()

    def _reset(self) -> None:
        # Also run in a forked child: threads do not survive fork (gunicorn's workers
        # are forked, with --preload after the app and its middleware exist).
        saved: float | None = getattr(self, "_saved_interval", None)
        if saved is not None:  # forked while hastened
            sys.setswitchinterval(saved)
        running.clear()  # a forked child has only the forking thread, between requests
        self._live: dict[int, Registration] = running  # type: ignore[assignment]
        self._wake: SimpleQueue[None] = SimpleQueue()
        self._wake_at = 0.0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._saved_interval: float | None = None

    # --- request threads -------------------------------------------------------------
    def begin(self, registration: Registration) -> None:
        """Register the request the calling thread is about to serve."""
        if self._thread is None:
            self._start()
        live = self._live
        thread_id = registration.thread_id = _get_ident()
        outer = live.get(thread_id)
        while outer is not None and not outer.serving:
            # Left over on this thread: a streamed body its server dropped without
            # closing. It ends now, or it would cap every later request here.
            self.end(outer)
            outer = live.get(thread_id)
        if outer is not None:
            # A request inside another (a WSGI app calling one): no later than the outer.
            registration.outer = outer
            if outer.expires_at < registration.expires_at:
                registration.expires_at = outer.expires_at
                registration.budget, registration.source = outer.budget, outer.source
        live[thread_id] = registration
        if registration.expires_at < self._wake_at:
            self._wake.put(None)  # C-level and never blocks: no lock to be caught holding

    def end(self, registration: Registration) -> bool:
        """End the request's registration, from its own thread; True if the watchdog
        raised its exception in it. Once this returns, no exception of this request is
        pending, and the thread's state is as it was before :meth:`begin`.

        Safe against that very exception landing anywhere inside it: every step is
        idempotent and the loop runs them again."""
        while not registration.finished:
            try:
                registration.ended = True
                while registration.busy:  # the watchdog is acting on it right now
                    time.sleep(0)
                if registration.injected and _clear_async_exc is not None:
                    _clear_async_exc(registration.thread_id, None)
                outer = registration.outer
                if outer is None:
                    self._live.pop(registration.thread_id, None)
                else:
                    self._live[registration.thread_id] = outer
                registration.finished = True
            except InjectedDeadlineExceeded:
                continue  # it landed here; the steps above are done again
        return registration.injected

    def in_flight(self) -> int:
        """Requests running now (for tests and benchmarks)."""
        count = 0
        for registration in list(self._live.values()):
            found: Registration | None = registration
            while found is not None:
                count += not found.ended
                found = found.outer
        return count

    # --- the watchdog thread ---------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name="bastion-deadline-watchdog", daemon=True
            )
            with detached():  # the thread outlives the request that starts it
                thread.start()
            self._thread = thread
        get_reporter().start()  # its thread too, so thread counts settle at once

    def _run(self) -> None:
        while True:
            # While it looks, every request that starts wakes it again: one that starts
            # after the look would otherwise wait for the next tick.
            self._wake_at = float("inf")
            try:
                wait = self._tick(time.monotonic())
            except Exception as error:  # never let the watchdog die, never log here
                get_reporter().failed("deadline watchdog", error)
                wait = RETRY
            self._wake_at = time.monotonic() + wait
            try:
                self._wake.get(timeout=wait)
                while True:  # several requests may have woken it meanwhile
                    self._wake.get_nowait()
            except Empty:
                pass

    def _tick(self, now: float) -> float:
        """Report and interrupt what has expired; return how long to sleep."""
        wait = TICK
        expired = []
        # list() of a dict's values is one C-level step: request threads write the dict
        # meanwhile, and iterating it directly would run Python code between items.
        for registration in list(self._live.values()):
            expires_at = registration.expires_at
            if expires_at > now:
                wait = min(wait, expires_at - now)
            elif not registration.ended:
                registration.busy = True
                expired.append(registration)
        if not expired:
            return wait
        try:
            raised = []
            frames = sys._current_frames()
            # Interrupt first, report after: taking stacks is the slow part, and under
            # contention the watchdog may lose the GIL before it is done.
            for registration in expired:
                if registration.ended or not registration.owner.enforce or registration.injected:
                    continue
                if not registration.serving:  # between chunks: the server's code runs
                    wait = RETRY
                    continue
                frame = frames.get(registration.thread_id)
                if self._interrupt(registration, frame):
                    raised.append((registration, frame))
                elif _set_async_exc is not None and frame is not None:
                    wait = RETRY
            if raised:
                # A thread may have run between the look and the raise (the watchdog can
                # lose the GIL there): if it left that frame, take the exception back
                # before it sees it, and try again at the next safe point.
                after = sys._current_frames()
                for registration, frame in raised:
                    if after.get(registration.thread_id) is not frame:
                        _clear_async_exc(registration.thread_id, None)
                        registration.injected = False
                        wait = RETRY
            for registration in expired:
                if not registration.ended and not registration.reported:
                    registration.reported = True
                    registration.stack = capture_stack(frames.get(registration.thread_id))
                    get_reporter().submit(Overrun.of(registration, registration.stack))
        finally:
            for registration in expired:
                registration.busy = False
        if self._hasten(any(r.injected and not r.ended for r in expired)):
            wait = RETRY
        return max(wait, 0.0)

    def _hasten(self, delivering: bool) -> bool:
        """While an interrupted request has yet to see its exception, shorten the
        interpreter's switch interval, so that the thread gets the GIL sooner among
        many busy ones (each holds it for the interval); put it back after. True
        while it is shortened."""
        if delivering and self._saved_interval is None:
            self._saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(HASTENED_INTERVAL, self._saved_interval))
        elif not delivering and self._saved_interval is not None:
            sys.setswitchinterval(self._saved_interval)
            self._saved_interval = None
        return delivering

    def _interrupt(self, registration: Registration, frame: Any) -> bool:
        """Raise the deadline in the request's thread if ``frame``, its innermost,
        is application code; False if not (see the module doc for the handshake)."""
        if _set_async_exc is None:
            return False  # cooperative only
        if frame is None or not self.app_code.contains(frame.f_code.co_filename):
            return False
        if _set_async_exc(registration.thread_id, InjectedDeadlineExceeded) != 1:
            return False  # the thread is gone
        registration.injected = True
        return True


_get_ident = threading.get_ident
_watchdog: Watchdog | None = None
_watchdog_lock = threading.Lock()


def get_watchdog(app_packages: tuple[str, ...] = ()) -> Watchdog:
    """The process's watchdog (its thread starts with the first request). The first
    caller's ``app_packages`` (``BASTION_DEADLINE_APP_PACKAGES``) decides what counts
    as application code; later callers may only name the same ones."""
    global _watchdog
    with _watchdog_lock:
        if _watchdog is None:
            _watchdog = Watchdog(AppCode(app_packages))
        return _watchdog


def _after_fork_in_child() -> None:
    # Only the forking thread lives on in the child, and without the watchdog's
    # thread: the child starts its own with its first request.
    running.clear()
    if _watchdog is not None:
        _watchdog._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
