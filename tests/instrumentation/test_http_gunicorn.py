"""A deadline set by a real inbound request (gunicorn + protect) bounds the outbound calls.

The app (tests/apps/http_outbound_app.py) runs under gunicorn with
``BASTION_DEADLINE=enforce`` and a 1 s budget, and calls a slow-drip server running in
this process, or a server that never answers. Python cannot interrupt a thread blocked
in a socket read (the deadline watchdog's exception lands only when Python code runs
again), so without the guard a silent peer holds the request until the caller's own
read timeout; with it, the outbound call ends at the deadline and the client gets the
deadline middleware's 504.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

from tests.apps.http_servers import DripServer, SilentServer
from tests.servers import Server, gunicorn

APP = "tests.apps.http_outbound_app:app"
ENV = {
    "BASTION_DEADLINE": "enforce",
    "BASTION_DEADLINE_SECONDS": "1",
    "BASTION_HTTP": "enforce",
    "BASTION_HTTP_PROPAGATE_DEADLINE": "true",
}


def _status(server: Server, path: str, **params: object) -> int:
    return requests.get(f"{server.url}{path}", params=params, timeout=30).status_code


def _outbound_seconds(log: str) -> tuple[float, str]:
    found = re.findall(r"outbound ended after ([0-9.]+)s with (\w+)", log)
    assert found, log
    seconds, outcome = found[-1]
    return float(seconds), outcome


def _wait_for_log(server: Server, pattern: str, timeout: float = 10.0) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = server.log()
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in server log:\n{server.log()}")


@pytest.mark.parametrize("peer", [DripServer, SilentServer], ids=["drip", "silent"])
def test_inbound_deadline_caps_the_outbound_call(tmp_path: Path, peer: type[DripServer]) -> None:
    with peer() as slow, gunicorn(APP, tmp_path, env=ENV) as server:
        assert _status(server, "/budget") == 200  # the worker has booted and imported
        start = time.monotonic()
        status = _status(server, "/fetch", url=slow.url, timeout=10)
        took = time.monotonic() - start
        log = _wait_for_log(server, r"outbound ended after")
    assert status == 504
    outbound, outcome = _outbound_seconds(log)
    assert 0.9 <= outbound <= 1.1, log  # the deadline +/- 100 ms
    # Ours, or the watchdog's (it fires at the same moment, once Python code runs again).
    assert outcome == "DeadlineTimeout" or outcome.endswith("DeadlineExceeded"), log
    assert took < 1.5


def test_without_the_guard_a_silent_peer_outlives_the_deadline(tmp_path: Path) -> None:
    # The watchdog cannot interrupt a thread blocked in recv(): only the timeout can.
    env = {**ENV, "BASTION_HTTP": "off"}
    with SilentServer() as silent, gunicorn(APP, tmp_path, env=env) as server:
        status = _status(server, "/fetch", url=silent.url, timeout=2.5)
        log = _wait_for_log(server, r"outbound ended after")
    assert status == 504  # but late: after the caller's own 2.5 s read timeout
    outbound, _ = _outbound_seconds(log)
    assert outbound >= 2.5


def test_remaining_budget_travels_to_the_next_service(tmp_path: Path) -> None:
    downstream_env = {**ENV, "BASTION_DEADLINE_SECONDS": "30"}
    with (
        gunicorn(APP, tmp_path, env=downstream_env) as downstream,
        gunicorn(APP, tmp_path, env=ENV) as upstream,
    ):
        response = requests.get(
            f"{upstream.url}/fetch", params={"url": f"{downstream.url}/budget", "timeout": 5}
        )
    assert response.status_code == 200, response.text
    downstream_budget = float(json.loads(response.json()["body"])["remaining"])
    assert 0.5 < downstream_budget < 1.0  # shortened from its own 30 s by the header
