"""Security headers and CORS on real servers: a Flask app under gunicorn (sync worker)
and a Starlette app under uvicorn, on loopback, wrapped by ``protect()`` with settings
from the environment, checked with httpx.

gunicorn trusts X-Forwarded-Proto from 127.0.0.1 by default and rewrites
``wsgi.url_scheme`` itself, and uvicorn does the same to ``scope["scheme"]``; the
servers run with ``--forwarded-allow-ips=`` / ``--no-proxy-headers`` so that what is
tested is Bastion's own trusted-proxy decision. HTTPS is real TLS (a trustme CA).
The deadline guard is off: its composition is tested with its own part.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest
import trustme

from tests.servers import Server, gunicorn, uvicorn

APP = "https://app.example.com"
BASE_ENV = {
    "BASTION_DEADLINE": "off",
    "BASTION_CORS_ORIGINS": f"{APP},https://*.example.org",
    "BASTION_CORS_CREDENTIALS": "true",
    "BASTION_HEADERS_EXEMPT_PATHS": "/healthz",
}
CONFIGS: dict[str, dict[str, str]] = {
    "api": {**BASE_ENV},  # plain HTTP, nobody trusted
    "api-tls": {**BASE_ENV},
    "html": {**BASE_ENV, "BASTION_HEADERS_PRESET": "html", "BASTION_TRUSTED_PROXIES": "127.0.0.1"},
    "observe": {**BASE_ENV, "BASTION_HEADERS": "observe", "BASTION_CORS": "observe"},
}
API_HEADERS = {
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


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return certfile, keyfile, context


class Running:
    """A started server and a client for it."""

    def __init__(self, server: Server, client: httpx.Client) -> None:
        self.server, self.client = server, client

    def log(self, until: Callable[[str], bool], timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.server.log()
            if until(text) or time.monotonic() > deadline:
                return text
            time.sleep(0.05)


def _start(
    framework: str, config: str, tmp: Path, tls: tuple[Path, Path, ssl.SSLContext]
) -> AbstractContextManager[Server]:
    env = CONFIGS[config]
    certfile, keyfile, _ = tls
    if framework == "flask":
        extra = ["--forwarded-allow-ips="]
        if config == "api-tls":
            extra += ["--certfile", str(certfile), "--keyfile", str(keyfile)]
        return gunicorn("tests.apps.headers_flask:app", tmp, env=env, extra=extra)
    extra = ["--no-proxy-headers"]
    if config == "api-tls":
        extra += ["--ssl-certfile", str(certfile), "--ssl-keyfile", str(keyfile)]
    return uvicorn("tests.apps.headers_starlette:app", tmp, env=env, extra=extra)


@pytest.fixture(scope="module", params=["flask", "starlette"])
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _running(config: str) -> Callable[..., Iterator[Running]]:
    @pytest.fixture(scope="module")
    def fixture(
        framework: str,
        tmp_path_factory: pytest.TempPathFactory,
        tls: tuple[Path, Path, ssl.SSLContext],
    ) -> Iterator[Running]:
        tmp = tmp_path_factory.mktemp(f"{framework}-{config}")
        with _start(framework, config, tmp, tls) as server:
            url = server.url.replace("http://", "https://") if config == "api-tls" else server.url
            with httpx.Client(base_url=url, verify=tls[2], timeout=10) as client:
                yield Running(server, client)

    return fixture


api = _running("api")
api_tls = _running("api-tls")
html = _running("html")
observe = _running("observe")


def cors_headers(response: httpx.Response) -> list[str]:
    return [n for n in response.headers if n.lower().startswith("access-control-")]


# --- presets -----------------------------------------------------------------------------
def test_api_preset_headers_cookies_and_server_identity(api: Running, framework: str) -> None:
    response = api.client.get("/api/items")
    assert response.status_code == 200 and response.json() == {"items": [1, 2, 3]}
    for name, value in API_HEADERS.items():
        assert response.headers.get_list(name) == [value], name
    assert "strict-transport-security" not in response.headers  # plain HTTP
    cookies = response.headers.get_list("set-cookie")
    assert [c.split("=")[0] for c in cookies] == ["session", "prefs"]
    assert "x-powered-by" not in response.headers
    # The app's own Server value is removed; the server's own (gunicorn adds one after
    # the app; uvicorn too unless --no-server-header) is outside the app's reach.
    assert all("flask-app" not in v for v in response.headers.get_list("server"))
    if framework == "flask":
        assert response.headers["x-request-id"] == "r-1"


def test_hsts_over_real_tls(api_tls: Running) -> None:
    response = api_tls.client.get("/api/items")
    assert response.url.scheme == "https"
    assert response.headers["strict-transport-security"] == HSTS
    for name, value in API_HEADERS.items():
        assert response.headers[name] == value


def test_forwarded_proto_from_an_untrusted_peer_gives_no_hsts(api: Running) -> None:
    response = api.client.get("/api/items", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in response.headers


def test_forwarded_proto_from_a_trusted_proxy_gives_hsts(html: Running) -> None:
    assert "strict-transport-security" not in html.client.get("/page").headers
    response = html.client.get("/page", headers={"X-Forwarded-Proto": "https"})
    assert response.headers["strict-transport-security"] == HSTS
    response = html.client.get("/page", headers={"X-Forwarded-Proto": "http"})
    assert "strict-transport-security" not in response.headers


def test_html_nonce_is_unique_per_request_in_page_and_csp(html: Running) -> None:
    nonces = set()
    for _ in range(5):
        response = html.client.get("/page")
        (nonce,) = re.findall(r'<script nonce="([^"]+)"', response.text)
        csp = response.headers["content-security-policy"]
        assert f"script-src 'nonce-{nonce}' 'strict-dynamic'" in csp
        assert "object-src 'none'" in csp and "base-uri 'none'" in csp
        assert response.headers["cache-control"] == "no-store"
        nonces.add(nonce)
    assert len(nonces) == 5


def test_exempt_path_gets_no_security_headers(api: Running) -> None:
    response = api.client.get("/healthz")
    assert response.text == "ok"
    assert "content-security-policy" not in response.headers
    assert "x-frame-options" not in response.headers


# --- CORS ----------------------------------------------------------------------------------
def test_preflight_allowed(api: Running) -> None:
    response = api.client.options(
        "/api/items",
        headers={
            "Origin": "https://shop.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
            "Access-Control-Request-Private-Network": "true",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://shop.example.org"
    assert response.headers["access-control-allow-methods"] == "GET, HEAD, POST"
    assert response.headers["access-control-allow-headers"] == "authorization, content-type"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-max-age"] == "600"
    assert "access-control-allow-private-network" not in response.headers
    assert response.headers["vary"] == "Origin"
    assert response.headers["x-frame-options"] == "DENY"  # the 204 is hardened too


@pytest.mark.parametrize(
    ("origin", "method"),
    [
        ("https://evil.example", "POST"),
        ("https://shop.example.org.evil.net", "POST"),
        (APP, "DELETE"),
    ],
)
def test_preflight_refused(api: Running, origin: str, method: str) -> None:
    response = api.client.options(
        "/api/items", headers={"Origin": origin, "Access-Control-Request-Method": method}
    )
    assert response.status_code == 403
    assert cors_headers(response) == []
    assert response.headers["vary"] == "Origin"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_actual_requests_credentials_and_vary(api: Running) -> None:
    allowed = api.client.post("/api/items", headers={"Origin": APP})
    assert allowed.status_code == 201
    assert allowed.headers["access-control-allow-origin"] == APP
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert allowed.headers.get_list("vary") == ["Origin"]
    refused = api.client.get("/api/items", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 200 and cors_headers(refused) == []
    assert refused.headers.get_list("vary") == ["Origin"]
    plain = api.client.get("/api/items")
    assert plain.headers.get_list("vary") == ["Origin"]


def _raw_request(server: Server, head: bytes) -> bytes:
    """One request written byte for byte (clients refuse to send such headers)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(
    "bad",
    [
        b"Origin: https://app.example.com\xff\r\n",
        b"Origin: https://app.example.com.\r\nOrigin: https://evil.example\r\n",
        b"Origin: " + b"https://" + b"a." * 3000 + b"example.org\r\n",
        b"Origin: \xe2\x80\xae\xf0\x9f\x92\xa9https://app.example.com\r\n",
        b"X-Forwarded-Proto: \xff\xfehttps\r\nX-Forwarded-For: not, an, ip,, \r\n",
        b"X-Forwarded-Proto: " + b"https," * 2000 + b"\r\n",
    ],
)
def test_malformed_request_headers_never_break_or_reflect(api: Running, bad: bytes) -> None:
    head = b"GET /api/items HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + bad + b"\r\n"
    answer = _raw_request(api.server, head)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] in (b"200", b"400", b"431"), status_line
    headers = rest.partition(b"\r\n\r\n")[0].lower()
    assert b"access-control-allow-origin" not in headers
    assert b"strict-transport-security" not in headers
    assert api.client.get("/api/items").status_code == 200  # the worker is still fine
    assert "Traceback" not in api.server.log()


