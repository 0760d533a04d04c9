"""Bastion's request-side guards: security headers, CORS, deadlines.

``from bastion import protect; app = protect(app)`` is the common case.
This package never imports :mod:`bastion.instrumentation` (the dependency runs one way).
"""

from bastion.middleware.protect import protect
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import MiddlewareSettings, Mode, SettingsError, get_settings

__all__ = [
    "MiddlewareSettings",
    "Mode",
    "Route",
    "RouteTable",
    "SettingsError",
    "get_settings",
    "protect",
]
