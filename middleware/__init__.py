"""Bastion's request-side guards: security headers, CORS, deadlines.

``from middleware import protect; app = protect(app)`` is the common case.
This package never imports :mod:`instrumentation` (the dependency runs one way).
"""

from bastion.middleware.protect import protect
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import Mode, Settings, SettingsError, get_settings

__all__ = ["Mode", "Route", "RouteTable", "Settings", "SettingsError", "get_settings", "protect"]
