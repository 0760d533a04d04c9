"""Each guard's settings beside it, and the middleware's two construction paths:
keyword arguments (as Starlette's take them) and ``from_settings``."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from bastion.instrumentation.bigquery.settings import BigQuerySettings
from bastion.instrumentation.http.settings import HTTPSettings
from bastion.instrumentation.telemetry import TelemetrySettings
from bastion.middleware.cors import CORSASGIMiddleware, CORSMiddleware, CORSSettings
from bastion.middleware.csp_reports import CSPReportMiddleware
from bastion.middleware.deadline.asgi import DeadlineASGIMiddleware
from bastion.middleware.deadline.settings import DeadlineSettings
from bastion.middleware.deadline.wsgi import DeadlineMiddleware
from bastion.middleware.headers import HeaderSettings, SecurityHeadersMiddleware
from bastion.middleware.proxies import ProxySettings
from bastion.middleware.settings import MiddlewareSettings
from bastion.settings import GROUPS, Mode, Settings, SettingsError

APP = "https://app.example.com"


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def call(app: Any, **environ: str) -> tuple[str, dict[str, str]]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    base = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}
    b"".join(app({**base, **environ}, start_response))
    return seen["status"], seen["headers"]


# --- settings beside each guard ---------------------------------------------------------
def test_every_variable_belongs_to_exactly_one_guard() -> None:
    variables = [env for group in GROUPS for env, _, _ in group.flag_table()]
    assert len(variables) == len(set(variables))
    assert sorted(variables) == sorted(f.metadata["env"] for f in Settings.bound_fields())


@pytest.mark.parametrize(
    ("group", "home"),
    [
        (HeaderSettings, "bastion.middleware"),
        (ProxySettings, "bastion.middleware"),
        (CORSSettings, "bastion.middleware"),
        (DeadlineSettings, "bastion.middleware.deadline"),
        (BigQuerySettings, "bastion.instrumentation.bigquery"),
        (HTTPSettings, "bastion.instrumentation.http"),
        (TelemetrySettings, "bastion.instrumentation"),
    ],
)
def test_a_guard_reads_only_its_own_variables(group: Any, home: str) -> None:
    assert group.__module__.startswith(home)
    # Another guard's bad value is not this guard's business...
    env = {"BASTION_BQ_TIMEOUT_READ": "soon", "BASTION_CORS_MAX_AGE": "soon"}
    if group in (BigQuerySettings, CORSSettings):
        with pytest.raises(SettingsError):
            group.from_env(env)
    else:
        assert group.from_env(env) == group()
    # ...and the whole object reports both.
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert {e.name for e in raised.value.errors} == set(env)


def test_a_whole_settings_object_is_each_guards_settings() -> None:
    settings = Settings.from_env({"BASTION_DEADLINE_SECONDS": "7", "BASTION_HTTP": "enforce"})
    for group in GROUPS:
        assert isinstance(settings, group)
    assert isinstance(settings, MiddlewareSettings)
    assert settings.deadline_seconds == 7 and settings.http is Mode.ENFORCE
    assert settings.sources["BASTION_DEADLINE_SECONDS"] == "env"


def test_a_groups_own_rule_runs_in_the_whole_object() -> None:
    env = {"BASTION_DEADLINE_SECONDS": "500", "BASTION_CORS_ORIGINS": "*"}
    env["BASTION_CORS_CREDENTIALS"] = "true"
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert {e.name for e in raised.value.errors} == {
        "BASTION_DEADLINE_SECONDS",
        "BASTION_CORS_ORIGINS",
    }


@pytest.mark.parametrize("group", [Settings, DeadlineSettings, HTTPSettings])
def test_a_mode_set_in_code_as_text_is_refused_naming_the_variable(group: Any) -> None:
    field = next(f for f in group.bound_fields() if f.type in ("Mode", Mode))
    with pytest.raises(SettingsError) as raised:
        group(**{field.name: "enforce"})
    assert raised.value.errors[0].name == field.metadata["env"]
    assert "Mode.ENFORCE" in str(raised.value)


def test_settings_stay_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().cors_max_age = 1  # type: ignore[misc]


# --- keyword arguments and from_settings -------------------------------------------------
def test_cors_keyword_arguments_and_from_settings_answer_alike() -> None:
    settings = Settings(cors_origins=(APP,), cors_max_age=60, deadline=Mode.OFF)
    by_keywords = CORSMiddleware(wsgi_app, allow_origins=[APP], max_age=60)
    by_settings = CORSMiddleware.from_settings(wsgi_app, settings)
    asked = {
        "REQUEST_METHOD": "OPTIONS",
        "HTTP_ORIGIN": APP,
        "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST",
    }
    assert call(by_keywords, **asked) == call(by_settings, **asked)
    status, headers = call(by_keywords, **asked)
    assert status.startswith("204") and headers["Access-Control-Max-Age"] == "60"


def test_keyword_arguments_are_checked_as_the_environment_is() -> None:
    with pytest.raises(SettingsError, match="BASTION_CORS_ORIGINS"):
        CORSASGIMiddleware(wsgi_app, allow_origins=["*"], allow_credentials=True)
    with pytest.raises(SettingsError, match="BASTION_DEADLINE_SECONDS"):
        DeadlineASGIMiddleware(wsgi_app, seconds=400.0)
    with pytest.raises(SettingsError, match="BASTION_CSP_REPORT_URI"):
        SecurityHeadersMiddleware(wsgi_app, csp_report_uri="https://r.example/a b")
    with pytest.raises(ValueError, match="not-a-mode"):
        CORSMiddleware(wsgi_app, mode="not-a-mode")
    with pytest.raises(ValueError, match="batch_max_bytes"):
        CSPReportMiddleware(wsgi_app, path="/csp", report_max_bytes=4096, batch_max_bytes=1024)


def test_a_mode_given_as_text_is_the_same_guard() -> None:
    as_text = SecurityHeadersMiddleware(wsgi_app, mode="observe")
    as_mode = SecurityHeadersMiddleware(wsgi_app, mode=Mode.OBSERVE)
    assert call(as_text) == call(as_mode)
    assert "Content-Security-Policy-Report-Only" in call(as_text)[1]


def test_headers_from_settings_keeps_every_value() -> None:
    settings = Settings(
        headers_preset="html",
        hsts_max_age=0,
        headers_exempt_paths=("/health",),
        csp_report_path="/csp",
    )
    by_settings = SecurityHeadersMiddleware.from_settings(wsgi_app, settings)
    by_keywords = SecurityHeadersMiddleware(
        wsgi_app, preset="html", hsts_max_age=0, exempt_paths=["/health"], csp_report_path="/csp"
    )
    for path in ("/", "/health"):
        got = call(by_settings, PATH_INFO=path, **{"wsgi.url_scheme": "https"})
        expected = call(by_keywords, PATH_INFO=path, **{"wsgi.url_scheme": "https"})
        # The html preset's nonce differs per request; everything else is the same.
        strip = lambda h: {k: v for k, v in h.items() if "Security-Policy" not in k}  # noqa: E731
        assert (got[0], strip(got[1])) == (expected[0], strip(expected[1]))
    assert "report-uri /csp" in call(by_settings)[1]["Content-Security-Policy"]
    assert "Content-Security-Policy" not in call(by_settings, PATH_INFO="/health")[1]


def test_the_deadline_keyword_arguments_reach_the_budget() -> None:
    wsgi = DeadlineMiddleware(wsgi_app, mode=Mode.ENFORCE, seconds=3.0, max_seconds=9.0)
    assert wsgi.policy.default_budget == 3.0 and wsgi.mode is Mode.ENFORCE
    asgi = DeadlineASGIMiddleware.from_settings(
        wsgi_app, Settings(deadline=Mode.ENFORCE, deadline_seconds=4.0)
    )
    assert asgi.policy.default_budget == 4.0


def test_a_cors_layer_without_origins_leaves_the_app_alone() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"access-control-allow-origin", b"https://own.example")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    layer = CORSASGIMiddleware(app)  # enforce, but no origin is listed
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"origin", b"x")]}
    asyncio.run(layer(scope, receive, send))
    assert sent[0]["headers"] == [(b"access-control-allow-origin", b"https://own.example")]
