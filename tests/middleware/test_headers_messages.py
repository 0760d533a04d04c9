"""Nothing of one response survives into the next: Bastion's layers never edit the
messages (ASGI) or header lists (WSGI) an app hands them, so an app that sends the same
constant objects for every response gets a fresh nonce per page, and an exempt route's
own CSP never leaks onto a governed one (or the reverse).

Property-tested: hypothesis picks a sequence of requests (pages, an exempt docs page,
preflights, CSP reports, with and without Origin) and drives one long-lived stack built
by ``protect`` (security headers, CSP intake, CORS, and the deadline below) whose
app answers every request with module-level constant messages."""

from __future__ import annotations

import asyncio
import copy
import io
import re
from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from bastion.middleware import Mode, protect
from bastion.middleware.cors import CORSASGIMiddleware, CORSMiddleware
from bastion.middleware.headers import NONCE_KEY
from bastion.settings import Settings

APP_ORIGIN = "https://app.example.com"
DOCS_CSP = b"default-src * 'unsafe-inline' 'unsafe-eval'"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"set-cookie", b"a=1")],
}
DOCS_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/html"), (b"content-security-policy", DOCS_CSP)],
}
BODY = {"type": "http.response.body", "body": b"<p>hi</p>"}
WSGI_HEADERS = [("Content-Type", "text/html"), ("Set-Cookie", "a=1")]
WSGI_DOCS_HEADERS = [("Content-Type", "text/html"), ("Content-Security-Policy", DOCS_CSP.decode())]
CONSTANTS: list[Any] = [START, DOCS_START, BODY, WSGI_HEADERS, WSGI_DOCS_HEADERS]

SETTINGS = Settings(
    headers_preset="html",
    headers_exempt_paths=("/docs/",),
    cors_origins=(APP_ORIGIN,),
    cors_credentials=True,
    csp_report_path="/csp",
    deadline=Mode.OFF,
)
# Three shapes of the stack: every layer apart (the intake sits between headers and
# CORS), headers and CORS fused into one pass (no intake), and headers alone.
STACKS = {
    "layered": SETTINGS,
    "fused": SETTINGS.replace(csp_report_path=""),
    "headers only": SETTINGS.replace(csp_report_path="", cors_origins=()),
}
NONCE = re.compile(r"'nonce-([^']+)'")


async def constant_app(scope: Any, receive: Any, send: Any) -> None:
    await send(DOCS_START if scope["path"].startswith("/docs/") else START)
    await send(BODY)


def constant_wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    docs = environ["PATH_INFO"].startswith("/docs/")
    start_response("200 OK", WSGI_DOCS_HEADERS if docs else WSGI_HEADERS)
    return [b"<p>hi</p>"]


request = st.tuples(
    st.sampled_from(["page", "docs", "preflight", "report"]),
    st.sampled_from([None, APP_ORIGIN, "https://evil.example.net"]),
)


def _headers(kind: str, origin: str | None) -> tuple[str, str, list[tuple[bytes, bytes]]]:
    path = {"page": "/page", "docs": "/docs/a", "preflight": "/page", "report": "/csp"}[kind]
    method = {"preflight": "OPTIONS", "report": "POST"}.get(kind, "GET")
    headers = [(b"host", b"svc")]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if kind == "preflight":
        headers.append((b"access-control-request-method", b"POST"))
    if kind == "report":
        headers.append((b"content-type", b"application/csp-report"))
    return method, path, headers


async def _one(app: Any, kind: str, origin: str | None) -> tuple[dict[str, Any], list[Any]]:
    method, path, headers = _headers(kind, origin)
    scope = {"type": "http", "method": method, "scheme": "https", "path": path}
    scope |= {"headers": headers, "client": ("198.51.100.1", 1), "query_string": b""}
    body = b'{"csp-report": {"document-uri": "https://a/", "violated-directive": "img-src"}}'
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return scope, sent


def _check_page(headers: dict[bytes, bytes], nonce: str, seen: set[str]) -> None:
    csp = headers[b"content-security-policy"].decode()
    assert set(NONCE.findall(csp)) == {nonce}, csp  # this request's nonce, and only it
    assert nonce not in seen
    seen.add(nonce)
    assert "unsafe-eval" not in csp


