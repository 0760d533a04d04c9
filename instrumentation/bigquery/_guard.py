"""The guard's per-instrumentation state, and what it knows about one SQL text.

A :class:`Guard` is built once by ``BigQueryInstrumentor._instrument`` from the
settings: mode, timeout policy, tracer, instruments, partition cache and a bounded
cache of statement descriptions, so a query costs dictionary look-ups, not parsing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import google.api_core
from google.cloud import bigquery
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Tracer, TracerProvider, get_tracer

from bastion.instrumentation._callsites import call_site
from bastion.instrumentation.bigquery._metrics import Instruments
from bastion.instrumentation.bigquery._partitions import PartitionCache
from bastion.instrumentation.bigquery._spans import SYSTEM, query_hash, summary
from bastion.instrumentation.bigquery._timeouts import Policy
from bastion.instrumentation.bigquery.settings import BigQuerySettings
from bastion.middleware._once import LogOnce
from bastion.middleware.refusals import PROBLEM_TYPE_BASE, BastionRefusal

__all__ = [
    "ClassTimeoutError",
    "Description",
    "Guard",
    "QueryTimeoutRefusal",
    "UnpartitionedQueryError",
    "stopped_at_class_timeout",
]

logger = logging.getLogger("bastion.bigquery")

Analyze = Callable[..., Any]


class UnpartitionedQueryError(ValueError, BastionRefusal):
    """Raised in enforce mode, before any job is created, for a query that reads a
    partitioned table without filtering on its partition column: a client-side
    ``require_partition_filter`` for tables that lack it server-side. Unhandled, the
    client gets a 500 problem document (a fault of the service, not the client's)."""

    problem_status = 500
    problem_type = PROBLEM_TYPE_BASE + "unpartitioned-query"
    problem_title = "Query refused by cost policy"
    problem_detail = "A database query of this service was refused before it ran."

    def __init__(self, table: str, column: str) -> None:
        self.table = table
        self.column = column
        super().__init__(
            f"Cannot query over table '{table}' without a filter over column(s) '{column}' "
            "that can be used for partition elimination (refused by Bastion before the job "
            "was created: BASTION_BIGQUERY=enforce; add a filter on "
            f"{column}, or run it under observe)"
        )


class QueryTimeoutRefusal(BastionRefusal):
    """What a BigQuery wait or job ended by its timeout class is, for ``protect()``: a
    504 problem document (the service gave up waiting for its upstream). Raised as
    :class:`ClassTimeoutError`, or as :func:`stopped_at_class_timeout` makes it."""

    problem_status = 504
    problem_type = PROBLEM_TYPE_BASE + "query-timeout"
    problem_title = "Database query timed out"
    problem_detail = "A database query of this service ran past its time limit and was stopped."


class ClassTimeoutError(TimeoutError, QueryTimeoutRefusal):
    """Raised in enforce mode when the wait Bastion set from the statement's timeout
    class ran out (the job is cancelled server-side): a builtin :class:`TimeoutError`,
    as the library's own give-up is, which it is raised from. ``timeout_class`` and
    ``seconds`` say which bound acted."""

    def __init__(self, message: str, *, timeout_class: str, seconds: float) -> None:
        super().__init__(message)
        self.timeout_class = timeout_class
        self.seconds = seconds


#: Library error class -> its subclass that is also a QueryTimeoutRefusal (a few).
_STOPPED: dict[type[BaseException], type[BaseException]] = {}


def stopped_at_class_timeout(error: BaseException) -> BaseException:
    """The library's error for a job the server stopped at the ``jobTimeoutMs`` Bastion
    set, as an instance of a subclass of its own class that is also a
    :class:`QueryTimeoutRefusal`: every handler written for the library's error
    (``GoogleAPICallError``, ``exc.errors[0]["reason"]``) still catches and reads it."""
    cls = type(error)
    refused_cls = _STOPPED.get(cls)
    if refused_cls is None:
        refused_cls = _STOPPED[cls] = type(
            cls.__name__,
            (cls, QueryTimeoutRefusal),
            {"__module__": cls.__module__, "__doc__": cls.__doc__},
        )
    refused = refused_cls.__new__(refused_cls, *error.args)
    refused.__dict__.update(vars(error))
    refused.args = error.args
    return refused


@dataclass(frozen=True, slots=True)
class Description:
    """What one SQL text is, independent of the moment it runs."""

    operation: str  # BigQuery statementType vocabulary: SELECT, INSERT, MERGE, SCRIPT...
    timeout_class: str | None
    tables: tuple[str, ...]
    name: str  # db.query.summary
    attributes: Mapping[str, Any]
    #: Span start attributes per (kind, class, class source), filled by Operation.
    variants: dict[tuple[str, str, str], Mapping[str, Any]] = field(
        default_factory=dict, compare=False, repr=False
    )


#: Frames in these directories belong to the client or to this guard, not to the caller.
_LIBRARY_DIRS = tuple(
    os.path.dirname(path) + os.sep
    for path in (bigquery.__file__, google.api_core.__file__, __file__)
    if path is not None
)


def _callsite() -> str:
    """``file:line`` of the first frame outside the client, OTel, wrapt and Bastion."""
    return call_site(_LIBRARY_DIRS, 2)  # 2: the frame that called _callsite


class Guard:
    """Everything the wrappers share; one per ``instrument()`` call."""

    def __init__(
        self,
        settings: BigQuerySettings,
        analyze: Analyze,
        fingerprint: Callable[[str], str],
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.settings = settings
        self.mode = settings.bigquery
        self.enforce = self.mode.enforcing
        self.capture_text = settings.bq_capture_query_text
        self.policy = Policy(settings)
        self.tracer: Tracer = get_tracer("bastion", tracer_provider=tracer_provider)
        self.instruments = Instruments(meter_provider)
        self.partitions = PartitionCache(settings)
        self.analyze = analyze
        self.fingerprint = fingerprint
        # BASTION_BQ_LIBRARY_SPANS: the client's own per-REST-call INTERNAL spans
        # (``BigQuery.query``, ``BigQuery.getJob``...) repeat, with start-time attributes
        # only, what the operation's one CLIENT span says with final statistics.
        self.replace_library_spans = settings.bq_library_spans == "replace"
        self.describe = lru_cache(maxsize=settings.bq_analysis_cache_size)(self._describe)
        # Jobs created inside an operation → that operation (read by job.result()):
        # id(job) → (weak reference to the job, operation). One weakref per job, whose
        # callback both forgets the entry and ends the operation of a dropped job.
        self._jobs: dict[int, tuple[weakref.ref[Any], Any]] = {}
        # (sql, project, dataset) -> (valid until, unfiltered tables): see unfiltered().
        self._verdicts: dict[tuple[Any, ...], tuple[float, list[tuple[str, str]]]] = {}
        self._verdicts_size = settings.bq_analysis_cache_size
        self._logged = LogOnce()

    def close(self) -> None:
        self.partitions.close()

    # --- jobs and their operations ---------------------------------------------------
    def track(self, job: Any, op: Any, gone: Callable[[Any], None]) -> None:
        """Remember ``job`` → ``op`` while ``job`` lives; ``gone(op)`` once it is freed.
        Raises TypeError for an object that cannot be weakly referenced."""
        key = id(job)
        jobs = self._jobs

        def forget(ref: weakref.ref[Any]) -> None:
            # Called while the job is freed, before its id can be reused.
            entry = jobs.get(key)
            if entry is not None and entry[0] is ref:
                jobs.pop(key, None)
            gone(op)

        jobs[key] = (weakref.ref(job, forget), op)

    def operation_of(self, job: Any) -> Any:
        """The operation ``job`` was created in, or None."""
        entry = self._jobs.get(id(job))
        if entry is not None and entry[0]() is job:
            return entry[1]
        return None

    # --- statement descriptions ----------------------------------------------------
    def _describe(self, sql: str, project: str | None, dataset: str | None) -> Description:
        analysis = self.analyze(sql, default_project=project, default_dataset=dataset)
        operation = str(analysis.statement_type or "UNKNOWN")
        tables = tuple(sorted(str(t) for t in analysis.tables))
        name = summary(operation, tables)
        namespace = f"{project}|{dataset}" if dataset else (project or "")
        attributes: dict[str, Any] = {
            "db.system.name": SYSTEM,
            "db.operation.name": operation,
            "db.query.summary": name,
            "bastion.bq.statement_type": operation,
            "bastion.bq.query_hash": query_hash(sql),
            "bastion.bq.query_fingerprint": str(analysis.fingerprint),
        }
        if namespace:
            attributes["db.namespace"] = namespace
        if self.capture_text:
            attributes["db.query.text"] = sql
        return Description(operation, analysis.timeout_class, tables, name, attributes)

    def fallback_description(self, sql: object, project: str | None) -> Description:
        """When the SQL is not a string or could not be analysed: no tables, no class."""
        attributes: dict[str, Any] = {"db.system.name": SYSTEM, "db.operation.name": "UNKNOWN"}
        if project:
            attributes["db.namespace"] = project
        if isinstance(sql, str):
            attributes["bastion.bq.query_hash"] = query_hash(sql)
            if self.capture_text:
                attributes["db.query.text"] = sql
        return Description("UNKNOWN", None, (), "BigQuery", attributes)

    def unfiltered(
        self, sql: str, description: Description, client: Any, project: str | None, dataset: Any
    ) -> tuple[list[tuple[str, str]], bool]:
        """((table, partition column) for each partitioned table read without a filter,
        whether every table's partitioning was known).

        The partition columns come from a lookup with a client of Bastion's own, never
        ``client``: in observe the query does not wait for it (a first query of a table
        goes unjudged), in enforce it waits at most the lookup budget. The verdict per
        (SQL, project, dataset) is kept until the earliest of its tables' cache entries
        expires, so a repeated query costs one dict look-up."""
        if not description.tables:
            return [], True
        key = (sql, project, dataset)
        now = time.monotonic()
        kept = self._verdicts.get(key)
        if kept is not None and kept[0] > now:
            return kept[1], True
        columns, holds_until, complete = self.partitions.resolve(
            client, description.tables, None if self.enforce else 0.0
        )
        found: list[tuple[str, str]] = []
        if columns:
            analysis = self.analyze(
                sql, default_project=project, default_dataset=dataset, partition_columns=columns
            )
            for table in sorted(analysis.unfiltered_tables):
                column = columns.get(str(table))
                if column is not None:
                    found.append((str(table), column))
        if complete:
            if len(self._verdicts) >= self._verdicts_size:
                # Oldest first; another thread may be evicting too, so best effort.
                with contextlib.suppress(StopIteration, RuntimeError):
                    self._verdicts.pop(next(iter(self._verdicts)), None)
            self._verdicts[key] = (holds_until, found)
        return found, complete

    def report_unfiltered(self, table: str, column: str) -> None:
        """One log line per (table, call site) in the process's life."""
        site = _callsite()
        if self._logged.first_time("unfiltered:" + table, site):
            logger.warning(
                "bastion: query at %s reads partitioned table %s without a filter on its "
                "partition column %s (BASTION_BIGQUERY=%s)",
                site,
                table,
                column,
                self.mode.value,
            )

    def report_class_cut(self, timeout_class: str, error: BaseException) -> None:
        """One log line per (timeout class, call site) in the process's life."""
        site = _callsite()
        if self._logged.first_time("class-cut:" + timeout_class, site):
            logger.warning(
                "bastion: query at %s ran past its %s class timeout: %s (BASTION_BIGQUERY=%s)",
                site,
                timeout_class,
                error,
                self.mode.value,
            )

    # --- never break the caller --------------------------------------------------------
    def failed(self, site: str, error: BaseException) -> None:
        """Log an internal error once per (site, error type); the call goes on as written."""
        if self._logged.first_time(type(error).__name__, site):
            logger.warning(
                "bastion: BigQuery instrumentation error in %s (%s: %s); the call proceeds "
                "unguarded as written. Logged once.",
                site,
                type(error).__name__,
                error,
                exc_info=error,
            )
