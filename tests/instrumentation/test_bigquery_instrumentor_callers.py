"""What the caller sees of the BigQuery guard, beyond its decisions: no request on the
caller's client it did not ask for, the library's cancellation semantics for the
caller's own waits, the library's warnings attributed to the caller's line."""

from __future__ import annotations

import time
import warnings
from typing import Any

import pytest
import requests
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from bastion.localbq import LocalBigQuery
from bastion.settings import Mode, Settings
from tests.apps.bigquery_harness import Telemetry, instrumented

P = "test-project"
UNFILTERED = f"SELECT COUNT(*) AS n FROM `{P}.nba.games`"
SLOW = "SELECT 1 AS slow_marker"


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


class RecordingSession(requests.Session):
    """The caller's own HTTP session: every URL it was asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self.urls.append(f"{method!s} {url!s}")
        return super().request(method, url, *args, **kwargs)


def _client(bq: LocalBigQuery, session: requests.Session) -> bigquery.Client:
    return bigquery.Client(
        project=P,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bq.url),
        _http=session,
    )


# --- partition metadata: never on the caller's client or thread ---------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_partition_lookup_never_uses_the_callers_client(
    games: LocalBigQuery, telemetry: Telemetry, mode: str
) -> None:
    session = RecordingSession()
    client = _client(games, session)
    # A slow tables.get: observe must not wait for it (enforce waits its budget, 0.5 s).
    games.add_rule(endpoint="tables.get", delay_seconds=1.0)
    with instrumented(telemetry, Settings(bigquery=mode)) as instrumentor:
        assert [tuple(r) for r in client.query_and_wait(UNFILTERED)] == [(1,)]
        assert instrumentor.guard is not None
        assert instrumentor.guard.partitions.settled(10.0)
        if mode == "observe":
            assert [tuple(r) for r in client.query_and_wait(UNFILTERED)] == [(1,)]
    assert not [u for u in session.urls if "/tables/" in u], session.urls
    assert len(games.requests.of("tables.get")) == 1  # made by Bastion's own client
    first = dict(telemetry.client_spans()[0].attributes or {})
    assert first["bastion.bq.unjudged"] == "table_lookup_pending"
    assert "bastion.bq.unfiltered_tables" not in first
    counted = {"bastion.reason": "table_lookup_pending", "bastion.mode": mode}
    assert telemetry.counter("bastion.bigquery.unjudged_queries", **counted) == 1
    if mode == "observe":  # the answer, once in, judges the next query
        second = dict(telemetry.client_spans()[1].attributes or {})
        assert second["bastion.bq.unfiltered_tables"] == (f"{P}.nba.games",)
        assert "bastion.bq.unjudged" not in second


# --- cancellation follows the library: the caller's own wait ends the wait only ----------


@pytest.mark.slow
def test_callers_polling_loop_gets_its_rows_in_enforce(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=1.5)
    client = bq_server.client()
    rows = None
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        job = client.query(SLOW)
        for _ in range(40):
            try:
                rows = [tuple(r) for r in job.result(timeout=0.3)]
                break
            except TimeoutError:
                continue
    assert rows == [(1,)]
    assert bq_server.requests.of("jobs.cancel") == []
    (span,) = telemetry.client_spans()  # one operation across the caller's waits
    attributes = dict(span.attributes or {})
    assert attributes["bastion.outcome"] == "ok"
    assert attributes["bastion.bq.caller_waits_ended"] >= 1
    assert telemetry.counter("bastion.bigquery.cancellations") == 0


def test_observe_says_it_would_cancel_only_what_enforce_cancels(
    bq_server: LocalBigQuery, telemetry: Telemetry
) -> None:
    bq_server.add_rule(match="slow_marker", running_seconds=30)
    bq_server.default_wait_ms = 500  # BigQuery holds each poll 10 s; keep the test short
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)), pytest.raises(TimeoutError):
        bq_server.client().query(SLOW).result(timeout=0.3)
    attributes = dict(telemetry.client_spans()[0].attributes or {})
    assert "bastion.bq.would_cancel" not in attributes
    assert bq_server.requests.of("jobs.cancel") == []


# --- warnings of the library keep the caller's attribution ------------------------------


@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_library_warning_points_at_the_callers_line(
    bq_server: LocalBigQuery, telemetry: Telemetry, mode: str
) -> None:
    client = bq_server.client()
    with (
        instrumented(telemetry, Settings(bigquery=mode)),
        warnings.catch_warnings(record=True) as seen,
    ):
        warnings.simplefilter("always")
        line = _line_after()
        client.query("SELECT 1", job_id=f"fixed-{mode}-{time.time_ns()}").result()
    (warning,) = [w for w in seen if issubclass(w.category, FutureWarning)]
    assert "job_retry must be explicitly set to None" in str(warning.message)
    assert (warning.filename, warning.lineno) == (__file__, line)


def _line_after() -> int:
    """The caller's next line number."""
    import sys

    return sys._getframe(1).f_lineno + 1
