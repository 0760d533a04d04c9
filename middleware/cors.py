"""CORS for WSGI and ASGI apps: :class:`CORSMiddleware` and :class:`CORSASGIMiddleware`.

Threat model: a page on another origin uses the visitor's browser (and cookies) to
call the service and read the answer. The browser lets it read only when the
response names that origin in ``Access-Control-Allow-Origin``. The rules (exact
allow-list, full-match subdomain patterns, ``null`` only when listed, no ``*`` with
credentials, 403 without CORS headers for a refused preflight, ``Vary: Origin``
always, private-network access never granted) are in :mod:`bastion.middleware._cors_policy`.

Parameters (both classes), keyword-only after ``app``; each has a variable, read by
``from_settings(app, settings=None)`` (``settings`` defaults to the environment, see
:class:`CORSSettings`):

``app``
    The WSGI or ASGI app to wrap.
``mode`` (``BASTION_CORS``)
    :class:`~bastion.middleware.settings.Mode` or its text: ``off``, ``observe``, ``enforce``.
``allow_origins`` (``BASTION_CORS_ORIGINS``)
    Origins as browsers send them; ``https://*.example.com`` opts in to subdomains.
``allow_credentials`` (``BASTION_CORS_CREDENTIALS``)
    Send ``Access-Control-Allow-Credentials: true``.
``allow_methods``, ``allow_headers`` (``BASTION_CORS_METHODS``, ``_ALLOW_HEADERS``)
    What a preflight may ask for.
``expose_headers`` (``BASTION_CORS_EXPOSE_HEADERS``)
    Response headers the calling page may read.
``max_age`` (``BASTION_CORS_MAX_AGE``)
    Seconds a browser may cache a preflight.
``exempt_path``
    A path CORS leaves alone (``protect`` passes the CSP report intake's).

The values are checked as the environment's are (``*`` with credentials, wildcards under
a public suffix...): a bad one raises :class:`~bastion.middleware.settings.SettingsError`.

Preflights (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) are
answered here and never reach the app. ``observe`` mode changes no response (the
app answers preflights itself); refusals it would make are counted
(``bastion.cors.refused``) and the first per path and reason is logged.

One flow: :func:`cors_wsgi` and :func:`cors_asgi` decide each request, for these classes
and for :class:`~bastion.middleware.headers.SecurityHeadersMiddleware` when it is given
the policy (``cors=``) to apply in its own pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

from bastion.middleware._cors_policy import CORSPolicy, CORSSettings, Preflight
from bastion.middleware._flags import Mode
from bastion.middleware._header_layer import (
    ASGIApp,
    Environ,
    Message,
    Receive,
    Scope,
    Send,
    StartResponse,
    WSGIApp,
    request_header,
)
from bastion.middleware._header_policy import HeaderEditor, cors_plan
from bastion.middleware.settings import MiddlewareSettings, get_settings

__all__ = [
    "CORSASGIMiddleware",
    "CORSMiddleware",
    "CORSPolicy",
    "CORSSettings",
    "Preflight",
    "cors_asgi",
    "cors_wsgi",
    "send_preflight",
]


def cors_wsgi(
    cors: CORSPolicy, environ: Environ, origin: str
) -> tuple[list[tuple[str, str]] | None, Preflight | None]:
    """One request with an ``Origin``: (headers to add, preflight answer to send).
    Both are ``None`` unless the policy enforces (observe only counts and logs)."""
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


def cors_asgi(
    cors: CORSPolicy, scope: Scope, origin: bytes
) -> tuple[list[tuple[bytes, bytes]] | None, Preflight | None]:
    """:func:`cors_wsgi` for an ASGI scope."""
    path = scope.get("path", "")
    if path == cors.path_exempt:
        return None, None
    asked = request_header(scope, b"access-control-request-method")
    if asked is not None and scope.get("method") == "OPTIONS":
        asked_headers = request_header(scope, b"access-control-request-headers")
        answer = cors.preflight_bytes(origin, asked, asked_headers, path)
        return None, (answer if cors.enforcing else None)
    extra = cors.actual_pairs_bytes(origin, request_header(scope, b"host"), path)
    return (extra if cors.enforcing else None), None


async def send_preflight(
    send: Send, answer: Preflight, editor: HeaderEditor[bytes] | None, nonce: bytes | None
) -> None:
    """Send a preflight answer, through ``editor`` when another layer's headers apply."""
    base = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.headers]
    grant = [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in answer.grant]
    headers = editor.apply(base, nonce, grant) if editor is not None else base + grant
    status = int(answer.status[:3])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


