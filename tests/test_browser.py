"""Bastion as a real browser meets it: Debian's Chromium, headless, over DevTools.

Pages come from ``tests/apps/browser_app.py`` under gunicorn on loopback, over plain
http and over real HTTPS (a throw-away trustme CA whose certificate Chromium accepts
by its SPKI hash). Chromium resolves ``*.test`` to 127.0.0.1, so ``app.example.test``,
``api.example.test`` (same site, other origins) and ``evil.test`` (another site) are
distinct, non-loopback origins (plain http is then not a secure
context, as on any internal http host) while no byte leaves loopback.
``--short-reporting-delay`` makes the Reporting API post its queue within a second
instead of once a minute.

What is asserted comes from the page (scripts record what ran in ``window.ran``; fetch
results read back over DevTools) and from the server: gunicorn's access log (method,
path, status, content type and length of every request) and the report intake's one
WARNING line per accepted report.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.cdp import Browser, Page, chromium, chromium_path
from tests.servers import Server, free_port, gunicorn

pytestmark = pytest.mark.slow

APP = "tests.apps.browser_app:app"
INTAKE = "/csp-reports"
ACCESS_FORMAT = "access %(m)s %(U)s %(s)s [%({content-type}i)s] [%({content-length}i)s]"
_ACCESS = re.compile(r"^access (\S+) (\S+) (\d{3}) \[([^\]]*)\] \[([^\]]*)\]$", re.M)
_REPORT = re.compile(
    r"^bastion\.csp WARNING csp-violation: (\S+) blocked (\S+) on (\S+) \((\w+)\)$", re.M
)


# --- the browser and TLS --------------------------------------------------------------
@dataclass(frozen=True)
class TLS:
    certfile: Path
    keyfile: Path
    spki: str  # base64 SHA-256 of the leaf's SubjectPublicKeyInfo


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    folder = tmp_path_factory.mktemp("tls")
    cert = trustme.CA().issue_cert("app.example.test", "api.example.test", "evil.test")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return TLS(certfile, keyfile, base64.b64encode(hashlib.sha256(spki).digest()).decode())


@pytest.fixture(scope="module")
def browser(
    tmp_path_factory: pytest.TempPathFactory, tls: TLS, sites: SiteFactory
) -> Iterator[Browser]:
    # ``sites``: the servers stop after the browser, so none waits on its idle connections.
    if chromium_path() is None:
        pytest.fail("Chromium is missing: `make tools` (part of `make test`) installs it")
    args = [
        "--host-resolver-rules=MAP *.test 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={tls.spki}",
        "--short-reporting-delay",
    ]
    with chromium(tmp_path_factory.mktemp("chromium"), args) as running:
        yield running


# --- the servers ----------------------------------------------------------------------
@dataclass
class Site:
    server: Server
    scheme: str

    def url(self, host: str, path: str) -> str:
        return f"{self.scheme}://{host}:{self.server.port}{path}"

    def origin(self, host: str) -> str:
        return self.url(host, "")

    def requests(self, path: str | None = None) -> list[tuple[str, str, int, str, int]]:
        """(method, path, status, content type, content length) of each request so far."""
        found = []
        for method, url_path, status, ctype, length in _ACCESS.findall(self.server.log()):
            if path is None or url_path == path:
                found.append(
                    (method, url_path, int(status), ctype, int(length) if length.isdigit() else 0)
                )
        return found

    def reports(self, document: str) -> list[tuple[str, str, str]]:
        """(directive, blocked, disposition) of each report the intake accepted whose
        document URL starts with ``document``."""
        return [
            (directive, blocked, disposition)
            for directive, blocked, url, disposition in _REPORT.findall(self.server.log())
            if url.startswith(document)
        ]


SiteFactory = Callable[..., Site]


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory, tls: TLS) -> Iterator[SiteFactory]:
    """Starts (once per configuration) a gunicorn-served ``browser_app``."""
    started: dict[tuple[object, ...], Site] = {}
    tmp = tmp_path_factory.mktemp("sites")
    with contextlib.ExitStack() as stack:

        def site(*, https: bool, port: int | None = None, **env: str) -> Site:
            key = (https, port, *sorted(env.items()))
            if key not in started:
                extra = ["--access-logfile", "-", "--access-logformat", ACCESS_FORMAT]
                if https:
                    extra += ["--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile)]
                server = stack.enter_context(
                    gunicorn(
                        APP, tmp, env=env, threads=4, worker_class="gthread", extra=extra, port=port
                    )
                )
                started[key] = Site(server, "https" if https else "http")
            return started[key]

        yield site
        for running in started.values():  # stop them all at once, then wait for each
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.server.process.pid, signal.SIGTERM)


def page_site(sites: SiteFactory, *, https: bool, mode: str) -> Site:
    """A page service: html preset, the report intake at INTAKE, headers in ``mode``."""
    return sites(
        https=https,
        BASTION_HEADERS=mode,
        BASTION_HEADERS_PRESET="html",
        BASTION_CSP_REPORT_PATH=INTAKE,
    )


def poll(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def settled(count: Callable[[], int], quiet: float = 2.0, timeout: float = 30.0) -> int:
    """``count()`` once it has not changed for ``quiet`` seconds (reports stopped coming)."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif last and time.monotonic() - since >= quiet:
            break
    return last


