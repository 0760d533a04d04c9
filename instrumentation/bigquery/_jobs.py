"""The wrappers for waiting on jobs (``QueryJob.result``, ``_AsyncJob.result``), loads
and streaming inserts, on top of the query wrappers of :mod:`._wrappers`.

Waiting is where the client gives up: here the guard sets the wait where the caller
gave none (enforce), and cancels the job server-side when a bound of Bastion's (the
wait it set from the class timeout, or the request deadline) ended the wait. A wait the
caller bounded explicitly (``job.result(timeout=1)`` in a polling loop) ends the wait
only, as in the library: the job goes on and is not cancelled.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from bastion.instrumentation.bigquery._guard import (
    ClassTimeoutError,
    UnpartitionedQueryError,
    stopped_at_class_timeout,
)
from bastion.instrumentation.bigquery._operation import (
    ACTIVE,
    Operation,
    gave_up,
    stopped_at_job_timeout,
)
from bastion.instrumentation.bigquery._timeouts import MIN_HTTP_SECONDS
from bastion.instrumentation.bigquery._wrappers import (
    _UNSET,
    Wrapped,
    Wrappers,
    _arg,
    _safe_getattr,
    _table_id,
    _with_arg,
)
from bastion.middleware.deadline import DeadlineExceeded, DeadlineTimeoutError
from bastion.middleware.deadline import remaining as deadline_remaining

__all__ = ["JobWrappers"]

#: A deadline this close to its margin is spent: its waits are Bastion's to end.
_SPENT = 0.05


class JobWrappers(Wrappers):
    """Every wrapper the instrumentor installs."""

    # --- waiting for a job -----------------------------------------------------------
    def query_result(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._result(wrapped, instance, args, kwargs, 3, no_timeout=_is_sentinel)

    def job_result(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._result(wrapped, instance, args, kwargs, 1, no_timeout=_is_none)

    def _result(
        self,
        wrapped: Wrapped,
        job: Any,
        args: Any,
        kwargs: Any,
        timeout_index: int,
        no_timeout: Callable[[Any], bool],
    ) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        guard = self.guard
        op = ACTIVE.get()
        owned = False
        if op is None:
            try:
                op = guard.operation_of(job)
            except Exception as error:  # an odd job object
                guard.failed("job lookup", error)
            if op is not None and op.finished:
                return wrapped(*args, **kwargs)  # a second result(): cached, no new span
            if op is None:
                op = self._begin("result", getattr(job, "_client", None))
                if op is None:
                    return wrapped(*args, **kwargs)
                sql = getattr(job, "query", None)
                if isinstance(sql, str):
                    # The job already exists: there is nothing left to refuse.
                    with contextlib.suppress(UnpartitionedQueryError):
                        self._describe_query(
                            op,
                            getattr(job, "_client", None),
                            sql,
                            None,
                            _safe_getattr(job, "project"),
                        )
            owned = True
        timeout = _arg(args, kwargs, "timeout", timeout_index)
        explicit = not no_timeout(timeout)
        previous_wait = op.wait_until
        try:
            if not explicit:
                seconds, bound_by = guard.policy.limit(op.class_seconds)
                if guard.enforce:
                    wait = max(seconds, 0.001)
                    args, kwargs = _with_arg(args, kwargs, "timeout", timeout_index, wait)
                    op.wait_until = time.monotonic() + wait
                    op.applied["bastion.bq.timeout_seconds"] = round(wait, 3)
                    op.applied["bastion.bq.wait_bound_by"] = bound_by
                else:
                    op.applied["bastion.bq.would_wait_seconds"] = round(seconds, 3)
            elif guard.enforce and isinstance(timeout, (int, float)):
                op.wait_until = time.monotonic() + timeout  # honoured, not changed
        except Exception as error:
            guard.failed("result timeout", error)
        try:
            return self._run_result(op, owned, explicit, wrapped, job, args, kwargs)
        finally:
            op.wait_until = previous_wait

    def _run_result(
        self,
        op: Operation,
        owned: bool,
        explicit: bool,
        wrapped: Wrapped,
        job: Any,
        args: Any,
        kwargs: Any,
    ) -> Any:
        try:
            return self._run(op, False, explicit, wrapped, args, kwargs)
        except BaseException as error:
            if not (gave_up(error) or isinstance(error, DeadlineExceeded)):
                if owned:
                    self._finish(op, error)
                refused = self._server_cut(op, error)
                if refused is not None:
                    raise refused from error
                raise
            if not self._bound_by_bastion(explicit):
                # The caller's own wait ended; the job goes on. A job created in an
                # operation keeps it open for the caller's next result().
                if owned and self._tracked(op, job):
                    owned = False
                    op.applied["bastion.bq.caller_waits_ended"] = (
                        int(op.applied.get("bastion.bq.caller_waits_ended", 0)) + 1
                    )
                raise
            self._give_up(op, job)
            cut = self._deadline_cut(op, error) or self._class_cut(op, error)
            if owned:
                self._finish(op, cut or error)
            if cut is not None:
                raise cut from error
            raise
        finally:
            if owned and not op.finished:
                self._finish(op)

    def _deadline_cut(self, op: Operation, error: BaseException) -> DeadlineExceeded | None:
        """In enforce, a wait the guard cut at the request deadline ends in
        DeadlineTimeoutError (a TimeoutError, so ``except TimeoutError`` still holds),
        which the deadline middleware answers with a 504."""
        if (
            not self.guard.enforce
            or isinstance(error, DeadlineExceeded)
            or op.applied.get("bastion.bq.wait_bound_by") != "deadline"
        ):
            return None
        job_id = op.stats.job_id or "?"
        return DeadlineTimeoutError(
            f"BigQuery job {job_id} stopped at the request deadline "
            f"({'cancelled' if op.cancelled else 'not cancelled'})"
        )

    def _class_cut(self, op: Operation, error: BaseException) -> ClassTimeoutError | None:
        """In enforce, a wait the guard bounded by the timeout class, ended by the
        library's own give-up (a TimeoutError), ends in ClassTimeoutError: still a
        TimeoutError, and a refusal ``protect()`` answers with a 504. A give-up of
        another kind (``requests.Timeout``, ``RetryError``) is left as it is, so that
        handlers keyed on it still catch it."""
        if (
            not self.guard.enforce
            or not isinstance(error, TimeoutError)
            or isinstance(error, DeadlineExceeded)
            or op.applied.get("bastion.bq.wait_bound_by") != "class"
        ):
            return None
        job_id = op.stats.job_id or "?"
        seconds = float(op.applied.get("bastion.bq.timeout_seconds", 0.0))
        timeout_class = str(op.timeout_class or "?")
        cut = ClassTimeoutError(
            f"BigQuery job {job_id} stopped at its {timeout_class} class timeout ({seconds:g} s; "
            f"{'cancelled' if op.cancelled else 'not cancelled'})",
            timeout_class=timeout_class,
            seconds=seconds,
        )
        self.guard.report_class_cut(timeout_class, cut)
        return cut

    def _server_cut(self, op: Operation, error: BaseException) -> BaseException | None:
        """In enforce, a job the server stopped at the jobTimeoutMs Bastion set (the
        caller gave none) raises the library's error as a refusal ``protect()``
        answers with a 504, still of the library's class (see
        :func:`stopped_at_class_timeout`)."""
        if not (self.guard.enforce and op.job_timeout_set and stopped_at_job_timeout(error)):
            return None
        try:
            refused = stopped_at_class_timeout(error)
        except Exception as failed:  # an odd error class: raise it as it was
            self.guard.failed("class timeout", failed)
            return None
        self.guard.report_class_cut(str(op.timeout_class), error)
        return refused

    def _tracked(self, op: Operation, job: Any) -> bool:
        try:
            return bool(self.guard.operation_of(job) is op)
        except Exception:
            return False

    def _bound_by_bastion(self, explicit: bool) -> bool:
        """Whether the wait that just ended was ended by a bound of Bastion's: the wait
        it set (class seconds or deadline) or the request deadline itself. A caller's own
        ``result(timeout=)`` ends the caller's wait only, as in the library: the job goes
        on, and the caller may wait for it again."""
        if not explicit:
            return True
        left = deadline_remaining()
        return left is not None and left - self.guard.policy.margin <= _SPENT

    def _give_up(self, op: Operation, job: Any) -> None:
        """The client stopped waiting: cancel the job server-side (enforce)."""
        guard = self.guard
        try:
            if getattr(job, "state", None) == "DONE":
                return
            if not guard.enforce:
                op.applied["bastion.bq.would_cancel"] = True
                op.span.add_event("bastion.bq.would_cancel")
                return
            token = ACTIVE.set(op)
            try:
                job.cancel(retry=None, timeout=guard.policy.cancel_timeout())
            finally:
                ACTIVE.reset(token)
        except Exception as error:
            guard.failed("cancel", error)

    # --- loads and streaming inserts -------------------------------------------------
    def insert_rows_json(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled() or ACTIVE.get() is not None:
            return wrapped(*args, **kwargs)
        op = self._begin("insertAll", instance)
        if op is None:
            return wrapped(*args, **kwargs)
        self._describe_other(op, "insertAll", _table_id(_arg(args, kwargs, "table", 0)), instance)
        explicit = _arg(args, kwargs, "timeout", 7) not in (_UNSET, None)
        try:
            rows = _arg(args, kwargs, "json_rows", 1)
            if isinstance(rows, (list, tuple)):
                op.applied["db.operation.batch.size"] = len(rows)
        except Exception as error:
            self.guard.failed("describe", error)
        errors = self._run(op, False, explicit, wrapped, args, kwargs)
        try:
            if isinstance(errors, list):
                op.applied["bastion.bq.insert_errors"] = len(errors)
        except Exception as error:
            self.guard.failed("statistics", error)
        self._finish(op)
        return errors

    def load_table_from_uri(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._load(wrapped, instance, args, kwargs, destination_index=1, timeout_index=8)

    def load_table_from_file(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._load(
            wrapped, instance, args, kwargs, destination_index=1, timeout_index=10, upload=True
        )

    def load_table_from_json(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        return self._load(
            wrapped, instance, args, kwargs, destination_index=1, timeout_index=8, upload=True
        )

    def _load(
        self,
        wrapped: Wrapped,
        client: Any,
        args: Any,
        kwargs: Any,
        *,
        destination_index: int,
        timeout_index: int,
        upload: bool = False,
    ) -> Any:
        if not is_instrumentation_enabled() or ACTIVE.get() is not None:
            return wrapped(*args, **kwargs)
        op = self._begin("load", client)
        if op is None:
            return wrapped(*args, **kwargs)
        destination = _table_id(_arg(args, kwargs, "destination", destination_index))
        self._describe_other(op, "LOAD", destination, client)
        timeout = _arg(args, kwargs, "timeout", timeout_index)
        explicit = timeout not in (_UNSET, None)
        if upload and not explicit:
            # Resumable uploads bypass _call_api: their HTTP timeout is set here.
            try:
                budget = self.guard.policy.budget(op.class_seconds)
                seconds = round(max(budget.seconds, MIN_HTTP_SECONDS), 3)
                if self.guard.enforce:
                    args, kwargs = _with_arg(args, kwargs, "timeout", timeout_index, seconds)
                    op.applied["bastion.bq.http_timeout_seconds"] = seconds
                else:
                    op.applied["bastion.bq.would_timeout_seconds"] = seconds
            except Exception as error:
                self.guard.failed("upload timeout", error)
        return self._run(op, True, explicit, wrapped, args, kwargs, keep_open=True)


def _is_sentinel(timeout: Any) -> bool:
    # The client's POLLING_DEFAULT_VALUE is a bare object(); it checks the same way.
    return timeout is _UNSET or type(timeout) is object


def _is_none(timeout: Any) -> bool:
    return timeout is _UNSET or timeout is None
