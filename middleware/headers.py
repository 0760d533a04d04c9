"""Security headers for WSGI and ASGI apps: :class:`SecurityHeadersMiddleware` and
:class:`SecurityHeadersASGIMiddleware`.

Threat model: a browser renders or fetches responses from the service; the headers
tell it to refuse framing (clickjacking), MIME sniffing, inline or foreign script
(XSS), cross-origin embedding and opener access, referrer leaks, and plain-HTTP
downgrades (HSTS). The values come from ``secure``'s builders (see
:mod:`bastion.middleware._header_policy` for the presets and the merge rules); this module
only decides, per request, which precomputed variant applies.

Parameters (both classes), keyword-only after ``app``; each has a variable, read by
``from_settings(app, settings=None, *, cors=None, routes=None)`` (``settings`` defaults to
the environment, see :class:`HeaderSettings`):

``app``
    The WSGI or ASGI app to wrap.
``mode`` (``BASTION_HEADERS``)
    :class:`~bastion.middleware.settings.Mode` or its text: ``off``, ``observe``, ``enforce``.
``preset`` (``BASTION_HEADERS_PRESET``)
    ``api`` (JSON services: CSP ``default-src 'none'``) or ``html`` (per-request nonce CSP).
``exempt_paths`` (``BASTION_HEADERS_EXEMPT_PATHS``)
    Paths (exact, or prefix ending in ``/``) whose responses are left as the app made them.
``merge`` (``BASTION_HEADERS_MERGE``)
    Header name → ``app`` or ``bastion``: who wins when both set it.
``hsts_max_age`` (``BASTION_HSTS_MAX_AGE``)
    Seconds; 0 sends no HSTS.
``csp_report_only`` (``BASTION_CSP_REPORT_ONLY``)
    With ``enforce``: send the CSP report-only (``None``: as the mode says).
``csp_report_uri``, ``csp_report_path`` (``BASTION_CSP_REPORT_URI``, ``_PATH``)
    Where browsers send CSP reports (an absolute URL, or the path of Bastion's intake).
``csp_connect_src`` (``BASTION_CSP_CONNECT_SRC``)
    ``html`` preset: other origins the pages may fetch from.
``trusted_proxies``
    :class:`~bastion.middleware.proxies.TrustedProxies` whose forwarded scheme is believed
    (default: none).
``cors``
    A :class:`~bastion.middleware.cors.CORSPolicy` to apply in the same pass (what
    ``protect`` does when both guards are on: one wrapper instead of two, measured in
    ``benchmarks/bench_headers.py``); without it the headers layer does no CORS.
``routes``
    Per-route :class:`~bastion.middleware.routes.Route`: ``exempt_headers`` (the response is
    left as the app made it, e.g. health checks, docs pages) or ``headers``
    (per-route values; ``None`` removes a header Bastion would send).

The values are checked as the environment's are: a bad one raises
:class:`~bastion.middleware.settings.SettingsError` naming the variable.

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
from typing import Any, Self

from bastion.middleware._cors_policy import CORSPolicy
from bastion.middleware._flags import Mode
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
    new_nonce,
    observing_send,
    observing_start,
)
from bastion.middleware._header_policy import NONCE_KEY
from bastion.middleware._header_settings import HeaderSettings
from bastion.middleware.cors import cors_asgi, cors_wsgi, send_preflight
from bastion.middleware.proxies import TrustedProxies
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import MiddlewareSettings, get_settings

__all__ = [
    "NONCE_KEY",
    "ASGIApp",
    "Environ",
    "HeaderSettings",
    "Message",
    "Receive",
    "Scope",
    "SecurityHeadersASGIMiddleware",
    "SecurityHeadersMiddleware",
    "Send",
    "StartResponse",
    "WSGIApp",
]


class _SecurityHeaders:
    """What both classes share: the keyword arguments, ``from_settings`` and the
    compiled editors (:class:`~bastion.middleware._header_layer.Core`)."""

    _text: type[Any] = str
    _core: Core[Any]

    def __init__(
        self,
        app: Any,
        *,
        mode: Mode | str = Mode.ENFORCE,
        preset: str = "api",
        exempt_paths: Iterable[str] = (),
        merge: Mapping[str, str] | None = None,
        hsts_max_age: int = 63072000,
        csp_report_only: bool | None = None,
        csp_report_uri: str = "",
        csp_report_path: str = "",
        csp_connect_src: Iterable[str] = (),
        trusted_proxies: TrustedProxies | None = None,
        cors: CORSPolicy | None = None,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "headers": Mode(mode),
            "headers_preset": preset,
            "headers_exempt_paths": tuple(exempt_paths),
            "headers_merge": dict(merge or {}),
            "hsts_max_age": hsts_max_age,
            "csp_report_uri": csp_report_uri,
            "csp_report_path": csp_report_path,
            "csp_connect_src": tuple(csp_connect_src),
        }
        if csp_report_only is not None:  # unset: the mode decides (observe: report-only)
            options["csp_report_only"] = csp_report_only
        settings = HeaderSettings.from_env({}, **options)  # validated as the env would be
        self.app = app
        proxies = trusted_proxies if trusted_proxies is not None else TrustedProxies(())
        self._core = Core(settings, routes, cors, self._text, proxies)
        self._hot = self._core.hot()

    @classmethod
    def from_settings(
        cls,
        app: Any,
        settings: MiddlewareSettings | None = None,
        *,
        cors: CORSPolicy | None = None,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> Self:
        """The layer ``BASTION_HEADERS*``, ``BASTION_HSTS_MAX_AGE``, ``BASTION_CSP_*`` and
        the trusted proxies ask for (``settings`` defaults to the environment)."""
        s = settings if settings is not None else get_settings()
        return cls(
            app,
            mode=s.headers,
            preset=s.headers_preset,
            exempt_paths=s.headers_exempt_paths,
            merge=s.headers_merge,
            hsts_max_age=s.hsts_max_age,
            csp_report_only=s.csp_report_only if s.is_set("BASTION_CSP_REPORT_ONLY") else None,
            csp_report_uri=s.csp_report_uri,
            csp_report_path=s.csp_report_path,
            csp_connect_src=s.csp_connect_src,
            trusted_proxies=TrustedProxies.from_settings(s),
            cors=cors,
            routes=routes,
        )


class SecurityHeadersMiddleware(_SecurityHeaders):
    """WSGI: security headers on every response (see the module docstring)."""

    app: WSGIApp
    _core: Core[str]

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


class SecurityHeadersASGIMiddleware(_SecurityHeaders):
    """ASGI: security headers on every HTTP response (see the module docstring)."""

    app: ASGIApp
    _core: Core[bytes]
    _text = bytes

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