# --- CSP: nonces ------------------------------------------------------------------------
@pytest.mark.parametrize("https", [True, False], ids=["https", "http"])
def test_enforce_runs_nonced_scripts_and_blocks_the_others(
    browser: Browser, sites: SiteFactory, https: bool
) -> None:
    site = page_site(sites, https=https, mode="enforce")
    with browser.page() as page:
        page.goto(site.url("app.example.test", "/page"))
        assert poll(lambda: "strict-dynamic child" in page.evaluate("window.ran"))
        ran = page.evaluate("window.ran")
    # The nonce'd script and what it loaded ('strict-dynamic') ran; an inline script
    # without the nonce, a same-origin src without it and an inline handler did not.
    assert sorted(ran) == ["nonced", "strict-dynamic child"]


def test_observe_blocks_nothing(browser: Browser, sites: SiteFactory) -> None:
    site = page_site(sites, https=True, mode="observe")
    with browser.page() as page:
        page.goto(site.url("app.example.test", "/page"))
        assert poll(lambda: len(page.evaluate("window.ran")) == 5)
        ran = page.evaluate("window.ran")
    assert sorted(ran) == [
        "handler",
        "inline-without-nonce",
        "nonced",
        "src without nonce",
        "strict-dynamic child",
    ]


# --- CSP: violation reports --------------------------------------------------------------
MODES = [
    pytest.param(True, "enforce", id="https-enforce"),
    pytest.param(True, "observe", id="https-observe"),
    pytest.param(False, "enforce", id="http-enforce"),
    pytest.param(False, "observe", id="http-observe"),
]


# --- CSP: violation reports --------------------------------------------------------------
MODES = [
    pytest.param(True, "enforce", id="https-enforce"),
    pytest.param(True, "observe", id="https-observe"),
    pytest.param(False, "enforce", id="http-enforce"),
    pytest.param(False, "observe", id="http-observe"),
]
# Over HTTPS the Reporting API (report-to): batches; over http report-uri: one per report.
CONTENT_TYPE = {True: "application/reports+json", False: "application/csp-report"}
DISPOSITION = {"enforce": "enforce", "observe": "report"}


@pytest.mark.parametrize(("https", "mode"), MODES)
def test_violations_are_reported_and_accepted(
    browser: Browser, sites: SiteFactory, https: bool, mode: str
) -> None:
    site = page_site(sites, https=https, mode=mode)
    document = site.url("app.example.test", "/page")
    with browser.page() as page:
        page.goto(document)
        assert poll(lambda: len(site.reports(document)) >= 3), site.server.log()[-3000:]
    disposition = DISPOSITION[mode]
    # (Report-only, Chromium reports the inline handler twice.)
    assert set(site.reports(document)) == {
        ("script-src-attr", "inline", disposition),  # the onerror handler
        ("script-src-elem", "inline", disposition),  # the inline script without nonce
        ("script-src-elem", site.url("app.example.test", "/js/plain.js"), disposition),
    }
    posts = site.requests(INTAKE)
    assert posts, "no report reached the intake"
    assert {(method, status, ctype) for method, _, status, ctype, _ in posts} == {
        ("POST", 204, CONTENT_TYPE[https])
    }


