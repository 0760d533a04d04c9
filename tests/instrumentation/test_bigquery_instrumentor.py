"""BigQueryInstrumentor against the project's local BigQuery server (real HTTP, the real
google-cloud-bigquery client): one CLIENT span per logical operation with the final
job statistics on every path, timeouts applied as computed (enforce) and nothing
changed (observe), per-call overrides, instrument/uninstrument."""

from __future__ import annotations

import functools
import gc
import io
import json
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import dbapi
from google.cloud.bigquery.client import Client
from google.cloud.bigquery.job.base import _AsyncJob
from google.cloud.bigquery.job.query import QueryJob
from opentelemetry.instrumentation.utils import suppress_instrumentation

from bastion.instrumentation.bigquery import BigQueryInstrumentor, timeout_class
from bastion.localbq import LocalBigQuery
from bastion.middleware import deadline
from bastion.settings import Mode, Settings
from tests.apps.bigquery_harness import Telemetry, instrumented

# The DB-API asks for the BigQuery Storage client, which is not installed: a warning
# of the library, not of the guard.
pytestmark = pytest.mark.filterwarnings("ignore:Cannot create BigQuery Storage client")

P = "test-project"
FILTERED = f"SELECT player, points FROM `{P}.nba.games` WHERE game_date = '2026-01-02'"


def _games(bq: LocalBigQuery) -> None:
    bq.create_table(
        "nba.games",
        [("game_date", "DATE"), ("player", "STRING"), ("points", "INT64")],
        partition_field="game_date",
    )
    bq.insert_rows(
        "nba.games",
        [
            {"game_date": f"2026-01-0{d}", "player": p, "points": d * 10 + i}
            for d in (1, 2, 3)
            for i, p in enumerate("abc")
        ],
    )


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest.fixture
def games(bq_server: LocalBigQuery) -> LocalBigQuery:
    _games(bq_server)
    return bq_server


@pytest.fixture
def enforce(telemetry: Telemetry) -> Iterator[BigQueryInstrumentor]:
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)) as instrumentor:
        yield instrumentor


def _stats_of_server_job(bq: LocalBigQuery, job_id: str) -> Any:
    return bq.jobs.get(P, job_id)


# --- every path: exactly one CLIENT span with final statistics --------------------------


def _via_query_result(client: Client, sql: str) -> list[Any]:
    return list(client.query(sql).result())


def _via_query_and_wait(client: Client, sql: str) -> list[Any]:
    return list(client.query_and_wait(sql))


def _via_query_and_wait_jobs_insert(client: Client, sql: str) -> list[Any]:
    # A destination table is not in the jobs.query allow-list: jobs.insert + polling.
    config = bigquery.QueryJobConfig(
        destination=f"{P}.nba.copy", write_disposition="WRITE_TRUNCATE"
    )
    return list(client.query_and_wait(sql, job_config=config))


def _via_dbapi(client: Client, sql: str) -> list[Any]:
    cursor = dbapi.connect(client).cursor()
    cursor.execute(sql)
    return list(cursor.fetchall())


def _via_dbapi_job_id(client: Client, sql: str) -> list[Any]:
    cursor = dbapi.connect(client).cursor()
    cursor.execute(sql, job_id="bastion-dbapi-job")
    return list(cursor.fetchall())


QUERY_PATHS = {
    "query.result": _via_query_result,
    "query_and_wait": _via_query_and_wait,
    "query_and_wait.jobs_insert": _via_query_and_wait_jobs_insert,
    "dbapi": _via_dbapi,
    "dbapi.job_id": _via_dbapi_job_id,
}


