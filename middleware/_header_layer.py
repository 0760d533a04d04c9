"""The machinery of :mod:`bastion.middleware.headers`: per-request selection among the
precompiled editors, the CORS paths off the hot one, and the ``start_response`` /
``send`` wrappers. Kept apart so the middleware module reads as its two classes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import replace
from secrets import token_urlsafe
from typing import Any, Generic

from bastion.middleware._cors_policy import CORSPolicy
from bastion.middleware._flags import Mode
from bastion.middleware._header_policy import (
    HeaderEditor,
    Plan,
    S,
    cors_plan,
    header_plan,
    hsts,
    observe_plan,
    winners,
)
from bastion.middleware._header_settings import HeaderSettings
from bastion.middleware._once import LogOnce
from bastion.middleware.proxies import TrustedProxies
from bastion.middleware.routes import Route, RouteTable

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

_OBSERVED_ROUTES_MAX = 1024


class Core(Generic[S]):
    """What both classes share: every editor compiled in ``__init__``, and the
    per-request choice among them."""

    def __init__(
        self,
        settings: HeaderSettings,
        routes: RouteTable | Mapping[str, Route] | None,
        cors: CORSPolicy | None,
        encode: type[S],
        proxies: TrustedProxies,
    ) -> None:
        self._settings = settings
        self._encode: type[S] = encode
        self.mode = settings.headers
        self.observing = self.mode is Mode.OBSERVE
        self.html = settings.headers_preset == "html"
        # The scheme matters only when HTTP and HTTPS answers differ: HSTS, report-to.
        self.by_scheme = hsts(settings) is not None or bool(
            settings.csp_report_uri or settings.csp_report_path
        )
        self.proxies = proxies
        self.cors = cors if cors is not None and cors.mode.active else None
        self._cors_part = cors_plan() if self.cors and self.cors.mode.enforcing else None
        self.routes = _with_report_intake(RouteTable.of(routes), settings)
        self._exempt_exact = frozenset(p for p in settings.headers_exempt_paths if p[-1] != "/")
        self._exempt_prefixes = tuple(p for p in settings.headers_exempt_paths if p[-1] == "/")
        # The path the CORS policy leaves alone (the CSP report intake, which answers its
        # own preflights): the headers apply there without the CORS part.
        self._cors_exempt = (
            self.cors.path_exempt if self.cors is not None and self._cors_part is not None else None
        )
        self.by_path = bool(
            self.routes or self._exempt_exact or self._exempt_prefixes or self._cors_exempt
        )
        self.governed = self.mode.active
        self.editors = self._editors(None)
        self.exempt: HeaderEditor[S] | None = self._compile(None)
        # Per-route variants compiled now, so a bad route value fails at startup.
        self._by_route: dict[str, Editors] = {
            key: self._editors(route) for key, route in self.routes.items() if route.headers
        }
        self._cors_exempt_choice = (
            self._choice(self._cors_exempt, with_cors=False) if self._cors_exempt else None
        )
        self.observed = LogOnce(_OBSERVED_ROUTES_MAX)  # route templates logged in observe
        self.would: Editors = (None, None)
        if self.mode is Mode.OBSERVE:
            # Applied to what the app sent (before any edit), without the CORS part.
            self.would = (
                self._compile(header_plan(settings, https=False), with_cors=False),
                self._compile(header_plan(settings, https=True), with_cors=False),
            )

    def _compile(self, plan: Plan | None, *, with_cors: bool = True) -> HeaderEditor[S] | None:
        if with_cors and self._cors_part is not None:
            plan = self._cors_part if plan is None else plan | self._cors_part
        return None if plan is None else HeaderEditor(plan, self._encode)

    def _editors(self, route: Route | None, *, with_cors: bool = True) -> Editors:
        if self.observing:  # the CSP report-only, nothing else
            plans = (
                observe_plan(self._settings, https=False, route=route),
                observe_plan(self._settings, https=True, route=route),
            )
        elif not self.mode.enforcing:
            cors_only = self._compile(None, with_cors=with_cors)
            return (cors_only, cors_only)
        else:
            plans = (
                header_plan(self._settings, https=False, route=route),
                header_plan(self._settings, https=True, route=route),
            )
        return (
            self._compile(plans[0], with_cors=with_cors),
            self._compile(plans[1], with_cors=with_cors),
        )

    def _choice(self, path: str, *, with_cors: bool) -> tuple[Editors, bool]:
        """(editors, governed) for one path, compiled at startup."""
        found = self.routes.match(path) if self.routes else None
        route = found[1] if found is not None else None
        if self._is_exempt(path) or (route is not None and route.exempt_headers):
            exempt = self._compile(None, with_cors=with_cors)
            return (exempt, exempt), False
        return self._editors(route if route and route.headers else None, with_cors=with_cors), (
            self.governed
        )

    def _is_exempt(self, path: str) -> bool:
        return path in self._exempt_exact or bool(
            self._exempt_prefixes and path.startswith(self._exempt_prefixes)
        )

    def select(self, path: str) -> tuple[Editors, bool]:
        """(editors, governed) for a path, with exemptions and per-route overrides."""
        if path == self._cors_exempt and self._cors_exempt_choice is not None:
            return self._cors_exempt_choice
        if path in self._exempt_exact or (
            self._exempt_prefixes and path.startswith(self._exempt_prefixes)
        ):
            return (self.exempt, self.exempt), False
        found = self.routes.match(path) if self.routes else None
        if found is None:
            return self.editors, self.governed
        key, route = found
        if route.exempt_headers:
            return (self.exempt, self.exempt), False
        if not route.headers:
            return self.editors, self.governed
        return self._by_route[key], self.governed

    def hot(self) -> tuple[Any, ...]:
        """Everything ``__call__`` reads, as one tuple (one attribute load per request).
        ``grants``: exact origin → prebuilt CORS headers (empty unless enforcing), so an
        allowed request is one dict lookup; everything else takes the slower path."""
        cors = self.cors
        grants: dict[Any, Any] = {}
        if cors is not None and cors.enforcing:
            grants = cors.grants if self._encode is str else cors.grants_bytes
        return (
            self.by_scheme,
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

    def claim(self, route: str) -> bool:
        """True exactly once per route in observe mode, whichever thread asks first
        (bounded: past the bound, nothing more is logged)."""
        return self.observed.first_time(route)

    def forwarded_https_wsgi(self, environ: Environ) -> bool:
        """A trusted proxy says the client used HTTPS (:mod:`bastion.middleware.proxies`)."""
        return self.proxies.wsgi(environ).scheme == "https"

    def forwarded_https_asgi(self, scope: Scope) -> bool:
        return self.proxies.asgi(scope).scheme == "https"

    def log_observed(
        self,
        route: str,
        path: str,
        https: bool,
        headers: list[tuple[S, S]],
        nonce: S | None,
    ) -> None:
        editor = self.would[https]
        if editor is None:
            return
        before = {text(n).lower(): text(v) for n, v in headers}
        after = {text(n).lower(): text(v) for n, v in editor.apply(headers, nonce)}
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        replaced = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        logger.info(
            "security headers (observe) on %.200r: would add %s; replace %s; remove %s "
            "(first seen at %.200r)",
            route,
            added,
            replaced,
            removed,
            path,
        )


_CROSS_ORIGIN = {"Cross-Origin-Resource-Policy": "cross-origin"}
_CORP = "cross-origin-resource-policy"


def _with_report_intake(routes: RouteTable, settings: HeaderSettings) -> RouteTable:
    """The report intake's answers carry ``Cross-Origin-Resource-Policy: cross-origin``
    (any page may post reports: a frame, a worker, ``Origin: null``; a ``same-origin``
    answer makes Chromium log a blocked response in that page). The intake sends it
    itself, which the app-wins default keeps; when ``BASTION_HEADERS_MERGE`` makes
    Bastion win CORP, the intake's path gets it as a per-route value instead (so the
    common case adds no per-path lookup). A route the app gave that path keeps its
    values (its own CORP included)."""
    report_path = settings.csp_report_path
    if not report_path or winners(settings).get(_CORP) != "bastion":
        return routes
    matched = routes.match(report_path)
    own = matched[1] if matched is not None else Route()
    if own.exempt_headers:
        return routes
    headers = {**_CROSS_ORIGIN, **own.headers}
    return routes.with_route(report_path, replace(own, headers=headers))


def text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def new_nonce() -> str:
    return token_urlsafe(18)


class EditingStart:
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


def observing_start(
    start_response: StartResponse, core: Core[str], environ: Environ, https: bool, nonce: str | None
) -> StartResponse:
    """Logs the first response of each route (observe mode), from the app's headers."""

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        path = environ.get("PATH_INFO", "")
        route = wsgi_route(environ, path)
        if core.claim(route):
            core.log_observed(route, path, https, headers, nonce)
        return start_response(status, headers, exc_info)

    return start