@hypothesis_settings(max_examples=90, deadline=None)
@given(stack=st.sampled_from(sorted(STACKS)), requests=st.lists(request, min_size=2, max_size=12))
def test_asgi_layers_never_edit_the_apps_constant_messages(
    stack: str, requests: list[tuple[str, str | None]]
) -> None:
    snapshot = copy.deepcopy(CONSTANTS)
    settings = STACKS[stack]
    app = protect(constant_app, settings)
    seen: set[str] = set()
    for kind, origin in requests:
        scope, sent = asyncio.run(_one(app, kind, origin))
        assert snapshot == CONSTANTS, f"a layer edited the app's message ({kind})"
        start = sent[0]
        headers = dict(start["headers"])
        if kind == "page" or (kind == "preflight" and origin is None):  # reaches the app
            _check_page(headers, scope[NONCE_KEY], seen)
        if kind == "docs":
            assert headers[b"content-security-policy"] == DOCS_CSP
            assert b"nonce-" not in b"".join(v for _, v in start["headers"])
        granted = headers.get(b"access-control-allow-origin")
        assert granted in (None, APP_ORIGIN.encode())
        if origin != APP_ORIGIN:
            assert granted is None or kind == "report"  # never granted to another origin


@hypothesis_settings(max_examples=60, deadline=None)
@given(stack=st.sampled_from(sorted(STACKS)), requests=st.lists(request, min_size=2, max_size=10))
def test_wsgi_layers_never_edit_the_apps_constant_header_lists(
    stack: str, requests: list[tuple[str, str | None]]
) -> None:
    snapshot = copy.deepcopy(CONSTANTS)
    app = protect(constant_wsgi_app, STACKS[stack])
    seen: set[str] = set()
    for kind, origin in requests:
        method, path, raw = _headers(kind, origin)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "REMOTE_ADDR": "198.51.100.1",
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(b"{}"),
        }
        for name, value in raw:
            key = name.decode().upper().replace("-", "_")
            environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = value.decode()
        got: list[Any] = []
        app(environ, lambda status, headers, exc_info=None, got=got: got.append(headers))
        assert snapshot == CONSTANTS, f"a layer edited the app's header list ({kind})"
        headers = {n.lower(): v for n, v in got[0]}
        if kind == "page":
            _check_page(
                {n.encode(): v.encode() for n, v in headers.items()}, environ[NONCE_KEY], seen
            )
        if kind == "docs":
            assert headers["content-security-policy"] == DOCS_CSP.decode()


def test_the_cors_layers_alone_leave_the_apps_messages_alone() -> None:
    snapshot = copy.deepcopy(CONSTANTS)
    asgi = CORSASGIMiddleware.from_settings(constant_app, SETTINGS)
    wsgi = CORSMiddleware.from_settings(constant_wsgi_app, SETTINGS)
    for _ in range(3):
        _, sent = asyncio.run(_one(asgi, "page", APP_ORIGIN))
        assert dict(sent[0]["headers"])[b"access-control-allow-origin"] == APP_ORIGIN.encode()
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/page", "HTTP_ORIGIN": APP_ORIGIN}
        wsgi(environ, lambda status, headers, exc_info=None: None)
    assert snapshot == CONSTANTS
    assert sent[0] is not START


# The deadline's own 504s go through the same layers: each is a new message, so every
# 504 page gets its own nonce, and one answered on the exempt docs route leaves nothing
# of that route behind.
WITH_DEADLINE = SETTINGS.replace(deadline=Mode.ENFORCE, deadline_seconds=0.02)


async def slow_or_constant_app(scope: Any, receive: Any, send: Any) -> None:
    if scope.get("query_string") == b"slow":
        await asyncio.sleep(5)
    await constant_app(scope, receive, send)


@hypothesis_settings(max_examples=25, deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.sampled_from(["page", "docs"]), st.booleans()), min_size=2, max_size=8
    )
)
def test_the_deadlines_504s_share_nothing_between_responses(
    requests: list[tuple[str, bool]],
) -> None:
    app = protect(slow_or_constant_app, WITH_DEADLINE)
    seen: set[str] = set()
    for kind, slow in requests:
        path = "/docs/a" if kind == "docs" else "/page"
        scope = {"type": "http", "method": "GET", "scheme": "https", "path": path}
        scope |= {"headers": [(b"host", b"svc")], "client": ("198.51.100.1", 1)}
        scope["query_string"] = b"slow" if slow else b""
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any, sent: list[Any] = sent) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        start = sent[0]
        assert start["status"] == (504 if slow else 200)
        headers = dict(start["headers"])
        if kind == "page":
            _check_page(headers, scope[NONCE_KEY], seen)
        else:
            assert headers.get(b"content-security-policy") in (None, DOCS_CSP)
