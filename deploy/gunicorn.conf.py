"""gunicorn configuration shared by the six services (``gunicorn -c deploy/gunicorn.conf.py``).

Timeouts, in the order that lets each one act before the next (see deploy/timeouts.py):

* ``BASTION_DEADLINE_SECONDS`` (read through Bastion's settings): the request budget;
* gunicorn ``timeout``: half-way between the deadline and Cloud Run's timeout;
* ``CLOUD_RUN_TIMEOUT_SECONDS``: the service's Cloud Run ``timeoutSeconds``; the manifests
  set it because nothing tells a container its own timeout.

A bad order stops gunicorn at startup with a message naming the three values.

Workers: ``WEB_CONCURRENCY`` processes (default 1) x ``GUNICORN_THREADS`` threads (default 8,
gthread; 1 selects the sync worker). Cloud Run sends SIGTERM and waits 10 s before SIGKILL,
so ``graceful_timeout`` is 8 s. On every worker exit and abort the telemetry is flushed, so
the spans and metrics of the last requests (and of the request that hung) are not lost.
"""

from __future__ import annotations

import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from timeouts import gunicorn_timeout  # deploy/timeouts.py, on the path just above

from middleware.settings import Settings

_settings = Settings.from_env()
_cloud_run_seconds = float(os.environ.get("CLOUD_RUN_TIMEOUT_SECONDS", "300"))

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = gunicorn_timeout(_settings.deadline_seconds, _cloud_run_seconds)
graceful_timeout = 8
keepalive = 5
accesslog = "-"
errorlog = "-"
# BASTION_TRUSTED_PROXIES decides which proxies are believed. gunicorn's own default
# trusts X-Forwarded-* from 127.0.0.1, i.e. from any sidecar of the instance: turn it off.
forwarded_allow_ips = ""


def _flush(worker: Any) -> None:
    try:
        from instrumentation.telemetry import flush

        flush(timeout_millis=5000)
    except Exception:  # never let a flush failure change how the worker exits
        worker.log.exception("telemetry flush failed")


def worker_exit(server: Any, worker: Any) -> None:
    _flush(worker)


def worker_abort(worker: Any) -> None:
    """gunicorn's timeout fired (SIGABRT): flush before the worker dies."""
    _flush(worker)


def on_starting(server: Any) -> None:
    server.log.info(
        "timeouts: Bastion deadline %gs < gunicorn %ss < Cloud Run %gs",
        _settings.deadline_seconds,
        timeout,
        _cloud_run_seconds,
    )
