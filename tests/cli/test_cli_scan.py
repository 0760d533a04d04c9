"""``bastion scan`` end to end: the console script against real gunicorn servers,
over HTTPS with a locally issued certificate (trustme) and over plain HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
import trustme

from tests.cli_helpers import as_json, bastion, no_traceback
from tests.servers import Server, free_port, gunicorn

APP = "tests.apps.cli_headers:app"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": directory / "ca.pem",
        "cert": directory / "cert.pem",
        "key": directory / "key.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


def https_server(
    tmp: Path, tls: dict[str, Path], env: dict[str, str]
) -> AbstractContextManager[Server]:
    extra = ["--certfile", str(tls["cert"]), "--keyfile", str(tls["key"])]
    return gunicorn(APP, tmp, env=env, extra=extra)


def https_url(server: Server, path: str = "/") -> str:
    return f"https://127.0.0.1:{server.port}{path}"


@pytest.fixture(scope="module")
def helmet_https(
    tmp_path_factory: pytest.TempPathFactory, tls: dict[str, Path]
) -> Iterator[Server]:
    with https_server(tmp_path_factory.mktemp("helmet"), tls, {"CLI_HEADER_SET": "helmet"}) as s:
        yield s


def test_helmet_over_https_with_ca_bundle_scores_120(
    helmet_https: Server, tls: dict[str, Path]
) -> None:
    result = bastion("scan", https_url(helmet_https), "--ca-bundle", str(tls["ca"]), "--json")
    report = as_json(result)
    assert result.returncode == 0, result.stderr
    assert (report["score"], report["grade"]) == (120, "A+")
    assert report["reference"] == "@mdn/mdn-http-observatory 1.4.8"
    rows = {t["name"]: t for t in report["tests"]}
    assert len(rows) == 10
    assert rows["strict-transport-security"]["result"] == (
        "hsts-implemented-max-age-at-least-six-months"
    )
    # Plain HTTP on the TLS port gets no HTTP answer: nothing to redirect.
    assert rows["redirection"]["result"] == "redirection-not-needed-no-http"
    assert rows["cross-origin-resource-sharing"]["result"] == (
        "cross-origin-resource-sharing-not-implemented"
    )
    assert rows["x-frame-options"]["modifier"] == 5


def test_text_output_has_grade_and_one_row_per_test(
    helmet_https: Server, tls: dict[str, Path]
) -> None:
    result = bastion("scan", https_url(helmet_https), "--ca-bundle", str(tls["ca"]))
    no_traceback(result)
    assert result.returncode == 0
    assert "A+" in result.stdout and "120/100" in result.stdout
    assert "@mdn/mdn-http-observatory 1.4.8" in result.stdout
    for name in ("content-security-policy", "cross-origin-resource-policy", "redirection"):
        assert name in result.stdout
    assert "+10" in result.stdout  # the CORP row shows its modifier


def test_insecure_skips_verification_and_hsts_grades_invalid_cert(
    helmet_https: Server,
) -> None:
    result = bastion("scan", https_url(helmet_https), "--insecure", "--json", "--min-score", "100")
    report = as_json(result)
    rows = {t["name"]: t for t in report["tests"]}
    assert rows["strict-transport-security"]["result"] == "hsts-invalid-cert"
    # -20 takes the uncurved score under 90: no bonus counts, 80.
    assert report["score"] == 80
    assert result.returncode == 1  # under --min-score


def test_untrusted_certificate_is_a_clear_tls_error(helmet_https: Server) -> None:
    result = bastion("scan", https_url(helmet_https))
    no_traceback(result)
    assert result.returncode == 3
    assert "TLS failed" in result.stderr and "--ca-bundle" in result.stderr


def test_min_score_passes_and_fails(helmet_https: Server, tls: dict[str, Path]) -> None:
    ca = str(tls["ca"])
    assert (
        bastion("scan", https_url(helmet_https), "--ca-bundle", ca, "--min-score", "120").returncode
        == 0
    )
    failing = bastion("scan", https_url(helmet_https), "--ca-bundle", ca, "--min-score", "121")
    assert failing.returncode == 1
    assert "below --min-score 121" in failing.stderr


def test_origin_reflected_with_credentials_scores_50(tmp_path: Path, tls: dict[str, Path]) -> None:
    env = {"CLI_HEADER_SET": "helmet", "CLI_REFLECT_CORS": "1"}
    with https_server(tmp_path, tls, env) as server:
        result = bastion(
            "scan",
            https_url(server),
            "--ca-bundle",
            str(tls["ca"]),
            "--origin",
            "https://evil.example",
            "--json",
        )
    report = as_json(result)
    rows = {t["name"]: t for t in report["tests"]}
    assert rows["cross-origin-resource-sharing"]["result"].endswith("universal-access")
    assert rows["cross-origin-resource-sharing"]["modifier"] == -50
    assert (report["score"], report["grade"]) == (50, "C")


def test_plain_http_without_assume_https_cannot_have_hsts(tmp_path: Path) -> None:
    with gunicorn(APP, tmp_path, env={"CLI_HEADER_SET": "helmet"}) as server:
        plain = as_json(bastion("scan", server.url + "/", "--json"))
        assumed = as_json(bastion("scan", server.url + "/", "--json", "--assume-https"))
    rows = {t["name"]: t["result"] for t in plain["tests"]}
    assert rows["strict-transport-security"] == "hsts-not-implemented-no-https"
    assert rows["redirection"] == "redirection-missing"
    assert plain["score"] == 60  # two -20s: no bonus
    assert plain["bonuses_counted"] is False
    assert assumed["score"] == 120 and assumed["assumed_https"] is True


def test_django_defaults_score_55_from_a_real_server(tmp_path: Path) -> None:
    with gunicorn(APP, tmp_path, env={"CLI_HEADER_SET": "django"}) as server:
        report = as_json(bastion("scan", server.url + "/", "--json", "--assume-https"))
    assert (report["score"], report["grade"]) == (55, "C")


def test_non_2xx_answer_is_refused(tmp_path: Path) -> None:
    with gunicorn(APP, tmp_path) as server:
        result = bastion("scan", server.url + "/missing", "--json")
    assert result.returncode == 3
    assert "answered 404" in as_json(result)["error"]


def test_unreachable_url_is_a_clear_error() -> None:
    result = bastion("scan", f"http://127.0.0.1:{free_port()}/")
    no_traceback(result)
    assert result.returncode == 3
    assert "cannot connect" in result.stderr


@pytest.fixture
def not_http() -> Iterator[int]:
    """A TCP server that answers like an SSH daemon, not HTTP."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    listener.close()