@pytest.mark.parametrize("path", list(QUERY_PATHS))
@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_query_paths_one_client_span_with_final_statistics(
    games: LocalBigQuery, telemetry: Telemetry, path: str, mode: str
) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=mode)):
        rows = QUERY_PATHS[path](client, FILTERED)
    assert sorted(tuple(r) for r in rows) == [("a", 20), ("b", 21), ("c", 22)]
    span = telemetry.only_span()
    attributes = dict(span.attributes or {})
    assert span.name == f"SELECT {P}.nba.games"
    assert attributes["db.system.name"] == "gcp.bigquery"
    assert attributes["db.operation.name"] == "SELECT"
    assert attributes["db.query.summary"] == span.name
    assert attributes["db.namespace"] == P
    assert "db.query.text" not in attributes  # opt-in only
    assert attributes["bastion.bq.timeout_class"] == "read"
    assert attributes["bastion.outcome"] == "ok"
    assert len(attributes["bastion.bq.query_hash"]) == 16
    job = _stats_of_server_job(games, str(attributes["bastion.bq.job_id"]))
    assert job.done and job.error is None
    # Final statistics, as the server reported them for that job.
    assert attributes["bastion.bq.bytes_processed"] == job.scan.bytes_processed > 0
    assert attributes["bastion.bq.bytes_billed"] >= 10 * 1024 * 1024  # 10 MB minimum
    assert attributes["bastion.bq.cache_hit"] is False
    assert attributes["bastion.bq.slot_ms"] >= 0
    assert attributes["bastion.bq.location"] == "US"
    # Its metric: one duration point for the class and outcome.
    assert telemetry.counter("bastion.bigquery.unpartitioned_queries") == 0
    durations = telemetry.metric_points("bastion.bigquery.duration")
    assert [(p.attributes["bastion.outcome"], p.count) for p in durations] == [("ok", 1)]


def test_dbapi_with_parameters_one_span_judged_filtered(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        cursor = dbapi.connect(client).cursor()
        cursor.execute(
            f"SELECT player FROM `{P}.nba.games` WHERE game_date = %(day)s", {"day": "2026-01-03"}
        )
        rows = sorted(r[0] for r in cursor.fetchall())
    assert rows == ["a", "b", "c"]
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.bq.kind"] == "dbapi"
    assert attributes["bastion.outcome"] == "ok"  # @day on the partition column: filtered
    assert "bastion.bq.unfiltered_tables" not in attributes


def test_dml_statistics_and_statement_type(games: LocalBigQuery, telemetry: Telemetry) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        client.query(
            f"UPDATE `{P}.nba.games` SET points = points + 1 WHERE game_date = '2026-01-01'"
        ).result()
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.bq.statement_type"] == "UPDATE"
    assert attributes["bastion.bq.timeout_class"] == "write"
    assert attributes["bastion.bq.dml_rows"] == 3


def test_cache_hit_is_reported(games: LocalBigQuery, telemetry: Telemetry) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)):
        client.query_and_wait(FILTERED)
        client.query_and_wait(FILTERED)
    first, second = telemetry.client_spans()
    assert (first.attributes or {})["bastion.bq.cache_hit"] is False
    assert (second.attributes or {})["bastion.bq.cache_hit"] is True


def test_insert_rows_json_one_span(games: LocalBigQuery, telemetry: Telemetry) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        errors = client.insert_rows_json(
            f"{P}.nba.games",
            [{"game_date": "2026-01-04", "player": "d", "points": 1}, {"bad": 1}],
        )
    # BigQuery's answer, untouched: the bad row invalid, the good one "stopped".
    assert [e["errors"][0]["reason"] for e in errors] == ["stopped", "invalid"]
    span = telemetry.only_span()
    attributes = dict(span.attributes or {})
    assert span.name == f"insertAll {P}.nba.games"
    assert attributes["db.operation.batch.size"] == 2
    assert attributes["bastion.bq.insert_errors"] == 2
    assert attributes["bastion.bq.http_timeout_seconds"] == 120.0  # class write


def test_insert_rows_is_one_span_not_two(games: LocalBigQuery, telemetry: Telemetry) -> None:
    client = games.client()
    table = client.get_table(f"{P}.nba.games")
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)):
        assert client.insert_rows(table, [("2026-01-05", "e", 2)]) == []
    assert telemetry.only_span().name == f"insertAll {P}.nba.games"


