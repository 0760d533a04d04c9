"""``protect(app)``: every Bastion guard around a Flask, WSGI or ASGI app in one call.

The layers, outermost first, and why in that order:

1. security headers: so that every answer below, Bastion's own 403/429/504 included,
   carries them; with both guards on it is also the CORS layer (given the CORS policy,
   it runs both in one pass: a preflight is answered there);
2. the CSP/Reporting API intake (when ``BASTION_CSP_REPORT_PATH`` is set): browsers
   post reports without CORS, which leaves the intake's path alone;
3. CORS, when the headers guard is off: a preflight is answered here and never reaches
   the app or uses its budget;
4. the request deadline, so that the budget is the app's own;
5. Bastion's refusals (:mod:`bastion.middleware.refusals`), innermost: a refusal the app leaves
   unhandled becomes its problem document, which every layer above treats as the
   app's answer. In a Flask app this is done in Flask's own error handling, in a
   Starlette app inside its 500 handling (so the app's handlers win).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from bastion.middleware.refusals import (
    RefusalASGIMiddleware,
    add_to_starlette,
    answer_refusals_in_flask,
)
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import MiddlewareSettings, get_settings

App = TypeVar("App")
logger = logging.getLogger("bastion")


def protect(
    app: App,
    settings: MiddlewareSettings | None = None,
    *,
    routes: RouteTable | Mapping[str, Route] | None = None,
) -> App:
    """Wrap ``app`` in every guard and return it.

    * A Flask app is changed in place (its ``wsgi_app`` is wrapped, and Jinja gets the
      ``csp_nonce()`` global) and returned. Apply OpenTelemetry's ``FlaskInstrumentor``
      before ``protect``, or through ``instrument_all(app)`` after it (which puts it
      under Bastion's layers with :func:`wrap_flask_inner`): wrapped outside them, its
      spans would miss the response status, which the deadline layer holds back.
    * Any other WSGI callable is returned wrapped.
    * An ASGI app (Starlette, FastAPI, any ``async def app(scope, receive, send)``) is
      returned wrapped.

    ``settings`` (a :class:`~bastion.middleware.settings.MiddlewareSettings`, or a whole
    :class:`bastion.settings.Settings`) defaults to the environment (``BASTION_*``), read
    once; ``routes`` maps paths to per-route overrides.
    """
    settings = settings if settings is not None else get_settings()
    for warning in settings.warnings():
        logger.warning("Bastion settings: %s", warning)
    table = RouteTable.of(routes)
    flask_wsgi = getattr(app, "wsgi_app", None)
    if flask_wsgi is not None and callable(flask_wsgi):
        if callable(getattr(app, "handle_user_exception", None)):
            answer_refusals_in_flask(app)  # before the deadline's, which wraps it
        chain = wrap_wsgi(flask_wsgi, settings, table, flask_app=app)
        app.wsgi_app = chain  # type: ignore[attr-defined]
        extensions = getattr(app, "extensions", None)
        if isinstance(extensions, dict) and chain is not flask_wsgi:
            extensions[FLASK_EXTENSION] = innermost_layer(chain, flask_wsgi)
        if hasattr(app, "add_template_global"):  # Jinja: {{ csp_nonce() }}
            from bastion.middleware.flask import init_app

            init_app(app)
        return app
    if is_asgi(app):
        return wrap_asgi(app, settings, table)  # type: ignore[no-any-return]
    if callable(app):
        return wrap_wsgi(app, settings, table)  # type: ignore[no-any-return]
    raise TypeError(f"protect() needs a Flask, WSGI or ASGI app, not {type(app).__name__}")


#: Where ``protect`` keeps, in a Flask app's ``extensions``, its innermost layer (whose
#: ``app`` is Flask's own ``wsgi_app``), so that instrumentation that must run inside
#: Flask's request context can be put under Bastion's layers (see ``wrap_flask_inner``).
FLASK_EXTENSION = "bastion"


def innermost_layer(chain: Any, original: Any) -> Any:
    """The layer of ``chain`` whose ``app`` is ``original``."""
    layer = chain
    while getattr(layer, "app", None) is not original:
        layer = layer.app
    return layer


def wrap_flask_inner(app: Any, wrap: Any) -> bool:
    """Apply ``wrap`` to a protected Flask app's own ``wsgi_app``, under Bastion's layers:
    ``wrap(app)`` must replace ``app.wsgi_app`` (as OpenTelemetry's
    ``FlaskInstrumentor().instrument_app`` does). Bastion's deadline layer holds the
    app's status until its first body chunk, so a wrapper outside it would see the
    status only after Flask's request context is gone; under it, it sees it at once.
    False (and nothing done) if the app was not protected."""
    innermost = getattr(app, "extensions", {}).get(FLASK_EXTENSION)
    if innermost is None:
        return False
    chain = app.wsgi_app
    app.wsgi_app = innermost.app
    try:
        wrap(app)
        innermost.app = app.wsgi_app
    finally:
        app.wsgi_app = chain
    return True


def is_asgi(app: object) -> bool:
    """True for ``async def app(scope, receive, send)`` and objects whose ``__call__`` is."""
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - we need the bound method itself
    return call is not None and inspect.iscoroutinefunction(call)


def wrap_wsgi(
    app: Any, settings: MiddlewareSettings, routes: RouteTable, flask_app: Any = None
) -> Any:
    # Each layer is imported only when enabled, so a disabled guard costs nothing.
    if settings.deadline.active:
        from bastion.middleware.deadline.wsgi import DeadlineMiddleware

        app = DeadlineMiddleware.from_settings(app, settings, routes=routes, flask_app=flask_app)
    return _outer_layers(app, settings, routes, asgi=False)


def wrap_asgi(app: Any, settings: MiddlewareSettings, routes: RouteTable) -> Any:
    if not add_to_starlette(app):
        app = RefusalASGIMiddleware(app)
    # Each layer is imported only when enabled, so a disabled guard costs nothing.
    if settings.deadline.active:
        from bastion.middleware.deadline.asgi import DeadlineASGIMiddleware

        app = DeadlineASGIMiddleware.from_settings(app, settings, routes=routes)
    return _outer_layers(app, settings, routes, asgi=True)


def _outer_layers(app: Any, settings: MiddlewareSettings, routes: RouteTable, *, asgi: bool) -> Any:
    """CORS, the CSP report intake and the security headers, WSGI or ASGI alike."""
    cors = None
    if settings.cors.active and settings.cors_origins:
        from bastion.middleware import cors as cors_layers

        if settings.headers.active:  # one pass: the headers layer applies the policy
            cors = cors_layers.CORSPolicy(settings, exempt_path=settings.csp_report_path or None)
        else:
            cors_layer = cors_layers.CORSASGIMiddleware if asgi else cors_layers.CORSMiddleware
            app = cors_layer.from_settings(app, settings)
    if settings.csp_report_path:
        from bastion.middleware import csp_reports

        intake = csp_reports.CSPReportASGIMiddleware if asgi else csp_reports.CSPReportMiddleware
        app = intake.from_settings(app, settings)
    if settings.headers.active:
        from bastion.middleware import headers

        headers_layer = (
            headers.SecurityHeadersASGIMiddleware if asgi else headers.SecurityHeadersMiddleware
        )
        app = headers_layer.from_settings(app, settings, cors=cors, routes=routes)
    return app
