"""Security headers on the WSGI layer, in process: presets, merge policy, HSTS trust,
nonce, routes, observe, settings. The layer is called directly with an environ (what a
server does). The ASGI layer is in ``test_headers_asgi.py``, real servers in
``test_headers_servers.py``, properties in ``test_headers_properties.py``.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from secure import Secure
from secure.middleware import SecureWSGIMiddleware

from bastion.middleware import Mode, Route
from bastion.middleware._header_policy import DEFAULT_WINNERS
from bastion.middleware.headers import NONCE_KEY, SecurityHeadersMiddleware
from bastion.settings import Settings

Headers = list[tuple[str, str]]
API = {
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-permitted-cross-domain-policies": "none",
    "cache-control": "no-store",
}
HSTS = "max-age=63072000; includeSubDomains"


def settings(**kw: Any) -> Settings:
    return Settings(deadline=Mode.OFF, **kw)


def wsgi_app(headers: Headers, status: str = "200 OK") -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        app.environ = environ  # type: ignore[attr-defined]
        start_response(status, list(headers))
        return [b"{}"]

    return app


def call(
    middleware: Callable[..., Iterable[bytes]], **environ: Any
) -> tuple[str, Headers, dict[str, Any]]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "wsgi.url_scheme": "http",
        "REMOTE_ADDR": "203.0.113.9",
        **environ,
    }
    got: dict[str, Any] = {}

    def start_response(status: str, headers: Headers, exc_info: Any = None) -> None:
        got["status"], got["headers"] = status, headers

    b"".join(middleware(env, start_response))
    return got["status"], got["headers"], env


def as_dict(headers: Headers) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in headers:
        assert name.lower() not in found, f"duplicate {name}"
        found[name.lower()] = value
    return found


JSON = [("Content-Type", "application/json")]


# --- presets ---------------------------------------------------------------------------
def test_api_preset_over_http_sends_the_issue_s_headers_and_no_hsts() -> None:
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), settings()))
    assert as_dict(headers) == {"content-type": "application/json", **API}


def test_api_preset_over_https_adds_two_year_hsts() -> None:
    _, headers, _ = call(
        SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), settings()),
        **{"wsgi.url_scheme": "https"},
    )
    assert as_dict(headers)["strict-transport-security"] == HSTS


def test_hsts_max_age_zero_disables_it() -> None:
    mw = SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), settings(hsts_max_age=0))
    _, headers, _ = call(mw, **{"wsgi.url_scheme": "https"})
    assert "strict-transport-security" not in as_dict(headers)


def test_html_preset_nonce_is_fresh_per_request_and_in_the_environ() -> None:
    app = wsgi_app([("Content-Type", "text/html; charset=utf-8")])
    mw = SecurityHeadersMiddleware.from_settings(app, settings(headers_preset="html"))
    nonces = set()
    for _ in range(20):
        _, headers, env = call(mw)
        csp = as_dict(headers)["content-security-policy"]
        nonce = env[NONCE_KEY]
        assert len(nonce) >= 22 and nonce.replace("-", "").replace("_", "").isalnum()
        assert f"script-src 'nonce-{nonce}' 'strict-dynamic'" in csp
        assert f"style-src 'self' 'nonce-{nonce}'" in csp
        for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"):
            assert directive in csp
        assert "unsafe" not in csp
        assert as_dict(headers)["cache-control"] == "no-store"
        nonces.add(nonce)
    assert len(nonces) == 20


def test_html_preset_connect_src_lists_the_configured_origins_only() -> None:
    app = wsgi_app([("Content-Type", "text/html; charset=utf-8")])
    plain = as_dict(
        call(SecurityHeadersMiddleware.from_settings(app, settings(headers_preset="html")))[1]
    )
    assert "connect-src" not in plain["content-security-policy"]  # falls back to 'self'
    connected = Settings.from_env(
        {
            "BASTION_HEADERS_PRESET": "html",
            "BASTION_CSP_CONNECT_SRC": "https://API.example.com/, https://*.example.org:8443",
        }
    )
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(app, connected))
    csp = as_dict(headers)["content-security-policy"]
    assert "connect-src 'self' https://api.example.com https://*.example.org:8443" in csp
    assert "default-src 'self'" in csp


@pytest.mark.parametrize("value", ["*", "null", "https://*.com", "ftp://x.example.com"])
def test_csp_connect_src_refuses_what_is_not_an_origin_a_page_may_call(value: str) -> None:
    with pytest.raises(ValueError, match="BASTION_CSP_CONNECT_SRC"):
        Settings.from_env({"BASTION_CSP_CONNECT_SRC": value})


def test_html_preset_replaces_the_app_s_cache_control_on_nonce_bearing_html_only() -> None:
    s = settings(headers_preset="html")
    page = [("Content-Type", "text/html"), ("Cache-Control", "public, max-age=600")]
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(wsgi_app(page), s))
    assert as_dict(headers)["cache-control"] == "no-store"
    script = [("Cache-Control", "public, max-age=600"), ("Content-Type", "text/javascript")]
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(wsgi_app(script), s))
    assert as_dict(headers)["cache-control"] == "public, max-age=600"


def test_api_preset_keeps_the_app_s_cache_control() -> None:
    app = wsgi_app([*JSON, ("Cache-Control", "public, max-age=60")])
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(app, settings()))
    assert as_dict(headers)["cache-control"] == "public, max-age=60"


def test_report_only_and_report_endpoint_over_https() -> None:
    s = settings(csp_report_only=True, csp_report_uri="https://reports.example.com/csp")
    _, headers, _ = call(
        SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), s), **{"wsgi.url_scheme": "https"}
    )
    found = as_dict(headers)
    assert "content-security-policy" not in found
    assert found["content-security-policy-report-only"] == (
        "default-src 'none'; frame-ancestors 'none'; "
        "report-uri https://reports.example.com/csp; report-to csp-endpoint"
    )
    assert found["reporting-endpoints"] == 'csp-endpoint="https://reports.example.com/csp"'
    assert found["x-frame-options"] == "DENY"  # the other headers still enforced


def test_plain_http_gets_report_uri_only_even_without_hsts() -> None:
    # Chromium ignores Reporting-Endpoints on http and report-uri next to report-to.
    s = settings(csp_report_path="/csp-reports", hsts_max_age=0)
    mw = SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), s)
    _, headers, _ = call(mw)
    found = as_dict(headers)
    assert found["content-security-policy"].endswith("; report-uri /csp-reports")
    assert "reporting-endpoints" not in found
    _, headers, _ = call(mw, **{"wsgi.url_scheme": "https"})
    found = as_dict(headers)
    assert found["content-security-policy"].endswith(
        "; report-uri /csp-reports; report-to csp-endpoint"
    )
    assert found["reporting-endpoints"] == 'csp-endpoint="/csp-reports"'
    assert "strict-transport-security" not in found


def test_html_preset_asks_for_report_samples() -> None:
    s = settings(headers_preset="html")
    _, headers, env = call(SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), s))
    csp = as_dict(headers)["content-security-policy"]
    nonce = env[NONCE_KEY]
    assert f"script-src 'nonce-{nonce}' 'strict-dynamic' 'report-sample'" in csp
    assert f"style-src 'self' 'nonce-{nonce}' 'report-sample'" in csp


@pytest.mark.parametrize("winner", ["app", "bastion"])
def test_report_intake_answers_may_be_read_cross_origin(winner: str) -> None:
    from bastion.middleware.csp_reports import CSPReportMiddleware

    s = settings(
        csp_report_path="/csp-reports",
        headers_merge={"cross-origin-resource-policy": winner},
    )
    inner = CSPReportMiddleware.from_settings(wsgi_app(JSON), s)
    mw = SecurityHeadersMiddleware.from_settings(
        inner, s, routes={"/api/": Route(headers={"X-A": "1"})}
    )
    _, headers, _ = call(mw, PATH_INFO="/csp-reports", REQUEST_METHOD="POST")
    found = as_dict(headers)
    assert found["cross-origin-resource-policy"] == "cross-origin"
    assert found["x-content-type-options"] == "nosniff"
    _, headers, _ = call(mw, PATH_INFO="/api/x")
    assert as_dict(headers)["cross-origin-resource-policy"] == "same-origin"
    assert as_dict(headers)["x-a"] == "1"


def test_report_path_is_the_report_uri_when_no_uri_is_given() -> None:
    s = settings(csp_report_path="/csp-reports")
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), s))
    assert "report-uri /csp-reports" in as_dict(headers)["content-security-policy"]


# --- merge policy ----------------------------------------------------------------------
def test_server_and_powered_by_are_removed_and_every_set_cookie_kept() -> None:
    app_headers = [
        ("Referrer-Policy", "origin"),
        ("Content-Type", "application/json"),
        ("Server", "werkzeug"),
        ("Set-Cookie", "a=1; Secure"),
        ("X-Powered-By", "Flask"),
        ("set-cookie", "b=2; HttpOnly"),
    ]
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(wsgi_app(app_headers), settings()))
    names = [n.lower() for n, _ in headers]
    assert "server" not in names and "x-powered-by" not in names
    assert [h for h in headers if h[0].lower() == "set-cookie"] == [
        ("Set-Cookie", "a=1; Secure"),
        ("set-cookie", "b=2; HttpOnly"),
    ]
    assert names.count("referrer-policy") == 1


def test_secure_s_own_middleware_loses_set_cookie_which_bastion_keeps() -> None:
    """The defect the notes describe, reproduced, so the comparison stays honest."""
    app_headers = [
        ("Referrer-Policy", "origin"),
        ("Content-Type", "text/plain"),
        ("Server", "x"),
        ("Set-Cookie", "session=1"),
    ]
    _, theirs, _ = call(
        SecureWSGIMiddleware(wsgi_app(app_headers), secure=Secure.with_default_headers())
    )  # type: ignore[arg-type]
    _, ours, _ = call(SecurityHeadersMiddleware.from_settings(wsgi_app(app_headers), settings()))
    assert ("Set-Cookie", "session=1") not in theirs
    assert ("Set-Cookie", "session=1") in ours


@pytest.mark.parametrize(("header", "winner"), sorted(DEFAULT_WINNERS.items()))
def test_default_winner_per_header(header: str, winner: str) -> None:
    app = wsgi_app([*JSON, (header.title(), "app-value")])
    _, headers, _ = call(
        SecurityHeadersMiddleware.from_settings(app, settings()), **{"wsgi.url_scheme": "https"}
    )
    values = [v for n, v in headers if n.lower() == header]
    if winner == "app":
        assert values == ["app-value"]
    else:
        assert len(values) == 1 and values[0] != "app-value"


def test_merge_setting_flips_winners() -> None:
    s = settings(headers_merge={"x-frame-options": "bastion", "x-content-type-options": "app"})
    app = wsgi_app([("X-Frame-Options", "SAMEORIGIN"), ("X-Content-Type-Options", "none")])
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(app, s))
    found = as_dict(headers)
    assert found["x-frame-options"] == "DENY"
    assert found["x-content-type-options"] == "none"


def test_merge_setting_can_keep_the_server_header() -> None:
    s = settings(headers_merge={"server": "app"})
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(wsgi_app([("Server", "svc")]), s))
    assert as_dict(headers)["server"] == "svc"


def test_app_multiple_csp_headers_are_all_kept_when_the_app_wins() -> None:
    app = wsgi_app([("Content-Security-Policy", "a"), ("Content-Security-Policy", "b")])
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(app, settings()))
    assert [v for n, v in headers if n == "Content-Security-Policy"] == ["a", "b"]


def test_strict_transport_security_from_the_app_over_http_is_dropped() -> None:
    app = wsgi_app([("Strict-Transport-Security", "max-age=0")])
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(app, settings()))
    assert "strict-transport-security" not in as_dict(headers)


def test_second_start_response_with_exc_info_is_merged_too() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Server", "x")])
        try:
            raise RuntimeError("late failure")
        except RuntimeError:
            import sys

            start_response("500 Internal Server Error", [("Server", "x")], sys.exc_info())
        return [b"oops"]

    status, headers, _ = call(SecurityHeadersMiddleware.from_settings(app, settings()))
    assert status.startswith("500") and "server" not in as_dict(headers)


# --- HSTS: who is believed ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("remote", "proto", "trusted", "expected"),
    [
        ("10.0.0.7", "https", ("10.0.0.0/8",), True),
        ("10.0.0.7", "http, https", ("10.0.0.0/8",), True),  # nearest proxy's value
        ("10.0.0.7", "https, http", ("10.0.0.0/8",), False),
        ("203.0.113.9", "https", ("10.0.0.0/8",), False),  # not a trusted peer
        ("10.0.0.7", "https", (), False),  # nobody trusted
        ("::ffff:10.0.0.7", "https", ("10.0.0.0/8",), True),  # IPv4-mapped IPv6
        ("not-an-ip", "https", ("10.0.0.0/8",), False),
        ("", "https", ("0.0.0.0/0",), False),
        ("10.0.0.7", "HTTPS", ("10.0.0.0/8",), True),
        ("10.0.0.7", "ht\x00tps\udcff" * 500, ("10.0.0.0/8",), False),
    ],
)
def test_forwarded_proto_is_believed_only_from_trusted_proxies(
    remote: str, proto: str, trusted: tuple[str, ...], expected: bool
) -> None:
    s = settings(trusted_proxies=tuple(ipaddress.ip_network(t) for t in trusted))
    mw = SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), s)
    _, headers, _ = call(mw, REMOTE_ADDR=remote, HTTP_X_FORWARDED_PROTO=proto)
    assert ("strict-transport-security" in as_dict(headers)) is expected


# --- routes and exemptions ---------------------------------------------------------------
def test_exempt_paths_and_routes_leave_the_response_untouched() -> None:
    app_headers = [*JSON, ("Server", "svc")]
    s = settings(headers_exempt_paths=("/healthz", "/docs/"))
    routes = {"/metrics": Route(exempt_headers=True)}
    mw = SecurityHeadersMiddleware.from_settings(wsgi_app(app_headers), s, routes=routes)
    for path in ("/healthz", "/docs/index.html", "/metrics"):
        _, headers, _ = call(mw, PATH_INFO=path)
        assert headers == app_headers, path
    _, headers, _ = call(mw, PATH_INFO="/healthz/deep")  # exact path only
    assert "content-security-policy" in as_dict(headers)


def test_route_header_values_replace_and_remove() -> None:
    routes = {
        "/docs/": Route(
            headers={
                "Content-Security-Policy": "default-src 'self' cdn.example",
                "Cache-Control": None,
            }
        )
    }
    mw = SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), settings(), routes=routes)
    _, headers, _ = call(mw, PATH_INFO="/docs/ui")
    found = as_dict(headers)
    assert found["content-security-policy"] == "default-src 'self' cdn.example"
    assert "cache-control" not in found
    _, headers, _ = call(mw, PATH_INFO="/api")
    assert as_dict(headers)["content-security-policy"] == API["content-security-policy"]


def test_route_header_value_with_newline_is_refused_at_startup() -> None:
    routes = {"/x": Route(headers={"X-Test": "a\r\nSet-Cookie: evil=1"})}
    with pytest.raises(ValueError, match="CR/LF"):
        SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), settings(), routes=routes)
    with pytest.raises(ValueError, match="not an HTTP header name"):
        SecurityHeadersMiddleware.from_settings(
            wsgi_app(JSON), settings(), routes={"/x": Route(headers={"X Y": "1"})}
        )


# --- observe ------------------------------------------------------------------------------
def test_observe_sends_only_the_csp_report_only_and_logs_once_per_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app_headers = [*JSON, ("Server", "svc"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    mw = SecurityHeadersMiddleware.from_settings(
        wsgi_app(app_headers), settings(headers=Mode.OBSERVE)
    )
    with caplog.at_level(logging.INFO, logger="bastion.headers"):
        for _ in range(3):
            _, headers, _ = call(mw)
            assert headers == [
                *app_headers,
                ("Content-Security-Policy-Report-Only", API["content-security-policy"]),
            ]
        call(mw, PATH_INFO="/other")
    records = [r.getMessage() for r in caplog.records if r.name == "bastion.headers"]
    assert len(records) == 2
    # logged from the app's own headers: enforce would add the CSP (not just keep ours)
    assert "on '/':" in records[0] and "x-frame-options" in records[0] and "'server'" in records[0]
    assert "'content-security-policy'" in records[0]
    assert "content-security-policy-report-only" not in records[0]


def test_observe_logs_once_per_flask_route_template_and_once_for_unmatched_paths(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from flask import Flask

    from bastion.middleware import protect

    app = Flask(__name__)

    @app.get("/lines/<date>")
    def lines(date: str) -> dict[str, str]:
        return {"date": date}

    protect(app, settings(headers=Mode.OBSERVE))
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="bastion.headers"):
        for day in range(1, 10):
            assert client.get(f"/lines/2026-12-0{day}").status_code == 200
        for missing in ("/wp-admin", "/.env", "/x/y"):
            assert client.get(missing).status_code == 404
    records = [r.getMessage() for r in caplog.records if r.name == "bastion.headers"]
    assert len(records) == 2, records
    assert records[0].startswith("security headers (observe) on '/lines/<date>': would add")
    assert records[0].endswith("(first seen at '/lines/2026-12-01')")
    assert records[1].startswith("security headers (observe) on '(no route)'")


def test_observe_logs_a_route_once_when_threads_race_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    threads = 16
    barrier = threading.Barrier(threads)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        barrier.wait(timeout=10)  # every thread is past the middleware before any responds
        start_response("200 OK", list(JSON))
        return [b"{}"]

    mw = SecurityHeadersMiddleware.from_settings(app, settings(headers=Mode.OBSERVE))
    with caplog.at_level(logging.INFO, logger="bastion.headers"):
        workers = [threading.Thread(target=call, args=(mw,)) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=20)
    records = [r for r in caplog.records if r.name == "bastion.headers"]
    assert len(records) == 1


def test_observe_html_report_only_carries_the_nonce_and_keeps_the_app_s_cache() -> None:
    page = [("Content-Type", "text/html"), ("Cache-Control", "public, max-age=60")]
    s = settings(headers=Mode.OBSERVE, headers_preset="html", csp_report_path="/csp-reports")
    mw = SecurityHeadersMiddleware.from_settings(wsgi_app(page), s)
    _, headers, env = call(mw, **{"wsgi.url_scheme": "https"})
    found = as_dict(headers)
    assert set(found) == {
        "content-type",
        "cache-control",
        "content-security-policy-report-only",
        "reporting-endpoints",
    }
    assert found["cache-control"] == "public, max-age=60"
    policy = found["content-security-policy-report-only"]
    assert f"'nonce-{env[NONCE_KEY]}'" in policy and "report-to csp-endpoint" in policy
    _, headers, _ = call(mw)  # plain http: report-uri only, no Reporting-Endpoints
    found = as_dict(headers)
    assert "reporting-endpoints" not in found
    assert found["content-security-policy-report-only"].endswith("report-uri /csp-reports")


def test_observe_leaves_out_bastion_s_policy_where_the_app_s_csp_wins() -> None:
    own = [*JSON, ("Content-Security-Policy", "default-src 'self'")]
    mw = SecurityHeadersMiddleware.from_settings(wsgi_app(own), settings(headers=Mode.OBSERVE))
    _, headers, _ = call(mw)
    assert headers == own
    s = settings(headers=Mode.OBSERVE, headers_merge={"content-security-policy": "bastion"})
    _, headers, _ = call(SecurityHeadersMiddleware.from_settings(wsgi_app(own), s))
    assert headers == [
        *own,
        ("Content-Security-Policy-Report-Only", API["content-security-policy"]),
    ]


def test_observe_uses_a_route_s_own_policy_and_exemptions() -> None:
    routes = {
        "/docs/": Route(headers={"Content-Security-Policy": "default-src 'self'"}),
        "/bare": Route(headers={"Content-Security-Policy": None}),
        "/healthz": Route(exempt_headers=True),
    }
    mw = SecurityHeadersMiddleware.from_settings(
        wsgi_app(JSON), settings(headers=Mode.OBSERVE), routes=routes
    )
    _, headers, _ = call(mw, PATH_INFO="/docs/a")
    assert as_dict(headers)["content-security-policy-report-only"] == "default-src 'self'"
    for path in ("/bare", "/healthz"):
        _, headers, _ = call(mw, PATH_INFO=path)
        assert headers == JSON


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"BASTION_HEADERS": "off", "BASTION_CSP_REPORT_ONLY": "true"}, "BASTION_HEADERS=off"),
        (
            {"BASTION_HEADERS": "observe", "BASTION_CSP_REPORT_ONLY": "false"},
            "BASTION_HEADERS=observe",
        ),
    ],
)
def test_report_only_that_cannot_take_effect_fails_at_startup(
    env: dict[str, str], fragment: str
) -> None:
    from bastion.middleware import SettingsError

    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert "BASTION_CSP_REPORT_ONLY=" in message and fragment in message


def test_report_only_set_in_code_with_headers_off_fails_too() -> None:
    from bastion.middleware import SettingsError

    with pytest.raises(SettingsError, match="BASTION_CSP_REPORT_ONLY='true'"):
        Settings(headers=Mode.OFF, csp_report_only=True)


@pytest.mark.parametrize(
    "env",
    [
        {"BASTION_HEADERS": "observe", "BASTION_CSP_REPORT_ONLY": "true"},
        {"BASTION_HEADERS": "observe"},
        {"BASTION_HEADERS": "off"},
        {"BASTION_HEADERS": "enforce", "BASTION_CSP_REPORT_ONLY": "true"},
        {"BASTION_HEADERS": "enforce", "BASTION_CSP_REPORT_ONLY": "false"},
    ],
)
def test_report_only_settings_that_take_effect_are_accepted(env: dict[str, str]) -> None:
    Settings.from_env(env)


# --- settings and pass-through ----------------------------------------------------------
@pytest.mark.parametrize("raw", ["x-frame-options=maybe", "x-frame-options", "bad name=app"])
def test_invalid_merge_setting_fails_at_startup_naming_it(raw: str) -> None:
    from bastion.middleware import SettingsError

    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"BASTION_HEADERS_MERGE": raw})
    message = str(caught.value)
    assert "BASTION_HEADERS_MERGE" in message and repr(raw) in message
    assert "header=app|bastion" in message


def test_exempt_path_issues_no_nonce() -> None:
    s = settings(headers_preset="html", headers_exempt_paths=("/healthz",))
    _, _, env = call(
        SecurityHeadersMiddleware.from_settings(wsgi_app(JSON), s), PATH_INFO="/healthz"
    )
    assert NONCE_KEY not in env


def test_observe_headers_with_cors_enforced_logs_only_header_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bastion.middleware.cors import CORSMiddleware

    s = settings(headers=Mode.OBSERVE, cors_origins=("https://app.example.com",))
    mw = SecurityHeadersMiddleware.from_settings(CORSMiddleware.from_settings(wsgi_app(JSON), s), s)
    with caplog.at_level(logging.INFO, logger="bastion.headers"):
        _, headers, _ = call(mw, HTTP_ORIGIN="https://app.example.com")
    found = as_dict(headers)
    assert found["access-control-allow-origin"] == "https://app.example.com"  # CORS enforces
    assert "content-security-policy" not in found  # headers only observe
    assert found["content-security-policy-report-only"] == API["content-security-policy"]
    assert "x-frame-options" not in found
    (message,) = [r.getMessage() for r in caplog.records if r.name == "bastion.headers"]
    assert "content-security-policy" in message and "access-control" not in message
    assert "remove []" in message
