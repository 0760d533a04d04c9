"""Issue 2's acceptance through ``bastion scan``: a Flask service wrapped by
``protect()`` under gunicorn reaches A+ (>= 100) with the ``api`` preset on a JSON
endpoint and with the ``html`` preset on a page, both over real HTTPS (trustme
certificate) and behind a trusted proxy (X-Forwarded-Proto from BASTION_TRUSTED_PROXIES).
A failure message lists the rows that lost points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.cli_helpers import as_json, bastion
from tests.servers import gunicorn, uvicorn

APP = "tests.apps.cli_protected:app"
# gunicorn itself believes X-Forwarded-Proto from 127.0.0.1 by default (and then sets
# wsgi.url_scheme to https): trust no one at gunicorn's level, so that HSTS depends on
# Bastion's own BASTION_TRUSTED_PROXIES decision.
NO_GUNICORN_TRUST = ["--forwarded-allow-ips="]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = {"ca": directory / "ca.pem", "cert": directory / "c.pem", "key": directory / "k.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    return paths


def lost_points(report: dict[str, Any]) -> list[str]:
    return [
        f"{t['name']}: {t['result']} ({t['modifier']:+d})"
        for t in report["tests"]
        if t["modifier"] < 0 or not t["passed"]
    ]


PRESETS = [("api", "/api/matches"), ("html", "/page")]


@pytest.mark.parametrize(("preset", "path"), PRESETS)
def test_preset_reaches_a_plus_behind_a_trusted_proxy(
    tmp_path: Path, preset: str, path: str
) -> None:
    env = {"BASTION_HEADERS_PRESET": preset, "BASTION_TRUSTED_PROXIES": "127.0.0.1/32"}
    with gunicorn(APP, tmp_path, env=env, extra=NO_GUNICORN_TRUST) as server:
        result = bastion("scan", server.url + path, "--assume-https", "--json")
    report = as_json(result)
    assert report["score"] >= 100, lost_points(report)
    assert report["grade"] == "A+"
    assert result.returncode == 0
    rows = {t["name"]: t["result"] for t in report["tests"]}
    assert rows["strict-transport-security"] == "hsts-implemented-max-age-at-least-six-months"


@pytest.mark.parametrize(("preset", "path"), PRESETS)
def test_preset_reaches_a_plus_over_https(
    tmp_path: Path, tls: dict[str, Path], preset: str, path: str
) -> None:
    extra = ["--certfile", str(tls["cert"]), "--keyfile", str(tls["key"])]
    env = {"BASTION_HEADERS_PRESET": preset}
    with gunicorn(APP, tmp_path, env=env, extra=extra) as server:
        url = f"https://127.0.0.1:{server.port}{path}"
        result = bastion("scan", url, "--ca-bundle", str(tls["ca"]), "--json", "--min-score", "100")
    report = as_json(result)
    assert report["score"] >= 100, lost_points(report)
    assert result.returncode == 0


def test_forwarded_proto_from_an_untrusted_peer_gets_no_hsts(tmp_path: Path) -> None:
    # Same scan, but 127.0.0.1 is not a trusted proxy: the header is ignored, no HSTS,
    # and the grade says so.
    env = {"BASTION_HEADERS_PRESET": "api"}
    with gunicorn(APP, tmp_path, env=env, extra=NO_GUNICORN_TRUST) as server:
        report = as_json(bastion("scan", server.url + "/api/matches", "--assume-https", "--json"))
    rows = {t["name"]: t["result"] for t in report["tests"]}
    assert rows["strict-transport-security"] == "hsts-not-implemented"
    assert report["score"] < 100


@pytest.mark.parametrize(("preset", "path"), PRESETS)
def test_asgi_preset_reaches_a_plus_behind_a_trusted_proxy(
    tmp_path: Path, preset: str, path: str
) -> None:
    env = {"BASTION_HEADERS_PRESET": preset, "BASTION_TRUSTED_PROXIES": "127.0.0.1/32"}
    # uvicorn's own proxy-header handling off: the HTTPS decision is Bastion's.
    app = "tests.apps.cli_protected_asgi:app"
    with uvicorn(app, tmp_path, env=env, extra=["--no-proxy-headers"]) as server:
        result = bastion("scan", server.url + path, "--assume-https", "--json")
    report = as_json(result)
    assert report["score"] >= 100, lost_points(report)
    assert result.returncode == 0
