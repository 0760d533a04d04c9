"""The deadline context: how much time the current unit of work has left.

A :class:`Deadline` is an absolute point on the monotonic clock. Two places hold one:

* a :class:`contextvars.ContextVar`, set by :func:`scope`, the ASGI middleware and
  :func:`propagate`: it follows the work into asyncio tasks for free, and into threads
  started through :func:`propagate` or :class:`DeadlineExecutor`;
* the thread's *running request* (:class:`RunningRequest`), set by the WSGI
  middleware. A WSGI request runs in one thread from start to end, so its deadline
  lives with the thread, in one object the thread reuses request after request: a
  request then costs a float written to it, not a context switch and an allocation.

When both hold one, the earlier wins. Outbound instrumentors read :func:`remaining`
to bound every call: Python cannot stop a running thread, so that is what really ends
work.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, NamedTuple, ParamSpec, Protocol, TypeVar

__all__ = [
    "DEADLINE_HEADER",
    "Deadline",
    "DeadlineExceeded",
    "DeadlineExecutor",
    "RunningRequest",
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


class DeadlineExceeded(TimeoutError):
    """The current deadline has passed.

    A :class:`TimeoutError`, so code that already handles timeouts handles it too.
    """

    def __init__(self, message: str = "deadline exceeded", deadline: Deadline | None = None):
        super().__init__(message)
        self.deadline = deadline


class Deadline(NamedTuple):
    """An absolute expiry on the monotonic clock, with the budget it started from.

    Immutable. A named tuple rather than a frozen dataclass because one is built for
    every request, and a tuple is built about three times faster.
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


class RunningRequest(Protocol):
    """What a thread's request registration shows of its deadline (the WSGI
    middleware's :class:`~middleware.deadline.watchdog.WatchedRequest`)."""

    @property
    def expires_at(self) -> float | None:
        """The running request's expiry; None between requests."""

    @property
    def budget(self) -> float: ...

    @property
    def source(self) -> str: ...


class _ThreadRequest(threading.local):
    #: The registration of the WSGI request this thread runs, or None (a class
    #: attribute, so a thread that never ran one reads None without an exception).
    request: RunningRequest | None = None


_thread = _ThreadRequest()


def current() -> Deadline | None:
    """The active deadline (the earliest that applies), or None outside one."""
    deadline = _current.get()
    request = _thread.request
    if request is not None:
        expires_at = request.expires_at
        if expires_at is not None and (deadline is None or expires_at < deadline.expires_at):
            return Deadline(expires_at, request.budget, request.source)
    return deadline


def remaining() -> float | None:
    """Seconds left before the active deadline (0.0 once passed), or None outside one."""
    deadline = _current.get()
    expires_at = None if deadline is None else deadline.expires_at
    request = _thread.request
    if request is not None:
        running = request.expires_at
        if running is not None and (expires_at is None or running < expires_at):
            expires_at = running
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

    ``threading.Thread(target=deadline.propagate(work)).start()``
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
    if _thread.request is not None:
        deadline = current()
        if deadline is not context.get(_current):
            context.run(_current.set, deadline)
    return context
