"""gunicorn configuration for a Bastion service, importable from the installed package::

    gunicorn -c python:bastion.instrumentation.gunicorn_conf module:app

Bind: ``0.0.0.0:$PORT`` (all interfaces) when ``PORT`` is set, as Cloud Run sets it and
requires (its front end connects from outside the container's loopback); without
``PORT``, ``127.0.0.1:8080``, so a service started on a developer machine is not
exposed to the network. A ``--bind`` on the command line wins over both.

Timeouts, in the order that lets each one act before the next:

* ``BASTION_DEADLINE_SECONDS`` (read through Bastion's settings, with
  ``BASTION_DEADLINE_MAX_SECONDS``): the request budget;
* gunicorn ``timeout``: the largest budget plus 5 s (``bastion.middleware.deadline.gunicorn``);
* ``CLOUD_RUN_TIMEOUT_SECONDS`` (default 300): the service's Cloud Run
  ``timeoutSeconds``; the manifests set it because nothing tells a container its own
  timeout.

A bad order stops gunicorn at startup with a message naming the values
(``TimeoutOrderError``). The ``worker_exit`` / ``worker_abort`` hooks
(:mod:`bastion.instrumentation.gunicorn_hooks`) flush spans,
metrics and logs (and, on abort, log every thread's stack first), so the telemetry of
the last requests, and of the one that hung, is not lost.

Workers: ``WEB_CONCURRENCY`` processes (default 1) x ``GUNICORN_THREADS`` threads
(default 8, gthread; 1 selects the sync worker). ``graceful_timeout`` is 8 s: Cloud
Run sends SIGTERM and waits 10 s before SIGKILL. gunicorn's own forwarded-header
handling is off (``forwarded_allow_ips = ""``): ``BASTION_TRUSTED_PROXIES`` alone
decides which proxy is believed (gunicorn's default trusts ``127.0.0.1``, i.e. any
sidecar of the instance).

A malformed ``PORT``, ``WEB_CONCURRENCY``, ``GUNICORN_THREADS`` or
``CLOUD_RUN_TIMEOUT_SECONDS`` stops gunicorn at startup naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final

from bastion.instrumentation.gunicorn_hooks import worker_abort, worker_exit
from bastion.middleware.deadline.gunicorn import gunicorn_config
from bastion.middleware.settings import get_settings

__all__ = ["LOCAL_BIND", "bind_address", "worker_abort", "worker_exit"]

#: Where gunicorn listens when ``PORT`` is not set: loopback only.
LOCAL_BIND: Final = "127.0.0.1:8080"


def bind_address(environ: Mapping[str, str] = os.environ) -> str:
    """``0.0.0.0:$PORT`` when ``PORT`` is set (Cloud Run), else :data:`LOCAL_BIND`."""
    raw = environ.get("PORT", "").strip()
    if not raw:
        return LOCAL_BIND
    port = _number(environ, "PORT", int, "a TCP port, 1-65535")
    if not 1 <= port <= 65535:
        raise ValueError(f"PORT={raw!r}: expected a TCP port, 1-65535")
    return f"0.0.0.0:{port}"


def _number(environ: Mapping[str, str], name: str, kind: type[Any], allowed: str) -> Any:
    raw = environ[name].strip()
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected {allowed}") from None


def _positive(name: str, default: str, kind: type[Any], allowed: str) -> Any:
    environ = {name: os.environ.get(name, "").strip() or default}
    value = _number(environ, name, kind, allowed)
    if not value > 0:
        raise ValueError(f"{name}={environ[name]!r}: expected {allowed}")
    return value


_cloud_run_seconds: float = _positive(
    "CLOUD_RUN_TIMEOUT_SECONDS", "300", float, "seconds, a positive number"
)
globals().update(gunicorn_config(cloud_run_timeout=_cloud_run_seconds))

bind = bind_address()
workers = _positive("WEB_CONCURRENCY", "1", int, "a positive whole number of processes")
threads = _positive("GUNICORN_THREADS", "8", int, "a positive whole number of threads")
worker_class = "gthread" if threads > 1 else "sync"
keepalive = 5
accesslog = "-"
errorlog = "-"
forwarded_allow_ips = ""


def on_starting(server: Any) -> None:
    """gunicorn hook, in the arbiter: log the three timeouts and where it listens."""
    server.log.info(
        "timeouts: Bastion deadline %gs < gunicorn %ss < Cloud Run %gs; bind %s",
        get_settings().deadline_seconds,
        globals()["timeout"],
        _cloud_run_seconds,
        bind,
    )
