"""Recording an overrun: the log record with the request's stack, the span event and
the ``bastion.deadline.exceeded`` counter.

Everything here runs only when a deadline has passed, never on the per-request path.
Reports are written by one *reporter* thread, fed through a bounded queue: logging
takes handler locks and the tracing and metrics SDKs take theirs, and the watchdog
(or an event loop) must never wait for any of them. When the queue is full a report
is dropped and counted (``bastion.deadline.reports_dropped``), never waited for.

The span event is added from the request's own thread or task: through a context
copied when the request started (ASGI), in Flask's request handling (the deadline's
Flask handlers), or on the span current when the WSGI request ends (an outer
OpenTelemetry WSGI middleware's).
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import traceback
from collections.abc import Callable
from queue import SimpleQueue
from types import FrameType
from typing import Any, Final, NamedTuple

from opentelemetry import metrics, trace

from bastion.middleware._flags import Mode
from bastion.middleware.deadline.fanout import detached

__all__ = [
    "Overrun",
    "Reporter",
    "Stack",
    "add_span_event",
    "annotate_current_span",
    "capture_stack",
    "capture_task_stack",
    "format_stack",
    "get_reporter",
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

_dropped_counter: Final = _meter.create_counter(
    "bastion.deadline.reports_dropped",
    description="Overrun reports dropped because the reporter thread was behind.",
)

#: Reports waiting for the reporter thread, at most.
QUEUE_LIMIT: Final = 1000


class Overrun(NamedTuple):
    """A WSGI request the watchdog found past its deadline, as it was then."""

    owner: Any  # the middleware: its mode and route labels
    method: str
    path: str
    budget: float
    source: str
    stack: Stack
    thread_id: int

    @classmethod
    def of(cls, registration: Any, stack: Stack) -> Overrun:
        return cls(
            registration.owner,
            str(registration.method),
            str(registration.path),
            registration.budget,
            registration.source,
            stack,
            registration.thread_id,
        )

    def write(self) -> None:
        mode: Mode = self.owner.mode
        thread = next((t for t in threading.enumerate() if t.ident == self.thread_id), None)
        log_expiry(
            mode=mode,
            method=self.method,
            path=self.path,
            route=self.owner.route_label(self.path),
            budget=self.budget,
            source=self.source,
            stack_text=format_stack(self.stack),
            where=f"thread {thread.name if thread is not None else self.thread_id}",
        )


class Reporter:
    """The thread that writes overrun reports, and its bounded queue.

    :meth:`submit` and :meth:`failed` never block and take no lock: they are called
    by the watchdog and from event loops."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[Callable[[], None]] = SimpleQueue()
        self._submitted = 0  # written by submitters only
        self._written = 0  # written by the reporter thread only
        self._dropped = 0  # written by submitters only
        self._dropped_seen = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, report: Overrun | Callable[[], None]) -> None:
        """Queue a report (an :class:`Overrun`, or any callable that writes one)."""
        if self._submitted - self._written >= QUEUE_LIMIT:
            self._dropped += 1
            return
        if self._thread is None:
            self.start()
        self._submitted += 1
        self._queue.put(report.write if isinstance(report, Overrun) else report)

    def failed(self, what: str, error: BaseException) -> None:
        """An error inside a guard's own thread: logged by the reporter thread."""
        self.submit(lambda: logger.error("%s failed; going on", what, exc_info=error))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every report queued so far is written (tests, worker exit)."""
        done = threading.Event()
        if self._thread is None:
            self.start()
        self._submitted += 1
        self._queue.put(done.set)  # past the limit too: it is one small marker
        return done.wait(timeout)

    def start(self) -> None:
        """Start the reporter thread now rather than at the first report."""
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="bastion-deadline-reporter", daemon=True
                )
                with detached():  # the thread outlives the request that starts it
                    thread.start()
                self._thread = thread

    def _run(self) -> None:
        while True:
            write = self._queue.get()
            try:
                write()
            except Exception:
                logger.exception("writing a deadline report failed")
            finally:
                self._written += 1
            dropped = self._dropped
            if dropped != self._dropped_seen:
                lost, self._dropped_seen = dropped - self._dropped_seen, dropped
                _dropped_counter.add(lost)
                logger.warning("%d deadline overrun reports dropped: the reporter was behind", lost)


_reporter = Reporter()


def get_reporter() -> Reporter:
    """The process's reporter (its thread starts with the first report)."""
    return _reporter


def _after_fork_in_child() -> None:
    global _reporter
    _reporter = Reporter()  # the parent's thread did not come along


os.register_at_fork(after_in_child=_after_fork_in_child)


#: A captured stack, outermost call first: (filename, line number, function) per frame.
#: Plain tuples, so taking one costs the watchdog as little as it can; source lines
#: are looked up only when the reporter formats it.
Stack = list[tuple[str, int, str]]

#: The most frames a captured stack keeps (the innermost ones).
STACK_LIMIT: Final = 100


def capture_stack(frame: FrameType | None) -> Stack:
    """The stack of a running thread, innermost frame ``frame``."""
    stack: Stack = []
    while frame is not None and len(stack) < STACK_LIMIT:
        code = frame.f_code
        stack.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    stack.reverse()
    return stack


def capture_task_stack(frames: list[FrameType]) -> Stack:
    """The await chain of an asyncio task, outermost first."""
    return [(f.f_code.co_filename, f.f_lineno, f.f_code.co_name) for f in frames]


def format_stack(stack: Stack) -> str:
    """The stack as a traceback prints it, source lines included."""
    summary = traceback.StackSummary.from_list([(*frame, None) for frame in stack])
    return "".join(summary.format()) or "  (no Python frames)\n"


def request_span(context: contextvars.Context) -> trace.Span | None:
    span = context.run(trace.get_current_span)
    return span if span.is_recording() else None


def quick_stack_text(stack: Stack) -> str:
    """The stack without source lines: no file reads, so cheap enough to take before
    acting on the request (the span must get its event before the request ends it)."""
    return "".join(f'  File "{file}", line {line}, in {name}\n' for file, line, name in stack)


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
                "exception.type": "bastion.middleware.deadline.DeadlineExceeded",
                "exception.stacktrace": stack_text,
            },
        )
    except Exception:  # a span from a broken SDK must not break the watchdog
        logger.debug("could not add the deadline event to the span", exc_info=True)


def annotate_current_span(*, mode: Mode, budget: float, source: str, stack_text: str) -> None:
    """The event on the span current in this thread, if it is recording."""
    span = trace.get_current_span()
    if span.is_recording():
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
