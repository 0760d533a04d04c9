"""One logical BigQuery operation: its CLIENT span, its timeouts, its final statistics.

An :class:`Operation` starts in the outermost wrapped call (``Client.query``,
``query_and_wait``, ``Cursor.execute``, a load, ``insert_rows_json``) and is the
*active* operation (a context variable) while the client works for it, so the
``Client._call_api`` wrapper can (enforce) set the timeouts of each REST request and
(always) read the statistics of each response. A job created by ``Client.query`` keeps
its operation until ``job.result()`` finishes it, so insert + polling are one span.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import requests.exceptions
from google.api_core.exceptions import RetryError
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from bastion.instrumentation.bigquery._spans import SYSTEM, Statistics
from bastion.instrumentation.bigquery._timeouts import (
    FALLBACK_CLASS,
    MIN_HTTP_SECONDS,
    SERVER_HOLD_BUFFER_MS,
)
from bastion.middleware.deadline import DeadlineExceeded, DeadlineTimeoutError
from bastion.middleware.deadline import remaining as deadline_remaining

if TYPE_CHECKING:
    from bastion.instrumentation.bigquery._guard import Description, Guard

__all__ = ["ACTIVE", "Operation", "gave_up", "is_timeout", "stopped_at_job_timeout"]

#: The operation the current code runs for, if any.
ACTIVE: ContextVar[Operation | None] = ContextVar("bastion_bq_operation", default=None)

# errorResult reasons of a job stopped by jobTimeoutMs / by jobs.cancel.
_TIMEOUT_REASONS = frozenset({"timeout", "jobTimeout", "deadlineExceeded"})
_STOPPED_REASONS = frozenset({"stopped"})
_GIVE_UP = (TimeoutError, requests.exceptions.Timeout, RetryError)
_monotonic = time.monotonic


def gave_up(error: BaseException) -> bool:
    """True when ``error`` means the client stopped waiting (not that the job failed)."""
    return isinstance(error, _GIVE_UP)


def is_timeout(error: BaseException) -> bool:
    """A client give-up, or a job the server stopped at its jobTimeoutMs."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 4:
        if gave_up(current):
            return True
        if _reason(current) in _TIMEOUT_REASONS:
            return True
        current = current.__cause__ or (current.args[0] if _wraps(current) else None)
        seen += 1
    return False


def stopped_at_job_timeout(error: BaseException) -> bool:
    """A job the server stopped at its jobTimeoutMs (the error itself, not a cause)."""
    return _reason(error) in _TIMEOUT_REASONS


def _reason(error: BaseException) -> str | None:
    errors = getattr(error, "errors", None)
    if isinstance(errors, (list, tuple)) and errors and isinstance(errors[0], dict):
        reason = errors[0].get("reason")
        return reason if isinstance(reason, str) else None
    return None


def _wraps(error: BaseException) -> bool:
    # DB-API DatabaseError(exc) keeps the cause in args[0].
    return bool(error.args) and isinstance(error.args[0], BaseException)


