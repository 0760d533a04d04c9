"""TLS-verification guard against a real HTTPS server on loopback.

The server's certificate is issued in the test by a throwaway CA (trustme), so it is
self-signed from requests' point of view until that CA is trusted.
"""

from __future__ import annotations

import logging
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
import urllib3
from urllib3.exceptions import InsecureRequestWarning

from bastion.instrumentation.http import InsecureTLSError
from bastion.settings import Mode, Settings
from tests.apps.http_harness import guarded
from tests.apps.http_servers import AppServer

ENFORCE = Settings.from_env({}, http=Mode.OFF, tls=Mode.ENFORCE)
OBSERVE = Settings.from_env({}, http=Mode.OFF, tls=Mode.OBSERVE)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_path(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="module")
def https(ca: trustme.CA) -> Iterator[AppServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with AppServer(tls=context) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def test_the_certificate_is_untrusted_without_the_ca(https: AppServer) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{https.url}/ok", timeout=5)


def test_verify_false_is_refused_before_connecting(https: AppServer) -> None:
    before = https.connections
    with guarded(ENFORCE) as counters, pytest.raises(InsecureTLSError) as caught:
        requests.get(f"{https.url}/ok", verify=False, timeout=5)  # the refused line
    error = caught.value
    assert isinstance(error, requests.exceptions.SSLError)  # existing handlers catch it
    assert error.host == "127.0.0.1"
    assert error.call_site.startswith(f"{__file__}:")
    assert "REQUESTS_CA_BUNDLE" in str(error)
    assert https.connections == before  # not a byte sent
    assert (
        counters.value(
            "bastion.tls.insecure", bastion__decision="refused", server__address="127.0.0.1"
        )
        == 1
    )


def test_session_verify_false_is_refused_too(https: AppServer) -> None:
    session = requests.Session()
    session.verify = False  # the tracker's backfill script
    with guarded(ENFORCE):
        with pytest.raises(InsecureTLSError):
            session.get(f"{https.url}/ok", timeout=5)
        prepared = requests.Request("GET", f"{https.url}/ok").prepare()
        with pytest.raises(InsecureTLSError):
            session.send(prepared, timeout=5)


def test_verify_false_is_recorded_with_its_call_site_in_observe(
    https: AppServer, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        guarded(OBSERVE) as counters,
        caplog.at_level(logging.WARNING, logger="bastion.instrumentation.http"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", InsecureRequestWarning)
        for _ in range(3):
            response = requests.get(f"{https.url}/ok", verify=False, timeout=5)
            assert response.text == "ok"
    assert (
        counters.value(
            "bastion.tls.insecure", bastion__decision="observed", server__address="127.0.0.1"
        )
        == 3
    )
    messages = [r.getMessage() for r in caplog.records if "verify=False" in r.getMessage()]
    assert len(messages) == 1  # once per call site
    assert f"{__file__}:" in messages[0]
    assert "observed" in messages[0]


def test_a_trusted_ca_bundle_passes_in_enforce(
    https: AppServer, ca_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with guarded(ENFORCE) as counters:
        assert requests.get(f"{https.url}/ok", verify=str(ca_path), timeout=5).text == "ok"
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_path))
        assert requests.get(f"{https.url}/ok", timeout=5).text == "ok"
    assert counters.points("bastion.tls.insecure") == {}


def test_allow_listed_host_may_skip_verification(https: AppServer) -> None:
    allowing = ENFORCE.replace(tls_allow_insecure_hosts=("localhost",))
    with guarded(allowing) as counters, warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        url = f"https://localhost:{https.port}/ok"
        assert requests.get(url, verify=False, timeout=5).text == "ok"
        with pytest.raises(InsecureTLSError):  # the same server by another name is not listed
            requests.get(f"{https.url}/ok", verify=False, timeout=5)
    assert counters.value("bastion.tls.insecure", bastion__decision="allowed") == 1
    assert counters.value("bastion.tls.insecure", bastion__decision="refused") == 1


def test_plain_http_is_not_judged() -> None:
    with AppServer() as server, guarded(ENFORCE) as counters:
        assert requests.get(f"{server.url}/ok", verify=False, timeout=5).text == "ok"
    assert counters.points("bastion.tls.insecure") == {}


def _insecure_warning_shown() -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("probe", InsecureRequestWarning, stacklevel=1)
    return len(caught) == 1


@pytest.mark.parametrize(
    "silence",
    [
        lambda: urllib3.disable_warnings(),
        lambda: urllib3.disable_warnings(InsecureRequestWarning),
        lambda: requests.packages.urllib3.disable_warnings(InsecureRequestWarning),  # type: ignore[attr-defined]
    ],
    ids=["all", "insecure", "via-requests"],
)
def test_silencing_the_warning_is_refused_in_enforce(
    silence: object, caplog: pytest.LogCaptureFixture
) -> None:
    with guarded(ENFORCE), warnings.catch_warnings():
        warnings.simplefilter("default")
        with caplog.at_level(logging.WARNING, logger="bastion.instrumentation.http"):
            silence()  # type: ignore[operator]
        assert _insecure_warning_shown()
    refused = [r.getMessage() for r in caplog.records if "refused to silence" in r.getMessage()]
    assert len(refused) == 1 and f"{__file__}:" in refused[0]


def test_silencing_the_warning_is_recorded_in_observe(caplog: pytest.LogCaptureFixture) -> None:
    with guarded(OBSERVE), warnings.catch_warnings():
        warnings.simplefilter("default")
        with caplog.at_level(logging.WARNING, logger="bastion.instrumentation.http"):
            urllib3.disable_warnings()
        assert not _insecure_warning_shown()  # observe changes nothing
    logged = [r.getMessage() for r in caplog.records if "silenced" in r.getMessage()]
    assert len(logged) == 1 and f"{__file__}:" in logged[0]


def test_disabling_other_warning_categories_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    with guarded(ENFORCE), warnings.catch_warnings():
        warnings.simplefilter("default")
        with caplog.at_level(logging.WARNING, logger="bastion.instrumentation.http"):
            urllib3.disable_warnings(urllib3.exceptions.SystemTimeWarning)
        assert _insecure_warning_shown()
    assert not [r for r in caplog.records if "InsecureRequestWarning" in r.getMessage()]


def test_instrumenting_after_the_warning_was_silenced_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        with (
            caplog.at_level(logging.WARNING, logger="bastion.instrumentation.http"),
            guarded(OBSERVE),
        ):
            pass
    assert any("already silenced" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("legacy.internal", True),
        ("LEGACY.internal.", True),
        ("api.partner.example", True),
        ("a.b.partner.example", True),
        ("partner.example", False),  # *.x covers subdomains only
        ("evilpartner.example", False),
        ("10.0.0.7", True),
        ("::1", True),
        ("other.internal", False),
    ],
)
def test_allow_list_matching(host: str, allowed: bool) -> None:
    from bastion.instrumentation.http._tls import HostAllowList

    hosts = HostAllowList(["legacy.internal", "*.partner.example", "10.0.0.7", "[::1]"])
    assert hosts.allows(host) is allowed


@pytest.mark.slow
def test_a_slow_drip_over_tls_is_cut_at_the_deadline(ca: trustme.CA, ca_path: Path) -> None:
    import time

    from bastion.instrumentation.http import DeadlineTimeout
    from bastion.middleware import deadline
    from tests.apps.http_servers import DripServer

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    enforce_both = ENFORCE.replace(http=Mode.ENFORCE)
    with (
        DripServer(interval=0.5, tls=context) as drip,
        guarded(enforce_both),
        deadline.scope(1.0),
    ):
        start = time.monotonic()
        with pytest.raises(DeadlineTimeout):
            requests.get(drip.url, verify=str(ca_path), timeout=5)
        took = time.monotonic() - start
    assert 0.9 <= took <= 1.1
