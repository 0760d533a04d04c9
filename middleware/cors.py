"""CORS for WSGI and ASGI apps: :class:`CORSMiddleware` and :class:`CORSASGIMiddleware`.

Threat model: a page on another origin uses the visitor's browser (and cookies) to
call the service and read the answer. The browser lets it read only when the
response names that origin in ``Access-Control-Allow-Origin``. The rules (exact
allow-list, full-match subdomain patterns, ``null`` only when listed, no ``*`` with
credentials, 403 without CORS headers for a refused preflight, ``Vary: Origin``
always, private-network access never granted) are in :mod:`bastion.middleware._cors_policy`.

Parameters, as for every Bastion middleware:

``app``
    The WSGI or ASGI app to wrap.
``settings``
    :class:`~bastion.middleware.settings.Settings`; defaults to ``get_settings()`` (the env).
    Used: ``BASTION_CORS`` (mode), ``_ORIGINS``, ``_CREDENTIALS``, ``_METHODS``,
    ``_ALLOW_HEADERS``, ``_EXPOSE_HEADERS``, ``_MAX_AGE``; ``BASTION_CSP_REPORT_PATH``
    is left to the report intake.
``routes``
    Accepted for the common constructor shape; CORS has no per-route settings.

Preflights (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) are
answered here and never reach the app. ``observe`` mode changes no response (the
app answers preflights itself); refusals it would make are counted
(``bastion.cors.refused``) and the first per path and reason is logged.

Placed directly inside :class:`~bastion.middleware.headers.SecurityHeadersMiddleware` (as
``protect`` does), this layer is run by that one in a single pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bastion.middleware._cors_policy import CORSPolicy, Preflight
from bastion.middleware._header_policy import HeaderEditor, cors_plan
from bastion.middleware.headers import (
    ASGIApp,
    Environ,
    Message,
    Receive,
    Scope,
    Send,
    StartResponse,
    WSGIApp,
)
from bastion.middleware.routes import Route, RouteTable
from bastion.middleware.settings import Settings, get_settings

__all__ = ["CORSASGIMiddleware", "CORSMiddleware", "CORSPolicy", "Preflight"]


class CORSMiddleware:
    """WSGI CORS (see the module docstring)."""

    def __init__(
        self,
        app: WSGIApp,
        settings: Settings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        self.app = app
        self.policy = CORSPolicy(settings if settings is not None else get_settings())
        self._enforcing = self.policy.mode.enforcing
        self._editor = HeaderEditor(cors_plan(), str) if self._enforcing else None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        policy = self.policy
        if not policy.mode.active:
            return self.app(environ, start_response)
        path: str = environ.get("PATH_INFO", "")
        origin = environ.get("HTTP_ORIGIN")
        extra = None
        if origin is not None and path != policy.path_exempt:
            asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD")
            if asked is not None and environ.get("REQUEST_METHOD") == "OPTIONS":
                answer = policy.preflight(
                    origin, asked, environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS"), path
                )
                if self._enforcing:
                    start_response(answer.status, answer.headers + answer.grant)
                    return [answer.body]
            else:
                extra = policy.actual_pairs(origin, environ.get("HTTP_HOST"), path)
        editor = self._editor
        if editor is None:
            return self.app(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, editor.apply(headers, None, extra), exc_info)

        return self.app(environ, start)


class CORSASGIMiddleware:
    """ASGI CORS (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        *,
        routes: RouteTable | Mapping[str, Route] | None = None,
    ) -> None:
        self.app = app
        self.policy = CORSPolicy(settings if settings is not None else get_settings())
        self._enforcing = self.policy.mode.enforcing
        self._editor = HeaderEditor(cors_plan(), bytes) if self._enforcing else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = self.policy
        if scope["type"] != "http" or not policy.mode.active:
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        origin = asked = asked_headers = host = None
        for name, value in scope.get("headers") or ():
            if name == b"origin":
                origin = value
            elif name == b"host":
                host = value
            elif name == b"access-control-request-method":
                asked = value
            elif name == b"access-control-request-headers":
                asked_headers = value
        extra = None
        if origin is not None and path != policy.path_exempt:
            if asked is not None and scope.get("method") == "OPTIONS":
                answer = policy.preflight(
                    origin.decode("latin-1"),
                    asked.decode("latin-1"),
                    asked_headers.decode("latin-1") if asked_headers is not None else None,
                    path,
                )
                if self._enforcing:
                    headers = [
                        (n.lower().encode("latin-1"), v.encode("latin-1"))
                        for n, v in answer.headers + answer.grant
                    ]
                    start = {"status": int(answer.status[:3]), "headers": headers}
                    await send({"type": "http.response.start", **start})
                    await send({"type": "http.response.body", "body": answer.body})
                    return
            else:
                extra = policy.actual_pairs_bytes(origin, host, path)
        editor = self._editor
        if editor is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A new message: the app's may be a constant it sends again.
                headers = editor.apply(message.get("headers") or [], None, extra)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)
