"""``BigQueryInstrumentor``: OpenTelemetry instrumentation and a runtime guard for
google-cloud-bigquery (3.14+).

Threat model. google-cloud-bigquery has no default timeout: a query, a job poll or a
single HTTP request can wait for hours (googleapis/python-bigquery#1922: six days),
holding a gunicorn thread long after Cloud Run answered 504; ``result(timeout=)``
gives up without cancelling the job, which keeps running and billing; a query that
forgets its partition filter scans (and bills) the whole table; and the client's own
spans carry none of the numbers (bytes, slots, cache hit) needed to see any of this.

What it does, by mode (``BASTION_BIGQUERY``):

``off``
    Nothing is wrapped.
``observe`` (default)
    One CLIENT span per logical operation with the final job statistics, in place of
    the client's own per-REST-call spans (``BASTION_BQ_LIBRARY_SPANS=replace``, the
    default; ``keep`` leaves them as its children); metrics; for
    each partitioned table read without a filter, a span event, a counter and one log
    line per (table, call site). The timeouts and cancellations that *would* apply are
    recorded (``bastion.bq.would_*``); no request is changed, and no request is added to
    the caller's client: table partitioning is looked up in the background with a
    client of Bastion's own, and a query whose tables are not known yet runs unjudged
    (``bastion.bq.unjudged``, counter ``bastion.bigquery.unjudged_queries``).
``enforce``
    As observe, plus: where the caller gave none, ``jobTimeoutMs``, the ``result()`` /
    ``query_and_wait`` wait and each HTTP request's timeout are set to
    ``min(class seconds, deadline.remaining() - margin)``; a job whose wait a bound of
    Bastion's ended (the wait it set, or the request deadline) is cancelled
    server-side, while a wait the caller bounded itself (``job.result(timeout=1)`` in a
    polling loop) ends the wait only, as in the library; a query waits for its tables'
    partitioning at most ``BASTION_BQ_TABLE_LOOKUP_BUDGET_SECONDS`` (looked up in the
    background with Bastion's own client), then runs unjudged; ``maximumBytesBilled``
    per class; a query reading a partitioned table without a filter raises
    :class:`UnpartitionedQueryError` before the job exists; a call made after the
    request deadline is spent raises :class:`~bastion.middleware.deadline.DeadlineExceeded`
    instead of being sent.

Parameters of :meth:`instrument` (all optional): ``settings`` (a
:class:`~bastion.instrumentation.bigquery.settings.BigQuerySettings` or a whole
:class:`~bastion.settings.Settings`; default :func:`bastion.settings.get_settings`),
``tracer_provider``, ``meter_provider``.

Unknowns fail open in both modes: SQL that is not a string or cannot be analysed runs
under the ``analytics`` class unjudged; a table whose ``tables.get`` fails (403, 404,
500, timeout) or is slower than ``BASTION_BQ_TABLE_LOOKUP_BUDGET_SECONDS`` is not
judged; any error inside the guard is logged once and the call proceeds as written.
"""

from __future__ import annotations

from bastion._extras import MissingExtra

try:
    import google.cloud.bigquery  # noqa: F401
    import sqlglot  # noqa: F401
except ModuleNotFoundError as error:  # the extra is not installed
    raise MissingExtra("bigquery", "bastion.instrumentation.bigquery", error) from error

import logging
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from bastion.instrumentation.bigquery._guard import (
    ClassTimeoutError,
    Guard,
    UnpartitionedQueryError,
)
from bastion.instrumentation.bigquery._jobs import JobWrappers
from bastion.instrumentation.bigquery._timeouts import CLASS_LABEL, timeout_class
from bastion.instrumentation.bigquery._warnings import install as attribute_warnings
from bastion.instrumentation.bigquery._warnings import uninstall as restore_warnings
from bastion.instrumentation.bigquery.settings import BigQuerySettings

__all__ = [
    "CLASS_LABEL",
    "BigQueryInstrumentor",
    "ClassTimeoutError",
    "UnpartitionedQueryError",
    "timeout_class",
]

logger = logging.getLogger("bastion.bigquery")

_CLIENT = "google.cloud.bigquery.client"
_QUERY_JOB = "google.cloud.bigquery.job.query"
_BASE_JOB = "google.cloud.bigquery.job.base"
_CURSOR = "google.cloud.bigquery.dbapi.cursor"

#: (module, "Class.method", wrapper attribute of Wrappers)
TARGETS: tuple[tuple[str, str, str], ...] = (
    (_CLIENT, "Client._call_api", "call_api"),
    (_CLIENT, "Client.query", "query"),
    (_CLIENT, "Client.query_and_wait", "query_and_wait"),
    (_CLIENT, "Client.insert_rows_json", "insert_rows_json"),
    (_CLIENT, "Client.load_table_from_uri", "load_table_from_uri"),
    (_CLIENT, "Client.load_table_from_file", "load_table_from_file"),
    (_CLIENT, "Client.load_table_from_json", "load_table_from_json"),
    (_QUERY_JOB, "QueryJob.result", "query_result"),
    (_BASE_JOB, "_AsyncJob.result", "job_result"),
    (_CURSOR, "Cursor.execute", "cursor_execute"),
)


class BigQueryInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Spans, metrics, default timeouts, cancellation and partition-filter checks for
    google-cloud-bigquery. ``BigQueryInstrumentor().instrument(settings=...)``."""

    _guard: Guard | None = None
    _warning_modules: list[Any] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("google-cloud-bigquery >= 3.14",)

    @property
    def guard(self) -> Guard | None:
        """The active guard (tests and ``bastion doctor`` read its settings and cache)."""
        return self._guard

    def _instrument(self, **kwargs: Any) -> None:
        settings: BigQuerySettings | None = kwargs.get("settings")
        if settings is None:
            from bastion.settings import get_settings

            settings = get_settings()
        if not settings.bigquery.active:
            logger.info("bastion: BASTION_BIGQUERY=off, BigQuery is not instrumented")
            return
        import importlib

        from bastion.instrumentation.bigquery.analysis import analyze, fingerprint

        guard = Guard(
            settings,
            analyze,
            fingerprint,
            tracer_provider=kwargs.get("tracer_provider"),
            meter_provider=kwargs.get("meter_provider"),
        )
        wrappers = JobWrappers(guard)
        for module, name, attribute in TARGETS:
            importlib.import_module(module)
            wrap_function_wrapper(module, name, getattr(wrappers, attribute))
        # The library's warnings point past the wrappers' frames, at the caller.
        self._warning_modules = attribute_warnings()
        self._guard = guard

    def _uninstrument(self, **kwargs: Any) -> None:
        import importlib

        for module, name, _ in TARGETS:
            owner_name, method = name.split(".")
            unwrap(getattr(importlib.import_module(module), owner_name), method)
        if self._warning_modules is not None:
            restore_warnings(self._warning_modules)
            self._warning_modules = None
        if self._guard is not None:
            self._guard.close()
            self._guard = None
