"""Security headers on the ASGI layer, in process: presets, the nonce in the scope,
HSTS from the scheme or a trusted proxy's X-Forwarded-Proto, routes, observe, and
non-HTTP scopes. Starlette apps go through Starlette's TestClient or are driven with a
hand-built scope (to choose the client address)."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from bastion.middleware import Mode, Route
from bastion.middleware.headers import NONCE_KEY, SecurityHeadersASGIMiddleware
from tests.middleware.test_headers import API, settings


async def _page(request: Request) -> Response:
    return PlainTextResponse(
        request.scope.get(NONCE_KEY, ""),
        media_type="text/html",
        headers={"server": "app", "x-powered-by": "starlette", "set-cookie": "a=1"},
    )


async def _json(request: Request) -> Response:
    response = JSONResponse({"ok": True})
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


def asgi(**kw: Any) -> TestClient:
    app = Starlette(routes=[StarletteRoute("/page", _page), StarletteRoute("/json", _json)])
    routes = kw.pop("routes", None)
    return TestClient(
        SecurityHeadersASGIMiddleware.from_settings(app, settings(**kw), routes=routes)
    )


def test_asgi_api_preset_and_set_cookies() -> None:
    response = asgi().get("/json")
    for name, value in API.items():
        assert response.headers[name] == value
    assert response.headers.get_list("set-cookie")[0].startswith("a=1")
    assert response.headers.get_list("set-cookie")[1].startswith("b=2")
    assert "strict-transport-security" not in response.headers  # TestClient is http


def test_asgi_html_nonce_in_scope_matches_the_csp() -> None:
    client = asgi(headers_preset="html")
    seen = set()
    for _ in range(5):
        response = client.get("/page")
        nonce = response.text
        assert nonce and f"'nonce-{nonce}'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
        assert "server" not in response.headers and "x-powered-by" not in response.headers
        seen.add(nonce)
    assert len(seen) == 5


async def _drive(
    app: Any,
    client: tuple[str, int] | None,
    headers: list[tuple[bytes, bytes]],
    scheme: str = "http",
) -> dict[bytes, bytes]:
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": scheme,
        "path": "/json",
        "raw_path": b"/json",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": ("svc", 80),
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return {bytes(n): bytes(v) for n, v in sent[0]["headers"]}


@pytest.mark.parametrize(
    ("client", "proto", "scheme", "expected"),
    [
        (("10.0.0.7", 5000), b"https", "http", True),
        (("203.0.113.9", 5000), b"https", "http", False),
        (None, b"https", "http", False),
        (("10.0.0.7", 5000), b"\xff\xfe" * 3000, "http", False),
        (("203.0.113.9", 5000), None, "https", True),
    ],
)
def test_asgi_hsts_over_https_and_from_trusted_proxy_only(
    client: tuple[str, int] | None, proto: bytes | None, scheme: str, expected: bool
) -> None:

    s = settings(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    app = SecurityHeadersASGIMiddleware.from_settings(
        Starlette(routes=[StarletteRoute("/json", _json)]), s
    )
    headers = [(b"host", b"svc")] + ([(b"x-forwarded-proto", proto)] if proto else [])
    got = asyncio.run(_drive(app, client, headers, scheme))
    assert (b"strict-transport-security" in got) is expected


def test_asgi_exempt_route() -> None:
    response = asgi(routes={"/json": Route(exempt_headers=True)}).get("/json")
    assert "content-security-policy" not in response.headers


def test_asgi_observe_sends_only_the_csp_report_only() -> None:
    response = asgi(headers=Mode.OBSERVE).get("/page")
    assert response.headers["server"] == "app"
    assert "content-security-policy" not in response.headers
    assert "x-frame-options" not in response.headers
    assert response.headers["content-security-policy-report-only"].startswith("default-src")


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
def test_asgi_non_http_scopes_pass_through_untouched(kind: str) -> None:

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": f"{kind}.marker", "headers": [(b"server", b"x")]})

    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        return {}

    scope = {"type": kind, "path": "/", "headers": []}
    mw = SecurityHeadersASGIMiddleware.from_settings(app, settings(headers_preset="html"))
    asyncio.run(mw(scope, receive, send))
    assert seen == [scope] and NONCE_KEY not in scope
    assert sent == [{"type": f"{kind}.marker", "headers": [(b"server", b"x")]}]


def test_asgi_mixed_case_app_header_names_are_governed_too() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (b"Server", b"app"),
            (b"Set-Cookie", b"a=1"),
            (b"X-Powered-By", b"py"),
            (b"Set-Cookie", b"b=2"),
            (b"X-Frame-Options", b"SAMEORIGIN"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    got = TestClient(SecurityHeadersASGIMiddleware.from_settings(app, settings())).get("/")
    assert "server" not in got.headers and "x-powered-by" not in got.headers
    assert got.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert got.headers.get_list("x-frame-options") == ["SAMEORIGIN"]  # the app wins it
    assert got.headers["x-content-type-options"] == "nosniff"
