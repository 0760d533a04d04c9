"""Bastion as a real browser meets it: Debian's Chromium, headless, over DevTools.

Pages come from ``tests/apps/browser_app.py`` under gunicorn on loopback, over plain
http and over real HTTPS (a throw-away trustme CA whose certificate Chromium accepts
by its SPKI hash). Chromium resolves ``*.test`` to 127.0.0.1, so ``app.test`` and
``api.test`` are distinct, non-loopback origins (plain http is then not a secure
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
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.cdp import Browser, Page, chromium, chromium_path
from tests.servers import Server, gunicorn

pytestmark = pytest.mark.slow

APP = "tests.apps.browser_app:app"
INTAKE = "/csp-reports"
ACCESS_FORMAT = "access %(m)s %(U)s %(s)s [%({content-type}i)s] [%({content-length}i)s]"
_ACCESS = re.compile(r"^access (\S+) (\S+) (\d{3}) \[([^\]]*)\] \[([^\]]*)\]$", re.M)
_REPORT = re.compile(r"^bastion\.csp WARNING csp-violation: (\S+) blocked (\S+) on (\S+) \((\w+)\)$", re.M)


# --- the browser and TLS --------------------------------------------------------------
@dataclass(frozen=True)
class TLS:
    certfile: Path
    keyfile: Path
    spki: str  # base64 SHA-256 of the leaf's SubjectPublicKeyInfo


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    folder = tmp_path_factory.mktemp("tls")
    cert = trustme.CA().issue_cert("app.test", "api.test", "evil.test")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return TLS(certfile, keyfile, base64.b64encode(hashlib.sha256(spki).digest()).decode())


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory, tls: TLS) -> Iterator[Browser]:
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
                found.append((method, url_path, int(status), ctype, int(length or 0)))
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

        def site(*, https: bool, **env: str) -> Site:
            key = (https, *sorted(env.items()))
            if key not in started:
                extra = ["--access-logfile", "-", "--access-logformat", ACCESS_FORMAT]
                if https:
                    extra += ["--certfile", str(tls.certfile), "--keyfile", str(tls.keyfile)]
                server = stack.enter_context(
                    gunicorn(APP, tmp, env=env, threads=4, worker_class="gthread", extra=extra)
                )
                started[key] = Site(server, "https" if https else "http")
            return started[key]

        yield site


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


# --- CSP: nonces ------------------------------------------------------------------------
@pytest.mark.parametrize("https", [True, False], ids=["https", "http"])
def test_enforce_runs_nonced_scripts_and_blocks_the_others(
    browser: Browser, sites: SiteFactory, https: bool
) -> None:
    site = page_site(sites, https=https, mode="enforce")
    with browser.page() as page:
        page.goto(site.url("app.test", "/page"))
        assert poll(lambda: "strict-dynamic child" in page.evaluate("window.ran"))
        ran = page.evaluate("window.ran")
    # The nonce'd script and what it loaded ('strict-dynamic') ran; an inline script
    # without the nonce, a same-origin src without it and an inline handler did not.
    assert sorted(ran) == ["nonced", "strict-dynamic child"]


def test_observe_blocks_nothing(browser: Browser, sites: SiteFactory) -> None:
    site = page_site(sites, https=True, mode="observe")
    with browser.page() as page:
        page.goto(site.url("app.test", "/page"))
        assert poll(lambda: len(page.evaluate("window.ran")) == 5)
        ran = page.evaluate("window.ran")
    assert sorted(ran) == [
        "handler",
        "inline-without-nonce",
        "nonced",
        "src without nonce",
        "strict-dynamic child",
    ]
