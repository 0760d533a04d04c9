"""Never break the caller: fault injection into the guard, bad input, and the partition
cache's bounds.

The fault injection is monkeypatching: each test replaces one internal step of the
guard (the analysis, the table lookup, the span code, the statistics reader, the
metrics, the request rewriting) with a function that raises, then runs real queries
through the real client against the local server. Every query must still succeed, as
the caller wrote it, and the failure must be logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import dbapi
from google.cloud.bigquery.client import Client

from bastion.instrumentation.bigquery import BigQueryInstrumentor
from bastion.instrumentation.bigquery._operation import Operation
from bastion.instrumentation.bigquery._partitions import PartitionCache
from bastion.instrumentation.bigquery._spans import Statistics
from bastion.localbq import LocalBigQuery
from bastion.middleware import deadline
from bastion.settings import Mode, Settings
from tests.apps.bigquery_harness import Telemetry, instrumented

# The DB-API asks for the BigQuery Storage client, which is not installed: a warning
# of the library, not of the guard.
pytestmark = pytest.mark.filterwarnings("ignore:Cannot create BigQuery Storage client")

P = "test-project"
FILTERED = f"SELECT points FROM `{P}.nba.games` WHERE game_date = '2026-01-01'"


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


@pytest.fixture
def enforced(telemetry: Telemetry) -> Iterator[BigQueryInstrumentor]:
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)) as instrumentor:
        yield instrumentor


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


def _workload(client: Client) -> list[Any]:
    out: list[Any] = [[tuple(r) for r in client.query(FILTERED).result()]]
    out.append([tuple(r) for r in client.query_and_wait(FILTERED)])
    cursor = dbapi.connect(client).cursor()
    cursor.execute(FILTERED)
    out.append([tuple(r) for r in cursor.fetchall()])
    out.append(client.insert_rows_json(f"{P}.nba.games", [{"game_date": "2026-01-02"}]))
    load = client.load_table_from_json([{"game_date": "2026-01-03"}], f"{P}.nba.games")
    out.append(load.result().output_rows)
    return out


EXPECTED = [[(3,)], [(3,)], [(3,)], [], 1]


def _fault_sites(instrumentor: BigQueryInstrumentor) -> dict[str, tuple[Any, str]]:
    guard = instrumentor.guard
    assert guard is not None
    return {
        "analyze": (guard, "analyze"),
        "table lookup": (guard.partitions, "resolve"),
        "span start": (guard.tracer, "start_span"),
        "span naming": (Operation, "describe"),
        "span end": (Operation, "finish"),
        "statistics": (Statistics, "read"),
        "request rewriting": (Operation, "prepare"),
        "metrics (histogram)": (guard.instruments.duration, "record"),
        "metrics (bytes billed)": (guard.instruments.bytes_billed, "record"),
    }


SITES = [
    "analyze",
    "table lookup",
    "span start",
    "span naming",
    "span end",
    "statistics",
    "request rewriting",
    "metrics (histogram)",
    "metrics (bytes billed)",
]


@pytest.mark.parametrize("site", SITES)
def test_injected_fault_never_reaches_the_caller(
    games: LocalBigQuery,
    enforced: BigQueryInstrumentor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    site: str,
) -> None:
    owner, attribute = _fault_sites(enforced)[site]
    monkeypatch.setattr(owner, attribute, _boom)
    caplog.set_level(logging.WARNING, "bastion.bigquery")
    client = games.client()
    assert _workload(client) == EXPECTED
    assert _workload(client) == EXPECTED  # twice: still fine, and logged once only
    logged = [r for r in caplog.records if "instrumentation error" in r.getMessage()]
    messages = {r.getMessage() for r in logged}
    assert len(logged) == len(messages)  # once per (site, error)
    assert logged and all("injected fault" in m for m in messages)


def test_counter_and_log_faults_in_observe(
    games: LocalBigQuery, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)) as instrumentor:
        assert instrumentor.guard is not None
        monkeypatch.setattr(instrumentor.guard.instruments.unpartitioned, "add", _boom)
        monkeypatch.setattr(instrumentor.guard, "report_unfiltered", _boom)
        unfiltered = f"SELECT COUNT(*) FROM `{P}.nba.games`"
        assert [tuple(r) for r in games.client().query_and_wait(unfiltered)] == [(1,)]
    assert (telemetry.only_span().attributes or {})["bastion.outcome"] == "ok"


def test_request_rewriting_fault_sends_the_callers_request(
    games: LocalBigQuery, enforced: BigQueryInstrumentor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Operation, "prepare", _boom)
    games.client().query(FILTERED).result()
    (config,) = games.requests.jobs_created()
    assert "jobTimeoutMs" not in config  # exactly as the caller wrote it


def test_analysis_fault_fails_open_under_analytics(
    games: LocalBigQuery,
    telemetry: Telemetry,
    enforced: BigQueryInstrumentor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert enforced.guard is not None
    monkeypatch.setattr(enforced.guard, "analyze", _boom)
    unfiltered = f"SELECT COUNT(*) FROM `{P}.nba.games`"
    assert [tuple(r) for r in games.client().query_and_wait(unfiltered)] == [(1,)]  # unjudged
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.bq.timeout_class"] == "analytics"
    assert attributes["bastion.bq.class_source"] == "unknown"
    assert attributes["bastion.outcome"] == "ok"


# --- bad input: the guard never raises an error of its own ------------------------------


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        result = call()
        return ("ok", [tuple(r) for r in result] if result is not None else None)
    except Exception as error:
        return ("raised", type(error))


NON_STRING_SQL: list[Any] = [None, 123, b"SELECT 1", ["SELECT 1"], object()]


@pytest.mark.parametrize("sql", NON_STRING_SQL, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_non_string_sql_behaves_as_without_the_guard(
    bq_server: LocalBigQuery, telemetry: Telemetry, sql: Any, mode: str
) -> None:
    client = bq_server.client()
    no_retry = {"retry": None, "job_retry": None}
    calls: list[Callable[[], Any]] = [
        lambda: client.query(sql, **no_retry).result(),
        lambda: client.query_and_wait(sql, **no_retry),
    ]
    plain = [_outcome(c) for c in calls]
    with instrumented(telemetry, Settings(bigquery=mode)):
        guarded = [_outcome(c) for c in calls]
    assert guarded == plain


def _odd_configs() -> dict[str, Any]:
    weird_labels = bigquery.QueryJobConfig()
    weird_labels._properties["labels"] = "not-a-dict"
    bad_timeout = bigquery.QueryJobConfig()
    bad_timeout._properties["jobTimeoutMs"] = "soon"
    odd_class = bigquery.QueryJobConfig(labels={"bastion-timeout-class": "forever"})
    return {
        "dry_run": bigquery.QueryJobConfig(dry_run=True),
        "load_config": bigquery.LoadJobConfig(),
        "default_dataset": bigquery.QueryJobConfig(default_dataset=f"{P}.nba"),
        "weird_labels": weird_labels,
        "bad_timeout": bad_timeout,
        "unknown_class_label": odd_class,
        "no_cache": bigquery.QueryJobConfig(use_query_cache=False),
    }


@pytest.mark.parametrize("name", list(_odd_configs()))
@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_odd_job_configs_behave_as_without_the_guard(
    games: LocalBigQuery, telemetry: Telemetry, name: str, mode: str
) -> None:
    client = games.client()
    sql = "SELECT points FROM games WHERE game_date = '2026-01-01'"
    if name != "default_dataset":
        sql = FILTERED
    no_retry = {"retry": None, "job_retry": None}  # a 500 is not retried for minutes
    calls: list[Callable[[], Any]] = [
        lambda: client.query(sql, job_config=_odd_configs()[name], **no_retry).result(),
        lambda: client.query_and_wait(sql, job_config=_odd_configs()[name], **no_retry),
    ]
    plain = [_outcome(c) for c in calls]
    settings = Settings(bigquery=mode, bq_cap_explicit_timeouts=True)
    with instrumented(telemetry, settings), deadline.scope(30):
        guarded = [_outcome(c) for c in calls]
    assert guarded == plain


# --- the partition cache: TTL, bounded size, one lookup in flight ------------------------
# A unit test of the cache logic: the fetch function stands in for tables.get (the
# tests above run the real tables.get against the local server).


class _Fetch:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.delay = delay
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, client: Any, table: str) -> str | None:
        with self.lock:
            self.calls.append(table)
        time.sleep(self.delay)
        if self.fail:
            raise PermissionError("403 Access Denied")
        return "day" if table.endswith("_p") else None


def _cache(fetch: _Fetch, **settings: Any) -> PartitionCache:
    return PartitionCache(Settings(**settings), fetch=fetch)


def test_cache_ttl_and_spelling() -> None:
    fetch = _Fetch()
    cache = _cache(fetch, bq_table_cache_ttl_seconds=0.2)
    assert cache.columns(None, ["p.d.t_p", "p.d.u"]) == {"p.d.t_p": "day"}
    assert cache.columns(None, ["P.D.T_P"]) == {"P.D.T_P": "day"}  # the caller's spelling
    assert sorted(fetch.calls) == ["p.d.t_p", "p.d.u"]
    time.sleep(0.3)
    cache.columns(None, ["p.d.t_p"])
    assert fetch.calls.count("p.d.t_p") == 2
    cache.close()


def test_cache_is_bounded() -> None:
    fetch = _Fetch()
    cache = _cache(fetch, bq_table_cache_size=2)
    for name in ("a", "b", "c"):
        cache.columns(None, [f"p.d.{name}_p"])
    assert cache.known("p.d.a_p") is None and cache.known("p.d.c_p") == "day"
    cache.columns(None, ["p.d.a_p"])
    assert fetch.calls.count("p.d.a_p") == 2
    cache.close()


def test_one_lookup_in_flight_per_table_and_budget() -> None:
    fetch = _Fetch(delay=0.5)
    cache = _cache(fetch, bq_table_lookup_budget_seconds=0.05)
    answers: list[dict[str, str]] = []
    threads = [
        threading.Thread(target=lambda: answers.append(cache.columns(None, ["p.d.t_p"])))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [{}] * 8  # none waited for the slow lookup
    assert fetch.calls == ["p.d.t_p"]
    time.sleep(0.6)
    assert cache.columns(None, ["p.d.t_p"]) == {"p.d.t_p": "day"}
    cache.close()


def test_failed_lookup_is_unknown_and_cached(caplog: pytest.LogCaptureFixture) -> None:
    fetch = _Fetch(fail=True)
    cache = _cache(fetch)
    assert cache.columns(None, ["p.d.t_p"]) == {}
    assert cache.columns(None, ["p.d.t_p"]) == {}
    assert fetch.calls == ["p.d.t_p"]
    assert sum("tables.get p.d.t_p failed" in r.getMessage() for r in caplog.records) == 1
    cache.close()


def test_static_map_preloads() -> None:
    fetch = _Fetch()
    cache = _cache(fetch, bq_partition_columns={"p.d.big": "_PARTITIONTIME"})
    assert cache.columns(None, ["P.D.BIG"]) == {"P.D.BIG": "_PARTITIONTIME"}
    assert fetch.calls == []


@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_odd_tables_and_jobs_behave_as_without_the_guard(
    games: LocalBigQuery, telemetry: Telemetry, mode: str
) -> None:
    client = games.client()
    broken_table = bigquery.Table(f"{P}.nba.games")
    broken_table._properties.pop("tableReference")  # its identity properties are None

    class Raising:
        @property
        def project(self) -> str:
            raise RuntimeError("a property that raises")

    calls: list[Callable[[], Any]] = [
        lambda: client.insert_rows_json(object(), [{"x": 1}], retry=None),
        lambda: client.insert_rows_json(broken_table, [{"x": 1}], retry=None),
        lambda: client.insert_rows_json(Raising(), [{"x": 1}], retry=None),
        lambda: client.load_table_from_uri("gs://b/x.csv", Raising(), retry=None),
        lambda: client.load_table_from_uri("gs://b/x.csv", 123, retry=None),
        lambda: client.load_table_from_json([{"x": 1}], object()),
        lambda: client.get_job("no-such-job", retry=None).result(),
    ]
    plain = [_outcome(c) for c in calls]
    with instrumented(telemetry, Settings(bigquery=mode)):
        guarded = [_outcome(c) for c in calls]
    assert guarded == plain
