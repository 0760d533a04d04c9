"""The guard's decisions against the project's local BigQuery server: slow jobs cancelled
server-side at their class timeout and at the request deadline, long and unpartitioned
queries, the tables.get cache under faults."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import bigquery
from google.cloud.bigquery import dbapi
from google.cloud.bigquery.client import Client

from bastion.instrumentation.bigquery import ClassTimeoutError, UnpartitionedQueryError
from bastion.instrumentation.bigquery._guard import QueryTimeoutRefusal
from bastion.localbq import LocalBigQuery
from bastion.middleware import deadline
from bastion.middleware.deadline import DeadlineExceeded
from bastion.settings import Mode, Settings
from tests.apps.bigquery_harness import Telemetry, instrumented

# The DB-API asks for the BigQuery Storage client, which is not installed: a warning
# of the library, not of the guard.
pytestmark = pytest.mark.filterwarnings("ignore:Cannot create BigQuery Storage client")

P = "test-project"
SLOW = "SELECT 1 AS slow_marker"
UNFILTERED = f"SELECT COUNT(*) AS n FROM `{P}.nba.games`"
FILTERED = f"SELECT COUNT(*) AS n FROM `{P}.nba.games` WHERE game_date = '2026-01-01'"
# Explicit (so kept) and far away: the client-side give-up is what the test watches.
LONG_JOB = bigquery.QueryJobConfig(job_timeout_ms=120_000)


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest.fixture
def games(bq_server: LocalBigQuery) -> LocalBigQuery:
    bq_server.create_table(
        "nba.games", [("game_date", "DATE"), ("points", "INT64")], partition_field="game_date"
    )
    bq_server.insert_rows("nba.games", [{"game_date": "2026-01-01", "points": 3}])
    return bq_server


def _result(client: Client, sql: str, config: Any = None) -> Any:
    return list(client.query(sql, job_config=config).result())


def _query_and_wait(client: Client, sql: str, config: Any = None) -> Any:
    return list(client.query_and_wait(sql, job_config=config))


def _dbapi(client: Client, sql: str, config: Any = None) -> Any:
    cursor = dbapi.connect(client).cursor()
    cursor.execute(sql, job_config=config)
    return cursor.fetchall()


PATHS: dict[str, Callable[..., Any]] = {
    "query.result": _result,
    "query_and_wait": _query_and_wait,
    "dbapi": _dbapi,
}


def _cancelled_job(bq: LocalBigQuery) -> Any:
    (cancel,) = {r.path for r in bq.requests.of("jobs.cancel")}
    job_id = cancel.split("/jobs/")[1].split("/")[0]
    return bq.jobs.get(P, job_id)


# --- cancellation -----------------------------------------------------------------------


@pytest.mark.parametrize("path", list(PATHS))
def test_slow_job_cancelled_server_side_at_its_class_timeout(
    bq_server: LocalBigQuery, telemetry: Telemetry, path: str
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    settings = Settings(bigquery=Mode.ENFORCE, bq_timeout_read=1.0)
    with instrumented(telemetry, settings), pytest.raises(TimeoutError) as raised:
        PATHS[path](bq_server.client(), SLOW, LONG_JOB)
    # Still a TimeoutError, and the refusal protect() answers with a 504.
    assert isinstance(raised.value, ClassTimeoutError), repr(raised.value)
    assert (raised.value.timeout_class, raised.value.seconds) == ("read", 1.0)
    job = _cancelled_job(bq_server)
    assert job.done and job.error is not None and job.error.reason == "stopped"
    assert job.ended - job.created < 10  # stopped long before its 30 s
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.outcome"] == "cancelled"
    assert attributes["bastion.bq.timeout_seconds"] == 1.0
    assert attributes["bastion.bq.wait_bound_by"] == "class"
    assert (
        telemetry.counter("bastion.bigquery.cancellations", **{"bastion.bq.timeout_class": "read"})
        == 1
    )
    assert telemetry.counter("bastion.bigquery.timeouts") == 1


@pytest.mark.parametrize("path", list(PATHS))
def test_slow_job_cancelled_at_the_request_deadline(
    bq_server: LocalBigQuery, telemetry: Telemetry, path: str
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    settings = Settings(bigquery=Mode.ENFORCE, bq_deadline_margin_seconds=0.5)
    started = time.monotonic()
    with (
        instrumented(telemetry, settings),
        deadline.scope(2.0),
        pytest.raises(DeadlineExceeded),
    ):
        PATHS[path](bq_server.client(), SLOW, LONG_JOB)
    assert time.monotonic() - started < 2.0 + 1.0  # within the deadline (+ cancel, slack)
    job = _cancelled_job(bq_server)
    assert job.error is not None and job.error.reason == "stopped"
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.outcome"] == "cancelled"
    assert attributes["bastion.bq.wait_bound_by"] == "deadline"
    assert attributes["bastion.bq.timeout_seconds"] <= 1.5


def test_explicit_wait_timeout_ends_the_wait_only(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)), pytest.raises(TimeoutError):
        bq_server.client().query(SLOW, job_config=LONG_JOB).result(timeout=0.5)
    # As in the library: the caller's own wait ended, the job goes on.
    assert bq_server.requests.of("jobs.cancel") == []
    # The caller's 0.5 s is kept, and honoured: the library alone would let the server
    # hold getQueryResults for its default 10 s before noticing (see the observe test).
    (poll,) = bq_server.requests.of("jobs.getQueryResults")[:1]
    assert int(poll.params["timeoutMs"]) <= 500


def test_explicit_wait_past_the_request_deadline_is_cancelled(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    settings = Settings(bigquery=Mode.ENFORCE, bq_deadline_margin_seconds=0.5)
    with (
        instrumented(telemetry, settings),
        deadline.scope(1.5),
        pytest.raises(TimeoutError),
    ):
        bq_server.client().query(SLOW, job_config=LONG_JOB).result(timeout=20)
    # The request deadline, a bound of Bastion's, ended the wait: the job is stopped.
    assert _cancelled_job(bq_server).error.reason == "stopped"


def test_observe_does_not_cancel_but_says_it_would(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    settings = Settings(bigquery=Mode.OBSERVE, bq_deadline_margin_seconds=0.5)
    with (
        instrumented(telemetry, settings),
        deadline.scope(0.5),
        pytest.raises(TimeoutError),
    ):
        # The library's own give-up, after the request deadline: enforce would cancel.
        bq_server.client().query(SLOW).result(timeout=1.0)
    assert bq_server.requests.of("jobs.cancel") == []
    assert "jobTimeoutMs" not in bq_server.requests.of("jobs.insert")[0].body["configuration"]
    assert "timeoutMs" not in bq_server.requests.of("jobs.getQueryResults")[0].params
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.bq.would_cancel"] is True
    assert attributes["bastion.outcome"] == "timeout"


def test_observe_lets_a_slow_query_finish_and_records_what_would_apply(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=1.5)
    settings = Settings(bigquery=Mode.OBSERVE, bq_timeout_read=0.5)
    with instrumented(telemetry, settings):
        rows = list(bq_server.client().query(SLOW).result())
    assert [tuple(r) for r in rows] == [(1,)]
    assert bq_server.requests.of("jobs.cancel") == []
    span = telemetry.only_span()
    attributes = dict(span.attributes or {})
    assert attributes["bastion.outcome"] == "ok"
    assert attributes["bastion.bq.would_timeout_seconds"] == 0.5
    assert attributes["bastion.bq.would_job_timeout_ms"] == 500
    assert attributes["bastion.bq.would_wait_seconds"] == 0.5
    # Long: over the default threshold of half the class timeout.
    assert attributes["bastion.bq.long"] is True
    assert [e.name for e in span.events] == ["bastion.bq.long_query"]
    assert telemetry.counter("bastion.bigquery.long_queries") == 1


def test_spent_deadline_refuses_before_any_job(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    settings = Settings(bigquery=Mode.ENFORCE, bq_deadline_margin_seconds=1.0)
    with (
        instrumented(telemetry, settings),
        deadline.scope(0.5),
        pytest.raises(DeadlineExceeded, match="not sent"),
    ):
        bq_server.client().query_and_wait("SELECT 1")
    assert bq_server.requests.jobs_created() == []
    assert (telemetry.only_span().attributes or {})["bastion.outcome"] == "refused"
    assert telemetry.counter("bastion.bigquery.refusals", **{"bastion.reason": "deadline"}) == 1


def test_long_query_threshold_per_class(bq_server: LocalBigQuery, telemetry: Telemetry) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=0.6)
    settings = Settings(bigquery=Mode.ENFORCE, bq_slow_seconds_read=0.3)
    with instrumented(telemetry, settings):
        bq_server.client().query_and_wait(SLOW)
        bq_server.client().query_and_wait("SELECT 2")
    slow, quick = (dict(s.attributes or {}) for s in telemetry.client_spans())
    assert slow["bastion.bq.long"] is True and "bastion.bq.long" not in quick
    assert (
        telemetry.counter("bastion.bigquery.long_queries", **{"bastion.bq.timeout_class": "read"})
        == 1
    )


# --- unpartitioned queries ------------------------------------------------------------------


def test_observe_unpartitioned_event_counter_and_one_log_per_site(
    games: LocalBigQuery, telemetry: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    client = games.client()
    caplog.set_level(logging.WARNING, "bastion.bigquery")
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)) as instrumentor:
        # Observe never waits for the table's partitioning: the first query of the
        # table goes unjudged while Bastion looks it up in the background.
        client.query_and_wait(FILTERED)
        assert instrumentor.guard is not None and instrumentor.guard.partitions.settled(10)
        for _ in range(2):
            assert [tuple(r) for r in client.query_and_wait(UNFILTERED)] == [(1,)]  # site A
        client.query(UNFILTERED).result()  # site B
        client.query_and_wait(FILTERED)
    lines = [r.getMessage() for r in caplog.records if "partitioned table" in r.getMessage()]
    assert len(lines) == 2
    assert all(f"{P}.nba.games" in line and "game_date" in line for line in lines)
    assert "test_bigquery_instrumentor_guard.py" in lines[0]
    spans = telemetry.client_spans()[1:]
    assert [len(s.events) for s in spans] == [1, 1, 1, 0]
    event = spans[0].events[0]
    assert event.name == "bastion.bq.unpartitioned"
    assert dict(event.attributes or {}) == {
        "bastion.bq.table": f"{P}.nba.games",
        "bastion.bq.partition_column": "game_date",
    }
    assert (spans[0].attributes or {})["bastion.bq.unfiltered_tables"] == (f"{P}.nba.games",)
    counted = {"bastion.bq.table": f"{P}.nba.games", "bastion.mode": "observe"}
    assert telemetry.counter("bastion.bigquery.unpartitioned_queries", **counted) == 3


@pytest.mark.parametrize("path", list(PATHS))
def test_enforce_refuses_unpartitioned_before_any_job(
    games: LocalBigQuery, telemetry: Telemetry, path: str
) -> None:
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        with pytest.raises(UnpartitionedQueryError) as refused:
            PATHS[path](games.client(), UNFILTERED)
        assert PATHS[path](games.client(), FILTERED) == PATHS[path](games.client(), FILTERED)
    message = str(refused.value)
    assert f"'{P}.nba.games'" in message and "'game_date'" in message
    assert (refused.value.table, refused.value.column) == (f"{P}.nba.games", "game_date")
    assert isinstance(refused.value, ValueError)
    refused_span = telemetry.client_spans()[0]
    assert (refused_span.attributes or {})["bastion.outcome"] == "refused"
    sql_sent = [r.sql for r in games.requests if r.endpoint in ("jobs.insert", "jobs.query")]
    assert UNFILTERED not in sql_sent and FILTERED in sql_sent
    assert (
        telemetry.counter("bastion.bigquery.refusals", **{"bastion.reason": "unpartitioned"}) == 1
    )


def test_ingestion_time_table_names_partitiontime(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    bq_server.create_table("raw.events", [("x", "STRING")], ingestion_time=True)
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        with pytest.raises(UnpartitionedQueryError, match="_PARTITIONTIME"):
            bq_server.client().query_and_wait(f"SELECT x FROM `{P}.raw.events`")
        bq_server.client().query_and_wait(
            f"SELECT x FROM `{P}.raw.events` WHERE _PARTITIONTIME >= '2026-01-01'"
        )


def test_static_partition_map_needs_no_lookup(games: LocalBigQuery, telemetry: Telemetry) -> None:
    settings = Settings(bigquery=Mode.ENFORCE, bq_partition_columns={f"{P}.nba.games": "game_date"})
    with instrumented(telemetry, settings), pytest.raises(UnpartitionedQueryError):
        games.client().query_and_wait(UNFILTERED)
    assert games.requests.of("tables.get") == []


def test_lookups_are_cached(games: LocalBigQuery, telemetry: Telemetry) -> None:
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)):
        for _ in range(5):
            games.client().query_and_wait(UNFILTERED)
    assert len(games.requests.of("tables.get")) == 1


@pytest.mark.parametrize("status", [403, 404, 500])
@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_failed_table_lookup_fails_open(
    games: LocalBigQuery, telemetry: Telemetry, status: int, mode: str
) -> None:
    games.add_rule(endpoint="tables.get", status=status)
    with instrumented(telemetry, Settings(bigquery=mode)) as instrumentor:
        assert [tuple(r) for r in games.client().query_and_wait(UNFILTERED)] == [(1,)]
        # The lookup runs in the background (observe never waits for it): let it end.
        assert instrumentor.guard is not None and instrumentor.guard.partitions.settled(10)
        assert [tuple(r) for r in games.client().query_and_wait(UNFILTERED)] == [(1,)]
        assert instrumentor.guard.partitions.settled(10)
    assert len(games.requests.of("tables.get")) == 1  # the failure is cached too
    attributes = dict(telemetry.client_spans()[0].attributes or {})
    assert attributes["bastion.outcome"] == "ok"
    assert "bastion.bq.unfiltered_tables" not in attributes


def test_slow_table_lookup_does_not_hold_the_query(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    games.add_rule(endpoint="tables.get", delay_seconds=2.0)
    settings = Settings(bigquery=Mode.ENFORCE, bq_table_lookup_budget_seconds=0.2)
    with instrumented(telemetry, settings):
        started = time.monotonic()
        assert [tuple(r) for r in games.client().query_and_wait(UNFILTERED)] == [(1,)]
        assert time.monotonic() - started < 1.5  # the budget (0.2 s), not the 2 s lookup
        # The lookup finishes in the background and judges the next query.
        until = time.monotonic() + 5
        while games.requests.of("tables.get") == [] and time.monotonic() < until:
            time.sleep(0.05)
        time.sleep(0.1)
        with pytest.raises(UnpartitionedQueryError):
            games.client().query_and_wait(UNFILTERED)


def test_retries_of_a_failing_call_end_at_the_deadline(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    from google.api_core.exceptions import RetryError

    bq_server.add_rule(endpoint="jobs.insert", status=503)  # retryable, forever
    settings = Settings(bigquery=Mode.ENFORCE, bq_deadline_margin_seconds=0.5)
    started = time.monotonic()
    with (
        instrumented(telemetry, settings),
        deadline.scope(2.5),
        pytest.raises((RetryError, DeadlineExceeded)),
    ):
        bq_server.client().query(SLOW).result()  # alone, retried for 600 s
    # Alone the retry goes on for 600 s; capped it stops near the 2 s budget (the bound
    # is loose because this machine's two cores are shared).
    assert time.monotonic() - started < 10
    assert len(bq_server.requests.of("jobs.insert")) >= 2  # it did retry, within the budget
    assert (telemetry.only_span().attributes or {})["bastion.outcome"] in ("timeout", "refused")


@pytest.mark.parametrize("path", list(PATHS))
def test_slow_job_stopped_at_its_class_timeout_without_caller_values(
    bq_server: LocalBigQuery, telemetry: Telemetry, path: str
) -> None:
    # No explicit job timeout: jobTimeoutMs (server) and the wait (client) are both the
    # class's 1 s, so whichever acts first stops the job; either way it ends at ~1 s.
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    settings = Settings(bigquery=Mode.ENFORCE, bq_timeout_read=1.0)
    with instrumented(telemetry, settings), pytest.raises(Exception) as raised:
        PATHS[path](bq_server.client(), SLOW)
    (created,) = bq_server.requests.jobs_created()
    assert int(created["jobTimeoutMs"]) == 1000
    job_id = str((telemetry.only_span().attributes or {})["bastion.bq.job_id"])
    job = bq_server.jobs.get(P, job_id)
    assert job.error is not None and job.error.reason in ("timeout", "stopped")
    assert job.ended - job.created < 10
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.outcome"] in ("timeout", "cancelled"), raised.value
    assert telemetry.counter("bastion.bigquery.timeouts") == 1
    # Either way a refusal protect() answers with a 504, of the class the library
    # raises (the DB-API wraps the server's error in its DatabaseError: not one).
    error = raised.value
    if path != "dbapi" or isinstance(error, TimeoutError):
        assert isinstance(error, QueryTimeoutRefusal), repr(error)
        assert isinstance(error, (ClassTimeoutError, GoogleAPICallError)), repr(error)
    if isinstance(error, GoogleAPICallError):
        assert error.errors[0]["reason"] == "timeout"  # the library's error, as it was
