"""bqemulator (DuckDB-backed, written by others) as a second opinion on the project's
local BigQuery server: the fixture starts it from its own virtualenv, and the same
statements through the same real client must give the same rows, statement types and
DML counts on both."""

from __future__ import annotations

import uuid

import pytest
from google.api_core import exceptions
from google.cloud import bigquery

from bastion.localbq import LocalBigQuery

SCHEMA = [
    bigquery.SchemaField("game_date", "DATE"),
    bigquery.SchemaField("player", "STRING"),
    bigquery.SchemaField("points", "INT64"),
    bigquery.SchemaField("minutes", "FLOAT64"),
]
ROWS = [
    {"game_date": "2026-01-01", "player": "a", "points": 10, "minutes": 30.5},
    {"game_date": "2026-01-01", "player": "b", "points": 25, "minutes": 35.0},
    {"game_date": "2026-01-02", "player": "a", "points": 14, "minutes": 31.0},
]

# (statement, whether it returns rows); {t} is the table, {s} a staging table.
STATEMENTS = [
    (
        "SELECT player, SUM(points) AS pts FROM {t} WHERE game_date >= '2026-01-01' "
        "GROUP BY player ORDER BY player",
        True,
    ),
    ("SELECT COUNT(*) AS n, MAX(minutes) AS m FROM {t} WHERE game_date = '2026-01-01'", True),
    ("SELECT player FROM {t} WHERE points BETWEEN 11 AND 30 ORDER BY points DESC", True),
    (
        "WITH best AS (SELECT player, MAX(points) AS m FROM {t} GROUP BY player) "
        "SELECT player, m FROM best ORDER BY player",
        True,
    ),
    (
        "SELECT player, points, ROW_NUMBER() OVER (PARTITION BY player ORDER BY points DESC)"
        " AS rn FROM {t} ORDER BY player, rn",
        True,
    ),
    (
        "SELECT DATE_ADD(game_date, INTERVAL 1 DAY) AS d, COUNT(*) AS n FROM {t} "
        "GROUP BY d ORDER BY d",
        True,
    ),
    (
        "SELECT player, IF(points > 12, 'hi', 'lo') AS band, COALESCE(minutes, 0) AS m "
        "FROM {t} ORDER BY player, band",
        True,
    ),
    ("SELECT COUNT(*) AS n FROM {t} WHERE player IN ('a', 'b') AND minutes >= 31", True),
    (
        "SELECT player, ROUND(STDDEV(minutes), 9) AS sd, ROUND(STDDEV_POP(points), 9) AS sdp, "
        "ROUND(VARIANCE(points), 9) AS v, ROUND(VAR_POP(minutes), 9) AS vp FROM {t} "
        "GROUP BY player ORDER BY player",
        True,
    ),
    ("UPDATE {t} SET points = points + 1 WHERE player = 'a'", False),
    (
        "INSERT INTO {t} (game_date, player, points, minutes) VALUES ('2026-01-03', 'c', 7, 12.0)",
        False,
    ),
    (
        "MERGE {t} T USING {s} S ON T.player = S.player AND T.game_date = S.game_date "
        "WHEN MATCHED THEN UPDATE SET points = S.points "
        "WHEN NOT MATCHED THEN INSERT (game_date, player, points, minutes) "
        "VALUES (S.game_date, S.player, S.points, S.minutes)",
        False,
    ),
    ("DELETE FROM {t} WHERE points < 10", False),
    ("SELECT game_date, player, points FROM {t} ORDER BY game_date, player", True),
]


def test_bqemulator_fixture_starts_and_answers_a_query(
    bqemulator_client: bigquery.Client,
) -> None:
    rows = list(bqemulator_client.query_and_wait("SELECT 1 + 1 AS two, 'x' AS s"))
    assert [(r.two, r.s) for r in rows] == [(2, "x")]


def _prepare(client: bigquery.Client, dataset: str) -> tuple[str, str]:
    client.create_dataset(dataset)
    table = bigquery.Table(f"{client.project}.{dataset}.games", schema=SCHEMA)
    table.time_partitioning = bigquery.TimePartitioning(field="game_date")
    client.create_table(table)
    staging = bigquery.Table(f"{client.project}.{dataset}.staging", schema=SCHEMA)
    client.create_table(staging)
    assert client.insert_rows_json(table, ROWS) == []
    assert (
        client.insert_rows_json(
            staging,
            [
                {"game_date": "2026-01-02", "player": "a", "points": 40, "minutes": 40.0},
                {"game_date": "2026-01-02", "player": "z", "points": 3, "minutes": 5.0},
            ],
        )
        == []
    )
    return f"`{client.project}.{dataset}.games`", f"`{client.project}.{dataset}.staging`"


def _run_all(client: bigquery.Client, dataset: str) -> list[tuple[object, ...]]:
    table, staging = _prepare(client, dataset)
    observed: list[tuple[object, ...]] = []
    for template, returns_rows in STATEMENTS:
        job = client.query(template.format(t=table, s=staging))
        rows = [tuple(r.values()) for r in job.result()]
        observed.append(
            (job.statement_type, rows if returns_rows else None, job.num_dml_affected_rows)
        )
    return observed


def test_same_statements_same_answers_on_both_servers(
    bq_server: LocalBigQuery,
    bq_client: bigquery.Client,
    bqemulator_client: bigquery.Client,
) -> None:
    dataset = f"parity_{uuid.uuid4().hex[:8]}"
    ours = _run_all(bq_client, dataset)
    theirs = _run_all(bqemulator_client, dataset)
    for statement, mine, emulator in zip(STATEMENTS, ours, theirs, strict=True):
        assert mine == emulator, statement[0]


def _procedures(client: bigquery.Client, dataset: str) -> list[object]:
    """A dataset made by DDL, a procedure with IN arguments called twice, a missing one."""
    observed: list[object] = []
    client.query(f"CREATE SCHEMA {dataset}").result()
    client.query(f"CREATE SCHEMA IF NOT EXISTS {dataset}").result()
    observed.append(client.get_dataset(dataset).dataset_id == dataset)
    client.query(f"CREATE TABLE {dataset}.lines (game_id STRING, point FLOAT64)").result()
    client.query(
        f"CREATE PROCEDURE {dataset}.add_line(game STRING, value FLOAT64) BEGIN "
        f"INSERT INTO {dataset}.lines (game_id, point) VALUES (game, value); "
        f"SELECT game_id, point FROM {dataset}.lines ORDER BY point; END"
    ).result()
    for game, value in (("g1", -3.5), ("g2", 4.0)):
        rows = client.query(f"CALL {dataset}.add_line('{game}', {value})").result()
        observed.append([tuple(r.values()) for r in rows])
    with pytest.raises(exceptions.NotFound):
        client.query(f"CALL {dataset}.no_such_procedure()").result()
    client.query(f"DROP SCHEMA {dataset} CASCADE").result()
    observed.append(dataset in [d.dataset_id for d in client.list_datasets()])
    return observed


def test_schemas_and_procedures_agree_on_both_servers(
    bq_server: LocalBigQuery,
    bq_client: bigquery.Client,
    bqemulator_client: bigquery.Client,
) -> None:
    dataset = f"procs_{uuid.uuid4().hex[:8]}"
    ours = _procedures(bq_client, dataset)
    assert ours == [True, [("g1", -3.5)], [("g1", -3.5), ("g2", 4.0)], False]
    assert ours == _procedures(bqemulator_client, dataset)
