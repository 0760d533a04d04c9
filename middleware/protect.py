"""``protect(app)``: every Bastion guard around a Flask, WSGI or ASGI app in one call.

The layers, outermost first, and why in that order:

1. security headers: so that every answer below, Bastion's own 403/429/504 included,
   carries them (when the CORS layer sits directly inside, both run as one pass);
2. the CSP/Reporting API intake (when ``BASTION_CSP_REPORT_PATH`` is set): browsers
   post reports without CORS, so it answers before the CORS layer;
3. CORS: a preflight is answered here and never reaches the app or uses its budget;
4. the request deadline, innermost, so that the budget is the app's own.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

from middleware.routes import Route, RouteTable
from middleware.settings import Settings, get_settings

App = TypeVar("App")


def protect(
    app: App,
    settings: Settings | None = None,
    *,
    routes: RouteTable | Mapping[str, Route] | None = None,
) -> App:
    """Wrap ``app`` in every guard and return it.

    * A Flask app is changed in place (its ``wsgi_app`` is wrapped, and Jinja gets the
      ``csp_nonce()`` global) and returned, so ``FlaskInstrumentor`` works whether
      applied before or after.
    * Any other WSGI callable is returned wrapped.
    * An ASGI app (Starlette, FastAPI, any ``async def app(scope, receive, send)``) is
      returned wrapped.

    ``settings`` defaults to the environment (``BASTION_*``), read once;
    ``routes`` maps paths to per-route overrides.
    """
    settings = settings if settings is not None else get_settings()
    table = RouteTable.of(routes)
    flask_wsgi = getattr(app, "wsgi_app", None)
    if flask_wsgi is not None and callable(flask_wsgi):
        app.wsgi_app = wrap_wsgi(flask_wsgi, settings, table)  # type: ignore[attr-defined]
        if hasattr(app, "add_template_global"):  # Jinja: {{ csp_nonce() }}
            from middleware.flask import init_app

            init_app(app)
        return app
    if is_asgi(app):
        return wrap_asgi(app, settings, table)  # type: ignore[no-any-return]
    if callable(app):
        return wrap_wsgi(app, settings, table)  # type: ignore[no-any-return]
    raise TypeError(f"protect() needs a Flask, WSGI or ASGI app, not {type(app).__name__}")


def is_asgi(app: object) -> bool:
    """True for ``async def app(scope, receive, send)`` and objects whose ``__call__`` is."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - we need the bound method itself
    return call is not None and inspect.iscoroutinefunction(call)


def wrap_wsgi(app: Any, settings: Settings, routes: RouteTable) -> Any:
    # Each layer is imported only when enabled, so a disabled guard costs nothing.
    if settings.deadline.active:
        from middleware.deadline.wsgi import DeadlineMiddleware

        app = DeadlineMiddleware(app, settings, routes=routes)
    if settings.cors.active and settings.cors_origins:
        from middleware.cors import CORSMiddleware

        app = CORSMiddleware(app, settings)
    if settings.csp_report_path:
        from middleware.csp_reports import CSPReportMiddleware

        app = CSPReportMiddleware(app, settings)
    if settings.headers.active:
        from middleware.headers import SecurityHeadersMiddleware

        app = SecurityHeadersMiddleware(app, settings, routes=routes)
    return app


def wrap_asgi(app: Any, settings: Settings, routes: RouteTable) -> Any:
    # Each layer is imported only when enabled, so a disabled guard costs nothing.
    if settings.deadline.active:
        from middleware.deadline.asgi import DeadlineASGIMiddleware

        app = DeadlineASGIMiddleware(app, settings, routes=routes)
    if settings.cors.active and settings.cors_origins:
        from middleware.cors import CORSASGIMiddleware

        app = CORSASGIMiddleware(app, settings)
    if settings.csp_report_path:
        from middleware.csp_reports import CSPReportASGIMiddleware

        app = CSPReportASGIMiddleware(app, settings)
    if settings.headers.active:
        from middleware.headers import SecurityHeadersASGIMiddleware

        app = SecurityHeadersASGIMiddleware(app, settings, routes=routes)
    return app
