"""Shared pytest fixtures.

BigQuery peers (real HTTP, the real google-cloud-bigquery client):

* ``bq_server`` / ``bq_client``: the project's local BigQuery REST server
  (:mod:`bastion.localbq`), one per session, wiped (data, rules, jobs, request
  log) before each test that uses it.
* ``bqemulator`` / ``bqemulator_client``: bqemulator 1.4.0 (DuckDB-backed, written by
  others) from its own virtualenv ``.bqemu-venv`` (``make bqemu``), one process per
  session on free ports. A missing virtualenv FAILS the test: it is part of the
  project's test tooling, built by ``make test``.

Other parts may append their own fixtures below.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from bastion.localbq import LocalBigQuery

#: The slow tier (``pytest -m slow``; ``make fast`` runs the rest): modules that start real
#: servers (gunicorn, uvicorn, the local BigQuery server over HTTP per test, bqemulator),
#: run promtool, Chromium, the demo, load and soak tests, or build fresh virtualenvs.
#: Tests elsewhere carry ``@pytest.mark.slow`` themselves when they start a server or a
#: subprocess, or wait a second or more of real time on purpose (a deadline cut over
#: real sockets, a job's configured duration, a race run for seconds).
SLOW_MODULES = frozenset(
    {
        "test_browser.py",
        "test_cloudrun.py",
        "test_demo.py",
        "test_deploy.py",
        "test_integration_stages.py",
        "test_refusals.py",
        "test_cli_audit.py",
        "test_cli_audit_impact.py",
        "test_cli_doctor.py",
        "test_cli_queries.py",
        "test_cli_scan.py",
        "test_cli_scan_protect.py",
        "test_observatory_differential.py",
        "test_auto_instrumentation.py",
        "test_bigquery_instrumentor_emulator.py",
        "test_bigquery_instrumentor_gunicorn.py",
        "test_bigquery_instrumentor_guard.py",
        "test_bigquery_route_classes.py",
        "test_costs.py",
        "test_costs_parallel.py",
        "test_costs_views.py",
        "test_http_gunicorn.py",
        "test_http_would_cut.py",
        "test_telemetry.py",
        "test_bqserver_cli.py",
        "test_bqserver_emulator.py",
        "test_csp_reports.py",
        "test_deadline_gunicorn.py",
        "test_deadline_load.py",
        "test_deadline_safety.py",
        "test_deadline_servers.py",
        "test_headers_servers.py",
        "test_installs.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


ROOT = Path(__file__).resolve().parent.parent
BQEMU_VENV = ROOT / ".bqemu-venv"
BQ_PROJECT = "test-project"


@pytest.fixture(scope="session")
def _bq_server_session() -> Iterator[LocalBigQuery]:
    with LocalBigQuery(project=BQ_PROJECT) as server:
        yield server


@pytest.fixture
def bq_server(_bq_server_session: LocalBigQuery) -> LocalBigQuery:
    """The local BigQuery server, empty: no data, rules, jobs or logged requests."""
    _bq_server_session.reset(data=True)
    return _bq_server_session


@pytest.fixture
def bq_client(bq_server: LocalBigQuery) -> bigquery.Client:
    """A real ``bigquery.Client`` (anonymous credentials) pointed at ``bq_server``."""
    return bq_server.client()


@dataclass(frozen=True)
class Emulator:
    url: str
    project: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self) -> bigquery.Client:
        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.url),
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def bqemulator() -> Iterator[Emulator]:
    """bqemulator 1.4.0 on free loopback ports, ready; stopped at the end of the session."""
    executable = BQEMU_VENV / "bin" / "bqemulator"
    home = BQEMU_VENV / "home"
    if not executable.exists() or not (home / ".duckdb").exists():
        pytest.fail(
            f"bqemulator is not installed in {BQEMU_VENV} (or its DuckDB spatial extension "
            "is missing): run `make bqemu` (part of `make test`) to build it.",
            pytrace=False,
        )
    rest_port, grpc_port = _free_port(), _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bqemu-"))
    log_path = workdir / "bqemulator.log"
    env = {**os.environ, "HOME": str(home)}
    url = f"http://127.0.0.1:{rest_port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(executable),
                "start",
                "--rest-port",
                str(rest_port),
                "--grpc-port",
                str(grpc_port),
                "--project",
                BQ_PROJECT,
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"bqemulator exited with {process.returncode}:\n{log_path.read_text()}",
                    pytrace=False,
                )
            try:
                probe = f"{url}/bigquery/v2/projects/{BQ_PROJECT}/datasets"
                with urllib.request.urlopen(probe, timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"bqemulator not ready in 60 s:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.1)
        yield Emulator(url, BQ_PROJECT, process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def bqemulator_client(bqemulator: Emulator) -> bigquery.Client:
    """A real ``bigquery.Client`` pointed at the session's bqemulator."""
    return bqemulator.client()
