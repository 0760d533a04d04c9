"""The gunicorn helper: timeouts in order, and telemetry flushed when a worker exits
or is aborted (real gunicorn on loopback, real OpenTelemetry SDK in the worker)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bastion.instrumentation.jsonl import span_records
from bastion.middleware.deadline.gunicorn import (
    TimeoutOrderError,
    check_timeout_order,
    gunicorn_config,
)
from bastion.middleware.routes import Route
from bastion.settings import Settings
from tests.apps.deadline_client import fetch
from tests.servers import gunicorn

APP = "tests.apps.deadline_traced:app"
CONF = "python:tests.apps.deadline_gunicorn_conf"


def test_config_orders_deadline_below_gunicorn_below_cloud_run() -> None:
    config = gunicorn_config(Settings(deadline_seconds=25.0), cloud_run_timeout=300)
    assert config["timeout"] == 30  # 25 s budget + 5 s to write the 504
    assert config["graceful_timeout"] == 8  # inside Cloud Run's 10 s after SIGTERM
    assert set(config) == {"timeout", "graceful_timeout"}


def test_config_accounts_for_the_longest_route_override_capped_by_the_maximum() -> None:
    settings = Settings(deadline_seconds=10.0, deadline_max_seconds=120.0)
    routes = {"/export": Route(deadline_seconds=90.0), "/forever": Route(deadline_seconds=999.0)}
    assert gunicorn_config(settings, routes=routes)["timeout"] == 125  # 120 cap + 5
    routes = {"/export": Route(deadline_seconds=90.0), "/stream": Route(exempt_deadline=True)}
    assert gunicorn_config(settings, routes=routes)["timeout"] == 95


def test_config_refuses_timeouts_that_cannot_be_ordered() -> None:
    with pytest.raises(TimeoutOrderError, match="Cloud Run request timeout"):
        gunicorn_config(Settings(deadline_seconds=25.0), cloud_run_timeout=20)
    with pytest.raises(TimeoutOrderError, match="Cloud Run request timeout"):
        gunicorn_config(Settings(deadline_seconds=298.0), cloud_run_timeout=300)


@pytest.mark.parametrize(
    "deadline, gunicorn_timeout, cloud_run, problem",
    [
        (30, 30, 300, "shorter than gunicorn's --timeout"),
        (40, 30, 300, "kills the worker"),
        (25, 300, 300, "shorter than the Cloud Run"),
        (25, 30, 3600, None),
    ],
)
def test_check_timeout_order(
    deadline: float, gunicorn_timeout: float, cloud_run: float, problem: str | None
) -> None:
    if problem is None:
        check_timeout_order(deadline, gunicorn_timeout, cloud_run)
    else:
        with pytest.raises(TimeoutOrderError, match=problem):
            check_timeout_order(deadline, gunicorn_timeout, cloud_run)


def spans(path: Path) -> list[dict[str, Any]]:
    return list(span_records(path)) if path.exists() else []


def wait_for(predicate: object, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_spans_are_flushed_when_the_worker_exits(tmp_path: Path) -> None:
    out = tmp_path / "spans.jsonl"
    env = {"DEADLINE_TEST_SPANS": str(out), "BASTION_DEADLINE_SECONDS": "0.5"}
    with gunicorn(APP, tmp_path, env=env, timeout=2, extra=["--config", CONF]) as server:
        assert fetch(server.url, "/fast").status == 200
        time.sleep(0.3)
        assert spans(out) == []  # held by the batch processor (60 s schedule)
    names = [s["name"] for s in spans(out)]
    assert "GET /fast" in names


def test_aborted_worker_logs_its_stacks_and_flushes_spans(tmp_path: Path) -> None:
    """gunicorn's timeout (here 2 s: 0.5 s budget + 1 s margin, rounded up) kills a
    worker stuck in a C call; the abort hook logs where it was stuck and saves the
    spans buffered so far."""
    out = tmp_path / "spans.jsonl"
    env = {"DEADLINE_TEST_SPANS": str(out), "BASTION_DEADLINE_SECONDS": "0.5"}
    config = gunicorn_config(Settings(deadline_seconds=0.5), margin_seconds=1.0)
    assert config["timeout"] == 2
    with gunicorn(APP, tmp_path, env=env, timeout=2, extra=["--config", CONF]) as server:
        assert fetch(server.url, "/fast").status == 200
        hung = fetch(server.url, "/hang?s=30", timeout=20)
        # SystemExit from the abort unwinds the request: gunicorn answers 500 if it can.
        assert hung.status in (0, 500) and hung.elapsed >= 2.0, hung
        assert wait_for(lambda: "gunicorn is aborting worker" in server.log())
        assert wait_for(lambda: "GET /fast" in [s["name"] for s in spans(out)])
        log = server.log()
        assert "in hang" in log and "time.sleep" in log
        # The deadline itself was seen first (observe mode is the default).
        assert "deadline exceeded: GET /hang" in log


def test_span_gets_the_deadline_event_with_the_stack(tmp_path: Path) -> None:
    out = tmp_path / "spans.jsonl"
    env = {
        "DEADLINE_TEST_SPANS": str(out),
        "BASTION_DEADLINE": "enforce",
        "BASTION_DEADLINE_SECONDS": "0.3",
    }
    with gunicorn(APP, tmp_path, env=env, timeout=2, extra=["--config", CONF]) as server:
        assert fetch(server.url, "/fast").status == 200
        assert fetch(server.url, "/cpu?s=2").status == 504
    log = server.log()
    found = [s for s in spans(out) if s["name"] == "GET /cpu"]
    assert len(found) == 1, (spans(out), log[-3000:])
    (span,) = found
    (event,) = [e for e in span["events"] if e["name"] == "bastion.deadline.exceeded"]
    attributes = event["attributes"]
    assert attributes["bastion.mode"] == "enforce"
    assert attributes["bastion.deadline.budget_s"] == 0.3
    assert "in cpu_loop" in attributes["exception.stacktrace"]
    status = span["attributes"].get("http.response.status_code") or span["attributes"].get(  # type: ignore[attr-defined]
        "http.status_code"
    )
    assert status == 504  # the span records what the client got