# --- observe -------------------------------------------------------------------------------
def test_observe_changes_no_response_and_records(observe: Running, framework: str) -> None:
    response = observe.client.get("/api/items", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    for name in ("content-security-policy", "x-frame-options", "vary", *API_HEADERS):
        assert name not in response.headers, name
    assert response.headers["content-security-policy-report-only"].startswith("default-src")
    assert cors_headers(response) == []
    if framework == "flask":
        assert response.headers["x-powered-by"] == "Flask"
    preflight = observe.client.options(
        "/api/items",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code != 403  # the app answered it
    log = observe.log(lambda text: "CORS would refuse" in text and "would add" in text)
    assert "security headers (observe) on '/api/items': would add" in log
    assert "CORS would refuse origin not allowed on '/api/items'" in log


def test_observe_logs_once_per_route_template(observe: Running, framework: str) -> None:
    for day in range(1, 8):
        assert observe.client.get(f"/lines/2026-12-0{day}").status_code == 200
    template = "/lines/<date>" if framework == "flask" else "/lines/{date}"
    wanted = f"security headers (observe) on '{template}': would add"
    log = observe.log(lambda text: wanted in text)
    lines = [line for line in log.splitlines() if "security headers (observe) on '/lines" in line]
    assert len(lines) == 1 and wanted in lines[0], lines
    assert "(first seen at '/lines/2026-12-01')" in lines[0]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"BASTION_CSP_REPORT_PATH": "/报告"}, "BASTION_CSP_REPORT_PATH"),
        ({"BASTION_CSP_REPORT_URI": "/csp; script-src *"}, "BASTION_CSP_REPORT_URI"),
        (
            {"BASTION_CORS_ORIGINS": "https://*.com", "BASTION_CORS_CREDENTIALS": "true"},
            "BASTION_CORS_ORIGINS",
        ),
    ],
)
def test_a_setting_that_cannot_work_stops_the_server_at_startup_naming_it(
    framework: str, env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    """Not a 500 on every request later (gunicorn) or a bare UnicodeEncodeError
    (uvicorn): the server does not come up, and its log names the variable."""
    if framework == "flask":
        server = gunicorn("tests.apps.headers_flask:app", tmp_path, env={**BASE_ENV, **env})
    else:
        server = uvicorn("tests.apps.headers_starlette:app", tmp_path, env={**BASE_ENV, **env})
    try:
        with server as running:  # gunicorn's master binds before its worker imports the app
            assert running.process.wait(timeout=30) != 0
            log = running.log()
    except RuntimeError as early:  # uvicorn imports the app first
        log = str(early)
    assert f"SettingsError: invalid Bastion settings:\n  {variable}=" in log
