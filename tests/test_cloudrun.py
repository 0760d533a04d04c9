"""Cloud Run as the runbook deploys it: HSTS behind Google's front end
(``BASTION_TRUSTED_PROXIES=cloudrun``) and the packaged gunicorn config
(``gunicorn -c python:bastion.instrumentation.gunicorn_conf``, binding ``0.0.0.0:$PORT``).

The front end is simulated by :mod:`tests.gfe` (TLS terminated on loopback, requests
forwarded over plain HTTP with the headers the GFE sets); the app runs under real
gunicorn with the env of a rendered stage-2 manifest, and ``bastion scan`` grades it.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import runpy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from bastion.instrumentation import gunicorn_conf
from bastion.instrumentation.gunicorn_conf import LOCAL_BIND, bind_address
from bastion.instrumentation.gunicorn_hooks import worker_abort, worker_exit
from bastion.instrumentation.jsonl import span_records
from bastion.middleware.proxies import PROXY_PRESETS, Hop, TrustedProxies
from bastion.settings import Settings, SettingsError
from tests.cli_helpers import as_json, bastion
from tests.gfe import FRONT_END_ADDRESS, front_end
from tests.servers import BIN, ROOT, Server, _run, free_port

DEPLOY = ROOT / "deploy"
CONFIG = "python:bastion.instrumentation.gunicorn_conf"
APP = "tests.apps.cli_protected:app"
PRESETS = [("api", "/api/matches"), ("html", "/page")]


# --- BASTION_TRUSTED_PROXIES=cloudrun ---------------------------------------------------


def test_cloudrun_stands_for_the_front_ends_link_local_range() -> None:
    link_local = ipaddress.ip_network("169.254.0.0/16")
    assert PROXY_PRESETS["cloudrun"] == (link_local,)
    settings = Settings.from_env({"BASTION_TRUSTED_PROXIES": "CloudRun, 203.0.113.10"})
    assert settings.trusted_proxies == (link_local, ipaddress.ip_network("203.0.113.10/32"))
    with pytest.raises(SettingsError, match=r"BASTION_TRUSTED_PROXIES.*named front ends cloudrun"):
        Settings.from_env({"BASTION_TRUSTED_PROXIES": "cloud-run"})


def test_cloudrun_believes_the_front_end_only() -> None:
    proxies = TrustedProxies(PROXY_PRESETS["cloudrun"])
    # The GFE appended the client's address after whatever the client sent.
    forged_then_real = "198.51.100.66, 203.0.113.7"
    assert proxies.resolve(
        "169.254.1.1", x_forwarded_for=forged_then_real, x_forwarded_proto="https"
    ) == Hop("203.0.113.7", "https", True)
    # A sidecar (loopback) or anyone else connecting directly: nothing forwarded believed.
    for peer in ("127.0.0.1", "203.0.113.7", "10.8.0.3"):
        hop = proxies.resolve(peer, x_forwarded_for=forged_then_real, x_forwarded_proto="https")
        assert hop == Hop(peer, None, False)


def _manifests() -> list[Path]:
    return sorted(DEPLOY.glob("cloudrun/stage-*/*.yaml"))


def _app_container(path: Path) -> dict[str, Any]:
    manifest = yaml.safe_load(path.read_text())
    containers = manifest["spec"]["template"]["spec"]["containers"]
    (app,) = [c for c in containers if c["name"] == "app"]
    return dict(app)


def test_every_manifest_trusts_the_front_end_and_runs_the_packaged_config() -> None:
    paths = _manifests()
    assert len(paths) == 30  # six services x five stages
    for path in paths:
        app = _app_container(path)
        env = {e["name"]: e["value"] for e in app["env"]}
        assert env["BASTION_TRUSTED_PROXIES"] == "cloudrun", path
        assert env.get("BASTION_PROXY_HEADERS", "x-forwarded") == "x-forwarded", path
        assert app["command"] == ["gunicorn"]
        assert app["args"][:2] == ["--config", CONFIG], path
        assert app["ports"] == [{"name": "http1", "containerPort": 8080}]


# --- HSTS and A+ behind the (simulated) front end ---------------------------------------


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


def runbook_env(stage: int, service: str, preset: str) -> dict[str, str]:
    """The app container's env from the rendered manifest, as Cloud Run would set it,
    with the simulated front end's loopback address trusted beside ``cloudrun`` (no test
    may bind 169.254.0.0/16), and no OTLP endpoint (no Collector here)."""
    app = _app_container(DEPLOY / f"cloudrun/stage-{stage}/{service}.yaml")
    env = {e["name"]: e["value"] for e in app["env"] if not e["name"].startswith("OTEL_")}
    assert env["BASTION_TRUSTED_PROXIES"] == "cloudrun"
    env["BASTION_TRUSTED_PROXIES"] = f"cloudrun,{FRONT_END_ADDRESS}"
    env["BASTION_HEADERS_PRESET"] = preset
    return env


@contextlib.contextmanager
def cloud_run_instance(app: str, tmp: Path, env: dict[str, str]) -> Iterator[Server]:
    """``gunicorn -c python:bastion.instrumentation.gunicorn_conf app`` with ``PORT`` set, as
    the manifests start it (no ``--bind``)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "OTEL_"))}
    argv = [str(BIN / "gunicorn"), "-c", CONFIG, app]
    with _run(argv, port, {**clean, **env, "PORT": str(port)}, tmp) as server:
        yield server


