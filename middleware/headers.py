"""Security headers for WSGI and ASGI apps: :class:`SecurityHeadersMiddleware` and
:class:`SecurityHeadersASGIMiddleware`.

Threat model: a browser renders or fetches responses from the service; the headers
tell it to refuse framing (clickjacking), MIME sniffing, inline or foreign script
(XSS), cross-origin embedding and opener access, referrer leaks, and plain-HTTP
downgrades (HSTS). The values come from ``secure``'s builders (see
:mod:`middleware._header_policy` for the presets and the merge rules); this module
only decides, per request, which precomputed variant applies.

Parameters (both classes), as for every Bastion middleware:

``app``
    The WSGI or ASGI app to wrap. If it is Bastion's own CORS layer, the two run as
    one pass over the response (same behaviour, one wrapper instead of two).
``settings``
    :class:`~middleware.settings.Settings`; defaults to ``get_settings()`` (the env).
    Used: ``BASTION_HEADERS`` (mode), ``_PRESET``, ``_EXEMPT_PATHS``, ``_MERGE``,
    ``BASTION_HSTS_MAX_AGE``, ``BASTION_CSP_REPORT_ONLY``/``_URI``/``_PATH``,
    ``BASTION_TRUSTED_PROXIES``.
``routes``
    Per-route :class:`~middleware.routes.Route`: ``exempt_headers`` (the response is
    left as the app made it, e.g. health checks, docs pages) or ``headers``
    (per-route values; ``None`` removes a header Bastion would send).

HTTPS: HSTS is sent only when the request reached this process over HTTPS
(``wsgi.url_scheme`` / ``scope["scheme"]``) or when ``X-Forwarded-Proto: https``
came from a peer (``REMOTE_ADDR`` / ``scope["client"]``) inside
``BASTION_TRUSTED_PROXIES``. Anyone else can write that header, so it is ignored.

Nonce (``html`` preset): each request gets a fresh 144-bit nonce, in the WSGI environ
and the ASGI scope under ``"bastion.csp_nonce"`` (and in Jinja as ``csp_nonce()``,
see :mod:`middleware.flask`); HTML responses carrying it get ``Cache-Control:
no-store``.

``observe`` mode changes no response; the first response of each path is logged
(logger ``bastion.headers``) with what ``enforce`` would add, replace and remove.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from secrets import token_urlsafe
from typing import Any, Generic

from middleware._cors_policy import CORSPolicy, Preflight
from middleware._flags import Mode
from middleware._header_policy import (
    NONCE_KEY,
    HeaderEditor,
    Plan,
    S,
    TrustedProxies,
    cors_plan,
    forwarded_https,
    header_plan,
    hsts,
)
from middleware.routes import Route, RouteTable
from middleware.settings import Settings, get_settings

__all__ = ["NONCE_KEY", "SecurityHeadersASGIMiddleware", "SecurityHeadersMiddleware"]

logger = logging.getLogger("bastion.headers")

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Editors = tuple["HeaderEditor[Any] | None", "HeaderEditor[Any] | None"]  # (http, https)

_OBSERVED_PATHS_MAX = 1024


class _Core(Generic[S]):
    """What both classes share: every editor compiled in ``__init__``, and the
    per-request choice among them."""

    def __init__(
        self,
        settings: Settings,
        routes: RouteTable | Mapping[str, Route] | None,
        cors: CORSPolicy | None,
        encode: type[S],
    ) -> None:
        self._settings = settings
        self._encode: type[S] = encode
        self.mode = settings.headers
        self.observing = self.mode is Mode.OBSERVE
        self.html = settings.headers_preset == "html"
        self.hsts = hsts(settings) is not None
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self.cors = cors if cors is not None and cors.mode.active else None
        self._cors_part = cors_plan() if self.cors and self.cors.mode.enforcing else None
        self.routes = RouteTable.of(routes)
        self._exempt_exact = frozenset(p for p in settings.headers_exempt_paths if p[-1] != "/")
        self._exempt_prefixes = tuple(p for p in settings.headers_exempt_paths if p[-1] == "/")
        self.by_path = bool(self.routes or self._exempt_exact or self._exempt_prefixes)
        self.governed = self.mode.active
        self.editors = self._editors(None)
        self.exempt: HeaderEditor[S] | None = self._compile(None)
        # Per-route variants compiled now, so a bad route value fails at startup.
        self._by_route: dict[int, Editors] = {
            id(route): self._editors(route) for route in self.routes.values() if route.headers
        }
        self.observed: set[str] = set()
        self.would: Editors = (None, None)
        if self.mode is Mode.OBSERVE:
            self.would = (
                self._compile(header_plan(settings, https=False)),
                self._compile(header_plan(settings, https=True)),
            )

    def _compile(self, plan: Plan | None) -> HeaderEditor[S] | None:
        if self._cors_part is not None:
            plan = self._cors_part if plan is None else plan | self._cors_part
        return None if plan is None else HeaderEditor(plan, self._encode)

    def _editors(self, route: Route | None) -> Editors:
        if not self.mode.enforcing:
            return (self.exempt_or_cors(), self.exempt_or_cors())
        return (
            self._compile(header_plan(self._settings, https=False, route=route)),
            self._compile(header_plan(self._settings, https=True, route=route)),
        )

    def exempt_or_cors(self) -> HeaderEditor[S] | None:
        return self._compile(None)

    def select(self, path: str) -> tuple[Editors, bool]:
        """(editors, governed) for a path, with exemptions and per-route overrides."""
        if path in self._exempt_exact or (
            self._exempt_prefixes and path.startswith(self._exempt_prefixes)
        ):
            return (self.exempt, self.exempt), False
        route = self.routes.match(path) if self.routes else None
        if route is None:
            return self.editors, self.governed
        if route.exempt_headers:
            return (self.exempt, self.exempt), False
        if not route.headers:
            return self.editors, self.governed
        return self._by_route[id(route)], self.governed

    def first_sight(self, path: str) -> bool:
        """True the first time a path is seen in observe mode (bounded)."""
        return path not in self.observed and len(self.observed) < _OBSERVED_PATHS_MAX

    def forwarded_https_wsgi(self, environ: Environ) -> bool:
        proto = environ.get("HTTP_X_FORWARDED_PROTO")
        return (
            proto is not None
            and self.proxies.trusts(environ.get("REMOTE_ADDR"))
            and forwarded_https(proto)
        )

    def forwarded_https_asgi(self, scope: Scope, headers: Mapping[bytes, bytes]) -> bool:
        proto = headers.get(b"x-forwarded-proto")
        client = scope.get("client")
        return (
            proto is not None
            and client is not None
            and self.proxies.trusts(client[0])
            and forwarded_https(proto.decode("latin-1"))
        )

    def log_observed(
        self,
        path: str,
        https: bool,
        headers: list[tuple[S, S]],
        nonce: S | None,
    ) -> None:
        self.observed.add(path)
        editor = self.would[https]
        if editor is None:
            return
        before = {_text(n).lower(): _text(v) for n, v in headers}
        after = {_text(n).lower(): _text(v) for n, v in editor.apply(headers, nonce)}
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        replaced = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        logger.info(
            "security headers (observe) on %s: would add %s; replace %s; remove %s",
            path,
            added,
            replaced,
            removed,
        )


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _nonce() -> str:
    return token_urlsafe(18)


class SecurityHeadersMiddleware:
    """WSGI: security headers on every response (see the module docstring)."""

    def __init__(
        self,
        app: WSGIApp,
        settings: Settings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        from middleware.cors import CORSMiddleware

        settings = settings if settings is not None else get_settings()
        cors = None
        if isinstance(app, CORSMiddleware):  # one pass for both layers
            cors, app = app.policy, app.app
        self.app = app
        core = self._core = _Core(settings, routes, cors, str)
        # Hot-path flags, read once per request (no enum or property lookups).
        self._hsts, self._forwarded, self._html = core.hsts, bool(core.proxies), core.html
        self._by_path, self._observing = core.by_path, core.observing
        self._editors, self._governed, self._cors = core.editors, core.governed, core.cors

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        https = self._hsts and (
            environ.get("wsgi.url_scheme") == "https"
            or (self._forwarded and self._core.forwarded_https_wsgi(environ))
        )
        if self._by_path:
            editors, governed = self._core.select(environ.get("PATH_INFO", ""))
        else:
            editors, governed = self._editors, self._governed
        editor = editors[https]
        nonce = None
        if governed and self._html:
            nonce = environ[NONCE_KEY] = _nonce()
        extra = None
        cors = self._cors
        if cors is not None:
            origin = environ.get("HTTP_ORIGIN")
            if origin is not None and (path := environ.get("PATH_INFO", "")) != cors.path_exempt:
                asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
                if asked is not None and environ.get("REQUEST_METHOD") == "OPTIONS":
                    answer = cors.preflight(
                        origin, asked, environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"), path
                    )
                    if cors.enforcing:
                        headers = answer.headers
                        if editor is not None:
                            headers = editor.apply(headers, nonce, answer.grant)
                        else:
                            headers = headers + answer.grant
                        start_response(answer.status, headers)
                        return [answer.body]
                else:
                    extra = cors.actual_pairs(origin, environ.get("HTTP_HOST"), path)
                    if not cors.enforcing:
                        extra = None
        if governed and self._observing:
            return self._observe(environ, start_response, editor, https, nonce, extra)
        if editor is None:
            return self.app(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, editor.apply(headers, nonce, extra), exc_info)

        return self.app(environ, start)

    def _observe(
        self,
        environ: Environ,
        start_response: StartResponse,
        editor: HeaderEditor[str] | None,
        https: bool,
        nonce: str | None,
        extra: list[tuple[str, str]] | None,
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        first = self._core.first_sight(path)
        if not first and editor is None:
            return self.app(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if first:
                self._core.log_observed(path, https, headers, nonce)
            if editor is not None:
                headers = editor.apply(headers, nonce, extra)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


class SecurityHeadersASGIMiddleware:
    """ASGI: security headers on every HTTP response (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        from middleware.cors import CORSASGIMiddleware

        settings = settings if settings is not None else get_settings()
        cors = None
        if isinstance(app, CORSASGIMiddleware):  # one pass for both layers
            cors, app = app.policy, app.app
        self.app = app
        core = self._core = _Core(settings, routes, cors, bytes)
        self._hsts, self._forwarded, self._html = core.hsts, bool(core.proxies), core.html
        self._by_path, self._observing = core.by_path, core.observing
        self._editors, self._governed, self._cors = core.editors, core.governed, core.cors
        # The request headers are read (into a dict, in C) only when something needs them.
        self._read_headers = core.cors is not None or bool(core.proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers: dict[bytes, bytes] = (
            dict(scope["headers"]) if self._read_headers else _NO_HEADERS
        )
        https = self._hsts and (
            scope.get("scheme") == "https"
            or (self._forwarded and self._core.forwarded_https_asgi(scope, request_headers))
        )
        if self._by_path:
            editors, governed = self._core.select(scope.get("path", ""))
        else:
            editors, governed = self._editors, self._governed
        editor = editors[https]
        nonce = None
        if governed and self._html:
            text = scope[NONCE_KEY] = _nonce()
            nonce = text.encode()
        extra = None
        cors = self._cors
        if cors is not None:
            origin = request_headers.get(b"origin")
            if origin is not None and (path := scope.get("path", "")) != cors.path_exempt:
                asked = request_headers.get(b"access-control-request-method")
                if asked is not None and scope.get("method") == "OPTIONS":
                    answer = cors.preflight_bytes(
                        origin, asked, request_headers.get(b"access-control-request-headers"), path
                    )
                    if cors.enforcing:
                        await _send_preflight(send, answer, editor, nonce)
                        return
                else:
                    extra = cors.actual_pairs_bytes(origin, request_headers.get(b"host"), path)
                    if not cors.enforcing:
                        extra = None
        observe = governed and self._observing and self._core.first_sight(scope.get("path", ""))
        if editor is None and not observe:
            await self.app(scope, receive, send)
            return

        # A plain function returning send's awaitable: one coroutine frame fewer per
        # message than an ``async def`` wrapper.
        def send_with_headers(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if observe:
                    self._core.log_observed(scope.get("path", ""), https, list(headers), nonce)
                if editor is not None:
                    message["headers"] = editor.apply(headers, nonce, extra)
            return send(message)

        await self.app(scope, receive, send_with_headers)


_NO_HEADERS: dict[bytes, bytes] = {}


async def _send_preflight(
    send: Send, answer: Preflight, editor: HeaderEditor[bytes] | None, nonce: bytes | None
) -> None:
    base = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.headers]
    grant = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.grant]
    headers = editor.apply(base, nonce, grant) if editor is not None else base + grant
    status = int(answer.status[:3])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
