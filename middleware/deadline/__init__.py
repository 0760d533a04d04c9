"""Per-request deadlines: a budget for every request, visible to everything it calls.

``remaining()``, ``current()``, ``check()`` and ``scope(seconds)`` work anywhere;
``DeadlineMiddleware`` (WSGI) and ``DeadlineASGIMiddleware`` (ASGI) set a deadline
for each request (``bastion.middleware.protect`` adds the right one);
``bastion.middleware.deadline.gunicorn`` keeps gunicorn's timeouts in order around it, and
threads and executor tasks a request starts carry its deadline (``detached()`` opts
out; see :mod:`.fanout`).
The middlewares are imported on first use, so ``import bastion.middleware.deadline`` stays
cheap for code that only reads the budget (the outbound instrumentors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.middleware.deadline._context import (
    DEADLINE_HEADER,
    Deadline,
    DeadlineExceeded,
    DeadlineExecutor,
    DeadlineTimeoutError,
    activate,
    check,
    current,
    propagate,
    remaining,
    reset,
    scope,
)
from bastion.middleware.deadline.fanout import detached

if TYPE_CHECKING:
    from bastion.middleware.deadline.asgi import DeadlineASGIMiddleware
    from bastion.middleware.deadline.wsgi import DeadlineMiddleware

__all__ = [
    "DEADLINE_HEADER",
    "Deadline",
    "DeadlineASGIMiddleware",
    "DeadlineExceeded",
    "DeadlineExecutor",
    "DeadlineMiddleware",
    "DeadlineTimeoutError",
    "activate",
    "check",
    "current",
    "detached",
    "propagate",
    "remaining",
    "reset",
    "scope",
]


def __getattr__(name: str) -> Any:
    if name == "DeadlineMiddleware":
        from bastion.middleware.deadline.wsgi import DeadlineMiddleware

        return DeadlineMiddleware
    if name == "DeadlineASGIMiddleware":
        from bastion.middleware.deadline.asgi import DeadlineASGIMiddleware

        return DeadlineASGIMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