@pytest.mark.parametrize(("https", "mode"), MODES)
def test_a_noisy_page_loses_no_report(
    browser: Browser, sites: SiteFactory, https: bool, mode: str
) -> None:
    """120 violations in one page view. Chromium keeps at most ~100 per page (it drops
    the rest itself); every report it sends must be accepted: over HTTPS as batches of
    tens of reports, over http as ~100 requests from one client within a minute."""
    site = page_site(sites, https=https, mode=mode)
    document = site.url("app.example.test", "/noisy?count=120")
    with browser.page() as page:
        page.goto(document)
        assert page.evaluate("window.ran.length") == (0 if mode == "enforce" else 120)
        assert settled(lambda: len(site.reports(document))) > 0

    posts = site.requests(INTAKE)
    refused = [post for post in posts if post[2] != 204]
    assert refused == [], f"{len(refused)} of {len(posts)} report requests refused"
    assert all(ctype == CONTENT_TYPE[https] for _, _, _, ctype, _ in posts)
    reports = site.reports(document)
    assert len(reports) >= 100
    assert {r[2] for r in reports} == {DISPOSITION[mode]}
    if https:
        # Batches (Chromium posted 100 of them in one ~80 kB body here), all accepted:
        # a batch Bastion refused would be retried, never split.
        assert len(posts) * 10 <= len(reports), f"not batched: {posts}"
        assert max(length for *_, length in posts) > 20 * 700, posts
        assert "dropped" not in site.server.log()


# --- CORS from a real page --------------------------------------------------------------
FETCH = """fetch(%s, {credentials: %s, ...%s}).then(
  async r => ({ok: true, status: r.status, body: await r.text(),
               requestId: r.headers.get("X-Request-Id"), internal: r.headers.get("X-Internal"),
               sawCookie: r.headers.get("X-Saw-Cookie")}),
  e => ({ok: false, error: String(e)}))"""


def fetch(
    page: Page, url: str, credentials: str = "same-origin", init: dict[str, object] | None = None
) -> dict[str, object]:
    """``fetch(url, {credentials, ...init})`` in the page: what the page could read."""
    return dict(
        page.evaluate(FETCH % (json.dumps(url), json.dumps(credentials), json.dumps(init or {})))
    )


BLOCKED = {"ok": False, "error": "TypeError: Failed to fetch"}


@dataclass
class CrossOrigin:
    pages: Site
    api: Site


@pytest.fixture(scope="module", params=[False, True], ids=["anonymous", "credentials"])
def cross_origin(request: pytest.FixtureRequest, sites: SiteFactory) -> CrossOrigin:
    """A page service on ``app.example.test`` (and ``evil.test``) whose pages may connect
    to an API service on ``api.example.test``, which allows the first origin only."""
    credentials: bool = request.param
    page_port, api_port = free_port(), free_port()
    api = sites(
        https=True,
        port=api_port,
        BASTION_HEADERS="enforce",
        BASTION_HEADERS_PRESET="api",
        BASTION_CORS="enforce",
        BASTION_CORS_ORIGINS=f"https://app.example.test:{page_port}",
        BASTION_CORS_EXPOSE_HEADERS="X-Request-Id,X-Saw-Cookie",
        BASTION_CORS_CREDENTIALS="true" if credentials else "false",
        BASTION_CORS_ALLOW_HEADERS="Content-Type",
        BASTION_CSP_REPORT_PATH=INTAKE,  # the intake for both services
    )
    pages = sites(
        https=True,
        port=page_port,
        BASTION_HEADERS="enforce",
        BASTION_HEADERS_PRESET="html",
        BASTION_CSP_CONNECT_SRC=f"https://api.example.test:{api_port}",
        BASTION_CSP_REPORT_URI=f"https://api.example.test:{api_port}{INTAKE}",
    )
    return CrossOrigin(pages, api)


