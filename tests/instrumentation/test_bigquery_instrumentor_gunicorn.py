"""Inside a real gunicorn request: a Flask service (tests/apps/bigquery_service.py)
wrapped by protect() with BASTION_DEADLINE=enforce and the BigQuery guard in enforce,
querying the local BigQuery server this test starts. A slow job is cut at the request
deadline, cancelled server-side, and the client gets a 504 in time."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from bastion.instrumentation.jsonl import span_records
from bastion.localbq import LocalBigQuery
from tests.servers import gunicorn

P = "test-project"
DEADLINE = 2.0
MARGIN = 0.5


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def service(bq_server: LocalBigQuery, tmp_path: Path) -> Any:
    jsonl = tmp_path / "telemetry.jsonl"
    env = {
        "BASTION_TEST_BQ_URL": bq_server.url,
        "BASTION_TEST_BQ_PROJECT": P,
        "BASTION_DEADLINE": "enforce",
        "BASTION_DEADLINE_SECONDS": str(DEADLINE),
        "BASTION_BIGQUERY": "enforce",
        "BASTION_BQ_DEADLINE_MARGIN_SECONDS": str(MARGIN),
        "BASTION_TELEMETRY_JSONL": str(jsonl),
        "OTEL_TRACES_EXPORTER": "none",  # the JSON-lines file only
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    with gunicorn(
        "tests.apps.bigquery_service:app", tmp_path, env=env, worker_class="gthread", threads=4
    ) as server:
        # The port opens before the worker has imported the app: wait for it to serve.
        assert _get(f"{server.url}/fast")[0] == 200
        bq_server.requests.clear()
        yield server, jsonl


@pytest.mark.parametrize("path", ["query_and_wait", "query.result", "dbapi"])
def test_slow_query_cut_at_the_request_deadline_and_cancelled(
    bq_server: LocalBigQuery, service: Any, path: str
) -> None:
    server, jsonl = service
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    started = time.monotonic()
    status, body = _get(f"{server.url}/slow?path={path}")
    elapsed = time.monotonic() - started
    assert status == 504, (body, server.log()[-3000:])
    assert elapsed < DEADLINE + 0.5  # the deadline, plus the slack
    cancels = bq_server.requests.of("jobs.cancel")
    assert cancels, server.log()[-3000:]
    job_id = cancels[0].path.split("/jobs/")[1].split("/")[0]
    job = bq_server.jobs.get(P, job_id)
    assert job.error is not None and job.error.reason == "stopped"
    assert job.ended - job.created < DEADLINE + 0.5  # not its 30 s
    (created,) = bq_server.requests.jobs_created()
    assert str(created["jobTimeoutMs"]) == "120000"  # the app's explicit value, kept
    assert _get(f"{server.url}/flush")[0] == 200
    ours = [
        s for s in span_records(jsonl) if s["attributes"].get("db.system.name") == "gcp.bigquery"
    ]
    (span,) = [s for s in ours if s["attributes"].get("bastion.bq.job_id") == job_id]
    assert span["kind"] == "SpanKind.CLIENT"
    assert span["attributes"]["bastion.outcome"] == "cancelled"
    assert span["attributes"]["bastion.bq.wait_bound_by"] == "deadline"


def test_job_timeout_computed_from_the_request_deadline(
    bq_server: LocalBigQuery, service: Any
) -> None:
    server, _ = service
    status, body = _get(f"{server.url}/fast")
    assert status == 200 and body["rows"] == [[42]]
    (created,) = bq_server.requests.jobs_created()
    # min(read class 60 s, deadline 2 s - margin 0.5 s - time already spent)
    assert 1000 <= int(created["jobTimeoutMs"]) <= (DEADLINE - MARGIN) * 1000