def wsgi_route(environ: Environ, path: str) -> str:
    """The route template that served a WSGI request: Flask's ``url_rule`` through
    werkzeug's public ``environ["werkzeug.request"]`` (set for every werkzeug request,
    readable after Flask's context is gone); a Flask request no rule matched is one
    ``(no route)``; other apps fall back to the path."""
    request = environ.get("werkzeug.request")
    if request is None:
        return path
    rule = getattr(request, "url_rule", None)
    return str(getattr(rule, "rule", None) or NO_ROUTE)


def asgi_route(scope: Scope, path: str) -> str:
    """The route template that served an ASGI request: the ``route`` Starlette's router
    puts in the scope (its ``path``), else the path."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) and template else path


NO_ROUTE = "(no route)"


class EditingSend:
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
            # A new message: the app's may be a constant it sends again (never ours to edit).
            headers = self.editor.apply(message.get("headers") or (), self.nonce, self.extra)
            return self.send({**message, "headers": headers})
        return self.send(message)


def observing_send(
    send: Send, core: Core[bytes], scope: Scope, https: bool, nonce: bytes | None
) -> Send:
    """Logs the first response of each route (observe mode), from the app's headers."""

    def send_observed(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            path = scope.get("path", "")
            route = asgi_route(scope, path)
            if core.claim(route):
                headers = list(message.get("headers") or ())
                core.log_observed(route, path, https, headers, nonce)
        return send(message)

    return send_observed


def request_header(scope: Scope, wanted: bytes) -> bytes | None:
    """The first value of a request header (ASGI names are lower-case bytes)."""
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None