def test_cors_allowed_origin_reads_only_exposed_headers(
    browser: Browser, cross_origin: CrossOrigin
) -> None:
    pages, api = cross_origin.pages, cross_origin.api
    with browser.page() as page:
        page.goto(pages.url("app.example.test", "/blank"))
        answer = fetch(page, api.url("api.example.test", "/api/data"))
    assert answer["ok"], answer
    assert answer["status"] == 200
    assert answer["body"] == '{"rows": 3}'
    assert answer["requestId"] == "req-42"  # listed in BASTION_CORS_EXPOSE_HEADERS
    assert answer["internal"] is None  # sent, but not exposed
    assert answer["sawCookie"] == "no"


def test_cors_other_origin_is_blocked(browser: Browser, cross_origin: CrossOrigin) -> None:
    pages, api = cross_origin.pages, cross_origin.api
    before = len(api.requests("/api/data"))
    with browser.page() as page:
        page.goto(pages.url("evil.test", "/blank"))
        answer = fetch(page, api.url("api.example.test", "/api/data"))
        console = " ".join(page.console() + page.log())
    assert answer == BLOCKED
    # The request was made (not stopped by the page's CSP): the browser refused the answer.
    assert len(api.requests("/api/data")) == before + 1
    assert "blocked by CORS policy" in console


def test_cors_credentials_as_configured(
    request: pytest.FixtureRequest, browser: Browser, cross_origin: CrossOrigin
) -> None:
    credentials = "credentials" in request.node.callspec.id
    pages, api = cross_origin.pages, cross_origin.api
    with browser.page() as page:
        page.goto(api.url("api.example.test", "/api/login"))  # the API's session cookie
        page.goto(pages.url("app.example.test", "/blank"))
        anonymous = fetch(page, api.url("api.example.test", "/api/data"), "omit")
        with_cookie = fetch(page, api.url("api.example.test", "/api/data"), "include")
    assert anonymous["ok"] and anonymous["sawCookie"] == "no", anonymous
    if credentials:
        assert with_cookie["ok"], with_cookie
        assert with_cookie["sawCookie"] == "yes"
    else:
        # Sent with the cookie, but without Access-Control-Allow-Credentials the page
        # may not read the answer.
        assert with_cookie == BLOCKED


def test_cors_preflight_from_a_real_page(browser: Browser, cross_origin: CrossOrigin) -> None:
    """A JSON POST is preflighted: Bastion answers the OPTIONS itself, and the POST
    reaches the app only when origin, method and headers are all allowed."""
    pages, api = cross_origin.pages, cross_origin.api
    data = api.url("api.example.test", "/api/data")
    json_post: dict[str, object] = {
        "method": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": "{}",
    }
    unlisted: dict[str, object] = {"method": "POST", "headers": {"X-Unlisted": "1"}}
    before = api.requests("/api/data")
    with browser.page() as page:
        page.goto(pages.url("app.example.test", "/blank"))
        allowed = fetch(page, data, init=json_post)
        refused_header = fetch(page, data, init=unlisted)
        page.goto(pages.url("evil.test", "/blank"))
        refused_origin = fetch(page, data, init=json_post)
    assert allowed["ok"] and allowed["status"] == 200, allowed
    assert refused_header == BLOCKED
    assert refused_origin == BLOCKED
    seen = [(method, status) for method, _, status, _, _ in api.requests("/api/data")]
    assert seen[len(before) :] == [
        ("OPTIONS", 204),
        ("POST", 200),
        ("OPTIONS", 403),
        ("OPTIONS", 403),
    ]


def test_reports_to_an_intake_on_another_origin(
    browser: Browser, cross_origin: CrossOrigin
) -> None:
    """BASTION_CSP_REPORT_URI names another service's intake: Chromium preflights the
    cross-origin application/reports+json POST, and the intake accepts it."""
    pages, api = cross_origin.pages, cross_origin.api
    document = pages.url("app.example.test", "/page")
    with browser.page() as page:
        page.goto(document)
        assert poll(lambda: len(api.reports(document)) >= 3), api.server.log()[-3000:]
    assert {directive for directive, _, _ in api.reports(document)} == {
        "script-src-attr",
        "script-src-elem",
    }
    answers = {(method, status, ctype) for method, _, status, ctype, _ in api.requests(INTAKE)}
    assert ("OPTIONS", 204, "-") in answers  # the preflight, answered by the intake
    assert ("POST", 204, "application/reports+json") in answers
    assert {status for _, status, _ in answers} == {204}
