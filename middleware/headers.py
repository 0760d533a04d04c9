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

    def hot(self) -> tuple[Any, ...]:
        """Everything ``__call__`` reads, as one tuple (one attribute load per request).
        ``grants``: exact origin → prebuilt CORS headers (empty unless enforcing), so an
        allowed request is one dict lookup; everything else takes the slower path."""
        cors = self.cors
        grants: dict[Any, Any] = {}
        if cors is not None and cors.enforcing:
            grants = cors.grants if self._encode is str else cors.grants_bytes
        return (
            self.hsts,
            bool(self.proxies),
            self.html,
            self.by_path,
            self.observing,
            self.editors,
            self.governed,
            cors,
            grants,
            cors.path_exempt if cors is not None else None,
        )

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

    def forwarded_https_asgi(self, scope: Scope) -> bool:
        proto = _header(scope, b"x-forwarded-proto")
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
        self._hot = core.hot()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        hsts, forwarded, html, by_path, observing, editors, governed, cors, grants, report_path = (
            self._hot
        )
        https = hsts and (
            environ.get("wsgi.url_scheme") == "https"
            or (forwarded and self._core.forwarded_https_wsgi(environ))
        )
        if by_path:
            editors, governed = self._core.select(environ.get("PATH_INFO", ""))
        editor = editors[https]
        nonce = None
        if governed and html:
            nonce = environ[NONCE_KEY] = _nonce()
        extra = None
        if cors is not None and (origin := environ.get("HTTP_ORIGIN")) is not None:
            extra = grants.get(origin)
            if (
                extra is None  # refused, pattern-matched, or observe mode
                or environ.get("REQUEST_METHOD") == "OPTIONS"
                or (report_path is not None and environ.get("PATH_INFO") == report_path)
            ):
                extra, answer = _cors_wsgi(cors, environ, origin)
                if answer is not None:  # a preflight, answered here
                    headers = answer.headers
                    if editor is not None:
                        headers = editor.apply(headers, nonce, answer.grant)
                    else:
                        headers = headers + answer.grant
                    start_response(answer.status, headers)
                    return [answer.body]
        if governed and observing:
            path = environ.get("PATH_INFO", "")
            if self._core.first_sight(path):
                start_response = _observing_start(start_response, self._core, path, https, nonce)
        if editor is None:
            return self.app(environ, start_response)
        return self.app(environ, _EditingStart(start_response, editor, nonce, extra))


def _cors_wsgi(
    cors: CORSPolicy, environ: Environ, origin: str
) -> tuple[list[tuple[str, str]] | None, Preflight | None]:
    """The CORS paths off the hot one: (headers to add, preflight answer to send)."""
    path = environ.get("PATH_INFO", "")
    if path == cors.path_exempt:
        return None, None
    asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
    if asked is not None and environ.get("REQUEST_METHOD") == "OPTIONS":
        asked_headers = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
        answer = cors.preflight(origin, asked, asked_headers, path)
        return None, (answer if cors.enforcing else None)
    extra = cors.actual_pairs(origin, environ.get("HTTP_HOST"), path)
    return (extra if cors.enforcing else None), None


def _cors_asgi(
    cors: CORSPolicy, scope: Scope, origin: bytes
) -> tuple[list[tuple[bytes, bytes]] | None, Preflight | None]:
    path = scope.get("path", "")
    if path == cors.path_exempt:
        return None, None
    asked = _header(scope, b"access-control-request-method")
    if asked is not None and scope.get("method") == "OPTIONS":
        asked_headers = _header(scope, b"access-control-request-headers")
        answer = cors.preflight_bytes(origin, asked, asked_headers, path)
        return None, (answer if cors.enforcing else None)
    extra = cors.actual_pairs_bytes(origin, _header(scope, b"host"), path)
    return (extra if cors.enforcing else None), None


class _EditingStart:
    """``start_response`` that merges the headers. One slotted object per request: fewer
    allocations (and young-generation GC work) than a closure and its cells."""

    __slots__ = ("editor", "extra", "nonce", "start_response")

    def __init__(
        self,
        start_response: StartResponse,
        editor: HeaderEditor[str],
        nonce: str | None,
        extra: list[tuple[str, str]] | None,
    ) -> None:
        self.start_response = start_response
        self.editor = editor
        self.nonce = nonce
        self.extra = extra

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return self.start_response(
            status, self.editor.apply(headers, self.nonce, self.extra), exc_info
        )


def _observing_start(
    start_response: StartResponse, core: _Core[str], path: str, https: bool, nonce: str | None
) -> StartResponse:
    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        core.log_observed(path, https, headers, nonce)
        return start_response(status, headers, exc_info)

    return start


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
        self._hot = core.hot()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hsts, forwarded, html, by_path, observing, editors, governed, cors, grants, report_path = (
            self._hot
        )
        https = hsts and (
            scope.get("scheme") == "https" or (forwarded and self._core.forwarded_https_asgi(scope))
        )
        if by_path:
            editors, governed = self._core.select(scope.get("path", ""))
        editor = editors[https]
        nonce = None
        if governed and html:
            text = scope[NONCE_KEY] = _nonce()
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
                    extra, answer = _cors_asgi(cors, scope, origin)
                    if answer is not None:
                        await _send_preflight(send, answer, editor, nonce)
                        return
        if governed and observing:
            path = scope.get("path", "")
            if self._core.first_sight(path):
                send = _observing_send(send, self._core, path, https, nonce)
        if editor is None:
            await self.app(scope, receive, send)
        else:
            await self.app(scope, receive, _EditingSend(send, editor, nonce, extra))


class _EditingSend:
    """``send`` that merges the headers of ``http.response.start``. A plain callable
    returning ``send``'s awaitable: no coroutine frame of its own per message, and one
    slotted object per request instead of a closure and its cells."""

    __slots__ = ("editor", "extra", "nonce", "send")

    def __init__(
        self,
        send: Send,
        editor: HeaderEditor[bytes],
        nonce: bytes | None,
        extra: list[tuple[bytes, bytes]] | None,
    ) -> None:
        self.send = send
        self.editor = editor
        self.nonce = nonce
        self.extra = extra

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            headers = message.get("headers") or ()
            message["headers"] = self.editor.apply(headers, self.nonce, self.extra)
        return self.send(message)


def _observing_send(
    send: Send, core: _Core[bytes], path: str, https: bool, nonce: bytes | None
) -> Send:
    def send_observed(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            core.log_observed(path, https, list(message.get("headers") or ()), nonce)
        return send(message)

    return send_observed


def _header(scope: Scope, wanted: bytes) -> bytes | None:
    """The first value of a request header (ASGI names are lower-case bytes)."""
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


async def _send_preflight(
    send: Send, answer: Preflight, editor: HeaderEditor[bytes] | None, nonce: bytes | None
) -> None:
    base = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.headers]
    grant = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.grant]
    headers = editor.apply(base, nonce, grant) if editor is not None else base + grant
    status = int(answer.status[:3])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