def test_non_http_answer_is_a_clear_error(not_http: int) -> None:
    result = bastion("scan", f"http://127.0.0.1:{not_http}/", "--timeout", "3")
    no_traceback(result)
    assert result.returncode == 3
    assert "not HTTP" in result.stderr


def test_usage_errors_exit_2(tls: dict[str, Path]) -> None:
    assert bastion("scan", "ftp://example.invalid/").returncode == 2
    both = bastion("scan", "https://127.0.0.1/", "--insecure", "--ca-bundle", str(tls["ca"]))
    assert both.returncode == 2 and "exclude each other" in both.stderr
    missing = bastion("scan", "https://127.0.0.1/", "--ca-bundle", "/nonexistent.pem")
    assert missing.returncode == 2


def test_https_url_on_a_plain_http_port_says_so(tmp_path: Path) -> None:
    with gunicorn(APP, tmp_path) as server:
        result = bastion("scan", f"https://127.0.0.1:{server.port}/")
    no_traceback(result)
    assert result.returncode == 3
    assert "does not speak TLS" in result.stderr


def test_redirect_chain_and_cookies_on_the_way(tmp_path: Path) -> None:
    with gunicorn(APP, tmp_path, env={"CLI_HEADER_SET": "helmet"}) as server:
        report = as_json(bastion("scan", server.url + "/old", "--json"))
    rows = {t["name"]: t for t in report["tests"]}
    assert rows["redirection"]["result"] == "redirection-not-to-https"
    assert rows["redirection"]["data"] == [server.url + "/old", server.url + "/"]
    # The session cookie set by the redirect counts; no HSTS over HTTP: -40.
    assert rows["cookies"]["result"] == "cookies-session-without-secure-flag"


@contextmanager
def raw_http(answer: bytes) -> Iterator[str]:
    """A loopback server that sends ``answer`` verbatim to every request."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                received = b""
                while b"\r\n\r\n" not in received:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    received += chunk
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        listener.close()


ODD_HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/html\r\n"
    b"Strict-Transport-Security: max-age=\xc2\xb2\r\n"  # a superscript two, in UTF-8
    b"X-Frame-Options: \r\n"
    b"Content-Security-Policy: frame-ancestors\r\n"
    b"Set-Cookie: __Host-sess=\xff\xfe; Path=/app; Secure\r\n"
    b"Set-Cookie: id=1; SameSite=Lax=1; Domain=com\r\n"
    b"Referrer-Policy: \xe9\r\n"
    b"Content-Length: 47\r\n"
    b"Connection: close\r\n\r\n"
    b"<script src='//cdn.other.example/a.js'></script>"
)


def test_odd_header_bytes_are_graded_not_a_traceback() -> None:
    with raw_http(ODD_HEADERS) as url:
        result = bastion("scan", url, "--assume-https", "--json")
        text = bastion("scan", url, "--assume-https")
    no_traceback(text)
    report = as_json(result)
    rows = {t["name"]: t["result"] for t in report["tests"]}
    assert rows["strict-transport-security"] == "hsts-header-invalid"  # NaN: deliberate
    assert rows["x-frame-options"] == "x-frame-options-implemented-via-csp"
    assert rows["cookies"] == "cookies-not-found"  # both dropped by the jar
    assert rows["referrer-policy"] == "referrer-policy-header-invalid"
    assert text.returncode == 0 and report["grade"] in text.stdout


def test_a_redirect_to_an_invalid_url_is_one_line() -> None:
    answer = b"HTTP/1.1 302 Found\r\nLocation: http://[::1\r\nContent-Length: 0\r\n\r\n"
    with raw_http(answer) as url:
        result = bastion("scan", url)
    no_traceback(result)
    assert result.returncode == 3
    assert "error:" in result.stderr and len(result.stderr.strip().splitlines()) <= 2