class _CORS:
    """What both classes share: the keyword arguments, ``from_settings``, the policy."""

    _text: type[Any] = str
    _editor: HeaderEditor[Any] | None

    def __init__(
        self,
        app: Any,
        *,
        mode: Mode | str = Mode.ENFORCE,
        allow_origins: Iterable[str] = (),
        allow_credentials: bool = False,
        allow_methods: Iterable[str] = ("GET", "HEAD", "POST"),
        allow_headers: Iterable[str] = ("authorization", "content-type"),
        expose_headers: Iterable[str] = (),
        max_age: int = 600,
        exempt_path: str | None = None,
    ) -> None:
        settings = CORSSettings.from_env(  # validated as the environment's would be
            {},
            cors=Mode(mode),
            cors_origins=tuple(allow_origins),
            cors_credentials=allow_credentials,
            cors_methods=tuple(allow_methods),
            cors_allow_headers=tuple(allow_headers),
            cors_expose_headers=tuple(expose_headers),
            cors_max_age=max_age,
        )
        self.app = app
        self.policy = CORSPolicy(settings, exempt_path=exempt_path)
        # Guarded only with origins to allow: otherwise the app's own CORS headers stand.
        self._active = self.policy.mode.active and bool(settings.cors_origins)
        self._editor = HeaderEditor(cors_plan(), self._text) if self.policy.enforcing else None

    @classmethod
    def from_settings(cls, app: Any, settings: MiddlewareSettings | None = None) -> Self:
        """The layer ``BASTION_CORS*`` ask for (``settings`` defaults to the environment);
        the CSP report intake's path (``BASTION_CSP_REPORT_PATH``) is left alone."""
        s = settings if settings is not None else get_settings()
        return cls(
            app,
            mode=s.cors,
            allow_origins=s.cors_origins,
            allow_credentials=s.cors_credentials,
            allow_methods=s.cors_methods,
            allow_headers=s.cors_allow_headers,
            expose_headers=s.cors_expose_headers,
            max_age=s.cors_max_age,
            exempt_path=s.csp_report_path or None,
        )


class CORSMiddleware(_CORS):
    """WSGI CORS (see the module docstring)."""

    app: WSGIApp
    _editor: HeaderEditor[str] | None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if not self._active:
            return self.app(environ, start_response)
        extra = answer = None
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None:
            extra, answer = cors_wsgi(self.policy, environ, origin)
        if answer is not None:  # a preflight, answered here
            start_response(answer.status, answer.headers + answer.grant)
            return [answer.body]
        editor = self._editor
        if editor is None:
            return self.app(environ, start_response)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, editor.apply(headers, None, extra), exc_info)

        return self.app(environ, start)


class CORSASGIMiddleware(_CORS):
    """ASGI CORS (see the module docstring)."""

    app: ASGIApp
    _editor: HeaderEditor[bytes] | None
    _text = bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._active:
            await self.app(scope, receive, send)
            return
        extra = answer = None
        origin = request_header(scope, b"origin")
        if origin is not None:
            extra, answer = cors_asgi(self.policy, scope, origin)
        if answer is not None:  # a preflight, answered here
            await send_preflight(send, answer, None, None)
            return
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
