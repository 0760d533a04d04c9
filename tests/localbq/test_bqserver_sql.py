"""Statements on the local BigQuery server through the real client: DML with dmlStats,
MERGE upserts, DDL (CREATE/CTAS/VIEW/DROP/ALTER/TRUNCATE), scripts, ingestion-time
pseudo-columns, DB-API, and loads (multipart and resumable uploads, gs:// URIs, copy)."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from google.api_core import exceptions
from google.cloud import bigquery
from google.cloud.bigquery import dbapi

from bastion.localbq import LocalBigQuery

P = "test-project"


@pytest.fixture
def props(bq_server: LocalBigQuery) -> LocalBigQuery:
    bq_server.create_table(
        "odds.props",
        [("game_date", "DATE"), ("player", "STRING"), ("line", "FLOAT64"), ("book", "STRING")],
        partition_field="game_date",
    )
    bq_server.insert_rows(
        "odds.props",
        [
            {"game_date": "2026-01-01", "player": "a", "line": 20.5, "book": "dk"},
            {"game_date": "2026-01-01", "player": "b", "line": 11.5, "book": "dk"},
            {"game_date": "2026-01-02", "player": "a", "line": 21.5, "book": "fd"},
        ],
    )
    return bq_server


def _one(client: bigquery.Client, sql: str) -> object:
    return next(iter(client.query_and_wait(sql)))[0]


def test_insert_update_delete_report_dml_stats(
    props: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    job = bq_client.query(
        "INSERT INTO odds.props (game_date, player, line, book) "
        "VALUES ('2026-01-03', 'c', 9.5, 'mgm'), ('2026-01-03', 'd', 7.5, 'mgm')"
    )
    job.result()
    assert job.statement_type == "INSERT"
    assert job.num_dml_affected_rows == 2
    assert job.dml_stats.inserted_row_count == 2
    rows = bq_client.query_and_wait(
        "UPDATE odds.props SET line = line + 1 WHERE game_date = '2026-01-01' AND book = 'dk'"
    )
    assert rows.num_dml_affected_rows == 2
    job = bq_client.query("DELETE FROM `test-project.odds.props` WHERE player = 'd'")
    job.result()
    assert (job.statement_type, job.dml_stats.deleted_row_count) == ("DELETE", 1)
    assert _one(bq_client, "SELECT SUM(line) FROM odds.props") == 21.5 + 12.5 + 21.5 + 9.5
    with pytest.raises(exceptions.BadRequest, match="WHERE"):
        bq_client.query_and_wait("DELETE FROM odds.props")


def test_merge_upsert_from_staging(props: LocalBigQuery, bq_client: bigquery.Client) -> None:
    props.create_table(
        "odds.props_staging",
        [("game_date", "DATE"), ("player", "STRING"), ("line", "FLOAT64"), ("book", "STRING")],
    )
    props.insert_rows(
        "odds.props_staging",
        [
            {"game_date": "2026-01-01", "player": "a", "line": 22.5, "book": "dk"},
            {"game_date": "2026-01-02", "player": "z", "line": 5.5, "book": "fd"},
        ],
    )
    job = bq_client.query(
        """
        MERGE `test-project.odds.props` T
        USING (SELECT * FROM odds.props_staging WHERE line > 1) S
        ON T.game_date = S.game_date AND T.player = S.player AND T.book = S.book
        WHEN MATCHED THEN UPDATE SET line = S.line
        WHEN NOT MATCHED THEN INSERT (game_date, player, line, book)
          VALUES (S.game_date, S.player, S.line, S.book)
        """
    )
    job.result()
    assert job.statement_type == "MERGE"
    assert job.dml_stats.updated_row_count == 1
    assert job.dml_stats.inserted_row_count == 1
    assert job.num_dml_affected_rows == 2
    rows = bq_client.query_and_wait("SELECT player, line FROM odds.props ORDER BY player, line")
    assert [(r.player, r.line) for r in rows] == [("a", 21.5), ("a", 22.5), ("b", 11.5), ("z", 5.5)]
    deleted = bq_client.query(
        "MERGE odds.props T USING odds.props_staging S ON T.player = S.player "
        "WHEN NOT MATCHED BY SOURCE AND T.book = 'dk' THEN DELETE"
    )
    deleted.result()
    assert deleted.dml_stats.deleted_row_count == 1  # player b
    assert _one(bq_client, "SELECT COUNT(*) FROM odds.props") == 3


def test_create_ctas_view_alter_truncate_drop(
    props: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    job = bq_client.query(
        "CREATE TABLE odds.lines (game_id STRING, spread FLOAT64, game_date DATE, "
        "tags ARRAY<STRING>, meta STRUCT<src STRING, n INT64>) "
        "PARTITION BY game_date OPTIONS (require_partition_filter = TRUE)"
    )
    job.result()
    assert job.statement_type == "CREATE_TABLE"
    assert job.ddl_operation_performed == "CREATE"
    assert job.ddl_target_table.table_id == "lines"
    table = bq_client.get_table("odds.lines")
    assert table.time_partitioning.field == "game_date"
    assert table.require_partition_filter is True
    assert [(f.name, f.field_type, f.mode) for f in table.schema][-2:] == [
        ("tags", "STRING", "REPEATED"),
        ("meta", "RECORD", "NULLABLE"),
    ]
    bq_client.insert_rows_json(
        "odds.lines",
        [
            {
                "game_id": "g",
                "game_date": "2026-01-01",
                "tags": ["x", "y"],
                "meta": {"src": "s", "n": 2},
            }
        ],
    )
    row = next(
        iter(bq_client.query_and_wait("SELECT * FROM odds.lines WHERE game_date = '2026-01-01'"))
    )
    assert row.tags == ["x", "y"] and row.meta == {"src": "s", "n": 2}

    ctas = bq_client.query(
        "CREATE OR REPLACE TABLE odds.daily PARTITION BY game_date AS "
        "SELECT game_date, COUNT(*) AS n, AVG(line) AS avg_line FROM odds.props GROUP BY game_date"
    )
    ctas.result()
    assert ctas.statement_type == "CREATE_TABLE_AS_SELECT"
    daily = bq_client.get_table("odds.daily")
    assert [(f.name, f.field_type) for f in daily.schema] == [
        ("game_date", "DATE"),
        ("n", "INTEGER"),
        ("avg_line", "FLOAT"),
    ]
    assert daily.num_rows == 2 and daily.time_partitioning.field == "game_date"

    bq_client.query_and_wait(
        "CREATE VIEW odds.dk AS SELECT player, line FROM odds.props WHERE book = 'dk'"
    )
    assert bq_client.get_table("odds.dk").table_type == "VIEW"
    assert _one(bq_client, "SELECT COUNT(*) FROM odds.dk") == 2

    bq_client.query_and_wait("ALTER TABLE odds.daily ADD COLUMN note STRING")
    assert bq_client.get_table("odds.daily").schema[-1].name == "note"
    truncated = bq_client.query("TRUNCATE TABLE odds.daily")
    truncated.result()
    assert truncated.statement_type == "TRUNCATE_TABLE"
    assert bq_client.get_table("odds.daily").num_rows == 0
    dropped = bq_client.query("DROP TABLE odds.daily")
    dropped.result()
    assert dropped.statement_type == "DROP_TABLE"
    with pytest.raises(exceptions.NotFound):
        bq_client.get_table("odds.daily")
    bq_client.query_and_wait("DROP TABLE IF EXISTS odds.daily")
    with pytest.raises(exceptions.Conflict):
        bq_client.query_and_wait("CREATE TABLE odds.props (x INT64)")


def test_script_runs_statements_in_order(props: LocalBigQuery, bq_client: bigquery.Client) -> None:
    job = bq_client.query(
        """
        -- nightly cleanup
        DECLARE cutoff DATE DEFAULT '2026-01-02';
        BEGIN TRANSACTION;
        DELETE FROM odds.props WHERE game_date < '2026-01-02';
        INSERT INTO odds.props (game_date, player, line, book)
          VALUES ('2026-01-05', 'q', 1.5, 'dk');
        COMMIT TRANSACTION;
        SELECT COUNT(*) AS n FROM odds.props;
        """
    )
    assert [r.n for r in job.result()] == [2]
    assert job.statement_type == "SCRIPT"
    block = bq_client.query("BEGIN SELECT 1; SELECT 2 AS two; END")
    assert [r.two for r in block.result()] == [2]
    assert block.statement_type == "SCRIPT"
    temp = bq_client.query(
        "CREATE TEMP TABLE best AS SELECT player, MAX(line) AS top FROM odds.props GROUP BY player;"
        "SELECT player, top FROM best ORDER BY top DESC;"
    )
    assert [(r.player, r.top) for r in temp.result()] == [("a", 21.5), ("q", 1.5)]
    assert temp.statement_type == "SCRIPT"
    # Control flow is accepted as a script but not executed (documented).
    flow = bq_client.query("IF (SELECT 1) = 1 THEN SELECT 1; END IF; SELECT 3;")
    flow.result()
    assert flow.statement_type == "SCRIPT" and flow.error_result is None


def test_ingestion_time_pseudo_columns(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.create_table("raw.props", [("player", "STRING")], ingestion_time=True)
    day = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    bq_server.insert_rows("raw.props", [{"player": "a"}, {"player": "b"}], partition_time=day)
    bq_client.insert_rows_json("raw.props", [{"player": "today"}])
    rows = list(bq_client.query_and_wait("SELECT * FROM raw.props ORDER BY player"))
    assert {tuple(r.keys()) for r in rows} == {("player",)}  # pseudo-columns hidden from *
    old = bq_client.query_and_wait(
        "SELECT player, _PARTITIONTIME AS pt, _PARTITIONDATE FROM raw.props "
        "WHERE _PARTITIONDATE = '2026-01-10' ORDER BY player"
    )
    got = [(r.player, r.pt, r._PARTITIONDATE) for r in old]
    assert got == [("a", day, dt.date(2026, 1, 10)), ("b", day, dt.date(2026, 1, 10))]
    job = bq_client.query(
        "SELECT player FROM raw.props WHERE _PARTITIONTIME = TIMESTAMP('2026-01-10')"
    )
    job.result()
    assert job._properties["statistics"]["query"]["totalPartitionsProcessed"] == "1"


@pytest.mark.filterwarnings("ignore:Cannot create BigQuery Storage client")
def test_dbapi_cursor(props: LocalBigQuery, bq_client: bigquery.Client) -> None:
    cursor = dbapi.connect(bq_client).cursor()
    cursor.execute(
        "SELECT player, line FROM odds.props WHERE book = %(book)s ORDER BY line", {"book": "dk"}
    )
    assert cursor.fetchall()[0].values() == ("b", 11.5)
    assert [d.name for d in cursor.description] == ["player", "line"]


def test_load_table_from_json_multipart(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.create_dataset("raw")
    rows = [
        {"player": "a", "pts": 3, "when": "2026-01-01"},
        {"player": "b", "pts": 5, "when": None},
    ]
    job = bq_client.load_table_from_json(rows, "raw.loaded")
    job.result()
    assert job.output_rows == 2 and job.state == "DONE"
    table = bq_client.get_table("raw.loaded")
    assert [(f.name, f.field_type) for f in table.schema] == [
        ("player", "STRING"),
        ("pts", "INTEGER"),
        ("when", "DATE"),
    ]
    assert _one(bq_client, "SELECT SUM(pts) FROM raw.loaded") == 8
    (upload,) = bq_server.requests.of("jobs.upload")
    assert upload.params["uploadType"] == "multipart"


def test_load_table_from_file_resumable(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.create_table("raw.scores", [("player", "STRING"), ("pts", "INT64")])

    class Unsized(io.BytesIO):  # no size known: the client switches to a resumable upload
        pass

    payload = "\n".join(json.dumps({"player": f"p{i}", "pts": i}) for i in range(50)).encode()
    config = bigquery.LoadJobConfig(source_format="NEWLINE_DELIMITED_JSON")
    job = bq_client.load_table_from_file(
        Unsized(payload), "raw.scores", job_config=config, size=None
    )
    job.result()
    assert job.output_rows == 50
    assert _one(bq_client, "SELECT MAX(pts) FROM raw.scores") == 49
    kinds = [r.params.get("uploadType") for r in bq_server.requests.of("jobs.upload")]
    assert kinds and set(kinds) == {"resumable"}
    csv_config = bigquery.LoadJobConfig(
        source_format="CSV", skip_leading_rows=1, write_disposition="WRITE_TRUNCATE"
    )
    job = bq_client.load_table_from_file(
        io.BytesIO(b"player,pts\nx,7\ny,8\n"), "raw.scores", job_config=csv_config
    )
    job.result()
    assert _one(bq_client, "SELECT SUM(pts) FROM raw.scores") == 15


def test_load_from_gcs_uri_creates_table_and_copy_job(
    props: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    config = bigquery.LoadJobConfig(
        schema=[bigquery.SchemaField("game_id", "STRING"), bigquery.SchemaField("day", "DATE")],
        source_format="NEWLINE_DELIMITED_JSON",
        time_partitioning=bigquery.TimePartitioning(field="day"),
    )
    job = bq_client.load_table_from_uri("gs://bucket/games/*.json", "odds.games", job_config=config)
    job.result()
    assert job.state == "DONE" and job.error_result is None
    assert job.output_rows == 0
    assert bq_client.get_table("odds.games").time_partitioning.field == "day"
    copy = bq_client.copy_table("odds.props", "odds.props_backup")
    copy.result()
    assert bq_client.get_table("odds.props_backup").num_rows == 3


def test_query_destination_table(props: LocalBigQuery, bq_client: bigquery.Client) -> None:
    config = bigquery.QueryJobConfig(
        destination=f"{P}.odds.summary", write_disposition="WRITE_TRUNCATE"
    )
    job = bq_client.query(
        "SELECT book, COUNT(*) AS n FROM odds.props GROUP BY book", job_config=config
    )
    job.result()
    assert sorted(r.values() for r in bq_client.list_rows("odds.summary")) == [("dk", 2), ("fd", 1)]


def test_functions_sqlite_lacks(props: LocalBigQuery, bq_client: bigquery.Client) -> None:
    rows = bq_client.query_and_wait(
        "SELECT player, ARRAY_AGG(book) AS books, ARRAY_LENGTH(ARRAY_AGG(book)) AS n, "
        "MAX(DATE_ADD(game_date, INTERVAL 1 MONTH)) AS next_month, "
        "MAX(TIMESTAMP_TRUNC(TIMESTAMP_SUB(TIMESTAMP(game_date), INTERVAL 90 MINUTE), HOUR)) AS t "
        "FROM odds.props WHERE REGEXP_CONTAINS(player, r'^[ab]$') GROUP BY player ORDER BY player"
    )
    got = [tuple(r.values()) for r in rows]
    assert got == [
        ("a", ["dk", "fd"], 2, dt.date(2026, 2, 2), dt.datetime(2026, 1, 1, 22, tzinfo=dt.UTC)),
        ("b", ["dk"], 1, dt.date(2026, 2, 1), dt.datetime(2025, 12, 31, 22, tzinfo=dt.UTC)),
    ]
    assert [f.mode for f in rows.schema] == [
        "NULLABLE",
        "REPEATED",
        "NULLABLE",
        "NULLABLE",
        "NULLABLE",
    ]


def test_without_the_project_analysis_a_fallback_classifies(
    props: LocalBigQuery, bq_client: bigquery.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server also runs where ``bastion.instrumentation.bigquery`` cannot be imported."""
    from bastion.localbq import _analysis

    monkeypatch.setattr(_analysis, "_project_analyze", lambda: None)
    props.table("odds.props").require_partition_filter = True
    with pytest.raises(exceptions.BadRequest, match="partition elimination"):
        bq_client.query_and_wait("SELECT * FROM odds.props WHERE book = 'dk'")
    kinds = []
    for sql in (
        "SELECT line FROM odds.props WHERE game_date = '2026-01-01'",
        "UPDATE odds.props SET line = 1 WHERE game_date = '2026-01-01'",
        "CREATE TABLE odds.x (a INT64)",
        "CREATE TABLE odds.y AS SELECT 1 AS a",
        "DROP TABLE odds.x",
        "SELECT 1; SELECT 2",
    ):
        job = bq_client.query(sql)
        job.result()
        kinds.append(job.statement_type)
    assert kinds == [
        "SELECT",
        "UPDATE",
        "CREATE_TABLE",
        "CREATE_TABLE_AS_SELECT",
        "DROP_TABLE",
        "SCRIPT",
    ]
