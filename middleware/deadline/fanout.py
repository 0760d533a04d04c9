"""Fan-out carries the deadline: work a request hands to other threads runs under it.

A coordinator that fans out to workers through a ``ThreadPoolExecutor`` would
otherwise lose its deadline in those threads: the WSGI deadline lives with the
request's thread, and a pool's threads start with an empty context. While the
deadline guard is on (``BASTION_DEADLINE`` observe or enforce, and
``BASTION_DEADLINE_FANOUT`` true, the default), this module wraps, as
OpenTelemetry's threading instrumentation does for trace context:

* ``concurrent.futures.ThreadPoolExecutor.submit``: a task submitted under a deadline
  runs under it (and its thread is back to none after the task);
* ``threading.Thread.start`` and ``Thread.run``: a thread started under a deadline
  runs ``run()`` under it. A subclass that overrides ``run()`` without calling
  ``Thread.run`` is not covered: wrap its work in
  :func:`~bastion.middleware.deadline.propagate`. The worker threads an executor starts
  while a task is submitted are the executor's, and carry nothing.

A thread that outlives the request that started it (a pool or a background worker
created lazily, on first use) keeps that request's deadline for its whole life, and
its outbound calls are refused once it has passed: start such machinery at startup,
or inside ``deadline.detached()``.

There, :func:`~bastion.middleware.deadline.remaining` and :func:`~bastion.middleware.deadline.check`
see the request's deadline, and the outbound guards cap their calls by it and send
the remaining budget on. The watchdog does not interrupt those threads: the deadline
is cooperative there.

Opting out: set ``BASTION_DEADLINE_FANOUT=false``, or start the work inside
``with deadline.detached():`` (a background thread that must outlive the request,
say; otherwise it would run under a deadline that has passed).
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

import wrapt

from bastion.middleware.deadline._context import Deadline, _current, current

__all__ = ["detached", "install", "installed", "uninstall"]

R = TypeVar("R")

_detached: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "bastion_deadline_detached", default=False
)
#: The attribute a started Thread carries its deadline in until run() applies it.
_THREAD_ATTRIBUTE = "_bastion_deadline"
_install_lock = threading.Lock()
_installed = False


@contextmanager
def detached() -> Iterator[None]:
    """Threads and executor tasks started inside this block carry no deadline."""
    token = _detached.set(True)
    try:
        yield
    finally:
        _detached.reset(token)


def _deadline_to_carry() -> Deadline | None:
    return None if _detached.get() else current()


class _UnderDeadline:
    """A callable that runs ``fn`` under ``deadline``, then restores the thread."""

    __slots__ = ("deadline", "fn")

    def __init__(self, deadline: Deadline, fn: Callable[..., Any]) -> None:
        self.deadline = deadline
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = _current.set(self.deadline.earliest(_current.get()))
        try:
            return self.fn(*args, **kwargs)
        finally:
            _current.reset(token)


def _submit(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    deadline = _deadline_to_carry()
    # A worker thread the executor starts now belongs to the executor, not to this
    # request: it must not run every later task under this request's deadline.
    token = _detached.set(True)
    try:
        if deadline is None or not args:
            return wrapped(*args, **kwargs)
        return wrapped(_UnderDeadline(deadline, args[0]), *args[1:], **kwargs)
    finally:
        _detached.reset(token)


def _start(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    deadline = _deadline_to_carry()
    if deadline is not None:
        setattr(instance, _THREAD_ATTRIBUTE, deadline)
    return wrapped(*args, **kwargs)


def _run(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    deadline = getattr(instance, _THREAD_ATTRIBUTE, None)
    if deadline is None:
        return wrapped(*args, **kwargs)
    return _UnderDeadline(deadline, wrapped)(*args, **kwargs)


def install() -> None:
    """Wrap the executor's ``submit`` and the thread's ``start``/``run`` (idempotent)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        wrapt.wrap_function_wrapper(ThreadPoolExecutor, "submit", _submit)
        wrapt.wrap_function_wrapper(threading.Thread, "start", _start)
        wrapt.wrap_function_wrapper(threading.Thread, "run", _run)
        _installed = True


def uninstall() -> None:
    """Put the originals back (tests; a process normally keeps them)."""
    global _installed
    with _install_lock:
        if not _installed:
            return
        for owner, name in (
            (ThreadPoolExecutor, "submit"),
            (threading.Thread, "start"),
            (threading.Thread, "run"),
        ):
            original = getattr(owner.__dict__[name], "__wrapped__", None)
            if original is not None:
                setattr(owner, name, original)
        _installed = False


def installed() -> bool:
    return _installed