class Operation:
    """State of one logical operation; all methods are called under try/except."""

    __slots__ = (
        "_span",
        "_started",
        "applied",
        "cancelled",
        "class_seconds",
        "client",
        "described",
        "explicit",
        "finished",
        "guard",
        "job_timeout_set",
        "kind",
        "refused",
        "start",
        "start_ns",
        "stats",
        "timeout_class",
        "wait_until",
    )

    def __init__(self, guard: Guard, kind: str, client: Any) -> None:
        self.guard = guard
        self.client = client
        self.kind = kind
        self.start = _monotonic()
        self.start_ns = time.time_ns()
        # Started once the operation is described (name and attributes in one go, with
        # this start time), or at the end if it never is: one SDK call, not four.
        self._span: Span | None = None
        self._started = False
        self.timeout_class = FALLBACK_CLASS
        self.class_seconds = guard.policy.fallback_seconds
        self.described = False
        self.stats = Statistics()
        self.explicit = False  # the current phase's HTTP timeout came from the caller
        self.wait_until: float | None = None  # end of the result() wait we set
        self.applied: dict[str, Any] = {}
        self.cancelled = False
        self.refused: str | None = None
        self.finished = False
        self.job_timeout_set = False  # jobTimeoutMs was Bastion's (the caller gave none)

    @property
    def started(self) -> bool:
        """The span exists and can parent others (an invalid no-op span would detach
        the client's own spans from the request's trace if made current). Read on
        every wrapped call of the operation, so decided once, when the span starts."""
        return self._started

    @property
    def span(self) -> Span:
        if self._span is None:
            self._start("BigQuery", {"db.system.name": SYSTEM, "bastion.bq.kind": self.kind})
        return self._span  # type: ignore[return-value]

    def _start(self, name: str, attributes: Mapping[str, Any]) -> None:
        span = self.guard.tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=attributes, start_time=self.start_ns
        )
        self._span = span
        self._started = span.get_span_context().is_valid

    # --- set up --------------------------------------------------------------------
    def describe(
        self, description: Description, timeout_class: str, source: str, pattern: str = ""
    ) -> None:
        self.described = True
        if pattern:  # BASTION_BQ_ROUTE_CLASSES: which of its patterns chose the class
            self.applied["bastion.bq.class_pattern"] = pattern
        self.timeout_class = timeout_class
        self.class_seconds = self.guard.policy.seconds[timeout_class]
        # The span's starting attributes depend only on these three and the statement:
        # built once per combination, kept with the (cached) description. The SDK
        # copies what it is given, so the shared dict is never changed under it.
        key = (self.kind, timeout_class, source)
        attributes = description.variants.get(key)
        if attributes is None:
            attributes = dict(description.attributes)
            attributes["db.system.name"] = SYSTEM
            attributes["bastion.bq.kind"] = self.kind
            attributes["bastion.bq.timeout_class"] = timeout_class
            attributes["bastion.bq.class_source"] = source
            if len(description.variants) < 64:
                description.variants[key] = attributes
        if self._span is None:
            self._start(description.name, attributes)
        else:
            self._span.update_name(description.name)
            self._span.set_attributes(attributes)

    def mark_unfiltered(self, found: list[tuple[str, str]]) -> None:
        guard = self.guard
        self.applied["bastion.bq.unfiltered_tables"] = [t for t, _ in found]
        for table, column in found:
            self.span.add_event(
                "bastion.bq.unpartitioned",
                {"bastion.bq.table": table, "bastion.bq.partition_column": column},
            )
            guard.instruments.unpartitioned.add(
                1, {"bastion.bq.table": table, "bastion.mode": guard.mode.value}
            )
            guard.report_unfiltered(table, column)

    def mark_unjudged(self) -> None:
        """A table's partitioning was still being looked up: the query runs unjudged."""
        self.applied["bastion.bq.unjudged"] = "table_lookup_pending"
        self.guard.instruments.unjudged.add(
            1, {"bastion.reason": "table_lookup_pending", "bastion.mode": self.guard.mode.value}
        )

    # --- each REST request -----------------------------------------------------------
    def prepare(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The ``_call_api`` keyword arguments to send (a modified copy in enforce)."""
        path = kwargs.get("path")
        if not isinstance(path, str):
            return kwargs
        if path.endswith("/cancel"):
            self.note_cancel()
            if self.guard.enforce and kwargs.get("timeout") is None:
                return {**kwargs, "timeout": self.guard.policy.cancel_timeout()}
            return kwargs
        policy = self.guard.policy
        if not self.guard.enforce:
            # Observe: what would apply to the operation's first request, nothing sent.
            if "bastion.bq.would_timeout_seconds" not in self.applied:
                seconds, bound_by = policy.limit(self.class_seconds, self.wait_until)
                self.applied["bastion.bq.would_timeout_seconds"] = round(seconds, 3)
                self.applied["bastion.bq.would_bound_by"] = bound_by
                self.applied["bastion.bq.would_job_timeout_ms"] = max(1, int(seconds * 1000))
            return kwargs
        seconds, bound_by = policy.limit(self.class_seconds, self.wait_until)
        method = kwargs.get("method")
        if seconds <= 0.0 and bound_by == "deadline":
            if self.stats.job_id is None:  # nothing started yet: a refusal, not a give-up
                self.refused = "deadline"
                self.guard.instruments.refusals.add(1, {"bastion.reason": "deadline"})
            raise DeadlineTimeoutError("BigQuery request not sent: the request deadline is spent")
        http = seconds if seconds > MIN_HTTP_SECONDS else MIN_HTTP_SECONDS
        sent = dict(kwargs)
        timeout = kwargs.get("timeout")
        if self.explicit:
            cap = policy.deadline_cap()
            if cap is not None and isinstance(timeout, (int, float)) and timeout > cap:
                sent["timeout"] = cap
        elif timeout is None or (isinstance(timeout, (int, float)) and timeout > http):
            sent["timeout"] = http
        if "bastion.bq.http_timeout_seconds" not in self.applied and sent.get("timeout"):
            self.applied["bastion.bq.http_timeout_seconds"] = round(float(sent["timeout"]), 3)
            self.applied["bastion.bq.bound_by"] = bound_by
        if method == "POST":
            if path.endswith("/jobs"):
                self._job_insert(sent, seconds)
            elif path.endswith("/queries"):
                self._jobs_query(sent, seconds)
        elif method == "GET" and "/queries/" in path:
            if not self.explicit:
                self._get_query_results(sent, sent.get("timeout"))
            elif self.wait_until is not None:
                # The caller's own result(timeout=): the library would let the server
                # hold getQueryResults ~10 s past it; bound the hold by what is left.
                self._get_query_results(sent, self.wait_until - _monotonic())
        return sent

    def _job_insert(self, sent: dict[str, Any], seconds: float) -> None:
        body = sent.get("data")
        if not isinstance(body, dict) or not isinstance(body.get("configuration"), dict):
            return
        config = dict(body["configuration"])
        config["jobTimeoutMs"] = self._job_timeout_ms(config.get("jobTimeoutMs"), seconds)
        query = config.get("query")
        limit = self.guard.policy.max_bytes[self.timeout_class]
        if isinstance(query, dict) and limit is not None and "maximumBytesBilled" not in query:
            config["query"] = {**query, "maximumBytesBilled": str(limit)}
        sent["data"] = {**body, "configuration": config}

    def _jobs_query(self, sent: dict[str, Any], seconds: float) -> None:
        body = sent.get("data")
        if not isinstance(body, dict):
            return
        body = dict(body)
        body["jobTimeoutMs"] = self._job_timeout_ms(body.get("jobTimeoutMs"), seconds)
        limit = self.guard.policy.max_bytes[self.timeout_class]
        if limit is not None and "maximumBytesBilled" not in body:
            body["maximumBytesBilled"] = str(limit)
        timeout = sent.get("timeout")
        if "timeoutMs" not in body and isinstance(timeout, (int, float)):
            # Server answers "not done yet" before our HTTP timeout fires.
            body["timeoutMs"] = max(0, int(timeout * 1000) - SERVER_HOLD_BUFFER_MS)
        sent["data"] = body

    def _get_query_results(self, sent: dict[str, Any], seconds: Any) -> None:
        params = sent.get("query_params")
        if not isinstance(params, dict) or not isinstance(seconds, (int, float)):
            return
        hold = max(0, int(seconds * 1000) - SERVER_HOLD_BUFFER_MS)
        current = params.get("timeoutMs")
        if not isinstance(current, int) or current > hold:
            sent["query_params"] = {**params, "timeoutMs": hold}

    def _job_timeout_ms(self, given: Any, seconds: float) -> Any:
        computed = max(1, int(seconds * 1000))
        if given is None:
            self.applied["bastion.bq.job_timeout_ms"] = computed
            self.job_timeout_set = True
            return computed
        self.applied["bastion.bq.job_timeout_ms"] = given
        cap = self.guard.policy.deadline_cap()
        if cap is not None:
            try:
                if int(given) > cap * 1000:
                    self.applied["bastion.bq.job_timeout_ms"] = int(cap * 1000)
                    return str(int(cap * 1000))
            except (TypeError, ValueError):
                pass
        return given

    def bounded_retry(self, retry: Any) -> Any:
        """The client's retry (600 s by default, inside ``_call_api`` for most calls),
        its total capped by the request deadline minus margin; unchanged outside one."""
        if retry is None or not hasattr(retry, "with_timeout"):
            return retry
        policy = self.guard.policy
        left = deadline_remaining()
        if left is None:
            return retry
        limit = max(left - policy.margin, MIN_HTTP_SECONDS)
        current = getattr(retry, "timeout", None)
        if isinstance(current, (int, float)) and current <= limit:
            return retry
        return retry.with_timeout(limit)

    def note_cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.guard.instruments.cancellations.add(
                1, {"bastion.bq.timeout_class": self.timeout_class}
            )

    # --- the end ---------------------------------------------------------------------
    def finish(self, error: BaseException | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        guard = self.guard
        duration = _monotonic() - self.start
        stats = self.stats
        span = self._span or self.span
        timed_out = False
        if self.refused is not None:
            outcome = "refused"
        elif error is None:
            outcome = "ok"
        elif gave_up(error) or isinstance(error, DeadlineExceeded):
            # The client stopped waiting; "cancelled" once the job was cancelled.
            outcome = "cancelled" if self.cancelled else "timeout"
            timed_out = True
        elif is_timeout(error) or stats.error_reason in _TIMEOUT_REASONS:
            outcome = "timeout"  # stopped server-side by jobTimeoutMs
            timed_out = True
        elif stats.error_reason in _STOPPED_REASONS or _reason(error) in _STOPPED_REASONS:
            outcome = "cancelled"
        else:
            outcome = "error"
        long = duration >= guard.policy.slow[self.timeout_class]
        if span.is_recording():  # sampled out or no SDK: nothing reads the attributes
            attributes = stats.attributes()
            attributes.update(self.applied)
            attributes["bastion.outcome"] = outcome
            if long:
                attributes["bastion.bq.long"] = True
                span.add_event(
                    "bastion.bq.long_query",
                    {"bastion.bq.duration_seconds": round(duration, 3)},
                )
            if error is not None:
                attributes["error.type"] = _error_type(error)
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, str(error)[:300]))
            span.set_attributes(attributes)
        span.end()
        instruments = guard.instruments
        metric_attributes = instruments.class_attributes(self.timeout_class)
        instruments.duration.record(
            duration, instruments.outcome_attributes(self.timeout_class, outcome)
        )
        if stats.bytes_billed is not None:
            instruments.bytes_billed.record(stats.bytes_billed, metric_attributes)
        if timed_out:
            instruments.timeouts.add(1, metric_attributes)
        if long:
            instruments.long_queries.add(1, metric_attributes)


def _error_type(error: BaseException) -> str:
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