def test_load_from_uri_one_span_with_final_statistics(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        job = client.load_table_from_uri(
            "gs://bucket/games-*.csv",
            f"{P}.nba.loaded",
            job_config=bigquery.LoadJobConfig(
                schema=[bigquery.SchemaField("x", "STRING")], source_format="CSV"
            ),
        )
        job.result()
    span = telemetry.only_span()
    attributes = dict(span.attributes or {})
    assert span.name == f"LOAD {P}.nba.loaded"
    assert attributes["bastion.bq.job_id"] == job.job_id
    assert attributes["bastion.outcome"] == "ok"
    sent = games.requests.of("jobs.insert")[-1].body["configuration"]
    assert sent["jobTimeoutMs"] == 120_000  # class write, no deadline


@pytest.mark.parametrize("how", ["json", "file"])
def test_uploads_get_one_span(games: LocalBigQuery, telemetry: Telemetry, how: str) -> None:
    client = games.client()
    rows = [{"game_date": "2026-01-06", "player": "f", "points": 7}]
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        if how == "json":
            job = client.load_table_from_json(rows, f"{P}.nba.games")
        else:
            data = io.BytesIO("\n".join(json.dumps(r) for r in rows).encode())
            config = bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON")
            job = client.load_table_from_file(data, f"{P}.nba.games", job_config=config)
        job.result()
    span = telemetry.only_span()
    assert span.name == f"LOAD {P}.nba.games"
    assert (span.attributes or {})["bastion.bq.http_timeout_seconds"] == 120.0
    assert (span.attributes or {})["bastion.outcome"] == "ok"
    assert ("f", 7) in [(r[1], r[2]) for r in games.rows("nba.games")]


def test_job_never_waited_on_still_ends_its_span(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)):
        client.query(FILTERED)  # dropped at once: the span ends when the job is collected
        gc.collect()
    span = telemetry.only_span()
    assert (span.attributes or {})["bastion.bq.detached"] is True


def test_get_job_then_result_is_one_span(games: LocalBigQuery, telemetry: Telemetry) -> None:
    client = games.client()
    job_id = client.query(FILTERED).job_id  # not instrumented yet
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)):
        list(client.get_job(job_id).result())
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.bq.kind"] == "result"
    assert attributes["bastion.bq.job_id"] == job_id


def test_query_text_is_opt_in(games: LocalBigQuery, telemetry: Telemetry) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE, bq_capture_query_text=True)):
        client.query_and_wait(FILTERED)
    assert (telemetry.only_span().attributes or {})["db.query.text"] == FILTERED


def _insert_rows_json(client: Client) -> Any:
    row = {"game_date": "2026-01-04", "player": "d", "points": 1}
    return client.insert_rows_json(f"{P}.nba.games", [row])


LIBRARY_SPAN_PATHS: dict[str, Any] = {
    **{name: functools.partial(via, sql=FILTERED) for name, via in QUERY_PATHS.items()},
    "insert_rows_json": _insert_rows_json,
}


def _library_spans(telemetry: Telemetry, ours: Any) -> list[Any]:
    """The client library's own spans (``BigQuery.*``, INTERNAL), ours excluded."""
    return [
        s
        for s in telemetry.spans.get_finished_spans()
        if s is not ours and s.name.startswith("BigQuery.")
    ]


@pytest.fixture
def library_tracer(telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace

    # The client's own spans use the global provider; point it at ours for this test.
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: telemetry.tracer_provider)


@pytest.mark.parametrize("path", list(LIBRARY_SPAN_PATHS))
def test_library_spans_replaced_by_the_one_client_span(
    games: LocalBigQuery, telemetry: Telemetry, library_tracer: None, path: str
) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE, bq_library_spans="replace")):
        LIBRARY_SPAN_PATHS[path](client)
    ours = telemetry.only_span()
    if path in QUERY_PATHS:  # final statistics, which the library's spans never carry
        assert (ours.attributes or {})["bastion.bq.bytes_processed"] > 0
    # Nothing else at all: no BigQuery.query / jobs.insert / getJob / getQueryResults,
    # and no BigQuery.getTable of the guard's own partition lookup thread.
    assert [s.name for s in telemetry.spans.get_finished_spans() if s is not ours] == []


