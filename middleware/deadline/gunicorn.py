"""gunicorn settings that keep the timeouts in order, and hooks that save telemetry.

Three clocks run over a request on Cloud Run, and only the innermost one answers well:

1. Bastion's deadline answers 504 with a problem document, logs the stack, and the
   worker lives on;
2. gunicorn's ``--timeout`` kills a worker whose heartbeat stalls (SIGABRT, then
   SIGKILL): no response, every request on that worker lost, buffered spans lost.
   Under gthread the heartbeat goes on while a request thread hangs, so it may never
   fire at all;
3. Cloud Run's request timeout (default 300 s, at most 3600 s) answers 504 to the
   client and leaves the container running the abandoned request. Nothing tells the
   container this value: pass the one the service is deployed with.

So: largest Bastion budget < gunicorn timeout < Cloud Run timeout. In ``gunicorn.conf.py``::

    from bastion.middleware.deadline.gunicorn import gunicorn_config

    globals().update(gunicorn_config(cloud_run_timeout=300))

``gunicorn_config`` computes ``timeout`` from the largest budget any request can get
(the default or a per-route override, capped by ``BASTION_DEADLINE_MAX_SECONDS``),
and checks the order, raising :class:`TimeoutOrderError` at startup if it cannot hold.
The hooks that save telemetry when gunicorn kills or ends a worker are
:mod:`bastion.instrumentation.gunicorn_hooks`; :mod:`bastion.instrumentation.gunicorn_conf`
puts both together.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from bastion.middleware.deadline.inbound import BudgetPolicy
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import MiddlewareSettings, get_settings

__all__ = [
    "TimeoutOrderError",
    "check_timeout_order",
    "gunicorn_config",
]

logger = logging.getLogger("bastion.deadline")

#: Cloud Run sends SIGTERM and waits 10 s before SIGKILL.
CLOUD_RUN_SHUTDOWN_SECONDS = 10.0


class TimeoutOrderError(ValueError):
    """The timeouts are not ordered Bastion deadline < gunicorn < Cloud Run."""


def check_timeout_order(
    deadline_seconds: float, gunicorn_timeout: float, cloud_run_timeout: float
) -> None:
    """Raise :class:`TimeoutOrderError` unless deadline < gunicorn < Cloud Run."""
    problems = []
    if not deadline_seconds < gunicorn_timeout:
        problems.append(
            f"the largest Bastion deadline ({deadline_seconds:g}s) must be shorter than "
            f"gunicorn's --timeout ({gunicorn_timeout:g}s), or gunicorn kills the worker "
            "before Bastion can answer 504: lower BASTION_DEADLINE_SECONDS / the route "
            "overrides, or raise --timeout"
        )
    if not gunicorn_timeout < cloud_run_timeout:
        problems.append(
            f"gunicorn's --timeout ({gunicorn_timeout:g}s) must be shorter than the Cloud "
            f"Run request timeout ({cloud_run_timeout:g}s), or Cloud Run answers the client "
            "while the worker goes on with the abandoned request"
        )
    if problems:
        raise TimeoutOrderError("; ".join(problems))


def gunicorn_config(
    settings: MiddlewareSettings | None = None,
    *,
    routes: RouteTable | Mapping[str, Route] | None = None,
    cloud_run_timeout: float = 300.0,
    margin_seconds: float = 5.0,
    graceful_timeout: float = CLOUD_RUN_SHUTDOWN_SECONDS - 2.0,
) -> dict[str, Any]:
    """gunicorn settings (``timeout``, ``graceful_timeout``) for a service with these
    deadline settings and routes.

    ``timeout`` is the largest budget plus ``margin_seconds`` (room for the 504 to be
    written), rounded up to whole seconds as gunicorn wants. ``graceful_timeout``
    defaults to 8 s, inside Cloud Run's 10 s between SIGTERM and SIGKILL.
    """
    settings = settings if settings is not None else get_settings()
    largest = BudgetPolicy.from_settings(settings, routes).largest_budget()
    timeout = math.ceil(largest + margin_seconds)
    check_timeout_order(largest, timeout, cloud_run_timeout)
    return {
        "timeout": timeout,
        "graceful_timeout": math.ceil(graceful_timeout),
    }
