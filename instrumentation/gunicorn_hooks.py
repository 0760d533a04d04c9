"""gunicorn hooks that save telemetry when a worker goes.

gunicorn's ``--timeout`` kills a worker whose heartbeat stalls (SIGABRT, then SIGKILL),
and a worker that exits takes its buffered spans with it. ``worker_abort`` logs every
thread's stack (so a killed worker says what it was stuck in) and flushes;
``worker_exit`` flushes and shuts the providers down. Both go through the OpenTelemetry
API, so they flush whatever providers are installed. The packaged
:mod:`bastion.instrumentation.gunicorn_conf` installs them; a config of your own::

    from bastion.instrumentation.gunicorn_hooks import worker_abort, worker_exit
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import traceback
from typing import Any

from opentelemetry import metrics, trace

from bastion.middleware.deadline.report import get_reporter

__all__ = ["flush_telemetry", "worker_abort", "worker_exit"]

logger = logging.getLogger("bastion.deadline")


def worker_abort(worker: Any) -> None:
    """gunicorn hook, in the worker on SIGABRT (its ``--timeout`` passed): log every
    thread's stack, then flush. The arbiter sends SIGKILL about a second later."""
    try:
        frames = sys._current_frames()
        names = {t.ident: t.name for t in threading.enumerate()}
        stacks = "\n".join(
            f"Thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame))
            for ident, frame in frames.items()
        )
        logger.critical(
            "gunicorn is aborting worker %s (its --timeout passed); threads:\n%s",
            getattr(worker, "pid", "?"),
            stacks,
        )
    finally:
        flush_telemetry(timeout_millis=500)


def worker_exit(server: Any, worker: Any) -> None:
    """gunicorn hook, in the worker as it exits (normally, or after an abort)."""
    flush_telemetry(timeout_millis=2000, shutdown=True)


def flush_telemetry(timeout_millis: int = 2000, *, shutdown: bool = False) -> None:
    """Write the deadline reports still queued, then flush (and optionally shut down)
    the installed tracer, meter and logger providers, then the standard logging
    handlers. Never raises."""
    with contextlib.suppress(Exception):
        get_reporter().flush(timeout_millis / 1000)
    providers: list[object] = [trace.get_tracer_provider(), metrics.get_meter_provider()]
    try:
        from opentelemetry._logs import get_logger_provider

        providers.append(get_logger_provider())
    except ImportError:  # an API without the logs signal
        pass
    for provider in providers:
        for method in ("force_flush", "shutdown") if shutdown else ("force_flush",):
            call = getattr(provider, method, None)
            if not callable(call):
                continue
            try:
                if method == "force_flush":
                    call(timeout_millis)
                else:
                    call()
            except Exception:
                logger.debug("%s.%s failed", type(provider).__name__, method, exc_info=True)
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