@pytest.mark.parametrize("path", list(LIBRARY_SPAN_PATHS))
def test_library_spans_kept_as_children_of_the_client_span(
    games: LocalBigQuery, telemetry: Telemetry, library_tracer: None, path: str
) -> None:
    client = games.client()
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE, bq_library_spans="keep")):
        LIBRARY_SPAN_PATHS[path](client)
    ours = telemetry.only_span()
    internal = _library_spans(telemetry, ours)
    assert internal, "the client library made no spans of its own"
    # Only the operation's REST calls: the guard's tables.get is never traced.
    assert "BigQuery.getTable" not in {s.name for s in internal}
    assert all(s.parent is not None and s.parent.span_id == ours.context.span_id for s in internal)


@pytest.mark.parametrize("library_spans", ["keep", "replace"])
def test_library_spans_outside_an_operation_are_the_librarys(
    games: LocalBigQuery, telemetry: Telemetry, library_tracer: None, library_spans: str
) -> None:
    from bastion.instrumentation.bigquery._partitions import fetch_partition_column

    client = games.client()
    settings = Settings(bigquery=Mode.OBSERVE, bq_library_spans=library_spans)
    with instrumented(telemetry, settings):
        client.get_table(f"{P}.nba.games")  # the caller's own call: the library's span
        # What the guard's lookup thread runs: suppressed, so no orphan root span.
        assert fetch_partition_column(client, f"{P}.nba.games") == "game_date"
    assert [s.name for s in telemetry.spans.get_finished_spans()] == ["BigQuery.getTable"]


# --- enforce: timeouts as computed; explicit values kept; observe changes nothing --------


def _configs(bq: LocalBigQuery) -> list[dict[str, Any]]:
    return bq.requests.jobs_created()


@pytest.mark.parametrize("path", ["query.result", "query_and_wait"])
def test_enforce_sends_job_timeout_and_bytes_cap(
    games: LocalBigQuery, telemetry: Telemetry, path: str
) -> None:
    settings = Settings(
        bigquery=Mode.ENFORCE, bq_timeout_read=42.0, bq_max_bytes_billed_read=50 * 1024 * 1024
    )
    with instrumented(telemetry, settings):
        QUERY_PATHS[path](games.client(), FILTERED)
    (config,) = _configs(games)
    assert config["jobTimeoutMs"] in (42_000, "42000")
    assert config["query"]["maximumBytesBilled"] == str(50 * 1024 * 1024)
    assert config["query"].get("useQueryCache") in (None, True)  # left on
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.bq.job_timeout_ms"] == 42_000


