"""Recording an overrun: the log record with the request's stack, the span event and
the ``bastion.deadline.exceeded`` counter.

Everything here runs only when a deadline has passed, never on the per-request path.
The request span is found through a context copied when the request started (ASGI),
through the span the Flask instrumentation keeps in the WSGI environ (from the
watchdog's thread, at once), or as the span current in the request's own thread once
the request ends (an outer OpenTelemetry WSGI middleware's).
"""

from __future__ import annotations

import contextvars
import logging
import traceback
from collections.abc import Mapping
from types import FrameType
from typing import Final

from opentelemetry import metrics, trace

from middleware._flags import Mode

__all__ = [
    "add_span_event",
    "annotate_current_span",
    "capture_stack",
    "capture_task_stack",
    "format_stack",
    "log_expiry",
    "quick_stack_text",
    "record_outcome",
    "request_span",
]

logger = logging.getLogger("bastion.deadline")

_meter = metrics.get_meter("bastion")
exceeded_counter: Final = _meter.create_counter(
    "bastion.deadline.exceeded",
    description="Requests that outlived their deadline, by outcome (504, aborted, observed).",
)

#: Where opentelemetry-instrumentation-flask keeps the request span in the environ.
_FLASK_SPAN_KEY: Final = "opentelemetry-flask.span_key"


def capture_stack(frame: FrameType | None) -> traceback.StackSummary:
    """The stack of a running thread or task, without reading source files (cheap
    enough to take under the watchdog's lock; lines are looked up when formatted)."""
    if frame is None:
        return traceback.StackSummary()
    summary = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
    summary.reverse()
    return summary


def capture_task_stack(frames: list[FrameType]) -> traceback.StackSummary:
    """The await chain of an asyncio task (``task.get_stack()``), outermost first."""
    return traceback.StackSummary.extract(((f, f.f_lineno) for f in frames), lookup_lines=False)


def format_stack(stack: traceback.StackSummary) -> str:
    return "".join(stack.format()) or "  (no Python frames)\n"


def request_span(
    context: contextvars.Context | None, environ: Mapping[str, object] | None = None
) -> trace.Span | None:
    span: trace.Span | None = None
    if context is not None:
        span = context.run(trace.get_current_span)
    if (span is None or not span.is_recording()) and environ is not None:
        found = environ.get(_FLASK_SPAN_KEY)
        span = found if isinstance(found, trace.Span) else span
    return span if span is not None and span.is_recording() else None


def quick_stack_text(stack: traceback.StackSummary) -> str:
    """The stack without source lines: no file reads, so cheap enough to take before
    acting on the request (the span must get its event before the request ends it)."""
    return "".join(
        f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n' for frame in stack
    )


def add_span_event(
    span: trace.Span | None, *, mode: Mode, budget: float, source: str, stack_text: str
) -> None:
    if span is None:
        return
    try:
        span.add_event(
            "bastion.deadline.exceeded",
            {
                "bastion.mode": str(mode),
                "bastion.deadline.budget_s": budget,
                "bastion.deadline.source": source,
                "exception.type": "middleware.deadline.DeadlineExceeded",
                "exception.stacktrace": stack_text,
            },
        )
    except Exception:  # a span from a broken SDK must not break the watchdog
        logger.debug("could not add the deadline event to the span", exc_info=True)


def annotate_current_span(
    environ: Mapping[str, object], *, mode: Mode, budget: float, source: str, stack_text: str
) -> None:
    """The event on the span current in this thread, unless it is the Flask span the
    watchdog has already annotated (or nothing is recording)."""
    span = trace.get_current_span()
    if span.is_recording() and span is not environ.get(_FLASK_SPAN_KEY):
        add_span_event(span, mode=mode, budget=budget, source=source, stack_text=stack_text)


def log_expiry(
    *,
    mode: Mode,
    method: str,
    path: str,
    route: str,
    budget: float,
    source: str,
    stack_text: str,
    where: str,
) -> None:
    """Log the overrun with the request's stack; in observe mode also count it
    (enforce mode counts when it knows whether it answered 504 or aborted)."""
    action = {
        Mode.ENFORCE: "cancelling it",
        Mode.OBSERVE: "observe mode, left running",
    }.get(mode, "")
    logger.warning(
        "deadline exceeded: %s %s ran past its %.3fs budget (%s) in %s; %s\n"
        "Stack (most recent call last):\n%s",
        method,
        path,
        budget,
        source,
        where,
        action,
        stack_text.rstrip("\n"),
        extra={
            "http.route": route,
            "bastion.mode": str(mode),
            "bastion.deadline.budget_s": budget,
            "bastion.deadline.source": source,
        },
    )
    if mode is Mode.OBSERVE:
        record_outcome(route, mode, "observed")


def record_outcome(route: str, mode: Mode, outcome: str) -> None:
    exceeded_counter.add(
        1, {"http.route": route, "bastion.mode": str(mode), "bastion.outcome": outcome}
    )
