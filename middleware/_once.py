"""Logging a finding once: one home for every guard's "log this once" memory."""

from __future__ import annotations

import threading

__all__ = ["LogOnce"]


class LogOnce:
    """The keys already logged (a call site, a route template, a table), so each is
    logged once per process.

    Bounded: past ``limit`` keys nothing new is remembered and nothing new is logged
    (the counters and span events still record every occurrence). Some keys come from
    clients (paths) or from data (table names), so the memory and the log volume must
    not grow with what a client sends.
    """

    __slots__ = ("_limit", "_lock", "_seen")

    def __init__(self, limit: int = 4096) -> None:
        self._seen: set[tuple[str, ...]] = set()
        self._limit = limit
        self._lock = threading.Lock()

    def first_time(self, *key: str) -> bool:
        """True exactly once per ``key``, whichever thread asks first."""
        if key in self._seen:  # the common case, without the lock
            return False
        with self._lock:
            if key in self._seen or len(self._seen) >= self._limit:
                return False
            self._seen.add(key)
            return True
