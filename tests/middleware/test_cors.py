"""CORS, in process, on all four stacks (WSGI/ASGI, alone or fused with the headers
layer): allow-list and patterns, preflights, credentials, Vary, observe, counting."""

from __future__ import annotations

import logging

import pytest

from bastion.middleware import Mode, SettingsError
from bastion.settings import Settings
from tests.apps.headers_harness import STACKS, Answer, RefusalCounter, Stack

APP = "https://app.example.com"
JSON = [("Content-Type", "application/json")]


def settings(**kw: object) -> Settings:
    base: dict[str, object] = {
        "deadline": Mode.OFF,
        "cors_origins": (APP, "https://*.example.org", "http://localhost:3000"),
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(params=STACKS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def preflight(stack: Stack, origin: str, method: str = "POST", **extra: str) -> Answer:
    headers = {"Origin": origin, "Access-Control-Request-Method": method, **extra}
    return stack.request("OPTIONS", "/items", headers)


# --- actual requests -----------------------------------------------------------------
def test_allowed_origin_gets_its_origin_and_vary(kind: str) -> None:
    answer = Stack(kind, settings(), JSON).request(headers={"Origin": APP})
    assert answer.status == 200 and answer.app_called
    assert answer.one("Access-Control-Allow-Origin") == APP
    assert answer.one("Access-Control-Allow-Credentials") is None
    assert answer.one("Vary") == "Origin"


@pytest.mark.parametrize(
    "origin",
    ["https://a.example.org", "https://deep.sub.example.org", "http://localhost:3000"],
)
def test_patterns_and_ports_that_match(kind: str, origin: str) -> None:
    answer = Stack(kind, settings(), JSON).request(headers={"Origin": origin})
    assert answer.one("Access-Control-Allow-Origin") == origin


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.com",
        "https://app.example.com.evil.net",  # suffix trick on an exact origin
        "https://a.example.org.evil.net",  # suffix trick on a pattern
        "https://evilexample.org",  # prefix trick: no dot before the domain
        "https://example.org",  # the pattern needs at least one label
        "https://.example.org",
        "https://a..example.org",
        "http://a.example.org",  # scheme differs
        "https://a.example.org:8443",  # port differs
        "https://app.example.com:443",  # browsers never send the default port
        "https://APP.example.com",  # browsers serialise lower case
        "https://app.example.com/",
        "https://app.example.com.",  # trailing dot
        "https://user@app.example.com",
        "https://app.example.com@evil.net",
        "http://localhost:30000",
        "null",
        "",
        "*",
    ],
)
def test_origins_that_are_refused_are_never_reflected(kind: str, origin: str) -> None:
    answer = Stack(kind, settings(), JSON).request(headers={"Origin": origin})
    assert answer.status == 200 and answer.app_called  # the app still answers...
    assert answer.cors_headers() == []  # ...but the browser will not let the page read it
    assert answer.one("Vary") == "Origin"


def test_credentials_and_expose_headers(kind: str) -> None:
    s = settings(cors_credentials=True, cors_expose_headers=("x-request-id", "etag"))
    answer = Stack(kind, s, JSON).request(headers={"Origin": APP})
    assert answer.one("Access-Control-Allow-Credentials") == "true"
    assert answer.one("Access-Control-Expose-Headers") == "x-request-id, etag"


def test_no_origin_still_varies(kind: str) -> None:
    answer = Stack(kind, settings(), JSON).request()
    assert answer.one("Vary") == "Origin" and answer.cors_headers() == []


@pytest.mark.parametrize(
    ("app_vary", "expected"),
    [
        (["Accept-Encoding"], ["Accept-Encoding, Origin"]),
        (["origin"], ["origin"]),
        (["Accept-Encoding, Origin"], ["Accept-Encoding, Origin"]),
        (["*"], ["*"]),
        (["Cookie", "Origin"], ["Cookie", "Origin"]),  # already covered by a second field
        (["Cookie", "Accept"], ["Cookie, Origin", "Accept"]),
    ],
)
def test_vary_is_merged_not_duplicated(kind: str, app_vary: list[str], expected: list[str]) -> None:
    stack = Stack(kind, settings(), [*JSON, *(("Vary", v) for v in app_vary)])
    answer = stack.request(headers={"Origin": APP})
    assert answer.get("Vary") == expected


def test_app_s_own_cors_headers_are_replaced_by_the_policy(kind: str) -> None:
    app_headers = [
        *JSON,
        ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Access-Control-Allow-Private-Network", "true"),
    ]
    refused = Stack(kind, settings(), app_headers).request(headers={"Origin": "https://evil.com"})
    assert refused.cors_headers() == []
    allowed = Stack(kind, settings(), app_headers).request(headers={"Origin": APP})
    assert allowed.cors_headers() == ["access-control-allow-origin"]
    assert allowed.one("Access-Control-Allow-Origin") == APP


def test_star_without_credentials_sends_star_and_still_refuses_null(kind: str) -> None:
    stack = Stack(kind, settings(cors_origins=("*",)), JSON)
    assert (
        stack.request(headers={"Origin": "https://any.site"}).one("Access-Control-Allow-Origin")
        == "*"
    )
    assert stack.request(headers={"Origin": "null"}).cors_headers() == []


def test_null_is_allowed_only_when_listed(kind: str) -> None:
    stack = Stack(kind, settings(cors_origins=(APP, "null")), JSON)
    assert stack.request(headers={"Origin": "null"}).one("Access-Control-Allow-Origin") == "null"


