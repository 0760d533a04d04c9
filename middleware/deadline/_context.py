"""The deadline context: how much time the current unit of work has left.

A :class:`Deadline` is an absolute point on the monotonic clock. Two places hold one:

* a :class:`contextvars.ContextVar`, set by :func:`scope`, the ASGI middleware and
  :func:`propagate`: it follows the work into asyncio tasks for free, and into threads
  started through :func:`propagate` or :class:`DeadlineExecutor`;
* the thread's *registration* (:class:`ThreadDeadline`, in :data:`running`), set by
  the WSGI middleware for the request the thread is serving. A WSGI request runs in
  one thread from start to end, so its deadline lives with the thread, and nothing
  has to travel with a context.

When both hold one, the earlier wins. Outbound instrumentors read :func:`remaining`
to bound every call: Python cannot stop a running thread, so that is what really ends
work.

The exceptions. :class:`DeadlineExceeded` is *not* an ``OSError``: servers (gunicorn
among them) take an ``OSError`` escaping the app for a broken connection and drop it
without an answer, and the client must get its 504. The timeouts Bastion's outbound
guards raise at the deadline are :class:`DeadlineTimeoutError`, both a
``DeadlineExceeded`` and a builtin :class:`TimeoutError`, so ``except TimeoutError``
around an outbound call still catches them.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar

from bastion.middleware.refusals import BastionRefusal

__all__ = [
    "DEADLINE_HEADER",
    "Deadline",
    "DeadlineExceeded",
    "DeadlineExecutor",
    "DeadlineTimeoutError",
    "ThreadDeadline",
    "activate",
    "check",
    "current",
    "propagate",
    "remaining",
    "reset",
    "scope",
]

#: The Bastion header carrying a relative budget in milliseconds, read inbound
#: (from anyone: it may only shorten the budget) and sent outbound by the HTTP guard.
DEADLINE_HEADER = "X-Bastion-Timeout-Ms"

P = ParamSpec("P")
R = TypeVar("R")

_monotonic = time.monotonic


class DeadlineExceeded(BastionRefusal):
    """The current deadline has passed (raised by :func:`check`, the WSGI watchdog and
    the outbound guards). The deadline middleware answers it with a 504, as
    ``protect()`` does where no deadline middleware runs (an app's own ``scope``)."""

    problem_status = 504
    problem_detail = "The request did not complete within its time budget."

    def __init__(self, message: str = "deadline exceeded", deadline: Deadline | None = None):
        super().__init__(message)
        self.deadline = deadline


class DeadlineTimeoutError(DeadlineExceeded, TimeoutError):
    """An outbound call stopped at the request deadline: also a :class:`TimeoutError`,
    so code that already handles an outbound call's timeout handles this one too."""


class Deadline(NamedTuple):
    """An absolute expiry on the monotonic clock, with the budget it started from.

    Immutable. A named tuple rather than a frozen dataclass because one is built for
    every request, and a tuple is the cheaper of the two to build.
    """

    expires_at: float
    budget: float
    source: str = "scope"

    @classmethod
    def after(cls, seconds: float, source: str = "scope") -> Deadline:
        return cls(_monotonic() + seconds, seconds, source)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        left = self.expires_at - _monotonic()
        return left if left > 0.0 else 0.0

    @property
    def expired(self) -> bool:
        return _monotonic() >= self.expires_at

    def earliest(self, other: Deadline | None) -> Deadline:
        return self if other is None or self.expires_at <= other.expires_at else other


_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "bastion_deadline", default=None
)


class ThreadDeadline(Protocol):
    """What the deadline context reads of the WSGI request a thread is serving (the
    watchdog's :class:`~bastion.middleware.deadline.watchdog.Registration`)."""

    @property
    def expires_at(self) -> float: ...

    @property
    def budget(self) -> float: ...

    @property
    def source(self) -> str: ...


#: The WSGI request each server thread is serving, by thread id: written by the WSGI
#: middleware as a request starts and ends (always both), read here and by the
#: watchdog. One dict rather than a thread-local, because the watchdog must see them
#: all; a thread's entry exists only while it serves a request.
running: dict[int, ThreadDeadline] = {}
_get_ident = threading.get_ident


def running_here() -> ThreadDeadline | None:
    """The registration of the WSGI request this thread is serving, or None."""
    return running.get(_get_ident())


def current() -> Deadline | None:
    """The active deadline (the earliest that applies), or None outside one."""
    deadline = _current.get()
    registration = running.get(_get_ident())
    if registration is not None:
        expires_at = registration.expires_at
        if deadline is None or expires_at < deadline.expires_at:
            return Deadline(expires_at, registration.budget, registration.source)
    return deadline


def remaining() -> float | None:
    """Seconds left before the active deadline (0.0 once passed), or None outside one."""
    deadline = _current.get()
    expires_at = None if deadline is None else deadline.expires_at
    registration = running.get(_get_ident())
    if registration is not None:
        ends = registration.expires_at
        if expires_at is None or ends < expires_at:
            expires_at = ends
    if expires_at is None:
        return None
    left = expires_at - _monotonic()
    return left if left > 0.0 else 0.0


def check() -> None:
    """Raise :class:`DeadlineExceeded` if the active deadline has passed."""
    deadline = current()
    if deadline is not None and _monotonic() >= deadline.expires_at:
        raise DeadlineExceeded(
            f"deadline of {deadline.budget:.3f}s ({deadline.source}) exceeded", deadline
        )


def activate(deadline: Deadline) -> contextvars.Token[Deadline | None]:
    """Make ``deadline`` current, or keep the current one if it is earlier.

    Returns the token for :func:`reset`. Middlewares use this pair; code uses :func:`scope`.
    """
    return _current.set(deadline.earliest(current()))


def reset(token: contextvars.Token[Deadline | None]) -> None:
    _current.reset(token)


@contextmanager
def scope(seconds: float, source: str = "scope") -> Iterator[Deadline]:
    """Run a block under a deadline of ``seconds``; nested scopes keep the earliest.

    For work outside HTTP requests: Pub/Sub push handlers, batch jobs, CLI scripts::

        with deadline.scope(120):
            client.query(sql).result()   # bounded by the 120 s budget
    """
    if seconds != seconds:  # NaN
        raise ValueError("deadline seconds must be a number, not NaN")
    token = activate(Deadline.after(max(0.0, float(seconds)), source))
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so it runs in a copy of the caller's context (deadline included).

    ``threading.Thread(target=deadline.propagate(work)).start()``. With the deadline
    guard on, threads and executor tasks started inside a request carry its deadline
    by themselves (:mod:`bastion.middleware.deadline.fanout`); this is for the other context
    variables, or for code running with the guard off.
    """
    context = _context_for_another_thread()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.run(fn, *args, **kwargs)

    return run


class DeadlineExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose tasks see the submitter's deadline (and every
    other context variable), like ``asyncio.to_thread`` does."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        context = _context_for_another_thread()
        return super().submit(context.run, fn, *args, **kwargs)


def _context_for_another_thread() -> contextvars.Context:
    """A copy of the caller's context whose deadline is the caller's :func:`current`
    one: the thread's running request does not travel with a context by itself."""
    context = contextvars.copy_context()
    if _get_ident() in running:
        deadline = current()
        if deadline is not context.get(_current):
            context.run(_current.set, deadline)
    return context
