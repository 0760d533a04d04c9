"""Which timeout class a BigQuery call belongs to, and how long each of its waits may be.

Every timeout the guard applies is ``min(class seconds, deadline.remaining() - margin)``
(and, while a ``result()`` wait is running, the time left of that wait). A timeout the
caller passed explicitly is kept (capped by the deadline only with
``BASTION_BQ_CAP_EXPLICIT_TIMEOUTS``). The class comes from, first match wins (its
source, ``bastion.bq.class_source``, in brackets):

1. a per-call override: ``with timeout_class("analytics"): ...`` [override];
2. the job label ``bastion-timeout-class=analytics`` on the job config [label];
3. the inbound route's class (``BASTION_BQ_ROUTE_CLASSES``) [route];
4. the service's default class (``BASTION_BQ_DEFAULT_CLASS``) [service];
5. the statement's class from :func:`bastion.instrumentation.bigquery.analyze` [sql], or
   ``write`` for loads and ``insert_rows_json`` [operation];
6. ``analytics`` (the most lenient) when the statement could not be classified [unknown].

The more specific statement of intent wins: a call over its route, a route over its
service, a service over the SQL. So a service pinned to ``read`` can still run one
nightly ``analytics`` query without a second deployment, and a service's health check
gets ``read`` while its rollup route gets ``analytics`` without changing its code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from bastion.instrumentation.bigquery._request import request_route
from bastion.instrumentation.bigquery.settings import TIMEOUT_CLASSES, BigQuerySettings
from bastion.middleware.deadline import remaining as deadline_remaining
from bastion.middleware.routes import RoutePatterns

__all__ = ["CLASS_LABEL", "Budget", "Policy", "timeout_class"]

#: The job label that selects a timeout class for one job.
CLASS_LABEL = "bastion-timeout-class"
#: Class used when nothing else says which one applies.
FALLBACK_CLASS = "analytics"
#: Floor of any HTTP timeout the guard sets: below it a request cannot even answer.
MIN_HTTP_SECONDS = 0.5
#: The server is asked to answer this much before our HTTP timeout fires (as the
#: client library does for jobs.query), so a slow job yields "not done yet", not a
#: read timeout that the default retry would resend.
SERVER_HOLD_BUFFER_MS = 250

_override: ContextVar[str | None] = ContextVar("bastion_bq_timeout_class", default=None)
_monotonic = time.monotonic


@contextmanager
def timeout_class(name: str) -> Iterator[str]:
    """Run the BigQuery calls of a block under timeout class ``name``.

    ``with timeout_class("analytics"): client.query(nightly_sql).result()``
    """
    if name not in TIMEOUT_CLASSES:
        raise ValueError(f"unknown timeout class {name!r}; allowed: {', '.join(TIMEOUT_CLASSES)}")
    token = _override.set(name)
    try:
        yield name
    finally:
        _override.reset(token)


class Budget:
    """How long one wait may last, and what bound it (made per request: kept cheap)."""

    __slots__ = ("bound_by", "seconds")

    def __init__(self, seconds: float, bound_by: str) -> None:
        self.seconds = seconds
        self.bound_by = bound_by  # "class" | "deadline" | "wait"


class Policy:
    """The timeout rules of one instrumentation, derived once from the settings."""

    __slots__ = (
        "cap_explicit",
        "default_class",
        "fallback_seconds",
        "margin",
        "max_bytes",
        "route_classes",
        "routes_need_path",
        "seconds",
        "slow",
    )

    def __init__(self, settings: BigQuerySettings) -> None:
        self.default_class = settings.bq_default_class
        # Compiled once: a query costs a request look-up and dict/regex matches.
        self.route_classes: RoutePatterns[str] | None = (
            RoutePatterns(settings.bq_route_classes) if settings.bq_route_classes else None
        )
        self.routes_need_path = bool(self.route_classes and self.route_classes.needs_path)
        self.margin = settings.bq_deadline_margin_seconds
        self.cap_explicit = settings.bq_cap_explicit_timeouts
        self.seconds = {c: settings.timeout_for(c) for c in TIMEOUT_CLASSES}
        self.fallback_seconds = self.seconds[FALLBACK_CLASS]
        self.slow = {c: settings.slow_seconds_for(c) for c in TIMEOUT_CLASSES}
        self.max_bytes = {c: settings.max_bytes_billed_for(c) for c in TIMEOUT_CLASSES}

    def resolve_class(
        self, analyzed: str | None, labels: Any, origin: str = "sql"
    ) -> tuple[str, str, str]:
        """(class, where it came from: override | label | route | service | `origin` |
        unknown, the route pattern that chose it or "")."""
        override = _override.get()
        if override is not None:
            return override, "override", ""
        if labels and isinstance(labels, Mapping):  # usually None: skip the ABC check
            label = labels.get(CLASS_LABEL)
            if label in self.seconds:
                return str(label), "label", ""
        if self.route_classes is not None:
            template, path = request_route(with_path=self.routes_need_path)
            if template or path:
                found = self.route_classes.match(path, template)
                if found is not None:
                    return found[1], "route", found[0]
        if self.default_class:
            return self.default_class, "service", ""
        if analyzed in self.seconds:
            return str(analyzed), origin, ""
        return FALLBACK_CLASS, "unknown", ""

    def budget(self, class_seconds: float, wait_until: float | None = None) -> Budget:
        """The time one wait may take now: class seconds, deadline minus margin, wait left."""
        return Budget(*self.limit(class_seconds, wait_until))

    def limit(self, class_seconds: float, wait_until: float | None = None) -> tuple[float, str]:
        """:meth:`budget` as ``(seconds, bound_by)``, for the per-request path."""
        seconds, bound_by = class_seconds, "class"
        left = deadline_remaining()
        if left is not None and left - self.margin < seconds:
            seconds, bound_by = left - self.margin, "deadline"
        if wait_until is not None:
            wait_left = wait_until - _monotonic()
            if wait_left < seconds:
                seconds, bound_by = wait_left, "wait"
        return seconds, bound_by

    def deadline_cap(self) -> float | None:
        """What an explicit caller timeout is capped to when the setting asks: the
        deadline minus margin, or None outside a deadline."""
        if not self.cap_explicit:
            return None
        left = deadline_remaining()
        return None if left is None else max(left - self.margin, MIN_HTTP_SECONDS)

    def cancel_timeout(self) -> float:
        """HTTP timeout of the best-effort jobs.cancel sent after giving up."""
        return min(5.0, max(self.margin, 1.0))
