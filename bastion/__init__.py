"""Bastion: runtime hardening for Python web services.

The names people type::

    from bastion import configure, deadline, instrument_all, protect

    configure()                 # telemetry: traces, metrics, logs (BASTION_* / OTEL_* env)
    app = protect(app)          # security headers, CORS, CSP intake, request deadline
    instrument_all(app)         # BigQuery and outbound HTTP guards, where installed

``deadline`` is :mod:`bastion.middleware.deadline` (``deadline.remaining()``,
``deadline.check()``, ``deadline.scope(seconds)``). The guards live in
:mod:`bastion.middleware` (request side) and :mod:`bastion.instrumentation` (outbound
calls); every setting is in :class:`bastion.settings.Settings`; the command line is
:mod:`bastion.cli`, the local BigQuery server :mod:`bastion.localbq`.
"""

from bastion.instrumentation.telemetry import configure, instrument_all
from bastion.middleware import deadline
from bastion.middleware.protect import protect
from bastion.settings import Mode, Settings

__all__ = ["Mode", "Settings", "configure", "deadline", "instrument_all", "protect"]