def lost_points(report: dict[str, Any]) -> list[str]:
    return [
        f"{t['name']}: {t['result']} ({t['modifier']:+d})"
        for t in report["tests"]
        if t["modifier"] < 0 or not t["passed"]
    ]


def raw_get(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.parametrize(("preset", "path"), PRESETS)
def test_runbook_settings_reach_a_plus_behind_the_front_end(
    tmp_path: Path, tls: dict[str, Path], preset: str, path: str
) -> None:
    env = runbook_env(2, "prediction-worker", preset)
    with (
        cloud_run_instance(APP, tmp_path, env) as server,
        front_end(server.port, tls["cert"], tls["key"]) as url,
    ):
        result = bastion("scan", url + path, "--ca-bundle", str(tls["ca"]), "--json")
        # A client connecting to the container directly, forging the front end's header.
        forged = raw_get(server.port, path, {"X-Forwarded-Proto": "https"})
        direct_scan = bastion("scan", server.url + path, "--assume-https", "--json")
    report = as_json(result)
    assert report["grade"] == "A+", lost_points(report)
    assert report["score"] >= 100, lost_points(report)
    rows = {t["name"]: t["result"] for t in report["tests"]}
    assert rows["strict-transport-security"] == "hsts-implemented-max-age-at-least-six-months"

    assert forged.status == 200
    assert forged.getheader("Strict-Transport-Security") is None
    assert forged.getheader("Content-Security-Policy") is not None  # stage 2: enforced
    direct = as_json(direct_scan)
    rows = {t["name"]: t["result"] for t in direct["tests"]}
    assert rows["strict-transport-security"] == "hsts-not-implemented"
    assert direct["score"] < 100


def test_without_the_setting_https_clients_get_no_hsts(
    tmp_path: Path, tls: dict[str, Path]
) -> None:
    # The runbook's settings minus BASTION_TRUSTED_PROXIES: the front end is not believed.
    env = runbook_env(2, "prediction-worker", "api")
    del env["BASTION_TRUSTED_PROXIES"]
    with (
        cloud_run_instance(APP, tmp_path, env) as server,
        front_end(server.port, tls["cert"], tls["key"]) as url,
    ):
        report = as_json(
            bastion("scan", url + "/api/matches", "--ca-bundle", str(tls["ca"]), "--json")
        )
    rows = {t["name"]: t["result"] for t in report["tests"]}
    assert rows["strict-transport-security"] == "hsts-not-implemented"
    assert report["grade"] != "A+"


# --- bastion.instrumentation.gunicorn_conf ------------------------------------------------------


def test_bind_address_follows_port() -> None:
    assert bind_address({}) == LOCAL_BIND == "127.0.0.1:8080"
    assert bind_address({"PORT": ""}) == LOCAL_BIND
    assert bind_address({"PORT": "8080"}) == "0.0.0.0:8080"
    assert bind_address({"PORT": " 9000 "}) == "0.0.0.0:9000"
    for bad in ("http", "0", "65536", "-1", "80.5"):
        with pytest.raises(ValueError, match=r"^PORT="):
            bind_address({"PORT": bad})


def test_config_keeps_the_timeout_order_and_the_telemetry_hooks() -> None:
    config = vars(gunicorn_conf)
    assert config["timeout"] == 30  # default 25 s budget + 5 s
    assert config["graceful_timeout"] == 8
    assert config["worker_exit"] is worker_exit
    assert config["worker_abort"] is worker_abort
    assert config["forwarded_allow_ips"] == ""
    # deploy/gunicorn.conf.py is the same configuration, for a checkout.
    legacy = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    for name in ("bind", "timeout", "graceful_timeout", "worker_exit", "worker_abort"):
        assert legacy[name] == config[name], name


def test_real_gunicorn_binds_all_interfaces_on_port_and_flushes_on_exit(tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    env = {
        "DEADLINE_TEST_SPANS": str(spans),
        "GUNICORN_THREADS": "1",
        "BASTION_DEADLINE_SECONDS": "20",
        "CLOUD_RUN_TIMEOUT_SECONDS": "60",
    }
    with cloud_run_instance("tests.apps.deadline_traced:app", tmp_path, env) as server:
        assert raw_get(server.port, "/fast", {}).status == 200
        assert not spans.exists()  # held by the batch processor until a flush
    log = server.log()
    assert f"Listening at: http://0.0.0.0:{server.port}" in log
    assert f"bind 0.0.0.0:{server.port}" in log
    assert "timeouts: Bastion deadline 20s < gunicorn 25s < Cloud Run 60s" in log
    assert "Using worker: sync" in log
    names = [span["name"] for span in span_records(spans)]
    assert "GET /fast" in names  # flushed by worker_exit on SIGTERM


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PORT", "http"), ("GUNICORN_THREADS", "many"), ("CLOUD_RUN_TIMEOUT_SECONDS", "0")],
)
def test_real_gunicorn_refuses_a_malformed_variable_naming_it(variable: str, value: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "OTEL_"))}
    env = {**clean, "PYTHONPATH": str(ROOT), "PORT": str(free_port()), variable: value}
    result = subprocess.run(
        [str(BIN / "gunicorn"), "-c", CONFIG, APP],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"{variable}={value!r}" in result.stdout + result.stderr