def test_enforce_bytes_cap_refusal_is_the_servers(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    from google.api_core.exceptions import BadRequest

    settings = Settings(bigquery=Mode.ENFORCE, bq_max_bytes_billed_read=1024)
    with instrumented(telemetry, settings), pytest.raises(BadRequest, match="bytes billed"):
        games.client().query_and_wait(FILTERED)
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.outcome"] == "error"
    assert attributes["error.type"] == "google.api_core.exceptions.BadRequest"


def test_job_timeout_follows_the_deadline(games: LocalBigQuery, telemetry: Telemetry) -> None:
    settings = Settings(bigquery=Mode.ENFORCE, bq_deadline_margin_seconds=1.0)
    with instrumented(telemetry, settings), deadline.scope(6.0):
        games.client().query(FILTERED).result()
    (config,) = _configs(games)
    assert 4_500 <= int(config["jobTimeoutMs"]) <= 5_000  # 6 s - 1 s margin, minus elapsed
    attributes = dict(telemetry.only_span().attributes or {})
    assert attributes["bastion.bq.bound_by"] == "deadline"
    assert attributes["bastion.bq.wait_bound_by"] == "deadline"
    assert attributes["bastion.bq.timeout_seconds"] <= 5.0


def test_explicit_caller_values_are_kept(
    games: LocalBigQuery, telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = games.client()
    timeouts: list[Any] = []
    send = client._connection.api_request

    def spy(*args: Any, **kwargs: Any) -> Any:  # observes the HTTP timeout; sends as is
        if "/tables/" not in kwargs["path"]:  # not the guard's own tables.get
            timeouts.append(kwargs.get("timeout"))
        return send(*args, **kwargs)

    monkeypatch.setattr(client._connection, "api_request", spy)
    config = bigquery.QueryJobConfig(job_timeout_ms=777_000, maximum_bytes_billed=123_456_789)
    settings = Settings(bigquery=Mode.ENFORCE, bq_max_bytes_billed_read=1024 * 1024 * 1024)
    with instrumented(telemetry, settings), deadline.scope(30.0):
        client.query(FILTERED, job_config=config, timeout=33.0).result(timeout=44.0)
    (sent,) = _configs(games)
    assert sent["jobTimeoutMs"] == "777000"
    assert sent["query"]["maximumBytesBilled"] == "123456789"
    assert timeouts[0] == 33.0  # jobs.insert: the caller's HTTP timeout
    assert all(t in (44.0, 120) for t in timeouts[1:])  # result(timeout=44): the library's


def test_explicit_values_capped_by_the_deadline_when_asked(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    config = bigquery.QueryJobConfig(job_timeout_ms=777_000)
    settings = Settings(bigquery=Mode.ENFORCE, bq_cap_explicit_timeouts=True)
    with instrumented(telemetry, settings), deadline.scope(5.0):
        games.client().query(FILTERED, job_config=config).result()
    (sent,) = _configs(games)
    assert 3_500 <= int(sent["jobTimeoutMs"]) <= 4_000


def _normalised_log(bq: LocalBigQuery) -> list[tuple[str, str, str]]:
    """Request log with the per-request random ids removed."""
    out = []
    for entry in bq.requests:
        body = json.loads(json.dumps(entry.body)) if entry.body is not None else None
        if isinstance(body, dict):
            body.pop("requestId", None)
            body.get("jobReference", {}).pop("jobId", None)
            for row in body.get("rows", []):
                row.pop("insertId", None)
        path = entry.path
        for marker in ("/jobs/", "/queries/"):
            if marker in path:
                path = (
                    path.split(marker)[0]
                    + marker
                    + "<id>"
                    + ("/cancel" if path.endswith("/cancel") else "")
                )
        params = {k: v for k, v in entry.params.items()}
        out.append((entry.method, path, json.dumps([body, params], sort_keys=True)))
    return out


def _workload(client: Client, settle: Callable[[], object] = lambda: None) -> list[Any]:
    """``settle`` runs before the unfiltered query: in observe, the guard judges a table
    once its background partition lookup (started by the first query) has answered."""
    results: list[Any] = []
    results.append(sorted(map(tuple, client.query(FILTERED).result())))
    results.append(sorted(map(tuple, client.query_and_wait(FILTERED.replace("01-02", "01-03")))))
    cursor = dbapi.connect(client).cursor()
    cursor.execute(FILTERED.replace("01-02", "01-01"))
    results.append(sorted(map(tuple, cursor.fetchall())))
    results.append(client.insert_rows_json(f"{P}.nba.games", [{"game_date": "2026-01-09"}]))
    unfiltered = f"SELECT COUNT(*) AS n FROM `{P}.nba.games`"
    settle()
    results.append([tuple(r) for r in client.query_and_wait(unfiltered)])
    return results


def test_observe_changes_no_request_and_no_outcome(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    client = games.client()
    client.get_table(f"{P}.nba.games")  # the guard's own tables.get, done up front
    games.requests.clear()
    plain = _workload(client)
    plain_log = _normalised_log(games)
    games.reset(data=True)  # same data, no query-cache hits the second time round
    _games(games)
    games.requests.clear()
    settings = Settings(bigquery=Mode.OBSERVE, bq_deadline_margin_seconds=0.5)
    with instrumented(telemetry, settings) as instrumentor, deadline.scope(20.0):
        assert instrumentor.guard is not None
        observed = _workload(client, lambda: instrumentor.guard.partitions.settled(10.0))
    observed_log = [
        e for e in _normalised_log(games) if "/tables/games" not in e[1] or "insertAll" in e[1]
    ]
    assert observed == plain
    assert observed_log == plain_log
    spans = telemetry.client_spans()
    assert len(spans) == 5
    would = dict(spans[0].attributes or {})
    assert 18.0 <= would["bastion.bq.would_timeout_seconds"] <= 19.5
    assert would["bastion.bq.would_bound_by"] == "deadline"
    assert "bastion.bq.job_timeout_ms" not in would
    unfiltered = dict(spans[-1].attributes or {})
    assert unfiltered["bastion.bq.unfiltered_tables"] == (f"{P}.nba.games",)


# --- the timeout class: per-call override, job label, service default -------------------


def test_class_override_context_manager(games: LocalBigQuery, telemetry: Telemetry) -> None:
    settings = Settings(bigquery=Mode.ENFORCE, bq_default_class="read")
    with instrumented(telemetry, settings), timeout_class("analytics"):
        games.client().query_and_wait(FILTERED)
    (config,) = _configs(games)
    assert config["jobTimeoutMs"] in (600_000, "600000")
    attributes = dict(telemetry.only_span().attributes or {})
    assert (attributes["bastion.bq.timeout_class"], attributes["bastion.bq.class_source"]) == (
        "analytics",
        "override",
    )


def test_class_from_job_label_and_service_default(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    config = bigquery.QueryJobConfig(labels={"bastion-timeout-class": "merge"})
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE, bq_default_class="write")):
        games.client().query_and_wait(FILTERED, job_config=config)
        games.client().query_and_wait(FILTERED.replace("01-02", "01-03"))
    labelled, default = (dict(s.attributes or {}) for s in telemetry.client_spans())
    assert (labelled["bastion.bq.timeout_class"], labelled["bastion.bq.class_source"]) == (
        "merge",
        "label",
    )
    assert (default["bastion.bq.timeout_class"], default["bastion.bq.class_source"]) == (
        "write",
        "service",
    )
    first, second = _configs(games)
    assert first["query"]["labels"]["bastion-timeout-class"] == "merge"  # label kept
    assert int(first["jobTimeoutMs"]) == 300_000 and int(second["jobTimeoutMs"]) == 120_000


def test_timeout_class_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown timeout class"), timeout_class("fast"):
        pass


# --- instrument / uninstrument -------------------------------------------------------------


def _originals() -> list[Any]:
    return [
        Client.__dict__[n]
        for n in (
            "_call_api",
            "query",
            "query_and_wait",
            "insert_rows_json",
            "load_table_from_uri",
            "load_table_from_file",
            "load_table_from_json",
        )
    ] + [
        QueryJob.__dict__["result"],
        _AsyncJob.__dict__["result"],
        dbapi.Cursor.__dict__["execute"],
    ]


def test_instrument_uninstrument_idempotent_and_restore(telemetry: Telemetry) -> None:
    before = _originals()
    instrumentor = BigQueryInstrumentor()
    settings = Settings(bigquery=Mode.OBSERVE)
    instrumentor.instrument(settings=settings, tracer_provider=telemetry.tracer_provider)
    instrumentor.instrument(settings=settings, tracer_provider=telemetry.tracer_provider)
    wrapped = _originals()
    assert all(w is not b for w, b in zip(wrapped, before, strict=True))
    assert all(getattr(w, "__wrapped__", None) is b for w, b in zip(wrapped, before, strict=True))
    instrumentor.uninstrument()
    instrumentor.uninstrument()
    assert all(a is b for a, b in zip(_originals(), before, strict=True))


def test_mode_off_wraps_nothing(games: LocalBigQuery, telemetry: Telemetry) -> None:
    before = _originals()
    with instrumented(telemetry, Settings(bigquery=Mode.OFF)):
        assert all(a is b for a, b in zip(_originals(), before, strict=True))
        games.client().query_and_wait(FILTERED)
    assert telemetry.client_spans() == []


def test_suppressed_instrumentation_makes_no_span(
    games: LocalBigQuery, telemetry: Telemetry
) -> None:
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)), suppress_instrumentation():
        games.client().query_and_wait(FILTERED)
    assert telemetry.client_spans() == []
    (config,) = _configs(games)
    assert "jobTimeoutMs" not in config


def test_entry_point_loads_the_instrumentor() -> None:
    (entry,) = [
        e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "bastion_bigquery"
    ]
    assert entry.load() is BigQueryInstrumentor
    assert BigQueryInstrumentor().instrumentation_dependencies() == (
        "google-cloud-bigquery >= 3.14",
    )
