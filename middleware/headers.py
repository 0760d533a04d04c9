"""Security headers for WSGI and ASGI apps: :class:`SecurityHeadersMiddleware` and
:class:`SecurityHeadersASGIMiddleware`.

Threat model: a browser renders or fetches responses from the service; the headers
tell it to refuse framing (clickjacking), MIME sniffing, inline or foreign script
(XSS), cross-origin embedding and opener access, referrer leaks, and plain-HTTP
downgrades (HSTS). The values come from ``secure``'s builders (see
:mod:`bastion.middleware._header_policy` for the presets and the merge rules); this module
only decides, per request, which precomputed variant applies.

Parameters (both classes), as for every Bastion middleware:

``app``
    The WSGI or ASGI app to wrap. If it is Bastion's own CORS layer, the two run as
    one pass over the response (same behaviour, one wrapper instead of two).
``settings``
    :class:`~bastion.middleware.settings.Settings`; defaults to ``get_settings()`` (the env).
    Used: ``BASTION_HEADERS`` (mode), ``_PRESET``, ``_EXEMPT_PATHS``, ``_MERGE``,
    ``BASTION_HSTS_MAX_AGE``, ``BASTION_CSP_REPORT_ONLY``/``_URI``/``_PATH``,
    ``BASTION_TRUSTED_PROXIES``, ``BASTION_PROXY_HEADERS``.
``routes``
    Per-route :class:`~bastion.middleware.routes.Route`: ``exempt_headers`` (the response is
    left as the app made it, e.g. health checks, docs pages) or ``headers``
    (per-route values; ``None`` removes a header Bastion would send).

HTTPS: HSTS is sent only when the request reached this process over HTTPS
(``wsgi.url_scheme`` / ``scope["scheme"]``) or when a trusted proxy forwarded
``https``, by the one rule of :mod:`bastion.middleware.proxies` (``BASTION_TRUSTED_PROXIES``,
``BASTION_PROXY_HEADERS``). Anyone else can write those headers, so they are ignored.

Messages: the ASGI layer never edits the ``http.response.start`` message the app sends
(it may be a constant the app sends again); it sends a new one with the merged headers.

Nonce (``html`` preset): each request gets a fresh 144-bit nonce, in the WSGI environ
and the ASGI scope under ``"bastion.csp_nonce"`` (and in Jinja as ``csp_nonce()``,
see :mod:`bastion.middleware.flask`); HTML responses carrying it get ``Cache-Control:
no-store``.

``observe`` mode sends the CSP enforce would send as
``Content-Security-Policy-Report-Only`` (with ``Reporting-Endpoints`` over HTTPS when
reports are configured), so browsers report what it would block; nothing else in the
response changes. The first response of each route is logged (logger
``bastion.headers``, once per route template such as ``/lines/<date>``, whichever
thread serves it first) with what ``enforce`` would add, replace and remove.

Report intake: when ``BASTION_CSP_REPORT_PATH`` is set, its answers carry
``Cross-Origin-Resource-Policy: cross-origin`` (any page may post reports).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from bastion.middleware._header_layer import (
    ASGIApp,
    Core,
    EditingSend,
    EditingStart,
    Environ,
    Message,
    Receive,
    Scope,
    Send,
    StartResponse,
    WSGIApp,
    cors_asgi,
    cors_wsgi,
    new_nonce,
    observing_send,
    observing_start,
    send_preflight,
)
from bastion.middleware._header_policy import NONCE_KEY
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import Settings, get_settings

__all__ = [
    "NONCE_KEY",
    "ASGIApp",
    "Environ",
    "Message",
    "Receive",
    "Scope",
    "SecurityHeadersASGIMiddleware",
    "SecurityHeadersMiddleware",
    "Send",
    "StartResponse",
    "WSGIApp",
]


class SecurityHeadersMiddleware:
    """WSGI: security headers on every response (see the module docstring)."""

    def __init__(
        self,
        app: WSGIApp,
        settings: Settings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        from bastion.middleware.cors import CORSMiddleware

        settings = settings if settings is not None else get_settings()
        cors = None
        if isinstance(app, CORSMiddleware):  # one pass for both layers
            cors, app = app.policy, app.app
        self.app = app
        core = self._core = Core(settings, routes, cors, str)
        self._hot = core.hot()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        (
            by_scheme,
            forwarded,
            html,
            by_path,
            observing,
            editors,
            governed,
            cors,
            grants,
            report_path,
        ) = self._hot
        https = by_scheme and (
            environ.get("wsgi.url_scheme") == "https"
            or (forwarded and self._core.forwarded_https_wsgi(environ))
        )
        if by_path:
            editors, governed = self._core.select(environ.get("PATH_INFO", ""))
        editor = editors[https]
        nonce = None
        if governed and html:
            nonce = environ[NONCE_KEY] = new_nonce()
        extra = None
        if cors is not None and (origin := environ.get("HTTP_ORIGIN")) is not None:
            extra = grants.get(origin)
            if (
                extra is None  # refused, pattern-matched, or observe mode
                or environ.get("REQUEST_METHOD") == "OPTIONS"
                or (report_path is not None and environ.get("PATH_INFO") == report_path)
            ):
                extra, answer = cors_wsgi(cors, environ, origin)
                if answer is not None:  # a preflight, answered here
                    headers = answer.headers
                    if editor is not None:
                        headers = editor.apply(headers, nonce, answer.grant)
                    else:
                        headers = headers + answer.grant
                    start_response(answer.status, headers)
                    return [answer.body]
        if editor is not None:
            start_response = EditingStart(start_response, editor, nonce, extra)
        if governed and observing:  # logged from the app's own headers, once per route
            start_response = observing_start(start_response, self._core, environ, https, nonce)
        return self.app(environ, start_response)


class SecurityHeadersASGIMiddleware:
    """ASGI: security headers on every HTTP response (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        from bastion.middleware.cors import CORSASGIMiddleware

        settings = settings if settings is not None else get_settings()
        cors = None
        if isinstance(app, CORSASGIMiddleware):  # one pass for both layers
            cors, app = app.policy, app.app
        self.app = app
        core = self._core = Core(settings, routes, cors, bytes)
        self._hot = core.hot()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        (
            by_scheme,
            forwarded,
            html,
            by_path,
            observing,
            editors,
            governed,
            cors,
            grants,
            report_path,
        ) = self._hot
        https = by_scheme and (
            scope.get("scheme") == "https" or (forwarded and self._core.forwarded_https_asgi(scope))
        )
        if by_path:
            editors, governed = self._core.select(scope.get("path", ""))
        editor = editors[https]
        nonce = None
        if governed and html:
            text = scope[NONCE_KEY] = new_nonce()
            nonce = text.encode()
        extra = None
        if cors is not None:
            origin = None
            for name, value in scope["headers"]:  # only Origin is needed on the hot path
                if name == b"origin":
                    origin = value
                    break
            if origin is not None:
                extra = grants.get(origin)
                if (
                    extra is None
                    or scope.get("method") == "OPTIONS"
                    or (report_path is not None and scope.get("path") == report_path)
                ):
                    extra, answer = cors_asgi(cors, scope, origin)
                    if answer is not None:
                        await send_preflight(send, answer, editor, nonce)
                        return
        if editor is not None:
            send = EditingSend(send, editor, nonce, extra)
        if governed and observing:  # logged from the app's own headers, once per route
            send = observing_send(send, self._core, scope, https, nonce)
        await self.app(scope, receive, send)
