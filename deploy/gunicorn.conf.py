"""gunicorn configuration shared by the six services (``gunicorn -c deploy/gunicorn.conf.py``).

Timeouts, in the order that lets each one act before the next:

* ``BASTION_DEADLINE_SECONDS`` (read through Bastion's settings): the request budget;
* gunicorn ``timeout``: that budget plus 5 s (``middleware.deadline.gunicorn``);
* ``CLOUD_RUN_TIMEOUT_SECONDS``: the service's Cloud Run ``timeoutSeconds``; the manifests
  set it because nothing tells a container its own timeout.

A bad order stops gunicorn at startup with a message naming the values
(``TimeoutOrderError``). The same helper installs ``worker_exit`` / ``worker_abort`` hooks
that flush spans, metrics and logs (and, on abort, log every thread's stack), so the
telemetry of the last requests, and of the one that hung, is not lost.

Workers: ``WEB_CONCURRENCY`` processes (default 1) x ``GUNICORN_THREADS`` threads (default 8,
gthread; 1 selects the sync worker). ``graceful_timeout`` is 8 s: Cloud Run sends SIGTERM
and waits 10 s before SIGKILL.
"""

from __future__ import annotations

import os
from typing import Any

from middleware.deadline.gunicorn import gunicorn_config
from middleware.settings import get_settings

_cloud_run_seconds = float(os.environ.get("CLOUD_RUN_TIMEOUT_SECONDS", "300"))
globals().update(gunicorn_config(cloud_run_timeout=_cloud_run_seconds))

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
worker_class = "gthread" if threads > 1 else "sync"
keepalive = 5
accesslog = "-"
errorlog = "-"
# BASTION_TRUSTED_PROXIES decides which proxies are believed. gunicorn's own default
# trusts X-Forwarded-* from 127.0.0.1, i.e. from any sidecar of the instance: turn it off.
forwarded_allow_ips = ""


def on_starting(server: Any) -> None:
    server.log.info(
        "timeouts: Bastion deadline %gs < gunicorn %ss < Cloud Run %gs",
        get_settings().deadline_seconds,
        globals()["timeout"],
        _cloud_run_seconds,
    )
