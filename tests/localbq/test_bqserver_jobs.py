"""The local BigQuery server's scripted job lifecycle and refusals, driven by the real
client: PENDING → RUNNING → DONE, jobTimeoutMs, jobs.cancel, require_partition_filter,
maximumBytesBilled, forced errors and delays per endpoint, and the control routes."""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request

import pytest
from google.api_core import exceptions
from google.cloud import bigquery

from bastion.localbq import LocalBigQuery, Rule

PARTITION_MESSAGE = (
    "Cannot query over table 'test-project.nba.games' without a filter over column(s) "
    "'game_date' that can be used for partition elimination"
)


@pytest.fixture
def games(bq_server: LocalBigQuery) -> LocalBigQuery:
    bq_server.create_table(
        "nba.games",
        [("game_date", "DATE"), ("player", "STRING"), ("points", "INT64")],
        partition_field="game_date",
        require_partition_filter=True,
    )
    bq_server.insert_rows(
        "nba.games",
        [{"game_date": f"2026-01-0{d}", "player": "a", "points": d} for d in (1, 2, 3)],
    )
    return bq_server


def _states(client: bigquery.Client, job_id: str, seconds: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = client.get_job(job_id).state
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "DONE":
            break
        time.sleep(0.02)
    return seen


@pytest.mark.slow
def test_job_goes_pending_running_done_with_configured_durations(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.add_rule(match="slow_report", pending_seconds=0.6, running_seconds=0.6)
    job = bq_client.query("SELECT 1 AS slow_report")
    assert job.state == "PENDING"
    assert _states(bq_client, job.job_id, 10) == ["PENDING", "RUNNING", "DONE"]
    assert [r.slow_report for r in job.result()] == [1]
    assert job.ended - job.created >= __import__("datetime").timedelta(seconds=1.2)
    other = bq_client.query("SELECT 2 AS fast")
    assert other.state == "DONE"  # rules match by SQL; other jobs stay instant


def test_jobs_query_answers_incomplete_then_client_polls(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.add_rule(regex=r"\bSLEEPY\b", running_seconds=0.5)
    started = time.monotonic()
    rows = bq_client.query_and_wait("SELECT 'x' AS SLEEPY", wait_timeout=5, api_timeout=5)
    assert [r.SLEEPY for r in rows] == ["x"]
    assert time.monotonic() - started >= 0.5
    (query,) = bq_server.requests.of("jobs.query")
    assert 0 < int(query.body["timeoutMs"]) <= 5000
    # A very short jobs.query wait: jobComplete=false, then jobs.get/getQueryResults.
    bq_server.add_rule(match="LATER", running_seconds=0.4)
    answer = _post(
        bq_server,
        "/bigquery/v2/projects/test-project/queries",
        {"query": "SELECT 1 AS LATER", "timeoutMs": 50},
    )
    assert answer["jobComplete"] is False and "rows" not in answer
    job = bq_client.get_job(answer["jobReference"]["jobId"])
    assert [r.LATER for r in job.result()] == [1]


def test_job_timeout_ms_fails_the_job_with_reason_timeout(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.add_rule(match="HEAVY", running_seconds=30)
    config = bigquery.QueryJobConfig(job_timeout_ms=300)
    job = bq_client.query("SELECT 1 AS HEAVY", job_config=config)
    assert job._properties["configuration"]["jobTimeoutMs"] == "300"
    with pytest.raises(exceptions.GoogleAPICallError, match=r"Job timed out after 0\.3 sec"):
        job.result(timeout=10)
    job.reload()
    assert job.state == "DONE"
    assert job.error_result["reason"] == "timeout"
    assert (job.ended - job.created).total_seconds() < 5
    # Through the jobs.query fast path too (jobTimeoutMs is on its allow-list).
    with pytest.raises(exceptions.BadRequest, match="timed out"):
        bq_client.query_and_wait("SELECT 2 AS HEAVY", job_config=config, wait_timeout=10)
    (query,) = bq_server.requests.of("jobs.query")
    assert query.body["jobTimeoutMs"] == "300"


def test_cancel_stops_a_running_job_and_its_dml_never_applies(
    games: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    games.add_rule(match="UPDATE", running_seconds=30)
    job = bq_client.query("UPDATE nba.games SET points = 0 WHERE game_date = '2026-01-01'")
    assert job.state == "RUNNING"
    assert job.cancel() is True
    job.reload()
    assert job.state == "DONE"
    assert job.error_result == {
        "reason": "stopped",
        "message": "Job execution was cancelled: User requested cancellation",
    }
    assert games.requests.cancelled_job_ids() == [job.job_id]
    assert sorted(r[2] for r in games.rows("nba.games")) == [1, 2, 3]
    # Cancelling a finished job changes nothing.
    done = bq_client.query("SELECT 1")
    done.result()
    bq_client.cancel_job(done.job_id)
    assert bq_client.get_job(done.job_id).error_result is None


def test_result_timeout_waits_for_the_server_long_poll_like_bigquery(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    """``result(timeout=…)`` sends no ``timeoutMs``: getQueryResults holds the answer for
    the server's default wait (BigQuery: 10 s) before the client can notice its own
    timeout, and the job is not cancelled. Lowered here to keep the test short."""
    bq_server.default_wait_ms = 700
    bq_server.add_rule(match="LONG", running_seconds=30)
    job = bq_client.query("SELECT 1 AS LONG")
    started = time.monotonic()
    with pytest.raises(concurrent.futures.TimeoutError):
        job.result(timeout=0.1)
    assert time.monotonic() - started >= 0.7
    assert "timeoutMs" not in bq_server.requests.of("jobs.getQueryResults")[0].params
    assert bq_client.get_job(job.job_id).state == "RUNNING"
    assert bq_server.requests.cancelled_job_ids() == []


def test_query_and_wait_cancels_the_job_when_its_wait_times_out(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.default_wait_ms = 300  # BigQuery holds each poll 10 s; keep the test short
    bq_server.add_rule(match="FOREVER", running_seconds=60)
    with pytest.raises((concurrent.futures.TimeoutError, TimeoutError)):
        bq_client.query_and_wait("SELECT 1 AS FOREVER", wait_timeout=0.5)
    (job_id,) = bq_server.requests.cancelled_job_ids()
    assert bq_client.get_job(job_id).error_result["reason"] == "stopped"


def test_require_partition_filter_rejection(
    games: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    with pytest.raises(exceptions.BadRequest) as info:
        bq_client.query_and_wait("SELECT SUM(points) FROM nba.games")
    assert info.value.code == 400
    assert info.value.errors[0]["reason"] == "invalidQuery"
    assert PARTITION_MESSAGE in info.value.message
    job = bq_client.query("SELECT * FROM `test-project.nba.games` WHERE player = 'a'")
    assert job.state == "DONE"  # jobs.insert: created, failed at once
    assert job.error_result["reason"] == "invalidQuery"
    assert job.error_result["message"] == PARTITION_MESSAGE
    with pytest.raises(exceptions.BadRequest):
        job.result()
    # A partition filter passes; so does a table without the requirement.
    rows = bq_client.query_and_wait(
        "SELECT points FROM nba.games WHERE game_date = '2026-01-02' OR game_date = '2026-01-03'"
        " ORDER BY points"
    )
    assert [r.points for r in rows] == [2, 3]
    bq_client.query_and_wait("ALTER TABLE nba.games SET OPTIONS (require_partition_filter = false)")
    assert bq_client.get_table("nba.games").require_partition_filter is False
    assert next(iter(bq_client.query_and_wait("SELECT COUNT(*) n FROM nba.games"))).n == 3


def test_maximum_bytes_billed_exceeded(games: LocalBigQuery, bq_client: bigquery.Client) -> None:
    config = bigquery.QueryJobConfig(maximum_bytes_billed=1000)
    sql = "SELECT * FROM nba.games WHERE game_date > '2026-01-01'"
    with pytest.raises(exceptions.BadRequest) as info:
        bq_client.query_and_wait(sql, job_config=config)
    assert info.value.errors[0]["reason"] == "bytesBilledLimitExceeded"
    assert "Query exceeded limit for bytes billed: 1000. 10485760 or higher required." in str(
        info.value
    )
    job = bq_client.query(sql, job_config=config)
    assert job.error_result["reason"] == "bytesBilledLimitExceeded"
    enough = bigquery.QueryJobConfig(maximum_bytes_billed=10 * 1024 * 1024)
    assert len(list(bq_client.query_and_wait(sql, job_config=enough))) == 2


def test_rule_forces_job_failure_and_statistics(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.add_rule(match="big_scan", bytes_processed=5 * 1024**3, slot_ms=123_456)
    job = bq_client.query("SELECT 1 AS big_scan")
    job.result()
    assert job.total_bytes_processed == 5 * 1024**3
    assert job.total_bytes_billed == 5 * 1024**3
    assert job.slot_millis == 123_456
    bq_server.add_rule(match="flaky", reason="backendError", message="try again")
    failed = bq_client.query("SELECT 1 AS flaky")
    with pytest.raises(exceptions.InternalServerError, match="try again"):
        failed.result(retry=None, job_retry=None)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, exceptions.Forbidden),
        (404, exceptions.NotFound),
        (500, exceptions.InternalServerError),
    ],
)
def test_fault_rule_on_tables_get(
    bq_server: LocalBigQuery,
    bq_client: bigquery.Client,
    status: int,
    error: type[Exception],
) -> None:
    bq_server.create_table("nba.games", [("x", "INT64")])
    rule = bq_server.add_rule(endpoint="tables.get", status=status, times=1)
    with pytest.raises(error):
        bq_client.get_table("nba.games", retry=None)
    assert rule.hits == 1
    assert bq_client.get_table("nba.games").table_id == "games"  # times=1: used up
    assert [r.status for r in bq_server.requests.of("tables.get")] == [status, 200]


def test_fault_rule_delay_makes_the_client_time_out(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.create_table("nba.games", [("x", "INT64")])
    bq_server.add_rule(endpoint="tables.get", delay_seconds=1.0, path="games$")
    started = time.monotonic()
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        bq_client.get_table("nba.games", retry=None, timeout=0.2)
    assert time.monotonic() - started < 0.9


def test_fault_rule_on_jobs_query_filtered_by_sql(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.add_rule(endpoint="jobs.query", match="boom", status=503, times=1)
    with pytest.raises(exceptions.ServiceUnavailable):
        bq_client.query_and_wait("SELECT 'boom'", retry=None, job_retry=None)
    assert next(iter(bq_client.query_and_wait("SELECT 'calm' AS c"))).c == "calm"


def _post(bq: LocalBigQuery, path: str, body: object) -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(
        bq.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as answer:
        raw = answer.read()
    return json.loads(raw) if raw else {}


def test_http_control_routes_add_rules_and_reset(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    created = _post(bq_server, "/_bqserver/rules", {"match": "nightly", "running_seconds": 0.3})
    assert created["running_seconds"] == 0.3 and created["id"]
    assert [r.id for r in bq_server.rules.list()] == [created["id"]]
    job = bq_client.query("SELECT 1 AS nightly")
    assert job.state in ("PENDING", "RUNNING")
    job.result()
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(bq_server, "/_bqserver/rules", {"bogus": 1})
    assert info.value.code == 400
    _post(bq_server, "/_bqserver/reset", {})
    assert bq_server.rules.list() == [] and len(bq_server.requests) == 0
    assert bq_client.query("SELECT 1 AS nightly").state == "DONE"


def test_rule_round_trips_through_a_dict() -> None:
    rule = Rule(regex="^SELECT", running_seconds=2, endpoint=None)
    again = Rule.from_dict({k: v for k, v in rule.to_dict().items() if k != "hits"})
    assert again.matches_sql("SELECT 1") and not again.matches_sql("UPDATE t")
    assert again.running_seconds == 2


def test_partition_filter_rejection_through_default_dataset(
    games: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    config = bigquery.QueryJobConfig(default_dataset="test-project.nba")
    with pytest.raises(exceptions.BadRequest, match="without a filter over column"):
        bq_client.query_and_wait("SELECT * FROM games", job_config=config)
    rows = bq_client.query_and_wait(
        "SELECT points FROM games WHERE game_date = '2026-01-03'", job_config=config
    )
    assert [r.points for r in rows] == [3]


def test_dry_run_estimates_without_running(
    games: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    games.add_rule(match="UPDATE", running_seconds=30)  # would hang if it ran
    config = bigquery.QueryJobConfig(dry_run=True, use_query_cache=False)
    job = bq_client.query(
        "UPDATE nba.games SET points = 0 WHERE game_date = '2026-01-01'", job_config=config
    )
    assert job.state == "DONE" and job.error_result is None
    assert job.total_bytes_processed == 8 + 8  # one row: game_date and points
    assert sorted(r[2] for r in games.rows("nba.games")) == [1, 2, 3]
    with pytest.raises(exceptions.BadRequest, match="partition elimination"):
        bq_client.query("SELECT * FROM nba.games", job_config=config)


def test_job_timeout_wins_even_when_nobody_waits_for_the_timer(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.add_rule(match="SLOWISH", running_seconds=0.6)
    config = bigquery.QueryJobConfig(job_timeout_ms=200)
    job = bq_client.query("SELECT 1 AS SLOWISH", job_config=config)
    time.sleep(0.8)
    job.reload()
    assert job.error_result["reason"] == "timeout"


@pytest.mark.parametrize(
    "body",
    [
        {"running_seconds": "soon"},
        {"running_seconds": -1},
        {"regex": "("},
        {"status": 42},
        {"endpoint": "tables.get", "nonsense": True},
    ],
)
def test_bad_rules_are_refused_with_400(bq_server: LocalBigQuery, body: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(bq_server, "/_bqserver/rules", body)
    assert info.value.code == 400
    assert bq_server.rules.list() == []


@pytest.mark.parametrize(
    "body",
    [
        {"query": "SELECT 1", "jobTimeoutMs": "soon"},
        {"query": "SELECT 1", "maximumBytesBilled": "lots"},
        {"query": "SELECT 1", "timeoutMs": -5},
        {"query": "SELECT 1", "maxResults": "all"},
        {"query": 42},
        {"nothing": True},
    ],
)
def test_malformed_query_requests_answer_400(bq_server: LocalBigQuery, body: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(urllib.error.HTTPError) as info:
        _post(bq_server, "/bigquery/v2/projects/test-project/queries", body)
    assert info.value.code == 400
    assert json.loads(info.value.read())["error"]["errors"][0]["reason"] == "invalid"


def test_legacy_sql_is_refused_not_misread(bq_client: bigquery.Client) -> None:
    config = bigquery.QueryJobConfig(use_legacy_sql=True)
    with pytest.raises(exceptions.BadRequest, match="useLegacySql"):
        bq_client.query("SELECT 1", job_config=config).result()
