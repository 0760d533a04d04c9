"""The wrapt wrappers: one per public entry point of the client, plus ``_call_api``.

Rules every wrapper follows:

* ``is_instrumentation_enabled()`` false → the call runs untouched;
* one CLIENT span per logical operation: the outermost wrapper starts the
  :class:`~bastion.instrumentation.bigquery._operation.Operation`, nested ones (a DB-API
  cursor calling ``query_and_wait`` calling ``job.result()``) join it;
* anything that goes wrong inside the guard is logged once and the call proceeds
  with the caller's own arguments. The only exceptions the guard raises on purpose
  are enforce-mode decisions: :class:`UnpartitionedQueryError` (before any job) and
  :class:`~bastion.middleware.deadline.DeadlineExceeded` (request deadline spent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import set_span_in_context

from bastion.instrumentation.bigquery import _labels
from bastion.instrumentation.bigquery._guard import Guard, UnpartitionedQueryError
from bastion.instrumentation.bigquery._operation import ACTIVE, Operation
from bastion.middleware.deadline import DeadlineExceeded

__all__ = ["Wrappers"]

Wrapped = Callable[..., Any]
_UNSET: Any = object()


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, index: int) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else _UNSET


def _with_arg(
    args: tuple[Any, ...], kwargs: dict[str, Any], name: str, index: int, value: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if name not in kwargs and len(args) > index:
        return (*args[:index], value, *args[index + 1 :]), kwargs
    return args, {**kwargs, name: value}


def _table_id(table: Any) -> str:
    if isinstance(table, str):
        return table
    parts = [_safe_getattr(table, a) for a in ("project", "dataset_id", "table_id")]
    if all(isinstance(p, str) for p in parts):
        return ".".join(parts)
    return type(table).__name__


class Wrappers:
    """Bound wrapper functions sharing one :class:`Guard`."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    # --- shared steps ------------------------------------------------------------
    def _begin(self, kind: str, client: Any) -> Operation | None:
        try:
            return Operation(self.guard, kind, client)
        except Exception as error:
            self.guard.failed("span start", error)
            return None

    def _finish(self, op: Operation, error: BaseException | None = None) -> None:
        try:
            op.finish(error)
        except Exception as failure:
            self.guard.failed("span end", failure)

    def _run(
        self,
        op: Operation,
        owned: bool,
        explicit: bool,
        wrapped: Wrapped,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        keep_open: bool = False,
    ) -> Any:
        """Call ``wrapped`` with ``op`` active and its span current; finish ``op`` if
        this call owns it (or, with ``keep_open``, hand it to the returned job)."""
        token = ACTIVE.set(op)
        previous_explicit, op.explicit = op.explicit, explicit
        try:
            # Not yet started (a DB-API cursor before its query is known): the nested
            # call that describes it makes its span current.
            context_token = (
                otel_context.attach(set_span_in_context(op.span)) if op.started else None
            )
        except Exception as error:
            self.guard.failed("span context", error)
            context_token = None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as error:
            self._leave(op, token, context_token, previous_explicit)
            if owned:
                self._finish(op, error)
            raise
        self._leave(op, token, context_token, previous_explicit)
        if owned:
            if keep_open:
                self._attach(op, result)
            else:
                self._finish(op)
        return result

    def _leave(self, op: Operation, token: Any, context_token: Any, explicit: bool) -> None:
        op.explicit = explicit
        if context_token is not None:
            otel_context.detach(context_token)
        ACTIVE.reset(token)

    def _attach(self, op: Operation, job: Any) -> None:
        """Keep ``op`` open until ``job.result()`` ends (or the job is garbage)."""
        try:
            self.guard.track(job, op, _abandoned)
        except Exception as error:
            self.guard.failed("job attach", error)
            self._finish(op)

    def _describe_query(
        self, op: Operation, client: Any, sql: Any, job_config: Any, project: Any
    ) -> None:
        """Name and classify ``op`` from its SQL; check partition filters. Raises
        UnpartitionedQueryError in enforce mode, nothing else."""
        guard = self.guard
        unfiltered: list[tuple[str, str]] = []
        try:
            if not isinstance(project, str):
                project = getattr(client, "project", None)
            default = getattr(client, "default_query_job_config", None)
            labels: dict[str, Any] | None = None
            dataset = None
            for config in (default, job_config):
                if config is None or config is _UNSET:
                    continue
                # Not config.labels: that getter stores an empty dict into the caller's
                # config (setdefault), which would then be sent as "labels": {}.
                properties = getattr(config, "_properties", None)
                found = properties.get("labels") if isinstance(properties, dict) else None
                if isinstance(found, dict) and found:
                    labels = {**labels, **found} if labels else found
                ref = getattr(config, "default_dataset", None)
                if ref is not None:
                    dataset = f"{ref.project}.{ref.dataset_id}"
            try:
                description = guard.describe(sql, project, dataset)
            except Exception as error:
                if isinstance(sql, str):
                    guard.failed("analyze", error)
                description = guard.fallback_description(sql, project)
            timeout_class, source, pattern = guard.policy.resolve_class(
                description.timeout_class, labels
            )
            op.describe(description, timeout_class, source, pattern)
            if description.tables:
                unfiltered, judged = guard.unfiltered(sql, description, client, project, dataset)
                if unfiltered:
                    op.mark_unfiltered(unfiltered)
                if not judged:
                    op.mark_unjudged()
        except Exception as error:
            guard.failed("describe", error)
            return
        if unfiltered and guard.enforce:
            table, column = unfiltered[0]
            op.refused = "unpartitioned"
            refusal = UnpartitionedQueryError(table, column)
            try:
                guard.instruments.refusals.add(1, {"bastion.reason": "unpartitioned"})
            except Exception as error:
                guard.failed("metrics", error)
            raise refusal

    def _describe_other(self, op: Operation, operation: str, target: str, client: Any) -> None:
        try:
            project = getattr(client, "project", None)
            name = f"{operation} {target}"[:255]
            timeout_class, source, pattern = self.guard.policy.resolve_class(
                "write", None, "operation"
            )
            op.describe(
                _Other(name, operation, project),  # type: ignore[arg-type]
                timeout_class,
                source,
                pattern,
            )
        except Exception as error:
            self.guard.failed("describe", error)

    def _query_op(
        self, kind: str, client: Any, sql: Any, job_config: Any, project: Any
    ) -> tuple[Operation | None, bool]:
        """(operation, owned) for a query entry point, described; (None, False) when
        the call should run untouched."""
        active = ACTIVE.get()
        if active is not None and active.described:
            return None, False
        op = active or self._begin(kind, client)
        if op is None:
            return None, False
        owned = active is None
        try:
            self._describe_query(op, client, sql, job_config, project)
        except UnpartitionedQueryError as refusal:
            if owned:
                self._finish(op, refusal)
            raise
        return op, owned

    # --- Client._call_api: every REST request --------------------------------------
    def call_api(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        # ``span_name=None`` makes ``Client._call_api`` skip its own span
        # (``create_span``): wrapt hands us a fresh kwargs dict, so this changes
        # nothing the caller holds. A positional span_name (no caller of the client
        # passes one) is left alone.
        op = ACTIVE.get()
        if op is None or op.finished:
            # Outside an operation the client keeps its spans, except under OTel's
            # suppress_instrumentation() (which create_span ignores): the guard's own
            # background tables.get runs there and would be an orphan root span.
            if "span_name" in kwargs and not is_instrumentation_enabled():
                kwargs["span_name"] = None
            return wrapped(*args, **kwargs)
        if self.guard.replace_library_spans and "span_name" in kwargs:
            kwargs["span_name"] = None
        try:
            sent = op.prepare(kwargs)
            if args and self.guard.enforce:
                args = (op.bounded_retry(args[0]), *args[1:])
        except DeadlineExceeded:
            raise
        except Exception as error:
            self.guard.failed("request timeouts", error)
            sent = kwargs
        try:
            sent = _labels.label(op, sent, self.guard.fingerprint, send=self.guard.enforce)
        except Exception as error:
            self.guard.failed("job labels", error)
        response = wrapped(*args, **sent)
        try:
            op.stats.read(response)
        except Exception as error:
            self.guard.failed("statistics", error)
        return response

    # --- query entry points --------------------------------------------------------
    def query(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        op, owned = self._query_op(
            "query",
            instance,
            _arg(args, kwargs, "query", 0),
            _arg(args, kwargs, "job_config", 1),
            _arg(args, kwargs, "project", 5),
        )
        if op is None:
            return wrapped(*args, **kwargs)
        explicit = _arg(args, kwargs, "timeout", 7) not in (_UNSET, None)
        return self._run(op, owned, explicit, wrapped, args, kwargs, keep_open=True)

    def query_and_wait(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        op, owned = self._query_op(
            "query_and_wait",
            instance,
            _arg(args, kwargs, "query", 0),
            kwargs.get("job_config"),
            kwargs.get("project"),
        )
        if op is None:
            return wrapped(*args, **kwargs)
        explicit = kwargs.get("api_timeout") is not None
        return self._run(op, owned, explicit, wrapped, args, kwargs)

    def cursor_execute(self, wrapped: Wrapped, instance: Any, args: Any, kwargs: Any) -> Any:
        # Described by the query_and_wait / query call it makes (with the SQL as sent).
        if not is_instrumentation_enabled() or ACTIVE.get() is not None:
            return wrapped(*args, **kwargs)
        client = getattr(getattr(instance, "connection", None), "_client", None)
        op = self._begin("dbapi", client)
        if op is None:
            return wrapped(*args, **kwargs)
        return self._run(op, True, False, wrapped, args, kwargs)


class _Other:
    """A Description-alike for operations that are not SQL (loads, insertAll)."""

    def __init__(self, name: str, operation: str, project: str | None) -> None:
        self.name = name
        self.timeout_class = "write"
        self.tables = ()
        self.variants: dict[tuple[str, str, str], Any] = {}
        self.attributes: dict[str, Any] = {
            "db.operation.name": operation,
            "db.query.summary": name,
        }
        if project:
            self.attributes["db.namespace"] = project


def _safe_getattr(obj: Any, name: str) -> Any:
    """A property that may raise on an odd object (``QueryJob.project`` reads nested
    keys of its resource) must not reach the caller."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _abandoned(op: Operation) -> None:
    """The job was dropped without ``result()``: end its span where we lost sight of it."""
    if not op.finished:
        try:
            op.applied["bastion.bq.detached"] = True
            op.finish(None)
        except Exception as error:
            op.guard.failed("span end", error)
