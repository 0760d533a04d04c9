"""``protect()``: one entry point for Flask, any WSGI callable and any ASGI app.

Flask is driven through its own test client (werkzeug, a real WSGI call); ASGI apps
through Starlette's TestClient. FlaskInstrumentor runs for real with a private tracer
provider and an in-memory exporter (the process-wide provider is left alone).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from flask import Flask, render_template_string
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute
from starlette.testclient import TestClient

from bastion.middleware import Mode, Route, protect
from bastion.middleware import settings as settings_module
from bastion.middleware.cors import CORSASGIMiddleware
from bastion.middleware.headers import NONCE_KEY, SecurityHeadersASGIMiddleware
from bastion.settings import Settings

APP = "https://app.example.com"


def settings(**kw: Any) -> Settings:
    return Settings(deadline=Mode.OFF, cors_origins=(APP,), **kw)


def flask_app() -> Flask:
    app = Flask("protected")

    @app.get("/")
    def index() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/page")
    def page() -> str:
        return render_template_string('<script nonce="{{ csp_nonce() }}"></script>')

    return app


def test_flask_app_is_wrapped_in_place_and_returned() -> None:
    app = flask_app()
    assert protect(app, settings()) is app
    response = app.test_client().get("/", headers={"Origin": APP})
    assert (
        response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Vary"] == "Origin"


def test_flask_jinja_gets_csp_nonce_in_the_html_preset() -> None:
    app = protect(flask_app(), settings(headers_preset="html"))
    response = app.test_client().get("/page")
    (nonce,) = re.findall(r'nonce="([^"]*)"', response.text)
    assert nonce and f"'nonce-{nonce}'" in response.headers["Content-Security-Policy"]


def test_csp_nonce_is_empty_in_the_api_preset_and_outside_requests() -> None:
    from bastion.middleware.flask import csp_nonce

    app = protect(flask_app(), settings())
    assert re.findall(r'nonce="([^"]*)"', app.test_client().get("/page").text) == [""]
    assert csp_nonce() == ""


@pytest.mark.parametrize("order", ["instrument-first", "protect-first"])
def test_flask_instrumentor_before_or_after(order: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = flask_app()
    if order == "instrument-first":
        FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
        protect(app, settings(headers_preset="html"))
    else:
        protect(app, settings(headers_preset="html"))
        FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    try:
        response = app.test_client().get("/page", headers={"Origin": APP})
        assert response.headers["Access-Control-Allow-Origin"] == APP
        (nonce,) = re.findall(r'nonce="([^"]*)"', response.text)
        assert f"'nonce-{nonce}'" in response.headers["Content-Security-Policy"]
        spans = exporter.get_finished_spans()
        assert [s.attributes.get("http.route") for s in spans if s.attributes] == ["/page"]
    finally:
        FlaskInstrumentor().uninstrument_app(app)


def test_plain_wsgi_callable_is_returned_wrapped() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Powered-By", "cgi")])
        return [b"hi"]

    wrapped = protect(app, settings())
    assert wrapped is not app
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        got["headers"] = dict(headers)

    assert b"".join(wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/"}, start_response)) == b"hi"
    assert got["headers"]["X-Frame-Options"] == "DENY"
    assert "X-Powered-By" not in got["headers"]


async def _json(request: Request) -> Response:
    return JSONResponse({"nonce": request.scope.get(NONCE_KEY)})


def test_starlette_app_is_wrapped() -> None:
    app = protect(Starlette(routes=[StarletteRoute("/", _json)]), settings(headers_preset="html"))
    response = TestClient(app).get("/", headers={"Origin": APP})
    nonce = response.json()["nonce"]
    assert f"'nonce-{nonce}'" in response.headers["content-security-policy"]
    assert response.headers["access-control-allow-origin"] == APP


def test_bare_asgi_function_and_callable_object() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"server", b"x")]})
        await send({"type": "http.response.body", "body": b"ok"})

    class Obj:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            await bare(scope, receive, send)

    for app in (bare, Obj()):
        response = TestClient(protect(app, settings())).get("/")
        assert response.text == "ok" and "server" not in response.headers
        assert response.headers["x-content-type-options"] == "nosniff"


def test_explicit_classes_compose_in_starlette_middleware_list() -> None:
    app = Starlette(
        routes=[StarletteRoute("/", _json)],
        middleware=[  # keyword arguments, as Starlette's own middleware take them
            Middleware(SecurityHeadersASGIMiddleware, preset="api"),
            Middleware(CORSASGIMiddleware, allow_origins=[APP]),
        ],
    )
    client = TestClient(app)
    response = client.get("/", headers={"Origin": APP})
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["x-frame-options"] == "DENY"
    preflight = client.options(
        "/", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 403 and preflight.headers["x-frame-options"] == "DENY"


def test_routes_reach_the_headers_layer() -> None:
    app = protect(flask_app(), settings(), routes={"/page": Route(exempt_headers=True)})
    assert "Content-Security-Policy" not in app.test_client().get("/page").headers
    assert "Content-Security-Policy" in app.test_client().get("/").headers


def test_guards_off_leave_the_app_alone() -> None:
    app = flask_app()
    inner = app.wsgi_app
    protect(app, settings(headers=Mode.OFF, cors=Mode.OFF))
    assert app.wsgi_app == inner


def test_reads_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module, "_cached", None)
    monkeypatch.setenv("BASTION_HEADERS_PRESET", "html")
    monkeypatch.setenv("BASTION_CORS_ORIGINS", APP)
    monkeypatch.setenv("BASTION_DEADLINE", "off")
    app = protect(flask_app())
    response = app.test_client().get("/page", headers={"Origin": APP})
    assert "'strict-dynamic'" in response.headers["Content-Security-Policy"]
    assert response.headers["Access-Control-Allow-Origin"] == APP


def test_rejects_what_is_not_an_app() -> None:
    with pytest.raises(TypeError, match="needs a Flask, WSGI or ASGI app"):
        protect(42, settings())


def test_protect_logs_settings_that_do_not_do_what_they_ask(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="bastion"):
        protect(flask_app(), Settings.from_env({"BASTION_CORS": "enforce"}))
        protect(
            flask_app(),
            Settings.from_env(
                {"BASTION_CORS": "enforce", "BASTION_CORS_ORIGINS": "https://a.example.com"}
            ),
        )
    (message,) = [r.getMessage() for r in caplog.records if r.name == "bastion"]
    assert "BASTION_CORS=enforce but BASTION_CORS_ORIGINS is empty" in message
