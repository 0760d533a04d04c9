"""Per-request deadlines: a budget for every request, visible to everything it calls.

``remaining()``, ``current()``, ``check()`` and ``scope(seconds)`` work anywhere;
the WSGI and ASGI middlewares set a deadline for each request.
"""

from middleware.deadline._context import (
    DEADLINE_HEADER,
    Deadline,
    DeadlineExceeded,
    DeadlineExecutor,
    activate,
    check,
    current,
    propagate,
    remaining,
    reset,
    scope,
)

__all__ = [
    "DEADLINE_HEADER",
    "Deadline",
    "DeadlineExceeded",
    "DeadlineExecutor",
    "activate",
    "check",
    "current",
    "propagate",
    "remaining",
    "reset",
    "scope",
]
