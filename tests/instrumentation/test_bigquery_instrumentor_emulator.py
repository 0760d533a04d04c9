"""The query-path suite against bqemulator 1.4.0 (DuckDB-backed, written by others),
through the real client over HTTP: one CLIENT span per logical operation, the
statement types, partition checks from its tables.get, and no caller breakage.

bqemulator runs jobs synchronously and reports no byte or slot statistics, so the
timing and statistics behaviours are tested against the project's own server only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from google.cloud import bigquery
from google.cloud.bigquery import dbapi
from google.cloud.bigquery.client import Client

from bastion.instrumentation.bigquery import UnpartitionedQueryError
from bastion.instrumentation.bigquery._operation import Operation
from bastion.settings import Mode, Settings
from tests.apps.bigquery_harness import Telemetry, instrumented

# The DB-API asks for the BigQuery Storage client, which is not installed: a warning
# of the library, not of the guard.
pytestmark = pytest.mark.filterwarnings("ignore:Cannot create BigQuery Storage client")

P = "test-project"


@pytest.fixture
def dataset(bqemulator_client: Client) -> str:
    name = f"nba_{uuid.uuid4().hex[:8]}"
    bqemulator_client.create_dataset(name)
    table = bigquery.Table(
        f"{P}.{name}.games",
        schema=[
            bigquery.SchemaField("game_date", "DATE"),
            bigquery.SchemaField("player", "STRING"),
            bigquery.SchemaField("points", "INT64"),
        ],
    )
    table.time_partitioning = bigquery.TimePartitioning(field="game_date")
    bqemulator_client.create_table(table)
    errors = bqemulator_client.insert_rows_json(
        table,
        [
            {"game_date": "2026-01-01", "player": "a", "points": 10},
            {"game_date": "2026-01-02", "player": "b", "points": 20},
        ],
    )
    assert errors == []
    return name


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


def _result(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query(sql).result()]


def _query_and_wait(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in client.query_and_wait(sql)]


def _dbapi(client: Client, sql: str) -> list[tuple[Any, ...]]:
    cursor = dbapi.connect(client).cursor()
    cursor.execute(sql)
    return [tuple(r) for r in cursor.fetchall()] if cursor.description else []


PATHS: dict[str, Callable[[Client, str], list[tuple[Any, ...]]]] = {
    "query.result": _result,
    "query_and_wait": _query_and_wait,
    "dbapi": _dbapi,
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("mode", [Mode.OBSERVE, Mode.ENFORCE], ids=str)
def test_statement_types_one_span_each(
    bqemulator_client: Client, dataset: str, telemetry: Telemetry, path: str, mode: str
) -> None:
    games = f"`{P}.{dataset}.games`"
    statements = [
        ("SELECT", f"SELECT player, points FROM {games} WHERE game_date = '2026-01-02'"),
        (
            "INSERT",
            f"INSERT INTO {games} (game_date, player, points) VALUES ('2026-01-03', 'c', 5)",
        ),
        ("UPDATE", f"UPDATE {games} SET points = points + 1 WHERE game_date = '2026-01-03'"),
        (
            "MERGE",
            f"MERGE {games} T USING (SELECT DATE '2026-01-03' AS d, 'c' AS p) S "
            "ON T.game_date = '2026-01-03' AND T.player = S.p "
            "WHEN MATCHED THEN UPDATE SET points = 0",
        ),
        ("CREATE_TABLE", f"CREATE TABLE `{P}.{dataset}.t_{path.replace('.', '_')}` (x INT64)"),
    ]
    with instrumented(telemetry, Settings(bigquery=mode)):
        first = PATHS[path](bqemulator_client, statements[0][1])
        for _, sql in statements[1:]:
            PATHS[path](bqemulator_client, sql)
    assert first == [("b", 20)]
    spans = telemetry.client_spans()
    assert len(spans) == len(statements)
    for span, (statement_type, _) in zip(spans, statements, strict=True):
        attributes = dict(span.attributes or {})
        assert attributes["bastion.bq.statement_type"] == statement_type
        assert attributes["db.operation.name"] == statement_type
        assert attributes["bastion.outcome"] == "ok"
        assert attributes["bastion.bq.job_id"]
        assert span.name.startswith(statement_type)
    final = [
        tuple(r)
        for r in bqemulator_client.query_and_wait(
            f"SELECT points FROM {games} WHERE game_date = '2026-01-03'"
        )
    ]
    assert final == [(0,)]  # INSERT, UPDATE, MERGE all ran as written


def test_insert_rows_json_one_span(
    bqemulator_client: Client, dataset: str, telemetry: Telemetry
) -> None:
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        errors = bqemulator_client.insert_rows_json(
            f"{P}.{dataset}.games", [{"game_date": "2026-01-04", "player": "d", "points": 1}]
        )
    assert errors == []
    assert telemetry.only_span().name == f"insertAll {P}.{dataset}.games"


def test_partition_check_uses_the_emulators_tables_get(
    bqemulator_client: Client, dataset: str, telemetry: Telemetry
) -> None:
    unfiltered = f"SELECT COUNT(*) FROM `{P}.{dataset}.games`"
    with instrumented(telemetry, Settings(bigquery=Mode.OBSERVE)) as instrumentor:
        # Observe does not wait for the lookup (Bastion's own client, in the
        # background): the first query runs unjudged, the next one is judged.
        assert _query_and_wait(bqemulator_client, unfiltered) == [(2,)]
        assert instrumentor.guard is not None and instrumentor.guard.partitions.settled(10)
        telemetry.clear()
        assert _query_and_wait(bqemulator_client, unfiltered) == [(2,)]
    event = telemetry.only_span().events[0]
    assert dict(event.attributes or {})["bastion.bq.partition_column"] == "game_date"
    telemetry.clear()
    with (
        instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)),
        pytest.raises(UnpartitionedQueryError, match="game_date"),
    ):
        _query_and_wait(bqemulator_client, unfiltered)


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected fault")


@pytest.mark.parametrize("site", ["describe", "prepare", "finish"])
def test_injected_faults_break_no_query(
    bqemulator_client: Client,
    dataset: str,
    telemetry: Telemetry,
    monkeypatch: pytest.MonkeyPatch,
    site: str,
) -> None:
    # Fault injection by monkeypatching one step of the guard to raise.
    monkeypatch.setattr(Operation, site, _boom)
    sql = f"SELECT points FROM `{P}.{dataset}.games` WHERE game_date = '2026-01-01'"
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        for run in PATHS.values():
            assert run(bqemulator_client, sql) == [(10,)]


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        call()
        return "ok"
    except Exception as error:
        return type(error)


def test_loads_one_span_each_and_same_outcome(
    bqemulator_client: Client, dataset: str, telemetry: Telemetry
) -> None:
    # bqemulator cannot read gs:// and answers uploads with 400: the guard must still
    # make one span per operation and leave the caller's outcome as it is.
    destination = f"{P}.{dataset}.loaded"
    config = bigquery.LoadJobConfig(
        schema=[bigquery.SchemaField("x", "STRING")], source_format="CSV"
    )
    calls: list[Callable[[], Any]] = [
        lambda: bqemulator_client.load_table_from_uri(
            "gs://bucket/x.csv", destination, job_config=config, retry=None
        ).result(retry=None),
        lambda: bqemulator_client.load_table_from_json([{"x": "a"}], destination).result(
            retry=None
        ),
    ]
    plain = [_outcome(c) for c in calls]
    with instrumented(telemetry, Settings(bigquery=Mode.ENFORCE)):
        guarded = [_outcome(c) for c in calls]
    assert guarded == plain
    spans = telemetry.client_spans()
    assert [s.name for s in spans] == [f"LOAD {destination}"] * 2
    for span, outcome in zip(spans, plain, strict=True):
        expected = "ok" if outcome == "ok" else "error"
        assert (span.attributes or {})["bastion.outcome"] == expected
