"""The local BigQuery server, driven by the real google-cloud-bigquery client over HTTP:
datasets, tables with partitioning, insertAll, tabledata.list, both query paths, paging,
statistics and the query cache."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import bigquery

from bastion.localbq import LocalBigQuery
from tests.conftest import ROOT

P = "test-project"
GAMES = [
    bigquery.SchemaField("game_date", "DATE"),
    bigquery.SchemaField("player", "STRING"),
    bigquery.SchemaField("points", "INT64"),
    bigquery.SchemaField("minutes", "FLOAT64"),
    bigquery.SchemaField("starter", "BOOL"),
    bigquery.SchemaField("updated_at", "TIMESTAMP"),
]


def _games(bq: LocalBigQuery, *, require_filter: bool = False) -> None:
    bq.create_table(
        "nba.games", GAMES, partition_field="game_date", require_partition_filter=require_filter
    )
    bq.insert_rows(
        "nba.games",
        [
            {
                "game_date": f"2026-01-{day:02d}",
                "player": player,
                "points": points + day,
                "minutes": 30.5,
                "starter": player != "c",
                "updated_at": f"2026-01-{day:02d}T20:00:00Z",
            }
            for day in (1, 2, 3)
            for player, points in (("a", 10), ("b", 20), ("c", 5))
        ],
    )


def test_datasets_insert_get_list_delete(bq_client: bigquery.Client) -> None:
    created = bq_client.create_dataset("nba")
    assert created.dataset_id == "nba" and created.project == P
    assert bq_client.get_dataset("nba").location == "US"
    bq_client.create_dataset("raw")
    assert sorted(d.dataset_id for d in bq_client.list_datasets()) == ["nba", "raw"]
    with pytest.raises(exceptions.Conflict):
        bq_client.create_dataset("nba")
    bq_client.create_table(bigquery.Table(f"{P}.raw.t", schema=GAMES))
    with pytest.raises(exceptions.BadRequest):
        bq_client.delete_dataset("raw")
    bq_client.delete_dataset("raw", delete_contents=True)
    with pytest.raises(exceptions.NotFound):
        bq_client.get_dataset("raw")


def test_tables_with_partitioning_round_trip(bq_client: bigquery.Client) -> None:
    bq_client.create_dataset("nba")
    table = bigquery.Table(f"{P}.nba.games", schema=GAMES)
    table.time_partitioning = bigquery.TimePartitioning(field="game_date", expiration_ms=86_400_000)
    table.require_partition_filter = True
    bq_client.create_table(table)
    ranged = bigquery.Table(f"{P}.nba.ranged", schema=[bigquery.SchemaField("id", "INT64")])
    ranged.range_partitioning = bigquery.RangePartitioning(
        field="id", range_=bigquery.PartitionRange(start=0, end=100, interval=10)
    )
    bq_client.create_table(ranged)
    ingestion = bigquery.Table(f"{P}.nba.raw", schema=[bigquery.SchemaField("x", "STRING")])
    ingestion.time_partitioning = bigquery.TimePartitioning()
    bq_client.create_table(ingestion)

    got = bq_client.get_table("nba.games")
    assert got.time_partitioning.field == "game_date"
    assert got.time_partitioning.type_ == "DAY"
    assert got.time_partitioning.expiration_ms == 86_400_000
    assert got.require_partition_filter is True
    assert [f.field_type for f in got.schema] == [
        "DATE",
        "STRING",
        "INTEGER",
        "FLOAT",
        "BOOLEAN",
        "TIMESTAMP",
    ]
    assert bq_client.get_table("nba.ranged").range_partitioning.field == "id"
    assert bq_client.get_table("nba.ranged").range_partitioning.range_.interval == 10
    assert bq_client.get_table("nba.raw").time_partitioning.field is None
    assert sorted(t.table_id for t in bq_client.list_tables("nba")) == ["games", "ranged", "raw"]

    got.require_partition_filter = False
    got.description = "per-game points"
    patched = bq_client.update_table(got, ["require_partition_filter", "description"])
    assert patched.require_partition_filter is False
    assert bq_client.get_table("nba.games").description == "per-game points"

    bq_client.delete_table("nba.ranged")
    with pytest.raises(exceptions.NotFound, match="Not found: Table"):
        bq_client.get_table("nba.ranged")
    with pytest.raises(exceptions.Conflict):
        bq_client.create_table(table)


def test_insert_rows_json_then_list_rows(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.create_table("nba.games", GAMES, partition_field="game_date")
    errors = bq_client.insert_rows_json(
        "nba.games",
        [
            {"game_date": "2026-01-01", "player": "a", "points": 7, "starter": True},
            {"game_date": "2026-01-01", "player": "b", "updated_at": "2026-01-01 10:00:00"},
        ],
    )
    assert errors == []
    rows = list(bq_client.list_rows("nba.games"))
    assert [(r.player, r.points, r.starter) for r in rows] == [("a", 7, True), ("b", None, None)]
    assert rows[0].game_date == dt.date(2026, 1, 1)
    assert rows[1].updated_at == dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    assert bq_client.get_table("nba.games").num_rows == 2

    bad = bq_client.insert_rows_json("nba.games", [{"player": "x"}, {"nope": 1}])
    assert [e["index"] for e in bad] == [0, 1]
    assert bad[1]["errors"][0]["reason"] == "invalid"
    assert bad[0]["errors"][0]["reason"] == "stopped"
    assert bq_client.get_table("nba.games").num_rows == 2  # all-or-nothing


def test_query_and_wait_fast_path_returns_typed_rows_and_statistics(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    _games(bq_server)
    rows = bq_client.query_and_wait(
        "SELECT player, points, minutes, starter, updated_at, game_date "
        "FROM `test-project.nba.games` WHERE game_date = '2026-01-02' ORDER BY player"
    )
    got = list(rows)
    assert [r.player for r in got] == ["a", "b", "c"]
    assert got[0].points == 12 and got[0].minutes == 30.5 and got[0].starter is True
    assert got[0].updated_at == dt.datetime(2026, 1, 2, 20, tzinfo=dt.UTC)
    assert got[0].game_date == dt.date(2026, 1, 2)
    # 3 rows of one partition: 8 (DATE) + 2+1 (STRING) + 8 + 8 + 1 + 8 bytes each.
    assert rows.total_bytes_processed == 3 * (8 + 3 + 8 + 8 + 1 + 8)
    assert rows.job_id is not None
    (request,) = bq_server.requests.of("jobs.query")
    assert request.body["query"].startswith("SELECT player")
    assert not bq_server.requests.of("jobs.insert")  # no job was inserted: the fast path


def test_query_result_path_job_statistics(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    _games(bq_server)
    job = bq_client.query(
        "SELECT player, SUM(points) AS total FROM nba.games "
        "WHERE game_date BETWEEN '2026-01-01' AND '2026-01-02' GROUP BY player ORDER BY total DESC"
    )
    assert [(r.player, r.total) for r in job.result()] == [("b", 43), ("a", 23), ("c", 13)]
    assert job.state == "DONE"
    assert job.statement_type == "SELECT"
    assert job.total_bytes_processed == 6 * (8 + 3 + 8)  # game_date, player, points
    assert job.total_bytes_billed == 10 * 1024 * 1024  # BigQuery's 10 MB minimum
    assert job.cache_hit is False
    assert job.slot_millis is not None and job.slot_millis >= 1
    assert job._properties["statistics"]["query"]["totalPartitionsProcessed"] == "2"
    assert job.referenced_tables[0].table_id == "games"
    assert job.created <= job.started <= job.ended
    assert [f.name for f in job.result().schema] == ["player", "total"]
    assert job.result().schema[1].field_type == "INTEGER"


def test_unnamed_columns_are_named_like_bigquery(bq_client: bigquery.Client) -> None:
    rows = list(bq_client.query_and_wait("SELECT 1, 'x' AS s, 2.5"))
    assert list(rows[0].items()) == [("f0_", 1), ("s", "x"), ("f1_", 2.5)]


def test_query_parameters_named_positional_and_arrays(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    _games(bq_server)
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("d", "DATE", dt.date(2026, 1, 3)),
            bigquery.ArrayQueryParameter("players", "STRING", ["a", "c"]),
        ]
    )
    rows = bq_client.query_and_wait(
        "SELECT player, points FROM nba.games WHERE game_date = @d "
        "AND player IN UNNEST(@players) ORDER BY player",
        job_config=config,
    )
    assert [(r.player, r.points) for r in rows] == [("a", 13), ("c", 8)]
    positional = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter(None, "INT64", 21)]
    )
    rows = bq_client.query_and_wait(
        "SELECT COUNT(*) AS n FROM nba.games WHERE game_date >= '2026-01-01' AND points > ?",
        job_config=positional,
    )
    assert next(iter(rows)).n == 2


def test_paging_through_get_query_results(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.create_table("raw.numbers", [("n", "INT64")])
    bq_server.insert_rows("raw.numbers", [{"n": i} for i in range(25)])
    job = bq_client.query("SELECT n FROM raw.numbers ORDER BY n")
    pages = list(job.result(page_size=10).pages)
    assert [len(list(p)) for p in pages] == [10, 10, 5]
    tokens = [r.params.get("pageToken") for r in bq_server.requests.of("jobs.getQueryResults")]
    assert "10" in tokens and "20" in tokens
    # The fast path pages too: jobs.query answers the first page, then getQueryResults.
    rows = bq_client.query_and_wait("SELECT n FROM raw.numbers ORDER BY n", page_size=7)
    assert [r.n for r in rows] == list(range(25))


def test_cache_hit_for_identical_query_until_table_changes(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    _games(bq_server)
    sql = "SELECT COUNT(*) AS n FROM nba.games WHERE game_date = '2026-01-01'"
    first = bq_client.query(sql)
    first.result()
    second = bq_client.query(sql)
    assert next(iter(second.result())).n == 3
    assert (first.cache_hit, second.cache_hit) == (False, True)
    assert (second.total_bytes_billed, second.total_bytes_processed) == (0, 0)
    no_cache = bq_client.query(sql, job_config=bigquery.QueryJobConfig(use_query_cache=False))
    no_cache.result()
    assert no_cache.cache_hit is False
    bq_client.insert_rows_json("nba.games", [{"game_date": "2026-01-01", "player": "z"}])
    changed = bq_client.query(sql)
    assert next(iter(changed.result())).n == 4
    assert changed.cache_hit is False


def test_unknown_table_and_syntax_error(bq_client: bigquery.Client) -> None:
    with pytest.raises(exceptions.NotFound, match="Not found: Dataset test-project:nba"):
        bq_client.query_and_wait("SELECT * FROM nba.nothing")
    with pytest.raises(exceptions.BadRequest, match="Syntax error"):
        bq_client.query_and_wait("SELEC 1 FROM")
    job = bq_client.query("SELEC 1 FROM")
    with pytest.raises(exceptions.BadRequest, match="Syntax error"):
        job.result()
    assert job.error_result is not None and job.error_result["reason"] == "invalidQuery"


def test_request_log_over_http_and_keep_alive_nodelay(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    list(bq_client.query_and_wait("SELECT 1"))
    with urllib.request.urlopen(f"{bq_server.url}/_bqserver/requests") as answer:
        logged = json.load(answer)["requests"]
    assert [(r["method"], r["endpoint"]) for r in logged] == [("POST", "jobs.query")]
    assert logged[0]["body"]["query"] == "SELECT 1"
    # One keep-alive connection answers several requests; the server sets TCP_NODELAY.
    with socket.create_connection((bq_server.host, bq_server.port)) as sock:
        for _ in range(2):
            sock.sendall(b"GET /_bqserver/health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b'{"ok": true}'):
                data += sock.recv(4096)
            assert data.startswith(b"HTTP/1.1 200")


def test_concurrent_clients_each_get_their_own_answers(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    bq_server.create_table("raw.events", [("worker", "INT64"), ("n", "INT64")])

    def work(worker: int) -> list[int]:
        client = bq_server.client()  # its own connection pool, as separate services have
        seen = []
        for n in range(5):
            client.query_and_wait(f"INSERT INTO raw.events (worker, n) VALUES ({worker}, {n})")
            rows = client.query_and_wait(
                f"SELECT COUNT(*) AS c FROM raw.events WHERE worker = {worker}"
            )
            seen.append(next(iter(rows)).c)
        return seen

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(6)))
    assert results == [[1, 2, 3, 4, 5]] * 6
    assert bq_client.get_table("raw.events").num_rows == 30
    assert len(bq_server.requests.of("jobs.query")) == 60


def test_request_log_is_bounded() -> None:
    with LocalBigQuery(project=P, max_logged_requests=3) as bq:
        client = bq.client()
        for i in range(5):
            list(client.query_and_wait(f"SELECT {i}"))
        assert [r.sql for r in bq.requests] == ["SELECT 2", "SELECT 3", "SELECT 4"]


@pytest.mark.slow
def test_bqemulator_fixture_fails_loudly_without_its_virtualenv(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from pathlib import Path\n"
        "from tests import conftest as shared\n"
        "shared.BQEMU_VENV = Path('/nonexistent/.bqemu-venv')\n"
        "bqemulator = shared.bqemulator\n"
    )
    (tmp_path / "test_needs_emulator.py").write_text("def test_it(bqemulator):\n    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert run.returncode != 0
    assert "1 error" in run.stdout and "skipped" not in run.stdout
    assert "run `make bqemu`" in run.stdout


def test_view_created_through_tables_insert(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    _games(bq_server)
    view = bigquery.Table(f"{P}.nba.top")
    view.view_query = "SELECT player, MAX(points) AS best FROM nba.games GROUP BY player"
    bq_client.create_table(view)
    assert bq_client.get_table("nba.top").table_type == "VIEW"
    rows = bq_client.query_and_wait("SELECT player, best FROM nba.top ORDER BY best DESC")
    assert [(r.player, r.best) for r in rows] == [("b", 23), ("a", 13), ("c", 8)]


def test_bytes_processed_counts_only_the_columns_read(
    bq_server: LocalBigQuery, bq_client: bigquery.Client
) -> None:
    _games(bq_server)  # 9 rows over 3 daily partitions
    row = 8 + 3 + 8 + 8 + 1 + 8  # every column of one row ('a'/'b'/'c': 2 + 1 bytes)

    def processed(sql: str) -> int:
        job = bq_client.query(sql, job_config=bigquery.QueryJobConfig(use_query_cache=False))
        job.result()
        return int(job.total_bytes_processed)

    assert processed("SELECT * FROM nba.games") == 9 * row
    assert processed("SELECT COUNT(*) FROM nba.games") == 0
    assert processed("SELECT COUNT(*) FROM nba.games WHERE game_date = '2026-01-01'") == 3 * 8
    assert processed("SELECT points FROM nba.games WHERE game_date > '2026-01-01'") == 6 * 16


def test_jobs_list_and_delete(bq_client: bigquery.Client) -> None:
    job = bq_client.query("SELECT 1")
    job.result()
    assert [j.job_id for j in bq_client.list_jobs()] == [job.job_id]
    bq_client.delete_job_metadata(job.job_id)
    assert list(bq_client.list_jobs()) == []
    with pytest.raises(exceptions.NotFound):
        bq_client.get_job(job.job_id)