def test_star_with_credentials_is_refused_at_startup() -> None:
    with pytest.raises(SettingsError, match="BASTION_CORS_ORIGINS"):
        Settings.from_env({"BASTION_CORS_ORIGINS": "*", "BASTION_CORS_CREDENTIALS": "true"})


# --- preflight -------------------------------------------------------------------------
def test_allowed_preflight_is_answered_204_without_the_app(kind: str) -> None:
    stack = Stack(kind, settings(cors_credentials=True, cors_max_age=300), JSON)
    answer = preflight(
        stack,
        APP,
        "POST",
        **{
            "Access-Control-Request-Headers": "Content-Type, Authorization",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert answer.status == 204 and not answer.app_called
    assert answer.one("Access-Control-Allow-Origin") == APP
    assert answer.one("Access-Control-Allow-Methods") == "GET, HEAD, POST"
    assert answer.one("Access-Control-Allow-Headers") == "authorization, content-type"
    assert answer.one("Access-Control-Max-Age") == "300"
    assert answer.one("Access-Control-Allow-Credentials") == "true"
    assert answer.one("Access-Control-Allow-Private-Network") is None
    assert answer.one("Vary") == "Origin"
    assert answer.body == b""


@pytest.mark.parametrize(
    ("origin", "method", "asked_headers", "reason"),
    [
        ("https://evil.com", "POST", "", "origin"),
        ("https://a.example.org.evil.net", "GET", "", "origin"),
        (APP, "DELETE", "", "method"),
        (APP, "post", "", "method"),  # methods are case-sensitive
        (APP, "POST", "X-Admin", "header"),
        (APP, "POST", "content-type, x-admin", "header"),
        (APP, "POST", "bad header\x00", "malformed"),
    ],
)
def test_refused_preflight_is_403_with_no_cors_headers(
    kind: str, origin: str, method: str, asked_headers: str, reason: str
) -> None:
    stack = Stack(kind, settings(cors_credentials=True), JSON)
    extra = {"Access-Control-Request-Headers": asked_headers} if asked_headers else {}
    answer = preflight(stack, origin, method, **extra)
    assert answer.status == 403 and not answer.app_called
    assert answer.cors_headers() == []
    assert reason in answer.body.decode()
    assert origin not in answer.body.decode()


def test_safelisted_request_headers_need_no_configuration(kind: str) -> None:
    stack = Stack(kind, settings(cors_allow_headers=()), JSON)
    answer = preflight(
        stack, APP, "GET", **{"Access-Control-Request-Headers": "accept, accept-language"}
    )
    assert answer.status == 204


def test_wildcard_allow_headers_echoes_only_valid_names(kind: str) -> None:
    stack = Stack(kind, settings(cors_allow_headers=("*",)), JSON)
    answer = preflight(stack, APP, "GET", **{"Access-Control-Request-Headers": "X-One,x-two"})
    assert answer.one("Access-Control-Allow-Headers") == "x-one, x-two"


def test_options_without_request_method_is_the_app_s(kind: str) -> None:
    answer = Stack(kind, settings(), JSON).request("OPTIONS", "/", {"Origin": APP})
    assert answer.app_called and answer.status == 200


def test_the_csp_report_path_is_left_to_the_report_intake(kind: str) -> None:
    stack = Stack(kind, settings(csp_report_path="/csp-reports"), JSON)
    answer = stack.request(
        "OPTIONS",
        "/csp-reports",
        {"Origin": "https://evil.com", "Access-Control-Request-Method": "POST"},
    )
    assert answer.app_called


# --- observe, counting, logging -----------------------------------------------------------
def test_observe_changes_nothing_and_counts(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    stack = Stack(kind, settings(cors=Mode.OBSERVE), [*JSON, ("Vary", "Cookie")])
    counter = RefusalCounter(stack.policy)
    with caplog.at_level(logging.INFO, logger="bastion.cors"):
        refused = preflight(stack, "https://evil.com", "POST")
        assert refused.app_called and refused.status == 200
        for _ in range(3):
            actual = stack.request(headers={"Origin": "https://evil.com"})
        allowed = stack.request(headers={"Origin": APP})
    for answer in (refused, actual, allowed):
        assert answer.cors_headers() == [] and answer.get("Vary") == ["Cookie"]
    assert counter.counts() == {"observe": 4}
    messages = [r.getMessage() for r in caplog.records if r.name == "bastion.cors"]
    assert messages == [  # once per (path, reason), not per request
        "CORS would refuse origin not allowed on '/items' (origin 'https://evil.com')",
        "CORS would refuse origin not allowed on '/' (origin 'https://evil.com')",
    ]


def test_enforce_counts_refusals_but_not_same_origin(kind: str) -> None:
    stack = Stack(kind, settings(), JSON)
    counter = RefusalCounter(stack.policy)
    stack.request(headers={"Origin": "https://evil.com"})
    preflight(stack, "https://evil.com")
    stack.request("POST", headers={"Origin": "https://api.example.com"})  # same origin
    stack.request(headers={"Origin": APP})
    assert counter.counts() == {"enforce": 2}


def test_refusal_log_is_bounded_and_escapes_the_origin(caplog: pytest.LogCaptureFixture) -> None:
    stack = Stack("wsgi-cors", settings(), JSON)
    with caplog.at_level(logging.INFO, logger="bastion.cors"):
        stack.request(headers={"Origin": "https://evil.com\x1b[31m" + "x" * 5000})
    (message,) = [r.getMessage() for r in caplog.records if r.name == "bastion.cors"]
    assert "\x1b" not in message and len(message) < 300
